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

A body cut short in transit must price nothing rather than price a band wrong: a CSV row
with fewer or more fields than the header, rows disagreeing on the validity dates, or a
header without rows make the whole tariff malformed, naming the line (a cut exactly between
two rows cannot be told from a shorter tariff); so does a JSON tariff that is not JSON or
has no ``destinations`` list.

Within a whole tariff, one bad destination or band sinks only itself; the others are
priced. A fee is never assumed: a band without ``fixed_fee`` or ``pct_fee`` (0 must be
written 0), or with one that is not a number, prices nothing — the configured amounts that
fall in it are quarantined as ``fee_missing``. A destination whose applied rate or FX margin
is not a number is quarantined (each amount) as ``rate_missing``; one whose bands cannot be
read (``up_to`` missing or not a number, a band or the bands not what they should be) or
whose delivery days are not a number as ``malformed_record``; a destination that names no
country we know is quarantined once, as ``malformed_record``. ``up_to`` empty or null means
no upper bound; in JSON the key must be there.

A tariff transcribed by hand from a post's web page (the bundled ones, in
corridors/data/postal_tariffs/) is a local file: ``url`` is then a path relative to
config.toml, read and archived like a response. Its JSON says where it comes from:
``source_url`` (the page), ``read_on`` (the day it was read), ``as_of`` (the date the page
gives its figures, when it gives one), ``quoted`` (the text the figures are taken from);
its source sets ``options.data_kind = "published_tariff"``, the kind its quotes are stored
with. A tariff older than ``[collection] postal_tariff_max_age_days`` (by ``as_of``, else
``read_on``, else ``valid_from``) is logged once per source and listed by ``/healthz``
(``stale_tariffs``).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from pathlib import Path
from typing import Any

from collector import options as opt
from collector.errors import ParseError
from collector.model import Draft, service_key
from collector.parsing import as_text, charset_of, dec, load_json
from collector.run import Fetched, RunContext
from collector.validate import RATE_UNDISCLOSED, Rejected, Rejection, Unusable, number
from corridors.config import Config, SourceConfig
from corridors.reference import country_code
from corridors.types import (
    AccessPoint,
    DataKind,
    Firm,
    FirmType,
    PayIn,
    PayOut,
    ServiceAttributes,
    speed_from_days,
)

log = logging.getLogger(__name__)

OPTIONS = {"operator": opt.STRING, "country": opt.STRING, "currency": opt.STRING,
           "format": opt.STRING, "product": opt.STRING, "pay_in": opt.STRING,
           "pay_out": opt.STRING, "access_point": opt.STRING, "data_kind": opt.STRING}
#: ``options.data_kind``: what the tariff is (collector.kinds.data_kind reads it).
TARIFF_KINDS = (DataKind.OBSERVED.value, DataKind.PUBLISHED_TARIFF.value)
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
    opt.enum(source, "access_point", AccessPoint, AccessPoint.POST_OFFICE_BRANCH.value)
    kind = source.options.get("data_kind", DataKind.OBSERVED.value)
    if kind not in TARIFF_KINDS:
        raise opt.ConfigError(f"{opt.where(source)}.data_kind: expected "
                              f"{' or '.join(TARIFF_KINDS)}, got {kind!r}")


@dataclass(frozen=True, slots=True)
class Band:
    up_to: Decimal | None  # inclusive upper bound; None: no bound
    fixed_fee: Decimal | None  # None (both None): the tariff does not state the fee
    pct_fee: Decimal | None
    #: Why the band's fee is unknown (its amounts are quarantined as fee_missing).
    missing: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    country: str  # ISO alpha-3
    currency: str | None
    fx_margin_pct: Decimal | None
    applied_rate: Decimal | None
    delivery_days: Decimal | None
    bands: tuple[Band, ...]
    #: Why this destination cannot be priced at all (each amount is quarantined with it).
    problem: Rejection | None = None

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
    #: Destinations that name no country we know: quarantined once each.
    unplaced: tuple[Rejected, ...] = ()
    #: Provenance of a tariff transcribed from a web page (JSON only): the page, the day it
    #: was read, and the date of its figures when the page gives one.
    source_url: str | None = None
    read_on: dt.date | None = None
    as_of: dt.date | None = None

    @property
    def dated(self) -> dt.date | None:
        """The date the tariff's figures are known to hold on: ``as_of``, else ``read_on``,
        else ``valid_from``."""
        return self.as_of or self.read_on or self.valid_from

    def age_days(self, today: dt.date) -> int | None:
        return (today - self.dated).days if self.dated is not None else None


