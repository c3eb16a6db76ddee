"""The postal benchmark: every post-office service against the other services of its corridor.

For the UPU and postal operators: per post-office service, its total cost, its corridor's
median, cheapest service and SmaRT, and its rank among the corridor's transparent services
(1 = cheapest). Pure Polars: quotes in, a LazyFrame out.
"""

from __future__ import annotations

import polars as pl

from corridors.types import FirmType
from metrics import corridors as cor
from metrics import kinds
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
