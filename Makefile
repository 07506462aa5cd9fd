# Two commands matter: `make run` and `make test`. Both bootstrap .venv from pinned requirements.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint typecheck unit cfn-lint bench soak sam-build sam-validate clean

$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

run: $(STAMP)          ## the local stack: moto server, sandbox PowerLeads, gateway, poller; keeps serving
	$(BIN)/python -m dev.run

demo: $(STAMP)         ## like run, but exits 0 once the demo records have arrived
	$(BIN)/python -m dev.run --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/shared/appointment_enricher functions dev bench

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

test: lint typecheck cfn-lint unit

bench: $(STAMP)        ## writes BENCHMARKS.md (not part of `make test`)
	$(BIN)/python -m bench.run

soak: $(STAMP)         ## 10,000 webhooks with faults through the local stack
	$(BIN)/python -m dev.soak --events 10000

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
