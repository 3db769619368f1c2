# gogooku3-airflow. The README's two commands are `make demo` and `make test`; each bootstraps .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv test unit integration dag-test demo lint airflow bench bench-gpu gpu-wheels emulator constraints clean

venv: $(STAMP)

# torch first, from the CPU build on local disk (a bare `torch` would pull a multi-GB CUDA build),
# then the project with every extra CI needs, pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[airflow,quality,train,tracking,dev]"
	$(PY) -m pip check
	touch $(STAMP)

test: venv
	bash include/scripts/run_tests.sh

unit: venv
	$(BIN)/pytest -q -m "not integration" tests

integration: venv
	$(BIN)/pytest -q -m integration tests

dag-test: venv
	bash include/scripts/dag_test.sh

demo: venv
	bash include/scripts/demo.sh

lint: venv
	$(BIN)/ruff check gogooku3 dags tests
	$(BIN)/ruff format --check gogooku3 dags tests

airflow: venv
	bash include/scripts/airflow_standalone.sh

emulator: venv
	$(BIN)/gogooku3 emulator --port 8765

bench: venv
	$(PY) -m gogooku3.bench

bench-gpu:
	bash include/scripts/bench_gpu.sh

# RAPIDS (cu13) + the project's runtime wheels for an offline GPU machine, split into .gpu-parts/
gpu-wheels: venv
	bash include/scripts/gpu_wheels.sh download

constraints: venv
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .airflow .run data .pytest_cache
