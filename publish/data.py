"""What the API serves, read from the store and kept in memory, refreshed by what changed.

The store keeps two tables up to date as quotes are written (migration 8): a rollup of the
quotes by service, period and data kind (the sums their means are made of), and the latest
quote of each service at each send amount in a period. A ``Snapshot`` is built from those,
never from the quotes themselves, so what it holds grows with services × periods, not with
the history of quotes: the services of each period, the corridor table of every period, the
per-corridor index of ``/v1/compare``. When ``max(quotes.id)`` changes, only the rows
changed since the last look are read, and only the periods and corridors they touch are
worked out again in a worker thread (the rest, indicator documents included, is taken over
from the snapshot before); until the new one is ready, requests keep reading the old one.
Indicator documents are computed on first request for a (period, amount) and kept while
that period's quotes do not change.

When the store cannot be reached to check for new quotes, the last snapshot keeps being
served (the outage is logged once, and its end); only a service that has no snapshot yet
answers 503 (``StoreUnavailable``), with a ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import io
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import polars as pl
from aiohttp import web

from corridors import runtime
from corridors.config import SourceConfig
from corridors.errors import BadPeriod, NoData
from corridors.frame import QUOTE_FRAME_SCHEMA
from corridors.notify import QuotesListener, visible
from corridors.periods import parse_period
from corridors.reference import countries, countries_frame
from corridors.store import STORE_ERRORS, UNREACHABLE_ERRORS, Store
from metrics import METHODOLOGY_VERSION, kinds
from metrics import corridors as cor
from metrics.cost import fee_pct, fx_margin_pct, total_cost_pct
from metrics.indicators import indicators_from_services
from metrics.services import ROLLUP_SCHEMA, period_labels, services_from_rollups
from publish import receive
from publish.problems import RETRY_AFTER_UNAVAILABLE, Problem

log = logging.getLogger(__name__)

#: The price points of RPW and of sendcost's collectors.
PRICE_POINTS = (200, 500)
#: How often the store is asked whether new quotes arrived (seconds); a client that found
#: it unreachable is asked to come back as late (RETRY_AFTER_UNAVAILABLE).
REFRESH_SECONDS = float(RETRY_AFTER_UNAVAILABLE)
#: How long that question may take before the store counts as unreachable (seconds).
CHECK_TIMEOUT_SECONDS = 5.0
#: SDG 10.c targets, in percent.
TARGET_CORRIDOR = 5.0
TARGET_GLOBAL = 3.0

LICENCE = "CC BY 4.0"
KNOWN_SOURCES: dict[str, dict[str, Any]] = {
    "rpw": {
        "name": "rpw",
        "title": "The World Bank, Remittance Prices Worldwide",
        "url": "https://remittanceprices.worldbank.org",
        "licence": "CC BY 4.0",
    },
}

POSTAL_FIRM_TYPES = ("post_office", "post_office_mto")

#: What each caveat a quote may carry means, as the API, its CSV twins and the page explain
#: it. A quote's flags come from the store (set by the collector, the feed's own caveats) and
#: from one rule applied to every source alike: a negative FX margin or total cost is
#: flagged whoever reported it (an RPW survey row with a bad interbank rate included).
CAVEATS: dict[str, str] = {
    "emulated": "emulated data — not real prices (the sandbox's invented quote)",
    "estimate": "a comparison feed's estimate for this provider, not the provider's own quote",
    "partner": "a partner of the comparison feed that lists it (it offers the feed's own "
               "transfers): not an independent price",
    "bank_transfer_only": "priced for paying in by bank transfer only; other ways to pay "
                          "may cost more",
    "negative_margin": "the rate applied beats the mid-market reference rate (a promotion, "
                       "or a reference rate that is off): check before relying on it",
    "negative_total_cost": "the total cost is below zero, which no provider charges for "
                           "long: check before relying on it",
    "reference_stale": "no reference rate fresh enough to measure the margin against: left "
                       "out of the averages",
    "approximate_amount": "the provider priced an amount near, not exactly, the one asked",
    "tariff_out_of_validity": "the post's tariff was outside its validity dates when "
                              "collected",
    "rate_undisclosed": "the post's published tariff states its fee, not the exchange rate "
                        "it applies: no total cost, left out of the averages",
}


def quote_flags(r: dict[str, Any]) -> list[str]:
    """A quote's caveat flags (known to ``CAVEATS``), sorted: its stored flags and kind, and
    the negative-cost rule."""
    flags = set((r.get("flags") or "").split())
    if r.get("data_kind") == "emulated":
        flags.add("emulated")
    if r.get("data_kind") == "estimate":
        flags.add("estimate")
    if r.get("reference_stale"):
        flags.add("reference_stale")
    margin, total = finite(r.get("fx_margin_pct")), finite(r.get("total_cost_pct"))
    if margin is not None and margin < 0:
        flags.add("negative_margin")
    if total is not None and total < 0:
        flags.add("negative_total_cost")
    return sorted(f for f in flags if f in CAVEATS)

#: The quote frame (the store's view) with what the API shows besides: each quote's id, the
#: time of its reference rate and how its fee is charged.
_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    # Text as plain strings: the snapshot is small and is joined with other tables a lot,
    # which Categorical columns would need a cast for at every join.
    **{k: pl.String() if v == pl.Categorical else v
       for k, v in QUOTE_FRAME_SCHEMA.items() if k != "collected_at"},
    "reference_at": pl.Datetime("us", "UTC"),
    "fee_deducted": pl.Boolean(),
    "collected_at": pl.Datetime("us", "UTC"),
}


#: What the running service's config says of each of its sources (``[[sources]]``): the
#: provenance entry of an answer resting on it. Filled by ``describe_sources`` when the app is
#: made; a source no longer configured (quotes kept from an older config) is named alone.
CONFIGURED_SOURCES: dict[str, dict[str, Any]] = {}


def public_url(url: str) -> str | None:
    """A source's address as an answer may show it: an http(s) URL without its query,
    fragment or user (where a key or a token may sit); a local file, or a server on
    loopback (the sandbox), is nothing a reader can open: None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    with contextlib.suppress(ValueError):
        if parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback:
            return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def describe_sources(sources: Iterable[SourceConfig]) -> None:
    """Record each configured source's provenance entry: its name, its URL
    (``public_url``) and its ``options.licence`` (the attribution its terms ask for)."""
    for s in sources:
        CONFIGURED_SOURCES[s.name] = {"name": s.name, "title": s.name, "url": public_url(s.url),
                                      "licence": s.options.get("licence")}


