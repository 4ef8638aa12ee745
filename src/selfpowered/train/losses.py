"""The losses `train` can combine (config `loss:`), beside the paper's cross-entropy:

- `kl`: self-distillation. The teacher is the same LLM with its LoRA adapter switched off, given
  the text-mode prompt with the transcript in place of the speech (what made the self-powered
  targets); the student is the LSM on the speech. Both are teacher-forced on the same answer, so
  their answer positions line up one to one; the loss is KL(teacher || student) at temperature T
  (scaled by T^2, as in Hinton et al.), averaged over answer tokens. It learns from the LLM's whole
  next-token distribution, not only the one sampled answer (Ultravox's default, DiVA, BLSP-KD).
- `ctc`: the connector's CTC loss from `align`, kept on while the LLM trains (Soundwave's
  auxiliary loss): speech embeddings must keep spelling the transcript in the LLM's token space.
"""

from __future__ import annotations

import torch
from torch import nn

from selfpowered.model.prompting import IGNORE_INDEX


def answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The logits that predict answer tokens, (answer tokens in the batch, vocabulary), in order:
    position t predicts label t + 1."""
    return logits[:, :-1][labels[:, 1:].to(logits.device) != IGNORE_INDEX]


def teacher_logits(model, teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """The text-mode LLM's logits at its answer positions (no graph, adapter off)."""
    with torch.no_grad(), model.llm.disable_adapter():
        device = model.llm_device
        out = model.llm(
            input_ids=teacher["input_ids"].to(device),
            attention_mask=teacher["attention_mask"].to(device),
            position_ids=teacher["position_ids"].to(device),
        )
    return answer_logits(out.logits, teacher["labels"])


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) per answer token at `temperature`, times temperature^2."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher answer positions differ: {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )
    log_student = nn.functional.log_softmax(student.float() / temperature, dim=-1)
    log_teacher = nn.functional.log_softmax(teacher.float() / temperature, dim=-1)
    kl = nn.functional.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def connector_ctc(model, head, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """CTC of the connector's output for the batch's speech against the transcripts' tokens."""
    speech = model.speech_embeddings(inputs)  # one (tokens, hidden) tensor per utterance
    lengths = torch.tensor([s.shape[0] for s in speech])
    padded = nn.utils.rnn.pad_sequence(speech, batch_first=True)
    log_probs = head(padded).transpose(0, 1)  # (time, batch, classes)
    targets, target_lengths = inputs["ctc_targets"], inputs["ctc_target_lengths"]
    return nn.functional.ctc_loss(
        log_probs, targets.to(padded.device), lengths, target_lengths, blank=head.blank_index, zero_infinity=True
    )
