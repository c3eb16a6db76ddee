"""From quotes to services: one row per service in a period at one price point.

A service (firm × corridor × product) counts once in every average. RPW has one quote per
service and period; sendcost's collectors quote daily, so the quotes of one service in the
period are collapsed to their mean cost first.
"""

from __future__ import annotations

import polars as pl

from corridors.periods import parse_period
from metrics.cost import exact_cost_pct, fee_pct, fx_margin_pct, total_cost_pct

#: Columns of the services frame, in order.
SERVICE_COLUMNS = (
    "service_id", "source_code", "destination_code", "firm", "firm_type", "product", "speed",
    "transparent", "quotes", "fee_pct", "fx_margin_pct", "total_cost_pct", "exact_cost_pct",
    "pay_in", "access_point", "pay_out",
)


_ATTRIBUTES = ("source_code", "destination_code", "firm", "firm_type", "product", "speed",
               "pay_in", "access_point", "pay_out")


def period_labels(period: str) -> list[str]:
    """The quote-frame periods that make up ``period``: a quarter includes its months."""
    return parse_period(period).labels


def services_in_period(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """One row per service quoted in ``period`` at ``amount_usd``, with its mean costs.

    Quotes whose reference rate is stale are left out (their margin is not trustworthy), so
    a service quoted only with stale references does not appear. A service is transparent
    when any of its quotes was; its margin and total are means over those quotes (null
    for the others). Sorted by service_id.
    """
    quotes = quotes.filter(pl.col("period").is_in(period_labels(period)),
                           pl.col("amount_usd") == amount_usd,
                           ~pl.col("reference_stale").fill_null(False))
    # The costs are aggregated per service alone, and the service's attributes (the same on
    # each of its quotes) taken from its first quote and joined on: carrying the text
    # columns through the big group-by costs several times more (Polars 2.1, 10M quotes).
    costs = quotes.group_by("service_id").agg(
        pl.col("transparent").any(),
        pl.len().alias("quotes"),
        fee_pct().mean().alias("fee_pct"),
        fx_margin_pct().mean().alias("fx_margin_pct"),
        total_cost_pct().mean().alias("total_cost_pct"),
        exact_cost_pct().mean().alias("exact_cost_pct"),
    )
    attributes = quotes.filter(pl.col("service_id").is_first_distinct()).select(
        "service_id", *_ATTRIBUTES)
    return (
        costs.join(attributes, on="service_id", how="inner")
        # A fixed order (by service id) for everything built on these rows. It does not make
        # the floats bit-identical from run to run: Polars' default (streaming) engine sums
        # a group in parts whose order varies, so a mean of several quotes may differ in its
        # last bit (seen from 30,000 quotes up, ~1e-15). What is published byte for byte is
        # rounded first (publish.bulletin.DECIMALS).
        .sort("service_id")
        # The quote frame keeps text as Categorical; services are few, and plain strings
        # join with any other table (countries, flows) without a cast at each join.
        .with_columns(pl.col("service_id", *_ATTRIBUTES).cast(pl.String))
        .select(SERVICE_COLUMNS)
    )


#: Columns of the per-period rollup of quotes (the store's ``service_periods``, with each
#: service's attributes): one row per period × price point × service × data kind × source ×
#: stale reference, with the sums and counts of its quotes' costs.
ROLLUP_SCHEMA: dict[str, pl.DataType] = {
    "period": pl.String(), "amount_usd": pl.Int32(), "service_id": pl.String(),
    "source_code": pl.String(), "destination_code": pl.String(), "firm": pl.String(),
    "firm_type": pl.String(), "product": pl.String(), "speed": pl.String(),
    "pay_in": pl.String(), "access_point": pl.String(), "pay_out": pl.String(),
    "data_kind": pl.String(), "source": pl.String(), "reference_stale": pl.Boolean(),
    "quotes": pl.Int64(), "transparent": pl.Boolean(),
    "fee_sum": pl.Float64(), "fee_n": pl.Int64(), "margin_sum": pl.Float64(),
    "margin_n": pl.Int64(), "total_sum": pl.Float64(), "total_n": pl.Int64(),
    "exact_sum": pl.Float64(), "exact_n": pl.Int64(),
    "first_collected": pl.Datetime("us", "UTC"), "last_collected": pl.Datetime("us", "UTC"),
    "last_quote_id": pl.Int64(),
    # Every flag of the row's quotes, space-separated ("" for none): kinds.estimate_services
    # and the caveats read them as they read a quote's.
    "flags": pl.String(),
}


def _mean(total: str, count: str) -> pl.Expr:
    # A mean over no value is null, as Polars' mean of nulls is.
    return (pl.when(pl.col(count).sum() > 0)
            .then(pl.col(total).sum() / pl.col(count).sum()))


def services_from_rollups(rollups: pl.LazyFrame, *, period: str,
                          amount_usd: int) -> pl.LazyFrame:
    """``services_in_period`` from the rollup of the quotes (``ROLLUP_SCHEMA``) rather than
    the quotes: the same rows and columns, the means taken as sums over counts (equal to
    the quotes' means but in the last bit of a mean of several quotes, which the summing
    order decides either way)."""
    rows = rollups.filter(pl.col("period").is_in(period_labels(period)),
                          pl.col("amount_usd") == amount_usd, ~pl.col("reference_stale"))
    costs = rows.group_by("service_id").agg(
        pl.col("transparent").any(),
        pl.col("quotes").sum().cast(pl.UInt32),
        _mean("fee_sum", "fee_n").alias("fee_pct"),
        _mean("margin_sum", "margin_n").alias("fx_margin_pct"),
        _mean("total_sum", "total_n").alias("total_cost_pct"),
        _mean("exact_sum", "exact_n").alias("exact_cost_pct"),
    )
    attributes = (rows.select("service_id", *_ATTRIBUTES)
                  .unique(subset=["service_id"], keep="first"))
    return (
        costs.join(attributes, on="service_id", how="inner")
        .sort("service_id")
        .with_columns(pl.col("service_id", *_ATTRIBUTES).cast(pl.String))
        .select(SERVICE_COLUMNS)
    )
