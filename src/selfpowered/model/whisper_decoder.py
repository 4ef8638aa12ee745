"""Whisper's own decoder as part of the frozen speech encoder (`speech_states: decoder`).

Why: a connector trained from scratch on a few synthetic voices learns those voices. Its CTC head
spells real human speech at WER ~0.4 where Whisper itself gets 0.07 (bench/RESULTS.md, issue 13).
Whisper's decoder already turns encoder frames into text for any voice it was trained on. So in
this mode the frozen Whisper decodes greedily, and the connector receives the decoder's final
hidden state *at each position that predicted a text token*: one state per decoded token, which
its tied output layer reads as that token. DiVA (Held et al., ACL 2025) initialises its
connector from Whisper's decoder weights and runs it over learned queries; here the decoder runs
as Whisper itself runs it, greedily. The LLM still reads continuous states, not text, but they
carry what Whisper heard, as far as Whisper hears.

We run the decoder's modules ourselves, as `encoder.py` does for the encoder, because
transformers' `WhisperDecoder.forward` takes no encoder padding mask: in a batch, the padded
frames of short utterances would leak into the cross-attention. Here every row attends only to
its own real frames, so an utterance decodes the same alone or in a batch. All rows advance in
lock-step, one token per step, with self-attention keys and values cached per layer and the
cross-attention keys and values computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperDecoder

DECODER_PREFIX = "model.decoder."
ENCODER_FRAME_RATE = 50.0  # Whisper encoder frames per second of audio


def decoded_token_bound(encoder_frames: int, tokens_per_second: float) -> int:
    """The most text tokens the decoder may write for a chunk of `encoder_frames` frames. The
    processor reserves this many speech slots before any weights run (their count must follow
    from the audio's length alone), so decoding stops there. Unused slots are masked out."""
    return math.ceil(encoder_frames / ENCODER_FRAME_RATE * tokens_per_second) + 2


@dataclass(frozen=True)
class DecoderPrompt:
    """The token ids greedy English transcription needs, without timestamps."""

    prompt: tuple[int, ...]  # <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>
    end: int  # <|endoftext|>; every id below it is a text token
    begin_suppress: tuple[int, ...] = ()  # not allowed as the first token (Whisper: blank, end)
    suppress: tuple[int, ...] = ()  # never allowed (Whisper's non-speech symbols)

    @classmethod
    def from_folder(cls, config: WhisperConfig, folder: str | Path | None = None) -> DecoderPrompt:
        """From the Whisper folder's generation_config.json (as transformers writes it, with the
        language and task ids of a multilingual model); without one (a model built from a config
        alone, as in tests) the prompt is the start token and the end is the config's eos."""
        import json

        path = Path(folder) / "generation_config.json" if folder is not None else None
        if path is None or not path.is_file():
            begin, suppress = config.begin_suppress_tokens or [], config.suppress_tokens or []
            return cls((int(config.decoder_start_token_id),), int(config.eos_token_id), tuple(begin), tuple(suppress))
        generation = json.loads(path.read_text())
        prompt = [int(generation["decoder_start_token_id"])]
        if generation.get("is_multilingual"):
            prompt += [int(generation["lang_to_id"]["<|en|>"]), int(generation["task_to_id"]["transcribe"])]
        prompt.append(int(generation["no_timestamps_token_id"]))
        begin = generation.get("begin_suppress_tokens") or []
        suppress = generation.get("suppress_tokens") or []
        return cls(tuple(prompt), int(generation["eos_token_id"]), tuple(begin), tuple(suppress))


def text_vocabulary(folder: str | Path | None, end: int) -> tuple[str, ...] | None:
    """The byte-level strings of a Whisper folder's text tokens (ids below `end`), from its
    tokenizer.json; None when the folder has none."""
    path = Path(folder) / "tokenizer.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    return tuple(tokenizer.id_to_token(i) or "" for i in range(end))


class WhisperStateDecoder(nn.Module):
    """Greedy decoding of padded encoder states; returns the states that predicted each text token."""

    def __init__(
        self,
        decoder: WhisperDecoder,
        prompt: DecoderPrompt,
        tokens_per_second: float = 8.0,
        vocabulary: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.whisper = decoder
        self.prompt = prompt
        self.tokens_per_second = tokens_per_second
        # the text tokens' strings in byte-level form (tokenizer.json's vocabulary), for
        # `speech_tokens: whisper_text`; None for a decoder built from a config alone
        self.vocabulary = vocabulary
        vocab = decoder.embed_tokens.num_embeddings
        allowed = torch.zeros(vocab, dtype=torch.bool)
        allowed[: min(prompt.end + 1, vocab)] = True  # text tokens and the end token: no specials, no timestamps
        allowed[[t for t in prompt.suppress if t < vocab]] = False
        self.register_buffer("allowed", allowed, persistent=False)
        first = allowed.clone()
        first[[t for t in prompt.begin_suppress if t < vocab]] = False
        self.register_buffer("allowed_first", first, persistent=False)

    @property
    def hidden_size(self) -> int:
        return int(self.whisper.config.d_model)

    @classmethod
    def from_config(
        cls, config: WhisperConfig, folder: str | Path | None = None, tokens_per_second: float = 8.0
    ) -> WhisperStateDecoder:
        prompt = DecoderPrompt.from_folder(config, folder)
        return cls(WhisperDecoder(config), prompt, tokens_per_second, text_vocabulary(folder, prompt.end))

    def read_tokens(self, states: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The text token each state predicted, as the tied output layer reads it with the rules
        greedy decoding applied (allowed tokens; the first position's own rule): (batch, tokens)
        ids, 0 past a row's count. What `forward` returned as ids, recomputed from cached states."""
        table = self.whisper.embed_tokens.weight
        logits = (states.to(table.dtype) @ table.T).masked_fill(~self.allowed, float("-inf"))
        if logits.shape[1]:  # the first position also obeys begin_suppress (a broadcast mask, no copy)
            logits[:, 0] = logits[:, 0].masked_fill(~self.allowed_first, float("-inf"))
        ids = logits.argmax(dim=-1)
        keep = torch.arange(ids.shape[1], device=ids.device)[None, :] < counts.to(ids.device)[:, None]
        return ids * keep

    def settings(self) -> dict:
        """What besides the weights changes the output (for the feature cache's fingerprint)."""
        return {"prompt": list(self.prompt.prompt), "end": self.prompt.end, "tokens_per_second": self.tokens_per_second}

    @torch.no_grad()
    def forward(
        self, states: torch.Tensor, lengths: torch.Tensor, limits: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded encoder states (batch, frames, d) and real lengths -> (decoder states (batch,
        tokens, d) at the positions that predicted each text token, their counts (batch,), and
        the token ids (batch, tokens), 0 past a count). `limits`: the most tokens per row
        (default: `decoded_token_bound` of its length)."""
        whisper = self.whisper
        batch, frames, _ = states.shape
        device, dtype = states.device, states.dtype
        if limits is None:
            limits = [decoded_token_bound(int(n), self.tokens_per_second) for n in lengths.tolist()]
        room = int(whisper.config.max_target_positions) - len(self.prompt.prompt)  # Whisper's 448 positions
        limits = torch.tensor([min(room, limit) for limit in limits], device=device)
        real = torch.arange(frames, device=device)[None, :] < lengths.to(device)[:, None]
        cross_mask = real[:, None, None, :]  # (batch, 1, 1, frames): True = attend
        cross = [self._project_kv(layer.encoder_attn, states) for layer in whisper.layers]
        cache: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(whisper.layers)
        tokens = torch.tensor(self.prompt.prompt, device=device)[None, :].expand(batch, -1)
        position = 0
        picked_states, picked_tokens = [], []
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        counts = torch.zeros(batch, dtype=torch.long, device=device)
        for step in range(int(limits.max())):
            span = slice(position, position + tokens.shape[1])
            hidden = whisper.embed_tokens(tokens) + whisper.embed_positions.weight[span]
            position = span.stop
            for index, layer in enumerate(whisper.layers):
                hidden, cache[index] = self._layer(layer, hidden.to(dtype), cache[index], cross[index], cross_mask)
            last = whisper.layer_norm(hidden[:, -1])
            logits = last @ whisper.embed_tokens.weight.T
            allowed = self.allowed_first if step == 0 else self.allowed
            next_token = logits.masked_fill(~allowed, float("-inf")).argmax(dim=-1)
            done |= (next_token == self.prompt.end) | (counts >= limits)
            counts += (~done).long()
            picked_states.append(last)
            picked_tokens.append(torch.where(done, torch.zeros_like(next_token), next_token))
            if bool(done.all()):
                break
            tokens = next_token[:, None]
        width = int(counts.max()) if batch else 0
        out = torch.stack(picked_states, dim=1)[:, :width]
        ids = torch.stack(picked_tokens, dim=1)[:, :width]
        keep = torch.arange(width, device=device)[None, :] < counts[:, None]
        return out * keep[..., None].to(out.dtype), counts, ids * keep

    @staticmethod
    def _project_kv(attention: nn.Module, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heads = attention.num_heads
        batch, frames, _ = states.shape
        key = attention.k_proj(states).view(batch, frames, heads, -1).transpose(1, 2)
        value = attention.v_proj(states).view(batch, frames, heads, -1).transpose(1, 2)
        return key, value

    @staticmethod
    def _attend(attention: nn.Module, hidden: torch.Tensor, key, value, mask=None, causal=False) -> torch.Tensor:
        batch, length, _ = hidden.shape
        query = attention.q_proj(hidden).view(batch, length, attention.num_heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=causal)
        return attention.out_proj(out.transpose(1, 2).reshape(batch, length, -1))

    def _layer(self, layer, hidden: torch.Tensor, cache, cross, cross_mask):
        """One pre-norm decoder layer (self-attention over the cache, cross-attention to the real
        frames, feed-forward), as `WhisperDecoderLayer.forward` computes it in eval mode."""
        normed = layer.self_attn_layer_norm(hidden)
        attention = layer.self_attn
        batch, length, _ = normed.shape
        key = attention.k_proj(normed).view(batch, length, attention.num_heads, -1).transpose(1, 2)
        value = attention.v_proj(normed).view(batch, length, attention.num_heads, -1).transpose(1, 2)
        if cache is not None:
            key, value = torch.cat([cache[0], key], dim=2), torch.cat([cache[1], value], dim=2)
        # the prompt (several positions at once) attends causally; a later single token sees all
        hidden = hidden + self._attend(attention, normed, key, value, causal=cache is None and length > 1)
        hidden = hidden + self._attend(
            layer.encoder_attn, layer.encoder_attn_layer_norm(hidden), cross[0], cross[1], mask=cross_mask
        )
        hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
        return hidden, (key, value)
