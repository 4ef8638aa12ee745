from __future__ import annotations

import pytest
import torch

from selfpowered.errors import PromptFormatError
from selfpowered.model.prompting import (
    IGNORE_INDEX,
    SEGMENT_ANSWER,
    SEGMENT_HEARD,
    SEGMENT_PAD,
    SEGMENT_SPEECH,
    TRANSCRIPT_JOINER,
    PromptBuilder,
    fill_speech_slots,
    plan_layout,
    speech_slots,
    splice,
)
from tests.tiny import tiny_tokenizer


@pytest.fixture
def builder() -> PromptBuilder:
    return PromptBuilder(tiny_tokenizer())


def test_chat_template_places_speech_after_instruction(builder):
    pieces = builder.pieces("transcribe the speech", "he hoped")
    tok = builder.tokenizer
    assert tok.decode(pieces.prefix_ids) == "<|im_start|>user\ntranscribe the speech\n"
    assert tok.decode(pieces.suffix_ids) == "<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(pieces.answer_ids) == "he hoped<|im_end|>"  # answer + end-of-turn token only


def test_stop_tokens_include_end_of_turn(builder):
    assert builder.tokenizer.convert_tokens_to_ids("<|im_end|>") in builder.stop_token_ids()


def test_labels_cover_only_answer_and_end_token(builder):
    embed = torch.nn.Embedding(len(builder.tokenizer), 8)
    pieces = [builder.pieces("transcribe", "he hoped"), builder.pieces("translate the text", "the dog")]
    speech = [torch.randn(5, 8), torch.randn(9, 8)]
    batch = splice(pieces, speech, embed, padding_side="right")
    for i, (piece, sp) in enumerate(zip(pieces, speech)):
        n_prompt = len(piece.prefix_ids) + sp.shape[0] + len(piece.suffix_ids)
        row = batch.labels[i]
        assert (row[:n_prompt] == IGNORE_INDEX).all()
        assert row[n_prompt : n_prompt + len(piece.answer_ids)].tolist() == piece.answer_ids
        assert (row[n_prompt + len(piece.answer_ids) :] == IGNORE_INDEX).all()
        start = len(piece.prefix_ids)
        assert (batch.segments[i, start : start + sp.shape[0]] == SEGMENT_SPEECH).all()
        torch.testing.assert_close(batch.inputs_embeds[i, start : start + sp.shape[0]], sp)
        assert (batch.segments[i][row != IGNORE_INDEX] == SEGMENT_ANSWER).all()


def test_left_padding_for_generation_ends_prompts_together(builder):
    embed = torch.nn.Embedding(len(builder.tokenizer), 8)
    pieces = [builder.pieces("transcribe"), builder.pieces("translate the given english content")]
    batch = splice(pieces, [torch.randn(3, 8), torch.randn(3, 8)], embed, padding_side="left")
    short = batch.attention_mask[0]
    pad = int((short == 0).sum())
    assert pad > 0 and short[:pad].sum() == 0 and short[pad:].all()
    assert (batch.segments[0, :pad] == SEGMENT_PAD).all()
    assert batch.position_ids[0, pad:].tolist() == list(range(short.numel() - pad))
    assert (batch.labels == IGNORE_INDEX).all()  # nothing to learn at generation time


def test_text_mode_has_no_speech(builder):
    pieces = builder.pieces("what is the capital of france", with_speech=False)
    assert pieces.suffix_ids == []
    assert builder.tokenizer.decode(pieces.prefix_ids).endswith("<|im_start|>assistant\n")


def test_missing_chat_template_is_a_clear_error():
    with pytest.raises(PromptFormatError, match="prompt_format: vicuna_v1.1"):
        PromptBuilder(tiny_tokenizer(chat_template=False))


def test_vicuna_fallback_when_chosen():
    builder = PromptBuilder(tiny_tokenizer(chat_template=False), prompt_format="vicuna_v1.1")
    pieces = builder.pieces("transcribe", "he hoped")
    tok = builder.tokenizer
    assert tok.decode(pieces.prefix_ids).startswith("<s>A chat between a curious user")
    assert tok.decode(pieces.prefix_ids).endswith("USER: transcribe\n")
    assert tok.decode(pieces.suffix_ids) == " ASSISTANT:"
    assert tok.decode(pieces.answer_ids) == " he hoped<|im_end|>"


def test_placeholder_inside_instruction_is_rejected(builder):
    with pytest.raises(PromptFormatError, match="placeholder"):
        builder.pieces("say <speech> twice")


def test_fill_speech_slots_pads_to_each_rows_slots_and_masks_the_filler():
    speech = [torch.ones(2, 3), torch.zeros(0, 3), 2 * torch.ones(3, 3)]
    filled, keeps = fill_speech_slots(speech, None, [4, 0, 3])
    assert [f.shape[0] for f in filled] == [4, 0, 3]
    assert filled[0].tolist() == [[1.0] * 3, [1.0] * 3, [0.0] * 3, [0.0] * 3]
    assert [k.tolist() for k in keeps] == [[True, True, False, False], [], [True, True, True]]


def test_fill_speech_slots_keeps_an_earlier_mask_and_refuses_too_many():
    keep = torch.tensor([True, False])
    _, keeps = fill_speech_slots([torch.ones(2, 3)], [keep], [3])
    assert keeps[0].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="row 0: the connector made 3 speech embeddings for 2 slots"):
        fill_speech_slots([torch.ones(3, 3)], None, [2])


def test_speech_slots_counts_per_row():
    segments = torch.tensor([[1, SEGMENT_SPEECH, SEGMENT_SPEECH, 3], [SEGMENT_PAD, 1, SEGMENT_SPEECH, 3]])
    assert speech_slots(segments) == [2, 1]


def test_heard_words_are_the_cascades_prompt_token_for_token_then_the_slots():
    """A transcript-reading LSM's user turn is text_prompt(instruction, transcript) exactly, with
    its acoustic slots after the words: HEARD positions hold real ids, SPEECH slots hold 0."""
    from selfpowered.text.tasks import text_prompt

    builder = PromptBuilder(tiny_tokenizer(), joiner=TRANSCRIPT_JOINER)
    instruction, heard = "translate the given english content", "the quick brown fox, 12 dogs!"
    pieces = builder.pieces(instruction, "a reply", heard=heard)
    cascade = builder.pieces(text_prompt(instruction, heard), "a reply", with_speech=False)
    assert pieces.prefix_ids + pieces.heard_ids + pieces.suffix_ids == cascade.prefix_ids
    assert pieces.answer_ids == cascade.answer_ids
    layout = plan_layout([pieces, cascade], [3, 0])
    row = layout.segments[0].tolist()
    n_prefix, n_heard = len(pieces.prefix_ids), len(pieces.heard_ids)
    assert row[n_prefix : n_prefix + n_heard] == [SEGMENT_HEARD] * n_heard
    assert row[n_prefix + n_heard : n_prefix + n_heard + 3] == [SEGMENT_SPEECH] * 3
    assert layout.input_ids[0, n_prefix : n_prefix + n_heard].tolist() == pieces.heard_ids
    assert layout.input_ids[0, n_prefix + n_heard : n_prefix + n_heard + 3].tolist() == [0, 0, 0]
    assert SEGMENT_HEARD not in layout.segments[1].tolist()  # text mode hears nothing
    assert builder.pieces(instruction, heard="   ").heard_ids == []  # silence: no words, no space token
