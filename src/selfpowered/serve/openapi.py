"""The request bodies of the API, as OpenAPI schemas (`/openapi.json`).

The routes read their bodies themselves (so that every mistake is answered in OpenAI's error shape
and nothing is parsed twice); these schemas document what they accept, a client generator can use
them, and the fuzz test (`tests/test_serve_fuzz.py`, schemathesis) draws its requests from them.
"""

from __future__ import annotations

_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_AUDIO_PART = {
    "type": "object",
    "required": ["type", "input_audio"],
    "properties": {
        "type": {"const": "input_audio"},
        "input_audio": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {"type": "string", "description": "base64 of the encoded audio"},
                "format": {"enum": ["wav", "mp3", "flac", "ogg"]},
            },
        },
    },
}
_AUDIO_URL_PART = {
    "type": "object",
    "required": ["type", "audio_url"],
    "properties": {
        "type": {"const": "audio_url"},
        "audio_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "description": "data:audio/wav;base64,..."}},
        },
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"anyOf": [_TEXT_PART, _AUDIO_PART, _AUDIO_URL_PART]}},
            ]
        },
    },
}
CHAT_SCHEMA = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "n": {"type": "integer", "minimum": 1, "maximum": 1},
        "no_repeat_ngram_size": {"type": "integer", "minimum": 0, "maximum": 32},
    },
}
CHAT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": CHAT_SCHEMA}}}}
TRANSCRIPTION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "model"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "response_format": {"enum": ["json", "text", "verbose_json"]},
                    },
                }
            }
        },
    }
}
