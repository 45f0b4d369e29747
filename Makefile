# The two commands a new user runs are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test unit bench bench-client bench-smoke lint clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP) lint
	./scripts/ensure-system-deps.sh
	$(BIN)/python -m pytest -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

demo: $(STAMP)
	./scripts/demo.sh

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# the storage benchmark, then every duplication scenario with the Redis baseline (~25 min);
# writes bench/results/*.json and the generated section of BENCHMARKS.md
bench: $(BENCH_STAMP)
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/suite.py

# every scenario for a few seconds, results in <tmp>/dupkv-bench-smoke (tests/bench runs it too)
bench-smoke: $(BENCH_STAMP)
	$(BIN)/python bench/suite.py --smoke

# set/get throughput and latency through the client against a real replica server process
bench-client: $(STAMP)
	$(BIN)/python bench/client.py

# ruff and mypy: part of `make test`, so CI fails on them too
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/dupkv

clean-venv:
	rm -rf $(VENV)
