"""Averages by how a remittance is paid in, where it is sent from and how it is paid out:
the RPW reports' cost by payment instrument, by access point and by the instrument that
disburses it (METHODOLOGY.md, "The World Bank's other indices").

Both are simple means of total cost over the transparent services that have the field, like
the firm-type average. A service whose RPW label combines several instruments or access
points ("Bank account transfer,Debit/credit card") counts under the first one the importer
knows (corridors.reading.rpw keeps the labels themselves); a service without the field (sendcost's
own collectors may not say) is in no group.
"""

from __future__ import annotations

import polars as pl


def _averages_by(services: pl.LazyFrame, column: str) -> pl.LazyFrame:
    avg = pl.col("transparent") & pl.col("total_cost_pct").is_not_null()
    return (
        services.filter(pl.col(column).is_not_null())
        .group_by(pl.col(column).cast(pl.String))
        .agg(pl.col("total_cost_pct").filter(avg).mean().alias("average"),
             avg.sum().alias("services"))
        .sort(column)
    )


def payment_instrument_averages(services: pl.LazyFrame) -> pl.LazyFrame:
    """Per payment instrument (corridors.types.PayIn: cash, bank_account, card,
    mobile_money) present in the period: pay_in, average (null when none of its services is
    transparent), services (transparent ones averaged). Sorted by pay_in."""
    return _averages_by(services, "pay_in")


def access_point_averages(services: pl.LazyFrame) -> pl.LazyFrame:
    """Per access point (corridors.types.AccessPoint: agent, branch, post_office_branch,
    internet, mobile_phone, call_center) present in the period: access_point, average,
    services, as ``payment_instrument_averages``. Sorted by access_point."""
    return _averages_by(services, "access_point")


def pay_out_averages(services: pl.LazyFrame) -> pl.LazyFrame:
    """Per pay-out instrument (corridors.types.PayOut: cash, bank_account, mobile_wallet,
    home_delivery, card) present in the period: pay_out, average, services, as
    ``payment_instrument_averages``. Sorted by pay_out."""
    return _averages_by(services, "pay_out")
