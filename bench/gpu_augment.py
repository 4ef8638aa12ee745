"""Run the self-powered augmentation of a manifest on a lent GPU (same code as on the CPU).

The device image has torch/transformers but not our CLI's extras (pydantic, soundfile), so this
drives the library directly: rebuild the embedded SmolLM2 from its GGUF (carried in pieces),
then `augment()` with the hf engine in bf16 with a large batch. See bench/gpu_augment.sh.

    python bench/gpu_augment.py --gguf /tmp/smol/model.gguf --manifest M --out O [--recipe ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from selfpowered.augment.run import augment  # noqa: E402
from selfpowered.config import AugmentConfig  # noqa: E402
from selfpowered.convert.gguf_causal_lm import convert_gguf_causal_lm  # noqa: E402
from selfpowered.model.generation import HFGenerator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", default="demo")
    parser.add_argument("--recipe", default="selfpowered")
    parser.add_argument("--max-batch", type=int, default=384)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    llm_dir = args.gguf.parent / "hf"
    if not (llm_dir / "config.json").is_file():
        started = time.perf_counter()
        convert_gguf_causal_lm(args.gguf, llm_dir)
        print(f"converted GGUF in {time.perf_counter() - started:.1f} s", flush=True)
    engine = HFGenerator(str(llm_dir), max_batch=args.max_batch, device=args.device)
    engine.model_id = "smollm2-135m-instruct"  # the embedded model this folder was converted from
    config = AugmentConfig(
        manifest=args.manifest, output=args.out, tasks=args.tasks, recipe=args.recipe, chunk_size=4096, limit=args.limit
    )
    stats = augment(config, engine, progress=False)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
