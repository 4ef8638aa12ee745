#!/usr/bin/env bash
# Issue 13: the recipe search for an LSM that hears speech outside its training domain, on 2 CPU
# cores. Every variant is scored on the dev splits (the choice is made there: diverse/dev = held-out
# sentences of the training sources plus a dev-only accent; corpus/dev = in-domain); its ood and
# real numbers are recorded beside, never used to choose. Results: bench/results/ood_recipe/.
#   bash bench/ood_recipe.sh data      # corpora, test sets, feature cache
#   bash bench/ood_recipe.sh align     # connector-only CTC variants A1, A2 (align-baseline: A0)
#   bash bench/ood_recipe.sh augment   # self-powered and vanilla samples of both training corpora
#   bash bench/ood_recipe.sh tune      # S1: the self-powered arm on both corpora, from A2
#   bash bench/ood_recipe.sh eval      # a candidate on dev, ood and real
#   bash bench/ood_recipe.sh tune-more # S1b: 300 more steps; `curve`: WER over the checkpoints
# CTC-posterior speech tokens (model.speech_tokens: ctc_posterior, model/ctc.py):
#   bash bench/ood_recipe.sh align-posterior  # P0: A2's recipe, the LSM reading the CTC posterior
#   bash bench/ood_recipe.sh align-posterior-more  # P1: P0 + 1,400 align steps (the CTC head is the ceiling)
#   bash bench/ood_recipe.sh augment-subset   # self-powered samples of the first 2,000 rows per corpus (TASKS=demo-ifeval)
#   bash bench/ood_recipe.sh tune-posterior   # PV (vanilla: ASR pairs) and PS (self-powered) from P0
#   NAMES="P0 PV PS" bash bench/ood_recipe.sh eval-many   # one eval run, the text baseline shared
#   bash bench/ood_recipe.sh tune-more-posterior  # PVb: PV + 400 steps (ARM=PS: PSb); `curve-posterior`: WER of PV and PVb
#   bash bench/ood_recipe.sh connector-drift      # what tuning did to the connector: CTC WER through its head
#   NAME=PVfb NGRAMS="3 5" bash bench/ood_recipe.sh loop-guard  # ASR with the no-repeat n-gram loop guard
#   bash bench/ood_recipe.sh tune-frozen-connector  # PVf (ARM=PS: PSf): the connector frozen as P0 left it
#   bash bench/ood_recipe.sh tune-more-frozen-connector  # PVfb (ARM=PS: PSfb): 400 more steps of it
# Whisper-decoder speech states (model.speech_states: decoder, model/whisper_decoder.py): Whisper's own
# greedy decoder hands the connector one state per decoded token; the rest is P0/PVf/PSf's recipe.
#   ROWS=1500 bash bench/ood_recipe.sh decoder-data   # ASR pairs (+ self-powered samples) of the first ROWS rows per corpus
#   bash bench/ood_recipe.sh align-decoder   # D0: CTC-posterior connector on decoder states; CTC WER on dev/ood/real
#   STEPS=700 bash bench/ood_recipe.sh align-decoder    # the same at 700 steps; the choice: diverse/dev CTC WER
#   INIT=... ARMS="DV DS" bash bench/ood_recipe.sh tune-decoder   # DV (vanilla) / DS (self-powered), connector frozen
#   bash bench/ood_recipe.sh bridge-init; INIT=demo-output/exp/B0/final ARMS="BV BS" bash bench/ood_recipe.sh tune-decoder
# Issue 16 (instruction following on the bridge): constrained samples, then variants of BS from B0
#   bash bench/ood_recipe.sh ifeval-data   # demo-output/aug/train.sp-ifeval-1500.jsonl
#   INIT=demo-output/exp/B0/final ARMS=BSk TRAIN_SETS="--set loss.kl=1" bash bench/ood_recipe.sh tune-decoder
#   INIT=... ARMS=BSif EXTRA_DATA=demo-output/aug/train.sp-ifeval-1500.jsonl bash bench/ood_recipe.sh tune-decoder
#   CORPORA=diverse bash bench/ood_recipe.sh ifeval-data   # demo-output/aug/train-diverse.sp-ifeval-1500.jsonl
#   INIT=... ARMS=BSif2 EXTRA_DATA=demo-output/aug/train.sp-ifeval-1500.jsonl,demo-output/aug/train-diverse.sp-ifeval-1500.jsonl \
#     bash bench/ood_recipe.sh tune-decoder
#   NAMES="DV DS" TAG=D SUITES=asr,instruct OOD_SETS="ood: demo-output/ood/test.jsonl, real: demo-output/real/real.jsonl" \
#     bash bench/ood_recipe.sh eval-many   # in-domain, ood and real (no choice is made on these)
set -euo pipefail
cd "$(dirname "$0")/.."
SP=.venv/bin/selfpowered
PY=.venv/bin/python
OUT=demo-output
RES=bench/results/ood_recipe
CACHE=$OUT/features/whisper-tiny.en
mkdir -p "$RES"
DEV="$OUT/diverse/dev.jsonl $OUT/corpus/dev.jsonl"
TEST="$OUT/ood/test.jsonl $OUT/real/real.jsonl"

