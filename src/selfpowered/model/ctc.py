"""CTC over the LLM's own token embeddings: the `align` stage's classifier, and the LSM's
`ctc_posterior` speech tokens.

The head scores each connector output h against the LLM's frozen input embedding matrix
(logits = scale x h . E^T, plus a learned blank), so CTC can teach the connector to spell a
transcript in the LLM's token language without running the LLM (`train/align.py`).

The same head also gives the LLM text-like input (speech_tokens: ctc_posterior, after LegoSLM,
Ma et al. 2025, and the CTC shrinking of Soundwave): every speech slot becomes the CTC
posterior's mixture of the LLM's own token embeddings, and the slots that greedy CTC decoding
would drop (blank, or a repeat of the slot before) are masked out of attention. The LLM then reads
something close to the embedded transcript - vocabulary it already knows - instead of a
continuous code it must learn from the training sentences, which is what kept the plain
connector from generalising beyond its training text (bench/RESULTS.md, issue 13).

The vocabulary is restricted to tokens that can appear in a lower-cased transcript (no capitals),
which removes about a third of SmolLM2's tokens and all their confusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

HEAD_FILE = "ctc_head.safetensors"  # beside align's final/: the CTC classifier (blank, scale, vocabulary)


def ctc_vocabulary(tokenizer) -> list[int]:
    """Token ids a lower-cased transcript can use: no upper-case letters, no special tokens."""
    special = set(tokenizer.all_special_ids)
    keep = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text and not any(ch.isupper() for ch in text):
            keep.append(token_id)
    return keep


def greedy_keep(best: torch.Tensor, blank: int) -> torch.Tensor:
    """Which positions greedy CTC decoding keeps, from the best class per position (..., time):
    not blank and not a repeat of the position before (a blank between two equal classes
    separates them, as CTC's collapse rule says)."""
    previous = torch.cat([torch.full_like(best[..., :1], -1), best[..., :-1]], dim=-1)
    return (best != blank) & (best != previous)


class CTCHead(nn.Module):
    """Scores connector outputs against the LLM's frozen embeddings of the kept vocabulary."""

    def __init__(self, embeddings: torch.Tensor, vocabulary: list[int]) -> None:
        super().__init__()
        self.register_buffer("table", embeddings[vocabulary].detach().clone(), persistent=False)
        self.vocabulary = vocabulary
        self.to_index = {token: index for index, token in enumerate(vocabulary)}
        self.blank = nn.Parameter(torch.zeros(embeddings.shape[1]))
        self.log_scale = nn.Parameter(torch.tensor(0.0))
        self.blank_index = len(vocabulary)

    def forward(self, speech: torch.Tensor) -> torch.Tensor:
        """(batch, time, hidden) -> log-probabilities (batch, time, vocab + 1); blank is last.
        A plain dot product with the embeddings (not a cosine), so the connector learns their
        magnitude as well as their direction: that is what the LLM reads in `train`."""
        table = torch.cat([self.table, self.blank[None]], dim=0)
        return torch.log_softmax(self.log_scale.exp() * speech @ table.T, dim=-1)

    def posterior_tokens(self, speech: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, hidden) connector outputs of one utterance -> the posterior mixture of token
        embeddings per position (blank's share left out, the rest renormalised) and the mask of
        positions greedy decoding keeps. Differentiable in `speech` through the mixture."""
        probs = self(speech).exp()
        words = probs[..., : self.blank_index]
        words = words / words.sum(dim=-1, keepdim=True).clamp(min=1e-6)
        keep = greedy_keep(probs.argmax(dim=-1), self.blank_index)
        return words @ self.table.to(words.dtype), keep

    def targets(self, tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated target indices and lengths; tokens outside the vocabulary are dropped."""
        rows = [
            [
                self.to_index[t]
                for t in tokenizer(text.lower(), add_special_tokens=False)["input_ids"]
                if t in self.to_index
            ]
            for text in texts
        ]
        return torch.tensor([i for row in rows for i in row], dtype=torch.long), torch.tensor([len(r) for r in rows])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The learned parts (blank embedding, scale) and the vocabulary; the table is the LLM's."""
        return {
            "blank": self.blank.detach().cpu().contiguous(),
            "log_scale": self.log_scale.detach().cpu().reshape(1),
            "vocabulary": torch.tensor(self.vocabulary),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], embeddings: torch.Tensor) -> CTCHead:
        """A head from `tensors()`, over the same LLM's input embeddings."""
        head = cls(embeddings, tensors["vocabulary"].tolist())
        with torch.no_grad():
            head.blank.copy_(tensors["blank"])
            head.log_scale.copy_(tensors["log_scale"][0])
        return head

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file(self.tensors(), str(path))

    @classmethod
    def load(cls, path: Path, embeddings: torch.Tensor) -> CTCHead:
        """A head saved by `save`, over the same LLM's input embeddings."""
        from safetensors.torch import load_file

        return cls.from_tensors(load_file(str(path)), embeddings)

    def greedy(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best path, repeats merged, blanks removed -> LLM token ids per utterance."""
        best = log_probs.argmax(dim=-1)
        keep = greedy_keep(best, self.blank_index)
        return [
            [self.vocabulary[i] for i in best[row, :length][keep[row, :length]].tolist()]
            for row, length in enumerate(lengths.tolist())
        ]


def find_head(model: Any, checkpoint: str | Path) -> CTCHead | None:
    """The CTC head a SpeechLM's connector is read through: the one a `ctc_posterior` checkpoint
    carries, else the `align` stage's, saved in the checkpoint folder or beside it (`OUT/final` ->
    `OUT/ctc_head.safetensors`); None when there is neither."""
    if model.ctc_head is not None:
        return model.ctc_head
    folder = Path(checkpoint)
    for path in (folder / HEAD_FILE, folder.parent / HEAD_FILE):
        if path.is_file():
            embeddings = model.llm.get_input_embeddings().weight
            return CTCHead.load(path, embeddings).to(embeddings.device)
    return None


def head_transcripts(model: Any, head: CTCHead, states: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Speech states -> the connector -> greedy CTC through `head` -> one transcript per utterance."""
    speech, speech_lengths = model.connector(states, lengths)
    return [model.tokenizer.decode(tokens) for tokens in head.greedy(head(speech), speech_lengths)]


def ctc_transcribe(model: Any, head: CTCHead, audio: Sequence[Any], batch_size: int = 16) -> list[str]:
    """Audio (paths or 16 kHz arrays) -> what the connector alone spells through `head`: no LLM,
    so this measures the speech path itself (what `align` taught it, or how far tuning moved it)."""
    from selfpowered.model.encoder import featurize

    param = next(model.connector.parameters())
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(audio), batch_size):
            features = featurize(model.mel, audio[start : start + batch_size])
            states, lengths = model.encode(*(features[k].to(param.device) for k in ("mel", "mel_frames", "mel_chunks")))
            out += head_transcripts(model, head, states.to(param.device, param.dtype), lengths.to(param.device))
    return out
