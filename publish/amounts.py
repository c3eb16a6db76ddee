"""Reading an amount as people type it into the page: ``200,50``, ``1 000``, ``1.000,50``,
``500€``, ``$200``, ``٢٠٠``.

The API takes numbers exactly as its OpenAPI document says (``publish.params``); the page's
box is typed by people, in their language's habits, so it is read leniently here and the
result handed on as the API's number:

- any script's decimal digits (Arabic-Indic ``٢٠٠``, Devanagari ``२००``, full-width ``２００``)
  are read as digits;
- a currency around the number (a symbol such as ``€`` or ``$``, or letters such as ``EUR``,
  ``Rs.``, ``euros``) is set aside and checked against the currency the amount is in: a
  symbol or an ISO code of another currency is refused rather than silently misread;
- spaces (ordinary, no-break, narrow), apostrophes and ``٬`` group digits;
- of ``.`` and ``,``: when both are used, the last one is the decimal mark
  (``1.000,50``, ``1,000.50``); one used several times groups digits (``1.000.000``); one
  used once is the decimal mark (``200,50``, ``200.5``) unless exactly three digits follow
  it (``1.000``, ``1,000``): money is not written to a thousandth, so that is a thousands
  separator in every language. ``٫`` is always the decimal mark.

Anything else (letters between digits, two numbers, no digit at all) is unreadable, and the
page says so in its language.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

#: Every currency symbol of the Basic Multilingual Plane (category Sc: $ € £ ¥ ₹ ₱ ₽ ₦ ₵ …).
_SYMBOLS = "".join(c for c in map(chr, range(0x10000))
                   if unicodedata.category(c) == "Sc")
#: A currency around the number: symbols and words (letters, with a dot after an
#: abbreviation such as ``Rs.`` or ``Ksh.``), with spaces between.
_AROUND = f"(?:[{re.escape(_SYMBOLS)}]|[^\\W\\d_]+\\.?|\\s)*"
_SHAPE = re.compile(f"({_AROUND})(-?[0-9][0-9.,'’ ٫٬]*)({_AROUND})")


class UnreadableAmount(ValueError):
    """The text is not an amount."""


class OtherCurrency(ValueError):
    """The text names a currency other than the one the amount is in (``args[0]``: what it
    named)."""


def _ascii_digits(text: str) -> str:
    out = []
    for ch in text:
        digit = unicodedata.decimal(ch, None)
        out.append(str(digit) if digit is not None else ch)
    return "".join(out)


def _decimal_mark(body: str) -> str | None:
    """Which character of ``body`` is its decimal mark, if any (the module's rules)."""
    if "٫" in body:
        return "٫"
    dots, commas = body.count("."), body.count(",")
    if dots and commas:
        return "." if body.rfind(".") > body.rfind(",") else ","
    if dots + commas != 1:
        return None  # none, or one mark used several times: it groups digits
    sep = "." if dots else ","
    head, _, tail = body.partition(sep)
    # Three digits after a single mark group thousands ("1.000"), unless nothing but zeros
    # stands before it ("0,500" is a half).
    if len(tail) == 3 and head.lstrip("-").strip("0"):
        return None
    return sep


def _number(body: str) -> Decimal:
    body = body.rstrip(".,٫ ")  # "200." and "200," are 200
    mark = _decimal_mark(body)
    whole, fraction = body.rsplit(mark, 1) if mark else (body, "")
    if not re.fullmatch(r"[0-9]*", fraction):
        raise UnreadableAmount(body)  # "1.000.50": a mark among the decimals
    sign = "-" if whole.startswith("-") else ""
    groups = re.split(r"[.,'’ ٬]", whole.lstrip("-"))
    # Grouped digits come in threes (and twos before the last three in Indian grouping,
    # "1,00,000"); "1..000" or "20.00.0" are not a number someone meant.
    if len(groups) > 1 and not (
            re.fullmatch(r"[0-9]{1,3}", groups[0])
            and all(re.fullmatch(r"[0-9]{2,3}", g) for g in groups[1:-1])
            and re.fullmatch(r"[0-9]{3}", groups[-1])):
        raise UnreadableAmount(body)
    digits = "".join(groups)
    if not re.fullmatch(r"[0-9]+", digits):
        raise UnreadableAmount(body)
    try:
        return Decimal(f"{sign}{digits}.{fraction}" if fraction else f"{sign}{digits}")
    except InvalidOperation:  # pragma: no cover - the patterns above exclude these
        raise UnreadableAmount(body) from None


def read_amount(text: str, currency_names: frozenset[str] = frozenset()) -> Decimal:
    """The amount in ``text``. ``currency_names``: the symbols and codes (upper case) that
    name the currency the amount is in; a currency symbol or a three-letter word in
    ``text`` that is not among them raises ``OtherCurrency``. Empty ``currency_names``
    (the currency is not known yet) accepts any."""
    text = _ascii_digits(unicodedata.normalize("NFKC", text)).strip()
    # NFKC turns the no-break and narrow no-break spaces into ordinary ones.
    match = _SHAPE.fullmatch(text)
    if not match or not any(ch.isdigit() for ch in match.group(2)):
        raise UnreadableAmount(text)
    before, body, after = match.groups()
    if before.strip() and after.strip():
        raise UnreadableAmount(text)  # "$200 EUR": which one?
    named = (before + after).strip()
    if named and currency_names:
        marks = [c for c in named if c in _SYMBOLS]
        words = [w.upper() for w in re.findall(r"[^\W\d_]+", named)]
        foreign = [m for m in marks if not any(m in n for n in currency_names)]
        foreign += [w for w in words if len(w) == 3 and w not in currency_names
                    and not any(w in n for n in currency_names)]
        if foreign:
            raise OtherCurrency(named)
    return _number(body.strip())
