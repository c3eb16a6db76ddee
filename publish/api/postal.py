"""``/v1/postal/benchmark``: what posts charge beside the corridors they serve, and its
CSV twin."""

from __future__ import annotations

import asyncio

import polars as pl
from aiohttp import web

from publish.api.conventions import (
    INCLUDE,
    JSON,
    country,
    csv_headers,
    header,
    next_link,
    no_costed_services,
    send_csv,
    snapshot_of,
    wants_csv,
)
from publish.api.summaries import cheapest_named, sources_used
from publish.contract import PostalBenchmark, PostalService, encode, to_csv
from publish.data import POSTAL_FIRM_TYPES, Snapshot, finite
from publish.params import CURSOR_OFFSET, Params, encode_cursor
from publish.problems import not_found
from publish.responses import send

POSTAL_PARAMS = frozenset({"period", "amount", "cursor", "limit", INCLUDE})
def postal_rows(services: pl.DataFrame, corridor_rows: pl.DataFrame) -> list[PostalService]:
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
        out.append(PostalService(
            from_=country(r["source_code"]), to=country(r["destination_code"]),
            provider=r["firm"], firm_type=r["firm_type"], product=r["product"] or None,
            service_id=r["service_id"], transparent=transparent,
            total_cost_pct=total if transparent else None,
            rank=int(r["rank"]) if r["rank"] is not None else None,
            ranked_services=int(r["ranked_services"]),
            corridor_median=median, corridor_average=finite(r["average"]),
            smart=finite(r["smart"]),
            points_above_median=(total - median if transparent and median is not None
                                 else None),
            cheapest=cheapest_named(r["cheapest_firm"], r["cheapest_firm_type"],
                                    r["cheapest_product"], r["cheapest_total_cost"]),
        ))
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
    snap = await snapshot_of(request)
    if period is None:
        label = _latest_postal_period(snap, amount_usd)
        if label is None:
            raise not_found(f"no post-office quotes at USD {amount_usd} in any period")
    else:
        label = period
    if (label, amount_usd) not in snap.services:
        raise no_costed_services(snap, label, amount_usd)
    key = ("postal_rows", label, amount_usd)
    rows: list[PostalService] | None = snap.derived.get(key)
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
    headers = next_link(request, next_cursor)
    used = sources_used(snap, label)
    if wants_csv(request):
        return send_csv(request, to_csv(PostalService, page),
                        csv_headers(label, used, emulated=snap.emulated_in(used)),
                        filename=f"postal-{label}", headers=headers)
    body = encode(PostalBenchmark(**header(label, used, emulated=snap.emulated_in(used)),
                                  amount_usd=amount_usd, count=len(rows),
                                  next_cursor=next_cursor, services=page))
    return send(request, body, JSON, headers=headers)
