# Two set-up commands for users: `make demo` and `make test`. Everything installs into .venv.
PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
SIGNATORY_SPEC ?= signatory==1.2.6.1.9.0
STAMP      := $(VENV)/.setup-done
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip warns about every unreachable extra index of this machine's configuration; hide that noise.
QUIET := 2>&1 | sed -u '/is ignored: it is neither a file nor a directory/d' 

.PHONY: setup test test-all demo bench lint clean

setup: $(STAMP)

# Idempotent: re-runs only when pyproject.toml or this Makefile change (a second run is instant).
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	@echo "[setup] torch ($(TORCH_SPEC))"
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC) $(QUIET)
	@$(PIP) install -q "setuptools>=64" wheel $(QUIET)
	@echo "[setup] signatory (built from source against the installed torch; a few minutes the first time)"
	@$(PY) -c "import torch, signatory" 2>/dev/null \
	  || $(PIP) install -q --no-build-isolation "$(SIGNATORY_SPEC)" $(QUIET) \
	  || echo "[setup] signatory could not be built; continuing: signature features fall back to pysiglib"
	@echo "[setup] neuralsde-fin and its dev extras"
	@$(PIP) install -q -e '.[dev]' $(QUIET)
	@touch $(STAMP)
	@echo "[setup] done"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check neuralsde_fin tests benchmarks

demo: setup
	$(PY) -m neuralsde_fin._demo

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache
