#!/usr/bin/env bash
# Run on a lent GPU machine (see bench/RESULTS.md for the latest numbers):
#   correctness (batched == one-by-one greedy, fp32) and throughput of the SpeechLM, random
#   weights of real shapes, demo scale (Whisper tiny.en + SmolLM2-135M) and paper scale
#   (Whisper large-v2 encoder + a 7B Llama). Needs only torch, transformers and peft there.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
PYTHONUNBUFFERED=1 python3 bench/gpu_speechlm.py --out "${OUT:-.}/gpu_results.md" "$@"
