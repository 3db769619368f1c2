#!/usr/bin/env bash
# Bring RAPIDS to a GPU machine that has no package index: the cuDF wheel set, split into parts
# small enough to carry one per call (the device tool takes 64 MiB of working tree a call).
#
#   bash include/scripts/gpu_wheels.sh download    # here: fetch the wheels, tar + split into .gpu-parts/
#   bash include/scripts/gpu_wheels.sh stash        # there, once per part: keep the carried part(s)
#   bash include/scripts/gpu_wheels.sh assemble     # there, last call: check, join, unpack into .whl/
#
# then `make bench-gpu` (include/scripts/bench_gpu.sh) installs .whl/ into a --target site folder
# and runs the GPU parity test and the feature benchmark.
#
# The set is the CUDA 13 twin of the production image's CUDA 12 wheels (Dockerfile.gpu), for the
# lent H100/H200 machine: python 3.12, torch 2.11 and cupy-cuda13x already there; numpy pinned to
# 2.3 because that machine's numba-cuda breaks on its numpy 2.5.
#
# Settings (environment):
#   GPU_WHEELS_PY       target python version (default 3.12)
#   GPU_WHEELS_PART     part size for split (default 60M; a part plus the tree must stay < 64 MiB)
#   GPU_WHEELS_SCRATCH  where `stash` keeps parts between calls (default /tmp/gogooku3-gpu-parts)
set -euo pipefail
cd "$(dirname "$0")/../.."

PARTS=.gpu-parts
SCRATCH="${GPU_WHEELS_SCRATCH:-/tmp/gogooku3-gpu-parts}"
PYVER="${GPU_WHEELS_PY:-3.12}"
WHEELS=(
  libcudf-cu13 pylibcudf-cu13 cudf-cu13 rmm-cu13 librmm-cu13 libkvikio-cu13 rapids-logger
  nvidia-libnvcomp-cu13==5.3.0.16 nvtx cachetools numba-cuda-mlir "numpy==2.3.*"
)
# What the benchmark and the parity test import besides RAPIDS and what that machine has (torch,
# cupy, pandas), at the versions constraints.txt pins for CI.
PROJECT_WHEELS=(polars polars-runtime-32 pyarrow jpholiday typing_extensions pytest pluggy iniconfig packaging)

say() { echo "gpu_wheels: $*"; }
die() { echo "gpu_wheels: $*" >&2; exit 1; }

download() {
  local pip="${PIP:-.venv/bin/pip}"
  [ -x "$pip" ] || pip=pip3
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  local target=(--quiet --no-deps --only-binary=:all: --python-version "$PYVER"
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 -d "$tmp/whl")
  say "downloading ${#WHEELS[@]} RAPIDS and ${#PROJECT_WHEELS[@]} project wheels for python $PYVER manylinux x86_64"
  "$pip" download "${target[@]}" "${WHEELS[@]}"
  "$pip" download "${target[@]}" -c constraints.txt "${PROJECT_WHEELS[@]}"
  rm -rf "$PARTS"
  mkdir -p "$PARTS"
  tar -C "$tmp" -cf - whl | split -b "${GPU_WHEELS_PART:-60M}" -d -a 2 - "$PARTS/part-"
  (cd "$PARTS" && sha256sum part-* > SHA256SUMS)
  ls "$tmp/whl" > "$PARTS/WHEELS"
  local n
  n="$(ls "$PARTS"/part-* | wc -l)"
  say "$(du -sh "$tmp/whl" | cut -f1) of wheels -> $n part(s) in $PARTS/ (carry one per call, with SHA256SUMS)"
}

stash() {
  mkdir -p "$SCRATCH"
  shopt -s nullglob
  local got=("$PARTS"/part-*)
  [ "${#got[@]}" -gt 0 ] || die "no $PARTS/part-* in this call's tree (carry one, e.g. $PARTS/part-00)"
  cp "${got[@]}" "$SCRATCH"/
  [ -f "$PARTS/SHA256SUMS" ] && cp "$PARTS/SHA256SUMS" "$SCRATCH"/
  say "stashed ${got[*]##*/} in $SCRATCH ($(ls "$SCRATCH"/part-* | wc -l) part(s) so far)"
}

assemble() {
  stash 2>/dev/null || true  # the last call may carry the last part itself
  [ -f "$SCRATCH/SHA256SUMS" ] || die "no SHA256SUMS in $SCRATCH: carry $PARTS/SHA256SUMS with a part"
  (cd "$SCRATCH" && sha256sum --quiet -c SHA256SUMS) || die "a part is missing or damaged in $SCRATCH"
  rm -rf .whl
  mkdir -p .whl
  cat "$SCRATCH"/part-* | tar -C .whl --strip-components=1 -xf -
  say "$(ls .whl/*.whl | wc -l) wheel(s) in .whl/; next: make bench-gpu"
}

case "${1:-}" in
  download) download ;;
  stash) stash ;;
  assemble) assemble ;;
  *) die "usage: $0 download|stash|assemble" ;;
esac
