"""How a SpeechLM that reads Whisper's transcript hears (`speech_tokens: transcript`): a
`WhisperHearing` made from the Whisper folder the model was built on, or one shared with other
models (a server, an evaluation), and `prepare`, which hears the audio before the processor lays
out the batch. The other speech paths take the audio as it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from selfpowered.audio import AudioInput
from selfpowered.errors import ModelNotFoundError
from selfpowered.model.hearing import Heard, WhisperHearing
from selfpowered.model.prompting import Conversation
from selfpowered.model.speech_tokens import reads_transcript


class Hearing:
    """Mixed into SpeechLM (it holds `config`, `processor`, `hearing` and `whisper_folder`)."""

    def use_hearing(self, hearing: WhisperHearing) -> Hearing:
        """Hear through `hearing` (a server or an evaluation shares one per Whisper model, so each
        clip is decoded once for every model that listens to it)."""
        self.hearing = hearing
        return self

    def new_hearing(self, **options: Any) -> WhisperHearing:
        """A `WhisperHearing` with this model's Whisper and hearing settings (`options`: cache_dir...)."""
        if self.whisper_folder is None:
            raise ModelNotFoundError(
                "this LSM reads Whisper's transcript but knows no Whisper folder to hear with (a model built "
                "from configs): give it one with use_hearing(WhisperHearing(...))"
            )
        config = self.config
        return WhisperHearing(self.whisper_folder, config.hearing_compute_type, window=config.hearing_window, **options)

    def hear(self, audio: Sequence[AudioInput | None]) -> list[Heard | None]:
        """What Whisper hears in each clip (None stays None: a text-mode row)."""
        if self.hearing is None:
            self.hearing = self.new_hearing()
        present = [i for i, item in enumerate(audio) if item is not None]
        heard: list[Heard | None] = [None] * len(audio)
        for index, result in zip(present, self.hearing.hear([audio[i] for i in present]) if present else []):
            heard[index] = result
        return heard

    def prepare(
        self,
        instructions: Sequence[str],
        audio: Sequence[AudioInput | None] | None = None,
        response: Sequence[str] | None = None,
        padding_side: str = "right",
        contexts: Sequence[Conversation | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Instructions + audio (paths or 16 kHz arrays; None = text mode) -> a processor batch.
        An LSM that reads Whisper's transcript hears the audio first; the others take it as is."""
        options = dict(response=response, padding_side=padding_side, contexts=contexts)
        if audio is not None and reads_transcript(self.config):
            return self.processor(instructions, heard=self.hear(audio), **options)
        return self.processor(instructions, audio=audio, **options)
