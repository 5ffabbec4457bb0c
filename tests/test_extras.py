"""The pip extras: every subcommand says which one it needs, and the table agrees with pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_mcepl import __version__
from edge_mcepl.cli import build_parser, main
from edge_mcepl.errors import UserError
from edge_mcepl.extras import COMMAND_EXTRAS, EXTRAS, RUNTIME_COMMANDS, require_extra

tomllib = pytest.importorskip("tomllib", reason="Python ≥ 3.11 reads pyproject.toml")
ROOT = Path(__file__).resolve().parents[1]
MODULE_OF = {"paho-mqtt": "paho"}  # distribution → the module it installs, where the names differ


def subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


def test_every_subcommand_is_either_the_runtime_or_names_its_extra():
    assert subcommands() == set(COMMAND_EXTRAS) | set(RUNTIME_COMMANDS)
    assert not set(COMMAND_EXTRAS) & set(RUNTIME_COMMANDS)
    assert set(COMMAND_EXTRAS.values()) <= set(EXTRAS)


def test_the_extras_modules_are_what_pyproject_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def modules(requirements: list[str]) -> set[str]:
        out: set[str] = set()
        for req in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)
            if name == project["name"]:  # "edge-mcepl[lab]": another extra of this project
                for extra in re.search(r"\[(.*)\]", req).group(1).split(","):
                    out |= modules(extras[extra])
            else:
                out.add(MODULE_OF.get(name, name.lower()))
        return out

    for extra, provided in EXTRAS.items():
        assert modules(extras[extra]) == set(provided), extra
    assert not modules(project["dependencies"]) & {"torch", "onnx", "paho", "tqdm", "psutil"}  # the runtime only


def test_a_present_extra_passes_and_a_missing_module_is_one_line(monkeypatch):
    require_extra("simulate")
    require_extra("infer")  # the runtime: nothing to check
    monkeypatch.setitem(EXTRAS, "lab", ("edge_mcepl_no_such_module",))
    with pytest.raises(UserError, match=r"^simulate needs edge_mcepl_no_such_module, which is not installed: "
                                        r"pip install 'edge-mcepl\[lab\]'$"):
        require_extra("simulate")


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"edge-mcepl {__version__}\n"


def test_the_ray_backend_names_the_cluster_extra_when_ray_is_missing(monkeypatch):
    from edge_mcepl.backends.ray_backend import import_ray

    monkeypatch.setitem(EXTRAS, "cluster", ("edge_mcepl_no_such_ray",))
    with pytest.raises(UserError, match=r"^--backend ray needs edge_mcepl_no_such_ray, which is not installed: "
                                        r"pip install 'edge-mcepl\[cluster\]'$"):
        import_ray(local=False)
