"""`commonvoice`: a Common Voice release folder (a tsv and `clips/`)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.corpus.importers import Candidate, Importer, register_importer
from selfpowered.errors import SelfPoweredError


def commonvoice(src: str | Path, tsv: str = "validated.tsv", lang: str = "en") -> Iterator[Candidate]:
    """Common Voice release folder: a `*.tsv` (client_id, path, sentence, ...) and `clips/`."""
    src = Path(src)
    table = src / tsv
    if not table.is_file():
        raise SelfPoweredError(
            f"{table}: not found; pass --tsv with one of {sorted(p.name for p in src.glob('*.tsv'))}"
        )
    with open(table, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise SelfPoweredError(f"{table}: missing column(s) {sorted(missing)}")
        for number, record in enumerate(reader, start=2):  # line 1 is the header
            path = record.get("path") or ""
            raw = {
                "id": Path(path).stem,
                "audio": f"clips/{path}",
                "text": record.get("sentence") or "",
                "speaker": record.get("client_id") or None,
                "lang": record.get("locale") or lang,
            }
            yield Candidate(raw, str(table), number)


class CommonVoiceOptions(StrictModel):
    tsv: str = Field("validated.tsv", description="which tsv of the release")
    lang: str = Field("en", description="language of rows without a locale column")


@register_importer
class CommonVoice(Importer):
    name = "commonvoice"
    summary = "a Common Voice release folder: a tsv (client_id, path, sentence) and clips/"
    Options = CommonVoiceOptions

    def candidates(self, src: Path, out: Path, options: CommonVoiceOptions) -> Iterator[Candidate]:
        return commonvoice(src, tsv=options.tsv, lang=options.lang)
