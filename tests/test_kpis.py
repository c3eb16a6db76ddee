"""The G20 remittance scorecard (issue 16, item 1): each KPI on tiny hand-made quote tables,
the receiving country's business days, and the whole document on the real RPW data."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app
from polars.testing import assert_frame_equal

from corridors.calendar import next_business_day, next_business_days
from corridors.errors import NoData
from corridors.frame import QUOTE_FRAME_SCHEMA, conform
from metrics.kpis import (
    SCORECARD_KEYS,
    compute_kpis,
    digital_at_both_ends,
    kpi_quotes,
    kpi_send_dates,
    kpi_services,
    scorecard_table,
    transparent_before_payment,
    within_one_business_day,
    within_one_hour,
)

UTC = dt.UTC
FRIDAY = dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
TUESDAY = dt.datetime(2024, 3, 5, 12, tzinfo=UTC)


def quote(src: str, dst: str, firm: str, *, speed: str | None = "less_than_one_hour",
          at: dt.datetime = TUESDAY, pay_in: str | None = "card",
          pay_out: str | None = "bank_account", access: str | None = "internet",
          fee: float | None = 2.0, transparent: bool = True,
          received: float | None = 3300.0, product: str = "",
          **extra: Any) -> dict[str, Any]:
    return {
        "period": "2024Q1", "source_code": src, "destination_code": dst, "firm": firm,
        "firm_type": "mto", "product": product, "service_id": f"{src}-{dst}-{firm}-{product}",
        "speed": speed, "pay_in": pay_in, "pay_out": pay_out, "access_point": access,
        "amount_usd": 200, "send_amount": 200.0, "fee": fee, "applied_rate": 17.0,
        "reference_rate": 17.2, "received_amount": received, "transparent": transparent,
        "source": "test", "collected_at": at, "data_kind": "observed", **extra,
    }


def frame(*quotes: dict[str, Any]) -> pl.LazyFrame:
    return conform(pl.DataFrame(list(quotes), schema_overrides={
        k: v for k, v in QUOTE_FRAME_SCHEMA.items() if k in quotes[0]}, strict=False))


def flag(expr: pl.Expr, **columns: list[Any]) -> list[Any]:
    return pl.DataFrame(columns).select(expr.alias("x"))["x"].to_list()


def test_within_one_hour_is_null_when_the_speed_is_unknown() -> None:
    assert flag(within_one_hour(), speed=["less_than_one_hour", "same_day", None]) == [
        True, False, None]


def test_two_days_sent_on_a_friday_arrive_within_one_business_day() -> None:
    fri, tue = dt.date(2024, 3, 1), dt.date(2024, 3, 5)
    got = flag(within_one_business_day(),
               speed=["next_day", "two_days", "two_days", "three_to_five_days",
                      "six_days_or_more", "two_days", None],
               sent_on=[tue, fri, tue, fri, fri, None, fri],
               next_business_day=[dt.date(2024, 3, 6), dt.date(2024, 3, 4),
                                  dt.date(2024, 3, 6), dt.date(2024, 3, 4),
                                  dt.date(2024, 3, 4), None, dt.date(2024, 3, 4)])
    assert got == [True, True, False, False, False, False, None]


def test_the_receiving_countrys_holidays_and_weekend_count() -> None:
    # Mexico: Monday 18 March 2024 is a holiday (Benito Juárez), so Friday's next business
    # day is Tuesday; Saudi Arabia rests on Friday and Saturday.
    assert next_business_day("MEX", dt.date(2024, 3, 15)) == (dt.date(2024, 3, 19),
                                                              "holidays")
    assert next_business_day("SAU", dt.date(2024, 3, 7))[0] == dt.date(2024, 3, 10)
    assert next_business_day("MEX", dt.date(2024, 3, 5))[0] == dt.date(2024, 3, 6)
    table = next_business_days(pl.DataFrame({"destination_code": ["MEX", "MEX"],
                                             "sent_on": [dt.date(2024, 3, 15)] * 2}))
    assert table.rows() == [("MEX", dt.date(2024, 3, 15), dt.date(2024, 3, 19), "holidays")]


def test_digital_needs_a_digital_pay_in_away_from_a_counter_and_an_account_pay_out() -> None:
    got = flag(digital_at_both_ends(),
               pay_in=["card", "cash", "card", "bank_account", None, "mobile_money", None],
               access_point=["internet", "internet", "agent", None, "internet", "mobile_phone",
                             None],
               pay_out=["bank_account", "bank_account", "bank_account", "cash", "bank_account",
                        None, "cash"])
    # The last: a survey recording only the pay-out (RPW before 2016). Unknown, not "known
    # not digital": else a share over such rows counts every cash pay-out and no account one.
    assert got == [True, False, False, False, None, None, None]


def test_transparent_before_payment_needs_fee_rate_total_and_delivery_time() -> None:
    got = flag(transparent_before_payment(),
               fee=[2.0, None, 2.0, 2.0, 2.0, 2.0],
               transparent=[True, True, False, True, True, True],
               received_amount=[3300.0, 3300.0, 3300.0, None, None, 3300.0],
               total_cost_reported=[None, None, None, None, 6.5, None],
               data_kind=["observed", "observed", "observed", "observed", "survey",
                          "observed"],
               speed=["same_day", "same_day", "same_day", "same_day", "same_day", None])
    assert got == [True, False, False, False, True, False]


def calendar_of(quotes: pl.LazyFrame) -> pl.LazyFrame:
    return next_business_days(kpi_send_dates(quotes, period="2024Q1", amount_usd=200)
                              .collect()).lazy()


def test_a_service_is_within_one_business_day_only_if_every_quote_was() -> None:
    # Two days: within one business day when sent on a Friday, not on a Tuesday.
    q = frame(quote("USA", "MEX", "A", speed="two_days", at=FRIDAY),
              quote("USA", "MEX", "A", speed="two_days", at=TUESDAY),
              quote("USA", "MEX", "B", speed="two_days", at=FRIDAY),
              quote("USA", "MEX", "C", speed=None))
    flagged = kpi_quotes(q, period="2024Q1", amount_usd=200, calendar=calendar_of(q))
    got = kpi_services(flagged).select("service_id", "within_one_hour",
                                       "within_one_business_day").collect()
    assert_frame_equal(got, pl.DataFrame({
        "service_id": ["USA-MEX-A-", "USA-MEX-B-", "USA-MEX-C-"],
        "within_one_hour": [False, False, None],
        "within_one_business_day": [False, True, None]}))


def test_the_scorecard_per_corridor_and_globally() -> None:
    q = frame(
        quote("USA", "MEX", "A", product="app"),
        quote("USA", "MEX", "A", product="agent", speed="same_day", pay_in="cash",
              access="agent", pay_out="cash"),
        quote("USA", "MEX", "B", speed="three_to_five_days", fee=None),
        quote("USA", "MEX", "C", speed=None, transparent=False),
        quote("GBR", "IND", "D"),
        quote("GBR", "IND", "E", received=None),
    )
    doc = compute_kpis(q, period="2024Q1", amount_usd=200, calendar=calendar_of(q))
    mex = next(c for c in doc["corridors"] if c["destination"] == "MEX")
    assert (mex["services"], mex["providers"], mex["providers_within_one_hour"]) == (4, 3, 1)
    assert mex["services_with_speed"] == 3
    assert mex["share_services_within_one_hour"] == pytest.approx(100 / 3)
    assert mex["share_services_within_one_business_day"] == pytest.approx(200 / 3)
    assert mex["share_services_digital"] == pytest.approx(75.0)
    assert mex["share_quotes_fee_disclosed"] == pytest.approx(75.0)
    assert mex["share_quotes_rate_disclosed"] == pytest.approx(75.0)
    assert mex["share_quotes_transparent"] == pytest.approx(50.0)
    assert mex["meets_speed_target"] is False
    ind = next(c for c in doc["corridors"] if c["destination"] == "IND")
    assert ind["share_quotes_within_one_hour"] == 100.0 and ind["meets_speed_target"] is True
    assert ind["share_quotes_total_disclosed"] == 50.0
    g = doc["global"]
    assert (g["services"], g["quotes"], g["providers"], g["providers_within_one_hour"]) == (
        6, 6, 5, 3)
    assert g["share_quotes_within_one_hour"] == pytest.approx(60.0)  # 3 of the 5 known
    assert g["meets_speed_target"] is False
    assert tuple(g) == SCORECARD_KEYS
    assert doc["targets"]["speed_share_within_one_hour"] == 75.0
    table = scorecard_table(doc)
    assert table.height == 2 and table.columns[:4] == ["period", "amount_usd", "source",
                                                       "destination"]


def test_an_empty_period_is_no_data() -> None:
    q = frame(quote("USA", "MEX", "A"))
    with pytest.raises(NoData, match="2023Q1"):
        compute_kpis(q, period="2023Q1", amount_usd=200,
                     calendar=calendar_of(q))


# --- RPW's post-2016 fields, in the real sheet's format ------------------------------------------


@pytest.fixture(scope="module")
def rpw_2016(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.LazyFrame,
                                                                list[dict[str, Any]]]:
    from rpw_real_format import new_sheet_rows, write_workbook

    from corridors.reading.rpw import read_rpw

    rows = new_sheet_rows()
    path = write_workbook(tmp_path_factory.mktemp("rpw") / "rpw_dataset_2011_2025_q3.xlsx",
                          rows)
    return read_rpw(path).frame.lazy(), rows


@pytest.mark.parametrize("period, label", [("2016Q2", "2016_2Q"), ("2025Q3", "2025_3Q")])
def test_the_scorecard_reads_rpws_speed_instrument_access_point_and_pickup(
        rpw_2016: tuple[pl.LazyFrame, list[dict[str, Any]]], period: str,
        label: str) -> None:
    quotes, rows = rpw_2016
    mine = [r for r in rows if r["period"] == label]
    calendar = next_business_days(kpi_send_dates(quotes, period=period, amount_usd=200)
                                  .collect()).lazy()
    doc = compute_kpis(quotes, period=period, amount_usd=200, calendar=calendar)
    g = doc["global"]
    assert g["services"] == len(mine)
    fast = sum(r["speed actual"].lower() == "less than one hour" for r in mine)
    assert g["share_services_within_one_hour"] == pytest.approx(100 * fast / len(mine))
    # Every post-2016 service says how it is paid in and out: its access is known, and
    # some are digital at both ends, some not.
    assert g["services_with_channels"] == len(mine)
    assert 0 < g["share_services_digital"] < 100
    # The survey recorded fee, rate and total of every transparent row before payment.
    transparent = sum(str(r["transparent"]).lower() == "yes" for r in mine)
    assert g["share_quotes_rate_disclosed"] == pytest.approx(100 * transparent / len(mine))
    assert len(doc["corridors"]) == 6


# --- /v1/kpis ---------------------------------------------------------------------------------


def valid_as(body: Any, path: str) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    from publish.openapi import document

    doc = document()
    registry = Registry().with_resource("urn:sendcost", Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}))
    name = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["$ref"].split("/")[-1]
    Draft202012Validator({"$ref": f"urn:sendcost#/components/schemas/{name}"},
                         registry=registry).validate(body)


async def test_kpis_answer_for_a_period_of_the_bundled_survey(api: TestClient
                                                             ) -> None:
    resp = await api.get("/v1/kpis?period=2014Q2")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    valid_as(body, "/v1/kpis")
    assert body["period"] == "2014Q2" and body["amount_usd"] == 200
    assert "not the payments" in body["scope"]
    assert body["targets"]["speed_share_within_one_hour"] == 75.0
    g = body["global"]
    # The same cost as /v1/indicators, beside speed, access and transparency.
    indicators = await (await api.get("/v1/indicators?period=2014Q2")).json()
    assert g["average"] == pytest.approx(indicators["global_average"])
    assert g["smart"] == pytest.approx(indicators["smart_average"])
    assert g["services"] == indicators["services"]["total"]
    assert 0 < g["share_services_within_one_hour"] < 100
    assert g["providers_within_one_hour"] <= g["providers"]
    usa_mex = next(c for c in body["corridors"]
                   if (c["source"], c["destination"]) == ("USA", "MEX"))
    assert usa_mex["from"]["alpha2"] == "US" and usa_mex["to"]["name"] == "Mexico"
    assert usa_mex["providers_within_one_hour"] <= usa_mex["providers"]
    assert len(body["corridors"]) == len(indicators["corridors"])
    # The CSV twin: one row per corridor, the scorecard's columns.
    csv = await api.get("/v1/kpis.csv?period=2014Q2")
    assert csv.status == 200 and csv.headers["Sendcost-Period"] == "2014Q2"
    lines = (await csv.text()).splitlines()
    assert lines[0].startswith("period,amount_usd,source,destination,services,quotes,")
    assert len(lines) == len(body["corridors"]) + 1


@pytest.mark.parametrize("query, status, parameter", [
    ("period=1999Q1", 404, None), ("period=2014Q9", 400, "period"),
    ("amount=300", 400, "amount"), ("include=all", 400, "include"), ("color=red", 400, None),
])
async def test_kpis_refuse_bad_input_by_name(api: TestClient, query: str,
                                             status: int, parameter: str | None) -> None:
    resp = await api.get(f"/v1/kpis?{query}")
    assert resp.status == status
    body = await resp.json()
    assert resp.headers["Content-Type"] == "application/problem+json"
    if parameter is not None:
        assert body["parameter"] == parameter


async def test_kpis_answer_for_a_period_of_collected_data(fresh_database: str) -> None:
    """Quotes collected from an upstream on loopback (the sandbox without its emulated
    mark: an upstream like any other), scored for the month collected."""
    from test_data_kind import collect, this_month

    from corridors.store import connect

    store = await connect(fresh_database)
    try:
        await store.migrate()
        await collect(store, marked=False)
    finally:
        await store.close()
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        resp = await client.get(f"/v1/kpis?period={this_month()}")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    valid_as(body, "/v1/kpis")
    g = body["global"]
    assert g["quotes"] > 0 and g["services_with_speed"] == g["services"]
    assert g["share_quotes_fee_disclosed"] == 100.0  # every collected quote states its fee
    assert {(c["source"], c["destination"]) for c in body["corridors"]} == {
        ("USA", "MEX"), ("FRA", "SEN"), ("GBR", "IND")}
    assert "warning" not in body


async def test_the_page_says_how_many_providers_deliver_within_an_hour(
        api: TestClient) -> None:
    import re

    page = await (await api.get("/?from=USA&to=MEX&amount=200")).text()
    line = re.search(r'<p id="within-an-hour">(\d+) of (\d+) providers? deliver within an '
                     r"hour", page)
    assert line is not None, page
    # The page shows the corridor's latest period (other tests of the session may have
    # collected a later one than the survey's): /v1/kpis of that period counts the same.
    shown = re.search(r'<p id="collected">Prices of ([0-9Q-]+) ', page)
    assert shown is not None
    body = await (await api.get(f"/v1/kpis?period={shown[1]}")).json()
    usa_mex = next(c for c in body["corridors"]
                   if (c["source"], c["destination"]) == ("USA", "MEX"))
    assert (int(line[1]), int(line[2])) == (usa_mex["providers_within_one_hour"],
                                            usa_mex["providers"])
    if shown[1] == "2014Q2":
        assert 0 < usa_mex["providers_within_one_hour"] < usa_mex["providers"]


async def test_kpis_leave_emulated_data_out_unless_asked(fresh_database: str) -> None:
    from test_data_kind import collect, this_month

    from corridors.store import connect
    from corridors.types import EMULATED_WARNING

    store = await connect(fresh_database)
    try:
        await store.migrate()
        await collect(store)  # the sandbox as it is: every quote emulated
    finally:
        await store.close()
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        assert (await client.get(f"/v1/kpis?period={this_month()}")).status == 404
        resp = await client.get(f"/v1/kpis?period={this_month()}&include=emulated")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["warning"] == EMULATED_WARNING and body["includes"] == ["emulated"]
        valid_as(body, "/v1/kpis")
        csv = await client.get(f"/v1/kpis.csv?period={this_month()}&include=emulated")
        assert csv.headers["Sendcost-Warning"] == "emulated data - not real prices"


def test_the_bulletin_shows_the_scorecard_it_computes() -> None:
    from publish import bulletin_render as render
    from publish.bulletin import compute_bulletin, data_tables, load_rpw

    quotes, generated_from = load_rpw()
    b = compute_bulletin(quotes, "2014Q2", generated_from=generated_from)
    g = b.kpis["global"]
    assert g["services"] == b.doc["services"]["total"]
    charts = render.charts(b)
    html, md = render.html(b, charts), render.markdown(b)
    hour = render.share(g["share_quotes_within_one_hour"])
    for text in (html, md):
        assert "7. The G20 remittance scorecard" in text and "not the share of payments" in text
        assert hour in text
        assert f"{g['providers_within_one_hour']:,} of {g['providers']:,} providers" in text
    assert 'src="charts/g20_scorecard.png"' in html
    assert next(c for c in charts if c.name == "g20_scorecard").alt.count("%") >= 4
    tables = data_tables(b)
    assert tables["g20_scorecard"].height == len(b.kpis["corridors"])
    assert tables["g20_scorecard_global"].item(0, "services") == g["services"]
