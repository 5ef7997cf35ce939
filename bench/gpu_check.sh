#!/usr/bin/env bash
# The CUDA path on a machine with an NVIDIA GPU, in one go (about 6 minutes, 8 at most):
#   1. tests/test_cuda.py: graphed vs eager run, re-capture after a hot swap, and the
#      sync-debug test (an epoch's steps under torch.cuda.set_sync_debug_mode("error"))
#   2. bench/bench_run.py on cuda: the real `actlab run` epoch phase by phase against the bare
#      loop and the bare CUDA-graph loop
#   3. bench/bench_train.py on cuda: engine epoch against the GEMM bound
# Every step has its own time limit; the figures are printed at the end and kept in
# bench/results/gpu-check-<time>.log.
#
#     bash bench/gpu_check.sh            # from anywhere; ACTLAB_DATA defaults to ../shared/datasets if present
set -u
cd "$(dirname "$0")/.."
mkdir -p bench/results
LOG="bench/results/gpu-check-$(date +%Y%m%d-%H%M%S).log"
if [ -z "${ACTLAB_DATA:-}" ] && [ -d ../shared/datasets/FashionMNIST/raw ]; then
    export ACTLAB_DATA="$(cd ../shared/datasets && pwd)"  # else the benchmarks use random data and say so
fi
PY="${PYTHON:-python}"
status=0

say() { echo "== $*" | tee -a "$LOG"; }
step() {  # step LIMIT_SECONDS NAME COMMAND...
    local limit=$1 name=$2; shift 2
    say "$name (limit ${limit} s): $*"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    say "$name: exit $rc after $((SECONDS - started)) s"
    [ "$rc" -eq 0 ] || status=1
}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); nothing to check" >&2
    exit 2
fi
say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || { say "torch cannot use the GPU: stopping"; exit 1; }

step 150 "CUDA tests (graphs, hot swap, sync-debug)" "$PY" -m pytest -q -p no:randomly tests/test_cuda.py -rs
step 45 "sync-debug test alone (verbose)" "$PY" -m pytest -q -p no:randomly tests/test_cuda.py -k never_sync -v
step 150 "bench_run on cuda" "$PY" bench/bench_run.py --device cuda --rounds 3 --clock wall
step 120 "bench_train on cuda" "$PY" bench/bench_train.py --device cuda --rounds 3 --clock wall --no-tutorial

say "figures"
grep -E "^(headline|  run|  bare|  gemm|  \(|  engine|  tutorial|WARNING)|passed|failed|skipped" "$LOG" | grep -v "^== "
say "log: $LOG"
exit $status
