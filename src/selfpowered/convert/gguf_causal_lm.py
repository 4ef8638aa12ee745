"""Convert a GGUF causal LM (as shipped inside a registry package) into a plain Hugging Face folder.

transformers can load GGUF directly (dequantised to fp32), but refuses to `save_pretrained` such a
model and re-dequantises on every load (slow). We rebuild the model from its config without the
quantisation record, copy the weights in, and save a normal folder once.
"""

from __future__ import annotations

import copy
from pathlib import Path

from selfpowered.errors import AssetError


def convert_gguf_causal_lm(gguf_path: Path, dst_dir: Path) -> None:
    """Write `dst_dir` as a standard `AutoModelForCausalLM` folder (fp32) plus its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf_path.is_file():
        raise AssetError(f"GGUF file not found: {gguf_path}")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    missing = [key for key in missing if not (key == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise AssetError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.generation_config = quantised.generation_config
    model.save_pretrained(dst_dir)
    tokenizer.save_pretrained(dst_dir)
