"""The systems an evaluation compares, behind one interface: answer (audio, instruction) queries.

- `LSMSystem`: a SpeechLM checkpoint (speech in, answer out).
- `CascadeSystem`: Whisper hears the clip -> the same LLM answers the transcript in text mode; the
  pipeline a user would otherwise build, and what an LSM must at least match.
- `TextSystem`: the LLM given the true transcript; its answers are also the references of the
  instruct suite (the self-powered targets), so it scores 100 consistency by construction.

Every system answers through the serving engine (`model.engine`: continuous batching, greedy,
the same token limit), and every text-mode prompt is `text.tasks.text_prompt`, the code that made
the training targets. Whisper hears each clip once for all systems (`model.hearing`, cached on
disk beside the answers); each answer is still charged the Whisper time its clip took
(`Heard.cost`), as a user running that system alone would pay it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from selfpowered.evaluate.suites import Query
from selfpowered.model.choosing import choose_all
from selfpowered.model.engine import Request, generate_all
from selfpowered.model.served import ServedModel
from selfpowered.model.speech_tokens import reads_transcript
from selfpowered.text.tasks import text_prompt


class System(Protocol):
    name: str
    kind: str  # "lsm" | "cascade" | "text"

    def answer(self, queries: list[Query]) -> list[str]:
        """Greedy answers to spoken queries, in order."""

    def transcribe(self, queries: list[Query]) -> list[str] | None:
        """Plain transcripts for the ASR suite (None: this system has no ASR of its own)."""

    def choose(self, queries: list[Query]) -> list[str]:
        """The likeliest of each closed query's `options` after the prompt `answer` decodes from."""


class Listening:
    """What every system of one evaluation shares: Whisper hearing each clip once, and the base
    LLM of the baselines (one copy in memory). `heard_seconds` adds up the Whisper time of the
    clips a call used, so `timed` can charge it."""

    def __init__(self, llm: str, asr_model: str, device: str = "cpu", hearing_cache: str | Path | None = None):
        from selfpowered.model.generation import HFGenerator
        from selfpowered.model.hearing import HearingPool

        self.pool = HearingPool(device, hearing_cache)
        self.hearing = self.pool.get(asr_model)  # the cascade's
        self.generator = HFGenerator(llm, device=device)  # loads the base LLM and its prompt builder
        self.served = ServedModel.cascade(
            "cascade", self.hearing, self.generator.model, self.generator.tokenizer, self.generator.prompt
        )
        self.charged = 0.0

    @property
    def decoded_seconds(self) -> float:
        return self.pool.decoded_seconds

    def charge(self, audio: list[str], hearing=None) -> None:
        """Add the Whisper time of these clips (heard now or before) to the running charge."""
        self.charged += sum(heard.cost for heard in (hearing or self.hearing).hear(audio))


def _requests(name: str, instructions, audio, max_tokens: int, ngram: int) -> list[Request]:
    from selfpowered.audio import load_audio

    return [
        Request(
            name,
            text,
            None if path is None else load_audio(path),
            max_tokens=max_tokens,
            no_repeat_ngram_size=ngram,
        )
        for text, path in zip(instructions, audio)
    ]


class LSMSystem:
    """A checkpoint, loaded on first use and released after its turn, so an evaluation of several
    large LSMs holds one of them in memory at a time. It answers through the serving engine
    (LoRA merged, continuous batching), so the cost measured here is the cost a served model has."""

    kind = "lsm"

    def __init__(
        self,
        name: str,
        checkpoint: str | Path,
        max_new_tokens: int,
        batch_size: int,
        device: str = "cpu",
        no_repeat_ngram_size: int = 0,
        listening: Listening | None = None,
    ):
        self.name, self.checkpoint, self.device = name, str(checkpoint), device
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.listening = listening
        self._model = None
        self._served = None

    @property
    def model(self):
        if self._model is None:
            from selfpowered.model import SpeechLM

            self._model = SpeechLM.from_pretrained(self.checkpoint).to(self.device).eval()
        return self._model

    @property
    def config(self):
        """The checkpoint's LSMConfig (read without loading the model)."""
        from selfpowered.model import LSMConfig

        return LSMConfig.from_pretrained(self.checkpoint)

    @property
    def hears(self) -> bool:
        """Does it read Whisper's transcript (and so share the evaluation's hearing)?"""
        return reads_transcript(self.config)

    @property
    def hearing(self):
        """The evaluation's hearing for this checkpoint's Whisper and compute type (None: none shared)."""
        if not self.hears or self.listening is None:
            return None
        config = self.config
        whisper = config.encoder_name_or_path
        whisper = str(Path(self.checkpoint) / whisper) if whisper.startswith("./") else whisper
        return self.listening.pool.for_model(config, whisper)

    @property
    def served(self) -> ServedModel:
        if self._served is None:
            self._served = ServedModel.from_lsm(self.name, self.model, hearing=self.hearing)
        return self._served

    def _charge(self, audio: list[str | None]) -> None:
        """Charge the Whisper time of these clips when this LSM hears through the evaluation's Whisper."""
        heard = [path for path in audio if path is not None]
        if heard and self.hears and self.listening is not None:
            self.listening.charge(heard, self.hearing)

    def _generate(self, instructions: list[str], audio: list[str | None]) -> list[str]:
        self._charge(audio)
        requests = _requests(self.name, instructions, audio, self.max_new_tokens, self.no_repeat_ngram_size)
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

    def closed_prompts(self, queries: list[Query]) -> tuple[ServedModel, list[Request]]:
        """The model and the requests whose prompts a closed question's options are scored after."""
        audio = [q.audio for q in queries]
        self._charge(audio)
        return self.served, _requests(self.name, [q.instruction for q in queries], audio, 1, 0)

    def choose(self, queries: list[Query]) -> list[str]:
        return choose_all(*self.closed_prompts(queries), [q.options for q in queries], self.batch_size)

    def text_answers(self, prompts: list[str], use_adapter: bool) -> list[str]:
        """Text-only prompts through this LSM's LLM, with or without its LoRA adapter."""
        if use_adapter:
            return self._generate(prompts, [None] * len(prompts))
        with self.served.adapter_off():
            return self._generate(prompts, [None] * len(prompts))