def sources_of(names: set[str] | list[str]) -> list[dict[str, Any]]:
    """Provenance entries for the data sources named (``rpw``, a collector's name)."""
    return [KNOWN_SOURCES.get(n) or CONFIGURED_SOURCES.get(n)
            or {"name": n, "title": n, "url": None, "licence": None}
            for n in sorted(set(names))]


def country_ref(alpha3: str) -> dict[str, Any]:
    c = countries().get(alpha3)
    if c is None:
        return {"alpha2": None, "alpha3": alpha3, "name": None}
    return {"alpha2": c.alpha2, "alpha3": c.alpha3, "name": c.name}


@functools.lru_cache(maxsize=4096)
def period_key(label: str) -> tuple[dt.datetime, int]:
    """Order periods by when they end; at equal ends a month comes before its quarter.
    (Kept: a comparison orders its corridor's periods, and labels are few.)"""
    p = parse_period(label)
    return (p.end, 1 if p.is_quarter else 0)


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: an undefined figure is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _money(value: float | None) -> float | None:
    value = finite(value)
    return None if value is None else round(value, 2)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# --- the snapshot ------------------------------------------------------------------------------


@dataclass
class PricePoint:
    """The quotes of one corridor in one period at one send amount."""

    send_amount: float
    amount_usd: int
    send_currency: str
    receive_currency: str | None
    services: list[dict[str, Any]]  # ranked transparent services
    non_transparent: list[dict[str, Any]]
    ranked_by: str
    sources: list[str]


#: A cached answer (``Snapshot.responses``): body, ETag and the headers it goes out with.
Cached = tuple[bytes, str, dict[str, str]]


T = TypeVar("T")


