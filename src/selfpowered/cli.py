"""Command line: parse -> load config -> call one library function. No logic lives here.

Expected failures (`SelfPoweredError`) print one red line and exit with code 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from selfpowered.errors import SelfPoweredError

app = typer.Typer(help="selfpowered: build, train and evaluate large speech-text models.", no_args_is_help=True)
assets_app = typer.Typer(
    help="Embedded default models (packaged weights, converted once, cached).", no_args_is_help=True
)
app.add_typer(assets_app, name="assets")
corpus_app = typer.Typer(help="ASR corpora: validate, import, synthesise the demo corpus.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SelfPoweredError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # per-tensor "Loading weights" bars and library chatter drown the answer
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


@assets_app.command("list")
@_friendly
def assets_list() -> None:
    """Show every embedded model: its package, whether it is installed and converted."""
    from selfpowered.assets import list_assets, selfpowered_home

    typer.echo(f"cache: {selfpowered_home() / 'models'}")
    typer.echo(f"{'name':<24}{'kind':<9}{'package':<30}{'installed':<11}{'cached':<8}{'size MB':>8}")
    for row in list_assets():
        typer.echo(
            f"{row['name']:<24}{row['kind']:<9}{row['package']:<30}{'yes' if row['installed'] else 'no':<11}"
            f"{'yes' if row['cached'] else 'no':<8}{row['size_mb']:>8}"
        )
        typer.echo(f"{'':<24}{row['description']}")


@assets_app.command("prepare")
@_friendly
def assets_prepare(
    names: list[str] = typer.Argument(None, help="models to prepare (default: every installed one)"),
    force: bool = typer.Option(False, help="convert again even if the cache verifies"),
) -> None:
    """Convert packaged weights into cached Hugging Face folders (once; verified by checksum)."""
    from selfpowered.assets import EMBEDDED_MODELS, list_assets, prepare

    chosen = names or [row["name"] for row in list_assets() if row["installed"]]
    for name in chosen:
        if name not in EMBEDDED_MODELS:
            raise SelfPoweredError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")
        path = prepare(name, force=force)
        typer.echo(f"{name}: {path}")


@app.command()
@_friendly
def init(
    output: Path = typer.Argument(..., help="checkpoint folder to write"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with `model:` keys (see configs/model.yaml)"),
    encoder: str | None = typer.Option(None, help="model.encoder: Whisper folder or embedded name"),
    llm: str | None = typer.Option(None, help="model.llm: causal LM folder or embedded name"),
    connector: str | None = typer.Option(None, help="model.connector: window_qformer | stack_mlp"),
    finetune: str | None = typer.Option(None, help="model.finetune: lora | full | frozen"),
) -> None:
    """Build a fresh, untrained SpeechLM on the chosen encoder and LLM and save it."""
    from selfpowered.config import InitConfig, dump_config, load_config
    from selfpowered.model import SpeechLM

    settings = load_config(
        InitConfig,
        config,
        {
            "output": str(output),
            "model.encoder": encoder,
            "model.llm": llm,
            "model.connector": connector,
            "model.finetune": finetune,
        },
    )
    typer.echo(dump_config(settings))
    model = SpeechLM.build(settings.model.encoder, settings.model.llm, **settings.model.lsm_kwargs())
    model.save_pretrained(settings.output)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    typer.echo(f"saved an untrained SpeechLM to {settings.output} ({trainable / 1e6:.2f} M trainable parameters)")


@app.command()
@_friendly
def chat(
    instruction: str | None = typer.Argument(None, help="the text instruction (or the prompt with --text)"),
    model: str | None = typer.Option(None, "--model", "-m", help="checkpoint folder"),
    audio: list[str] | None = typer.Option(None, "--audio", "-a", help="audio file; repeat for a batch"),
    text: bool | None = typer.Option(None, "--text", help="text mode: no speech, the LLM answers the prompt"),
    no_adapter: bool | None = typer.Option(None, "--no-adapter", help="switch the LoRA adapter off"),
    max_new_tokens: int | None = typer.Option(None, help="generation.max_new_tokens"),
    repetition_penalty: float | None = typer.Option(None, help="generation.repetition_penalty"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ..."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with ChatConfig keys"),
) -> None:
    """Ask a checkpoint one question about one or more audio files (or in text mode)."""
    from selfpowered.config import ChatConfig, load_config
    from selfpowered.model import SpeechLM

    settings = load_config(
        ChatConfig,
        config,
        {
            "model": model,
            "audio": audio or None,
            "instruction": instruction,
            "text_mode": text,
            "use_adapter": (not no_adapter) if no_adapter is not None else None,
            "device": device,
            "generation.max_new_tokens": max_new_tokens,
            "generation.repetition_penalty": repetition_penalty,
        },
    )
    if not settings.instruction:
        raise SelfPoweredError('give an instruction, e.g. selfpowered chat -m CKPT -a clip.wav "Transcribe the speech"')
    if not settings.text_mode and not settings.audio:
        raise SelfPoweredError("speech mode needs --audio FILE (or use --text for a text-only prompt)")
    from selfpowered.audio import load_audio

    clips = [load_audio(path) for path in settings.audio]  # fail on bad audio before loading the model
    lsm = SpeechLM.from_pretrained(settings.model, device=settings.device)
    gen = settings.generation.model_dump()
    if settings.text_mode:
        answers = lsm.generate(text=[settings.instruction], use_adapter=settings.use_adapter, **gen)
        typer.echo(answers[0])
        return
    answers = lsm.generate(audio=clips, instruction=settings.instruction, use_adapter=settings.use_adapter, **gen)
    for path, answer in zip(settings.audio, answers):
        typer.echo(f"{path}\t{answer}" if len(clips) > 1 else answer)


def _print_summary(title: str, summary: dict) -> None:
    typer.echo(title)
    for key, value in summary.items():
        typer.echo(f"  {key:<16}{value}")


@corpus_app.command("validate")
@_friendly
def corpus_validate(
    manifest: str = typer.Argument(..., help="manifest (.jsonl) to check"),
    output: str | None = typer.Option(None, help="write the valid rows to this manifest"),
    max_duration: float | None = typer.Option(None, help="limits.max_duration (s)"),
    min_duration: float | None = typer.Option(None, help="limits.min_duration (s)"),
    decode: bool | None = typer.Option(None, "--decode", help="limits.decode: decode every sample"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with ValidateConfig keys"),
) -> None:
    """Check every line; rejects go to MANIFEST.rejects.jsonl with line numbers and reasons."""
    from selfpowered.config import ValidateConfig, load_config
    from selfpowered.corpus.manifest import ValidationLimits, read_manifest, write_manifest, write_rejects

    settings = load_config(
        ValidateConfig,
        config,
        {
            "manifest": manifest,
            "output": output,
            "limits.max_duration": max_duration,
            "limits.min_duration": min_duration,
            "limits.decode": decode,
        },
    )
    report = read_manifest(settings.manifest, ValidationLimits(**settings.limits.model_dump()), progress=True)
    rejects = write_rejects(settings.manifest, report.rejects)
    _print_summary(f"{settings.manifest}:", report.summary())
    typer.echo(f"  rejects         {rejects}")
    if settings.output:
        write_manifest(settings.output, report.rows, base=Path(settings.manifest).parent)
        typer.echo(f"  valid rows ->   {settings.output}")


@corpus_app.command("import")
@_friendly
def corpus_import(
    kind: str = typer.Argument(..., help="librispeech | commonvoice | table | hf"),
    source: str = typer.Argument(..., help="corpus folder, table file or saved dataset"),
    output: str = typer.Argument(..., help="manifest to write (.jsonl)"),
    tsv: str | None = typer.Option(None, help="commonvoice: which tsv (default validated.tsv)"),
    split: str | None = typer.Option(None, help="hf: which split"),
    id_column: str | None = typer.Option(None, help="table/hf: id column"),
    audio_column: str | None = typer.Option(None, help="table/hf: audio column"),
    text_column: str | None = typer.Option(None, help="table/hf: transcript column"),
    speaker_column: str | None = typer.Option(None, help="table/hf: speaker column"),
    max_duration: float | None = typer.Option(None, help="limits.max_duration (s)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with ImportConfig keys"),
) -> None:
    """Turn an ASR corpus into a validated manifest (+ OUTPUT.rejects.jsonl)."""
    from selfpowered.config import ImportConfig, load_config
    from selfpowered.corpus.importers import candidates_for, import_corpus
    from selfpowered.corpus.manifest import ValidationLimits

    settings = load_config(
        ImportConfig,
        config,
        {
            "kind": kind,
            "source": source,
            "output": output,
            "tsv": tsv,
            "split": split,
            "id_column": id_column,
            "audio_column": audio_column,
            "text_column": text_column,
            "speaker_column": speaker_column,
            "limits.max_duration": max_duration,
        },
    )
    candidates = candidates_for(settings.kind, settings.source, settings.output, settings.importer_options())
    report = import_corpus(candidates, settings.output, ValidationLimits(**settings.limits.model_dump()))
    _print_summary(f"{settings.output}:", report.summary())


@corpus_app.command("synth")
@_friendly
def corpus_synth(
    output: str = typer.Argument(..., help="corpus folder to create or resume"),
    size: str | None = typer.Option(None, help="small (tests, ~1 min) | demo (>= 10,000 utterances)"),
    voice: list[str] | None = typer.Option(None, "--voice", help="ENGINE:NAME; repeat (default: all known)"),
    test_voice: str | None = typer.Option(None, help="voice held out of train/dev (default flite:rms)"),
    seed: int | None = typer.Option(None, help="seed for sentences, splits, voices, tempi"),
    workers: int | None = typer.Option(None, help="synthesis processes (default: all cores)"),
    check_wer: int | None = typer.Option(None, help="Whisper-transcribe N test utterances and report WER"),
    split: list[str] | None = typer.Option(None, "--split", help="only this split (repeatable): train | dev | test"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with SynthConfig keys"),
) -> None:
    """Synthesise the multi-voice demo corpus (resumable; reruns skip finished files)."""
    from selfpowered.config import SynthConfig, load_config
    from selfpowered.corpus.synth import plan_corpus, synthesise_corpus

    settings = load_config(
        SynthConfig,
        config,
        {
            "output": output,
            "size": size,
            "voices": voice or None,
            "test_voice": test_voice,
            "seed": seed,
            "workers": workers,
            "check_wer": check_wer,
            "splits": split or None,
        },
    )
    plan = plan_corpus(
        settings.size,
        settings.voices,
        settings.test_voice,
        settings.voices_per_sentence,
        settings.seed,
        (settings.tempo_min, settings.tempo_max),
        splits=settings.splits,
    )
    stats = synthesise_corpus(plan, settings.output, settings.workers)
    for split, info in stats["splits"].items():
        typer.echo(
            f"{split:<6} {info['utterances']:>6} utterances  {info['sentences']:>5} sentences  {info['hours']:.2f} h"
        )
    typer.echo(
        f"made {stats['made']}, reused {stats['reused']}, failed {stats['failed']} in {stats['seconds']} s; "
        f"held-out voice {stats['held_out_test_voice']}; see {settings.output}/README.md"
    )
    if settings.check_wer:
        from selfpowered.corpus.quality import intelligibility

        result = intelligibility(Path(settings.output) / "test.jsonl", settings.check_wer, settings.seed)
        typer.echo(f"Whisper {result['asr_model']} WER on {result['utterances']} test utterances: {result['wer']:.3f}")
        typer.echo(f"  per voice: {result['wer_per_speaker']}")


@app.command()
@_friendly
def augment(
    manifest: str = typer.Argument(..., help="ASR manifest (.jsonl)"),
    output: str = typer.Argument(..., help="instruction samples to write or continue (.jsonl)"),
    recipe: str | None = typer.Option(None, help="selfpowered (LLM answers) | vanilla (all ASR)"),
    tasks: str | None = typer.Option(None, help="task library: paper | demo | preset YAML path"),
    engine: str | None = typer.Option(None, help="hf (local transformers) | openai (HTTP server)"),
    llm: str | None = typer.Option(None, help="hf: model folder or embedded name"),
    server_url: str | None = typer.Option(None, help="openai: base URL, e.g. http://127.0.0.1:8000/v1"),
    concurrency: int | None = typer.Option(None, help="openai: requests in flight"),
    shard: str | None = typer.Option(None, help="i/N: this process's share"),
    seed: int | None = typer.Option(None, help="task/template draw seed"),
    max_new_tokens: int | None = typer.Option(None, help="answer length limit (tokens)"),
    max_prompt_tokens: int | None = typer.Option(None, help="prompts this long or longer are dropped"),
    device: str | None = typer.Option(None, help="hf: cpu, cuda ..."),
    limit: int | None = typer.Option(None, help="only the first N rows of the shard"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with AugmentConfig keys"),
) -> None:
    """Self-powered augmentation: the LLM answers instructions about each transcript (resumable)."""
    from selfpowered.augment.filters import FilterSettings
    from selfpowered.augment.run import AugmentSettings, parse_shard
    from selfpowered.augment.run import augment as run_augment
    from selfpowered.config import AugmentConfig, dump_config, load_config
    from selfpowered.text.engines import build_generator
    from selfpowered.text.tasks import TaskLibrary

    settings = load_config(
        AugmentConfig,
        config,
        {
            "manifest": manifest,
            "output": output,
            "recipe": recipe,
            "tasks": tasks,
            "engine": engine,
            "llm": llm,
            "server_url": server_url,
            "concurrency": concurrency,
            "shard": shard,
            "seed": seed,
            "max_new_tokens": max_new_tokens,
            "max_prompt_tokens": max_prompt_tokens,
            "device": device,
            "limit": limit,
        },
    )
    typer.echo(dump_config(settings))
    library = TaskLibrary.load(settings.tasks, settings.seed, settings.task_weights, settings.task_variants)
    generator = build_generator(settings) if settings.recipe == "selfpowered" else None
    run_settings = AugmentSettings(
        settings.recipe,
        settings.seed,
        parse_shard(settings.shard),
        settings.max_prompt_tokens,
        settings.chunk_size,
        settings.limit,
        FilterSettings(**settings.filters.model_dump()),
    )
    stats = run_augment(settings.manifest, settings.output, library, generator, run_settings)
    run = stats["this_run"]
    kept, rejected = run["kept_per_task"], run["rejected_per_reason"]
    typer.echo(
        f"kept {sum(kept.values())} {kept}, rejected {sum(rejected.values())} {rejected}, "
        f"skipped (already done) {run['skipped_already_done']}; "
        f"{run['generated_tokens']} tokens at {run['generated_tokens_per_s']} tok/s; totals {stats['totals']}"
    )


@app.command("augment-merge")
@_friendly
def augment_merge(
    output: str = typer.Argument(..., help="merged samples file to write"),
    shards: list[str] = typer.Argument(..., help="shard outputs to join"),
) -> None:
    """Join `augment --shard i/N` outputs (and their rejects) into one file, sorted by id."""
    from selfpowered.augment.run import merge_shards

    counts = merge_shards(shards, output)
    typer.echo(f"{output}: {counts['samples']} samples, {counts['rejects']} rejects from {len(shards)} shards")


@app.command()
@_friendly
def features(
    inputs: list[str] = typer.Argument(None, help="manifests or sample files whose audio to encode"),
    cache: str | None = typer.Option(None, help="feature cache folder"),
    encoder: str | None = typer.Option(None, help="Whisper folder or embedded name (default whisper-tiny.en)"),
    batch_size: int | None = typer.Option(None, help="utterances per encoder batch"),
    device: str | None = typer.Option(None, help="cpu, cuda ..."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with FeaturesConfig keys"),
) -> None:
    """Run the frozen encoder once per audio file and cache its output (fp16, memory-mapped)."""
    from selfpowered.assets import resolve_model
    from selfpowered.audio import LogMelExtractor
    from selfpowered.config import FeaturesConfig, load_config
    from selfpowered.model.encoder import SpeechEncoder
    from selfpowered.train.features import audio_paths_of, build_feature_cache

    settings = load_config(
        FeaturesConfig,
        config,
        {"inputs": inputs or None, "cache": cache, "encoder": encoder, "batch_size": batch_size, "device": device},
    )
    path = resolve_model(settings.encoder, kind="encoder")
    speech_encoder = SpeechEncoder.from_pretrained(path).to(settings.device)
    mel = LogMelExtractor.from_pretrained(path)
    audio = [audio for item in settings.inputs for audio in audio_paths_of(item)]
    stats = build_feature_cache(speech_encoder, mel, audio, settings.cache, settings.batch_size)
    typer.echo(
        f"{settings.cache}: {stats['encoded']} encoded, {stats['cached_before']} already cached, "
        f"{stats['total']} in the cache ({stats['seconds']} s)"
    )


@app.command("train")
@_friendly
def train_command(
    config: Path = typer.Argument(..., help="training config YAML (see configs/demo.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in output"),
    output: str | None = typer.Option(None, help="output folder (overrides `output`)"),
    max_steps: int | None = typer.Option(None, help="optim.max_steps"),
    init_from: str | None = typer.Option(None, help="start from this checkpoint"),
    feature_cache: str | None = typer.Option(None, help="data.feature_cache: cache encoder outputs here"),
) -> None:
    """Train a SpeechLM (HF Trainer: `accelerate launch` gives DDP / FSDP / DeepSpeed)."""
    from selfpowered.config import TrainConfig, load_config
    from selfpowered.train.trainer import train

    settings = load_config(
        TrainConfig,
        config,
        {"output": output, "optim.max_steps": max_steps, "init_from": init_from, "data.feature_cache": feature_cache},
    )
    summary = train(settings, resume=resume)
    typer.echo(
        f"trained {summary['steps']} steps on {summary['samples']} samples in {summary['seconds']} s; "
        f"mean loss {summary['train_loss']}; model: {summary['output']}/final"
    )


@app.command("align")
@_friendly
def align_command(
    config: Path = typer.Argument(..., help="align config YAML (see configs/align-demo.yaml)"),
    output: str | None = typer.Option(None, help="output folder"),
    steps: int | None = typer.Option(None, help="training steps"),
) -> None:
    """Pre-align the connector to the LLM's token embeddings with CTC (no LLM forward; fast)."""
    from selfpowered.config import AlignConfig, load_config
    from selfpowered.train.align import align

    settings = load_config(AlignConfig, config, {"output": output, "steps": steps})
    summary = align(settings)
    typer.echo(
        f"aligned {summary['steps']} steps in {summary['seconds']} s; CTC WER train {summary['train_ctc_wer']}"
        + (f", dev {summary['dev_ctc_wer']}" if "dev_ctc_wer" in summary else "")
        + f"; checkpoint {settings.output}/final"
    )


