"""Sound tags (model/sound_tags.py): linear classifiers over a clip's pooled Whisper states, fitted on
labels true by construction, whose predictions the LLM reads as words after the transcript."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfpowered.errors import SelfPoweredError
from selfpowered.model.hearing import Heard
from selfpowered.model.sound_tags import (
    TAGGER_FILE,
    AttributeClassifier,
    InstructionJudge,
    SoundTagger,
    instruction_ids,
    pooled_states,
)
from selfpowered.text.paraling import describe
from tests.tiny import tiny_lsm


def test_pooled_states_are_the_mean_and_std_over_frames():
    states = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float16)
    np.testing.assert_allclose(pooled_states(states), [2.0, 4.0, 1.0, 2.0])
    np.testing.assert_array_equal(pooled_states(np.zeros((0, 3))), np.zeros(6))
    with pytest.raises(ValueError, match="frames, d"):
        pooled_states(np.zeros(4))


def _clips(rng: np.random.Generator, count: int = 40, width: int = 4):
    """Clips whose first feature says the gender and whose second says the pace; noise elsewhere."""
    states, labels = [], []
    for index in range(count):
        gender = "female" if index % 2 else "male"
        pace = "fast" if index % 4 < 2 else "slow"
        frames = rng.normal(size=(10, width)).astype(np.float32)
        frames[:, 0] += 3.0 if gender == "female" else -3.0
        frames[:, 1] += 3.0 if pace == "fast" else -3.0
        states.append(frames)
        labels.append({"gender": gender, "pace": pace, "room": "dry"})  # one room value: nothing to learn
    return states, labels


def test_a_tagger_learns_each_attribute_that_has_two_values(rng):
    states, labels = _clips(rng)
    features = np.stack([pooled_states(s) for s in states])
    tagger, counts = SoundTagger.fit(features, labels, hidden_size=4)
    assert sorted(tagger.classifiers) == ["gender", "pace"]  # room: one value only
    assert counts["gender"] == {"female": 20, "male": 20} and counts["room"] == {"dry": 40}
    fresh, fresh_labels = _clips(np.random.default_rng(1), count=8)
    for frames, truth in zip(fresh, fresh_labels):
        assert tagger.tags(frames) == {"gender": truth["gender"], "pace": truth["pace"]}
        assert tagger.line(frames) == "How it sounds: " + describe(truth | {"room": None})
    assert tagger.tags(None) == {} and tagger.line(np.zeros((0, 4))) == ""
    with pytest.raises(ValueError, match="4-wide"):
        tagger.tags(np.zeros((3, 5)))


def test_a_tagger_needs_two_values_of_something(rng):
    states, labels = _clips(rng)
    features = np.stack([pooled_states(s) for s in states])
    with pytest.raises(SelfPoweredError, match="no attribute has"):
        SoundTagger.fit(features, [{"room": "dry"}] * len(labels), hidden_size=4)
    with pytest.raises(ValueError, match="clips but"):
        SoundTagger.fit(features, labels[:3], hidden_size=4)


def test_a_saved_tagger_predicts_the_same_and_a_broken_file_is_named(rng, tmp_path):
    states, labels = _clips(rng)
    tagger, _ = SoundTagger.fit(np.stack([pooled_states(s) for s in states]), labels, hidden_size=4)
    tagger.save(tmp_path)
    again = SoundTagger.load(tmp_path)
    assert [again.tags(s) for s in states] == [tagger.tags(s) for s in states]
    assert SoundTagger.load(tmp_path / "elsewhere") is None  # no file: no tagger
    data = json.loads((tmp_path / TAGGER_FILE).read_text())
    for broken in ({"weight": [[1.0]]}, {"mean": [0.0], "scale": [1.0], "weight": [[1.0], [1.0]]}):
        bad = json.loads(json.dumps(data))
        bad["classifiers"]["gender"].update(broken)
        (tmp_path / TAGGER_FILE).write_text(json.dumps(bad))
        with pytest.raises(SelfPoweredError, match=f"{TAGGER_FILE}: not a sound tagger"):
            SoundTagger.load(tmp_path)


def test_the_llm_reads_the_tags_after_the_transcript_and_the_processor_keeps_them(rng, tmp_path):
    lsm = tiny_lsm(speech_tokens="transcript", connector="none", finetune="frozen")
    width = lsm.config.encoder_hidden_size
    states, labels = _clips(rng, width=width)
    tagger, _ = SoundTagger.fit(np.stack([pooled_states(s) for s in states]), labels, hidden_size=width)
    heard = Heard("hello world", (), 1.0, states[1])  # a female, fast clip
    plain = lsm.processor(["say it"], heard=[heard])["input_ids"][0].tolist()
    lsm.processor.use_tagger(tagger)
    tagged = lsm.processor(["say it"], heard=[heard])["input_ids"][0].tolist()
    words = "hello world\nHow it sounds: voice: a woman's voice; pace: fast"
    assert lsm.processor.heard_words(heard, "say it") == words
    expected = lsm.prompt.pieces("say it", with_speech=True, heard=words)
    assert tagged[: len(expected.prefix_ids) + len(expected.heard_ids)] == expected.prefix_ids + expected.heard_ids
    assert len(tagged) > len(plain)
    lsm.processor.save_pretrained(tmp_path)
    assert SoundTagger.load(tmp_path).tags(states[1]) == tagger.tags(states[1])
    with pytest.raises(ValueError, match="wide states"):
        lsm.processor.use_tagger(SoundTagger(tagger.classifiers, width + 1))
    other = tiny_lsm()  # reads no transcript: nothing to put tags after
    with pytest.raises(ValueError, match="speech_tokens: transcript"):
        other.processor.use_tagger(tagger)


@pytest.mark.assets
def test_fit_tagger_hears_real_clips_and_the_checkpoint_reads_its_tags(librivox, tmp_path):
    """`selfpowered tag` on real speech: the LibriVox clips clean and under 0 dB white noise; the
    tagger is fitted on Whisper's own states, saved into the checkpoint, and the reloaded model's
    prompt says which clips are noisy."""
    import soundfile as sf

    from selfpowered.audio import load_audio
    from selfpowered.config import ModelConfig
    from selfpowered.corpus.manifest import ManifestRow, write_manifest
    from selfpowered.model import SpeechLM
    from selfpowered.train.sound_tagger import fit_tagger

    noise = np.random.default_rng(0)
    rows = []
    for index, (path, text) in enumerate(librivox):
        clean = load_audio(path)
        for background in ("clean", "noisy"):
            audio = clean if background == "clean" else clean + noise.normal(0, clean.std(), clean.shape)
            name = f"{background}-{index}.wav"
            sf.write(tmp_path / name, audio.astype(np.float32), 16_000)
            rows.append(ManifestRow(f"{background}-{index}", name, text, len(audio) / 16_000,
                                    extra={"labels": {"background": background}}))  # fmt: skip
    sf.write(tmp_path / "long.wav", np.zeros(16_000 * 61, dtype=np.float32), 16_000)  # over the 60 s limit
    rows.append(ManifestRow("long", "long.wav", "x", 61.0, extra={"labels": {"background": "clean"}}))
    write_manifest(tmp_path / "labelled.jsonl", rows)
    model = ModelConfig(speech_tokens="transcript", connector={"name": "none"}, finetune="frozen")
    SpeechLM.init_checkpoint(model, tmp_path / "lsm")
    summary = fit_tagger(tmp_path / "lsm", [tmp_path / "labelled.jsonl"], [tmp_path / "labelled.jsonl"],
                         cache_dir=tmp_path / "hearing")  # fmt: skip
    assert summary["attributes"] == ["background"] and summary["train_clips"] == 10  # the long clip: a reject
    assert len(summary["rejected"]) == 2 and all("labelled.jsonl:11:" in line for line in summary["rejected"])
    assert summary["values"]["background"] == {"clean": 5, "noisy": 5}
    assert summary["dev_accuracy"]["background"] == {"n": 10, "accuracy": 1.0}  # its own clips: separable
    lsm = SpeechLM.from_pretrained(tmp_path / "lsm")
    heard = lsm.hear([str(tmp_path / "noisy-0.wav"), str(tmp_path / "clean-0.wav")])
    assert lsm.processor.heard_words(heard[0], "is it noisy?").endswith("\nHow it sounds: background: noisy")
    assert lsm.processor.heard_words(heard[1], "is it noisy?").endswith("\nHow it sounds: background: quiet, no noise")
    # the judge, fitted on the training libraries' wordings over SmolLM2's embeddings: the eval's
    # held-out sound questions get the line, a transcription request gets the cascade's prompt
    assert summary["judge"]["held_out"]["sound"]["accuracy"] == 1.0
    assert summary["judge"]["held_out"]["other"]["accuracy"] >= 0.9
    assert lsm.processor.heard_words(heard[0], "Transcribe the audio.") == heard[0].text


def test_refitting_the_tagger_makes_cached_eval_answers_stale(rng, tmp_path):
    """The tagger changes every prompt, so eval's answer cache keys on it (evaluate/cache.py)."""
    from selfpowered.evaluate.cache import _checkpoint_identity

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    before = _checkpoint_identity(str(tmp_path))
    states, labels = _clips(rng)
    SoundTagger.fit(np.stack([pooled_states(s) for s in states]), labels, hidden_size=4)[0].save(tmp_path)
    assert _checkpoint_identity(str(tmp_path)) != before


