"""SpecAugment-style masking of the frozen encoder's states while training (Park et al. 2019).

With a cached encoder the audio is the same every epoch; zeroing a few random spans of frames and
of channels makes the connector (and the LLM behind it) read the speech from context rather than
memorise the few voices it was trained on. Off by default (`masking:` in the stage config).
"""

from __future__ import annotations

import torch

from selfpowered.config.training import MaskingConfig


def mask_states(
    states: torch.Tensor, lengths: torch.Tensor, config: MaskingConfig, generator: torch.Generator
) -> torch.Tensor:
    """A masked copy of padded encoder states (batch, frames, channels): per utterance
    `time_masks` spans of up to `time_width` x its length in frames, and `channel_masks` spans of
    up to `channel_width` channels, set to zero."""
    if not (config.time_masks or config.channel_masks):
        return states
    keep = torch.ones_like(states)
    channels = states.shape[-1]
    for row, length in enumerate(lengths.tolist()):
        widest = max(1, int(config.time_width * length))
        for _ in range(config.time_masks):
            width = int(torch.randint(0, widest + 1, (), generator=generator))
            start = int(torch.randint(0, max(1, length - width + 1), (), generator=generator))
            keep[row, start : start + width] = 0
        for _ in range(config.channel_masks):
            width = int(torch.randint(0, config.channel_width + 1, (), generator=generator))
            start = int(torch.randint(0, max(1, channels - width + 1), (), generator=generator))
            keep[row, :, start : start + width] = 0
    return states * keep
