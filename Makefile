# Every target bootstraps its own virtualenv from pyproject.toml: on a fresh machine,
# `make run` and `make test` are all it takes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-all lint fidelity gate-check gate-power clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,locust]'
	touch $(STAMP)

## run: the quick scenario (every strategy, 5 s of load each: ~1.5 minutes) on the embedded
## PostgreSQL; the result's HTML report (charts, opens offline) is written beside it as
## results/NAME.html
run: $(STAMP)
	$(BIN)/connbench run scenarios/quick.toml --html

CHECKED := connbench tests benchmarks scripts

## lint: ruff's rules, ruff's formatting and strict mypy over the package, tests and benchmarks;
## actionlint over the workflows (and through them the action, action.yml), ShellCheck over
## the action's script
lint: $(STAMP)
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy --strict $(CHECKED)
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck .github/workflows/*.yml
	$(BIN)/shellcheck scripts/ab-gate.sh

## test: lint, then every test that needs no Docker engine (real Postgres, real uvicorn,
## real PgBouncer and a real Chromium for the HTML report: installed from the distribution
## when missing and we are root), but the slow ones (each has a shorter twin here)
test: lint
	./scripts/install-pgbouncer.sh
	./scripts/install-chromium.sh
	$(BIN)/python -m pytest -m "not docker and not slow"

## test-fast: the edit loop: every test that starts no process and no server (under a minute
## on a quiet machine); a test that starts one without the `integration` mark fails here
test-fast: $(STAMP)
	CONNBENCH_TEST_TIER=fast $(BIN)/python -m pytest -q -m "not docker and not slow and not integration"

## test-all: lint, then every test, Docker and slow ones included (needs a Docker engine;
## the slow ones run the README's commands as written, about 10 more minutes)
test-all: lint
	./scripts/install-pgbouncer.sh
	./scripts/install-chromium.sh
	$(BIN)/python -m pytest

## fidelity: connbench's load generator against wrk on the same apps (installs wrk if it can)
fidelity: $(STAMP)
	@command -v wrk >/dev/null || ./benchmarks/install-wrk.sh
	$(BIN)/python benchmarks/fidelity.py

## gate-check: A/A comparisons must pass the CI gate, real regressions must fail it (~20 min)
gate-check: $(STAMP)
	$(BIN)/python benchmarks/gate_check.py

## gate-power: the paired A/B gate on A/A and on 5-25 % injected loss (~1 h; a benchmark)
gate-power: $(STAMP)
	$(BIN)/python benchmarks/gate_power.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
