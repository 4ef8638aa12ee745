"""`SpeechProcessor`: audio + text -> the tensors `SpeechLM.forward` and `generate` take.

Everything that needs no model weights happens here, on the host: decoding and log-mel features
(or padding cached encoder states), the chat prompt, and the layout of the padded batch with one
slot per speech token, whose count follows from the real duration alone
(`connector.speech_token_lengths`; with `speech_states: decoder` from the most tokens Whisper's
decoder may write, the unused slots masked out by the model). The model step then gets finished
tensors, so training can prepare batches in data-loader workers, the Trainer can count tokens,
and a server can batch requests through the same path as training and evaluation (Ultravox's
processor pattern).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from selfpowered.audio import AudioInput, LogMelExtractor
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connectors import speech_token_lengths
from selfpowered.model.encoder import decoder_token_rate, featurize, speech_state_bounds
from selfpowered.model.hearing import Heard
from selfpowered.model.prompting import TRANSCRIPT_JOINER, Conversation, PromptBuilder, plan_layout
from selfpowered.model.sound_tags import SoundTagger, instruction_ids
from selfpowered.model.speech_tokens import reads_transcript

SPEECH_INPUTS = ("mel", "mel_frames", "mel_chunks", "encoder_states", "encoder_lengths")
PROCESSOR_FILE = "processor_config.json"


def pad_states(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance (frames, d) encoder states (e.g. from the feature cache) -> padded float
    states (batch, frames, d) and their lengths."""
    lengths = torch.tensor([int(s.shape[0]) for s in states], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence([s.float() for s in states], batch_first=True), lengths


class SpeechProcessor:
    """Tokenizer + feature extractor + prompt builder of one LSM; `__call__` makes a batch."""

    def __init__(self, config: LSMConfig, tokenizer, feature_extractor) -> None:
        self.config = config
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.mel = LogMelExtractor(feature_extractor)
        self.reads_transcript = reads_transcript(config)
        joiner = TRANSCRIPT_JOINER if self.reads_transcript else "\n"
        self.prompt = PromptBuilder(
            tokenizer, config.prompt_format, config.speech_placeholder, config.system_prompt, joiner=joiner
        )
        # a transcript-reading LSM may also read how each clip sounds, as words (model/sound_tags.py);
        # fitted by `selfpowered tag`, saved with the processor
        self.tagger: SoundTagger | None = None
        self._line_tokens = 0  # the most tokens the tagger's line adds (a training token budget's allowance)

    def __call__(
        self,
        instruction: Sequence[str],
        audio: Sequence[AudioInput | None] | None = None,
        encoder_states: Sequence[torch.Tensor | None] | None = None,
        response: Sequence[str] | None = None,
        padding_side: str = "right",
        contexts: Sequence[Conversation | None] | None = None,
        heard: Sequence[Heard | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One batch. Speech comes as `audio` (paths or 16 kHz arrays) or as cached `encoder_states`
        (frames, d) per row - or, for an LSM that reads Whisper's transcript, as `heard` (what
        `model.hearing` made of each clip: its text and encoder states; `SpeechLM.prepare` hears
        audio first). A row whose speech is None, or a call with none, is text mode (the user turn
        is the instruction alone). With `response` the labels cover the answers; `contexts` (a
        served chat's system message and earlier turns) go before each user turn."""
        if self.reads_transcript and (audio is not None or encoder_states is not None):
            raise ValueError(
                "this LSM reads Whisper's transcript: give the speech as `heard` (SpeechLM.prepare hears audio first)"
            )
        if heard is not None:
            if not self.reads_transcript:
                raise ValueError("`heard` is for speech_tokens: transcript; give this LSM audio or encoder_states")
            width = self.config.encoder_hidden_size
            encoder_states = [
                None if h is None else torch.zeros(0, width) if h.states is None else torch.from_numpy(h.states)
                for h in heard
            ]
        if audio is not None and encoder_states is not None:
            raise ValueError("give the speech as audio or as encoder_states, not both")
        rows = len(instruction)
        speech = audio if audio is not None else encoder_states
        if speech is not None and len(speech) != rows:
            raise ValueError(f"{rows} instructions but {len(speech)} speech inputs")
        responses = list(response) if response is not None else [None] * rows
        if len(responses) != rows:
            raise ValueError(f"{rows} instructions but {len(responses)} responses")
        inputs: dict[str, torch.Tensor] = {}
        frames = [0] * rows
        if audio is not None:
            inputs.update(featurize(self.mel, audio))
            rate = decoder_token_rate(self.config)
            frames = speech_state_bounds(inputs["mel_frames"], inputs["mel_chunks"], rate)
        elif encoder_states is not None:
            hidden = next((s.shape[-1] for s in encoder_states if s is not None), 1)
            present = [s if s is not None else torch.zeros(0, hidden) for s in encoder_states]
            inputs["encoder_states"], inputs["encoder_lengths"] = pad_states(present)
            frames = inputs["encoder_lengths"].tolist()
        has_speech = [speech is not None and speech[i] is not None for i in range(rows)]
        counts = [int(speech_token_lengths(self.config, n)) if on else 0 for n, on in zip(frames, has_speech)]
        contexts = list(contexts) if contexts is not None else [None] * rows
        heard = list(heard) if heard is not None else [None] * rows
        texts = [None if h is None else self.heard_words(h, text) for h, text in zip(heard, instruction)]
        pieces = [
            self.prompt.pieces(text, answer, with_speech=on, context=context, heard=words)
            for text, answer, on, context, words in zip(instruction, responses, has_speech, contexts, texts)
        ]
        layout = plan_layout(pieces, counts, padding_side)
        inputs.update(vars(layout))
        if response is None:
            del inputs["labels"]
        return inputs

    def heard_words(self, heard: Heard, instruction: str) -> str:
        """What the LLM reads of a heard clip: Whisper's transcript, then (with a sound tagger, and
        when its judge says `instruction` asks how the clip sounds) a line saying how it sounds."""
        if not self.shows_tag_line(instruction):
            return heard.text
        line = self.tagger.line(heard.states)
        return f"{heard.text}\n{line}" if line else heard.text

    def use_tagger(self, tagger: SoundTagger | None) -> None:
        """Read how each clip sounds through `tagger` (None: no tags); only a transcript-reading LSM can."""
        if tagger is not None and not self.reads_transcript:
            raise ValueError("a sound tagger adds words after Whisper's transcript: it needs speech_tokens: transcript")
        if tagger is not None and tagger.hidden_size != self.config.encoder_hidden_size:
            raise ValueError(
                f"sound tagger fitted on {tagger.hidden_size}-wide states; this LSM's encoder has "
                f"{self.config.encoder_hidden_size}"
            )
        if tagger is not None and tagger.judge is not None and len(tagger.judge.token_scores) < len(self.tokenizer):
            raise ValueError(
                f"the sound tagger's instruction judge scores {len(tagger.judge.token_scores)} tokens; "
                f"this LSM's tokenizer has {len(self.tokenizer)}"
            )
        self.tagger = tagger
        self._line_tokens = tagger.longest_line_tokens(self.tokenizer) if tagger is not None else 0

    def tag_line_tokens(self, instruction: str) -> int:
        """At most how many tokens the sound tagger's line adds to a prompt with `instruction` (0
        when it has no tagger or its judge keeps the line from this instruction)."""
        return self._line_tokens if self.shows_tag_line(instruction) else 0

    def shows_tag_line(self, instruction: str) -> bool:
        """Whether a prompt with `instruction` gets the sound tagger's line (its judge decides)."""
        return self.tagger is not None and self.tagger.wanted(instruction_ids(self.tokenizer, instruction))

    def batch_decode(self, token_ids: torch.Tensor) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]

    # -- saved with the model (transformers' processor contract: save_pretrained / from_pretrained) --
    def save_pretrained(self, folder: str | Path) -> None:
        """Tokenizer, feature extractor, and `processor_config.json` naming this class; its prompt
        settings are the model's own (config.json), so a checkpoint folder is a processor folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder))
        self.mel.feature_extractor.save_pretrained(str(folder))
        marker = {"processor_class": type(self).__name__, "prompt_joiner": self.prompt.joiner}
        (folder / PROCESSOR_FILE).write_text(json.dumps(marker, indent=1) + "\n")
        if self.tagger is not None:
            self.tagger.save(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **_: object) -> SpeechProcessor:
        """The processor of a checkpoint folder (`AutoProcessor.from_pretrained` calls this): its
        config, and its tokenizer and feature extractor - or, for a checkpoint stripped to its
        trained weights, those of the base models it names."""
        from transformers import AutoTokenizer, WhisperFeatureExtractor

        from selfpowered.assets import resolve_model

        folder = Path(folder)
        config = LSMConfig.from_pretrained(str(folder))

        def base(reference: str | None, kind: str) -> Path:
            if reference and reference.startswith("./"):
                return folder / reference
            return resolve_model(reference, kind=kind)

        tokenizer_source = (
            folder if (folder / "tokenizer_config.json").is_file() else base(config.llm_name_or_path, "llm")
        )
        extractor_source = (
            folder if (folder / "preprocessor_config.json").is_file() else base(config.encoder_name_or_path, "encoder")
        )
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
        processor = cls(config, tokenizer, WhisperFeatureExtractor.from_pretrained(str(extractor_source)))
        processor.use_tagger(SoundTagger.load(folder))
        return processor
