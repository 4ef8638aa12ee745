"""`librispeech`: a LibriSpeech folder (`*.trans.txt` next to flac files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.corpus.importers import Candidate, Importer, register_importer
from selfpowered.errors import SelfPoweredError


def librispeech(src: str | Path, lowercase: bool = True) -> Iterator[Candidate]:
    """`<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` lines "ID TEXT" next to `ID.flac`."""
    src = Path(src)
    transcripts = sorted(src.rglob("*.trans.txt"))
    if not transcripts:
        raise SelfPoweredError(f"{src}: no *.trans.txt files; is this a LibriSpeech folder?")
    for transcript in transcripts:
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            raw = {
                "id": utt_id,
                "audio": f"{utt_id}.flac",
                "text": text.lower() if lowercase else text,
                "speaker": utt_id.split("-")[0],
                "lang": "en",
            }
            yield Candidate(raw, str(transcript), number)


class LibriSpeechOptions(StrictModel):
    lowercase: bool = Field(True, description="lower-case the all-caps transcripts")


@register_importer
class LibriSpeech(Importer):
    name = "librispeech"
    summary = "a LibriSpeech folder: <speaker>/<chapter>/*.trans.txt next to the flac files"
    Options = LibriSpeechOptions

    def candidates(self, src: Path, out: Path, options: LibriSpeechOptions) -> Iterator[Candidate]:
        return librispeech(src, lowercase=options.lowercase)