align_variant() {  # NAME STEPS TRAIN-LIST [extra --set ...]
  local name=$1 steps=$2 train=$3
  shift 3
  $SP align configs/align-demo.yaml --set output=$OUT/exp/$name --set steps=$steps --set "train=$train" \
    --set "dev=[$OUT/diverse/dev.jsonl,$OUT/corpus/dev.jsonl]" "$@" | tee "$RES/$name.log"
  cp "$OUT/exp/$name/align_summary.json" "$RES/$name.summary.json"
  $PY bench/ctc_wer.py "$OUT/exp/$name" $DEV $TEST --cache $CACHE --out "$RES/$name.ctc_wer.json" --all
}

DCACHE=$OUT/features/whisper-tiny.en-decoder  # decoder states: another fingerprint, another cache
DECODER_MODEL=(--set model.speech_states=decoder --set model.connector.stack_factor=1 --set model.connector.tokens_per_stack=2
  --set model.speech_tokens=ctc_posterior)

# the recipe of each arm tune-decoder trained (`RECIPE=` names it for a new arm)
declare -A ARM_RECIPE=([DV]=vanilla [BV]=vanilla [DS]=selfpowered [BS]=selfpowered [BSk]=selfpowered
  [BSif]=selfpowered [BSif2]=selfpowered)

decoder_arm() {  # ARM INIT STEPS SEED NAME [extra --set ...]: posterior_arm's recipe over the first ROWS rows
  local arm=$1 init=$2 steps=$3 seed=$4 name=$5 config data rows=${ROWS:-1500}
  shift 5
  local asr="$OUT/aug/train.vanilla-$rows.jsonl,$OUT/aug/train-diverse.vanilla-$rows.jsonl"
  # The arm's recipe: RECIPE=vanilla|selfpowered, or the one recorded for the arms this script ran
  local recipe=${RECIPE:-${ARM_RECIPE[$arm]:-}}
  case "$recipe" in
    vanilla) config=configs/demo-vanilla.yaml; data="[$asr${EXTRA_DATA:+,$EXTRA_DATA}]" ;;
    selfpowered) config=configs/demo.yaml
       data="[$OUT/aug/train.sp-$rows.jsonl,$OUT/aug/train-diverse.sp-$rows.jsonl,$asr${EXTRA_DATA:+,$EXTRA_DATA}]" ;;
    *) echo "arm $arm: say its recipe with RECIPE=vanilla or RECIPE=selfpowered" >&2; exit 2 ;;
  esac
  $SP train $config --set output=$OUT/exp/$name --set init_from=$init --set optim.max_steps=$steps \
    --set seed=$seed --set "data.train=$data" --set data.feature_cache=$DCACHE --set optim.lr_connector=0 "$@" \
    | tee "$RES/$name.log"
  cp "$OUT/exp/$name/train_summary.json" "$RES/$name.train_summary.json"
}

