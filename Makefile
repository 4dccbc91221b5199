# Everything a newcomer needs: `make run` and `make test` on a machine with Python 3.11+ and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start the server on the embedded PostgreSQL, with a dev client and curl lines
	$(BIN)/canopy-svc serve --dev

test: $(STAMP)  ## lint, then the whole suite on a real (embedded) PostgreSQL
	$(BIN)/ruff check canopy_svc tests
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check canopy_svc tests
	$(BIN)/ruff format --check canopy_svc tests

format: $(STAMP)
	$(BIN)/ruff format canopy_svc tests
	$(BIN)/ruff check --fix canopy_svc tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
