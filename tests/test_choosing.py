"""Closed questions answered by likelihood (model/choosing.py): each option's score is the
log-probability of its words after the very prompt the engine decodes from, whatever the batch;
and the `paraling` suite asks its questions that way too (`paraling-choice`), through eval."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

from selfpowered.errors import ConfigError
from selfpowered.model.choosing import choose_all, option_logprobs, surface_forms
from selfpowered.model.engine import Request
from selfpowered.model.served import ServedModel
from tests.helpers import tone
from tests.test_modeling import _randomise_lora
from tests.tiny import tiny_llama_config, tiny_lsm, tiny_tokenizer

CLIPS = [tone(1.3, 200), None, tone(0.6, 410), tone(2.2, 250)]
PROMPTS = ["transcribe the speech", "the quick brown fox", "is it a man or a woman", "x"]
OPTIONS = [("man", "woman"), ("slow", "fast"), ("one", "two"), ("dry", "echo")]


@torch.no_grad()
def _one_by_one(served: ServedModel, request: Request, option: str) -> float:
    """The reference: the prompt alone (no padding, no mask), the option's tokens fed one at a
    time, each token's log-probability read off the last position; the casings added up."""
    _, embeds = served.prepare([request])
    embed = served.llm.get_input_embeddings()
    total = float("-inf")
    for form in surface_forms(option):
        ids = served.tokenizer(form, add_special_tokens=False)["input_ids"]
        logprob, sequence = 0.0, embeds
        for token in ids:
            logits = served.llm(inputs_embeds=sequence).logits[0, -1]
            logprob += float(torch.log_softmax(logits.float(), dim=-1)[token])
            sequence = torch.cat([sequence, embed(torch.tensor([[token]]))], dim=1)
        total = float(torch.logaddexp(torch.tensor(total), torch.tensor(logprob)))
    return total


@pytest.mark.parametrize("shared_from", [4, 1])  # 1: the tiny template's 3 shared tokens are prefilled once
def test_option_scores_equal_feeding_the_option_after_the_prompt_alone_in_any_batch(monkeypatch, shared_from):
    from selfpowered.model import prefill

    monkeypatch.setattr(prefill, "MIN_SHARED_PREFIX", shared_from)
    torch.manual_seed(0)
    model = tiny_lsm()
    _randomise_lora(model)
    served = ServedModel.from_lsm("tiny", model, merge_lora=False)
    requests = [Request("tiny", text, clip) for text, clip in zip(PROMPTS, CLIPS)]
    batched = option_logprobs(served, requests, OPTIONS)  # speech and text prompts of four lengths, padded
    for request, options, scores in zip(requests, OPTIONS, batched):
        alone = option_logprobs(served, [request], [options])[0]
        expected = [_one_by_one(served, request, option) for option in options]
        assert scores == pytest.approx(expected, abs=1e-4) and alone == pytest.approx(expected, abs=1e-4)
        assert all(math.isfinite(score) and score < 0 for score in scores)
    chosen = choose_all(served, requests, OPTIONS, max_batch=3)
    assert chosen == [options[max((0, 1), key=s.__getitem__)] for options, s in zip(OPTIONS, batched)]


def test_surface_forms_are_the_option_and_its_capitalised_spelling():
    assert surface_forms("woman") == ("woman", "Woman")
    assert surface_forms("Two") == ("Two",)


def test_options_in_a_task_library_must_be_offered_and_name_distinct_values(tmp_path):
    from selfpowered.text.tasks import TaskLibrary

    def library(options, template="Answer with one word, man or woman: who speaks?", attribute="gender"):
        path = tmp_path / "lib.yaml"
        path.write_text(json.dumps({"tasks": {"gender": {"attribute": attribute, "options": options,
                                                          "templates": [template]}}}))  # fmt: skip
        return TaskLibrary.load(str(path), 0)

    assert library(["man", "woman"]).task("gender").options == ("man", "woman")
    with pytest.raises(ConfigError, match=r"lib.yaml: task 'gender': options: 'girl' is not offered"):
        library(["man", "girl"])
    with pytest.raises(ConfigError, match="two options name the same gender value"):
        library(["man", "male"], "Answer man or male")
    with pytest.raises(ConfigError, match="'maybe' names no single gender value"):
        library(["man", "maybe"], "Answer man or maybe")
    with pytest.raises(ConfigError, match="only a question about"):
        library(["man", "woman"], attribute="describe")


def test_closed_suite_needs_options_on_every_query():
    from selfpowered.evaluate.suites import Query, Suite

    with pytest.raises(ValueError, match="closed: every query needs options"):
        Suite("x", [Query("a#gender", "a.wav", "who?", "hi", 1.0)], closed=True)


def test_eval_asks_paraling_questions_closed_and_scores_the_likeliest_option(tmp_path):
    """Through `evaluate`: an LSM and the text baseline answer `paraling-choice` with one of the
    offered words (no decoding), scored by the same rule as a parsed answer, cached, reported."""
    from transformers import LlamaForCausalLM

    from selfpowered.config import EvalConfig
    from selfpowered.evaluate.run import evaluate

    tiny_lsm(connector="stack_mlp").save_pretrained(tmp_path / "lsm")
    tokenizer = tiny_tokenizer()
    LlamaForCausalLM(tiny_llama_config(len(tokenizer))).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    (tmp_path / "p" / "audio").mkdir(parents=True)
    rows = []
    designs = [("gender", "female"), ("gender", "male"), ("pace", "slow"), ("pace", "fast"), ("room", "reverberant"),
               ("speakers", "two")]  # fmt: skip
    for i, (attribute, value) in enumerate(designs):
        sf.write(tmp_path / "p" / "audio" / f"p{i}.wav", tone(1.0 + 0.1 * i), 16_000)
        labels = {"designed_for": attribute, attribute: value, "voice": "v"}
        rows.append({"id": f"p{i}", "audio": f"audio/p{i}.wav", "text": "the cat sat", "duration": 1.0 + 0.1 * i,
                     "labels": labels})  # fmt: skip
    (tmp_path / "p" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = EvalConfig(
        models=[f"tiny={tmp_path / 'lsm'}"], baselines=["text"], suites=["paraling"],
        data=str(tmp_path / "p" / "test.jsonl"), output=str(tmp_path / "eval"), llm=str(tmp_path / "llm"),
        generation={"max_new_tokens": 3, "batch_size": 4}, paraling={"data": str(tmp_path / "p" / "test.jsonl")},
    )  # fmt: skip
    results = evaluate(settings)
    offered = {
        "gender": {"man", "woman"},
        "pace": {"slow", "fast"},
        "room": {"dry", "echo"},
        "speakers": {"one", "two"},
    }
    for system in ("tiny", "text"):
        chosen = results["examples"]["paraling-choice"][system]
        attributes = [item["attribute"] for item in results["suites"]["paraling-choice"]["meta"]]
        assert len(chosen) == 6 and all(word in offered[a] for word, a in zip(chosen, attributes))
        block = results["systems"][system]["paraling-choice"]
        assert block["per_attribute"]["gender"]["n"] == 2 and block["per_attribute"]["gender"].get("unparsed") == 0
        assert results["systems"][system]["paraling"]["n"] == 8  # the decoded questions + two descriptions
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "### held-out voices: the likeliest option" in report and "paraling acc, likeliest option" in report
    assert "How often each value was the likeliest option" in report
    again = evaluate(settings)
    assert {"tiny/paraling-choice", "text/paraling-choice"} <= set(again["cached"])
