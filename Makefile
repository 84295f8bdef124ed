# persona-core: `make help` lists the targets. Everything runs inside .venv, made on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test faults fuzz test-fast lint schema openapi proto bench eval-tags serve dagster stack stack-down diagrams clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build of this version is what the configured package source
	# serves here (elsewhere: README, Installing with pip).
	$(BIN)/pip install -q torch==2.13.0
	# cpu: onnxruntime's CPU build (gpu brings onnxruntime-gpu instead; never both).
	$(BIN)/pip install -q -e '.[cpu,pipeline,vision,api,dev]'
	touch $(STAMP)

install: $(STAMP) ## make .venv with everything (CPU torch, Dagster, API, dev tools)

demo: $(STAMP) ## build a real persona from the fixture photos and voices on the embedded default
	$(BIN)/persona-core demo

test: $(STAMP) ## run every test (starts real PostgreSQL and S3 servers itself)
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/pytest

faults: $(STAMP) ## the fault suite: seeded SIGKILLs mid-publish, frozen PostgreSQL/S3, a full disk (root), a damaged renderer cache
	$(BIN)/pytest -m faults -q -s

fuzz: $(STAMP) ## schemathesis against the registry with an admin key, a read key and no key
	$(BIN)/pytest -m fuzz -q -s

test-fast: $(STAMP) ## unit tests only
	$(BIN)/pytest tests/unit -q

lint: $(STAMP) ## ruff + mypy + the import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

schema: $(STAMP) ## regenerate schemas/persona_pack.schema.json from persona_core.pack
	$(BIN)/python -m persona_core.schema

openapi: $(STAMP) ## regenerate schemas/openapi.json from the registry app
	$(BIN)/python -m registry_api.openapi

proto: $(STAMP) ## regenerate registry_api/grpc_gen from schemas/persona_registry.proto
	$(BIN)/python -m registry_api.protos

bench: $(STAMP) ## run the benchmarks; prints numbers and writes bench/results.json
	@command -v wrk >/dev/null || { echo "installing wrk (the API benchmark's load generator)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench

eval-tags: $(STAMP) ## measure the anchor tags on the labelled photos; writes tags_* to bench/results.json
	$(BIN)/python -m bench.eval_tags

serve: $(STAMP) ## run the registry on the embedded default
	$(BIN)/persona-core serve

# Dagster's own lines (webserver, daemon, code server) as JSON too when PERSONA_LOG_JSON is on; no
# "superseded, use 'dg dev'" warning (a plain-text line before any logging set-up; dg is not installed).
dagster: $(STAMP) ## Dagster UI on the project's instance (PERSONA_HOME/dagster; sensors on)
	DAGSTER_HOME=$$($(BIN)/python -m persona_pipeline.instance) \
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
	$(BIN)/dagster dev -w workspace.yaml --log-format $$($(BIN)/python -c \
	  'from persona_core.settings import LogSettings; print("json" if LogSettings().log_json else "colored")')

stack: $(STAMP) ## the deployed topology here: PostgreSQL, S3, Dagster code server + daemon + webserver, registry (2 workers)
	$(BIN)/python scripts/stack.py up

stack-down: ## stop what make stack started (logs stay in .stack/logs)
	$(BIN)/python scripts/stack.py down

diagrams: $(STAMP) ## write the lifecycle .mmd from the code, render diagrams/*.mmd to PNG and SVG (npm, chromium)
	$(BIN)/python -m persona_pipeline.diagram
	bash diagrams/render.sh

clean: ## remove the venv and local state
	rm -rf $(VENV) .persona
