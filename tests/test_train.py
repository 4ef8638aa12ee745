from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import soundfile as sf
import torch

from selfpowered.config import TrainConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.model import SpeechLM
from selfpowered.train.data import TokenBudgetBatchSampler, read_samples
from selfpowered.train.trainer import train
from tests.helpers import tone
from tests.tiny import tiny_lsm

RESPONSES = ["he hoped for stew", "the dog slept", "close the window", "a question about bread"]


@pytest.fixture
def workspace(tmp_path):
    """A bundled tiny checkpoint and a samples file of 12 real (tone) clips."""
    tiny_lsm(connector_dropout=0.0, lora_dropout=0.0).save_pretrained(tmp_path / "init")
    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(12):
        seconds = 0.8 + 0.3 * (i % 5)
        sf.write(tmp_path / "audio" / f"u{i}.wav", tone(seconds, 180 + 20 * i), 16_000)
        rows.append(
            {
                "id": f"u{i}#asr",
                "audio": f"audio/u{i}.wav",
                "instruction": "transcribe",
                "response": RESPONSES[i % 4],
                "transcript": RESPONSES[i % 4],
                "duration": seconds,
            }
        )
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def make_config(workspace, **optim) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "output": str(workspace / "run"),
            "init_from": str(workspace / "init"),
            "data": {"train": [str(workspace / "train.jsonl")], "feature_cache": str(workspace / "cache")},
            "optim": {
                "max_steps": 8,
                "token_budget": 200,
                "max_batch": 4,
                "lr_connector": 3e-3,
                "lr_llm": 3e-3,
                "schedule": "constant",
                **optim,
            },
            "save_steps": 4,
            "logging_steps": 1,
        }
    )


def test_train_logs_saves_and_lowers_the_loss(workspace):
    summary = train(make_config(workspace))
    assert summary["steps"] == 8
    losses = [entry["loss"] for entry in summary["log"]]
    assert len(losses) == 8 and losses[-1] < losses[0]
    run = workspace / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert not list(run.glob(".staging-*"))  # checkpoints were renamed into place
    card = json.loads((run / "final" / "card.json").read_text())  # what made this checkpoint
    assert [entry["lines"] for entry in card["training_data"]] == [12] and card["steps"] == 8
    assert len(card["training_data"][0]["sha256"]) == 64 and card["recipe"]["optim"]["max_steps"] == 8
    trained = SpeechLM.from_pretrained(run / "final")
    initial = SpeechLM.from_pretrained(workspace / "init")
    assert not torch.equal(trained.connector.output_proj.weight, initial.connector.output_proj.weight)
    assert (run / "train_summary.json").is_file() and (run / "train_config.yaml").is_file()


def test_resume_continues_exactly(workspace):
    straight = train(make_config(workspace))
    reference = SpeechLM.from_pretrained(workspace / "run" / "final").state_dict()
    # a second run stopped after the first checkpoint, then resumed to the end
    config = make_config(workspace)
    config.output = str(workspace / "run2")
    config.optim.max_steps = 4
    train(config)
    config.optim.max_steps = 8
    resumed = train(config, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-4")
    assert [e["loss"] for e in resumed["log"]][-4:] == pytest.approx(
        [e["loss"] for e in straight["log"]][-4:], rel=1e-4
    )
    state = SpeechLM.from_pretrained(workspace / "run2" / "final").state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=1e-4)


