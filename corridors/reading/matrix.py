"""Bilateral remittance flows by corridor, from the World Bank matrix: the weights of the
weighted global average.

The matrix names countries (``Egypt, Arab Rep.``, ``Côte d'Ivoire``): ``flows_from_matrix``
takes their ISO alpha-3 codes as an argument (corridors.reference.country_codes) and
reports every name without one (aggregates such as ``Total`` or ``Other South``, places
without an ISO code such as ``Channel Islands``). ``read_bilateral_flows`` does it all for
a file; ``read_bundled_flows`` gives every bundled matrix (2011, 2021) with its year.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from corridors.errors import ImportFileError
from corridors.reference import country_codes, data_file


def read_bilateral_matrix(path: str | Path) -> pl.DataFrame:
    """The World Bank bilateral remittance matrix as it is: names, strings, one row a sender.

    The file is Windows-1252 text (``Côte d'Ivoire``) with thousands separators and notes
    under the table; ``read_bilateral_flows`` turns it into corridor flows.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read ({exc})", path=str(p)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    try:
        return pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError as exc:
        raise ImportFileError(f"matrix not readable ({exc})", path=str(p)) from None


@dataclass(frozen=True, slots=True)
class Flows:
    """Corridor flows (source_code, destination_code, flow_usd_m) and the names not mapped."""

    flows: pl.DataFrame
    unmatched: list[str]


def flows_from_matrix(matrix: pl.DataFrame, codes: Mapping[str, str | None], *,
                      origin_column: str | None = None) -> Flows:
    """Turn the raw matrix (rows: sending country; columns: receiving country; values in USD
    millions, possibly with thousands separators) into corridor flows.

    Rows with no value at all (the notes under the table) are ignored; every other row or
    column name that does not map to an ISO code is listed in ``unmatched`` and its flows
    dropped. Zero flows are dropped. ``codes`` maps every country name of the matrix to its
    ISO alpha-3 (None when it is not a country): corridors.reference.country_codes.
    """
    origin = origin_column or matrix.columns[0]
    receivers = [c for c in matrix.columns if c != origin]
    table = matrix.filter(pl.any_horizontal(pl.col(receivers).is_not_null()))
    senders = table[origin].drop_nulls().to_list()
    names = set(senders) | set(receivers)
    unmatched = sorted(n for n in names if codes.get(n) is None)
    codes = {n: codes.get(n) for n in names}
    long = (
        table.lazy()
        .unpivot(index=origin, on=receivers, variable_name="_to", value_name="_v")
        .select(
            pl.col(origin).replace_strict(codes, default=None, return_dtype=pl.String)
            .alias("source_code"),
            pl.col("_to").replace_strict(codes, default=None, return_dtype=pl.String)
            .alias("destination_code"),
            pl.col("_v").cast(pl.String).str.replace_all(",", "")
            .cast(pl.Float64, strict=False).alias("flow_usd_m"),
        )
        .filter(pl.col("source_code").is_not_null(), pl.col("destination_code").is_not_null(),
                pl.col("flow_usd_m") > 0)
        # Two names can map to one code (e.g. an old and a new name): add their flows.
        .group_by("source_code", "destination_code")
        .agg(pl.col("flow_usd_m").sum())
        .sort("source_code", "destination_code")
        .collect()
    )
    return Flows(long, unmatched)


#: The World Bank/KNOMAD bilateral remittance matrices bundled in corridors/data, by the year
#: whose flows they estimate (corridors/data/RPW_README.md says where each comes from).
BUNDLED_MATRICES: dict[int, str] = {
    2011: "bilateral_remittance_matrix_2011.csv",
    2021: "bilateral_remittance_matrix_2021.csv",
}
BUNDLED_MATRIX = BUNDLED_MATRICES[2011]


def read_bilateral_flows(path: str | Path | None = None) -> Flows:
    """Corridor flows from the World Bank matrix at ``path`` (default: the bundled 2011
    matrix), country names mapped to ISO codes."""
    if path is None:
        path = data_file(BUNDLED_MATRIX)
    matrix = read_bilateral_matrix(path)
    names = [*matrix[matrix.columns[0]].drop_nulls().to_list(), *matrix.columns[1:]]
    return flows_from_matrix(matrix, country_codes(names))


def read_bundled_flows() -> pl.DataFrame:
    """Every bundled matrix's corridor flows, one above the other, with the matrix's
    ``year``: metrics.corridors.matrix_for_period picks the one nearest a period."""
    parts = [read_bilateral_flows(data_file(name)).flows
             .with_columns(pl.lit(year, pl.Int32).alias("year"))
             for year, name in sorted(BUNDLED_MATRICES.items())]
    return pl.concat(parts, how="vertical")
