#!/usr/bin/env bash
# Copy the two demo checkpoints made by `selfpowered demo --retrain` (the open recipe; or by hand
# with configs/open-init.yaml, open-vanilla.yaml, open-selfpowered.yaml) into checkpoints/demo/, keeping only what
# training changed: config.json, model.safetensors (connector, token bridge), adapter/ (LoRA) and the data card
# card.json (what the checkpoint was trained on). The tokenizer
# and feature extractor come back from the embedded base models at load time.
#   bash scripts/pack_demo_checkpoints.sh [demo-output/open/vanilla/final] [demo-output/open/selfpowered/final]
# "-" for an arm keeps its shipped checkpoint untouched (its files keep their mtime, so `eval` reuses its
# cached answers), e.g. bash scripts/pack_demo_checkpoints.sh - demo-output/exp/BSif/final
set -euo pipefail
VANILLA=${1:-demo-output/open/vanilla/final}
SELFPOWERED=${2:-demo-output/open/selfpowered/final}
for pair in "vanilla:$VANILLA" "selfpowered:$SELFPOWERED"; do
  arm=${pair%%:*}
  src=${pair#*:}
  [ "$src" = - ] && { echo "checkpoints/demo/$arm: kept as shipped"; continue; }
  [ -f "$src/config.json" ] || { echo "error: $src is not a checkpoint (no config.json)" >&2; exit 1; }
  dest=checkpoints/demo/$arm
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/adapter"
  cp "$src/config.json" "$src/model.safetensors" "$dest.tmp/"
  [ -f "$src/card.json" ] && cp "$src/card.json" "$dest.tmp/"
  cp "$src/adapter/adapter_config.json" "$src/adapter/adapter_model.safetensors" "$dest.tmp/adapter/"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  echo "$dest <- $src ($(du -sh "$dest" | cut -f1))"
done
