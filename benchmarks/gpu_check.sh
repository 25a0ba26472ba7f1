#!/usr/bin/env bash
# The GPU check of issue 13, at most 8 minutes on one CUDA GPU: a CUDA build of torch, the render
# engine's tests on cuda, then windows/s of the original SatGen-CV code (batch 1, fp32), ours at fp32
# and ours at fp16 on the same GPU (benchmarks/bench_gpu.py). Results go to OUTDIR (default gpu-check/).
#
#   bash benchmarks/gpu_check.sh fetch     # on a machine with PyPI: the wheels a CUDA image lacks → .whl/
#   bash benchmarks/gpu_check.sh [OUTDIR]  # on the GPU machine, from the repository root
#
# A GPU machine without internet (DEVELOPERS.md) gets satgen-geo's geospatial dependencies as the
# carried wheels in .whl/ (Python 3.12, about 35 MB) and uses the CUDA torch already installed there;
# one with internet installs a CUDA torch from download.pytorch.org if the present one sees no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(rasterio==1.4.3 pyproj==3.7.1 shapely==2.1.1 geopandas==1.0.1 affine==2.4.0 cligj==0.7.2 click-plugins==1.1.1)

if [ "${1:-}" = fetch ]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  du -sh .whl
  exit 0
fi

OUTDIR=${1:-${OUT:-gpu-check}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
started=$(date +%s)
step() { echo "== $1 ($(( $(date +%s) - started )) s)"; }

step "CUDA torch"
if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  "$PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cu126
fi
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/satgen-site .whl/*.whl
  export PYTHONPATH="/tmp/satgen-site:$PWD"
else
  "$PY" -m pip install -q -e . "torch==$("$PY" -c 'import torch; print(torch.__version__)')"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTDIR/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())' \
  | tee -a "$OUTDIR/gpu.txt"

step "render tests on cuda"
SATGEN_TEST_DEVICE=cuda timeout 240 "$PY" -m pytest -q -p no:cacheprovider -x tests/test_engine.py 2>&1 \
  | tail -n 40 | tee "$OUTDIR/tests.txt" || echo "render tests on cuda: FAILED (see tests.txt)"

step "windows/s: original batch 1 fp32, ours fp32, ours fp16"
timeout 200 "$PY" benchmarks/bench_gpu.py 2>&1 | tee "$OUTDIR/bench_gpu.txt"
step "done"
