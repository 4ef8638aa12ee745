"""`SpeechLM`: frozen Whisper encoder -> connector -> causal LLM (LoRA, full or frozen).

Read top to bottom: construction, then the data path, then generation, then checkpoints.

    processor(instruction, audio | cached states, response) -> tensors          (host, no weights)
    tensors --encode--> encoder states --connect--> speech embeddings           (the model)
    token embeddings + speech embeddings in the layout's speech slots -> LLM

`forward` takes only tensors, so batches are prepared once by `SpeechProcessor` for training,
generation, evaluation and serving alike.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedModel,
    WhisperConfig,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from selfpowered.assets import DEFAULT_ENCODER, DEFAULT_LLM
from selfpowered.audio import AudioInput, LogMelExtractor
from selfpowered.config import ModelConfig
from selfpowered.errors import ModelNotFoundError
from selfpowered.model import checkpoint
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connectors import build_connector
from selfpowered.model.ctc import CTCHead, ctc_vocabulary
from selfpowered.model.encoder import SpeechEncoder, decoder_token_rate, featurize
from selfpowered.model.generating import Generation
from selfpowered.model.hearing import WhisperHearing
from selfpowered.model.hearing_mixin import Hearing
from selfpowered.model.processor import SpeechProcessor
from selfpowered.model.prompting import SEGMENT_SPEECH, embed_layout, fill_speech_slots, speech_slots
from selfpowered.model.sound_tags import SoundTagger
from selfpowered.model.token_bridge import TokenBridge

# What `optim.lr_connector` trains (and 0 freezes): the connector, and the whisper_text bridge's
# gate, which scales the connector's output.
CONNECTOR_PARTS = ("connector", "token_bridge")


class SpeechLM(Hearing, Generation, PreTrainedModel):
    """A large speech-text model. Build with `SpeechLM.build(...)`, load with `from_pretrained`."""

    config_class = LSMConfig
    base_model_prefix = "lsm"
    main_input_name = "input_ids"  # what the Trainer counts tokens (and FLOPs) by
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
        rate = decoder_token_rate(config)
        self.encoder = encoder or SpeechEncoder.from_config(WhisperConfig(**config.encoder_config), rate)
        # speech_states: decoder: Whisper's own decoder makes the speech states (model/whisper_decoder.py)
        if rate is not None and self.encoder.decoder is None:
            raise ValueError("speech_states: decoder, but the speech encoder was loaded without its decoder")
        self.connector = build_connector(config)
        self.llm = llm or AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.llm_config))
        # ctc_posterior: the LLM reads the CTC head's posterior over its own embeddings (model/ctc.py);
        # a loaded checkpoint replaces this fresh head with its trained one
        self.ctc_head = (
            CTCHead(self.llm.get_input_embeddings().weight, ctc_vocabulary(tokenizer))
            if config.speech_tokens == "ctc_posterior"
            else None
        )
        # whisper_text: the LLM reads its own embeddings of Whisper's decoded text (model/token_bridge.py);
        # the table comes from the two tokenizers, or from the checkpoint being loaded
        self.token_bridge = None
        if config.speech_tokens == "whisper_text":
            vocabulary = self.encoder.decoder.vocabulary
            self.token_bridge = (
                TokenBridge.unbuilt() if vocabulary is None else TokenBridge.from_tokenizers(vocabulary, tokenizer)
            )
        if hasattr(self.connector, "match_scale"):  # fresh slots at the scale of the LLM's own embeddings
            self.connector.match_scale(self.llm.get_input_embeddings().weight)
        self.processor = SpeechProcessor(config, tokenizer, feature_extractor)
        self.tokenizer, self.mel, self.prompt = tokenizer, self.processor.mel, self.processor.prompt
        # speech_tokens: transcript: Whisper hears each clip once (model/hearing.py), made on first use from
        # the Whisper folder the model was built on, or shared with other models by `use_hearing`
        self.hearing: WhisperHearing | None = None
        self.whisper_folder: Path | None = None
        self.post_init()  # before LoRA wrapping: HF gathers tied-weight names from the plain LLM
        self._apply_trainability()

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to do: pretrained parts arrive loaded and the connector initialises itself."""

    def _apply_trainability(self) -> None:
        config = self.config
        self.encoder.requires_grad_(config.train_encoder)
        if config.finetune == "lora" and not self.is_lora:
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
        if self.ctc_head is not None:  # `align` trains it; later stages keep the posterior it defines
            self.ctc_head.requires_grad_(False)

    @classmethod
    def build(
        cls,
        encoder: str | os.PathLike = DEFAULT_ENCODER,
        llm: str | os.PathLike = DEFAULT_LLM,
        dtype: torch.dtype | None = None,
        **architecture: Any,
    ) -> SpeechLM:
        """A fresh LSM (random connector, new LoRA) on pretrained encoder and LLM weights.

        `encoder` / `llm` are local Hugging Face folders or embedded default names; `architecture`
        takes `ModelConfig`'s other keys (so `build(**model_config.model_dump())` works)."""
        from selfpowered.assets import resolve_model

        encoder_path = resolve_model(encoder, kind="encoder")
        llm_path = resolve_model(llm, kind="llm")
        speech_encoder = SpeechEncoder.from_pretrained(encoder_path, decoder_token_rate(ModelConfig(**architecture)))
        language_model = AutoModelForCausalLM.from_pretrained(str(llm_path), dtype=dtype or torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(llm_path))
        feature_extractor = LogMelExtractor.from_pretrained(encoder_path).feature_extractor
        config = LSMConfig(
            encoder_name_or_path=str(encoder),
            llm_name_or_path=str(llm),
            encoder_config=speech_encoder.config.to_dict(),
            llm_config=language_model.config.to_dict(),
            **architecture,
        )
        model = cls(config, speech_encoder, language_model, tokenizer, feature_extractor)
        model.whisper_folder = encoder_path
        if model.token_bridge is not None and model.token_bridge.vocabulary_size == 0:
            raise ModelNotFoundError(
                f"{encoder_path}: no tokenizer.json, which speech_tokens: whisper_text needs to map Whisper's tokens "
                "to the LLM's; use a Hugging Face Whisper folder that has one"
            )
        return model.to(dtype) if dtype is not None else model

    @classmethod
    def init_checkpoint(cls, model: ModelConfig, output: str | os.PathLike, seed: int = 0) -> SpeechLM:
        """`selfpowered init`: build a fresh LSM from a `ModelConfig` and save it as a checkpoint;
        `seed` fixes its random parts (connector, LoRA's A matrices)."""
        torch.manual_seed(seed)
        lsm = cls.build(**model.model_dump())
        lsm.save_pretrained(output)
        return lsm

    @classmethod
    def from_configs(cls, encoder_config: WhisperConfig, llm_config: Any, tokenizer, feature_extractor, **arch: Any):
        """A fully random LSM from architecture configs: for tests and shape experiments."""
        config = LSMConfig(encoder_config=encoder_config.to_dict(), llm_config=llm_config.to_dict(), **arch)
        return cls(config, tokenizer=tokenizer, feature_extractor=feature_extractor)

    # ---------------------------------------------------------------------------------------------
    # the data path
    # ---------------------------------------------------------------------------------------------
    @property
    def llm_device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def encode(self, mel: torch.Tensor, mel_frames: torch.Tensor, mel_chunks: torch.Tensor):
        """Encoder states (batch, frames, d_enc) and lengths; no graph when the encoder is frozen."""
        with torch.set_grad_enabled(self.config.train_encoder and torch.is_grad_enabled()):
            return self.encoder(mel, mel_frames, mel_chunks)

    def connect(self, states: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Encoder states -> one (tokens, d_llm) tensor of speech embeddings per utterance."""
        param = next(self.connector.parameters(), None)  # `connector: none` has none
        device, dtype = (param.device, param.dtype) if param is not None else (self.llm_device, torch.float32)
        embeds, token_lengths = self.connector(states.to(device, dtype), lengths.to(device))
        return [embeds[i, :count] for i, count in enumerate(token_lengths.tolist())]  # one host sync

    def embed_speech(self, audio: Sequence[AudioInput]) -> list[torch.Tensor]:
        """Audio -> speech embeddings in the LLM's input space, one tensor per utterance."""
        return self.speech_embeddings(featurize(self.mel, audio))

    def speech_embeddings(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The speech embeddings of a processor batch, from log-mel features or cached encoder states
        (empty for a text-only batch; rows without speech get an empty tensor)."""
        if inputs.get("encoder_states") is not None:
            states, lengths = inputs["encoder_states"], inputs["encoder_lengths"]
            if not bool((lengths > 0).any()):  # text-mode rows only (or words without states)
                return []
        elif inputs.get("mel") is not None and inputs["mel"].shape[0]:
            states, lengths = self.encode(inputs["mel"], inputs["mel_frames"], inputs["mel_chunks"])
        else:
            return []
        speech = self.connect(states, lengths)
        if self.token_bridge is None:
            return speech
        decoder = self.encoder.decoder
        tokens = decoder.read_tokens(states.to(decoder.allowed.device), lengths)
        return self.token_bridge(tokens, lengths, speech, self.llm.get_input_embeddings())

    def embed_inputs(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """A processor batch -> the LLM's `inputs_embeds`: token embeddings, speech in its slots.

        Some slots may be masked out: with `speech_tokens: ctc_posterior` the slots hold the CTC
        posterior's mixture of token embeddings and those greedy CTC drops are masked; with
        `speech_states: decoder` the slots past what Whisper decoded (or, with `whisper_text`,
        past the LLM pieces of what it decoded) are. Then
        `inputs["attention_mask"]` and `inputs["position_ids"]` are replaced in the dict, so every
        caller (forward, generate, the serving engine) runs the collapsed sequence with contiguous
        positions."""
        device = self.llm_device
        speech = self.speech_embeddings(inputs)
        keeps: list[torch.Tensor] | None = None
        if self.ctc_head is not None and speech:
            mixed = [self.ctc_head.posterior_tokens(s) for s in speech]
            speech, keeps = [embeds for embeds, _ in mixed], [keep for _, keep in mixed]
        if self.config.speech_states == "decoder" and speech:
            slots = speech_slots(inputs["segments"])
            if self.token_bridge is not None:
                speech = _fit_pieces(speech, slots)
            speech, keeps = fill_speech_slots(speech, keeps, slots)
        if keeps is not None:
            slots = inputs["segments"] == SEGMENT_SPEECH
            mask = inputs["attention_mask"].clone()
            mask[slots] = torch.cat(keeps).to(mask.device, mask.dtype)
            inputs["attention_mask"] = mask
            inputs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return embed_layout(
            inputs["input_ids"].to(device),
            inputs["segments"].to(device),
            speech,
            self.llm.get_input_embeddings(),
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        segments: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mel: torch.Tensor | None = None,
        mel_frames: torch.Tensor | None = None,
        mel_chunks: torch.Tensor | None = None,
        encoder_states: torch.Tensor | None = None,
        encoder_lengths: torch.Tensor | None = None,
        **llm_kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced pass over a `SpeechProcessor` batch; with `labels` the loss covers only the
        answer tokens. Speech comes as log-mel features (`mel*`) or cached `encoder_*` states."""
        batch = dict(input_ids=input_ids, segments=segments, attention_mask=attention_mask, position_ids=position_ids)
        batch.update(mel=mel, mel_frames=mel_frames, mel_chunks=mel_chunks)
        batch.update(encoder_states=encoder_states, encoder_lengths=encoder_lengths)
        embeds = self.embed_inputs(batch)  # may mask speech slots (ctc_posterior)
        device = embeds.device
        position_ids = batch["position_ids"]
        return self.llm(
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"].to(device),
            position_ids=None if position_ids is None else position_ids.to(device),
            labels=None if labels is None else labels.to(device),
            **llm_kwargs,
        )

    # ---------------------------------------------------------------------------------------------
    # checkpoints (model/checkpoint.py does the work)
    # ---------------------------------------------------------------------------------------------
    @property
    def is_lora(self) -> bool:
        return checkpoint.is_lora(self.llm)

    def base_llm(self) -> PreTrainedModel:
        return self.llm.get_base_model() if self.is_lora else self.llm

    def save_pretrained(self, save_directory: str | os.PathLike, bundle_base: bool | None = None, **_: Any) -> None:
        """Write a checkpoint folder: trained weights, adapter, tokenizer, feature extractor, config
        naming the bases (bundled when there is no base to name). Atomic: staged, then renamed."""
        checkpoint.save_checkpoint(self, save_directory, bundle_base)

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
        config, encoder, llm, tokenizer, feature_extractor, whisper_folder = checkpoint.load_parts(
            pretrained_model_name_or_path
        )
        model = cls(config, encoder, llm, tokenizer, feature_extractor)
        model.whisper_folder = whisper_folder
        model.load_trained_weights(pretrained_model_name_or_path)
        model.processor.use_tagger(SoundTagger.load(pretrained_model_name_or_path))
        if not is_trainable:
            model.eval()
        if dtype is not None:
            model = model.to(dtype)
        return model.to(device) if device is not None else model

    def load_trained_weights(self, folder: str | os.PathLike) -> None:
        """Load a checkpoint's trained weights into this model (also how training resumes)."""
        checkpoint.load_trained_weights(self, Path(folder))


def _fit_pieces(speech: list[torch.Tensor], slots: list[int]) -> list[torch.Tensor]:
    """`whisper_text`: the LLM pieces of what Whisper wrote, cut to the slots the prompt reserved
    (`tokens_per_stack` per decodable token). Only text far denser than English (long digit runs)
    needs more; losing its end is better than refusing the request, so it is a warning."""
    fitted = []
    for row, (embeds, room) in enumerate(zip(speech, slots)):
        if embeds.shape[0] > room:
            warnings.warn(
                f"row {row}: Whisper's text takes {embeds.shape[0]} LLM pieces, {room} slots reserved; the rest is "
                "cut (raise tokens_per_stack for denser text)",
                stacklevel=3,
            )
        fitted.append(embeds[:room])
    return fitted


# `AutoModel.from_pretrained(checkpoint)` / `AutoProcessor.from_pretrained(checkpoint)` load a SpeechLM
# checkpoint folder as transformers' own models load theirs (the config is registered beside LSMConfig)
AutoModel.register(LSMConfig, SpeechLM, exist_ok=True)
AutoProcessor.register(LSMConfig, SpeechProcessor, exist_ok=True)