def test_bad_training_data_errors(workspace):
    (workspace / "empty.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(SelfPoweredError, match="no usable training samples"):
        read_samples(workspace / "empty.jsonl")
    rejects = (workspace / "empty.train-rejects.jsonl").read_text()
    assert "missing or empty field(s)" in rejects
    with pytest.raises(SelfPoweredError, match="training file not found"):
        read_samples(workspace / "none.jsonl")


def test_token_budget_batches():
    lengths = [10, 50, 20, 40, 30, 60, 15, 25]
    sampler = TokenBudgetBatchSampler(lengths, token_budget=100, max_batch=3, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 100 for b in batches)
    sampler.set_epoch(1)
    assert sorted(i for b in sampler for i in b) == list(range(8))
    with pytest.raises(SelfPoweredError, match="below the longest sample"):
        TokenBudgetBatchSampler(lengths, token_budget=50)


def test_two_process_cpu_ddp_with_accelerate_launch(workspace):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    config = make_config(workspace, max_steps=4)
    config_path = workspace / "train.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    accelerate_config = Path(__file__).parent.parent / "configs" / "accelerate" / "cpu_ddp.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(accelerate_config),
            "-m",
            "selfpowered.cli",
            "train",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(r"^  steps\s+4$", result.stdout, flags=re.M)) == 2  # one summary per process
    summary = json.loads((workspace / "run" / "train_summary.json").read_text())
    steps_per_epoch = -(-summary["batches_per_epoch"] // 2)  # the batches are shared by 2 processes
    assert summary["log"][0]["epoch"] == pytest.approx(1 / steps_per_epoch)
    trained = SpeechLM.from_pretrained(workspace / "run" / "final")  # the same kind of checkpoint
    assert trained.config.finetune == "lora"
    assert sorted(p.name for p in (workspace / "run").glob("checkpoint-*")) == ["checkpoint-4"]
    saved = {p.name for p in (workspace / "run" / "checkpoint-4").iterdir()}
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "model.safetensors"} <= saved


