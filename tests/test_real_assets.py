"""The embedded real models: conversions are exact enough to work on real speech and text."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from selfpowered.model import SpeechLM
from selfpowered.model.hearing import WhisperHearing
from selfpowered.text.metrics import word_error_rate

pytestmark = pytest.mark.assets


@pytest.fixture(scope="module")
def lsm() -> SpeechLM:
    torch.manual_seed(0)
    return SpeechLM.build()  # whisper-tiny.en + smollm2-135m-instruct, window Q-Former, LoRA


def test_converted_whisper_transcribes_real_human_speech(librivox):
    transcriber = WhisperHearing("whisper-tiny.en")
    hypotheses = transcriber.transcribe([path for path, _ in librivox])
    result = word_error_rate([text for _, text in librivox], hypotheses)
    print(f"whisper-tiny.en on 5 LibriVox clips: WER {result.wer:.3f}", hypotheses)
    assert result.wer <= 0.10
    assert "dashwood" in hypotheses[0].lower()


def test_smollm2_answers_through_its_chat_template(lsm):
    answer = lsm.generate(text="What is the capital of France? Answer with one word.", max_new_tokens=10)
    assert "paris" in answer.lower()


def test_real_speechlm_forward_backward_generate(lsm, librivox):
    clip, transcript = librivox[1]
    out = lsm(**lsm.processor(["Transcribe the speech"], audio=[clip], response=[transcript]))
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    assert lsm.connector.output_proj.weight.grad.abs().sum() > 0
    lora_grads = [p.grad for n, p in lsm.llm.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert all(p.grad is None for p in lsm.encoder.parameters())
    lsm.zero_grad()
    (speech,) = lsm.embed_speech([clip])
    frames = (sf.info(str(clip)).frames // 160 + 1) // 2  # 100 mel frames/s, conv stride 2
    assert speech.shape == (-(-frames // 17), 576)  # one token per 17-frame (1/3 s) window, LLM width
    answer = lsm.generate(audio=clip, instruction="Transcribe the speech", max_new_tokens=8)
    assert isinstance(answer, str)  # untrained connector: it babbles, but it runs end to end


def test_lora_starts_as_the_identity(lsm):
    prompt = "Rewrite this sentence more formally: gonna go home now"
    assert lsm.generate(text=prompt, max_new_tokens=12) == lsm.generate(
        text=prompt, max_new_tokens=12, use_adapter=False
    )


def test_real_checkpoint_is_small_and_round_trips(lsm, tmp_path):
    lsm.save_pretrained(tmp_path / "ckpt")
    size = sum(p.stat().st_size for p in (tmp_path / "ckpt").rglob("*") if p.is_file())
    connector_bytes = 4 * sum(p.numel() for p in lsm.connector.parameters())
    # connector + adapter + tokenizer; the 0.5 GB of base weights are referenced, not copied
    assert size < connector_bytes + 10e6
    assert not (tmp_path / "ckpt" / "llm").exists() and not (tmp_path / "ckpt" / "encoder").exists()
    loaded = SpeechLM.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.encoder_name_or_path == "whisper-tiny.en"
    for key, value in lsm.connector.state_dict().items():
        assert torch.equal(value, loaded.connector.state_dict()[key])
