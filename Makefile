# Two commands matter: `make run` and `make test`. Both bootstrap .venv from pinned requirements.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint typecheck unit integration e2e cfn-lint bench soak soak-reconcile sam-build sam-validate clean

# The dev package (dev/, editable), then the operations CLI from its own package (cli/, editable:
# .venv/bin/plenrich); in this order, since reinstalling the dev package removes the plenrich
# script an older checkout's dev package installed.
$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml cli/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e ./cli 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e ./cli
	@touch $@

run: $(STAMP)          ## the local stack: moto server, sandbox PowerLeads, gateway, poller; keeps serving
	$(BIN)/python -m dev.stack.run $(ARGS)

demo: $(STAMP)         ## like run, but exits 0 once the demo records have arrived
	$(BIN)/python -m dev.stack.run --demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/shared/appointment_enricher functions dev bench cli/plenrich

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

# Tests by kind: unit (no sockets, no servers), integration (moto server + sandbox over real
# HTTP, the soak and bench smokes), e2e (the whole local stack as `make demo` runs it).
unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e

test: lint typecheck cfn-lint unit integration e2e

bench: $(STAMP)        ## writes BENCHMARKS.md (not part of `make test`)
	$(BIN)/python -m bench.run

soak: $(STAMP)         ## the soaks below: every webhook accounted for, every lost change recovered, a publish outage + DLQ redrive announcing each change once
	$(BIN)/python -m dev.soak.webhooks --events 10000 --intake-faults --sender highlevel --foreign 20
	$(BIN)/python -m dev.soak.webhooks --reconcile --events 2000
	$(BIN)/python -m dev.soak.publish_outage --appointments 200 --timeout 1200

soak-reconcile: $(STAMP)  ## the second half of `make soak` alone: 2,000 changes, 5 % of webhooks never sent + an intake outage; one reconcile pass recovers them
	$(BIN)/python -m dev.soak.webhooks --reconcile --events 2000

clean:
	rm -rf $(VENV) .venv-sam .aws-sam .mypy_cache .ruff_cache .pytest_cache

# SAM CLI lives in its own venv (.venv-sam, Python 3.13) pinned by requirements-sam.txt: `sam build`
# needs a python3.13 on PATH for the python3.13 BuildMethod, and the venv's bin/ provides it.
# Override the interpreter with PYTHON313=/path/to/python3.13; pyenv installs are found too.
SAM_VENV   := .venv-sam
SAM_REGION ?= us-east-1
define SAM_BOOTSTRAP
	@set -e; \
	if [ ! -f $(SAM_VENV)/.installed ] || [ requirements-sam.txt -nt $(SAM_VENV)/.installed ]; then \
	  py="$${PYTHON313:-}"; \
	  if [ -z "$$py" ]; then \
	    if python3.13 -c '' >/dev/null 2>&1; then py=python3.13; \
	    elif command -v pyenv >/dev/null 2>&1 && v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$$' | tail -n 1) && [ -n "$$v" ]; then \
	      py="$$(pyenv root)/versions/$$v/bin/python3.13"; fi; \
	  fi; \
	  if [ -z "$$py" ] || ! "$$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1; then \
	    echo "error: Python 3.13 is required for the SAM CLI venv (the template builds for python3.13)." >&2; \
	    echo "       Install it (e.g. 'pyenv install 3.13') or run with PYTHON313=/path/to/python3.13." >&2; \
	    exit 1; \
	  fi; \
	  rm -rf $(SAM_VENV); \
	  "$$py" -m venv $(SAM_VENV); \
	  $(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt; \
	  touch $(SAM_VENV)/.installed; \
	fi
endef

sam-validate:          ## sam validate --lint (offline; no AWS account needed)
	$(SAM_BOOTSTRAP)
	SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-offline} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-offline} \
	  PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam validate --lint --region $(SAM_REGION)

sam-build:             ## sam build into .aws-sam/build (layer wheels for arm64 from PyPI)
	$(SAM_BOOTSTRAP)
	SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam build
