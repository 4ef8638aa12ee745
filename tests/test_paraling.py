"""How a clip sounds: labelled designs true by construction (corpus.designs, corpus.acoustics), the
paralinguistic corpus's plan (held-out voices, test pairs of the same sentence), the words that
read an answer back (text.paraling), and what augmentation keeps."""

from __future__ import annotations

import numpy as np
import pytest

from selfpowered.corpus import acoustics
from selfpowered.corpus.designs import design_labels, measure, pace_label
from selfpowered.corpus.jobs import Job
from selfpowered.corpus.paraling import ATTRIBUTES, VOICES, plan_paraling
from selfpowered.corpus.tts import Voice, voice_gender
from selfpowered.text import paraling
from tests.helpers import tone


# -- acoustics: what was done is what the label says ------------------------------------------------
def test_noise_is_added_at_the_asked_snr():
    rng = np.random.default_rng(0)
    speech = tone(3.0)
    for color in acoustics.NOISE_COLORS:
        noisy = acoustics.add_noise(speech, color, 5.0, rng)
        noise = noisy - speech
        snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert abs(snr - 5.0) < 0.01


def test_a_room_rings_for_its_rt60():
    rng = np.random.default_rng(1)
    response = acoustics.room_impulse(1.2, rng)
    energy = np.cumsum(response[::-1] ** 2)[::-1]  # Schroeder's backward integration
    decay = 10 * np.log10(energy / energy[0])
    t20 = np.argmax(decay <= -25) - np.argmax(decay <= -5)  # -5 to -25 dB, extrapolated to 60 dB
    assert abs(3 * t20 / 16_000 - 1.2) < 0.15
    dry = tone(2.0)
    wet = acoustics.reverberate(dry, 1.2, rng)
    assert wet.shape == dry.shape and not np.allclose(wet, dry)


def test_loudness_and_pace_are_measured():
    quiet = acoustics.set_loudness(tone(1.0), -30.0)
    assert abs(acoustics.loudness_dbfs(quiet) - (-30.0)) < 0.01
    assert acoustics.words_per_minute("one two three four five six", 2.3) == 180.0  # 2 s of speech
    assert pace_label(100) == "slow" and pace_label(160) == "normal" and pace_label(220) == "fast"
    assert acoustics.telephone(tone(1.0, 1000)).shape == (16_000,)


def test_design_labels_say_what_was_done():
    job = Job(
        "u1", "train", "a b c", Voice.parse("flite:slt"), 1.6, "a.flac",
        design={"noise": {"color": "pink", "snr_db": 4.0}, "room": {"rt60": 1.0},
                "second": {"text": "d e f", "voice": "flite:awb"}, "loudness_dbfs": -20.0},
    )  # fmt: skip
    labels = design_labels(job, measure(job, np.zeros(int(16_000 * 3.0), dtype=np.float32)))
    assert (
        labels["gender"] == "mixed" and labels["speakers"] == "two" and labels["voices"] == ["flite:slt", "flite:awb"]
    )
    assert labels["background"] == "noisy" and labels["snr_db"] == 4.0 and labels["noise"] == "pink"
    assert labels["room"] == "reverberant" and labels["rt60"] == 1.0 and not labels["telephone"]
    # six words over 3.0 s less the gap (0.4) and two pairs of edges (0.6): 2.0 s of speech
    assert labels["words_per_minute"] == 180.0 and labels["pace"] == "normal"


# -- the corpus plan ------------------------------------------------------------------------------
def test_voices_are_held_out_whole_and_gendered_by_their_own_tables():
    splits = {split: {v for vs in genders.values() for v in vs} for split, genders in VOICES.items()}
    assert not splits["train"] & splits["dev"] and not splits["train"] & splits["test"]
    assert not splits["dev"] & splits["test"]
    for genders in VOICES.values():
        for gender, voices in genders.items():
            assert all(voice_gender(Voice.parse(v)) in (gender, None) for v in voices)


@pytest.mark.slow
def test_the_plan_pairs_each_test_sentence_under_both_values(tmp_path):
    plan = plan_paraling(tmp_path, seed=0, splits=["test"])
    by_item: dict[str, list[Job]] = {}
    for job in plan.jobs:
        split, attribute, index, value = job.id.split("-")
        by_item.setdefault(f"{attribute}-{index}", []).append(job)
    assert {item.split("-")[0] for item in by_item} == set(ATTRIBUTES)
    for item, jobs in by_item.items():
        assert len(jobs) == 2 and jobs[0].text == jobs[1].text  # the words cannot give the answer away
        assert all(job.source == "fortunes" and job.design["attribute"] == item.split("-")[0] for job in jobs)
    genders = [{voice_gender(j.voice) for j in jobs} for item, jobs in by_item.items() if item.startswith("gender")]
    assert all(g == {"female", "male"} for g in genders)


