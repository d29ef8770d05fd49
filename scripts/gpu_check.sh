#!/usr/bin/env bash
# One prepared check for a CUDA machine: the bench for swin-s (random weights) at 512x1024 with 1, 4
# and 8 streams through a real server, plus the bundled tiny model, in under 8 minutes. Writes its JSON to
# ${OUT:-.}/gpu_check_{swin_s,tiny}.json and prints the tables; commit the numbers under docs/benchmark/.
#
#   bash scripts/gpu_check.sh            # from the repository root, after `make install`
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check.sh needs a CUDA device (torch.cuda.is_available() is False)"
p = torch.cuda.get_device_properties(0)
print(f"CUDA device: {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16: {torch.cuda.is_bf16_supported()}")
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
# swin-s at 512x1024: library rows (interleaved), 8 streams one by one vs one batched call (cross-stream batching),
# memory (allocated bytes per stream), server 1/4/8 streams (the CUDA default layout batches up to 8 streams per
# call) against one lane that takes them one by one
timeout 400 "$PY" -c "from server.cli import main; main()" bench --model-preset swin-s --image-size 512 \
  --size 512x1024 --frames 10 --streams 1 --streams 4 --streams 8 --seconds 12 --threads 4 \
  --cross-stream-batch 8 --json "$OUT/gpu_check_swin_s.json"
# the bundled tiny model: the same rows at its own size (where overheads, not FLOPs, dominate)
timeout 75 "$PY" -c "from server.cli import main; main()" bench --quick --threads 4 --cross-stream-batch 8 --json "$OUT/gpu_check_tiny.json"
