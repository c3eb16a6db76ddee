"""``/v1/compare``: the services of one corridor at one amount, ranked, and its CSV twin."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import msgspec
from aiohttp import web

from corridors.types import PayIn, PayOut
from publish.api.conventions import (
    INCLUDE,
    JSON,
    cached,
    country,
    csv_headers,
    header,
    include_emulated,
    receive_units,
    remember,
    remember_entry,
    send_csv,
    wants_csv,
)
from publish.api.summaries import corridor_periods, corridor_summary
from publish.contract import (
    Compare,
    Filters,
    Service,
    encode,
    encode_value,
    to_csv,
)
from publish.data import CAVEATS, DATA, Cached, CorridorPeriods, PricePoint, Snapshot, period_key
from publish.params import Params
from publish.problems import not_found, unprocessable
from publish.responses import etag_of, send

COMPARE_PARAMS = frozenset({"from", "to", "amount", "currency", "payin", "payout", "period",
                            INCLUDE})
#: The columns of compare's CSV twin (and of a corridor's): its services'.
SERVICE_CSV_COLUMNS = list(Service.csv_columns)


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


def default_period(by_period: CorridorPeriods) -> str:
    """The period a comparison shows when none is asked: the corridor's latest with a total
    cost for some service. A newer one holding only what cannot be costed (a post's
    published tariff with no exchange rate: a fee alone) would give a migrant "no service
    can be ranked" while the survey priced the corridor; its latest of all when none has a
    cost (it says so itself). ``?period=`` still shows any."""
    return max(by_period.costed() or by_period, key=period_key)


def compare_model(snap: Snapshot, src: str, dst: str, amount: Decimal,
                  currency: str | None, payin: str | None, payout: str | None,
                  period: str | None) -> Compare:
    """The comparison, as models (for the page and the CSV twin)."""
    return _compare(snap, src, dst, amount, currency, payin, payout, period, for_json=False)[0]


def compare_json(snap: Snapshot, src: str, dst: str, amount: Decimal, currency: str | None,
                 payin: str | None, payout: str | None, period: str | None) -> tuple[bytes, str]:
    """The comparison's JSON and its ETag. The ETag is a digest of the answer without its
    lists of services, which stand in it as their own digest (made once per price point):
    it changes whenever a byte of the answer does, and an answer of 80 KB is not hashed
    whole for each amount asked (``publish.responses.etag_of`` on the whole body took as long
    as making the answer)."""
    doc, part = _compare(snap, src, dst, amount, currency, payin, payout, period,
                         for_json=True)
    tagged = msgspec.structs.replace(doc, services=cast(list[Service], part.services_digest),
                                     non_transparent=_NO_SERVICES)
    return encode(doc), etag_of(encode(tagged))


_NO_SERVICES = cast(list[Service], msgspec.Raw(b"null"))


def _compare(snap: Snapshot, src: str, dst: str, amount: Decimal, currency: str | None,
             payin: str | None, payout: str | None, period: str | None, *,
             for_json: bool) -> tuple[Compare, _PointPart]:
    """The comparison and its price point's part. ``for_json``: its two lists of services
    are their JSON already (``msgspec.Raw``, encoded once per price point and filter), for
    ``encode`` only."""
    by_period = corridor_periods(snap, src, dst)
    if period is not None and period not in by_period:
        raise not_found(f"no quotes for the corridor {src} → {dst} in {period}; it has "
                        f"{', '.join(sorted(by_period, key=period_key))}",
                        corridor=f"{src}-{dst}")
    label = period or default_period(by_period)
    points = by_period[label]
    send_currency = points[0].send_currency
    if currency is not None and currency not in (send_currency, "USD"):
        raise unprocessable("currency", f"currency must be the sending currency of "
                                        f"{src} → {dst} ({send_currency}) or USD, not {currency}")
    by_usd = currency == "USD" and send_currency != "USD"
    point = _nearest(points, amount, by_usd)
    part = _point_part(snap, src, dst, label, points, point, by_usd, payin, payout)
    priced = part.priced
    exact = priced == amount
    unit = currency or send_currency
    return Compare(
        **(part.json_fields if for_json else part.fields),
        amount=float(amount),
        currency=unit,
        approximate=not exact,
        approximation=None if exact else (
            f"not priced at {amount:f} {unit}: these are the quotes at the nearest priced "
            f"amount, {priced.normalize():f} {unit}, unscaled"),
    ), part


@dataclass(frozen=True, slots=True)
class _PointPart:
    """What a comparison shows of one price point under one filter, whatever amount was
    asked: the same for every amount nearest to that point. Only the amount's own fields
    (``amount``, ``currency``, ``approximate``, ``approximation``) are made per answer."""

    #: The priced amount, in the currency the amount was asked in.
    priced: Decimal
    #: The rest of ``Compare``'s fields: for the models (the page, the CSV twin) and with
    #: the lists of services as their JSON (``msgspec.Raw``, as ``encode`` writes them).
    fields: dict[str, Any]
    json_fields: dict[str, Any]
    #: A digest of the two lists' JSON, standing for them in the answer's ETag.
    services_digest: str


#: How many price points × filters a snapshot keeps made (past it, the oldest leaves).
POINT_PARTS_KEPT = 4096


def _point_part(snap: Snapshot, src: str, dst: str, label: str, points: list[PricePoint],
                point: PricePoint, by_usd: bool, payin: str | None,
                payout: str | None) -> _PointPart:
    """The part of a comparison that depends on the price point and the filters only, made
    once per snapshot: amounts seldom asked (as migrants type them) share it with every
    other amount nearest the same point, and only the amount's own fields are made anew."""
    parts: OrderedDict[tuple[Any, ...], _PointPart] = snap.keep(("compare-parts",),
                                                                OrderedDict)
    key = (src, dst, label, point.send_amount, point.amount_usd, by_usd, payin, payout)
    part = parts.get(key)
    if part is not None:
        return part
    row = snap.corridor_row(label, point.amount_usd, src, dst)
    services = _filtered(point.services, payin, payout, True)
    apart = _filtered(point.non_transparent, payin, payout, False)
    srcs = frozenset({e["source"] for e in services + apart} or point.sources)
    flagged = sorted({f for e in services + apart for f in e["flags"]})
    ranked = [Service(**e) for e in services]
    listed = [Service(**e) for e in apart]
    priced = Decimal(point.amount_usd) if by_usd else Decimal(repr(point.send_amount))
    fields = dict(
        **header(label, srcs, emulated=snap.emulated_in(srcs)),
        from_=country(src), to=country(dst),
        send_currency=point.send_currency,
        priced_amount=float(priced),
        priced_send_amount=point.send_amount,
        priced_amount_usd=point.amount_usd,
        priced_amounts=[p.send_amount for p in points],
        filters=Filters(payin=payin, payout=payout,
                        note=_filter_note(point.services + point.non_transparent, payin,
                                          payout)),
        corridor=corridor_summary(row),
        ranked_by=point.ranked_by,
        # What each flag on a service below means; flagged services keep their rank,
        # marked, and the corridor's "cheapest" leaves them out.
        flags_explained={f: CAVEATS[f] for f in flagged},
        services=ranked, non_transparent=listed)
    ranked_json, listed_json = encode_value(ranked), encode_value(listed)
    digest = hashlib.sha256(b"%d:%b%b" % (len(ranked_json), ranked_json, listed_json))
    part = _PointPart(
        priced=priced, fields=fields,
        json_fields={**fields, "services": msgspec.Raw(ranked_json),
                     "non_transparent": msgspec.Raw(listed_json)},
        services_digest=digest.hexdigest())
    while len(parts) >= POINT_PARTS_KEPT:
        parts.popitem(last=False)
    parts[key] = part
    return part


def compare_document(snap: Snapshot, src: str, dst: str, amount: Decimal,
                     currency: str | None, payin: str | None, payout: str | None,
                     period: str | None) -> dict[str, Any]:
    """``compare_model`` as plain dicts and lists, keyed as its JSON (for the page)."""
    return cast(dict[str, Any], msgspec.to_builtins(
        compare_model(snap, src, dst, amount, currency, payin, payout, period)))


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
        hit = remember_entry(snap, raw_key, compare_body(request, snap, fmt))
    body, tag, headers = hit
    if fmt == "csv":
        return send_csv(request, body, headers, filename="compare", etag=tag)
    return send(request, body, JSON, etag=tag)


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
    hit = cached(snap, key)
    if hit is None:
        if fmt == "csv":
            doc = compare_model(snap, src, dst, amount, currency, payin, payout, period)
            hit = remember(snap, key, to_csv(Service, doc.services + doc.non_transparent),
                           csv_headers(doc.period, [s.name for s in doc.sources],
                                       emulated=snap.emulated_in(s.name for s in doc.sources)))
        else:
            body, tag = compare_json(snap, src, dst, amount, currency, payin, payout, period)
            hit = remember_entry(snap, key, (body, tag, {}))
    return hit
