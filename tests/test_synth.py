from __future__ import annotations

import json
import logging

import pytest
import soundfile as sf

from selfpowered.corpus import synth, tts
from selfpowered.corpus.sentences import MAX_WORDS, MIN_WORDS, generate_sentences
from selfpowered.corpus.tts import DEFAULT_VOICES, Voice, synthesize, trim_silence, voice_available


def test_sentences_distinct_bounded_deterministic():
    sentences = generate_sentences(6000, seed=3)
    assert len(set(sentences)) == 6000
    assert all(MIN_WORDS <= len(s.split()) <= MAX_WORDS for s in sentences)
    assert all(s[0].isupper() and s[-1] in ".?" for s in sentences)
    assert generate_sentences(6000, seed=3) == sentences
    assert generate_sentences(50, seed=4) != sentences[:50]


@pytest.fixture
def all_voices_available(monkeypatch):
    monkeypatch.setattr(synth, "voice_available", lambda voice: True)


def test_plan_splits_are_disjoint_and_hold_out_a_voice(all_voices_available):
    plan = synth.plan_corpus("small", seed=1)
    by_split = {split: [job for job in plan.jobs if job.split == split] for split in synth.SPLITS}
    texts = {split: {job.text for job in jobs} for split, jobs in by_split.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    assert [len(texts[s]) for s in synth.SPLITS] == [24, 4, 6]
    held_out = plan.test_voice
    assert str(held_out) == "flite:rms"
    assert all(job.voice != held_out for job in by_split["train"] + by_split["dev"])
    for text in texts["test"]:  # every test sentence is spoken by the unseen voice
        assert held_out in {job.voice for job in by_split["test"] if job.text == text}
    assert len({job.id for job in plan.jobs}) == len(plan.jobs) == 2 * 34
    assert all(0.9 <= job.tempo <= 1.1 for job in plan.jobs)
    assert synth.plan_corpus("small", seed=1).jobs == plan.jobs  # deterministic


def test_a_test_only_plan_is_the_full_corpus_test_split(all_voices_available):
    full = synth.plan_corpus("demo", seed=0)
    test_only = synth.plan_corpus("demo", seed=0, splits=["test"])
    assert test_only.jobs == [job for job in full.jobs if job.split == "test"] and test_only.splits == ("test",)
    with pytest.raises(synth.SelfPoweredError, match="unknown split"):
        synth.plan_corpus("small", splits=["valid"])


def test_demo_size_plans_over_ten_thousand_utterances(all_voices_available):
    assert len(synth.plan_corpus("demo").jobs) >= 10_000


def test_missing_engines_are_skipped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(synth, "voice_available", lambda voice: voice.engine == "piper" or voice.name == "en-us")
    with caplog.at_level(logging.WARNING):
        plan = synth.plan_corpus("small", voices=["piper:joe", "espeak-ng:en-us", "flite:rms"])
    assert "flite:rms is not available" in caplog.text
    assert [str(v) for v in plan.skipped_voices] == ["flite:rms"]
    assert str(plan.test_voice) == "espeak-ng:en-us"  # fell back to an available voice


def test_too_few_voices_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(synth, "voice_available", lambda voice: voice.engine == "piper")
    with pytest.raises(synth.SelfPoweredError, match="need at least 2 available voices"):
        synth.plan_corpus("small")


def test_voice_parse_errors():
    with pytest.raises(tts.TTSError, match="ENGINE:NAME"):
        Voice.parse("joe")
    assert Voice.parse("espeak-ng:en-gb+f3").id == "espeak-ng-en-gb-f3"


@pytest.mark.parametrize("voice", DEFAULT_VOICES)
def test_every_installed_engine_speaks_16k_mono(voice):
    voice = Voice.parse(voice)
    if not voice_available(voice):
        pytest.skip(f"{voice} not installed")
    audio = synthesize(voice, "The small boat needed a fresh coat of paint.", tempo=1.05)
    assert audio.ndim == 1 and 1.0 < audio.size / 16_000 < 6.0
    assert 0.05 < abs(audio).max() <= 0.95 + 1e-6  # never clipped; quiet engines stay quiet


def test_trim_silence_keeps_the_speech():
    import numpy as np

    signal = np.concatenate([np.zeros(16_000), np.ones(8_000) * 0.5, np.zeros(16_000)]).astype(np.float32)
    trimmed = trim_silence(signal)
    assert trimmed.size == 8_000 + 2 * int(0.15 * 16_000)


def test_small_corpus_end_to_end_and_resume(tmp_path):
    available = [v for v in DEFAULT_VOICES if voice_available(Voice.parse(v))]
    if len(available) < 2:
        pytest.skip("needs two TTS voices (make setup installs piper, flite, festival, espeak-ng)")
    voices = available[:3]
    plan = synth.plan_corpus(
        "small", voices=voices, test_voice=voices[-1], sentence_counts={"train": 4, "dev": 1, "test": 2}
    )
    out = tmp_path / "corpus"
    stats = synth.synthesise_corpus(plan, out, workers=2, progress=False)
    assert stats["made"] == len(plan.jobs) and stats["failed"] == 0 and stats["reused"] == 0
    for split in synth.SPLITS:
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == stats["splits"][split]["utterances"] > 0
        for row in rows:
            info = sf.info(str(out / row["audio"]))
            assert info.samplerate == 16_000 and info.channels == 1
            assert row["duration"] == pytest.approx(info.frames / 16_000, abs=1e-3)
    assert "| test |" in (out / "README.md").read_text()
    # a rerun reuses everything; a deleted file is made again, and only it
    victim = next((out / "audio").rglob("*.flac"))
    victim.unlink()
    again = synth.synthesise_corpus(plan, out, workers=1, progress=False)
    assert (again["made"], again["reused"]) == (1, len(plan.jobs) - 1)
    assert not list(out.rglob(".*.flac"))  # no temporary files left


def test_max_utterances_keeps_the_first_lines_of_the_whole_corpus(tmp_path, monkeypatch):
    """A recipe that trains on the first N rows makes only those: the same ids, texts and voices."""
    from selfpowered.config import SynthConfig

    made: list = []
    monkeypatch.setattr(synth, "synthesise_corpus", lambda plan, out, workers=None: made.append(plan.jobs) or {})
    synth.synthesise(SynthConfig(output=str(tmp_path), size="small", seed=1))
    synth.synthesise(SynthConfig(output=str(tmp_path), size="small", seed=1, max_utterances={"train": 5}))
    whole, limited = made
    assert [j for j in limited if j.split == "train"] == [j for j in whole if j.split == "train"][:5]
    assert [j for j in limited if j.split != "train"] == [j for j in whole if j.split != "train"]


def test_the_card_says_which_voices_training_never_heard():
    splits = {"train": {"voices": ["a", "b"]}, "dev": {"voices": ["c"]}, "test": {"voices": ["d"]}}
    one = {"held_out_test_voice": "flite:rms", "train_voices": ["a", "b"], "splits": splits}
    assert synth._held_out_line(one) == "- Held-out voice (test only): `flite:rms`; training voices: `a`, `b`"
    by_split = {**one, "held_out_test_voice": None}
    assert synth._held_out_line(by_split) == "- Voices of dev and test never speak in train (see the speakers column)"
    shared = {**by_split, "splits": {**splits, "test": {"voices": ["a"]}}}
    assert synth._held_out_line(shared) == "- Voices of dev never speak in train (see the speakers column)"
