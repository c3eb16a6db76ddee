"""The World Bank's own figures, reproduced from the RPW extract shipped in the package.

Every official 2011 corridor average must come out within 0.005 percentage points. Published
global figures are compared where the extract covers the period; docs/indicators.md explains
the ones that do not reproduce.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from collector.flows import read_bilateral_flows
from collector.rpw import RpwRead, read_rpw
from corridors.errors import BadPeriod
from corridors.periods import parse_period
from corridors.reference import countries_frame
from metrics import compute_indicators

DATA = Path(__file__).resolve().parent.parent / "corridors" / "data"
RPW_GZ = DATA / "rpw_quotes_2011Q1_2014Q2.csv.gz"
OFFICIAL = DATA / "official_corridor_averages_2011.csv"
PUBLISHED = DATA / "published_figures.csv"
#: The World Bank's figures known only from other sites citing it: never an official
#: comparison, but the figures the fidelity of the extract is measured against all the same.
SECONDARY = DATA / "published_figures_secondary.csv"


def every_published() -> pl.DataFrame:
    """Both files: every figure the World Bank is known to have published."""
    return pl.concat([pl.read_csv(f, infer_schema=False) for f in (PUBLISHED, SECONDARY)]
                     ).with_columns(pl.col("value_pct").cast(pl.Float64))
MATRIX = DATA / "bilateral_remittance_matrix_2011.csv"


@functools.cache
def rpw() -> RpwRead:
    return read_rpw(RPW_GZ)


@functools.cache
def indicators(period: str, amount: int = 200) -> dict[str, Any]:
    flows = read_bilateral_flows(MATRIX).flows.lazy()
    return compute_indicators(rpw().frame.lazy(), period=period, amount_usd=amount,
                              countries=countries_frame().lazy(), flows=flows)


def official() -> pl.DataFrame:
    return pl.read_csv(OFFICIAL)


@pytest.mark.parametrize("rpw_period", ["2011_1Q", "2011_3Q"])
def test_every_official_corridor_average_reproduces(rpw_period: str) -> None:
    doc = indicators(rpw_period)
    ours = {(c["source"], c["destination"]): c["average"] for c in doc["corridors"]}
    want = official().filter(pl.col("period") == rpw_period)
    assert want.height > 150
    misses = []
    for src, dst, value in want.select("source_code", "destination_code",
                                       "avg_total_cost_pct").iter_rows():
        got = ours.get((src, dst))
        if got is None or abs(got - value) > 0.005:
            misses.append((src, dst, value, got))
    assert misses == []


@pytest.mark.parametrize("rpw_period", ["2011_1Q", "2011_3Q"])
def test_corridors_absent_from_official_list_have_no_transparent_service(
        rpw_period: str) -> None:
    doc = indicators(rpw_period)
    listed = set(official().filter(pl.col("period") == rpw_period)
                 .select("source_code", "destination_code").iter_rows())
    ours = {(c["source"], c["destination"]) for c in doc["corridors"]}
    without_transparent = {(c["source"], c["destination"]) for c in doc["corridors"]
                           if c["no_transparent_service"]}
    assert ours - listed == without_transparent
    assert listed <= ours


def test_published_total_reproduces_where_recomputing_would_not() -> None:
    """Why total_cost_reported is kept: fee % + margin misses some official averages."""
    frame = rpw().frame.filter(pl.col("total_cost_reported").is_not_null())
    recomputed = frame.with_columns(total_cost_reported=None).lazy()
    doc = compute_indicators(recomputed, period="2011Q1", amount_usd=200,
                             countries=countries_frame().lazy(), flows=None)
    doc3 = compute_indicators(recomputed, period="2011Q3", amount_usd=200,
                              countries=countries_frame().lazy(), flows=None)
    ours = {("2011_1Q", c["source"], c["destination"]): c["average"] for c in doc["corridors"]}
    ours |= {("2011_3Q", c["source"], c["destination"]): c["average"] for c in doc3["corridors"]}
    misses = [row for row in official().iter_rows()
              if ours.get(row[:3]) is None or abs(ours[row[:3]] - row[3]) > 0.005]
    assert len(misses) > 0


KEYS: dict[str, str | tuple[str, str]] = {
    "g20_receiving_average": "g20_receiving_average",
    "region_MENA": ("by_receiving_region", "MNA"),
    "region_LAC": ("by_receiving_region", "LAC"),
    "region_SAS": ("by_receiving_region", "SAS"),
    "region_SSA": ("by_receiving_region", "SSA"),
}


def _ours(doc: dict[str, Any], metric: str) -> float | None:
    key = KEYS.get(metric, metric)
    if isinstance(key, tuple):
        return doc[key[0]].get(key[1], {}).get("average")
    return doc[key]


@pytest.mark.parametrize("metric", sorted(KEYS))
def test_published_2011q3_figures_that_reproduce(metric: str) -> None:
    """RPW Issue 3 (Nov 2011): these reproduce to the published two decimals (±0.01)."""
    row = pl.read_csv(PUBLISHED).filter(pl.col("period") == "2011_3Q",
                                        pl.col("metric") == metric)
    assert row.height == 1
    got = _ours(indicators("2011Q3"), metric)
    assert got is not None
    assert abs(got - row["value_pct"].item()) <= 0.01


def test_published_global_headline_is_not_reproduced_but_close() -> None:
    """Documented gap: our mean over transparent services is 0.2-0.35 pp below every
    published 2011-2014 headline the extract covers (docs/indicators.md)."""
    rows = every_published().filter(pl.col("metric") == "global_average_usd200")
    in_extract = set(rpw().frame["period"].unique().to_list())
    covered = 0
    for rpw_period, value in rows.select("period", "value_pct").iter_rows():
        try:
            period = str(parse_period(rpw_period))
        except BadPeriod:  # "2015_3Q?": quarter not known
            continue
        if period not in in_extract:
            continue
        ours = indicators(period)["global_average"]
        covered += 1
        assert 0.1 < value - ours < 0.5, (period, value, ours)
    assert covered == 4  # 2011Q3, 2013Q3, 2013Q4, 2014Q1


def test_weighted_average_2014_is_close_to_published() -> None:
    """2014 weighted figures use later weights than the 2011 matrix shipped here: close, not
    equal."""
    for rpw_period, value in every_published().filter(
            pl.col("metric") == "global_weighted_average",
            pl.col("period").is_in(["2014_1Q", "2014_2Q"])).select(
            "period", "value_pct").iter_rows():
        ours = indicators(rpw_period)["weighted_average"]
        assert abs(ours - value) < 0.1, (rpw_period, value, ours)


def test_usd_500_is_computed_too() -> None:
    doc = indicators("2011Q3", 500)
    assert doc["services"]["transparent"] > 2000
    assert doc["global_average"] < indicators("2011Q3")["global_average"]


def test_every_official_figure_is_read_from_the_world_banks_own_publication() -> None:
    """Issue #11 item 6: published_figures.csv holds only figures read from the World
    Bank's own publication at their URL, each with the sentence stating it; every figure
    known only from another site citing or copying it is in the secondary file, which says
    why, and which the bulletin never sets beside ours."""
    world_bank = ("http://documents1.worldbank.org/", "https://blogs.worldbank.org/",
                  "https://remittanceprices.worldbank.org/")
    primary = pl.read_csv(PUBLISHED, infer_schema=False).to_dicts()
    assert primary and {r["source_kind"] for r in primary} == {"primary"}
    for r in primary:
        assert r["source_url_or_repo"].startswith(world_bank), r
        value = float(r["value_pct"])
        assert f"{value:.2f}" in r["quote"] or f"{value:g}" in r["quote"], r
    secondary = pl.read_csv(SECONDARY, infer_schema=False).to_dicts()
    assert secondary and {r["source_kind"] for r in secondary} == {"secondary"}
    assert all("secondary" in (r["notes"] or "") for r in secondary)
    # the sites the issue named are never taken for the World Bank's own publication
    named = ("businessinsider", "thepaypers", "bitcointalk", "paperzz", "cupdf", "mondato",
             "gsma", "devpolicy", "happilyinpursuit", "jamesrqclark", "findevgateway",
             "remittance-watch")
    assert not [r for r in primary
                if any(n in (r["source_url_or_repo"] + r["source_title"] + (r["notes"] or ""))
                       for n in named)]
    # a figure is in one file or the other, never both
    key = {(r["period"], r["metric"]) for r in primary}
    assert not key & {(r["period"], r["metric"]) for r in secondary}
