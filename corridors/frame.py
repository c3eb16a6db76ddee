"""The quote frame: the one tabular shape in which quotes travel from store to metrics.

Every source (the RPW importer, sendcost's own collectors, the store) produces it, and every
metric in ``metrics/`` consumes it. One row is one quote of one service at one price point.
"""

from __future__ import annotations

import polars as pl

#: Column → Polars dtype. Nullable everywhere unless the docstring of the column says not.
QUOTE_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "period": pl.String(),  # canonical period: "2011Q1" or "2026-11"; never null
    "source_code": pl.String(),  # sending country, ISO alpha-3; never null
    "destination_code": pl.String(),  # receiving country, ISO alpha-3; never null
    "firm": pl.String(),  # provider name; never null
    "firm_type": pl.String(),  # corridors.types.FirmType value; never null
    "product": pl.String(),  # the provider's product name ("" when none)
    "service_id": pl.String(),  # stable id of the service (firm × corridor × product); never null
    "speed": pl.String(),  # corridors.types.Speed value, null when unknown
    "pay_in": pl.String(),  # corridors.types.PayIn value
    "pay_out": pl.String(),  # corridors.types.PayOut value
    "access_point": pl.String(),  # corridors.types.AccessPoint value
    "amount_usd": pl.Int32(),  # nominal price point: 200 or 500; never null
    "send_amount": pl.Float64(),  # amount sent, in the sending currency
    "send_currency": pl.String(),  # ISO 4217
    "receive_currency": pl.String(),  # ISO 4217
    "fee": pl.Float64(),  # sender fee, sending currency
    "applied_rate": pl.Float64(),  # pay-out units per sending unit, as applied
    "reference_rate": pl.Float64(),  # interbank / mid-market rate at collection
    "reference_source": pl.String(),
    "fx_margin_reported": pl.Float64(),  # margin % as the upstream published it (RPW)
    "total_cost_reported": pl.Float64(),  # total cost % as the upstream published it (RPW)
    "received_amount": pl.Float64(),  # amount received, pay-out currency
    "transparent": pl.Boolean(),  # provider disclosed its exchange rate; never null
    "reference_stale": pl.Boolean(),  # no fresh reference rate: kept, left out of averages
    "source": pl.String(),  # where the quote came from: "rpw", a collector source name
    "collected_at": pl.Datetime("us", "UTC"),
}


def empty_quote_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=QUOTE_FRAME_SCHEMA)


def conform(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Select and cast the quote-frame columns, adding missing optional ones as nulls."""
    lf = frame.lazy()
    names = lf.collect_schema().names()
    cols = []
    for name, dtype in QUOTE_FRAME_SCHEMA.items():
        if name in names:
            cols.append(pl.col(name).cast(dtype))
        elif name == "reference_stale":
            cols.append(pl.lit(False, dtype).alias(name))
        else:
            cols.append(pl.lit(None, dtype).alias(name))
    return lf.select(cols)
