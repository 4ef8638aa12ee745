"""The `paraling` suite: does a system hear what a transcript cannot carry - who speaks, how fast,
over what noise, in what room, one voice or two?

Judge-free: closed-option questions with the options in the instruction (`paraling-heldout`
wordings, never trained on), the answer read back by `text.paraling.parse` (exactly one option
named, else wrong). The clips are the paralinguistic corpus's test pairs (`corpus synth --size
paraling`: the same sentence under both values of one attribute, held-out voices, a text source
no training split uses), so the words cannot give the answer away: a cascade or the LLM given the
transcript should sit at chance (0.5), and above 0.6 the suite leaks. The real recordings join
with effects applied here (a tempo change, noise, a room: real voices, controlled labels).
Every fifth clip is also asked for an open description, scored by the attributes it names.

A small LLM often answers with a sentence that names no option, so each question is also asked
closed (`paraling-choice`): the system's answer is the option it finds likeliest as its answer's
first words (model/choosing.py), read back by the same rule. The parsed accuracy measures hearing
*and* obeying the format; the likeliest option measures what the model believes it heard, its
prior over the option words included (a model that prefers one option's words picks it for nearly
every clip; bench/option_calibration.py reads the scores batch-calibrated, as a diagnostic).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from selfpowered.config.base import StrictModel
from selfpowered.corpus.manifest import ManifestRow
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate.intervals import bootstrap_interval
from selfpowered.evaluate.suites import Building, Query, Scoring, Suite, SuiteSpec, register_suite
from selfpowered.text.paraling import EVAL_VALUES, attributes_described, parse, value_of
from selfpowered.text.tasks import TaskLibrary

DESCRIBE_EVERY = 5
CLOSED = "paraling-choice"  # the suite of the same questions answered by the likeliest option
# what the suite does to each real recording: (attribute, value, transform parameters)
REAL_EFFECTS = (
    ("pace", "slow", {"stretch": 0.65}),
    ("pace", "fast", {"stretch": 1.5}),
    ("background", "clean", {}),
    ("background", "noisy", {"noise": "pink", "snr_db": 5.0}),
    ("room", "dry", {}),
    ("room", "reverberant", {"rt60": 1.2}),
)


def paraling_items(rows: Sequence[ManifestRow], base: Path, library: TaskLibrary, data: str) -> tuple[list, list]:
    """Queries and their meta for labelled clips: each clip's designed attribute asked in the
    library's wording, and every `DESCRIBE_EVERY`-th clip an open description too."""
    queries, meta = [], []
    for index, row in enumerate(rows):
        labels = row.extra.get("labels", {})
        attribute = labels.get("designed_for")
        truth = value_of(attribute, labels) if attribute in EVAL_VALUES else None
        if truth is None:
            continue
        audio = str(row.audio_path(base))
        instruction = library.task(attribute).templates[0]
        queries.append(Query(f"{row.id}#{attribute}", audio, instruction, row.text, row.duration))
        meta.append({"attribute": attribute, "truth": truth, "set": data, "voice": labels.get("voice")})
        if index % DESCRIBE_EVERY == 0:
            queries.append(Query(f"{row.id}#describe", audio, library.task("describe").templates[0], row.text,
                                 row.duration))  # fmt: skip
            meta.append({"attribute": "describe", "labels": labels, "set": data, "voice": labels.get("voice")})
    return queries, meta


