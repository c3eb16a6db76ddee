"""``/v1/kpis``: the G20 remittance scorecard of a period, and its CSV twin."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from publish.api.conventions import (
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
from publish.api.indicators import INDICATORS_PARAMS
from publish.api.summaries import sources_used
from publish.bulletin import g20_scorecard
from publish.contract import Kpis, KpisCorridor, Scorecard, Targets, encode, to_csv
from publish.data import Snapshot
from publish.params import Params
from publish.problems import not_found
from publish.responses import send

KPIS_PARAMS = INDICATORS_PARAMS
#: What the scorecard measures, said in every answer: the supply, not the payments.
KPIS_SCOPE = ("supply side: the services and quotes sendcost holds, what they offer and "
              "disclose before payment; not the payments made (see docs/METHODOLOGY.md)")


def kpis_document(snap: Snapshot, label: str, amount_usd: int) -> dict[str, Any]:
    """The scorecard of a period (blocking: run in a thread; ``publish.bulletin``'s, the
    bulletin's section and this endpoint one computation)."""
    return g20_scorecard(snap.quotes.lazy(), label, amount_usd)


def kpis_model(doc: dict[str, Any], sources: list[str], *, emulated: bool) -> Kpis:
    """The scorecard document (``kpis_document``) as the API's ``Kpis``."""
    return Kpis(
        **header(doc["period"], sources, emulated=emulated),
        amount_usd=doc["amount_usd"], scope=KPIS_SCOPE, targets=Targets(**doc["targets"]),
        weekends_only=doc["weekends_only"], global_=Scorecard(**doc["global"]),
        corridors=[KpisCorridor(from_=country(c["source"]), to=country(c["destination"]), **c)
                   for c in doc["corridors"]])


async def kpis(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, KPIS_PARAMS)
    period, amount_usd = p.period(), p.price_point()
    snap = await snapshot_of(request)
    label = period or snap.latest_period(amount_usd=amount_usd)
    if label is None:
        raise not_found("the store has no quotes yet")
    if (label, amount_usd) not in snap.services:
        raise not_found(f"no quotes for {label} at USD {amount_usd}; periods with data: "
                        f"{', '.join(snap.periods) or 'none'}")
    fmt = "csv" if wants_csv(request) else "json"
    key = ("kpis", label, amount_usd, fmt)
    hit = cached(snap, key)
    if hit is None:
        doc_key = ("kpis", label, amount_usd)
        doc = snap.derived.get(doc_key)
        if doc is None:
            made = await asyncio.to_thread(kpis_document, snap, label, amount_usd)
            doc = snap.keep(doc_key, lambda: made)
        sources = sources_used(snap, label, amount_usd)
        model = kpis_model(doc, sources, emulated=snap.include_emulated)
        if fmt == "csv":
            body = await asyncio.to_thread(to_csv, KpisCorridor, model.corridors, model)
            meta = csv_headers(label, sources, emulated=snap.include_emulated)
        else:
            body = encode(model)
            meta = {}
        hit = remember(snap, key, body, meta)
    body, tag, meta = hit
    if fmt == "csv":
        return send_csv(request, body, meta, filename=f"kpis-{label}-{amount_usd}", etag=tag)
    return send(request, body, JSON, etag=tag)
