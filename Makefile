# The verbs a person types. `make help` lists them. Everything installs itself:
# a fresh machine needs only Python 3.11+, Go and apt (for PostgreSQL, if missing).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TOOLS   = $(shell bash hack/build-tools.sh)
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_OPERATOR_ARGS ?=
BENCH_API_ARGS ?=
CHAOS_ARGS ?=

.PHONY: help
help: ## List every target with what it does (coloured only on a terminal)
	@if test -t 1; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %s%-16s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml dev/pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install --quiet "uv>=0.5"
	uv venv --quiet --allow-existing --python python3 $(VENV)
	uv pip install --quiet --python $(PY) -e '.[dev]' -e ./dev
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install the SDK, the operator and the dev tools (dev/: not shipped)

.PHONY: deps
deps: ## Install what is missing through apt: PostgreSQL, PgBouncer, containerd, runc, CNI plugins, nftables, mmdebstrap, umoci
	@bash hack/ensure-deps.sh

.PHONY: tools
tools: ## Build (or reuse) etcd, kube-apiserver & co, the kubelet and kube-proxy, kwok and helm into the cache outside the repo
	@bash hack/build-tools.sh >/dev/null

.PHONY: lint
lint: install ## ruff and mypy
	$(VENV)/bin/ruff check operator dev tests bench examples
	$(VENV)/bin/ruff format --check operator dev tests bench examples
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: install ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format operator dev tests bench examples
	$(VENV)/bin/ruff check --fix operator dev tests bench examples

.PHONY: test
test: install deps tools lint ## Everything from a fresh clone: venv, binaries, services, the whole suite
	STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-slow
test-slow: install deps tools lint ## The slow tests only (token rotation on the real node: ~20 min)
	STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m pytest -m slow $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Only the fast unit tests (no I/O)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: db-up
db-up: install deps ## Start a throwaway PostgreSQL on a free loopback port; prints the STRATA_DB_URL line
	@$(PY) -m stratarouter_dev.postgres up

.PHONY: db-down
db-down: install ## Stop the throwaway PostgreSQL and delete its data
	@$(PY) -m stratarouter_dev.postgres down

.PHONY: cluster-up
cluster-up: install deps tools ## Start the control plane, two kwok nodes and the real node (kubelet + containerd); prints the KUBECONFIG line
	@STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m stratarouter_dev.cluster up

.PHONY: cluster-down
cluster-down: install ## Stop the local cluster, remove its containers, mounts, network and data
	@$(PY) -m stratarouter_dev.cluster down

# `make operator`: the environment of the cluster and the PostgreSQL that `make cluster-up` and `make db-up`
# left running, read from their state files: KUBECONFIG, kubectl on PATH, STRATA_DB_URL, and the checkpoint
# API where the real node's pods reach it (the pod bridge's gateway; loopback without a real node).
define OPERATOR_ENV_PY
import json, os, sys
from stratarouter_dev.cluster import LocalCluster, state_file
from stratarouter_dev.postgres import STATE_FILE
from stratarouter_dev.processes import alive
if not state_file().exists():
    sys.exit(f"make operator: no local cluster ({state_file()}): run `make cluster-up` first")
if not STATE_FILE.exists():
    sys.exit(f"make operator: no throwaway PostgreSQL ({STATE_FILE}): run `make db-up` first")
cluster = LocalCluster.from_state(json.loads(state_file().read_text()))
if not alive(cluster.pids["kube-apiserver"]):
    sys.exit(f"make operator: the cluster in {state_file()} is not running: `make cluster-down`, then `make cluster-up`")
host = os.environ.get("STRATA_API_HOST") or (cluster.node.gateway if cluster.node is not None else "127.0.0.1")
port = os.environ.get("STRATA_API_PORT") or "8080"
print(STATE_FILE.read_text().splitlines()[0])
print(f"export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$$PATH")
print(f"export STRATA_API_HOST={host} STRATA_API_PORT={port}")
print(f"export STRATA_API_URL_FOR_PODS={os.environ.get('STRATA_API_URL_FOR_PODS') or f'http://{host}:{port}'}")
endef
export OPERATOR_ENV_PY
OPERATOR_ARGS ?= --verbose

