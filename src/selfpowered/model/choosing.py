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

import torch

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
    """log p(option | the request's prompt) for every option of every request, one forward pass
    per (request, option, casing) in one batch: the prompts left-padded as the engine pads them,
    each candidate's tokens appended on the right (later padding cannot change a causal model's
    earlier logits)."""
    tokenizer = served.tokenizer
    with served.lock:
        inputs, embeds = served.prepare(requests)
    device = embeds.device
    mask = inputs["attention_mask"].to(device)
    next_position = inputs["position_ids"].to(device)[:, -1] + 1
    rows, candidates, owners = [], [], []  # (prompt row, token ids), (request, option) per candidate
    for row, offered in enumerate(options):
        for index, option in enumerate(offered):
            for form in surface_forms(option):
                ids = tokenizer(form, add_special_tokens=False)["input_ids"]
                if ids:
                    rows.append(row)
                    candidates.append(ids)
                    owners.append((row, index))
    scores = [[float("-inf")] * len(offered) for offered in options]
    if not candidates:
        return scores
    width = max(len(ids) for ids in candidates)
    ids = torch.zeros(len(candidates), width, dtype=torch.long, device=device)
    real = torch.zeros(len(candidates), width, dtype=mask.dtype, device=device)
    for i, tokens in enumerate(candidates):
        ids[i, : len(tokens)] = torch.tensor(tokens, device=device)
        real[i, : len(tokens)] = 1
    index = torch.tensor(rows, device=device)
    llm = served.llm
    full = torch.cat([embeds[index], llm.get_input_embeddings()(ids).to(embeds.dtype)], dim=1)
    positions = torch.cat(
        [inputs["position_ids"].to(device)[index], next_position[index, None] + torch.arange(width, device=device)],
        dim=1,
    )
    with served.lock:
        logits = llm(
            inputs_embeds=full,
            attention_mask=torch.cat([mask[index], real], dim=1),
            position_ids=positions,
            logits_to_keep=width + 1,
        ).logits[:, :-1]
    token_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[..., None])[..., 0]
    totals = (token_logprobs * real).sum(dim=1).tolist()
    for (row, option), total in zip(owners, totals):
        scores[row][option] = float(torch.logaddexp(torch.tensor(scores[row][option]), torch.tensor(total)))
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
