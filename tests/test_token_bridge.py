"""`speech_tokens: whisper_text`: the LLM reads its own embeddings of the text Whisper's decoder
wrote, re-tokenised through the two tokenizers (model/token_bridge.py). Pinned by hand-made
tables and inputs; end to end, a fresh bridge must give the LLM exactly the prompt in which the
speech is replaced by the LLM tokens of Whisper's text, and on real weights those tokens must
spell what Whisper itself heard."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfpowered.config import ModelConfig
from selfpowered.model import SpeechLM
from selfpowered.model.encoder import featurize
from selfpowered.model.prompting import SEGMENT_SPEECH
from selfpowered.model.token_bridge import TokenBridge, llm_pieces
from tests.helpers import batched_and_alone, tone
from tests.tiny import tiny_lsm, tiny_tokenizer


def _hand_bridge() -> TokenBridge:
    # Whisper token 0 -> [5]; 1 -> [7, 8, 9]; 2 -> nothing; 3 -> [4, 4]
    return TokenBridge(torch.tensor([5, 7, 8, 9, 4, 4]), torch.tensor([0, 1, 4, 4, 6]))


def test_pieces_follow_the_ragged_table_in_order():
    pieces, owner, within = _hand_bridge().pieces(torch.tensor([1, 0, 2, 3, 1]))
    assert pieces.tolist() == [7, 8, 9, 5, 4, 4, 7, 8, 9]
    assert owner.tolist() == [0, 0, 0, 1, 3, 3, 4, 4, 4]
    assert within.tolist() == [0, 1, 2, 0, 0, 1, 0, 1, 2]
    with pytest.raises(ValueError, match="outside the bridge's 4 tokens"):
        _hand_bridge().pieces(torch.tensor([4]))


def test_each_piece_gets_its_token_s_connector_output_through_the_gate():
    bridge = _hand_bridge()
    embed = nn.Embedding(10, 2)
    with torch.no_grad():
        embed.weight.copy_(torch.arange(20.0).reshape(10, 2))
        bridge.gate.fill_(0.5)
    # k = 2 connector outputs per decoded token: the first token's are 100, 200; the second's 300, 400
    residual = [torch.tensor([[100.0, 0], [200, 0], [300, 0], [400, 0]])]
    (out,) = bridge(torch.tensor([[3, 1]]), torch.tensor([2]), residual, embed)
    expected = embed.weight[[4, 4, 7, 8, 9]] + 0.5 * torch.tensor([[100.0, 0], [200, 0], [300, 0], [400, 0], [400, 0]])
    torch.testing.assert_close(out, expected)  # a token's pieces past k share its last output


def test_an_unbuilt_table_is_a_clear_error():
    with pytest.raises(ValueError, match="never built"):
        TokenBridge.unbuilt()(
            torch.zeros(1, 1, dtype=torch.long), torch.tensor([1]), [torch.zeros(2, 3)], nn.Embedding(2, 3)
        )


def test_byte_level_tokens_keep_partial_characters_exact():
    tokenizer = tiny_tokenizer()
    # "café": Whisper may split é's two UTF-8 bytes (Ã, ©) across tokens
    pieces = llm_pieces(["Ġthe", "Ġquick", "Ġcaf", "Ã", "©"], tokenizer)
    assert pieces[0] == tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert pieces[1] == tokenizer(" quick", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(pieces[2] + pieces[3] + pieces[4]) == " café"


def test_other_tokenizers_get_the_decoded_text():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level.train_from_iterator(["the quick brown fox"], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]")
    assert llm_pieces(["Ġquick", "Ġfox"], tokenizer) == [
        [tokenizer.convert_tokens_to_ids("quick")],
        [tokenizer.convert_tokens_to_ids("fox")],
    ]


# tiny decoding Whisper: text tokens 0..39; these strings stand in for its vocabulary
WORDS = ["Ġthe", "Ġquick", "Ġbrown", "Ġfox", "Ġjumps", "Ġover", "Ġlazy", "Ġdog", "Ġstew", "Ġcarrots"] * 4


def _bridge_lsm(**overrides) -> SpeechLM:
    settings = dict(connector="stack_mlp", stack_factor=1, tokens_per_stack=2, connector_dropout=0.0)
    settings.update(overrides)
    model = tiny_lsm(speech_states="decoder", speech_tokens="whisper_text", **settings)
    with torch.no_grad():  # a random decoder picks the end token early or never: make it talk a while
        model.encoder.decoder.whisper.embed_tokens.weight[40] *= 0.2
    model.token_bridge = TokenBridge.from_tokenizers(WORDS, model.tokenizer)
    return model.eval()


def test_a_fresh_bridge_gives_the_llm_the_embedded_whisper_text():
    """Gate 0: the LLM's logits must equal those of the text prompt in which the speech slots are
    replaced by the LLM tokens of what the decoder wrote (the masked slots are invisible)."""
    model = _bridge_lsm()
    clip = tone(1.5)
    batch = model.processor(["transcribe"], audio=[clip], padding_side="left")
    logits = model(**{k: v.clone() for k, v in batch.items()}).logits[0, -1]

    states, lengths = model.encode(**featurize(model.mel, [clip]))
    tokens = model.encoder.decoder.read_tokens(states, lengths)[0, : int(lengths[0])]
    assert tokens.numel() > 0, "the random decoder should write at least one token"
    pieces = model.token_bridge.pieces(tokens)[0].tolist()
    spelled = [model.tokenizer(" " + WORDS[t][1:], add_special_tokens=False)["input_ids"] for t in tokens.tolist()]
    assert pieces == [i for word in spelled for i in word]
    slots = (batch["segments"][0] == SEGMENT_SPEECH).nonzero().flatten()
    ids = batch["input_ids"][0].tolist()
    text_ids = ids[: int(slots[0])] + pieces + ids[int(slots[-1]) + 1 :]
    reference = model.llm(inputs_embeds=model.llm.get_input_embeddings()(torch.tensor([text_ids]))).logits[0, -1]
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)


def test_batched_generation_equals_one_by_one_with_the_bridge():
    model = _bridge_lsm()
    with torch.no_grad():
        model.token_bridge.gate.fill_(0.7)  # the connector's share too
    clips = [tone(1.0), tone(2.5, 330), tone(1.7, 180)]
    batched, alone = batched_and_alone(model, clips, ["transcribe", "continue the text", "transcribe the speech"])
    assert batched == alone


def test_a_bridge_checkpoint_carries_its_table_and_gate(tmp_path):
    model = _bridge_lsm()
    with torch.no_grad():
        model.token_bridge.gate.fill_(0.3)
    model.save_pretrained(tmp_path / "lsm")
    loaded = SpeechLM.from_pretrained(tmp_path / "lsm")  # its Whisper has no tokenizer: the table is the file's
    assert torch.equal(loaded.token_bridge.flat, model.token_bridge.flat)
    assert float(loaded.token_bridge.gate.detach()) == pytest.approx(0.3)
    batch = model.processor(["transcribe"], audio=[tone(1.2)])
    torch.testing.assert_close(loaded(**dict(batch)).logits, model(**dict(batch)).logits)


def test_text_denser_than_the_reserved_slots_is_cut_with_a_warning():
    model = _bridge_lsm(tokens_per_stack=1)
    model.token_bridge = TokenBridge.from_tokenizers(["ĠtheĠquickĠbrown"] * 40, model.tokenizer)  # 3+ pieces each
    batch = model.processor(["transcribe"], audio=[tone(1.0)])
    with pytest.warns(UserWarning, match="LLM pieces"):
        model.embed_inputs(batch)
    assert int(batch["attention_mask"][0][batch["segments"][0] == SEGMENT_SPEECH].sum()) == int(
        (batch["segments"][0] == SEGMENT_SPEECH).sum()
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(speech_tokens="whisper_text", connector="stack_mlp"), "needs speech_states: decoder"),
        (
            dict(
                speech_tokens="whisper_text",
                connector={"name": "stack_mlp", "stack_factor": 2},
                speech_states="decoder",
            ),
            "needs connector.stack_factor: 1",
        ),
    ],
)
def test_settings_the_bridge_cannot_use_are_refused(overrides, message):
    """The first is the speech-token kind's rule (model/speech_tokens/whisper_text.py); the second the
    stack-MLP's (its settings' check). An LSM config runs both."""
    from selfpowered.model.configuration import LSMConfig

    with pytest.raises(ValueError, match=message):
        LSMConfig(**ModelConfig(**overrides).model_dump(exclude={"encoder", "llm"}))


@pytest.mark.assets
def test_the_real_bridge_spells_what_whisper_heard(librivox):
    """tiny.en + SmolLM2 on the LibriVox recordings: the LLM pieces the bridge gives decode to
    Whisper's own transcription, character for character."""
    from transformers import AutoTokenizer

    from selfpowered.assets import resolve_model

    model = SpeechLM.build(
        connector="stack_mlp", speech_states="decoder", speech_tokens="whisper_text", stack_factor=1, tokens_per_stack=2
    ).eval()
    whisper_tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("whisper-tiny.en", kind="encoder")))
    clips = [audio for audio, _ in librivox]
    with torch.no_grad():
        states, lengths = model.encode(**featurize(model.mel, clips))
        tokens = model.encoder.decoder.read_tokens(states, lengths)
    for row, count in enumerate(lengths.tolist()):
        heard = whisper_tokenizer.decode(tokens[row, :count].tolist())
        pieces = model.token_bridge.pieces(tokens[row, :count])[0].tolist()
        assert model.tokenizer.decode(pieces) == heard
        assert len(heard.split()) >= 5


@pytest.mark.assets
def test_a_whisper_folder_without_its_tokenizer_is_refused_at_build(tmp_path):
    from selfpowered.assets import resolve_model
    from selfpowered.errors import ModelNotFoundError

    whisper = resolve_model("whisper-tiny.en", kind="encoder")
    for file in whisper.iterdir():  # the same folder, less tokenizer.json
        if file.name != "tokenizer.json":
            (tmp_path / file.name).symlink_to(file)
    with pytest.raises(ModelNotFoundError, match="no tokenizer.json"):
        SpeechLM.build(
            encoder=tmp_path,
            connector="stack_mlp",
            speech_states="decoder",
            speech_tokens="whisper_text",
            stack_factor=1,
        )
