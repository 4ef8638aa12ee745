from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from selfpowered.config import AlignConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.model import SpeechLM
from selfpowered.model.ctc import CTCHead, ctc_vocabulary
from selfpowered.train.align import STATE_FILE, align
from tests.helpers import tone
from tests.tiny import tiny_llama_config, tiny_lsm, tiny_tokenizer


def test_vocabulary_has_no_capitals_or_specials():
    model = tiny_lsm()
    vocabulary = ctc_vocabulary(model.tokenizer)
    assert vocabulary and not set(vocabulary) & set(model.tokenizer.all_special_ids)
    assert all(not any(c.isupper() for c in model.tokenizer.decode([t])) for t in vocabulary)


def test_greedy_ctc_decoding_merges_repeats_and_drops_blanks():
    head = CTCHead(torch.randn(10, 4), vocabulary=[3, 5, 7])
    blank = head.blank_index
    path = torch.tensor([[0, 0, blank, 0, 2, 2, blank, 1]])
    log_probs = torch.nn.functional.one_hot(path, 4).float().log()
    assert head.greedy(log_probs, torch.tensor([8])) == [[3, 3, 7, 5]]
    assert head.greedy(log_probs, torch.tensor([2])) == [[3]]


def _tiny_align_setup(tmp_path, **settings) -> AlignConfig:
    """Eight tones spelling two sentences, a tiny stack-MLP LSM to start from, an AlignConfig."""
    rows = []
    for i in range(8):
        sf.write(tmp_path / f"u{i}.wav", tone(1.5, 150 + 40 * i), 16_000)
        text = ["the quick brown fox", "the lazy dog"][i % 2]
        rows.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": text, "duration": 1.5})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {
        "init_from": str(tmp_path / "init"),
        "train": [str(tmp_path / "m.jsonl")],
        "feature_cache": str(tmp_path / "cache"),
        "lr": 1e-2,
        "warmup_steps": 2,
        "token_budget": 400,
        "max_batch": 3,  # 3 batches an epoch: the kill lands inside an epoch
        "logging_steps": 1,
    }
    return AlignConfig.model_validate({**base, **settings})


def test_align_resumed_after_a_kill_ends_exactly_where_an_unbroken_run_ends(tmp_path, monkeypatch):
    # dropout and masking on: the resumed run must continue their random draws too
    tiny_lsm(connector="stack_mlp", connector_dropout=0.2).save_pretrained(tmp_path / "init")
    masking = {"time_masks": 1, "time_width": 0.1}
    unbroken = align(_tiny_align_setup(tmp_path, output=str(tmp_path / "a"), steps=8, save_steps=3, masking=masking))

    calls = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_

    def killed_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # steps 4 and 5 are lost: the last state is step 3's
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    config = _tiny_align_setup(tmp_path, output=str(tmp_path / "b"), steps=8, save_steps=3, masking=masking)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        align(config)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    assert not (tmp_path / "b" / "final").exists() and (tmp_path / "b" / STATE_FILE).is_file()
    resumed = align(config, resume=True)

    assert resumed["log"] == unbroken["log"] and resumed["epochs"] == unbroken["epochs"] == 3
    assert resumed["resumed_at_step"] == 3 and unbroken["resumed_at_step"] is None
    a = SpeechLM.from_pretrained(tmp_path / "a" / "final").connector.state_dict()
    b = SpeechLM.from_pretrained(tmp_path / "b" / "final").connector.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_align_resume_refuses_a_state_written_under_other_settings(tmp_path):
    tiny_lsm(connector="stack_mlp").save_pretrained(tmp_path / "init")
    align(_tiny_align_setup(tmp_path, output=str(tmp_path / "a"), steps=2))
    with pytest.raises(
        SelfPoweredError, match=r"align_state.pt: written by an align run with other settings \(lr, steps\)"
    ):
        align(_tiny_align_setup(tmp_path, output=str(tmp_path / "a"), steps=4, lr=1e-3), resume=True)
    # what only changes logging may differ
    assert align(_tiny_align_setup(tmp_path, output=str(tmp_path / "a"), steps=2, logging_steps=2), resume=True)


