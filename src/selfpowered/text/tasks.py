"""Instruction libraries: task -> templates, with weights and a seeded, per-sample-stable draw.

A preset is YAML (shipped: `paper`, `demo`; or a path to your own):

    name: mine
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
        tasks = [{k: v for k, v in asdict(t).items() if not (k == "attribute" and v is None)} for t in self.tasks]
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
            text = resources.files("selfpowered.text.presets").joinpath(f"{preset}.yaml").read_text()
            source = f"preset {preset!r}"
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
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
            raise ConfigError(f"{source}: expected a mapping with a `tasks:` mapping")
        unknown = (set(weights) | set(variants)) - set(data["tasks"])
        if unknown:
            raise ConfigError(f"{source}: no task(s) {sorted(unknown)} to override; tasks: {sorted(data['tasks'])}")
        tasks = []
        for name, spec in data["tasks"].items():
            if "variants" in spec:
                variant = variants.get(name, spec.get("default_variant"))
                if variant not in spec["variants"]:
                    raise ConfigError(
                        f"{source}: task {name!r} has no variant {variant!r}; has {sorted(spec['variants'])}"
                    )
                templates = spec["variants"][variant]
            else:
                templates = spec.get("templates")
            if not templates or not all(isinstance(t, str) and t.strip() for t in templates):
                raise ConfigError(f"{source}: task {name!r} needs a non-empty list of templates")
            answer = spec.get("answer", "llm")
            if answer not in ("llm", "transcript"):
                raise ConfigError(f"{source}: task {name!r}: answer must be llm or transcript, got {answer!r}")
            weight = float(weights.get(name, spec.get("weight", 1.0)))
            copy_allowed = bool(spec.get("copy_allowed", answer != "llm"))
            final = bool(spec.get("final_punctuation", True))
            verify = _verify_spec(spec.get("verify", {}), f"{source}: task {name!r}")
            attribute = spec.get("attribute")
            if attribute is not None and attribute not in SOUND_ATTRIBUTES:
                raise ConfigError(f"{source}: task {name!r}: attribute must be one of {', '.join(SOUND_ATTRIBUTES)}")
            tasks.append(Task(name, tuple(templates), weight, answer, copy_allowed, final, verify, attribute))
        return cls(str(data.get("name", source)), tasks, seed)


def _verify_spec(spec, where: str) -> tuple[tuple[str, str], ...]:
    """`verify: {instruction_id: {kwargs}}` -> sorted (id, kwargs JSON) pairs (hashable, stable digest)."""
    import json

    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise ConfigError(
            f"{where}: verify must map IFEval instruction ids to their kwargs, e.g. {{punctuation:no_comma: {{}}}}"
        )
    return tuple((str(k), json.dumps(v, sort_keys=True)) for k, v in sorted(spec.items()))
