"""Checkpoint folders of a `SpeechLM`: what is saved, how it is found and loaded again.

A checkpoint stores only what training changed (connector, LoRA adapter, full-LLM weights if
tuned) plus the tokenizer and feature extractor, and names the base encoder and LLM; a model built
from random configs bundles its base weights in `encoder/` and `llm/` so it still round-trips.
Kept apart from modeling.py because saving and resolving folders is a job of its own (atomic
writes, base-model lookup, shipped checkpoints stripped to their trained weights), while
modeling.py is the data path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from selfpowered.atomic import atomic_directory
from selfpowered.audio import LogMelExtractor
from selfpowered.errors import ModelNotFoundError
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.encoder import SpeechEncoder

if TYPE_CHECKING:
    from selfpowered.model.modeling import SpeechLM

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "adapter"
BUNDLED_ENCODER, BUNDLED_LLM = "./encoder", "./llm"


def _strip_peft_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Base-model weights out of a PEFT-wrapped state dict (LoRA matrices dropped)."""
    base = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        key = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        base[key] = value
    return base


class CheckpointMixin:
    """save_pretrained / from_pretrained / load_trained_weights for `SpeechLM` (mixed in first,
    so these override PreTrainedModel's)."""

    @property
    def is_lora(self) -> bool:
        return hasattr(self.llm, "peft_config")

    def base_llm(self) -> PreTrainedModel:
        return self.llm.get_base_model() if self.is_lora else self.llm

    def _trained_state(self) -> dict[str, torch.Tensor]:
        state = {f"connector.{k}": v for k, v in self.connector.state_dict().items()}
        if self.config.train_encoder:
            state.update({f"encoder.{k}": v for k, v in self.encoder.whisper.state_dict().items()})
        if self.config.finetune == "full":
            state.update({f"llm.{k}": v for k, v in self.llm.state_dict().items()})
        # safetensors refuses shared storage (tied embeddings): store each tensor once, contiguous
        seen: dict[int, str] = {}
        unique = {}
        for key, value in state.items():
            if value.data_ptr() in seen:
                continue
            seen[value.data_ptr()] = key
            unique[key] = value.detach().contiguous().cpu()
        return unique

    def save_pretrained(self, save_directory: str | os.PathLike, bundle_base: bool | None = None, **_: Any) -> None:
        """Write a checkpoint folder (see module docstring). Written to a temporary sibling folder
        and renamed into place, so a kill never leaves a half-written checkpoint behind."""
        from safetensors.torch import save_file

        if bundle_base is None:  # no base to point at: built from configs, or itself loaded from a bundle
            references = (self.config.encoder_name_or_path, self.config.llm_name_or_path)
            bundle_base = any(ref in (None, BUNDLED_ENCODER, BUNDLED_LLM) for ref in references)
        with atomic_directory(save_directory) as staging:
            config = LSMConfig.from_dict(self.config.to_dict())
            if bundle_base:
                self._save_base(staging)
                config.encoder_name_or_path, config.llm_name_or_path = BUNDLED_ENCODER, BUNDLED_LLM
            config.save_pretrained(staging)
            save_file(self._trained_state(), str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
            if self.is_lora:
                self.llm.save_pretrained(str(staging / ADAPTER_DIR))
            self.tokenizer.save_pretrained(str(staging))
            self.mel.feature_extractor.save_pretrained(str(staging))

    def _save_base(self, folder: Path) -> None:
        from safetensors.torch import save_file

        encoder_dir = folder / BUNDLED_ENCODER
        encoder_dir.mkdir(parents=True)
        self.encoder.config.save_pretrained(str(encoder_dir))
        self.mel.feature_extractor.save_pretrained(str(encoder_dir))
        encoder_state = {k: v.detach().contiguous().cpu() for k, v in self.encoder.state_dict_for_save().items()}
        save_file(encoder_state, str(encoder_dir / WEIGHTS_NAME), metadata={"format": "pt"})
        base = self.base_llm()
        state = _strip_peft_state(self.llm.state_dict()) if self.is_lora else base.state_dict()
        base.save_pretrained(str(folder / BUNDLED_LLM), state_dict=state)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        is_trainable: bool = False,
        **_: Any,
    ) -> SpeechLM:
        """Load a checkpoint written by `save_pretrained` (base weights resolved from its config)."""

        from selfpowered.assets import resolve_model

        folder = Path(pretrained_model_name_or_path)
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder}: not a SpeechLM checkpoint (no config.json)")
        config = LSMConfig.from_pretrained(str(folder))
        if config.model_type != LSMConfig.model_type or not config.encoder_config:
            raise ModelNotFoundError(
                f"{folder}: config.json is not a SpeechLM config (model_type {config.model_type!r})"
            )

        def locate(name: str | None, kind: str) -> Path:
            if name in (BUNDLED_ENCODER, BUNDLED_LLM):
                return folder / name
            if name is None:
                raise ModelNotFoundError(f"{folder}: config names no {kind} model")
            return resolve_model(name, kind=kind)

        encoder = SpeechEncoder.from_pretrained(locate(config.encoder_name_or_path, "encoder"))
        llm_path = locate(config.llm_name_or_path, "llm")
        llm = AutoModelForCausalLM.from_pretrained(str(llm_path), dtype=torch.float32)
        # Training never changes the tokenizer or the feature extractor; a checkpoint stripped to
        # its trained weights (the shipped demo checkpoints) takes them from its base models.
        has_tokenizer = (folder / "tokenizer_config.json").is_file()
        tokenizer = AutoTokenizer.from_pretrained(str(folder if has_tokenizer else llm_path))
        extractor_source = (
            folder
            if (folder / "preprocessor_config.json").is_file()
            else locate(config.encoder_name_or_path, "encoder")
        )
        feature_extractor = LogMelExtractor.from_pretrained(extractor_source).feature_extractor
        model = cls(config, encoder, llm, tokenizer, feature_extractor)
        model.load_trained_weights(folder)
        if not is_trainable:
            model.eval()
        if dtype is not None:
            model = model.to(dtype)
        return model.to(device) if device is not None else model

    def load_trained_weights(self, folder: Path) -> None:
        """Load what `save_pretrained` stored (connector, trained encoder / full LLM, LoRA adapter)
        into this model; also how a training run resumes from a checkpoint folder."""
        from safetensors.torch import load_file

        config = self.config
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise ModelNotFoundError(f"{folder}: {WEIGHTS_NAME} is missing")
        state = load_file(str(weights))
        connector_state = {k.removeprefix("connector."): v for k, v in state.items() if k.startswith("connector.")}
        self.connector.load_state_dict(connector_state, strict=True)
        if config.train_encoder:
            self.encoder.whisper.load_state_dict(
                {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
            )
        if config.finetune == "full":
            llm_state = {k.removeprefix("llm."): v for k, v in state.items() if k.startswith("llm.")}
            missing, unexpected = self.llm.load_state_dict(llm_state, strict=False)
            tied = {"lm_head.weight"} if self.llm.config.tie_word_embeddings else set()
            if unexpected or set(missing) - tied:
                raise ModelNotFoundError(
                    f"{weights}: LLM weights do not fit (missing {missing[:5]}, unexpected {unexpected[:5]})"
                )
        if config.finetune == "lora":
            self._load_adapter(folder / ADAPTER_DIR)

    def _load_adapter(self, adapter: Path) -> None:
        """Load saved LoRA weights into the adapter that __init__ created from the same config."""
        from peft import load_peft_weights, set_peft_model_state_dict

        if not adapter.is_dir():
            raise ModelNotFoundError(f"{adapter.parent}: finetune is lora but the {ADAPTER_DIR}/ folder is missing")
        result = set_peft_model_state_dict(self.llm, load_peft_weights(str(adapter), device="cpu"))
        if getattr(result, "unexpected_keys", None):
            raise ModelNotFoundError(f"{adapter}: adapter weights do not fit this model: {result.unexpected_keys[:5]}")
