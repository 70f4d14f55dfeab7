# One virtualenv, made on first use; every target installs what it needs itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test check lint docs soak demo bench chaos clean flower up cluster

$(STAMP): pyproject.toml
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)

# Everything: lint and types, then every test (real Redis, real workers, the emulator, faults).
# Test files run side by side in 3 processes: most of their time is waiting on workers.
test: install lint docs
	$(PY) -m pytest -q -p no:cacheprovider -n 3 --dist loadfile

# ruff and mypy, configured in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check qjm workers tests bench tools
	$(VENV)/bin/mypy

# The fast layer: steps, the reconciler and Redis state in-process (no Celery worker, no network).
FAST_TESTS := tests/test_pipeline_decisions.py tests/test_reconciler.py tests/test_slots.py \
              tests/test_polling.py tests/test_idempotent_steps.py tests/test_bad_input.py tests/test_structure.py

check: install
	$(PY) -m pytest -q -p no:cacheprovider $(FAST_TESTS)
	$(MAKE) docs

# The docs site into site/ (opens from the file system): the browser scripts from the npm registry
# (tools/vendor_js.py), the reference pages from the code (tools/gen_docs.py), then a strict build.
docs: install
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	$(PY) tools/vendor_js.py
	$(PY) tools/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The fault tests, SOAK times in a row (default 10), with passes per test.
SOAK ?= 10
soak: install
	$(PY) tests/soak.py $(SOAK)

demo: install
	$(PY) -m qjm.ops.demo

bench: install
	$(PY) bench/run.py

# Job sets under a seeded random schedule of faults, then a scorecard (exit 1 if a goal fails).
# CHAOS_SECONDS=180 (fault window), CHAOS_SEED=N (replay a run); see bench/chaos.py.
chaos: install
	$(PY) bench/chaos.py

# A Redis Cluster of 3 masters and 3 replicas on free loopback ports, until Ctrl-C (tests/redis_cluster.py);
# it prints the QJM_REDIS_CLUSTER/QJM_REDIS_URL to export.
cluster: install
	$(PY) -m tests.redis_cluster

# Loopback only; with QJM_FLOWER_USER/QJM_FLOWER_PASSWORD set it asks for them.
flower: install
	$(VENV)/bin/qjm flower --no-auth --address=127.0.0.1

up: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho -f deploy/Procfile -d . start

clean:
	rm -rf $(VENV) *.egg-info site docs/assets/vendor docs/reference/settings.md docs/reference/cli.md docs/reference/lifecycle.md
