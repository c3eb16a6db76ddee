"""Reference rates from a generic JSON rates API: ``{"base": "USD", "date": "...",
"rates": {"MXN": 17.1, ...}}`` (frankfurter, exchangerate.host, openexchangerates' shape).

``options``: ``base_path`` (default "base"), ``rates_path`` ("rates"), ``time_path``
("date"; an ISO date/time or a Unix timestamp — openexchangerates says "timestamp"),
``base`` (the base when the document does not say it).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from collector import options as opt
from collector.errors import ParseError
from collector.parsing import dec, dig, load_json, timestamp
from collector.run import RunContext
from corridors.config import SourceConfig


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, {"base_path", "rates_path", "time_path", "base"})
    for key in ("base_path", "rates_path", "time_path", "base"):
        if key in source.options:
            opt.string(source, key)


def parse(source: SourceConfig, body: bytes, fetched_at: dt.datetime
          ) -> list[tuple[str, str, Decimal, dt.datetime]]:
    o = source.options
    doc = load_json(body, f"{source.name} rates")
    base = dig(doc, o.get("base_path", "base"), None) or o.get("base")
    if not isinstance(base, str):
        raise ParseError(f"{source.name}: no base currency (options.base_path / base)")
    rates = dig(doc, o.get("rates_path", "rates"))
    if not isinstance(rates, dict) or not rates:
        raise ParseError(f"{source.name}: {o.get('rates_path', 'rates')!r} is not a table "
                         "of rates")
    raw_time = dig(doc, o.get("time_path", "date"), None)
    as_of = timestamp(raw_time, "time") if raw_time is not None else fetched_at
    out = []
    for currency, value in rates.items():
        rate = dec(value, f"rates.{currency}")
        if rate is None or rate <= 0:
            raise ParseError(f"{source.name}: rate of {currency} is {value!r}")
        if currency.upper() != base.upper():
            out.append((base.upper(), currency.upper(), rate, as_of))
    return out


async def collect(ctx: RunContext) -> None:
    async def one(url: str) -> None:
        fetched = await ctx.fetch(url)
        await ctx.add_rates(parse(ctx.source, fetched.body, fetched.fetched_at), fetched)

    await ctx.each([ctx.source.url], one)
