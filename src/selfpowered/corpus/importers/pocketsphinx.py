"""`pocketsphinx`: the transcribed recordings of Debian's pocketsphinx-testdata (real human speech)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from selfpowered.atomic import atomic_file
from selfpowered.audio import SAMPLE_RATE
from selfpowered.corpus.importers import Candidate, Importer, register_importer
from selfpowered.errors import SelfPoweredError

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")


def pocketsphinx(src: str | Path, audio_dir: str | Path) -> Iterator[Candidate]:
    """The 11 transcribed recordings of Debian's pocketsphinx-testdata (BSD-2): 5 LibriVox clips of
    *Sense and Sensibility* (`librivox/transcription`), 5 spoken card names (`cards/`), and
    `goforward.raw` ("go forward ten meters", raw 16-bit 16 kHz mono, written out as FLAC).
    Sphinx transcripts look like `<s> seven of clubs </s> (003)`."""
    import numpy as np
    import soundfile as sf

    src = Path(src)
    if not (src / "librivox" / "transcription").is_file():
        raise SelfPoweredError(f"{src}: no librivox/transcription; install Debian's pocketsphinx-testdata")
    for folder, listing, speaker in (
        ("librivox", "transcription", "librivox"),
        ("cards", "cards.transcription", "cards"),
    ):
        path = src / folder / listing
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = re.fullmatch(r"\s*<s>(.*)</s>\s*\((\S+)\)\s*", line)
            if not match:
                yield Candidate({}, str(path), number, problem=f"not a sphinx transcript line: {line!r}")
                continue
            text, name = " ".join(match.group(1).split()), match.group(2)
            raw = {"id": f"{speaker}-{name}", "audio": f"{name}.wav", "text": text, "speaker": speaker, "lang": "en"}
            yield Candidate(raw, str(path), number)
    raw_file = src / "goforward.raw"
    target = Path(audio_dir) / "goforward.flac"
    with atomic_file(target, suffix=".flac") as temporary:
        samples = np.fromfile(raw_file, dtype="<i2").astype(np.float32) / 32768.0
        sf.write(str(temporary), samples, SAMPLE_RATE, format="FLAC")
    raw = {"id": "goforward", "audio": str(target.resolve()), "text": "go forward ten meters", "speaker": "goforward"}
    yield Candidate({**raw, "lang": "en"}, str(raw_file), 1)


@register_importer
class Pocketsphinx(Importer):
    name = "pocketsphinx"
    summary = f"Debian's pocketsphinx-testdata recordings ({POCKETSPHINX_DATA}): 11 real utterances, a test set"

    def candidates(self, src: Path, out: Path, options: object) -> Iterator[Candidate]:
        return pocketsphinx(src, self.audio_dir(out))
