# gogooku3-airflow. The README's two commands are `make demo` and `make test`; each bootstraps .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv test unit integration dag-test demo lint airflow bench bench-gpu gpu-wheels emulator constraints clean \
	images deploy-up deploy-down deploy-status backfill test-deploy

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

# The docker-compose deployment on this host (README "Deploying"): every image built here from Debian
# packages (no registry), the stack from .env with docker-compose.local.yml's local images.
DEPLOY := $(PY) -m gogooku3.devtools.deploy_stack --local --env-file .env

images: venv
	bash include/scripts/build_images.sh all

deploy-up: images
	$(DEPLOY) up

deploy-down: venv
	$(DEPLOY) down

deploy-status: venv
	$(DEPLOY) status

# make backfill DAG=jquants_daily START=2024-03-01 END=2024-03-29 [MAX_ACTIVE=2] [UNPAUSE=1] [LOCAL=1]
# against the running deployment, or with LOCAL=1 against `make airflow`'s instance (GOGOOKU3_AIRFLOW_HOME,
# default .airflow).
backfill: venv
	@test -n "$(DAG)" -a -n "$(START)" -a -n "$(END)" || { echo "usage: make backfill DAG=dag_id START=YYYY-MM-DD END=YYYY-MM-DD [MAX_ACTIVE=N] [UNPAUSE=1] [LOCAL=1]" >&2; exit 2; }
	$(DEPLOY) backfill "$(DAG)" "$(START)" "$(END)" $(if $(MAX_ACTIVE),--max-active $(MAX_ACTIVE)) \
	  $(if $(filter 1,$(UNPAUSE)),--unpause) $(if $(filter 1,$(LOCAL)),--airflow-home "$${GOGOOKU3_AIRFLOW_HOME:-.airflow}")

# The deployment's own test (also part of `make test`): images, stack up, backfill, UI, API, teardown.
test-deploy: venv
	bash include/scripts/host_packages.sh
	bash include/scripts/dockerd.sh start
	GOGOOKU3_REQUIRE_DOCKER=1 $(BIN)/pytest -q -ra -m deploy tests/test_deploy.py

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
