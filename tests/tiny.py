"""Tiny random-initialised models and a real (trained-in-test) tokenizer, shared by fast tests."""

from __future__ import annotations

from transformers import LlamaConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]
CORPUS = [
    "transcribe the speech into written english text",
    "translate the given english content into chinese",
    "please write a coherent continuation of the given text",
    "he hoped there would be stew for dinner turnips and carrots",
    "the quick brown fox jumps over the lazy dog",
    "system user assistant you are a helpful assistant",
] * 20


def tiny_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences, with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<s>"
    )
    if chat_template:
        wrapped.chat_template = CHATML
    return wrapped


def tiny_whisper_config() -> WhisperConfig:
    return WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        decoder_layers=1,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=1,
        bos_token_id=1,
        eos_token_id=1,
        decoder_start_token_id=2,
    )


def tiny_decoding_whisper_config() -> WhisperConfig:
    """`tiny_whisper_config` with room to decode: text tokens 0..39, end 40, start 41."""
    config = tiny_whisper_config()
    config.eos_token_id, config.decoder_start_token_id, config.max_target_positions = 40, 41, 96
    config.begin_suppress_tokens, config.suppress_tokens = [40], []
    return config


def tiny_llama_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=3,
        eos_token_id=2,
        pad_token_id=0,
    )


def tiny_lsm(chat_template: bool = True, **overrides):
    """A random SpeechLM small enough for a unit test (well under a second to build)."""
    from selfpowered.model import SpeechLM

    tokenizer = tiny_tokenizer(chat_template)
    kwargs = dict(qformer_hidden_size=32, qformer_heads=4, qformer_ffn_size=64, mlp_hidden_size=64, lora_r=4)
    kwargs.update(overrides)
    decoding = kwargs.get("speech_states") == "decoder"
    whisper = tiny_decoding_whisper_config() if decoding else tiny_whisper_config()
    return SpeechLM.from_configs(
        whisper, tiny_llama_config(len(tokenizer)), tokenizer, WhisperFeatureExtractor(), **kwargs
    )
