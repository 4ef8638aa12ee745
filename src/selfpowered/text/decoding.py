"""Decoding rules shared by every engine that writes answers (the serving engine, the text LLM).

A loop guard: small LLMs decoding greedily sometimes fall into a loop ("close close close ...",
"a fish, a fish, ...") and write until the token limit; one such answer adds ~100 insertions to a
WER that averages over a few hundred utterances (bench/RESULTS.md, issue 13). Banning the tokens
that would repeat an n-gram the answer already holds - transformers' `no_repeat_ngram_size`, over
the answer only, as `generate(inputs_embeds=...)` applies it - ends such loops and leaves answers
without a repeated n-gram untouched.
"""

from __future__ import annotations

from collections.abc import Sequence


def repeated_ngram_bans(tokens: Sequence[int], size: int) -> list[int]:
    """Tokens that would complete an n-gram (n = `size`) already in `tokens`; none when size is 0.

    The last size-1 tokens are the prefix; every earlier place where that prefix occurs bans the
    token that followed it there."""
    if size <= 0 or len(tokens) < size:
        return []
    prefix = list(tokens[len(tokens) - size + 1 :])
    return sorted(
        {tokens[i + size - 1] for i in range(len(tokens) - size + 1) if list(tokens[i : i + size - 1]) == prefix}
    )
