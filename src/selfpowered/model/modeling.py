"""`SpeechLM`: frozen Whisper encoder -> connector -> causal LLM (LoRA, full or frozen).

The data path is four small steps, each callable on its own so later stages can enter midway
(the training feature cache feeds `connect`, the bias analysis reads `splice` segments):

    audio --featurize--> mel chunks --encode--> encoder states --connect--> speech embeddings
    speech embeddings + PromptBuilder.pieces --splice--> LLM

Saving and loading checkpoint folders is `model/checkpoint.py`'s job (mixed into SpeechLM).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, WhisperConfig
from transformers.modeling_outputs import CausalLMOutputWithPast

from selfpowered.audio import AudioInput, LogMelExtractor
from selfpowered.model.checkpoint import CheckpointMixin
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connector import build_connector
from selfpowered.model.encoder import SpeechEncoder, featurize
from selfpowered.model.prompting import PromptBuilder, SplicedBatch, splice

logger = logging.getLogger(__name__)


class SpeechLM(CheckpointMixin, PreTrainedModel):
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
