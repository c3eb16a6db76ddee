"""Reference rates from a generic JSON rates API: ``{"base": "USD", "date": "...",
"rates": {"MXN": 17.1, ...}}`` (frankfurter, exchangerate.host, openexchangerates' shape).

``options``: ``base_path`` (default "base"), ``rates_path`` ("rates"), ``time_path``
("date"; an ISO date/time or a Unix timestamp — openexchangerates says "timestamp"),
``base`` (the base when the document does not say it), ``pair_keys`` (true: the table's
keys are pairs, the base then the currency, "USDAED", as currencylayer and AwesomeAPI write
them), ``rate_field`` (each entry is an object and the rate is this field of it, "value" in
currencyapi's ``{"AED": {"code": "AED", "value": 3.67}}``), ``not_currencies`` (keys the
upstream is known to publish that are no ISO 4217 currency — open.er-api's FOK, GGP, IMP,
JEP, KID, TVD — left out quietly, so that a run is not ``partial`` for ever; any other
such key still counts).

One rate that is not a positive number (null, "n/a", 0), or whose key is not an ISO 4217
currency code (open.er-api's FOK, GGP, KID; a record's "rate" key), is left out, and the others are
stored: the run counts it ``malformed`` (status ``partial``) and logs which. A document
broken as a whole (not JSON, no base or one that is not an ISO 4217 code, no table of
rates, a time that is not one, or not one usable rate) is malformed.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from collector import options as opt
from collector.context import RunContext
from collector.errors import ParseError
from collector.parsing import charset_of, dig, iso_currency, load_json, positive, timestamp
from corridors.config import SourceConfig

OPTIONS = {"base_path": opt.STRING, "rates_path": opt.STRING, "time_path": opt.STRING,
           "base": opt.STRING, "pair_keys": opt.BOOLEAN, "rate_field": opt.STRING,
           "not_currencies": opt.STRINGS}


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, OPTIONS)


def parse(source: SourceConfig, body: bytes, fetched_at: dt.datetime,
          skipped: list[str] | None = None, charset: str | None = None
          ) -> list[tuple[str, str, Decimal, dt.datetime]]:
    """The document's usable rates; each one left out is described in ``skipped``."""
    o = source.options
    doc = load_json(body, f"{source.name} rates", charset)
    base = dig(doc, o.get("base_path", "base"), None) or o.get("base")
    if not isinstance(base, str):
        raise ParseError(f"{source.name}: no base currency (options.base_path / base)")
    if iso_currency(base) is None:
        raise ParseError(f"{source.name}: base {base!r} is not an ISO 4217 currency code")
    rates = dig(doc, o.get("rates_path", "rates"))
    if not isinstance(rates, dict) or not rates:
        raise ParseError(f"{source.name}: {o.get('rates_path', 'rates')!r} is not a table "
                         "of rates")
    raw_time = dig(doc, o.get("time_path", "date"), None)
    as_of = timestamp(raw_time, "time") if raw_time is not None else fetched_at
    out = []
    bad = []
    pairs, field = o.get("pair_keys", False), o.get("rate_field")
    known_not = {k.upper() for k in o.get("not_currencies", ())}
    for key, entry in rates.items():
        if key.upper() in known_not:
            continue
        # A key per pair ("USDAED", currencylayer, AwesomeAPI): the base, then the currency.
        currency = (key[3:] if len(key) == 6 and key[:3].upper() == base.upper() else "")\
            if pairs else key
        # A rate per currency object ({"code": "AED", "value": 3.67}, currencyapi).
        value = dig(entry, field, None) if field else entry
        rate = positive(value, f"rates.{key}")
        if pairs and not currency:
            bad.append(f"{source.name}: {key!r} is not a {base} pair (options.pair_keys)")
        elif iso_currency(currency) is None:
            # A key that is no currency ("rate" of a record read as a table) or a code
            # outside ISO 4217 (open.er-api's FOK, GGP, KID…): never stored as a currency.
            bad.append(f"{source.name}: {currency!r} is not an ISO 4217 currency code")
        elif rate is None:
            bad.append(f"{source.name}: rate of {currency} is {value!r}"
                       + (f" (options.rate_field {field!r})" if field else ""))
        elif currency.upper() != base.upper():
            out.append((base.upper(), currency.upper(), rate, as_of))
    if bad and not out:
        raise ParseError(f"{bad[0]} (and no usable rate)" if len(bad) == 1 else
                         f"no usable rate: {'; '.join(bad[:3])}"
                         + (f"; and {len(bad) - 3} more" if len(bad) > 3 else ""))
    if skipped is not None:
        skipped += bad
    return out


async def collect(ctx: RunContext) -> None:
    async def one(url: str) -> None:
        fetched = await ctx.fetch(url)
        skipped: list[str] = []
        await ctx.add_rates(parse(ctx.source, fetched.body, fetched.fetched_at, skipped,
                                  charset_of(fetched.headers)), fetched)
        ctx.skipped_rates(skipped)

    await ctx.each([ctx.source.url], one)