@app.command("eval")
@_friendly
def eval_command(
    models: list[str] = typer.Option(
        None, "--models", "-m", help="LSM checkpoints: PATH or NAME=PATH; repeat (-m A -m B) or comma-join (A,B)"
    ),
    data: str | None = typer.Option(None, help="held-out ASR manifest, e.g. demo-output/corpus/test.jsonl"),
    suites: str | None = typer.Option(None, help="comma list of asr,instruct,conflict,sqa,text,bias (default all)"),
    baselines: str | None = typer.Option(None, help="comma list of cascade,text (default both; 'none' for none)"),
    output: str | None = typer.Option(None, help="report folder (default eval-output)"),
    limit: int | None = typer.Option(None, help="utterances drawn from --data for asr and instruct"),
    tasks: str | None = typer.Option(None, help="task library the models were trained with: demo | paper | YAML"),
    heldout_tasks: str | None = typer.Option(None, help="held-out wording library (demo-heldout | paper-heldout)"),
    llm: str | None = typer.Option(None, help="LLM of the baselines (default: the first model's)"),
    probe_voice: str | None = typer.Option(None, help="TTS voice for the conflict/sqa probes"),
    max_new_tokens: int | None = typer.Option(None, help="generation.max_new_tokens (paper: 128)"),
    batch_size: int | None = typer.Option(None, help="generation.batch_size"),
    device: str | None = typer.Option(None, help="cpu, cuda ..."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with EvalConfig keys"),
) -> None:
    """Score checkpoints + cascade + text baselines; write report.md, report.json and plots."""
    from selfpowered.config import EvalConfig, dump_config, load_config
    from selfpowered.evaluate.run import evaluate

    split = lambda text: None if text is None else [x.strip() for x in text.split(",") if x.strip() and x != "none"]  # noqa: E731
    settings = load_config(
        EvalConfig,
        config,
        {
            "models": [spec for item in models for spec in item.split(",") if spec] if models else None,
            "data": data,
            "suites": split(suites),
            "baselines": split(baselines),
            "output": output,
            "limit": limit,
            "tasks": tasks,
            "heldout_tasks": heldout_tasks,
            "llm": llm,
            "probe_voice": probe_voice,
            "generation.max_new_tokens": max_new_tokens,
            "generation.batch_size": batch_size,
            "device": device,
        },
    )
    typer.echo(dump_config(settings))
    results = evaluate(settings)
    from selfpowered.evaluate.report import headline

    for name, row in results["systems"].items():
        numbers = {k: v for k, v in headline(row).items() if v is not None}
        typer.echo(f"{name}: {numbers}")
    typer.echo(f"report: {settings.output}/report.md ({results['seconds']} s)")


@app.command("demo")
@_friendly
def demo_command(
    retrain: bool = typer.Option(None, "--retrain", help="run the whole pipeline, not the shipped checkpoints"),
    fresh: bool = typer.Option(None, "--fresh", help="rerun finished stages from scratch"),
    checkpoints: str | None = typer.Option(None, help="shipped checkpoints folder (default checkpoints/demo)"),
    eval_config: str | None = typer.Option(None, help="eval stage config (default configs/eval-demo.yaml)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with DemoConfig keys"),
) -> None:
    """The main job: vanilla vs self-powered LSM, measured (`make demo`). Stages are reused."""
    from selfpowered.config import DemoConfig, load_config
    from selfpowered.demo import run_demo

    settings = load_config(
        DemoConfig,
        config,
        {"retrain": retrain, "fresh": fresh, "checkpoints": checkpoints, "eval_config": eval_config},
    )
    summary = run_demo(settings.retrain, settings.fresh, settings.checkpoints, settings.eval_config, echo=typer.echo)
    if not all(check["passed"] for check in summary["verdict"]):
        typer.echo("some demo targets were missed: see demo-output/verdict.md (the report states the numbers)")


if __name__ == "__main__":
    app()
