"""`speech_tokens: ctc_posterior`: the LLM reads the CTC posterior's mixture of its own token
embeddings, with the slots greedy CTC drops masked out (model/ctc.py). Pinned by hand-made
inputs: the keep rule, the mixture, and the end-to-end property that a confident posterior gives
the LLM exactly what the embedded transcript would."""

from __future__ import annotations

import pytest
import torch

from selfpowered.errors import CheckpointError
from selfpowered.model import SpeechLM
from selfpowered.model.ctc import CTCHead, greedy_keep
from selfpowered.model.prompting import SEGMENT_SPEECH
from tests.helpers import batched_and_alone, tone
from tests.tiny import tiny_lsm

B = 9  # the blank class in these hand-made paths


def test_greedy_keep_drops_blanks_and_repeats_but_not_a_repeat_after_blank():
    best = torch.tensor([[4, 4, B, 4, 2, 2, B, 1], [B, B, 3, B, B, B, B, B]])
    assert greedy_keep(best, B).int().tolist() == [[1, 0, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 0, 0, 0]]


def test_posterior_tokens_mix_token_embeddings_without_the_blank_share():
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [-3.0, 2.0]])
    head = CTCHead(table, vocabulary=[0, 1, 3])  # token 2 is not in the CTC vocabulary
    with torch.no_grad():
        head.blank.copy_(torch.tensor([0.0, -1.0]))
    # scores h . [e0, e1, e3, blank]: log-probabilities we can write down by hand
    speech = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, -3.0]])
    mixture, keep = head.posterior_tokens(speech)
    probs = torch.softmax(speech @ torch.cat([table[[0, 1, 3]], head.blank[None]]).T, dim=-1)
    words = probs[:, :3] / probs[:, :3].sum(dim=-1, keepdim=True)
    torch.testing.assert_close(mixture, words @ table[[0, 1, 3]])
    # position 0: token 0 wins; 1: a tie, argmax takes the first (token 0, a repeat); 2: blank wins
    assert keep.tolist() == [True, False, False]


def _posterior_lsm(**overrides) -> SpeechLM:
    model = tiny_lsm(connector="stack_mlp", speech_tokens="ctc_posterior", connector_dropout=0.0, **overrides)
    return model.eval()


def test_masked_slots_follow_greedy_ctc_and_positions_stay_contiguous():
    model = _posterior_lsm()
    batch = model.processor(["transcribe", "transcribe"], audio=[tone(1.0), tone(2.0, 300)], padding_side="left")
    planned = batch["attention_mask"].clone()
    model.embed_inputs(batch)
    speech = batch["segments"] == SEGMENT_SPEECH
    log_probs = [model.ctc_head(s) for s in model.speech_embeddings(batch)]
    expected = torch.cat([greedy_keep(lp.argmax(dim=-1), model.ctc_head.blank_index) for lp in log_probs])
    assert torch.equal(batch["attention_mask"][speech].bool(), expected)
    assert torch.equal(batch["attention_mask"][~speech], planned[~speech])  # text and pads untouched
    for row in range(2):
        real = batch["attention_mask"][row].bool()
        assert batch["position_ids"][row][real].tolist() == list(range(int(real.sum())))


def test_a_confident_posterior_gives_the_llm_the_embedded_transcript():
    """With the head's scale very large the posterior is one-hot, so the LLM's last logits must equal
    those of the text prompt in which the speech is replaced by the greedy CTC tokens themselves."""
    model = _posterior_lsm()
    with torch.no_grad():
        model.ctc_head.log_scale.fill_(20.0)
    clip = tone(2.0, 220)
    batch = model.processor(["transcribe"], audio=[clip], padding_side="left")
    logits = model(**{k: v.clone() for k, v in batch.items()}).logits[0, -1]

    (speech,) = model.speech_embeddings(batch)
    tokens = model.ctc_head.greedy(model.ctc_head(speech[None]), torch.tensor([speech.shape[0]]))[0]
    assert tokens, "the random connector should emit at least one non-blank token"
    segments = batch["segments"][0]
    slots = (segments == SEGMENT_SPEECH).nonzero().flatten()
    ids = batch["input_ids"][0].tolist()
    text_ids = ids[: int(slots[0])] + tokens + ids[int(slots[-1]) + 1 :]
    embeds = model.llm.get_input_embeddings()(torch.tensor([text_ids]))
    reference = model.llm(inputs_embeds=embeds).logits[0, -1]
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)


def test_batched_generation_equals_one_by_one_in_posterior_mode():
    clips = [tone(1.0), tone(2.5, 330), tone(1.7, 180)]
    batched, alone = batched_and_alone(
        _posterior_lsm(), clips, ["transcribe", "continue the text", "transcribe the speech"]
    )
    assert batched == alone


def test_the_head_is_saved_inside_the_checkpoint(tmp_path):
    model = _posterior_lsm()
    with torch.no_grad():
        model.ctc_head.blank.normal_()
        model.ctc_head.log_scale.fill_(1.5)
    model.save_pretrained(tmp_path / "lsm")
    loaded = SpeechLM.from_pretrained(tmp_path / "lsm")
    assert loaded.config.speech_tokens == "ctc_posterior"
    torch.testing.assert_close(loaded.ctc_head.blank, model.ctc_head.blank)
    assert loaded.ctc_head.vocabulary == model.ctc_head.vocabulary
    batch = model.processor(["transcribe"], audio=[tone(1.5)])
    torch.testing.assert_close(loaded(**dict(batch)).logits, model(**dict(batch)).logits)


def test_a_posterior_config_over_weights_without_a_head_is_a_clear_error(tmp_path):
    plain = tiny_lsm(connector="stack_mlp")
    plain.save_pretrained(tmp_path / "lsm")
    config = tmp_path / "lsm" / "config.json"
    config.write_text(config.read_text().replace('"speech_tokens": "connector"', '"speech_tokens": "ctc_posterior"'))
    with pytest.raises(CheckpointError, match="no ctc_head"):
        SpeechLM.from_pretrained(tmp_path / "lsm")
