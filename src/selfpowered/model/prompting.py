"""The one prompt builder and the one splice function, shared by training and generation.

A mismatch between the training prompt and the inference prompt is the commonest failure in peer
projects (the official code trains on "ASSISTANT:" and evaluates on "ASSISTENT:"). Here both paths
call `PromptBuilder.pieces` and `splice`, so they cannot drift apart.

Prompt = the tokenizer's chat template with the user turn "{instruction}\\n<speech>"; the
placeholder is cut out and the speech embeddings go in its place. An LSM that reads Whisper's
transcript (`speech_tokens: transcript`) joins with ":" instead and puts the LLM's own tokens of
" {transcript}" first in the speech part (`heard_ids`): the cascade's text-mode prompt,
`text_prompt(instruction, transcript)` = "{instruction}: {transcript}", token for token, with any
acoustic slots after it. LLMs without a chat template use
the paper's Vicuna v1.1 format, but only when asked for (`prompt_format: vicuna_v1.1`): silently
falling back would train an instruct model on a format it has never seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from selfpowered.errors import PromptFormatError

IGNORE_INDEX = -100
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# Segment ids of every spliced position: what the bias analysis needs to tell speech from text.
# PROMPT is the template around the turn (system line, role markers); INSTRUCTION is the user's
# text instruction inside it.
SEGMENT_PAD, SEGMENT_PROMPT, SEGMENT_SPEECH, SEGMENT_ANSWER, SEGMENT_INSTRUCTION = 0, 1, 2, 3, 4
# HEARD: the LLM's tokens of what Whisper heard (`speech_tokens: transcript`): part of the speech
# for the bias analysis, but embedded like text, by token id (SPEECH slots are filled by the model)
SEGMENT_HEARD = 5
SPEECH_SEGMENTS = (SEGMENT_SPEECH, SEGMENT_HEARD)
# the user turn of a transcript-reading LSM: "{instruction}:" + " {transcript}" (see the module doc)
TRANSCRIPT_JOINER = ":"


@dataclass(frozen=True)
class Conversation:
    """What comes before the user turn in a served chat: a system message (None: the builder's
    own) and earlier turns as {"role": "user" | "assistant", "content": text}."""

    system: str | None = None
    turns: tuple[dict[str, str], ...] = ()


@dataclass
class PromptPieces:
    """Token ids around the speech: prompt prefix, [speech], prompt suffix, then the answer."""

    prefix_ids: list[int]
    suffix_ids: list[int]
    answer_ids: list[int]  # empty at generation time; answer + end-of-turn token when training
    instruction_span: tuple[int, int] = (0, 0)  # [start, end) of the instruction's tokens in prefix_ids
    heard_ids: list[int] = field(default_factory=list)  # Whisper's transcript in LLM tokens, before the slots


class PromptBuilder:
    """Renders prompts for one tokenizer and prompt format."""

    def __init__(
        self,
        tokenizer,
        prompt_format: str = "chat_template",
        placeholder: str = "<speech>",
        system_prompt: str | None = None,
        joiner: str = "\n",
    ) -> None:
        self.tokenizer = tokenizer
        self.format = prompt_format
        self.placeholder = placeholder
        self.system_prompt = system_prompt
        self.joiner = joiner  # between the instruction and the speech: "\n", or TRANSCRIPT_JOINER
        if prompt_format == "chat_template" and not getattr(tokenizer, "chat_template", None):
            raise PromptFormatError(
                f"the LLM's tokenizer ({type(tokenizer).__name__}, {tokenizer.name_or_path or 'unnamed'}) has no "
                "chat template; set `prompt_format: vicuna_v1.1` to use the paper's Vicuna v1.1 format instead"
            )
        if prompt_format == "vicuna_v1.1" and tokenizer.eos_token is None:
            raise PromptFormatError("vicuna_v1.1 needs an end-of-sequence token, and this tokenizer has none")

    # -- rendering -------------------------------------------------------------------------------
    def _messages(self, user: str, context: Conversation | None = None) -> list[dict[str, str]]:
        system = context.system if context and context.system is not None else self.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        return messages + list(context.turns if context else ()) + [{"role": "user", "content": user}]

    def render_prompt(self, user: str, context: Conversation | None = None) -> str:
        """The full prompt text up to where the assistant's answer starts."""
        if self.format == "vicuna_v1.1":
            system = (context.system if context and context.system else None) or self.system_prompt or VICUNA_SYSTEM
            bos = self.tokenizer.bos_token or ""
            earlier = "".join(
                f" {'USER' if t['role'] == 'user' else 'ASSISTANT'}: {t['content']}"
                + (self.tokenizer.eos_token if t["role"] == "assistant" else "")
                for t in (context.turns if context else ())
            )
            return f"{bos}{system}{earlier} USER: {user} ASSISTANT:"
        messages = self._messages(user, context)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def render_answer(self, user: str, response: str) -> str:
        """The answer text as the format writes it, ending with its end-of-turn marker."""
        if self.format == "vicuna_v1.1":
            return f" {response}{self.tokenizer.eos_token}"
        prompt = self.render_prompt(user)
        full = self.tokenizer.apply_chat_template(
            self._messages(user) + [{"role": "assistant", "content": response}], tokenize=False
        )
        if not full.startswith(prompt):
            # Templates that rewrite earlier turns: fall back to the response and the EOS token.
            return f"{response}{self.tokenizer.eos_token}"
        return full[len(prompt) :].rstrip()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    # -- pieces ----------------------------------------------------------------------------------
    def pieces(
        self,
        instruction: str,
        response: str | None = None,
        with_speech: bool = True,
        context: Conversation | None = None,
        heard: str | None = None,
    ) -> PromptPieces:
        """Token pieces of one sample. With speech the user turn is "{instruction}{joiner}<speech>"
        ("\\n" unless the builder was given another joiner); without (text mode) it is the
        instruction alone and the suffix is empty. `heard` (a transcript-reading LSM: Whisper's
        text) becomes `heard_ids`, the LLM's tokens of " {heard}". `context` (a served chat: its
        system message and earlier turns) goes before the user turn."""
        if self.placeholder in instruction:
            raise PromptFormatError(
                f"the instruction contains the speech placeholder {self.placeholder!r}: {instruction!r}"
            )
        user = f"{instruction}{self.joiner}{self.placeholder}" if with_speech else instruction
        prompt = self.render_prompt(user, context)
        if with_speech:
            if prompt.count(self.placeholder) != 1:
                raise PromptFormatError(f"the rendered prompt must hold {self.placeholder!r} exactly once: {prompt!r}")
            prefix, suffix = prompt.split(self.placeholder)
        else:
            prefix, suffix = prompt, ""
        answer = self._encode(self.render_answer(user, response)) if response is not None else []
        prefix_ids = self._encode(prefix)
        heard_ids = self._encode(f" {heard.strip()}") if with_speech and heard and heard.strip() else []
        span = self._instruction_span(prefix, instruction)
        return PromptPieces(prefix_ids, self._encode(suffix), answer, span, heard_ids)

    def _instruction_span(self, prefix: str, instruction: str) -> tuple[int, int]:
        """Token span of the instruction inside the prefix, by encoding the text before and up to
        its end (the turn's boundaries are newlines and role markers, where BPE does not merge
        across). Only the bias analysis reads it, to tell the instruction from the template."""
        start = prefix.rfind(instruction) if instruction else -1
        if start < 0:
            return (0, 0)
        return (len(self._encode(prefix[:start])), len(self._encode(prefix[: start + len(instruction)])))

    def stop_token_ids(self) -> list[int]:
        """Tokens that end an answer: EOS and the template's end-of-turn token (e.g. <|im_end|>)."""
        ids = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        if self.format == "chat_template":
            marker = self._encode(self.render_answer("x", ""))
            if len(marker) >= 1:
                ids.add(marker[0])  # the first token after an empty answer is the end-of-turn marker
        return sorted(ids)


