"""Which pip extra each subcommand needs: ``pip install edge-mcepl`` alone is the torch-free runtime.

A device that only runs exported models needs numpy and onnxruntime, not torch's hundreds of
megabytes, so the base install is the runtime (``infer``, ``bench-infer``) and training, the device
lab and export are extras (pyproject.toml). The CLI checks a subcommand's extra before running it,
so a missing one is one line naming the pip command, not a traceback from deep inside the command.
"""

from __future__ import annotations

import importlib

from .errors import UserError

# extra → the modules it provides (pyproject.toml's optional-dependencies list their distributions)
_LAB = ("torch", "tqdm", "psutil", "paho", "cryptography")
_DASHBOARD = ("paho", "cryptography", "starlette", "uvicorn")  # no torch: it runs on a laptop that only watches
EXTRAS: dict[str, tuple[str, ...]] = {"lab": _LAB, "dashboard": _DASHBOARD, "all": (*_LAB, "onnx", "starlette",
                                                                                "uvicorn"),
                                      "cluster": (*_LAB, "ray")}  # simulate --backend ray
# subcommand → the extra it needs; the runtime's subcommands need none (tests check every one is listed)
COMMAND_EXTRAS: dict[str, str] = {
    "simulate": "lab", "models": "lab", "download": "lab", "profile": "lab",
    "broker": "lab", "join": "lab", "lab": "lab", "dashboard": "dashboard",
    "export": "all",
}
RUNTIME_COMMANDS = ("infer", "bench-infer")


def require_extra(command: str) -> None:
    """Import the modules ``command``'s extra provides (it imports them next anyway); a missing one is a UserError."""
    extra = COMMAND_EXTRAS.get(command)
    if extra is not None:
        require_modules(extra, command)


def require_modules(extra: str, what: str) -> None:
    """Import every module of ``extra``; a missing one is one line saying ``what`` needs it and the pip line."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module is there but broken: its own error says more
                raise
            raise UserError(f"{what} needs {module}, which is not installed: "
                            f"pip install 'edge-mcepl[{extra}]'") from None
