# Every target bootstraps its own virtualenv from pyproject.toml: on a fresh machine,
# `make run` and `make test` are all it takes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint fidelity gate-check gate-power clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the quick scenario (every strategy, ~40 s) on the embedded PostgreSQL
run: $(STAMP)
	$(BIN)/connbench run scenarios/quick.toml

## test: lint, types, then every test that needs no Docker engine (real Postgres, real uvicorn,
## real PgBouncer: installed from the distribution when missing and we are root)
test: $(STAMP)
	./scripts/install-pgbouncer.sh
	$(BIN)/ruff check connbench tests benchmarks
	$(BIN)/mypy
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