class CascadeSystem:
    """Whisper (heard once per clip) -> the base LLM on `text_prompt(instruction, transcript)`."""

    kind = "cascade"

    def __init__(self, listening: Listening, max_new_tokens: int, batch_size: int, ngram: int = 0, name="cascade"):
        self.name, self.listening = name, listening
        self.max_new_tokens, self.batch_size, self.ngram = max_new_tokens, batch_size, ngram
        self.asr_model = listening.hearing.name

    def transcribe(self, queries: list[Query]) -> list[str]:
        audio = [q.audio for q in queries]
        self.listening.charge(audio)
        return self.listening.hearing.transcribe(audio)

    def answer(self, queries: list[Query]) -> list[str]:
        audio = [q.audio for q in queries]
        self.listening.charge(audio)
        requests = _requests(self.name, [q.instruction for q in queries], audio, self.max_new_tokens, self.ngram)
        return [request.text for request in generate_all(self.listening.served, requests, self.batch_size)]

    def closed_prompts(self, queries: list[Query]) -> tuple[ServedModel, list[Request]]:
        audio = [q.audio for q in queries]
        self.listening.charge(audio)
        return self.listening.served, _requests(self.name, [q.instruction for q in queries], audio, 1, 0)

    def choose(self, queries: list[Query]) -> list[str]:
        return choose_all(*self.closed_prompts(queries), [q.options for q in queries], self.batch_size)


class TextSystem:
    """The base LLM given the true transcript (no audio, nothing heard)."""

    kind = "text"

    def __init__(self, listening: Listening, max_new_tokens: int, batch_size: int, ngram: int = 0, name="text"):
        self.name, self.listening = name, listening
        self.max_new_tokens, self.batch_size, self.ngram = max_new_tokens, batch_size, ngram

    def transcribe(self, queries: list[Query]) -> None:
        return None  # it is given the transcript

    def answer(self, queries: list[Query]) -> list[str]:
        prompts = [text_prompt(q.instruction, q.transcript) for q in queries]
        requests = _requests(self.name, prompts, [None] * len(prompts), self.max_new_tokens, self.ngram)
        return [request.text for request in generate_all(self.listening.served, requests, self.batch_size)]

    def closed_prompts(self, queries: list[Query]) -> tuple[ServedModel, list[Request]]:
        prompts = [text_prompt(q.instruction, q.transcript) for q in queries]
        return self.listening.served, _requests(self.name, prompts, [None] * len(prompts), 1, 0)

    def choose(self, queries: list[Query]) -> list[str]:
        return choose_all(*self.closed_prompts(queries), [q.options for q in queries], self.batch_size)


def cost_summary(answers: int, seconds: float, audio_seconds: float) -> dict:
    """What answering cost: seconds, per answer, and real-time factor (seconds per audio second)."""
    return {
        "answers": answers,
        "seconds": round(seconds, 3),
        "seconds_per_answer": round(seconds / max(answers, 1), 4),
        "audio_seconds": round(audio_seconds, 2),
        "real_time_factor": round(seconds / audio_seconds, 4) if audio_seconds else None,
    }


def timed(call, queries: list[Query], listening: Listening | None = None) -> tuple[list[str] | None, float]:
    """Run `call(queries)`; return its output and the seconds it cost: the wall time, with the
    Whisper time of the clips it heard counted at what hearing them took (a clip heard earlier
    for another system is charged again, not taken for free; heard now, it is not counted twice)."""
    charged = listening.charged if listening is not None else 0.0
    started = time.perf_counter()
    hearing_started = listening.decoded_seconds if listening is not None else 0.0
    out = call(queries)
    seconds = time.perf_counter() - started
    if listening is not None:  # replace the decoding done now by what every clip it used cost
        seconds += (listening.charged - charged) - (listening.decoded_seconds - hearing_started)
    return out, seconds
