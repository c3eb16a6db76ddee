"""Checking a source's ``options`` table: each adapter declares what it accepts."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from corridors.config import SourceConfig
from corridors.errors import ConfigError


def where(source: SourceConfig) -> str:
    return f"sources[{source.name}].options"


#: Options every kind takes: the licence of what the source publishes (kept with each raw
#: response), and which rate sources its quotes are measured against (default: all).
COMMON = {"licence", "reference_sources"}


def allowed(source: SourceConfig, keys: set[str]) -> None:
    keys = keys | COMMON
    if "reference_sources" in source.options:
        strings(source, "reference_sources", [])
    extra = sorted(set(source.options) - keys)
    if extra:
        raise ConfigError(f"{where(source)}: unknown key(s) {', '.join(extra)}; allowed: "
                          f"{', '.join(sorted(keys))}")


def string(source: SourceConfig, key: str, default: str | None = None) -> str:
    value = source.options.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where(source)}.{key}: expected a string, got {value!r}"
                          if key in source.options else f"{where(source)}.{key}: required")
    return value


def enum(source: SourceConfig, key: str, kind: type[StrEnum], default: str | None
         ) -> Any:
    value = source.options.get(key, default)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{where(source)}.{key}: expected one of "
                          f"{', '.join(k.value for k in kind)}, got {value!r}") from None


def table(source: SourceConfig, key: str) -> Mapping[str, Any]:
    value = source.options.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where(source)}.{key}: expected a table, got {value!r}")
    return value


def strings(source: SourceConfig, key: str, default: list[str]) -> list[str]:
    value = source.options.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where(source)}.{key}: expected a list of strings, got {value!r}")
    return value


def boolean(source: SourceConfig, key: str, default: bool | None) -> bool | None:
    value = source.options.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{where(source)}.{key}: expected true or false, got {value!r}")
    return value
