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

## Benchmarks: ingest rate, agent footprint (idle and under a scripted workload) and
## console page times at 20,000 PCs / 10M events (the generated store is kept in
## /var/tmp and reused). Figures and how to read them: docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/sekimori bench ingest
	$(BIN)/sekimori bench agent
	$(BIN)/sekimori bench agent --workload
	$(BIN)/sekimori bench console --keep /var/tmp/sekimori-console-bench

clean:
	rm -rf $(VENV) build src/*.egg-info
