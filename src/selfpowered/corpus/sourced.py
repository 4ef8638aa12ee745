"""Corpora planned by text source: the `diverse` training corpus and the `ood` test set.

The presets live in `data/corpora.yaml`: per split, blocks of sentences by source and the
speakers (voice, or voice|transform) with weights, plus a distribution of training effects. The
plan is drawn whole from the seed before any audio is made (like `synth.plan_corpus`), so a
resumed run makes exactly the missing files and the same seed gives the same corpus.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml

from selfpowered.corpus import text_sources
from selfpowered.corpus.effects import EFFECTS
from selfpowered.corpus.jobs import SPLITS, Job, Plan
from selfpowered.corpus.tts import Voice, voice_available
from selfpowered.errors import SelfPoweredError


def load_presets() -> dict:
    return yaml.safe_load(resources.files("selfpowered.corpus").joinpath("data/corpora.yaml").read_text())


def parse_speaker(spec: str) -> tuple[Voice, str]:
    """`ENGINE:NAME` or `ENGINE:NAME|EFFECT` -> (voice, effect)."""
    voice, _, effect = spec.partition("|")
    if effect and effect not in EFFECTS:
        raise SelfPoweredError(f"speaker {spec!r}: unknown effect {effect!r}; known: {', '.join(EFFECTS)}")
    return Voice.parse(voice), effect


def speaker_id(voice: Voice, effect: str) -> str:
    return f"{voice.id}-{effect}" if effect else voice.id


def source_sentences(source: str, needed: int, folder: Path, seed: int) -> list[str]:
    """At least `needed` sentences of a source (all it has, for the corpus-backed ones), in an
    order shuffled by the seed, so consecutive slices give disjoint splits."""
    if source == "wordnet":
        found = text_sources.wordnet_examples()
    elif source == "fortunes":
        found = text_sources.fortune_sentences()
    elif source == "grammar":
        found = text_sources.grammar_sentences(needed, seed)
    elif source == "llm":
        from selfpowered.corpus.llm_text import llm_sentences

        found = llm_sentences(needed, folder / "text", seed)
    else:
        raise SelfPoweredError(f"unknown text source {source!r}; known: wordnet, fortunes, grammar, llm")
    random.Random(f"{seed}:{source}").shuffle(found)
    if len(found) < needed:
        raise SelfPoweredError(f"text source {source!r} has {len(found)} usable sentences, {needed} are planned")
    return found


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[float(weights[name]) for name in names])[0]


def plan_sourced_corpus(name: str, output: str | Path, seed: int = 0, splits: Sequence[str] | None = None) -> Plan:
    """Every utterance of preset `name` (id, split, source, text, speaker, effects, tempo, seed)."""
    presets = load_presets()
    if name not in presets:
        raise SelfPoweredError(f"unknown corpus preset {name!r}; known: {', '.join(presets)}")
    preset = presets[name]
    needed: dict[str, int] = {}
    for split in preset["splits"].values():
        for block in split["blocks"]:
            needed[block["source"]] = needed.get(block["source"], 0) + int(block["sentences"])
    texts = {source: source_sentences(source, count, Path(output), seed) for source, count in needed.items()}
    taken = dict.fromkeys(texts, 0)
    rng = random.Random(f"{seed}:{name}")
    jobs: list[Job] = []
    train_voices: dict[Voice, None] = {}
    skipped: dict[Voice, None] = {}
    for split, spec in preset["splits"].items():
        speakers = {}
        for text, weight in spec["speakers"].items():
            voice = parse_speaker(text)[0]
            if voice_available(voice):
                speakers[text] = weight
            else:
                skipped[voice] = None
        if not speakers:
            raise SelfPoweredError(f"preset {name}, split {split}: none of its voices is installed (make setup)")
        if split == "train":
            train_voices.update((parse_speaker(text)[0], None) for text in speakers)
        order = sorted(speakers)
        for block in spec["blocks"]:
            source, count = block["source"], int(block["sentences"])
            sentences = texts[source][taken[source] : taken[source] + count]
            taken[source] += count
            for index, text in enumerate(sentences):
                chosen = order[index % len(order)] if spec.get("balanced") else _weighted(rng, speakers)
                voice, voice_effect = parse_speaker(chosen)
                drawn = _weighted(rng, spec.get("effects", {"none": 1}))
                effects = "+".join(e for e in (voice_effect, "" if drawn == "none" else drawn) if e)
                speaker = speaker_id(voice, voice_effect)
                utt = f"{split}-{source}-{index:05d}-{speaker}"
                tempo, job_seed = round(rng.uniform(0.9, 1.1), 3), rng.randrange(2**31)
                audio = f"audio/{speaker}/{utt}.flac"
                jobs.append(Job(utt, split, text, voice, tempo, audio, effects, job_seed, source, speaker))
    wanted = tuple(splits) if splits else tuple(preset["splits"])
    jobs = [job for job in jobs if job.split in wanted]
    ordered = tuple(split for split in SPLITS if split in wanted)
    return Plan(jobs, list(train_voices), None, list(skipped), ordered, preset["description"])
