# usersync: `make run` serves the API locally, `make test` runs every check. No Docker, no AWS account.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FN ?= webhook
EVENT ?= events/webhook-user-created.json

.PHONY: help venv run test lint typecheck cfn-lint unit bench build deploy events invoke reconcile clean

help:
	@echo "make run      serve the whole API on http://127.0.0.1:3000 (moto, dev keys; no Docker, no AWS)"
	@echo "make test     lint, type-check, cfn-lint and the whole test suite, offline"
	@echo "make bench    benchmarks (bench/), ratios against baselines measured in the same run"
	@echo "make events   regenerate events/ with fresh signatures and tokens"
	@echo "make invoke FN=webhook EVENT=events/...json   invoke a handler in-process"
	@echo "make reconcile ARGS='--table T [--dry-run] [--prune]'   backfill/repair from Clerk (CLERK_SECRET_KEY)"
	@echo "make build / make deploy   sam build / sam deploy (needs AWS credentials)"

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

typecheck: $(STAMP)
	$(BIN)/mypy

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

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

build: $(STAMP)
	$(BIN)/sam build

deploy: build
	$(BIN)/sam deploy

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
