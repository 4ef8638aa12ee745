"""`stack_mlp` (Ultravox style): stack k consecutive frames, LayerNorm, 2-layer MLP. Cheap, and the
connector the CPU `align` stage starts from. Each stack may become several tokens
(`tokens_per_stack`): with `speech_states: decoder` every state is one Whisper token, and CTC needs
room to spell the LLM's own tokens, of which there can be more."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from selfpowered.config.base import StrictModel
from selfpowered.model.connectors import DECODED_TOKENS_PER_SECOND, Connector, lengths_mask, register_connector


class StackMLPOptions(StrictModel):
    stack_factor: int = Field(4, ge=1, description="frames stacked per token")
    tokens_per_stack: int = Field(
        1,
        ge=1,
        description="speech tokens each stack becomes; 2 lets CTC spell more LLM tokens than there are states, as "
        "`speech_states: decoder` needs",
    )
    hidden_size: int = Field(1024, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)


@register_connector
class StackMLP(Connector):
    name = "stack_mlp"
    summary = "Ultravox's: stack_factor frames stacked, LayerNorm -> Linear -> GELU -> Linear"
    Options = StackMLPOptions

    def __init__(self, config, options: StackMLPOptions) -> None:
        super().__init__(config, options)
        self.stack = options.stack_factor
        self.expand = options.tokens_per_stack
        stacked = config.encoder_hidden_size * self.stack
        self.norm = nn.LayerNorm(stacked)
        self.mlp = nn.Sequential(
            nn.Linear(stacked, options.hidden_size),
            nn.GELU(),
            nn.Dropout(options.dropout),
            nn.Linear(options.hidden_size, config.llm_hidden_size * self.expand),
        )

    @classmethod
    def check(cls, model, options: StackMLPOptions) -> None:
        if model.speech_tokens == "whisper_text" and options.stack_factor != 1:
            raise ValueError(
                "speech_tokens: whisper_text adds the connector's output to each decoded token's pieces: it needs "
                f"connector.stack_factor: 1, one stack per token (got {options.stack_factor})"
            )

    @classmethod
    def token_count(cls, config, options: StackMLPOptions, frames):
        return (frames + options.stack_factor - 1) // options.stack_factor * options.tokens_per_stack

    @classmethod
    def tokens_per_second(cls, config, options: StackMLPOptions) -> float:
        if config.speech_states == "decoder":  # ~4 Whisper tokens a second of English speech
            return DECODED_TOKENS_PER_SECOND / options.stack_factor * options.tokens_per_stack
        return config.encoder_frame_rate / options.stack_factor

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, dim = states.shape
        steps = (frames + self.stack - 1) // self.stack
        # zero padded frames so the last real token of a short utterance does not see its neighbours
        states = states * lengths_mask(lengths, frames).unsqueeze(-1).to(states.dtype)
        states = nn.functional.pad(states, (0, 0, 0, steps * self.stack - frames))
        stacked = states.reshape(batch, steps, self.stack * dim)
        tokens = self.mlp(self.norm(stacked)).reshape(batch, steps * self.expand, -1)  # a stack's tokens in order
        return tokens, self.output_lengths(lengths)
