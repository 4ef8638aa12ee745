"""`selfpowered serve`: load the models, start the engine, run the HTTP API under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from selfpowered.config import ServeConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.model.served import ServedModel
from selfpowered.model.speech_tokens import reads_transcript
from selfpowered.serve.engine import Engine

logger = logging.getLogger(__name__)
SHIPPED = (("vanilla", "checkpoints/demo/vanilla"), ("selfpowered", "checkpoints/demo/selfpowered"))


def model_specs(config: ServeConfig) -> list[tuple[str, str]]:
    """(name, checkpoint) pairs: `NAME=PATH` or `PATH` (named after its folder); default the shipped
    demo checkpoints."""
    if not config.models:
        missing = [path for _, path in SHIPPED if not (Path(path) / "config.json").is_file()]
        if missing:
            raise SelfPoweredError(
                f"no models given and the shipped demo checkpoints are missing ({', '.join(missing)}): run from "
                "the repository root or pass -m NAME=PATH"
            )
        return list(SHIPPED)
    specs = []
    for spec in config.models:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = path.strip()
        specs.append((name.strip() or Path(path).name, path))
    names = [name for name, _ in specs]
    if len(set(names)) < len(names) or (config.cascade and "cascade" in names):
        raise SelfPoweredError(f"model names must be unique (and not `cascade` when it is served): {names}")
    return specs


def load_models(config: ServeConfig) -> dict[str, ServedModel]:
    """Every served model on `config.device`: the LSMs (LoRA merged) and, with `cascade`, Whisper
    plus the first LSM's base LLM answering transcripts in text mode. Every model that reads
    Whisper's transcript hears through one `WhisperHearing` per Whisper (and compute type), so a
    clip sent to several models - the web page asks them all - is decoded once."""
    from transformers import AutoModelForCausalLM

    from selfpowered.assets import resolve_model
    from selfpowered.model import SpeechLM
    from selfpowered.model.checkpoint import BUNDLED_LLM
    from selfpowered.model.hearing import HearingPool
    from selfpowered.model.prompting import PromptBuilder

    pool = HearingPool(config.device, memory_mb=config.hearing_memory_mb)

    served: dict[str, ServedModel] = {}
    base_llm = tokenizer = None
    for name, path in model_specs(config):
        if not (Path(path) / "config.json").is_file():
            raise SelfPoweredError(f"{path}: not a SpeechLM checkpoint (no config.json)")
        lsm = SpeechLM.from_pretrained(path, device=config.device)
        reference = lsm.config.llm_name_or_path
        base_llm = base_llm or (str(Path(path) / reference) if reference == BUNDLED_LLM else reference)
        tokenizer = tokenizer or lsm.tokenizer  # training never changes it: the base LLM's own
        hearing = None
        if reads_transcript(lsm.config):
            hearing = pool.for_model(lsm.config, lsm.whisper_folder)
        served[name] = ServedModel.from_lsm(name, lsm, merge_lora=config.merge_lora, hearing=hearing)
        logger.info("loaded %s from %s", name, path)
    if config.cascade and base_llm:
        llm = AutoModelForCausalLM.from_pretrained(str(resolve_model(base_llm, kind="llm"))).to(config.device)
        prompt = PromptBuilder(tokenizer)
        served["cascade"] = ServedModel.cascade("cascade", pool.get(config.asr_model), llm, tokenizer, prompt)
    for model in served.values():
        model.max_prompt_tokens = config.max_prompt_tokens
    return served


def serve(config: ServeConfig) -> None:
    """Run the API until interrupted."""
    import uvicorn

    from selfpowered.serve.api import create_app

    engine = Engine(load_models(config), config.max_batch, config.max_queue).start()
    app = create_app(engine, config)
    logger.info("serving %s on http://%s:%d/v1", ", ".join(engine.models), config.host, config.port)
    try:
        # SIGTERM / Ctrl-C: stop taking connections, give running requests a few seconds, then go;
        # the engine ends whatever is left as cancelled
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        engine.stop()