@dataclass
class Snapshot:
    version: int
    built_at: float
    #: The latest quote of every service at every send amount in each period: what the
    #: index is made of (not every quote: those are summed up in ``services``).
    quotes: pl.DataFrame
    periods: list[str]  # sorted oldest → latest
    # (source, destination) → period label → price points (sorted by send amount)
    index: PriceIndex
    # one row per (period, amount_usd, corridor): averages, SmaRT, flags, cheapest, median
    corridor_table: pl.DataFrame
    # (period, amount_usd) → services frame (metrics.services_in_period) with firm types
    services: dict[tuple[str, int], pl.DataFrame]
    indicators: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    #: Answers given, by request, oldest first: past its bound the oldest leaves, one for
    #: each new one (``publish.api.conventions.remember_entry``).
    responses: OrderedDict[tuple[Any, ...], Cached] = field(default_factory=OrderedDict)
    #: Values worked out from this snapshot for the endpoints (latest rows, form data, …),
    #: by key: a few, kept as long as the snapshot (``keep``).
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    #: True: built with the emulated quotes (asked for with ``?include=emulated``); every
    #: answer from it says "emulated data — not real prices". False: without them.
    include_emulated: bool = False
    #: The sources whose emulated quotes this snapshot holds (included) or left out.
    emulated_sources: list[str] = field(default_factory=list)
    #: Each service's sources, of all periods (service_id, sources), sorted by service.
    service_sources: pl.DataFrame = field(default_factory=pl.DataFrame)
    #: The services with a comparison feed's estimate.
    estimates: list[str] = field(default_factory=list)

    def emulated_in(self, sources: Iterable[str]) -> bool:
        """An answer resting on ``sources`` holds emulated data: this snapshot includes it
        (``?include=emulated``) and one of them is an emulated source. Asked for, but the
        answer rests on survey or observed data only (a 2011 period), it says nothing of
        emulation: its prices are real."""
        return self.include_emulated and not set(self.emulated_sources).isdisjoint(sources)

    def keep(self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        """``make()``, worked out once per snapshot."""
        if key not in self.derived:
            self.derived[key] = make()
        return cast(T, self.derived[key])

    def latest_period(self, *, amount_usd: int | None = None) -> str | None:
        if amount_usd is None:
            return self.periods[-1] if self.periods else None
        for label in reversed(self.periods):
            if (label, amount_usd) in self.services:
                return label
        return None

    def corridor_row(self, period: str, amount_usd: int, source: str,
                     destination: str) -> dict[str, Any] | None:
        """The corridor's summary row at a period and price point. The rows of that period
        and price point are indexed by corridor on first use (once per snapshot): a lookup
        is then a dict's, where a filter of the whole table was a quarter of a comparison
        the cache did not hold."""
        return self.keep(("corridor-rows", period, amount_usd), lambda: {
            (r["source_code"], r["destination_code"]): r
            for r in self.corridor_table.filter(
                pl.col("period") == period, pl.col("amount_usd") == amount_usd
            ).iter_rows(named=True)}).get((source, destination))


def _service_entry(r: dict[str, Any]) -> dict[str, Any]:
    amount, fee, rate = r["send_amount"], r["fee"], r["applied_rate"]
    received = _money(r["received_amount"])
    basis = "reported" if received is not None else None
    if_on_top = _money(amount * rate) if rate is not None else None
    if_deducted = (_money((amount - fee) * rate)
                   if rate is not None and fee is not None else None)
    if received is None and r["fee_deducted"] is not None:
        received = if_deducted if r["fee_deducted"] else if_on_top
        basis = "fee_deducted" if r["fee_deducted"] else "fee_on_top"
    return {
        "provider": r["firm"],
        "firm_type": r["firm_type"],
        "product": r["product"] or None,
        "service_id": r["service_id"],
        "fee": finite(fee),
        "fee_currency": r["send_currency"],
        "applied_rate": finite(rate),
        "reference_rate": finite(r["reference_rate"]),
        "reference_rate_source": r["reference_source"],
        "reference_rate_at": _iso(r["reference_at"]),
        "fee_pct": finite(r["fee_pct"]),
        "fx_margin_pct": finite(r["fx_margin_pct"]),
        "total_cost_pct": finite(r["total_cost_pct"]),
        "amount_received": received,
        "amount_received_basis": basis,
        # True: the sender pays the fee on top of the amount; None: the source does not say.
        "fee_paid_on_top": None if r["fee_deducted"] is None else not r["fee_deducted"],
        "amount_received_if_fee_on_top": if_on_top,
        "amount_received_if_fee_deducted": if_deducted,
        "receive_currency": r["receive_currency"],
        "speed": r["speed"],
        "pay_in": r["pay_in"],
        "pay_out": r["pay_out"],
        "access_point": r["access_point"],
        "transparent": r["transparent"],
        "collected_at": _iso(r["collected_at"]),
        "source": r["source"],
        "data_kind": r["data_kind"],
        "flags": quote_flags(r),
    }


def _paid(row: dict[str, Any]) -> float | None:
    """What the sender hands over in all for a quote: the amount, plus the fee when it is
    paid on top; None when the source does not say how the fee is charged."""
    if row["fee_deducted"] is None:
        return None
    if row["fee_deducted"]:
        return float(row["send_amount"])
    return None if row["fee"] is None else float(row["send_amount"] + row["fee"])


def _effective_cost(entry: dict[str, Any], row: dict[str, Any]) -> float | None:
    """What the sender loses, in % of all they pay, against the mid-market rate: 100 × (1 −
    amount received / (amount paid × reference rate)). It orders services as the ranking
    by what arrives per unit paid does; None when one of the three is not known."""
    paid, received, rate = _paid(row), entry["amount_received"], row["reference_rate"]
    if not paid or received is None or not rate:
        return None
    return finite((1 - received / (paid * rate)) * 100)


def _rank(entries: list[tuple[dict[str, Any], float | None]]
          ) -> tuple[list[dict[str, Any]], str]:
    """Rank (entry, amount paid in all) pairs by what arrives for each unit the sender pays
    (so a fee paid on top is not mistaken for a better deal) when that is known for every
    service; otherwise by total cost %, which orders services the same way up to the
    fee × margin cross term."""
    if entries and all(e["amount_received"] is not None and paid for e, paid in entries):
        def key(pair: tuple[dict[str, Any], float | None]) -> tuple[Any, ...]:
            e, paid = pair
            return (-e["amount_received"] / paid, e["provider"], e["service_id"])
        ranked_by = "amount_received_per_amount_paid"
    else:
        def key(pair: tuple[dict[str, Any], float | None]) -> tuple[Any, ...]:
            e = pair[0]
            return (e["total_cost_pct"], e["provider"], e["service_id"])
        ranked_by = "total_cost_pct"
    ranked = [e for e, _ in sorted(entries, key=key)]
    for i, e in enumerate(ranked, 1):
        e["rank"] = i
    return ranked, ranked_by


def _build_index(quotes: pl.DataFrame) -> dict[tuple[str, str], dict[str, list[PricePoint]]]:
    # The latest quote of each service at each send amount in a period (collectors quote
    # daily; RPW once per period).
    latest = (
        quotes.with_columns(fee_pct().alias("fee_pct"), fx_margin_pct().alias("fx_margin_pct"),
                            total_cost_pct().alias("total_cost_pct"))
        .sort("collected_at", "id", descending=True)
        .unique(subset=["period", "service_id", "send_amount"], keep="first",
                maintain_order=True)
        .sort("source_code", "destination_code", "period", "send_amount", "service_id")
    )
    grouped: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for r in latest.iter_rows(named=True):
        grouped.setdefault((r["source_code"], r["destination_code"], r["period"],
                            r["send_amount"]), []).append(r)
    index: dict[tuple[str, str], dict[str, list[PricePoint]]] = {}
    for (src, dst, period, amount), rows in grouped.items():
        entries = [_service_entry(r) for r in rows]
        for e, r in zip(entries, rows, strict=True):
            e["effective_cost_pct"] = _effective_cost(e, r)
        ranked, ranked_by = _rank([(e, _paid(r)) for e, r in zip(entries, rows, strict=True)
                                   if e["transparent"] and e["total_cost_pct"] is not None])
        apart = sorted((e for e in entries if not (e["transparent"]
                                                   and e["total_cost_pct"] is not None)),
                       key=lambda e: (e["provider"], e["service_id"]))
        for e in apart:
            e["rank"] = None
        usd = max(set(r["amount_usd"] for r in rows), key=[r["amount_usd"] for r in rows].count)
        index.setdefault((src, dst), {}).setdefault(period, []).append(PricePoint(
            send_amount=amount, amount_usd=usd, send_currency=rows[0]["send_currency"],
            receive_currency=next((r["receive_currency"] for r in rows
                                   if r["receive_currency"]), None),
            services=ranked, non_transparent=apart, ranked_by=ranked_by,
            sources=sorted({r["source"] for r in rows})))
    return index


#: How many corridors an index keeps, and how many periods' price points each keeps made
#: (the least recently asked for are dropped, to be made again when asked): what bounds the
#: memory of the index, whatever the number of corridors and periods kept. A question is
#: about one period (the latest, mostly), so every corridor's fits.
CORRIDORS_KEPT = 512
PERIODS_KEPT = 8


class CorridorPeriods(Mapping[str, list[PricePoint]]):
    """A corridor's periods → price points (sorted by send amount), each period's made from
    its latest prices when first asked for, with their receive units: a question is about
    one period, and a corridor of years of quarters would otherwise be made whole for it
    (about 11 ms for a 2011-2014 survey corridor of 14 quarters; a period of it, under 1)."""

    def __init__(self, key: tuple[str, str], part: pl.DataFrame,
                 inferred: dict[tuple[str, str, float], receive.Inferred],
                 lock: threading.RLock) -> None:
        self._key = key
        # Oldest first, as every list of periods is.
        self._periods: dict[str, pl.DataFrame] = dict(sorted(
            ((str(k[0]), p) for k, p in part.partition_by("period", as_dict=True).items()),
            key=lambda kv: period_key(kv[0])))
        self._inferred = inferred
        self._lock = lock
        self._made: OrderedDict[str, list[PricePoint]] = OrderedDict()
        self._costed: list[str] | None = None

    def __getitem__(self, period: str) -> list[PricePoint]:
        with self._lock:
            made = self._made.get(period)
            if made is None:
                made = _build_index(self._periods[period])[self._key][period]  # KeyError
                receive.annotate(((period, point.send_amount, entry) for point in made
                                  for entry in (*point.services, *point.non_transparent)),
                                 self._inferred)
                self._made[period] = made
                while len(self._made) > PERIODS_KEPT:
                    self._made.popitem(last=False)
            else:
                self._made.move_to_end(period)
            return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._periods)

    def __len__(self) -> int:
        return len(self._periods)

    def __contains__(self, period: object) -> bool:
        return period in self._periods

    def costed(self) -> list[str]:
        """The periods in which some service has a total cost, without making their price
        points (the same formula the price points' ``total_cost_pct`` comes from); worked
        out once, in one pass over the corridor's rows."""
        with self._lock:
            if self._costed is None:
                cost = total_cost_pct()
                self._costed = pl.concat(list(self._periods.values())).group_by("period").agg(
                    (cost.is_not_null() & cost.is_finite()).any().alias("costed")
                ).filter("costed")["period"].to_list()
            return self._costed


