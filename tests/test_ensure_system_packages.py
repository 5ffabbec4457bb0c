"""scripts/ensure-system-packages.sh, which `make test` runs first: install mosquitto and Chromium when
possible, else one line.

Nothing is uninstalled or installed: the script looks for the programs in ``SYSTEM_SEARCH_PATH`` (an
empty folder here), and ``id``, ``sudo`` and ``apt-get`` are stand-ins on ``PATH`` that log their
arguments; the stand-in apt-get "installs" by writing the executables into the searched folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ensure-system-packages.sh"
PROGRAMS = ("mosquitto", "mosquitto_passwd", "chromium", "chromedriver")
PACKAGES = "mosquitto chromium chromium-driver"


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path):
    """(fake bin folder, searched folder, call log): a machine without mosquitto and Chromium, with apt-get."""
    fake, search, log = tmp_path / "bin", tmp_path / "sbin", tmp_path / "calls.log"
    fake.mkdir()
    search.mkdir()
    installs = (f'echo "apt-get $*" >> {log}\n'
                f'case "$*" in *install*) for p in {" ".join(PROGRAMS)}; do '
                f'printf "#!/bin/sh\\n" > {search}/$p; chmod +x {search}/$p; done;; esac')
    _tool(fake, "apt-get", installs)
    _tool(fake, "id", 'echo 1000')
    _tool(fake, "sudo", f'echo "sudo $*" >> {log}; exit 1')  # asks for a password: -n fails
    return fake, search, log


def run(fake: Path, search: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": path or f"{fake}:/usr/bin:/bin", "SYSTEM_SEARCH_PATH": str(search)}
    return subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=30)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_user_who_cannot_install_gets_one_line_saying_what_to_run(machine):
    fake, search, log = machine
    result = run(fake, search)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    hint = f"this user cannot install them: run sudo apt-get install -y {PACKAGES}, then make test again"
    assert hint in result.stderr
    assert calls(log) == ["sudo -n true"]  # asked sudo without a password, never ran apt-get


def test_root_installs_it_with_apt_get(machine):
    fake, search, log = machine
    _tool(fake, "id", "echo 0")
    result = run(fake, search)
    assert result.returncode == 0, result.stderr
    assert calls(log) == ["apt-get update -qq", f"apt-get install -y -qq --no-install-recommends {PACKAGES}"]


def test_passwordless_sudo_installs_it(machine):
    fake, search, log = machine
    _tool(fake, "sudo", f'echo "sudo $*" >> {log}; shift; exec "$@"')  # drops -n, runs the rest
    result = run(fake, search)
    assert result.returncode == 0, result.stderr
    apt = "env DEBIAN_FRONTEND=noninteractive apt-get"
    assert calls(log) == ["sudo -n true", f"sudo -n {apt} update -qq", "apt-get update -qq",
                          f"sudo -n {apt} install -y -qq --no-install-recommends {PACKAGES}",
                          f"apt-get install -y -qq --no-install-recommends {PACKAGES}"]


def test_installed_means_nothing_to_do(machine):
    fake, search, log = machine
    for name in PROGRAMS:
        _tool(search, name, "exit 0")
    result = run(fake, search)
    assert (result.returncode, result.stdout, result.stderr, calls(log)) == (0, "", "", [])


def test_without_apt_get_it_names_the_package_manager(machine):
    fake, search, log = machine
    (fake / "apt-get").unlink()
    result = run(fake, search, path=str(fake))  # nothing else on PATH: no apt-get anywhere
    assert result.returncode == 1
    assert "install them with your package manager" in result.stderr and result.stderr.count("\n") == 1


def test_only_the_missing_packages_are_installed(machine):
    fake, search, log = machine
    _tool(fake, "id", "echo 0")
    for name in ("mosquitto", "mosquitto_passwd", "chromedriver"):
        _tool(search, name, "exit 0")
    result = run(fake, search)
    assert result.returncode == 0, result.stderr
    assert calls(log)[-1] == "apt-get install -y -qq --no-install-recommends chromium"


def test_make_test_checks_the_system_packages_before_the_gates_and_the_tests():
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    lines = dry.splitlines()
    ensure = next(i for i, line in enumerate(lines) if "ensure-system-packages.sh" in line)
    assert ensure < next(i for i, line in enumerate(lines) if "ruff check" in line)
    assert ensure < next(i for i, line in enumerate(lines) if "pytest" in line)
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()  # CI runs `make test`, which does the set-up
