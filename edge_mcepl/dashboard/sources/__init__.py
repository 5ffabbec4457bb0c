"""Dashboard sources: an abstract base, a live lab over MQTT and a run directory, and the factory.

:func:`open_source` picks one from what the command line names: a run directory, or an
observer's bundle (``edge-mcepl broker`` writes ``bundles/observer.yaml``) for a live lab.
"""

from __future__ import annotations

from pathlib import Path

from ...comm.client import MqttOptions
from ...errors import UserError
from .base import LabSource
from .mqtt import MqttSource
from .run_dir import RunDirSource

__all__ = ["LabSource", "MqttSource", "RunDirSource", "open_source"]


def open_source(run_dir: str | None, bundle_path: str | None, broker: str | None = None,
                options: MqttOptions | None = None) -> LabSource:
    """A run directory's source, or a live lab's from an observer bundle (exactly one of the two)."""
    from ...comm.broker.bundles import load_bundle

    if (run_dir is None) == (bundle_path is None):
        raise UserError("give a run directory (a finished run) or --bundle OBSERVER.yaml (a live lab), not both")
    if run_dir is not None:
        path = Path(run_dir)
        if not path.is_dir():
            raise UserError(f"{run_dir}: no such run directory")
        return RunDirSource(path)
    assert bundle_path is not None
    bundle = load_bundle(bundle_path)
    if bundle.role != "observer":
        raise UserError(f"--bundle {bundle_path}: agent {bundle.agent_id}'s bundle; the dashboard watches with the "
                        "read-only observer's (bundles/observer.yaml beside it)")
    return MqttSource(bundle, broker, options)
