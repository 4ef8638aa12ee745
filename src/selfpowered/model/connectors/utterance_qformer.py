"""`utterance_qformer` (BLIP-2 / DeSTA style): `queries` learned queries cross-attend to every real
frame of the utterance: a fixed number of slots, whatever the duration, for what a transcript
cannot carry (who speaks, how fast, in what room). A transcript-reading LSM (`speech_tokens:
transcript`) puts them after Whisper's words."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from selfpowered.model.connectors import lengths_mask, register_connector
from selfpowered.model.connectors._qformer import QFormerConnector, QFormerOptions


class UtteranceQFormerOptions(QFormerOptions):
    queries: int = Field(8, ge=1, le=64, description="slots per utterance")


@register_connector
class UtteranceQFormer(QFormerConnector):
    """Its output starts at the scale of the LLM's own token embeddings (`match_scale`), so a fresh
    model's extra slots look like ordinary tokens to the LLM, not like outliers."""

    name = "utterance_qformer"
    summary = "a fixed number of learned queries over the whole utterance: slots for how it sounds"
    Options = UtteranceQFormerOptions

    def __init__(self, config, options: UtteranceQFormerOptions) -> None:
        super().__init__(config, options, options.queries)

    @classmethod
    def token_count(cls, config, options: UtteranceQFormerOptions, frames):
        return (frames > 0) * options.queries  # a fixed count per utterance that has speech

    @classmethod
    def tokens_per_second(cls, config, options: UtteranceQFormerOptions) -> float:
        return 1.0

    @torch.no_grad()
    def match_scale(self, embeddings: torch.Tensor) -> None:
        """Scale the output projection so its outputs have the embedding table's root mean square
        (the last Q-Former layer ends in a LayerNorm: its outputs have unit variance per channel)."""
        rms = float(embeddings.float().pow(2).mean().sqrt())
        nn.init.normal_(self.output_proj.weight, std=rms / self.output_proj.in_features**0.5)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.input_proj(self.input_norm(states))
        padding = ~lengths_mask(lengths, states.shape[1])
        if states.shape[1]:  # a row with no frames (text mode) would attend to nothing: NaN, even in its
            padding[:, 0] &= lengths > 0  # gradient; let it see one zero frame (its slots are dropped)
        queries = self.queries.unsqueeze(0).expand(states.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, frames, padding)
        return self.output_proj(queries), self.output_lengths(lengths)