def effected_real_rows(rows: Sequence[ManifestRow], base: Path, folder: Path, seed: int = 0) -> list[ManifestRow]:
    """The real recordings under `REAL_EFFECTS`, written once into `folder` (FLAC) with labels."""
    import soundfile as sf

    from selfpowered.atomic import atomic_file
    from selfpowered.audio import SAMPLE_RATE, load_audio
    from selfpowered.corpus import acoustics

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, row in enumerate(rows):
        for attribute, value, params in REAL_EFFECTS:
            name = f"{row.id}-{attribute}-{value}"
            path = folder / f"{name}.flac"
            if not path.is_file():
                rng = np.random.default_rng(seed * 1_000_003 + index)
                samples = load_audio(row.audio_path(base))
                if "stretch" in params:
                    samples = acoustics.time_stretch(samples, params["stretch"])
                if "rt60" in params:
                    samples = acoustics.reverberate(samples, params["rt60"], rng)
                if "noise" in params:
                    samples = acoustics.add_noise(samples, params["noise"], params["snr_db"], rng)
                samples = acoustics.set_loudness(samples, -23.0)
                with atomic_file(path, suffix=".flac") as temporary:
                    sf.write(str(temporary), samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            duration = sf.info(str(path)).duration
            labels = {"designed_for": attribute, attribute: value, "voice": row.speaker, "effect": params}
            # absolute: the suite reads these rows against its own base folder, which `folder` may be inside
            out.append(
                ManifestRow(name, str(path.resolve()), row.text, duration, "en", row.speaker, {"labels": labels})
            )
    return out


def paraling_suite(sets: dict[str, tuple[Sequence[ManifestRow], Path]], library: TaskLibrary) -> Suite:
    """One suite over every labelled set (name -> (rows, their base folder))."""
    queries, meta = [], []
    for name, (rows, base) in sets.items():
        more_queries, more_meta = paraling_items(rows, base, library, name)
        queries += more_queries
        meta += more_meta
    return Suite("paraling", queries, meta, "paraling")


def closed_suite(suite: Suite, library: TaskLibrary) -> Suite | None:
    """The same questions answered by the likeliest option (the library's `options` of each
    attribute; the open descriptions left out). None when the library offers no options."""
    queries, meta = [], []
    for query, item in zip(suite.queries, suite.meta):
        if item["attribute"] == "describe" or not (options := library.task(item["attribute"]).options):
            continue
        queries.append(replace(query, options=options))
        meta.append(item)
    return Suite(CLOSED, queries, meta, "paraling", closed=True) if queries else None


def _accuracy(outcomes: list[bool]) -> dict:
    if not outcomes:
        return {"n": 0, "accuracy": None, "accuracy_95ci": None}
    values = [float(x) for x in outcomes]
    return {
        "n": len(values),
        "accuracy": round(sum(values) / len(values), 4),
        "accuracy_95ci": bootstrap_interval(values, lambda s: sum(s) / len(s)),
    }


def score_paraling(suite: Suite, answers: Sequence[str]) -> dict:
    """Accuracy with a 95% interval per attribute and set (and over all), the unparsed share, how
    often each value was answered (a system that hears nothing answers one value every time), and
    for the open descriptions how often they name two attributes right and none wrong."""
    outcomes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    unparsed: dict[str, int] = defaultdict(int)
    said_counts: dict[str, Counter] = defaultdict(Counter)  # what was answered: one value every time is no hearing
    described: dict[str, list[dict]] = defaultdict(list)
    for item, answer in zip(suite.meta, answers):
        if item["attribute"] == "describe":
            described[item["set"]].append(attributes_described(answer, item["labels"]))
            continue
        said = parse(item["attribute"], answer, EVAL_VALUES[item["attribute"]])
        unparsed[item["attribute"]] += said is None
        said_counts[item["attribute"]][said or "none"] += 1
        outcomes[(item["set"], item["attribute"])].append(said == item["truth"])
    per_set: dict[str, dict] = defaultdict(dict)
    for (name, attribute), values in sorted(outcomes.items()):
        per_set[name][attribute] = _accuracy(values)
    per_attribute = {
        attribute: _accuracy([x for (_, a), values in outcomes.items() if a == attribute for x in values])
        for attribute in sorted({a for _, a in outcomes})
    }
    for attribute, count in unparsed.items():
        per_attribute[attribute]["unparsed"] = round(count / max(per_attribute[attribute]["n"], 1), 4)
        per_attribute[attribute]["answered"] = dict(sorted(said_counts[attribute].items()))
    descriptions = {}
    for name, found in described.items():
        two_right = [sum(found_one.values()) >= 2 and all(found_one.values()) for found_one in found]
        descriptions[name] = {
            "n": len(found),
            "two_right_none_wrong": round(sum(two_right) / len(two_right), 4) if two_right else None,
            "attributes_named": round(sum(len(f) for f in found) / len(found), 3) if found else None,
        }
    accuracies = [block["accuracy"] for block in per_attribute.values() if block["accuracy"] is not None]
    return {
        "n": len(answers),
        "accuracy": round(sum(accuracies) / len(accuracies), 4) if accuracies else None,
        "per_attribute": per_attribute,
        "per_set": dict(per_set),
        "describe": descriptions,
    }


class ParalingOptions(StrictModel):
    data: str | None = Field(None, description="the test pairs of `corpus synth --size paraling` (held-out voices)")
    real: str | None = Field(None, description="real recordings the suite applies effects to (pace, noise, room)")
    tasks: str = Field("paraling-heldout", description="the questions (options in them), never trained on")
    choice: bool = Field(True, description=f"also ask each question closed ({CLOSED}): the likeliest option")

    @model_validator(mode="after")
    def _some_clips(self) -> ParalingOptions:
        if not self.data and not self.real:
            raise ValueError("the paraling suite needs data (corpus synth OUT --size paraling) or real")
        return self


@register_suite
class Paraling(SuiteSpec):
    name = "paraling"
    summary = "closed-option questions about who speaks and how (gender, pace, noise, room, speakers): accuracy + CI"
    default = False
    Options = ParalingOptions

    def build(self, building: Building, options: ParalingOptions) -> dict[str, Suite]:
        from selfpowered.config import LimitsConfig
        from selfpowered.corpus.manifest import read_manifest

        sets = {}
        limits = LimitsConfig(check_audio=False)
        for key, path in (("data", options.data), ("real", options.real)):
            if path and not Path(path).is_file():
                raise SelfPoweredError(f"{path}: paraling.{key} manifest not found")
        if options.data:
            sets["held-out voices"] = (read_manifest(Path(options.data), limits).rows, Path(options.data).parent)
        if options.real:
            real = Path(options.real)
            folder = building.out / "probes" / "paraling-real"
            sets["real, effects applied"] = (effected_real_rows(read_manifest(real, limits).rows, real.parent, folder),
                                             building.out)  # fmt: skip
        library = TaskLibrary.load(options.tasks, building.settings.seed)
        suites = {"paraling": paraling_suite(sets, library)}
        if options.choice and (closed := closed_suite(suites["paraling"], library)) is not None:
            suites[CLOSED] = closed
        return suites

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        return score_paraling(suite, answers)
