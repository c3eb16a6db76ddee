"""Reading query parameters: each reader names the parameter and what it expected.

Malformed values (not a number, not a code, not a period, an empty value) are 400;
well-formed values that cannot be used (an unknown country, a zero, negative or too large
amount) are 422. Unknown and repeated parameters are 400: a typo must not silently give an
unfiltered answer.

What is well formed is exactly what the OpenAPI document's patterns say: they are the
``*_PATTERN`` strings below, which ``publish.openapi`` declares as they are. Values are not
trimmed: `` 200 `` is not a number.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation

from multidict import MultiMapping

from corridors.errors import BadPeriod
from corridors.periods import parse_period
from corridors.reference import country_code, currency_code
from publish.problems import bad_parameter, unprocessable

#: The grammar of every number parameter (``amount``, ``above``): an optional minus, ASCII
#: digits, an optional fraction. No plus sign, exponent, spaces or other scripts' digits
#: (``\d`` would take ``２００``). A well-formed number out of range is 422, never 400.
NUMBER_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
#: Whole numbers (``limit``): what the OpenAPI ``integer`` type takes in a query.
INTEGER_PATTERN = r"^-?[0-9]+$"
#: ISO 3166 alpha-2 or alpha-3, any case.
COUNTRY_PATTERN = r"^[A-Za-z]{2,3}$"
#: A corridor in a path: FROM-TO, each a country code as above.
PAIR_PATTERN = r"^([A-Za-z]{2,3})-([A-Za-z]{2,3})$"
#: ISO 4217, any case.
CURRENCY_PATTERN = r"^[A-Za-z]{3}$"
#: A quarter (``2014Q2``, RPW's ``2014_2Q``) or a month (``2026-11``), of a year 1000-9999.
PERIOD_PATTERN = (r"^([1-9][0-9]{3}[Qq][1-4]|[1-9][0-9]{3}_[1-4][Qq]"
                  r"|[1-9][0-9]{3}-(0[1-9]|1[0-2]))$")

_CODE = re.compile(COUNTRY_PATTERN)
_CURRENCY = re.compile(CURRENCY_PATTERN)
_NUMBER = re.compile(NUMBER_PATTERN)
_INTEGER = re.compile(INTEGER_PATTERN)
_PERIOD = re.compile(PERIOD_PATTERN)
MAX_AMOUNT = Decimal(10) ** 9
MAX_LIMIT = 500
DEFAULT_LIMIT = 100

#: What each paginated endpoint's cursor holds once decoded: the sort key of the last item
#: of the previous page. A cursor that decodes to anything else was not given out here.
CURSOR_CORRIDOR = re.compile(r"[A-Z]{3}-[A-Z]{3}")
#: (Not year 9999: its last periods end past the calendar, and no data has them.)
CURSOR_PERIOD = re.compile(r"(?!9999)[1-9][0-9]{3}(Q[1-4]|-(0[1-9]|1[0-2]))")
CURSOR_OFFSET = re.compile(r"o:[0-9]{1,9}")


class Params:
    """The query of one request, checked against the parameters an endpoint accepts.

    ``trim``: strip spaces around values first (the page's form, typed by people); the API
    takes values exactly as its OpenAPI document describes them.
    """

    def __init__(self, query: MultiMapping[str], allowed: frozenset[str], *,
                 trim: bool = False) -> None:
        for name in query:
            if name not in allowed:
                expected = ", ".join(sorted(allowed)) or "none"
                raise bad_parameter(name, f"unknown parameter {name!r}; this endpoint accepts: "
                                          f"{expected}")
            if len(query.getall(name)) > 1:
                raise bad_parameter(name, f"parameter {name!r} given more than once")
        self.query = query
        self.trim = trim

    def raw(self, name: str) -> str | None:
        """The value as given; None when the parameter is absent. An empty value (``?limit=``,
        ``?limit``) is 400 naming it: no pattern of the OpenAPI document takes an empty
        string, and treating it as absent would answer a question that was not asked. The
        page's form (``trim``) sends its empty boxes: there an empty value is no value."""
        value = self.query.get(name)
        if value is None:
            return None
        if self.trim:
            return value.strip() or None
        if not value:
            raise bad_parameter(name, f"{name} is empty: give it a value or leave it out")
        return value

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

    def currency(self, name: str) -> str | None:
        """An ISO 4217 code, upper case: malformed is 400, well formed but unknown 422."""
        value = self.raw(name)
        if value is None:
            return None
        if not _CURRENCY.fullmatch(value):
            raise bad_parameter(name, f"{name} must be an ISO 4217 currency code such as USD, "
                                      f"not {value[:40]!r}")
        code = currency_code(value)
        if code is None:
            raise unprocessable(name, f"{name}: {value!r} is not a known ISO 4217 currency "
                                      "code")
        return code

    def _decimal(self, name: str, value: str, example: str) -> Decimal:
        if not _NUMBER.fullmatch(value):
            raise bad_parameter(name, f"{name} must be a decimal number such as {example} "
                                      f"(digits, an optional minus and fraction), "
                                      f"not {value[:40]!r}")
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern already excludes these
            raise bad_parameter(name, f"{name} must be a decimal number") from None

    def amount(self, name: str, *, required: bool = False) -> Decimal | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise bad_parameter(name, f"{name} is required: a positive amount such as 200")
            return None
        amount = self._decimal(name, value, "200 or 250.50")
        if amount <= 0:
            raise unprocessable(name, f"{name} must be positive (greater than 0), "
                                      f"not {value[:40]}")
        if amount > MAX_AMOUNT:
            raise unprocessable(name, f"{name} must be at most {MAX_AMOUNT:,}, "
                                      f"not {value[:40]}")
        return amount

    def number(self, name: str, *, low: float, high: float) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        number = self._decimal(name, value, "5 or 7.5")
        if not Decimal(repr(low)) <= number <= Decimal(repr(high)):
            raise unprocessable(name, f"{name} must be between {low:g} and {high:g}, "
                                      f"not {value[:40]}")
        return float(number)

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
        return None if value is None else period_label(value, name)

    def limit(self, name: str = "limit") -> int:
        value = self.raw(name)
        if value is None:
            return DEFAULT_LIMIT
        if not _INTEGER.fullmatch(value):
            raise bad_parameter(name, f"{name} must be a whole number from 1 to {MAX_LIMIT}, "
                                      f"not {value[:40]!r}")
        # Leading zeros do not make a number large (int() of a long one would be slow).
        n = int(value) if len(value.lstrip("-").lstrip("0")) <= 12 else MAX_LIMIT + 1
        if not 1 <= n <= MAX_LIMIT:
            raise unprocessable(name, f"{name} must be from 1 to {MAX_LIMIT}, "
                                      f"not {value[:40]}")
        return n

    def cursor(self, shape: re.Pattern[str], name: str = "cursor") -> str | None:
        """The decoded cursor, which must have the ``shape`` of the sort key this endpoint
        gives out (``CURSOR_*``): anything else is 400."""
        value = self.raw(name)
        if value is None:
            return None
        key = decode_cursor(value, name)
        if not shape.fullmatch(key):
            raise _not_a_cursor(name)
        return key


def period_label(value: str, name: str = "period") -> str:
    """The label (``2014Q2``, ``2026-11``) of a period parameter that has ``PERIOD_PATTERN``;
    400 otherwise."""
    try:
        if not _PERIOD.fullmatch(value):
            raise BadPeriod(value)
        return str(parse_period(value))
    except BadPeriod:
        raise bad_parameter(name, f"{name} must be a quarter such as 2014Q2 (or 2014_2Q) or "
                                  f"a month such as 2026-11, not {value[:40]!r}") from None


def encode_cursor(key: str) -> str:
    """An opaque cursor: the sort key of the last item of the previous page."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _not_a_cursor(name: str) -> Exception:
    return bad_parameter(name, f"{name} is not a cursor this API gave out; use the "
                               "next_cursor of the previous page")


def decode_cursor(value: str, name: str = "cursor") -> str:
    try:
        if len(value) > 200:
            raise ValueError
        padded = value + "=" * (-len(value) % 4)
        key = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        raise _not_a_cursor(name) from None
    if not re.match(r"^[A-Za-z0-9_:\-]{1,60}$", key):
        raise _not_a_cursor(name)
    return key
