"""The dashboard and the devices do not weigh on each other: no torch to watch a lab, no web server to join one."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(*modules: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after importing ``modules``."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


def test_watching_a_lab_needs_no_torch():
    loaded = loaded_after("edge_mcepl.dashboard.server", "edge_mcepl.dashboard.sources",
                          "edge_mcepl.dashboard.attached", "edge_mcepl.commands.dashboard")
    assert {"starlette", "uvicorn", "paho"} <= loaded
    assert "torch" not in loaded


def test_a_device_that_joins_loads_no_web_server():
    loaded = loaded_after("edge_mcepl.devicelab.join", "edge_mcepl.devicelab.launcher", "edge_mcepl.cli")
    assert "torch" in loaded
    assert not {"starlette", "uvicorn", "selenium"} & loaded
