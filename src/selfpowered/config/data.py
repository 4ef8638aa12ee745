"""Configs of the data stages: validation limits, import, synthesis, augmentation, features."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from selfpowered.assets import DEFAULT_ENCODER, DEFAULT_LLM
from selfpowered.config.base import StrictModel
from selfpowered.config.model import DecodedTokensPerSecond, HearingComputeType, HearingWindow, SpeechStates
from selfpowered.text.echo import ECHO_MAX_WER


class LimitsConfig(StrictModel):
    """What counts as a usable utterance (corpus validation, import, and every stage reading a manifest)."""

    min_duration: float = Field(0.1, ge=0)
    max_duration: float = Field(60.0, gt=0)
    min_sample_rate: int = Field(8000, ge=1)
    duration_tolerance: float = Field(0.1, ge=0, description="seconds between a row's duration and the audio's")
    check_audio: bool = Field(True, description="open each file (header) and measure its duration")
    decode: bool = Field(False, description="decode every sample too (finds NaN / corrupt bodies; slower)")


class ValidateConfig(StrictModel):
    """`selfpowered corpus validate`: check a manifest, list rejects, optionally write the good rows."""

    manifest: str
    output: str | None = Field(None, description="write the valid rows here")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)


class ImportConfig(StrictModel):
    """`selfpowered corpus import KIND SRC OUT`: an ASR corpus -> manifest + rejects. Each kind's
    settings are a section named after it (`table: {text_column: sentence}`), validated by the
    importer registered under that name (`corpus/importers/`; `config show import` lists them)."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(..., description="the importer (`corpus/importers/`)")
    source: str
    output: str
    limits: LimitsConfig = Field(default_factory=LimitsConfig)


class SynthConfig(StrictModel):
    """`selfpowered corpus synth`: the offline multi-voice TTS demo corpus."""

    output: str
    size: Literal["small", "demo", "diverse", "ood", "ood-large", "paraling"] = Field(
        "small",
        description="small | demo: the grammar corpus; diverse: other text sources, more voices and effects "
        "(train/dev); ood: a test-only text source spoken by voices and transforms never used in training; "
        "ood-large: the same with 750 sentences, for measurements that 250 items cannot resolve; paraling: "
        "labelled voices, pace, noise, rooms and speaker counts (train; dev / test: pairs under held-out voices)",
    )
    voices: list[str] | None = Field(None, description="ENGINE:NAME list; default: every known voice")
    test_voice: str | None = Field("flite:rms", description="voice held out of train/dev")
    voices_per_sentence: int = Field(2, ge=1)
    seed: int = 0
    workers: int | None = Field(None, ge=1, description="processes; default: all cores")
    tempo_min: float = Field(0.9, gt=0)
    tempo_max: float = Field(1.1, gt=0)
    check_wer: int = Field(0, ge=0, description="after synthesis, Whisper-transcribe this many test utterances")
    splits: list[Literal["train", "dev", "test"]] | None = Field(
        None, description="make only these splits (same utterances as in the whole corpus); default all"
    )
    vocabulary_against: list[str] = Field(
        default_factory=list, description="training manifests: report each split's out-of-vocabulary rate against them"
    )
    max_utterances: dict[Literal["train", "dev", "test"], int] = Field(
        default_factory=dict,
        description="make only the first N planned utterances of a split (e.g. {train: 1500}): the same files and "
        "manifest lines as the whole corpus's first N, for a recipe that trains on no more",
    )


class FilterConfig(StrictModel):
    """Which LLM answers augmentation drops (each drop is counted and listed with its reason)."""

    require_final_punctuation: bool = True
    copy_max_wer: float = Field(ECHO_MAX_WER, ge=0, description="answer this close to the transcript = a copy")
    drop_refusals: bool = True
    trim_truncated: bool = Field(
        False,
        description="an answer cut by max_new_tokens keeps its complete sentences instead of being dropped (for "
        "verbose answers whose first sentences answer the question, e.g. the paraling library)",
    )


