"""Progress toward the 2030 target: the Open SDG (Statistics Canada) CAGR rule.

The observed compound annual growth rate of the indicator from a base period to the latest,
compared with the rate needed to go from the base value to the target by the target year:
R = observed / needed. R ≥ 95%: on track; 60–95%: progress made but acceleration needed;
0–60%: limited progress; R < 0: deterioration; at or below the target: achieved.
Pure: a series in, a call out (no I/O, no clock).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from corridors.periods import parse_period

#: SDG 10.c: below 3% by 2030.
TARGET_PCT = 3.0
TARGET_YEAR = 2030
#: The base year of the SDG framework; the first period with data is the base when no
#: period of this year or later has data.
BASE_YEAR = 2015

ACHIEVED = "target achieved"
ON_TRACK = "on track"
ACCELERATION_NEEDED = "progress made but acceleration needed"
LIMITED = "limited progress"
DETERIORATION = "deterioration"
INSUFFICIENT = "insufficient data"


def decimal_year(period: str) -> float:
    """Start of a period as a fractional year: 2014Q2 → 2014.25, 2026-11 → 2026.833…"""
    p = parse_period(period)
    if p.is_quarter:
        return p.year + (p.quarter - 1) / 4
    return p.year + (p.month - 1) / 12


def cagr(start: float, end: float, years: float) -> float:
    """Compound annual growth rate (a fraction: -0.02 is -2% a year)."""
    return (end / start) ** (1 / years) - 1


@dataclass(frozen=True, slots=True)
class ProgressCall:
    call: str
    base_period: str | None
    base_value: float | None
    latest_period: str | None
    latest_value: float | None
    observed_rate: float | None  # CAGR, fraction per year
    needed_rate: float | None  # CAGR needed from the base to the target by the target year
    ratio: float | None  # observed / needed
    target: float = TARGET_PCT
    target_year: int = TARGET_YEAR

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def base_period(periods: list[str], base_year: int = BASE_YEAR) -> str | None:
    """The first period of ``base_year`` or later with data, else the first period at all."""
    ordered = sorted(periods, key=decimal_year)
    later = [p for p in ordered if decimal_year(p) >= base_year]
    if later:
        return later[0]
    return ordered[0] if ordered else None


def progress_call(series: pl.LazyFrame, *, target: float = TARGET_PCT,
                  target_year: int = TARGET_YEAR, base_year: int = BASE_YEAR,
                  latest: str | None = None) -> ProgressCall:
    """The call for a series (columns: period, value; lower is better) up to ``latest``.

    Null values are ignored. With fewer than two periods, or a non-positive base value, the
    call is "insufficient data".
    """
    frame = (series.filter(pl.col("value").is_not_null())
             .select("period", "value").collect())
    rows = {r["period"]: r["value"] for r in frame.iter_rows(named=True)}
    if latest is not None:
        cut = decimal_year(latest)
        rows = {p: v for p, v in rows.items() if decimal_year(p) <= cut}
    if not rows:
        return ProgressCall(INSUFFICIENT, None, None, None, None, None, None, None,
                            target, target_year)
    last = max(rows, key=decimal_year)
    y_i = rows[last]
    if y_i <= target:
        return ProgressCall(ACHIEVED, None, None, last, y_i, None, None, None, target,
                            target_year)
    base = base_period(list(rows), base_year)
    assert base is not None
    y_0, t_0, t_i = rows[base], decimal_year(base), decimal_year(last)
    if base == last or y_0 <= 0 or t_i <= t_0 or target_year <= t_0:
        return ProgressCall(INSUFFICIENT, base, y_0, last, y_i, None, None, None, target,
                            target_year)
    observed = cagr(y_0, y_i, t_i - t_0)
    needed = cagr(y_0, target, target_year - t_0)
    if needed >= 0:
        # The base already met the target; the latest value no longer does.
        return ProgressCall(DETERIORATION, base, y_0, last, y_i, observed, needed, None,
                            target, target_year)
    ratio = observed / needed
    if ratio >= 0.95:
        call = ON_TRACK
    elif ratio >= 0.60:
        call = ACCELERATION_NEEDED
    elif ratio >= 0:
        call = LIMITED
    else:
        call = DETERIORATION
    return ProgressCall(call, base, y_0, last, y_i, observed, needed, ratio, target,
                        target_year)
