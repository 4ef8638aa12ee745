"""Instruction libraries: task -> templates, with weights and a seeded, per-sample-stable draw.

A preset is YAML (shipped: `paper`, `demo`, ...; or a path to your own):

    name: mine
    extends: demo       # optional: a shipped preset's tasks first, then these
    tasks:
      translation: {weight: 1, templates: [...]}
      continuation: {weight: 1, default_variant: zh, variants: {zh: [...], en: [...]}}
      repetition: {weight: 1, copy_allowed: true, templates: [...]}   # answer may repeat the text
      title: {weight: 1, final_punctuation: false, templates: [...]}  # titles end without a full stop
      asr: {weight: 1, answer: transcript, templates: [...]}           # no LLM call: the transcript
      lower: {weight: 1, verify: {"change_case:english_lowercase": {}}, templates: [...]}
                    # verifiable: the LLM's answer is kept only if IFEval's checker passes it
      gender: {weight: 1, attribute: gender, templates: [...]}
                    # about how the clip sounds: the LLM is told the clip's labels (text/paraling.py)

The draw hashes (seed, sample id), so a rerun, a resumed run or any shard count gives every
sample the same task and template, independent of file order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfpowered.errors import ConfigError


def presets() -> tuple[str, ...]:
    """The shipped instruction libraries: every `text/presets/NAME.yaml` (a new preset is one file)."""
    folder = resources.files("selfpowered.text.presets")
    return tuple(sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".yaml")))


ASR_TASK = "asr"
# The transcription instruction when none is given: a plain ASR manifest used as training data,
# and the server's /v1/audio/transcriptions (the paper preset's first asr template).
DEFAULT_ASR_INSTRUCTION = "Provide the English transcription according to the speech"
SOUND_ATTRIBUTES = ("gender", "pace", "background", "room", "speakers", "describe")  # text/paraling.py


@dataclass(frozen=True)
class Task:
    name: str
    templates: tuple[str, ...]
    weight: float = 1.0
    answer: str = "llm"  # "llm": the LLM's text-mode answer; "transcript": the transcript itself
    copy_allowed: bool = False  # may the answer simply repeat the transcript?
    final_punctuation: bool = True  # must a complete answer end in punctuation? (not titles)
    # verifiable constraints (IFEval instruction id, its checker's kwargs as JSON) the answer must pass
    verify: tuple[tuple[str, str], ...] = ()
    # a question about how the clip sounds (text/paraling.py): the attribute it asks about (gender, pace,
    # background, room, speakers) or "describe"; None: a task about what was said
    attribute: str | None = None
    # a closed question's options as the instruction words them ("man", "woman"): eval may answer it
    # by the option the model finds likeliest instead of decoding (text/paraling.py maps each to a value)
    options: tuple[str, ...] = ()

    @property
    def constraints(self) -> list[tuple[str, dict]]:
        import json

        return [(constraint, json.loads(kwargs)) for constraint, kwargs in self.verify]


@dataclass(frozen=True)
class Draw:
    task: Task
    template_index: int

    @property
    def instruction(self) -> str:
        return self.task.templates[self.template_index]


def text_prompt(instruction: str, transcript: str) -> str:
    """The text-mode user turn that asks the LLM about a transcript (the official generation
    script's "{instruction}: {transcript}"). Augmentation and every text-mode evaluation baseline
    use it, so a reference answer is made exactly as a training target was."""
    return f"{instruction}: {transcript}"


def stable_hash(seed: int, key: str, salt: str) -> int:
    """64 bits fixed by (seed, salt, key) alone: the project's one per-sample seeded draw (task and
    template choice here, resampling seeds in augment), the same on every machine and resume."""
    digest = hashlib.sha256(f"{seed}\0{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _unit_interval(seed: int, key: str, salt: str) -> float:
    return stable_hash(seed, key, salt) / 2**64


class TaskLibrary:
    """A named set of tasks; `draw(sample_id)` picks one task and template for a sample."""

    def __init__(self, name: str, tasks: list[Task], seed: int = 0) -> None:
        active = [task for task in tasks if task.weight > 0]
        if not active:
            raise ConfigError(f"task library {name!r}: every task has weight 0")
        self.name, self.tasks, self.seed = name, active, seed
        total = sum(task.weight for task in active)
        self._cumulative = []
        running = 0.0
        for task in active:
            running += task.weight / total
            self._cumulative.append(running)

    def digest(self) -> str:
        """sha256 of what the library asks (tasks, templates, weights, answer kinds, seed)."""
        import json
        from dataclasses import asdict

        # a field at its default of None is left out, so libraries written before it keep their digest
        tasks = [{k: v for k, v in asdict(t).items() if (k, v) not in _UNSET} for t in self.tasks]
        content = json.dumps({"seed": self.seed, "tasks": tasks}, sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError(f"task library {self.name!r} has no task {name!r}")

    def draw(self, sample_id: str, only: str | None = None) -> Draw:
        """Task by weight (or `only` that task) and template uniformly, both from hash(seed, id)."""
        if only is not None:
            task = self.task(only)
        else:
            point = _unit_interval(self.seed, sample_id, "task")
            task = next((t for t, edge in zip(self.tasks, self._cumulative) if point < edge), self.tasks[-1])
        index = int(_unit_interval(self.seed, sample_id, "template:" + task.name) * len(task.templates))
        return Draw(task, min(index, len(task.templates) - 1))

    @classmethod
    def load(
        cls,
        preset: str,
        seed: int = 0,
        weights: dict[str, float] | None = None,
        variants: dict[str, str] | None = None,
    ) -> TaskLibrary:
        """A shipped preset by name or a YAML file; `weights` / `variants` override per task."""
        if preset in presets():
            text, source = _shipped_text(preset), f"preset {preset!r}"
        else:
            path = Path(preset)
            if not path.is_file():
                raise ConfigError(f"task library {preset!r} is neither a preset ({', '.join(presets())}) nor a file")
            text, source = path.read_text(), str(path)
        return cls.from_dict(yaml.safe_load(text), source, seed, weights or {}, variants or {})

    @classmethod
    def from_dict(
        cls, data: dict, source: str, seed: int, weights: dict[str, float], variants: dict[str, str]
    ) -> TaskLibrary:
        spec = PresetSpec.parse(data, source)
        specs = {**_extended_tasks(spec, source), **spec.tasks}
        unknown = (set(weights) | set(variants)) - set(specs)
        if unknown:
            raise ConfigError(f"{source}: no task(s) {sorted(unknown)} to override; tasks: {sorted(specs)}")
        tasks = [
            task.build(name, f"{source}: task {name!r}", weights.get(name), variants.get(name))
            for name, task in specs.items()
        ]
        return cls(spec.name or source, tasks, seed)


def _shipped_text(preset: str) -> str:
    return resources.files("selfpowered.text.presets").joinpath(f"{preset}.yaml").read_text()


def _extended_tasks(spec: PresetSpec, source: str) -> dict[str, TaskSpec]:
    """The tasks of the shipped preset `spec` extends (none without `extends`), which it may not redefine:
    a library that adds to another lists only what it adds, so the two cannot drift apart."""
    if spec.extends is None:
        return {}
    if spec.extends not in presets():
        raise ConfigError(f"{source}: extends {spec.extends!r}, not a shipped preset ({', '.join(presets())})")
    base = PresetSpec.parse(yaml.safe_load(_shipped_text(spec.extends)), f"preset {spec.extends!r}")
    if base.extends is not None:
        raise ConfigError(f"{source}: extends {spec.extends!r}, which itself extends another (one level only)")
    if clash := sorted(set(base.tasks) & set(spec.tasks)):
        raise ConfigError(f"{source}: task(s) {clash} already in {spec.extends!r}, which it extends")
    return dict(base.tasks)


# fields at their defaults that a digest leaves out, so libraries written before them keep theirs
_UNSET = {("attribute", None), ("options", ())}


class TaskSpec(BaseModel):
    """One task of a preset file: the settings a task may have (`config show tasks` lists them)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0, description="how often the task is drawn, relative to the others (0: never)")
    templates: list[str] | None = Field(None, description="the instruction's wordings, one drawn per sample")
    variants: dict[str, list[str]] | None = Field(
        None, description="named template lists instead of `templates` (e.g. a target language per variant)"
    )
    default_variant: str | None = Field(None, description="the variant used unless a run names another")
    answer: str = Field("llm", pattern="^(llm|transcript)$", description="llm: the LLM's text-mode answer; "
                        "transcript: the transcript itself, no LLM call (ASR)")  # fmt: skip
    copy_allowed: bool | None = Field(None, description="may the answer repeat the transcript (default: answer "
                                      "is transcript)")  # fmt: skip
    final_punctuation: bool = Field(True, description="must a complete answer end in punctuation (not titles)")
    verify: dict[str, dict] = Field(
        default_factory=dict,
        description="IFEval instruction ids -> their kwargs; the LLM's answer is kept only when every check passes",
    )
    attribute: str | None = Field(
        None, description=f"a question about how the clip sounds: one of {', '.join(SOUND_ATTRIBUTES)}"
    )
    options: list[str] | None = Field(
        None,
        description="a closed question's options, each worded as in every template and naming one value of "
        "the attribute (eval scores the likeliest)",
    )

    def build(self, name: str, where: str, weight: float | None, variant: str | None) -> Task:
        if self.variants is not None:
            variant = variant or self.default_variant
            if variant not in self.variants:
                raise ConfigError(f"{where} has no variant {variant!r}; has {sorted(self.variants)}")
            templates = self.variants[variant]
        else:
            templates = self.templates
        if not templates or not all(t.strip() for t in templates):
            raise ConfigError(f"{where} needs a non-empty list of templates")
        if self.attribute is not None and self.attribute not in SOUND_ATTRIBUTES:
            raise ConfigError(f"{where}: attribute must be one of {', '.join(SOUND_ATTRIBUTES)}")
        copy_allowed = self.copy_allowed if self.copy_allowed is not None else self.answer != "llm"
        verify = _verify_spec(self.verify, where)
        weight = float(weight if weight is not None else self.weight)
        options = _options_spec(self.options, self.attribute, templates, where)
        return Task(
            name, tuple(templates), weight, self.answer, copy_allowed, self.final_punctuation, verify, self.attribute,
            options,
        )  # fmt: skip


