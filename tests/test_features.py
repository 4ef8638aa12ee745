from __future__ import annotations

import pytest
import soundfile as sf
import torch

from selfpowered.errors import SelfPoweredError
from selfpowered.model.encoder import featurize
from selfpowered.model.feature_cache import DATA_FILE, INDEX_FILE, audio_key
from selfpowered.train.features import build_feature_cache, open_cache
from tests.helpers import tone
from tests.tiny import tiny_lsm


@pytest.fixture
def clips(tmp_path):
    paths = []
    for i, seconds in enumerate((1.0, 2.5, 0.7, 4.0)):
        path = tmp_path / "audio" / f"c{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, tone(seconds, 200 + 50 * i), 16_000)
        paths.append(path)
    return paths


def test_cache_holds_real_frame_encoder_states_in_fp16(clips, tmp_path):
    model = tiny_lsm().eval()
    stats = build_feature_cache(model.encoder, model.mel, clips + clips[:1], tmp_path / "cache", batch_size=3)
    assert stats == {"cached_before": 0, "encoded": 4, "total": 4, "seconds": stats["seconds"]}
    cache = open_cache(tmp_path / "cache", model.encoder, model.mel)
    for path in clips:
        states, lengths = model.encode(**featurize(model.mel, [path]))
        cached = cache.get(audio_key(path))
        assert cached.dtype == torch.float16 and cached.shape == (int(lengths[0]), 32)
        torch.testing.assert_close(cached.float(), states[0, : lengths[0]], atol=2e-2, rtol=1e-2)
    again = build_feature_cache(model.encoder, model.mel, clips, tmp_path / "cache")
    assert (again["cached_before"], again["encoded"]) == (4, 0)


def test_training_from_the_cache_matches_training_from_audio(clips, tmp_path):
    model = tiny_lsm().eval().to(torch.float32)
    build_feature_cache(model.encoder, model.mel, clips, tmp_path / "cache")
    cache = open_cache(tmp_path / "cache", model.encoder, model.mel)
    cached = [cache.get(audio_key(p)) for p in clips[:2]]
    kwargs = dict(instruction=["transcribe", "transcribe"], response=["a", "b"])
    from_cache = model(**model.processor(encoder_states=cached, **kwargs)).loss
    from_audio = model(**model.processor(audio=clips[:2], **kwargs)).loss
    torch.testing.assert_close(from_cache, from_audio, atol=2e-3, rtol=1e-3)


def test_a_cache_from_another_encoder_is_refused(clips, tmp_path):
    first = tiny_lsm()
    build_feature_cache(first.encoder, first.mel, clips[:1], tmp_path / "cache")
    torch.manual_seed(1)
    other = tiny_lsm()
    with pytest.raises(SelfPoweredError, match="built with encoder fingerprint"):
        open_cache(tmp_path / "cache", other.encoder, other.mel)


def test_an_interrupted_build_is_repaired(clips, tmp_path):
    model = tiny_lsm()
    build_feature_cache(model.encoder, model.mel, clips[:2], tmp_path / "cache")
    folder = tmp_path / "cache"
    with open(folder / DATA_FILE, "ab") as handle:  # data written, index line never came
        handle.write(b"\0" * 1000)
    with open(folder / INDEX_FILE, "a") as handle:  # and a torn index line
        handle.write('{"key": "/x", "off')
    stats = build_feature_cache(model.encoder, model.mel, clips, folder)
    assert (stats["cached_before"], stats["encoded"], stats["total"]) == (2, 2, 4)
    cache = open_cache(folder, model.encoder, model.mel)
    states, lengths = model.encode(**featurize(model.mel, [clips[3]]))
    torch.testing.assert_close(cache.get(audio_key(clips[3])).float(), states[0], atol=2e-2, rtol=1e-2)


@pytest.mark.assets
def test_features_cli_on_the_embedded_encoder(clips, tmp_path):
    import json
    import re

    from typer.testing import CliRunner

    from selfpowered.cli import app

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps({"id": p.stem, "audio": f"audio/{p.name}", "text": "x"}) + "\n" for p in clips)
    )
    result = CliRunner().invoke(app, ["features", str(manifest), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert re.search(r"encoded\s+4\n", result.output) and re.search(r"total\s+4\n", result.output)
    again = CliRunner().invoke(app, ["features", str(manifest), "--cache", str(tmp_path / "cache")])
    assert re.search(r"encoded\s+0\n", again.output) and re.search(r"cached_before\s+4\n", again.output)
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    bad = CliRunner().invoke(app, ["features", str(tmp_path / "bad.jsonl"), "--cache", str(tmp_path / "c2")])
    assert bad.exit_code == 2 and "bad.jsonl:1: no string field audio" in bad.output


@pytest.mark.assets
def test_features_cli_caches_decoder_states_one_per_decoded_token(librivox, tmp_path):
    """`--set speech_states=decoder`: the cache holds Whisper's decoder states, which its tied
    output layer reads back as the transcription, under a fingerprint of its own."""
    import json

    from typer.testing import CliRunner

    from selfpowered.assets import resolve_model
    from selfpowered.cli import app
    from selfpowered.model.encoder import SpeechEncoder

    (audio, text), *_ = librivox
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": str(audio), "text": text}) + "\n")
    args = ["features", str(manifest), "--cache", str(tmp_path / "decoder"), "--set", "speech_states=decoder"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    encoder = SpeechEncoder.from_pretrained(
        resolve_model("whisper-tiny.en", kind="encoder"), decoded_tokens_per_second=8.0
    )
    from selfpowered.audio import LogMelExtractor

    mel = LogMelExtractor.from_pretrained(resolve_model("whisper-tiny.en", kind="encoder"))
    states = open_cache(tmp_path / "decoder", encoder, mel).get(audio_key(audio)).float()
    tokens = (states @ encoder.decoder.whisper.embed_tokens.weight.T).argmax(dim=-1).tolist()
    from transformers import AutoTokenizer

    words = AutoTokenizer.from_pretrained(str(resolve_model("whisper-tiny.en", kind="encoder"))).decode(tokens)
    assert "john dashwood had then leisure" in words.lower()
    with pytest.raises(SelfPoweredError, match="fingerprint"):  # an encoder-frames cache is another cache
        open_cache(tmp_path / "decoder", SpeechEncoder.from_pretrained(resolve_model("whisper-tiny.en")), mel)
