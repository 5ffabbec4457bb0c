"""Path arguments checked before a command starts its work, so a typo costs a one-line error, not a run.

A benchmark, a profile measurement or an export can take minutes; finding only at the end that
``--json`` points into a missing folder loses all of it (and used to end in a traceback). Each
check raises a :class:`~edge_mcepl.errors.UserError` naming the option and the path. Standard
library only: ``infer`` and ``bench-infer`` use it on devices without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def existing_folder(option: str, path: str | Path) -> Path:
    """A folder the command reads from (``--data-dir``): it must exist."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{option} {path}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


def writable_file(option: str, path: str | Path) -> Path:
    """A file the command will write (``--out``, ``--json``): its folder exists and is writable, it is no folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder, expected a file name")
    _writable_dir(option, path, path.parent)
    return path


def writable_folder(option: str, path: str | Path) -> Path:
    """A folder the command will create if needed (``export --out``): ``mkdir -p`` must be able to make it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    nearest = next(p for p in (path, *path.parents) if p.exists())  # a relative path ends at ".", which exists
    _writable_dir(option, path, nearest)
    return path


def _writable_dir(option: str, path: Path, folder: Path) -> None:
    if not folder.is_dir():
        raise UserError(f"{option} {path}: {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: folder {folder} is not writable")