class PresetSpec(BaseModel):
    """A task library file: its name and its tasks."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="the library's name (default: the file it came from)")
    extends: str | None = Field(None, description="a shipped preset whose tasks come first; this file only adds tasks")
    tasks: dict[str, TaskSpec] = Field(..., min_length=1, description="task name -> its settings")

    @classmethod
    def parse(cls, data: object, source: str) -> PresetSpec:
        """Validate a loaded YAML document; a ConfigError names the file and the key (`tasks.title.weight`)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping with a `tasks:` mapping")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{source}: {problems}") from None


def describe_presets() -> str:
    """`config show tasks`: every shipped preset with its tasks (weight, wordings), then the settings a
    task may have - what a preset file of your own may use."""
    lines = ["# task presets (`--tasks NAME`, or a YAML file of your own with the same shape):"]
    for preset in presets():
        library = TaskLibrary.load(preset)
        listed = ", ".join(f"{t.name} (x{t.weight:g}, {len(t.templates)} wordings)" for t in library.tasks)
        lines.append(f"#   {preset}: {listed}")
    extends = PresetSpec.model_fields["extends"].description
    lines.append(f"# a preset's keys: `name:`, `extends:` ({extends}), `tasks:`")
    lines.append("# a task's settings (`tasks: {NAME: {...}}`):")
    for name, field in TaskSpec.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()
        lines.append(f"#   {name} (default {default!r}): {field.description}")
    return "\n".join(lines)


