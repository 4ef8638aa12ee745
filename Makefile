# selfpowered: `make test` sets everything up on a fresh machine, then runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.selfpowered-setup

.PHONY: setup test test-fast lint demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

test: setup
	$(PY) -m pytest -q

test-fast: setup  ## tiny random models only, no packaged weights
	$(PY) -m pytest -q -m "not assets and not slow"

demo: setup  ## the main job: vanilla vs self-powered LSM, measured (DEMO_ARGS="--retrain" for the whole pipeline)
	$(VENV)/bin/selfpowered demo $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
