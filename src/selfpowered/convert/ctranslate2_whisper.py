"""Convert a CTranslate2 Whisper `model.bin` into a Hugging Face Whisper folder.

Why our own reader: the only offline Whisper weights ship as CTranslate2 files, and depending on
`ctranslate2` just to read them would pull a native runtime for a format that is a plain binary:
u32 version; (version >= 2) a u16-length-prefixed spec name and a u32 revision; u32 variable count;
per variable a u16-prefixed name, u8 rank, rank x u32 shape, u8 dtype, u32 byte count, raw bytes;
then aliases. The mapping to `WhisperForConditionalGeneration` names is below.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from selfpowered.errors import AssetError

_CT2_DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
    5: None,  # bfloat16: no numpy dtype, handled through torch
}

# English-only Whisper vocabularies (51864 tokens) shift every special token down by one
# compared with multilingual ones; using the multilingual ids makes generate() never stop.
_ENGLISH_ONLY_VOCAB = 51864


def read_ctranslate2_model(path: Path) -> dict[str, torch.Tensor]:
    """Read every variable of a CTranslate2 `model.bin` into float/int tensors (aliases resolved)."""
    try:
        with open(path, "rb") as handle:
            return _read_variables(handle)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise AssetError(f"{path}: not a readable CTranslate2 model file ({exc})") from exc


def _read_variables(handle: BinaryIO) -> dict[str, torch.Tensor]:
    def unpack(fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        data = handle.read(size)
        if len(data) != size:
            raise ValueError("unexpected end of file")
        return struct.unpack("<" + fmt, data)[0]

    def read_string() -> str:
        length = unpack("H")
        return handle.read(length).decode("utf-8").rstrip("\0")

    version = unpack("I")
    if version >= 2:
        read_string()  # spec name, e.g. WhisperSpec
        unpack("I")  # spec revision
    variables: dict[str, torch.Tensor] = {}
    for _ in range(unpack("I")):
        name = read_string()
        rank = unpack("B")
        shape = [unpack("I") for _ in range(rank)]
        dtype_code = unpack("B")
        num_bytes = unpack("I")
        raw = handle.read(num_bytes)
        if len(raw) != num_bytes:
            raise ValueError(f"variable {name!r} is truncated")
        if dtype_code == 5:
            tensor = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(shape)
        elif dtype_code in _CT2_DTYPES:
            tensor = torch.from_numpy(np.frombuffer(raw, dtype=_CT2_DTYPES[dtype_code]).copy())
            tensor = tensor.reshape(shape)
        else:
            raise ValueError(f"variable {name!r} has unknown dtype code {dtype_code}")
        variables[name] = tensor
    if version >= 3:
        for _ in range(unpack("I")):
            alias, target = read_string(), read_string()
            variables[alias] = variables[target]
    return variables


def _count_layers(variables: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    return len({match.group(1) for name in variables if (match := pattern.match(name))})


def _split_qkv(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(weight.chunk(3, dim=0))  # type: ignore[return-value]


def ctranslate2_to_hf_state_dict(variables: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Map CTranslate2 Whisper variables to transformers names; returns (state_dict, config kwargs)."""
    state: dict[str, torch.Tensor] = {}
    d_model = variables["encoder/conv1/bias"].shape[0]
    n_mels = variables["encoder/conv1/weight"].shape[1]
    vocab = variables["decoder/embeddings/weight"].shape[0]
    enc_layers = _count_layers(variables, "encoder")
    dec_layers = _count_layers(variables, "decoder")

    def layer_norm(src: str, dst: str) -> None:
        state[f"{dst}.weight"] = variables[f"{src}/gamma"]
        state[f"{dst}.bias"] = variables[f"{src}/beta"]

    def linear(src: str, dst: str) -> None:
        state[f"{dst}.weight"] = variables[f"{src}/weight"]
        if f"{src}/bias" in variables:
            state[f"{dst}.bias"] = variables[f"{src}/bias"]

    def self_attention(src: str, dst: str) -> None:
        q, k, v = _split_qkv(variables[f"{src}/linear_0/weight"])
        qb, _kb, vb = _split_qkv(variables[f"{src}/linear_0/bias"])  # Whisper's k_proj has no bias
        state.update({f"{dst}.q_proj.weight": q, f"{dst}.k_proj.weight": k, f"{dst}.v_proj.weight": v})
        state.update({f"{dst}.q_proj.bias": qb, f"{dst}.v_proj.bias": vb})
        linear(f"{src}/linear_1", f"{dst}.out_proj")

    def ffn(src: str, dst: str) -> None:
        layer_norm(f"{src}/layer_norm", f"{dst}.final_layer_norm")
        linear(f"{src}/linear_0", f"{dst}.fc1")
        linear(f"{src}/linear_1", f"{dst}.fc2")

    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    state["model.encoder.embed_positions.weight"] = variables["encoder/position_encodings/encodings"]
    layer_norm("encoder/layer_norm", "model.encoder.layer_norm")
    for i in range(enc_layers):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        self_attention(f"{src}/self_attention", f"{dst}.self_attn")
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        ffn(f"{src}/ffn", dst)

    state["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    state["model.decoder.embed_positions.weight"] = variables["decoder/position_encodings/encodings"]
    layer_norm("decoder/layer_norm", "model.decoder.layer_norm")
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        self_attention(f"{src}/self_attention", f"{dst}.self_attn")
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        k, v = variables[f"{src}/attention/linear_1/weight"].chunk(2, dim=0)
        _kb, vb = variables[f"{src}/attention/linear_1/bias"].chunk(2, dim=0)
        state.update({f"{dst}.encoder_attn.k_proj.weight": k, f"{dst}.encoder_attn.v_proj.weight": v})
        state[f"{dst}.encoder_attn.v_proj.bias"] = vb
        linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        layer_norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        ffn(f"{src}/ffn", dst)

    config = {
        "vocab_size": vocab,
        "num_mel_bins": n_mels,
        "d_model": d_model,
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_attention_heads": int(variables["encoder/num_heads"].item()),
        "decoder_attention_heads": int(variables["decoder/num_heads"].item()),
        "encoder_ffn_dim": variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "max_source_positions": variables["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": variables["decoder/position_encodings/encodings"].shape[0],
    }
    return {name: tensor.float().contiguous() for name, tensor in state.items()}, config


def _special_token_ids(vocab_size: int) -> dict[str, int]:
    """Special token ids; English-only vocabularies are one lower than multilingual ones."""
    shift = 0 if vocab_size == _ENGLISH_ONLY_VOCAB else 1
    return {
        "eos": 50256 + shift,
        "decoder_start": 50257 + shift,
        "no_timestamps": 50362 + shift,
        "transcribe": 50358 + shift,
        "translate": 50357 + shift,
    }


def convert_ctranslate2_whisper(src_dir: Path, dst_dir: Path) -> None:
    """Write a `WhisperForConditionalGeneration` folder (fp32 safetensors, tokenizer, extractor).

    `src_dir` holds CTranslate2's `model.bin`, `config.json` and `tokenizer.json`; a `model.bin`
    split into `model.bin.part*` files is joined in order.
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    model_file = src_dir / "model.bin"
    if not model_file.exists():
        parts = sorted(src_dir.glob("model.bin.part*"))
        if not parts:
            raise AssetError(f"{src_dir}: no model.bin (or model.bin.part*) to convert")
        dst_dir.mkdir(parents=True, exist_ok=True)
        model_file = dst_dir / "model.bin.joined"
        with open(model_file, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
    variables = read_ctranslate2_model(model_file)
    if model_file.name == "model.bin.joined":
        model_file.unlink()
    state, arch = ctranslate2_to_hf_state_dict(variables)
    ct2_config = json.loads((src_dir / "config.json").read_text())
    ids = _special_token_ids(arch["vocab_size"])
    config = WhisperConfig(
        **arch,
        decoder_start_token_id=ids["decoder_start"],
        eos_token_id=ids["eos"],
        bos_token_id=ids["eos"],
        pad_token_id=ids["eos"],
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if name != "proj_out.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise AssetError(f"Whisper conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    multilingual = arch["vocab_size"] != _ENGLISH_ONLY_VOCAB
    generation = GenerationConfig(
        decoder_start_token_id=ids["decoder_start"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["eos"],
        bos_token_id=ids["eos"],
        no_timestamps_token_id=ids["no_timestamps"],
        is_multilingual=multilingual,
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        alignment_heads=ct2_config.get("alignment_heads"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(src_dir / "tokenizer.json"))
    if multilingual:
        lang_ids = ct2_config.get("lang_ids", [])
        generation.lang_to_id = dict(zip(tokenizer.convert_ids_to_tokens(lang_ids), lang_ids))
        generation.task_to_id = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
    model.generation_config = generation
    model.save_pretrained(dst_dir)
    tokenizer.save_pretrained(dst_dir)
    WhisperFeatureExtractor(feature_size=arch["num_mel_bins"]).save_pretrained(dst_dir)
