# Everything a fresh clone needs: `make run` starts a receiver, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pgsyslog serve --udp 127.0.0.1:5514 --tcp 127.0.0.1:5514

# Two workers (pytest-xdist), each test file whole on one of them: a file's module fixtures
# (the packaging tests' install) are made once. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check pgsyslog tests bench
	$(BIN)/mypy

check: lint test

bench: $(STAMP)
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
