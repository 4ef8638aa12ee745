"""Checkpoint folders of a `SpeechLM`: what is saved, how the parts are found and loaded again.

A checkpoint stores only what training changed (connector, LoRA adapter, full-LLM weights if
tuned) plus the tokenizer and feature extractor, and names the base encoder and LLM it was built
on; a model built from random configs bundles its base weights in `encoder/` and `llm/` so it
still round-trips. These are functions of a model (SpeechLM's save_pretrained / from_pretrained
call them), kept here so modeling.py stays the data path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from selfpowered.atomic import atomic_directory
from selfpowered.audio import LogMelExtractor
from selfpowered.errors import CheckpointError, ModelNotFoundError
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.encoder import SpeechEncoder, decoder_token_rate

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "adapter"
BUNDLED_ENCODER, BUNDLED_LLM = "./encoder", "./llm"


def is_lora(llm: nn.Module) -> bool:
    return hasattr(llm, "peft_config")


def _strip_peft_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Base-model weights out of a PEFT-wrapped state dict (LoRA matrices dropped)."""
    base = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        key = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        base[key] = value
    return base


def trained_state(model: Any) -> dict[str, torch.Tensor]:
    """What training changed, under the names `load_trained_weights` reads: the connector, the
    encoder if trained, the LLM if fully fine-tuned (LoRA weights go to adapter/ instead)."""
    state = {f"connector.{k}": v for k, v in model.connector.state_dict().items()}
    if model.ctc_head is not None:
        state.update({f"ctc_head.{k}": v for k, v in model.ctc_head.tensors().items()})
    if model.token_bridge is not None:  # its table too, so the checkpoint reads without Whisper's tokenizer
        state.update({f"token_bridge.{k}": v for k, v in model.token_bridge.tensors().items()})
    if model.config.train_encoder:
        state.update({f"encoder.{k}": v for k, v in model.encoder.whisper.state_dict().items()})
    if model.config.finetune == "full":
        state.update({f"llm.{k}": v for k, v in model.llm.state_dict().items()})
    # safetensors refuses shared storage (tied embeddings): store each tensor once, contiguous
    seen: set[int] = set()
    unique = {}
    for key, value in state.items():
        if value.data_ptr() in seen:
            continue
        seen.add(value.data_ptr())
        unique[key] = value.detach().contiguous().cpu()
    return unique


