# Quick start: `make demo` and `make test` on a machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= .data
DAGSTER_HOME ?= $(CURDIR)/.dagster
PYTEST_ARGS ?=

.PHONY: venv instance demo test lint check-defs format dev simulate replay serve bench clean

venv: $(STAMP)

# torch is pinned before the project so a looser range never pulls a CUDA build.
# DVC gets its own environment in .venv/dvc: its hydra dependency pins an ANTLR
# runtime that breaks Dagster's, so the platform only calls it as a program.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq "torch==2.13.0"
	$(BIN)/python -m pip install -qq -e ".[dev]"
	$(PYTHON) -m venv $(VENV)/dvc
	$(VENV)/dvc/bin/python -m pip install -qq "dvc[s3]>=3.67,<4"
	touch $(STAMP)

# The local profile's Dagster instance: SQLite storage in $(DAGSTER_HOME).
instance:
	mkdir -p $(DAGSTER_HOME)
	mkdir -p $(DATA_DIR)/dvc-remote
	test -f $(DAGSTER_HOME)/dagster.yaml || cp orchestration/instance/local.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) instance
	PLATFORM_DATA_DIR=$(DATA_DIR) DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/python -m devtools.demo $(DEMO_ARGS)

# worksteal: a worker that runs out of tests takes pending ones from the other, so the two
# long end-to-end tests do not leave a core idle at the end of the run.
test: $(STAMP) lint check-defs
	$(BIN)/python -m pytest -n auto --dist worksteal $(PYTEST_ARGS)

# ruff, then the import-linter contracts of pyproject.toml (the layers point one way).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Loads the code location the way the webserver does (`dg check defs`, configured in
# pyproject's [tool.dg]); needs no running instance, only the local profile's settings.
check-defs: $(STAMP) instance
	PLATFORM_DATA_DIR=$(DATA_DIR) DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dg check defs

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Webserver and daemon through dg (`dagster dev` now warns that it is superseded by it);
# workspace.yaml names the same code location for dagster-webserver run on its own.
dev: $(STAMP) instance
	PLATFORM_DATA_DIR=$(DATA_DIR) DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dg dev --host 127.0.0.1 --port 3000

# Production in miniature: webserver and daemon as processes, one day landing every few
# seconds, sensors and automation doing the rest. SIMULATE_ARGS="--days 30 --interval 5".
SIMULATE_ARGS ?=
simulate: $(STAMP)
	$(BIN)/python -m devtools.simulate $(SIMULATE_ARGS)

# The model server on 127.0.0.1 with the current champion of the registry in $(DATA_DIR).
# Clients send PLATFORM_SERVING_TOKEN as a bearer token; reloads need PLATFORM_SERVING_ADMIN_TOKEN.
serve: $(STAMP)
	PLATFORM_DATA_DIR=$(DATA_DIR) $(BIN)/python -m serving

replay: $(STAMP)
	$(BIN)/python -m ml.ingest.replay --landing $(DATA_DIR)/landing --start 2013-01-01 --end 2013-01-31

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(DATA_DIR) $(DAGSTER_HOME)
