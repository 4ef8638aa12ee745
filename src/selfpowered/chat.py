"""`selfpowered chat`: one question to a checkpoint, about one or more audio files or in text mode."""

from __future__ import annotations

from selfpowered.config import ChatConfig
from selfpowered.errors import SelfPoweredError


def chat(config: ChatConfig) -> list[str]:
    """The answers, one per audio file (or one in text mode). Bad audio fails before the model loads."""
    from selfpowered.audio import load_audio
    from selfpowered.model import SpeechLM

    if not config.instruction:
        raise SelfPoweredError('give an instruction, e.g. selfpowered chat -m CKPT -a clip.wav "Transcribe the speech"')
    if not config.text_mode and not config.audio:
        raise SelfPoweredError("speech mode needs --audio FILE (or use --text for a text-only prompt)")
    clips = [load_audio(path) for path in config.audio]
    lsm = SpeechLM.from_pretrained(config.model, device=config.device)
    options = config.generation.model_dump()
    if config.text_mode:
        return lsm.generate(text=[config.instruction], use_adapter=config.use_adapter, **options)
    return lsm.generate(audio=clips, instruction=config.instruction, use_adapter=config.use_adapter, **options)
