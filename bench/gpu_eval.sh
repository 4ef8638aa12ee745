#!/usr/bin/env bash
# Run on a lent GPU machine: cost per answer, LSM vs cascade (Whisper ASR -> the same LLM), random
# weights of real shapes at demo and paper scale (bench/gpu_eval_cost.py). Needs torch + transformers + peft.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
PYTHONUNBUFFERED=1 python3 bench/gpu_eval_cost.py --out "${OUT:-.}/gpu_eval_cost.md" "$@"
