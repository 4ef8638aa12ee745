"""Settings that belong to a registered extension (an eval suite, an importer kind): a section of
the stage's config named after it, validated by that extension's own model.

The stage configs (`EvalConfig`, `ImportConfig`) allow extra keys; the registry that knows the
extensions resolves them with `section_settings`, so the config package never imports the code it
configures, and a new extension brings its settings with it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from selfpowered.config.base import StrictModel
from selfpowered.errors import ConfigError


def section_settings(
    stage: str, known: Mapping[str, type[StrictModel]], sections: Mapping[str, Any], names: Iterable[str]
) -> dict[str, StrictModel]:
    """Each of `names`' settings (its section, or the defaults). A section that names no known
    extension, a section that is not a mapping and a bad value are ConfigErrors naming the key; a
    section of an extension that is not used is validated too, so a typo never passes silently."""
    names = list(names)
    strays = [key for key in sections if key not in known]
    if strays:
        raise ConfigError(
            f"{stage} config: unknown key(s) {', '.join(map(repr, strays))}: neither a setting nor a section "
            f"of one of {', '.join(known)}"
        )
    resolved: dict[str, StrictModel] = {}
    for name in names + [key for key in sections if key not in names]:
        section = sections.get(name) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{stage} config: {name}: a section of settings (a mapping), got {section!r}")
        try:
            resolved[name] = known[name].model_validate(dict(section))
        except ValidationError as exc:
            problems = "; ".join(
                f"{name}.{'.'.join(str(p) for p in error['loc']) or '(section)'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(f"{stage} config: {problems}") from exc
    return {name: resolved[name] for name in names}


def describe_sections(title: str, entries: Iterable[tuple[str, str, type[StrictModel]]]) -> str:
    """`config show` lines for registered extensions: name, summary, then its settings with defaults."""
    from selfpowered.config.loading import _describe

    lines = [f"# {title}"]
    for name, summary, options in entries:
        lines.append(f"#   {name}: {summary}")
        lines += [f"#     {line.strip()}" for line in _describe(options, None, 0)]
    return "\n".join(lines)


def register_under_name(registry: dict[str, Any], cls: type, entry: Any, what: str) -> None:
    """Put `entry` (the class, or its instance) into a registry under `cls.name`. The same class
    twice is a re-import and harmless; two classes under one name is a programming error."""
    current = registry.get(cls.name)
    owner = current if isinstance(current, type) else type(current)
    if current is not None and owner is not cls:
        raise ValueError(f"two {what} are called {cls.name!r}: {owner.__name__} and {cls.__name__}")
    registry[cls.name] = entry


def import_package_modules(path: Iterable[str], package: str) -> None:
    """Import every public module of a registry package (each registers its own extensions)."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
