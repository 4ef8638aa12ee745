"""The mechanism behind speech anchor bias: where do answer tokens look?

For each sample the model's own answer is teacher-forced after (instruction, speech). At every
layer we take the rows of the attention matrix that predict answer tokens and split each row's
mass over the key positions: speech, the text instruction, and the rest (template, the answer so
far). Attention share = mean attention probability mass, averaged over heads. Saliency share uses
|A * dL/dA| summed over heads (L = the answer's log-likelihood), which weighs each attention edge
by how much the answer depends on it. A vanilla ASR-tuned LSM should give speech far more than the
instruction; the self-powered one should listen to the instruction too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from selfpowered.model.prompting import IGNORE_INDEX, SEGMENT_INSTRUCTION, SEGMENT_PAD, SPEECH_SEGMENTS

GROUPS = ("speech", "instruction", "rest")


def _group_masks(segments: torch.Tensor) -> dict[str, torch.Tensor]:
    real = segments != SEGMENT_PAD
    speech = torch.isin(segments, torch.tensor(SPEECH_SEGMENTS, device=segments.device))  # slots and heard words
    instruction = segments == SEGMENT_INSTRUCTION
    return {"speech": speech, "instruction": instruction, "rest": real & ~speech & ~instruction}


def _row_shares(weights: torch.Tensor, masks: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, float]:
    """weights (q, k) for one sample, non-negative; mean over the chosen rows of each group's share."""
    picked = weights[rows]  # (r, k)
    total = picked.sum(-1).clamp_min(1e-12)
    return {name: float((picked[:, mask].sum(-1) / total).mean()) for name, mask in masks.items()}


def attention_shares(
    model, audio: Sequence, instructions: Sequence[str], answers: Sequence[str], progress: bool = True
) -> dict:
    """Per-sample, per-layer attention and saliency shares (arrays of shape samples x layers);
    `audio` items are paths or 16 kHz arrays."""
    base = model.base_llm()
    previous = base.config._attn_implementation
    base.set_attn_implementation("eager")  # SDPA kernels do not return attention probabilities
    was_training = model.training
    model.eval()
    shares = {kind: {g: [] for g in GROUPS} for kind in ("attention", "saliency")}
    try:
        for i in tqdm(range(len(audio)), desc="bias (attention, saliency)", unit=" sample", disable=not progress):
            answer = answers[i].strip() or "."
            batch = model.prepare([instructions[i]], audio=[audio[i]], response=[answer])
            with torch.no_grad():
                embeds = model.embed_inputs(batch)
            device = embeds.device
            out = model.llm(
                inputs_embeds=embeds.requires_grad_(True),
                attention_mask=batch["attention_mask"].to(device),
                position_ids=batch["position_ids"].to(device),
                labels=batch["labels"].to(device),
                output_attentions=True,
            )
            attentions = list(out.attentions)
            for attention in attentions:
                attention.retain_grad()
            out.loss.backward()
            # rows that predict an answer token: position t predicts label t + 1
            rows = torch.nonzero(batch["labels"][0, 1:].to(device) != IGNORE_INDEX).flatten()
            masks = _group_masks(batch["segments"][0].to(device))
            per_layer = {kind: {g: [] for g in GROUPS} for kind in shares}
            for attention in attentions:
                probs = attention[0].detach()  # (heads, q, k)
                saliency = (probs * attention.grad[0]).abs().sum(0)
                for kind, weights in (("attention", probs.mean(0)), ("saliency", saliency)):
                    for group, value in _row_shares(weights, masks, rows).items():
                        per_layer[kind][group].append(value)
            for kind in shares:
                for group in GROUPS:
                    shares[kind][group].append(per_layer[kind][group])
            model.zero_grad(set_to_none=True)
    finally:
        base.set_attn_implementation(previous)
        model.train(was_training)
    return {kind: {g: np.asarray(v) for g, v in groups.items()} for kind, groups in shares.items()}


def summarise(shares: dict) -> dict:
    """Mean and standard deviation over samples per layer, and the all-layer means."""
    out: dict = {}
    for kind, groups in shares.items():
        out[kind] = {}
        for group, values in groups.items():
            out[kind][group] = {
                "mean_per_layer": [round(float(x), 4) for x in values.mean(0)],
                "std_per_layer": [round(float(x), 4) for x in values.std(0)],
                "mean": round(float(values.mean()), 4),
            }
        speech, instruction = out[kind]["speech"]["mean"], out[kind]["instruction"]["mean"]
        out[kind]["speech_to_instruction"] = round(speech / instruction, 3) if instruction > 0 else None
    out["samples"] = int(next(iter(shares["attention"].values())).shape[0])
    return out
