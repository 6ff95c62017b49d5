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

.PHONY: help venv run test lint typecheck cfn-lint unit bench build deploy next-steps events invoke reconcile clean

help:
	@echo "make run      serve the whole API on http://127.0.0.1:3000 (moto, dev keys; no Docker, no AWS)"
	@echo "make test     lint, type-check, cfn-lint and the whole test suite, offline"
	@echo "make bench    benchmarks (bench/), ratios against baselines measured in the same run"
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

run: $(STAMP)
	$(BIN)/usersync-dev serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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

test: lint typecheck cfn-lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

events: $(STAMP)
	$(BIN)/usersync-dev events

invoke: $(STAMP)
	$(BIN)/usersync-dev invoke $(FN) $(EVENT)

reconcile: $(STAMP)
	$(BIN)/python -m usersync_dev.reconcile_cmd $(ARGS)

# Native build (no Docker) for arm64: needs python3.12 on PATH; pip fetches aarch64 wheels.
build: $(SAM_STAMP)
	$(SAM) build

# Guided until samconfig.toml sets ClerkWebhookSecretArn (the guided run offers to save it there).
# Then prints the Clerk setup with the stack's real values (DescribeStacks with your credentials).
deploy: build $(STAMP)
	if grep -Eq '^[^#]*ClerkWebhookSecretArn' samconfig.toml; then $(SAM) deploy; else $(SAM) deploy --guided; fi
	$(BIN)/usersync-dev next-steps

next-steps: $(STAMP)
	$(BIN)/usersync-dev next-steps $(ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
