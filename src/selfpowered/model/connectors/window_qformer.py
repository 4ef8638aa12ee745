"""`window_qformer` (the paper's, SALMONN style): non-overlapping windows of `window_seconds` real
seconds; `queries_per_window` learned queries cross-attend to their window's frames in every layer.
Unlike the official code (which sizes windows from the batch's longest length, giving ~83-100 tokens
whatever the duration) the token count is proportional to the real duration."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from selfpowered.model.connectors import lengths_mask, register_connector
from selfpowered.model.connectors._qformer import QFormerConnector, QFormerOptions


class WindowQFormerOptions(QFormerOptions):
    window_seconds: float = Field(1 / 3, gt=0, description="window length in real seconds")
    queries_per_window: int = Field(1, ge=1)


def window_frames(config, options: WindowQFormerOptions) -> int:
    """Encoder frames per window (17 at Whisper's 50 Hz for 1/3 s)."""
    return max(1, round(options.window_seconds * config.encoder_frame_rate))


@register_connector
class WindowQFormer(QFormerConnector):
    name = "window_qformer"
    summary = "the paper's: queries_per_window learned queries per window_seconds of real audio"
    Options = WindowQFormerOptions

    def __init__(self, config, options: WindowQFormerOptions) -> None:
        super().__init__(config, options, options.queries_per_window)
        self.window = window_frames(config, options)
        self.num_queries = options.queries_per_window

    @classmethod
    def token_count(cls, config, options: WindowQFormerOptions, frames):
        window = window_frames(config, options)
        return (frames + window - 1) // window * options.queries_per_window

    @classmethod
    def tokens_per_second(cls, config, options: WindowQFormerOptions) -> float:
        return config.encoder_frame_rate / (window_frames(config, options) / options.queries_per_window)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, dim = states.shape
        num_windows = (frames + self.window - 1) // self.window
        pad = num_windows * self.window - frames
        frame_valid = lengths_mask(lengths, frames)
        states = nn.functional.pad(states, (0, 0, 0, pad))
        frame_valid = nn.functional.pad(frame_valid, (0, pad), value=False)
        windows = states.reshape(batch * num_windows, self.window, dim)
        window_valid = frame_valid.reshape(batch * num_windows, self.window)
        used = window_valid.any(dim=1)  # windows holding at least one real frame
        frames_in = self.input_proj(self.input_norm(windows[used]))
        queries = self.queries.unsqueeze(0).expand(frames_in.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, frames_in, ~window_valid[used])
        tokens = self.output_proj(queries)  # (used_windows, q, d_llm)
        out = tokens.new_zeros(batch * num_windows, self.num_queries, tokens.shape[-1])
        out[used] = tokens
        out = out.reshape(batch, num_windows * self.num_queries, -1)
        return out, self.output_lengths(lengths)
