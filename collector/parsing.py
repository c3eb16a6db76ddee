"""Small pure helpers shared by the parsers: JSON paths, decimals, ISO 8601 durations."""

from __future__ import annotations

import codecs
import datetime as dt
import email.message
import functools
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from collector.errors import ParseError

_MISSING = object()

#: ISO 4217 codes withdrawn since (list three of the standard) that rates and quotes of
#: their time still carry: the euro's predecessors in the ECB's history file (BGN, HRK,
#: CYP…) and the redenominated currencies of RPW's years (ZMK, GHC, VEF…).
WITHDRAWN_CURRENCIES = frozenset({
    "ATS", "BEF", "BGL", "BGN", "BYR", "CSD", "CYP", "DEM", "EEK", "ESP", "FIM", "FRF",
    "GHC", "GRD", "HRK", "IEP", "ITL", "LTL", "LUF", "LVL", "MGF", "MRO", "MTL", "MZM",
    "NLG", "PTE", "ROL", "SDD", "SIT", "SKK", "SLL", "STD", "TMM", "TRL", "VEB", "VEF",
    "XEU", "YUM", "ZMK", "ZWD", "ZWL", "AZM", "CUC", "ANG"})


def iso_currency(value: Any) -> str | None:
    """``value`` as an ISO 4217 code (current, or withdrawn but found in data of its
    time), upper case; None for anything else: a key that is no currency ("RATE"), a
    pseudo-code outside the standard (open.er-api's FOK, GGP, IMP, JEP, KID, TVD), null."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    if code in WITHDRAWN_CURRENCIES:
        return code
    from corridors.reference import currency_code

    return currency_code(code)


_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE,
         codecs.BOM_UTF32_BE)


def charset_of(headers: Mapping[str, str] | None) -> str | None:
    """The ``charset`` of a response's Content-Type header (None when it names none)."""
    if not headers:
        return None
    value = headers.get("Content-Type")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    return _charset(value) if value else None


@functools.lru_cache(maxsize=64)
def _charset(content_type: str) -> str | None:
    # Parsed as a MIME header (quoted values, parameters in any order), once per value.
    msg = email.message.Message()
    msg["Content-Type"] = content_type
    charset = msg.get_param("charset")
    return charset.strip().strip('"').lower() if isinstance(charset, str) and charset.strip() \
        else None


def decode_text(body: bytes, charset: str | None, what: str) -> str | bytes:
    """The body as text in the charset its Content-Type names; the body itself when it names
    none or begins with a byte-order mark (which wins over the header, as in browsers)."""
    if charset is None or body.startswith(_BOMS):
        return body
    try:
        return body.decode(charset)
    except LookupError:
        raise ParseError(f"{what}: unknown charset {charset!r} in Content-Type") from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"{what}: not {charset} as its Content-Type says ({exc})") from None


def as_text(body: bytes, charset: str | None, what: str) -> str:
    """The body as text: by its byte-order mark, else the Content-Type's charset, else
    UTF-8. ParseError when it is not in that encoding."""
    text = decode_text(body, charset, what)
    if isinstance(text, str):
        return text
    encoding = ("utf-32" if body.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE))
                else "utf-16" if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
                else "utf-8-sig")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"{what}: not {charset or 'UTF-8'} text ({exc})") from None


def load_json(body: bytes, what: str, charset: str | None = None) -> Any:
    """A JSON document; in ``charset`` (the Content-Type's) when given, else as JSON itself
    says (UTF-8, 16 or 32, with or without a byte-order mark)."""
    text = decode_text(body, charset, what)
    try:
        return json.loads(text)
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


_MONEY = re.compile(r"^\s*(?:([A-Za-z]{3})\s*([-+]?\d[\d.]*)|([-+]?\d[\d.]*)\s*([A-Za-z]{3}))\s*$")


def money_with_currency(value: Any) -> tuple[str, str] | None:
    """("3.99", "AUD") from an amount written with its ISO 4217 currency, "AUD 3.99" or
    "3.99 AUD"; None for anything else (a plain number, another string)."""
    if not isinstance(value, str):
        return None
    m = _MONEY.match(value)
    if m is None:
        return None
    code, amount = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
    currency = iso_currency(code)
    return (amount, currency) if currency is not None else None


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
