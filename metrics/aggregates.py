"""Means over services beyond one corridor: global, G8/G20, receiving region, firm type.

Each is a simple mean of total cost % over transparent services, each service once — the
global average is *not* a mean of corridor means. Country attributes come in as a
``countries`` LazyFrame (alpha3, region, g8, g20), e.g. corridors.reference.countries_frame().
"""

from __future__ import annotations

import polars as pl


def _averaged(services: pl.LazyFrame) -> pl.LazyFrame:
    return services.filter(pl.col("transparent"), pl.col("total_cost_pct").is_not_null())


def _mean(services: pl.LazyFrame) -> pl.LazyFrame:
    return services.select(pl.col("total_cost_pct").mean().alias("average"),
                           pl.len().alias("services"))


def global_average(services: pl.LazyFrame) -> pl.LazyFrame:
    """SDG 10.c.1: mean total cost % over all transparent services. One row: average,
    services."""
    return _mean(_averaged(services))


def _member(countries: pl.LazyFrame, group: str, side: str) -> pl.LazyFrame:
    return countries.filter(pl.col(group).fill_null(False)).select(
        pl.col("alpha3").alias(side))


def g20_sending_average(services: pl.LazyFrame, countries: pl.LazyFrame) -> pl.LazyFrame:
    """Mean over transparent services whose sending country is a G20 member."""
    return _mean(_averaged(services).join(_member(countries, "g20", "source_code"),
                                          on="source_code", how="semi"))


def g8_sending_average(services: pl.LazyFrame, countries: pl.LazyFrame) -> pl.LazyFrame:
    """Mean over transparent services whose sending country is a G8 member."""
    return _mean(_averaged(services).join(_member(countries, "g8", "source_code"),
                                          on="source_code", how="semi"))


def g20_receiving_average(services: pl.LazyFrame, countries: pl.LazyFrame) -> pl.LazyFrame:
    """Mean over transparent services whose receiving country is a G20 member."""
    return _mean(_averaged(services).join(_member(countries, "g20", "destination_code"),
                                          on="destination_code", how="semi"))


def receiving_region_averages(services: pl.LazyFrame, countries: pl.LazyFrame
                              ) -> pl.LazyFrame:
    """Per World Bank region of the receiving country: region, average, services.

    Only regions with a transparent service; a receiving country without a region in
    ``countries`` is left out. Sorted by region.
    """
    regions = countries.select(pl.col("alpha3").alias("destination_code"), "region")
    return (
        _averaged(services).join(regions, on="destination_code", how="inner")
        .filter(pl.col("region").is_not_null())
        .group_by("region")
        .agg(pl.col("total_cost_pct").mean().alias("average"), pl.len().alias("services"))
        .sort("region")
    )


def firm_type_averages(services: pl.LazyFrame) -> pl.LazyFrame:
    """Per firm type present in the period: firm_type, average (null when none of its
    services is transparent), services (transparent ones averaged). Sorted by firm_type."""
    avg = pl.col("transparent") & pl.col("total_cost_pct").is_not_null()
    return (
        services.group_by("firm_type")
        .agg(pl.col("total_cost_pct").filter(avg).mean().alias("average"),
             avg.sum().alias("services"))
        .sort("firm_type")
    )


def share_services_below(services: pl.LazyFrame, threshold: float) -> pl.LazyFrame:
    """Share (in %) of transparent services costing below ``threshold`` %. One row: share
    (null with no transparent service), services."""
    t = pl.col("total_cost_pct")
    return _averaged(services).select(
        pl.when(pl.len() > 0).then((t < threshold).sum() / pl.len() * 100).alias("share"),
        pl.len().alias("services"))