class PriceIndex(Mapping[tuple[str, str], CorridorPeriods]):
    """(source, destination) → period label → price points (sorted by send amount), made
    from the latest prices of a corridor when it is first asked for, with their receive
    units (``publish.receive``), and kept for the CORRIDORS_KEPT corridors asked for last
    (each made a period at a time: ``CorridorPeriods``).

    A new index takes over from ``previous`` the corridors ``changes`` does not name, and
    the receive currencies inferred from a survey's prices when those did not change."""

    def __init__(self, latest: pl.DataFrame, *, previous: PriceIndex | None = None,
                 changes: Changes | None = None) -> None:
        # In the order of corridors (source, then destination), as every list of them is.
        self._parts: dict[tuple[str, str], pl.DataFrame] = dict(sorted(
            ((str(k[0]), str(k[1])), part) for k, part in latest.partition_by(
                "source_code", "destination_code", as_dict=True).items()
        )) if latest.height else {}
        self._latest = latest
        self._made: OrderedDict[tuple[str, str], CorridorPeriods] = OrderedDict()
        self._inferred: dict[tuple[str, str, float], receive.Inferred] | None = None
        self._lock = threading.RLock()
        if previous is not None and changes is not None:
            gone = changes.corridors
            with previous._lock:  # a request may be making one of its corridors
                for key, made in previous._made.items():
                    if key not in gone and key in self._parts:
                        self._made[key] = made
            if not changes.survey:
                self._inferred = previous._inferred

    def prepare(self) -> None:
        """Infer the receive currencies RPW does not state (blocking: run in a thread)."""
        with self._lock:
            if self._inferred is None:
                rpw = self._latest.filter(pl.col("source") == "rpw")
                self._inferred = receive.infer(rpw) if rpw.height else {}

    def __getitem__(self, key: tuple[str, str]) -> CorridorPeriods:
        # Under the lock: a request may ask from a worker thread while another asks from
        # the event loop, and a corridor is made (and annotated) once.
        with self._lock:
            made = self._made.get(key)
            if made is None:
                part = self._parts[key]  # KeyError: no such corridor
                self.prepare()
                assert self._inferred is not None
                made = CorridorPeriods(key, part, self._inferred, self._lock)
                self._made[key] = made
                while len(self._made) > CORRIDORS_KEPT:
                    self._made.popitem(last=False)
            else:
                self._made.move_to_end(key)
            return made

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __contains__(self, key: object) -> bool:
        return key in self._parts

    def send_currencies(self) -> dict[str, str]:
        """Each sending country's currency: that of the lowest send amount of the latest
        period of its first corridor (as the page's form offers it), without making the
        corridors' price points."""
        out: dict[str, str] = {}
        for (src, _), part in self._parts.items():
            if src in out:
                continue
            latest = max(part["period"].unique().to_list(), key=period_key)
            row = part.filter(pl.col("period") == latest).sort("send_amount").row(
                0, named=True)
            out[src] = row["send_currency"]
        return out


_CORRIDOR_TABLE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "period": pl.String, "amount_usd": pl.Int32, "source_code": pl.String,
    "destination_code": pl.String, "average": pl.Float64, "services": pl.UInt32,
    "transparent_services": pl.UInt32, "above_5": pl.Boolean, "above_10": pl.Boolean,
    "too_few_services": pl.Boolean, "no_transparent_service": pl.Boolean,
    "smart": pl.Float64, "smart_services": pl.UInt32, "median": pl.Float64,
    "cheapest_firm": pl.String, "cheapest_firm_type": pl.String,
    "cheapest_product": pl.String, "cheapest_total_cost": pl.Float64,
    "firm_types": pl.List(pl.String), "sources": pl.List(pl.String),
    "first_collected": pl.Datetime("us", "UTC"), "last_collected": pl.Datetime("us", "UTC"),
    "data_kinds": pl.List(pl.String),
    # kinds.corridor_caveats: "negative_margin:3 estimate:1" ("" for none), and how many of
    # the corridor's services carry any caveat.
    "caveats": pl.String, "flagged_services": pl.Int64,
}


#: The key of a row of the rollup (``service_periods``) and of the latest prices.
ROLLUP_KEY = ("period", "amount_usd", "service_id", "data_kind", "source", "reference_stale")
LATEST_KEY = ("period", "service_id", "send_amount", "data_kind")


@dataclass(frozen=True)
class Changes:
    """What changed in the store since the snapshot a new one is built on: the periods of
    the rollup rows and latest prices that changed, and the corridors and periods of those
    prices (source, destination, period)."""

    periods: frozenset[str]
    prices: frozenset[tuple[str, str, str]]
    #: A survey's (RPW's) latest prices changed: the receive currencies inferred from them
    #: are inferred again.
    survey: bool = True

    @property
    def corridors(self) -> frozenset[tuple[str, str]]:
        return frozenset((src, dst) for src, dst, _ in self.prices)


def _ids(service_ids: list[str]) -> pl.LazyFrame:
    return pl.LazyFrame({"service_id": service_ids}, schema={"service_id": pl.String})


