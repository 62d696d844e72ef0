# ml-features: `make run` sets up and runs the whole pipeline on demo data; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= 200000
SEED ?= 42
DEMO_DIR := data/demo

.DEFAULT_GOAL := help
BENCH_SCALES ?= 100000,1000000,10000000
BENCH_MEMORY_LIMIT ?= 2GB
# pytest-xdist workers for make test (each test file runs whole on one worker, the longest first: conftest.py)
TEST_WORKERS ?= 2
PYTHON_DIRS := extract demo pipeline orchestration realtime tests .ci bench examples
.PHONY: help setup demo-data run test lint build bench docs docs-serve clean example dagster realtime

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(BIN)/.installed ## create .venv and install the pinned dependencies

demo-data: setup ## generate the demo sources (SCALE transactions, SEED) under data/demo
	$(BIN)/python -m demo.generate --out $(DEMO_DIR) --seed $(SEED) --scale $(SCALE)

run: demo-data ## set up, generate demo data, extract with dlt, dbt build, print a summary
	$(BIN)/pipeline run

test: setup ## every test: ruff (lint and format), pytest (real dlt + dbt runs at a small scale), sqlfluff
	$(BIN)/ruff check $(PYTHON_DIRS)
	$(BIN)/ruff format --check $(PYTHON_DIRS)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
	$(MAKE) lint

lint: setup ## sqlfluff on the dbt models and tests, and on the SQL the macros write (compiled: .ci/lint_macros.py)
	@mkdir -p "$(dir $(WAREHOUSE))"  # sqlfluff's dbt templater opens the warehouse; DuckDB creates the file, not its folder
	$(BIN)/sqlfluff lint models tests
	$(BIN)/python .ci/lint_macros.py

# the bring-your-own-data walk-through: a real public data set through the documented settings only
EXAMPLE_DIR ?= data/cdnow
example: setup ## the public CDNOW purchase history (1997-98) as your own data: app database only, text ids, USD, no events/chargebacks/FX
	$(BIN)/python -m examples.cdnow.to_contract --out $(EXAMPLE_DIR)/app.sqlite
	ML_FEATURES_DATA_DIR=$(EXAMPLE_DIR) DBT_TARGET_PATH=$(EXAMPLE_DIR)/target \
	SOURCES__APP_DATABASE__DEMO=false SOURCES__APP_DATABASE__CREDENTIALS=sqlite:///$(abspath $(EXAMPLE_DIR))/app.sqlite \
	SOURCES__EVENT_STREAM__ENABLED=false SOURCES__BUCKET_FILES__ENABLED=false SOURCES__FX_API__ENABLED=false \
	ML_FEATURES_FIRST_DAY=1997-01-01 \
	$(BIN)/pipeline run --date 1998-06-30

build: setup ## dbt build on the current warehouse
	$(BIN)/dbt build

bench: setup ## benchmark the pipeline at BENCH_SCALES transactions, SQL vs pandas, issue 27's targets (BENCH_ARGS=--dbt-overhead; figures: data/bench/results.json)
	$(BIN)/python -m bench.run --scales $(BENCH_SCALES) --memory-limit $(BENCH_MEMORY_LIMIT) $(BENCH_ARGS)

# the warehouse `make run` builds and the folder dbt writes the docs to (both follow the environment)
WAREHOUSE = $(or $(ML_FEATURES_DUCKDB_PATH),$(or $(ML_FEATURES_DATA_DIR),data)/warehouse.duckdb)
DOCS_DIR = $(or $(DBT_TARGET_PATH),target)
DOCS_PORT ?= 8080

docs: setup ## dbt docs generate (+ one-file static_index.html, coverage check); runs `make run` first if no warehouse
	@test -f "$(WAREHOUSE)" || { echo "docs: no warehouse at $(WAREHOUSE): building it with make run first"; $(MAKE) --no-print-directory run; }
	$(BIN)/dbt docs generate --static
	@echo "docs: $(DOCS_DIR)/static_index.html is the whole site in one file: open it in a browser, or run make docs-serve"
	$(BIN)/python .ci/check_docs_coverage.py --target-path "$(DOCS_DIR)"

docs-serve: setup ## make docs, then serve the docs site on http://localhost:8080 (DOCS_PORT=...)
	-$(MAKE) --no-print-directory docs
	$(BIN)/dbt docs serve --port $(DOCS_PORT) --no-browser

DAGSTER_PORT ?= 3000

dagster: setup ## the Dagster UI on http://127.0.0.1:3000 (DAGSTER_PORT=...) and its daemon (schedule, sensor, backfills) until Ctrl-C
	$(BIN)/python -m orchestration.serve --port $(DAGSTER_PORT)

realtime: setup ## the real-time stack until Ctrl-C: Redis, the ingestion + features API on http://127.0.0.1:8000, the consumer (docs/realtime.md)
	$(BIN)/python -m realtime

clean: ## remove the warehouse, demo data, exports and dbt artifacts (keeps .venv)
	rm -rf data target logs
