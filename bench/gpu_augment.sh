#!/usr/bin/env bash
# Second of two device calls (the first copied .gguf/smollm2.part00 to /tmp/smol): join the GGUF,
# check it, install the carried wheels, augment the demo train split on the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p /tmp/smol
cat /tmp/smol/smollm2.part00 .gguf/smollm2.part01 > /tmp/smol/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /tmp/smol/model.gguf" | sha256sum -c -
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
mkdir -p demo-output/aug
time python3 bench/gpu_augment.py --gguf /tmp/smol/model.gguf --manifest demo-output/corpus/train.jsonl \
  --out demo-output/aug/train.sp.jsonl --tasks demo
cp demo-output/aug/train.sp.jsonl demo-output/aug/train.sp.rejects.jsonl demo-output/aug/train.sp.stats.json "$OUT"/
