# Tally: `make demo` to try it, `make test` to prove it. Both set themselves up.
SHELL := /bin/bash
UV := $(shell scripts/ensure-uv.sh)
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# CI builds the test database once per run; locally it is kept between runs.
PYTEST_DB := $(if $(CI),--create-db,--reuse-db)
# Two test processes, each with its own PostgreSQL and Redis database: CI has two cores.
TEST_WORKERS ?= 2

.PHONY: install demo test soak soak-cluster lint bench screenshots clean

install:
	$(UV) sync --frozen --quiet

demo: export DJANGO_DEBUG = true
demo: export TALLY_DEMO = true
demo: install
	$(PY) manage.py migrate --no-input -v0
	@echo
	@echo "  Tally is running at http://$(HOST):$(PORT)/"
	@echo "  Owner:  owner@example.com  / tally-demo-2026"
	@echo "  Member: member@example.com / tally-demo-2026"
	@echo "  Staff:  staff@example.com  / tally-demo-2026  (Django admin at /admin/)"
	@echo "  Stripe simulator: http://127.0.0.1:12111/_sim/  (objects, events, webhook deliveries)"
	@echo
	HOST=$(HOST) PORT=$(PORT) scripts/demo.sh

test: install
	scripts/ensure-services.sh
	$(PY) -m ruff check .
	# The layers of the README: imports point downwards only, stripe_sim stands alone.
	.venv/bin/lint-imports
	DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run
	# The published OpenAPI schema is the API's contract: valid, and no warning tolerated.
	DATABASE_URL=sqlite:///:memory: $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(PY) -m pytest $(PYTEST_DB) -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The lifecycle machine for as long as asked: SOAK_EXAMPLES examples of SOAK_STEPS steps, from
# MACHINE_SEED (a random seed, printed, when unset). A failure prints its seed and its steps.
SOAK_EXAMPLES ?= 2000
SOAK_STEPS ?= 40
soak: install
	scripts/ensure-services.sh
	MACHINE_PROFILE=soak SOAK_EXAMPLES=$(SOAK_EXAMPLES) SOAK_STEPS=$(SOAK_STEPS) \
		$(PY) -m pytest $(PYTEST_DB) -q -x -s -p no:randomly tests/invariants/test_lifecycle_machine.py

# Tally as a cluster: two gunicorn instances, two Celery workers and beat, one PostgreSQL and one
# Redis, the Stripe simulator with a fault schedule, 1,000 organizations under a mixed load for
# SOAK_CLUSTER_SECONDS; then every money invariant (bench/cluster_soak.py). Not part of `make test`.
# Its database is emptied at each start: one of its own.
SOAK_CLUSTER_SECONDS ?= 60
SOAK_CLUSTER_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_soak_cluster
soak-cluster: install
	scripts/ensure-services.sh
	DATABASE_URL=$(SOAK_CLUSTER_DATABASE_URL) SOAK_CLUSTER_SECONDS=$(SOAK_CLUSTER_SECONDS) \
		$(PY) bench/cluster_soak.py

lint: install
	$(PY) -m ruff check .
	.venv/bin/lint-imports

bench: install
	scripts/ensure-services.sh --bench
	@for script in bench/[!_]*.py; do \
		[ "$$script" = bench/cluster_soak.py ] && continue; \
		echo "== $$script"; $(PY) $$script || exit 1; done

# Refresh the README's screenshots from the browser tests.
screenshots: install
	scripts/ensure-services.sh
	TALLY_SCREENSHOTS=docs/screenshots $(PY) -m pytest $(PYTEST_DB) -m browser

clean:
	rm -rf .venv staticfiles demo.sqlite3 test-artifacts .stripe_sim_state.json .stripe_sim.log
