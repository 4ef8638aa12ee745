"""What the two Q-Formers share: a BERT-style block and its settings."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from selfpowered.config.base import StrictModel


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


def qformer_layers(options: QFormerOptions) -> nn.ModuleList:
    return nn.ModuleList(
        QFormerLayer(options.hidden_size, options.heads, options.ffn_size, options.dropout)
        for _ in range(options.layers)
    )
