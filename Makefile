# paradex-bus: the commands a user types. Everything runs from the project's own .venv.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv pip install -q --python $(BIN)/python
PYTEST_ARGS ?=

.PHONY: help venv up down status logs test test-fast lint fmt bench bench-quick chaos clean

help:
	@echo "make up      start NATS JetStream, the simulator and every service (supervised)"
	@echo "make down    stop everything started by make up"
	@echo "make test    create the venv if needed and run the test suite"
	@echo "make bench   run the benchmark suite (bench/results/<timestamp>/)"
	@echo "make chaos   5-minute chaos run with the invariant checker"
	@echo "make logs    follow the service logs under .run/logs/"

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# uv installs the same requirements in seconds instead of a minute; plain pip is the fallback.
	$(BIN)/pip install -q uv || true
	$(UV) -e ".[dev,bench,parquet]" || $(BIN)/pip install -q -e ".[dev,bench,parquet]"
	@# The Nautilus extra is large and pinned to one release; its tests skip with a message if it cannot install.
	$(UV) -e ".[nautilus]" || $(BIN)/pip install -q -e ".[nautilus]" \
		|| echo "WARNING: the nautilus extra could not be installed; Nautilus tests will be skipped"
	@touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(BIN)/python -m services.stack up

down:
	@test -x $(BIN)/python && $(BIN)/python -m services.stack down || echo "nothing to stop"

status: $(STAMP)
	$(BIN)/pdx status

logs:
	@tail -n 50 -F .run/logs/*.log

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/pdx bench

bench-quick: $(STAMP)
	$(BIN)/pdx bench --quick

chaos: $(STAMP)
	$(BIN)/pdx chaos --duration 300

clean: down
	rm -rf .run
