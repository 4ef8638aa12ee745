from __future__ import annotations

import json
from collections import Counter

import pytest

from selfpowered.augment.filters import reject_reason
from selfpowered.augment.run import augment, merge_shards
from selfpowered.config import AugmentConfig, FilterConfig
from selfpowered.errors import ConfigError
from selfpowered.model.generation import HFGenerator
from selfpowered.text.engines import GenerationRequest
from selfpowered.text.tasks import TaskLibrary
from tests.helpers import TRANSCRIPTS, write_manifest


def read_ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


# -- task library -------------------------------------------------------------------------------
def test_paper_preset_is_the_papers_library():
    library = TaskLibrary.load("paper")
    assert [t.name for t in library.tasks] == [
        "translation",
        "continuation",
        "repetition",
        "keywords",
        "intent",
        "sentiment",
        "asr",
    ]
    assert all(len(t.templates) == 5 for t in library.tasks)
    assert "Chinese" in library.task("continuation").templates[0]
    english = TaskLibrary.load("paper", variants={"continuation": "en"})
    assert "Chinese" not in english.task("continuation").templates[0]
    assert library.task("asr").answer == "transcript" and library.task("repetition").copy_allowed


def test_draw_is_stable_per_id_and_follows_weights():
    library = TaskLibrary.load("paper", seed=7)
    ids = [f"spk-{i}" for i in range(7000)]
    first = [library.draw(i) for i in ids]
    assert [library.draw(i) for i in reversed(ids)] == list(reversed(first))  # order-independent
    assert (
        TaskLibrary.load("paper", seed=8).draw("spk-1") != first[1]
        or TaskLibrary.load("paper", seed=9).draw("spk-1") != first[1]
    )
    counts = Counter(d.task.name for d in first)
    assert all(abs(n / 7000 - 1 / 7) < 0.025 for n in counts.values())
    templates = Counter(d.template_index for d in first)
    assert set(templates) == set(range(5))
    weighted = TaskLibrary.load("demo", weights={"continuation": 0, "asr": 3})
    names = Counter(weighted.draw(i).task.name for i in ids[:3000])
    assert "continuation" not in names and abs(names["asr"] / 3000 - 3 / 6) < 0.03


def test_bad_task_library_errors(tmp_path):
    with pytest.raises(ConfigError, match="neither a preset"):
        TaskLibrary.load("nope")
    with pytest.raises(ConfigError, match="no task\\(s\\) \\['transation'\\]"):
        TaskLibrary.load("paper", weights={"transation": 2})
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  x: {templates: []}\n")
    with pytest.raises(ConfigError, match="needs a non-empty list"):
        TaskLibrary.load(str(bad))


# -- filters --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, finish, copy_allowed, reason",
    [
        ("", "stop", False, "empty"),
        ("A long answer that was cut", "length", False, "truncated: hit max_new_tokens"),
        ("An answer without an ending", "stop", False, "truncated: no final punctuation"),
        ("As an AI language model, I cannot do that.", "stop", False, "refusal or boilerplate"),
        ("I'm sorry, but I can't help with that.", "stop", False, "refusal or boilerplate"),
        ("My sister baked a loaf of bread at the market yesterday.", "stop", False, "copies the transcript"),
        ("My sister baked a loaf of bread at the market yesterday.", "stop", True, None),
        ("She sold every slice before noon.", "stop", False, None),
    ],
)
def test_filters(answer, finish, copy_allowed, reason):
    assert reject_reason(answer, TRANSCRIPTS[0], finish, copy_allowed, FilterConfig()) == reason


def test_titles_need_no_final_punctuation():
    assert reject_reason("The Baker's Bread", TRANSCRIPTS[0], "stop", False, FilterConfig(), False) is None


# -- the hf engine (the serving engine's continuous batching) ---------------------------------------
def _texts(engine, requests):
    return {r.id: (r.text, r.completion_tokens) for r in engine.generate(requests)}


def test_hf_batched_answers_equal_one_by_one(tiny_llm):
    batched = HFGenerator(str(tiny_llm), max_new_tokens=12, max_batch=3)
    single = HFGenerator(str(tiny_llm), max_new_tokens=12, max_batch=1)
    requests = [GenerationRequest(f"r{i}", f"continue this: {t}" + " again" * i) for i, t in enumerate(TRANSCRIPTS)]
    together = _texts(batched, requests)
    assert len(together) == 4
    assert together == _texts(single, requests)


