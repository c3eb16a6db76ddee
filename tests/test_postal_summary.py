"""The post against its market (metrics.postal's summary): tiny tables, then the real RPW."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import msgspec
import polars as pl
import pytest
from aiohttp.test_utils import TestClient
from polars.testing import assert_frame_equal

from corridors.frame import conform
from corridors.reading.rpw import bundled_rpw_path, read_rpw
from metrics.postal import (
    OPERATOR_COLUMNS,
    SUMMARY_COLUMNS,
    postal_summary,
    postal_summary_by_operator,
    postal_trend,
    previous_period,
)
from publish.contract_ops import PostalSummaryByCorridor, PostalSummaryByOperator, Problem


def _quote(period: str, firm: str, firm_type: str, fee: float, *, transparent: bool = True,
           pay_out: str = "cash", product: str = "") -> dict[str, object]:
    return {"period": period, "source_code": "FRA", "destination_code": "SEN",
            "firm": firm, "firm_type": firm_type, "product": product,
            "service_id": f"{firm}:{product}", "speed": "same_day", "pay_out": pay_out,
            "amount_usd": 200, "send_amount": 100.0, "fee": fee, "applied_rate": 1.0,
            "reference_rate": 1.0, "transparent": transparent, "source": "test",
            "data_kind": "observed"}


def _market(period: str, post_fee: float) -> list[dict[str, object]]:
    return [
        _quote(period, "A", "mto", 2.0), _quote(period, "B", "bank", 8.0),
        _quote(period, "C", "mto", 4.0),
        _quote(period, "La Poste", "post_office", post_fee),
        _quote(period, "La Poste", "post_office", post_fee + 3, product="express"),
        # An MTO paid out by the receiving post: the post at the other end.
        _quote(period, "D", "mto", 1.0, pay_out="post_office"),
    ]


@pytest.fixture
def quotes() -> pl.LazyFrame:
    return conform(pl.DataFrame(_market("2026-10", 7.0) + _market("2026-11", 5.0)))


def test_the_post_against_the_market_without_its_own_services(quotes: pl.LazyFrame) -> None:
    got = postal_summary(quotes, period="2026-11", amount_usd=200,
                         previous="2026-10").collect()
    assert got.columns == list(SUMMARY_COLUMNS)
    sender = got.filter(pl.col("role") == "sender").row(0, named=True)
    # the market: A 2, C 4, B 8 (the post's two services and D, paid out by the post, out)
    assert (sender["firm"], sender["post_services"], sender["post_total_cost_pct"],
            sender["market_services"], sender["market_median"], sender["market_cheapest"],
            sender["market_cheapest_firm"], sender["rank"]) == (
        "La Poste", 2, 5.0, 3, 4.0, 2.0, "A", 3)
    # with every service in, the median would be (4 + 5) / 2
    assert sender["median_with_post"] == pytest.approx(4.5)
    assert sender["difference_to_median"] == pytest.approx(1.0)
    assert sender["difference_to_cheapest"] == pytest.approx(3.0)
    # a month before, the post cost 7 against the same median: the gap closed by 2 points
    assert (sender["previous_period"], sender["previous_total_cost_pct"],
            sender["previous_difference_to_median"]) == ("2026-10", pytest.approx(7.0),
                                                          pytest.approx(3.0))
    assert sender["change_total_cost_pct"] == pytest.approx(-2.0)
    assert sender["change_difference_to_median"] == pytest.approx(-2.0)
    assert (sender["sources"], sender["data_kinds"]) == ("test", "observed")
    receiver = got.filter(pl.col("role") == "receiver").row(0, named=True)
    assert (receiver["firm"], receiver["post_total_cost_pct"], receiver["rank"]) == (
        "D", 1.0, 1)


def test_a_post_without_a_disclosed_rate_has_no_cost_nor_rank() -> None:
    rows = _market("2026-11", 5.0)
    rows[3] = _quote("2026-11", "La Poste", "post_office", 5.0, transparent=False)
    rows[4] = _quote("2026-11", "La Poste", "post_office", 8.0, transparent=False,
                     product="express")
    got = postal_summary(conform(pl.DataFrame(rows)), period="2026-11",
                         amount_usd=200).collect()
    post = got.filter(pl.col("firm") == "La Poste").row(0, named=True)
    assert (post["post_services"], post["post_total_cost_pct"], post["rank"],
            post["difference_to_median"], post["previous_period"]) == (2, None, None, None,
                                                                        None)
    assert post["market_services"] == 3


def test_per_operator(quotes: pl.LazyFrame) -> None:
    summary = postal_summary(quotes, period="2026-11", amount_usd=200, previous="2026-10")
    got = postal_summary_by_operator(summary).collect()
    expected = pl.DataFrame({
        "period": ["2026-11", "2026-11"], "firm": ["D", "La Poste"],
        "firm_type": ["mto", "post_office"], "role": ["receiver", "sender"],
        "corridors": [1, 1], "priced_corridors": [1, 1],
        "average_total_cost_pct": [1.0, 5.0], "median_difference_to_median": [-3.0, 1.0],
        "at_or_below_median": [1, 0], "cheapest_in_corridor": [1, 0],
        "gap_closing": [0, 1], "gap_widening": [0, 0],
        "previous_period": ["2026-10", "2026-10"], "sources": ["test", "test"],
        "data_kinds": ["observed", "observed"],
    }).select(OPERATOR_COLUMNS)
    assert_frame_equal(got, expected)


def test_previous_period() -> None:
    held = ["2014Q2", "2011Q1", "2013Q3", "2014-03"]
    assert previous_period(held, "2014Q2") == "2014Q1"  # March counts toward its quarter
    assert previous_period(held, "2013Q3") == "2011Q1"
    assert previous_period(held, "2011Q1") is None
    assert previous_period(held, "2014-04") == "2014-03"


@pytest.fixture(scope="module")
def rpw() -> pl.LazyFrame:
    return read_rpw(bundled_rpw_path()).frame.lazy()


def test_bel_cod_2014q2_on_the_world_bank_data(rpw: pl.LazyFrame) -> None:
    """The corridor median is 9.34 with the two services sold at post counters and 9.31
    without them (the World Bank's own rows: La Poste via Western Union 9.74, MoneyTrans
    12.33); the market's cheapest is LCC's cash-to-cash service at 6.49."""
    got = postal_summary(rpw, period="2014Q2", amount_usd=200,
                         previous=previous_period(["2014Q1", "2014Q2"], "2014Q2")).collect()
    bel_cod = got.filter(pl.col("source_code") == "BEL", pl.col("destination_code") == "COD")
    assert bel_cod.get_column("firm").to_list() == ["La Poste via Western Union", "MoneyTrans"]
    post = bel_cod.row(0, named=True)
    assert post["median_with_post"] == pytest.approx(9.34)
    assert post["market_median"] == pytest.approx(9.31)
    assert (post["market_services"], post["market_cheapest"], post["market_cheapest_firm"],
            post["post_total_cost_pct"], post["rank"], post["role"]) == (
        7, pytest.approx(6.49), "LCC", pytest.approx(9.74), 6, "sender")
    # 2014Q1: 9.42 against a market median of 7.59; the gap closed by 1.40 points
    assert post["previous_difference_to_median"] == pytest.approx(9.42 - 7.59)
    assert post["change_difference_to_median"] == pytest.approx(0.43 - 1.83)


def test_trend_over_the_periods_held(rpw: pl.LazyFrame) -> None:
    periods = ["2013Q1", "2013Q3", "2014Q1", "2014Q2"]
    trend = postal_trend(rpw, periods=periods, amount_usd=200).collect().filter(
        pl.col("source_code") == "BEL", pl.col("destination_code") == "COD",
        pl.col("firm") == "La Poste via Western Union")
    assert trend.get_column("period").to_list() == periods
    assert trend.get_column("post_total_cost_pct").to_list() == pytest.approx(
        [11.59, 14.88, 9.42, 9.74])
    assert trend.get_column("market_median").to_list()[-1] == pytest.approx(9.31)


# --- the running service and the CLI, on the real PostgreSQL --------------------------------


async def test_the_api_answers_per_corridor_and_per_operator(api: TestClient
                                                            ) -> None:
    resp = await api.get("/v1/postal/summary?period=2014Q2")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    # The body is its contract model's, to the key and type (decoding is strict).
    msgspec.json.decode(await resp.read(), type=PostalSummaryByCorridor)
    assert (body["period"], body["previous_period"], body["by"], body["amount_usd"],
            body["columns"]) == ("2014Q2", "2014Q1", "corridor", 200, list(SUMMARY_COLUMNS))
    assert body["count"] == len(body["rows"]) > 0
    bel_cod = [r for r in body["rows"] if (r["source_code"], r["destination_code"])
               == ("BEL", "COD")]
    assert [r["firm"] for r in bel_cod] == ["La Poste via Western Union", "MoneyTrans"]
    post = bel_cod[0]
    assert post["market_median"] == pytest.approx(9.31)
    assert post["median_with_post"] == pytest.approx(9.34)
    assert (post["rank"], post["market_services"], post["market_cheapest_firm"],
            post["sources"], post["data_kinds"]) == (6, 7, "LCC", "rpw", "survey")
    assert post["change_difference_to_median"] == pytest.approx(0.43 - 1.83)
    # The CSV twin: the same rows, the same columns as `sendcost export postal --by`.
    resp = await api.get("/v1/postal/summary.csv?period=2014Q2&by=operator")
    assert resp.status == 200 and resp.content_type == "text/csv"
    text = await resp.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(OPERATOR_COLUMNS)
    by_operator = await (await api.get("/v1/postal/summary?period=2014Q2&by=operator")).read()
    operators = json.loads(by_operator)["rows"]
    assert msgspec.json.decode(by_operator, type=PostalSummaryByOperator).rows
    assert [r["firm"] for r in rows] == [r["firm"] for r in operators]
    assert {r["firm"] for r in rows} >= {"La Poste via Western Union", "MoneyTrans"}
    # Bad input is a problem naming the parameter.
    resp = await api.get("/v1/postal/summary?by=country")
    assert resp.status == 400
    problem = await resp.json(content_type=None)
    assert "by" in problem["detail"]
    assert msgspec.json.decode(await resp.read(), type=Problem).parameter == "by"
    assert (await api.get("/v1/postal/summary?period=2030Q1")).status == 404


def test_the_export_has_the_api_field_names_and_its_provenance(tmp_path: Path) -> None:
    from sendcost.cli import main

    for by, columns in (("corridor", SUMMARY_COLUMNS), ("operator", OPERATOR_COLUMNS)):
        assert main(["export", "postal", "--period", "2014Q2", "--source", "rpw", "--by", by,
                     "--out", str(tmp_path)]) == 0
        doc = json.loads((tmp_path / f"postal-2014Q2-by-{by}.json").read_text())
        assert doc["columns"] == list(columns) and doc["previous_period"] == "2014Q1"
        assert doc["provenance"] == [{"source": "rpw", "data_kind": "survey",
                                      "quotes": doc["provenance"][0]["quotes"],
                                      "from": "2014Q1", "to": "2014Q2"}]
        with (tmp_path / f"postal-2014Q2-by-{by}.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == list(columns) and len(rows) == len(doc["rows"])
        assert not list(tmp_path.glob(".*.part"))


def test_rpw_post_office_pick_up_and_access_point_tell_receivers_from_senders(
        tmp_path: Path) -> None:
    """RPW's 2016- sheet: a pick-up location "Post office" is the post at the receiving end
    (pay-out post_office, role receiver); an access point "Post Office branch" a service
    sold at a post office (role sender). Neither counts in the market."""
    from rpw_real_format import new_sheet_rows, write_csv

    rows = new_sheet_rows(per_corridor=6)
    receiving = rows[0]
    receiving["pickup location"] = "Post office"
    # An MTO's service sold at post office counters (the labels' rotation pairs "Post Office
    # branch" with a postal firm type only).
    counter = next(r for r in rows[1:] if r["period"] == receiving["period"]
                   and r["firm_type"] == "Money Transfer Operator"
                   and r["pickup location"] != "Post office")
    counter["access point"] = "Post Office branch"
    read = read_rpw(write_csv(tmp_path / "rpw.csv", rows))
    frame = read.frame.with_columns(pl.col("period").cast(pl.String))
    paid = frame.filter(pl.col("pay_out") == "post_office")
    assert [f.casefold() for f in paid.get_column("firm").unique().to_list()] == [
        receiving["firm"].strip().casefold()]
    period = str(paid.get_column("period")[0])
    got = postal_summary(frame.lazy(), period=period, amount_usd=200).collect()
    receivers = got.filter(pl.col("role") == "receiver")
    assert [(src, dst, firm.casefold()) for src, dst, firm in receivers.select(
        "source_code", "destination_code", "firm").rows()] == [
        (receiving["source_code"], receiving["destination_code"],
         receiving["firm"].strip().casefold())]
    postal_labels = {"Money Transfer Operator / Post office", "Post office",
                     "Money Transfer Operator / Post Office", "Post Office"}
    # (the reader writes Kosovo XKX, and one spelling of a firm whatever its case or
    # trailing spaces)
    at_post = {(r["source_code"], r["destination_code"].replace("KSV", "XKX"),
                r["firm"].strip().casefold()) for r in rows
               if (r["access point"] == "Post Office branch" or r["firm_type"] in postal_labels)
               and r["period"] == receiving["period"]}
    assert any(r["access point"] == "Post Office branch" and r["firm_type"] not in postal_labels
               for r in rows if r["period"] == receiving["period"])
    senders = got.filter(pl.col("role") == "sender")
    assert {(src, dst, firm.casefold()) for src, dst, firm in senders.select(
        "source_code", "destination_code", "firm").rows()} == at_post
    # Each one's market leaves out the other post-served services of its corridor.
    services = frame.filter(pl.col("period") == period, pl.col("amount_usd") == 200)
    r = receivers.row(0, named=True)
    market = services.filter(
        pl.col("source_code") == r["source_code"],
        pl.col("destination_code") == r["destination_code"],
        pl.col("pay_out").fill_null("") != "post_office",
        pl.col("access_point").fill_null("") != "post_office_branch",
        ~pl.col("firm_type").cast(pl.String).is_in(["post_office", "post_office_mto"]),
        pl.col("transparent"))
    assert r["market_services"] == market.get_column("service_id").n_unique()
