"""Is our CTranslate2 -> Hugging Face Whisper conversion exact? Transcribe real human speech.

Debian's pocketsphinx-testdata ships 5 public-domain LibriVox clips with transcripts. A conversion
that scrambled any weight would not get within a few percent WER; the expected numbers for the
original models are tiny.en 4.2% and base 1.4% (after the Whisper English normaliser).

    .venv/bin/python bench/whisper_conversion.py [--models whisper-tiny.en whisper-base]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time

from selfpowered.assets import EMBEDDED_MODELS, librivox_clips
from selfpowered.model.hearing import WhisperHearing
from selfpowered.text.metrics import word_error_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    encoders = [name for name, spec in EMBEDDED_MODELS.items() if spec.kind == "encoder"]
    parser.add_argument("--models", nargs="+", default=encoders)
    args = parser.parse_args()
    clips = librivox_clips()
    print(f"# {time.strftime('%Y-%m-%d')} {platform.machine()} {platform.processor() or ''}".strip())
    print("| model | clips | WER | substitutions | deletions | insertions | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        if importlib.util.find_spec(EMBEDDED_MODELS[name].module) is None:
            print(f"| {name} | package {EMBEDDED_MODELS[name].package} not installed: skipped | | | | | |")
            continue
        start = time.perf_counter()
        hypotheses = WhisperHearing(name).transcribe([path for path, _ in clips])
        result = word_error_rate([text for _, text in clips], hypotheses)
        seconds = time.perf_counter() - start
        print(
            f"| {name} | {len(clips)} | {result.wer:.3f} | {result.substitutions} | {result.deletions} "
            f"| {result.insertions} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