@dataclass
class PromptLayout:
    """Where every position of a padded batch comes from, planned on the host before any model
    runs: token ids (0 in the speech slots), labels, segments, attention mask and positions."""

    input_ids: torch.Tensor  # (batch, length) token ids; 0 at speech and pad positions
    attention_mask: torch.Tensor  # (batch, length) 1 = real
    position_ids: torch.Tensor  # (batch, length) counting real positions only
    labels: torch.Tensor  # (batch, length) IGNORE_INDEX except answer tokens
    segments: torch.Tensor  # (batch, length) SEGMENT_* per position


@dataclass
class SplicedBatch:
    """LLM inputs with speech embeddings spliced in, padded on one side."""

    inputs_embeds: torch.Tensor  # (batch, length, hidden)
    attention_mask: torch.Tensor  # (batch, length) 1 = real
    position_ids: torch.Tensor  # (batch, length) counting real positions only
    labels: torch.Tensor  # (batch, length) IGNORE_INDEX except answer tokens
    segments: torch.Tensor  # (batch, length) SEGMENT_* per position


def plan_layout(
    pieces: Sequence[PromptPieces], speech_counts: Sequence[int], padding_side: str = "right"
) -> PromptLayout:
    """Lay out prefix, heard tokens, `speech_counts[i]` speech slots (none for text mode), suffix
    and answer per sample, padded on one side. Pure host work: the processor runs it (in data-loader workers too),
    so the model step receives finished tensors.

    Training pads on the right; generation pads on the left so every prompt ends at the same
    position. Labels are IGNORE_INDEX everywhere except the answer and its end-of-turn token."""
    if len(pieces) != len(speech_counts):
        raise ValueError(f"{len(pieces)} prompts but {len(speech_counts)} speech inputs")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    rows = []  # per sample: (token ids, label, segment) per position; speech slots hold token 0
    for piece, n_speech in zip(pieces, speech_counts):
        ids = piece.prefix_ids + piece.heard_ids + [0] * n_speech + piece.suffix_ids + piece.answer_ids
        n_prompt = len(ids) - len(piece.answer_ids)
        labels = [IGNORE_INDEX] * n_prompt + piece.answer_ids
        first, last = (min(bound, len(piece.prefix_ids)) for bound in piece.instruction_span)
        prefix_segments = [SEGMENT_PROMPT] * len(piece.prefix_ids)
        prefix_segments[first:last] = [SEGMENT_INSTRUCTION] * (last - first)
        segments = (
            prefix_segments
            + [SEGMENT_HEARD] * len(piece.heard_ids)
            + [SEGMENT_SPEECH] * n_speech
            + [SEGMENT_PROMPT] * len(piece.suffix_ids)
            + [SEGMENT_ANSWER] * len(piece.answer_ids)
        )
        rows.append((ids, labels, segments))
    longest = max(len(ids) for ids, _, _ in rows)
    batch = len(rows)
    token_ids = torch.zeros(batch, longest, dtype=torch.long)
    label_tensor = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)
    segment_tensor = torch.full((batch, longest), SEGMENT_PAD, dtype=torch.long)
    for i, (ids, labels, segments) in enumerate(rows):
        start = longest - len(ids) if padding_side == "left" else 0
        span = slice(start, start + len(ids))
        token_ids[i, span] = torch.tensor(ids, dtype=torch.long)
        label_tensor[i, span] = torch.tensor(labels, dtype=torch.long)
        segment_tensor[i, span] = torch.tensor(segments, dtype=torch.long)
    attention = (segment_tensor != SEGMENT_PAD).long()
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return PromptLayout(token_ids, attention, position_ids, label_tensor, segment_tensor)


