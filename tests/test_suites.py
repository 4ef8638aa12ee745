"""The suite registry: every suite registers itself beside its code, its settings are a section of
the eval config validated by its own model, and the listings (`config show eval`, the docs) come
from the registry. Scorers pinned on hand-made answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from selfpowered.config import EvalConfig
from selfpowered.errors import ConfigError, SelfPoweredError
from selfpowered.evaluate.suites import (
    SUITES,
    Query,
    Suite,
    SuiteSpec,
    default_suites,
    describe_suites,
    load_suites,
    register_suite,
    resolve_suites,
)
from selfpowered.evaluate.suites.paraling import score_paraling

ROOT = Path(__file__).resolve().parents[1]


def _config(**settings) -> EvalConfig:
    return EvalConfig(data="test.jsonl", **settings)


def test_every_module_of_the_package_registers_one_suite_under_its_file_name():
    suites = load_suites()
    modules = sorted(p.stem for p in (ROOT / "src/selfpowered/evaluate/suites").glob("*.py") if p.stem != "__init__")
    assert sorted(suites) == modules
    for name, spec in suites.items():
        assert spec.name == name and spec.summary, name


def test_defaults_leave_out_the_suites_that_need_data_of_their_own():
    assert set(default_suites()) == {"asr", "bias", "conflict", "ifeval", "instruct", "sqa", "text"}
    assert resolve_suites(_config()).keys() == set(default_suites())


def test_a_suite_section_is_validated_by_the_suite_and_errors_name_the_key():
    resolved = resolve_suites(_config(suites=["sqa", "content"], sqa={"items": 7}, content={"data": "x.jsonl"}))
    assert list(resolved) == ["sqa", "content"]
    assert resolved["sqa"].items == 7 and resolved["content"].limit == 240  # the suite's own default
    with pytest.raises(ConfigError, match=r"unknown suite\(s\) 'sound'.*known: asr, bias"):
        resolve_suites(_config(suites=["sound"]))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'sqa_items': neither a setting nor a section"):
        resolve_suites(_config(sqa_items=3))
    with pytest.raises(ConfigError, match=r"sqa\.items: Input should be a valid integer"):
        resolve_suites(_config(suites=["sqa"], sqa={"items": "many"}))
    with pytest.raises(ConfigError, match=r"sqa\.colour: Extra inputs"):
        resolve_suites(_config(suites=["sqa"], sqa={"colour": 1}))
    with pytest.raises(ConfigError, match=r"content\.data: Field required"):
        resolve_suites(_config(suites=["content"]))
    with pytest.raises(ConfigError, match=r"paraling\.\(section\): .*needs data"):
        resolve_suites(_config(suites=["paraling"]))
    # a section of a suite that is not run is still checked: a typo never passes silently
    with pytest.raises(ConfigError, match=r"sqa\.item: Extra inputs"):
        resolve_suites(_config(suites=["asr"], sqa={"item": 3}))


def test_registering_two_suites_under_one_name_is_refused():
    load_suites()

    class Another(SuiteSpec):
        name = "asr"
        summary = "a second asr"

    with pytest.raises(ValueError, match="two suites are called 'asr'"):
        register_suite(Another)
    assert type(SUITES["asr"]).__name__ != "Another"


def test_the_listing_and_the_docs_name_every_registered_suite():
    listing = describe_suites()
    docs = (ROOT / "docs/evaluation.md").read_text()
    for name, spec in load_suites().items():
        assert f"#   {name}: {spec.summary}" in listing
        assert re.search(rf"^\| `{name}` \|", docs, re.M), f"docs/evaluation.md's suite table lacks {name}"
    assert "#     items: 48  # spoken probes" in listing  # a suite's settings with their defaults


def _paraling_suite(cases):
    queries, meta = [], []
    for i, (attribute, truth) in enumerate(cases):
        queries.append(Query(f"u{i}#{attribute}", "/a.wav", "?", "same words", 1.0))
        meta.append({"attribute": attribute, "truth": truth, "set": "held-out voices", "voice": "v"})
    return Suite("paraling", queries, meta)


def test_paraling_accuracy_counts_one_named_option_and_reports_the_unparsed_share():
    suite = _paraling_suite([("gender", "female"), ("gender", "male"), ("gender", "male"), ("pace", "fast")])
    answers = ["A woman.", "It is a woman or a man.", "Male.", "The speaker talks slowly."]
    scored = score_paraling(suite, answers)
    gender = scored["per_attribute"]["gender"]
    assert gender["n"] == 3 and gender["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert gender["unparsed"] == pytest.approx(1 / 3, abs=1e-4)  # two options named: neither counts
    assert gender["answered"] == {"female": 1, "male": 1, "none": 1}  # a system answering one value hears nothing
    assert scored["per_attribute"]["pace"]["accuracy"] == 0.0
    assert scored["accuracy"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-4)  # mean over attributes
    low, high = gender["accuracy_95ci"]
    assert 0.0 <= low <= gender["accuracy"] <= high <= 1.0
    assert scored["per_set"]["held-out voices"]["gender"]["n"] == 3


def test_paraling_descriptions_count_two_attributes_right_and_none_wrong():
    labels = {"gender": "female", "pace": "fast", "background": "noisy"}
    suite = Suite(
        "paraling",
        [Query(f"u{i}#describe", "/a.wav", "Describe", "w", 1.0) for i in range(3)],
        [{"attribute": "describe", "labels": labels, "set": "real", "voice": "v"}] * 3,
    )
    answers = [
        "A woman talks fast over a noisy street.",  # three right
        "A woman talks slowly.",  # one right, one wrong
        "A woman speaks.",  # one right only
    ]
    described = score_paraling(suite, answers)["describe"]["real"]
    assert described["n"] == 3 and described["two_right_none_wrong"] == pytest.approx(1 / 3, abs=1e-4)


def test_asr_word_recall_splits_seen_and_unseen_words(tmp_path):
    from selfpowered.evaluate.suites import SUITES, Scoring
    from selfpowered.evaluate.suites.asr import AsrOptions, vocabulary_of

    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "The cat sat."}\n{"transcript": "on a mat"}\n')
    vocabulary = vocabulary_of([str(train)])
    assert vocabulary == {"the", "cat", "sat", "on", "a", "mat"}
    suite = Suite("asr", [Query("u1#asr", "/a.wav", "Transcribe", "The cat sat on a zebra.", 1.0)], [{"template": 0}])
    options = {"asr": AsrOptions(vocabulary=[str(train)])}
    scored = SUITES["asr"].score(suite, ["the bat sat on a zebra"], Scoring({"asr": suite}, options=options))
    # seen: the cat sat on a -> 4 of 5 recovered (cat -> bat); unseen: zebra, recovered
    assert scored["word_recall"] == {"seen": {"words": 5, "recall": 0.8}, "unseen": {"words": 1, "recall": 1.0}}
    assert "word_recall" not in SUITES["asr"].score(suite, ["the cat"], Scoring({"asr": suite}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(SelfPoweredError, match=r"bad.jsonl:1: asr.vocabulary"):
        vocabulary_of([str(bad)])


def test_effected_real_rows_are_found_from_any_base_and_carry_their_labels(tmp_path, monkeypatch):
    """The suite writes each real recording under every effect into OUTPUT/probes/... (a path
    relative to the working folder when OUTPUT is) and reads the rows against OUTPUT: the paths it
    records must resolve from there too (a relative one was doubled: OUTPUT/OUTPUT/probes/...)."""
    import soundfile as sf

    from selfpowered.corpus.manifest import ManifestRow
    from selfpowered.evaluate.suites.paraling import REAL_EFFECTS, effected_real_rows
    from tests.helpers import tone

    monkeypatch.chdir(tmp_path)
    sf.write(tmp_path / "real.wav", tone(2.0), 16_000)
    rows = [ManifestRow("r1", "real.wav", "go forward ten meters", 2.0, "en", "someone", {})]
    out = Path("eval-output")
    made = effected_real_rows(rows, tmp_path, out / "probes" / "paraling-real")
    assert len(made) == len(REAL_EFFECTS)
    for row, (attribute, value, _) in zip(made, REAL_EFFECTS):
        assert row.audio_path(out).is_file() and row.audio_path(Path("elsewhere")).is_file()
        assert row.extra["labels"]["designed_for"] == attribute and row.extra["labels"][attribute] == value
    durations = {(r.extra["labels"]["designed_for"], r.extra["labels"].get("pace")): r.duration for r in made}
    assert durations[("pace", "slow")] > 2.0 > durations[("pace", "fast")]  # a tempo change, labels true
