#!/usr/bin/env bash
# CI step: what every Triton kernel compiles to for an H100/H200 (sm_90), without a GPU
# (fastalex/bench/compiled_code.py), under the installed Triton and under Triton 3.6.0 (the GPU
# machine's), which goes into a side folder (pip install --no-deps --target) put first on PYTHONPATH
# for its run only. The sweep: every candidate config on the training path (bf16 channels_last), each
# launch's default (untuned) config elsewhere.
# Gates, on both versions: every config compiles; no default config spills or is too big to launch.
#   bash benchmarks/kernel_report.sh          both sweeps and the gates; exit 1 if a gate breaks
#   bash benchmarks/kernel_report.sh --write  the same, then benchmarks/KERNELS.md regenerated (commit it;
#                                             tests/test_kernel_report.py checks it is current)
# Compiles are cached in ${TMPDIR:-/tmp}/fastalex-kernel-report/triton-<version>, so a rerun only compiles
# what changed. KERNEL_REPORT_JOBS: compiler processes per sweep (default 2, this machine's cores).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WORK=${TMPDIR:-/tmp}/fastalex-kernel-report
SIDE="$WORK/site-triton-3.6.0"
JOBS=${KERNEL_REPORT_JOBS:-2}
WRITE=0
[ "${1:-}" = "--write" ] && WRITE=1
mkdir -p "$WORK"
unset TRITON_INTERPRET
start=$(date +%s)

installed=$($PY -c "import triton; print(triton.__version__)") || { echo "kernel_report: triton is not importable" >&2; exit 1; }
reports=()
if [ "$installed" != "3.6.0" ]; then
  if ! PYTHONPATH="$SIDE" $PY -c "import sys, triton; sys.exit(triton.__version__ != '3.6.0')" 2> /dev/null; then
    rm -rf "$SIDE"
    $PY -m pip install -q --no-deps --target "$SIDE" triton==3.6.0 || { echo "kernel_report: cannot install triton 3.6.0" >&2; exit 1; }
  fi
  t0=$(date +%s)
  PYTHONPATH="$SIDE${PYTHONPATH:+:$PYTHONPATH}" $PY -m fastalex.bench.kernel_report --ci --jobs "$JOBS" --quiet \
    --json "$WORK/report-3.6.0.json"
  echo "kernel_report: triton 3.6.0 sweep: $(( $(date +%s) - t0 )) s"
  reports+=("$WORK/report-3.6.0.json")
fi
t0=$(date +%s)
$PY -m fastalex.bench.kernel_report --ci --jobs "$JOBS" --quiet --json "$WORK/report-$installed.json"
echo "kernel_report: triton $installed sweep: $(( $(date +%s) - t0 )) s"
reports+=("$WORK/report-$installed.json")

markdown=()
[ $WRITE = 1 ] && markdown=(--markdown benchmarks/KERNELS.md)
$PY -m fastalex.bench.kernel_report --gates --from "${reports[@]}" "${markdown[@]}"
rc=$?
echo "kernel_report: $(( $(date +%s) - start )) s in all; gates $( ((rc == 0)) && echo hold || echo BROKEN)"
exit $rc