# -- reading answers back ---------------------------------------------------------------------------
def test_answers_are_read_back_into_labels():
    labels = {"gender": "female", "pace": "fast", "background": "noisy", "noise": "pink", "room": "dry",
              "speakers": "one"}  # fmt: skip
    assert paraling.check("gender", "The speaker is a woman.", labels)
    assert not paraling.check("gender", "It is a man or a woman.", labels)  # both named: no answer
    assert not paraling.check("gender", "The speaker is a man.", labels)
    assert paraling.check("pace", "She talks quite fast.", labels)
    # a possessive names its value too: `describe` itself says "voice: a woman's voice"
    assert paraling.check("gender", "It is a woman's voice.", labels)
    assert paraling.check("gender", paraling.describe({"gender": "female"}), labels)
    assert not paraling.check("gender", "A man's voice.", labels)
    assert paraling.parse("room", "Dry.", ("dry", "reverberant")) == "dry"
    assert paraling.parse("room", "There is an echo", ("dry", "reverberant")) == "reverberant"
    assert paraling.parse("speakers", "Two people.", ("one", "two")) == "two"
    assert paraling.parse("gender", "I cannot tell.", ("female", "male")) is None
    described = paraling.attributes_described("A woman speaks fast over loud static in a small room.", labels)
    assert described == {"gender": True, "pace": True, "background": True, "room": True}
    line = paraling.describe(labels)
    assert "voice: a woman's voice" in line and "noisy (pink noise)" in line and "pace: fast" in line
    assert paraling.templated_answer("speakers", labels) == "One person is speaking."
    assert "How it sounds:" in paraling.sound_prompt("Who speaks?", "hello there", labels)


def test_augment_keeps_only_answers_that_name_the_true_label(tiny_llm, tmp_path):
    """The control recipe writes the labels as fixed sentences; the self-powered one asks the LLM
    and drops what fails the label check (a random tiny LLM fails it: nothing wrong is kept)."""
    import json

    from selfpowered.augment.run import augment
    from selfpowered.config import AugmentConfig
    from selfpowered.model.generation import HFGenerator

    labels = [
        {"gender": "female", "pace": "slow", "background": "clean", "room": "dry", "speakers": "one"},
        {"gender": "male", "pace": "fast", "background": "noisy", "room": "reverberant", "speakers": "two"},
    ]
    rows = [
        {"id": f"p{i}", "audio": f"a/p{i}.flac", "text": "the old bridge was closed", "duration": 2.0,
         "labels": labels[i % 2]}
        for i in range(12)
    ]  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    templated = AugmentConfig(manifest=str(manifest), output=str(tmp_path / "t.jsonl"), tasks="paraling",
                              recipe="templated")  # fmt: skip
    augment(templated, progress=False)
    samples = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(samples) == 12
    for sample in samples:
        truth = labels[int(sample["id"][1:].split("#")[0]) % 2]
        if sample["task"] != "describe":
            assert paraling.check(sample["task"], sample["response"], truth)
    config = AugmentConfig(manifest=str(manifest), output=str(tmp_path / "s.jsonl"), tasks="paraling",
                           max_new_tokens=8, verify_attempts=2)  # fmt: skip
    stats = augment(config, HFGenerator(str(tiny_llm), max_new_tokens=8), progress=False)
    kept = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines() if line]
    for sample in kept:  # whatever a random LLM wrote and was kept names the true label
        truth = labels[int(sample["id"][1:].split("#")[0]) % 2]
        if sample["task"] != "describe":
            assert paraling.check(sample["task"], sample["response"], truth)
    assert stats["this_run"]["processed"] == 12


@pytest.mark.parametrize("voice", ["espeak-ng:en-us+f4", "festival:kal_diphone"])
def test_a_paced_design_reaches_its_words_per_minute_whatever_the_engines_range(voice):
    """espeak-ng cannot speak slower than ~115 a minute, festival's diphone voices ignore their
    rate: the design stretches the rest, so the label (the measured pace) is what was asked."""
    from selfpowered.corpus.designs import render_design
    from selfpowered.corpus.tts import voice_available

    if not voice_available(Voice.parse(voice)):
        pytest.skip(f"{voice} is not installed")
    text = "The museum opens at nine on weekdays and closes early on Sundays."
    for target in (95, 250):
        job = Job("p", "test", text, Voice.parse(voice), 1.0, "p.flac", design={"target_wpm": target})
        samples = render_design(job)
        reached = measure(job, samples)["words_per_minute"]
        assert abs(reached / target - 1) < 0.15, (voice, target, reached)