posterior_arm() {  # ARM INIT STEPS SEED NAME [extra --set ...]: the vanilla (PV) or self-powered (PS) recipe on P0's tokens
  local arm=$1 init=$2 steps=$3 seed=$4 name=$5 config data
  shift 5
  local asr="$OUT/aug/train.vanilla.jsonl,$OUT/aug/train-diverse.vanilla.jsonl" rows=${ROWS:-2000}
  if [ "$arm" = PV ]; then config=configs/demo-vanilla.yaml; data="[$asr]"
  else config=configs/demo.yaml; data="[$OUT/aug/train.sp-$rows.jsonl,$OUT/aug/train-diverse.sp-$rows.jsonl,$asr]"; fi
  $SP train $config --set output=$OUT/exp/$name --set init_from=$init --set optim.max_steps=$steps \
    --set seed=$seed --set "data.train=$data" "$@" | tee "$RES/$name.log"
  cp "$OUT/exp/$name/train_summary.json" "$RES/$name.train_summary.json"
}

case "${1:-all}" in
  data)
    $SP corpus synth $OUT/corpus --size demo
    $SP corpus synth $OUT/diverse --size diverse --check-wer 200
    $SP corpus synth $OUT/ood --size ood --check-wer 250 \
      --set "vocabulary_against=[$OUT/corpus/train.jsonl,$OUT/diverse/train.jsonl]"
    $SP corpus import pocketsphinx /usr/share/pocketsphinx/test/data $OUT/real/real.jsonl
    $SP features $OUT/corpus/train.jsonl $OUT/corpus/dev.jsonl $OUT/corpus/test.jsonl $OUT/diverse/train.jsonl \
      $OUT/diverse/dev.jsonl $OUT/ood/test.jsonl $OUT/real/real.jsonl --cache $CACHE
    ;;
  align)
    align_variant A1-grammar+diverse-700 700 "[$OUT/corpus/train.jsonl,$OUT/diverse/train.jsonl]"
    align_variant A2-grammar+diverse-1400 1400 "[$OUT/corpus/train.jsonl,$OUT/diverse/train.jsonl]"
    ;;
  align-masked)  # A2 with SpecAugment-style masking of the encoder states
    align_variant A3-grammar+diverse-1400-masked 1400 "[$OUT/corpus/train.jsonl,$OUT/diverse/train.jsonl]" \
      --set masking.time_masks=2 --set masking.time_width=0.05 --set masking.channel_masks=2 --set masking.channel_width=27
    ;;
  align-baseline)  # the shipped recipe's text (grammar only), for the record
    align_variant A0-grammar-700 700 "[$OUT/corpus/train.jsonl]"
    ;;
  augment)
    for corpus in corpus diverse; do
      name=$([ $corpus = corpus ] && echo train || echo train-diverse)
      $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.vanilla.jsonl --recipe vanilla
      $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.sp.jsonl --tasks demo
    done
    ;;
  tune)  # S1: the self-powered arm from the chosen alignment (A2), on the grammar's self-powered
    # samples + the ASR pairs of both corpora (the diverse corpus's self-powered samples were not
    # finished in the session's CPU time), 600 steps = 0.33 of its 1,814 batches per epoch
    INIT=${INIT:-$OUT/exp/A2-grammar+diverse-1400/final}
    STEPS=${STEPS:-600}
    name=S1-sp-grammar+asr-diverse
    $SP train configs/demo.yaml --set output=$OUT/exp/$name --set init_from=$INIT --set optim.max_steps=$STEPS \
      --set "data.train=[$OUT/aug/train.sp.jsonl,$OUT/aug/train.vanilla.jsonl,$OUT/aug/train-diverse.vanilla.jsonl]" \
      | tee "$RES/$name.log"
    cp "$OUT/exp/$name/train_summary.json" "$RES/$name.train_summary.json"
    ;;
  eval)  # a tuned candidate (NAME=...) in-domain, on diverse/dev, ood and real: WER, echo, self-echo, IFrate
    name=${NAME:-S1-sp-grammar+asr-diverse}
    # the demo's in-domain test draw (160) as the shipped checkpoints are scored, plus the dev and test sets;
    # the text-mode answers (the reference of the IFrate delta) are the demo eval's, reused from its cache
    mkdir -p $OUT/exp/$name/eval/predictions
    [ -d $OUT/eval/predictions/text ] && cp -r $OUT/eval/predictions/text $OUT/exp/$name/eval/predictions/
    $SP eval -c configs/eval-demo.yaml -m "$name=$OUT/exp/$name/final" --suites asr,instruct,ifeval \
      --data $OUT/corpus/test.jsonl --output $OUT/exp/$name/eval --set "baselines=[text]" \
      --set "ood_sets={diverse-dev: $OUT/diverse/dev.jsonl, ood: $OUT/ood/test.jsonl, real: $OUT/real/real.jsonl}"
    cp "$OUT/exp/$name/eval/report.json" "$RES/$name.eval.json"
    cp "$OUT/exp/$name/eval/report.md" "$RES/$name.eval.md"
    ;;
  tune-more)  # S1b: 300 more steps of S1's data from S1 (a fresh cosine, another batch order)
    name=S1b-sp-grammar+asr-diverse-plus300
    $SP train configs/demo.yaml --set output=$OUT/exp/$name --set init_from=$OUT/exp/S1-sp-grammar+asr-diverse/final \
      --set "data.train=[$OUT/aug/train.sp.jsonl,$OUT/aug/train.vanilla.jsonl,$OUT/aug/train-diverse.vanilla.jsonl]" \
      --set optim.max_steps=300 --set seed=1 | tee "$RES/S1b-plus300.log"
    ;;
  curve)  # ASR WER of S1's checkpoints (and S1b) on 100 diverse/dev utterances and the real recordings
    E=$OUT/exp/S1-sp-grammar+asr-diverse
    for ckpt in $E/checkpoint-200 $E/checkpoint-400 $E/final $OUT/exp/S1b-sp-grammar+asr-diverse-plus300/final; do
      [ -d "$ckpt" ] || continue
      tag=$(basename "$(dirname "$ckpt")")-$(basename "$ckpt")
      $SP eval -c configs/eval-demo.yaml -m "$tag=$ckpt" --suites asr --data $OUT/diverse/dev.jsonl \
        --output $OUT/exp/curve/$tag --set "baselines=[]" --set limit=100 --set "ood_sets={real: $OUT/real/real.jsonl}"
    done
    ;;
  align-posterior)  # P0: A2's data and steps, in ctc_posterior mode (the LLM reads the head's posterior)
    align_variant P0-posterior-grammar+diverse-1400 1400 "[$OUT/corpus/train.jsonl,$OUT/diverse/train.jsonl]" \
      --set model.speech_tokens=ctc_posterior
    ;;
  align-posterior-more)  # P1: P0 + MORE (1,400) align steps (a fresh one-cycle, seed 1): does the CTC ceiling move?
    align_variant P1-posterior-grammar+diverse-1400+${MORE:-1400} ${MORE:-1400} \
      "[$OUT/corpus/train.jsonl,$OUT/diverse/train.jsonl]" --set model.speech_tokens=ctc_posterior \
      --set init_from=$OUT/exp/P0-posterior-grammar+diverse-1400/final --set seed=1
    ;;
  augment-subset)  # self-powered samples of the first ROWS rows of each training corpus (the LLM's CPU time)
    ROWS=${ROWS:-2000}
    for corpus in corpus diverse; do
      name=$([ $corpus = corpus ] && echo train || echo train-diverse)
      $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.sp-$ROWS.jsonl --tasks ${TASKS:-demo} --set limit=$ROWS
      [ -f $OUT/aug/$name.vanilla.jsonl ] || $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.vanilla.jsonl --recipe vanilla
    done
    ;;
  tune-posterior)  # PV and PS from P0, the same steps (STEPS) and init; ARMS picks which
    STEPS=${STEPS:-200}
    for arm in ${ARMS:-PV PS}; do
      posterior_arm $arm $OUT/exp/P0-posterior-grammar+diverse-1400/final $STEPS 0 $arm
    done
    ;;
  tune-more-posterior)  # PVb (or PSb with ARM=PS): MORE (400) more steps of the arm's data from it
    # (a fresh cosine, another batch order)
    arm=${ARM:-PV}
    posterior_arm $arm $OUT/exp/$arm/final ${MORE:-400} 1 ${arm}b
    ;;
  tune-frozen-connector)  # PVf (ARM=PS: PSf): as tune-posterior, the connector frozen as P0 left it
    # (optim.lr_connector=0), so the LLM reads exactly the posterior that P0's CTC head spells
    arm=${ARM:-PV}
    posterior_arm $arm $OUT/exp/P0-posterior-grammar+diverse-1400/final ${STEPS:-200} 0 ${arm}f --set optim.lr_connector=0
    ;;
  tune-more-frozen-connector)  # PVfb (ARM=PS: PSfb): MORE (400) more steps from PVf, the connector still frozen
    arm=${ARM:-PV}
    posterior_arm $arm $OUT/exp/${arm}f/final ${MORE:-400} 1 ${arm}fb --set optim.lr_connector=0
    ;;
  loop-guard)  # NAME's ASR with generation.no_repeat_ngram_size N for each N in NGRAMS (the choice: diverse/dev)
    for n in ${NGRAMS:-3 5}; do
      $SP eval -c configs/eval-demo.yaml -m "${NAME:-PVfb}=$OUT/exp/${NAME:-PVfb}/final" --suites asr \
        --data $OUT/corpus/test.jsonl --output $OUT/exp/loop-guard/${NAME:-PVfb}-$n --set "baselines=[]" \
        --set generation.no_repeat_ngram_size=$n \
        --set "ood_sets={${OOD_SETS:-diverse-dev: $OUT/diverse/dev.jsonl, ood: $OUT/ood/test.jsonl, real: $OUT/real/real.jsonl}}"
      cp "$OUT/exp/loop-guard/${NAME:-PVfb}-$n/report.json" "$RES/loop-guard-${NAME:-PVfb}-$n.eval.json"
    done
    ;;
  connector-drift)  # CTC-greedy WER of each NAME's connector through its own head: what tuning did to it
    for name in ${NAMES:-PVb PSb}; do
      $PY bench/ctc_wer.py $OUT/exp/$name/final $TEST $OUT/diverse/dev.jsonl --cache $CACHE --out "$RES/$name.ctc_wer.json" --all
    done
    ;;
  curve-posterior)  # ASR WER of PV and PVb on the in-domain test, diverse/dev, ood and real (asr suite only)
    for name in ${NAMES:-PV PVb}; do
      $SP eval -c configs/eval-demo.yaml -m "$name=$OUT/exp/$name/final" --suites asr --data $OUT/corpus/test.jsonl \
        --output $OUT/exp/curve-posterior/$name --set "baselines=[]" \
        --set "ood_sets={diverse-dev: $OUT/diverse/dev.jsonl, ood: $OUT/ood/test.jsonl, real: $OUT/real/real.jsonl}"
      cp "$OUT/exp/curve-posterior/$name/report.json" "$RES/curve-posterior-$name.eval.json"
    done
    ;;
  decoder-data)  # the first ROWS rows of each training corpus: ASR pairs, and self-powered samples unless SP=0
    ROWS=${ROWS:-1500}
    for corpus in corpus diverse; do
      name=$([ $corpus = corpus ] && echo train || echo train-diverse)
      $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.vanilla-$ROWS.jsonl --recipe vanilla --set limit=$ROWS
      [ "${SP_SAMPLES:-1}" = 0 ] || \
        $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.sp-$ROWS.jsonl --tasks ${TASKS:-demo} --set limit=$ROWS
    done
    ;;
  ifeval-data)  # issue 16: constrained self-powered samples of the same first ROWS rows of the demo corpus - each
    # row draws one of demo-ifeval's constrained tasks, up to 4 answers (1 greedy + 3 sampled), kept only when
    # IFEval's checker passes (the LLM's own answers; no external teacher)
    # CORPORA="corpus diverse" adds the diverse corpus's rows (train-diverse.sp-ifeval-ROWS.jsonl)
    ROWS=${ROWS:-1500}
    for corpus in ${CORPORA:-corpus}; do
      name=$([ $corpus = corpus ] && echo train || echo train-diverse)
      $SP augment $OUT/$corpus/train.jsonl $OUT/aug/$name.sp-ifeval-$ROWS.jsonl --tasks demo-ifeval --set limit=$ROWS \
        --set "task_weights={continuation: 0, sentiment: 0, title: 0, question: 0, asr: 0}" --set verify_attempts=4
    done
    ;;
  align-decoder)  # D0: P0's recipe (CTC-posterior tokens, 1,400 steps) on decoder states of the first ROWS rows per corpus
    ROWS=${ROWS:-1500}
    name=D0-decoder-posterior-$ROWS-${STEPS:-1400}
    $SP align configs/align-demo.yaml --set output=$OUT/exp/$name --set steps=${STEPS:-1400} \
      --set "train=[$OUT/aug/train.vanilla-$ROWS.jsonl,$OUT/aug/train-diverse.vanilla-$ROWS.jsonl]" \
      --set "dev=[$OUT/diverse/dev.jsonl,$OUT/corpus/dev.jsonl]" --set feature_cache=$DCACHE "${DECODER_MODEL[@]}" \
      | tee "$RES/$name.log"
    cp "$OUT/exp/$name/align_summary.json" "$RES/$name.summary.json"
    $PY bench/ctc_wer.py "$OUT/exp/$name" $DEV $TEST --cache $DCACHE --out "$RES/$name.ctc_wer.json" --all
    ;;
  bridge-init)  # B0: a fresh whisper_text LSM (model/token_bridge.py): Whisper's decoded text in the LLM's own
    # embeddings, the connector's gate at 0; nothing to align
    $SP init $OUT/exp/B0/final --set model.connector=stack_mlp --set model.speech_states=decoder \
      --set model.connector.stack_factor=1 --set model.connector.tokens_per_stack=2 --set model.speech_tokens=whisper_text
    ;;
  tune-decoder)  # DV (vanilla) and DS (self-powered) from INIT (the D0 chosen on diverse/dev), connector frozen,
    # STEPS (200) each; ARMS="BV BS" INIT=demo-output/exp/B0/final: the same recipes on the bridge (gate held at 0)
    # Issue 16 variants: TRAIN_SETS="--set loss.kl=1" adds --set overrides, EXTRA_DATA=a.jsonl,b.jsonl more samples
    for arm in ${ARMS:-DV DS}; do
      decoder_arm $arm ${INIT:?set INIT to the chosen D0 checkpoint} ${STEPS:-200} 0 $arm ${TRAIN_SETS:-}
    done
    ;;
  eval-many)  # several candidates in one eval run (NAMES="P0 PV PS"; each NAME is a folder under exp/
    # holding final/ or is itself a checkpoint), with the text baseline's answers computed once; DATA=another manifest
    # (the issue-16 choice is made on demo-output/corpus/dev.jsonl)
    E=$OUT/exp/eval-${TAG:-posterior}
    models=()
    for name in ${NAMES:?set NAMES}; do
      dir=$OUT/exp/$name; [ -d "$dir" ] || dir=$(ls -d $OUT/exp/$name* | head -1)  # exact name first (BS, not BSif)
      models+=(-m "$name=$dir/final")
    done
    $SP eval -c configs/eval-demo.yaml "${models[@]}" --suites ${SUITES:-asr,instruct,ifeval} \
      --data ${DATA:-$OUT/corpus/test.jsonl} --output $E --set "baselines=[${BASELINES:-text}]" \
      --set "ood_sets={${OOD_SETS:-diverse-dev: $OUT/diverse/dev.jsonl, ood: $OUT/ood/test.jsonl, real: $OUT/real/real.jsonl}}" \
      ${EVAL_SET:-}
    cp "$E/report.json" "$RES/eval-${TAG:-posterior}.eval.json"
    cp "$E/report.md" "$RES/eval-${TAG:-posterior}.eval.md"
    ;;
  *) echo "usage: $0 data|decoder-data|ifeval-data|bridge-init|align-decoder|tune-decoder|align|align-masked|align-baseline|align-posterior|align-posterior-more|augment|augment-subset|tune|tune-more|tune-posterior|tune-more-posterior|tune-frozen-connector|tune-more-frozen-connector|connector-drift|loop-guard|eval|eval-many|curve|curve-posterior" >&2; exit 2 ;;
esac
