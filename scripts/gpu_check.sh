#!/usr/bin/env bash
# livefaces on a CUDA machine in one run of at most ~8 minutes (from the repository root):
#   bash scripts/gpu_check.sh [--video FILE] [--media DIR]     (extra arguments: gpu_check.py's)
# .whl/ (an ignored folder at the checkout's root, named in the device call's carry) holds the
# wheels that machine lacks: facenet-pytorch (the peer) and, optionally, PyAV. livefaces runs
# from the tree (no install). Results go to $OUT (default ./gpu_check_out): gpu_check.json,
# gpu_check.log, nvidia_smi.txt, the profiler tables. docs/benchmarks.md has the exact call.
set -u
export PYTHONUNBUFFERED=1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
t0=$(date +%s)
wheels=$(ls "$root"/.whl/*.whl 2>/dev/null || true)
if [ -n "$wheels" ]; then
  # shellcheck disable=SC2086
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site $wheels || { echo "gpu_check: wheel install failed"; exit 3; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
echo "gpu_check: wheels installed in $(( $(date +%s) - t0 )) s: ${wheels:-none}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv; nvidia-smi -q -d COMPUTE,ECC 2>/dev/null | grep -E "Compute Mode|MIG|Pending|Volatile" ; } \
  >"$OUT/nvidia_smi.txt" 2>&1 || echo "gpu_check: nvidia-smi failed" >>"$OUT/nvidia_smi.txt"
head -2 "$OUT/nvidia_smi.txt"
# hard stop well inside the call's limit; gpu_check.py writes its JSON and table on SIGTERM
timeout -k 15 "${GPU_CHECK_TIMEOUT:-450}" python3 "$here/gpu_check.py" --root "$root" --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
