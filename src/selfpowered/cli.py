"""Command line: parse -> load the stage config -> call one library function. No logic lives here.

Each command takes `--config FILE.yaml`, a few everyday flags and `--set dotted.key=VALUE` overrides
(YAML values; defaults < file < flags < --set); `selfpowered config show STAGE` lists every key.
Expected failures (`SelfPoweredError`) print one red line and exit 2; bugs keep their traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from selfpowered import config as cfg
from selfpowered.errors import SelfPoweredError

app = typer.Typer(help="selfpowered: build, train and evaluate large speech-text models.", no_args_is_help=True)
assets_app = typer.Typer(help="Embedded default models (packaged weights, converted once).", no_args_is_help=True)
corpus_app = typer.Typer(help="ASR corpora: validate, import, synthesise the demo corpus.", no_args_is_help=True)
config_app = typer.Typer(help="Stage configs: every key, its default and what it means.", no_args_is_help=True)
for group, group_name in ((assets_app, "assets"), (corpus_app, "corpus"), (config_app, "config")):
    app.add_typer(group, name=group_name)
SYNTH_KEYS = ("made", "reused", "failed", "seconds", "held_out_test_voice", "intelligibility")
F = TypeVar("F", bound=Callable[..., Any])

CONFIG = typer.Option(None, "--config", "-c", help="YAML file with this stage's keys")
SET = typer.Option(None, "--set", "-s", help="KEY=VALUE override, dotted keys, repeatable (wins over all)")


def _command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a command whose expected failures (SelfPoweredError) print one line and exit 2."""

    def register(func: F) -> F:
        @functools.wraps(func)
        def friendly(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except SelfPoweredError as exc:
                typer.secho(f"error: {exc}", fg="red", err=True)
                raise typer.Exit(code=2) from None

        return group.command(name)(friendly)

    return register


def _settings(cls, config: Path | None, overrides: list[str] | None, flags: dict[str, Any]):
    """The stage config: YAML file, then the flags that were given, then `--set` overrides."""
    return cfg.load_config(cls, config, flags, cfg.parse_overrides(overrides or []))


def _echo_summary(title: str, summary: dict, keys: tuple[str, ...] | None = None) -> None:
    """A stage's result, one `key  value` line each (only `keys`, when given)."""
    typer.echo(title)
    for key, value in summary.items():
        if keys is None or key in keys:
            typer.echo(f"  {key:<22} {value}")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    from selfpowered.logs import configure_logging

    configure_logging(verbose)


@_command(assets_app, "list")
def assets_list() -> None:
    """Show every embedded model: its package, whether it is installed and converted."""
    from selfpowered.assets import assets_table

    typer.echo(assets_table())


@_command(assets_app, "prepare")
def assets_prepare(
    names: list[str] = typer.Argument(None, help="models to prepare (default: every installed one)"),
    force: bool = typer.Option(False, help="convert again even if the cache verifies"),
) -> None:
    """Convert packaged weights into cached Hugging Face folders (once; verified by checksum)."""
    from selfpowered.assets import prepare_all

    for name, path in prepare_all(names, force).items():
        typer.echo(f"{name}: {path}")


@_command(config_app, "show")
def config_show(
    stage: str = typer.Argument(..., help="init | chat | import | synth | augment | train | eval | tasks | ..."),
) -> None:
    """Print a stage's config as YAML: every key with its default and description (`tasks`: the task presets)."""
    if stage != "tasks":
        typer.echo(cfg.describe_config(stage))
    if stage == "eval":  # the suites' own sections come from their registry
        from selfpowered.evaluate.suites import describe_suites

        typer.echo(describe_suites())
    if stage == "import":  # so do the importers'
        from selfpowered.corpus.importers import describe_importers

        typer.echo(describe_importers())
    if stage in ("init", "align"):  # and the connectors'
        from selfpowered.model.connectors import describe_connectors
        from selfpowered.model.speech_tokens import describe_speech_tokens

        typer.echo(describe_connectors())
        typer.echo(describe_speech_tokens())
    if stage in ("augment", "eval", "tasks"):  # the task presets
        from selfpowered.text.tasks import describe_presets

        typer.echo(describe_presets())


@_command(app)
def init(
    output: Path = typer.Argument(..., help="checkpoint folder to write"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Build a fresh, untrained SpeechLM on the chosen encoder and LLM and save it."""
    from selfpowered.model import SpeechLM

    settings = _settings(cfg.InitConfig, config, overrides, {"output": str(output)})
    typer.echo(cfg.dump_config(settings))
    lsm = SpeechLM.init_checkpoint(settings.model, settings.output, seed=settings.seed)
    trainable = lsm.num_parameters(only_trainable=True)
    typer.echo(f"saved an untrained SpeechLM to {settings.output} ({trainable:,} trainable parameters)")


@_command(app)
def chat(
    instruction: str | None = typer.Argument(None, help="the text instruction (or the prompt with --text)"),
    model: str | None = typer.Option(None, "--model", "-m", help="checkpoint folder"),
    audio: list[str] | None = typer.Option(None, "--audio", "-a", help="audio file; repeat for a batch"),
    text: bool | None = typer.Option(None, "--text", help="text mode: no speech, the LLM answers the prompt"),
    max_new_tokens: int | None = typer.Option(None, help="generation.max_new_tokens"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Ask a checkpoint one question about one or more audio files (or in text mode)."""
    from selfpowered.chat import chat as answer

    flags = {"model": model, "audio": audio or None, "instruction": instruction, "text_mode": text}
    settings = _settings(cfg.ChatConfig, config, overrides, {**flags, "generation.max_new_tokens": max_new_tokens})
    answers = answer(settings)
    typer.echo("\n".join(f"{p}\t{a}" for p, a in zip(settings.audio, answers)) if len(answers) > 1 else answers[0])


@_command(corpus_app, "validate")
def corpus_validate(
    manifest: str = typer.Argument(..., help="manifest (.jsonl) to check"),
    output: str | None = typer.Option(None, help="write the valid rows to this manifest"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Check every line; rejects go to MANIFEST.rejects.jsonl with line numbers and reasons."""
    from selfpowered.corpus.manifest import validate_manifest

    settings = _settings(cfg.ValidateConfig, config, overrides, {"manifest": manifest, "output": output})
    report, rejects = validate_manifest(settings)
    _echo_summary(f"{settings.manifest}:", {**report.summary(), "rejects": rejects, "valid rows ->": settings.output})


@_command(corpus_app, "import")
def corpus_import(
    kind: str = typer.Argument(
        ..., help="librispeech | commonvoice | table | hf | pocketsphinx | ... (`config show import`)"
    ),
    source: str = typer.Argument(..., help="corpus folder, table file or saved dataset"),
    output: str = typer.Argument(..., help="manifest to write (.jsonl)"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Turn an ASR corpus into a validated manifest (+ OUTPUT.rejects.jsonl); a kind's settings go in
    its section, e.g. --set table.text_column=sentence."""
    from selfpowered.corpus.importers import import_corpus

    settings = _settings(cfg.ImportConfig, config, overrides, {"kind": kind, "source": source, "output": output})
    _echo_summary(f"{settings.output}:", import_corpus(settings).summary())


@_command(corpus_app, "synth")
def corpus_synth(
    output: str = typer.Argument(..., help="corpus folder to create or resume"),
    size: str | None = typer.Option(None, help="small | demo (grammar) | diverse | ood | ood-large (by text source)"),
    split: list[str] | None = typer.Option(None, "--split", help="only this split (repeatable): train | dev | test"),
    check_wer: int | None = typer.Option(None, help="Whisper-transcribe N test utterances and report WER"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Synthesise the multi-voice demo corpus (resumable; reruns skip finished files)."""
    from selfpowered.corpus.synth import synthesise

    flags = {"output": output, "size": size, "splits": split or None, "check_wer": check_wer}
    stats = synthesise(_settings(cfg.SynthConfig, config, overrides, flags))
    _echo_summary(f"{output}: (see its README.md)", {**stats["splits"], **stats}, (*stats["splits"], *SYNTH_KEYS))


@_command(app)
def augment(
    manifest: str = typer.Argument(..., help="ASR manifest (.jsonl)"),
    output: str = typer.Argument(..., help="instruction samples to write or continue (.jsonl)"),
    recipe: str | None = typer.Option(None, help="selfpowered (LLM answers) | vanilla (all ASR)"),
    tasks: str | None = typer.Option(None, help="task library: paper | demo | preset YAML path"),
    shard: str | None = typer.Option(None, help="i/N: this process's share"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Self-powered augmentation: the LLM answers instructions about each transcript (resumable)."""
    from selfpowered.augment.run import augment as run_augment

    flags = {"manifest": manifest, "output": output, "recipe": recipe, "tasks": tasks, "shard": shard}
    settings = _settings(cfg.AugmentConfig, config, overrides, flags)
    typer.echo(cfg.dump_config(settings))
    stats = run_augment(settings)
    _echo_summary(f"{settings.output}: totals {stats['totals']}", stats["this_run"])


@_command(app, "augment-merge")
def augment_merge(
    output: str = typer.Argument(..., help="merged samples file to write"),
    shards: list[str] = typer.Argument(..., help="shard outputs to join"),
) -> None:
    """Join `augment --shard i/N` outputs (and their rejects) into one file, sorted by id."""
    from selfpowered.augment.run import merge_shards

    counts = merge_shards(shards, output)
    typer.echo(f"{output}: {counts['samples']} samples, {counts['rejects']} rejects from {len(shards)} shards")


@_command(app)
def features(
    inputs: list[str] = typer.Argument(None, help="manifests or sample files whose audio to encode"),
    cache: str | None = typer.Option(None, help="feature cache folder"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Run the frozen encoder once per audio file and cache its output (fp16, memory-mapped)."""
    from selfpowered.train.features import build_features

    settings = _settings(cfg.FeaturesConfig, config, overrides, {"inputs": inputs or None, "cache": cache})
    _echo_summary(f"{settings.cache}:", build_features(settings))


@_command(app, "train")
def train_command(
    config: Path = typer.Argument(..., help="training config YAML (see configs/demo.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in output"),
    overrides: list[str] = SET,
) -> None:
    """Train a SpeechLM (HF Trainer: `accelerate launch` gives DDP / FSDP / DeepSpeed)."""
    from selfpowered.train.trainer import train

    summary = train(_settings(cfg.TrainConfig, config, overrides, {}), resume=resume)
    _echo_summary(f"{summary['output']}/final:", summary, ("steps", "samples", "train_loss", "seconds"))


@_command(app, "align")
def align_command(
    config: Path = typer.Argument(..., help="align config YAML (see configs/align-demo.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue from output/align_state.pt (saved every save_steps)"),
    overrides: list[str] = SET,
) -> None:
    """Pre-align the connector to the LLM's token embeddings with CTC (no LLM forward; fast)."""
    from selfpowered.train.align import align

    settings = _settings(cfg.AlignConfig, config, overrides, {})
    summary = align(settings, resume=resume)
    _echo_summary(f"{settings.output}/final:", summary, ("steps", "train_ctc_wer", "dev_ctc_wer", "seconds"))


@_command(app, "tag")
def tag_command(
    checkpoint: Path = typer.Argument(..., help="a transcript-reading LSM checkpoint (speech_tokens: transcript)"),
    train: list[str] = typer.Option(..., "--train", help="labelled manifest(s), e.g. demo-output/paraling/train.jsonl"),
    dev: list[str] = typer.Option(None, "--dev", help="labelled dev manifest(s) to score each attribute on"),
    cache: str | None = typer.Option(None, help="hearing cache folder (a training run's data.feature_cache)"),
    limit: int | None = typer.Option(None, help="fit on the first N labelled clips"),
    judge: bool = typer.Option(
        True, "--judge/--no-judge", help="show the line only to instructions about the sound (--no-judge: to every one)"
    ),
) -> None:
    """Fit the checkpoint's sound tagger: its prompts about the sound then say how each clip sounds
    (model/sound_tags.py)."""
    from selfpowered.train.sound_tagger import fit_tagger

    summary = fit_tagger(checkpoint, train, dev or (), cache, limit, judge)
    _echo_summary(
        f"{checkpoint}/sound_tagger.json:", summary, ("train_clips", "attributes", "dev_accuracy", "judge", "seconds")
    )


@_command(app, "eval")
def eval_command(
    models: list[str] = typer.Option(None, "--models", "-m", help="PATH or NAME=PATH; repeat or comma-join"),
    data: str | None = typer.Option(None, help="held-out ASR manifest, e.g. demo-output/corpus/test.jsonl"),
    suites: str | None = typer.Option(None, help="comma list of suites (`selfpowered config show eval` lists them)"),
    output: str | None = typer.Option(None, help="report folder (default eval-output)"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """Score checkpoints + cascade + text baselines; write report.md, report.json and plots."""
    from selfpowered.evaluate.report import headlines
    from selfpowered.evaluate.run import evaluate

    flags = {"models": models or None, "data": data, "suites": suites, "output": output}
    settings = _settings(cfg.EvalConfig, config, overrides, flags)
    typer.echo(cfg.dump_config(settings))
    results = evaluate(settings)
    _echo_summary(f"report: {settings.output}/report.md ({results['seconds']} s)", headlines(results))


@_command(app, "serve")
def serve_command(
    models: list[str] = typer.Option(None, "--models", "-m", help="NAME=PATH; repeat (default: the demo checkpoints)"),
    host: str | None = typer.Option(None, help="interface to listen on (default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="TCP port (default 8000)"),
    api_key: str | None = typer.Option(None, help="require Authorization: Bearer KEY"),
    max_audio_seconds: float | None = typer.Option(None, help="longer audio is refused with 400 (default 120)"),
    max_batch: int | None = typer.Option(None, help="requests decoded together per model (default 16)"),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """OpenAI-compatible speech-text API: /v1/chat/completions, /v1/audio/transcriptions, /metrics."""
    from selfpowered.serve.server import serve

    flags = {"models": models or None, "host": host, "port": port, "api_key": api_key, "max_batch": max_batch}
    serve(_settings(cfg.ServeConfig, config, overrides, {**flags, "max_audio_seconds": max_audio_seconds}))


@_command(app, "demo")
def demo_command(
    retrain: bool = typer.Option(None, "--retrain", help="run the whole pipeline, not the shipped checkpoints"),
    fresh: bool = typer.Option(None, "--fresh", help="rerun finished stages from scratch"),
    recipe: str | None = typer.Option(
        None, help="with --retrain: open (the shipped checkpoints', default) | grammar (the paper's) | a recipe YAML"
    ),
    config: Path = CONFIG,
    overrides: list[str] = SET,
) -> None:
    """The main job: vanilla vs self-powered LSM, measured (`make demo`). Stages are reused."""
    from selfpowered.demo import run_demo

    flags = {"retrain": retrain, "fresh": fresh, "recipe": recipe}
    run_demo(_settings(cfg.DemoConfig, config, overrides, flags), echo=typer.echo)


if __name__ == "__main__":
    app()
