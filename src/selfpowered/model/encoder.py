"""Frozen Whisper encoder over the real frames only, batched with masks, long audio chunked.

transformers' `WhisperEncoder.forward` insists on 3000 mel frames (30 s). Encoding 30 s of mostly
padding for a 3 s utterance wastes ~10x compute and, worse, lets the padding leak into the
output through self-attention. We run the same modules ourselves: slice the positional table to
the real length, zero the padded conv activations, and mask padded keys in every layer, so an
utterance encodes the same alone or in a batch. Audio over 30 s arrives as several mel chunks
(see `audio.LogMelExtractor`); each is encoded separately and the outputs are concatenated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from selfpowered.audio import AudioInput, LogMelExtractor, as_samples
from selfpowered.errors import ModelNotFoundError
from selfpowered.model.whisper_decoder import DECODER_PREFIX, WhisperStateDecoder, decoded_token_bound

ENCODER_PREFIX = "model.encoder."


def pack_chunks(per_item: Sequence[Sequence[torch.Tensor]], n_mels: int = 80) -> dict[str, torch.Tensor]:
    """Utterances' lists of (n_mels, frames) log-mel chunks -> the encoder's input tensors:

    - `mel` (chunks, n_mels, frames): every chunk of every utterance, zero-padded;
    - `mel_frames` (chunks,): real mel frames per chunk;
    - `mel_chunks` (batch,): how many chunks each utterance has (0 for a text-only row).
    """
    flat = [chunk for chunks in per_item for chunk in chunks]
    features = (
        nn.utils.rnn.pad_sequence([chunk.T for chunk in flat], batch_first=True).transpose(1, 2)
        if flat
        else torch.zeros(0, n_mels, 0)
    )
    return {
        "mel": features,
        "mel_frames": torch.tensor([int(chunk.shape[-1]) for chunk in flat], dtype=torch.long),
        "mel_chunks": torch.tensor([len(chunks) for chunks in per_item], dtype=torch.long),
    }


def featurize(mel: LogMelExtractor, audio: Sequence[AudioInput | None]) -> dict[str, torch.Tensor]:
    """Paths or 16 kHz arrays (None for a text-only row) -> `pack_chunks` tensors: Whisper log-mel
    chunks of <= 30 s each, real frames only."""
    per_item = [[] if item is None else [torch.from_numpy(c) for c in mel(as_samples(item))] for item in audio]
    return pack_chunks(per_item, mel.num_mel_bins)


def encoder_output_length(mel_frames: int) -> int:
    """Whisper's conv2 has stride 2 and padding 1: ceil(frames / 2) output frames."""
    return (mel_frames + 1) // 2


def _sum_per_utterance(per_chunk: list[int], mel_chunks: torch.Tensor) -> list[int]:
    out, position = [], 0
    for chunks in mel_chunks.tolist():
        out.append(sum(per_chunk[position : position + chunks]))
        position += chunks
    return out


def encoder_frames(mel_frames: torch.Tensor, mel_chunks: torch.Tensor) -> list[int]:
    """Encoder frames per utterance: its chunks' outputs are concatenated, so their lengths add."""
    return _sum_per_utterance([encoder_output_length(int(f)) for f in mel_frames.tolist()], mel_chunks)


def decoder_token_rate(settings) -> float | None:
    """The decoder's token budget (tokens per second of audio) when the speech states are Whisper's
    decoder states (`speech_states: decoder`), else None: the encoder's frames, no decoder loaded.
    `settings`: anything with those two fields (ModelConfig, LSMConfig, the features config)."""
    return settings.decoded_tokens_per_second if settings.speech_states == "decoder" else None


def speech_state_bounds(
    mel_frames: torch.Tensor, mel_chunks: torch.Tensor, decoded_tokens_per_second: float | None = None
) -> list[int]:
    """States the speech encoder hands the connector per utterance, known from the audio's length
    alone: its encoder frames, or, when it decodes (`decoded_tokens_per_second` given), the most
    text tokens its decoder may write, chunk by chunk (`decoded_token_bound`)."""
    if decoded_tokens_per_second is None:
        return encoder_frames(mel_frames, mel_chunks)
    frames = [encoder_output_length(int(f)) for f in mel_frames.tolist()]
    return _sum_per_utterance([decoded_token_bound(f, decoded_tokens_per_second) for f in frames], mel_chunks)