def test_a_corpus_without_labels_is_named_in_the_error(tmp_path):
    from selfpowered.corpus.manifest import ManifestRow, write_manifest
    from selfpowered.train.sound_tagger import labelled_clips

    write_manifest(tmp_path / "plain.jsonl", [ManifestRow("a", "a.wav", "hello", 1.0)])
    with pytest.raises(SelfPoweredError, match=r"plain\.jsonl: no row has `labels`"):
        labelled_clips([tmp_path / "plain.jsonl"], None)  # (its audio is missing too: a reject, never opened)


def test_the_folded_judge_is_the_classifier_over_mean_embeddings(rng):
    """One score per token, averaged, equals the other/sound regression's logit difference on the
    mean embedding: the processor needs no LLM to route."""
    embeddings = rng.normal(size=(30, 6)).astype(np.float32)
    sound, other = [[1, 2, 3], [2, 4], [1, 5, 5]], [[10, 11], [12, 13, 14], [11, 20], [25]]
    features = np.stack([embeddings[ids].mean(0) for ids in sound + other])
    classifier = AttributeClassifier.fit(features, ["sound"] * 3 + ["other"] * 4)
    judge = InstructionJudge.fit(embeddings, sound, other)
    for ids in [*sound, *other, [1, 10], [29, 0, 7]]:
        mean = embeddings[ids].mean(0)
        logits = ((mean - classifier.mean) / classifier.scale) @ classifier.weight.T + classifier.bias
        assert judge.score(ids) == pytest.approx(float(logits[1] - logits[0]), abs=1e-4)
        assert judge.about_sound(ids) == (classifier.predict(mean[None])[0] == "sound")
    assert [judge.about_sound(ids) for ids in sound + other] == [True] * 3 + [False] * 4  # separable: learnt
    assert not judge.about_sound([])  # an empty instruction asks nothing about the sound
    again = InstructionJudge.from_dict(json.loads(json.dumps(judge.to_dict())))
    np.testing.assert_array_equal(again.token_scores, judge.token_scores)  # float32 reads back exactly
    with pytest.raises(ValueError, match="none empty"):
        InstructionJudge.fit(embeddings, sound, [[]])
    with pytest.raises(ValueError, match="other/sound"):
        InstructionJudge.fold(AttributeClassifier.fit(features, ["a"] * 3 + ["b"] * 4), embeddings)


