"""Weights by period and the World Bank's other published averages (issue #12 items 4, 5).

On tiny tables written here, and on a workbook in the real 2016-2025 format built by
tests/rpw_real_format.py. No database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from rpw_real_format import new_sheet_rows, write_workbook
from test_metrics import COUNTRIES, frame, quote, services

from collector.flows import BUNDLED_MATRICES, read_bilateral_flows, read_bundled_flows
from collector.rpw import read_rpw
from corridors.reference import countries_frame, data_file
from metrics import compute_indicators
from metrics.corridors import (
    INSUFFICIENT_WEIGHTS,
    corridor_average,
    matrix_for_period,
    weighted_global_average,
)
from metrics.indicators import DOCUMENT_KEYS
from metrics.instruments import (
    access_point_averages,
    pay_out_averages,
    payment_instrument_averages,
)

# --- weights by period ---------------------------------------------------------------------

#: Two matrices: the 2011 one weighs USA→MEX and GBR→IND, the 2021 one only USA→MEX; both
#: have USA→IND, a corridor between surveyed countries that the tests' surveys do not price.
FLOWS = pl.LazyFrame({
    "source_code": ["USA", "GBR", "USA", "USA", "USA"],
    "destination_code": ["MEX", "IND", "IND", "MEX", "IND"],
    "flow_usd_m": [300.0, 100.0, 100.0, 10.0, 40.0],
    "year": [2011, 2011, 2011, 2021, 2021]},
    schema_overrides={"year": pl.Int32})


@pytest.mark.parametrize(("year", "chosen"), [
    (2009, 2011), (2011, 2011), (2015, 2011), (2016, 2011),  # 2016: a tie, the earlier
    (2017, 2021), (2021, 2021), (2025, 2021)])
def test_the_matrix_nearest_the_period_weighs(year: int, chosen: int) -> None:
    got = matrix_for_period(FLOWS, year).collect()
    assert got["year"].unique().to_list() == [chosen]


def test_one_matrix_without_a_year_is_used_as_it_is() -> None:
    one = FLOWS.drop("year")
    assert_frame_equal(matrix_for_period(one, 2025).collect(), one.collect())


def test_weighted_average_reports_what_it_weighed() -> None:
    avg = corridor_average(services(
        quote("USA", "MEX", "A", 3.0), quote("GBR", "IND", "B", 12.0),
        quote("AUS", "FJI", "C", 9.0)))
    got = weighted_global_average(avg, matrix_for_period(FLOWS, 2011)).collect()
    # AUS→FJI has an average but no weight: 2 of 3 corridors weighed. The volume between the
    # surveyed countries (USA, GBR, AUS → MEX, IND, FJI) is 300 + 100 + 100 (USA→IND, not
    # surveyed): the two weighed corridors carry 400 of it, 80 %, at least 75 %.
    assert_frame_equal(got, pl.DataFrame({
        "weighted_average": [(3 * 300 + 12 * 100) / 400], "corridors": [2],
        "flow_usd_m": [400.0], "corridors_with_average": [3],
        "corridor_share": [200 / 3], "flow_between_countries_usd_m": [500.0],
        "volume_share": [80.0], "matrix_flow_usd_m": [500.0], "sufficient": [True],
        "matrix_year": [2011]}),
        check_dtypes=False)
    # the rule is a parameter (config.toml [indicators] weighted_min_volume_share)
    strict = weighted_global_average(avg, matrix_for_period(FLOWS, 2011), coverage_min=80.1)
    assert strict.collect()["sufficient"].to_list() == [False]


def test_volume_coverage_counts_only_the_countries_surveyed() -> None:
    """A flow from or to a country the period did not survey is not in the denominator;
    a corridor without an average weighs nothing and adds no country."""
    avg = pl.LazyFrame({"source_code": ["USA", "GBR"], "destination_code": ["MEX", "IND"],
                        "average": [3.0, None]})
    flows = pl.LazyFrame({"source_code": ["USA", "USA", "GBR", "CAN", "USA"],
                          "destination_code": ["MEX", "IND", "MEX", "MEX", "PHL"],
                          "flow_usd_m": [30.0, 50.0, 20.0, 7.0, 0.0]})
    got = weighted_global_average(avg, flows).collect().row(0, named=True)
    # GBR→IND has no average: the survey's countries are USA → MEX alone
    assert (got["corridors"], got["corridors_with_average"]) == (1, 1)
    assert (got["flow_usd_m"], got["flow_between_countries_usd_m"]) == (30.0, 30.0)
    assert got["volume_share"] == 100.0 and got["sufficient"]
    assert got["matrix_flow_usd_m"] == 107.0
    assert got["matrix_year"] is None
    none = weighted_global_average(avg.filter(pl.lit(False)), flows).collect()
    assert none.row(0, named=True) | {"matrix_flow_usd_m": None} == {
        "weighted_average": None, "corridors": 0, "flow_usd_m": 0.0,
        "corridors_with_average": 0, "corridor_share": None,
        "flow_between_countries_usd_m": 0.0, "volume_share": None,
        "matrix_flow_usd_m": None, "sufficient": False, "matrix_year": None}


def _doc(period: str, *quotes: dict[str, Any]) -> dict[str, Any]:
    return compute_indicators(frame(*quotes), period=period, amount_usd=200,
                              countries=COUNTRIES, flows=FLOWS)


def test_indicators_say_insufficient_weights_below_the_coverage_rule() -> None:
    q = [quote("USA", "MEX", "A", 3.0, period=p) for p in ("2011Q1", "2025Q3")]
    q += [quote("GBR", "IND", "B", 12.0, period=p) for p in ("2011Q1", "2025Q3")]
    old = _doc("2011Q1", *q)
    assert old["weighted_average"] == pytest.approx((3 * 300 + 12 * 100) / 400)
    assert old["weighted_average_coverage"] == {
        "matrix_year": 2011, "corridors_weighed": 2, "corridors_with_average": 2,
        "corridor_share": 100.0, "flow_usd_m": 400.0, "flow_between_countries_usd_m": 500.0,
        "volume_share": 80.0, "volume_share_min": 75.0, "matrix_flow_usd_m": 500.0,
        "status": "ok"}
    # 2025 is weighed by the 2021 matrix, which has no GBR→IND: USA→MEX's 10 of the 50
    # between the surveyed countries (USA→IND's 40 is not weighed), 20 %
    new = _doc("2025Q3", *q)
    assert new["weighted_average"] is None
    assert new["weighted_average_coverage"] == {
        "matrix_year": 2021, "corridors_weighed": 1, "corridors_with_average": 2,
        "corridor_share": 50.0, "flow_usd_m": 10.0, "flow_between_countries_usd_m": 50.0,
        "volume_share": 20.0, "volume_share_min": 75.0, "matrix_flow_usd_m": 50.0,
        "status": INSUFFICIENT_WEIGHTS}
    # a lower rule publishes it
    lenient = compute_indicators(frame(*q), period="2025Q3", amount_usd=200,
                                 countries=COUNTRIES, flows=FLOWS, weights_coverage_min=20)
    assert lenient["weighted_average"] == pytest.approx(3.0)
    assert lenient["weighted_average_coverage"]["status"] == "ok"
    assert lenient["weighted_average_coverage"]["volume_share_min"] == 20


def test_no_flows_no_coverage() -> None:
    doc = compute_indicators(frame(quote("USA", "MEX", "A", 3.0)), period="2011Q1",
                             amount_usd=200, countries=COUNTRIES, flows=None)
    assert doc["weighted_average"] is None
    assert doc["weighted_average_coverage"] is None


def test_bundled_matrices_map_every_country_name() -> None:
    assert sorted(BUNDLED_MATRICES) == [2011, 2021]
    m2021 = read_bilateral_flows(data_file(BUNDLED_MATRICES[2021]))
    # only the world total and a place without an ISO code are left out
    assert m2021.unmatched == ["Channel Islands", "WORLD"]
    assert m2021.flows.height == 10_223
    assert m2021.flows["flow_usd_m"].sum() == pytest.approx(780_968.24, abs=0.01)
    both = read_bundled_flows()
    assert both.group_by("year").len().sort("year")["len"].to_list() == [
        read_bilateral_flows().flows.height, 10_223]


# --- averages by payment instrument and by access point ------------------------------------

def test_payment_instrument_and_access_point_averages() -> None:
    s = services(
        quote("USA", "MEX", "A", 4.0, pay_in="cash", access_point="agent", pay_out="cash"),
        quote("USA", "MEX", "B", 6.0, pay_in="cash", access_point="internet",
              pay_out="mobile_wallet"),
        quote("GBR", "IND", "C", 2.0, pay_in="card", access_point="internet",
              pay_out="mobile_wallet"),
        quote("GBR", "IND", "D", 9.0, pay_in="card", transparent=False),
        quote("GBR", "IND", "E", 7.0))  # says neither: in no group
    assert_frame_equal(payment_instrument_averages(s).collect(), pl.DataFrame({
        "pay_in": ["card", "cash"], "average": [2.0, 5.0], "services": [1, 2]}),
        check_dtypes=False)
    assert_frame_equal(access_point_averages(s).collect(), pl.DataFrame({
        "access_point": ["agent", "internet"], "average": [4.0, 4.0], "services": [1, 2]}),
        check_dtypes=False)
    assert_frame_equal(pay_out_averages(s).collect(), pl.DataFrame({
        "pay_out": ["cash", "mobile_wallet"], "average": [4.0, 4.0], "services": [1, 2]}),
        check_dtypes=False)


# --- on a workbook in the real format --------------------------------------------------------

#: The sheet's labels → the instrument / access point a service counts under (its first part).
INSTRUMENT = {
    "Cash": "cash", "Bank account transfer": "bank_account", "Debit card": "card",
    "Credit Card": "card", "Debit/credit card": "card",
    "Bank account transfer,Debit/credit card": "bank_account",
    "Credit Card,Debit card": "card", "Cash,Debit/credit card": "cash",
    "Credit card": "card", "Mobile money": "mobile_money"}
ACCESS = {
    "Internet": "internet", "Agent": "agent", "Bank branch": "branch",
    "Bank branch,Call Center": "branch", "Call Center": "call_center",
    "Agent,Internet": "agent", "Agent,Call Center": "agent",
    "Post Office branch": "post_office_branch", "Mobile phone": "mobile_phone"}
PAY_OUT = {
    "Cash": "cash", "Bank account": "bank_account", "Mobile wallet": "mobile_wallet",
    "Own/partner bank account": "bank_account",
    "Bank account (same/partner bank)": "bank_account",
    "Own/partner Bank account": "bank_account", "Debit card": "card", "ATM Network": "cash",
    "Cash, Mobile": "cash", "Mobile, Cash": "mobile_wallet", "Bank Account": "bank_account",
    "Own/Partner bank account": "bank_account"}
FIRM_TYPE = {
    "Money Transfer Operator": "mto", "Bank": "bank",
    "Money Transfer Operator / Post office": "post_office_mto", "Post office": "post_office",
    "Bank / Money Transfer Operator": "bank", "Mobile Operator": "mobile_operator",
    "Non-Bank FI": "non_bank_fi", "Money Transfer Operator / Post Office": "post_office_mto",
    "Post Office": "post_office"}


def _expected(rows: list[dict[str, Any]], period: str, column: str,
              groups: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every group present in the period → mean of the published totals of its transparent
    services (null, 0 services, when none is transparent)."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        if row["period"] == period:
            values = sums.setdefault(groups[row[column]], [])
            if str(row["transparent"]).lower() == "yes":
                values.append(float(row["cc1 total cost %"]))
    return {k: {"average": pytest.approx(sum(v) / len(v)) if v else None, "services": len(v)}
            for k, v in sorted(sums.items())}


@pytest.fixture(scope="module")
def workbook_doc(tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = new_sheet_rows()
    path = write_workbook(tmp_path_factory.mktemp("rpw") / "rpw.xlsx", rows)
    read = read_rpw(path)
    doc = compute_indicators(read.frame.lazy(), period="2025Q3", amount_usd=200,
                             countries=countries_frame("2025Q3").lazy(),
                             flows=read_bundled_flows().lazy())
    return rows, doc


def test_real_format_averages_by_instrument_access_point_pay_out_and_firm_type(
        workbook_doc: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    rows, doc = workbook_doc
    assert tuple(doc) == DOCUMENT_KEYS
    assert doc["by_payment_instrument"] == _expected(rows, "2025_3Q", "payment instrument",
                                                     INSTRUMENT)
    assert doc["by_access_point"] == _expected(rows, "2025_3Q", "access point", ACCESS)
    assert doc["by_pay_out"] == _expected(rows, "2025_3Q", "pickup method", PAY_OUT)
    # mobile operators are a firm type of their own, beside banks and MTOs
    assert doc["by_firm_type"] == _expected(rows, "2025_3Q", "firm_type", FIRM_TYPE)
    assert "mobile_operator" in doc["by_firm_type"]


def test_real_format_2025_is_weighed_by_the_2021_matrix(
        workbook_doc: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    _, doc = workbook_doc
    coverage = doc["weighted_average_coverage"]
    assert coverage["matrix_year"] == 2021
    # USA→MEX, ARE→PAK, ARE→IND, GBR→NGA, SAU→EGY, ITA→XKX: all six have a 2021 flow
    assert (coverage["corridors_weighed"], coverage["corridors_with_average"]) == (6, 6)
    # ...but six corridors carry little of the volume between their 5 sending and 6
    # receiving countries (USA→IND, SAU→IND, ARE→... are not in the file): insufficient
    m2021 = {(r["source_code"], r["destination_code"]): r["flow_usd_m"] for r in
             read_bilateral_flows(data_file(BUNDLED_MATRICES[2021])).flows.iter_rows(
                 named=True)}
    surveyed = [("USA", "MEX"), ("ARE", "PAK"), ("ARE", "IND"), ("GBR", "NGA"),
                ("SAU", "EGY"), ("ITA", "XKX")]
    senders, receivers = {s for s, _ in surveyed}, {d for _, d in surveyed}
    weighed = sum(m2021[c] for c in surveyed)
    between = sum(v for (s, d), v in m2021.items() if s in senders and d in receivers)
    assert coverage["flow_usd_m"] == pytest.approx(weighed)
    assert coverage["flow_between_countries_usd_m"] == pytest.approx(between)
    assert coverage["volume_share"] == pytest.approx(weighed / between * 100)
    assert coverage["matrix_flow_usd_m"] == pytest.approx(780_968.24, abs=0.01)
    assert coverage["volume_share"] < 75
    assert coverage["status"] == INSUFFICIENT_WEIGHTS
    assert doc["weighted_average"] is None


def test_the_2021_matrix_weighs_more_of_the_bundled_2014_survey() -> None:
    read = read_rpw(Path(data_file("rpw_quotes_2011Q1_2014Q2.csv.gz")))
    averages = corridor_average(services_of(read.frame, "2014Q2"))
    flows = read_bundled_flows().lazy()
    by_year = {y: weighted_global_average(averages, matrix_for_period(flows, y))
               .collect().row(0, named=True) for y in (2011, 2021)}
    assert by_year[2011]["corridors_with_average"] == 225
    assert (by_year[2011]["corridors"], by_year[2021]["corridors"]) == (208, 220)
    # the volume they carry, of the volume between the survey's countries: both pass 75 %
    assert by_year[2011]["flow_between_countries_usd_m"] == pytest.approx(276_502.0)
    assert by_year[2011]["volume_share"] == pytest.approx(84.71, abs=0.01)
    assert by_year[2021]["volume_share"] == pytest.approx(81.48, abs=0.01)
    assert by_year[2011]["sufficient"] and by_year[2021]["sufficient"]


def services_of(quotes: pl.DataFrame, period: str) -> pl.LazyFrame:
    from metrics.services import services_in_period

    return services_in_period(quotes.lazy(), period=period, amount_usd=200)


# --- published: the OpenAPI schema and the command's table ----------------------------------

def test_new_keys_match_the_openapi_schema(
        workbook_doc: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    from jsonschema import Draft202012Validator

    from publish.openapi import document

    props = document()["components"]["schemas"]["Indicators"]["properties"]
    _, doc = workbook_doc
    insufficient = _doc("2025Q3", quote("USA", "MEX", "A", 3.0, period="2025Q3"),
                        quote("GBR", "IND", "B", 12.0, period="2025Q3"))
    for d in (doc, insufficient):
        for key in ("weighted_average_coverage", "by_payment_instrument", "by_access_point",
                    "by_pay_out"):
            Draft202012Validator(props[key]).validate(d[key])
    bad = dict(doc["weighted_average_coverage"], status="fine")
    assert not Draft202012Validator(props["weighted_average_coverage"]).is_valid(bad)


def test_the_table_says_insufficient_weights(
        capsys: pytest.CaptureFixture[str]) -> None:
    from sendcost.commands.indicators import _print_table

    doc = _doc("2025Q3", quote("USA", "MEX", "A", 3.0, period="2025Q3", pay_in="cash"),
               quote("GBR", "IND", "B", 12.0, period="2025Q3", pay_in="cash"))
    _print_table(doc, pl.DataFrame())
    out = capsys.readouterr().out
    assert ("insufficient weights: 2021 matrix weighs 1 of 2 corridors (50%), "
            "USD 10 million = 20% of the volume between their countries (rule: 75%)") in out
    assert "weighted average           —" in out
    assert "by payment instrument      cash 7.50% (2)" in out


def test_the_bulletin_trend_weighs_each_period_with_its_own_matrix() -> None:
    from metrics.bulletin import trend

    q = [quote(s, d, f, t, period=p) for p in ("2011Q1", "2025Q3")
         for s, d, f, t in (("USA", "MEX", "A", 3.0), ("GBR", "IND", "B", 12.0))]
    got = trend(frame(*q), periods=["2011Q1", "2025Q3"], amount_usd=200, flows=FLOWS)
    # 2011: both corridors by the 2011 matrix; 2025: the 2021 matrix weighs 1 of 2
    assert got.collect()["weighted_average"].to_list() == [
        pytest.approx((3 * 300 + 12 * 100) / 400), None]


# --- the coverage rule is config.toml's ---------------------------------------------------

def test_the_rule_is_read_from_config_toml(tmp_path: Path) -> None:
    from corridors.config import load_config, parse_config
    from corridors.errors import ConfigError

    shipped = load_config(Path(__file__).resolve().parent.parent / "config.toml")
    assert shipped.indicators.weighted_min_volume_share == 0.75
    assert shipped.indicators.weights_coverage_min == 75.0
    assert parse_config({}).indicators.weights_coverage_min == 75.0
    assert parse_config({"indicators": {"weighted_min_volume_share": 1}}
                        ).indicators.weights_coverage_min == 100.0
    for bad, what in [(75, "a share from 0 to 1"), (-0.1, "a share from 0 to 1"),
                      ("0.75", "an integer or a number"),
                      (True, "an integer or a number")]:
        with pytest.raises(ConfigError, match=f"indicators.weighted_min_volume_share: "
                                              f"expected {what}"):
            parse_config({"indicators": {"weighted_min_volume_share": bad}})
    with pytest.raises(ConfigError, match=r"indicators: unknown key\(s\) weights"):
        parse_config({"indicators": {"weights": 0.5}})


def test_the_command_applies_the_configured_rule(tmp_path: Path) -> None:
    """On the bundled 2014Q2 the 2011 matrix weighs 84.7 % of the volume: published under
    the default 75 %, "insufficient weights" under a configured 90 %."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    strict = tmp_path / "strict.toml"
    strict.write_text("[indicators]\nweighted_min_volume_share = 0.9\n")
    docs = {}
    for name, config in [("default", root / "config.toml"), ("strict", strict)]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "SENDCOST_CONFIG")}
        done = subprocess.run(
            [sys.executable, "-m", "sendcost", "indicators", "--config", str(config),
             "--period", "2014Q2", "--format", "json", "--from-file",
             str(data_file("rpw_quotes_2011Q1_2014Q2.csv.gz"))],
            env=env, capture_output=True, text=True, cwd=root, timeout=300)
        assert done.returncode == 0, done.stderr
        docs[name] = json.loads(done.stdout)
    default, strict_doc = docs["default"], docs["strict"]
    assert default["weighted_average_coverage"]["volume_share"] == pytest.approx(84.71,
                                                                                 abs=0.01)
    assert default["weighted_average_coverage"]["status"] == "ok"
    assert default["weighted_average"] == pytest.approx(5.9277, abs=1e-4)
    assert strict_doc["weighted_average_coverage"]["volume_share_min"] == 90.0
    assert strict_doc["weighted_average_coverage"]["status"] == INSUFFICIENT_WEIGHTS
    assert strict_doc["weighted_average"] is None


def test_the_bulletin_states_the_rule_and_what_the_period_reached() -> None:
    from types import SimpleNamespace

    from publish.bulletin_render import weights_rule

    q = [quote("USA", "MEX", "A", 3.0, period="2025Q3"),
         quote("GBR", "IND", "B", 12.0, period="2025Q3")]
    said = weights_rule(SimpleNamespace(doc=_doc("2025Q3", *q)))
    assert said == ("75% of the remittance volume between the surveyed countries (this "
                    "period, the 2021 matrix weighs 1 of 2 corridors with an average, 20.0% "
                    "of it: insufficient weights)")
    assert "no matrix" in weights_rule(SimpleNamespace(doc={"weighted_average_coverage": None}))
