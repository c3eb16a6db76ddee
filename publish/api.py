"""The public JSON API under ``/v1/``: routes, handlers and the response conventions.

Every JSON response states its ``period``, ``methodology_version``, ``sources`` and
``licence``; countries go out as ``{alpha2, alpha3, name}``; percentages are in percent;
unknown is null. Every GET carries an ``ETag`` and ``Cache-Control`` and answers 304 to a
matching ``If-None-Match``. Collection endpoints have a CSV twin (``.csv`` suffix or
``Accept`` negotiation: ``negotiate``). Errors are raised as ``publish.problems.Problem`` and
rendered by ``publish.middleware.error_response``. The contract is documented in docs/api.md and
``/v1/openapi.json``.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import hmac
import io
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from corridors import runtime
from corridors.errors import NoData
from corridors.reference import REGION_NAMES, countries, country_code
from corridors.types import EMULATED_WARNING, FirmType, PayIn, PayOut
from metrics import METHODOLOGY_VERSION
from metrics.indicators import corridor_table
from metrics.kinds import CHEAPEST_LEAVES_OUT
from metrics.kpis import scorecard_table
from publish import middleware, openapi
from publish.bulletin import g20_scorecard, publish_bulletin
from publish.bulletin_routes import setup_bulletin_routes
from publish.data import (
    CAVEATS,
    DATA,
    LICENCE,
    POSTAL_FIRM_TYPES,
    STORE_ERRORS,
    TARGET_CORRIDOR,
    TARGET_GLOBAL,
    Cached,
    PricePoint,
    Snapshot,
    StoreUnavailable,
    country_ref,
    data_ctx,
    finite,
    period_key,
    sources_of,
)
from publish.params import (
    CURSOR_CORRIDOR,
    CURSOR_OFFSET,
    CURSOR_PERIOD,
    PAIR_PATTERN,
    Params,
    encode_cursor,
)
from publish.problems import Problem, bad_parameter, not_found, unprocessable
from publish.responses import etag_of, send

log = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
_PAIR = re.compile(PAIR_PATTERN)
_RESPONSE_CACHE_MAX = 8192

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- response helpers ------------------------------------------------------------------------


def envelope(period: str | None, sources: Iterable[str], *, emulated: bool = False,
             **data: Any) -> dict[str, Any]:
    """The keys every JSON answer starts with. ``emulated``: the answer was asked to include
    emulated data (``?include=emulated``), and says so first: ``warning``."""
    warning = {"warning": EMULATED_WARNING, "includes": ["emulated"]} if emulated else {}
    return {**warning, "period": period, "methodology_version": METHODOLOGY_VERSION,
            "sources": sources_of(list(sources)), "licence": LICENCE, **data}


#: The ``include`` parameter every data endpoint takes: ``emulated`` adds the sandbox's
#: invented quotes, left out by default.
INCLUDE = "include"
#: The warning as a header of a CSV twin (header values are ASCII).
EMULATED_HEADER_VALUE = "emulated data - not real prices"


def include_emulated(request: web.Request) -> bool:
    """True when the request asks for emulated data (``?include=emulated``)."""
    value = request.query.get(INCLUDE)
    if value is None:
        return False
    if value == "":  # as every parameter (publish.params.Params.raw)
        raise bad_parameter(INCLUDE, "include is empty: give it a value or leave it out")
    if value != "emulated":
        raise bad_parameter(INCLUDE, f"include takes one value, 'emulated' (the sandbox's "
                                     f"invented quotes, left out by default), not {value!r}")
    return True


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


def _quality(ranges: list[tuple[str, str, float]], kind: str, sub: str) -> float:
    """The q of ``kind/sub`` under the most specific media range that matches it (0: none
    does, so it is not acceptable)."""
    q, specificity = 0.0, -1
    for r_kind, r_sub, r_q in ranges:
        if r_kind == kind and r_sub == sub:
            s = 2
        elif r_kind == kind and r_sub == "*":
            s = 1
        elif r_kind == "*" and r_sub == "*":
            s = 0
        else:
            continue
        if s > specificity or (s == specificity and r_q > q):
            q, specificity = r_q, s
    return q


_QVALUE = re.compile(r"(0(\.[0-9]{0,3})?|1(\.0{0,3})?)")


@functools.lru_cache(maxsize=256)
def negotiate(accept: str) -> str:
    """``json`` or ``csv`` for an ``Accept`` header (RFC 9110 §12.5.1): each type gets the q
    of the most specific range that matches it (``text/csv``, then ``text/*``, then
    ``*/*``); q=0 or no matching range means not acceptable. CSV when it is acceptable and
    preferred over JSON; JSON otherwise: on a tie, and when neither is acceptable (the
    default, rather than a 406). A range with a malformed q is ignored."""
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        media, *params = item.split(";")
        kind, _, sub = media.strip().lower().partition("/")
        if not kind or not sub:
            continue
        q: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else None
                break
        if q is not None:
            ranges.append((kind, sub.strip(), q))
    csv_q = _quality(ranges, "text", "csv")
    return "csv" if csv_q > 0 and csv_q > _quality(ranges, "application", "json") else "json"


def wants_csv(request: web.Request) -> bool:
    """The ``.csv`` twin's path, or an ``Accept`` header that prefers CSV to JSON."""
    if request.path.endswith(".csv"):
        return True
    accept = request.headers.get("Accept")
    return bool(accept) and negotiate(accept) == "csv"


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        # A list (a service's flags) is one cell, its items separated by spaces.
        writer.writerow(["" if r.get(c) is None else
                         ("true" if r[c] is True else "false" if r[c] is False else
                          " ".join(map(str, r[c])) if isinstance(r[c], list) else r[c])
                         for c in columns])
    return buf.getvalue().encode()


