from __future__ import annotations

import pytest
import torch

from selfpowered.errors import CheckpointError, ModelNotFoundError, PromptFormatError
from selfpowered.model import SpeechLM
from selfpowered.model.encoder import featurize
from selfpowered.model.prompting import SEGMENT_SPEECH
from tests.helpers import batched_and_alone, tone
from tests.tiny import tiny_lsm

INSTRUCTIONS = ["transcribe the speech", "translate the given english content into chinese", "transcribe"]


def _randomise_lora(model: SpeechLM) -> None:
    """LoRA B starts at zero; make the adapter matter so round-trip tests can see it."""
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)


def _clips():
    return [tone(1.3, 200), tone(4.0, 300), tone(0.6, 410)]


def test_only_connector_and_lora_train_encoder_frozen():
    model = tiny_lsm()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("connector.") or "lora_" in n for n in trainable)
    assert any("lora_" in n for n in trainable)
    out = model(**model.processor(INSTRUCTIONS[:2], audio=_clips()[:2], response=["he hoped", "the dog"]))
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.connector.output_proj.weight.grad.abs().sum() > 0


def test_full_finetune_and_frozen_modes():
    full = tiny_lsm(finetune="full")
    assert all(p.requires_grad for p in full.llm.parameters())
    frozen = tiny_lsm(finetune="frozen")
    assert not any(p.requires_grad for p in frozen.llm.parameters())
    assert all(p.requires_grad for p in frozen.connector.parameters())


def test_training_steps_lower_the_loss():
    # full fine-tuning: a random tiny LLM has near-uniform logits that LoRA on q/v barely moves
    model = tiny_lsm(connector_dropout=0.0, finetune="full")
    clips = _clips()[:2]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batch = model.processor(INSTRUCTIONS[:2], audio=clips, response=["he hoped", "the dog"])
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_audio_and_cached_encoder_states_give_the_same_batch_and_logits():
    model = tiny_lsm().eval()
    clips = _clips()
    states, lengths = model.encode(**featurize(model.mel, clips))
    cached = [states[i, :n] for i, n in enumerate(lengths.tolist())]
    from_audio = model.processor(INSTRUCTIONS, audio=clips, response=["a", "b", "c"])
    from_cache = model.processor(INSTRUCTIONS, encoder_states=cached, response=["a", "b", "c"])
    for key in ("input_ids", "labels", "segments", "attention_mask", "position_ids"):
        assert torch.equal(from_audio[key], from_cache[key]), key
    torch.testing.assert_close(model(**from_cache).logits, model(**from_audio).logits)


def test_processor_plans_one_slot_per_speech_token_and_text_rows_have_none():
    model = tiny_lsm()
    batch = model.processor(["transcribe", "what is two plus two"], audio=[tone(1.0), None])
    speech_slots = (batch["segments"] == SEGMENT_SPEECH).sum(dim=1).tolist()
    assert speech_slots == [3, 0]  # 50 encoder frames -> one 17-frame window per 1/3 s
    assert batch["mel_chunks"].tolist() == [1, 0] and "labels" not in batch
    assert [len(e) for e in model.speech_embeddings(batch)] == [3, 0]
    text_only = model.processor(["what is two plus two"])
    assert (text_only["segments"] == SEGMENT_SPEECH).sum() == 0 and "mel" not in text_only


def test_a_layout_that_disagrees_with_the_connector_is_a_clear_error():
    model = tiny_lsm()
    other = tiny_lsm(connector="stack_mlp")  # 13 tokens per second instead of 3
    batch = other.processor(["transcribe"], audio=[tone(1.0)])
    with pytest.raises(ValueError, match="speech slots but the connector made"):
        model(**batch)


def test_speech_token_count_follows_duration():
    model = tiny_lsm()
    embeds = model.embed_speech([tone(1.0), tone(3.0), tone(9.0)])
    assert [e.shape[0] for e in embeds] == [3, 9, 27]  # 50 frames/s, 17-frame windows


def test_audio_over_30_seconds_is_encoded_in_full():
    model = tiny_lsm(connector="stack_mlp", stack_factor=4)
    (embeds,) = model.embed_speech([tone(65.0)])
    assert embeds.shape[0] == (1500 + 1500 + 250) // 4 + 1  # 3250 frames, stacks of 4


def test_batched_generation_equals_one_by_one():
    model = tiny_lsm()
    _randomise_lora(model)
    batched, alone = batched_and_alone(model, _clips(), INSTRUCTIONS, max_new_tokens=8)
    assert batched == alone
    assert any(answer for answer in batched)  # the random model does emit tokens


def test_generation_first_logits_match_between_padded_and_alone():
    model = tiny_lsm().eval()
    clips = _clips()
    batch = model.processor(INSTRUCTIONS, audio=clips, padding_side="left")
    logits = model(**batch).logits[:, -1]
    for i in range(3):
        alone = model.processor(INSTRUCTIONS[i : i + 1], audio=clips[i : i + 1], padding_side="left")
        single = model.llm(inputs_embeds=model.embed_inputs(alone)).logits[0, -1]
        torch.testing.assert_close(logits[i], single, atol=1e-4, rtol=1e-4)


