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


if __name__ == "__main__":
    app()
