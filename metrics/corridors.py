"""Indicators per corridor (sending → receiving country) and the ones built from them.

All take the services frame of ``metrics.services.services_in_period`` (one row per
service) and return LazyFrames sorted by source_code, destination_code.
"""

from __future__ import annotations

import polars as pl

from corridors.types import Speed
from metrics import kinds

CORRIDOR = ("source_code", "destination_code")

#: The SmaRT is the mean of this many cheapest qualifying services.
SMART_SERVICES = 3
#: A corridor average from fewer transparent services than this is flagged.
MIN_SERVICES = 3


def _averaged() -> pl.Expr:
    """Services that enter an average: transparent, with a known total cost."""
    return pl.col("transparent") & pl.col("total_cost_pct").is_not_null()


def corridor_average(services: pl.LazyFrame) -> pl.LazyFrame:
    """Per corridor: mean total cost % over its transparent services (null when none).

    Columns: source_code, destination_code, average, services (all), transparent_services
    (those averaged).
    """
    avg = _averaged()
    return (
        services.group_by(*CORRIDOR)
        .agg(
            pl.col("total_cost_pct").filter(avg).mean().alias("average"),
            pl.len().alias("services"),
            avg.sum().alias("transparent_services"),
        )
        .sort(*CORRIDOR)
    )


def corridor_flags(averages: pl.LazyFrame) -> pl.LazyFrame:
    """Add the corridor flags to ``corridor_average``'s output.

    above_5 / above_10: average above 5% / 10% (null when there is no average);
    too_few_services: fewer than 3 transparent services; no_transparent_service.
    """
    return averages.with_columns(
        (pl.col("average") > 5).alias("above_5"),
        (pl.col("average") > 10).alias("above_10"),
        (pl.col("transparent_services") < MIN_SERVICES).alias("too_few_services"),
        (pl.col("transparent_services") == 0).alias("no_transparent_service"),
    )


def smart(services: pl.LazyFrame) -> pl.LazyFrame:
    """SmaRT per corridor: mean of the 3 cheapest qualifying services, null with fewer.

    Qualifying: transparent, known total, speed known and within 5 days (not "6 days or
    more"). RPW's "accessible to most senders" criterion has no column in the quote frame and
    is not applied. Columns: source_code, destination_code, smart, smart_services.
    """
    qualifies = (_averaged() & pl.col("speed").is_not_null()
                 & (pl.col("speed") != Speed.SIX_DAYS_OR_MORE.value))
    cheapest = pl.col("total_cost_pct").filter(qualifies)
    return (
        services.group_by(*CORRIDOR)
        .agg(cheapest.bottom_k(SMART_SERVICES).mean().alias("_mean3"),
             qualifies.sum().alias("smart_services"))
        .select(*CORRIDOR,
                pl.when(pl.col("smart_services") >= SMART_SERVICES).then(pl.col("_mean3"))
                .alias("smart"),
                "smart_services")
        .sort(*CORRIDOR)
    )


def global_smart(per_corridor: pl.LazyFrame) -> pl.LazyFrame:
    """Global SmaRT: mean over the corridors that have a SmaRT value (one row: smart_average,
    corridors)."""
    return per_corridor.select(pl.col("smart").mean().alias("smart_average"),
                               pl.col("smart").count().alias("corridors"))


def _fit_for_cheapest(estimates: pl.LazyFrame | None) -> pl.Expr:
    """The one rule of every "cheapest" answer (``kinds.CHEAPEST_LEAVES_OUT``): a service
    averaged in its corridor, with no negative FX margin or total cost, and not a comparison
    feed's estimate (``estimates``: its service ids, from ``kinds.estimate_services``)."""
    fit = _averaged() & kinds.fit_for_cheapest()
    if estimates is not None:
        fit = fit & ~pl.col("_estimate")
    return fit


def _with_estimates(services: pl.LazyFrame, estimates: pl.LazyFrame | None) -> pl.LazyFrame:
    if estimates is None:
        return services
    marked = estimates.select(pl.col("service_id").cast(pl.String),
                              pl.lit(True).alias("_estimate"))
    return (services.with_columns(pl.col("service_id").cast(pl.String))
            .join(marked, on="service_id", how="left")
            .with_columns(pl.col("_estimate").fill_null(False)))


def cheapest_service(services: pl.LazyFrame, *, estimates: pl.LazyFrame | None = None
                     ) -> pl.LazyFrame:
    """Per corridor with a service fit to be named so: the cheapest (ties: firm, product, id).

    The World Bank's averages keep every transparent service; "cheapest" leaves out those
    flagged ``kinds.CHEAPEST_LEAVES_OUT`` (negative margin or total cost, and the services in
    ``estimates``), which keep their rank in ranked lists, marked. Every caller names the
    corridor's cheapest through this function, so the API, the indicators, the postal
    benchmark and the bulletin agree. Columns: source_code, destination_code, firm,
    firm_type, product, total_cost.
    """
    order = ["total_cost_pct", "firm", "product", "service_id"]
    return (
        _with_estimates(services, estimates).filter(_fit_for_cheapest(estimates))
        .group_by(*CORRIDOR)
        .agg(pl.col("firm", "firm_type", "product", "total_cost_pct").sort_by(order).first())
        .rename({"total_cost_pct": "total_cost"})
        .sort(*CORRIDOR)
    )


