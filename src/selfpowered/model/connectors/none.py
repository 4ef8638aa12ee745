"""`none`: no slots - a transcript-reading LSM (`speech_tokens: transcript`) that hears Whisper's
words alone."""

from __future__ import annotations

import torch

from selfpowered.config.base import StrictModel
from selfpowered.model.connectors import Connector, register_connector


class NoOptions(StrictModel):
    """No settings."""


@register_connector
class NoConnector(Connector):
    name = "none"
    summary = "no slots: with speech_tokens: transcript, the LLM reads Whisper's words and nothing else"
    Options = NoOptions

    @classmethod
    def check(cls, model, options: NoOptions) -> None:
        if model.speech_tokens != "transcript":
            raise ValueError("connector: none leaves the LLM nothing to hear unless speech_tokens: transcript")

    @classmethod
    def token_count(cls, config, options: NoOptions, frames):
        return frames * 0

    @classmethod
    def tokens_per_second(cls, config, options: NoOptions) -> float:
        return 1.0

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return states.new_zeros(states.shape[0], 0, self.config.llm_hidden_size), torch.zeros_like(lengths)