def parse(source: SourceConfig, body: bytes, charset: str | None = None) -> Tariff:
    """The tariff in ``body`` (``charset``: the Content-Type's, if it names one)."""
    fmt = source.options.get("format", "csv" if source.url.endswith(".csv") else "json")
    return (_parse_csv(source, body, charset) if fmt == "csv"
            else _parse_json(source, body, charset))


def _date(value: Any, field: str) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ParseError(f"tariff field {field!r}: not a date: {value!r}") from None


def _code(value: Any) -> str | None:
    return country_code(str(value)) if value else None


def _not_a_country(value: Any, field: str) -> str:
    return f"tariff field {field!r}: not a country code: {value!r}"


def _country(value: Any, field: str) -> str:
    code = _code(value)
    if code is None:
        raise ParseError(_not_a_country(value, field))
    return code


def _unplaced(record: Any, value: Any, field: str) -> Rejected:
    """A destination that names no country we know (or is not an object at all)."""
    if not isinstance(record, dict):
        return ({"destination": record}, Rejection(
            "malformed_record", "record",
            f"tariff {field.rsplit('.', 1)[0]}: expected an object, got {record!r:.80}"))
    return record, Rejection("malformed_record", "destination", _not_a_country(value, field))


def _band(up_to: Any, fixed_fee: Any, pct_fee: Any, at: str) -> Band:
    """A band; Unusable when its bound cannot be read (the band an amount falls in is
    unknown then). A fee missing or not a number leaves the band without a fee."""
    bound = number(up_to, "band", f"{at}up_to")
    fees: list[Decimal | None] = []
    for key, value in (("fixed_fee", fixed_fee), ("pct_fee", pct_fee)):
        try:
            fee = dec(value, f"{at}{key}")
        except ParseError as exc:
            return Band(bound, None, None, f"tariff {exc}")
        if fee is None:
            return Band(bound, None, None, f"tariff field '{at}{key}': missing (a fee is "
                                           "never assumed to be 0)")
        fees.append(fee)
    return Band(bound, fees[0], fees[1])


def _destination(code: str, fields: Mapping[str, Any], bands: Callable[[], list[Band]],
                 where: str) -> Destination:
    """A destination from its fields and a callable giving its bands; one that cannot be
    priced carries the reason (``problem``)."""
    try:
        read = tuple(bands())
        currency = fields.get("currency")
        return Destination(
            code, str(currency) if currency else None,
            number(fields.get("fx_margin_pct"), "fx_margin_reported",
                   f"{where}fx_margin_pct", "rate_missing"),
            number(fields.get("applied_rate"), "applied_rate", f"{where}applied_rate",
                   "rate_missing"),
            number(fields.get("delivery_days"), "speed", f"{where}delivery_days"), read)
    except Unusable as exc:
        return Destination(code, None, None, None, None, (), problem=exc.rejection)


def _json_bands(d: dict[str, Any], where: str) -> list[Band]:
    raw = d.get("bands")
    if not isinstance(raw, list):
        raise Unusable("malformed_record", "band",
                       f"tariff {where}.bands: expected a list, got {raw!r}")
    out = []
    for j, b in enumerate(raw):
        at = f"{where}.bands.{j}"
        if not isinstance(b, dict) or "up_to" not in b:
            raise Unusable("malformed_record", "band",
                           f"tariff {at}: expected an object with up_to, got {b!r}")
        out.append(_band(b["up_to"], b.get("fixed_fee"), b.get("pct_fee"), at + "."))
    return out


def _csv_bands(group: list[tuple[int, dict[str, str]]]) -> list[Band]:
    return [_band(r["up_to"], r["fixed_fee"], r["pct_fee"], f"line {n} ") for n, r in group]


