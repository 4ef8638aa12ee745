"""Is the untrained-task content gap in all of the LoRA, or in a part of it that could be dropped?

Issue 33: the shipped self-powered LSM (cascade + LoRA r 8 on q/v) answers task types it never
trained worse than the cascade it contains (dev content chrF ~35 vs ~47) - the same LLM, frozen,
reading Whisper's transcript without the slots. These variants of a LoRA checkpoint ask, with
no training, which part of the adapter costs the content and which part carries what training won
(the paper's effect: no echo; transcription without chatter):

- `scale-F`: every LoRA B matrix times F - the weights moved back toward the LLM's own by 1 - F
  (WiSE-FT, Wortsman et al. 2022: interpolating a fine-tuned model toward its zero-shot weights
  often keeps the tuned skill and regains robustness); the update B A is linear in B, so this is
  the exact interpolation;
- `q` / `v`: only the adapter on q_proj (or v_proj), the other zeroed;
- `layers-A-B`: only layers A..B (inclusive) keep their adapter;
- `no-slots`: the adapter as trained, the utterance Q-Former's slots left out of the prompt
  (`connector: none`, its weights dropped): the cascade's prompt token for token, read by the
  tuned LLM - do the trained slots themselves cost the content?

Each variant is a copy of the checkpoint folder with its adapter weights changed (config, tagger and
connector untouched, but for `no-slots`). Score them on dev, never on a test set, with the eval, e.g.:

    .venv/bin/python bench/adapter_variants.py checkpoints/demo/selfpowered demo-output/lam \\
        scale-0.75 scale-0.5 scale-0.25 q v layers-0-14 layers-15-29
    .venv/bin/selfpowered eval -c configs/eval-demo.yaml --data demo-output/corpus/dev.jsonl \\
        --output demo-output/lam/eval-dev -m SP=checkpoints/demo/selfpowered -m q=demo-output/lam/q ... \\
        --set "suites=[asr,instruct,conflict,ifeval,content]" --set ood_sets={} --set limit=120 \\
        --set content.data=demo-output/diverse/dev.jsonl --set content.limit=120
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from peft.utils import SAFETENSORS_WEIGHTS_NAME as ADAPTER_WEIGHTS
from safetensors.torch import load_file, save_file

from selfpowered.atomic import atomic_file, atomic_write_text
from selfpowered.model.checkpoint import ADAPTER_DIR, WEIGHTS_NAME


def _layer(key: str) -> int:
    found = re.search(r"layers\.(\d+)\.", key)
    if found is None:
        raise ValueError(f"{key}: no layer index in this adapter weight's name")
    return int(found.group(1))


def factor_of(variant: str) -> Callable[[str], float]:
    """The factor each LoRA B matrix of `variant` is multiplied by, as a function of its name."""
    if match := re.fullmatch(r"scale-([0-9.]+)", variant):
        scale = float(match.group(1))
        return lambda key: scale
    if variant in ("q", "v"):
        return lambda key: 1.0 if f"{variant}_proj" in key else 0.0
    if variant == "no-slots":
        return lambda key: 1.0
    if match := re.fullmatch(r"layers-(\d+)-(\d+)", variant):
        low, high = int(match.group(1)), int(match.group(2))
        return lambda key: 1.0 if low <= _layer(key) <= high else 0.0
    raise SystemExit(f"unknown variant {variant!r}: scale-F | q | v | layers-A-B | no-slots")


def _drop_slots(folder: Path) -> None:
    """`connector: none` in the config, the connector's weights out of the checkpoint's weights."""
    config = json.loads((folder / "config.json").read_text())
    config["connector"] = {"name": "none"}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    weights = load_file(str(folder / WEIGHTS_NAME))
    kept = {key: tensor for key, tensor in weights.items() if not key.startswith("connector.")}
    with atomic_file(folder / WEIGHTS_NAME, suffix=".safetensors") as temporary:
        save_file(kept, str(temporary), metadata={"format": "pt"})


def make_variant(checkpoint: Path, variant: str, out: Path) -> dict:
    """Copy `checkpoint` to `out` with its LoRA B matrices multiplied as `variant` says."""
    source = checkpoint / ADAPTER_DIR / ADAPTER_WEIGHTS
    if not source.is_file():
        raise SystemExit(f"{checkpoint}: no {ADAPTER_DIR}/{ADAPTER_WEIGHTS} (not a LoRA checkpoint)")
    factor = factor_of(variant)
    weights = load_file(str(source))
    changed = {key: (tensor * factor(key) if ".lora_B." in key else tensor) for key, tensor in weights.items()}
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(checkpoint, out)
    with atomic_file(out / ADAPTER_DIR / ADAPTER_WEIGHTS, suffix=".safetensors") as temporary:
        save_file(changed, str(temporary), metadata={"format": "pt"})
    if variant == "no-slots":
        _drop_slots(out)
    kept = [key for key in weights if ".lora_B." in key and factor(key) != 0.0]
    return {"variant": variant, "folder": str(out), "lora_B_kept": len(kept)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, help="folder to write one checkpoint per variant into")
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args()
    for variant in args.variants:
        print(make_variant(args.checkpoint, variant, args.out / variant))


if __name__ == "__main__":
    main()