def test_text_mode_runs_bare_llm_and_adapter_switch():
    model = tiny_lsm()
    _randomise_lora(model)
    with_adapter = model.generate(text=["the quick brown fox"], max_new_tokens=6)
    base = model.generate(text=["the quick brown fox"], max_new_tokens=6, use_adapter=False)
    plain = model.base_llm()
    pieces = model.prompt.pieces("the quick brown fox", with_speech=False)
    with model.llm.disable_adapter():
        tokens = plain.generate(
            torch.tensor([pieces.prefix_ids]),
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=model.prompt.stop_token_ids(),
            pad_token_id=model.tokenizer.pad_token_id,
        )
    expected = model.tokenizer.decode(tokens[0, len(pieces.prefix_ids) :], skip_special_tokens=True).strip()
    assert base == [expected]
    assert with_adapter != base  # the (randomised) adapter changes the answer


@pytest.mark.parametrize(
    "overrides", [dict(), dict(finetune="full"), dict(connector="stack_mlp"), dict(finetune="frozen")]
)
def test_save_load_round_trip_is_bit_exact(tmp_path, overrides):
    model = tiny_lsm(**overrides)
    if overrides.get("finetune", "lora") == "lora":
        _randomise_lora(model)
    if overrides.get("finetune") == "full":
        with torch.no_grad():
            model.llm.model.layers[0].mlp.up_proj.weight.add_(1.0)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = SpeechLM.from_pretrained(tmp_path / "ckpt")
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert loaded.config.to_dict()["connector"] == model.config.connector
    assert loaded.tokenizer("transcribe the dog")["input_ids"] == model.tokenizer("transcribe the dog")["input_ids"]
    assert loaded.mel.feature_extractor.to_dict() == model.mel.feature_extractor.to_dict()
    clip = [tone(2.0)]
    assert loaded.generate(audio=clip, instruction="transcribe", max_new_tokens=5) == model.generate(
        audio=clip, instruction="transcribe", max_new_tokens=5
    )


def test_checkpoint_layout(tmp_path):
    model = tiny_lsm()
    model.save_pretrained(tmp_path / "ckpt")
    names = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "adapter", "tokenizer.json", "preprocessor_config.json"} <= names
    assert {"encoder", "llm"} <= names  # random base weights are bundled
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a SpeechLM checkpoint"):
        SpeechLM.from_pretrained(tmp_path / "nowhere")
    model = tiny_lsm()
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        SpeechLM.from_pretrained(tmp_path / "ckpt")


def test_generate_argument_errors():
    model = tiny_lsm()
    with pytest.raises(ValueError, match="both audio and instruction"):
        model.generate(audio=[tone(1.0)])
    with pytest.raises(ValueError, match="2 audio inputs but 1 instructions"):
        model.generate(audio=[tone(1.0), tone(1.0)], instruction=["a"])


def test_llm_without_chat_template_needs_an_explicit_fallback(tmp_path):
    with pytest.raises(PromptFormatError, match="prompt_format: vicuna_v1.1"):
        tiny_lsm(chat_template=False)
    model = tiny_lsm(chat_template=False, prompt_format="vicuna_v1.1")
    loss = model(**model.processor(["transcribe"], audio=[tone(1.0)], response=["he hoped"])).loss
    assert torch.isfinite(loss)
    model.save_pretrained(tmp_path / "vicuna")
    loaded = SpeechLM.from_pretrained(tmp_path / "vicuna")
    assert loaded.config.prompt_format == "vicuna_v1.1"
    assert loaded.prompt.pieces("transcribe", "x") == model.prompt.pieces("transcribe", "x")


def test_a_loaded_bundled_checkpoint_saves_again_with_its_base(tmp_path):
    model = tiny_lsm()
    model.save_pretrained(tmp_path / "a")
    SpeechLM.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")
    again = SpeechLM.from_pretrained(tmp_path / "b")
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_a_checkpoint_stripped_to_its_trained_weights_loads_tokenizer_and_extractor_from_its_bases(tmp_path):
    model = tiny_lsm()
    _randomise_lora(model)
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder / "llm")  # a base LLM folder carries its tokenizer
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json"):
        (folder / name).unlink(missing_ok=True)
    loaded = SpeechLM.from_pretrained(folder)
    assert loaded.tokenizer("transcribe the dog")["input_ids"] == model.tokenizer("transcribe the dog")["input_ids"]
    assert loaded.mel.feature_extractor.to_dict() == model.mel.feature_extractor.to_dict()
    clip = [tone(1.5)]
    assert loaded.generate(audio=clip, instruction="transcribe", max_new_tokens=5) == model.generate(
        audio=clip, instruction="transcribe", max_new_tokens=5
    )


def test_weights_that_do_not_fit_are_a_checkpoint_error(tmp_path):
    tiny_lsm().save_pretrained(tmp_path / "ckpt")
    bigger = tiny_lsm(qformer_hidden_size=64)  # another connector shape, same config file otherwise
    with pytest.raises(CheckpointError, match="do not fit"):
        bigger.load_trained_weights(tmp_path / "ckpt")


def test_a_checkpoint_loads_through_transformers_auto_classes(tmp_path):
    """AutoModel / AutoProcessor read a SpeechLM checkpoint folder as they read their own models:
    the processor is saved with the model and makes the very same batch."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from selfpowered.model.processor import PROCESSOR_FILE, SpeechProcessor

    model = tiny_lsm().eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / PROCESSOR_FILE).is_file()
    assert type(AutoConfig.from_pretrained(tmp_path / "ckpt")).__name__ == "LSMConfig"
    loaded = AutoModel.from_pretrained(tmp_path / "ckpt")
    processor = AutoProcessor.from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, SpeechLM) and isinstance(processor, SpeechProcessor)
    clip = tone(1.2)
    ours, theirs = model.processor(["transcribe"], audio=[clip]), processor(["transcribe"], audio=[clip])
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with torch.no_grad():
        torch.testing.assert_close(model(**ours).logits, loaded(**theirs).logits)
