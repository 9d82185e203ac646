# The two commands of the README. Both create .venv from the lock file when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: run test lint format venv lock clean-venv

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The critical-batch-size demo on the embedded corpus (see README).
run: $(STAMP)
	$(BIN)/bsjax sweep --config=configs/demo.py --workdir=runs/demo

# The test suite on a CPU mesh of 8 fake devices.
test: $(STAMP)
	XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests

# One formatter and linter for all code (configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff format --check bsjax tests configs experiments
	$(BIN)/ruff check bsjax tests configs experiments

format: $(STAMP)
	$(BIN)/ruff format bsjax tests configs experiments
	$(BIN)/ruff check --fix bsjax tests configs experiments

# Re-resolve the exact known-good set from pyproject's ranges.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^bsjax' > requirements.lock

clean-venv:
	rm -rf $(VENV)
