"""`speech_tokens: whisper_text`: the LLM reads its own embeddings of the words Whisper heard.

Why: a connector or CTC head trained on our transcripts learns the words of those transcripts and
almost none of the others: on out-of-domain speech a CTC head over the LLM's vocabulary recalls
0.03 of the words it never saw in training, while Whisper, reading the very same decoder states,
recalls 0.75 (bench/RESULTS.md, issue 13). The gap is lexical, and no amount of our training text
closes it. So the bridge carries Whisper's reading into the LLM's embedding space through the two
tokenizers, which covers every word by construction: each text token Whisper's greedy decoder
wrote (`WhisperStateDecoder.read_tokens`) is re-tokenised by the LLM's tokenizer, and its pieces
take consecutive speech slots as the LLM's own input embeddings. A token of three LLM pieces
fills three slots; the slots the utterance does not use are masked (`prompting.fill_speech_slots`).

The connector still runs: its output for the state that wrote a token is added to that token's
pieces, scaled by a learned `gate` that starts at 0. A fresh bridge is therefore exactly "the
LLM reads the embedded Whisper transcript" (the cascade's text, in the speech slots), and
training may let continuous information from the states through (confidence, what the greedy
token leaves out) as far as it helps. LegoSLM (Ma et al. 2025) mixes LLM embeddings by a CTC
posterior; here the posterior is Whisper's own, taken at its argmax.

The table is built once from the two tokenizers and saved in the checkpoint, so a checkpoint
reads the same without the Whisper tokenizer at hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import nn


def llm_pieces(vocabulary: Sequence[str], tokenizer) -> list[list[int]]:
    """Each Whisper text token (byte-level string, GPT-2 style, as in its tokenizer.json) -> the
    LLM token ids of the same bytes. A byte-level BPE LLM tokenizer (SmolLM2, Qwen, Llama 3) runs
    its BPE model on the token's string directly, which keeps a token that is only part of a
    UTF-8 character exact; any other tokenizer gets the decoded text (such a partial character
    then becomes U+FFFD). A byte the LLM's vocabulary lacks gives no piece: for SmolLM2, 21 of
    Whisper's tokens, single bytes that valid UTF-8 text never holds or control characters."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    if spec.get("model", {}).get("type") == "BPE" and '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer")):
        model = backend.model
        return [[piece.id for piece in model.tokenize(token)] if token else [] for token in vocabulary]
    from tokenizers import decoders

    byte_level = decoders.ByteLevel()
    return [
        tokenizer(byte_level.decode([token]), add_special_tokens=False)["input_ids"] if token else []
        for token in vocabulary
    ]


class TokenBridge(nn.Module):
    """Whisper token ids (+ the connector's outputs) -> LLM-space speech embeddings, one
    variable-length tensor per utterance: the LLM pieces of each token in order."""

    def __init__(self, flat: torch.Tensor, offsets: torch.Tensor) -> None:
        super().__init__()
        # ragged table: the pieces of Whisper token t are flat[offsets[t]:offsets[t + 1]]
        self.register_buffer("flat", flat.long())
        self.register_buffer("offsets", offsets.long())
        self.gate = nn.Parameter(torch.zeros(()))  # the connector's share; 0 = the embedded transcript

    @classmethod
    def from_tokenizers(cls, vocabulary: Sequence[str], tokenizer) -> TokenBridge:
        pieces = llm_pieces(vocabulary, tokenizer)
        offsets = torch.tensor([0] + [len(p) for p in pieces]).cumsum(0)
        return cls(torch.tensor([i for p in pieces for i in p], dtype=torch.long), offsets)

    @classmethod
    def unbuilt(cls) -> TokenBridge:
        """A placeholder for a model whose Whisper has no tokenizer at hand (built from configs,
        or about to load a checkpoint, which carries the table)."""
        return cls(torch.zeros(0, dtype=torch.long), torch.zeros(1, dtype=torch.long))

    @property
    def vocabulary_size(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous().reshape(-1) for k, v in self.state_dict().items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TokenBridge:
        bridge = cls(tensors["flat"], tensors["offsets"])
        with torch.no_grad():
            bridge.gate.copy_(tensors["gate"].reshape(()))
        return bridge

    def pieces(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One utterance's Whisper token ids (tokens,) -> its LLM piece ids in order, and for each
        piece the index of its Whisper token and its place among that token's pieces."""
        ids = token_ids.to(self.flat.device)
        if ids.numel() and int(ids.max()) >= self.vocabulary_size:
            raise ValueError(f"Whisper token {int(ids.max())} is outside the bridge's {self.vocabulary_size} tokens")
        starts, sizes = self.offsets[ids], self.offsets[ids + 1] - self.offsets[ids]
        owner = torch.repeat_interleave(torch.arange(ids.shape[0], device=ids.device), sizes)
        first = torch.cumsum(sizes, 0) - sizes  # where each token's pieces begin in the row
        within = torch.arange(owner.shape[0], device=ids.device) - first[owner]
        return self.flat[starts[owner] + within], owner, within

    def forward(
        self,
        token_ids: torch.Tensor,
        counts: torch.Tensor,
        residual: Sequence[torch.Tensor],
        embed_tokens: nn.Module,
    ) -> list[torch.Tensor]:
        """`token_ids` (batch, tokens) and their real `counts` (batch,); `residual`: the connector's
        outputs per utterance, `k` per token (tokens x k, hidden), of which a token's j-th piece
        gets the j-th (its last for pieces past k). Returns (pieces, hidden) per utterance."""
        if self.vocabulary_size == 0:
            raise ValueError(
                "speech_tokens: whisper_text, but the Whisper -> LLM token table was never built: build the "
                "model from a Whisper folder with its tokenizer.json, or load a checkpoint that carries it"
            )
        out = []
        for row, count in enumerate(counts.tolist()):
            pieces, owner, within = self.pieces(token_ids[row, :count])
            embeds = embed_tokens(pieces)
            extra = residual[row]
            per_token = extra.shape[0] // max(count, 1)
            if count and per_token * count != extra.shape[0]:
                raise ValueError(f"row {row}: {extra.shape[0]} connector outputs for {count} decoded tokens")
            if count:
                index = owner * per_token + within.clamp(max=per_token - 1)
                embeds = embeds + self.gate.to(embeds.dtype) * extra.to(embeds.device, embeds.dtype)[index]
            out.append(embeds)
        return out
