"""`hf`: a Hugging Face dataset saved with `save_to_disk` (audio written out as 16 kHz FLAC)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from selfpowered.atomic import atomic_file
from selfpowered.audio import SAMPLE_RATE
from selfpowered.config.base import StrictModel
from selfpowered.corpus.importers import Candidate, Importer, register_importer
from selfpowered.errors import SelfPoweredError


def hf_dataset(
    src: str | Path,
    out_audio_dir: str | Path,
    split: str | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    id_column: str | None = "id",
    speaker_column: str | None = "speaker_id",
) -> Iterator[Candidate]:
    """A dataset saved with `save_to_disk`. Audio is read as raw bytes (no torchcodec needed),
    decoded with soundfile, and written as 16 kHz mono FLAC under `out_audio_dir`."""
    import datasets
    import soundfile as sf

    from selfpowered.audio import resample, to_mono

    src = Path(src)
    try:
        loaded = datasets.load_from_disk(str(src))
    except (FileNotFoundError, ValueError) as exc:
        raise SelfPoweredError(f"{src}: not a dataset saved with save_to_disk ({exc})") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            raise SelfPoweredError(f"{src}: holds splits {list(loaded)}; choose one with --split")
        if split not in loaded:
            raise SelfPoweredError(f"{src}: no split {split!r}; it has {list(loaded)}")
        loaded = loaded[split]
    for column in (audio_column, text_column):
        if column not in loaded.column_names:
            raise SelfPoweredError(f"{src}: no column {column!r}; columns are {loaded.column_names}")
    if isinstance(loaded.features[audio_column], datasets.Audio):
        loaded = loaded.cast_column(audio_column, datasets.Audio(decode=False))
    out_audio_dir = Path(out_audio_dir)
    source = str(src / "dataset")
    for index, record in enumerate(loaded):
        utt_id = (
            str(record[id_column]) if id_column and record.get(id_column) is not None else f"{src.name}-{index:07d}"
        )
        raw = {"id": utt_id, "audio": "", "text": record[text_column] or ""}
        if speaker_column and record.get(speaker_column) is not None:
            raw["speaker"] = str(record[speaker_column])
        audio = record[audio_column] or {}
        try:
            if audio.get("bytes"):
                samples, rate = sf.read(io.BytesIO(audio["bytes"]), dtype="float32")
            elif audio.get("path") and Path(audio["path"]).is_file():
                samples, rate = sf.read(audio["path"], dtype="float32")
            else:
                yield Candidate(raw, source, index, problem="audio column holds neither bytes nor a readable path")
                continue
        except (sf.LibsndfileError, RuntimeError) as exc:
            yield Candidate(raw, source, index, problem=f"audio does not decode ({exc})")
            continue
        safe_id = utt_id.replace("/", "_")
        target = out_audio_dir / f"{safe_id}.flac"
        with atomic_file(target, suffix=".flac") as temporary:
            sf.write(str(temporary), resample(to_mono(samples), rate), SAMPLE_RATE, format="FLAC")
        raw["audio"] = str(target.resolve())
        yield Candidate(raw, source, index)


class HfOptions(StrictModel):
    split: str | None = Field(None, description="which split of a DatasetDict")
    audio_column: str = "audio"
    text_column: str = "text"
    id_column: str | None = Field("id", description="row ids; <folder>-<index> when absent")
    speaker_column: str | None = "speaker_id"


@register_importer
class HfDataset(Importer):
    name = "hf"
    summary = "a Hugging Face dataset saved with save_to_disk that has an audio column"
    Options = HfOptions

    def candidates(self, src: Path, out: Path, options: HfOptions) -> Iterator[Candidate]:
        return hf_dataset(src, self.audio_dir(out), **options.model_dump())
