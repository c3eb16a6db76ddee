"""What moved: the alert events of new figures against the figures last seen (pure Polars).

A corridor *crosses* a target when its average or SmaRT total cost goes from at or below the
target to above it ("above"), or back ("below"); the targets are SDG 10.c's 5 % per corridor
and 3 % globally (docs/alerts.md). A provider's fee or FX margin *changes* when its service's
figure of the latest period moved by more than a threshold, in percentage points. A corridor
has a *new cheapest* provider when the provider named cheapest differs from the one named
before. Figures are compared only where both are known: a corridor or service seen for the
first time gives no event (it is the baseline), and unknown (null) never crosses anything.
"""

from __future__ import annotations

import polars as pl

#: A corridor's figures are kept per price point.
CORRIDOR_KEY = ("source_code", "destination_code", "amount_usd")
#: A service's figures are kept per price point.
SERVICE_KEY = ("service_id", "amount_usd")
#: SDG 10.c's targets, in percent: no corridor above 5 %, 3 % on average.
TARGETS = (3.0, 5.0)
#: The corridor figures that can cross a target.
CROSSING_MEASURES = ("average", "smart")

CORRIDOR_FIGURES = ("period", "average", "smart", "cheapest_firm", "cheapest_total_cost")
#: The global figures are kept per price point.
GLOBAL_KEY = ("amount_usd",)
GLOBAL_FIGURES = ("period", "average", "smart", "corridors")
SERVICE_FIGURES = ("period", "firm", "source_code", "destination_code", "fee_pct",
                   "fx_margin_pct")


def period_order() -> pl.Expr:
    """An integer that orders period labels (``2014Q2``, ``2026-11``) by when they end; at
    equal ends a month comes before its quarter (as ``publish.data.period_key``)."""
    label = pl.col("period")
    year = label.str.slice(0, 4).cast(pl.Int64)
    is_quarter = label.str.contains("Q")
    end_month = (pl.when(is_quarter)
                 .then(label.str.slice(5, 1).cast(pl.Int64) * 3)
                 .otherwise(label.str.slice(5, 2).cast(pl.Int64)))
    return (year * 100 + end_month) * 10 + is_quarter.cast(pl.Int64)


def latest_corridor_figures(corridor_table: pl.LazyFrame) -> pl.LazyFrame:
    """Each corridor's figures of its latest period, per price point: ``CORRIDOR_KEY`` and
    ``CORRIDOR_FIGURES``, sorted by the key."""
    return (corridor_table.select(*CORRIDOR_KEY, *CORRIDOR_FIGURES)
            .sort(*CORRIDOR_KEY, period_order())
            .group_by(*CORRIDOR_KEY).last()
            .sort(*CORRIDOR_KEY))


def latest_service_figures(services: pl.LazyFrame) -> pl.LazyFrame:
    """Each service's fee and FX margin (%) of its latest period, per price point, from
    services frames (``metrics.services``) with their ``period`` and ``amount_usd``."""
    return (services.select(*SERVICE_KEY, *SERVICE_FIGURES)
            .sort(*SERVICE_KEY, period_order())
            .group_by(*SERVICE_KEY).last()
            .sort(*SERVICE_KEY))


def global_figures(services: pl.LazyFrame, corridor_table: pl.LazyFrame, *,
                   min_corridors: int) -> pl.LazyFrame:
    """The global figures of the latest period that has them, per price point: the global
    average (SDG 10.c.1: the mean total cost of all transparent services, as
    ``metrics.aggregates.global_average``) and the global SmaRT (the mean of the corridors'
    SmaRT, as ``metrics.corridors.global_smart``), from periods where at least
    ``min_corridors`` corridors have an average (fewer is not a global figure: the
    bulletin's ``[bulletin.minimum] global_corridors``). ``services``: services frames with
    their ``period`` and ``amount_usd``."""
    averaged = pl.col("transparent") & pl.col("total_cost_pct").is_not_null()
    average = (services.filter(averaged).group_by("period", "amount_usd")
               .agg(pl.col("total_cost_pct").mean().alias("average")))
    per_corridor = (corridor_table.group_by("period", "amount_usd")
                    .agg(pl.col("smart").mean().alias("smart"),
                         pl.col("average").is_not_null().sum().alias("corridors")))
    return (average.join(per_corridor, on=["period", "amount_usd"], how="inner")
            .filter(pl.col("corridors") >= min_corridors)
            .select(*GLOBAL_KEY, *GLOBAL_FIGURES)
            .sort(*GLOBAL_KEY, period_order())
            .group_by(*GLOBAL_KEY).last()
            .sort(*GLOBAL_KEY))


