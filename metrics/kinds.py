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
    """The service ids (``service_id``, as strings) with a comparison feed's estimate."""
    return (quotes.filter(pl.col("data_kind").cast(pl.String) == DataKind.ESTIMATE.value)
            .select(pl.col("service_id").cast(pl.String)).unique().sort("service_id"))


def emulated_sources(quotes: pl.LazyFrame) -> pl.LazyFrame:
    """One row per source with emulated quotes (``source``, ``quotes``), by name."""
    return (quotes.filter(is_emulated())
            .group_by(pl.col("source").cast(pl.String))
            .agg(pl.len().alias("quotes"))
            .sort("source"))