class AugmentConfig(StrictModel):
    """`selfpowered augment MANIFEST OUT`: self-powered (or vanilla) instruction samples."""

    manifest: str
    output: str
    recipe: Literal["selfpowered", "vanilla", "templated"] = Field(
        "selfpowered",
        description="selfpowered: the LLM answers; vanilla: every sample an ASR pair; templated: a task about how "
        "the clip sounds gets its labels as a fixed sentence (text/paraling.py; the control of the paraling tasks)",
    )
    tasks: str = Field("demo", description="task library: paper | demo | path to a YAML preset")
    heard_by: str | None = Field(
        None,
        description="the LLM answers what this Whisper (folder or embedded name, e.g. whisper-tiny.en) hears in each "
        "clip instead of the manifest's text: the cascade's own answers, targets a transcript-reading LSM can match "
        "from what it reads (ASR answers become Whisper's transcript too)",
    )
    hearing_cache: str | None = Field(None, description="heard_by: Whisper's cache folder (e.g. a train feature_cache)")
    task_weights: dict[str, float] = Field(default_factory=dict)
    task_variants: dict[str, str] = Field(default_factory=dict, description="e.g. {continuation: en}")
    engine: Literal["hf", "openai"] = "hf"
    llm: str = Field(DEFAULT_LLM, description="hf: model folder or embedded name")
    server_url: str | None = Field(None, description="openai: base URL ending in /v1")
    server_model: str | None = Field(None, description="openai: model name (default: the first served)")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the key")
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(5, ge=0)
    device: str = "cpu"
    max_new_tokens: int = Field(225, ge=1)
    max_prompt_tokens: int = Field(150, ge=1)
    max_batch: int = Field(
        128,
        ge=1,
        description="hf: rows decoded together (continuous batching); on 2 CPU cores 128 rows made 139 tokens/s, "
        "32 rows 91 (bench/RESULTS.md); each row holds its KV cache (~46 kB a token for SmolLM2-135M)",
    )
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0
    shard: str = Field("0/1", pattern=r"^\d+/\d+$", description="i/N: this process's share of the manifest")
    limit: int | None = Field(None, ge=1, description="only the first N rows of the shard")
    chunk_size: int = Field(256, ge=1, description="requests handed to the engine at a time (what a kill can lose)")
    filters: FilterConfig = Field(default_factory=FilterConfig)
    # rejection sampling for tasks with `verify:` constraints: a greedy answer that fails its
    # checker is asked again, sampled, until one passes or the attempts run out
    verify_attempts: int = Field(1, ge=1, description="answers tried per constrained sample: 1 greedy + N-1 sampled")
    verify_temperature: float = Field(0.8, gt=0, description="temperature of the resampled attempts")

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, value: str) -> str:
        index, count = (int(part) for part in value.split("/"))
        if not 0 <= index < count:
            raise ValueError(f"shard {value}: need 0 <= i < N")
        return value

    @property
    def shard_index_count(self) -> tuple[int, int]:
        index, count = (int(part) for part in self.shard.split("/"))
        return index, count


class FeaturesConfig(StrictModel):
    """`selfpowered features`: cache the frozen encoder's output for every audio file once."""

    inputs: list[str] = Field(..., min_length=1, description="manifests or sample files")
    cache: str = Field(..., description="feature cache folder")
    encoder: str = Field(DEFAULT_ENCODER, description="Whisper folder or embedded name")
    speech_states: SpeechStates = "encoder"
    decoded_tokens_per_second: DecodedTokensPerSecond = 8.0
    hearing: bool = Field(
        False,
        description="cache what a transcript-reading LSM (speech_tokens: transcript) reads instead: Whisper's "
        "greedy transcript and encoder states, heard once per clip (model/hearing.py)",
    )
    hearing_compute_type: HearingComputeType = "int8"
    hearing_window: HearingWindow = 10.0
    batch_size: int = Field(8, ge=1)
    device: str = "cpu"
