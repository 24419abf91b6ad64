#!/usr/bin/env bash
# Calls per GPU at p95 <= BUDGET_MS (default 300 ms), for tiny.en and base, on a GPU machine.
#   bash benchmarks/gpu_capacity.sh [MODEL ...]        (from anywhere; default: tiny.en base)
# Environment: PYTHON (default .venv/bin/python), LADDER (calls to try, in order), DURATION
# (seconds of the demo call each caller plays), CLIENT_PROCS, BUDGET_MS, LOG_DIR.
# CTranslate2's PyPI wheels load CUDA 12's libcublas.so.12; a machine with CUDA 13 only gets
# libcublas(Lt).so.12 links to its CUDA 13 cuBLAS first (DESIGN.md), and cuDNN 9 from the
# nvidia-cudnn wheel when the system has none. Prints one JSON line per ladder step and model.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
LADDER=${LADDER:-16 32 64 96 128 160}
DURATION=${DURATION:-32}
CLIENT_PROCS=${CLIENT_PROCS:-8}
BUDGET_MS=${BUDGET_MS:-300}
LOG_DIR=${LOG_DIR:-$(mktemp -d)}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(tiny.en base)

find_lib() {  # first file named $1* under the usual library roots
  ldconfig -p | awk -v l="$1" '$1 == l {print $NF; exit}' | grep . && return
  find /usr/local /usr/lib /opt "$($PYTHON -c 'import site; print(site.getsitepackages()[0])')" \
    -name "$1*" -print -quit 2>/dev/null
}
shim=$(mktemp -d)
libdirs=$shim
if ! ldconfig -p | grep -q 'libcublas.so.12 '; then
  for lib in libcublas libcublasLt; do
    real=$(find_lib "$lib.so.13" || true)
    [ -n "$real" ] && ln -sf "$real" "$shim/$lib.so.12" && libdirs="$libdirs:$(dirname "$real")"
  done
fi
if ! ldconfig -p | grep -q 'libcudnn.so.9 '; then
  real=$(find_lib libcudnn.so.9 || true)
  [ -n "$real" ] && libdirs="$libdirs:$(dirname "$real")"
fi
export LD_LIBRARY_PATH="$libdirs:${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true

for model in "${models[@]}"; do
  # Fail in seconds, not after a ladder of timeouts: one real decode on the GPU first.
  $PYTHON - "$model" >&2 <<'EOF'
import sys, time
from cxguard.asr import AsrOptions, Transcriber
from cxguard.audio.files import read_audio
from cxguard.runtime.demo import demo_audio

t = Transcriber(AsrOptions(model=sys.argv[1], device="cuda"))
pcm = read_audio(demo_audio()[0], 16000)[8000 : 16000 * 6]
t.transcribe(pcm, 16000)
t0 = time.perf_counter()
text = t.transcribe(pcm, 16000).text
print(f"{sys.argv[1]} on {t.device}/{t.compute_type}: {1000 * (time.perf_counter() - t0):.1f} ms:"
      f" {text!r}")
EOF
  cfg=$(mktemp --suffix=.yaml)
  printf 'asr:\n  model: %s\n  device: cuda\n  workers: 2\n  batch_size: 16\n  queue_size: 1024\n' \
    "$model" >"$cfg"
  # shellcheck disable=SC2086  # LADDER is a list of numbers
  $PYTHON benchmarks/latency.py --find-capacity --budget-ms "$BUDGET_MS" --config "$cfg" \
    --duration "$DURATION" --stagger 4 --ladder $LADDER --client-procs "$CLIENT_PROCS" \
    --server-log "$LOG_DIR/server-$model.log" --json |
    sed "s/^{/{\"gpu_model\": \"$model\", /"
done
