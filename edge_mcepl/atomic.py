"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a torn one.

Every file edge-mcepl writes for another process or a later run — run directories, checkpoints,
export manifests and models, device profiles, broker passwords and credentials — goes through
:func:`atomic_file`: the data is written to ``NAME.tmp`` in the same folder, then renamed over
``NAME`` (``os.replace`` is atomic within a filesystem). ``durable=True`` also fsyncs the file
and its folder, for state that must survive a power cut (checkpoints), at the cost of a disk
flush per write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: str | Path, *, mode: int = 0o666, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` when the block succeeds.

    ``mode`` is the new file's permission bits (before the umask; 0o600 for secrets, which are then
    never readable by others, not even briefly). On an exception the temporary file is removed and
    ``path`` is untouched. ``f.name`` is the temporary path, for a tool that rewrites it in place.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover from a crash must not lend the new file its permissions
    try:
        with open(tmp, "wb", opener=lambda name, flags: os.open(name, flags | os.O_EXCL, mode)) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def atomic_write(path: str | Path, data: bytes | str, *, mode: int = 0o666, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8) atomically."""
    with atomic_file(path, mode=mode, durable=durable) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems cannot open a folder for this.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