def _verify_spec(spec, where: str) -> tuple[tuple[str, str], ...]:
    """`verify: {instruction_id: {kwargs}}` -> sorted (id, kwargs JSON) pairs (hashable, stable digest)."""
    import json

    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise ConfigError(
            f"{where}: verify must map IFEval instruction ids to their kwargs, e.g. {{punctuation:no_comma: {{}}}}"
        )
    return tuple((str(k), json.dumps(v, sort_keys=True)) for k, v in sorted(spec.items()))


def _options_spec(options: list[str] | None, attribute: str | None, templates: list[str], where: str) -> tuple:
    """A closed question's options, checked: it asks about an attribute, every wording offers each
    option, and each names a different value of the attribute (so a chosen option is read back
    by the same rules as a decoded answer)."""
    import re

    from selfpowered.text.paraling import EVAL_VALUES, parse, whole_word

    if not options:
        return ()
    if attribute not in EVAL_VALUES:
        raise ConfigError(f"{where}: options: only a question about {', '.join(EVAL_VALUES)} has options")
    values = []
    for option in options:
        for template in templates:
            if not re.search(whole_word(option), template, flags=re.IGNORECASE):
                raise ConfigError(f"{where}: options: {option!r} is not offered in the template {template!r}")
        value = parse(attribute, option, EVAL_VALUES[attribute])
        if value is None:
            raise ConfigError(f"{where}: options: {option!r} names no single {attribute} value "
                              f"({', '.join(EVAL_VALUES[attribute])})")  # fmt: skip
        values.append(value)
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: options: two options name the same {attribute} value")
    return tuple(options)
