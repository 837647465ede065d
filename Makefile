# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test phantoms clean-venv

# A virtual environment with the CPU build of torch first (a wheel pip finds on this machine's disk;
# letting pip choose torch for the project would pull a multi-GB CUDA build), then the project, editable.
$(BIN)/care-cardiac: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/care-cardiac

# Phantoms in, trained model and per-task ID/OOD table out (results/demo/leaderboard.csv), on CPU.
demo: install
	BIN=$(BIN) scripts/demo.sh

# The test suite; real-sample tests read CARE_SAMPLE_DATA, else ../shared/data (skipped, with the reason in the summary, only where that is absent).
test: install
	$(BIN)/python -m pytest -q -rs --timeout 600 --durations=15

clean-venv:
	rm -rf $(VENV)
