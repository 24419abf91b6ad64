# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@# From a terminal the console stays up after the call (Ctrl-C stops); scripts and CI get a demo that ends.
	$(BIN)/cxguard demo $$([ -t 0 ] && echo --stay)

lint: $(STAMP)
	$(BIN)/ruff check cxguard tests benchmarks scripts
	$(BIN)/ruff format --check cxguard tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/latency.py --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cxguard-demo-evidence.db cxguard-demo-evidence.db.state
