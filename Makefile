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
# Every dev/test dependency comes from a hash-pinned lock written by uv (`make lock`); the SAM CLI has its own.
LOCK := requirements-dev.lock
SAM_LOCK := requirements-sam.lock
UV := $(BIN)/uv
# One universal lock (environment markers) for 3.11, the dev venv and CI, and any later Python (3.13).
UV_COMPILE = $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
# `make test`: two workers on 2 cores; tests sharing an expensive module fixture carry one xdist_group.
PYTEST_PARALLEL := -n auto --dist loadgroup
COVERAGE := --cov=usersync --cov-branch --cov-report=term
FN ?= webhook
EVENT ?= events/webhook-user-created.json
# Wheels of the layer's pinned requirements for the runtime's Python, fetched from PyPI once so the layer
# build test and the bench build offline (aarch64: what is deployed; x86_64: the bench on an x86 machine).
# The stamp names the runtime version, so moving the runtime fetches that version's wheels again.
RUNTIME_VERSION := $(shell sed -n 's/^PYTHON_RUNTIME_VERSION := //p' layers/shared/Makefile)
WHEELS := $(VENV)/wheels
WHEELS_STAMP := $(WHEELS)/.downloaded-$(RUNTIME_VERSION)
# The Lambda runtime's Python version is set once, in layers/shared/Makefile (PYTHON_RUNTIME_VERSION);
# FIND_RUNTIME_PYTHON prints a working interpreter of that version (or says what to install).
FIND_RUNTIME_PYTHON = $(MAKE) -s --no-print-directory -C layers/shared print-runtime-python

.PHONY: help venv lock check fast sam-cli run test lint lint-imports typecheck cfn-lint unit bench build deploy next-steps events invoke reconcile clean wheels docs

help:
	@echo "make run      serve the whole API on http://127.0.0.1:3000 (moto, dev keys; no Docker, no AWS)"
	@echo "              ROUTE_REQUIREMENTS=routes.json (or inline JSON): who may call which route (docs/authorization.md)"
	@echo "make check    the edit loop: ruff, mypy and the fast tests (not marked slow), side by side"
	@echo "make test     everything CI runs: static checks side by side, then the whole suite on all cores"
	@echo "              with the layer's branch coverage (HYPOTHESIS_PROFILE=deep: 10x the examples)"
	@echo "make lock     re-resolve requirements-dev.lock / requirements-sam.lock (LOCK_ARGS=--upgrade)"
	@echo "make docs     build the docs site (mkdocs build --strict) into site/"
	@echo "make bench    benchmarks (bench/), ratios against baselines measured in the same run,"
	@echo "              including cold starts of the built layer in deployed mode (python$(RUNTIME_VERSION))"
	@echo "make events   regenerate events/ with fresh signatures and tokens"
	@echo "make invoke FN=webhook EVENT=events/...json   invoke a handler in-process"
	@echo "make reconcile ARGS='--table T [--dry-run] [--prune]'   backfill/repair from Clerk (CLERK_SECRET_KEY)"
	@echo "make build / make deploy   sam build / sam deploy (needs AWS credentials), then the next steps"
	@echo "make next-steps   print the Clerk setup with the deployed stack's URLs and secret ARN"

# uv itself is installed by pip from its hashed lines in the lock; then uv makes the venv exactly the
# lock (hashes required) and adds the project, editable, without resolving anything.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed -n '/^uv==/,/[^\\]$$/p' $(LOCK) > $(VENV)/uv-requirement.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/uv-requirement.txt
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The layer's runtime pins (layers/shared/requirements.txt) constrain the dev lock, so tests run the
# versions the layer ships; tests/unit/test_lock.py fails when the two disagree.
lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml --extra dev --constraint layers/shared/requirements.txt -o $(LOCK)
	$(UV_COMPILE) requirements-sam.in -o $(SAM_LOCK)

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

$(SAM_STAMP): $(SAM_LOCK) | $(STAMP)
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(UV) pip sync --quiet --python $(SAM_VENV)/bin/python --require-hashes $(SAM_LOCK)
	touch $(SAM_STAMP)

sam-cli: $(SAM_STAMP)

# `sam validate --lint` runs once, in tests/infrastructure/test_sam_build.py (without credentials).
cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# The layer's closure and what a function ships itself (functions/*/requirements.txt: the reconcile
# function's durable SDK), so every `sam build` of the template works offline from these wheels.
BUILD_REQUIREMENTS := layers/shared/requirements.txt $(wildcard functions/*/requirements.txt)

$(WHEELS_STAMP): $(BUILD_REQUIREMENTS) | $(STAMP)
	py=$$($(FIND_RUNTIME_PYTHON)) && for platform in manylinux2014_aarch64 manylinux2014_x86_64; do \
	  "$$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	    --implementation cp --python-version $(RUNTIME_VERSION) --platform $$platform \
	    -d $(WHEELS)/$$platform $(addprefix -r ,$(BUILD_REQUIREMENTS)) || exit 1; done
	touch $(WHEELS_STAMP)

wheels: $(WHEELS_STAMP)

# The edit loop: ruff, mypy and the tests not marked slow, side by side (a failure in any fails check).
check: $(STAMP) $(SAM_STAMP)
	$(MAKE) --no-print-directory -j3 --output-sync=target lint typecheck fast

fast: $(STAMP) $(SAM_STAMP)
	$(BIN)/pytest -q -m 'not slow' $(PYTEST_PARALLEL)

# What CI runs (.ci/run): the static checks and installs side by side, then every test on all cores.
test: $(STAMP)
	$(MAKE) --no-print-directory -j6 --output-sync=target lint typecheck cfn-lint docs wheels sam-cli
	$(BIN)/pytest $(PYTEST_PARALLEL) $(COVERAGE)

# The docs site (mkdocs.yml, docs/): --strict fails on a broken link or anchor, or a page left out of the nav
# (not --quiet: it drops the warnings --strict counts). The variable mutes Material's end-of-life banner.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Deployed mode: builds the layer like `sam build` (the runtime's Python, bytecode), runs fresh processes.
bench: $(STAMP) $(WHEELS_STAMP)
	RUNTIME_PYTHON="$$($(FIND_RUNTIME_PYTHON))" $(BIN)/python -m bench

events: $(STAMP)
	$(BIN)/usersync-dev events

invoke: $(STAMP)
	$(BIN)/usersync-dev invoke $(FN) $(EVENT)

reconcile: $(STAMP)
	$(BIN)/python -m usersync_dev.reconcile_cmd $(ARGS)

# Native build (no Docker) for arm64: the functions need python$(RUNTIME_VERSION) on PATH (a working one is put
# first, a failing pyenv shim is skipped); the layer's Makefile fetches aarch64 wheels and compiles bytecode.
build: $(SAM_STAMP)
	py=$$($(FIND_RUNTIME_PYTHON)) && RUNTIME_PYTHON="$$py" PATH="$$(dirname "$$py"):$$PATH" $(SAM) build

# Guided until samconfig.toml sets ClerkWebhookSecretArn (the guided run offers to save it there).
# Then prints the Clerk setup with the stack's real values (DescribeStacks with your credentials).
deploy: build $(STAMP)
	if grep -Eq '^[^#]*ClerkWebhookSecretArn' samconfig.toml; then $(SAM) deploy; else $(SAM) deploy --guided; fi
	$(BIN)/usersync-dev next-steps

next-steps: $(STAMP)
	$(BIN)/usersync-dev next-steps $(ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.* site
