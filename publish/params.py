"""Reading query parameters: each reader names the parameter and what it expected.

Malformed values (not a number, not a code, not a period) are 400; well-formed values that
cannot be used (an unknown country, a zero amount) are 422. Unknown and repeated parameters
are 400: a typo must not silently give an unfiltered answer.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation

from multidict import MultiMapping

from corridors.errors import BadPeriod
from corridors.periods import parse_period
from corridors.reference import country_code
from publish.problems import bad_parameter, unprocessable

_CODE = re.compile(r"[A-Za-z]{2,3}")
#: ASCII digits only: ``\d`` would take any script's digits (``２００``), which no client means
#: and which the OpenAPI document's pattern does not allow.
_NUMBER = re.compile(r"[+-]?[0-9]{1,15}(\.[0-9]{1,6})?")
_WHOLE = re.compile(r"[0-9]{1,6}")
MAX_AMOUNT = Decimal(10) ** 9
MAX_LIMIT = 500
DEFAULT_LIMIT = 100


class Params:
    """The query of one request, checked against the parameters an endpoint accepts."""

    def __init__(self, query: MultiMapping[str], allowed: frozenset[str]) -> None:
        for name in query:
            if name not in allowed:
                expected = ", ".join(sorted(allowed)) or "none"
                raise bad_parameter(name, f"unknown parameter {name!r}; this endpoint accepts: "
                                          f"{expected}")
            if len(query.getall(name)) > 1:
                raise bad_parameter(name, f"parameter {name!r} given more than once")
        self.query = query

    def raw(self, name: str) -> str | None:
        value = self.query.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def country(self, name: str, *, required: bool = False) -> str | None:
        """ISO alpha-3 of an alpha-2 or alpha-3 code."""
        value = self.raw(name)
        if value is None:
            if required:
                raise bad_parameter(name, f"{name} is required: an ISO 3166 alpha-2 or "
                                          "alpha-3 country code such as US or USA")
            return None
        if not _CODE.fullmatch(value):
            raise bad_parameter(name, f"{name} must be an ISO 3166 alpha-2 or alpha-3 country "
                                      f"code such as US or USA, not {value[:40]!r}")
        code = country_code(value)
        if code is None:
            raise unprocessable(name, f"{name}: {value!r} is not a known ISO 3166 country code")
        return code

    def amount(self, name: str, *, required: bool = False) -> Decimal | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise bad_parameter(name, f"{name} is required: a positive amount such as 200")
            return None
        if not _NUMBER.fullmatch(value):
            raise bad_parameter(name, f"{name} must be a decimal number such as 200 or 250.50, "
                                      f"not {value[:40]!r}")
        try:
            amount = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern already excludes these
            raise bad_parameter(name, f"{name} must be a decimal number") from None
        if amount <= 0:
            raise unprocessable(name, f"{name} must be greater than 0, not {value}")
        if amount > MAX_AMOUNT:
            raise unprocessable(name, f"{name} must be at most {MAX_AMOUNT:,}, not {value}")
        return amount

    def number(self, name: str, *, low: float, high: float) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        if not _NUMBER.fullmatch(value):
            raise bad_parameter(name, f"{name} must be a number such as 5, not {value[:40]!r}")
        number = float(value)
        if not low <= number <= high:
            raise unprocessable(name, f"{name} must be between {low:g} and {high:g}")
        return number

    def choice(self, name: str, choices: tuple[str, ...], *,
               default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise bad_parameter(name, f"{name} must be one of {', '.join(choices)}, "
                                      f"not {value[:40]!r}")
        return value

    def price_point(self, name: str = "amount") -> int:
        value = self.choice(name, ("200", "500"), default="200")
        assert value is not None
        return int(value)

    def period(self, name: str = "period") -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            return str(parse_period(value[:40]))
        except BadPeriod:
            raise bad_parameter(name, f"{name} must be a quarter such as 2014Q2 (or 2014_2Q) "
                                      f"or a month such as 2026-11, not {value[:40]!r}") from None

    def limit(self, name: str = "limit") -> int:
        value = self.raw(name)
        if value is None:
            return DEFAULT_LIMIT
        if not _WHOLE.fullmatch(value):
            raise bad_parameter(name, f"{name} must be a whole number from 1 to {MAX_LIMIT}")
        n = int(value)
        if not 1 <= n <= MAX_LIMIT:
            raise unprocessable(name, f"{name} must be from 1 to {MAX_LIMIT}, not {n}")
        return n

    def cursor(self, name: str = "cursor") -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        return decode_cursor(value, name)


def encode_cursor(key: str) -> str:
    """An opaque cursor: the sort key of the last item of the previous page."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(value: str, name: str = "cursor") -> str:
    try:
        if len(value) > 200:
            raise ValueError
        padded = value + "=" * (-len(value) % 4)
        key = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        raise bad_parameter(name, f"{name} is not a cursor this API gave out; use the "
                                  "next_cursor of the previous page") from None
    if not re.match(r"^[A-Za-z0-9_:\-]{1,60}$", key):
        raise bad_parameter(name, f"{name} is not a cursor this API gave out; use the "
                                  "next_cursor of the previous page")
    return key
