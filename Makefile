# Two commands matter: `make run` and `make test`. Both bootstrap .venv from pinned requirements.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# A bare `make` lists the targets.
.DEFAULT_GOAL := help

.PHONY: help events run demo test lint typecheck unit integration e2e cfn-lint bench soak soak-reconcile soak-bulk sam-build sam-validate clean

# The dev package (dev/, editable), then the operations CLI from its own package (cli/, editable:
# .venv/bin/plenrich); in this order, since reinstalling the dev package removes the plenrich
# script an older checkout's dev package installed.
$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml cli/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "building $(VENV) from requirements-dev.txt (first run, or after they change; a few minutes)..." >&2
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e ./cli 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e ./cli
	@touch $@
	@echo "  $(VENV) ready" >&2

help:                  ## this list of targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z][a-zA-Z0-9_-]*:[^=]*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: $(STAMP)          ## the local stack: moto server, sandbox PowerLeads, gateway, poller; keeps serving
	$(BIN)/python -m dev.stack.run $(ARGS)

demo: $(STAMP)         ## like run, but exits 0 once the demo records have arrived
	$(BIN)/python -m dev.stack.run --demo $(ARGS)

lint: $(STAMP)         ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)    ## mypy --strict over the product, dev, bench and the CLI
	$(BIN)/mypy layers/shared/appointment_enricher functions dev bench cli/plenrich

cfn-lint: $(STAMP)     ## cfn-lint template.yaml
	$(BIN)/cfn-lint template.yaml

# Tests by kind: unit (no sockets, no servers), integration (moto server + sandbox over real
# HTTP, the soak and bench smokes), e2e (the whole local stack as `make demo` runs it).
unit: $(STAMP)         ## unit tests (no sockets, no servers)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)  ## integration tests (moto server + sandbox over real HTTP)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP)          ## end-to-end tests (the whole local stack as make demo runs it)
	$(BIN)/python -m pytest -q tests/e2e

test: lint typecheck cfn-lint unit integration e2e  ## lint, typecheck, cfn-lint, unit, integration and e2e

events: $(STAMP)       ## re-sign events/ (webhooks, apigw, sqs) with a fresh timestamp; OUT=DIR writes elsewhere
	$(BIN)/python -m dev.fakes.signing --write-events $(if $(OUT),--out $(OUT))

bench: $(STAMP)        ## writes BENCHMARKS.md (not part of `make test`)
	$(BIN)/python -m bench.run

soak: $(STAMP)         ## the soaks below: every webhook accounted for, every lost change recovered, a publish outage + DLQ redrive announcing each change once, related entities, a bulk action drained at the limit
	$(BIN)/python -m dev.soak.webhooks --events 10000 --intake-faults --sender highlevel --foreign 20
	$(BIN)/python -m dev.soak.webhooks --reconcile --events 2000
	$(BIN)/python -m dev.soak.publish_outage --appointments 200 --timeout 1200
	$(BIN)/python -m dev.soak.related  # ENRICH_RELATED all four: <= 1.2 upstream requests per record once warm
	$(BIN)/python -m dev.soak.bulk

soak-reconcile: $(STAMP)  ## the second half of `make soak` alone: 2,000 changes, 5 % of webhooks never sent + an intake outage; one reconcile pass recovers them
	$(BIN)/python -m dev.soak.webhooks --reconcile --events 2000

soak-bulk: $(STAMP)    ## 2,000 changes in one location + another location's traffic, at the upstream limit, 5 then 20 enricher processes
	$(BIN)/python -m dev.soak.bulk

clean:                 ## remove the venvs, build output and caches
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
	  echo "building $(SAM_VENV) for the SAM CLI with $$py (first run only; about a minute or two)..." >&2; \
	  rm -rf $(SAM_VENV); \
	  "$$py" -m venv $(SAM_VENV); \
	  echo "  installing requirements-sam.txt into $(SAM_VENV)..." >&2; \
	  $(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt; \
	  touch $(SAM_VENV)/.installed; \
	  echo "  $(SAM_VENV) ready" >&2; \
	fi
endef

sam-validate:          ## sam validate --lint (offline; no AWS account needed)
	$(SAM_BOOTSTRAP)
	SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-offline} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-offline} \
	  PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam validate --lint --region $(SAM_REGION)

sam-build:             ## sam build into .aws-sam/build (layer wheels for arm64 from PyPI)
	$(SAM_BOOTSTRAP)
	SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam build
