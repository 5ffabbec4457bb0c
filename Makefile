# Two entry points (see README): `make demo` runs the demo lab, `make test` runs the tests.
# Both create/refresh a local virtualenv in .venv with every extra (pyproject.toml); `make test` also
# makes sure mosquitto and Chromium are installed (scripts/ensure-system-packages.sh). torch is installed on its own
# first, pinned to the CPU build, so nothing ever pulls the multi-GB CUDA wheels.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?=
ARGS ?=

.PHONY: demo test lint system-packages bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all,cluster,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-mcepl simulate examples/demo.yaml $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

# mosquitto and Chromium first (the device-lab tests need a broker, the dashboard tests a browser: installed
# here, or one line saying what to run), then the
# quality gates: ruff (pyflakes, pycodestyle, bugbear, isort, pyupgrade, complexity) and mypy, both at
# zero; configuration in pyproject.toml.
test: system-packages lint
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edge_mcepl tests benchmarks
	$(BIN)/mypy

system-packages:
	sh scripts/ensure-system-packages.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/round_time.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
