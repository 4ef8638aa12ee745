"""Labelled designs: what is done to one synthesised utterance, with every parameter, and the
labels that follow from it (true by construction; `corpus.paraling` plans them).

A design is a plain dict on the `Job` (so a plan is data, and a resumed run makes the same
file):

    {"target_wpm": words per minute | None, "pitch": semitones,
     "second": {"text": ..., "voice": "ENGINE:NAME"} | None, "gap": seconds,
     "room": {"rt60": s} | None, "noise": {"color": ..., "snr_db": dB} | None,
     "telephone": bool, "loudness_dbfs": dB}

applied in that order after the TTS: the first voice speaks the text at the job's tempo - or, with
`target_wpm`, at the tempo that brings this voice to that many words a minute on this sentence
(voices differ: espeak-ng reads a short sentence at ~250 where Piper takes ~170); shifted by
`pitch`; a second sentence by the same or another voice may follow after `gap`; then the room, the
noise, the phone line, and the level.
"""

from __future__ import annotations

import numpy as np

from selfpowered.audio import SAMPLE_RATE
from selfpowered.corpus import acoustics
from selfpowered.corpus.tts import Voice, synthesize, voice_gender

# the pace label: measured words per minute (TTS at its own rate speaks 140-180)
SLOW_BELOW, FAST_ABOVE = 130.0, 190.0
NOISY_BELOW_SNR_DB = 20.0  # noise at a lower SNR than this is a "noisy" background
REVERBERANT_FROM_RT60 = 0.5  # a room ringing this long or longer is "reverberant"
PACE_TOLERANCE = 0.12  # a TTS rate this far from the target words a minute is time-stretched the rest


def pace_label(words_per_minute: float) -> str:
    if words_per_minute < SLOW_BELOW:
        return "slow"
    return "fast" if words_per_minute > FAST_ABOVE else "normal"


def render_design(job) -> np.ndarray:
    """The samples of a designed utterance (see the module)."""
    design = job.design
    rng = np.random.default_rng(job.seed)
    tempo = paced_tempo(job) if design.get("target_wpm") else job.tempo
    samples = synthesize(job.voice, job.text, tempo)
    stretch = 1.0
    if design.get("target_wpm"):  # beyond an engine's own range (espeak-ng's slowest, festival's diphones):
        reached = acoustics.words_per_minute(job.text, samples.size / SAMPLE_RATE)  # stretch the rest
        if abs(reached / float(design["target_wpm"]) - 1) > PACE_TOLERANCE:
            stretch = float(design["target_wpm"]) / reached  # librosa: a rate above 1 is faster
            samples = acoustics.time_stretch(samples, stretch)
    if design.get("pitch"):
        samples = _pitch(samples, float(design["pitch"]))
    second = design.get("second")
    if second:
        other = synthesize(Voice.parse(second["voice"]), second["text"], tempo)
        if stretch != 1.0:
            other = acoustics.time_stretch(other, stretch)
        if design.get("pitch"):
            other = _pitch(other, float(design["pitch"]))
        gap = np.zeros(int(float(design.get("gap", 0.4)) * SAMPLE_RATE), dtype=np.float32)
        samples = np.concatenate([samples, gap, other])
    if design.get("room"):
        samples = acoustics.reverberate(samples, float(design["room"]["rt60"]), rng)
    if design.get("noise"):
        noise = design["noise"]
        samples = acoustics.add_noise(samples, noise["color"], float(noise["snr_db"]), rng)
    if design.get("telephone"):
        samples = acoustics.telephone(samples)
    return acoustics.set_loudness(samples, float(design.get("loudness_dbfs", -23.0)))


def paced_tempo(job) -> float:
    """The tempo at which the job's voice says its sentence at the design's `target_wpm`: measured
    at tempo 1 first (every engine here maps tempo to its own rate control, close to linearly)."""
    natural = acoustics.words_per_minute(job.text, synthesize(job.voice, job.text, 1.0).size / SAMPLE_RATE)
    return round(min(max(float(job.design["target_wpm"]) / natural, 0.35), 3.0), 3)


def _pitch(samples: np.ndarray, semitones: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(samples, sr=SAMPLE_RATE, n_steps=semitones).astype(np.float32)


def design_labels(job, measured: dict) -> dict:
    """Everything done to the utterance, and the categorical labels that follow: gender (of the
    voice; `mixed` for two voices of two genders), pace (from the measured words per minute),
    background, room, speakers; `measured` adds what was read off the file (level, pace)."""
    design = job.design
    second = design.get("second")
    voices = [str(job.voice)] + ([second["voice"]] if second else [])
    genders = {voice_gender(Voice.parse(voice)) for voice in voices}
    noise, room = design.get("noise"), design.get("room")
    labels = {
        "voice": voices[0],
        "gender": genders.pop() if len(genders) == 1 else "mixed",
        # the rate asked of the TTS: a target in words a minute (the tempo follows from the voice), or a tempo
        **({"target_wpm": design["target_wpm"]} if design.get("target_wpm") else {"tempo": job.tempo}),
        "pitch_semitones": float(design.get("pitch", 0.0)),
        "background": "noisy" if noise and float(noise["snr_db"]) < NOISY_BELOW_SNR_DB else "clean",
        "noise": noise["color"] if noise else None,
        "snr_db": float(noise["snr_db"]) if noise else None,
        "room": "reverberant" if room and float(room["rt60"]) >= REVERBERANT_FROM_RT60 else "dry",
        "rt60": float(room["rt60"]) if room else None,
        "telephone": bool(design.get("telephone")),
        "speakers": "two" if second and second["voice"] != voices[0] else "one",
        "voices": voices,
    }
    if "words_per_minute" in measured:
        labels["pace"] = pace_label(measured["words_per_minute"])
    if design.get("attribute"):  # a test item: the attribute this clip is one value of
        labels["designed_for"] = design["attribute"]
    return {**labels, **measured}


def measure(job, samples: np.ndarray) -> dict:
    """What is read off a designed utterance's file: its level, and its pace (the words of both
    sentences over its length, without the silent edges and the gap)."""
    second = job.design.get("second")
    words = job.text + (" " + second["text"] if second else "")
    gap = float(job.design.get("gap", 0.4)) if second else 0.0
    edges = acoustics.EDGE_SECONDS * (2 if second else 1) + gap
    return {
        "words_per_minute": acoustics.words_per_minute(words, samples.size / SAMPLE_RATE, edges),
        "loudness_dbfs": round(acoustics.loudness_dbfs(samples), 1),
    }
