"""The bulletin's pure metrics on tiny tables: progress call, 5% component, postal rank."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from corridors.frame import conform
from metrics import bulletin as mb
from metrics.postal import postal_benchmark, postal_by_operator, postal_extremes
from metrics.progress import (
    ACCELERATION_NEEDED,
    ACHIEVED,
    DETERIORATION,
    INSUFFICIENT,
    LIMITED,
    ON_TRACK,
    cagr,
    progress_call,
)


def _series(values: dict[str, float]) -> pl.LazyFrame:
    return pl.LazyFrame({"period": list(values), "value": list(values.values())})


def test_progress_calls() -> None:
    needed = cagr(8.0, 3.0, 2030 - 2015)
    on_track = 8.0 * (1 + needed) ** 5
    assert progress_call(_series({"2015Q1": 8.0, "2020Q1": on_track})).call == ON_TRACK
    slower = 8.0 * (1 + needed * 0.8) ** 5
    call = progress_call(_series({"2015Q1": 8.0, "2020Q1": slower}))
    assert call.call == ACCELERATION_NEEDED and call.ratio == pytest.approx(0.8, abs=0.01)
    assert call.base_period == "2015Q1" and call.needed_rate == pytest.approx(needed)
    assert progress_call(_series({"2015Q1": 8.0, "2020Q1": 7.9})).call == LIMITED
    assert progress_call(_series({"2015Q1": 8.0, "2020Q1": 8.5})).call == DETERIORATION
    assert progress_call(_series({"2015Q1": 8.0, "2020Q1": 2.9})).call == ACHIEVED
    assert progress_call(_series({"2020Q1": 8.0})).call == INSUFFICIENT
    # the base is 2015 when there is data from 2015 on, else the first period
    assert progress_call(_series({"2011Q1": 9.0, "2015Q3": 8.0, "2020Q1": 7.0})
                         ).base_period == "2015Q3"
    assert progress_call(_series({"2011Q1": 9.0, "2014Q2": 8.0})).base_period == "2011Q1"
    # ``latest`` cuts the series
    assert progress_call(_series({"2015Q1": 8.0, "2020Q1": 8.5, "2021Q1": 2.0}),
                         latest="2020Q1").call == DETERIORATION


def _corridors(rows: list[tuple[str, float | None, float | None]]) -> pl.LazyFrame:
    return pl.LazyFrame({
        "source": ["USA"] * len(rows), "destination": [r[0] for r in rows],
        "average": [r[1] for r in rows], "smart": [r[2] for r in rows],
        "cheapest_firm": ["F"] * len(rows), "cheapest_firm_type": ["mto"] * len(rows),
        "cheapest_total_cost": [1.0] * len(rows), "transparent_services": [3] * len(rows)},
        schema_overrides={"average": pl.Float64, "smart": pl.Float64})


def test_five_percent_component_and_list_changes() -> None:
    now = _corridors([("MEX", 4.0, 3.0), ("IND", 6.0, 5.5), ("NGA", 11.0, None),
                      ("PAK", 7.0, 4.5), ("PHL", None, None)])
    before = _corridors([("MEX", 5.5, 4.0), ("IND", 4.0, 3.0), ("PAK", 6.0, 5.1),
                         ("SEN", 9.0, 8.0)])
    five = mb.five_percent_component(now).collect().row(0, named=True)
    assert (five["corridors"], five["smart_above_5"], five["too_few_qualifying"],
            five["average_above_5"], five["average_above_10"], five["meeting_5_condition"]
            ) == (5, 1, 2, 3, 1, 2)
    assert five["share_average_above_5"] == pytest.approx(75.0)
    listed = mb.corridors_above_5(now, before).collect()
    status = dict(zip(listed["destination"], listed["status"], strict=True))
    assert status == {"IND": "entered", "NGA": "new", "PAK": "stayed", "MEX": "left",
                      "SEN": "not observed"}
    assert listed.filter(pl.col("destination") == "PAK")["change"].item() == pytest.approx(1.0)


def test_postal_rank_against_the_corridor() -> None:
    def quote(firm: str, firm_type: str, fee: float, transparent: bool = True) -> dict:
        return {"period": "2026-11", "source_code": "FRA", "destination_code": "SEN",
                "firm": firm, "firm_type": firm_type, "product": "", "service_id": firm,
                "speed": "same_day", "amount_usd": 200, "send_amount": 100.0, "fee": fee,
                "applied_rate": 1.0, "reference_rate": 1.0, "transparent": transparent,
                "source": "test"}

    quotes = conform(pl.DataFrame([
        quote("A", "mto", 2.0), quote("B", "bank", 8.0), quote("C", "mto", 4.0),
        quote("La Poste", "post_office", 4.0), quote("Post 2", "post_office", 3.0, False),
    ]))
    bench = postal_benchmark(quotes, period="2026-11", amount_usd=200).collect()
    post = bench.row(0, named=True)
    assert (post["firm"], post["total_cost_pct"], post["rank"], post["corridor_services"],
            post["corridor_median"], post["corridor_cheapest"], post["cheapest_firm"]) == (
        "La Poste", 4.0, 2, 4, 4.0, 2.0, "A")
    assert post["corridor_smart"] == pytest.approx(10 / 3)
    opaque = bench.row(1, named=True)
    assert opaque["firm"] == "Post 2" and opaque["rank"] is None
    assert opaque["total_cost_pct"] is None


def test_postal_operators_and_extremes() -> None:
    from polars.testing import assert_frame_equal

    bench = pl.LazyFrame({
        "source_code": ["DEU", "DEU", "FRA", "FRA", "FRA"],
        "destination_code": ["TGO", "ROU", "MAR", "MAR", "DZA"],
        "firm": ["Postbank", "Postbank", "La Poste", "La Poste", "La Poste"],
        "firm_type": ["post_office", "post_office", "post_office_mto", "post_office_mto",
                      "post_office_mto"],
        "product": ["a", "a", "a", "b", "a"],
        "service_id": ["1", "2", "3", "4", "5"],
        "total_cost_pct": [1.0, 3.0, None, 9.0, 5.0],
        "corridor_median": [8.0, 2.5, 6.0, 6.0, 5.0],
        "difference_to_median": [-7.0, 0.5, None, 3.0, 0.0],
        "rank": [1, 4, None, 7, 2],
    })
    expected = pl.DataFrame({
        "firm": ["Postbank", "La Poste"], "firm_type": ["post_office", "post_office_mto"],
        "services": [2, 3], "corridors": [2, 2], "transparent": [2, 2],
        "average": [2.0, 7.0], "at_or_below_median": [1, 1],
        "cheapest_in_corridor": [1, 0], "median_difference": [-3.25, 1.5],
    })
    assert_frame_equal(postal_by_operator(bench).collect(), expected)
    cheap = postal_extremes(bench, 2).collect()
    assert cheap.get_column("service_id").to_list() == ["1", "5"]
    dear = postal_extremes(bench, 10, cheapest=False).collect()
    # services without a disclosed rate (no difference) are left out
    assert dear.get_column("service_id").to_list() == ["4", "2", "5", "1"]


def _ranked_input(averages: list[float | None]) -> pl.LazyFrame:
    n = len(averages)
    return pl.LazyFrame({"source": [f"S{i:02d}" for i in range(n)], "destination": ["D"] * n,
                         "average": averages, "smart": [None] * n,
                         "transparent_services": [3] * n, "cheapest_firm": ["f"] * n,
                         "cheapest_total_cost": [1.0] * n},
                        schema_overrides={"smart": pl.Float64, "average": pl.Float64})


@pytest.mark.parametrize(("n", "most", "least"), [(0, 0, 0), (1, 1, 0), (2, 1, 1), (5, 3, 2),
                                                  (19, 10, 9), (30, 10, 10)])
def test_ranked_lists_never_overlap(n: int, most: int, least: int) -> None:
    # a corridor without an average is not ranked
    dear, cheap = (f.collect() for f in mb.ranked_lists(_ranked_input([*map(float, range(n)),
                                                                     None])))
    assert (dear.height, cheap.height) == (most, least)
    assert not set(dear.get_column("source")) & set(cheap.get_column("source"))
    assert set(dear.get_column("ranked")) | set(cheap.get_column("ranked")) <= {n}
    if most:
        assert dear.item(0, "average") == n - 1 and dear.get_column("rank").to_list() == list(
            range(1, most + 1))
    if least:
        assert cheap.item(0, "average") == 0.0


def test_base_and_coverage() -> None:
    quotes = conform(pl.DataFrame({
        "period": ["2026-11"] * 6, "amount_usd": [200] * 6,
        "source_code": ["USA", "USA", "USA", "USA", "GBR", "GBR"],
        "destination_code": ["MEX"] * 4 + ["IND"] * 2,
        "firm": ["A", "B", "C", "C", "A", "B"], "firm_type": ["mto"] * 6,
        "service_id": ["s1", "s2", "s3", "s3", "s4", "s5"],
        "send_amount": [200.0] * 6, "fee": [5.0] * 6, "applied_rate": [17.0] * 6,
        "reference_rate": [17.5] * 6, "transparent": [True] * 5 + [False],
        "collected_at": [dt.datetime(2026, 11, d, 12, tzinfo=dt.UTC) for d in range(1, 7)],
    }))
    q = mb.averaged_quotes(quotes, period="2026-11", amount_usd=200)
    base = mb.base(q).collect().row(0, named=True)
    # the non-transparent quote is not part of what the averages rest on
    assert (base["quotes"], base["services"], base["corridors"], base["providers"]) == (
        5, 4, 2, 3)
    assert (base["first_collected"].day, base["last_collected"].day) == (1, 5)
    target = pl.LazyFrame({"source_code": ["USA", "GBR", "FRA"],
                           "destination_code": ["MEX", "IND", "SEN"]})
    cov = mb.corridor_coverage(q, target, providers_per_corridor=3).collect().row(0, named=True)
    assert cov == {"target_corridors": 3, "covered_corridors": 1,
                   "coverage_pct": pytest.approx(100 / 3)}
