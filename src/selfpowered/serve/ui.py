"""The web page of `selfpowered serve` (`/ui`): does the model listen to the instruction?

One spoken clip (recorded, uploaded, or an example) and one instruction go to every served model.
The page shows each answer and its time side by side with the cascade's and with the target a
self-powered LSM is trained to give: the base LLM's text-mode answer on the transcript (the known
one for an example clip, else Whisper's). For every LSM answer it shows whether the answer just
repeats the transcript (the speech anchor bias) and how the answer's saliency |A * dL/dA| splits
between the speech, the text instruction and the rest - the `bias` measure of `eval`, for this
one answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import FileResponse, HTMLResponse

from selfpowered.config import ServeConfig
from selfpowered.model.engine import Request
from selfpowered.serve.engine import Engine, QueueFull
from selfpowered.serve.inputs import RequestError, decode_audio
from selfpowered.text.echo import is_echo
from selfpowered.text.loops import is_loop
from selfpowered.text.paraling import describe
from selfpowered.text.tasks import text_prompt

STATIC = resources.files("selfpowered.serve").joinpath("static")
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX_CLIP = "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
REAL_EXAMPLES = (
    (
        "real-librivox",
        "Real speech: LibriVox, Sense and Sensibility",
        LIBRIVOX_CLIP,
        "he was not an ill disposed young man",
    ),
    ("real-cards", "Real speech: a spoken card", "cards/003.wav", "seven of clubs"),
)


def examples() -> dict[str, dict]:
    """id -> {label, path, transcript}: the bundled clips, and the real recordings when installed."""
    bundled = json.loads(STATIC.joinpath("examples/examples.json").read_text())
    found = {
        item["id"]: {"label": item["label"], "path": Path(str(STATIC.joinpath("examples", item["file"]))),
                     "transcript": item["transcript"], "labels": item.get("labels")}
        for item in bundled
    }  # fmt: skip
    for ident, label, relative, transcript in REAL_EXAMPLES:
        if (POCKETSPHINX / relative).is_file():
            found[ident] = {"label": label, "path": POCKETSPHINX / relative, "transcript": transcript}
    return found


async def _answer(engine: Engine, model: str, instruction: str, audio, max_tokens: int) -> tuple[Request, float]:
    loop, done = asyncio.get_running_loop(), asyncio.Event()
    request = Request(model, instruction, audio, max_tokens=max_tokens)
    request.on_event = lambda kind, _: loop.call_soon_threadsafe(done.set) if kind == "done" else None
    started = time.perf_counter()
    try:
        engine.submit(request)
    except QueueFull as exc:
        raise RequestError(f"the server is busy ({exc}); retry shortly", None, 429) from exc
    await done.wait()
    if request.error:
        raise RequestError(request.error, None, request.status)
    return request, time.perf_counter() - started


def _saliency(engine: Engine, model: str, audio, instruction: str, answer: str) -> dict[str, float]:
    """This answer's saliency shares (mean over layers): speech, instruction, rest."""
    from selfpowered.model.bias import GROUPS, attention_shares

    served = engine.models[model]
    with served.lock:  # the engine thread must not decode while attention is switched to eager
        shares = attention_shares(served.lsm, [audio], [instruction], [answer or "."], progress=False)
    return {group: round(float(shares["saliency"][group].mean()), 4) for group in GROUPS}


def add_ui(app: FastAPI, engine: Engine, settings: ServeConfig) -> None:
    """Mount the page (`/` redirects there), its examples and its compare endpoint."""
    from fastapi.responses import RedirectResponse

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui")

    @app.get("/ui", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(STATIC.joinpath("index.html").read_text())

    @app.get("/ui/examples")
    async def list_examples() -> list[dict]:
        return [
            {"id": ident, "label": item["label"], "transcript": item["transcript"], "url": f"/ui/examples/{ident}"}
            for ident, item in examples().items()
        ]

    @app.get("/ui/examples/{ident}")
    async def example_audio(ident: str) -> FileResponse:
        found = examples().get(ident)
        if found is None:
            raise RequestError(f"no example {ident!r}", "id", 404)
        return FileResponse(found["path"])

    @app.post("/ui/compare")
    async def compare(http: HTTPRequest) -> dict:
        try:
            form = await http.form(max_files=1, max_fields=8)
        except Exception as exc:  # not a form, or a broken one
            raise RequestError("expected a form with an instruction and a file or an example", "file") from exc
        instruction = str(form.get("instruction") or "").strip()
        if len(instruction) > 2000:
            raise RequestError(f"the instruction has {len(instruction)} characters; at most 2000", "instruction")
        if not instruction:
            raise RequestError("type an instruction (or pick one of the examples)", "instruction")
        ident, upload = str(form.get("example") or ""), form.get("file")
        reference = labels = None
        if ident:
            found = examples().get(ident)
            if found is None:
                raise RequestError(f"no example {ident[:80]!r}", "example", 404)
            data, suffix, reference = found["path"].read_bytes(), found["path"].suffix[1:], found["transcript"]
            labels = found.get("labels")
        elif upload is not None and hasattr(upload, "read"):
            data = await upload.read()
            name = upload.filename or ""
            suffix = name.rsplit(".", 1)[-1].lower() if "." in name else None
        else:
            raise RequestError("record, upload or pick a clip first", "file")
        audio = await asyncio.to_thread(decode_audio, data, "file", settings.max_audio_seconds, suffix)
        result = await _compare(engine, instruction, audio, reference, settings.max_tokens)
        result["sounds"] = describe(labels) if labels else None
        return result


async def _compare(engine: Engine, instruction: str, audio, reference: str | None, max_tokens: int) -> dict:
    lsms = [name for name, served in engine.models.items() if served.kind == "lsm"]
    cascade = next((name for name, served in engine.models.items() if served.kind == "cascade"), None)
    jobs = [_answer(engine, name, instruction, audio, max_tokens) for name in lsms]
    if cascade:
        jobs.append(_answer(engine, cascade, instruction, audio, max_tokens))
    finished = await asyncio.gather(*jobs)
    heard = finished[-1][0].transcript if cascade else None
    transcript = reference or heard
    rows = []
    for name, (request, seconds) in zip(lsms, finished):
        bias = await asyncio.to_thread(_saliency, engine, name, audio, instruction, request.text)
        echo = is_echo(request.text, transcript) if transcript else None
        rows.append({"system": name, "kind": "lsm", "answer": request.text, "seconds": round(seconds, 2),
                     "echo": echo, "loop": is_loop(request.text), "saliency": bias})  # fmt: skip
    if cascade:
        request, seconds = finished[-1]
        rows.append({"system": cascade, "kind": "cascade", "answer": request.text, "seconds": round(seconds, 2),
                     "echo": is_echo(request.text, transcript) if transcript else None,
                     "loop": is_loop(request.text)})  # fmt: skip
    target = None
    if cascade and transcript:
        request, seconds = await _answer(engine, cascade, text_prompt(instruction, transcript), None, max_tokens)
        target = {"answer": request.text, "seconds": round(seconds, 2)}
    return {
        "instruction": instruction,
        "transcript": transcript,
        "transcript_source": "known (example)" if reference else ("whisper" if heard else None),
        "whisper": heard,
        "seconds_of_audio": round(audio.size / 16_000, 2),
        "rows": rows,
        "target": target,
    }
