"""The continuous-batching engine: answers equal transformers' generate, in any batch, with rows
joining and leaving mid-way; stop strings, length limits, sampling seeds, the adapter switch."""

from __future__ import annotations

import torch

from selfpowered.model.engine import DecodeBatch, Request, generate_all
from selfpowered.model.served import ServedModel
from tests.helpers import tone
from tests.test_modeling import _randomise_lora
from tests.tiny import tiny_lsm

CLIPS = [tone(1.3, 200), tone(4.0, 300), tone(0.6, 410), None, tone(2.2, 250)]
PROMPTS = ["transcribe the speech", "translate the given english content", "transcribe", "the quick brown fox", "x"]


def _lsm():
    model = tiny_lsm()
    _randomise_lora(model)
    return model


def _requests(**options) -> list[Request]:
    return [Request("tiny", text, clip, **{"max_tokens": 10, **options}) for text, clip in zip(PROMPTS, CLIPS)]


def test_answers_equal_generate_whatever_the_batch_and_rows_join_midway():
    model = _lsm()
    expected = [
        model.generate(audio=clip, instruction=text, max_new_tokens=10)
        if clip is not None
        else model.generate(text=text, max_new_tokens=10)
        for text, clip in zip(PROMPTS, CLIPS)
    ]
    served = ServedModel.from_lsm("tiny", model, merge_lora=False)
    for max_batch in (1, 2, 5):  # 2: later requests join a batch that is already decoding
        assert [r.text for r in generate_all(served, _requests(), max_batch)] == expected, max_batch


def test_a_row_that_joins_a_running_batch_gets_its_own_answer():
    served = ServedModel.from_lsm("tiny", _lsm(), merge_lora=False)
    alone = generate_all(served, _requests()[1:2])[0].text
    batch = DecodeBatch(served)
    first, joining = _requests()[0], _requests()[1]
    batch.admit([first])
    for _ in range(3):
        batch.step()
    batch.admit([joining])  # its cache is left-padded to the running batch's length
    while len(batch):
        batch.step()
    assert joining.text == alone and first.finish_reason == "length"


def test_merged_adapter_and_adapter_off():
    model = _lsm()
    base = model.generate(text=PROMPTS[3], max_new_tokens=8, use_adapter=False)
    served = ServedModel.from_lsm("tiny", model)  # LoRA merged into the weights
    assert any(getattr(module, "merged", False) for module in served.llm.modules())
    with served.adapter_off():
        (off,) = generate_all(served, [Request("tiny", PROMPTS[3], max_tokens=8)])
    assert off.text == base
    assert any(getattr(module, "merged", False) for module in served.llm.modules())  # merged again after


def test_stop_strings_length_limit_and_usage_counts():
    served = ServedModel.from_lsm("tiny", _lsm(), merge_lora=False)
    (free,) = generate_all(served, [Request("tiny", PROMPTS[3], max_tokens=12)])
    assert free.finish_reason == "length" and len(free.tokens) == 12 and free.prompt_tokens > 0
    stop = free.text[4:6]
    (cut,) = generate_all(served, [Request("tiny", PROMPTS[3], max_tokens=12, stop=[stop])])
    assert cut.finish_reason == "stop" and stop not in cut.text and free.text.startswith(cut.text)


def test_sampling_follows_its_seed():
    served = ServedModel.from_lsm("tiny", _lsm(), merge_lora=False)
    sampled = [generate_all(served, [Request("tiny", PROMPTS[3], temperature=1.5, seed=s)])[0].text for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]
    greedy = generate_all(served, [Request("tiny", PROMPTS[3])])[0].text
    assert greedy != sampled[0] or greedy != sampled[2]


def test_events_stream_the_text_as_it_is_decoded():
    served = ServedModel.from_lsm("tiny", _lsm(), merge_lora=False)
    events: list[tuple[str, object]] = []
    request = Request("tiny", PROMPTS[0], CLIPS[0], max_tokens=10, on_event=lambda k, p: events.append((k, p)))
    generate_all(served, [request])
    deltas = "".join(p for k, p in events if k == "delta")
    assert events[-1] == ("done", request) and deltas.strip() == request.text


def test_the_loop_guard_bans_repeated_ngrams_as_transformers_does():
    from selfpowered.text.decoding import repeated_ngram_bans

    # hand-made: the prefix (7, 8) occurred twice before, followed by 9 and by 4
    assert repeated_ngram_bans([7, 8, 9, 1, 7, 8, 4, 7, 8], 3) == [4, 9]
    assert repeated_ngram_bans([5, 5, 5], 2) == [5] and repeated_ngram_bans([1, 2, 3], 2) == []
    assert repeated_ngram_bans([5, 5, 5], 0) == [] and repeated_ngram_bans([5], 3) == []
    model = _lsm()
    served = ServedModel.from_lsm("tiny", model, merge_lora=False)
    plain = [r.tokens for r in generate_all(served, _requests(max_tokens=24))]
    guarded = generate_all(served, _requests(max_tokens=24, no_repeat_ngram_size=2), max_batch=2)
    expected = [
        model.generate(audio=clip, instruction=text, max_new_tokens=24, no_repeat_ngram_size=2)
        if clip is not None
        else model.generate(text=text, max_new_tokens=24, no_repeat_ngram_size=2)
        for text, clip in zip(PROMPTS, CLIPS)
    ]
    assert [r.text for r in guarded] == expected
    for request in guarded:
        pairs = list(zip(request.tokens, request.tokens[1:]))
        assert len(pairs) == len(set(pairs))
    assert [r.tokens for r in guarded] != plain  # the random tiny model does loop


