"""Bilateral remittance flows by corridor, from the World Bank matrix (no I/O here).

The matrix names countries (``Egypt, Arab Rep.``, ``Côte d'Ivoire``): ``flows_from_matrix``
maps them to ISO alpha-3 with ``country_converter`` and reports every name it could not
map (aggregates such as ``Total`` or ``Other South``, and places without an ISO code such as
``Channel Islands``). Reading the file is ``collector.rpw.read_bilateral_matrix``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True, slots=True)
class Flows:
    """Corridor flows (source_code, destination_code, flow_usd_m) and the names not mapped."""

    flows: pl.DataFrame
    unmatched: list[str]


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    # country_converter logs every unknown name itself; we return them instead.
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@functools.cache
def _converter():  # type: ignore[no-untyped-def]
    import country_converter as coco
    import pandas as pd
    from pandas._libs.parsers import STR_NA_VALUES

    # country_converter 1.3.2 reads its table so that pandas 3 turns Namibia's ISO2 "NA" into
    # NaN and its constructor then fails; read the table as it intends (only "NA" kept).
    table = pd.read_csv(coco.country_converter.COUNTRY_DATA_FILE, sep="\t", encoding="utf-8",
                        dtype=str, keep_default_na=False,
                        na_values=sorted(STR_NA_VALUES - {"NA"}))
    return coco.CountryConverter(country_data=table)


def country_codes(names: list[str]) -> dict[str, str | None]:
    """ISO alpha-3 for each country name (None when not recognised)."""
    unique = sorted(set(names))
    if not unique:
        return {}
    with _quiet("country_converter"), _quiet("country_converter.country_converter"):
        codes = _converter().convert(unique, src="regex", to="ISO3", not_found="")
    if isinstance(codes, str):
        codes = [codes]
    return {n: (c if isinstance(c, str) and len(c) == 3 else None)
            for n, c in zip(unique, codes, strict=True)}


def flows_from_matrix(matrix: pl.DataFrame, *, origin_column: str | None = None) -> Flows:
    """Turn the raw matrix (rows: sending country; columns: receiving country; values in USD
    millions, possibly with thousands separators) into corridor flows.

    Rows with no value at all (the notes under the table) are ignored; every other row or
    column name that does not map to an ISO code is listed in ``unmatched`` and its flows
    dropped. Zero flows are dropped.
    """
    origin = origin_column or matrix.columns[0]
    receivers = [c for c in matrix.columns if c != origin]
    table = matrix.filter(pl.any_horizontal(pl.col(receivers).is_not_null()))
    senders = table[origin].drop_nulls().to_list()
    codes = country_codes(senders + receivers)
    unmatched = sorted(n for n, c in codes.items() if c is None)
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
