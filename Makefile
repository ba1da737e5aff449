# Every target bootstraps its own virtualenv from pyproject.toml: on a fresh machine,
# `make run` and `make test` are all it takes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-all lint docker-engine fidelity generator-limit gate-check gate-power gate-power-auto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,locust]'
	touch $(STAMP)

## run: the quick scenario (every strategy, 5 s of load each: ~1.5 minutes) on the embedded
## PostgreSQL; the result's HTML report (charts, opens offline) is written beside it as
## results/NAME.html. connbench's modules are byte-compiled first, as pip does for a regular
## install: where PYTHONDONTWRITEBYTECODE is set (many CI images), nothing else writes them,
## and every command would compile them again (0.1-0.2 s of its start).
run: $(STAMP)
	$(BIN)/python -m compileall -q connbench
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

## docker-engine: Podman serving the Docker API and a local PostgreSQL image for
## `--postgres docker` (as root: ~2.5 minutes the first time, seconds after); prints the
## `export` lines a shell needs. PG_MAJOR=16 for another version the distribution ships.
PG_MAJOR ?= 15
docker-engine:
	./scripts/docker-engine.sh $(PG_MAJOR)

## test: lint, then every test but the slow ones (each has a shorter twin here), on real
## Postgres, real uvicorn, real PgBouncer, a real Chromium for the HTML report and a real
## container engine for the docker backend (installed or prepared when missing and we are
## root; where they cannot be, their tests are skipped with the reason). On TEST_WORKERS
## pytest-xdist workers: the tests mostly wait (servers starting, measured windows), so more
## workers than cores overlap that (tests/parallel.py keeps together what must share one).
TEST_WORKERS ?= 4
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup
test: lint
	./scripts/install-pgbouncer.sh
	./scripts/install-chromium.sh
	./scripts/docker-engine.sh $(PG_MAJOR) >/dev/null
	$(BIN)/python -m pytest -m "not slow" $(PARALLEL)

## test-fast: the edit loop: every test that starts no process and no server (under a minute
## on a quiet machine); a test that starts one without the `integration` mark fails here
test-fast: $(STAMP)
	CONNBENCH_TEST_TIER=fast $(BIN)/python -m pytest -q -m "not docker and not slow and not integration"

## test-all: `make test` and the slow ones (they run the README's commands as written, about
## 10 more minutes)
test-all: lint
	./scripts/install-pgbouncer.sh
	./scripts/install-chromium.sh
	./scripts/docker-engine.sh $(PG_MAJOR) >/dev/null
	$(BIN)/python -m pytest $(PARALLEL)

## fidelity: connbench's load generator against wrk on the same apps (installs wrk if it can)
fidelity: $(STAMP)
	./benchmarks/install-tools.sh wrk
	$(BIN)/python benchmarks/fidelity.py

## generator-limit: connbench's generator and wrk against nginx, one core each, so that the
## client is the bottleneck: closed and open model at 8-1,024 connections (installs wrk and
## nginx if it can; ~25 minutes on an idle 2-core machine)
generator-limit: $(STAMP)
	./benchmarks/install-tools.sh wrk nginx
	$(BIN)/python benchmarks/generator_limit.py

## gate-check: A/A comparisons must pass the CI gate, real regressions must fail it (~20 min)
gate-check: $(STAMP)
	$(BIN)/python benchmarks/gate_check.py

## gate-power: the paired A/B gate on A/A and on 5-25 % injected loss (~1 h; a benchmark)
gate-power: $(STAMP)
	$(BIN)/python benchmarks/gate_power.py

## gate-power-auto: the same with --repeat auto (rounds until decided), quiet then with a
## seeded noisy neighbour beside every trial (several hours on a busy machine; a benchmark)
gate-power-auto: $(STAMP)
	-$(BIN)/python benchmarks/gate_power.py --auto
	-$(BIN)/python benchmarks/gate_power.py --auto --noise 1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .docker-engine.env