def test_with_a_judge_only_instructions_about_the_sound_read_the_tags(rng, tmp_path):
    """A judge that scores the token pieces of "voice" high: "what voice is it" gets the tag line, "say
    it" gets the cascade's prompt exactly (the same ids as with no tagger); both survive a save."""
    lsm = tiny_lsm(speech_tokens="transcript", connector="none", finetune="frozen")
    width, tokenizer = lsm.config.encoder_hidden_size, lsm.processor.tokenizer
    states, labels = _clips(rng, width=width)
    scores = np.full(len(tokenizer), -1.0, np.float32)
    voice = set(instruction_ids(tokenizer, "voice")) - set(instruction_ids(tokenizer, "say it"))
    scores[sorted(voice)] = 20.0  # the tiny BPE splits words into pieces: only those "say it" lacks
    tagger, _ = SoundTagger.fit(np.stack([pooled_states(s) for s in states]), labels, hidden_size=width)
    tagger.judge = InstructionJudge(scores, 0.0)
    heard = Heard("hello world", (), 1.0, states[1])
    asks = ["say it", "What VOICE is it"]
    plain = [lsm.processor([ask], heard=[heard])["input_ids"][0].tolist() for ask in asks]
    lsm.processor.use_tagger(tagger)
    routed = [lsm.processor([ask], heard=[heard])["input_ids"][0].tolist() for ask in asks]
    assert routed[0] == plain[0]  # not about the sound: the prompt without a tagger, id for id
    assert routed[1] != plain[1]
    assert lsm.processor.heard_words(heard, "What VOICE is it").endswith(
        "\nHow it sounds: voice: a woman's voice; pace: fast"
    )
    assert lsm.processor.heard_words(heard, "say it") == "hello world"
    lsm.processor.save_pretrained(tmp_path)
    loaded = SoundTagger.load(tmp_path)
    assert loaded.wanted(instruction_ids(tokenizer, "what voice is it")) and not loaded.wanted(
        instruction_ids(tokenizer, "say it")
    )
    with pytest.raises(ValueError, match="judge scores 3 tokens"):
        lsm.processor.use_tagger(SoundTagger(tagger.classifiers, width, InstructionJudge(scores[:3], 0.0)))


