"""Loading configs: YAML file, then command-line flags, then `--set` overrides, validated once;
and the reverse, a config (or a stage's defaults) written out as YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from selfpowered.config.base import StrictModel
from selfpowered.errors import ConfigError


def _stages() -> dict[str, type[StrictModel]]:
    from selfpowered.config import STAGES

    return STAGES


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a mapping of keys")
    data[keys[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["optim.lr_llm=1e-4", "data.train=[a.jsonl, b.jsonl]"]` -> {dotted key: YAML-parsed value}."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr_llm=1e-4")
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return parsed


def read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a mapping. `base: OTHER.yaml` (relative to the file) inherits another file:
    its keys first, this file's over them, mappings merged key by key (so a recipe writes its
    `model:` block once and each stage states only what differs)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `base:` goes round in a circle ({' -> '.join(str(p) for p in (*seen, path))})")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    data = loaded or {}
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of another config file")
    return _merged(read_yaml(path.parent / base, (*seen, path.resolve())), data)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(
    cls: type[ConfigT],
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> ConfigT:
    """Read YAML (optional), apply dotted-key `flags` whose value is not None (options not given on
    the command line are None), then `overrides` (--set: applied even when null), validate once."""
    data: dict[str, Any] = {}
    source = str(path) if path else "command line"
    if path is not None:
        data = read_yaml(Path(path))
    for key, value in (flags or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc


def dump_config(config: BaseModel) -> str:
    """The validated config as YAML: what actually ran, for logs and checkpoints."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_config(stage: str) -> str:
    """A stage's config as commented YAML: every key, its default (or `required`), what it means."""
    STAGES = _stages()
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    cls = STAGES[stage]
    return (
        f"# selfpowered {stage}: {(cls.__doc__ or '').strip().splitlines()[0]}\n"
        + "\n".join(_describe(cls, None, 0))
        + "\n"
    )


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()[1:-1]


def _describe(cls: type[BaseModel], values: BaseModel | None, depth: int) -> list[str]:
    lines = []
    pad = "  " * depth
    for name, field in cls.model_fields.items():
        comment = f"  # {field.description}" if field.description else ""
        if values is not None:
            default = getattr(values, name)
        elif field.is_required():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                lines.append(f"{pad}{name}:  # required section{comment.replace('  #', ':', 1)}")
                lines += _describe(field.annotation, None, depth + 1)
            else:
                lines.append(f"{pad}{name}:  # required{comment.replace('  #', ' -', 1)}")
            continue
        else:
            default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            lines.append(f"{pad}{name}:{comment}")
            lines += _describe(type(default), default, depth + 1)
        else:
            lines.append(f"{pad}{name}: {_yaml_value(default)}{comment}")
    return lines