def save_checkpoint(model: Any, folder: str | Path, bundle_base: bool | None = None) -> None:
    """Write a checkpoint folder into a temporary sibling, then rename it into place (a kill never
    leaves half a checkpoint). `bundle_base` (default: when there is no base to point at, as for a
    model built from configs) also writes the base encoder and LLM into the folder."""
    from safetensors.torch import save_file

    config = model.config
    if bundle_base is None:
        references = (config.encoder_name_or_path, config.llm_name_or_path)
        bundle_base = any(ref in (None, BUNDLED_ENCODER, BUNDLED_LLM) for ref in references)
    with atomic_directory(folder) as staging:
        saved = LSMConfig.from_dict(config.to_dict())
        if bundle_base:
            _save_base(model, staging)
            saved.encoder_name_or_path, saved.llm_name_or_path = BUNDLED_ENCODER, BUNDLED_LLM
        saved.save_pretrained(staging)
        save_file(trained_state(model), str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        if is_lora(model.llm):
            model.llm.save_pretrained(str(staging / ADAPTER_DIR))
        model.processor.save_pretrained(staging)  # tokenizer, feature extractor, processor_config.json


def _save_base(model: Any, folder: Path) -> None:
    from safetensors.torch import save_file

    encoder_dir = folder / BUNDLED_ENCODER
    encoder_dir.mkdir(parents=True)
    model.encoder.config.save_pretrained(str(encoder_dir))
    model.mel.feature_extractor.save_pretrained(str(encoder_dir))
    encoder_state = {k: v.detach().contiguous().cpu() for k, v in model.encoder.state_dict_for_save().items()}
    save_file(encoder_state, str(encoder_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    lora = is_lora(model.llm)
    base: PreTrainedModel = model.llm.get_base_model() if lora else model.llm
    state = _strip_peft_state(model.llm.state_dict()) if lora else base.state_dict()
    base.save_pretrained(str(folder / BUNDLED_LLM), state_dict=state)


def load_parts(folder: str | Path) -> tuple[LSMConfig, SpeechEncoder, PreTrainedModel, Any, Any, Path]:
    """The config and the base parts a checkpoint names: encoder, LLM, tokenizer, feature extractor
    (resolved from local folders or embedded defaults; bundled ones from inside the checkpoint),
    and the Whisper folder they came from."""
    from selfpowered.assets import resolve_model

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{folder}: not a SpeechLM checkpoint (no config.json)")
    config = LSMConfig.from_pretrained(str(folder))
    if config.model_type != LSMConfig.model_type or not config.encoder_config:
        raise ModelNotFoundError(f"{folder}: config.json is not a SpeechLM config (model_type {config.model_type!r})")

    def locate(name: str | None, kind: str) -> Path:
        if name in (BUNDLED_ENCODER, BUNDLED_LLM):
            return folder / name
        if name is None:
            raise ModelNotFoundError(f"{folder}: config names no {kind} model")
        return resolve_model(name, kind=kind)

    encoder_path = locate(config.encoder_name_or_path, "encoder")
    llm_path = locate(config.llm_name_or_path, "llm")
    encoder = SpeechEncoder.from_pretrained(encoder_path, decoder_token_rate(config))
    llm = AutoModelForCausalLM.from_pretrained(str(llm_path), dtype=torch.float32)
    # Training never changes the tokenizer or the feature extractor; a checkpoint stripped to
    # its trained weights (the shipped demo checkpoints) takes them from its base models.
    has_tokenizer = (folder / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(folder if has_tokenizer else llm_path))
    extractor_source = folder if (folder / "preprocessor_config.json").is_file() else encoder_path
    feature_extractor = LogMelExtractor.from_pretrained(extractor_source).feature_extractor
    return config, encoder, llm, tokenizer, feature_extractor, encoder_path


def load_trained_weights(model: Any, folder: str | Path) -> None:
    """Load what `save_checkpoint` stored (connector, trained encoder / full LLM, LoRA adapter) into
    a model built from the same config; also how a training run resumes from a checkpoint."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = model.config
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder}: {WEIGHTS_NAME} is missing")
    state = load_file(str(weights))

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}

    try:
        model.connector.load_state_dict(part("connector."), strict=True)
        if config.train_encoder:
            model.encoder.whisper.load_state_dict(part("encoder."))
        if model.ctc_head is not None:
            _load_ctc_head(model, part("ctc_head."), weights)
        if model.token_bridge is not None:
            _load_token_bridge(model, part("token_bridge."), weights)
    except RuntimeError as exc:  # torch's shape / key mismatch report
        raise CheckpointError(f"{weights}: weights do not fit the model in config.json ({exc})") from exc
    if config.finetune == "full":
        missing, unexpected = model.llm.load_state_dict(part("llm."), strict=False)
        tied = {"lm_head.weight"} if model.llm.config.tie_word_embeddings else set()
        if unexpected or set(missing) - tied:
            raise CheckpointError(
                f"{weights}: LLM weights do not fit (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
    if config.finetune == "lora":
        _load_adapter(model.llm, folder / ADAPTER_DIR)


def _load_ctc_head(model: Any, tensors: dict[str, torch.Tensor], weights: Path) -> None:
    """The trained CTC head of a ctc_posterior LSM (its vocabulary comes with it)."""
    if not tensors:
        raise CheckpointError(f"{weights}: config.json says speech_tokens: ctc_posterior, but there is no ctc_head")
    embeddings = model.llm.get_input_embeddings().weight
    trainable = model.ctc_head.blank.requires_grad
    model.ctc_head = type(model.ctc_head).from_tensors(tensors, embeddings).to(embeddings.device)
    model.ctc_head.requires_grad_(trainable)


def _load_token_bridge(model: Any, tensors: dict[str, torch.Tensor], weights: Path) -> None:
    """The Whisper -> LLM token table and gate of a whisper_text LSM."""
    if not tensors:
        raise CheckpointError(f"{weights}: config.json says speech_tokens: whisper_text, but there is no token_bridge")
    device = model.llm.get_input_embeddings().weight.device
    trainable = model.token_bridge.gate.requires_grad
    model.token_bridge = type(model.token_bridge).from_tensors(tensors).to(device)
    model.token_bridge.gate.requires_grad_(trainable)


def _load_adapter(llm: nn.Module, adapter: Path) -> None:
    """Load saved LoRA weights into the adapter the model created from the same config."""
    from peft import load_peft_weights, set_peft_model_state_dict

    if not adapter.is_dir():
        raise CheckpointError(f"{adapter.parent}: finetune is lora but the {ADAPTER_DIR}/ folder is missing")
    result = set_peft_model_state_dict(llm, load_peft_weights(str(adapter), device="cpu"))
    if getattr(result, "unexpected_keys", None):
        raise CheckpointError(f"{adapter}: adapter weights do not fit this model: {result.unexpected_keys[:5]}")
