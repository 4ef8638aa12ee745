"""SpeechLM on a GPU: correctness and throughput with random weights of real shapes.

Nothing is downloaded: the encoder and LLM are built from architecture configs (Whisper tiny.en +
SmolLM2-135M for the demo scale; Whisper large-v2 encoder + a Llama-2-7B/Vicuna-7B shape for the
paper scale) with random weights, which cost the same FLOPs as trained ones. Measured, each in
the same run:

1. correctness on the device: batched greedy generation == one-by-one (fp32);
2. encoder cost, real frames only (ours) vs padded to 30 s (the official pipeline's way);
3. training steps/s and samples/s (bf16 autocast-free: weights in bf16, LoRA on q/v), from cached
   encoder states (what our training does) and from mel features (encoder run every step);
4. batched greedy generation tokens/s.

    python bench/gpu_speechlm.py --out results.md           # on a CUDA machine (bench/gpu.sh)
    python bench/gpu_speechlm.py --smoke                    # tiny shapes on the CPU, to test the script
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.tiny import tiny_llama_config, tiny_tokenizer, tiny_whisper_config  # noqa: E402
from transformers import LlamaConfig, WhisperConfig, WhisperFeatureExtractor  # noqa: E402

from selfpowered.model import SpeechLM  # noqa: E402
from selfpowered.model.encoder import pack_chunks  # noqa: E402

SCALES = {
    "demo": dict(
        encoder=WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536),
        llm=LlamaConfig(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=8192,
            tie_word_embeddings=True,
            rope_theta=100000,
        ),
        batch=32,
    ),
    "paper": dict(
        encoder=WhisperConfig(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120),
        llm=LlamaConfig(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
        ),
        batch=8,
    ),
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int, warmup: int = 2) -> float:
    """Mean seconds per call after warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def paired(fn_a, fn_b, device: str, repeats: int) -> tuple[float, float]:
    """Time two alternatives in alternating rounds (A B A B) and keep each one's best round, so
    neither pays for the other's warm-up, allocator growth or clock ramp."""
    best_a = best_b = float("inf")
    for _ in range(2):
        best_a = min(best_a, timed(fn_a, device, repeats))
        best_b = min(best_b, timed(fn_b, device, repeats))
    return best_a, best_b


def build(scale: dict, device: str, dtype: torch.dtype) -> SpeechLM:
    tokenizer = tiny_tokenizer()
    with torch.device(device):
        model = SpeechLM.from_configs(
            scale["encoder"],
            scale["llm"],
            tokenizer,
            WhisperFeatureExtractor(),
            connector_dropout=0.0,
            lora_dropout=0.0,
        )
    return model.to(dtype)


def forced_answer(model: SpeechLM, inputs: dict[str, torch.Tensor], new_tokens: int) -> None:
    """Greedy generation of exactly `new_tokens` tokens from a processor batch (speech as mel or
    cached states): random weights would stop at any token, so the length is forced to time the
    work a trained model does."""
    embeds = model.embed_inputs(inputs)
    model.llm.generate(
        inputs_embeds=embeds,
        attention_mask=inputs["attention_mask"].to(embeds.device),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=model.tokenizer.pad_token_id,
    )


def mel_batch(batch: int, seconds: list[float], device: str, pad_to_30s: bool = False) -> dict[str, torch.Tensor]:
    """Random log-mel features (the encoder's input tensors), real lengths or padded to 30 s."""
    frames = [3000 if pad_to_30s else int(seconds[i % len(seconds)] * 100) for i in range(batch)]
    packed = pack_chunks([[torch.randn(80, n)] for n in frames])
    return {key: value.to(device) if key == "mel" else value for key, value in packed.items()}


def layout_for(model: SpeechLM, mels: dict, instructions, responses=None, padding_side="right") -> dict:
    """The processor's prompt layout for speech given as mel tensors (slots from their lengths)."""
    with torch.no_grad():
        states, lengths = model.encode(**mels)
    cached = [states[i, :n] for i, n in enumerate(lengths.tolist())]
    inputs = model.processor(instructions, encoder_states=cached, response=responses, padding_side=padding_side)
    return inputs, cached


