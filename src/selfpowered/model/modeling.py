"""`SpeechLM`: frozen Whisper encoder -> connector -> causal LLM (LoRA, full or frozen).

The data path is four small steps, each callable on its own so later stages can enter midway
(the training feature cache feeds `connect`, the bias analysis reads `splice` segments):

    audio --featurize--> mel chunks --encode--> encoder states --connect--> speech embeddings
    speech embeddings + PromptBuilder.pieces --splice--> LLM

A checkpoint stores only what training changed (connector, LoRA adapter, full-LLM weights if
tuned) plus the tokenizer and feature extractor, and names the base encoder and LLM; a model built
from random configs bundles its base weights in `encoder/` and `llm/` so it still round-trips.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, WhisperConfig
from transformers.modeling_outputs import CausalLMOutputWithPast

from selfpowered.atomic import atomic_directory
from selfpowered.audio import AudioInput, LogMelExtractor
from selfpowered.errors import ModelNotFoundError
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connector import build_connector
from selfpowered.model.encoder import SpeechEncoder, featurize
from selfpowered.model.prompting import PromptBuilder, SplicedBatch, splice

logger = logging.getLogger(__name__)

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


class SpeechLM(PreTrainedModel):
    """A large speech-text model. Build with `SpeechLM.build(...)`, load with `from_pretrained`."""

    config_class = LSMConfig
    base_model_prefix = "lsm"
    main_input_name = "instruction"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(
        self,
        config: LSMConfig,
        encoder: SpeechEncoder | None = None,
        llm: PreTrainedModel | None = None,
        tokenizer=None,
        feature_extractor=None,
    ) -> None:
        super().__init__(config)
        if tokenizer is None or feature_extractor is None:
            raise ValueError("SpeechLM needs a tokenizer and a feature extractor; use build() or from_pretrained()")
        self.encoder = encoder or SpeechEncoder.from_config(WhisperConfig(**config.encoder_config))
        self.connector = build_connector(config)
        self.llm = llm or AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.llm_config))
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.mel = LogMelExtractor(feature_extractor)
        self.prompt = PromptBuilder(tokenizer, config.prompt_format, config.speech_placeholder, config.system_prompt)
        self.post_init()  # before LoRA wrapping: HF gathers tied-weight names from the plain LLM
        self._apply_trainability()

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to do: pretrained parts arrive loaded and the connector initialises itself."""

    # ---------------------------------------------------------------------------------------------
    # construction
    # ---------------------------------------------------------------------------------------------
    def _apply_trainability(self) -> None:
        config = self.config
        self.encoder.requires_grad_(config.train_encoder)
        if config.finetune == "lora" and not hasattr(self.llm, "peft_config"):
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=config.lora_target_modules,
                task_type="CAUSAL_LM",
            )
            with warnings.catch_warnings():  # peft reads a transformers property deprecated in v5
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                self.llm = get_peft_model(self.llm, lora)
        elif config.finetune == "full":
            self.llm.requires_grad_(True)
        elif config.finetune == "frozen":
            self.llm.requires_grad_(False)
        self.connector.requires_grad_(True)

    @classmethod
    def build(
        cls,
        encoder: str | os.PathLike = "whisper-tiny.en",
        llm: str | os.PathLike = "smollm2-135m-instruct",
        dtype: torch.dtype | None = None,
        **config_kwargs: Any,
    ) -> SpeechLM:
        """A fresh LSM (random connector, new LoRA) on pretrained encoder and LLM weights.

        `encoder` / `llm` are local Hugging Face folders or embedded default names.
        """
        from selfpowered.assets import resolve_model

        encoder_path = resolve_model(encoder, kind="encoder")
        llm_path = resolve_model(llm, kind="llm")
        speech_encoder = SpeechEncoder.from_pretrained(encoder_path)
        language_model = AutoModelForCausalLM.from_pretrained(str(llm_path), dtype=dtype or torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(llm_path))
        feature_extractor = LogMelExtractor.from_pretrained(encoder_path).feature_extractor
        config = LSMConfig(
            encoder_name_or_path=str(encoder),
            llm_name_or_path=str(llm),
            encoder_config=speech_encoder.config.to_dict(),
            llm_config=language_model.config.to_dict(),
            **config_kwargs,
        )
        model = cls(config, speech_encoder, language_model, tokenizer, feature_extractor)
        return model.to(dtype) if dtype is not None else model

    @classmethod
    def from_configs(
        cls,
        encoder_config: WhisperConfig,
        llm_config: Any,
        tokenizer,
        feature_extractor,
        **config_kwargs: Any,
    ) -> SpeechLM:
        """A fully random LSM from architecture configs: for tests and shape experiments."""
        config = LSMConfig(
            encoder_config=encoder_config.to_dict(),
            llm_config=llm_config.to_dict(),
            **config_kwargs,
        )
        return cls(config, tokenizer=tokenizer, feature_extractor=feature_extractor)

    # ---------------------------------------------------------------------------------------------
    # save / load
    # ---------------------------------------------------------------------------------------------
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

    # ---------------------------------------------------------------------------------------------
    # the data path
    # ---------------------------------------------------------------------------------------------
    @property
    def llm_device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def featurize(self, audio: Sequence[AudioInput]) -> list[list[torch.Tensor]]:
        """Paths or 16 kHz arrays -> Whisper log-mel chunks (<= 30 s each), real frames only."""
        return featurize(self.mel, list(audio))

    def encode(self, mel_chunks: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (batch, frames, d_enc) and lengths; no graph when the encoder is frozen."""
        with torch.set_grad_enabled(self.config.train_encoder and torch.is_grad_enabled()):
            return self.encoder(mel_chunks)

    def connect(self, states: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Encoder states -> one (tokens, d_llm) tensor of speech embeddings per utterance."""
        param = next(self.connector.parameters())
        embeds, token_lengths = self.connector(states.to(param.dtype), lengths.to(states.device))
        return [embeds[i, :count] for i, count in enumerate(token_lengths.tolist())]  # one host sync

    def embed_speech(self, audio: Sequence[AudioInput]) -> list[torch.Tensor]:
        """Audio -> speech embeddings in the LLM's input space, one tensor per utterance."""
        return self.connect(*self.encode(self.featurize(audio)))

    def build_inputs(
        self,
        instruction: Sequence[str],
        speech: Sequence[torch.Tensor | None],
        response: Sequence[str] | None = None,
        padding_side: str = "right",
    ) -> SplicedBatch:
        """Prompt pieces + speech -> spliced LLM inputs (the single path for train and generate)."""
        responses = list(response) if response is not None else [None] * len(instruction)
        pieces = [
            self.prompt.pieces(text, answer, with_speech=embeds is not None)
            for text, answer, embeds in zip(instruction, responses, speech)
        ]
        return splice(pieces, speech, self.llm.get_input_embeddings(), padding_side)

    def forward(
        self,
        instruction: Sequence[str],
        response: Sequence[str] | None = None,
        audio: Sequence[AudioInput] | None = None,
        mel_chunks: list[list[torch.Tensor]] | None = None,
        encoder_states: tuple[torch.Tensor, torch.Tensor] | None = None,
        speech_embeds: Sequence[torch.Tensor] | None = None,
        **llm_kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced pass; with `response` the loss covers only the answer tokens.

        Give the speech at whichever stage you have it: `audio`, `mel_chunks`, `encoder_states`
        (e.g. from a feature cache) or `speech_embeds`.
        """
        speech = self._speech_from_any(audio, mel_chunks, encoder_states, speech_embeds)
        batch = self.build_inputs(instruction, speech, response, padding_side="right")
        labels = batch.labels if response is not None else None
        return self.llm(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            labels=labels,
            **llm_kwargs,
        )

    def _speech_from_any(self, audio, mel_chunks, encoder_states, speech_embeds) -> list[torch.Tensor]:
        given = [x is not None for x in (audio, mel_chunks, encoder_states, speech_embeds)]
        if sum(given) != 1:
            raise ValueError("give exactly one of audio, mel_chunks, encoder_states, speech_embeds")
        if speech_embeds is not None:
            return list(speech_embeds)
        if encoder_states is not None:
            return self.connect(*encoder_states)
        if mel_chunks is None:
            mel_chunks = self.featurize(audio)
        return self.connect(*self.encode(mel_chunks))

    # ---------------------------------------------------------------------------------------------
    # generation
    # ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        audio: AudioInput | Sequence[AudioInput] | None = None,
        instruction: str | Sequence[str] | None = None,
        text: str | Sequence[str] | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        repetition_penalty: float = 1.0,
        use_adapter: bool = True,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """Greedy answers. Speech mode: `audio` + `instruction` (one instruction for all, or one
        each). Text mode: `text` alone runs the LLM on the same template with no speech; with
        `use_adapter=False` the LoRA adapter is switched off, giving the base LLM's own answer.
        A single input returns a single string; a list returns a list."""
        single = isinstance(text, str) if text is not None else isinstance(audio, (str, os.PathLike, np.ndarray))
        if text is not None:
            if audio is not None:
                raise ValueError("give either text (text mode) or audio (speech mode), not both")
            prompts = [text] if isinstance(text, str) else list(text)
            audio_items: list[AudioInput | None] = [None] * len(prompts)
        else:
            if audio is None or instruction is None:
                raise ValueError("speech mode needs both audio and instruction")
            audio_items = [audio] if single else list(audio)
            prompts = [instruction] * len(audio_items) if isinstance(instruction, str) else list(instruction)
            if len(prompts) != len(audio_items):
                raise ValueError(f"{len(audio_items)} audio inputs but {len(prompts)} instructions")
        was_training = self.training
        self.eval()
        answers: list[str] = []
        try:
            for start in range(0, len(prompts), batch_size):
                batch_audio = audio_items[start : start + batch_size]
                speech = [None] * len(batch_audio) if batch_audio[0] is None else self.embed_speech(batch_audio)
                answers.extend(
                    self._generate_batch(
                        prompts[start : start + batch_size],
                        speech,
                        max_new_tokens,
                        repetition_penalty,
                        use_adapter,
                        **generate_kwargs,
                    )
                )
        finally:
            self.train(was_training)
        return answers[0] if single else answers

    def _generate_batch(self, prompts, speech, max_new_tokens, repetition_penalty, use_adapter, **kwargs) -> list[str]:
        import contextlib

        batch = self.build_inputs(prompts, speech, padding_side="left")
        options = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "repetition_penalty": repetition_penalty,
            "eos_token_id": self.prompt.stop_token_ids(),
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        options.update(kwargs)
        switch = self.llm.disable_adapter() if (self.is_lora and not use_adapter) else contextlib.nullcontext()
        with switch:
            tokens = self.llm.generate(
                inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, **options
            )
        return [answer.strip() for answer in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
