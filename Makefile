# Local development and CI entry points. Everything runs on loopback: no Docker, no cloud.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
REQS   := requirements/dev.txt apps/constraints.txt pyproject.toml $(wildcard apps/*/pyproject.toml)

.PHONY: help deps system-deps up down status lint test test-unit images bench scaling eval soak reconcile reconcile-compare redrive refit
# A bare `make` lists the targets instead of installing anything.
.DEFAULT_GOAL := help

## help: the targets and what each does
help:
	@sed -n 's/^## //p' $(firstword $(MAKEFILE_LIST))

# The Debian packages first: on a fresh machine `python3 -m venv` needs python3-venv.
$(STAMP): $(REQS) | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	# The policy pack's SDK pins an older protobuf than pulumi itself; it runs fine beside the newer one.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps pulumi-policy==1.21.0
	touch $(STAMP)

## deps: Debian packages (PostgreSQL server, Chromium) and the Python virtualenv
deps: system-deps $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

## up: start Postgres, the SQS/SNS endpoint, the index server and the apps; load and index the sample catalog
up: deps
	$(PY) -m devstack up

## down: stop everything `make up` started (data is kept under .local/)
down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi

## status: which parts of the `make up` stack run (pids), the UI address, and whether the index equals the table
status:
	$(PY) -m devstack status

## lint: ruff (pyflakes, complexity) and pyright, both configured in pyproject.toml
# PYRIGHT_PYTHON_IGNORE_WARNINGS: no look-up of pyright's newest release on PyPI.
lint: deps
	$(VENV)/bin/ruff check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(VENV)/bin/pyright

## test: lint, every test (unit, system against real local parts, browser, Pulumi mocks, SciFact quality gate), then make images
test: lint
	$(PY) -m pytest
	@if [ "$${SKIP_IMAGES:-0}" = "1" ]; then echo "SKIP_IMAGES=1: images not built"; else $(PY) -m devstack.images; fi

## images: build the three CPU images with podman and smoke-run each against a private local stack (docs/deploy.md)
images: deps
	$(PY) -m devstack.images

test-unit: deps
	$(PY) -m pytest tests/unit tests/infra

## eval: search quality end to end on a BEIR dataset (default SciFact beside the checkout), hybrid, semantic and
## keyword; fails when semantic is below MIN_NDCG or hybrid below MIN_HYBRID_NDCG
DATASET  ?= ../shared/data/beir-scifact
MIN_NDCG ?= 0.64008
MIN_HYBRID_NDCG ?= 0.72
eval: deps
	$(PY) -m benchmarks.evaluate $(DATASET) --min-ndcg $(MIN_NDCG) --min-hybrid-ndcg $(MIN_HYBRID_NDCG)

## bench: throughput, memory, freshness, search under concurrency and cost per change on a private local stack
## (prints figures, writes results/)
bench: deps
	$(PY) -m benchmarks $(BENCH_ARGS)

## scaling: docs/scaling.md, the capacity model, from the costs make bench measured (results/cost.json)
scaling: deps
	$(PY) -m benchmarks.capacity results/cost.json docs/scaling.md

## soak: mixed write load with searches against the running `make up` stack
soak:
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

## reconcile: compare table and index against the running stack (REPAIR=1 repairs through the pipeline)
reconcile: reconcile-compare
	@$(if $(shell test -e $(RECONCILE_MARK) && echo y),$(error drift found: the index differs from the table (ids above); `make reconcile REPAIR=1` re-captures them))

# STACK_ENV: the stack to compare (tests point it at their own).
STACK_ENV ?= .local/stack.env
RECONCILE_MARK = $(dir $(STACK_ENV))reconcile.drift
RECONCILE_OUT = $(dir $(STACK_ENV))reconcile.out
# pelican reconcile exits 1 on drift, which make would report as "Error 1", like a
# crash. This step turns drift (exit 1 after the "drift found" line) into a marker
# file; the target above then stops make with a plain message and make's exit
# status 2, so scripts still see a failure. Any other failure is reported as usual.
reconcile-compare:
	@rm -f $(RECONCILE_MARK) $(RECONCILE_OUT); set -a && . $(STACK_ENV) && set +a; \
	$(PY) -m pelican reconcile $(if $(REPAIR),--repair,) >$(RECONCILE_OUT); rc=$$?; cat $(RECONCILE_OUT); \
	if [ $$rc -eq 1 ] && grep -q '^drift found' $(RECONCILE_OUT); then touch $(RECONCILE_MARK); rc=0; fi; \
	rm -f $(RECONCILE_OUT); exit $$rc

## refit: refit the keyword search's BM25 statistics from the table of the running stack
refit:
	set -a && . .local/stack.env && set +a && $(PY) -m pelican refit-lexical

## redrive: replay the dead-letter queue of the running stack after fixing the cause
redrive:
	set -a && . .local/stack.env && set +a && $(PY) -m pelican redrive