def test_the_training_token_budget_allows_for_the_line_only_where_the_judge_shows_it(rng):
    """`tag_line_tokens` bounds the line's tokens for every clip (all value combinations tokenised)
    and is 0 where the judge keeps the line away; the training sampler's estimate adds it."""
    from pathlib import Path

    from selfpowered.train.data import SpeechInstructionDataset, TrainSample

    lsm = tiny_lsm(speech_tokens="transcript", connector="none", finetune="frozen")
    width, processor = lsm.config.encoder_hidden_size, lsm.processor
    states, labels = _clips(rng, width=width)
    tagger, _ = SoundTagger.fit(np.stack([pooled_states(s) for s in states]), labels, hidden_size=width)
    scores = np.full(len(processor.tokenizer), -1.0, np.float32)
    voice = set(instruction_ids(processor.tokenizer, "voice")) - set(instruction_ids(processor.tokenizer, "say it"))
    scores[sorted(voice)] = 20.0
    tagger.judge = InstructionJudge(scores, 0.0)
    assert processor.tag_line_tokens("what voice") == 0  # no tagger yet
    processor.use_tagger(tagger)
    bound = processor.tag_line_tokens("what voice")
    for frames in states:
        added = processor.tokenizer("\n" + tagger.line(frames), add_special_tokens=False)["input_ids"]
        assert 0 < len(added) <= bound
    assert processor.tag_line_tokens("say it") == 0
    samples = [TrainSample(str(i), Path("x.wav"), ask, "ok", 1.0) for i, ask in enumerate(["say it", "what voice"])]
    dataset = SpeechInstructionDataset(samples)
    plain, tagged = dataset.token_lengths(10.0), dataset.token_lengths(10.0, processor.tag_line_tokens)
    assert tagged[0] == plain[0] and tagged[1] == plain[1] + bound
