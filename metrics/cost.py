"""The cost of one quote, as Polars expressions over quote-frame columns.

RPW's definition: total cost % = fee % + FX margin % (both of the amount sent), not the exact
1 − received / (amount × interbank) which differs by the cross term fee × margin. Where the
upstream published its own margin or total (RPW), that figure wins: it is what the official
averages are computed from (see docs/indicators.md for the rows where RPW's fee fields do not
add up to its total).
"""

from __future__ import annotations

import polars as pl


def fee_pct() -> pl.Expr:
    """Sender fee as % of the amount sent; null when the fee is unknown."""
    return pl.col("fee") / pl.col("send_amount") * 100


def fx_margin_pct() -> pl.Expr:
    """FX margin %: the published margin, else (reference − applied) / reference × 100.

    Null for a non-transparent quote: its margin is unknown, not 0. Negative margins are kept.
    """
    computed = ((pl.col("reference_rate") - pl.col("applied_rate"))
                / pl.col("reference_rate") * 100)
    return (pl.when(pl.col("transparent"))
            .then(pl.coalesce(pl.col("fx_margin_reported"), computed)))


def total_cost_pct() -> pl.Expr:
    """Total cost % (RPW): the published total, else fee % + FX margin %; null when
    non-transparent. Never clamped: a negative total is a real promotion."""
    return (pl.when(pl.col("transparent"))
            .then(pl.coalesce(pl.col("total_cost_reported"), fee_pct() + fx_margin_pct())))


def exact_cost_pct() -> pl.Expr:
    """1 − received / (amount × reference rate), in %: shown beside RPW's definition.

    Only where the amount received is known: whether the fee came out of the amount is not
    guessed, so a quote without ``received_amount`` (all of RPW) has null here.
    """
    return (pl.when(pl.col("transparent"))
            .then((1 - pl.col("received_amount")
                   / (pl.col("send_amount") * pl.col("reference_rate"))) * 100))