.PHONY: operator
operator: install ## Run the operator in the foreground on `make cluster-up` + `make db-up` (OPERATOR_ARGS=--debug -n NS ...; Ctrl-C stops it)
	@env=$$($(PY) -c "$$OPERATOR_ENV_PY") || exit 1; eval "$$env"; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null || exit 1; \
	kubectl wait --for=condition=Established --timeout=60s \
	  crd/executions.stratarouter.io crd/snapshots.stratarouter.io >/dev/null || exit 1; \
	echo "make operator: KUBECONFIG=$$KUBECONFIG STRATA_DB_URL=$$STRATA_DB_URL, checkpoint API on $$STRATA_API_URL_FOR_PODS" >&2; \
	echo "make operator: stratarouter operator $(OPERATOR_ARGS)  (Ctrl-C stops it)" >&2; \
	exec $(PY) -m stratarouter_runtime.cli operator $(OPERATOR_ARGS)

.PHONY: demo
demo: install deps tools ## The main job: local cluster + PostgreSQL + operator, a real container OOM-killed and resumed
	@STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m stratarouter_dev.demo

.PHONY: chaos
chaos: install deps tools ## Chaos suite: 200 Executions on kwok under operator SIGKILLs, PostgreSQL/API-server restarts and a store cut; checks the invariants (~10 min; CHAOS_ARGS=--seed N ...)
	@STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m stratarouter_dev.chaos $(CHAOS_ARGS)

.PHONY: crds
crds: install ## Regenerate crds/ (and the chart's copy) from the pydantic models
	$(PY) -m stratarouter_runtime.cli crds --output crds

.PHONY: chart-test
chart-test: install tools ## helm lint and the chart's tests against the local cluster
	STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m pytest tests/chart $(PYTEST_ARGS)

IMAGE_OPERATOR ?= stratarouter-operator:dev
IMAGE_EXAMPLE  ?= stratarouter-example:dev

.PHONY: images
images: ## OCI tarballs of the pause, operator and example images, no Docker (mmdebstrap, umoci); prints their dir
	@bash hack/build-images.sh

.PHONY: images-docker
images-docker: ## (Docker) Build the operator image and the example workload image
	docker build -t $(IMAGE_OPERATOR) .
	docker build -t $(IMAGE_EXAMPLE) -f examples/Dockerfile .

.PHONY: kind-up
kind-up: install ## (Docker) kind cluster with both images loaded and the chart installed
	@IMAGE_OPERATOR=$(IMAGE_OPERATOR) IMAGE_EXAMPLE=$(IMAGE_EXAMPLE) bash hack/kind-up.sh

.PHONY: kind-e2e
kind-e2e: kind-up ## (Docker) The end-to-end tests against the kind cluster, workloads in real containers
	@IMAGE_OPERATOR=$(IMAGE_OPERATOR) IMAGE_EXAMPLE=$(IMAGE_EXAMPLE) bash hack/kind-e2e.sh $(PYTEST_ARGS)

.PHONY: bench
bench: bench-sdk bench-operator bench-api ## All benchmarks

.PHONY: bench-sdk
bench-sdk: install deps ## SDK vs raw asyncpg, LangGraph's Postgres saver and DBOS on a throwaway PostgreSQL (BENCH_ARGS=--quick)
	uv pip install --quiet --python $(PY) -e '.[dev,bench]'
	$(PY) -m bench.sdk $(BENCH_ARGS)

.PHONY: bench-operator
bench-operator: install deps tools ## Recovery on the real node and on kwok vs the Job controller, and 1,000-Execution scale on kwok (BENCH_OPERATOR_ARGS=--skip-recovery --executions 300,1000)
	STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m bench.operator $(BENCH_OPERATOR_ARGS)

.PHONY: bench-api
bench-api: install deps tools ## One pod's checkpoints through the checkpoint API vs the SDK straight to PostgreSQL: p50/p99 and the rate ratio (BENCH_API_ARGS=--profile FILE: py-spy)
	STRATA_TOOLS_BIN=$(TOOLS) $(PY) -m bench.api_path $(BENCH_API_ARGS)

.PHONY: clean
clean: ## Remove the virtualenv and caches inside the repo (the tools cache outside it stays)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