def test_align_lowers_ctc_loss_and_saves_a_speechlm(tmp_path):
    tiny_lsm(connector="stack_mlp", connector_dropout=0.0).save_pretrained(tmp_path / "init")
    rows = []
    for i in range(8):
        sf.write(tmp_path / f"u{i}.wav", tone(1.5, 150 + 40 * i), 16_000)
        rows.append(
            {
                "id": f"u{i}",
                "audio": f"u{i}.wav",
                "text": ["the quick brown fox", "the lazy dog"][i % 2],
                "duration": 1.5,
            }
        )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = AlignConfig.model_validate(
        {
            "output": str(tmp_path / "align"),
            "init_from": str(tmp_path / "init"),
            "train": [str(tmp_path / "m.jsonl")],
            "dev": [str(tmp_path / "m.jsonl")],
            "feature_cache": str(tmp_path / "cache"),
            "steps": 60,
            "lr": 1e-2,
            "warmup_steps": 5,
            "token_budget": 400,
            "max_batch": 4,
            "logging_steps": 5,
        }
    )
    summary = align(config)
    losses = [entry["loss"] for entry in summary["log"]]
    assert losses[-1] < 0.5 * losses[0]
    assert summary["dev_ctc_wer"] < 1.0  # it learned to spell at least part of the two sentences
    aligned = SpeechLM.from_pretrained(tmp_path / "align" / "final")
    initial = SpeechLM.from_pretrained(tmp_path / "init")
    assert not torch.equal(aligned.connector.mlp[0].weight, initial.connector.mlp[0].weight)

    # the eval's `ctc` analysis reads the head align saved beside final/ and measures the same thing
    # from the audio (no feature cache); an LSM with no head says so instead of a number
    from transformers import LlamaForCausalLM

    from selfpowered.config import EvalConfig
    from selfpowered.evaluate.run import evaluate

    tokenizer = tiny_tokenizer()  # the eval's text-mode LLM (the baselines'; none is asked here)
    LlamaForCausalLM(tiny_llama_config(len(tokenizer))).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    settings = EvalConfig(
        models=[f"aligned={tmp_path / 'align' / 'final'}", f"init={tmp_path / 'init'}"],
        baselines=[],
        suites=["ctc"],
        data=str(tmp_path / "m.jsonl"),
        output=str(tmp_path / "eval"),
        limit=8,
        llm=str(tmp_path / "llm"),
    )
    results = evaluate(settings)
    measured = results["systems"]["aligned"]["ctc"]
    assert measured["in-domain"]["n"] == 8
    assert measured["in-domain"]["ctc_wer"] == pytest.approx(summary["dev_ctc_wer"], abs=1e-3)
    assert results["systems"]["init"]["ctc"] == {"head": None}
    assert "| aligned | " in (tmp_path / "eval" / "report.md").read_text()
    assert evaluate(settings)["systems"]["aligned"]["ctc"] == measured  # from the cache


def test_masking_zeroes_spans_of_frames_and_channels_and_is_seeded():
    import torch

    from selfpowered.config import MaskingConfig
    from selfpowered.train.masking import mask_states

    states, lengths = torch.ones(2, 100, 32), torch.tensor([100, 40])
    off = MaskingConfig()
    assert mask_states(states, lengths, off, torch.Generator().manual_seed(0)) is states
    config = MaskingConfig(time_masks=2, time_width=0.1, channel_masks=1, channel_width=4)
    first = mask_states(states, lengths, config, torch.Generator().manual_seed(0))
    again = mask_states(states, lengths, config, torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and not torch.equal(first, states)
    masked_frames = (first[0].sum(dim=1) == 0).sum()
    assert masked_frames <= 2 * 10  # at most two spans of 10% of 100 frames
    masked_channels = (first[0].sum(dim=0) == 0).sum()
    assert masked_channels <= 4
    short = (first[1].sum(dim=1) == 0).nonzero().flatten()
    assert short.numel() == 0 or short.max() < 40 + 4  # spans start inside the utterance's 40 frames


def test_align_scores_dev_files_whose_audio_it_caches_itself(tmp_path):
    """Dev audio not in the training files and not cached beforehand: align encodes it with the
    rest and scores each dev file (once failed at the end: a cache handle opened before the dev
    files were encoded did not know them)."""
    tiny_lsm(connector="stack_mlp", connector_dropout=0.0).save_pretrained(tmp_path / "init")
    dev = []
    for name, text in (("d0", "the lazy dog"), ("d1", "the quick brown fox")):
        sf.write(tmp_path / f"{name}.wav", tone(1.2, 500), 16_000)
        (tmp_path / f"{name}.jsonl").write_text(
            json.dumps({"id": name, "audio": f"{name}.wav", "text": text, "duration": 1.2}) + "\n"
        )
        dev.append(str(tmp_path / f"{name}.jsonl"))
    config = _tiny_align_setup(tmp_path, output=str(tmp_path / "align"), steps=3, dev=dev)
    summary = align(config)
    assert set(summary["dev_ctc_wer_per_file"]) == set(dev) and 0 <= summary["dev_ctc_wer"]