def _corridor_table(rollups: pl.DataFrame, services: pl.DataFrame, label: str, usd: int,
                    service_sources: pl.DataFrame, estimates: list[str]) -> pl.LazyFrame:
    sl = services.lazy()
    averaged = pl.col("transparent") & pl.col("total_cost_pct").is_not_null()
    return (
        cor.corridor_flags(cor.corridor_average(sl))
        .join(cor.smart(sl), on=list(cor.CORRIDOR), how="left")
        .join(sl.group_by(*cor.CORRIDOR).agg(
            pl.col("total_cost_pct").filter(averaged).median().alias("median"),
            pl.col("firm_type").unique().sort().alias("firm_types")),
            on=list(cor.CORRIDOR), how="left")
        # The one rule of every "cheapest" answer (kinds.CHEAPEST_LEAVES_OUT).
        .join(cor.cheapest_service(sl, estimates=_ids(estimates)).rename({
            "firm": "cheapest_firm", "firm_type": "cheapest_firm_type",
            "product": "cheapest_product", "total_cost": "cheapest_total_cost"}),
            on=list(cor.CORRIDOR), how="left")
        .join(sl.join(service_sources.lazy(), on="service_id", how="left")
              .explode("sources").group_by(*cor.CORRIDOR)
              .agg(pl.col("sources").unique().sort()),
              on=list(cor.CORRIDOR), how="left")
        # When the row's quotes were collected, and what kind of data they are: a
        # corridor's row says its own period and dates, whatever the other rows' are (stale
        # quotes included, as they were collected).
        .join(rollups.lazy().filter(pl.col("period").is_in(period_labels(label)),
                                    pl.col("amount_usd") == usd)
              .group_by(*cor.CORRIDOR)
              .agg(pl.col("first_collected").min(), pl.col("last_collected").max(),
                   pl.col("data_kind").drop_nulls().unique().sort().alias("data_kinds")),
              on=list(cor.CORRIDOR), how="left")
        # The caveats of its services, from their quotes' flags (the rollups carry them) and
        # the one negative-cost rule, as the bulletin's tables show them.
        .join(kinds.corridor_caveats(kinds.service_caveats(
            rollups.lazy(), sl, labels=period_labels(label), amount_usd=usd))
            .rename({"source": "source_code", "destination": "destination_code"}),
            on=list(cor.CORRIDOR), how="left")
        .with_columns(pl.lit(label).alias("period"), pl.lit(usd, pl.Int32).alias("amount_usd"),
                      pl.col("caveats").fill_null(""),
                      pl.col("flagged_services").fill_null(0))
    )


def _affected(label: str, changes: Changes) -> bool:
    return bool(changes.periods.intersection(period_labels(label)))


def build_snapshot(rollups: pl.DataFrame, latest: pl.DataFrame, version: int, *,
                   include_emulated: bool = False, previous: Snapshot | None = None,
                   changes: Changes | None = None) -> Snapshot:
    """Everything the endpoints read, from the store's rollup of its quotes (one row per
    service, period and kind: ``metrics.services.ROLLUP_SCHEMA``) and its latest prices
    (one quote per service, period and send amount), without the emulated ones unless
    ``include_emulated`` (blocking: run in a thread).

    With ``previous`` (built the same way) and the ``changes`` since it, only the periods
    and corridors that changed are worked out again; the rest, their indicator documents
    included, is taken over."""
    started = time.perf_counter()
    emulated_sources = sorted(set(rollups.filter(kinds.is_emulated())
                                  .get_column("source").to_list()))
    if not include_emulated and emulated_sources:
        rollups = rollups.filter(kinds.real_data())
        latest = latest.filter(kinds.real_data())
    labels = sorted(rollups["period"].unique().to_list(), key=period_key)
    # Which sources each service came from (a quarter may mix RPW and collectors' months),
    # and which are a comparison feed's estimates: of all periods, so a change to either
    # can change any period's corridor rows.
    service_sources = (rollups.group_by("service_id")
                       .agg(pl.col("source").unique().sort().alias("sources"))
                       .sort("service_id"))
    estimates = (kinds.estimate_services(rollups.lazy()).collect().get_column("service_id")
                 .to_list())
    if (previous is None or changes is None or previous.include_emulated != include_emulated
            or previous.estimates != estimates
            or not previous.service_sources.equals(service_sources)):
        previous, changes = None, None
    keys = [(label, usd) for label in labels for usd in PRICE_POINTS]
    redo = [k for k in keys if previous is None or changes is None
            or _affected(k[0], changes)]
    made = pl.collect_all([services_from_rollups(rollups.lazy(), period=label, amount_usd=usd)
                           for label, usd in redo]) if redo else []
    services_frames: dict[tuple[str, int], pl.DataFrame] = {}
    fresh = dict(zip(redo, made, strict=True))
    for k in keys:
        frame = fresh[k] if k in fresh else previous.services.get(k) if previous else None
        if frame is not None and frame.height:
            services_frames[k] = frame
    tables = [_corridor_table(rollups, services_frames[k], *k, service_sources, estimates)
              for k in redo if k in services_frames]
    parts = ([pl.concat(pl.collect_all(tables), how="diagonal")
              .select(list(_CORRIDOR_TABLE_SCHEMA))
              .cast(_CORRIDOR_TABLE_SCHEMA)]  # type: ignore[arg-type]  # invariant key type
             if tables else [])
    indicators: dict[tuple[str, int], dict[str, Any]] = {}
    if previous is not None:
        kept = [k for k in keys if k not in fresh]
        parts.append(previous.corridor_table.join(
            pl.DataFrame(kept, schema={"period": pl.String, "amount_usd": pl.Int32},
                         orient="row"), on=["period", "amount_usd"], how="semi"))
        indicators = {k: doc for k, doc in previous.indicators.items() if k in kept}
    corridor_table = (
        pl.concat(parts).sort("source_code", "destination_code", "amount_usd", "period")
        if parts else pl.DataFrame(schema=_CORRIDOR_TABLE_SCHEMA)
    )
    index = PriceIndex(latest, previous=previous.index if previous is not None else None,
                       changes=changes)
    snap = Snapshot(version=version, built_at=time.time(), quotes=latest, periods=labels,
                    index=index, corridor_table=corridor_table, services=services_frames,
                    indicators=indicators, include_emulated=include_emulated,
                    emulated_sources=emulated_sources, service_sources=service_sources,
                    estimates=estimates)
    log.info("snapshot %d%s built in %.2f s (%s): %d latest prices, %d service-periods, "
             "%d periods, %d corridors", version,
             " with emulated quotes (?include=emulated)" if include_emulated else "",
             time.perf_counter() - started,
             "whole" if previous is None else f"{len(redo)} period-amounts, "
             f"{len(changes.prices) if changes else 0} corridor-periods anew",
             latest.height, rollups.height, len(labels), len(snap.index))
    return snap


