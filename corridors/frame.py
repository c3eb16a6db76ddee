"""The quote frame: the one tabular shape in which quotes travel from store to metrics.

Every source (the RPW importer, sendcost's own collectors, the store) produces it, and every
metric in ``metrics/`` consumes it. One row is one quote of one service at one price point.
"""

from __future__ import annotations

import polars as pl

#: Text columns are Categorical: a quote frame repeats a few hundred corridors, firms and
#: periods over millions of rows, and grouping on the categories' integer codes is what keeps
#: the indicators fast (bench/indicators.py). The metrics hand back plain strings.
_TEXT = pl.Categorical()

#: Column → Polars dtype. Nullable everywhere unless the comment of the column says not.
QUOTE_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "period": _TEXT,  # canonical period: "2011Q1" or "2026-11"; never null
    "source_code": _TEXT,  # sending country, ISO alpha-3; never null
    "destination_code": _TEXT,  # receiving country, ISO alpha-3; never null
    "firm": _TEXT,  # provider name; never null
    "firm_type": _TEXT,  # corridors.types.FirmType value; never null
    "product": _TEXT,  # the provider's product name ("" when none)
    "service_id": _TEXT,  # stable id of the service (firm × corridor × product); never null
    "speed": _TEXT,  # corridors.types.Speed value, null when unknown
    "pay_in": _TEXT,  # corridors.types.PayIn value
    "pay_out": _TEXT,  # corridors.types.PayOut value
    "access_point": _TEXT,  # corridors.types.AccessPoint value
    "amount_usd": pl.Int32(),  # nominal price point: 200 or 500; never null
    "send_amount": pl.Float64(),  # amount sent, in the sending currency
    "send_currency": _TEXT,  # ISO 4217
    "receive_currency": _TEXT,  # ISO 4217
    "fee": pl.Float64(),  # sender fee, sending currency
    "applied_rate": pl.Float64(),  # pay-out units per sending unit, as applied
    "reference_rate": pl.Float64(),  # interbank / mid-market rate at collection
    "reference_source": _TEXT,
    "fx_margin_reported": pl.Float64(),  # margin % as the upstream published it (RPW)
    "total_cost_reported": pl.Float64(),  # total cost % as the upstream published it (RPW)
    "received_amount": pl.Float64(),  # amount received, pay-out currency
    "transparent": pl.Boolean(),  # provider disclosed its exchange rate; never null
    "reference_stale": pl.Boolean(),  # no fresh reference rate: kept, left out of averages
    "source": _TEXT,  # where the quote came from: "rpw", a collector source name
    "collected_at": pl.Datetime("us", "UTC"),
    # corridors.types.DataKind value: survey, observed, estimate or emulated (null: a frame
    # read straight from a file that does not say; the RPW reader's rows are survey)
    "data_kind": _TEXT,
    # the quote's flags (caveats), space-separated: "estimate negative_margin"; "" when none
    "flags": pl.String(),
    # the currency RPW's free-text notes say the service pays out in (ISO 4217; null when
    # they say none, and for every other source): corridors.reading.rpw reads it once
    "payout_currency_noted": _TEXT,
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
