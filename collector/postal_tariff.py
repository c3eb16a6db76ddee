"""Post offices: postal money-order / transfer tariffs, published as fee schedules.

The tariff (CSV or JSON at ``url``) lists, per destination, amount bands with a fixed fee,
a percentage fee, and either the exchange rate applied or the FX margin taken; the adapter
prices each configured amount of each monitored corridor from it. Firm type
``post_office``. The tariff's validity dates are kept on every quote (flags
``valid_from:YYYY-MM-DD`` / ``valid_to:YYYY-MM-DD``), and a quote priced outside them is
flagged ``tariff_out_of_validity``.

JSON::

  {"operator": "La Poste", "country": "FRA", "currency": "EUR",
   "valid_from": "2026-01-01", "valid_to": "2026-12-31",
   "destinations": [{"country": "SEN", "currency": "XOF", "fx_margin_pct": 1.5,
                     "applied_rate": null, "delivery_days": 2,
                     "bands": [{"up_to": 150, "fixed_fee": 4.9, "pct_fee": 0},
                               {"up_to": null, "fixed_fee": 4.9, "pct_fee": 1.0}]}]}

CSV (one band a row; operator, country and currency from the options when absent)::

  destination,currency,up_to,fixed_fee,pct_fee,fx_margin_pct,applied_rate,delivery_days,valid_from,valid_to

A fee is never assumed: a band without ``fixed_fee`` or ``pct_fee`` (0 must be written 0),
a CSV row with fewer or more fields than the header, rows disagreeing on the validity dates,
or a header without rows make the whole tariff malformed, naming the band or line: a body
cut short in transit must price nothing rather than price a band wrong. (A cut exactly
between two rows cannot be told from a shorter tariff.) ``up_to`` empty or null means no
upper bound; in JSON the key must be there.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from collector import options as opt
from collector.errors import ParseError
from collector.model import Draft, service_key
from collector.parsing import dec, dig, load_json
from collector.run import Fetched, RunContext
from corridors.config import SourceConfig
from corridors.reference import country_code
from corridors.types import (
    AccessPoint,
    Firm,
    FirmType,
    PayIn,
    PayOut,
    ServiceAttributes,
    speed_from_days,
)

OPTIONS = {"operator", "country", "currency", "format", "product", "pay_in", "pay_out"}
CSV_COLUMNS = ("destination", "currency", "up_to", "fixed_fee", "pct_fee", "fx_margin_pct",
               "applied_rate", "delivery_days", "valid_from", "valid_to")


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, OPTIONS)
    fmt = source.options.get("format", "json" if not source.url.endswith(".csv") else "csv")
    if fmt not in ("json", "csv"):
        raise opt.ConfigError(f"{opt.where(source)}.format: expected json or csv, got {fmt!r}")
    if fmt == "csv":
        for key in ("operator", "country", "currency"):
            opt.string(source, key)
    if "country" in source.options and country_code(opt.string(source, "country")) is None:
        raise opt.ConfigError(f"{opt.where(source)}.country: not an ISO 3166 country code")
    opt.enum(source, "pay_in", PayIn, "cash")
    opt.enum(source, "pay_out", PayOut, "cash")


@dataclass(frozen=True, slots=True)
class Band:
    up_to: Decimal | None  # inclusive upper bound; None: no bound
    fixed_fee: Decimal
    pct_fee: Decimal


@dataclass(frozen=True, slots=True)
class Destination:
    country: str  # ISO alpha-3
    currency: str | None
    fx_margin_pct: Decimal | None
    applied_rate: Decimal | None
    delivery_days: Decimal | None
    bands: tuple[Band, ...]

    def band(self, amount: Decimal) -> Band | None:
        for b in sorted(self.bands, key=lambda b: (b.up_to is None, b.up_to or 0)):
            if b.up_to is None or amount <= b.up_to:
                return b
        return None


@dataclass(frozen=True, slots=True)
class Tariff:
    operator: str
    country: str
    currency: str
    valid_from: dt.date | None
    valid_to: dt.date | None
    destinations: dict[str, Destination]


def parse(source: SourceConfig, body: bytes) -> Tariff:
    fmt = source.options.get("format", "csv" if source.url.endswith(".csv") else "json")
    return _parse_csv(source, body) if fmt == "csv" else _parse_json(source, body)


def _date(value: Any, field: str) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ParseError(f"tariff field {field!r}: not a date: {value!r}") from None


def _country(value: Any, field: str) -> str:
    code = country_code(str(value)) if value else None
    if code is None:
        raise ParseError(f"tariff field {field!r}: not a country code: {value!r}")
    return code


def _parse_json(source: SourceConfig, body: bytes) -> Tariff:
    doc = load_json(body, f"{source.name} tariff")
    o = source.options
    dests = {}
    for i, d in enumerate(dig(doc, "destinations")):
        where = f"destinations.{i}"
        bands = []
        for j, b in enumerate(dig(d, "bands")):
            at = f"{where}.bands.{j}"
            if not isinstance(b, dict):
                raise ParseError(f"tariff {at}: expected an object, got {b!r}")
            bands.append(Band(dec(dig(b, "up_to"), f"{at}.up_to"),
                              _required(b.get("fixed_fee"), f"{at}.fixed_fee"),
                              _required(b.get("pct_fee"), f"{at}.pct_fee")))
        code = _country(dig(d, "country"), f"{where}.country")
        dests[code] = Destination(
            code, d.get("currency"), dec(d.get("fx_margin_pct"), f"{where}.fx_margin_pct"),
            dec(d.get("applied_rate"), f"{where}.applied_rate"),
            dec(d.get("delivery_days"), f"{where}.delivery_days"), tuple(bands))
    return Tariff(
        operator=str(doc.get("operator") or o.get("operator") or source.name),
        country=_country(doc.get("country") or o.get("country"), "country"),
        currency=str(doc.get("currency") or o.get("currency") or "").upper(),
        valid_from=_date(doc.get("valid_from"), "valid_from"),
        valid_to=_date(doc.get("valid_to"), "valid_to"),
        destinations=dests)


def _parse_csv(source: SourceConfig, body: bytes) -> Tariff:
    try:
        reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
        # With the line each row ends on, to name it (blank lines are skipped by the reader).
        numbered = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ParseError(f"{source.name} tariff: not a CSV file ({exc})") from None
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ParseError(f"{source.name} tariff: missing column(s) {', '.join(missing)}")
    if not numbered:
        raise ParseError(f"{source.name} tariff: a header and no bands (a truncated file?)")
    width = len(reader.fieldnames or ())
    grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
    first_row = numbered[0][1]
    for n, row in numbered:
        # DictReader fills a short row with None (and puts extra fields under None): a row
        # cut short is not a row with empty fields.
        if None in row or any(v is None for v in row.values()):
            got = width - sum(v is None for v in row.values()) + len(row.get(None) or ())
            raise ParseError(f"{source.name} tariff: line {n} has {got} fields, the header "
                             f"{width} (a truncated file?)")
        for key in ("valid_from", "valid_to"):
            if row[key] != first_row[key]:
                raise ParseError(f"{source.name} tariff: line {n} {key} {row[key]!r} differs "
                                 f"from the first row's {first_row[key]!r}")
        grouped.setdefault(_country(row["destination"], f"line {n} destination"), []).append(
            (n, row))
    dests = {}
    for code, group in grouped.items():
        first = group[0][1]
        dests[code] = Destination(
            code, first["currency"] or None, dec(first["fx_margin_pct"], "fx_margin_pct"),
            dec(first["applied_rate"], "applied_rate"),
            dec(first["delivery_days"], "delivery_days"),
            tuple(Band(dec(r["up_to"], f"line {n} up_to"),
                       _required(r["fixed_fee"], f"line {n} fixed_fee"),
                       _required(r["pct_fee"], f"line {n} pct_fee")) for n, r in group))
    o = source.options
    return Tariff(str(o["operator"]), _country(o["country"], "country"),
                  str(o["currency"]).upper(), _date(first_row["valid_from"], "valid_from"),
                  _date(first_row["valid_to"], "valid_to"), dests)


def _required(value: Any, field: str) -> Decimal:
    """A fee component the tariff must state: missing or blank is malformed, never 0."""
    out = dec(value, field)
    if out is None:
        raise ParseError(f"tariff field {field!r}: missing (a fee is never assumed to be 0)")
    return out


def drafts(source: SourceConfig, tariff: Tariff, ctx: RunContext, fetched: Fetched
           ) -> list[Draft]:
    """Price every configured amount of every monitored corridor the tariff covers."""
    o = source.options
    firm = Firm(tariff.operator, FirmType.POST_OFFICE)
    collected = fetched.fetched_at.date()
    flags = []
    if tariff.valid_from:
        flags.append(f"valid_from:{tariff.valid_from}")
    if tariff.valid_to:
        flags.append(f"valid_to:{tariff.valid_to}")
    if ((tariff.valid_from and collected < tariff.valid_from)
            or (tariff.valid_to and collected > tariff.valid_to)):
        flags.append("tariff_out_of_validity")
    product = o.get("product", "Postal money order")
    out = []
    for c in ctx.corridors:
        if c.source != tariff.country or c.destination not in tariff.destinations:
            continue
        d = tariff.destinations[c.destination]
        ref = ctx.reference(c.send_currency, c.receive_currency)
        rate = d.applied_rate
        if rate is None and d.fx_margin_pct is not None and ref is not None:
            rate = ref.rate * (1 - d.fx_margin_pct / 100)
        speed = speed_from_days(float(d.delivery_days)) if d.delivery_days is not None else None
        service = ServiceAttributes(product=product, pay_in=PayIn(o.get("pay_in", "cash")),
                                    pay_out=PayOut(o.get("pay_out", "cash")),
                                    access_point=AccessPoint.POST_OFFICE_BRANCH, speed=speed)
        for usd, amount in c.amounts:
            band = d.band(amount)
            if band is None:
                continue  # above the tariff's largest band: the post does not offer it
            fee = band.fixed_fee + band.pct_fee * amount / 100
            out.append(Draft(
                corridor=c, amount_usd=usd, send_amount=amount, firm=firm, service=service,
                service_key=service_key(firm, c.key, service), fee=fee.quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP), applied_rate=rate, fee_deducted=False,
                send_currency=tariff.currency or None,
                receive_currency=(d.currency or "").upper() or None,
                fx_margin_reported=d.fx_margin_pct, flags=tuple(flags),
                payload={"destination": d.country, "band_up_to": band.up_to,
                         "fixed_fee": band.fixed_fee, "pct_fee": band.pct_fee,
                         "fx_margin_pct": d.fx_margin_pct, "applied_rate": d.applied_rate}))
    return out


async def collect(ctx: RunContext) -> None:
    async def one(url: str) -> None:
        fetched = await ctx.fetch(url)
        tariff = parse(ctx.source, fetched.body)
        for draft in drafts(ctx.source, tariff, ctx, fetched):
            await ctx.add_quote(draft, fetched)

    await ctx.each([ctx.source.url], one)