def measure_scale(name: str, scale: dict, device: str, repeats: int, rows: list[dict]) -> None:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = build(scale, device, dtype)
    batch = scale["batch"]
    seconds = [4.0, 7.0, 10.0, 13.0, 16.0]  # LibriSpeech-like spread, mean 10 s
    mels = mel_batch(batch, seconds, device)
    instructions = ["translate the given english content into chinese"] * batch
    responses = ["the quick brown fox jumps over the lazy dog " * 4] * batch
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    audio_seconds = sum(seconds[i % len(seconds)] for i in range(batch))

    with torch.no_grad():
        padded = mel_batch(batch, seconds, device, pad_to_30s=True)
        ours, full = paired(lambda: model.encode(**mels), lambda: model.encode(**padded), device, repeats)
    rows.append(
        dict(
            scale=name,
            what="encoder, real frames vs padded to 30 s",
            batch=batch,
            ours_s=round(ours, 4),
            baseline_s=round(full, 4),
            speedup=round(full / ours, 2),
        )
    )
    from_states, cached = layout_for(model, mels, instructions, responses)
    text_layout = {k: v for k, v in from_states.items() if not k.startswith("encoder_")}
    from_mels = {**text_layout, **mels}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step(inputs: dict) -> None:
        loss = model(**inputs).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    cached_s, from_mel = paired(lambda: step(from_states), lambda: step(from_mels), device, repeats)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    rows.append(
        dict(
            scale=name,
            what="train step (LoRA q/v + connector), cached encoder states vs encoder every step",
            batch=batch,
            ours_s=round(cached_s, 4),
            baseline_s=round(from_mel, 4),
            speedup=round(from_mel / cached_s, 2),
            samples_per_s=round(batch / cached_s, 1),
            audio_hours_per_hour=round(audio_seconds / cached_s, 1),
            peak_gib=round(peak, 1),
            params_m=round(params / 1e6, 1),
            trainable_m=round(trainable / 1e6, 2),
        )
    )
    model.eval()
    prompts, _ = layout_for(model, mels, instructions, padding_side="left")
    new_tokens = 64

    def gen() -> None:
        forced_answer(model, prompts, new_tokens)

    with torch.no_grad():
        gen_s = timed(gen, device, max(1, repeats // 2), warmup=1)
    rows.append(
        dict(
            scale=name,
            what=f"greedy generation, {new_tokens} new tokens",
            batch=batch,
            ours_s=round(gen_s, 3),
            tokens_per_s=round(batch * new_tokens / gen_s, 1),
        )
    )


def check_batch_equals_single(device: str, smoke: bool) -> dict:
    """fp32 on the device: batched greedy output == one-by-one output (left padding + masks)."""
    tokenizer = tiny_tokenizer()
    with torch.device(device):
        if smoke:
            model = SpeechLM.from_configs(
                tiny_whisper_config(),
                tiny_llama_config(len(tokenizer)),
                tokenizer,
                WhisperFeatureExtractor(),
                qformer_hidden_size=32,
                qformer_heads=4,
                qformer_ffn_size=64,
            )
        else:
            scale = SCALES["demo"]
            model = SpeechLM.from_configs(
                scale["encoder"],
                LlamaConfig(**{**scale["llm"].to_dict(), "vocab_size": len(tokenizer)}),
                tokenizer,
                WhisperFeatureExtractor(),
            )
    model.eval()
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    generator = torch.Generator().manual_seed(0)
    audio = [torch.randn(int(s * 16000), generator=generator).numpy() * 0.1 for s in (1.5, 4.0, 2.7, 6.1)]
    instructions = ["transcribe the speech", "translate the given english content", "transcribe", "repeat"]
    batched = model.generate(audio=audio, instruction=instructions, max_new_tokens=12, batch_size=4)
    single = [model.generate(audio=a, instruction=i, max_new_tokens=12) for a, i in zip(audio, instructions)]
    return dict(check="batched greedy == one-by-one (fp32)", passed=batched == single, batched=batched, single=single)


def to_markdown(header: str, rows: list[dict], checks: list[dict]) -> str:
    lines = [header, ""]
    for check in checks:
        lines.append(
            f"- {check['check']}: {'PASS' if check.get('passed') else 'FAIL'}"
            + (f" ({check['error']})" if "error" in check else "")
        )
    lines += [
        "",
        "| scale | what | batch | ours s | baseline s | ratio | samples/s | audio h/h | tokens/s | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scale']} | {row['what']} | {row.get('batch', '')} | {row.get('ours_s', '')} | "
            f"{row.get('baseline_s', '')} | {row.get('speedup', '')} | {row.get('samples_per_s', '')} | "
            f"{row.get('audio_hours_per_hour', '')} | {row.get('tokens_per_s', '')} | {row.get('peak_gib', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="SpeechLM GPU correctness and throughput (random weights)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, to test this script")
    parser.add_argument("--scales", nargs="+", default=["demo", "paper"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    import transformers

    header = (
        f"{time.strftime('%Y-%m-%d')} on {name}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}; random weights of real shapes"
    )
    print(header, flush=True)
    checks: list[dict] = []
    try:
        checks.append(check_batch_equals_single(device, args.smoke))
    except Exception as exc:  # report and go on: one broken section must not hide the others
        traceback.print_exc()
        checks.append(dict(check="batched greedy == one-by-one (fp32)", passed=False, error=repr(exc)[:300]))
    print(json.dumps(checks, indent=1), flush=True)
    rows: list[dict] = []
    scales = (
        {"smoke": dict(encoder=tiny_whisper_config(), llm=tiny_llama_config(500), batch=4)} if args.smoke else SCALES
    )
    for scale_name in ["smoke"] if args.smoke else args.scales:
        try:
            with torch.autocast("cuda", enabled=False) if device == "cuda" else nullcontext():
                measure_scale(scale_name, scales[scale_name], device, args.repeats, rows)
        except Exception as exc:
            traceback.print_exc()
            rows.append(dict(scale=scale_name, what=f"FAILED: {repr(exc)[:200]}"))
        if device == "cuda":
            torch.cuda.empty_cache()  # the scale's model is gone with its function's frame
        print(json.dumps(rows[-3:], indent=1), flush=True)
    report = to_markdown(header, rows, checks)
    print(report)
    if args.out:
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(dict(header=header, checks=checks, rows=rows), indent=1))


if __name__ == "__main__":
    main()
