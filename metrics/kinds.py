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


def emulated_sources(quotes: pl.LazyFrame) -> pl.LazyFrame:
    """One row per source with emulated quotes (``source``, ``quotes``), by name."""
    return (quotes.filter(is_emulated())
            .group_by(pl.col("source").cast(pl.String))
            .agg(pl.len().alias("quotes"))
            .sort("source"))
