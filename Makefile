# hyperkube: make setup | up | test | bench
# `make setup` is idempotent: stamps under .venv record what was done and redo it only when
# its inputs change (apt packages missing, pyproject.toml edited, Rust sources changed).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := runc iptables nftables iproute2 containernetworking-plugins busybox-static etcd-server etcd-client
RUST_SRC := $(shell find core ext -name '*.rs' -o -name 'Cargo.toml' 2>/dev/null) Cargo.toml $(wildcard Cargo.lock)

.PHONY: setup system up test test-rust test-python lint bench clean

setup: system $(VENV)/.deps $(VENV)/.native

# System packages (Debian). Root is needed only when something is missing.
system:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run 'make setup' as root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(VENV)/bin/python
	$(PY) -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print("\n".join(d["dependencies"] + d["optional-dependencies"]["test"]))' > $(VENV)/requirements.txt
	$(VENV)/bin/pip install -q -r $(VENV)/requirements.txt
	touch $@

# Release build of the extension, installed editable into the venv.
$(VENV)/.native: $(RUST_SRC) pyproject.toml $(VENV)/.deps
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  $(VENV)/bin/maturin develop --release -q
	touch $@

up: setup
	$(VENV)/bin/hyperkube up $(ARGS)

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --release -q -- -D warnings
	$(VENV)/bin/ruff check python tests benchmarks
	$(VENV)/bin/ruff format --check -q python tests benchmarks
	$(VENV)/bin/python -m mypy.stubtest hyperkube._native --allowlist .stubtest-allowlist

test-rust: setup
	cargo test --workspace --release -q

test-python: setup
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test: setup lint test-rust test-python

bench: setup
	@for f in benchmarks/*.py; do \
	  m=$$(basename $$f .py); [ "$$m" = "__init__" ] || [ "$$m" = "_common" ] && continue; \
	  echo "== benchmarks.$$m"; $(PY) -m benchmarks.$$m || exit 1; done

clean:
	rm -rf $(VENV) target
