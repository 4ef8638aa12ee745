"""Connectors: encoder frames -> a duration-proportional sequence of LLM-space speech embeddings.

Both take padded encoder states (batch, frames, d_enc) plus real lengths and return padded speech
embeddings (batch, tokens, d_llm) plus token lengths. Padded frames never influence real tokens,
so a batch gives the same embeddings as its utterances one by one.

- `WindowQFormer` (the paper's, SALMONN style): non-overlapping windows of `window_seconds` real
  seconds; `queries_per_window` learned queries cross-attend to their window's frames in every
  layer. Unlike the official code (which sizes windows from the batch's longest length, giving
  ~83-100 tokens whatever the duration) the token count is proportional to the real duration.
- `UtteranceQFormer` (BLIP-2 / DeSTA style): `utterance_queries` learned queries cross-attend to
  every real frame of the utterance: a fixed number of slots, whatever the duration, for what a
  transcript cannot carry (who speaks, how fast, in what room). A transcript-reading LSM
  (`speech_tokens: transcript`) puts them after Whisper's words.
- `StackMLP` (Ultravox style): stack k consecutive frames, LayerNorm, 2-layer MLP. Cheap, and the
  connector our CPU `align` stage starts from. Each stack may become several tokens
  (`tokens_per_stack`): with `speech_states: decoder` every state is one Whisper token, and CTC
  needs room to spell the LLM's own tokens, of which there can be more.
"""

from __future__ import annotations

import torch
from torch import nn

from selfpowered.model.configuration import LSMConfig

DECODED_TOKENS_PER_SECOND = 4.0  # a typical English speaking rate in Whisper tokens (an estimate)


def speech_token_lengths(config: LSMConfig, encoder_frames):
    """Speech tokens the connector makes from `encoder_frames` real frames (an int or a tensor of
    them): ceil(frames / k) for the stack-MLP, ceil(frames / window) x queries for the Q-Former.
    The one definition of the count: the connectors, the processor's prompt layout and batch
    sizing all use it."""
    if config.connector == "stack_mlp":
        return (encoder_frames + config.stack_factor - 1) // config.stack_factor * config.tokens_per_stack
    if config.connector in ("utterance_qformer", "none"):  # a fixed count per utterance that has speech
        queries = config.utterance_queries if config.connector == "utterance_qformer" else 0
        return (encoder_frames > 0) * queries
    window = config.window_frames
    return (encoder_frames + window - 1) // window * config.queries_per_window


def speech_tokens_per_second(config: LSMConfig) -> float:
    """Speech tokens per second of audio on average (for estimating batch sizes before encoding).
    With decoder states: an estimate of ~4 Whisper tokens a second of English speech."""
    if config.speech_states == "decoder":
        return DECODED_TOKENS_PER_SECOND / config.stack_factor * config.tokens_per_stack
    if config.speech_tokens == "transcript":  # the heard words (~1.3 LLM tokens a Whisper token)
        return DECODED_TOKENS_PER_SECOND * 1.3
    if config.connector in ("utterance_qformer", "none"):
        return 1.0
    frames_per_token = (
        config.stack_factor if config.connector == "stack_mlp" else config.window_frames / config.queries_per_window
    )
    return config.encoder_frame_rate / frames_per_token


def _lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


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


class WindowQFormer(nn.Module):
    """Window-level Q-Former: `queries_per_window` tokens per `window_seconds` of real audio."""

    def __init__(self, config: LSMConfig) -> None:
        super().__init__()
        hidden = config.qformer_hidden_size
        self.config = config
        self.window = config.window_frames
        self.num_queries = config.queries_per_window
        self.input_norm = nn.LayerNorm(config.encoder_hidden_size)
        self.input_proj = nn.Linear(config.encoder_hidden_size, hidden)
        self.queries = nn.Parameter(torch.randn(self.num_queries, hidden) * 0.02)
        self.layers = nn.ModuleList(
            QFormerLayer(hidden, config.qformer_heads, config.qformer_ffn_size, config.connector_dropout)
            for _ in range(config.qformer_layers)
        )
        self.output_proj = nn.Linear(hidden, config.llm_hidden_size)

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return speech_token_lengths(self.config, frame_lengths)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, dim = states.shape
        num_windows = (frames + self.window - 1) // self.window
        pad = num_windows * self.window - frames
        frame_valid = _lengths_mask(lengths, frames)
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