def test_sampled_rows_draw_from_their_own_seed_and_leave_greedy_rows_alone(tiny_llm):
    engine = HFGenerator(str(tiny_llm), max_new_tokens=10)
    prompts = [f"continue this: {t}" for t in TRANSCRIPTS]
    greedy = _texts(engine, [GenerationRequest(f"r{i}", p) for i, p in enumerate(prompts)])
    mixed = _texts(
        engine, [GenerationRequest(f"r{i}", p, 1.5 if i % 2 else 0.0, seed=7 + i) for i, p in enumerate(prompts)]
    )
    assert mixed["r0"] == greedy["r0"] and mixed["r2"] == greedy["r2"]  # sampled batch-mates change nothing
    alone = _texts(engine, [GenerationRequest("r1", prompts[1], 1.5, seed=8)])["r1"]
    assert alone == mixed["r1"]  # the draw is the seed's, whatever the batch
    assert _texts(engine, [GenerationRequest("r1", prompts[1], 1.5, seed=9)])["r1"] != alone
    # a temperature near 0 is greedy again
    near = _texts(engine, [GenerationRequest(f"r{i}", p, 1e-4, seed=i) for i, p in enumerate(prompts)])
    assert near == greedy


# -- the run loop -----------------------------------------------------------------------------------
def test_vanilla_recipe_needs_no_llm_and_keeps_transcripts(tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", 20)
    config = AugmentConfig(manifest=str(manifest), output=str(tmp_path / "out" / "v.jsonl"), tasks="paper")
    stats = augment(config.model_copy(update={"recipe": "vanilla"}), progress=False)
    samples = [json.loads(line) for line in (tmp_path / "out" / "v.jsonl").read_text().splitlines()]
    assert len(samples) == 20 and all(s["task"] == "asr" and s["response"] == s["transcript"] for s in samples)
    assert samples[0]["audio"] == "../audio/utt0000.flac"
    assert stats["this_run"]["kept_per_task"] == {"asr": 20} and stats["model"] is None
    assert json.loads((tmp_path / "out" / "v.stats.json").read_text())["totals"]["samples"] == 20


def test_heard_by_answers_over_what_whisper_heard_and_keeps_the_reference(librivox, tmp_path):
    """`heard_by`: the rows' text becomes Whisper's greedy transcript of their audio (what a cascade
    reads), decoded once into the cache; an ASR answer is that transcript, and the card says so."""
    import numpy as np
    import soundfile as sf

    from selfpowered.model.hearing import WhisperHearing

    lines = [json.dumps({"id": f"c{i}", "audio": str(path), "text": "a reference that no clip says",
                         "duration": sf.info(str(path)).duration})
             for i, (path, _) in enumerate(librivox[:3])]  # fmt: skip
    sf.write(tmp_path / "long.wav", np.zeros(16_000 * 61, dtype=np.float32), 16_000)  # over the 60 s limit
    lines.append(json.dumps({"id": "long", "audio": str(tmp_path / "long.wav"), "text": "x", "duration": 61.0}))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    config = AugmentConfig(manifest=str(manifest), output=str(tmp_path / "v.jsonl"), tasks="paper", recipe="vanilla",
                           heard_by="whisper-tiny.en", hearing_cache=str(tmp_path / "hearing"))  # fmt: skip
    augment(config, progress=False)
    samples = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    expected = WhisperHearing("whisper-tiny.en").transcribe([str(path) for path, _ in librivox[:3]])
    assert [s["transcript"] for s in samples] == expected == [s["response"] for s in samples]
    assert all(s["source"]["heard_by"] == "whisper-tiny.en" for s in samples)
    rejected = [json.loads(line) for line in (tmp_path / "v.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [4] and "manifest:" in rejected[0]["reason"]  # checked, never heard
    card = json.loads((tmp_path / "v.card.json").read_text())
    assert card["heard_by"] == "whisper-tiny.en"
    from selfpowered.cards import summary_line

    line = summary_line({"base": {}, "training_data": [{"path": "v.jsonl", "lines": 3, "card": card}]})
    assert "v.jsonl: 3 samples, targets by no LLM (transcripts) over what whisper-tiny.en heard" in line
    cached = WhisperHearing("whisper-tiny.en", cache_dir=tmp_path / "hearing")
    assert cached.transcribe([str(path) for path, _ in librivox[:3]]) == expected and cached.decoded == 0


def test_selfpowered_run_resume_and_torn_line(tiny_llm, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", 24)
    engine = HFGenerator(str(tiny_llm), max_new_tokens=8)
    out = tmp_path / "sp.jsonl"
    library = TaskLibrary.load("demo")
    config = AugmentConfig(manifest=str(manifest), output=str(out), tasks="demo")
    stats = augment(config, engine, progress=False)
    run = stats["this_run"]
    assert run["processed"] == 24 and run["llm_calls"] == sum(
        library.draw(f"utt{i:04d}").task.answer == "llm" for i in range(24)
    )
    done = read_ids(out) + read_ids(tmp_path / "sp.rejects.jsonl")
    assert sorted(done) == sorted(f"utt{i:04d}#{library.draw(f'utt{i:04d}').task.name}" for i in range(24))
    # simulate a kill in the middle of a write: a torn last line
    with open(out, "a") as handle:
        handle.write('{"id": "utt0099#asr", "aud')
    again = augment(config, engine, progress=False)
    assert again["this_run"]["processed"] == 0 and again["this_run"]["skipped_already_done"] == 24
    assert sorted(read_ids(out) + read_ids(tmp_path / "sp.rejects.jsonl")) == sorted(done)
    # the data card names the LLM that wrote the targets, its weights, the library and the counts
    card = json.loads((tmp_path / "sp.card.json").read_text())
    from selfpowered.cards import weights_sha256

    assert card["generator"]["model"] == str(tiny_llm)
    assert card["generator"]["weights_sha256"] == weights_sha256(tiny_llm)
    assert card["task_library"] == {"name": "demo", "sha256": library.digest(), "seed": 0}
    assert card["counts"]["samples"] == len(read_ids(out)) and card["counts"]["rejects"] == len(
        read_ids(tmp_path / "sp.rejects.jsonl")
    )
    assert card["manifest"]["sha256"] and card["generator"]["decoding"]["max_new_tokens"] == 8


def test_prompt_limit_drops_long_prompts(tiny_llm, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", 8)
    engine = HFGenerator(str(tiny_llm), max_new_tokens=4)
    config = AugmentConfig(
        manifest=str(manifest), output=str(tmp_path / "o.jsonl"), task_weights={"asr": 0}, max_prompt_tokens=5
    )
    augment(config, engine, progress=False)
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert len(reasons) == 8 and all(r.startswith("prompt too long") for r in reasons)


def test_shards_merge_to_the_unsharded_result(tiny_llm, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", 15)
    engine = HFGenerator(str(tiny_llm), max_new_tokens=6)
    augment(AugmentConfig(manifest=str(manifest), output=str(tmp_path / "all.jsonl")), engine, progress=False)
    for i in range(3):
        shard = AugmentConfig(manifest=str(manifest), output=str(tmp_path / "shards" / f"s{i}.jsonl"), shard=f"{i}/3")
        augment(shard, engine, progress=False)
    counts = merge_shards([tmp_path / "shards" / f"s{i}.jsonl" for i in range(3)], tmp_path / "merged.jsonl")
    whole = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()}
    merged = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "merged.jsonl").read_text().splitlines()}
    assert merged == whole  # same samples, same answers, audio paths re-anchored to the merged file
    assert counts["samples"] + counts["rejects"] == 15
    card = json.loads((tmp_path / "merged.card.json").read_text())
    assert card["counts"]["samples"] == counts["samples"] and len(card["merged_from"]) == 3
    assert read_ids(tmp_path / "merged.jsonl") == sorted(merged)


def test_shard_parsing():
    assert AugmentConfig(manifest="m", output="o", shard="2/5").shard_index_count == (2, 5)
    for bad in ("5/5", "x", "1-2"):
        with pytest.raises(ValueError):
            AugmentConfig(manifest="m", output="o", shard=bad)


def test_engine_greedy_with_repetition_penalty_equals_transformers_generate(tiny_llm):
    import torch

    engine = HFGenerator(str(tiny_llm), max_new_tokens=20, repetition_penalty=1.3)
    texts = [f"continue this: {t}" for t in TRANSCRIPTS]
    prompts = [engine.prompt_ids(text) for text in texts]
    results = {r.id: r for r in engine.generate([GenerationRequest(str(i), t) for i, t in enumerate(texts)])}
    for i, ids in enumerate(prompts):
        reference = engine.model.generate(
            torch.tensor([ids]),
            max_new_tokens=20,
            do_sample=False,
            repetition_penalty=1.3,
            eos_token_id=engine.served.stop_ids,
            pad_token_id=engine.tokenizer.pad_token_id,
        )[0, len(ids) :].tolist()
        stop = next((k for k, t in enumerate(reference) if t in engine.served.stop_ids), None)
        answer = reference if stop is None else reference[:stop]
        assert results[str(i)].text == engine.tokenizer.decode(answer, skip_special_tokens=True).strip()
        assert results[str(i)].finish_reason == ("length" if stop is None else "stop")


def test_augment_cli_both_recipes_and_merge(tiny_llm, tmp_path):
    from typer.testing import CliRunner

    from selfpowered.cli import app

    runner = CliRunner()
    manifest = write_manifest(tmp_path / "m.jsonl", 10)
    vanilla = runner.invoke(app, ["augment", str(manifest), str(tmp_path / "v.jsonl"), "--recipe", "vanilla"])
    assert vanilla.exit_code == 0, vanilla.output
    assert "kept_per_task" in vanilla.output and "{'asr': 10}" in vanilla.output
    for shard in ("0/2", "1/2"):
        result = runner.invoke(
            app,
            [
                "augment",
                str(manifest),
                str(tmp_path / f"s{shard[0]}.jsonl"),
                "--set",
                f"llm={tiny_llm}",
                "--shard",
                shard,
                "--set",
                "max_new_tokens=6",
            ],
        )
        assert result.exit_code == 0, result.output
    merged = runner.invoke(
        app, ["augment-merge", str(tmp_path / "all.jsonl"), str(tmp_path / "s0.jsonl"), str(tmp_path / "s1.jsonl")]
    )
    assert merged.exit_code == 0 and "from 2 shards" in merged.output
    lines = len(read_ids(tmp_path / "all.jsonl")) + len(read_ids(tmp_path / "all.rejects.jsonl"))
    assert lines == 10
    no_url = runner.invoke(app, ["augment", str(manifest), str(tmp_path / "o.jsonl"), "--set", "engine=openai"])
    assert no_url.exit_code == 2 and "needs server_url" in no_url.output


class ScriptedEngine:
    """Answers by decoding mode, to drive the resampling loop: a greedy request gets `greedy`, a
    sampled one `sampled` (the real engines' sampling is tested above, on a real model)."""

    model_id = "scripted"

    def __init__(self, greedy: str, sampled: str) -> None:
        self.greedy, self.sampled, self.requests = greedy, sampled, []

    def count_prompt_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def describe(self) -> dict:
        return {"engine": "scripted", "model": self.model_id, "weights_sha256": None, "decoding": {}}

    def generate(self, requests):
        from selfpowered.text.engines import GenerationResult

        for request in requests:
            self.requests.append(request)
            text = self.sampled if request.temperature > 0 else self.greedy
            yield GenerationResult(request.id, text, "stop", 5, len(text.split()))


def lowercase_library(tmp_path) -> str:
    """A library of one constrained task: answer in lowercase (IFEval's change_case checker)."""
    library = tmp_path / "lower.yaml"
    library.write_text(
        "name: lower\ntasks:\n  lowercase:\n    verify: {change_case:english_lowercase: {}}\n"
        "    final_punctuation: false\n    templates: [Say what this is about in lowercase letters]\n"
    )
    return str(library)


def test_constrained_answers_are_resampled_until_their_checker_passes(tmp_path):
    library = lowercase_library(tmp_path)
    manifest = write_manifest(tmp_path / "m.jsonl", 6)

    def run(name: str, engine, attempts: int) -> tuple[dict, list[dict], list[dict]]:
        out = tmp_path / f"{name}.jsonl"
        config = AugmentConfig(manifest=str(manifest), output=str(out), tasks=library, verify_attempts=attempts)
        stats = augment(config, engine, progress=False)
        read = lambda path: [json.loads(line) for line in path.read_text().splitlines()]  # noqa: E731
        return stats["this_run"], read(out), read(tmp_path / f"{name}.rejects.jsonl")

    # one attempt (the default): the greedy answer fails its checker and is rejected
    run1, kept, rejected = run("one", ScriptedEngine("The Market Sells Bread", "the market sells bread"), 1)
    assert kept == [] and len(rejected) == 6 and run1["llm_calls"] == 6
    assert all(r["reason"] == "fails its verifiable constraint: change_case:english_lowercase" for r in rejected)
    # three attempts: the first resample passes; the sample says which attempt and temperature made it
    engine = ScriptedEngine("The Market Sells Bread", "the market sells bread")
    run3, kept, rejected = run("three", engine, 3)
    assert len(kept) == 6 and rejected == [] and run3["llm_calls"] == 12
    assert run3["resampled"] == 6 and run3["kept_after_resampling"] == 6
    assert all(s["response"] == "the market sells bread" and s["source"]["attempt"] == 2 for s in kept)
    assert all(s["source"]["temperature"] == 0.8 for s in kept)
    sampled = [r for r in engine.requests if r.temperature > 0]
    assert len({r.seed for r in sampled}) == 6  # a seed per sample and attempt ...
    again = ScriptedEngine("The Market Sells Bread", "the market sells bread")
    run("again", again, 3)
    assert [r.seed for r in again.requests if r.temperature > 0] == [r.seed for r in sampled]  # ... and per run
    # never passing: rejected after every attempt, saying how many
    run_fail, kept, rejected = run("never", ScriptedEngine("The Market", "The Bread"), 3)
    assert kept == [] and run_fail["llm_calls"] == 18
    assert all(r["reason"].endswith("(after 3 attempts)") for r in rejected)
    card = json.loads((tmp_path / "never.card.json").read_text())
    assert card["verify_attempts"] == 3 and card["verify_temperature"] == 0.8
    from selfpowered.cards import summary_line  # what an eval report prints for a checkpoint trained on it

    line = summary_line({"base": {}, "training_data": [{"path": "never.jsonl", "lines": 0, "card": card}]})
    assert "constrained answers tried up to 3x" in line


def test_only_the_constraint_check_is_resampled(tmp_path):
    library = lowercase_library(tmp_path)
    manifest = write_manifest(tmp_path / "m.jsonl", 2)
    engine = ScriptedEngine("as an ai language model i cannot.", "fine.")  # a refusal is not resampled
    out = tmp_path / "o.jsonl"
    stats = augment(AugmentConfig(manifest=str(manifest), output=str(out), tasks=library, verify_attempts=3),
                    engine, progress=False)  # fmt: skip
    assert stats["this_run"]["llm_calls"] == 2 and stats["this_run"]["resampled"] == 0


def test_the_text_engine_loop_guard_equals_transformers_over_the_answer(tiny_llm):
    import torch

    engine = HFGenerator(str(tiny_llm), max_new_tokens=20, no_repeat_ngram_size=2)
    assert engine.describe()["decoding"]["no_repeat_ngram_size"] == 2
    texts = [f"continue this: {t}" for t in TRANSCRIPTS]
    results = {r.id: r.text for r in engine.generate([GenerationRequest(str(i), t) for i, t in enumerate(texts)])}
    stops = engine.served.stop_ids
    for i, text in enumerate(texts):
        ids = engine.prompt_ids(text)
        embeds = engine.model.get_input_embeddings()(torch.tensor([ids]))
        reference = engine.model.generate(
            inputs_embeds=embeds,  # transformers then applies the rule to the new tokens only
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=20,
            do_sample=False,
            no_repeat_ngram_size=2,
            eos_token_id=stops,
            pad_token_id=engine.tokenizer.pad_token_id,
        )[0].tolist()
        reference = reference[: next((k for k, t in enumerate(reference) if t in stops), len(reference))]
        assert results[str(i)] == engine.tokenizer.decode(reference, skip_special_tokens=True).strip()


def test_a_truncated_answer_keeps_its_complete_sentences_when_asked():
    from selfpowered.augment.filters import trim_to_sentences

    assert trim_to_sentences("The speaker is a woman. She talks fast, with a high vol") == "The speaker is a woman."
    assert trim_to_sentences("Dr. Smith is here! And then the") == "Dr. Smith is here!"
    assert trim_to_sentences("no sentence ends here") == ""