class SpeechEncoder(nn.Module):
    """Wraps a `WhisperEncoder`; `forward` takes mel chunks per utterance, returns padded states.
    With a `WhisperStateDecoder` (`speech_states: decoder`) the states are those of Whisper's own
    greedy decoder, one per text token it writes, each 30 s chunk decoded on its own."""

    def __init__(self, whisper_encoder: WhisperEncoder, decoder: WhisperStateDecoder | None = None) -> None:
        super().__init__()
        self.whisper = whisper_encoder
        self.decoder = decoder

    @property
    def config(self) -> WhisperConfig:
        return self.whisper.config

    @property
    def hidden_size(self) -> int:
        return int(self.config.d_model)

    @property
    def max_mel_frames(self) -> int:
        return int(self.config.max_source_positions) * 2

    @classmethod
    def from_config(cls, config: WhisperConfig, decoded_tokens_per_second: float | None = None) -> SpeechEncoder:
        """Random weights; with `decoded_tokens_per_second` also a decoder (`speech_states: decoder`)
        that writes at most that many tokens per second of audio."""
        if decoded_tokens_per_second is None:
            return cls(WhisperEncoder(config))
        return cls(WhisperEncoder(config), WhisperStateDecoder.from_config(config, None, decoded_tokens_per_second))

    @classmethod
    def from_pretrained(cls, path: str | Path, decoded_tokens_per_second: float | None = None) -> SpeechEncoder:
        """Load the encoder weights (`model.encoder.*`) of a Whisper folder, and with
        `decoded_tokens_per_second` (`speech_states: decoder`: the decoder's token budget) its
        decoder's too (`model.decoder.*`); otherwise the decoder is skipped."""
        from safetensors import safe_open

        path = Path(path)
        config = WhisperConfig.from_pretrained(str(path))
        index = path / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        elif (path / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise ModelNotFoundError(f"{path}: no model.safetensors; expected a Hugging Face Whisper folder")
        decoder = decoded_tokens_per_second is not None
        state: dict[str, dict[str, torch.Tensor]] = {ENCODER_PREFIX: {}, DECODER_PREFIX: {}}
        wanted = (ENCODER_PREFIX, DECODER_PREFIX) if decoder else (ENCODER_PREFIX,)
        for name in files:
            with safe_open(str(path / name), framework="pt") as handle:
                for key in handle.keys():
                    for prefix in wanted:
                        if key.startswith(prefix):
                            state[prefix][key[len(prefix) :]] = handle.get_tensor(key)
        for prefix in wanted:
            if not state[prefix]:
                raise ModelNotFoundError(f"{path}: no `{prefix}*` weights found; is it a Whisper model?")
        encoder = WhisperEncoder(config)
        encoder.load_state_dict(state[ENCODER_PREFIX], strict=True)
        if not decoder:
            return cls(encoder)
        states = WhisperStateDecoder.from_config(config, path, decoded_tokens_per_second)
        # the output projection is tied to the token embeddings, which the decoder's state holds
        states.whisper.load_state_dict(state[DECODER_PREFIX], strict=True)
        return cls(encoder, states)

    def state_dict_for_save(self) -> dict[str, torch.Tensor]:
        """Encoder (and decoder) weights under Whisper's own names, so a saved folder loads like a
        Whisper one."""
        state = {ENCODER_PREFIX + key: value for key, value in self.whisper.state_dict().items()}
        if self.decoder is not None:
            state.update({DECODER_PREFIX + key: value for key, value in self.decoder.whisper.state_dict().items()})
        return state

    def forward(
        self, mel: torch.Tensor, mel_frames: torch.Tensor, mel_chunks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch given as `featurize` makes it: padded chunks, their real frames, and the
        chunk count of each utterance (whose chunk outputs are concatenated in order).

        Returns (states (batch, max_len, d_model), lengths (batch,)); positions past a length are
        zero, and a row with no chunks (text only) has length 0."""
        if mel.shape[0] == 0:
            raise ValueError("no audio to encode")
        if self.decoder is not None:
            encoded = self._decode_chunks(mel, mel_frames.tolist())
        else:
            encoded = self._encode_chunks(mel, mel_frames.tolist())
        outputs, position = [], 0
        for chunks in mel_chunks.tolist():
            part = encoded[position : position + chunks]
            outputs.append(torch.cat(part, dim=0) if part else encoded[0][:0])
            position += chunks
        lengths = torch.tensor([out.shape[0] for out in outputs], device=outputs[0].device)  # host ints
        states = nn.utils.rnn.pad_sequence(outputs, batch_first=True)
        return states, lengths

    def _decode_chunks(self, mel: torch.Tensor, frame_counts: list[int]) -> list[torch.Tensor]:
        """Each chunk -> the states of Whisper's greedy decoder over it, Whisper run as it was
        trained: the chunk padded to its 30 s window with the log-mel floor (what Whisper's feature
        extractor makes of the silence it pads with: the chunk's maximum - 2 after its scaling)
        and encoded whole. Without that silence the decoder rarely ends: over the real frames
        alone it matched transformers' `generate` on 3 of the 10 real recordings (looping
        instead of stopping), padded on 9 (tests/test_whisper_decoder.py). Decoding stops at the
        bound of the chunk's real length, as the processor reserved."""
        window = self.max_mel_frames
        real = torch.arange(window)[None, None, :] < torch.tensor(frame_counts)[:, None, None]
        mel = nn.functional.pad(mel[..., :window], (0, window - min(window, mel.shape[-1])))
        floor = mel.masked_fill(~real, float("-inf")).amax(dim=(1, 2)) - 2.0
        mel = torch.where(real, mel, floor[:, None, None])
        encoded = self._encode_chunks(mel, [window] * len(frame_counts))
        states = torch.stack(encoded)
        lengths = torch.full((len(encoded),), states.shape[1], dtype=torch.long)
        limits = [decoded_token_bound(encoder_output_length(n), self.decoder.tokens_per_second) for n in frame_counts]
        decoded, counts, _ = self.decoder(states, lengths, limits)
        return [decoded[i, :count] for i, count in enumerate(counts.tolist())]

    def _encode_chunks(self, mel: torch.Tensor, frame_counts: list[int]) -> list[torch.Tensor]:
        whisper = self.whisper
        dtype = whisper.conv1.weight.dtype
        device = whisper.conv1.weight.device
        # Lengths are known on the host: keep them there, so no step waits on the device.
        if max(frame_counts) > self.max_mel_frames:
            raise ValueError(f"a mel chunk has {max(frame_counts)} frames; at most {self.max_mel_frames} fit")
        out_counts = [encoder_output_length(count) for count in frame_counts]
        frames = torch.tensor(frame_counts, device=device)
        mel = mel[..., : max(frame_counts)].to(device=device, dtype=dtype)
        steps = torch.arange(mel.shape[-1], device=device)
        conv1_mask = (steps[None, :] < frames[:, None]).to(dtype)[:, None, :]
        hidden = nn.functional.gelu(whisper.conv1(mel)) * conv1_mask
        hidden = nn.functional.gelu(whisper.conv2(hidden)).transpose(1, 2)
        out_lengths = torch.tensor(out_counts, device=device)
        length = hidden.shape[1]
        hidden = hidden + whisper.embed_positions.weight[:length].to(dtype)
        keep = torch.arange(length, device=device)[None, :] < out_lengths[:, None]
        additive = torch.zeros(keep.shape, dtype=dtype, device=device)
        additive = additive.masked_fill(~keep, torch.finfo(dtype).min)[:, None, None, :]
        hidden = nn.functional.dropout(hidden, p=whisper.dropout, training=self.training)
        for layer in whisper.layers:
            hidden = layer(hidden, additive)
        hidden = whisper.layer_norm(hidden)
        return [hidden[i, :count] for i, count in enumerate(out_counts)]
