# servelab's entry points. `make demo` is the main job on an embedded default (no cluster, no GPU);
# `make test` is the whole test suite (what .ci/run runs).
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHONUNBUFFERED := 1

.PHONY: setup binaries prepare lint generate check-generated unit integration e2e test demo cluster-up cluster-down clean-runs

$(BIN)/servelab: pyproject.toml devtools/pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev,chart]' -e devtools
	@touch $@

setup: $(BIN)/servelab ## the project's own virtual environment: operator, CLI, tests, and the test bench (devtools/)

binaries: ## build the pinned control-plane binaries into ~/.cache/servelab (no-op when cached)
	hack/build-binaries.sh

prepare: setup ## everything the suite needs: binaries, llama.cpp, worker environments, tiny model (overlapped)
	hack/prepare.sh

generate: setup ## regenerate crds/, charts/servelab/crds/, docs/api.md and the chart's Grafana dashboards from code
	$(BIN)/servelab crds
	$(BIN)/python -m servelab.dashboards

check-generated: setup
	$(BIN)/servelab crds --check
	$(BIN)/python -m servelab.dashboards --check

lint: setup
	$(BIN)/ruff check operator devtools tests bench
	$(BIN)/ruff format --check operator devtools tests bench
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -m unit -q

integration: setup binaries
	$(BIN)/pytest -m integration -q

e2e: setup prepare
	$(BIN)/pytest -m e2e -q

test: setup lint check-generated prepare ## everything: lint, generated files, unit, integration, e2e
	$(BIN)/pytest -q -m "unit or integration or e2e" --durations=25

demo: setup ## the main job: tiny model, GGUF f16 vs IQ4_XS vs Q4_K_M on llama.cpp, sweep, eval, table, chart
	$(BIN)/servelab demo

cluster-up: setup binaries
	$(BIN)/servelab cluster up

cluster-down: setup
	$(BIN)/servelab cluster down

clean-runs:
	rm -rf servelab-runs
