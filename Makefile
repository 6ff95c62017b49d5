# usersync: `make run` serves the API locally, `make test` runs every check. No Docker, no AWS account.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# aws-sam-cli pins exact boto3/click versions and an older pydantic: it lives in its own venv so the
# project's venv keeps the versions the layer actually ships (~1 min, ~340 MB, installed once).
SAM_VENV := $(VENV)/sam-cli
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
FN ?= webhook
EVENT ?= events/webhook-user-created.json
# Wheels of the layer's pinned requirements for Python 3.12, fetched from PyPI once so the layer build
# test and the bench build offline (aarch64: what is deployed; x86_64: the bench on an x86 machine).
WHEELS := $(VENV)/wheels
WHEELS_STAMP := $(WHEELS)/.downloaded
# A working python3.12 (layers/shared/Makefile finds it, or says what to install).
FIND_PYTHON312 = $(MAKE) -s --no-print-directory -C layers/shared print-python312

.PHONY: help venv run test lint lint-imports typecheck cfn-lint unit bench build deploy next-steps events invoke reconcile clean wheels docs

help:
	@echo "make run      serve the whole API on http://127.0.0.1:3000 (moto, dev keys; no Docker, no AWS)"
	@echo "              ROUTE_REQUIREMENTS=routes.json (or inline JSON): who may call which route (docs/authorization.md)"
	@echo "make test     lint, type-check, cfn-lint and the whole test suite, offline"
	@echo "make docs     build the docs site (mkdocs build --strict) into site/"
	@echo "make bench    benchmarks (bench/), ratios against baselines measured in the same run,"
	@echo "              including cold starts of the built layer in deployed mode (python3.12)"
	@echo "make events   regenerate events/ with fresh signatures and tokens"
	@echo "make invoke FN=webhook EVENT=events/...json   invoke a handler in-process"
	@echo "make reconcile ARGS='--table T [--dry-run] [--prune]'   backfill/repair from Clerk (CLERK_SECRET_KEY)"
	@echo "make build / make deploy   sam build / sam deploy (needs AWS credentials), then the next steps"
	@echo "make next-steps   print the Clerk setup with the deployed stack's URLs and secret ARN"

$(STAMP): pyproject.toml layers/shared/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r layers/shared/requirements.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# ROUTE_REQUIREMENTS=file.json (or inline JSON): who may call which route (template parameter RouteRequirements).
run: $(STAMP)
	$(BIN)/usersync-dev serve $(if $(ROUTE_REQUIREMENTS),--route-requirements '$(ROUTE_REQUIREMENTS)')

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory lint-imports

# The layer's import direction and independences ([tool.importlinter] in pyproject.toml).
lint-imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

# mypy --strict over functions/, layers/, local/, bench/ and tests/ (the list is in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli>=1.130,<2'
	touch $(SAM_STAMP)

cfn-lint: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

$(WHEELS_STAMP): layers/shared/requirements.txt | $(STAMP)
	py=$$($(FIND_PYTHON312)) && for platform in manylinux2014_aarch64 manylinux2014_x86_64; do \
	  "$$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	    --implementation cp --python-version 3.12 --platform $$platform \
	    -d $(WHEELS)/$$platform -r layers/shared/requirements.txt || exit 1; done
	touch $(WHEELS_STAMP)

wheels: $(WHEELS_STAMP)

test: lint typecheck cfn-lint wheels docs
	$(BIN)/pytest

# The docs site (mkdocs.yml, docs/): --strict fails on a broken link or anchor, or a page left out of the nav
# (not --quiet: it drops the warnings --strict counts). The variable mutes Material's end-of-life banner.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Deployed mode: builds the layer like `sam build` (python3.12, bytecode), runs fresh processes.
bench: $(STAMP) $(WHEELS_STAMP)
	PYTHON312="$$($(FIND_PYTHON312))" $(BIN)/python -m bench

events: $(STAMP)
	$(BIN)/usersync-dev events

invoke: $(STAMP)
	$(BIN)/usersync-dev invoke $(FN) $(EVENT)

reconcile: $(STAMP)
	$(BIN)/python -m usersync_dev.reconcile_cmd $(ARGS)

# Native build (no Docker) for arm64: the functions need python3.12 on PATH (a working one is put first,
# a failing pyenv shim is skipped); the layer's Makefile fetches aarch64 wheels and compiles bytecode.
build: $(SAM_STAMP)
	py=$$($(FIND_PYTHON312)) && PYTHON312="$$py" PATH="$$(dirname "$$py"):$$PATH" $(SAM) build

# Guided until samconfig.toml sets ClerkWebhookSecretArn (the guided run offers to save it there).
# Then prints the Clerk setup with the stack's real values (DescribeStacks with your credentials).
deploy: build $(STAMP)
	if grep -Eq '^[^#]*ClerkWebhookSecretArn' samconfig.toml; then $(SAM) deploy; else $(SAM) deploy --guided; fi
	$(BIN)/usersync-dev next-steps

next-steps: $(STAMP)
	$(BIN)/usersync-dev next-steps $(ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis site
