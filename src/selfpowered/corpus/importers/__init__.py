"""ASR corpora in the shapes users have them -> a validated manifest (+ rejects).

One file per kind in this package, each registering itself here: an `Importer` under
`@register_importer` with a `name` (the CLI's `corpus import KIND`), a `summary`, an `Options`
model (the kind's settings: a section of the import config named after it, e.g. `table:
{text_column: sentence}` or `--set table.text_column=sentence`) and `candidates`, which only
*finds* records (with where each came from). `import_candidates` then validates them with the
manifest's own `check_row`, measures durations from the audio, writes the manifest with audio paths
relative to it, and lists every skipped record with its reason. Adding an importer is one new file
here plus its test; `config show import` and the CLI's help list it from the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from selfpowered.config import ImportConfig, LimitsConfig
from selfpowered.config.base import StrictModel
from selfpowered.config.sections import describe_sections, import_package_modules, register_under_name, section_settings
from selfpowered.corpus.manifest import ManifestReport, Reject, SeenIds, check_row, write_manifest, write_rejects
from selfpowered.errors import ConfigError


@dataclass
class Candidate:
    """A record found in the source, before validation. `problem` rejects it outright."""

    raw: dict[str, Any]
    source: str  # file the record came from
    line: int  # line (or row index) in that file
    problem: str | None = None


class NoOptions(StrictModel):
    """This importer has no settings."""


class Importer:
    """A registered corpus kind. `candidates(src, out, options)` yields the records it finds in
    `src`; `out` is the manifest to be written (an importer that writes audio puts it beside)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[StrictModel]] = NoOptions

    def candidates(self, src: Path, out: Path, options: Any) -> Iterator[Candidate]:
        raise NotImplementedError

    @staticmethod
    def audio_dir(out: Path) -> Path:
        """Where an importer that writes audio out puts it: `<manifest stem>_audio/` beside it."""
        return out.parent / (out.stem + "_audio")


IMPORTERS: dict[str, Importer] = {}


def register_importer(cls: type[Importer]) -> type[Importer]:
    """Class decorator: register an importer under its `name` (twice is a programming error)."""
    register_under_name(IMPORTERS, cls, cls(), "importers")
    return cls


def load_importers() -> dict[str, Importer]:
    """Every importer of this package (each module registers its own on import), by name."""
    import_package_modules(__path__, __name__)
    return dict(sorted(IMPORTERS.items()))


def describe_importers() -> str:
    """Every registered importer with its settings, as `config show import` lists them."""
    return describe_sections(
        "kinds (`corpus import KIND`; a kind's settings are a section named after it, e.g. `table: {text_column: "
        "sentence}`):",
        ((name, spec.summary, spec.Options) for name, spec in load_importers().items()),
    )


def resolve_importer(config: ImportConfig) -> tuple[Importer, StrictModel]:
    """The chosen kind and its validated settings (ConfigErrors name the kind or the key)."""
    known = load_importers()
    if config.kind not in known:
        raise ConfigError(f"import config: kind: unknown corpus kind {config.kind!r}; choose one of {', '.join(known)}")
    options = {name: spec.Options for name, spec in known.items()}
    return known[config.kind], section_settings("import", options, config.model_extra or {}, [config.kind])[config.kind]


def import_corpus(config: ImportConfig) -> ManifestReport:
    """`selfpowered corpus import`: find the chosen kind's records and write a validated manifest."""
    importer, options = resolve_importer(config)
    candidates = importer.candidates(Path(config.source), Path(config.output), options)
    return import_candidates(candidates, config.output, config.limits)


def import_candidates(
    candidates: Iterable[Candidate], out: str | Path, limits: LimitsConfig | None = None
) -> ManifestReport:
    """Validate candidates (audio paths absolute or relative to their source file) and write
    `out` plus `<out>.rejects.jsonl`."""
    out = Path(out)
    limits = limits or LimitsConfig()
    rows, rejects, seen, count = [], [], SeenIds(), 0
    for candidate in tqdm(candidates, desc=f"importing -> {out.name}", unit=" utt"):
        count += 1
        reason = candidate.problem
        row = None
        if reason is None:
            row, reason = check_row(candidate.raw, Path(candidate.source).parent, limits, seen, count)
        if row is None:
            rejects.append(Reject(candidate.line, candidate.raw.get("id"), reason, candidate.source))
            continue
        row.audio = str(row.audio_path(Path(candidate.source).parent).resolve())
        rows.append(row)
    write_manifest(out, rows, base=out.parent)
    write_rejects(out, rejects)
    return ManifestReport(rows, rejects, count)
