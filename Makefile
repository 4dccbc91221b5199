# Everything a newcomer needs: `make run` and `make test` on a machine with Python 3.11+ and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-stamp
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench soak failover-drill clean

# Python 3.11's own pip (22.3+) installs an editable pyproject project: no upgrade to wait for.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# What running needs, and no more: a first `make run` does not wait for the test and lint tools, nor
# for byte-compiling every module installed (phonenumbers alone has thousands); Python compiles the
# ones the server imports as it imports them.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile -e .
	touch $(RUN_STAMP)

# Everything: the runtime and the dev extra (pytest, ruff, mypy, schemathesis, selenium, ...).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)  ## start the server on the embedded PostgreSQL, with a dev client and curl lines; readable log lines
	CANOPY_SVC_LOG_FORMAT=$${CANOPY_SVC_LOG_FORMAT:-text} $(BIN)/canopy-svc serve --dev

test: $(STAMP)  ## lint, format check and type-check, then the whole suite on a real (embedded) PostgreSQL
	$(BIN)/ruff check canopy_svc tests
	$(BIN)/ruff format --check canopy_svc tests
	$(BIN)/mypy
	$(BIN)/pytest

soak: $(STAMP)  ## 30,000 mixed requests on one worker (own embedded PostgreSQL); fails if RSS grows >= 10 MB
	$(BIN)/python tests/soak.py --requests 30000 --seconds 600 --max-growth-mb 10

failover-drill: $(STAMP)  ## pg_auto_failover (monitor, primary, sync secondary) in a temp folder: SIGKILL of the primary, then a switchover, under load; fails on any acknowledged write lost or doubled; ~1-1.5 min; installs pg_auto_failover (apt, as root) if missing
	$(BIN)/python tests/failover_drill.py

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## pgbench ceiling, then wrk on three data shapes (1M unique, 1M repeated, fresh), access log on, targets PASS/FAIL, then webhook deliveries (BENCH_ONLY=webhooks: that part alone); ~17 min; see BENCHMARKS.md
	@command -v wrk >/dev/null 2>&1 || { echo "make bench needs wrk (HTTP load generator): sudo apt-get install -y wrk" >&2; exit 1; }
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check canopy_svc tests
	$(BIN)/ruff format --check canopy_svc tests

format: $(STAMP)
	$(BIN)/ruff format canopy_svc tests
	$(BIN)/ruff check --fix canopy_svc tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