def test_sigkilled_training_resumes_to_the_same_model(workspace):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    def run(config, extra=()):
        path = workspace / f"{Path(config.output).name}.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        return [sys.executable, "-m", "selfpowered.cli", "train", str(path), *extra]

    reference = make_config(workspace, max_steps=12)
    reference.save_steps = 2
    subprocess.run(run(reference), check=True, capture_output=True, timeout=600)

    killed = make_config(workspace, max_steps=12)
    killed.save_steps = 2
    killed.output = str(workspace / "killed")
    process = subprocess.Popen(run(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (workspace / "killed" / "checkpoint-4").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (workspace / "killed" / "final").exists(), "the run should have been killed before the end"
    subprocess.run(run(killed, ["--resume"]), check=True, capture_output=True, timeout=600)
    summary = json.loads((workspace / "killed" / "train_summary.json").read_text())
    assert summary["resumed_from"] and summary["steps"] == 12
    expected = SpeechLM.from_pretrained(workspace / "run" / "final").state_dict()
    got = SpeechLM.from_pretrained(workspace / "killed" / "final").state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, atol=1e-5, rtol=1e-4)


def test_missing_init_checkpoint_says_how_to_make_it(workspace):
    config = make_config(workspace)
    config.init_from = str(workspace / "not-aligned-yet")
    with pytest.raises(SelfPoweredError, match="selfpowered align configs/align-demo.yaml"):
        train(config)


def test_distillation_kl_is_zero_for_the_same_distribution_and_scales_with_temperature():
    from selfpowered.train.losses import distillation_kl

    logits = torch.randn(5, 11)
    assert distillation_kl(logits, logits, 2.0).abs() < 1e-6
    other = torch.randn(5, 11)
    assert distillation_kl(logits, other, 1.0) > 0
    with pytest.raises(ValueError, match="answer positions differ"):
        distillation_kl(logits, torch.randn(4, 11), 1.0)


def test_kl_and_ctc_losses_train_together_and_are_logged(workspace):
    from selfpowered.model.ctc import HEAD_FILE, CTCHead, ctc_vocabulary

    model = SpeechLM.from_pretrained(workspace / "init")
    CTCHead(model.llm.get_input_embeddings().weight, ctc_vocabulary(model.tokenizer)).save(workspace / HEAD_FILE)
    config = make_config(workspace, max_steps=4)
    config.loss = config.loss.model_copy(update={"kl": 0.5, "ctc": 0.3})
    summary = train(config)
    parts = [entry for entry in summary["log"] if "loss_kl" in entry]
    assert len(parts) == 4 and all(e["loss_kl"] >= 0 and e["loss_ctc"] >= 0 and e["loss_ce"] > 0 for e in parts)
    # (CTC is 0 where a tone clip has fewer speech tokens than its transcript: zero_infinity)
    assert any(e["loss_kl"] > 0 for e in parts) and any(e["loss_ctc"] > 0 for e in parts)
    # the logged loss is the weighted sum of its parts
    first = parts[0]
    assert first["loss"] == pytest.approx(first["loss_ce"] + 0.5 * first["loss_kl"] + 0.3 * first["loss_ctc"], rel=0.05)


def test_loss_options_that_cannot_work_are_clear_errors(workspace):
    config = make_config(workspace)
    config.loss = config.loss.model_copy(update={"ctc": 1.0})
    with pytest.raises(SelfPoweredError, match="CTC head"):
        train(config)
    tiny_lsm(finetune="full").save_pretrained(workspace / "full")
    config = make_config(workspace)
    config.init_from, config.loss = str(workspace / "full"), config.loss.model_copy(update={"kl": 1.0})
    with pytest.raises(SelfPoweredError, match="finetune: lora"):
        train(config)


def test_a_zero_connector_learning_rate_freezes_it_and_the_llm_still_learns(workspace):
    summary = train(make_config(workspace, lr_connector=0, max_steps=4))
    trained = SpeechLM.from_pretrained(workspace / "run" / "final")
    initial = SpeechLM.from_pretrained(workspace / "init")
    for key, value in initial.connector.state_dict().items():
        assert torch.equal(trained.connector.state_dict()[key], value), key
    lora = {k: v for k, v in trained.llm.state_dict().items() if "lora_B" in k}
    assert lora and any(v.abs().sum() > 0 for v in lora.values())  # lora_B starts at zero
    assert summary["steps"] == 4


def test_nothing_to_train_is_a_clear_error(workspace):
    tiny_lsm(finetune="frozen").save_pretrained(workspace / "frozen")
    config = make_config(workspace, lr_connector=0)
    config.init_from = str(workspace / "frozen")
    with pytest.raises(SelfPoweredError, match="nothing to train"):
        train(config)


@pytest.mark.assets
def test_a_transcript_lsm_trains_its_slots_on_what_whisper_heard_with_the_llm_frozen(workspace, tiny_llm):
    """speech_tokens: transcript: Whisper hears each training clip once into the hearing cache, the
    data loader reads transcript and states from it, and only the utterance Q-Former learns."""
    small = dict(qformer_hidden_size=32, qformer_heads=4, qformer_ffn_size=64, utterance_queries=4)
    fresh = SpeechLM.build(
        "whisper-tiny.en", str(tiny_llm), speech_tokens="transcript", connector="utterance_qformer",
        finetune="frozen", connector_dropout=0.0, **small,
    )  # fmt: skip
    fresh.save_pretrained(workspace / "init-transcript")
    config = make_config(workspace)  # the LLM is frozen by the model's finetune: frozen
    config.init_from = str(workspace / "init-transcript")
    summary = train(config)
    losses = [entry["loss"] for entry in summary["log"]]
    assert summary["steps"] == 8 and losses[-1] < losses[0]
    index = (workspace / "cache" / "index.jsonl").read_text().splitlines()
    assert len(index) == 12 and all('"text"' in line for line in index)  # each clip heard once
    trained = SpeechLM.from_pretrained(workspace / "run" / "final")
    assert not torch.equal(trained.connector.queries, fresh.connector.queries)
    for name, value in fresh.llm.state_dict().items():  # the LLM is the base LLM, untouched
        torch.testing.assert_close(trained.llm.state_dict()[name], value)
    again = train(config)  # a second run hears nothing: everything is in the cache
    assert again["steps"] == 8
