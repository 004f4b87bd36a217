#!/usr/bin/env bash
# The one script for a GPU machine (H100/H200): offline install, extension build, GPU tests,
# benchmarks, a compact table printed last. Full figures go to $OUT (default benchmarks/results).
# Usage, from the repository root:  bash benchmarks/gpu_check.sh [benchmark files]
# e.g. bash benchmarks/gpu_check.sh benchmarks/test_bench_max_pool2d.py. The default runs them all;
# with LRN alone that took 2-3 min on an H200, the max-pool and fused suites add about 3x the rows
# and a torch.compile of the chain (not yet timed on a GPU): pass a subset when the budget is short.
# benchmarks/test_bench_training.py: the augmentation (target >= 10x the training step's img/s) and
# one training epoch on the synthetic dataset (12,800 images; target: under 5% waiting for data).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export OUT TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

echo "== install (offline) and build"
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING" | tail -3
t0=$(date +%s)
$PY -m fastalex info 2>&1 | tee "$OUT/info.txt" || status=1
echo "extension build + info: $(( $(date +%s) - t0 )) s"

echo "== GPU tests"
# FASTALEX_TUNE=0: each config is checked by the *_triton_configs tests; timing every candidate for
# every small test shape would only spend device time.
FASTALEX_TUNE=0 timeout 240 $PY -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt" | tail -15
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== benchmarks (pytest-benchmark)"
timeout 360 $PY -m pytest -q "${@:-benchmarks}" --benchmark-only --benchmark-json "$OUT/pytest_benchmark.json" \
  --benchmark-columns=median,rounds -p no:cacheprovider 2>&1 | tee "$OUT/benchmarks.txt" | sed -n '/^device:/,$p'
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
