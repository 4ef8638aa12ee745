"""Whisper hears each clip once (model/hearing.py): alone or batched alike, cached in memory and on
disk by the samples' digest, shared by every model that listens; and an LSM that reads Whisper's
transcript with nothing else (connector: none, LLM as it is) is the cascade, token for token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfpowered.model.engine import Request, generate_all
from selfpowered.model.hearing import WhisperHearing, audio_digest
from selfpowered.model.served import ServedModel
from selfpowered.model.whisper_decoder import decoded_token_bound
from selfpowered.text.tasks import text_prompt
from tests.helpers import tone
from tests.tiny import tiny_lsm

pytestmark = pytest.mark.assets


@pytest.fixture(scope="module")
def hearing() -> WhisperHearing:
    return WhisperHearing("whisper-tiny.en")


def test_a_clip_is_heard_the_same_alone_or_in_a_batch(librivox):
    clips = [path for path, _ in librivox]
    together = WhisperHearing("whisper-tiny.en").hear(clips, batch_size=5)
    alone = [WhisperHearing("whisper-tiny.en").hear([clip])[0] for clip in clips]
    for a, b in zip(together, alone):
        assert a.text == b.text and a.tokens == b.tokens
        np.testing.assert_array_equal(a.states, b.states)
    assert "dashwood" in together[0].text.lower()
    # the states are the encoder's last layer over the real frames: 50 a second
    assert abs(together[0].states.shape[0] - together[0].seconds * 50) <= 1
    assert together[0].states.shape[1] == 384 and together[0].states.dtype == np.float16


def test_each_clip_is_decoded_once_in_memory_and_on_disk(librivox, tmp_path):
    from selfpowered.audio import load_audio

    clips = [path for path, _ in librivox[:3]]
    first = WhisperHearing("whisper-tiny.en", cache_dir=tmp_path / "hearing")
    heard = first.hear(clips + [clips[0]])  # the same clip twice in one call
    assert first.decoded == 3 and heard[0] == heard[3]
    samples = load_audio(clips[1])  # the same audio as an array: the same key, nothing decoded
    assert first.hear([samples])[0].text == heard[1].text and first.decoded == 3
    assert audio_digest(samples) == first.hear_keyed([clips[1]])[0][0]
    again = WhisperHearing("whisper-tiny.en", cache_dir=tmp_path / "hearing")  # another process
    reread = again.hear(clips)
    assert again.decoded == 0
    assert [h.text for h in reread] == [h.text for h in heard[:3]]
    assert [h.tokens for h in reread] == [h.tokens for h in heard[:3]]
    np.testing.assert_array_equal(reread[2].states, heard[2].states)
    assert all(h.cost > 0 for h in reread)  # the time hearing took travels with it


def test_decoding_stops_at_the_bound_of_the_clips_length(hearing):
    rng = np.random.default_rng(0)
    babble = (0.3 * rng.standard_normal(16_000)).astype(np.float32)  # 1 s of noise: Whisper may loop
    heard = hearing.hear([babble, tone(0.5)])
    for clip in heard:
        assert len(clip.tokens) <= decoded_token_bound(int(clip.seconds * 50), hearing.tokens_per_second)


def test_a_transcript_lsm_with_nothing_else_is_the_cascade_token_for_token(librivox, hearing):
    """Same prompt ids, same greedy answers: an LSM that reads Whisper's words alone starts exactly
    where the cascade is, so whatever training adds is measured against the cascade itself."""
    lsm = tiny_lsm(speech_tokens="transcript", connector="none", finetune="frozen").eval()
    lsm.use_hearing(hearing)
    clips = [path for path, _ in librivox[:3]]
    instructions = ["transcribe the speech", "translate the given english content", "the quick brown fox"]
    batch = lsm.prepare(instructions, clips, padding_side="left")
    for row, (clip, instruction) in enumerate(zip(clips, instructions)):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        cascade = lsm.prompt.pieces(text_prompt(instruction, hearing.hear([clip])[0].text), with_speech=False)
        assert ids == cascade.prefix_ids
    from selfpowered.audio import load_audio

    audio = [load_audio(clip) for clip in clips]
    decoded_before = hearing.decoded
    as_lsm = ServedModel.from_lsm("lsm", lsm, hearing=hearing)
    as_cascade = ServedModel.cascade("cascade", hearing, lsm.llm, lsm.tokenizer, lsm.prompt)

    def answers(served):
        requests = [Request(served.name, text, a, max_tokens=8) for text, a in zip(instructions, audio)]
        return [(r.text, r.transcript) for r in generate_all(served, requests)]

    with torch.no_grad():
        assert answers(as_lsm) == answers(as_cascade)
    assert hearing.decoded == decoded_before  # heard once already, by `prepare` above: never again
