"""The postal benchmark: every post-office service against the other services of its corridor.

For the UPU and postal operators: per post-office service, its total cost, its corridor's
median, cheapest service and SmaRT, and its rank among the corridor's transparent services
(1 = cheapest). Pure Polars: quotes in, a LazyFrame out.
"""

from __future__ import annotations

import polars as pl

from corridors.types import AccessPoint, FirmType, PayOut
from metrics import corridors as cor
from metrics import kinds
from metrics.bulletin import trend_periods
from metrics.services import period_labels, services_in_period

#: The post's own services, and MTO services sold at post counters (kept apart, labelled).
POSTAL_FIRM_TYPES = (FirmType.POST_OFFICE.value, FirmType.POST_OFFICE_MTO.value)

#: Columns of ``postal_benchmark``, in order.
POSTAL_COLUMNS = (
    "source_code", "destination_code", "firm", "firm_type", "product", "service_id",
    "transparent", "fee_pct", "fx_margin_pct", "total_cost_pct", "corridor_services",
    "corridor_median", "corridor_cheapest", "cheapest_firm", "corridor_smart",
    "difference_to_median", "rank", "above_5",
)


def postal_benchmark(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """One row per post-office service quoted in ``period`` at ``amount_usd``.

    corridor_services: transparent services of the corridor (every firm type);
    corridor_median: the median total cost % over them; corridor_cheapest, cheapest_firm:
    the corridor's cheapest service as every answer names it (``cor.cheapest_service``:
    no estimate, negative margin or negative total);
    corridor_smart: the corridor's SmaRT (null with fewer than 3 qualifying services);
    rank: 1 + the number of the corridor's transparent services strictly cheaper (ties share
    a rank), null for a non-transparent post service (its margin is unknown);
    difference_to_median: total cost minus the median, in percentage points.
    Sorted by source_code, destination_code, firm, product, service_id.
    """
    services = services_in_period(quotes, period=period, amount_usd=amount_usd)
    # The corridor's cheapest follows the rule of every "cheapest" answer (no estimate, no
    # negative margin or total): metrics.corridors.cheapest_service.
    estimates = kinds.estimate_services(quotes.filter(
        pl.col("period").is_in(period_labels(period)), pl.col("amount_usd") == amount_usd))
    cheapest = cor.cheapest_service(services, estimates=estimates).select(
        *cor.CORRIDOR, pl.col("total_cost").alias("corridor_cheapest"),
        pl.col("firm").alias("cheapest_firm"))
    averaged = services.filter(pl.col("transparent"), pl.col("total_cost_pct").is_not_null())
    corridor = (
        averaged.group_by(*cor.CORRIDOR)
        .agg(pl.len().alias("corridor_services"),
             pl.col("total_cost_pct").median().alias("corridor_median"))
        .join(cheapest, on=list(cor.CORRIDOR), how="left")
    )
    ranks = averaged.select(
        "service_id",
        pl.col("total_cost_pct").rank("min").over(*cor.CORRIDOR).cast(pl.Int64).alias("rank"))
    smart = cor.smart(services).select(*cor.CORRIDOR, pl.col("smart").alias("corridor_smart"))
    post = services.filter(pl.col("firm_type").is_in(POSTAL_FIRM_TYPES))
    cost = pl.col("total_cost_pct")
    known = pl.col("transparent") & cost.is_not_null()
    return (
        post.join(corridor, on=list(cor.CORRIDOR), how="left")
        .join(ranks, on="service_id", how="left")
        .join(smart, on=list(cor.CORRIDOR), how="left")
        .with_columns(
            pl.when(known).then(cost).alias("total_cost_pct"),
            pl.when(known).then(pl.col("fx_margin_pct")).alias("fx_margin_pct"),
        )
        .with_columns(
            (cost - pl.col("corridor_median")).alias("difference_to_median"),
            (cost > 5).alias("above_5"),
        )
        .with_columns(pl.col("corridor_services").fill_null(0).cast(pl.Int64))
        .select(POSTAL_COLUMNS)
        .sort("source_code", "destination_code", "firm", "product", "service_id")
    )


def postal_versus_firm_types(firm_types: pl.LazyFrame) -> pl.LazyFrame:
    """The firm-type averages (``metrics.aggregates.firm_type_averages``) with a flag for the
    postal ones and each one's difference to the post office average, cheapest first."""
    post = pl.col("average").filter(pl.col("firm_type") == FirmType.POST_OFFICE.value).first()
    return (
        firm_types
        .with_columns(pl.col("firm_type").is_in(POSTAL_FIRM_TYPES).alias("postal"),
                      (pl.col("average") - post).alias("difference_to_post_office"))
        .sort("average", "firm_type", nulls_last=True)
    )


def postal_by_operator(benchmark: pl.LazyFrame) -> pl.LazyFrame:
    """The postal benchmark (``postal_benchmark``) summed up per operator and firm type.

    firm, firm_type, services, corridors, transparent (services with a disclosed rate, the
    only ones with a cost), average (mean total cost % over them), at_or_below_median and
    cheapest_in_corridor (rank 1) counts, median_difference (median of the difference to the
    corridor median, points). Sorted by firm type, services descending, then firm.
    """
    cost = pl.col("total_cost_pct")
    return (
        benchmark.group_by("firm", "firm_type")
        .agg(pl.len().alias("services"),
             pl.struct("source_code", "destination_code").n_unique().alias("corridors"),
             cost.count().alias("transparent"),
             cost.mean().alias("average"),
             (cost <= pl.col("corridor_median")).sum().alias("at_or_below_median"),
             (pl.col("rank") == 1).sum().alias("cheapest_in_corridor"),
             pl.col("difference_to_median").median().alias("median_difference"))
        .with_columns(pl.col("services", "corridors", "transparent", "at_or_below_median",
                             "cheapest_in_corridor").cast(pl.Int64))
        .sort("firm_type", "services", "firm", descending=[False, True, False])
    )


def postal_extremes(benchmark: pl.LazyFrame, n: int = 10, *, cheapest: bool = True
                    ) -> pl.LazyFrame:
    """The ``n`` post-office services cheapest (or dearest) against their corridor's median
    (by difference_to_median; services without a disclosed rate are left out); ties by
    corridor, firm, product, service."""
    return (
        benchmark.filter(pl.col("difference_to_median").is_not_null())
        .sort("difference_to_median", "source_code", "destination_code", "firm", "product",
              "service_id", descending=[not cheapest, False, False, False, False, False],
              nulls_last=True)
        .head(n)
    )


# --- the post against its market: per corridor, per operator, over time ------------------------

#: How a post takes part in a service: it sells it (``sender``: a post-office firm type), or
#: it pays it out (``receiver``: pay-out at a post office, RPW's pick-up "Post office").
POST_ROLES = ("sender", "receiver")

#: Columns of ``postal_summary``, in order (the API and ``sendcost export postal --by
#: corridor`` use these names).
SUMMARY_COLUMNS = (
    "period", "source_code", "destination_code", "firm", "firm_type", "role", "post_services",
    "post_total_cost_pct", "market_services", "market_median", "market_cheapest",
    "market_cheapest_firm", "median_with_post", "difference_to_median",
    "difference_to_cheapest", "rank", "previous_period", "previous_total_cost_pct",
    "previous_market_median", "previous_difference_to_median", "change_total_cost_pct",
    "change_difference_to_median", "sources", "data_kinds",
)

#: Columns of ``postal_summary_by_operator``, in order.
OPERATOR_COLUMNS = (
    "period", "firm", "firm_type", "role", "corridors", "priced_corridors",
    "average_total_cost_pct", "median_difference_to_median", "at_or_below_median",
    "cheapest_in_corridor", "gap_closing", "gap_widening", "previous_period", "sources",
    "data_kinds",
)


def post_role() -> pl.Expr:
    """On a services frame: "sender" for a service sold by a post (``POSTAL_FIRM_TYPES``) or
    at a post office (access point ``post_office_branch``: RPW's "Post Office branch"),
    "receiver" for one paid out at a post office (pay-out ``post_office``: RPW's pick-up
    "Post office"), null for the rest of the market."""
    return (pl.when(pl.col("firm_type").is_in(POSTAL_FIRM_TYPES)
                    | (pl.col("access_point") == AccessPoint.POST_OFFICE_BRANCH.value))
            .then(pl.lit("sender"))
            .when(pl.col("pay_out") == PayOut.POST_OFFICE.value).then(pl.lit("receiver"))
            .otherwise(pl.lit(None, pl.String)))


def previous_period(available: list[str], period: str) -> str | None:
    """The period with data just before ``period``, of its cadence (quarters or months)."""
    before = [p for p in trend_periods(available, period) if p != period]
    return before[-1] if before else None


def service_provenance(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """Where each service's quotes of ``period`` at ``amount_usd`` come from: service_id,
    source, data_kind (one row per distinct pair)."""
    return (quotes.filter(pl.col("period").is_in(period_labels(period)),
                          pl.col("amount_usd") == amount_usd)
            .select(pl.col("service_id").cast(pl.String), pl.col("source").cast(pl.String),
                    pl.col("data_kind").cast(pl.String))
            .unique())


def _corridor_gaps(services: pl.LazyFrame, *, period: str, estimates: pl.LazyFrame | None,
                   provenance: pl.LazyFrame | None) -> pl.LazyFrame:
    """One period's rows of the summary from its services frame
    (``metrics.services.services_in_period``), without the change since the previous one."""
    services = services.with_columns(post_role().alias("role"))
    averaged = services.filter(pl.col("transparent"), pl.col("total_cost_pct").is_not_null())
    # The market a post is measured against leaves out every service a post sells or pays
    # out: the post's own figures would pull the median toward it (BEL->COD 2014Q2: 9.34
    # with the two post-counter services, 9.31 without).
    market = averaged.filter(pl.col("role").is_null())
    cheapest = cor.cheapest_service(market, estimates=estimates).select(
        *cor.CORRIDOR, pl.col("total_cost").alias("market_cheapest"),
        pl.col("firm").alias("market_cheapest_firm"))
    stats = (market.group_by(*cor.CORRIDOR)
             .agg(pl.len().cast(pl.Int64).alias("market_services"),
                  pl.col("total_cost_pct").median().alias("market_median")))
    with_post = averaged.group_by(*cor.CORRIDOR).agg(
        pl.col("total_cost_pct").median().alias("median_with_post"))
    keys = [*cor.CORRIDOR, "firm", "firm_type", "role"]
    posts = services.filter(pl.col("role").is_not_null())
    post = (posts.group_by(keys)
            .agg(pl.len().cast(pl.Int64).alias("post_services"),
                 # The post's cost in the corridor: its cheapest transparent service (the
                 # price a customer of the post can get there); null when none discloses.
                 pl.col("total_cost_pct").filter(pl.col("transparent")).min()
                 .alias("post_total_cost_pct")))
    # Rank: 1 + the market services strictly cheaper than the post's cost (ties share it).
    rank = (post.join(market.select(*cor.CORRIDOR, pl.col("total_cost_pct").alias("_m")),
                      on=list(cor.CORRIDOR), how="left")
            .group_by(keys)
            .agg((pl.col("_m") < pl.col("post_total_cost_pct")).sum().alias("_cheaper")))
    if provenance is None:
        origin = post.select(*keys, pl.lit(None, pl.String).alias("sources"),
                             pl.lit(None, pl.String).alias("data_kinds"))
    else:
        origin = (posts.select(*keys, "service_id")
                  .join(provenance, on="service_id", how="inner")
                  .group_by(keys)
                  .agg(*(pl.col(c).drop_nulls().unique().sort().str.join(" ")
                         .alias(name) for c, name in (("source", "sources"),
                                                      ("data_kind", "data_kinds"))))
                  # A file that does not say its kind (the RPW reader's frame): null.
                  .with_columns(pl.col("sources", "data_kinds").replace("", None)))
    cost = pl.col("post_total_cost_pct")
    return (
        post.join(stats, on=list(cor.CORRIDOR), how="left")
        .join(cheapest, on=list(cor.CORRIDOR), how="left")
        .join(with_post, on=list(cor.CORRIDOR), how="left")
        .join(rank, on=keys, how="left", nulls_equal=True)
        .join(origin, on=keys, how="left", nulls_equal=True)
        .with_columns(
            pl.col("market_services").fill_null(0),
            (cost - pl.col("market_median")).alias("difference_to_median"),
            (cost - pl.col("market_cheapest")).alias("difference_to_cheapest"),
            pl.when(cost.is_not_null()).then(1 + pl.col("_cheaper").fill_null(0))
            .cast(pl.Int64).alias("rank"),
            pl.lit(period).alias("period"),
        )
        .drop("_cheaper")
    )


def summary_of_services(services: pl.LazyFrame, *, period: str,
                        before: pl.LazyFrame | None = None, previous: str | None = None,
                        estimates: pl.LazyFrame | None = None,
                        provenance: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """``postal_summary`` from the services frames of ``period`` and of ``previous``
    (``before``), the comparison feed's estimates (``kinds.estimate_services``) and where
    the post's quotes come from (``service_provenance``; null sources without it)."""
    now = _corridor_gaps(services, period=period, estimates=estimates, provenance=provenance)
    keys = [*cor.CORRIDOR, "firm", "firm_type", "role"]
    if before is not None and previous is not None:
        then = _corridor_gaps(before, period=previous, estimates=estimates,
                              provenance=None).select(
            *keys, pl.col("post_total_cost_pct").alias("previous_total_cost_pct"),
            pl.col("market_median").alias("previous_market_median"),
            pl.col("difference_to_median").alias("previous_difference_to_median"))
        now = now.join(then, on=keys, how="left", nulls_equal=True)
    else:
        previous = None
        now = now.with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in (
                "previous_total_cost_pct", "previous_market_median",
                "previous_difference_to_median"))
    return (
        now.with_columns(
            pl.lit(previous, pl.String).alias("previous_period"),
            (pl.col("post_total_cost_pct") - pl.col("previous_total_cost_pct"))
            .alias("change_total_cost_pct"),
            (pl.col("difference_to_median") - pl.col("previous_difference_to_median"))
            .alias("change_difference_to_median"))
        .select(SUMMARY_COLUMNS)
        .sort("source_code", "destination_code", "firm", "role")
    )


def _estimates(quotes: pl.LazyFrame, periods: list[str], amount_usd: int) -> pl.LazyFrame:
    labels = [label for p in periods for label in period_labels(p)]
    return kinds.estimate_services(quotes.filter(pl.col("period").is_in(labels),
                                                 pl.col("amount_usd") == amount_usd))


def postal_summary(quotes: pl.LazyFrame, *, period: str, amount_usd: int,
                   previous: str | None = None) -> pl.LazyFrame:
    """Per post, corridor and role in ``period`` at ``amount_usd``: the post against the
    market of its corridor, and the change since ``previous`` (a period, or None).

    The market is the corridor's transparent services with a known cost that no post sells
    or pays out (``post_role`` null); a post's services never count in its own benchmark.
    post_total_cost_pct: the post's cheapest transparent service in the corridor (null when
    none discloses its rate); market_median, market_cheapest (``cor.cheapest_service``'s rule:
    no estimate, no negative margin or total) and market_services: over the market;
    median_with_post: the corridor median with every post service in, for comparison;
    difference_to_median / _to_cheapest: the post's cost minus them, in percentage points;
    rank: 1 + the market services strictly cheaper than the post. previous_*: the same
    figures in ``previous``; change_total_cost_pct and change_difference_to_median: now minus
    then (a negative change in the difference: the gap to the market is closing). sources,
    data_kinds: where the post's quotes of the period come from (space-separated).
    Columns ``SUMMARY_COLUMNS``; sorted by corridor, firm, role.
    """
    periods = [period] + ([previous] if previous else [])
    return summary_of_services(
        services_in_period(quotes, period=period, amount_usd=amount_usd), period=period,
        before=(services_in_period(quotes, period=previous, amount_usd=amount_usd)
                if previous else None),
        previous=previous, estimates=_estimates(quotes, periods, amount_usd),
        provenance=service_provenance(quotes, period=period, amount_usd=amount_usd))


def postal_summary_by_operator(summary: pl.LazyFrame) -> pl.LazyFrame:
    """``postal_summary`` per post and role: corridors (where it has services),
    priced_corridors (with a cost it discloses), average_total_cost_pct (mean over those),
    median_difference_to_median (points), at_or_below_median and cheapest_in_corridor (rank
    1) counts, gap_closing / gap_widening (corridors whose difference to the market median
    fell / rose since the previous period), sources and data_kinds (of all its corridors).
    Columns ``OPERATOR_COLUMNS``; sorted by firm type,
    corridors descending, firm, role."""
    change = pl.col("change_difference_to_median")
    return (
        summary.group_by("period", "firm", "firm_type", "role")
        .agg(pl.len().alias("corridors"),
             pl.col("post_total_cost_pct").count().alias("priced_corridors"),
             pl.col("post_total_cost_pct").mean().alias("average_total_cost_pct"),
             pl.col("difference_to_median").median().alias("median_difference_to_median"),
             (pl.col("difference_to_median") <= 0).sum().alias("at_or_below_median"),
             (pl.col("rank") == 1).sum().alias("cheapest_in_corridor"),
             (change < 0).sum().alias("gap_closing"),
             (change > 0).sum().alias("gap_widening"),
             pl.col("previous_period").first(),
             *(pl.col(c).str.split(" ").list.explode(keep_nulls=False, empty_as_null=False)
               .drop_nulls().unique().sort().str.join(" ").alias(c)
               for c in ("sources", "data_kinds")))
        .with_columns(pl.col("sources", "data_kinds").replace("", None))
        .with_columns(pl.col("corridors", "priced_corridors", "at_or_below_median",
                             "cheapest_in_corridor", "gap_closing", "gap_widening")
                      .cast(pl.Int64))
        .select(OPERATOR_COLUMNS)
        .sort("firm_type", "corridors", "firm", "role", descending=[False, True, False, False])
    )


def postal_trend(quotes: pl.LazyFrame, *, periods: list[str], amount_usd: int
                 ) -> pl.LazyFrame:
    """The summary's cost figures per period of ``periods`` (in the order given): period,
    corridor, firm, role, post_total_cost_pct, market_median, difference_to_median — the
    trend per post and corridor over the periods held."""
    estimates = _estimates(quotes, periods, amount_usd)
    parts = [_corridor_gaps(services_in_period(quotes, period=p, amount_usd=amount_usd),
                            period=p, estimates=estimates, provenance=None).select(
        "period", *cor.CORRIDOR, "firm", "role", "post_total_cost_pct", "market_median",
        "difference_to_median") for p in periods]
    if not parts:
        return pl.LazyFrame(schema={"period": pl.String})
    order = {p: i for i, p in enumerate(periods)}
    return (pl.concat(parts)
            .with_columns(pl.col("period").replace_strict(order, return_dtype=pl.Int32)
                          .alias("_order"))
            .sort("source_code", "destination_code", "firm", "role", "_order")
            .drop("_order"))
