"""Each indicator of METHODOLOGY.md on tiny hand-made quote tables, edge cases pinned."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from collector.flows import flows_from_matrix
from corridors.errors import NoData
from corridors.frame import QUOTE_FRAME_SCHEMA, conform
from corridors.reference import country_codes
from metrics import (
    cheapest_service,
    compute_indicators,
    corridor_average,
    corridor_flags,
    corridor_table,
    exact_cost_pct,
    fee_pct,
    firm_type_averages,
    fx_margin_pct,
    g8_sending_average,
    g20_receiving_average,
    g20_sending_average,
    global_average,
    global_smart,
    receiving_region_averages,
    services_in_period,
    share_corridors_above,
    share_services_below,
    smart,
    total_cost_pct,
    weighted_global_average,
)
from metrics.corridors import cheapest_left_out
from metrics.indicators import DOCUMENT_KEYS
from metrics.kinds import estimate_services


def quote(src: str, dst: str, firm: str, total: float | None, *, product: str = "",
          firm_type: str = "mto", transparent: bool = True, speed: str | None = "next_day",
          fee: float = 2.0, amount: float = 200.0, period: str = "2011Q1",
          amount_usd: int = 200, stale: bool = False, service: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """One quote whose total cost is ``total`` % (as RPW publishes it)."""
    return {
        "period": period, "source_code": src, "destination_code": dst, "firm": firm,
        "firm_type": firm_type, "product": product,
        "service_id": service or f"{src}-{dst}-{firm}-{product}",
        "speed": speed, "amount_usd": amount_usd, "send_amount": amount, "fee": fee,
        "transparent": transparent, "reference_stale": stale, "source": "test",
        "total_cost_reported": total if transparent else None,
        "fx_margin_reported": (total - fee / amount * 100)
        if transparent and total is not None else None,
        **extra,
    }


def frame(*quotes: dict[str, Any]) -> pl.LazyFrame:
    return conform(pl.DataFrame(list(quotes), schema_overrides={
        k: v for k, v in QUOTE_FRAME_SCHEMA.items() if k in quotes[0]}, strict=False))


def services(*quotes: dict[str, Any], period: str = "2011Q1", amount: int = 200
             ) -> pl.LazyFrame:
    return services_in_period(frame(*quotes), period=period, amount_usd=amount).sort(
        "service_id")


COUNTRIES = pl.LazyFrame({
    "alpha3": ["USA", "GBR", "MEX", "IND", "FJI", "AUS"],
    "region": ["NAC", "ECA", "LAC", "SAS", "EAP", "EAP"],
    "g8": [True, True, False, False, False, False],
    "g20": [True, True, True, True, False, True],
})


# --- the cost of one quote ---------------------------------------------------------------------

def test_quote_costs_rpw_definition_and_exact_beside_it() -> None:
    q = frame(
        # computed from rates: fee 2% + margin (100-98)/100 = 2% → 4%
        {"period": "2011Q1", "source_code": "USA", "destination_code": "MEX", "firm": "A",
         "firm_type": "mto", "service_id": "a", "amount_usd": 200, "send_amount": 200.0,
         "fee": 4.0, "applied_rate": 98.0, "reference_rate": 100.0, "transparent": True,
         "received_amount": 196.0 * 98.0},
        # published figures win over the rates
        {"period": "2011Q1", "source_code": "USA", "destination_code": "MEX", "firm": "B",
         "firm_type": "mto", "service_id": "b", "amount_usd": 200, "send_amount": 200.0,
         "fee": 4.0, "applied_rate": 98.0, "reference_rate": 100.0, "transparent": True,
         "fx_margin_reported": 1.5, "total_cost_reported": 3.6},
        # negative margin (a promotion) is kept, not clamped
        {"period": "2011Q1", "source_code": "USA", "destination_code": "MEX", "firm": "C",
         "firm_type": "mto", "service_id": "c", "amount_usd": 200, "send_amount": 200.0,
         "fee": 0.0, "applied_rate": 101.0, "reference_rate": 100.0, "transparent": True},
        # non-transparent: fee known, margin and total unknown (null, never 0)
        {"period": "2011Q1", "source_code": "USA", "destination_code": "MEX", "firm": "D",
         "firm_type": "bank", "service_id": "d", "amount_usd": 200, "send_amount": 200.0,
         "fee": 10.0, "applied_rate": 100.0, "reference_rate": 100.0, "transparent": False},
    )
    got = q.select(fee_pct().alias("fee"), fx_margin_pct().alias("fx"),
                   total_cost_pct().alias("total"), exact_cost_pct().alias("exact")).collect()
    expected = pl.DataFrame({
        "fee": [2.0, 2.0, 0.0, 5.0],
        "fx": [2.0, 1.5, -1.0, None],
        "total": [4.0, 3.6, -1.0, None],
        # (1 - 196*98 / (200*100)) = 3.96%: the cross term RPW's sum leaves out
        "exact": [3.96, None, None, None],
    })
    assert_frame_equal(got, expected, abs_tol=1e-9)


# --- services ----------------------------------------------------------------------------------

def test_daily_quotes_of_one_service_collapse_to_their_mean() -> None:
    s = services(
        quote("USA", "MEX", "A", 4.0, period="2026-11", service="a"),
        quote("USA", "MEX", "A", 6.0, period="2026-11", service="a"),
        quote("USA", "MEX", "A", 99.0, period="2026-11", service="a", stale=True),
        quote("USA", "MEX", "A", 50.0, period="2026-11", service="a", amount_usd=500),
        quote("USA", "MEX", "A", 50.0, period="2026-10", service="a"),
        period="2026-11",
    ).collect()
    assert_frame_equal(s.select("service_id", "quotes", "total_cost_pct"),
                       pl.DataFrame({"service_id": ["a"], "quotes": [2], "total_cost_pct": [5.0]}),
                       check_dtypes=False)


def test_a_quarter_includes_its_months() -> None:
    s = services(quote("USA", "MEX", "A", 4.0, period="2026-10", service="a"),
                 quote("USA", "MEX", "A", 6.0, period="2026-12", service="a"),
                 quote("USA", "MEX", "A", 9.0, period="2027-01", service="a"),
                 period="2026Q4").collect()
    assert s["total_cost_pct"].to_list() == [5.0]


# --- corridors ---------------------------------------------------------------------------------

EDGE = (
    # USA→MEX: a firm with two services (both count), a negative total, a non-transparent one
    quote("USA", "MEX", "A", 4.0, product="cash"),
    quote("USA", "MEX", "A", 6.0, product="account"),
    quote("USA", "MEX", "B", -1.0),
    quote("USA", "MEX", "C", None, transparent=False, fee=20.0),
    # GBR→IND: one service only
    quote("GBR", "IND", "D", 12.0, firm_type="bank"),
    # AUS→FJI: no transparent service
    quote("AUS", "FJI", "E", None, transparent=False, firm_type="bank"),
)


def test_corridor_average_and_flags() -> None:
    got = corridor_flags(corridor_average(services(*EDGE))).collect()
    expected = pl.DataFrame({
        "source_code": ["AUS", "GBR", "USA"],
        "destination_code": ["FJI", "IND", "MEX"],
        "average": [None, 12.0, 3.0],
        "services": [1, 1, 4],
        "transparent_services": [0, 1, 3],
        "above_5": [None, True, False],
        "above_10": [None, True, False],
        "too_few_services": [True, True, False],
        "no_transparent_service": [True, False, False],
    }, schema_overrides={"average": pl.Float64})
    assert_frame_equal(got, expected, check_dtypes=False)


def test_global_average_is_over_services_not_corridor_means() -> None:
    got = global_average(services(*EDGE)).collect()
    # (4 + 6 - 1 + 12) / 4 = 5.25, whereas the mean of corridor means would be 7.5
    assert_frame_equal(got, pl.DataFrame({"average": [5.25], "services": [4]}),
                       check_dtypes=False)


def test_g20_g8_sending_and_g20_receiving() -> None:
    s = services(*EDGE)
    assert_frame_equal(g20_sending_average(s, COUNTRIES).collect(),
                       pl.DataFrame({"average": [5.25], "services": [4]}), check_dtypes=False)
    # AUS is G20 but has no transparent service; G8 = USA, GBR
    assert_frame_equal(g8_sending_average(s, COUNTRIES).collect(),
                       pl.DataFrame({"average": [5.25], "services": [4]}), check_dtypes=False)
    # receiving: MEX and IND are G20, FJI is not
    got = g20_receiving_average(
        services(*EDGE, quote("USA", "FJI", "F", 20.0)), COUNTRIES).collect()
    assert_frame_equal(got, pl.DataFrame({"average": [5.25], "services": [4]}),
                       check_dtypes=False)


def test_receiving_region_and_firm_type_averages() -> None:
    s = services(*EDGE, quote("USA", "FJI", "F", 20.0), quote("USA", "XXX", "G", 1.0))
    assert_frame_equal(
        receiving_region_averages(s, COUNTRIES).collect(),
        # XXX has no region: left out
        pl.DataFrame({"region": ["EAP", "LAC", "SAS"], "average": [20.0, 3.0, 12.0],
                      "services": [1, 3, 1]}), check_dtypes=False)
    assert_frame_equal(
        firm_type_averages(s).collect(),
        # bank: one transparent (12) and one not; mto: 4, 6, -1, 20, 1
        pl.DataFrame({"firm_type": ["bank", "mto"], "average": [12.0, 6.0],
                      "services": [1, 5]}), check_dtypes=False)


def test_firm_type_without_transparent_service_has_null_average() -> None:
    got = firm_type_averages(services(
        quote("AUS", "FJI", "E", None, transparent=False, firm_type="post_office"))).collect()
    assert_frame_equal(got, pl.DataFrame({"firm_type": ["post_office"], "average": [None],
                                          "services": [0]},
                                         schema_overrides={"average": pl.Float64}),
                       check_dtypes=False)


def test_smart_needs_three_qualifying_services() -> None:
    s = services(
        # USA→MEX: 4 qualifying (cheapest three: -1, 2, 4) + a slow and an unknown-speed one
        quote("USA", "MEX", "A", 4.0), quote("USA", "MEX", "B", -1.0),
        quote("USA", "MEX", "C", 2.0), quote("USA", "MEX", "D", 9.0),
        quote("USA", "MEX", "E", 0.5, speed="six_days_or_more"),
        quote("USA", "MEX", "F", 0.1, speed=None),
        quote("USA", "MEX", "G", 0.2, transparent=False),
        # GBR→IND: only two qualify → no SmaRT value
        quote("GBR", "IND", "A", 1.0), quote("GBR", "IND", "B", 2.0),
        quote("GBR", "IND", "C", 0.5, speed="six_days_or_more"),
    )
    per = smart(s)
    expected = pl.DataFrame({"source_code": ["GBR", "USA"], "destination_code": ["IND", "MEX"],
                             "smart": [None, 5.0 / 3.0], "smart_services": [2, 4]},
                            schema_overrides={"smart": pl.Float64})
    assert_frame_equal(per.collect(), expected, check_dtypes=False)
    assert_frame_equal(global_smart(per).collect(),
                       pl.DataFrame({"smart_average": [5.0 / 3.0], "corridors": [1]}),
                       check_dtypes=False)


def test_cheapest_service_per_corridor() -> None:
    got = cheapest_service(services(*EDGE, quote("USA", "MEX", "Z", -1.0))).collect()
    # B and Z (-1.0: a negative total) are never named cheapest; A's cash service is; AUS→FJI
    # has no transparent service
    expected = pl.DataFrame({"source_code": ["GBR", "USA"], "destination_code": ["IND", "MEX"],
                             "firm": ["D", "A"], "firm_type": ["bank", "mto"],
                             "product": ["", "cash"], "total_cost": [12.0, 4.0]})
    assert_frame_equal(got, expected)
    assert_frame_equal(cheapest_left_out(services(*EDGE, quote("USA", "MEX", "Z", -1.0)))
                       .collect(),
                       pl.DataFrame({"source_code": ["AUS", "GBR", "USA"],
                                     "destination_code": ["FJI", "IND", "MEX"],
                                     "cheapest_left_out": [0, 0, 2]}))


def test_cheapest_leaves_out_estimates_and_negative_margins() -> None:
    # One rule for every "cheapest" answer: a comparison feed's estimate (2.0) and a service
    # with a negative FX margin but a positive total (fee 10 on 200 = 5 %, margin -1 %) are
    # left out, and counted; what remains is named.
    rows = (quote("USA", "MEX", "E", 2.0, service="est", data_kind="estimate"),
            quote("USA", "MEX", "N", 4.0, fee=10.0, service="neg"),
            quote("USA", "MEX", "O", 4.5, service="obs", data_kind="observed"))
    q = frame(*rows)
    s = services_in_period(q, period="2011Q1", amount_usd=200)
    estimates = pl.LazyFrame({"service_id": ["est"]})
    got = cheapest_service(s, estimates=estimates).collect()
    assert got.select("firm", "total_cost").rows() == [("O", 4.5)]
    assert cheapest_left_out(s, estimates=estimates).collect()["cheapest_left_out"].to_list() \
        == [2]
    # a quote flagged estimate (the sandbox's feed: of kind emulated) is an estimate too
    assert estimate_services(q).collect()["service_id"].to_list() == ["est"]
    flagged = frame(quote("USA", "MEX", "E", 2.0, service="est", data_kind="emulated",
                          flags="estimate bank_transfer_only"), *rows[1:])
    assert estimate_services(flagged).collect()["service_id"].to_list() == ["est"]
    doc = compute_indicators(q, period="2011Q1", amount_usd=200, countries=COUNTRIES,
                             flows=None)
    assert doc["corridors"][0]["cheapest"]["firm"] == "O"
    assert doc["corridors"][0]["cheapest_left_out"] == 2
    assert doc["cheapest_leaves_out"] == ["estimate", "negative_margin", "negative_total_cost"]
    # the averages keep every row, as the World Bank's do
    assert doc["global_average"] == pytest.approx((2.0 + 4.0 + 4.5) / 3)


def test_shares() -> None:
    s = services(*EDGE, quote("USA", "FJI", "F", 7.0))
    avg = corridor_average(s)
    # corridors with an average: GBR→IND 12, USA→FJI 7, USA→MEX 3
    assert share_corridors_above(avg, 5).collect()["share"].to_list() == [pytest.approx(200 / 3)]
    assert share_corridors_above(avg, 10).collect()["share"].to_list() == [pytest.approx(100 / 3)]
    # services: 4, 6, -1, 12, 7 → one below 3%
    assert share_services_below(s, 3).collect()["share"].to_list() == [pytest.approx(20.0)]
    empty = services(quote("AUS", "FJI", "E", None, transparent=False))
    assert share_corridors_above(corridor_average(empty), 5).collect()["share"].to_list() == [None]
    assert share_services_below(empty, 3).collect()["share"].to_list() == [None]


def test_weighted_global_average() -> None:
    avg = corridor_average(services(*EDGE))
    flows = pl.LazyFrame({"source_code": ["USA", "GBR", "AUS"],
                          "destination_code": ["MEX", "IND", "FJI"],
                          "flow_usd_m": [300.0, 100.0, 50.0]})
    got = weighted_global_average(avg, flows).collect()
    # AUS→FJI has no average: its flow is not a weight
    assert_frame_equal(got.select("weighted_average", "corridors", "flow_usd_m"),
                       pl.DataFrame({"weighted_average": [(3 * 300 + 12 * 100) / 400],
                                     "corridors": [2], "flow_usd_m": [400.0]}),
                       check_dtypes=False)


def test_flows_from_matrix_maps_names_and_reports_the_rest() -> None:
    matrix = pl.DataFrame({
        "Origin": ["United States", "Egypt, Arab Rep.", "Total", None, "Notes: text"],
        "Mexico": ["23,174", "0", "30,000", None, None],
        "Côte d'Ivoire": ["12", "1", "50", None, None],
        "Other South": ["5", "5", "10", None, None],
    })
    names = ["United States", "Egypt, Arab Rep.", "Total", "Notes: text", "Mexico",
             "Côte d'Ivoire", "Other South"]
    got = flows_from_matrix(matrix, country_codes(names))
    assert_frame_equal(got.flows, pl.DataFrame({
        "source_code": ["EGY", "USA", "USA"], "destination_code": ["CIV", "CIV", "MEX"],
        "flow_usd_m": [1.0, 12.0, 23174.0]}))
    assert got.unmatched == ["Other South", "Total"]


# --- the whole document ------------------------------------------------------------------------

def test_compute_indicators_document() -> None:
    q = frame(*EDGE, quote("USA", "MEX", "A", 99.0, amount_usd=500))
    doc = compute_indicators(q, period="2011_1Q", amount_usd=200, countries=COUNTRIES,
                             flows=None)
    assert tuple(doc) == DOCUMENT_KEYS
    assert doc["period"] == "2011Q1"
    assert doc["services"] == {"total": 6, "transparent": 4}
    assert doc["global_average"] == 5.25
    assert doc["weighted_average"] is None
    # only USA→MEX has 3 qualifying services (4, 6, -1)
    assert doc["smart_average"] == 3.0
    assert [c["smart"] for c in doc["corridors"]] == [None, None, 3.0]
    assert doc["by_firm_type"] == {"bank": {"average": 12.0, "services": 1},
                                   "mto": {"average": 3.0, "services": 3}}
    assert doc["by_receiving_region"] == {"LAC": {"average": 3.0, "services": 3},
                                          "SAS": {"average": 12.0, "services": 1}}
    # Each share names its denominator: 2 of the 3 corridors have an average (AUS → FJI has
    # no transparent service); the 4 transparent services have a total cost.
    assert doc["share_denominators"] == {
        "share_corridors_above_5": {"of": "corridors with an average", "count": 2},
        "share_corridors_above_10": {"of": "corridors with an average", "count": 2},
        "share_services_below_3": {"of": "transparent services with a total cost",
                                   "count": 4}}
    assert doc["share_corridors_above_5"] == 50.0  # GBR → IND (12) of the 2
    assert [(c["source"], c["destination"]) for c in doc["corridors"]] == [
        ("AUS", "FJI"), ("GBR", "IND"), ("USA", "MEX")]
    assert doc["corridors"][0] == {
        "source": "AUS", "destination": "FJI", "average": None, "services": 1,
        "transparent_services": 0, "smart": None, "above_5": None, "above_10": None,
        "too_few_services": True, "no_transparent_service": True, "cheapest": None,
        "cheapest_left_out": 0}
    # B's negative total (-1.0) is averaged but never named cheapest
    assert doc["corridors"][2]["cheapest"] == {"firm": "A", "firm_type": "mto",
                                               "product": "cash", "total_cost": 4.0}
    assert doc["corridors"][2]["cheapest_left_out"] == 1
    assert doc["non_transparent"] == [
        {"source": "AUS", "destination": "FJI", "firm": "E", "fee_pct": 1.0},
        {"source": "USA", "destination": "MEX", "firm": "C", "fee_pct": 10.0}]
    table = corridor_table(doc)
    assert table.height == 3
    assert table["average"].to_list() == [None, 12.0, 3.0]
    doc500 = compute_indicators(q, period="2011Q1", amount_usd=500, countries=COUNTRIES,
                                flows=None)
    assert doc500["global_average"] == 99.0


def test_no_quotes_in_period_is_no_data() -> None:
    with pytest.raises(NoData, match="2011Q3"):
        compute_indicators(frame(*EDGE), period="2011Q3", amount_usd=200,
                           countries=COUNTRIES, flows=None)
