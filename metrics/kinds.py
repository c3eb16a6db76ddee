"""What kind of data the quotes are (corridors.types.DataKind), as Polars expressions.

Emulated quotes (the sandbox's invented prices) enter no indicator unless a user asks for
them: every reader of the store filters with ``real_data()`` by default, and
``emulated_sources`` names what it left out. A quote frame read straight from a file that
does not say its kind (the RPW reader's) has a null kind: that is not emulated data.
"""

from __future__ import annotations

import polars as pl

from corridors.types import DataKind


def is_emulated() -> pl.Expr:
    """True for an emulated quote (false for a null kind)."""
    return pl.col("data_kind").cast(pl.String).fill_null("") == DataKind.EMULATED.value


def real_data() -> pl.Expr:
    """True for every quote that is not emulated: what indicators use by default."""
    return ~is_emulated()


def without_emulated(quotes: pl.LazyFrame, *, include_emulated: bool = False) -> pl.LazyFrame:
    """``quotes`` without its emulated rows, unless ``include_emulated``."""
    return quotes if include_emulated else quotes.filter(real_data())


#: Caveats that keep a service from being named a corridor's cheapest (it stays in the
#: ranked lists, marked): a comparison feed's estimate, and a negative FX margin or total
#: cost (a promotion, or a reference rate that is off: the World Bank keeps such rows in its
#: averages, and so does sendcost, but "cheapest" would rest on them).
CHEAPEST_LEAVES_OUT = ("estimate", "negative_margin", "negative_total_cost")


def fit_for_cheapest() -> pl.Expr:
    """On a services frame: True for a service that may be named a corridor's cheapest (no
    negative FX margin or total cost; estimates are left out by service id, see
    ``estimate_services``)."""
    return ((pl.col("fx_margin_pct").fill_null(0) >= 0)
            & (pl.col("total_cost_pct").fill_null(0) >= 0))


def estimate_services(quotes: pl.LazyFrame) -> pl.LazyFrame:
    """The service ids (``service_id``, as strings) with a comparison feed's estimate: a
    quote of kind ``estimate``, or flagged ``estimate`` (the sandbox's comparison feed is of
    kind ``emulated`` whatever it says, and keeps the flag). A frame without ``flags`` (the
    store's per-service rollups) is judged by its kind alone."""
    flagged = (pl.col("flags").fill_null("").str.contains(r"(^| )estimate( |$)")
               if "flags" in quotes.collect_schema().names() else pl.lit(False))
    return (quotes.filter((pl.col("data_kind").cast(pl.String) == DataKind.ESTIMATE.value)
                          | flagged)
            .select(pl.col("service_id").cast(pl.String)).unique().sort("service_id"))


def emulated_sources(quotes: pl.LazyFrame) -> pl.LazyFrame:
    """One row per source with emulated quotes (``source``, ``quotes``), by name."""
    return (quotes.filter(is_emulated())
            .group_by(pl.col("source").cast(pl.String))
            .agg(pl.len().alias("quotes"))
            .sort("source"))


#: The caveats a published table marks, per service and per corridor, in the order shown
#: (``publish.data.CAVEATS`` explains each). The averages keep every such service but those
#: with a stale reference rate, which are left out of them.
TABLE_CAVEATS = ("estimate", "negative_margin", "negative_total_cost", "bank_transfer_only",
                 "reference_stale", "approximate_amount", "partner", "tariff_out_of_validity")


def service_caveats(quotes: pl.LazyFrame, services: pl.LazyFrame, *, labels: list[str],
                    amount_usd: int) -> pl.LazyFrame:
    """Per service quoted in the periods ``labels`` at ``amount_usd``: its caveats.

    A service carries a caveat when any of its quotes does (the quote's stored ``flags``, a
    comparison feed's ``estimate``, a stale reference rate), or when its cost in ``services``
    (``metrics.services.services_in_period``) has a negative FX margin or total — the same
    rule for every source. Columns: service_id, source_code, destination_code, caveats
    (space-separated, in ``TABLE_CAVEATS`` order; services without one are left out).
    """
    q = quotes.filter(pl.col("period").is_in(labels), pl.col("amount_usd") == amount_usd)
    key = [pl.col("service_id").cast(pl.String), pl.col("source_code").cast(pl.String),
           pl.col("destination_code").cast(pl.String)]
    tokens = pl.concat_str([
        pl.col("flags").fill_null(""),
        pl.when(pl.col("data_kind").cast(pl.String) == DataKind.ESTIMATE.value)
        .then(pl.lit("estimate")).otherwise(pl.lit("")),
        pl.when(pl.col("reference_stale").fill_null(False))
        .then(pl.lit("reference_stale")).otherwise(pl.lit("")),
    ], separator=" ").str.split(" ")
    stored = q.select(*key, tokens.alias("caveat")).explode("caveat")
    costs = services.select(
        *key, pl.concat_list(
            pl.when(pl.col("fx_margin_pct") < 0).then(pl.lit("negative_margin")),
            pl.when(pl.col("total_cost_pct") < 0).then(pl.lit("negative_total_cost")),
        ).alias("caveat")).explode("caveat")
    order = {name: i for i, name in enumerate(TABLE_CAVEATS)}
    return (
        pl.concat([stored, costs], how="vertical_relaxed")
        .filter(pl.col("caveat").is_in(TABLE_CAVEATS))
        .unique()
        .with_columns(pl.col("caveat").replace_strict(order, return_dtype=pl.Int8)
                      .alias("_order"))
        .group_by("service_id", "source_code", "destination_code")
        .agg(pl.col("caveat").sort_by("_order").str.join(" ").alias("caveats"))
        .sort("service_id")
    )


def corridor_caveats(caveats: pl.LazyFrame) -> pl.LazyFrame:
    """Per corridor with a flagged service (``service_caveats``): ``caveats``, each flag with
    the number of its services that carry it ("negative_margin:3 estimate:1", in
    ``TABLE_CAVEATS`` order), and ``flagged_services`` (services with any caveat). Columns:
    source, destination, caveats, flagged_services; sorted by corridor."""
    order = {name: i for i, name in enumerate(TABLE_CAVEATS)}
    corridor = [pl.col("source_code").alias("source"),
                pl.col("destination_code").alias("destination")]
    per_flag = (caveats.with_columns(pl.col("caveats").str.split(" ").alias("caveat"))
                .explode("caveat")
                .group_by("source_code", "destination_code", "caveat")
                .agg(pl.len().alias("n"))
                .with_columns(pl.col("caveat").replace_strict(order, return_dtype=pl.Int8)
                              .alias("_order"))
                .group_by("source_code", "destination_code")
                .agg(pl.format("{}:{}", "caveat", "n").sort_by("_order").str.join(" ")
                     .alias("caveats")))
    flagged = caveats.group_by("source_code", "destination_code").agg(
        pl.len().cast(pl.Int64).alias("flagged_services"))
    return (per_flag.join(flagged, on=["source_code", "destination_code"], how="inner")
            .select(*corridor, "caveats", "flagged_services")
            .sort("source", "destination"))
