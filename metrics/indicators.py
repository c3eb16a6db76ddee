"""The full indicators document of one period and price point (``sendcost indicators``).

Keys are a contract (documented in docs/indicators.md): percentages in percent, unrounded,
null where undefined. The per-service costs are computed once (the only pass over the
quotes); every aggregate then runs on that small services frame, all in one
``collect_all``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from corridors.errors import NoData
from corridors.periods import parse_period
from metrics import aggregates as agg
from metrics import corridors as cor
from metrics import instruments as ins
from metrics import kinds
from metrics.services import period_labels, services_in_period

#: Top-level keys of the document, in order.
DOCUMENT_KEYS = (
    "period", "amount_usd", "methodology_version", "services", "global_average",
    "weighted_average", "smart_average", "g20_sending_average", "g8_sending_average",
    "g20_receiving_average", "by_firm_type", "by_receiving_region",
    "share_corridors_above_5", "share_corridors_above_10", "share_services_below_3",
    "share_denominators", "corridors", "cheapest_leaves_out", "non_transparent",
    "weighted_average_coverage",
    "by_payment_instrument", "by_access_point", "by_pay_out",
)

#: Columns of ``corridor_table``, in order.
TABLE_COLUMNS = (
    "period", "amount_usd", "source", "destination", "average", "services",
    "transparent_services", "smart", "above_5", "above_10", "too_few_services",
    "no_transparent_service", "cheapest_firm", "cheapest_firm_type", "cheapest_product",
    "cheapest_total_cost", "cheapest_left_out",
)


def _one(frame: pl.DataFrame, column: str) -> Any:
    return frame.item(0, column) if frame.height else None


def _weight_coverage(weighted: pl.DataFrame, coverage_min: float) -> dict[str, Any]:
    """What the weighted average could weigh, and whether that passes the coverage rule."""
    r = weighted.row(0, named=True)
    return {
        "matrix_year": r["matrix_year"],
        "corridors_weighed": r["corridors"],
        "corridors_with_average": r["corridors_with_average"],
        "corridor_share": r["corridor_share"],
        "flow_usd_m": r["flow_usd_m"],
        "flow_between_countries_usd_m": r["flow_between_countries_usd_m"],
        "volume_share": r["volume_share"],
        "volume_share_min": coverage_min,
        "matrix_flow_usd_m": r["matrix_flow_usd_m"],
        "status": "ok" if r["sufficient"] else cor.INSUFFICIENT_WEIGHTS,
    }


def compute_indicators(quotes: pl.LazyFrame, *, period: str, amount_usd: int,
                       countries: pl.LazyFrame, flows: pl.LazyFrame | None,
                       weights_coverage_min: float = cor.WEIGHT_COVERAGE_MIN) -> dict[str, Any]:
    """Every indicator of METHODOLOGY.md for ``period`` (quarter or month) at ``amount_usd``.

    ``quotes``: the quote frame; ``countries``: alpha3, region, g8, g20; ``flows``:
    source_code, destination_code, flow_usd_m (and ``year`` when it holds several matrices:
    the one nearest the period weighs), or None (then ``weighted_average`` is null).
    ``weighted_average`` is also null when the corridors the matrix weighs carry less than
    ``weights_coverage_min`` % (config.toml ``[indicators] weighted_min_volume_share``) of
    its volume between the period's sending and receiving countries;
    ``weighted_average_coverage`` says so ("insufficient weights").
    Raises NoData when the period has no quote at that amount.
    """
    canonical = str(parse_period(period))
    services = services_in_period(quotes, period=canonical, amount_usd=amount_usd).collect()
    # A comparison feed's estimates are never named a corridor's cheapest (one rule for
    # every answer: metrics.corridors.cheapest_service).
    estimates = kinds.estimate_services(quotes.filter(
        pl.col("period").is_in(period_labels(canonical)), pl.col("amount_usd") == amount_usd))
    return indicators_from_services(services, period=canonical, amount_usd=amount_usd,
                                    countries=countries, flows=flows, estimates=estimates,
                                    weights_coverage_min=weights_coverage_min)


def indicators_from_services(services: pl.DataFrame, *, period: str, amount_usd: int,
                             countries: pl.LazyFrame,
                             flows: pl.LazyFrame | None,
                             estimates: pl.LazyFrame | None = None,
                             weights_coverage_min: float = cor.WEIGHT_COVERAGE_MIN
                             ) -> dict[str, Any]:
    """``compute_indicators`` from the services frame of (period, amount) already made
    (``metrics.services``): what a server that keeps services, not quotes, calls.
    ``estimates``: the services (``service_id``) that are a comparison feed's estimates
    (``kinds.estimate_services``), never named a corridor's cheapest."""
    from metrics import METHODOLOGY_VERSION

    canonical = str(parse_period(period))
    if services.height == 0:
        raise NoData(f"no quotes for period {canonical} at USD {amount_usd}")
    s = services.lazy()
    averages = cor.corridor_flags(cor.corridor_average(s))
    per_corridor_smart = cor.smart(s)
    plans: dict[str, pl.LazyFrame] = {
        "corridors": averages,
        "smart": per_corridor_smart,
        "cheapest": cor.cheapest_service(s, estimates=estimates),
        "left_out": cor.cheapest_left_out(s, estimates=estimates),
        "global": agg.global_average(s),
        "global_smart": cor.global_smart(per_corridor_smart),
        "g20_sending": agg.g20_sending_average(s, countries),
        "g8_sending": agg.g8_sending_average(s, countries),
        "g20_receiving": agg.g20_receiving_average(s, countries),
        "regions": agg.receiving_region_averages(s, countries),
        "firm_types": agg.firm_type_averages(s),
        "instruments": ins.payment_instrument_averages(s),
        "access_points": ins.access_point_averages(s),
        "pay_outs": ins.pay_out_averages(s),
        "above_5": cor.share_corridors_above(averages, 5),
        "above_10": cor.share_corridors_above(averages, 10),
        "below_3": agg.share_services_below(s, 3),
        "non_transparent": s.filter(~pl.col("transparent"))
        .select(pl.col("source_code").alias("source"),
                pl.col("destination_code").alias("destination"), "firm", "fee_pct")
        .sort("source", "destination", "firm", "fee_pct", nulls_last=True),
        "services": s.select(pl.len().alias("total"),
                             (pl.col("transparent") & pl.col("total_cost_pct").is_not_null())
                             .sum().alias("transparent")),
    }
    if flows is not None:
        matrix = cor.matrix_for_period(flows, parse_period(canonical).year)
        plans["weighted"] = cor.weighted_global_average(
            averages, matrix, coverage_min=weights_coverage_min)
    done = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))

    corridors = (
        done["corridors"]
        .join(done["smart"], on=list(cor.CORRIDOR), how="left")
        .join(done["cheapest"], on=list(cor.CORRIDOR), how="left")
        .join(done["left_out"], on=list(cor.CORRIDOR), how="left")
        .sort(*cor.CORRIDOR)
    )
    corridor_rows = []
    for r in corridors.iter_rows(named=True):
        corridor_rows.append({
            "source": r["source_code"],
            "destination": r["destination_code"],
            "average": r["average"],
            "services": r["services"],
            "transparent_services": r["transparent_services"],
            "smart": r["smart"],
            "above_5": r["above_5"],
            "above_10": r["above_10"],
            "too_few_services": r["too_few_services"],
            "no_transparent_service": r["no_transparent_service"],
            "cheapest": None if r["firm"] is None else {
                "firm": r["firm"], "firm_type": r["firm_type"], "product": r["product"],
                "total_cost": r["total_cost"]},
            "cheapest_left_out": r["cheapest_left_out"],
        })
    counts = done["services"].row(0, named=True)
    doc = {
        "period": canonical,
        "amount_usd": amount_usd,
        "methodology_version": METHODOLOGY_VERSION,
        "services": {"total": counts["total"], "transparent": counts["transparent"]},
        "global_average": _one(done["global"], "average"),
        "weighted_average": _one(done["weighted"], "weighted_average")
        if "weighted" in done and _one(done["weighted"], "sufficient") else None,
        "smart_average": _one(done["global_smart"], "smart_average"),
        "g20_sending_average": _one(done["g20_sending"], "average"),
        "g8_sending_average": _one(done["g8_sending"], "average"),
        "g20_receiving_average": _one(done["g20_receiving"], "average"),
        "by_firm_type": {r["firm_type"]: {"average": r["average"], "services": r["services"]}
                         for r in done["firm_types"].iter_rows(named=True)},
        "by_receiving_region": {r["region"]: {"average": r["average"],
                                              "services": r["services"]}
                                for r in done["regions"].iter_rows(named=True)},
        "share_corridors_above_5": _one(done["above_5"], "share"),
        "share_corridors_above_10": _one(done["above_10"], "share"),
        "share_services_below_3": _one(done["below_3"], "share"),
        # Every share names what it is a share of, and how many (issue 11): the three
        # shares above have different denominators.
        "share_denominators": {
            "share_corridors_above_5": {"of": "corridors with an average",
                                        "count": _one(done["above_5"], "corridors")},
            "share_corridors_above_10": {"of": "corridors with an average",
                                         "count": _one(done["above_10"], "corridors")},
            "share_services_below_3": {"of": "transparent services with a total cost",
                                       "count": _one(done["below_3"], "services")},
        },
        "corridors": corridor_rows,
        # What each corridor's cheapest leaves out (cheapest_left_out counts the services).
        "cheapest_leaves_out": list(kinds.CHEAPEST_LEAVES_OUT),
        "non_transparent": done["non_transparent"].to_dicts(),
        "weighted_average_coverage": _weight_coverage(done["weighted"], weights_coverage_min)
        if "weighted" in done else None,
        "by_payment_instrument": {r["pay_in"]: {"average": r["average"],
                                                "services": r["services"]}
                                  for r in done["instruments"].iter_rows(named=True)},
        "by_access_point": {r["access_point"]: {"average": r["average"],
                                                "services": r["services"]}
                            for r in done["access_points"].iter_rows(named=True)},
        "by_pay_out": {r["pay_out"]: {"average": r["average"], "services": r["services"]}
                       for r in done["pay_outs"].iter_rows(named=True)},
    }
    assert tuple(doc) == DOCUMENT_KEYS
    return doc


