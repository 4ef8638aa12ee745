"""The large speech-text model: configuration, encoder, connectors, prompting and the SpeechLM."""

from selfpowered.model.configuration import LSMConfig
from selfpowered.model.modeling import SpeechLM
from selfpowered.model.prompting import PromptBuilder, PromptPieces, splice

__all__ = ["LSMConfig", "SpeechLM", "PromptBuilder", "PromptPieces", "splice"]
