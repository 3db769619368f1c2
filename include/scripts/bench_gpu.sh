#!/usr/bin/env bash
# `make bench-gpu` on the GPU machine: the feature-build benchmark with the GPU engine (cuDF +
# RMM pool) against the CPU engine on the same machine, plus the GPU/CPU parity test.
#
# RAPIDS wheels: if .whl/ holds carried wheels (include/scripts/gpu_wheels.sh: cudf-cu13, rmm-cu13
# and their libraries, plus polars/pyarrow/pytest for the project), they are installed offline into
# a --target site dir (build/gpu-site, reused while .whl/ is unchanged) that goes first on
# PYTHONPATH, so the project's venv stays CPU-only. Without .whl/ the interpreter must already
# import cudf and the project's dependencies.
#
# Env: PYTHON (default .venv/bin/python, else python3), GPU_SITE_DIR, RMM_POOL_SIZE (default:
# 87.5% of the device), BENCH_QUICK=1 for the small size, FEATURES_BENCH_CODES=N to resize.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SITE="${GPU_SITE_DIR:-build/gpu-site}"

shopt -s nullglob
wheels=(.whl/*.whl)
if [ "${#wheels[@]}" -gt 0 ]; then
  stamp="$SITE/.installed"
  if [ ! -f "$stamp" ] || [ -n "$(find .whl -newer "$stamp" -name '*.whl' -print -quit)" ]; then
    echo "bench-gpu: installing ${#wheels[@]} carried wheel(s) from .whl/ into $SITE"
    rm -rf "$SITE"
    mkdir -p "$SITE"
    # --no-deps: the set is complete as carried (include/scripts/gpu_wheels.sh), the rest is the
    # machine's own (torch, cupy, pandas); without it pip would look for every dependency offline
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "${wheels[@]}"
    touch "$stamp"
  fi
  export PYTHONPATH="$PWD/$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "bench-gpu: no .whl/ wheels; using the interpreter's own RAPIDS install"
fi

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  echo "bench-gpu: nvidia-smi not found; the GPU rows will say why they were skipped"
fi
"$PY" - <<'PY' || echo "bench-gpu: RAPIDS import check failed (see above); continuing, GPU rows will be skipped"
import cudf, cupy, rmm
print(f"bench-gpu: cudf {cudf.__version__}, cupy {cupy.__version__}, rmm {rmm.__version__}, "
      f"{cupy.cuda.runtime.getDeviceCount()} device(s)")
PY

status=0
if "$PY" -c "import pytest" 2>/dev/null; then
  "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_features_gpu_parity.py || status=$?
fi
args=(--only features_build)
if [ "${BENCH_QUICK:-0}" = "1" ]; then args+=(--quick); fi
"$PY" -m gogooku3.bench "${args[@]}" || status=$?
exit "$status"
