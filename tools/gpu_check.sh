#!/usr/bin/env bash
# The GPU checks of issue 8 in one command, for a machine with a CUDA GPU (README: "Running the GPU checks").
#
#   harness bench (cpu and paper profiles), a default run of each detector, and Faster R-CNN with --amp,
#   all with --device cuda; records go to results/gpu-<GPU name>/ and are copied to $OUT (or gpu_check/out).
#
# Needs on that machine: python3 with torch, torchvision, numpy, pandas, seaborn, typer, rich and an
# OpenCV (plain opencv-python is enough). Prepared on a machine with this project installed:
#   harness proposals --dataset synthetic --export gpu_check/synthetic_ss.json   # Fast R-CNN / R-CNN proposals
#   pycocotools as a wheel in .whl/ if that machine lacks it (installed into /tmp/site here)
# Each step has its own time limit and the script goes on after a failing step; the log says which failed, and
# the script exits 1 if any did. GPU_CHECK_PROPOSALS and GPU_CHECK_RESULTS move the proposal file and results/.
# GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 runs the steps shortened (no paper bench) on the CPU: a dry run of the script.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check/out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ! $PY -c "import pycocotools" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
PROPOSALS=${GPU_CHECK_PROPOSALS:-gpu_check/synthetic_ss.json}
[ -f "$PROPOSALS" ] || { echo "missing $PROPOSALS: run harness proposals --dataset synthetic --export $PROPOSALS" >&2; exit 2; }
NAME=$($PY -c "
import torch
print(torch.cuda.get_device_name(0) if '$DEVICE' == 'cuda' else 'cpu-dry-run')" | tr -c 'A-Za-z0-9._\n-' '-') || exit 2
RESULTS=${GPU_CHECK_RESULTS:-results}/gpu-$NAME
mkdir -p "$RESULTS"
LOG=$OUT/gpu_check.log
: > "$LOG"
QUICK=()
BENCH_QUICK=()
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  QUICK=(--epochs 1 --set data.synthetic.train_images=4 --set data.synthetic.test_images=2 --set test.warmup_images=1)
  BENCH_QUICK=(--images 2 --iters 1)
fi
$PY - >> "$LOG" 2>&1 <<'EOF'
import torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
EOF
step() {  # step SECONDS command...: run it under a time limit, its last lines and exit status into the log
  local limit=$1 start rc
  shift
  start=$(date +%s)
  echo "== $*" >> "$LOG"
  timeout "$limit" "$@" > "$OUT/step.txt" 2>&1
  rc=$?
  tail -n 40 "$OUT/step.txt" >> "$LOG"
  echo "== rc=$rc in $(( $(date +%s) - start )) s" >> "$LOG"
  echo "rc=$rc $*"
  [ "$rc" = 0 ] || FAILED=1
}
FAILED=0
FILE=(--set proposals.source=file --set "proposals.file=$PROPOSALS")
step 90 $PY -m harness bench --device "$DEVICE" --results "$RESULTS" "${BENCH_QUICK[@]}"
[ "${GPU_CHECK_QUICK:-0}" = 1 ] || step 120 $PY -m harness bench --device "$DEVICE" --profile paper --images 10 --iters 5 --results "$RESULTS"
step 70 $PY -m harness run --detector faster --device "$DEVICE" --results "$RESULTS" "${QUICK[@]}"
step 70 $PY -m harness run --detector faster --device "$DEVICE" --amp --results "$RESULTS" "${QUICK[@]}"
step 70 $PY -m harness run --detector fast --device "$DEVICE" --results "$RESULTS" "${FILE[@]}" "${QUICK[@]}"
step 120 $PY -m harness run --detector rcnn --device "$DEVICE" --results "$RESULTS" "${FILE[@]}" "${QUICK[@]}"
rm -f "$OUT/step.txt"
cp "$RESULTS"/*.jsonl "$OUT"/ 2>/dev/null
echo "records: $RESULTS (copied to $OUT); log: $LOG"
exit $FAILED
