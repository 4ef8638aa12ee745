"""selfpowered: turn a text LLM into a large speech-text model that listens to the text instruction.

Three lines:

    from selfpowered import SpeechLM
    lsm = SpeechLM.build()  # or SpeechLM.from_pretrained("checkpoint/")
    print(lsm.generate(audio="clip.wav", instruction="Transcribe the speech"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from selfpowered.model import LSMConfig, SpeechLM


def __getattr__(name: str) -> Any:
    # Lazy: `selfpowered --help` and the asset tools should not pay for importing torch/transformers.
    if name in ("SpeechLM", "LSMConfig"):
        from selfpowered import model

        return getattr(model, name)
    raise AttributeError(f"module 'selfpowered' has no attribute {name!r}")


__all__ = ["LSMConfig", "SpeechLM", "__version__"]
