"""``/v1/postal/summary``: each post against its market, per corridor or per operator.

The question a post asks ("how do our prices compare with the market in each of our
corridors, and is the gap closing?"), answered from the snapshot's services frames by
``metrics.postal.summary_of_services``: the market leaves out every service a post sells
or pays out. ``?by=corridor`` (default) gives one row per post, corridor and role;
``?by=operator`` one per post and role. Rows carry exactly the columns of
``sendcost export postal --by corridor|operator`` (``SUMMARY_COLUMNS`` /
``OPERATOR_COLUMNS``), in the JSON and in the CSV twin (``/v1/postal/summary.csv``): they
are the models ``publish.contract_ops.PostalSummaryRow`` / ``PostalOperatorRow``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, cast

import polars as pl
from aiohttp import web

from metrics.postal import (
    post_role,
    postal_summary_by_operator,
    previous_period,
    service_provenance,
    summary_of_services,
)
from publish.api.conventions import (
    INCLUDE,
    JSON,
    csv_headers,
    header,
    send_csv,
    snapshot_of,
    wants_csv,
)
from publish.contract import encode, to_csv
from publish.contract_ops import (
    PostalOperatorRow,
    PostalSummaryByCorridor,
    PostalSummaryByOperator,
    PostalSummaryRow,
)
from publish.data import Snapshot
from publish.params import Params
from publish.problems import not_found
from publish.responses import send

PARAMS = frozenset({"period", "amount", "by", INCLUDE})
BY = ("corridor", "operator")
#: Said in every answer: what the post is measured against.
MARKET = "each corridor's transparent services that no post sells or pays out"


def _latest(snap: Snapshot, amount_usd: int) -> str | None:
    """The latest period with a post's services at the price point."""
    return next((label for label in reversed(snap.periods)
                 if (s := snap.services.get((label, amount_usd))) is not None
                 and s.filter(post_role().is_not_null()).height), None)


Row = PostalSummaryRow | PostalOperatorRow


def _finite(value: Any) -> Any:
    """A cell as JSON shows it: NaN and infinities are null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def summary_rows(snap: Snapshot, label: str, amount_usd: int, by: str
                 ) -> tuple[str | None, list[Row]]:
    """(the previous period compared with, the rows) — blocking: run in a thread."""
    previous = previous_period([p for p in snap.periods if (p, amount_usd) in snap.services],
                               label)
    before = snap.services.get((previous, amount_usd)) if previous else None
    estimates = pl.LazyFrame({"service_id": snap.estimates}, schema={"service_id": pl.String})
    summary = summary_of_services(
        snap.services[(label, amount_usd)].lazy(), period=label,
        before=before.lazy() if before is not None else None,
        previous=previous if before is not None else None, estimates=estimates,
        provenance=service_provenance(snap.quotes.lazy(), period=label,
                                      amount_usd=amount_usd))
    frame = (summary if by == "corridor" else postal_summary_by_operator(summary)).collect()
    model: type[Row] = PostalSummaryRow if by == "corridor" else PostalOperatorRow
    rows = [model(**{k: _finite(v) for k, v in r.items()}) for r in frame.iter_rows(named=True)]
    return (previous if before is not None else None), rows


async def postal_summary(request: web.Request) -> web.StreamResponse:
    p = Params(request.query, PARAMS)
    period, amount_usd = p.period(), p.price_point()
    by = p.choice("by", BY, default="corridor")
    assert by is not None
    snap = await snapshot_of(request)
    label = period or _latest(snap, amount_usd)
    if label is None:
        raise not_found(f"no post-office services at USD {amount_usd} in any period")
    if (label, amount_usd) not in snap.services:
        raise not_found(f"no quotes for {label} at USD {amount_usd}; periods with data: "
                        f"{', '.join(snap.periods) or 'none'}")
    previous, rows = await asyncio.to_thread(
        snap.keep, ("postal_summary", label, amount_usd, by),
        lambda: summary_rows(snap, label, amount_usd, by))
    sources = sorted({s for r in rows for s in (r.sources or "").split()}) or ["rpw"]
    model: type[Row] = PostalSummaryRow if by == "corridor" else PostalOperatorRow
    if wants_csv(request):
        return send_csv(request, to_csv(model, rows),
                        csv_headers(label, sources, emulated=snap.include_emulated),
                        filename=f"postal-summary-{label}-by-{by}")
    head = {**header(label, sources, emulated=snap.include_emulated),
            "amount_usd": amount_usd, "previous_period": previous, "market": MARKET,
            "count": len(rows), "columns": list(model.csv_columns)}
    # summary_rows made the rows of ``model``, the one ``by`` names.
    answer: PostalSummaryByCorridor | PostalSummaryByOperator = (
        PostalSummaryByCorridor(**head, by="corridor",
                                rows=cast(list[PostalSummaryRow], rows))
        if by == "corridor" else
        PostalSummaryByOperator(**head, by="operator",
                                rows=cast(list[PostalOperatorRow], rows)))
    body = encode(answer)
    return send(request, body, JSON)


def setup_postal_summary_routes(app: web.Application) -> None:
    """``/v1/postal/summary`` and its CSV twin."""
    app.router.add_get("/v1/postal/summary", postal_summary, name="postal_summary")
    app.router.add_get("/v1/postal/summary.csv", postal_summary, name="postal_summary_csv")
