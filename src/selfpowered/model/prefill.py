"""Prefill: a left-padded prompt batch through the LLM, the leading tokens every row shares run once.

The engine (`model/engine.py`) starts every answer here and `model/choosing.py` scores options from
here, so both read the same logits and KV cache of a prompt. Eval prompts share their chat
template's system turn and user header (24 of ~60 tokens for SmolLM2): computed for one row and
copied to the rest, they cost one row's work instead of 64's (`bench/prefill_speed.py`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def quiet_cache_warnings() -> Iterator[None]:
    """`past_key_values=` works on every transformers we support; 5.2x renamed it `cache=` with a
    deprecation warning per call until 5.40."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated.*", category=FutureWarning)
        yield


MIN_SHARED_PREFIX = 4  # tokens: below this, prefilling a prefix once saves less than it costs


def shared_prefix_length(embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> int:
    """How many leading prompt tokens every row of a left-padded batch shares - the same embedding
    at the same position (a chat template's system turn and the user header, ~24 tokens of a ~60
    token eval prompt). At most one fewer than the shortest prompt, so every row keeps a token of
    its own to predict from; 0 for one row or a mask that is not left padding."""
    rows, width = mask.shape
    lengths = mask.sum(dim=1)
    shortest = int(lengths.min())
    if rows < 2 or shortest < 2:
        return 0
    starts = width - lengths
    columns = torch.arange(width, device=mask.device)
    if not bool(((columns >= starts[:, None]) == mask.bool()).all()):  # real tokens are not one block on the right
        return 0
    index = starts[:, None] + torch.arange(shortest - 1, device=mask.device)
    picked = torch.arange(rows, device=mask.device)[:, None]
    same = (embeds[picked, index] == embeds[picked[:1], index[:1]]).all(dim=-1).all(dim=0)
    same &= (positions[picked, index] == positions[picked[:1], index[:1]]).all(dim=0)
    shared = int(same.long().cumprod(0).sum())
    return shared if shared >= MIN_SHARED_PREFIX else 0


@torch.no_grad()
def prefill(
    llm, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """Run a left-padded prompt batch through the LLM: the next-token logits of every row, its KV
    cache, and the attention mask and positions of that cache's columns (the engine and
    `choosing` continue from them).

    The leading tokens every row shares (`shared_prefix_length`) are run once, for one row, and
    their keys and values copied to all rows; each row's own tokens follow them in the cache,
    its padding moved between the two (masked, so unseen; a causal model's prefix states do not
    depend on what follows them). In an eval batch of 64 that is ~40% of the prefill's work."""
    from transformers import DynamicCache

    shared = shared_prefix_length(embeds, mask, positions)
    cache = DynamicCache()
    run_embeds, run_mask, run_positions = embeds, mask, positions  # what the batched forward reads
    if shared:
        rows, width = mask.shape
        start = int(width - mask[0].sum())  # row 0's first real column; its prefix stands for all
        prefix = slice(start, start + shared)
        with quiet_cache_warnings():
            llm(inputs_embeds=embeds[:1, prefix], attention_mask=mask[:1, prefix], position_ids=positions[:1, prefix],
                past_key_values=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        layers = [
            (layer.keys.expand(rows, -1, -1, -1).contiguous(), layer.values.expand(rows, -1, -1, -1).contiguous())
            for layer in cache.layers
        ]
        cache = DynamicCache(ddp_cache_data=layers)
        # each row without its shared tokens: its padding, then the rest of its prompt
        columns = torch.arange(width - shared, device=mask.device)[None]
        own = columns + shared * (columns >= (width - mask.sum(dim=1))[:, None])
        run_embeds = embeds[torch.arange(rows, device=mask.device)[:, None], own]
        run_positions = positions.gather(1, own)
        run_mask = torch.cat([mask.new_ones(rows, shared), mask.gather(1, own)], dim=1)  # the cache's columns
        mask, positions = run_mask, torch.cat([positions[:1, prefix].expand(rows, -1), run_positions], dim=1)
    with quiet_cache_warnings():
        logits = llm(inputs_embeds=run_embeds, attention_mask=run_mask, position_ids=run_positions,
                     past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # fmt: skip
    return logits, cache, mask, positions
