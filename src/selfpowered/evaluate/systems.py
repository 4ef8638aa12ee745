"""The systems an evaluation compares, behind one interface: answer (audio, instruction) queries.

- `LSMSystem`: a SpeechLM checkpoint (speech in, answer out).
- `CascadeSystem`: Whisper ASR -> transcript -> the same LLM in text mode; the pipeline a user
  would otherwise build, and the upper bound on speech-text consistency an LSM can hope for.
- `TextSystem`: the LLM given the true transcript; its answers are also the references of the
  instruct suite (the self-powered targets), so it scores 100 consistency by construction.

Every text-mode answer goes through `text.tasks.text_prompt` and `HFGenerator`, the same code
that made the training targets, and every system decodes greedily with the same token limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from selfpowered.text.engines import GenerationRequest, HFGenerator
from selfpowered.text.tasks import text_prompt


@dataclass(frozen=True)
class Query:
    key: str
    audio: str  # absolute path
    instruction: str
    transcript: str  # what the audio says (text baseline, references, echo check)
    duration: float  # seconds of audio (real-time factor)


class System(Protocol):
    name: str
    kind: str  # "lsm" | "cascade" | "text"

    def answer(self, queries: list[Query]) -> list[str]:
        """Greedy answers to spoken queries, in order."""

    def transcribe(self, queries: list[Query]) -> list[str] | None:
        """Plain transcripts for the ASR suite (None: this system has no ASR of its own)."""


class TimedGenerator:
    """One HFGenerator shared by the cascade and text baselines (one copy of the LLM in memory)."""

    def __init__(self, llm: str, max_new_tokens: int, device: str = "cpu", no_repeat_ngram_size: int = 0) -> None:
        self.generator = HFGenerator(
            llm, max_new_tokens=max_new_tokens, device=device, no_repeat_ngram_size=no_repeat_ngram_size
        )

    def answers(self, prompts: list[str]) -> list[str]:
        requests = [GenerationRequest(str(i), prompt) for i, prompt in enumerate(prompts)]
        by_id = {result.id: result.text for result in self.generator.generate(requests)}
        return [by_id[str(i)] for i in range(len(prompts))]


class LSMSystem:
    """A checkpoint, loaded on first use and released after its turn, so an evaluation of several
    large LSMs holds one of them in memory at a time. It answers through the serving engine
    (`model.engine`: LoRA merged, continuous batching), so the cost measured here is the cost a
    served model has."""

    kind = "lsm"

    def __init__(
        self,
        name: str,
        checkpoint: str | Path,
        max_new_tokens: int,
        batch_size: int,
        device: str = "cpu",
        no_repeat_ngram_size: int = 0,
    ):
        self.name, self.checkpoint, self.device = name, str(checkpoint), device
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self._model = None
        self._served = None

    @property
    def model(self):
        if self._model is None:
            from selfpowered.model import SpeechLM

            self._model = SpeechLM.from_pretrained(self.checkpoint).to(self.device).eval()
        return self._model

    @property
    def served(self):
        if self._served is None:
            from selfpowered.model.engine import ServedModel

            self._served = ServedModel.from_lsm(self.name, self.model)
        return self._served

    def _generate(self, instructions: list[str], audio: list[str | None]) -> list[str]:
        from selfpowered.audio import load_audio
        from selfpowered.model.engine import Request, generate_all

        requests = [
            Request(
                self.name,
                text,
                None if path is None else load_audio(path),
                max_tokens=self.max_new_tokens,
                no_repeat_ngram_size=self.no_repeat_ngram_size,
            )
            for text, path in zip(instructions, audio)
        ]
        return [request.text for request in generate_all(self.served, requests, self.batch_size)]

    def release(self) -> None:
        import gc

        import torch

        self._model = self._served = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def base_llm_name(self) -> str | None:
        """The base LLM named by the checkpoint's config (read without loading the model)."""
        from selfpowered.model import LSMConfig

        name = LSMConfig.from_pretrained(self.checkpoint).llm_name_or_path
        return str(Path(self.checkpoint) / name) if name and name.startswith("./") else name

    def answer(self, queries: list[Query]) -> list[str]:
        return self._generate([q.instruction for q in queries], [q.audio for q in queries])

    def transcribe(self, queries: list[Query]) -> list[str]:
        return self.answer(queries)  # the ASR suite's queries carry the transcription instruction

    def text_answers(self, prompts: list[str], use_adapter: bool) -> list[str]:
        """Text-only prompts through this LSM's LLM, with or without its LoRA adapter."""
        if use_adapter:
            return self._generate(prompts, [None] * len(prompts))
        with self.served.adapter_off():
            return self._generate(prompts, [None] * len(prompts))


class CascadeSystem:
    kind = "cascade"

    def __init__(self, asr_model: str, llm: TimedGenerator, device: str = "cpu", name: str = "cascade") -> None:
        from selfpowered.asr import WhisperTranscriber

        self.name, self.llm = name, llm
        self.asr = WhisperTranscriber(asr_model, device=device)
        self.asr_model = asr_model

    def transcribe(self, queries: list[Query]) -> list[str]:
        return self.asr.transcribe([q.audio for q in queries])

    def answer(self, queries: list[Query]) -> list[str]:
        # Transcribed again even where the asr suite already heard the same audio: every answer's
        # measured cost must include the ASR it needed, as it would for a user.
        heard = self.transcribe(queries)
        return self.llm.answers([text_prompt(q.instruction, text) for q, text in zip(queries, heard)])


class TextSystem:
    kind = "text"

    def __init__(self, llm: TimedGenerator, name: str = "text") -> None:
        self.name, self.llm = name, llm

    def transcribe(self, queries: list[Query]) -> None:
        return None  # it is given the transcript

    def answer(self, queries: list[Query]) -> list[str]:
        return self.llm.answers([text_prompt(q.instruction, q.transcript) for q in queries])


def cost_summary(answers: int, seconds: float, audio_seconds: float) -> dict:
    """What answering cost: seconds, per answer, and real-time factor (seconds per audio second)."""
    return {
        "answers": answers,
        "seconds": round(seconds, 3),
        "seconds_per_answer": round(seconds / max(answers, 1), 4),
        "audio_seconds": round(audio_seconds, 2),
        "real_time_factor": round(seconds / audio_seconds, 4) if audio_seconds else None,
    }


def timed(call, queries: list[Query]) -> tuple[list[str] | None, float]:
    """Run `call(queries)`; return its output and the wall seconds it took."""
    started = time.perf_counter()
    out = call(queries)
    return out, time.perf_counter() - started