#: The rollup rows changed by the transactions from $1 on (a snapshot's xmax) or among $2
#: (those under way when it was taken).
_ROLLUPS_SQL = (
    "SELECT sp.period, sp.amount_usd, s.service_key AS service_id, c.source_code, "
    "c.destination_code, f.name AS firm, f.firm_type, coalesce(s.product, '') AS product, "
    "s.speed, s.pay_in, s.access_point, s.pay_out, sp.data_kind, sp.source, "
    "sp.reference_stale, sp.quotes, sp.transparent, "
    "sp.fee_sum, sp.fee_n, sp.margin_sum, sp.margin_n, sp.total_sum, sp.total_n, "
    "sp.exact_sum, sp.exact_n, sp.first_collected, sp.last_collected, sp.last_quote_id, "
    "array_to_string(sp.flags, ' ') AS flags "
    "FROM service_periods sp JOIN services s ON s.id = sp.service_id "
    "JOIN corridors c ON c.id = s.corridor_id JOIN firms f ON f.id = s.firm_id "
    "WHERE sp.changed_by >= $1::text::xid8 OR sp.changed_by = ANY ($2::text[]::xid8[])")
#: The latest prices changed by the same transactions, as the quote frame (with what
#: the API shows besides: each quote's id, the time of its reference rate and how its fee
#: is charged). The collection time joins too: it is the quotes' partition key, so each
#: latest price reads one month's partition, not every month's (migration 10).
_LATEST_SQL = ("SELECT " + ", ".join(f"q.{c}" for c in _SCHEMA)
               + " FROM latest_prices lp JOIN quote_frame q ON q.id = lp.quote_id"
               " AND q.collected_at = lp.collected_at"
               " WHERE lp.changed_by >= $1::text::xid8"
               " OR lp.changed_by = ANY ($2::text[]::xid8[])")


async def _copy_frame(conn: asyncpg.Connection, sql: str, since: Since,
                      schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows of ``sql`` ($1, $2: ``since``) as a frame, through COPY: one round trip, no
    row objects."""
    buf = io.BytesIO()

    async def sink(chunk: bytes) -> None:
        # Written here, not through asyncpg's default of a thread-pool hop per chunk.
        buf.write(chunk)

    await conn.copy_from_query(sql, since[0], list(since[1]), output=sink, format="csv",
                               header=True)
    buf.seek(0)
    if buf.getbuffer().nbytes == 0:
        return pl.DataFrame(schema=schema)

    def parse() -> pl.DataFrame:
        text_schema = {k: (pl.String if isinstance(v, pl.Datetime | pl.Boolean) else v)
                       for k, v in schema.items()}
        raw = pl.read_csv(buf, schema=text_schema)
        return raw.with_columns(
            *(pl.col(c).str.to_datetime(time_zone="UTC", time_unit="us")
              for c, v in schema.items() if isinstance(v, pl.Datetime)),
            *(pl.col(c).replace_strict({"t": True, "f": False}, default=None,
                                       return_dtype=pl.Boolean)
              for c, v in schema.items() if isinstance(v, pl.Boolean)),
            pl.col("product").fill_null(""),
            # Both frames carry their quotes' flags; none is "", as the quote frame says.
            pl.col("flags").fill_null(""),
        )

    return await asyncio.to_thread(parse)


#: The newest detachment of a month partition (0: none yet).
_NEWEST_DETACHMENT = "SELECT coalesce(max(id), 0) FROM detachments"


#: Where a look for changes starts: the transactions from the first (a snapshot's xmax) on,
#: and those under way when the last look was taken (its snapshot's xip list).
Since = tuple[str, tuple[str, ...]]
#: Every change: from the first transaction on.
EVERYTHING: Since = ("0", ())


async def load_changes(store: Store, since: Since) -> tuple[pl.DataFrame, pl.DataFrame, Since]:
    """The rollup rows and the latest prices changed by the transactions ``since`` names
    (``EVERYTHING``: all), and where the next look starts: the transactions that begin
    after this look, and those under way now, whose rows this look cannot see yet however
    low the quote ids they drew (a transaction neither under way nor begun later has
    finished, and what it wrote is read now). A row read again changes nothing."""
    async with store.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                              readonly=True):
        # One snapshot for the three: what the frames hold is what the next start says.
        row = await conn.fetchrow(
            "SELECT pg_snapshot_xmax(s)::text AS xmax, "
            "array(SELECT pg_snapshot_xip(s)::text) AS xip FROM pg_current_snapshot() s")
        rollups = await _copy_frame(conn, _ROLLUPS_SQL, since, ROLLUP_SCHEMA)
        latest = await _copy_frame(conn, _LATEST_SQL, since, _SCHEMA)
    return rollups, latest, (row["xmax"], tuple(row["xip"]))


def _changed(old: pl.DataFrame | None, new: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``new`` that are not in ``old`` as they are."""
    if old is None or not old.height or not new.height:
        return new
    return new.join(old, on=new.columns, how="anti", nulls_equal=True)


def _merge(old: pl.DataFrame | None, new: pl.DataFrame, key: tuple[str, ...]) -> pl.DataFrame:
    """``old`` with its rows of the keys in ``new`` replaced by those of ``new``."""
    if old is None or not old.height:
        return new
    if not new.height:
        return old
    return pl.concat([old.join(new.select(key), on=list(key), how="anti", nulls_equal=True),
                      new])


# --- the per-app holder ------------------------------------------------------------------------


class StoreUnavailable(Problem):
    """503: the store cannot be reached and there is no snapshot to answer from yet."""

    def __init__(self) -> None:
        super().__init__(503, "the database cannot be reached and no data has been loaded "
                              "yet; try again later",
                         headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})


#: What reading the store raises in an outage (an OSError from the socket beside the rest).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, *UNREACHABLE_ERRORS)


