#!/usr/bin/env bash
# Issue 16: the yield of IFEval-constrained self-powered samples (demo-ifeval's verifiable tasks
# only), greedy alone vs rejection sampling with ATTEMPTS answers at most, on the first ROWS rows
# of the demo corpus's train split. Resumable (augment is); table: bench/results/verify_yield/.
#   bash bench/verify_yield.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-demo-output}
ROWS=${ROWS:-400}
ATTEMPTS=${ATTEMPTS:-4}
SAMPLES=$OUT/aug/verify-yield-$ROWS-x$ATTEMPTS.jsonl
# the demo's own tasks weigh 0 here: every row draws one of the constrained tasks
.venv/bin/selfpowered augment $OUT/corpus/train.jsonl $SAMPLES --tasks demo-ifeval --set limit=$ROWS \
  --set "task_weights={continuation: 0, sentiment: 0, title: 0, question: 0, asr: 0}" \
  --set verify_attempts=$ATTEMPTS
.venv/bin/python bench/verify_yield.py $SAMPLES --out bench/results/verify_yield
