# One virtualenv, made on first use; every target installs what it needs itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test check demo bench chaos clean flower up

$(STAMP): pyproject.toml
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# The fast layer: steps and Redis state in-process (no Celery worker, no network), in seconds.
FAST_TESTS := tests/test_pipeline_decisions.py tests/test_slots.py tests/test_polling.py \
              tests/test_idempotent_steps.py tests/test_bad_input.py

check: install
	$(PY) -m pytest -q -p no:cacheprovider $(FAST_TESTS)

demo: install
	$(PY) -m qjm.demo

bench: install
	$(PY) bench/run.py

# Job sets under a seeded random schedule of faults, then a scorecard (exit 1 if a goal fails).
# CHAOS_SECONDS=180 (fault window), CHAOS_SEED=N (replay a run); see bench/chaos.py.
chaos: install
	$(PY) bench/chaos.py

# Loopback only; with QJM_FLOWER_USER/QJM_FLOWER_PASSWORD set it asks for them.
flower: install
	$(VENV)/bin/qjm flower --no-auth --address=127.0.0.1

up: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho -f deploy/Procfile -d . start

clean:
	rm -rf $(VENV) *.egg-info