class UtteranceQFormer(nn.Module):
    """`utterance_queries` learned queries over all real frames of an utterance (see the module).
    Its output starts at the scale of the LLM's own token embeddings (`match_scale`), so a fresh
    model's extra slots look like ordinary tokens to the LLM, not like outliers."""

    def __init__(self, config: LSMConfig) -> None:
        super().__init__()
        hidden = config.qformer_hidden_size
        self.config = config
        self.input_norm = nn.LayerNorm(config.encoder_hidden_size)
        self.input_proj = nn.Linear(config.encoder_hidden_size, hidden)
        self.queries = nn.Parameter(torch.randn(config.utterance_queries, hidden) * 0.02)
        self.layers = nn.ModuleList(
            QFormerLayer(hidden, config.qformer_heads, config.qformer_ffn_size, config.connector_dropout)
            for _ in range(config.qformer_layers)
        )
        self.output_proj = nn.Linear(hidden, config.llm_hidden_size)

    @torch.no_grad()
    def match_scale(self, embeddings: torch.Tensor) -> None:
        """Scale the output projection so its outputs have the embedding table's root mean square
        (the last Q-Former layer ends in a LayerNorm: its outputs have unit variance per channel)."""
        rms = float(embeddings.float().pow(2).mean().sqrt())
        nn.init.normal_(self.output_proj.weight, std=rms / self.output_proj.in_features**0.5)
        nn.init.zeros_(self.output_proj.bias)

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return speech_token_lengths(self.config, frame_lengths)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.input_proj(self.input_norm(states))
        padding = ~_lengths_mask(lengths, states.shape[1])
        if states.shape[1]:  # a row with no frames (text mode) would attend to nothing: NaN, even in its
            padding[:, 0] &= lengths > 0  # gradient; let it see one zero frame (its slots are dropped)
        queries = self.queries.unsqueeze(0).expand(states.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, frames, padding)
        return self.output_proj(queries), self.output_lengths(lengths)


class NoConnector(nn.Module):
    """`connector: none`: no slots (a transcript-reading LSM that hears Whisper's words alone)."""

    def __init__(self, config: LSMConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return states.new_zeros(states.shape[0], 0, self.config.llm_hidden_size), torch.zeros_like(lengths)


class StackMLP(nn.Module):
    """Stack `stack_factor` frames into one vector, then LayerNorm -> Linear -> GELU -> Linear."""

    def __init__(self, config: LSMConfig) -> None:
        super().__init__()
        self.config = config
        self.stack = config.stack_factor
        self.expand = config.tokens_per_stack
        stacked = config.encoder_hidden_size * self.stack
        self.norm = nn.LayerNorm(stacked)
        self.mlp = nn.Sequential(
            nn.Linear(stacked, config.mlp_hidden_size),
            nn.GELU(),
            nn.Dropout(config.connector_dropout),
            nn.Linear(config.mlp_hidden_size, config.llm_hidden_size * self.expand),
        )

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return speech_token_lengths(self.config, frame_lengths)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, dim = states.shape
        steps = (frames + self.stack - 1) // self.stack
        # zero padded frames so the last real token of a short utterance does not see its neighbours
        states = states * _lengths_mask(lengths, frames).unsqueeze(-1).to(states.dtype)
        states = nn.functional.pad(states, (0, 0, 0, steps * self.stack - frames))
        stacked = states.reshape(batch, steps, self.stack * dim)
        tokens = self.mlp(self.norm(stacked)).reshape(batch, steps * self.expand, -1)  # a stack's tokens in order
        return tokens, self.output_lengths(lengths)


def build_connector(config: LSMConfig) -> nn.Module:
    """The connector named by `config.connector`."""
    kinds = {
        "window_qformer": WindowQFormer,
        "stack_mlp": StackMLP,
        "utterance_qformer": UtteranceQFormer,
        "none": NoConnector,
    }
    return kinds[config.connector](config)
