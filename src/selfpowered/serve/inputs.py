"""Request bodies of the OpenAI-compatible API -> engine requests, with errors that name the field.

A client's mistake must come back as a 4xx JSON error that says which field is wrong and why,
never as a 500 or a silently truncated answer: bad base64, audio that does not decode, an
unsupported format, empty or too-long audio, `n > 1`, audio anywhere but the last user message.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfpowered.audio import SAMPLE_RATE, resample, to_mono
from selfpowered.model.prompting import Conversation
from selfpowered.serve.limits import error_body, public_message

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")
MAX_PARTS = 64  # content parts in one message
MAX_MESSAGES = 256
JOIN_SILENCE_S = 0.3  # between several audio parts of one message, spoken as one utterance


class RequestError(Exception):
    """A bad request: HTTP `status`, OpenAI error `type`, the offending `param` and a message."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code

    def body(self) -> dict[str, Any]:
        return error_body(public_message(self.message), self.status, self.param, self.code)


# libsndfile's words for bytes in which it finds no container (the second misleads a client: it
# means the in-memory "file" could not be opened as any format)
UNRECOGNISED = ("Format not recognised", "is not a regular file")


def decode_audio(data: bytes, param: str, max_seconds: float, declared: str | None = None) -> np.ndarray:
    """Encoded audio bytes -> 16 kHz mono float32, or a RequestError naming `param`. The length is
    read from the container's header first and checked before anything is decoded, and decoding
    stops at the limit whatever the header says (a 2-hour FLAC of a few hundred kB costs nothing)."""
    import soundfile as sf

    if declared is not None and (not isinstance(declared, str) or declared.lower() not in AUDIO_FORMATS):
        raise RequestError(f"unsupported audio format {declared!r}; use one of {', '.join(AUDIO_FORMATS)}", param)
    if not data:
        raise RequestError("the audio is empty (0 bytes)", param)
    what = declared or "wav/mp3/flac/ogg"
    try:
        info = sf.info(io.BytesIO(data))
        rate, frames = int(info.samplerate), int(info.frames)
        if rate <= 0:
            raise ValueError("no sample rate")
        if info.channels > 8:
            raise RequestError(f"the audio has {info.channels} channels; at most 8 are accepted", param)
        if 0 < frames < 2**62 and frames / rate > max_seconds:
            raise _too_long(frames / rate, max_seconds, param)
        limit = int(max_seconds * rate) + 1
        samples, rate = sf.read(io.BytesIO(data), frames=limit + 1, dtype="float32", always_2d=False)
    except RequestError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError, MemoryError) as exc:
        reason = public_message(exc)
        if any(words in reason for words in UNRECOGNISED):
            reason = "no audio container recognised in the bytes"
        raise RequestError(f"the audio does not decode as {what} ({reason})", param) from exc
    samples = to_mono(np.asarray(samples))
    if samples.size == 0:
        raise RequestError("the audio has no samples", param)
    seconds = samples.size / rate
    if samples.size > limit:  # the header understated the length: decoding stopped at the limit
        raise _too_long(seconds, max_seconds, param, at_least=True)
    if not np.isfinite(samples).all():
        raise RequestError("the audio holds NaN or infinite samples", param)
    if seconds < 0.05:
        raise RequestError(f"the audio is {seconds * 1000:.0f} ms long: too short to hear anything", param)
    return resample(samples, rate, SAMPLE_RATE)


def _too_long(seconds: float, max_seconds: float, param: str, at_least: bool = False) -> RequestError:
    more = "over " if at_least else ""
    return RequestError(
        f"the audio is {more}{seconds:.1f} s long; this server accepts at most {max_seconds:g} s (--max-audio-seconds)",
        param,
    )


def _base64(text: Any, param: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError("expected a base64 string", param)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"not valid base64 ({public_message(exc)})", param) from exc


