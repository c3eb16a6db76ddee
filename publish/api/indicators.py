"""``/v1/indicators``: a period's SDG 10.c indicators, and their CSV twin."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from publish.api.conventions import (
    INCLUDE,
    JSON,
    cached,
    country,
    csv_headers,
    header,
    remember,
    send_csv,
    snapshot_of,
    wants_csv,
)
from publish.api.summaries import cheapest_named, sources_used
from publish.contract import (
    Average,
    Indicators,
    IndicatorsCorridor,
    NonTransparent,
    ServiceCount,
    ShareDenominator,
    WeightCoverage,
    encode,
    to_csv,
)
from publish.data import DATA, finite
from publish.params import Params
from publish.problems import not_found
from publish.responses import send

INDICATORS_PARAMS = frozenset({"period", "amount", INCLUDE})


def _indicators_corridor(c: dict[str, Any]) -> IndicatorsCorridor:
    """A corridor of the metrics document as the API shows it: country objects beside the
    codes, and its cheapest service named as in every other endpoint."""
    cheapest = c["cheapest"]
    return IndicatorsCorridor(
        from_=country(c["source"]), to=country(c["destination"]),
        **{k: v for k, v in c.items() if k != "cheapest"},
        cheapest=None if cheapest is None else cheapest_named(
            cheapest["firm"], cheapest["firm_type"], cheapest["product"],
            cheapest["total_cost"]))


def _indicators_non_transparent(n: dict[str, Any]) -> NonTransparent:
    """A service that does not disclose its rate, as the API shows it (country objects,
    ``provider``)."""
    return NonTransparent(from_=country(n["source"]), to=country(n["destination"]),
                          source=n["source"], destination=n["destination"],
                          provider=n["firm"], fee_pct=finite(n["fee_pct"]))


def indicators_model(doc: dict[str, Any], sources: list[str], *,
                     emulated: bool) -> Indicators:
    """``metrics.indicators``' document of a period as the API's ``Indicators``."""
    averages = ("by_firm_type", "by_receiving_region", "by_payment_instrument",
                "by_access_point", "by_pay_out")
    coverage = doc["weighted_average_coverage"]
    by: dict[str, Any] = {k: {name: Average(**a) for name, a in doc[k].items()}
                          for k in averages}
    rest: dict[str, Any] = {k: v for k, v in doc.items()
            if k not in ("period", "methodology_version", "services", "corridors",
                         "non_transparent", "weighted_average_coverage",
                         "share_denominators", *averages)}
    return Indicators(
        **header(doc["period"], sources, emulated=emulated),
        **rest,
        services=ServiceCount(**doc["services"]),
        share_denominators={k: ShareDenominator(**d)
                            for k, d in doc["share_denominators"].items()},
        corridors=[_indicators_corridor(c) for c in doc["corridors"]],
        non_transparent=[_indicators_non_transparent(n) for n in doc["non_transparent"]],
        weighted_average_coverage=None if coverage is None else WeightCoverage(**coverage),
        **by,
    )


async def indicators(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, INDICATORS_PARAMS)
    period, amount_usd = p.period(), p.price_point()
    snap = await snapshot_of(request)
    label = period or snap.latest_period(amount_usd=amount_usd)
    if label is None:
        raise not_found("the store has no quotes yet")
    if (label, amount_usd) not in snap.services:  # the services indicators are made of
        raise not_found(f"no quotes for {label} at USD {amount_usd}; periods with data: "
                        f"{', '.join(snap.periods) or 'none'}")
    fmt = "csv" if wants_csv(request) else "json"
    key = ("indicators", label, amount_usd, fmt)
    hit = cached(snap, key)
    if hit is None:
        doc = await request.app[DATA].indicators(snap, label, amount_usd)
        sources = sources_used(snap, label, amount_usd)
        model = indicators_model(doc, sources, emulated=snap.include_emulated)
        if fmt == "csv":
            body = await asyncio.to_thread(to_csv, IndicatorsCorridor, model.corridors, model)
            meta = csv_headers(label, sources, emulated=snap.include_emulated)
        else:
            body = encode(model)
            meta = {}
        hit = remember(snap, key, body, meta)
    body, tag, meta = hit
    if fmt == "csv":
        return send_csv(request, body, meta, filename=f"indicators-{label}-{amount_usd}",
                        etag=tag)
    return send(request, body, JSON, etag=tag)
