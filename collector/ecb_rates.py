"""Reference rates: the ECB's daily euro foreign exchange reference rates
(``eurofxref-daily.xml``): ``<Cube time="YYYY-MM-DD"><Cube currency="USD" rate="1.08"/>``.

The rates are set at the 14:15 CET concertation of the day they name; that moment is their
``as_of``. Every rate is EUR → currency.

A ``Cube`` without a currency (or one that is not an ISO 4217 code) or whose rate is not
a positive number (or a day whose time is not a date) is left out and the other rates
stored: the run counts it ``malformed`` (status ``partial``) and logs which. A document that is not
XML or has no usable rate is malformed.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from decimal import Decimal
from zoneinfo import ZoneInfo

from collector import options as opt
from collector.context import RunContext
from collector.errors import ParseError
from collector.parsing import iso_currency, positive
from corridors.config import SourceConfig

NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"
CONCERTATION = dt.time(14, 15, tzinfo=ZoneInfo("Europe/Berlin"))
OPTIONS: dict[str, opt.Kind] = {}


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, OPTIONS)


def parse(body: bytes, skipped: list[str] | None = None
          ) -> list[tuple[str, str, Decimal, dt.datetime]]:
    """The document's usable rates; each one left out is described in ``skipped``."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ParseError(f"ECB rates: not XML ({exc})") from None
    out = []
    bad = []
    for day in root.iter(f"{NS}Cube"):
        when = day.get("time")
        if when is None:
            continue
        try:
            date = dt.date.fromisoformat(when)
        except ValueError:
            bad.append(f"ECB rates: Cube time {when!r} is not a date")
            continue
        as_of = dt.datetime.combine(date, CONCERTATION).astimezone(dt.UTC)
        for cube in day.findall(f"{NS}Cube"):
            currency, rate = cube.get("currency"), positive(cube.get("rate"), "rate")
            if not currency or rate is None or iso_currency(currency) is None:
                bad.append(f"ECB rates: bad Cube {ET.tostring(cube)[:80]!r}")
                continue
            out.append(("EUR", currency.upper(), rate, as_of))
    if not out:
        raise ParseError("ECB rates: no rates in the document"
                         + (f" ({'; '.join(bad[:3])})" if bad else ""))
    if skipped is not None:
        skipped += bad
    return out


async def collect(ctx: RunContext) -> None:
    async def one(url: str) -> None:
        fetched = await ctx.fetch(url)
        skipped: list[str] = []
        await ctx.add_rates(parse(fetched.body, skipped), fetched)
        ctx.skipped_rates(skipped)

    await ctx.each([ctx.source.url], one)