def _data_uri(url: Any, param: str) -> tuple[bytes, str | None]:
    if not isinstance(url, str):
        raise RequestError("expected a data: URI string (data:audio/wav;base64,...)", param)
    match = re.fullmatch(r"data:audio/([\w.+-]+)(?:;[^,]*)?;base64,(.*)", url, flags=re.DOTALL)
    if not match:
        raise RequestError("only data: URIs of base64 audio are accepted (data:audio/wav;base64,...)", param)
    subtype = {"x-wav": "wav", "wave": "wav", "mpeg": "mp3", "x-flac": "flac"}.get(match.group(1), match.group(1))
    return _base64(match.group(2), param), subtype


@dataclass
class ChatInput:
    """The parts of a chat request the engine needs."""

    instruction: str
    audio: np.ndarray | None
    context: Conversation
    audio_seconds: float


def parse_messages(messages: Any, max_seconds: float) -> ChatInput:
    """OpenAI `messages` -> instruction (the last user message's text), its audio parts joined into
    one utterance, and the context before it (system message, earlier text turns)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", "messages")
    if len(messages) > MAX_MESSAGES:
        raise RequestError(f"{len(messages)} messages; at most {MAX_MESSAGES} are accepted", "messages")
    system: str | None = None
    turns: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict) or "role" not in message:
            raise RequestError("each message needs a role and content", param)
        role, last = message["role"], index == len(messages) - 1
        if not isinstance(role, str) or role not in ("system", "developer", "user", "assistant"):
            shown = role if isinstance(role, str) else type(role).__name__
            raise RequestError(f"role {shown!r} is not supported (system, user, assistant)", f"{param}.role")
        if last and role != "user":
            raise RequestError("the last message must be the user's", f"{param}.role")
        text, clips = _content(message.get("content"), f"{param}.content", max_seconds, allow_audio=last)
        if role in ("system", "developer"):
            system = text if system is None else f"{system}\n{text}"
        elif not last:
            turns.append({"role": role, "content": text})
    audio = None
    if clips:
        gap = np.zeros(int(JOIN_SILENCE_S * SAMPLE_RATE), dtype=np.float32)
        audio = np.concatenate([part for clip in clips for part in (clip, gap)][:-1])
        if audio.size / SAMPLE_RATE > max_seconds:
            raise RequestError(
                f"the audio parts add up to {audio.size / SAMPLE_RATE:.1f} s; this server accepts at most "
                f"{max_seconds:g} s (--max-audio-seconds)",
                f"messages[{len(messages) - 1}].content",
            )
    seconds = 0.0 if audio is None else audio.size / SAMPLE_RATE
    return ChatInput(text, audio, Conversation(system, tuple(turns)), seconds)


def _content(content: Any, param: str, max_seconds: float, allow_audio: bool) -> tuple[str, list[np.ndarray]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError("content must be a string or a list of parts", param)
    if len(content) > MAX_PARTS:
        raise RequestError(f"content has {len(content)} parts; at most {MAX_PARTS} are accepted", param)
    texts, clips = [], []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise RequestError("each content part must be an object with a `type`", where)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text", "")
            if not isinstance(text, str):
                raise RequestError("a text part's `text` must be a string", f"{where}.text")
            texts.append(text)
            continue
        if kind not in ("input_audio", "audio_url"):
            shown = kind if isinstance(kind, str) else type(kind).__name__
            raise RequestError(f"part type {shown!r} is not supported (text, input_audio, audio_url)", f"{where}.type")
        if not allow_audio:
            raise RequestError("audio is accepted in the last user message only", where)
        body = part.get(kind)
        if not isinstance(body, dict):
            raise RequestError(f"`{kind}` must be an object", f"{where}.{kind}")
        if kind == "input_audio":
            data, declared = _base64(body.get("data"), f"{where}.input_audio.data"), body.get("format")
            if declared is not None and not isinstance(declared, str):
                raise RequestError(
                    "input_audio.format must be a string (wav, mp3, flac, ogg)", f"{where}.input_audio.format"
                )
            clips.append(decode_audio(data, f"{where}.input_audio", max_seconds, declared or "wav"))
        else:
            data, declared = _data_uri(body.get("url"), f"{where}.audio_url.url")
            clips.append(decode_audio(data, f"{where}.audio_url", max_seconds, declared))
    return " ".join(t for t in texts if t), clips
