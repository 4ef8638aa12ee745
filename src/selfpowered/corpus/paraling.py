"""The paralinguistic corpus (`selfpowered corpus synth OUT --size paraling`): speech that says how
it sounds - who speaks, how fast, over what noise, in what room, one voice or two - with labels
true by construction (`corpus.designs`: every parameter of what was done is on the manifest line).

- `train`: WordNet sentences, each utterance drawn at random: a voice of the training voices
  (half female), a pace (slow / normal / fast: 85-115 / 145-175 / 220-280 words a minute, reached
  through the TTS's own rate control), clean or noisy (white / pink
  / brown noise at 0-10 dB SNR), a dry or a reverberant room (RT60 0.7-1.5 s), sometimes a phone
  line or a pitch shift, a level between -35 and -15 dBFS, and in a quarter of the clips a second
  sentence by the same voice or another one.
- `dev` / `test`: controlled pairs, for the `paraling` eval suite: the *same sentence* under
  both values of one attribute (a female and a male voice; slow and fast; clean and noisy; dry and
  reverberant; one voice and two), everything else neutral, so the words cannot give the answer
  away. Their voices are held out: the dev voices choose a recipe, the test voices (and the
  fortunes text, a source no training split uses) report it.
"""

from __future__ import annotations

import random
from pathlib import Path

from selfpowered.corpus.jobs import Job, Plan
from selfpowered.corpus.tts import Voice, voice_available, voice_gender
from selfpowered.errors import SelfPoweredError

# Whole voices per split, never shared (espeak-ng `+variant`s are espeak-ng's own voice files).
VOICES = {
    "train": {
        "female": ["flite:slt", "festival:cmu_us_slt_arctic_hts", "espeak-ng:en-gb+f3", "espeak-ng:en-us+f4",
                   "espeak-ng:en-us+Annie", "espeak-ng:en-gb+belinda", "espeak-ng:en-us+linda",
                   "espeak-ng:en-gb-x-rp+steph", "espeak-ng:en-us+anika", "espeak-ng:en-gb+Alicia"],
        "male": ["piper:joe", "flite:awb", "flite:kal16", "festival:kal_diphone", "espeak-ng:en-us",
                 "espeak-ng:en-gb-x-rp+m1", "espeak-ng:en-us+Andy", "espeak-ng:en-gb+david",
                 "espeak-ng:en-us+Michael", "espeak-ng:en-gb+paul"],
    },
    "dev": {
        "female": ["espeak-ng:en-gb-scotland+Andrea", "espeak-ng:en-us+steph2"],
        "male": ["espeak-ng:en-gb-scotland", "espeak-ng:en-us+Mike"],
    },
    "test": {
        "female": ["espeak-ng:en-029+f5", "espeak-ng:en-gb-x-gbclan+aunty", "espeak-ng:en-us-nyc+steph3"],
        "male": ["festival:ked_diphone", "flite:rms", "espeak-ng:en-gb-x-gbcwmd+edward"],
    },
}  # fmt: skip
ATTRIBUTES = ("gender", "pace", "background", "room", "speakers")  # what the eval asks, two values each
SIZES = {"train": 3000, "dev": 20, "test": 40}  # train: utterances; dev / test: sentences per attribute
WPM = {"slow": (85, 115), "normal": (145, 175), "fast": (220, 280)}  # the design's target words per minute
NEUTRAL = {"loudness_dbfs": -23.0, "target_wpm": 160}  # every other attribute of a test pair: a normal pace


def _voices(split: str) -> dict[str, list[Voice]]:
    chosen = {}
    for gender, specs in VOICES[split].items():
        voices = [Voice.parse(spec) for spec in specs]
        for voice in voices:
            if voice_gender(voice) != gender:
                raise SelfPoweredError(f"paraling voice {voice}: listed as {gender}, its own table says otherwise")
        chosen[gender] = [voice for voice in voices if voice_available(voice)]
        if not chosen[gender]:
            raise SelfPoweredError(f"paraling {split}: no {gender} voice is installed (make setup)")
    return chosen


def _job(split: str, name: str, text: str, voice: Voice, tempo: float, design: dict, seed: int, source: str) -> Job:
    return Job(
        name, split, text, voice, round(tempo, 3), f"audio/{split}/{name}.flac", seed=seed, source=source,
        speaker=voice.id, design=design,
    )  # fmt: skip


