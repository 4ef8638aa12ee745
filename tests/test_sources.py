"""Text sources, voice effects and the source-based corpus presets: the out-of-domain test set must
be disjoint from training by text source, by speaker and by transform, and every plan reproducible."""

from __future__ import annotations

import random

import numpy as np
import pytest

from selfpowered.corpus import text_sources
from selfpowered.corpus.effects import EFFECTS, TEST_EFFECTS, TRAIN_EFFECTS, apply_effects
from selfpowered.corpus.llm_text import extract_sentence
from selfpowered.corpus.sourced import load_presets, parse_speaker
from tests.helpers import tone


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the children played in the snow", "The children played in the snow"),
        ("Collect $200 at the bank today, he said", None),  # symbols read differently than written
        ("After your lover has gone you will still have PEANUT BUTTER!", None),  # shouted acronym-like
        ("Too short here", None),
        ("He said -- and meant it -- that he would come back tomorrow", None),
        ("  spaces   are   tidied into   one sentence ", "Spaces are tidied into one sentence"),
    ],
)
def test_speakable_keeps_what_a_voice_reads_as_written(text, expected):
    assert text_sources.speakable(text) == expected


@pytest.mark.parametrize(
    "answer, word, expected",
    [
        ('A person might say, "I\'m going to borrow some money from the bank."', "borrow",
         "I'm going to borrow some money from the bank."),
        ("The garden was filled with a variety of plants and flowers.", "garden",
         "The garden was filled with a variety of plants and flowers."),
        ("I'm a helpful AI named SmolLM, here to help.", "help", None),  # boilerplate
        ('A simple sentence using the word "kitchen" is "A kitchen."', "kitchen", None),  # too short
        ("I'm going to the store, I'm going to the store, I'm going home.", "store", None),  # repeats itself
        ("The moon is a celestial body that orbits the earth.", "table", None),  # does not use the seed
    ],
)  # fmt: skip
def test_llm_sentences_are_extracted_and_filtered(answer, word, expected):
    assert extract_sentence(answer, word) == expected


def test_effects_are_seeded_and_train_and_test_transforms_never_overlap():
    assert not set(TRAIN_EFFECTS) & set(TEST_EFFECTS) and set(TRAIN_EFFECTS) | set(TEST_EFFECTS) == set(EFFECTS)
    clip = tone(1.0)
    for effect in EFFECTS:
        first, again = apply_effects(clip, effect, seed=7), apply_effects(clip, effect, seed=7)
        assert np.array_equal(first, again) and np.abs(first).max() <= 0.95 + 1e-6, effect
        assert not np.array_equal(first, clip), effect
    state = np.random.get_state()[1][:4].copy()
    apply_effects(clip, "noise+pitch", seed=1)
    assert np.array_equal(np.random.get_state()[1][:4], state)  # the global generators are left as they were


def test_presets_keep_the_ood_set_disjoint_by_source_speaker_and_transform():
    presets = load_presets()
    train_sources = {b["source"] for split in presets["diverse"]["splits"].values() for b in split["blocks"]}
    train_sources.add("grammar")  # the demo corpus
    trained = {parse_speaker(s) for split in presets["diverse"]["splits"].values() for s in split["speakers"]}
    for name in ("ood", "ood-large"):
        ood = presets[name]["splits"]["test"]
        assert {b["source"] for b in ood["blocks"]}.isdisjoint(train_sources)
        for spec in ood["speakers"]:
            voice, effect = parse_speaker(spec)
            assert (voice, effect) not in trained, spec
            assert effect in TEST_EFFECTS or all(voice != v for v, _ in trained), spec  # a new voice or transform
    for split in presets["diverse"]["splits"].values():
        assert {e for name in split["effects"] for e in name.split("+") if e != "none"} <= set(TRAIN_EFFECTS)


@pytest.mark.skipif(not text_sources.FORTUNES_DIR.exists(), reason="Debian's fortunes package is not installed")
def test_the_ood_plan_is_balanced_and_reproducible(tmp_path):
    from selfpowered.corpus.sourced import plan_sourced_corpus

    plan = plan_sourced_corpus("ood", tmp_path, seed=0)
    again = plan_sourced_corpus("ood", tmp_path, seed=0)
    assert plan.jobs == again.jobs and len(plan.jobs) == 250
    speakers = [job.speaker for job in plan.jobs]
    assert {speakers.count(s) for s in set(speakers)} == {50}
    assert all(job.source == "fortunes" for job in plan.jobs) and len({job.text for job in plan.jobs}) == 250
    # ood-large: the same population at 750 sentences; its first 250 are ood's sentences and speakers
    large = plan_sourced_corpus("ood-large", tmp_path, seed=0).jobs
    assert len({job.text for job in large}) == 750
    assert [(j.text, j.speaker) for j in large[:250]] == [(j.text, j.speaker) for j in plan.jobs]


@pytest.mark.skipif(not text_sources.WORDNET_DIR.exists(), reason="Debian's wordnet-base package is not installed")
def test_wordnet_and_fortunes_are_disjoint_sources_with_enough_sentences():
    wordnet = text_sources.wordnet_examples()
    assert len(wordnet) > 20_000 and all(text_sources.speakable(s) == s for s in random.Random(0).sample(wordnet, 200))
    if text_sources.FORTUNES_DIR.exists():
        fortunes = text_sources.fortune_sentences()
        assert len(fortunes) > 1_000 and len(set(wordnet) & set(fortunes)) < 5
    report = text_sources.vocabulary_report(["the zorbly cat sat"], ["the cat sat on the mat"])
    assert report["oov_token_rate"] == 0.25 and report["most_common_oov"] == ["zorbly"]