def test_sampling_follows_the_softmax_of_the_logits():
    from collections import Counter

    from selfpowered.model.engine import _sample

    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0])
    n = 2000
    draws = Counter(_sample(logits, Request("m", "x", temperature=1.0, seed=i)) for i in range(n))
    probs = logits.softmax(-1)
    for token, p in enumerate(probs.tolist()):  # each frequency within 4 standard errors of its p
        assert abs(draws[token] / n - p) <= 4 * (p * (1 - p) / n) ** 0.5
    # at temperature 0.5 the distribution sharpens as softmax(logits / 0.5) says
    sharp = Counter(_sample(logits, Request("m", "x", temperature=0.5, seed=i)) for i in range(n))
    assert abs(sharp[0] / n - (logits / 0.5).softmax(-1)[0].item()) <= 0.05


def test_repetition_penalty_discourages_the_answers_own_tokens():
    from selfpowered.model.engine import _sample

    logits = torch.tensor([3.0, 2.9, -1.0])
    request = Request("m", "x", repetition_penalty=1.2)
    assert _sample(logits, request) == 0  # nothing said yet: greedy
    request.tokens = [0]
    assert _sample(logits, request) == 1  # 3.0 / 1.2 = 2.5 < 2.9
    request.tokens, logits = [2], torch.tensor([-3.0, -1.1, -1.0])
    assert _sample(logits, request) == 1  # a negative score of a said token is multiplied: -1.2 < -1.1


def _left_padded(rows: list[list[float]], width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hand-made prompt batch: each row's values as 1-dim embeddings, left-padded with -1."""
    embeds = torch.full((len(rows), width, 1), -1.0)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        embeds[i, width - len(row) :, 0] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return embeds, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)


def test_shared_prefix_length_counts_the_leading_tokens_every_row_has(monkeypatch):
    from selfpowered.model import prefill

    monkeypatch.setattr(prefill, "MIN_SHARED_PREFIX", 2)
    embeds, mask, positions = _left_padded([[1, 2, 3, 4, 9], [1, 2, 3, 7, 8, 9, 9], [1, 2, 3, 4, 5, 6]], 8)
    assert prefill.shared_prefix_length(embeds, mask, positions) == 3  # padding differs; 1, 2, 3 do not
    embeds, mask, positions = _left_padded([[1, 2, 3], [1, 2, 3, 4]], 5)
    assert prefill.shared_prefix_length(embeds, mask, positions) == 2  # the shortest keeps one token of its own
    embeds, mask, positions = _left_padded([[1, 5, 3, 4], [1, 2, 3, 4]], 4)
    assert prefill.shared_prefix_length(embeds, mask, positions) == 0  # 1 token shared: below the minimum
    assert prefill.shared_prefix_length(*_left_padded([[1, 2, 3, 4]], 4)) == 0  # one row: nothing to share
    embeds, mask, positions = _left_padded([[1, 2, 3, 4], [1, 2, 3, 4]], 4)
    mask[0, 1], positions[0] = 0, torch.tensor([0, 0, 1, 2])  # a hole in a row: not left padding
    assert prefill.shared_prefix_length(embeds, mask, positions) == 0
    embeds, mask, positions = _left_padded([[1, 2, 3, 4], [1, 2, 3, 4]], 4)
    positions[1] += 1  # the same tokens at other positions have other keys
    assert prefill.shared_prefix_length(embeds, mask, positions) == 0


def test_prefilling_the_shared_prefix_once_changes_no_logit_and_no_answer(monkeypatch):
    from selfpowered.model import prefill

    model = _lsm()
    served = ServedModel.from_lsm("tiny", model, merge_lora=False)
    inputs, embeds = served.prepare(_requests())
    mask, positions = inputs["attention_mask"], inputs["position_ids"]
    with torch.no_grad():
        whole = served.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1]
    monkeypatch.setattr(prefill, "MIN_SHARED_PREFIX", 1)  # the tiny template shares 3 tokens
    assert prefill.shared_prefix_length(embeds, mask, positions) == 3
    logits, cache, cache_mask, cache_positions = prefill.prefill(served.llm, embeds, mask, positions)
    assert torch.allclose(logits, whole, atol=1e-5)
    assert cache.get_seq_length() == cache_mask.shape[1] == mask.shape[1]
    assert torch.equal(cache_mask.sum(dim=1), mask.sum(dim=1)) and torch.equal(cache_positions[:, -1], positions[:, -1])
    expected = [r.text for r in generate_all(ServedModel.from_lsm("tiny", model, merge_lora=False), _requests(), 1)]
    for max_batch in (2, 5):  # the answers of one row alone (no prefix shared) = those in a batch that shares one
        assert [r.text for r in generate_all(served, _requests(), max_batch)] == expected, max_batch
