"""Closed questions answered by likelihood: which of the offered options does a model find likeliest
as the start of its answer?

A small LLM asked "Answer with one word, man or woman: who is speaking?" often answers with a
sentence that names neither, so a parsed answer measures its obedience, not what it heard. Scoring
each option as the answer's first words, as lm-evaluation-harness scores multiple choice, reads
what the model believes instead. The prompt is the one the engine would decode from
(`ServedModel.prepare`: the speech path, the cascade's transcript, or text), so the two ways of
answering ask the very same question.

An option's score is the log-probability of its words right after the prompt, summed over its
tokens, in either casing ("woman" or "Woman": the same answer), so options of different token
counts are compared as whole strings, not per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from selfpowered.model.prefill import prefill, quiet_cache_warnings

if TYPE_CHECKING:
    from selfpowered.model.engine import Request
    from selfpowered.model.served import ServedModel


def surface_forms(option: str) -> tuple[str, ...]:
    """The ways an answer starting with `option` is written: as given, and capitalised."""
    return tuple(dict.fromkeys((option, option[:1].upper() + option[1:])))


@torch.no_grad()
def option_logprobs(
    served: ServedModel, requests: Sequence[Request], options: Sequence[Sequence[str]]
) -> list[list[float]]:
    """log p(option | the request's prompt) for every option of every request. The prompts are
    prefilled once, left-padded as the engine pads them; each candidate (request, option, casing)
    then continues its prompt's KV cache with its own tokens (right-padded: later padding cannot
    change a causal model's earlier logits), so a prompt is never run twice."""
    from transformers import DynamicCache

    candidates, owners = [], []  # token ids; (request, option) of each candidate
    for row, offered in enumerate(options):
        for index, option in enumerate(offered):
            for form in surface_forms(option):
                if ids := served.tokenizer(form, add_special_tokens=False)["input_ids"]:
                    candidates.append(ids)
                    owners.append((row, index))
    scores = [[float("-inf")] * len(offered) for offered in options]
    if not candidates:
        return scores
    llm = served.llm
    with served.lock, quiet_cache_warnings():
        inputs, embeds = served.prepare(requests)
        device = embeds.device
        first, cache, mask, positions = prefill(
            llm, embeds, inputs["attention_mask"].to(device), inputs["position_ids"].to(device)
        )
        width = max(len(ids) for ids in candidates)
        ids = torch.zeros(len(candidates), width, dtype=torch.long, device=device)
        real = torch.zeros(len(candidates), width, dtype=mask.dtype, device=device)
        for i, tokens in enumerate(candidates):
            ids[i, : len(tokens)] = torch.tensor(tokens, device=device)
            real[i, : len(tokens)] = 1
        rows = torch.tensor([row for row, _ in owners], device=device)
        logprobs = torch.log_softmax(first.float(), dim=-1)[rows].gather(-1, ids[:, :1])  # the first token
        if width > 1:  # the rest: each candidate continues its own copy of its prompt's cache
            layers = [(layer.keys[rows], layer.values[rows]) for layer in cache.layers]
            start = positions[rows, -1:] + 1
            logits = llm(input_ids=ids[:, :-1], attention_mask=torch.cat([mask[rows], real[:, :-1]], dim=1),
                         position_ids=start + torch.arange(width - 1, device=device),
                         past_key_values=DynamicCache(ddp_cache_data=layers), use_cache=True).logits  # fmt: skip
            rest = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            logprobs = torch.cat([logprobs, rest], dim=1)
    totals = torch.where(real.bool(), logprobs, 0.0).sum(dim=1).tolist()  # (a padded -inf would make 0 x -inf)
    for (row, option), total in zip(owners, totals):
        scores[row][option] = float(np.logaddexp(scores[row][option], total))  # either casing: the same answer
    return scores


def choose_all(
    served: ServedModel, requests: Sequence[Request], options: Sequence[Sequence[str]], max_batch: int = 16
) -> list[str]:
    """The likeliest option of each request (the first of equals), in batches of `max_batch` prompts."""
    chosen: list[str] = []
    for start in range(0, len(requests), max_batch):
        part = slice(start, start + max_batch)
        for offered, scores in zip(options[part], option_logprobs(served, requests[part], options[part])):
            chosen.append(offered[max(range(len(offered)), key=scores.__getitem__)] if offered else "")
    return chosen
