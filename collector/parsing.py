"""Small pure helpers shared by the parsers: JSON paths, decimals, ISO 8601 durations."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from collector.errors import ParseError

_MISSING = object()


def load_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"{what}: not JSON ({exc})") from None


@functools.lru_cache(maxsize=1024)
def _steps(path: str) -> tuple[str, ...]:
    return tuple(path.split(".")) if path else ()


def dig(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """``dig({"a": [{"b": 1}]}, "a.0.b") == 1``; a missing step gives ``default`` or raises."""
    cur = obj
    for step in _steps(path):
        if isinstance(cur, dict) and step in cur:
            cur = cur[step]
        elif isinstance(cur, list) and step.lstrip("-").isdigit() and -len(cur) <= int(
                step) < len(cur):
            cur = cur[int(step)]
        else:
            if default is _MISSING:
                raise ParseError(f"field {path!r} missing (at {step!r})")
            return default
    return cur


def dec(value: Any, field: str) -> Decimal | None:
    """A JSON number or numeric string as Decimal; null stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParseError(f"field {field!r}: expected a number, got {value!r}")
    try:
        # repr keeps a float's shortest digits: 1.57, not 1.5700000000000000621…
        out = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ParseError(f"field {field!r}: expected a number, got {value!r}") from None
    if not out.is_finite():
        raise ParseError(f"field {field!r}: expected a finite number, got {value!r}")
    return out


def positive(value: Any, field: str) -> Decimal | None:
    """A positive number as Decimal; None when absent, null, not a number or ≤ 0 (a rate
    that cannot be one)."""
    try:
        out = dec(value, field)
    except ParseError:
        return None
    return out if out is not None and out > 0 else None


_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$")


def iso_duration_days(text: Any) -> float:
    """Days in an ISO 8601 duration as Wise writes them ("PT20H8M14.6S", "P2D", "PT0S");
    ParseError for anything else, whatever its type."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m or text in ("P", "PT"):
        raise ParseError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    return (parts["days"] + parts["hours"] / 24 + parts["minutes"] / 1440
            + parts["seconds"] / 86400)


def timestamp(value: Any, field: str) -> dt.datetime:
    """An ISO 8601 date/datetime or a Unix timestamp, as an aware UTC datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value, dt.UTC)
        except (ValueError, OverflowError, OSError):  # NaN, or beyond the calendar
            raise ParseError(f"field {field!r}: not a timestamp: {value!r}") from None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ParseError(f"field {field!r}: not a date or time: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise ParseError(f"field {field!r}: expected a date or a timestamp, got {value!r}")