def _train_jobs(sentences: list[str], voices: dict[str, list[Voice]], rng: random.Random) -> list[Job]:
    everyone = voices["female"] + voices["male"]
    jobs = []
    for index in range(0, len(sentences) - 1, 1):
        text = sentences[index]
        gender = "female" if index % 2 == 0 else "male"
        voice = rng.choice(voices[gender])
        pace = rng.choices(list(WPM), weights=(1, 1, 1))[0]
        design: dict = {
            "loudness_dbfs": round(rng.uniform(-35.0, -15.0), 1),
            "target_wpm": round(rng.uniform(*WPM[pace])),
        }
        if rng.random() < 0.5:
            design["noise"] = {"color": rng.choice(("white", "pink", "brown")), "snr_db": round(rng.uniform(0, 10), 1)}
        if rng.random() < 0.5:
            design["room"] = {"rt60": round(rng.uniform(0.7, 1.5), 2)}
        if rng.random() < 0.1:
            design["telephone"] = True
        if rng.random() < 0.15:
            design["pitch"] = rng.choice((-1.0, 1.0))
        if rng.random() < 0.25:
            other = voice if rng.random() < 0.5 else rng.choice([v for v in everyone if v != voice])
            design["second"] = {"text": sentences[index + 1], "voice": str(other)}
        jobs.append(_job("train", f"train-{index:05d}", text, voice, 1.0, design, rng.randrange(2**31), "wordnet"))
    return jobs


def _pair_jobs(split: str, sentences: list[str], voices, per_attribute: int, rng: random.Random, source: str):
    """Per attribute, `per_attribute` sentences, each spoken under both of its values."""
    jobs, taken = [], 0
    for attribute in ATTRIBUTES:
        for index in range(per_attribute):
            text, follow = sentences[taken], sentences[taken + 1]
            taken += 2
            gender = "female" if index % 2 == 0 else "male"
            voice = voices[gender][index // 2 % len(voices[gender])]
            seed = rng.randrange(2**31)
            base = {**NEUTRAL, "attribute": attribute}
            if attribute == "gender":
                opposite = "male" if gender == "female" else "female"
                other = voices[opposite][index % len(voices[opposite])]
                variants = {gender: (voice, 1.0, base), opposite: (other, 1.0, base)}
            elif attribute == "pace":  # the 95 vs 250 words a minute
                variants = {
                    pace: (voice, 1.0, {**base, "target_wpm": wpm}) for pace, wpm in (("slow", 95), ("fast", 250))
                }
            elif attribute == "background":
                noise = {"color": ("white", "pink", "brown")[index % 3], "snr_db": 5.0}
                variants = {"clean": (voice, 1.0, base), "noisy": (voice, 1.0, {**base, "noise": noise})}
            elif attribute == "room":
                variants = {"dry": (voice, 1.0, base), "reverberant": (voice, 1.0, {**base, "room": {"rt60": 1.2}})}
            else:  # speakers: the same two sentences by one voice, or by two voices of the same gender
                mates = [v for v in voices[gender] if v != voice] or voices["male" if gender == "female" else "female"]
                second = {"text": follow, "voice": str(mates[index % len(mates)])}
                variants = {
                    "one": (voice, 1.0, {**base, "second": {"text": follow, "voice": str(voice)}}),
                    "two": (voice, 1.0, {**base, "second": second}),
                }
            for value, (speaker, tempo, design) in variants.items():
                name = f"{split}-{attribute}-{index:03d}-{value}"
                jobs.append(_job(split, name, text, speaker, tempo, design, seed, source))
    return jobs


def plan_paraling(output: str | Path, seed: int = 0, splits=None) -> Plan:
    """Every utterance of the paralinguistic corpus (see the module), drawn whole from the seed."""
    from selfpowered.corpus.sourced import source_sentences

    rng = random.Random(f"{seed}:paraling")
    wanted = tuple(splits) if splits else ("train", "dev", "test")
    wordnet = source_sentences("wordnet", SIZES["train"] + 4 * len(ATTRIBUTES) * SIZES["dev"], Path(output), seed)
    # the far end of WordNet's shuffled order (the diverse corpus takes from the front)
    wordnet = wordnet[::-1]
    fortunes = source_sentences("fortunes", 2 * len(ATTRIBUTES) * SIZES["test"], Path(output), seed + 1)
    jobs: list[Job] = []
    if "train" in wanted:
        jobs += _train_jobs(wordnet[: SIZES["train"] + 1], _voices("train"), rng)
    if "dev" in wanted:
        dev_text = wordnet[SIZES["train"] + 1 :]
        jobs += _pair_jobs("dev", dev_text, _voices("dev"), SIZES["dev"], rng, "wordnet")
    if "test" in wanted:
        jobs += _pair_jobs("test", fortunes, _voices("test"), SIZES["test"], rng, "fortunes")
    train_voices = [v for vs in _voices("train").values() for v in vs] if "train" in wanted else []
    order = tuple(split for split in ("train", "dev", "test") if split in wanted)
    description = "WordNet sentences (train, dev) and Debian fortunes (test), with labelled voices and acoustics"
    return Plan(jobs, train_voices, None, [], order, description)
