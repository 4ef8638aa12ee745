"""What the two Q-Formers share: a BERT-style block and its settings."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from selfpowered.config.base import StrictModel
from selfpowered.model.connectors import Connector


class QFormerOptions(StrictModel):
    layers: int = Field(2, ge=1)
    hidden_size: int = Field(768, ge=8)
    heads: int = Field(12, ge=1)
    ffn_size: int = Field(3072, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)


class QFormerLayer(nn.Module):
    """BERT-style post-norm block: query self-attention, cross-attention to frames, feed-forward."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(hidden)
        self.cross_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.cross_norm = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))
        self.ffn_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, frames: torch.Tensor, frame_padding: torch.Tensor) -> torch.Tensor:
        attended, _ = self.self_attn(queries, queries, queries, need_weights=False)
        queries = self.self_norm(queries + self.dropout(attended))
        attended, _ = self.cross_attn(queries, frames, frames, key_padding_mask=frame_padding, need_weights=False)
        queries = self.cross_norm(queries + self.dropout(attended))
        return self.ffn_norm(queries + self.dropout(self.ffn(queries)))


class QFormerConnector(Connector):
    """What both Q-Formers build: input norm and projection, `queries` learned queries, the layers,
    the output projection (the same attribute names, so checkpoints load as before)."""

    def __init__(self, config, options: QFormerOptions, queries: int) -> None:
        super().__init__(config, options)
        hidden = options.hidden_size
        self.input_norm = nn.LayerNorm(config.encoder_hidden_size)
        self.input_proj = nn.Linear(config.encoder_hidden_size, hidden)
        self.queries = nn.Parameter(torch.randn(queries, hidden) * 0.02)
        self.layers = nn.ModuleList(
            QFormerLayer(hidden, options.heads, options.ffn_size, options.dropout) for _ in range(options.layers)
        )
        self.output_proj = nn.Linear(hidden, config.llm_hidden_size)
