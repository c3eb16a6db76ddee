"""Checking a source's ``options`` table: each adapter declares what it accepts, and the
type of each key (``Kind``); ``allowed`` checks both, so an option of the wrong type fails
at start, naming ``sources[NAME].options.KEY``, never at the first run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from corridors.config import SourceConfig
from corridors.errors import ConfigError


def where(source: SourceConfig) -> str:
    return f"sources[{source.name}].options"


@dataclass(frozen=True, slots=True)
class Kind:
    """The type an option must have: what to call it in an error, and the test."""

    name: str
    test: Callable[[Any], bool]


def _is_str_table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


STRING = Kind("a string", lambda v: isinstance(v, str))
STRINGS = Kind("a list of strings",
               lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
POSITIVE_NUMBER = Kind("a positive number", lambda v: isinstance(v, int | float)
                       and not isinstance(v, bool) and v > 0 and v != float("inf"))
#: A table whose values are strings (paths, labels, firm types).
STRING_TABLE = Kind("a table of strings", _is_str_table)

#: Options every kind takes: the licence of what the source publishes (kept with each raw
#: response), and which rate sources its quotes are measured against (default: all).
COMMON: dict[str, Kind] = {"licence": STRING, "reference_sources": STRINGS}


def allowed(source: SourceConfig, declared: Mapping[str, Kind]) -> None:
    """No key but the declared ones (and COMMON), each of its declared type."""
    kinds = {**COMMON, **declared}
    extra = sorted(set(source.options) - set(kinds))
    if extra:
        raise ConfigError(f"{where(source)}: unknown key(s) {', '.join(extra)}; allowed: "
                          f"{', '.join(sorted(kinds))}")
    for key, value in source.options.items():
        kind = kinds[key]
        if not kind.test(value):
            raise ConfigError(f"{where(source)}.{key}: expected {kind.name}, got {value!r}")


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