def corridor_crossings(before: pl.LazyFrame, after: pl.LazyFrame,
                       key: tuple[str, ...] = CORRIDOR_KEY) -> pl.LazyFrame:
    """Each corridor figure (average, SmaRT) that crossed a target (3 %, 5 %) between
    ``before`` and ``after`` (both ``latest_corridor_figures``): one row per corridor, price
    point, measure and target, with ``direction`` "above" or "below", the figures
    ``before`` and ``after`` and the period of each. With ``key`` ``GLOBAL_KEY``, the same
    of the global figures (``global_figures``)."""
    joined = after.join(before, on=list(key), how="inner", suffix="_before")
    parts = []
    for measure in CROSSING_MEASURES:
        old, new = pl.col(f"{measure}_before"), pl.col(measure)
        for target in TARGETS:
            known = old.is_finite() & new.is_finite()  # NaN sorts above every number
            up = known & (old <= target) & (new > target)
            down = known & (old > target) & (new <= target)
            parts.append(joined.filter(up | down).select(
                *key, pl.col("period"), pl.col("period_before"),
                pl.lit(measure).alias("measure"), pl.lit(target).alias("threshold"),
                pl.when(up).then(pl.lit("above")).otherwise(pl.lit("below"))
                .alias("direction"),
                old.alias("before"), new.alias("after")))
    return pl.concat(parts).sort(*key, "measure", "threshold")


def new_cheapest(before: pl.LazyFrame, after: pl.LazyFrame) -> pl.LazyFrame:
    """Each corridor and price point whose cheapest provider is not the one named before
    (both named): the provider before and after, and the cost of the new one."""
    return (after.join(before, on=list(CORRIDOR_KEY), how="inner", suffix="_before")
            .filter(pl.col("cheapest_firm").is_not_null(),
                    pl.col("cheapest_firm_before").is_not_null(),
                    pl.col("cheapest_firm") != pl.col("cheapest_firm_before"))
            .select(*CORRIDOR_KEY, "period", "period_before",
                    pl.col("cheapest_firm_before").alias("before"),
                    pl.col("cheapest_firm").alias("after"),
                    pl.col("cheapest_total_cost_before").alias("before_total_cost"),
                    pl.col("cheapest_total_cost").alias("after_total_cost"))
            .sort(*CORRIDOR_KEY))


def price_changes(before: pl.LazyFrame, after: pl.LazyFrame, *, fee_points: float,
                  fx_margin_points: float) -> pl.LazyFrame:
    """Each service whose fee % or FX margin % moved by more than ``fee_points`` or
    ``fx_margin_points`` percentage points between ``before`` and ``after`` (both
    ``latest_service_figures``): ``measure`` (fee_pct, fx_margin_pct), the figures before
    and after and their ``change``."""
    joined = after.join(before, on=list(SERVICE_KEY), how="inner", suffix="_before")
    parts = []
    for measure, points in (("fee_pct", fee_points), ("fx_margin_pct", fx_margin_points)):
        change = pl.col(measure) - pl.col(f"{measure}_before")
        parts.append(joined.filter(change.is_finite() & (change.abs() > points)).select(
            *SERVICE_KEY, "period", "period_before", "firm", "source_code",
            "destination_code", pl.lit(measure).alias("measure"),
            pl.col(f"{measure}_before").alias("before"), pl.col(measure).alias("after"),
            change.alias("change")))
    return pl.concat(parts).sort(*SERVICE_KEY, "measure")
