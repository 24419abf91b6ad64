#!/usr/bin/env bash
# Calls per GPU at p95 <= 300 ms, for tiny.en and base, on a lent GPU machine (the device tool).
# CTranslate2's PyPI wheels load libcublas.so.12; the lent machines ship CUDA 13 only, so we
# point libcublas.so.12 / libcublasLt.so.12 at CUDA 13's cuBLAS first (DESIGN.md).
# Prints one JSON line per model from benchmarks/latency.py --find-capacity.
#   bash benchmarks/gpu_capacity.sh            (from the repo root, with .venv built)
set -euo pipefail
cd "$(dirname "$0")/.."
shim=$(mktemp -d)
for lib in libcublas libcublasLt; do
  real=$(ldconfig -p | awk -v l="$lib.so.13" '$1 == l {print $NF; exit}')
  [ -n "$real" ] || real=$(find / -name "$lib.so.13*" 2>/dev/null | head -n 1)
  [ -n "$real" ] && ln -sf "$real" "$shim/$lib.so.12"
done
export LD_LIBRARY_PATH="$shim:${LD_LIBRARY_PATH:-}"
.venv/bin/python -c "import ctranslate2; print('cuda devices:', ctranslate2.get_cuda_device_count())"
for model in tiny.en base; do
  cfg=$(mktemp --suffix=.yaml)
  printf 'asr:\n  model: %s\n  device: cuda\n  workers: 2\n  batch_size: 8\n' "$model" > "$cfg"
  .venv/bin/python benchmarks/latency.py --find-capacity --budget-ms 300 --config "$cfg" \
    --duration 45 --json | tail -n 1 | sed "s/^{/{\"model\": \"$model\", /"
done