def embed_layout(
    input_ids: torch.Tensor,
    segments: torch.Tensor,
    speech: Sequence[torch.Tensor],
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Token embeddings with the speech embeddings scattered into the speech slots, in order.

    One embedding lookup and one `masked_scatter` per batch, so the cost does not grow with the
    batch in kernel launches (per-sample splicing was the bottleneck of a step on a GPU)."""
    weight = getattr(embed_tokens, "weight", None)
    dtype = weight.dtype if weight is not None else torch.float
    text_mask = (segments != SEGMENT_PAD) & (segments != SEGMENT_SPEECH)
    inputs = embed_tokens(input_ids) * text_mask.unsqueeze(-1).to(dtype)
    speech_mask = segments == SEGMENT_SPEECH
    slots = int(speech_mask.sum())
    given = [embeds for embeds in speech if embeds is not None and embeds.shape[0]]
    supplied = sum(int(embeds.shape[0]) for embeds in given)
    if slots != supplied:
        raise ValueError(
            f"the prompt layout has {slots} speech slots but the connector made {supplied} speech embeddings; "
            "the processor and the model disagree about the connector (build both from the same LSMConfig)"
        )
    if slots:
        values = torch.cat(given).to(device=inputs.device, dtype=inputs.dtype)
        inputs = inputs.masked_scatter(speech_mask.unsqueeze(-1), values)
    return inputs


def speech_slots(segments: torch.Tensor) -> list[int]:
    """Speech slots per row of a layout."""
    return (segments == SEGMENT_SPEECH).sum(dim=1).tolist()


def fill_speech_slots(
    speech: Sequence[torch.Tensor], keeps: Sequence[torch.Tensor] | None, slots: Sequence[int]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Speech embeddings that may be fewer than their row's slots -> exactly `slots[i]` each, the
    rest zeros, with a keep mask per row that is False on the filler (and, where `keeps` is
    given, also wherever it already was). For connectors whose token count is known only after
    they ran (`speech_states: decoder`): the layout reserves the most they may make. More
    embeddings than slots is an error, never a silent cut."""
    if len(speech) != len(slots):
        raise ValueError(f"{len(speech)} speech inputs for {len(slots)} rows")
    filled, masks = [], []
    for row, (embeds, room) in enumerate(zip(speech, slots)):
        have = int(embeds.shape[0])
        if have > room:
            raise ValueError(f"row {row}: the connector made {have} speech embeddings for {room} slots")
        keep = keeps[row] if keeps is not None else torch.ones(have, dtype=torch.bool, device=embeds.device)
        filled.append(torch.cat([embeds, embeds.new_zeros(room - have, embeds.shape[-1])]))
        masks.append(torch.cat([keep.bool(), keep.new_zeros(room - have, dtype=torch.bool)]))
    return filled, masks


def splice(
    pieces: Sequence[PromptPieces],
    speech: Sequence[torch.Tensor | None],
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
    padding_side: str = "right",
) -> SplicedBatch:
    """Build padded LLM inputs: prefix, speech embeddings (or nothing), suffix, answer: the layout
    plan and the embedding in one call (both halves are what the processor and `forward` use)."""
    counts = [0 if embeds is None else int(embeds.shape[0]) for embeds in speech]
    layout = plan_layout(pieces, counts, padding_side)
    weight = getattr(embed_tokens, "weight", None)
    device = weight.device if weight is not None else next(e for e in speech if e is not None).device
    layout = PromptLayout(*(tensor.to(device) for tensor in vars(layout).values()))
    inputs = embed_layout(layout.input_ids, layout.segments, speech, embed_tokens)
    return SplicedBatch(inputs, layout.attention_mask, layout.position_ids, layout.labels, layout.segments)
