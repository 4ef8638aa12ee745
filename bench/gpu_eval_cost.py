"""Cost per answer on a GPU: the LSM vs the cascade (Whisper ASR -> the same LLM), real shapes.

`selfpowered eval` measures each system's cost on the CPU demo; this asks the same question at the
paper's scale, where it matters: does an LSM answer faster than the cascade a user would otherwise
build? The LSM runs the Whisper *encoder* on the real frames, the connector, and one LLM generate;
the cascade runs Whisper's encoder on the 30 s padded input (what Whisper's decoder needs), its
autoregressive decoder for the transcript, then the LLM on the transcript text.

Random weights of real shapes, fixed lengths so both systems do the same work a trained model
would: a transcript of 3.3 tokens per second of speech (LibriSpeech-like), an answer of 64 tokens,
batch of utterances of 4-16 s (mean 10 s). Both systems are timed in the same process, alternating.

    python bench/gpu_eval_cost.py --out results.md    # on a CUDA machine (bench/gpu_eval.sh)
    python bench/gpu_eval_cost.py --smoke             # tiny shapes on the CPU, to test the script
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import transformers

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from gpu_speechlm import SCALES, build, forced_answer, layout_for, mel_batch, paired  # noqa: E402
from tests.tiny import tiny_llama_config, tiny_tokenizer, tiny_whisper_config  # noqa: E402
from transformers import WhisperConfig, WhisperForConditionalGeneration  # noqa: E402

DECODER_LAYERS = {"demo": 4, "paper": 32}  # tiny.en and large-v2 have as many decoder as encoder layers
TOKENS_PER_SECOND = 3.3
ANSWER_TOKENS = 64


def whisper_full(encoder: WhisperConfig, decoder_layers: int, device: str, dtype: torch.dtype):
    config = WhisperConfig(
        **{
            **encoder.to_dict(),
            "decoder_layers": decoder_layers,
            "decoder_attention_heads": encoder.encoder_attention_heads,
            "decoder_ffn_dim": encoder.encoder_ffn_dim,
            "vocab_size": 51865,
            "max_target_positions": 448,
        }
    )
    with torch.device(device):
        model = WhisperForConditionalGeneration(config)
    return model.to(dtype).eval()


def measure(name: str, scale: dict, device: str, repeats: int, smoke: bool) -> dict:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    lsm = build(scale, device, dtype).eval()
    whisper = whisper_full(scale["encoder"], DECODER_LAYERS.get(name, 2), device, dtype)
    batch = scale["batch"]
    seconds = [4.0, 7.0, 10.0, 13.0, 16.0]
    mels = mel_batch(batch, seconds, device)
    padded = mel_batch(batch, seconds, device, pad_to_30s=True)["mel"].to(dtype)
    transcript_tokens = round(TOKENS_PER_SECOND * sum(seconds) / len(seconds))
    instruction = ["translate the given english content into chinese"] * batch
    vocab = lsm.llm.config.vocab_size
    prompt_ids = torch.randint(10, vocab - 1, (batch, 20 + transcript_tokens), device=device)
    forced = dict(do_sample=False, pad_token_id=lsm.tokenizer.pad_token_id)

    prompts, _ = layout_for(lsm, mels, instruction, padding_side="left")
    prompts = {**{k: v for k, v in prompts.items() if not k.startswith("encoder_")}, **mels}

    def lsm_answer() -> None:  # encoder, connector and LLM generate, every time
        forced_answer(lsm, prompts, ANSWER_TOKENS)

    def cascade_answer() -> None:
        whisper.generate(
            input_features=padded,
            max_new_tokens=transcript_tokens,
            min_new_tokens=transcript_tokens,
            do_sample=False,
        )
        with lsm.llm.disable_adapter():
            lsm.llm.generate(
                input_ids=prompt_ids,
                attention_mask=torch.ones_like(prompt_ids),
                max_new_tokens=ANSWER_TOKENS,
                min_new_tokens=ANSWER_TOKENS,
                **forced,
            )

    with torch.no_grad():
        ours, cascade = paired(lsm_answer, cascade_answer, device, repeats)
        lsm.llm.merge_adapter()  # LoRA folded into the weights, as one would deploy it
        merged, cascade_again = paired(lsm_answer, cascade_answer, device, repeats)
        lsm.llm.unmerge_adapter()
    audio = sum(seconds[i % len(seconds)] for i in range(batch))
    return {
        "scale": name,
        "batch": batch,
        "transcript_tokens": transcript_tokens,
        "answer_tokens": ANSWER_TOKENS,
        "lsm_s_per_batch": round(ours, 4),
        "cascade_s_per_batch": round(cascade, 4),
        "lsm_s_per_answer": round(ours / batch, 5),
        "cascade_s_per_answer": round(cascade / batch, 5),
        "lsm_rtf": round(ours / audio, 5),
        "cascade_rtf": round(cascade / audio, 5),
        "cascade_over_lsm": round(cascade / ours, 2),
        "lsm_merged_lora_s_per_answer": round(merged / batch, 5),
        "cascade_s_per_answer_second_round": round(cascade_again / batch, 5),
        "cascade_over_lsm_merged": round(cascade_again / merged, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()  # per-call max_length notes drown the numbers
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        scales = {"smoke": dict(encoder=tiny_whisper_config(), llm=tiny_llama_config(len(tiny_tokenizer())), batch=2)}
    else:
        scales = {name: SCALES[name] for name in ("demo", "paper")}
    rows = [measure(name, scale, device, args.repeats, args.smoke) for name, scale in scales.items()]
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    text = "\n".join(json.dumps(row) for row in rows)
    print(f"device: {gpu}; torch {torch.__version__}\n{text}")
    if args.out:
        Path(args.out).write_text(f"device: {gpu}; torch {torch.__version__}\n\n{text}\n")


if __name__ == "__main__":
    main()
