"""Evaluation suites: one file per suite in this package, each registering itself here.

A suite says which queries it asks (`build`, the same for every system, seeded) and how the
answers are scored (`score`); an analysis (`text`, `bias`) looks at each LSM instead of asking
queries (`analyse`). Each has its own settings, a section of the eval config named after it:

    suites: [asr, instruct, content]
    content: {data: demo-output/ood/test.jsonl, limit: 240}

Adding a suite is one new file here with its test: a `SuiteSpec` subclass under `@register_suite`
(`load_suites` imports every module of this package, so the file is all it takes). The names,
help texts and settings that `eval --help`, `config show eval` and docs/evaluation.md list come
from this registry. Building queries and scoring answers are pure functions of their inputs, so a
scorer can be pinned by tests on hand-made cases; running the systems and caching their answers
is `evaluate.run`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from selfpowered.config import EvalConfig
from selfpowered.config.base import StrictModel
from selfpowered.config.sections import describe_sections, import_package_modules, register_under_name, section_settings
from selfpowered.errors import ConfigError


@dataclass(frozen=True)
class Query:
    key: str
    audio: str  # absolute path
    instruction: str
    transcript: str  # what the audio says (text baseline, references, echo check)
    duration: float  # seconds of audio (real-time factor)
    # a closed question's options: the system answers with the one it finds likeliest (model.choosing)
    # instead of decoding; () for every open query
    options: tuple[str, ...] = ()


@dataclass
class Suite:
    """One suite's queries (the same for every system) and what each query is about. `kind` names
    the registered suite that scores it (the content suite's queries are scored as `instruct`);
    `data` names the test set it was drawn from (`in-domain` for `EvalConfig.data`, else a key of
    `EvalConfig.ood_sets`); `lsm_only`: built for an analysis of the LSMs, not asked of the baselines;
    `asked`: False for clips an analysis reads itself (no system answers them); `closed`: every query
    has options, and a system answers with the likeliest (`System.choose`) instead of decoding."""

    name: str
    queries: list[Query]
    meta: list[dict] = field(default_factory=list)
    kind: str = ""
    data: str = "in-domain"
    lsm_only: bool = False
    asked: bool = True
    closed: bool = False

    def __post_init__(self) -> None:
        self.kind = self.kind or self.name
        if self.closed and not all(q.options for q in self.queries):
            raise ValueError(f"suite {self.name!r} is closed: every query needs options")


def row_id(query: Query) -> str:
    """The utterance a query is about (`<row id>#<task>` keys), to pair a system's answers to
    one utterance across suites."""
    return query.key.rsplit("#", 1)[0]


class NoOptions(StrictModel):
    """This suite has no settings of its own."""


@dataclass
class Building:
    """What building a suite may read: the eval settings, the output folder (synthesised probes
    go there), which suites were asked for, and each suite's validated settings."""

    settings: EvalConfig
    out: Path
    options: dict[str, StrictModel]

    @property
    def selected(self) -> Sequence[str]:
        return list(self.options)

    @cached_property
    def seen(self):
        """The task library the models were trained with."""
        from selfpowered.text.tasks import TaskLibrary

        return TaskLibrary.load(self.settings.tasks, self.settings.seed, variants=self.settings.task_variants)

    def test_sets(self) -> list[tuple[str, str, int]]:
        """(name, manifest, limit) of the in-domain set, then each out-of-domain set."""
        sets = [(IN_DOMAIN, self.settings.data, self.settings.limit)]
        return sets + [(name, path, self.settings.ood_limit) for name, path in self.settings.ood_sets.items()]

    def set_name(self, path: str) -> str:
        """The name a manifest has among the evaluation's sets (in-domain, an ood set) or its stem."""
        for name, other, _ in self.test_sets():
            if Path(other).resolve() == Path(path).resolve():
                return name
        return Path(path).stem


@dataclass
class Scoring:
    """What a scorer may read besides the suite and the answers: the references of an instruct
    suite (the LLM's text-mode answers), the same system's answers to every suite, and each
    suite's settings (`resolve_suites`)."""

    suites: dict[str, Suite]
    references: list[str] | None = None
    answered: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, StrictModel] = field(default_factory=dict)


@dataclass
class Analysis:
    """What an analysis of one LSM may use: the run (its cached `predict`), the system, the
    suites and this system's answers to them, the output folder, and where examples go."""

    run: Any
    system: Any
    suites: dict[str, Suite]
    answered: dict[str, list[str]]
    out: Path
    examples: dict


IN_DOMAIN = "in-domain"


class SuiteSpec:
    """A registered suite. `name` is its key in `suites:` and its settings section; `summary` is
    what `eval --help` and the docs say; `default`: run when the config names no suites (a suite
    that needs data of its own is not)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    default: ClassVar[bool] = True
    Options: ClassVar[type[StrictModel]] = NoOptions

    def build(self, building: Building, options: Any) -> dict[str, Suite]:
        """The suite's queries, keyed by suite name (a suite asked of several sets makes several)."""
        return {}

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        raise NotImplementedError(f"suite {self.name!r} scores no answers")

    def analyse(self, analysis: Analysis, options: Any) -> dict | None:
        """An analysis of one LSM (None: this suite only asks queries)."""
        return None


SUITES: dict[str, SuiteSpec] = {}


def register_suite(cls: type[SuiteSpec]) -> type[SuiteSpec]:
    """Class decorator: register a suite under its `name` (twice is a programming error)."""
    register_under_name(SUITES, cls, cls(), "suites")
    return cls


def load_suites() -> dict[str, SuiteSpec]:
    """Every suite of this package (each module registers its own on import), by name."""
    import_package_modules(__path__, __name__)
    return dict(sorted(SUITES.items()))


def default_suites() -> list[str]:
    return [name for name, spec in load_suites().items() if spec.default]


def resolve_suites(settings: EvalConfig) -> dict[str, StrictModel]:
    """The suites to run with their validated settings (a section per suite; defaults when absent).
    Unknown suites, sections that name no suite and bad settings are ConfigErrors naming the key."""
    known = load_suites()
    names = settings.suites if settings.suites is not None else default_suites()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"eval config: suites: unknown suite(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    options = {name: spec.Options for name, spec in known.items()}
    return section_settings("eval", options, settings.model_extra or {}, names)


def describe_suites() -> str:
    """Every registered suite, its summary and its settings (defaults), as `config show eval` and
    docs/evaluation.md list them."""
    return describe_sections(
        "suites (name them in `suites:`; each has a section of its settings, e.g. `content: {limit: 120}`):",
        (
            (name, spec.summary + ("" if spec.default else " (not run by default)"), spec.Options)
            for name, spec in load_suites().items()
        ),
    )


def build_all(settings: EvalConfig, out: Path) -> dict[str, Suite]:
    """The queries of every requested suite, in the order they were named."""
    options = resolve_suites(settings)
    building = Building(settings, out, options)
    suites: dict[str, Suite] = {}
    for name, values in options.items():
        suites.update(SUITES[name].build(building, values))
    return suites


def score(suites: dict[str, Suite], name: str, answers: Sequence[str], scoring: Scoring) -> dict:
    """Score one suite's answers with the suite registered under its kind."""
    return SUITES[suites[name].kind].score(suites[name], answers, scoring)
