# c360 — every target builds what it needs; a fresh machine needs only python3.11, make and npm.
SHELL := /bin/bash
PY ?= python3.11
UV_VERSION := 0.13.9
BUF_VERSION := 1.75.0
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
BUF := $(TOOLS)/buf/node_modules/.bin/buf
PROTOS := $(shell find proto -name '*.proto')
# The workspace's members (every service is one): a new folder needs no edit here.
PYPROJECTS := pyproject.toml $(wildcard proto/pyproject.toml platform/pyproject.toml cli/pyproject.toml services/*/pyproject.toml)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: all venv proto bytecode run test test-unit lint breaking bench chaos failover docs lock clean image deploy deploy-check
all: proto

$(UV):
	$(PY) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The virtualenv is built from the lock file only; `make lock` refreshes the lock. Its modules'
# bytecode is written as they are installed (see `bytecode` below for why).
$(BIN)/.synced: $(UV) $(PYPROJECTS) uv.lock
	$(UV) sync --frozen --all-packages --python $(PY) --quiet --compile-bytecode
	touch $@

venv: $(BIN)/.synced

# One generated package, `c360` (gen/c360/...), importable through the editable install.
gen/.stamp: $(BIN)/.synced $(PROTOS) tools/gen_event_docs.py
	rm -rf gen.new && mkdir -p gen.new
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iproto \
	  --python_out=gen.new --grpc_python_out=gen.new --mypy_out=quiet:gen.new --mypy_grpc_out=quiet:gen.new $(PROTOS)
	find gen.new -type d -exec touch {}/__init__.py \;
	rm -f gen.new/__init__.py
	# Every published event's source, aggregate, type and subject (c360.events.v1.catalogue),
	# read from the protos' comments as docs/events.md is.
	PYTHONPATH=gen.new $(BIN)/python tools/gen_event_docs.py --catalogue gen.new/c360/events/v1/catalogue.py
	touch gen.new/c360/py.typed
	touch gen.new/.stamp
	# Swap in one step so that running processes never see a half-written package.
	rm -rf gen.old; [ ! -d gen ] || mv gen gen.old; mv gen.new gen; rm -rf gen.old

proto: gen/.stamp

# The workspace's own modules' bytecode (a module changed since is compiled again; ~0.1 s when
# none is). Python writes it as it imports, unless PYTHONDONTWRITEBYTECODE is set (CI runners,
# sandboxes and images often set it): then every process compiles again what it imports, each
# service, each CPU-pool worker, each test worker and CLI call: importing the timeline's modules
# took 1.13 s of a new interpreter without the virtualenv's bytecode and ours, 0.55 s with it.
bytecode: proto
	$(BIN)/python -m compileall -q -j0 platform services cli gen bench tools

lock: $(UV)
	$(UV) lock --python $(PY)

run: bytecode
	$(BIN)/c360 up

test: bytecode
	$(BIN)/pytest -q -n auto

test-unit: bytecode
	$(BIN)/pytest -q tests/unit

$(BUF):
	mkdir -p $(TOOLS)/buf
	cd $(TOOLS)/buf && npm install --silent --no-audit --no-fund --prefix . @bufbuild/buf@$(BUF_VERSION) >/dev/null

lint: proto $(BUF)
	$(UV) lock --check --python $(PY) --quiet
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/import_rules.py
	$(BUF) lint proto
	$(MAKE) --no-print-directory breaking
	$(BIN)/python tools/gen_event_docs.py --check docs/events.md
	$(MAKE) --no-print-directory deploy-check

# The published contract stays wire- and JSON-compatible (buf breaking, WIRE_JSON rules) with
# the last landed one: tools/contract_base.sh picks HEAD with uncommitted proto changes, else
# HEAD~1 (CI on a fresh clone of main). CONTRACT_BASE=<git ref> compares with another commit
# (a branch's fork point, a release tag); CONTRACT_BASE=none skips it (see docs/consumers.md).
CONTRACT_BASE ?= $(shell tools/contract_base.sh)
CONTRACT_GIT ?= .git
PROTO_DIR ?= proto
breaking: $(BUF)
	@if [ -z "$(CONTRACT_BASE)" ] || [ "$(CONTRACT_BASE)" = none ]; then \
	  echo "buf breaking: no earlier contract to compare with; skipped"; \
	else \
	  echo "buf breaking $(PROTO_DIR) against $(CONTRACT_BASE)"; \
	  $(BUF) breaking $(PROTO_DIR) --against '$(CONTRACT_GIT)#ref=$(CONTRACT_BASE),subdir=proto'; \
	fi

# docs/events.md: subjects, fields and an example of every published and inbound message.
docs: proto
	$(BIN)/python tools/gen_event_docs.py docs/events.md

# The image of every service and the CLI (Containerfile); printed, not run: nothing here builds
# images. IMAGE=registry/name:tag names it; podman or docker take the same arguments.
IMAGE ?= localhost/c360:dev
CONTAINER_TOOL ?= podman
image:
	@echo "$(CONTAINER_TOOL) build -f Containerfile -t $(IMAGE) ."

# deploy/: the per-service manifests from the service registry (tools/render_deploy.py).
deploy: proto
	$(BIN)/python tools/render_deploy.py

# Both overlays rendered (kubectl kustomize) and every object validated strictly.
deploy-check: proto
	$(BIN)/python tools/deploy_check.py

bench: bytecode
	$(BIN)/python -m bench.run

failover: bytecode  ## two sets of services, kill -9 of the active one: time to the survivors' first visible command
	$(BIN)/python -m tools.failover $(ARGS)

chaos: bytecode  ## fault suite under load (not part of make test): make chaos ARGS='--faults 20'
	$(BIN)/python -m tools.chaos $(ARGS)

clean:
	rm -rf gen $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