class ApiData:
    """The current snapshot of one running service, refreshed when the store changes."""

    def __init__(self, store: Store, *, eager_emulated: bool = False,
                 weights_coverage_min: float = cor.WEIGHT_COVERAGE_MIN) -> None:
        self.store = store
        #: The weighted average's coverage rule, in % (config.toml [indicators]).
        self.weights_coverage_min = weights_coverage_min
        #: Build the snapshot with emulated quotes with every new one, not when first asked
        #: for (``SHOWS_EMULATED``: the page asks for it on every request).
        self.eager_emulated = eager_emulated
        self._snapshot: Snapshot | None = None
        #: The same quotes with the emulated ones, built when first asked for
        #: (``?include=emulated``), for the version of ``_snapshot``.
        self._with_emulated: Snapshot | None = None
        #: The store's rollup and latest prices as last read, emulated ones included.
        self._rollups: pl.DataFrame | None = None
        self._latest: pl.DataFrame | None = None
        #: What the last refresh found changed.
        self.last_changes: Changes | None = None
        #: Changes are read from this transaction on (``load_changes``).
        self._since = EVERYTHING
        #: The newest detachment of a month partition seen (``detachments``, migration 14):
        #: a newer one makes the next refresh read everything again (rows removed are not
        #: seen by reading the rows changed since).
        self._detachment: int | None = None
        self._lock = asyncio.Lock()
        self._flows: pl.LazyFrame | None = None
        #: The store could not be reached at the last check (the outage is logged once).
        self.unreachable = False

    async def store_version(self) -> int:
        return int(await self.store.pool.fetchval("SELECT coalesce(max(id), 0) FROM quotes",
                                                  timeout=CHECK_TIMEOUT_SECONDS))

    async def refresh(self) -> Snapshot:
        """Build a new snapshot if the store has changes the one in hand does not have.

        When the store cannot be reached, the snapshot in hand is returned (the poller asks
        again REFRESH_SECONDS later); without one, ``StoreUnavailable`` (503) is raised.
        """
        async with self._lock:
            changed = None
            try:
                version = await self.store_version()
                detachment = await self.store.pool.fetchval(_NEWEST_DETACHMENT,
                                                            timeout=CHECK_TIMEOUT_SECONDS)
                whole = self._detachment is not None and detachment != self._detachment
                if whole:
                    log.info("a month partition was detached: reading what is served again, "
                             "whole")
                # Asked every time, not only when max(id) moved: a write that drew lower ids
                # may commit after one that drew higher ones (an empty answer is cheap).
                changed = await load_changes(self.store, EVERYTHING if whole else self._since)
            except OUTAGE_ERRORS as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancellation the driver turned into an error (asyncpg, releasing a
                    # connection cancelled in the middle of a COPY, raises
                    # InternalClientError): still a cancellation, or a stopping service
                    # would wait for ever for its poller.
                    raise asyncio.CancelledError() from exc
                # Only an outage: an error PostgreSQL reports (a query the schema does not
                # take) is a bug, which the poller logs with its traceback every time.
                if not self.unreachable:
                    self.unreachable = True
                    log.warning("the database cannot be reached (%s: %s); %s",
                                type(exc).__name__, str(exc).strip() or "no detail",
                                f"serving the data of quote {self._snapshot.version} until it "
                                "answers again" if self._snapshot is not None else
                                "no data to serve until it answers (503)")
                if self._snapshot is None:
                    raise StoreUnavailable() from exc
                return self._snapshot
            if changed is not None:
                rollups, latest, upto = changed
                await self._rebuild(version, rollups, latest, whole=whole)
                self._since, self._detachment = upto, detachment
            assert self._snapshot is not None
            if self.unreachable:
                self.unreachable = False
                log.info("the database answers again (quote %d)", self._snapshot.version)
            return self._snapshot

    async def _rebuild(self, version: int, rollups: pl.DataFrame,
                       latest: pl.DataFrame, *, whole: bool = False) -> None:
        """A new snapshot from the rows changed since the last one (built on it), or with
        ``whole``, from all of them (built anew)."""
        previous, previous_emulated = self._snapshot, self._with_emulated
        if previous_emulated is not None and previous is not None and (
                previous_emulated.version != previous.version):
            previous_emulated = None
        if whole:
            self._rollups = self._latest = None
            previous = previous_emulated = None

        def merge() -> tuple[pl.DataFrame, pl.DataFrame, Changes]:
            # Rows read again unchanged (those of a transaction under way at the last look)
            # change nothing.
            new_rollups, new_latest = _changed(self._rollups, rollups), _changed(self._latest,
                                                                                   latest)
            changes = Changes(
                periods=frozenset(new_rollups["period"].to_list()
                                  + new_latest["period"].to_list()),
                prices=frozenset(new_latest.select(
                    pl.col("source_code", "destination_code", "period").cast(pl.String))
                    .unique().iter_rows()),
                survey=bool((new_latest["source"] == "rpw").any()))
            return (_merge(self._rollups, new_rollups, ROLLUP_KEY),
                    _merge(self._latest, new_latest, LATEST_KEY), changes)

        if (previous is not None and previous.version == version and not rollups.height
                and not latest.height):
            return  # nothing new (the common case: asked every REFRESH_SECONDS)
        all_rollups, all_latest, changes = await asyncio.to_thread(merge)
        if (previous is not None and previous.version == version and not changes.periods
                and not changes.prices):
            return
        self.last_changes = changes
        snap = await asyncio.to_thread(build_snapshot, all_rollups, all_latest, version,
                                       previous=previous, changes=changes)
        with_emulated = None
        if self.eager_emulated and snap.emulated_sources:
            # Asked for by default (serve --sandbox's page): ready before it is.
            with_emulated = await asyncio.to_thread(
                build_snapshot, all_rollups, all_latest, version, include_emulated=True,
                previous=previous_emulated, changes=changes)
        self._snapshot, self._with_emulated = snap, with_emulated
        self._rollups, self._latest = all_rollups, all_latest

    def current(self, *, include_emulated: bool = False) -> Snapshot | None:
        """The snapshot in hand, if any. Not a coroutine, so that a request answered from
        memory awaits nothing: once there is a snapshot, only the poller (``data_ctx``)
        asks the store, so no request ever waits on a slow or absent database.
        ``include_emulated``: the one with emulated quotes, if it was built already."""
        if include_emulated:
            with_emulated = self._with_emulated
            if with_emulated is None or self._snapshot is None or (
                    with_emulated.version != self._snapshot.version):
                return None
            return with_emulated
        return self._snapshot

    async def snapshot(self, *, include_emulated: bool = False) -> Snapshot:
        """The current snapshot: without emulated quotes, or (``include_emulated``) with."""
        snap = self._snapshot or await self.refresh()
        if not include_emulated:
            return snap
        ready = self._with_emulated
        if ready is not None and ready.version == snap.version:
            return ready  # no wait behind a refresh under way
        async with self._lock:
            snap = self._snapshot or snap
            if self._with_emulated is None or self._with_emulated.version != snap.version:
                rollups, latest = self._rollups, self._latest
                if rollups is None or latest is None or snap.include_emulated:
                    return snap
                self._with_emulated = await asyncio.to_thread(
                    build_snapshot, rollups, latest, snap.version, include_emulated=True)
            return self._with_emulated

    async def warm(self) -> None:
        """Compute the indicator documents of the current snapshot not computed yet (after
        the first build: those of the periods a refresh changed), before anyone asks."""
        snap = self._snapshot
        if snap is None:
            return
        for period, amount_usd in list(snap.services):
            if self._snapshot is not snap:
                return  # a newer snapshot: its own turn
            with contextlib.suppress(NoData):  # every services frame kept has rows
                await self.indicators(snap, period, amount_usd)

    def flows(self) -> pl.LazyFrame:
        if self._flows is None:
            from corridors.reading.matrix import read_bundled_flows

            self._flows = read_bundled_flows().lazy()
        return self._flows

    async def indicators(self, snap: Snapshot, period: str, amount_usd: int) -> dict[str, Any]:
        """The metrics document of (period, amount), computed once and kept by the
        snapshots after this one as long as the period's quotes do not change."""
        key = (period, amount_usd)
        if key not in snap.indicators:
            services = snap.services.get(key)
            if services is None:
                raise NoData(f"no quotes for period {period} at USD {amount_usd}")

            estimates = _ids(snap.estimates)

            def compute() -> dict[str, Any]:
                return indicators_from_services(services, period=period,
                                                amount_usd=amount_usd,
                                                countries=countries_frame(period).lazy(),
                                                flows=self.flows(), estimates=estimates,
                                                weights_coverage_min=self.weights_coverage_min)
            snap.indicators[key] = await asyncio.to_thread(compute)
        return snap.indicators[key]


DATA = web.AppKey("publish_data", ApiData)
#: True when the page shows emulated data without being asked (``sendcost serve --sandbox``:
#: the quick start's page shows the sandbox's quotes, under the banner).
SHOWS_EMULATED = web.AppKey("page_shows_emulated", bool)


#: How long a notified write is waited for in the database serving reads (a streaming
#: replica replaying it) before refreshing all the same (the next refresh finds the rest).
VISIBLE_WAIT_SECONDS = 5.0
VISIBLE_POLL_SECONDS = 0.05


async def _until_visible(store: Store, xid: int) -> None:
    """Until the write of transaction ``xid`` is visible where ``store`` reads (at once on
    the primary; on a streaming replica once replayed), ``VISIBLE_WAIT_SECONDS`` at most."""
    if not xid:
        return
    with contextlib.suppress(*OUTAGE_ERRORS):  # the refresh says it, once
        # Polled: a replica's replay announces nothing.
        for _ in range(int(VISIBLE_WAIT_SECONDS / VISIBLE_POLL_SECONDS)):
            if await visible(store.pool, xid):
                return
            await asyncio.sleep(VISIBLE_POLL_SECONDS)


def _settle_the_heap() -> None:
    """Once, after the first snapshot: what the process holds by then (every module's
    functions, types and constants, the reference tables, the first snapshot) leaves the
    objects Python's cycle collector walks (``gc.freeze``). Each full collection walked
    them all again, 50-150 ms on the event loop, while the caches filled under load (the
    p99 of amounts seldom asked). Frozen objects that become garbage are still freed by
    their reference counts; only cycles among them would stay, once."""
    gc.freeze()
    log.debug("froze %d objects out of the cycle collector's walks", gc.get_freeze_count())


async def data_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the first snapshot in the background and poll the store for new quotes; the
    indicator documents of each new snapshot are computed after it (``ApiData.warm``)."""
    config = app.get(runtime.CONFIG)
    data = ApiData(runtime.read_store(app), eager_emulated=app.get(SHOWS_EMULATED, False),
                   weights_coverage_min=(config.indicators.weights_coverage_min
                                         if config is not None else cor.WEIGHT_COVERAGE_MIN))
    app[DATA] = data
    # A write's notification wakes the poller at once (corridors/notify.py); the timer
    # stays, for writes no one heard of.
    written = asyncio.Event()
    newest_write = 0

    def on_write(xid: int) -> None:
        nonlocal newest_write
        newest_write = max(newest_write, xid)
        written.set()

    listener = (QuotesListener(app[runtime.NOTIFY_URL], on_write,
                               timeout=config.database.connect_timeout_seconds)
                if runtime.NOTIFY_URL in app and config is not None else None)
    listening = (asyncio.create_task(listener.run(), name="publish-listen")
                 if listener is not None else None)

    warming: asyncio.Task[None] | None = None

    async def warm() -> None:
        try:
            await data.warm()
        except Exception:  # asked for again by a request, which then reports it
            log.exception("computing the indicator documents failed")

    async def poll() -> None:
        nonlocal warming
        announced = 0  # the newest write announced since the last refresh
        settled = False  # the heap frozen after the first snapshot (_settle_the_heap)
        me = asyncio.current_task()
        assert me is not None
        # Until cancelled, even when a cancellation reached the poller as another error.
        while not me.cancelling():
            try:
                if announced:
                    await _until_visible(data.store, announced)
                    announced = 0
                await data.refresh()
                if not settled:
                    settled = True
                    _settle_the_heap()
                # Beside the poller, which keeps watching the store meanwhile.
                if warming is None or warming.done():
                    warming = asyncio.create_task(warm(), name="publish-indicators")
            except StoreUnavailable:  # logged once by refresh; retried
                pass
            except (NoData, BadPeriod) as exc:  # pragma: no cover - logged, retried
                log.warning("snapshot refresh failed: %s", exc)
            except Exception:  # a broken refresh must not stop the poller
                log.exception("snapshot refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(written.wait(), REFRESH_SECONDS)
            if written.is_set():
                written.clear()
                announced = newest_write

    task = asyncio.create_task(poll(), name="publish-snapshot")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if listening is not None:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    if warming is not None:
        warming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warming


__all__ = [
    "CAVEATS",
    "DATA",
    "LICENCE",
    "METHODOLOGY_VERSION",
    "POSTAL_FIRM_TYPES",
    "PRICE_POINTS",
    "SHOWS_EMULATED",
    "STORE_ERRORS",
    "TARGET_CORRIDOR",
    "TARGET_GLOBAL",
    "ApiData",
    "Cached",
    "PricePoint",
    "Snapshot",
    "StoreUnavailable",
    "build_snapshot",
    "country_ref",
    "data_ctx",
    "finite",
    "period_key",
    "quote_flags",
    "sources_of",
]
