"""``/v1/corridors``, ``/v1/corridors/{pair}`` and its history: the corridors and their
summaries, with their CSV twins."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import polars as pl
from aiohttp import web

from corridors.reference import REGION_NAMES, countries
from corridors.types import FirmType
from publish.api.conventions import (
    INCLUDE,
    JSON,
    country,
    csv_headers,
    header,
    next_link,
    receive_units,
    send_csv,
    snapshot_of,
    wants_csv,
)
from publish.api.summaries import corridor_pair, corridor_periods, corridor_summary
from publish.contract import (
    Corridor,
    CorridorItem,
    Corridors,
    History,
    HistoryItem,
    Links,
    Region,
    Service,
    encode,
    to_csv,
)
from publish.data import CAVEATS, Snapshot, period_key
from publish.params import CURSOR_CORRIDOR, CURSOR_PERIOD, Params, encode_cursor
from publish.problems import not_found
from publish.responses import send

CORRIDORS_PARAMS = frozenset({"from", "to", "above", "region", "firm_type", "amount", "cursor",
                              "limit", INCLUDE})
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


def _corridor_item(row: dict[str, Any]) -> CorridorItem:
    dst = countries().get(row["destination_code"])
    region = dst.region if dst else None
    summary = corridor_summary(row)
    return CorridorItem(
        from_=country(row["source_code"]), to=country(row["destination_code"]),
        period=row["period"], amount_usd=row["amount_usd"],
        first_collected=_when(row.get("first_collected")),
        last_collected=_when(row.get("last_collected")),
        data_kinds=row.get("data_kinds") or [],
        average=summary.average, smart=summary.smart, median=summary.median,
        services=summary.services, transparent_services=summary.transparent_services,
        above_5=summary.above_5, above_10=summary.above_10,
        too_few_services=summary.too_few_services,
        no_transparent_service=summary.no_transparent_service,
        points_above_3=summary.points_above_3, points_above_5=summary.points_above_5,
        cheapest=summary.cheapest, cheapest_leaves_out=summary.cheapest_leaves_out,
        caveats=summary.caveats, receiving_region=None if region is None else Region(
            code=region, name=REGION_NAMES.get(region)),
        sources=row["sources"] or [],
    )


async def corridors_list(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, CORRIDORS_PARAMS)
    src, dst = p.country("from"), p.country("to")
    above = p.number("above", low=-100, high=100)
    region = p.choice("region", tuple(REGION_NAMES))
    firm_type = p.choice("firm_type", tuple(x.value for x in FirmType))
    amount_usd = p.price_point()
    cursor, limit = p.cursor(CURSOR_CORRIDOR), p.limit()
    snap = await snapshot_of(request)
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
    headers = next_link(request, next_cursor)
    # Each row carries its own period and collection dates; the answer names one period
    # only when every row is from it (a mix of 2014Q2 survey rows and this month's quotes
    # is no month's figure): otherwise period is null and periods counts the rows of each.
    periods = Counter(r["period"] for r in selected)
    single = next(iter(periods)) if len(periods) == 1 else None
    srcs = {s for r in page for s in (r["sources"] or [])}
    emulated = snap.emulated_in(srcs)
    if wants_csv(request):
        body = to_csv(CorridorItem, items)
        meta = csv_headers(single, srcs, emulated=emulated)
        if len(periods) > 1:
            meta["Sendcost-Periods"] = ", ".join(
                f"{k}={v}" for k, v in sorted(periods.items(), key=lambda kv: period_key(kv[0])))
        return send_csv(request, body, meta, filename="corridors", headers=headers)
    body = encode(Corridors(
        **header(single, srcs, emulated=emulated), amount_usd=amount_usd,
        periods={k: periods[k] for k in sorted(periods, key=period_key)},
        count=len(selected), next_cursor=next_cursor,
        caveats_explained={f: CAVEATS[f] for f in sorted({f for i in items for f in i.caveats})},
        corridors=items))
    return send(request, body, JSON, headers=headers)


CORRIDOR_PARAMS = frozenset({"amount", "period", INCLUDE})


async def corridor_detail(request: web.Request) -> web.StreamResponse:
    src, dst = corridor_pair(request)
    p = Params(request.query, CORRIDOR_PARAMS)
    amount_usd, period = p.price_point(), p.period()
    snap = await snapshot_of(request)
    by_period = corridor_periods(snap, src, dst)
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
        return send_csv(request, to_csv(Service, [Service(**e) for e in
                                                  point.services + point.non_transparent]),
                        csv_headers(label, point.sources, emulated=snap.emulated_in(point.sources)),
                        filename=f"{src}-{dst}-{label}-{amount_usd}")
    row = snap.corridor_row(label, amount_usd, src, dst)
    base = f"/v1/corridors/{src}-{dst}"
    body = encode(Corridor(
        **header(label, point.sources, emulated=snap.emulated_in(point.sources)),
        from_=country(src), to=country(dst),
        amount_usd=amount_usd, send_amount=point.send_amount, send_currency=point.send_currency,
        periods=labels, indicators=corridor_summary(row), ranked_by=point.ranked_by,
        services=[Service(**e) for e in point.services],
        non_transparent=[Service(**e) for e in point.non_transparent],
        links=Links(history=f"{base}/history?amount={amount_usd}",
                    compare=f"/v1/compare?from={src}&to={dst}&amount={point.send_amount:g}")))
    return send(request, body, JSON)


HISTORY_PARAMS = frozenset({"amount", "cursor", "limit", INCLUDE})
async def corridor_history(request: web.Request) -> web.StreamResponse:
    src, dst = corridor_pair(request)
    p = Params(request.query, HISTORY_PARAMS)
    amount_usd, cursor, limit = p.price_point(), p.cursor(CURSOR_PERIOD), p.limit()
    snap = await snapshot_of(request)
    corridor_periods(snap, src, dst)
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
        s = corridor_summary(r)
        items.append(HistoryItem(
            period=r["period"], amount_usd=r["amount_usd"],
            first_collected=_when(r["first_collected"]),
            last_collected=_when(r["last_collected"]), data_kinds=r["data_kinds"] or [],
            average=s.average, smart=s.smart, median=s.median, services=s.services,
            transparent_services=s.transparent_services, above_5=s.above_5,
            above_10=s.above_10, too_few_services=s.too_few_services,
            no_transparent_service=s.no_transparent_service, caveats=s.caveats,
            points_above_5=s.points_above_5, sources=r["sources"] or []))
    headers = next_link(request, next_cursor)
    latest = items[-1].period if items else None
    srcs = {s for i in items for s in i.sources}
    if wants_csv(request):
        return send_csv(request, to_csv(HistoryItem, items),
                        csv_headers(latest, srcs, emulated=snap.emulated_in(srcs)),
                        filename=f"{src}-{dst}-history",
                        headers=headers)
    body = encode(History(**header(latest, srcs, emulated=snap.emulated_in(srcs)),
                          from_=country(src), to=country(dst), amount_usd=amount_usd,
                          next_cursor=next_cursor, history=items))
    return send(request, body, JSON, headers=headers)
