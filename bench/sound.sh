#!/usr/bin/env bash
# Issue 33's experiments: an LSM that reads Whisper's words as the cascade does (the LLM frozen) and
# hears how the speech sounds through an utterance Q-Former's slots. Every stage is a public command.
#   bash bench/sound.sh STAGE [ARM...]
# Stages (run in this order; each reuses what earlier ones made under demo-output/):
#   paraling-data     templated and self-powered answers about how the paraling train clips sound
#   closed-data       the LLM's own verified answers to one-word sound questions (paraling-closed) over
#                     paraling train clips 1,001-3,000 (no other row uses them)
#   init [NAME [CONFIG]]  a fresh LSM from bench/sound/CONFIG.yaml (default: NAME's; init: LLM frozen;
#                     init-lora: LoRA r 8; init-tags: the cascade's prompt, LoRA r 8 at zero)
#   tag NAME [ARGS]   fit NAME's sound tagger on the paraling train clips, scored on the dev pairs, with
#                     its instruction judge (ARGS: more `selfpowered tag` flags, e.g. --no-judge: the line
#                     for every instruction). init-tags: `init init-tags` + `tag init-tags --no-judge`;
#                     init-routed: `init init-routed init-tags` + `tag init-routed`
#   train ARM...      bench/sound/train-ARM.yaml -> demo-output/sound/ARM
#   eval-dev ARM...   dev sets only (recipe choices): paraling dev pairs, content on diverse dev (OS, OV:
#                     the open recipe's self-powered and vanilla arms, demo-output/open/)
# Results: bench/results/sound/.
set -euo pipefail
cd "$(dirname "$0")/.."
SP=.venv/bin/selfpowered
OUT=demo-output/sound
RESULTS=bench/results/sound
mkdir -p "$OUT" "$RESULTS"
stage=${1:?stage}
shift || true

case "$stage" in
  paraling-data)
    $SP augment demo-output/paraling/train.jsonl demo-output/aug/paraling.templated.jsonl --tasks paraling \
      --recipe templated
    $SP augment demo-output/paraling/train.jsonl demo-output/aug/paraling.sp.jsonl --tasks paraling \
      --set verify_attempts=3
    cp demo-output/aug/paraling.sp.stats.json demo-output/aug/paraling.sp.card.json "$RESULTS/"
    ;;
  closed-data)
    sed -n 1001,3000p demo-output/paraling/train.jsonl > demo-output/paraling/train-rest.jsonl
    $SP augment demo-output/paraling/train-rest.jsonl demo-output/aug/paraling.spc-1000.jsonl --tasks paraling-closed \
      --set limit=1000 --set verify_attempts=2 --set max_new_tokens=96 --set filters.trim_truncated=true
    cp demo-output/aug/paraling.spc-1000.stats.json demo-output/aug/paraling.spc-1000.card.json "$RESULTS/"
    ;;
  init)
    name=${1:-init}
    $SP init "$OUT/$name" --config "bench/sound/${2:-$name}.yaml"
    ;;
  tag)
    name=${1:?checkpoint name under demo-output/sound}
    shift
    $SP tag "$OUT/$name" --train demo-output/paraling/train.jsonl --dev demo-output/paraling/dev.jsonl \
      --cache demo-output/hearing/train "$@"
    cp "$OUT/$name/sound_tagger.stats.json" "$RESULTS/$name.sound_tagger.stats.json"
    ;;
  train)
    for arm in "$@"; do
      $SP train "bench/sound/train-$arm.yaml" --resume 2>&1 | tee "$RESULTS/$arm.log"
      cp "$OUT/$arm/train_summary.json" "$RESULTS/$arm.train_summary.json"
    done
    ;;
  eval-dev)
    models=()
    for arm in "$@"; do
      case "$arm" in  # OS / OV: the open recipe's arms (the shipped pair's), beside the experiments
        OS) models+=(-m "OS=demo-output/open/selfpowered/final") ;;
        OV) models+=(-m "OV=demo-output/open/vanilla/final") ;;
        *) if [ -d "$OUT/$arm/final" ]; then models+=(-m "$arm=$OUT/$arm/final"); else models+=(-m "$arm=$OUT/$arm"); fi ;;  # an init
      esac
    done
    $SP eval -c configs/eval-demo.yaml --data demo-output/diverse/dev.jsonl --output "$OUT/eval-dev" "${models[@]}" \
      --set "suites=[asr,content,paraling]" --set ood_sets={} --set limit=120 \
      --set content.data=demo-output/diverse/dev.jsonl --set content.limit=120 \
      --set paraling.data=demo-output/paraling/dev.jsonl --set paraling.real=null
    cp "$OUT/eval-dev/report.md" "$RESULTS/eval-dev.md"
    cp "$OUT/eval-dev/report.json" "$RESULTS/eval-dev.json"
    ;;
  *)
    echo "unknown stage $stage" >&2
    exit 2
    ;;
esac