def _parse_json(source: SourceConfig, body: bytes, charset: str | None) -> Tariff:
    doc = load_json(body, f"{source.name} tariff", charset)
    if not isinstance(doc, dict) or not isinstance(doc.get("destinations"), list):
        raise ParseError(f"{source.name} tariff: 'destinations' is not a list")
    o = source.options
    dests = {}
    unplaced = []
    for i, d in enumerate(doc["destinations"]):
        where = f"destinations.{i}"
        value = d.get("country") if isinstance(d, dict) else None
        code = _code(value)
        if code is None:
            unplaced.append(_unplaced(d, value, f"{where}.country"))
            continue
        dests[code] = _destination(code, d, partial(_json_bands, d, where), f"{where}.")
    return Tariff(
        operator=str(doc.get("operator") or o.get("operator") or source.name),
        country=_country(doc.get("country") or o.get("country"), "country"),
        currency=str(doc.get("currency") or o.get("currency") or "").upper(),
        valid_from=_date(doc.get("valid_from"), "valid_from"),
        valid_to=_date(doc.get("valid_to"), "valid_to"),
        destinations=dests, unplaced=tuple(unplaced),
        source_url=str(doc["source_url"]) if doc.get("source_url") else None,
        read_on=_date(doc.get("read_on"), "read_on"), as_of=_date(doc.get("as_of"), "as_of"))


def _parse_csv(source: SourceConfig, body: bytes, charset: str | None) -> Tariff:
    text = as_text(body, charset, f"{source.name} tariff")
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
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
    unplaced = []
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
        code = _code(row["destination"])
        if code is None:
            unplaced.append(_unplaced({**row, "line": n}, row["destination"],
                                      f"line {n} destination"))
            continue
        grouped.setdefault(code, []).append((n, row))
    dests = {}
    for code, group in grouped.items():
        n0, first = group[0]
        dests[code] = _destination(code, first, partial(_csv_bands, group), f"line {n0} ")
    o = source.options
    return Tariff(str(o["operator"]), _country(o["country"], "country"),
                  str(o["currency"]).upper(), _date(first_row["valid_from"], "valid_from"),
                  _date(first_row["valid_to"], "valid_to"), dests, tuple(unplaced))


def drafts(source: SourceConfig, tariff: Tariff, ctx: RunContext, fetched: Fetched
           ) -> tuple[list[Draft], list[Rejected]]:
    """Price every configured amount of every monitored corridor the tariff covers; (drafts,
    what is quarantined instead: the amounts of a band without a fee or of a destination
    that cannot be priced, and the destinations naming no country we know)."""
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
    rejected = list(tariff.unplaced)
    for c in ctx.corridors:
        if c.source != tariff.country or c.destination not in tariff.destinations:
            continue
        d = tariff.destinations[c.destination]
        if d.problem is not None:
            rejected += [({"destination": d.country, "corridor": c.key, "amount_usd": usd,
                           "send_amount": amount, "firm": firm.name}, d.problem)
                         for usd, amount in c.amounts]
            continue
        ref = ctx.reference(c.send_currency, c.receive_currency)
        rate = d.applied_rate
        if rate is None and d.fx_margin_pct is not None and ref is not None:
            rate = ref.rate * (1 - d.fx_margin_pct / 100)
        speed = speed_from_days(float(d.delivery_days)) if d.delivery_days is not None else None
        # A published tariff that states no rate: the fee is the post's word, the service
        # not transparent (never a rate made up). A machine tariff must say its rate.
        undisclosed = (d.applied_rate is None and d.fx_margin_pct is None
                       and o.get("data_kind") == DataKind.PUBLISHED_TARIFF.value)
        service = ServiceAttributes(
            product=product, pay_in=PayIn(o.get("pay_in", "cash")),
            pay_out=PayOut(o.get("pay_out", "cash")),
            access_point=AccessPoint(o.get("access_point",
                                           AccessPoint.POST_OFFICE_BRANCH.value)),
            speed=speed)
        for usd, amount in c.amounts:
            band = d.band(amount)
            if band is None:
                # Above the tariff's largest band: the post does not say what it costs (it
                # may not offer it). Recorded, not vanished.
                top = max((b.up_to for b in d.bands if b.up_to is not None), default=None)
                rejected.append(({"destination": d.country, "corridor": c.key,
                                  "amount_usd": usd, "send_amount": amount,
                                  "firm": firm.name, "top_band_up_to": top},
                                 Rejection("amount_above_tariff", "send_amount",
                                           f"{amount} {tariff.currency or ''} is above the "
                                           f"tariff's largest band (up to {top})")))
                continue
            payload = {"destination": d.country, "band_up_to": band.up_to,
                       "fixed_fee": band.fixed_fee, "pct_fee": band.pct_fee,
                       "fx_margin_pct": d.fx_margin_pct, "applied_rate": d.applied_rate}
            if band.fixed_fee is None or band.pct_fee is None:
                # Never a fee of 0: the tariff does not say what this amount costs.
                rejected.append(({**payload, "corridor": c.key, "amount_usd": usd,
                                  "send_amount": amount, "firm": firm.name},
                                 Rejection("fee_missing", "fee", band.missing or "no fee")))
                continue
            fee = band.fixed_fee + band.pct_fee * amount / 100
            out.append(Draft(
                corridor=c, amount_usd=usd, send_amount=amount, firm=firm, service=service,
                service_key=service_key(firm, c.key, service), fee=fee.quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP), applied_rate=rate, fee_deducted=False,
                send_currency=tariff.currency or None,
                receive_currency=(d.currency or "").upper() or None,
                fx_margin_reported=d.fx_margin_pct,
                flags=(*flags, RATE_UNDISCLOSED) if undisclosed else tuple(flags),
                payload=payload))
    return out, rejected