def _sf_string(text: object) -> str:
    """An RFC 8941 string: quoted, backslash and quote escaped, ASCII only."""
    ascii_text = str(text).encode("ascii", "replace").decode()
    return '"' + ascii_text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def csv_headers(period: str | None, sources: Iterable[str], *,
                emulated: bool = False) -> dict[str, str]:
    """The envelope of a JSON answer, as headers of its CSV twin (whose body has no room for
    it): data period, methodology version, sources and licence, and the warning when it
    includes emulated data. No period, no header (the JSON twin says null)."""
    out = {"Sendcost-Methodology-Version": METHODOLOGY_VERSION,
           "Sendcost-Sources": ", ".join(
               f'{s["name"]};title={_sf_string(s["title"])}'
               + (f";url={_sf_string(s['url'])}" if s["url"] else "")
               + (f";licence={_sf_string(s['licence'])}" if s["licence"] else "")
               for s in sources_of(list(sources))),
           "Sendcost-Licence": LICENCE}
    if period is not None:
        out["Sendcost-Period"] = period
    if emulated:
        out["Sendcost-Warning"] = EMULATED_HEADER_VALUE
    return out


def send_csv(request: web.Request, body: bytes, meta: dict[str, str], *, filename: str,
             etag: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """Every CSV twin goes out here: with ``csv_headers`` and a file name."""
    return send(request, body, CSV, etag=etag,
                headers={**(headers or {}), **meta,
                         "Content-Disposition": f'inline; filename="{filename}.csv"'})


def _next_link(request: web.Request, cursor: str | None) -> dict[str, str]:
    if cursor is None:
        return {}
    url = request.rel_url.update_query({"cursor": cursor})
    return {"Link": f'<{url}>; rel="next"'}


async def _snapshot(request: web.Request) -> Snapshot:
    return await request.app[DATA].snapshot(include_emulated=include_emulated(request))


#: (Snapshot version, with emulated quotes) → the work that gives its services their
#: receive currency.
RECEIVE_UNITS = web.AppKey("publish_receive_units", dict)


def _annotate_receive_units(snap: Snapshot) -> None:
    # The index gives each corridor's services their receive units as it makes them.
    snap.index.prepare()


async def receive_units(app: web.Application, snap: Snapshot) -> None:
    """Give the snapshot's services their receive currency (``publish.receive``) before any
    of them is shown: once per snapshot, in a worker thread, shared by concurrent requests."""
    tasks = app[RECEIVE_UNITS]
    # A version has two snapshots: without emulated quotes, and (when asked) with them.
    key = (snap.version, snap.include_emulated)
    task = tasks.get(key)
    if task is None:
        for old in [k for k in tasks if k[0] != snap.version]:
            del tasks[old]  # an older snapshot's entry is not needed again
        task = tasks[key] = asyncio.ensure_future(
            asyncio.to_thread(_annotate_receive_units, snap))
    try:
        await asyncio.shield(task)
    except Exception:
        tasks.pop(key, None)  # the next request tries again
        raise


def _cached(snap: Snapshot, key: tuple[Any, ...]) -> Cached | None:
    return snap.responses.get(key)


def _remember(snap: Snapshot, key: tuple[Any, ...], body: bytes,
              headers: dict[str, str] | None = None) -> Cached:
    """Keep an answer: its body, ETag and the headers it goes out with (a CSV twin's
    ``csv_headers``), so that a cached answer is sent as it was first sent."""
    return _remember_entry(snap, key, (body, etag_of(body), headers or {}))


def _pair(request: web.Request) -> tuple[str, str]:
    """The corridor of the path parameter ``pair`` (the name problems give, as the OpenAPI
    document does): malformed is 400; an unknown code or one country twice, 422."""
    text = request.match_info["pair"]
    m = _PAIR.match(text)
    if not m:
        raise bad_parameter("pair", "pair must be FROM-TO with ISO 3166 alpha-2 or alpha-3 "
                                    f"codes, such as USA-MEX, not {text[:40]!r}")
    out = []
    for role, code in (("sending", m.group(1)), ("receiving", m.group(2))):
        a3 = country_code(code)
        if a3 is None:
            raise unprocessable("pair", f"pair {text!r}: the {role} country {code!r} is not a "
                                        "known ISO 3166 country code")
        out.append(a3)
    if out[0] == out[1]:
        raise unprocessable("pair", f"pair {text!r} names one country twice: a corridor joins "
                                    "two countries")
    return out[0], out[1]


def _corridor_periods(snap: Snapshot, src: str, dst: str) -> dict[str, list[PricePoint]]:
    by_period = snap.index.get((src, dst))
    if not by_period:
        raise not_found(f"no quotes for the corridor {src} → {dst}", corridor=f"{src}-{dst}")
    return by_period


def _distance(average: float | None, target: float) -> float | None:
    return None if average is None else average - target


def _corridor_summary(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"average": None, "smart": None, "median": None, "services": 0,
                "transparent_services": 0, "above_5": None, "above_10": None,
                "too_few_services": None, "no_transparent_service": None,
                "points_above_3": None, "points_above_5": None, "cheapest": None,
                "cheapest_leaves_out": list(CHEAPEST_LEAVES_OUT), "caveats": {}}
    avg = finite(row["average"])
    return {
        "average": avg,
        "smart": finite(row["smart"]),
        "median": finite(row["median"]),
        "services": row["services"],
        "transparent_services": row["transparent_services"],
        "above_5": row["above_5"],
        "above_10": row["above_10"],
        "too_few_services": row["too_few_services"],
        "no_transparent_service": row["no_transparent_service"],
        "points_above_3": _distance(avg, TARGET_GLOBAL),
        "points_above_5": _distance(avg, TARGET_CORRIDOR),
        "cheapest": _cheapest(row["cheapest_firm"], row["cheapest_firm_type"],
                              row["cheapest_product"], row["cheapest_total_cost"]),
        # Services flagged so are not named cheapest (they keep their rank, marked).
        "cheapest_leaves_out": list(CHEAPEST_LEAVES_OUT),
        # How many of its services carry each caveat (publish.data.CAVEATS says what each
        # means): the averages keep them, a reader is told.
        "caveats": corridor_caveats(row.get("caveats")),
    }


def corridor_caveats(text: str | None) -> dict[str, int]:
    """``{"negative_margin": 3, …}`` from the corridor table's "negative_margin:3 …"."""
    return {flag: int(n) for flag, n in (item.split(":") for item in (text or "").split())}


def _cheapest(firm: str | None, firm_type: str | None, product: str | None,
              total_cost: float | None) -> dict[str, Any] | None:
    """A corridor's cheapest service as every endpoint names it (None without one)."""
    if firm is None:
        return None
    return {"provider": firm, "firm_type": firm_type, "product": product or None,
            "total_cost_pct": finite(total_cost)}


# --- /v1/compare ---------------------------------------------------------------------------


COMPARE_PARAMS = frozenset({"from", "to", "amount", "currency", "payin", "payout", "period",
                            INCLUDE})
SERVICE_CSV_COLUMNS = [
    "rank", "provider", "firm_type", "product", "fee", "fee_currency", "applied_rate",
    "reference_rate", "reference_rate_source", "reference_rate_at", "fee_pct",
    "fx_margin_pct", "total_cost_pct", "effective_cost_pct", "amount_received",
    "amount_received_basis",
    "fee_paid_on_top",
    "amount_received_if_fee_on_top", "amount_received_if_fee_deducted", "receive_currency",
    "receive_currency_basis", "receive_currency_note",
    "speed", "pay_in", "pay_out", "access_point", "transparent", "collected_at", "source",
    "service_id", "data_kind", "flags",
]


def _nearest(points: list[PricePoint], amount: Decimal, by_usd: bool) -> PricePoint:
    def distance(p: PricePoint) -> tuple[float, float]:
        priced = p.amount_usd if by_usd else p.send_amount
        # Relative distance: 300 is nearer 200 than 500 (log 1.5 < log 1.67).
        return (abs(math.log(float(amount) / priced)), priced)
    return min(points, key=distance)


def _filtered(entries: list[dict[str, Any]], payin: str | None, payout: str | None,
              ranked: bool) -> list[dict[str, Any]]:
    out = [e for e in entries if (payin is None or e["pay_in"] == payin)
           and (payout is None or e["pay_out"] == payout)]
    if ranked and (payin or payout):
        out = [{**e, "rank": i} for i, e in enumerate(out, 1)]
    return out


def _filter_note(entries: list[dict[str, Any]], payin: str | None, payout: str | None
                 ) -> str | None:
    """Why a filter may show fewer services than the corridor has: those that do not record
    how money is paid in or out (RPW's survey quotes never say how it is paid in) are left
    out, not guessed. None when no service was left out for that reason."""
    unsaid = [f"{n} of {len(entries)} services do not record how the money is {how}"
              for key, wanted, how in (("pay_in", payin, "paid in"),
                                       ("pay_out", payout, "paid out"))
              if wanted is not None and (n := sum(e[key] is None for e in entries))]
    return "; ".join(unsaid) + ": the filter leaves them out" if unsaid else None


def compare_document(snap: Snapshot, src: str, dst: str, amount: Decimal,
                     currency: str | None, payin: str | None, payout: str | None,
                     period: str | None) -> dict[str, Any]:
    by_period = _corridor_periods(snap, src, dst)
    if period is not None and period not in by_period:
        raise not_found(f"no quotes for the corridor {src} → {dst} in {period}; it has "
                        f"{', '.join(sorted(by_period, key=period_key))}",
                        corridor=f"{src}-{dst}")
    label = period or max(by_period, key=period_key)
    points = by_period[label]
    send_currency = points[0].send_currency
    if currency is not None and currency not in (send_currency, "USD"):
        raise unprocessable("currency", f"currency must be the sending currency of "
                                        f"{src} → {dst} ({send_currency}) or USD, not {currency}")
    by_usd = currency == "USD" and send_currency != "USD"
    point = _nearest(points, amount, by_usd)
    priced = Decimal(point.amount_usd) if by_usd else Decimal(repr(point.send_amount))
    exact = priced == amount
    row = snap.corridor_row(label, point.amount_usd, src, dst)
    services = _filtered(point.services, payin, payout, True)
    apart = _filtered(point.non_transparent, payin, payout, False)
    srcs = {e["source"] for e in services + apart} or set(point.sources)
    flagged = sorted({f for e in services + apart for f in e["flags"]})
    return envelope(
        label, srcs, emulated=snap.include_emulated,
        **{"from": country_ref(src), "to": country_ref(dst)},
        amount=float(amount),
        currency=currency or send_currency,
        send_currency=send_currency,
        priced_amount=float(priced),
        priced_send_amount=point.send_amount,
        priced_amount_usd=point.amount_usd,
        approximate=not exact,
        approximation=None if exact else (
            f"not priced at {amount:f} {currency or send_currency}: these are the quotes at "
            f"the nearest priced amount, {priced.normalize():f} {currency or send_currency}, "
            "unscaled"),
        priced_amounts=[p.send_amount for p in points],
        filters={"payin": payin, "payout": payout,
                 "note": _filter_note(point.services + point.non_transparent, payin, payout)},
        corridor=_corridor_summary(row),
        ranked_by=point.ranked_by,
        # What each flag on a service below means; flagged services keep their rank,
        # marked, and the corridor's "cheapest" leaves them out.
        flags_explained={f: CAVEATS[f] for f in flagged},
        services=services,
        non_transparent=apart,
    )


PAYIN = tuple(x.value for x in PayIn)
PAYOUT = tuple(x.value for x in PayOut)


async def compare(request: web.Request) -> web.StreamResponse:
    fmt = "csv" if wants_csv(request) else "json"
    data = request.app[DATA]
    # The hot path awaits nothing: the snapshot in hand is used (the poller keeps it fresh).
    emulated = include_emulated(request)
    snap = (data.current(include_emulated=emulated)
            or await data.snapshot(include_emulated=emulated))
    # The migrant's question repeats: a query string answered before is answered from
    # memory without parsing it again (only successful answers are kept), with its ETag.
    raw_key = ("compare-raw", request.query_string, fmt)
    hit = snap.responses.get(raw_key)
    if hit is None:
        await receive_units(request.app, snap)
        hit = _remember_entry(snap, raw_key, compare_body(request, snap, fmt))
    body, tag, headers = hit
    if fmt == "csv":
        return send_csv(request, body, headers, filename="compare", etag=tag)
    return send(request, body, JSON, etag=tag)


def _remember_entry(snap: Snapshot, key: tuple[Any, ...], entry: Cached) -> Cached:
    if len(snap.responses) >= _RESPONSE_CACHE_MAX:
        snap.responses.clear()
    snap.responses[key] = entry
    return entry


def compare_body(request: web.Request, snap: Snapshot, fmt: str) -> Cached:
    """The answer to a compare query: body, ETag and, for CSV, its ``csv_headers`` (the
    receive currencies must be known: ``receive_units``)."""
    p = Params(request.query, COMPARE_PARAMS)
    src = p.country("from", required=True)
    dst = p.country("to", required=True)
    amount = p.amount("amount", required=True)
    currency = p.currency("currency")
    payin = p.choice("payin", PAYIN)
    payout = p.choice("payout", PAYOUT)
    period = p.period()
    assert src and dst and amount is not None
    if src == dst:
        raise unprocessable("to", "to must differ from from: a corridor joins two countries")
    key = ("compare", src, dst, amount.normalize(), currency, payin, payout, period, fmt)
    hit = _cached(snap, key)
    if hit is None:
        doc = compare_document(snap, src, dst, amount, currency, payin, payout, period)
        if fmt == "csv":
            hit = _remember(snap, key, to_csv(doc["services"] + doc["non_transparent"],
                                              SERVICE_CSV_COLUMNS),
                            csv_headers(doc["period"], [s["name"] for s in doc["sources"]],
                                        emulated=snap.include_emulated))
        else:
            hit = _remember(snap, key, dumps(doc))
    return hit


# --- /v1/corridors ---------------------------------------------------------------------------


CORRIDORS_PARAMS = frozenset({"from", "to", "above", "region", "firm_type", "amount", "cursor",
                              "limit", INCLUDE})
CORRIDOR_CSV_COLUMNS = [
    "from", "to", "period", "first_collected", "last_collected", "data_kinds", "amount_usd",
    "average", "smart", "median", "services",
    "transparent_services", "above_5", "above_10", "too_few_services", "no_transparent_service",
    "points_above_3", "points_above_5", "receiving_region", "cheapest_provider",
    "cheapest_total_cost_pct", "caveats",
]


def _latest_rows(snap: Snapshot, amount_usd: int) -> list[dict[str, Any]]:
    """Each corridor's row in its latest period at this price point (kept per snapshot)."""
    def make() -> list[dict[str, Any]]:
        order = {label: i for i, label in enumerate(snap.periods)}
        table = snap.corridor_table.filter(pl.col("amount_usd") == amount_usd).with_columns(
            pl.col("period").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
        latest = (table.filter(pl.col("_order") == pl.col("_order").max()
                               .over("source_code", "destination_code"))
                  .sort("source_code", "destination_code"))
        return latest.to_dicts()
    return snap.keep(("latest_rows", amount_usd), make)


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _corridor_item(row: dict[str, Any]) -> dict[str, Any]:
    dst = countries().get(row["destination_code"])
    region = dst.region if dst else None
    summary = _corridor_summary(row)
    return {
        "from": country_ref(row["source_code"]), "to": country_ref(row["destination_code"]),
        "period": row["period"], "amount_usd": row["amount_usd"],
        "first_collected": _when(row.get("first_collected")),
        "last_collected": _when(row.get("last_collected")),
        "data_kinds": row.get("data_kinds") or [],
        **{k: summary[k] for k in ("average", "smart", "median", "services",
                                   "transparent_services", "above_5", "above_10",
                                   "too_few_services", "no_transparent_service",
                                   "points_above_3", "points_above_5", "cheapest",
                                   "cheapest_leaves_out", "caveats")},
        "receiving_region": None if region is None else {"code": region,
                                                         "name": REGION_NAMES.get(region)},
        "sources": row["sources"] or [],
    }


def _flat_corridor(item: dict[str, Any]) -> dict[str, Any]:
    out = {k: item.get(k) for k in CORRIDOR_CSV_COLUMNS}
    out["from"], out["to"] = item["from"]["alpha3"], item["to"]["alpha3"]
    out["data_kinds"] = " ".join(item["data_kinds"])
    out["receiving_region"] = (item["receiving_region"] or {}).get("code")
    out["caveats"] = " ".join(f"{k}:{v}" for k, v in item["caveats"].items())
    cheapest = item["cheapest"] or {}
    out["cheapest_provider"] = cheapest.get("provider")
    out["cheapest_total_cost_pct"] = cheapest.get("total_cost_pct")
    return out


async def corridors_list(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, CORRIDORS_PARAMS)
    src, dst = p.country("from"), p.country("to")
    above = p.number("above", low=-100, high=100)
    region = p.choice("region", tuple(REGION_NAMES))
    firm_type = p.choice("firm_type", tuple(x.value for x in FirmType))
    amount_usd = p.price_point()
    cursor, limit = p.cursor(CURSOR_CORRIDOR), p.limit()
    snap = await _snapshot(request)
    rows = _latest_rows(snap, amount_usd)
    selected = []
    for r in rows:
        if (src and r["source_code"] != src) or (dst and r["destination_code"] != dst):
            continue
        if above is not None and not (r["average"] is not None and r["average"] > above):
            continue
        if region:
            c = countries().get(r["destination_code"])
            if c is None or c.region != region:
                continue
        if firm_type and firm_type not in (r["firm_types"] or []):
            continue
        selected.append(r)
    page = [r for r in selected
            if cursor is None or f"{r['source_code']}-{r['destination_code']}" > cursor]
    more = len(page) > limit
    page = page[:limit]
    next_cursor = (encode_cursor(f"{page[-1]['source_code']}-{page[-1]['destination_code']}")
                   if more else None)
    items = [_corridor_item(r) for r in page]
    headers = _next_link(request, next_cursor)
    # Each row carries its own period and collection dates; the answer names one period
    # only when every row is from it (a mix of 2014Q2 survey rows and this month's quotes
    # is no month's figure): otherwise period is null and periods counts the rows of each.
    periods = Counter(r["period"] for r in selected)
    single = next(iter(periods)) if len(periods) == 1 else None
    srcs = {s for r in page for s in (r["sources"] or [])}
    emulated = snap.include_emulated
    if wants_csv(request):
        body = to_csv([_flat_corridor(i) for i in items], CORRIDOR_CSV_COLUMNS)
        meta = csv_headers(single, srcs, emulated=emulated)
        if len(periods) > 1:
            meta["Sendcost-Periods"] = ", ".join(
                f"{k}={v}" for k, v in sorted(periods.items(), key=lambda kv: period_key(kv[0])))
        return send_csv(request, body, meta, filename="corridors", headers=headers)
    body = dumps(envelope(single, srcs, emulated=emulated, amount_usd=amount_usd,
                          periods={k: periods[k] for k in sorted(periods, key=period_key)},
                          count=len(selected), next_cursor=next_cursor,
                          caveats_explained={f: CAVEATS[f] for f in sorted(
                              {f for i in items for f in i["caveats"]})},
                          corridors=items))
    return send(request, body, JSON, headers=headers)


CORRIDOR_PARAMS = frozenset({"amount", "period", INCLUDE})


async def corridor_detail(request: web.Request) -> web.StreamResponse:
    src, dst = _pair(request)
    p = Params(request.query, CORRIDOR_PARAMS)
    amount_usd, period = p.price_point(), p.period()
    snap = await _snapshot(request)
    by_period = _corridor_periods(snap, src, dst)
    labels = [lb for lb in sorted(by_period, key=period_key)
              if any(pp.amount_usd == amount_usd for pp in by_period[lb])]
    if period is not None:
        if period not in labels:
            raise not_found(f"no quotes for {src} → {dst} at USD {amount_usd} in {period}",
                            corridor=f"{src}-{dst}")
        label = period
    elif labels:
        label = labels[-1]
    else:
        raise not_found(f"no quotes for {src} → {dst} at USD {amount_usd}",
                        corridor=f"{src}-{dst}")
    point = next(pp for pp in by_period[label] if pp.amount_usd == amount_usd)
    await receive_units(request.app, snap)
    if wants_csv(request):
        # Like compare's twin: the services, ranked first, then those listed apart.
        return send_csv(request, to_csv(point.services + point.non_transparent,
                                        SERVICE_CSV_COLUMNS),
                        csv_headers(label, point.sources, emulated=snap.include_emulated),
                        filename=f"{src}-{dst}-{label}-{amount_usd}")
    row = snap.corridor_row(label, amount_usd, src, dst)
    base = f"/v1/corridors/{src}-{dst}"
    body = dumps(envelope(
        label, point.sources, emulated=snap.include_emulated,
        **{"from": country_ref(src), "to": country_ref(dst)},
        amount_usd=amount_usd, send_amount=point.send_amount, send_currency=point.send_currency,
        periods=labels, indicators=_corridor_summary(row), ranked_by=point.ranked_by,
        services=point.services, non_transparent=point.non_transparent,
        links={"history": f"{base}/history?amount={amount_usd}",
               "compare": f"/v1/compare?from={src}&to={dst}&amount={point.send_amount:g}"}))
    return send(request, body, JSON)


HISTORY_PARAMS = frozenset({"amount", "cursor", "limit", INCLUDE})
HISTORY_CSV_COLUMNS = ["period", "amount_usd", "first_collected", "last_collected",
                       "data_kinds", "average", "smart", "median", "services",
                       "transparent_services", "above_5", "above_10", "too_few_services",
                       "no_transparent_service"]


async def corridor_history(request: web.Request) -> web.StreamResponse:
    src, dst = _pair(request)
    p = Params(request.query, HISTORY_PARAMS)
    amount_usd, cursor, limit = p.price_point(), p.cursor(CURSOR_PERIOD), p.limit()
    snap = await _snapshot(request)
    _corridor_periods(snap, src, dst)
    rows = snap.corridor_table.filter(
        pl.col("source_code") == src, pl.col("destination_code") == dst,
        pl.col("amount_usd") == amount_usd).to_dicts()
    rows.sort(key=lambda r: period_key(r["period"]))
    if cursor is not None:
        after = period_key(cursor)
        rows = [r for r in rows if period_key(r["period"]) > after]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["period"]) if more else None
    items = []
    for r in rows:
        s = _corridor_summary(r)
        items.append({"period": r["period"], "amount_usd": r["amount_usd"],
                      "first_collected": _when(r["first_collected"]),
                      "last_collected": _when(r["last_collected"]),
                      "data_kinds": r["data_kinds"] or [],
                      **{k: s[k] for k in HISTORY_CSV_COLUMNS[5:]},
                      "points_above_5": s["points_above_5"], "sources": r["sources"] or []})
    headers = _next_link(request, next_cursor)
    latest = items[-1]["period"] if items else None
    srcs = {s for i in items for s in i["sources"]}
    if wants_csv(request):
        return send_csv(request, to_csv(items, HISTORY_CSV_COLUMNS),
                        csv_headers(latest, srcs, emulated=snap.include_emulated),
                        filename=f"{src}-{dst}-history",
                        headers=headers)
    body = dumps(envelope(latest, srcs, emulated=snap.include_emulated,
                          **{"from": country_ref(src), "to": country_ref(dst)},
                          amount_usd=amount_usd, next_cursor=next_cursor, history=items))
    return send(request, body, JSON, headers=headers)


# --- /v1/indicators --------------------------------------------------------------------------


INDICATORS_PARAMS = frozenset({"period", "amount", INCLUDE})
#: The metrics document's names (``metrics.indicators``) → the API's, as every other
#: endpoint names them: a cheapest service has a ``provider`` and a ``total_cost_pct``.
INDICATORS_CSV_RENAMED = {"cheapest_firm": "cheapest_provider",
                          "cheapest_total_cost": "cheapest_total_cost_pct"}


def _indicators_corridor(c: dict[str, Any]) -> dict[str, Any]:
    """A corridor of the metrics document as the API shows it: country objects beside the
    codes, and its cheapest service named as in every other endpoint."""
    cheapest = c["cheapest"]
    return {"from": country_ref(c["source"]), "to": country_ref(c["destination"]), **c,
            "cheapest": None if cheapest is None else _cheapest(
                cheapest["firm"], cheapest["firm_type"], cheapest["product"],
                cheapest["total_cost"])}


def _indicators_non_transparent(n: dict[str, Any]) -> dict[str, Any]:
    """A service that does not disclose its rate, as the API shows it (country objects,
    ``provider``)."""
    return {"from": country_ref(n["source"]), "to": country_ref(n["destination"]),
            "source": n["source"], "destination": n["destination"], "provider": n["firm"],
            "fee_pct": finite(n["fee_pct"])}


async def indicators(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, INDICATORS_PARAMS)
    period, amount_usd = p.period(), p.price_point()
    snap = await _snapshot(request)
    label = period or snap.latest_period(amount_usd=amount_usd)
    if label is None:
        raise not_found("the store has no quotes yet")
    if (label, amount_usd) not in snap.services:  # the services indicators are made of
        raise not_found(f"no quotes for {label} at USD {amount_usd}; periods with data: "
                        f"{', '.join(snap.periods) or 'none'}")
    fmt = "csv" if wants_csv(request) else "json"
    key = ("indicators", label, amount_usd, fmt)
    hit = _cached(snap, key)
    if hit is None:
        doc = await request.app[DATA].indicators(snap, label, amount_usd)
        if fmt == "csv":
            body = await asyncio.to_thread(lambda: corridor_table(doc).rename(
                INDICATORS_CSV_RENAMED).write_csv().encode())
            meta = csv_headers(label, _sources_used(snap, label, amount_usd),
                               emulated=snap.include_emulated)
        else:
            out = dict(doc)
            out["corridors"] = [_indicators_corridor(c) for c in doc["corridors"]]
            out["non_transparent"] = [_indicators_non_transparent(n)
                                      for n in doc["non_transparent"]]
            out.pop("period")
            out.pop("methodology_version")
            body = dumps(envelope(doc["period"], _sources_used(snap, label, amount_usd),
                                  emulated=snap.include_emulated,
                                  **out))
            meta = {}
        hit = _remember(snap, key, body, meta)
    body, tag, meta = hit
    if fmt == "csv":
        return send_csv(request, body, meta, filename=f"indicators-{label}-{amount_usd}",
                        etag=tag)
    return send(request, body, JSON, etag=tag)


def _sources_used(snap: Snapshot, label: str, amount_usd: int | None = None) -> list[str]:
    """The sources of a period's corridors (at one price point, or at any)."""
    table = snap.corridor_table.filter(pl.col("period") == label)
    if amount_usd is not None:
        table = table.filter(pl.col("amount_usd") == amount_usd)
    return table["sources"].explode().drop_nulls().unique().sort().to_list() or ["rpw"]


# --- /v1/kpis --------------------------------------------------------------------------------


KPIS_PARAMS = INDICATORS_PARAMS
#: What the scorecard measures, said in every answer: the supply, not the payments.
KPIS_SCOPE = ("supply side: the services and quotes sendcost holds, what they offer and "
              "disclose before payment; not the payments made (see docs/METHODOLOGY.md)")


def kpis_document(snap: Snapshot, label: str, amount_usd: int) -> dict[str, Any]:
    """The scorecard of a period (blocking: run in a thread; ``publish.bulletin``'s, the
    bulletin's section and this endpoint one computation)."""
    return g20_scorecard(snap.quotes.lazy(), label, amount_usd)


async def kpis(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, KPIS_PARAMS)
    period, amount_usd = p.period(), p.price_point()
    snap = await _snapshot(request)
    label = period or snap.latest_period(amount_usd=amount_usd)
    if label is None:
        raise not_found("the store has no quotes yet")
    if (label, amount_usd) not in snap.services:
        raise not_found(f"no quotes for {label} at USD {amount_usd}; periods with data: "
                        f"{', '.join(snap.periods) or 'none'}")
    fmt = "csv" if wants_csv(request) else "json"
    key = ("kpis", label, amount_usd, fmt)
    hit = _cached(snap, key)
    if hit is None:
        doc_key = ("kpis", label, amount_usd)
        doc = snap.derived.get(doc_key)
        if doc is None:
            made = await asyncio.to_thread(kpis_document, snap, label, amount_usd)
            doc = snap.keep(doc_key, lambda: made)
        sources = _sources_used(snap, label, amount_usd)
        if fmt == "csv":
            body = await asyncio.to_thread(lambda: scorecard_table(doc).write_csv().encode())
            meta = csv_headers(label, sources, emulated=snap.include_emulated)
        else:
            body = dumps(envelope(
                doc["period"], sources, emulated=snap.include_emulated,
                amount_usd=doc["amount_usd"], scope=KPIS_SCOPE, targets=doc["targets"],
                weekends_only=doc["weekends_only"], **{"global": doc["global"]},
                corridors=[{"from": country_ref(c["source"]), "to": country_ref(c["destination"]),
                            **c} for c in doc["corridors"]]))
            meta = {}
        hit = _remember(snap, key, body, meta)
    body, tag, meta = hit
    if fmt == "csv":
        return send_csv(request, body, meta, filename=f"kpis-{label}-{amount_usd}", etag=tag)
    return send(request, body, JSON, etag=tag)


# --- /v1/postal/benchmark -----------------------------------------------------------------------


POSTAL_PARAMS = frozenset({"period", "amount", "cursor", "limit", INCLUDE})
POSTAL_CSV_COLUMNS = [
    "from", "to", "provider", "firm_type", "product", "transparent", "total_cost_pct",
    "rank", "ranked_services", "corridor_median", "corridor_average", "smart",
    "points_above_median", "cheapest_provider", "cheapest_total_cost_pct", "service_id",
]


def postal_rows(services: pl.DataFrame, corridor_rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Each post-office service of a period against its corridor's market (blocking)."""
    averaged = pl.col("transparent") & pl.col("total_cost_pct").is_not_null()
    ranked = services.with_columns(averaged.alias("_averaged")).with_columns(
        pl.when(pl.col("_averaged")).then(
            pl.col("total_cost_pct").rank("min").over("source_code", "destination_code",
                                                      "_averaged")).alias("rank"),
        pl.col("_averaged").sum().over("source_code", "destination_code")
        .alias("ranked_services"))
    postal = (ranked.filter(pl.col("firm_type").is_in(POSTAL_FIRM_TYPES))
              .join(corridor_rows, on=["source_code", "destination_code"], how="left")
              .sort("source_code", "destination_code", "firm", "product", "service_id"))
    out = []
    for r in postal.iter_rows(named=True):
        total, median = finite(r["total_cost_pct"]), finite(r["median"])
        transparent = bool(r["_averaged"])
        out.append({
            "from": country_ref(r["source_code"]), "to": country_ref(r["destination_code"]),
            "provider": r["firm"], "firm_type": r["firm_type"], "product": r["product"] or None,
            "service_id": r["service_id"], "transparent": transparent,
            "total_cost_pct": total if transparent else None,
            "rank": int(r["rank"]) if r["rank"] is not None else None,
            "ranked_services": int(r["ranked_services"]),
            "corridor_median": median, "corridor_average": finite(r["average"]),
            "smart": finite(r["smart"]),
            "points_above_median": (total - median if transparent and median is not None
                                    else None),
            "cheapest": _cheapest(r["cheapest_firm"], r["cheapest_firm_type"],
                                  r["cheapest_product"], r["cheapest_total_cost"]),
        })
    return out


def _latest_postal_period(snap: Snapshot, amount_usd: int) -> str | None:
    """The latest period with post-office quotes at the price point (kept per snapshot)."""
    return snap.keep(("latest_postal_period", amount_usd), lambda: next(
        (label for label in reversed(snap.periods)
         if (services := snap.services.get((label, amount_usd))) is not None
         and services.filter(pl.col("firm_type").is_in(POSTAL_FIRM_TYPES)).height),
        None))


async def postal_benchmark(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, POSTAL_PARAMS)
    period, amount_usd = p.period(), p.price_point()
    cursor, limit = p.cursor(CURSOR_OFFSET), p.limit()
    snap = await _snapshot(request)
    if period is None:
        label = _latest_postal_period(snap, amount_usd)
        if label is None:
            raise not_found(f"no post-office quotes at USD {amount_usd} in any period")
    else:
        label = period
    if (label, amount_usd) not in snap.services:
        raise not_found(f"no quotes for {label} at USD {amount_usd}; periods with data: "
                        f"{', '.join(snap.periods) or 'none'}")
    key = ("postal_rows", label, amount_usd)
    rows: list[dict[str, Any]] | None = snap.derived.get(key)
    if rows is None:
        corridor_rows = snap.corridor_table.filter(
            pl.col("period") == label, pl.col("amount_usd") == amount_usd).select(
            "source_code", "destination_code", "median", "average", "smart", "cheapest_firm",
            "cheapest_firm_type", "cheapest_product", "cheapest_total_cost")
        rows = await asyncio.to_thread(postal_rows, snap.services[(label, amount_usd)],
                                       corridor_rows)
        snap.derived[key] = rows
    offset = 0 if cursor is None else int(cursor[2:])
    page = rows[offset:offset + limit]
    next_cursor = encode_cursor(f"o:{offset + limit}") if offset + limit < len(rows) else None
    headers = _next_link(request, next_cursor)
    used = _sources_used(snap, label)
    if wants_csv(request):
        flat = []
        for item in page:
            f = {k: item.get(k) for k in POSTAL_CSV_COLUMNS}
            f["from"], f["to"] = item["from"]["alpha3"], item["to"]["alpha3"]
            f["cheapest_provider"] = (item["cheapest"] or {}).get("provider")
            f["cheapest_total_cost_pct"] = (item["cheapest"] or {}).get("total_cost_pct")
            flat.append(f)
        return send_csv(request, to_csv(flat, POSTAL_CSV_COLUMNS),
                        csv_headers(label, used, emulated=snap.include_emulated),
                        filename=f"postal-{label}", headers=headers)
    body = dumps(envelope(label, used, emulated=snap.include_emulated, amount_usd=amount_usd,
                          count=len(rows),
                          next_cursor=next_cursor, services=page))
    return send(request, body, JSON, headers=headers)


# --- the contract, metrics, admin -------------------------------------------------------------


async def openapi_json(request: web.Request) -> web.StreamResponse:
    return send(request, dumps(openapi.document()), JSON)


async def prometheus(request: web.Request) -> web.StreamResponse:
    """Request metrics always; the collection gauges when the store answers. A scrape must
    not fail with the database: the request metrics are what shows the outage."""
    telemetry = request.app[middleware.TELEMETRY]
    # Only the latest run of each source: a source whose run went from "running" to
    # "failed" must not keep its "running" series (labels are set, never unset, otherwise).
    for gauge in (telemetry.run_started, telemetry.run_stored, telemetry.run_quarantined):
        gauge.clear()
    try:
        snap = await request.app[DATA].snapshot()
        telemetry.snapshot_version.set(snap.version)
        runs = await request.app[runtime.STORE].last_runs()
    except StoreUnavailable:  # no snapshot yet, and no store: logged by the data holder
        runs = []
    except STORE_ERRORS as exc:
        # Scraped every few seconds: the outage is logged when it starts, and when it ends.
        if not telemetry.store_unreachable:
            telemetry.store_unreachable = True
            log.warning("metrics: the store is unreachable, collection gauges left out until "
                        "it answers again: %s", str(exc).strip() or type(exc).__name__)
        runs = []
    else:
        if telemetry.store_unreachable:
            telemetry.store_unreachable = False
            log.info("metrics: the store answers again, collection gauges are back")
    for run in runs:
        telemetry.run_started.labels(run["source"], run["status"]).set(
            run["started_at"].timestamp())
        telemetry.run_stored.labels(run["source"]).set(run["quotes_stored"])
        telemetry.run_quarantined.labels(run["source"]).set(run["quotes_quarantined"])
    return web.Response(body=generate_latest(telemetry.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST,
                                 "Cache-Control": "no-store"})


def _authorise(request: web.Request) -> None:
    token = request.app[runtime.CONFIG].admin_token
    if token is None:
        raise not_found("admin actions are off: no SENDCOST_ADMIN_TOKEN is set")
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise Problem(401, "admin actions need the header Authorization: Bearer <token>",
                      headers={"WWW-Authenticate": 'Bearer realm="sendcost-admin"'})


ADMIN_COLLECT_PARAMS = frozenset({"source"})
ADMIN_BULLETIN_PARAMS = frozenset({"period"})


def _running(scheduler: Any, job: Any) -> bool:
    """Whether a run of ``job`` is under way, as its own job or as the catch-up run a
    crontab source gets after a start (``collector.schedule``): triggered now, the scheduler
    would skip it (``max_instances``), or collect the same source twice at once.

    APScheduler 3 has no public count of a job's running instances; its executor's count is
    the one ``max_instances`` is checked against, so that is the one read here."""
    for job_id in (job.id, f"catch-up:{job.id}"):
        try:
            executor = scheduler._lookup_executor(job.executor)
            if executor._instances.get(job_id, 0) > 0:
                return True
        except (AttributeError, KeyError):  # not an APScheduler 3 executor: nothing known
            return False
    return False


async def admin_collect(request: web.Request) -> web.StreamResponse:
    _authorise(request)
    p = Params(request.query, ADMIN_COLLECT_PARAMS)
    source = p.raw("source")
    scheduler = request.app.get(runtime.SCHEDULER)
    jobs = [j for j in (scheduler.get_jobs() if scheduler else [])
            if j.id.startswith("collect") and (source is None or source in j.id.split(":"))]
    if not jobs:
        raise not_found("no collection job is scheduled" +
                        (f" for source {source!r}" if source else ""))
    running = sorted(j.id for j in jobs if _running(scheduler, j))
    idle = [j for j in jobs if j.id not in running]
    if not idle:
        raise Problem(409, f"{', '.join(running)}: already running; not triggered again (a "
                           "job runs one at a time): ask again when the run has ended",
                      jobs=running)
    now = dt.datetime.now(dt.UTC)
    for job in idle:
        job.modify(next_run_time=now)
    return web.json_response({"status": "triggered", "jobs": sorted(j.id for j in idle),
                              "already_running": running, "at": now.isoformat()},
                             status=202, headers={"Cache-Control": "no-store"})


async def admin_bulletin(request: web.Request) -> web.StreamResponse:
    _authorise(request)
    p = Params(request.query, ADMIN_BULLETIN_PARAMS)
    period = p.period()
    if period is None:
        raise bad_parameter("period", "period is required: the quarter (2014Q2) or month "
                                      "(2026-11) whose bulletin to publish")
    try:
        result = await publish_bulletin(request.app, period)
    except NoData as exc:
        raise not_found(str(exc)) from None
    # Where GET /v1/bulletins serves it, and its folder relative to the data folder: the
    # server's own paths are none of the client's business.
    published = result["period"]
    return web.json_response({"status": "published", "period": published,
                              "url": f"/v1/bulletins/{published}/",
                              "folder": f"bulletins/{published}"},
                             status=202, headers={"Cache-Control": "no-store"})


# --- wiring -----------------------------------------------------------------------------------


def _collection(app: web.Application, path: str, handler: Handler, name: str) -> None:
    """A collection endpoint and its CSV twin."""
    middleware.get(app, path, handler, name=name)
    middleware.get(app, path + ".csv", handler, name=name + "_csv")


STATIC = Path(__file__).parent / "static"


async def static_file(request: web.Request) -> web.StreamResponse:
    """The page's few static files (a stylesheet), read once and kept, with an ETag."""
    name = request.match_info["name"]
    files = request.app[STATIC_FILES]
    if name not in files:
        path = STATIC / name
        if not (path.is_file() and path.parent == STATIC and path.suffix in STATIC_TYPES):
            raise not_found(f"no static file {name[:80]!r}")
        files[name] = path.read_bytes()
    return send(request, files[name], STATIC_TYPES[Path(name).suffix],
                cache_control="public, max-age=3600")


STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
STATIC_FILES = web.AppKey("publish_static_files", dict)


def setup_routes(app: web.Application) -> None:
    """The pipeline, routes and snapshot of the public API and page (called by wiring, which
    adds its own guarded routes and then ``middleware.finish``)."""
    from publish import page

    middleware.install(app, rate_limit_per_minute=app[runtime.CONFIG].api.rate_limit_per_minute)
    app[STATIC_FILES] = {}
    app[RECEIVE_UNITS] = {}
    app.cleanup_ctx.append(data_ctx)
    _collection(app, "/v1/compare", compare, "compare")
    _collection(app, "/v1/corridors", corridors_list, "corridors")
    # The twin first: "/v1/corridors/{pair}" would take "USA-MEX.csv" for a corridor.
    middleware.get(app, "/v1/corridors/{pair}.csv", corridor_detail, name="corridor_csv")
    middleware.get(app, "/v1/corridors/{pair}", corridor_detail, name="corridor")
    _collection(app, "/v1/corridors/{pair}/history", corridor_history, "corridor_history")
    _collection(app, "/v1/indicators", indicators, "indicators")
    _collection(app, "/v1/kpis", kpis, "kpis")
    _collection(app, "/v1/postal/benchmark", postal_benchmark, "postal_benchmark")
    middleware.get(app, "/v1/openapi.json", openapi_json, name="openapi")
    middleware.get(app, "/metrics", prometheus, name="metrics")
    middleware.post(app, "/v1/admin/collect", admin_collect, name="admin_collect")
    middleware.post(app, "/v1/admin/bulletin", admin_bulletin, name="admin_bulletin")
    middleware.get(app, "/", page.home, name="page")
    middleware.get(app, "/static/{name}", static_file, name="static")
    setup_bulletin_routes(app)