def corridor_table(doc: dict[str, Any]) -> pl.DataFrame:
    """The document's corridors as a flat table (``--format csv|table``), one row each."""
    rows = []
    for c in doc["corridors"]:
        cheapest = c["cheapest"] or {}
        rows.append({
            "period": doc["period"], "amount_usd": doc["amount_usd"],
            "source": c["source"], "destination": c["destination"], "average": c["average"],
            "services": c["services"], "transparent_services": c["transparent_services"],
            "smart": c["smart"], "above_5": c["above_5"], "above_10": c["above_10"],
            "too_few_services": c["too_few_services"],
            "no_transparent_service": c["no_transparent_service"],
            "cheapest_firm": cheapest.get("firm"),
            "cheapest_firm_type": cheapest.get("firm_type"),
            "cheapest_product": cheapest.get("product"),
            "cheapest_total_cost": cheapest.get("total_cost"),
            "cheapest_left_out": c["cheapest_left_out"],
        })
    schema = {
        "period": pl.String, "amount_usd": pl.Int32, "source": pl.String,
        "destination": pl.String, "average": pl.Float64, "services": pl.Int64,
        "transparent_services": pl.Int64, "smart": pl.Float64, "above_5": pl.Boolean,
        "above_10": pl.Boolean, "too_few_services": pl.Boolean,
        "no_transparent_service": pl.Boolean, "cheapest_firm": pl.String,
        "cheapest_firm_type": pl.String, "cheapest_product": pl.String,
        "cheapest_total_cost": pl.Float64, "cheapest_left_out": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")
