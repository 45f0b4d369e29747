# The two commands a new user runs are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit bench bench-client bench-smoke lint clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	./scripts/ensure-system-deps.sh
	$(BIN)/python -m pytest -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

demo: $(STAMP)
	./scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/storage.py

# set/get throughput and latency through the client against a real replica server process
bench-client: $(STAMP)
	$(BIN)/python bench/client.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean-venv:
	rm -rf $(VENV)
