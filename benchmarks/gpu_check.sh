#!/usr/bin/env bash
# The one script for a machine with a GPU (H100/H200), in stages, each with its own timeout and each appending
# its result to $OUT/gpu_check.json as it finishes (a timeout keeps what ran); a compact table last.
#   0 facts: nvidia-smi, versions (seconds)
#   1 offline install, extension build, `fastalex info --require triton,cuda,cpu` (a failed CUDA build
#     fails the check), then Triton's cache warmed with every config the tuner can pick, compiled in
#     parallel (`fastalex kernels`, all cores): the tuner's first launches then load instead of compiling
#   2 every GPU test (pytest -m gpu; the CUDA build test included), untuned (FASTALEX_TUNE=0)
#   3 the model on the GPU: fastalex.AlexNet against reference_alexnet (tests/test_gpu_model.py)
#   4 benchmarks, in this order while the budget lasts: the whole model (train step and inference,
#     eager and compiled, first step, peak memory), the five convolutions per direction against cuDNN,
#     the fused op, max-pool, LRN (bf16; fp32 too with GPU_CHECK_FP32=1)
# Budget: GPU_CHECK_BUDGET_S (default 480 s, 8 minutes on an H100 including the build): every stage's
# timeout is cut to what is left; a benchmark stage that would start with less than a minute left is
# recorded as skipped (the benchmarks are what gives way). Exit status: 0 when stages 0-3 and every
# benchmark that ran passed. Without a GPU it exits 1 at once, saying so.
# Usage, from anywhere:  OUT=/some/dir bash benchmarks/gpu_check.sh   (default OUT: benchmarks/results)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
START=$(date +%s)
status=0
rm -f "$OUT/gpu_check.json"

elapsed() { echo $(( $(date +%s) - START )); }

# stage ID NAME TIMEOUT_S COMMAND...: runs COMMAND under its timeout (cut to what is left of the budget),
# logs to $OUT/stage-ID-NAME.log, records pass / FAIL / timeout / skipped and its seconds in
# $OUT/gpu_check.json. A failure, timeout or skip fails the check, except where soft=1.
soft=0
stage() {
  local id=$1 name=$2 limit=$3 t0 rc result log left
  shift 3
  log="$OUT/stage-$id-$name.log"
  left=$(( BUDGET - $(elapsed) - 5 ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    echo "== stage $id: $name skipped: the $BUDGET s budget is spent"
    $PY benchmarks/gpu_check_report.py record "$OUT" "$id" "$name" "skipped" 0
    (( soft )) || status=1
    return
  fi
  echo "== stage $id: $name (timeout ${limit} s; $(elapsed) s of $BUDGET used)"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  case $rc in
    0) result=pass ;;
    124|137) result=timeout ;;
    *) result="FAIL($rc)" ;;
  esac
  [[ $rc != 0 && $soft == 0 ]] && status=1
  tail -n 12 "$log"
  echo "-- stage $id: $name: $result in $(( $(date +%s) - t0 )) s"
  $PY benchmarks/gpu_check_report.py record "$OUT" "$id" "$name" "$result" "$(( $(date +%s) - t0 ))" "$log"
}

# bench NAME DEFAULT_TIMEOUT_S PYTEST_ARGS...: a benchmark stage, if the budget leaves a minute for it.
bench() {
  local name=$1 limit=$2 left
  shift 2
  left=$(( BUDGET - $(elapsed) - 5 ))
  if (( left < 60 )); then
    echo "== stage 4: $name skipped: ${left} s of the budget left"
    $PY benchmarks/gpu_check_report.py record "$OUT" 4 "$name" "skipped" 0
    return
  fi
  mkdir -p "$OUT/bench-$name"
  # each suite writes its figures to its own folder (benchmarks/conftest.py: $OUT/bench.json)
  stage 4 "$name" "$limit" env OUT="$OUT/bench-$name" $PY -m pytest -q -p no:cacheprovider --benchmark-only \
    --benchmark-columns=median,rounds "$@"
}

# --- 0: facts; no GPU, no check.
echo "== stage 0: facts"
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > "$OUT/stage-0-gpus.log" 2>&1 \
   || ! grep -q "^GPU " "$OUT/stage-0-gpus.log"; then
  echo "gpu_check: no GPU here (nvidia-smi finds none): this script needs an NVIDIA GPU; nothing was run" >&2
  $PY benchmarks/gpu_check_report.py record "$OUT" 0 facts "no GPU" "$(elapsed)" "$OUT/stage-0-gpus.log"
  exit 1
fi
stage 0 facts 60 $PY benchmarks/gpu_check_report.py facts
if (( status )); then
  echo "gpu_check: stage 0 failed (torch sees no GPU?): nothing else was run" >&2
  exit 1
fi

# --- 1: install (offline), build, the backends that must be there; then Triton's cache.
stage 1 install 120 $PY -m pip install --no-deps --no-build-isolation -e .
stage 1 build 300 $PY -m fastalex info --require triton,cuda,cpu
# Soft: a timeout here only leaves more compiling to the tuner; a config that fails to compile under this
# Triton is in the log and in kernels.json.
soft=1
stage 1 compile 150 $PY -m fastalex kernels --ci --quiet --jobs "$(nproc)" \
  --cache-dir "${TRITON_CACHE_DIR:-$HOME/.triton/cache}" --json "$OUT/kernels.json"
soft=0

# --- 2: the GPU tests, untuned (each config is covered by the *_triton_configs tests; timing every
# candidate at every small test shape would only spend device time). The model has stage 3.
stage 2 gpu-tests 150 env FASTALEX_TUNE=0 $PY -m pytest -q -p no:cacheprovider -m gpu tests \
  --ignore=tests/test_gpu_model.py -rs

# --- 3: the whole model on the GPU against the reference.
stage 3 model-parity 120 env FASTALEX_TUNE=0 $PY -m pytest -q -p no:cacheprovider tests/test_gpu_model.py -rs

# --- 4: benchmarks, as far as the budget goes.
K="bf16 or first_step"
[ "${GPU_CHECK_FP32:-0}" = 1 ] && K="bf16 or first_step or fp32"
bench model 150 benchmarks/test_bench_alexnet.py -k "$K"
bench conv 120 benchmarks/test_bench_conv_directions.py -k "$K"
bench fused 60 benchmarks/test_bench_relu_lrn_max_pool2d.py -k "$K"
bench max-pool 45 benchmarks/test_bench_max_pool2d.py -k "$K"
bench lrn 45 benchmarks/test_bench_local_response_norm.py -k "$K"

echo
$PY benchmarks/gpu_check_report.py table "$OUT"
echo "gpu_check: $(elapsed) s of a $BUDGET s budget; $( ((status == 0)) && echo 'every stage passed' || echo 'FAILED: see the stages above')"
exit $status
