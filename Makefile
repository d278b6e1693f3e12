# The two commands of the README: `make run` and `make test`. Both set up what they need.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint types pytest bench clean

$(STAMP): pyproject.toml
	@bash scripts/system-deps.sh run
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## Run the product on this machine (SQLite and local folders under ./var).
run: $(STAMP)
	$(BIN)/sekimori demo

## Lint, types and the whole test suite (SQLite and a throwaway PostgreSQL).
test: $(STAMP) lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	@bash scripts/system-deps.sh test
	bash scripts/with-postgres.sh $(BIN)/pytest $(PYTEST_ARGS)

## Benchmarks: ingest rate and idle agent footprint.
bench: $(STAMP)
	$(BIN)/sekimori bench ingest
	$(BIN)/sekimori bench agent

clean:
	rm -rf $(VENV) build src/*.egg-info