def is_local(source: SourceConfig) -> bool:
    """True for a tariff read from a file (the bundled ones), not fetched."""
    return not source.url.lower().startswith(("http://", "https://"))


def local_path(source: SourceConfig, config: Config) -> Path:
    """A local tariff's file: ``url`` relative to config.toml's folder."""
    path = Path(source.url).expanduser()
    if not path.is_absolute() and config.path is not None:
        path = config.path.parent / path
    return path


@functools.cache
def _warn_stale(source: str, dated: dt.date, age: int, max_age: float) -> None:
    # functools.cache: once per source and date in a process, however often it runs.
    log.warning("postal tariff %s is %d days old (its figures are of %s), more than "
                "collection.postal_tariff_max_age_days (%g): check the post's page for a "
                "newer one", source, age, dated, max_age)


def check_age(source: SourceConfig, tariff: Tariff, max_age_days: float,
              today: dt.date) -> dict[str, Any] | None:
    """The tariff's staleness (source, dated, age_days, max_age_days, source_url) when it is
    older than ``max_age_days``, logged once per source; None when it is not (or says no
    date)."""
    age = tariff.age_days(today)
    if age is None or tariff.dated is None or age <= max_age_days:
        return None
    _warn_stale(source.name, tariff.dated, age, max_age_days)
    return {"source": source.name, "dated": tariff.dated.isoformat(), "age_days": age,
            "max_age_days": max_age_days, "source_url": tariff.source_url}


def stale_tariffs(config: Config, today: dt.date) -> list[dict[str, Any]]:
    """Every local postal tariff of ``config``, enabled or not (``enabled`` says), older than
    the configured age (blocking: it reads the files; one that cannot be read or parsed is
    listed with its error)."""
    out = []
    for source in config.sources:
        if source.kind != "postal_tariff" or not is_local(source):
            continue
        try:
            tariff = parse(source, local_path(source, config).read_bytes())
        except (OSError, ParseError, json.JSONDecodeError) as exc:
            out.append({"source": source.name, "enabled": source.enabled, "error": str(exc)})
            continue
        stale = check_age(source, tariff, config.collection.postal_tariff_max_age_days, today)
        if stale is not None:
            out.append({**stale, "enabled": source.enabled})
    return out


async def collect(ctx: RunContext) -> None:
    async def one(url: str) -> None:
        if is_local(ctx.source):
            fetched = await ctx.read_file(url, local_path(ctx.source, ctx.config))
        else:
            fetched = await ctx.fetch(url)
        tariff = parse(ctx.source, fetched.body, charset_of(fetched.headers))
        check_age(ctx.source, tariff, ctx.config.collection.postal_tariff_max_age_days,
                  fetched.fetched_at.date())
        await ctx.add_parsed(*drafts(ctx.source, tariff, ctx, fetched), fetched)

    await ctx.each([ctx.source.url], one)
