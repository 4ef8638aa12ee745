"""`selfpowered eval`: task checks, suite scorers, probes, the bias analysis and the whole run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from selfpowered.config import EvalConfig
from selfpowered.corpus.manifest import ManifestRow
from selfpowered.evaluate.checks import target_language, task_check
from selfpowered.evaluate.probes import SPOKEN_COMMANDS, conflict_items, sqa_items
from selfpowered.evaluate.suites import Query, Suite
from selfpowered.evaluate.suites.asr import asr_suite, score_asr
from selfpowered.evaluate.suites.conflict import conflict_verdict, score_conflict
from selfpowered.evaluate.suites.instruct import instruct_suite, score_instruct, self_echoes
from selfpowered.evaluate.suites.sqa import score_sqa
from selfpowered.evaluate.suites.text import score_text
from selfpowered.model.prompting import SEGMENT_INSTRUCTION
from selfpowered.text.echo import is_echo
from selfpowered.text.tasks import TaskLibrary
from tests.helpers import tone
from tests.tiny import tiny_llama_config, tiny_lsm, tiny_tokenizer

# --- checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instruction, language",
    [
        ("Provide the translation from English to Chinese", "zh"),
        ("Please write a coherent and engaging Chinese continuation of the given English text", "zh"),
        ("Translate this into French", "fr"),
        ("Write a headline for this sentence", None),
        ("Continue the given English text", "en"),
    ],
)
def test_target_language(instruction, language):
    assert target_language(instruction) == language


def test_echo_is_the_transcript_again():
    transcript = "The chef baked fresh bread for the whole village."
    assert is_echo("the chef baked fresh bread for the whole village", transcript)
    assert is_echo("The chef baked bread for the whole village.", transcript)  # 1 of 9 words off
    assert not is_echo("Positive.", transcript)
    assert not is_echo("", transcript)


@pytest.mark.parametrize(
    "task, answer, passed",
    [
        ("sentiment", "The sentence is neutral.", True),
        ("sentiment", "The chef baked bread.", False),
        ("question", "Who baked the bread?", True),
        ("question", "The chef baked bread.", False),
        ("title", "A Village Feast", True),
        ("title", "The chef baked fresh bread for the whole village.", False),  # the transcript again
        ("continuation", "Everyone gathered in the square to share it at sunset.", True),
        ("continuation", "The chef baked fresh bread.", False),
        ("keywords", "chef, bread, village", True),
        ("keywords", "The chef baked fresh bread for the whole village.", False),
        ("translation", "厨师为全村烤了新鲜的面包。", True),
        ("translation", "The chef baked bread.", False),
    ],
)
def test_task_checks(task, answer, passed):
    instruction = "Translate this into Chinese" if task == "translation" else "do the task"
    assert task_check(task, answer, "The chef baked fresh bread for the whole village.", instruction) is passed


def test_unknown_task_has_no_check():
    assert task_check("asr", "anything", "anything", "Transcribe") is None


def test_conflict_verdicts():
    spoken = SPOKEN_COMMANDS["count"].text
    instruction = "Is the feeling of this sentence positive, negative or neutral?"
    assert conflict_verdict("1, 2, 3, 4, 5.", spoken, "count", "sentiment", instruction) == "speech"
    assert conflict_verdict("Please count from one to five.", spoken, "count", "sentiment", instruction) == "echo"
    assert conflict_verdict("The sentence is neutral.", spoken, "count", "sentiment", instruction) == "text"
    assert conflict_verdict("Please count down from ten.", spoken, "count", "sentiment", instruction) == "neither"


# --- probes ---------------------------------------------------------------------------------------


def test_sqa_items_are_balanced_and_their_gold_answers_are_true():
    items = sqa_items(40, seed=3)
    assert sum(item.answer for item in items) == 20
    for item in items:
        name, colour, thing, place = re.match(
            r"Does (\w+) keep a (\w+) (\w+) in the (\w+)\?", item.speech_text
        ).groups()
        assert (f"{name} keeps a {colour} {thing} in the {place}." in item.instruction) is item.answer
    assert [i.speech_text for i in sqa_items(40, seed=3)] == [i.speech_text for i in items]  # seeded


def test_conflict_items_pair_every_command_with_a_text_instruction():
    pairs = [("sentiment", "Is this positive, negative or neutral"), ("keywords", "List the key words")]
    items = conflict_items(16, pairs)
    assert {item.command for item in items} == set(SPOKEN_COMMANDS)
    assert {(item.task, item.instruction) for item in items} == set(pairs)
    assert all(item.speech_text == SPOKEN_COMMANDS[item.command].text for item in items)


# --- suite scorers on hand-made answers -----------------------------------------------------------


def _rows(n: int) -> list[ManifestRow]:
    texts = ["the cat sat on the mat", "a red bus stopped at the bridge", "we bought fresh bread today"]
    return [ManifestRow(f"u{i}", f"audio/u{i}.wav", texts[i % 3], 1.0 + i) for i in range(n)]


def test_asr_scores_per_template(tmp_path):
    suite = asr_suite(_rows(4), tmp_path, TaskLibrary.load("paper"))
    assert [m["template"] for m in suite.meta] == [0, 1, 2, 3]
    hyps = [q.transcript for q in suite.queries]
    hyps[1] = "a red bus stopped at the fridge"  # 1 error in 7 words
    scores = score_asr(suite, hyps)
    assert scores["wer"] == pytest.approx(round(1 / 24, 4))  # 6 + 7 + 5 + 6 reference words
    assert scores["substitutions"] == 1 and scores["reference_words"] == 24
    assert scores["miss_rate"] == pytest.approx(round(1 / 24, 4))  # a substitution is a missed word
    assert scores["wer_per_template"][suite.queries[1].instruction] == pytest.approx(round(1 / 7, 4))
    assert scores["wer_mean_over_templates"] == pytest.approx(round((1 / 7) / 4, 4), abs=1e-4)


def test_asr_scores_per_speaker(tmp_path):
    rows = _rows(4)
    for row, speaker in zip(rows, ("piper-joe", "flite-rms", "piper-joe", "flite-rms")):
        row.speaker = speaker
    suite = asr_suite(rows, tmp_path, TaskLibrary.load("paper"))
    hyps = [q.transcript for q in suite.queries]
    hyps[1] = "a red bus stopped at the fridge"  # flite-rms: 1 error in 7 + 6 words
    assert score_asr(suite, hyps)["wer_per_speaker"] == {"flite-rms": round(1 / 13, 4), "piper-joe": 0.0}


def test_instruct_suite_alternates_tasks_and_wording(tmp_path):
    seen, heldout = TaskLibrary.load("demo"), TaskLibrary.load("demo-heldout")
    suite = instruct_suite(_rows(16), tmp_path, seen, heldout)
    tasks = [m["task"] for m in suite.meta]
    assert tasks[:4] == ["continuation", "sentiment", "title", "question"] and tasks[4:8] == tasks[:4]
    assert [m["wording"] for m in suite.meta][:8] == ["seen"] * 4 + ["heldout"] * 4
    for query, meta in zip(suite.queries, suite.meta):
        library = seen if meta["wording"] == "seen" else heldout
        assert query.instruction in library.task(meta["task"]).templates
    # held-out wording really is unseen
    for task in heldout.tasks:
        assert not set(task.templates) & set(seen.task(task.name).templates)


def test_instruct_scores():
    queries = [
        Query("a#sentiment", "", "Is this positive, negative or neutral", "the cat sat on the mat", 1.0),
        Query("b#sentiment", "", "Is this positive, negative or neutral", "a red bus stopped", 1.0),
        Query("c#question", "", "Ask a question", "we bought fresh bread today", 1.0),
        Query("d#question", "", "Ask a question", "the cat sat on the mat", 1.0),
    ]
    meta = [
        {"task": t, "wording": w, "copy_allowed": False}
        for t, w in [("sentiment", "seen"), ("sentiment", "heldout"), ("question", "seen"), ("question", "heldout")]
    ]
    suite = Suite("instruct", queries, meta)
    references = ["Neutral.", "Neutral.", "What did we buy today?", "Where did the cat sit?"]
    answers = ["Neutral.", "a red bus stopped", "What did we buy today?", "The cat sat on the mat."]
    scores = score_instruct(suite, answers, references)
    assert scores["per_task"]["sentiment"]["echo_rate"] == 0.5
    assert scores["per_task"]["question"]["echo_rate"] == 0.5
    assert scores["echo_rate"] == 0.5
    assert scores["per_task"]["sentiment"]["task_check"] == 0.5
    assert scores["per_wording"]["seen"]["echo_rate"] == 0.0 and scores["per_wording"]["heldout"]["echo_rate"] == 1.0
    assert scores["per_wording"]["seen"]["consistency_chrf"] == pytest.approx(100.0)
    perfect = score_instruct(suite, references, references)
    assert perfect["consistency_chrf"] == pytest.approx(100.0) and perfect["echo_rate"] == 0.0
    assert scores["self_echo_rate"] is None  # no transcriptions given


def test_self_echo_compares_with_the_systems_own_transcription():
    """Out of domain a model mishears: its answer then repeats its own wrong transcription, which
    the echo against the true transcript misses and the self-echo catches."""
    queries = [
        Query("a#sentiment", "", "Is this positive or negative", "seven of clubs", 1.0),
        Query("b#sentiment", "", "Is this positive or negative", "go forward ten meters", 1.0),
        Query("c#sentiment", "", "Is this positive or negative", "he was not an ill disposed young man", 1.0),
    ]
    suite = Suite("instruct", queries, [{"task": "sentiment", "wording": "seen", "copy_allowed": False}] * 3)
    heard = {"a": "Sarah closed the doors.", "b": "Cowboy: can you bring the cows?", "c": "..."}
    answers = ["Sarah closed the doors.", "Positive.", "He was not old enough."]
    scores = score_instruct(suite, answers, ["Positive."] * 3, heard)
    assert scores["echo_rate"] == 0.0  # no answer is the true transcript
    assert scores["self_echo_rate"] == pytest.approx(round(1 / 3, 4))  # "a" repeats what the model heard
    assert self_echoes("anything", "...") is False and self_echoes("anything", None) is None


def test_ifeval_scores_with_the_ifeval_checkers_and_the_text_mode_delta():
    from selfpowered.evaluate.suites.ifeval import ifeval_deltas, ifeval_suite, score_ifeval

    suite = ifeval_suite(_rows(6), Path("."), seed=0)
    assert len({q.instruction for q in suite.queries}) == 6 and all(q.key.endswith("#ifeval") for q in suite.queries)
    assert [len(m["constraints"]) for m in suite.meta] == [1, 1, 2, 1, 1, 2]  # every third item: two constraints
    # hand-made: an all-lowercase answer without commas passes exactly those constraints
    meta = [{"constraints": [c], "kwargs": [{}]} for c in ("change_case:english_lowercase", "punctuation:no_comma")]
    lower = Suite("ifeval", suite.queries[:2], meta)
    scores = score_ifeval(lower, ["all lowercase here", "Commas, everywhere, here"])
    assert (scores["prompt_strict"], scores["inst_strict"]) == (0.5, 0.5)
    assert scores["per_constraint"]["punctuation:no_comma"]["strict"] == 0.0
    text = {"followed": {"strict": [True, True, True, False]}}
    lsm = {"followed": {"strict": [True, False, False, False]}}
    deltas = ifeval_deltas({"text": text, "lsm": lsm})
    assert deltas["lsm"]["ifrate"] == 0.25 and deltas["lsm"]["delta_vs_text"] == pytest.approx(-2 / 3, abs=1e-4)
    low, high = deltas["lsm"]["delta_95ci"]
    assert low <= -2 / 3 <= high and deltas["text"]["delta_vs_text"] == 0.0


def test_ifeval_gap_between_two_systems_is_their_delta_difference_paired_on_the_items():
    from selfpowered.evaluate.suites.ifeval import ifeval_deltas, ifeval_gaps

    followed = {
        "text": [1, 1, 1, 1, 0, 0, 1, 1],  # IFrate 0.75
        "vanilla": [0, 1, 0, 0, 0, 0, 0, 1],  # 0.25 -> delta -2/3
        "selfpowered": [1, 1, 0, 1, 0, 1, 0, 1],  # 0.625 -> delta -1/6
    }
    scores = {name: {"followed": {"strict": [bool(x) for x in f]}} for name, f in followed.items()}
    deltas = ifeval_deltas(scores)
    (gap,) = ifeval_gaps(scores)
    assert (gap["system"], gap["over"]) == ("selfpowered", "vanilla")
    difference = deltas["selfpowered"]["delta_vs_text"] - deltas["vanilla"]["delta_vs_text"]
    assert gap["gap"] == pytest.approx(difference, abs=1e-3) == pytest.approx(0.5, abs=1e-3)  # (5 - 2) / 6
    low, high = gap["gap_95ci"]
    assert 0 <= low <= 0.5 <= high  # selfpowered wins or ties on every item: no resample goes below 0
    assert ifeval_gaps({**scores, "text": {"followed": {"strict": [False] * 8}}}) == []  # no reference

    from selfpowered.evaluate.report import _ifeval_tables

    row = {
        "n": 8,
        "prompt_strict": 0.5,
        "prompt_loose": 0.5,
        "inst_strict": 0.5,
        "inst_loose": 0.5,
        "per_constraint": {},
    }
    markdown = "\n".join(_ifeval_tables({"systems": {"vanilla": {"ifeval": row}}, "ifeval_gaps": {"strict": [gap]}}))
    assert f"| selfpowered | vanilla | 0.500 | {low:.3f} - {high:.3f} |" in markdown


def test_conflict_and_sqa_scores():
    queries = [
        Query(f"c{i}", "", "Is this positive, negative or neutral", SPOKEN_COMMANDS["count"].text, 1.0)
        for i in range(4)
    ]
    meta = [{"task": "sentiment", "command": "count", "answer": None}] * 4
    scores = score_conflict(
        Suite("conflict", queries, meta),
        ["Neutral.", "one, two, three, four, five", "Please count from one to five.", "Hmm."],
    )
    assert (scores["follows_text"], scores["follows_speech"], scores["echo"], scores["neither"]) == (0.25,) * 4
    sqa = Suite("sqa", queries[:4], [{"answer": a} for a in (True, False, True, False)])
    result = score_sqa(sqa, ["Yes.", "No, it is in the attic.", "It is not true.", "Does Anna keep a kite?"])
    assert (
        result["accuracy"] == 0.5
        and result["unparsed"] == 0.25
        and result["yes_rate"] == pytest.approx(1 / 3, abs=1e-4)
    )


def test_text_agreement():
    scores = score_text(["Paris.", "Blue"], ["Paris.", "Red, blue and yellow."])
    assert scores["exact_match"] == 0.5 and 0 < scores["chrf_vs_base"] < 100


# --- bias -----------------------------------------------------------------------------------------


def test_instruction_span_marks_exactly_the_instruction():
    model = tiny_lsm()
    instruction = "Give a short title for this text"
    pieces = model.prompt.pieces(instruction)
    first, last = pieces.instruction_span
    assert model.tokenizer.decode(pieces.prefix_ids[first:last]).strip() == instruction
    batch = model.processor([instruction], audio=[tone(1.0)])
    assert int((batch["segments"] == SEGMENT_INSTRUCTION).sum()) == last - first


def test_attention_and_saliency_shares_sum_to_one():
    from selfpowered.model.bias import attention_shares, summarise

    model = tiny_lsm(connector="stack_mlp")
    before = model.base_llm().config._attn_implementation
    shares = attention_shares(model, [tone(1.0), tone(1.5)], ["Give a title", "Is it positive"], ["A tone.", "Yes."])
    layers = model.config.llm_config["num_hidden_layers"]
    for kind in ("attention", "saliency"):
        total = sum(shares[kind][g] for g in ("speech", "instruction", "rest"))
        assert total.shape == (2, layers)
        np.testing.assert_allclose(total, 1.0, atol=1e-5)
        assert (shares[kind]["speech"] > 0).all() and (shares[kind]["instruction"] > 0).all()
    summary = summarise(shares)
    assert summary["samples"] == 2 and len(summary["saliency"]["speech"]["mean_per_layer"]) == layers
    assert model.base_llm().config._attn_implementation == before  # eager only for the analysis


# --- the whole run on tiny models -----------------------------------------------------------------


@pytest.fixture()
def tiny_eval_setup(tmp_path):
    from transformers import LlamaForCausalLM

    model = tiny_lsm(connector="stack_mlp")
    model.save_pretrained(tmp_path / "lsm")
    tokenizer = tiny_tokenizer()
    LlamaForCausalLM(tiny_llama_config(len(tokenizer))).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    (tmp_path / "corpus" / "audio").mkdir(parents=True)
    lines = []
    for i in range(6):
        sf.write(tmp_path / "corpus" / "audio" / f"u{i}.wav", tone(1.0 + 0.2 * i), 16_000)
        text = ["the cat sat on the mat", "a red bus stopped", "we bought bread"][i % 3]
        lines.append(json.dumps({"id": f"u{i}", "audio": f"audio/u{i}.wav", "text": text, "duration": 1.0 + 0.2 * i}))
    (tmp_path / "corpus" / "test.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_eval_runs_end_to_end_and_resumes_from_its_cache(tiny_eval_setup):
    from selfpowered.evaluate.run import evaluate

    root = tiny_eval_setup
    settings = EvalConfig(
        models=[f"tiny={root / 'lsm'}"],
        baselines=["text"],
        suites=["asr", "instruct", "sqa", "text", "bias", "ifeval"],
        data=str(root / "corpus" / "test.jsonl"),
        output=str(root / "eval"),
        limit=6,
        llm=str(root / "llm"),
        probe_voice="piper:joe",
        sqa={"items": 2},
        bias={"samples": 2},
        generation={"max_new_tokens": 4, "batch_size": 4},
        ood_sets={"other": str(root / "corpus" / "test.jsonl")},
        ood_limit=4,
        ifeval={"items": 3},
    )
    results = evaluate(settings)
    tiny = results["systems"]["tiny"]
    assert tiny["asr"]["n"] == 6 and tiny["instruct"]["n"] == 6 and tiny["sqa"]["n"] == 2
    assert tiny["cost"]["instruct"]["answers"] == 6 and tiny["cost"]["instruct"]["real_time_factor"] > 0
    assert tiny["text"]["n"] > 0 and tiny["bias"]["samples"] == 2
    text = results["systems"]["text"]
    # the text baseline's answers are the references (one cached set), and it has no ASR row
    assert results["examples"]["instruct"]["text"] == results["examples"]["instruct"]["reference"]
    assert "asr" not in text and text["cost"]["instruct"]["answers"] == 6
    report = (root / "eval" / "report.md").read_text()
    assert "| tiny (lsm) |" in report and "| text (text) |" in report
    for name in ("report.json", "instruct.png", "bias.png"):
        assert (root / "eval" / name).stat().st_size > 0
    # the out-of-domain set: its own asr + instruct suites, WER per speaker, and the self-echo rate
    assert tiny["asr@other"]["n"] == 4 and set(tiny["asr@other"]["wer_per_speaker"]) == {"?"}
    assert tiny["instruct@other"]["self_echo_rate"] is not None and "self_echo_rate" in tiny["instruct"]
    assert results["systems"]["text"]["instruct@other"]["self_echo_rate"] is None  # no transcription of its own
    assert "### `other` (4 utterances)" in report and "WER other" in report and "self echo other" in report
    other = report.split("### `other`")[1]
    assert "| system | WER | miss | CER | S | D | I |" in other
    a = tiny["asr@other"]
    assert a["miss_rate"] == pytest.approx((a["substitutions"] + a["deletions"]) / a["reference_words"], abs=1e-4)
    assert tiny["ifeval"]["n"] == 3 and "delta_vs_text" in tiny["ifeval"]["vs_text"]["strict"]
    assert "## Verifiable instruction following" in report
    again = evaluate(settings)  # every answer set comes from the cache
    cached = {"tiny/asr", "tiny/instruct", "tiny/sqa", "text/instruct", "text/sqa", "tiny/ifeval", "text/ifeval"}
    assert set(again["cached"]) == cached | {"tiny/asr@other", "tiny/instruct@other", "text/instruct@other"}
    assert again["systems"]["tiny"]["cost"] == tiny["cost"]  # measured once, when the answers were made
    assert again["systems"]["tiny"]["instruct"] == tiny["instruct"]


def test_eval_cli_errors_name_the_problem(tmp_path):
    from typer.testing import CliRunner

    from selfpowered.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["eval", "--data", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "e")])
    assert missing.exit_code == 2 and "nope.jsonl: evaluation manifest not found" in missing.output
    bad_suite = runner.invoke(app, ["eval", "--data", "x.jsonl", "--suites", "asr,vibes"])
    assert bad_suite.exit_code == 2 and "suites" in bad_suite.output


def test_lsm_systems_load_on_first_use_and_release(tmp_path):
    from selfpowered.evaluate.systems import LSMSystem

    tiny_lsm().save_pretrained(tmp_path / "lsm")
    system = LSMSystem("tiny", tmp_path / "lsm", max_new_tokens=2, batch_size=2)
    assert system._model is None  # nothing loaded until it is this system's turn
    assert system.base_llm_name() == str(tmp_path / "lsm" / "./llm")  # the bundled base, read from config.json
    assert system.model.config.connector_name == "window_qformer" and system._model is not None
    system.release()
    assert system._model is None