def cheapest_left_out(services: pl.LazyFrame, *, estimates: pl.LazyFrame | None = None
                      ) -> pl.LazyFrame:
    """Per corridor: how many of its averaged services ``cheapest_service`` left out
    (``cheapest_left_out``), so that an answer says what its "cheapest" was chosen from."""
    return (
        _with_estimates(services, estimates)
        .group_by(*CORRIDOR)
        .agg((_averaged() & ~_fit_for_cheapest(estimates)).sum()
             .cast(pl.Int64).alias("cheapest_left_out"))
        .sort(*CORRIDOR)
    )


def share_corridors_above(averages: pl.LazyFrame, threshold: float) -> pl.LazyFrame:
    """Share (in %) of corridors with an average whose average is above ``threshold`` %.

    One row: share, corridors (the denominator). Null share when no corridor has an average.
    """
    avg = pl.col("average")
    return averages.select(
        pl.when(avg.count() > 0).then((avg > threshold).sum() / avg.count() * 100)
        .alias("share"),
        avg.count().alias("corridors"),
    )


#: The default coverage rule for a weighted figure (config.toml ``[indicators]
#: weighted_min_volume_share``, in %): the corridors it weighs must carry at least this share
#: of the matrix's remittance volume between the period's sending and receiving countries;
#: below it the figure is withheld as "insufficient weights" (METHODOLOGY.md, "Weights by
#: period").
WEIGHT_COVERAGE_MIN = 75.0
INSUFFICIENT_WEIGHTS = "insufficient weights"


def matrix_for_period(flows: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """The bilateral remittance matrix nearest ``year`` out of flows of several matrices.

    ``flows`` has a ``year`` column (the matrix's year: corridors.data holds 2011 and 2021);
    the rows of the nearest year are kept, the earlier matrix on a tie (a period is weighed
    with what was known by then rather than with a later estimate). A frame without a
    ``year`` column is one matrix and is returned as it is.
    """
    if "year" not in flows.collect_schema().names():
        return flows
    distance = (pl.col("year") - year).abs() * 2 + (pl.col("year") > year).cast(pl.Int32)
    return flows.filter(distance == distance.min())


def weighted_global_average(averages: pl.LazyFrame, flows: pl.LazyFrame, *,
                            coverage_min: float = WEIGHT_COVERAGE_MIN) -> pl.LazyFrame:
    """Corridor averages weighted by the corridor's bilateral remittance flow.

    Over corridors that have both an average and a positive flow. One row:
    weighted_average (null when none), corridors (weighed), flow_usd_m (the weights' sum:
    the volume weighed), corridors_with_average, corridor_share (% of those weighed),
    flow_between_countries_usd_m (the matrix's volume from every sending country of a
    corridor with an average to every receiving country of one: the remittances the
    period's survey samples from), volume_share (% of that volume weighed; null when it is
    0), matrix_flow_usd_m (the whole matrix's volume), sufficient (volume_share is at least
    ``coverage_min`` %), matrix_year (null when ``flows`` has no year).
    ``weighted_average`` is the plain weighted mean whatever the coverage: whoever publishes
    it reads ``sufficient``.
    """
    names = flows.collect_schema().names()
    year = pl.col("year").first() if "year" in names else pl.lit(None, pl.Int32)
    with_average = averages.filter(pl.col("average").is_not_null())
    joined = with_average.join(flows, on=list(CORRIDOR), how="inner").filter(
        pl.col("flow_usd_m") > 0)
    w = pl.col("flow_usd_m")
    weighed = joined.select(
        pl.when(w.sum() > 0).then((pl.col("average") * w).sum() / w.sum())
        .alias("weighted_average"),
        pl.len().alias("corridors"),
        w.sum().alias("flow_usd_m"),
    )
    averaged = averages.select(pl.col("average").count().alias("corridors_with_average"))
    # The countries the period's survey covers, on each side: the matrix's volume between
    # them is what a weighted figure of the period could at most weigh.
    senders = with_average.select("source_code").unique()
    receivers = with_average.select("destination_code").unique()
    between = (flows.filter(w > 0).join(senders, on="source_code", how="semi")
               .join(receivers, on="destination_code", how="semi")
               .select(w.sum().alias("flow_between_countries_usd_m")))
    matrix = flows.select(year.cast(pl.Int32).alias("matrix_year"),
                          w.filter(w > 0).sum().alias("matrix_flow_usd_m"))
    share = pl.when(pl.col("corridors_with_average") > 0).then(
        pl.col("corridors") / pl.col("corridors_with_average") * 100)
    volume = pl.when(pl.col("flow_between_countries_usd_m") > 0).then(
        pl.col("flow_usd_m") / pl.col("flow_between_countries_usd_m") * 100)
    return pl.concat([weighed, averaged, between, matrix], how="horizontal").with_columns(
        share.alias("corridor_share"),
        volume.alias("volume_share"),
    ).with_columns(
        (pl.col("volume_share").fill_null(0) >= coverage_min).alias("sufficient"),
    ).select("weighted_average", "corridors", "flow_usd_m", "corridors_with_average",
             "corridor_share", "flow_between_countries_usd_m", "volume_share",
             "matrix_flow_usd_m", "sufficient", "matrix_year")
