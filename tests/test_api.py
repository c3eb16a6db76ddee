"""The public API as a contract: whole bodies on the real RPW data, every error as
problem+json, caching, CSV twins, pagination, CORS, rate limit and admin actions."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import itertools
import logging
import math
import re
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app
from prometheus_client.parser import text_string_to_metric_families

from collector.schedule import COLLECTION_JOBS, CollectionJobs
from corridors import runtime
from corridors.reading.rpw import bundled_rpw_path
from corridors.reference import countries
from corridors.types import (
    FIRM_TYPE_FROM_RPW,
    SPEED_FROM_RPW,
    Speed,
    access_point_from_rpw,
    payout_from_rpw,
)
from metrics import METHODOLOGY_VERSION
from metrics.kinds import TABLE_CAVEATS
from publish.api.admin import ADMIN_BULLETIN_PARAMS, ADMIN_COLLECT_PARAMS
from publish.api.compare import COMPARE_PARAMS, SERVICE_CSV_COLUMNS
from publish.api.corridors import CORRIDOR_PARAMS, CORRIDORS_PARAMS, HISTORY_PARAMS
from publish.api.indicators import INDICATORS_PARAMS
from publish.api.kpis import KPIS_PARAMS
from publish.api.postal import POSTAL_PARAMS
from publish.api.postal_summary import PARAMS as POSTAL_SUMMARY_PARAMS
from publish.contract_ops import AdminBulletin, AdminCollect
from publish.data import CAVEATS
from publish.middleware import (
    HANDLER_ARGS,
    MAX_BODY,
    MAX_QUERY,
    MAX_REQUEST_LINE,
    SERVER_LOGGER,
    TELEMETRY,
    UNLIMITED,
    MalformedRequestFilter,
)
from publish.openapi import document
from publish.page import PAGE_PARAMS
from publish.webhooks import DELIVERIES_PARAMS

RPW_SOURCE = {"name": "rpw", "title": "The World Bank, Remittance Prices Worldwide",
              "url": "https://remittanceprices.worldbank.org", "licence": "CC BY 4.0"}
ITA = {"alpha2": "IT", "alpha3": "ITA", "name": "Italy"}
CHN = {"alpha2": "CN", "alpha3": "CHN", "name": "China"}


def rounded(value: Any) -> Any:
    """Floats to 9 decimals, recursively: two ways of summing may differ in the last bit."""
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def rpw_rows(period: str, src: str, dst: str) -> list[dict[str, str]]:
    """The World Bank's rows of one corridor and period, read straight from the CSV."""
    with gzip.open(bundled_rpw_path(), "rt", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["period"] == period
                and r["source_code"] == src and r["destination_code"] == dst]


def country(alpha3: str) -> dict[str, Any]:
    c = countries()[alpha3]
    return {"alpha2": c.alpha2, "alpha3": c.alpha3, "name": c.name}


#: The note on a service RPW gives no pay-out currency for and whose rate does not show it.
def unknown_currency(r: dict[str, str]) -> str:
    if r["transparent"] != "yes":
        return ("unknown: RPW does not state the pay-out currency, and this service did not "
                "disclose its exchange rate")
    return ("unknown: RPW does not state the pay-out currency, and this service's reference "
            f"rate ({float(r['inter lcu bank fx']):g} from {r['cc1 lcu code']}) does not show "
            "it unambiguously")


def expected_service(r: dict[str, str], cc: str, rank: int | None, *,
                     receive: tuple[str | None, str | None, str | None] | None = None
                     ) -> dict[str, Any]:
    """A service as the API must show it, from its RPW row; ``receive`` is its receive
    currency, basis and note (by default: unknown)."""
    transparent = r["transparent"] == "yes"
    currency, basis, note = receive or (None, None, unknown_currency(r))
    amount, fee = float(r[f"{cc} lcu amount"]), float(r[f"{cc} lcu fee"])
    rate = float(r[f"{cc} lcu fx rate"]) if transparent else None
    collected = dt.datetime.strptime(r["date"], "%d/%b/%Y").strftime("%Y-%m-%dT00:00:00Z")
    margin = float(r[f"{cc} fx margin"]) if transparent else None
    total = float(r[f"{cc} total cost %"]) if transparent else None
    flags = sorted([*(["negative_margin"] if margin is not None and margin < 0 else []),
                    *(["negative_total_cost"] if total is not None and total < 0 else [])])
    return {
        "provider": r["firm"], "firm_type": FIRM_TYPE_FROM_RPW[r["firm_type"]].value,
        "product": r["product"] or None,
        "service_id": f"rpw:2014Q2:{r['source_code']}:{r['destination_code']}:{r['firm']}:"
                      f"{r['product']}:{r['id']}",
        "fee": fee, "fee_currency": r[f"{cc} lcu code"], "applied_rate": rate,
        "reference_rate": float(r["inter lcu bank fx"]), "reference_rate_source": "rpw",
        "reference_rate_at": None, "fee_pct": fee / amount * 100,
        "fx_margin_pct": float(r[f"{cc} fx margin"]) if transparent else None,
        "total_cost_pct": float(r[f"{cc} total cost %"]) if transparent else None,
        "amount_received": None, "amount_received_basis": None, "fee_paid_on_top": None,
        "amount_received_if_fee_on_top": round(amount * rate, 2) if rate else None,
        "amount_received_if_fee_deducted": round((amount - fee) * rate, 2) if rate else None,
        "receive_currency": currency, "receive_currency_basis": basis,
        "receive_currency_note": note,
        "speed": (s.value if (s := SPEED_FROM_RPW[r["speed actual"]]) else None),
        "pay_in": None, "pay_out": payout_from_rpw(r["pick-up method"]).value,  # type: ignore[union-attr]
        "access_point": access_point_from_rpw(r["sending location"]).value,  # type: ignore[union-attr]
        "transparent": transparent, "collected_at": collected, "source": "rpw", "rank": rank,
        "data_kind": "survey", "flags": flags,
        # RPW does not say how the fee is charged: what the sender pays in all is unknown.
        "effective_cost_pct": None,
    }


def expected_compare(amount: float, currency: str, priced: float, *,
                     approximate: bool) -> dict[str, Any]:
    rows = rpw_rows("2014_2Q", "ITA", "CHN")
    transparent = sorted((r for r in rows if r["transparent"] == "yes"),
                         key=lambda r: (float(r["cc1 total cost %"]), r["firm"], r["id"]))
    apart = [r for r in rows if r["transparent"] != "yes"]
    totals = [float(r["cc1 total cost %"]) for r in transparent]
    average = statistics.fmean(totals)
    # The cheapest named is the cheapest with no negative margin or total cost.
    cheapest = next(r for r in transparent if float(r["cc1 fx margin"]) >= 0
                    and float(r["cc1 total cost %"]) >= 0)
    # Per caveat, how many of the corridor's services carry it (each RPW row a service).
    flagged = [f for r in rows for f in expected_service(r, "cc1", None)["flags"]
               if f in TABLE_CAVEATS]
    return {
        "period": "2014Q2", "methodology_version": METHODOLOGY_VERSION,
        "sources": [RPW_SOURCE], "licence": "CC BY 4.0", "from": ITA, "to": CHN,
        "amount": amount, "currency": currency, "send_currency": "EUR",
        "priced_amount": priced, "priced_send_amount": 140.0, "priced_amount_usd": 200,
        "approximate": approximate,
        "approximation": (f"not priced at {amount:g} {currency}: these are the quotes at the "
                          f"nearest priced amount, {priced:g} {currency}, unscaled"
                          if approximate else None),
        "priced_amounts": [140.0, 345.0],
        "filters": {"payin": None, "payout": None, "note": None},
        "corridor": {
            "average": average, "smart": statistics.fmean(sorted(totals)[:3]),
            "median": statistics.median(totals), "services": len(rows),
            "transparent_services": len(transparent), "above_5": average > 5,
            "above_10": average > 10, "too_few_services": len(transparent) < 3,
            "no_transparent_service": False, "points_above_3": average - 3,
            "points_above_5": average - 5,
            "cheapest": {"provider": cheapest["firm"], "firm_type": "mto",
                         "product": cheapest["product"],
                         "total_cost_pct": float(cheapest["cc1 total cost %"])},
            "cheapest_leaves_out": ["estimate", "negative_margin", "negative_total_cost"],
            "caveats": {f: flagged.count(f) for f in TABLE_CAVEATS if f in flagged}},
        "ranked_by": "total_cost_pct",
        "flags_explained": {f: CAVEATS[f] for f in sorted(
            {f for r in rows for f in expected_service(r, "cc1", None)["flags"]})},
        # No rate is a rate into CNY, and a rate alone cannot tell EUR → USD from EUR → EUR
        # at 1 (from USD): the unit is the one RPW's notes name, three services paying out
        # USD (rate 1.37 from EUR, a rate into USD) and one EUR (rate 1).
        "services": [expected_service(r, "cc1", i, receive=noted(r))
                     for i, r in enumerate(transparent, 1)],
        "non_transparent": [expected_service(r, "cc1", None) for r in apart],
    }


def noted(r: dict[str, str]) -> tuple[str, str, str]:
    """The unit of an RPW row whose note names a currency its reference rate bears out."""
    currency = rpw_note_currency(r)
    assert currency is not None, r["id"]
    rate = float(r["inter lcu bank fx"])
    return (currency, "rpw_note", f"noted: RPW's note says this service pays out in "
            f"{currency}, and its reference rate, {rate:g} per {r['cc1 lcu code']}, is a rate "
            f"into {currency}")


def itachn_periods() -> list[str]:
    with gzip.open(bundled_rpw_path(), "rt", encoding="utf-8") as fh:
        found = {r["period"] for r in csv.DictReader(fh)
                 if r["corridor"] == "ITACHN" and r["cc1 lcu amount"]}
    return sorted(f"{p[:4]}Q{p[5]}" for p in found)


async def get_json(api: TestClient, url: str, status: int = 200,
                   **kw: Any) -> Any:
    resp = await api.get(url, **kw)
    text = await resp.text()
    assert resp.status == status, text
    return await resp.json(content_type=None)


# --- whole bodies ---------------------------------------------------------------------------


async def test_compare_exact_amount_is_the_world_banks_corridor(api: TestClient) -> None:
    body = await get_json(api, "/v1/compare?from=IT&to=CHN&amount=140&period=2014Q2")
    assert rounded(body) == rounded(expected_compare(140.0, "EUR", 140.0, approximate=False))


async def test_compare_in_usd_uses_the_usd_price_point(api: TestClient) -> None:
    body = await get_json(api, "/v1/compare?from=ITA&to=CN&amount=200&currency=usd"
                               "&period=2014Q2")
    assert rounded(body) == rounded(expected_compare(200.0, "USD", 200.0, approximate=False))


async def test_compare_unpriced_amount_says_which_amount_was_used(api: TestClient) -> None:
    body = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=150&period=2014Q2")
    assert rounded(body) == rounded(expected_compare(150.0, "EUR", 140.0, approximate=True))


async def test_compare_defaults_to_the_latest_period_of_the_corridor(api: TestClient) -> None:
    body = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=140")
    assert body["period"] == "2014Q2"


async def test_a_comparisons_spliced_json_is_its_models_own(api: TestClient) -> None:
    # The JSON path splices each price point's services in as their JSON, encoded once
    # (msgspec.Raw); byte for byte what encoding the whole model gives, at amounts priced and
    # not, in either currency, filtered and not, and for the point's second asker. Its ETag
    # (a digest of the answer with the services' own digest in their place) is the same for
    # the same bytes and differs between any two answers.
    from decimal import Decimal

    from publish.api.compare import compare_json, compare_model
    from publish.contract import encode
    from publish.data import DATA

    assert api.app is not None
    data = api.app[DATA]
    snap = await data.snapshot(include_emulated=False)
    tags: dict[str, bytes] = {}
    for src, dst, amount, currency, payout in [
            ("ITA", "CHN", "140", None, None), ("ITA", "CHN", "151.37", None, None),
            ("USA", "MEX", "333.33", None, "cash"), ("USA", "MEX", "333.34", None, "cash"),
            ("ITA", "CHN", "500", "USD", None), ("USA", "MEX", "200", None, "bank_account")]:
        args = (snap, src, dst, Decimal(amount), currency, None, payout, None)
        whole = encode(compare_model(*args))
        body, tag = compare_json(*args)
        assert body == whole and compare_json(*args) == (body, tag)
        assert msgspec.json.decode(whole)["services"] is not None
        assert tags.setdefault(tag, body) == body
    assert len(set(tags.values())) == len(tags) == 6


async def test_compare_filters_by_pay_out_and_reranks(api: TestClient) -> None:
    body = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=140&payout=bank_account")
    assert body["services"] == [] and body["filters"] == {"payin": None,
                                                          "payout": "bank_account", "note": None}
    body = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=140&payout=cash")
    assert [s["rank"] for s in body["services"]] == [1, 2, 3, 4]


async def test_a_filter_says_which_services_it_cannot_tell(api: TestClient) -> None:
    # RPW's survey quotes do not say how the money is paid in: payin= cannot pick them.
    every = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=140")
    body = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=140&payin=cash")
    n = len(every["services"]) + len(every["non_transparent"])
    assert body["services"] == [] and n > 0
    assert body["filters"]["note"] == (f"{n} of {n} services do not record how the money is "
                                       "paid in: the filter leaves them out")
    assert every["filters"]["note"] is None


async def test_corridors_list_filtered_to_one_corridor(api: TestClient) -> None:
    body = await get_json(api, "/v1/corridors?from=ITA&to=CHN")
    compare = expected_compare(140.0, "EUR", 140.0, approximate=False)["corridor"]
    dates = sorted(dt.datetime.strptime(r["date"], "%d/%b/%Y").strftime("%Y-%m-%dT00:00:00Z")
                   for r in rpw_rows("2014_2Q", "ITA", "CHN"))
    assert rounded(body) == rounded({
        "period": "2014Q2", "methodology_version": METHODOLOGY_VERSION,
        "sources": [RPW_SOURCE], "licence": "CC BY 4.0", "amount_usd": 200,
        "periods": {"2014Q2": 1}, "count": 1, "next_cursor": None,
        "caveats_explained": {f: CAVEATS[f] for f in compare["caveats"]},
        "corridors": [{"from": ITA, "to": CHN, "period": "2014Q2", "amount_usd": 200,
                       "first_collected": dates[0], "last_collected": dates[-1],
                       "data_kinds": ["survey"], **compare,
                       "receiving_region": {"code": "EAP", "name": "East Asia & Pacific"},
                       "sources": ["rpw"]}],
    })


async def test_corridors_filters_and_cursor_pagination(api: TestClient) -> None:
    everything = await get_json(api, "/v1/corridors?limit=500")
    assert everything["next_cursor"] is None
    # Leading zeros are the same number (the number grammar allows them).
    assert await get_json(api, "/v1/corridors?limit=0000000000000500") == everything
    keys = [(c["from"]["alpha3"], c["to"]["alpha3"]) for c in everything["corridors"]]
    assert keys == sorted(keys) and len(keys) == everything["count"] > 100
    paged, url = [], "/v1/corridors?limit=37"
    while url:
        resp = await api.get(url)
        page = await resp.json()
        paged += [(c["from"]["alpha3"], c["to"]["alpha3"]) for c in page["corridors"]]
        assert ("Link" in resp.headers) == (page["next_cursor"] is not None)
        url = f"/v1/corridors?limit=37&cursor={page['next_cursor']}" if page["next_cursor"] \
            else ""
    assert paged == keys
    above = await get_json(api, "/v1/corridors?above=10&limit=500")
    assert above["corridors"] and all(c["average"] > 10 for c in above["corridors"])
    assert above["count"] == sum(1 for c in everything["corridors"]
                                 if c["average"] is not None and c["average"] > 10)
    lac = await get_json(api, "/v1/corridors?region=LAC&limit=500")
    assert lac["corridors"] and {c["receiving_region"]["code"] for c in lac["corridors"]} == {
        "LAC"}
    posts = await get_json(api, "/v1/corridors?firm_type=post_office&limit=500")
    assert 0 < posts["count"] < everything["count"]


async def test_corridor_detail_matches_compare(api: TestClient) -> None:
    body = await get_json(api, "/v1/corridors/IT-CN")
    compare = expected_compare(140.0, "EUR", 140.0, approximate=False)
    assert rounded(body) == rounded({
        "period": "2014Q2", "methodology_version": METHODOLOGY_VERSION,
        "sources": [RPW_SOURCE], "licence": "CC BY 4.0", "from": ITA, "to": CHN,
        "amount_usd": 200, "send_amount": 140.0, "send_currency": "EUR",
        "periods": itachn_periods(),
        "indicators": compare["corridor"], "ranked_by": "total_cost_pct",
        "services": compare["services"], "non_transparent": compare["non_transparent"],
        "links": {"history": "/v1/corridors/ITA-CHN/history?amount=200",
                  "compare": "/v1/compare?from=ITA&to=CHN&amount=140"},
    })


def priced(r: dict[str, str], cc: str) -> bool:
    """RPW priced this service at this price point (an amount and some price)."""
    return bool(r[f"{cc} lcu amount"]) and any(
        r[f"{cc} {c}"] for c in ("lcu fee", "lcu fx rate", "total cost %"))


def averaged_total(r: dict[str, str], cc: str) -> float | None:
    """RPW's total cost of a transparent service (what averages take), else None."""
    if r["transparent"] != "yes" or not r[f"{cc} total cost %"]:
        return None
    return float(r[f"{cc} total cost %"])


def corridor_figures(rows: list[dict[str, str]], cc: str) -> dict[str, Any]:
    """A corridor's figures in one period from its RPW rows, computed here from the file."""
    rows = [r for r in rows if priced(r, cc)]
    totals = [t for r in rows if (t := averaged_total(r, cc)) is not None]
    qualifying = sorted(t for r in rows if (t := averaged_total(r, cc)) is not None
                        and SPEED_FROM_RPW[r["speed actual"]] not in (None,
                                                                      Speed.SIX_DAYS_OR_MORE))
    average = statistics.fmean(totals) if totals else None
    return {
        "average": average,
        "smart": statistics.fmean(qualifying[:3]) if len(qualifying) >= 3 else None,
        "median": statistics.median(totals) if totals else None,
        "services": len(rows), "transparent_services": len(totals),
        "above_5": None if average is None else average > 5,
        "above_10": None if average is None else average > 10,
        "too_few_services": len(totals) < 3, "no_transparent_service": not totals,
        "points_above_5": None if average is None else average - 5,
    }


def quarter(rpw_period: str) -> str:
    return f"{rpw_period[:4]}Q{rpw_period[5]}"


async def test_history_is_the_corridors_figures_period_by_period(api: TestClient) -> None:
    with gzip.open(bundled_rpw_path(), "rt", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["corridor"] == "ITACHN"]
    for amount_usd, cc in ((200, "cc1"), (500, "cc2")):
        periods = sorted({quarter(r["period"]) for r in rows if priced(r, cc)})
        def dates(p: str, cc: str = cc) -> list[str]:
            return sorted(dt.datetime.strptime(r["date"], "%d/%b/%Y").strftime(
                "%Y-%m-%dT00:00:00Z") for r in rows if quarter(r["period"]) == p
                and priced(r, cc))

        def caveats(p: str, cc: str = cc) -> dict[str, int]:
            # per caveat, the services of the period that carry it (each RPW row a service)
            flags = []
            for r in rows:
                if quarter(r["period"]) == p and priced(r, cc) and r["transparent"] == "yes":
                    if float(r[f"{cc} fx margin"]) < 0:
                        flags.append("negative_margin")
                    if (t := averaged_total(r, cc)) is not None and t < 0:
                        flags.append("negative_total_cost")
            return {f: flags.count(f) for f in TABLE_CAVEATS if f in flags}

        history = [{"period": p, "amount_usd": amount_usd, "first_collected": dates(p)[0],
                    "last_collected": dates(p)[-1], "data_kinds": ["survey"],
                    **corridor_figures([r for r in rows if quarter(r["period"]) == p], cc),
                    "caveats": caveats(p), "sources": ["rpw"]} for p in periods]
        body = await get_json(api, f"/v1/corridors/ITA-CHN/history?amount={amount_usd}")
        assert rounded(body) == rounded({
            "period": periods[-1], "methodology_version": METHODOLOGY_VERSION,
            "sources": [RPW_SOURCE], "licence": "CC BY 4.0", "from": ITA, "to": CHN,
            "amount_usd": amount_usd, "next_cursor": None, "history": history})
    first = await get_json(api, "/v1/corridors/ITA-CHN/history?amount=500&limit=2")
    rest = await get_json(api, "/v1/corridors/ITA-CHN/history?amount=500&cursor="
                               + first["next_cursor"])
    assert first["history"] + rest["history"] == body["history"]


async def test_indicators_are_the_metrics_document_from_the_file(api: TestClient) -> None:
    from corridors.reading.rpw import read_rpw
    from sendcost.commands.indicators import compute_from_frame

    doc = await asyncio.to_thread(lambda: compute_from_frame(
        read_rpw(bundled_rpw_path()).frame, "2011Q3", 200))
    body = await get_json(api, "/v1/indicators?period=2011_3Q")
    expected = dict(doc)
    expected["sources"], expected["licence"] = [RPW_SOURCE], "CC BY 4.0"
    # What the figures rest on: the survey, every corridor of it.
    expected["data_kinds"] = ["survey"]
    # The API names countries and services as every other endpoint does: country objects
    # beside the codes, a cheapest service's provider and total_cost_pct.
    expected["corridors"] = [
        {"from": country(c["source"]), "to": country(c["destination"]), **c,
         "data_kinds": ["survey"],
         "cheapest": None if c["cheapest"] is None else {
             "provider": c["cheapest"]["firm"], "firm_type": c["cheapest"]["firm_type"],
             "product": c["cheapest"]["product"] or None,
             "total_cost_pct": c["cheapest"]["total_cost"]}}
        for c in doc["corridors"]]
    expected["non_transparent"] = [
        {"from": country(n["source"]), "to": country(n["destination"]),
         "source": n["source"], "destination": n["destination"], "provider": n["firm"],
         "fee_pct": n["fee_pct"]}
        for n in doc["non_transparent"]]
    assert expected["non_transparent"] and expected["corridors"]
    assert rounded(body) == rounded(expected)
    ita = next(c for c in body["corridors"] if (c["source"], c["destination"]) == ("ITA", "CHN"))
    totals = [float(r["cc1 total cost %"]) for r in rpw_rows("2011_3Q", "ITA", "CHN")
              if r["transparent"] == "yes"]
    assert ita["average"] == pytest.approx(statistics.fmean(totals))
    # Each share names its denominator, counted from the answer's own rows.
    with_average = sum(c["average"] is not None for c in body["corridors"])
    assert body["share_denominators"]["share_corridors_above_5"] == {
        "of": "corridors with an average", "count": with_average}
    assert body["share_corridors_above_5"] == pytest.approx(100 * sum(
        c["average"] is not None and c["average"] > 5 for c in body["corridors"])
        / with_average)
    assert body["share_denominators"]["share_services_below_3"]["count"] == \
        body["services"]["transparent"]


def expected_postal(period: str) -> list[dict[str, Any]]:
    """Each post-office service of a period against its corridor, from the RPW file."""
    with gzip.open(bundled_rpw_path(), "rt", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["period"] == period and priced(r, "cc1")]
    label = quarter(period)
    by_corridor: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        by_corridor.setdefault((r["source_code"], r["destination_code"]), []).append(r)
    out = []
    for (src, dst), corridor in by_corridor.items():
        figures = corridor_figures(corridor, "cc1")
        totals = [t for r in corridor if (t := averaged_total(r, "cc1")) is not None]
        # The cheapest named has no negative margin or total cost.
        cheapest = min(((t, r["firm"], r["product"], service_id(label, r), r)
                        for r in corridor if (t := averaged_total(r, "cc1")) is not None
                        and t >= 0 and float(r["cc1 fx margin"]) >= 0),
                       default=None, key=lambda x: x[:4])
        for r in corridor:
            firm_type = FIRM_TYPE_FROM_RPW[r["firm_type"]].value
            if firm_type not in ("post_office", "post_office_mto"):
                continue
            total = averaged_total(r, "cc1")
            out.append({
                "from": country(src), "to": country(dst), "provider": r["firm"],
                "firm_type": firm_type, "product": r["product"] or None,
                "service_id": service_id(label, r), "transparent": total is not None,
                "total_cost_pct": total,
                "rank": None if total is None else 1 + sum(t < total for t in totals),
                "ranked_services": len(totals), "corridor_median": figures["median"],
                "corridor_average": figures["average"], "smart": figures["smart"],
                "points_above_median": (None if total is None or figures["median"] is None
                                        else total - figures["median"]),
                "cheapest": None if cheapest is None else {
                    "provider": cheapest[1],
                    "firm_type": FIRM_TYPE_FROM_RPW[cheapest[4]["firm_type"]].value,
                    "product": cheapest[2] or None, "total_cost_pct": cheapest[0]},
            })
    return sorted(out, key=lambda s: (s["from"]["alpha3"], s["to"]["alpha3"], s["provider"],
                                      s["product"] or "", s["service_id"]))


def service_id(label: str, r: dict[str, str]) -> str:
    return (f"rpw:{label}:{r['source_code']}:{r['destination_code']}:{r['firm']}:"
            f"{r['product']}:{r['id']}")


async def test_postal_benchmark_ranks_post_offices_in_their_market(api: TestClient) -> None:
    services = expected_postal("2014_2Q")
    assert 0 < len(services) <= 500
    body = await get_json(api, "/v1/postal/benchmark?period=2014Q2&limit=500")
    assert rounded(body) == rounded({
        "period": "2014Q2", "methodology_version": METHODOLOGY_VERSION,
        "sources": [RPW_SOURCE], "licence": "CC BY 4.0", "amount_usd": 200,
        "count": len(services), "next_cursor": None, "services": services})
    first = await get_json(api, "/v1/postal/benchmark?period=2014Q2&limit=50")
    rest = await get_json(api, "/v1/postal/benchmark?period=2014Q2&limit=50&cursor="
                               + first["next_cursor"])
    assert first["services"] + rest["services"] == body["services"]


# --- the unit of what arrives -------------------------------------------------------------


async def test_what_arrives_is_named_in_the_currency_the_rate_converts_into(
        api: TestClient) -> None:
    # USA → Mexico, 2014Q2: all transparent services but one share RPW's reference rate
    # 12.95 (USD → MXN); Citibank's is 1.0 (USD → USD: it pays out dollars).
    rows = {r["id"]: r for r in rpw_rows("2014_2Q", "USA", "MEX")}
    rates = [float(r["inter lcu bank fx"]) for r in rows.values() if r["transparent"] == "yes"]
    corridor_rate = statistics.mode(rates)
    body = await get_json(api, "/v1/compare?from=USA&to=MEX&amount=200&period=2014Q2")
    seen = {}
    for s in body["services"] + body["non_transparent"]:
        r = rows[s["service_id"].rsplit(":", 1)[1]]
        rate = float(r["inter lcu bank fx"])
        if r["transparent"] != "yes":
            expected: tuple[str | None, str | None, str] = (None, None, unknown_currency(r))
        elif rate == corridor_rate:
            expected = ("MXN", "reference_rate", (
                "inferred: RPW does not state the pay-out currency; this service's reference "
                f"rate, {rate:g} per USD, is the rate most services of the corridor share, a "
                "rate into MXN"))
        else:
            assert rate == 1.0
            expected = ("USD", "reference_rate", (
                "inferred: RPW does not state the pay-out currency; this service's reference "
                "rate is 1 from USD, so nothing is converted"))
        assert (s["receive_currency"], s["receive_currency_basis"],
                s["receive_currency_note"]) == expected, s["provider"]
        seen[s["provider"]] = s["receive_currency"]
    assert seen["Citibank"] == "USD" and seen["Ria"] == "MXN"
    # The CSV twin says the same.
    text = await (await api.get("/v1/compare.csv?from=USA&to=MEX&amount=200&period=2014Q2")
                  ).text()
    assert {r["provider"]: r["receive_currency"] or None
            for r in csv.DictReader(text.splitlines())} == seen


def rpw_note_currency(r: dict[str, str]) -> str | None:
    """The pay-out currency an RPW row's free-text notes state, if they state one."""
    for note in (r["note1"], r["note2"]):
        if note.strip().lower().startswith("lcu service"):
            return "LCU"
        if m := re.match(r"\s*([A-Z]{3}) [Ss]ervice", note):
            return m.group(1)
        if m := re.search(r"pays? ?out (?:in )?([A-Z]{3})", note):
            return m.group(1).replace("CFA", "XOF")
    return None


def test_inferred_receive_currencies_agree_with_rpws_notes() -> None:
    """The notes are the World Bank's own word (read here from the file, apart from the
    reader's ``payout_currency_noted``): where a note names the pay-out currency, the
    inference from the rates must not contradict it, except where the rate is the fixed
    EUR → CFA peg and the note says the money is paid out in euros; a currency taken from the
    note (basis ``rpw_note``) is the one the note names."""
    import polars as pl

    from corridors.reading.rpw import read_rpw
    from corridors.reference import legal_tender
    from publish.receive import infer

    frame = read_rpw(bundled_rpw_path()).frame.with_columns(
        pl.col(pl.Categorical).cast(pl.String))
    inferred = infer(frame)
    with gzip.open(bundled_rpw_path(), "rt", encoding="utf-8") as fh:
        notes = {service_id(quarter(r["period"]), r): (rpw_note_currency(r), r)
                 for r in csv.DictReader(fh)}
    agree, differ, from_notes = 0, [], 0
    for (period, sid, _), (currency, basis, note) in inferred.items():
        stated, row = notes[sid]
        assert note, sid  # every quote says how its unit was found, or why it was not
        if stated == "LCU":
            tender = legal_tender(row["destination_code"], period)
            stated = tender[0] if len(tender) == 1 else None
        if basis == "rpw_note":
            # ... or "This RSP sends USD in this corridor. [It] may be ... paid out in USD".
            sent = f"sends {currency} in this corridor" in row["note1"] + row["note2"]
            assert currency == stated or (stated is None and sent), (sid, currency, stated)
            from_notes += 1
            continue
        if currency is None or stated is None:
            continue
        if currency == stated:
            agree += 1
        elif (currency, stated) == ("XOF", "EUR") and math.isclose(
                float(row["inter lcu bank fx"]), 655.957, rel_tol=1e-3):  # one typo: 655.597
            continue  # XOF at the peg: the unit of the amounts, paid out in euros
        else:
            differ.append((sid, currency, stated))
    transparent = frame.filter(pl.col("transparent")).height
    assert sum(1 for c, _, _ in inferred.values() if c) > transparent / 2
    assert agree > 2000 and len(differ) < agree / 50, differ[:10]
    assert from_notes > 5000


# --- CSV twins, caching, CORS ---------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/v1/compare?from=ITA&to=CHN&amount=140", "/v1/corridors?from=ITA",
    "/v1/corridors/ITA-CHN", "/v1/corridors/ITA-CHN?amount=500&period=2012Q1",
    "/v1/corridors/ITA-CHN/history", "/v1/indicators?period=2014Q2",
    "/v1/postal/benchmark?period=2014Q2"])
async def test_every_collection_has_a_csv_twin(api: TestClient, path: str) -> None:
    base, _, query = path.partition("?")
    by_suffix = await api.get(f"{base}.csv?{query}")
    by_accept = await api.get(path, headers={"Accept": "text/csv"})
    for resp in (by_suffix, by_accept):
        assert resp.status == 200 and resp.content_type == "text/csv"
    text = await by_suffix.text()
    assert text == await by_accept.text()
    rows = list(csv.DictReader(text.splitlines()))
    assert rows, text[:200]
    # What the JSON twin's envelope says, the CSV twin says in its headers.
    body = await get_json(api, path)
    for resp in (by_suffix, by_accept):
        assert resp.headers["Sendcost-Period"] == body["period"]
        assert resp.headers["Sendcost-Methodology-Version"] == METHODOLOGY_VERSION
        assert resp.headers["Sendcost-Licence"] == body["licence"] == "CC BY 4.0"
        assert resp.headers["Sendcost-Sources"] == (
            'rpw;title="The World Bank, Remittance Prices Worldwide";'
            'url="https://remittanceprices.worldbank.org";licence="CC BY 4.0"')
        assert body["sources"] == [RPW_SOURCE]
        exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Sendcost-Period", "Sendcost-Methodology-Version", "Sendcost-Sources",
                "Sendcost-Licence"} <= exposed


async def test_csv_of_an_empty_answer_has_no_period(api: TestClient) -> None:
    resp = await api.get("/v1/corridors.csv?above=99")
    assert resp.status == 200 and (await resp.text()).count("\n") == 1  # the header row
    assert "Sendcost-Period" not in resp.headers
    assert (await get_json(api, "/v1/corridors?above=99"))["period"] is None
    assert resp.headers["Sendcost-Licence"] == "CC BY 4.0"


async def test_csv_of_a_corridor_is_its_services(api: TestClient) -> None:
    body = await get_json(api, "/v1/corridors/USA-MEX?amount=500")
    text = await (await api.get("/v1/corridors/US-MX.csv?amount=500")).text()
    rows = list(csv.DictReader(text.splitlines()))
    services = body["services"] + body["non_transparent"]
    assert [r["service_id"] for r in rows] == [s["service_id"] for s in services]
    assert [r["rank"] for r in rows] == ["" if s["rank"] is None else str(s["rank"])
                                         for s in services]
    assert list(rows[0]) == SERVICE_CSV_COLUMNS


async def test_csv_of_compare_has_the_json_services(api: TestClient) -> None:
    text = await (await api.get("/v1/compare.csv?from=ITA&to=CHN&amount=140")).text()
    rows = list(csv.DictReader(text.splitlines()))
    body = await get_json(api, "/v1/compare?from=ITA&to=CHN&amount=140")
    assert [r["provider"] for r in rows] == [s["provider"] for s in
                                             body["services"] + body["non_transparent"]]
    assert [float(r["total_cost_pct"]) for r in rows if r["total_cost_pct"]] == [
        s["total_cost_pct"] for s in body["services"]]


@pytest.mark.parametrize("path", ["/v1/compare?from=ITA&to=CHN&amount=140", "/v1/corridors",
                                  "/v1/corridors/ITA-CHN", "/v1/indicators",
                                  "/v1/openapi.json", "/"])
async def test_get_has_etag_and_answers_304(api: TestClient, path: str) -> None:
    first = await api.get(path)
    assert first.status == 200
    tag = first.headers["ETag"]
    assert first.headers["Cache-Control"].startswith("public")
    again = await api.get(path, headers={"If-None-Match": tag})
    assert again.status == 304 and await again.read() == b""
    other = await api.get(path, headers={"If-None-Match": '"something-else"'})
    assert other.status == 200


async def test_cors_is_open_for_get(api: TestClient) -> None:
    resp = await api.get("/v1/corridors?limit=1", headers={"Origin": "https://example.org"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    pre = await api.options("/v1/compare", headers={"Origin": "https://example.org",
                                                    "Access-Control-Request-Method": "GET"})
    assert pre.status == 204 and "GET" in pre.headers["Access-Control-Allow-Methods"]


# --- errors: one shape, naming the parameter ----------------------------------------------------


BAD = [
    ("/v1/compare?from=USA&to=MEX", 400, "amount"),
    ("/v1/compare?to=MEX&amount=200", 400, "from"),
    ("/v1/compare?from=U&to=MEX&amount=200", 400, "from"),
    ("/v1/compare?from=USAA&to=MEX&amount=200", 400, "from"),
    ("/v1/compare?from=QQQ&to=MEX&amount=200", 422, "from"),
    ("/v1/compare?from=USA&to=ZZ&amount=200", 422, "to"),
    ("/v1/compare?from=USA&to=USA&amount=200", 422, "to"),
    ("/v1/compare?from=USA&to=MEX&amount=-5", 422, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=0", 422, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=1e400", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=99999999999", 422, "amount"),
    # A well-formed number out of range is 422 however many digits it has (bug 2).
    ("/v1/compare?from=USA&to=MEX&amount=1000000001", 422, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=999999999999999999999", 422, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=" + "9" * 1500, 422, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=-0.5", 422, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=0.0000001", 200, None),
    # Exactly the OpenAPI pattern: no plus sign, spaces, exponent or bare point.
    ("/v1/compare?from=USA&to=MEX&amount=%2B200", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=%20200%20", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=200.", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=.5", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=2e2", 400, "amount"),
    ("/v1/compare?from=%20USA&to=MEX&amount=200", 400, "from"),
    ("/v1/compare?from=USA&to=MEX&amount=NaN", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=inf", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=two%20hundred", 400, "amount"),
    # Fullwidth and Arabic-Indic digits: ASCII only (200 is what every client sends).
    ("/v1/compare?from=USA&to=MEX&amount=%EF%BC%92%EF%BC%90%EF%BC%90", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=%D9%A2%D9%A0%D9%A0", 400, "amount"),
    ("/v1/corridors?limit=%EF%BC%95", 400, "limit"),
    ("/v1/corridors?above=%D9%A5", 400, "above"),
    ("/v1/compare?from=USA&to=MEX&amount=200&amount=300", 400, "amount"),
    ("/v1/compare?from=USA%27%3B%20DROP%20TABLE%20quotes%3B--&to=MEX&amount=200", 400, "from"),
    ("/v1/compare?from=USA&to=MEX&amount=200%20OR%201%3D1", 400, "amount"),
    ("/v1/compare?from=USA&to=MEX&amount=200&currency=XXXX", 400, "currency"),
    # Well formed, but no ISO 4217 code: 422, as an unknown country code is.
    ("/v1/compare?from=USA&to=MEX&amount=200&currency=ZZZ", 422, "currency"),
    ("/v1/compare?from=GBR&to=IND&amount=200&currency=EUR", 422, "currency"),
    ("/v1/compare?from=USA&to=MEX&amount=200&payin=gold", 400, "payin"),
    ("/v1/compare?from=USA&to=MEX&amount=200&verbose=1", 400, "verbose"),
    ("/v1/compare?from=USA&to=MEX&amount=200&period=2014Q9", 400, "period"),
    ("/v1/corridors?above=ten", 400, "above"),
    ("/v1/corridors?above=1000", 422, "above"),
    ("/v1/corridors?above=-100.5", 422, "above"),
    ("/v1/corridors?above=" + "1" * 400, 422, "above"),
    # The document declares above's pattern: decimal, no exponent (bug 11).
    ("/v1/corridors?above=1e2", 400, "above"),
    ("/v1/corridors?region=Mars", 400, "region"),
    ("/v1/corridors?firm_type=pirate", 400, "firm_type"),
    ("/v1/corridors?limit=0", 422, "limit"),
    ("/v1/corridors?limit=-5", 422, "limit"),
    ("/v1/corridors?limit=1000000", 422, "limit"),
    ("/v1/corridors?limit=" + "9" * 40, 422, "limit"),
    ("/v1/corridors?limit=abc", 400, "limit"),
    ("/v1/corridors?limit=%2B5", 400, "limit"),
    ("/v1/corridors?cursor=%25%25%25", 400, "cursor"),
    # Base64 of "foo", of a period, of an offset: not a corridor cursor (bug 3).
    ("/v1/corridors?cursor=Zm9v", 400, "cursor"),
    ("/v1/corridors?cursor=MjAxNFEy", 400, "cursor"),
    ("/v1/corridors?cursor=bzoxMA", 400, "cursor"),
    ("/v1/corridors?amount=300", 400, "amount"),
    # The path parameter is "pair" in the OpenAPI document, and in problems (bug 13).
    ("/v1/corridors/USAMEX", 400, "pair"),
    ("/v1/corridors/USAMEX.csv", 400, "pair"),
    ("/v1/corridors/USAMEX/history", 400, "pair"),
    ("/v1/corridors/USA-MEX.csv?amount=300", 400, "amount"),
    ("/v1/corridors/USA-QQQ", 422, "pair"),
    ("/v1/corridors/QQQ-MEX/history", 422, "pair"),
    # One country twice: 422, as /v1/compare with from = to (bug 7).
    ("/v1/corridors/USA-USA", 422, "pair"),
    ("/v1/corridors/US-usa.csv", 422, "pair"),
    ("/v1/corridors/USA-US/history", 422, "pair"),
    ("/v1/corridors/ITA-CHN/history?cursor=bm90LWEtcGVyaW9k", 400, "cursor"),
    ("/v1/corridors/ITA-CHN/history?cursor=Zm9v", 400, "cursor"),
    ("/v1/corridors/ITA-CHN/history?cursor=SVRBLUNITg", 400, "cursor"),  # "ITA-CHN"
    ("/v1/corridors/ITA-CHN/history?cursor=OTk5OVE0", 400, "cursor"),  # "9999Q4"
    ("/v1/corridors/ITA-CHN/history?cursor=OTk5OS0xMg", 400, "cursor"),  # "9999-12"
    ("/v1/indicators?period=yesterday", 400, "period"),
    ("/v1/indicators?period=%EF%BC%92%EF%BC%90%EF%BC%91%EF%BC%94Q2", 400, "period"),
    ("/v1/indicators?period=0000Q1", 400, "period"),
    ("/v1/indicators?period=%202014Q2", 400, "period"),
    ("/v1/indicators?period=2014Q2&sort=desc", 400, "sort"),
    ("/v1/postal/benchmark?cursor=QUJD", 400, "cursor"),
    ("/v1/postal/benchmark?cursor=Zm9v", 400, "cursor"),
    ("/v1/postal/benchmark?cursor=MjAxNFEy", 400, "cursor"),
]


@pytest.mark.parametrize(("url", "status", "parameter"), BAD,
                         ids=[f"{i}-{u[:60]}" for i, (u, _, _) in enumerate(BAD)])
async def test_bad_inputs_are_problems_naming_the_parameter(api: TestClient, url: str,
                                                            status: int,
                                                            parameter: str | None) -> None:
    resp = await api.get(url)
    assert resp.status == status, await resp.text()
    if parameter is None:  # a boundary that is fine
        return
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["status"] == status and body["parameter"] == parameter
    assert body["type"].startswith("https://sendcost.org/problems/")
    assert body["title"]
    assert parameter in body["detail"]


@pytest.mark.parametrize(("method", "url", "status"), [
    ("GET", "/v1/nothing-here", 404),
    ("GET", "/v1/compare?from=GHA&to=ISL&amount=200", 404),
    ("GET", "/v1/corridors/ITA-CHN?period=2030Q1", 404),
    ("GET", "/v1/indicators?period=2030Q1", 404),
    ("GET", "/v1/postal/benchmark?period=2030-01", 404),
    ("GET", "/v1/corridors/GHA-ISL/history", 404),
    ("DELETE", "/v1/compare", 405),
    ("POST", "/v1/corridors", 405),
    ("POST", "/v1/corridors.csv", 405),
    ("PUT", "/", 405),
    ("GET", "/static/nothing.css", 404),
    ("GET", "/static/page.html", 404),
    ("GET", "/v1/corridors/%0A%7B/history", 404),  # a newline no other route takes
    ("GET", "/v1/%0D%0Anothing", 404),
    ("GET", "/v1/corridors?from=" + "A" * 3000, 414),
])
async def test_error_paths_are_problem_json(api: TestClient, method: str, url: str,
                                            status: int) -> None:
    resp = await api.request(method, url)
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["status"] == status and body["detail"]
    if status == 405:
        assert "GET" in resp.headers["Allow"]
        assert resp.headers["Allow"] == "GET, HEAD"  # what the path takes, nothing more


async def test_the_stylesheet_is_served_with_an_etag(api: TestClient) -> None:
    resp = await api.get("/static/style.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    assert b"{" in await resp.read()
    again = await api.get("/static/style.css", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_unmatched_requests_are_counted_apart(api: TestClient) -> None:
    await api.get("/v1/nothing-here")
    text = await (await api.get("/metrics")).text()
    assert 'sendcost_http_requests_total{method="GET",route="unmatched",status="404"}' in text


async def test_request_line_over_aiohttps_default_is_414_problem_json(
        rpw_loaded, database_url: str) -> None:
    # Served as `sendcost serve` serves it: aiohttp's own parser limit (8190 bytes) would
    # answer this line with a plain-text 400 before the API's middleware saw it.
    url = "/v1/corridors?from=" + "A" * 9000
    server = TestServer(make_app(database_url))
    await server.start_server(**HANDLER_ARGS)  # as web.run_app(handler_args=...) does
    async with TestClient(server) as client:
        resp = await client.get(url)
        assert resp.status == 414 and resp.content_type == "application/problem+json"
        body = await resp.json(content_type=None)
        assert body["type"] == "https://sendcost.org/problems/query-too-long"
        assert body["detail"] == "the query string is longer than 2048 characters"
        # Past the raised parser limit, aiohttp still refuses the line itself.
        resp = await client.get("/v1/corridors?from=" + "A" * MAX_REQUEST_LINE)
        assert resp.status == 400


async def test_oversized_body_is_413(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    resp = await api.post("/v1/admin/collect", data=b"x" * 100_000,
                          headers={"Authorization": "Bearer s3cret"})
    assert resp.status == 413 and resp.content_type == "application/problem+json"


async def chunked(size: int, piece: int = 4096) -> AsyncIterator[bytes]:
    """A body of ``size`` bytes sent without Content-Length (Transfer-Encoding: chunked)."""
    sent = 0
    while sent < size:
        n = min(piece, size - sent)
        sent += n
        yield b"x" * n


@pytest.mark.parametrize(("size", "status"), [
    (70_000, 413), (MAX_BODY + 1, 413), (MAX_BODY, 400), (1000, 400)])
async def test_an_oversized_chunked_body_is_413_too(api: TestClient,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    size: int, status: int) -> None:
    # Without Content-Length the size is known only by reading: the pipeline reads at most
    # MAX_BODY + 1 bytes of it. Within the limit, the action goes on (400: no period).
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    resp = await api.post("/v1/admin/bulletin", data=chunked(size),
                          headers={"Authorization": "Bearer s3cret"})
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    if status == 413:
        assert body["type"] == "https://sendcost.org/problems/request-too-large"
        assert str(MAX_BODY) in body["detail"]
    else:
        assert body["parameter"] == "period"


async def raw_exchange(api: TestClient, request: bytes) -> bytes:
    """What the server answers to bytes sent as they are, on a socket of their own."""
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # the server closes after a 400
    finally:
        writer.close()


MALFORMED = [
    b"GET /v1/corridors HTTP/1.1 and more\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    # A valid request, then a bad method on the same connection (aiohttp logs this one at
    # ERROR with its traceback; only a connection's first bad method is quiet on its own).
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nG@T / HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED)
async def test_a_malformed_request_is_one_debug_line(api: TestClient,
                                                     caplog: pytest.LogCaptureFixture,
                                                     request_bytes: bytes) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER_LOGGER)
    answer = await raw_exchange(api, request_bytes)
    assert b" 400 Bad Request\r\n" in answer, answer[:300]
    server = [r for r in caplog.records if r.name == SERVER_LOGGER]
    assert server, "aiohttp logged nothing: the test no longer shows the filter working"
    for record in server:
        message = record.getMessage()
        assert record.levelno == logging.DEBUG and record.exc_info is None, message
        assert message.startswith("malformed request from 127.0.0.1 refused with 400: ")
        assert "\n" not in message and "Traceback" not in message
    # At the service's usual level, not a line at all.
    caplog.clear()
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    assert b" 400 Bad Request\r\n" in await raw_exchange(api, request_bytes)
    assert not [r for r in caplog.records if r.name == SERVER_LOGGER]


def test_real_server_errors_stay_errors() -> None:
    quiet = [f for f in logging.getLogger(SERVER_LOGGER).filters
             if isinstance(f, MalformedRequestFilter)]
    assert len(quiet) == 1  # installed once, however many apps
    try:
        raise RuntimeError("a bug in a handler")
    except RuntimeError as exc:
        record = logging.LogRecord(SERVER_LOGGER, logging.ERROR, __file__, 1,
                                   "Error handling request from %s", ("127.0.0.1",),
                                   (RuntimeError, exc, exc.__traceback__))
    assert quiet[0].filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Error handling request from 127.0.0.1"


# --- rate limit, admin, metrics, the contract -----------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(rpw_loaded, database_url: str) -> None:
    async with TestClient(TestServer(make_app(database_url, rate_limit=3))) as client:
        statuses = [(await client.get("/v1/openapi.json")).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        resp = await client.get("/v1/corridors")
        assert resp.status == 429 and resp.content_type == "application/problem+json"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert (await client.get("/healthz")).status == 200  # probes are not limited


async def test_admin_is_off_without_a_token(api: TestClient,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDCOST_ADMIN_TOKEN", raising=False)
    for path in ("/v1/admin/collect", "/v1/admin/bulletin"):
        resp = await api.post(path, headers={"Authorization": "Bearer anything"})
        assert resp.status == 404 and resp.content_type == "application/problem+json"
        assert "SENDCOST_ADMIN_TOKEN" in (await resp.json(content_type=None))["detail"]


async def test_admin_refuses_a_missing_or_wrong_token(api: TestClient,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        for path in ("/v1/admin/collect", "/v1/admin/bulletin"):
            resp = await api.post(path, headers=headers)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert resp.content_type == "application/problem+json"


async def test_admin_bulletin_without_period_or_data_is_a_problem(
        api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    resp = await api.post("/v1/admin/bulletin", headers=auth)
    assert resp.status == 400 and resp.content_type == "application/problem+json"
    assert (await resp.json(content_type=None))["parameter"] == "period"
    resp = await api.post("/v1/admin/bulletin?period=1999Q1", headers=auth)
    assert resp.status == 404 and resp.content_type == "application/problem+json"
    assert "1999Q1" in (await resp.json(content_type=None))["detail"]


async def test_admin_triggers_a_scheduled_collection(api: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    ran = asyncio.Event()

    async def collect() -> None:
        ran.set()

    scheduler = api.app[runtime.SCHEDULER]
    scheduler.add_job(collect, "interval", hours=24, id="collect:test-source",
                      replace_existing=True)
    # The source's jobs, as collector.schedule.add_jobs names them.
    api.app[COLLECTION_JOBS]["test-source"] = CollectionJobs("test-source",
                                                             "collect:test-source")
    try:
        resp = await api.post("/v1/admin/collect?source=test-source",
                              headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["jobs"] == ["collect:test-source"]
        assert msgspec.json.decode(await resp.read(), type=AdminCollect).jobs == [
            "collect:test-source"]
        await asyncio.wait_for(ran.wait(), 10)
        resp = await api.post("/v1/admin/collect?source=elsewhere",
                              headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 404
    finally:
        scheduler.remove_job("collect:test-source")
        del api.app[COLLECTION_JOBS]["test-source"]


async def test_metrics_count_requests_by_route(api: TestClient) -> None:
    await api.get("/v1/corridors/ITA-CHN")
    text = await (await api.get("/metrics")).text()
    assert 'sendcost_http_requests_total{method="GET",route="/v1/corridors/{pair}",' \
           'status="200"}' in text
    assert "sendcost_http_request_duration_seconds_bucket" in text


async def test_metrics_histogram_agrees_with_the_request_count(api: TestClient) -> None:
    for _ in range(3):
        await api.get("/v1/corridors/ITA-CHN/history")
    await api.get("/v1/corridors/XXX-CHN/history")
    families = {f.name: f for f in text_string_to_metric_families(
        await (await api.get("/metrics")).text())}
    route = "/v1/corridors/{pair}/history"
    answered = {s.labels["status"]: s.value for s in families["sendcost_http_requests"].samples
                if s.name == "sendcost_http_requests_total" and s.labels["route"] == route}
    assert answered["200"] >= 3 and answered["422"] >= 1
    samples = [s for s in families["sendcost_http_request_duration_seconds"].samples
               if s.labels["route"] == route]
    count = next(s.value for s in samples if s.name.endswith("_count"))
    buckets = [(s.labels["le"], s.value) for s in samples if s.name.endswith("_bucket")]
    assert count == sum(answered.values())
    assert buckets[-1] == ("+Inf", count)
    assert [b[0] for b in buckets[:3]] == ["0.001", "0.0025", "0.005"]
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert next(s.value for s in samples if s.name.endswith("_sum")) > 0


def valid_as(body: Any, path: str, status: str) -> None:
    """``body`` has the JSON schema the OpenAPI document gives ``path``'s ``status``."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    doc = document()
    registry = Registry().with_resource("urn:sendcost", Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}))
    name = doc["paths"][path]["get"]["responses"][status]["content"]["application/json"][
        "schema"]["$ref"].split("/")[-1]
    Draft202012Validator({"$ref": f"urn:sendcost#/components/schemas/{name}"},
                         registry=registry).validate(body)


@pytest.fixture
async def own_api(fresh_database: str) -> AsyncIterator[TestClient]:
    """The app on a database of its own (empty), for what changes or breaks the database."""
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        yield client


def collection_gauges(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(text)
            if f.name.startswith("sendcost_collection_last_run")}


async def test_healthz_and_metrics_show_each_sources_latest_run(
        own_api: TestClient, fresh_database: str, server_url: str) -> None:
    store = own_api.app[runtime.STORE]
    body = await get_json(own_api, "/healthz")
    assert body == {"status": "ok", "reasons": [], "stale_tariffs": [],
                    "database": {"reachable": True, "embedded": False}, "collecting": True,
                    "collections": []}
    run = await store.start_run("metrics-test")

    async def expected_run() -> dict[str, Any]:
        row = await store.pool.fetchrow("SELECT * FROM collection_runs WHERE id = $1", run)
        return {"source": "metrics-test", "run_id": run, "status": row["status"],
                "started_at": row["started_at"].isoformat(),
                "finished_at": row["finished_at"] and row["finished_at"].isoformat(),
                "quotes_stored": row["quotes_stored"],
                "quotes_quarantined": row["quotes_quarantined"]}

    resp = await own_api.get("/healthz")
    assert resp.headers["Cache-Control"] == "no-store" and "ETag" not in resp.headers
    assert await resp.json() == {"status": "ok", "reasons": [], "stale_tariffs": [],
                                 "database": {"reachable": True, "embedded": False},
                                 "collecting": True, "collections": [await expected_run()]}
    valid_as(await resp.json(), "/healthz", "200")
    started = (await store.pool.fetchval("SELECT started_at FROM collection_runs WHERE id = $1",
                                         run)).timestamp()
    gauges = collection_gauges(await (await own_api.get("/metrics")).text())
    assert gauges["sendcost_collection_last_run_started_timestamp_seconds"] == [
        ({"source": "metrics-test", "status": "running"}, started)]
    await store.finish_run(run, status="failed", requests=2, quotes_stored=3,
                           quotes_quarantined=1, errors={})
    assert await get_json(own_api, "/healthz") == {
        "status": "ok", "reasons": [], "stale_tariffs": [],
        "database": {"reachable": True, "embedded": False},
        "collecting": True, "collections": [await expected_run()]}
    resp = await own_api.get("/metrics")
    assert resp.headers["Cache-Control"] == "no-store" and "ETag" not in resp.headers
    gauges = collection_gauges(await resp.text())
    # The run is no longer "running": that series is gone, not left beside "failed".
    assert gauges == {
        "sendcost_collection_last_run_started_timestamp_seconds": [
            ({"source": "metrics-test", "status": "failed"}, started)],
        "sendcost_collection_last_run_quotes_stored": [({"source": "metrics-test"}, 3.0)],
        "sendcost_collection_last_run_quotes_quarantined": [({"source": "metrics-test"}, 1.0)],
    }


async def test_metrics_answer_without_the_database(own_api: TestClient, fresh_database: str,
                                                   server_url: str) -> None:
    store = own_api.app[runtime.STORE]
    await store.start_run("metrics-test")
    assert collection_gauges(await (await own_api.get("/metrics")).text())[
        "sendcost_collection_last_run_quotes_stored"]
    admin = await asyncpg.connect(server_url)
    try:  # the database goes away under the running app
        name = urlsplit(fresh_database).path.lstrip("/")
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    resp = await own_api.get("/metrics")
    assert resp.status == 200, await resp.text()
    text = await resp.text()
    # The request metrics are there (they show the outage); the collection gauges are not.
    assert 'sendcost_http_requests_total{method="GET",route="/metrics",status="200"}' in text
    assert all(samples == [] for samples in collection_gauges(text).values())
    resp = await own_api.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body.pop("reasons")[0].startswith("database unreachable (")
    assert body == {"status": "degraded", "database": {"reachable": False, "embedded": False},
                    "stale_tariffs": [], "collecting": True, "collections": []}
    valid_as(await resp.json(), "/healthz", "503")


@pytest.mark.parametrize(("path", "cache_control", "etag"), [
    ("/v1/corridors/ITA-CHN", "public, max-age=60", True),
    ("/v1/corridors.csv?from=ITA", "public, max-age=60", True),
    ("/v1/openapi.json", "public, max-age=60", True),
    ("/", "public, max-age=60", True),
    ("/static/style.css", "public, max-age=3600", True),
    ("/v1/bulletins", "no-cache", True),
    ("/healthz", "no-store", False),
    ("/metrics", "no-store", False),
    ("/v1/nothing-here", "no-store", False),
    # The page's own errors are errors too (bug 1).
    ("/?from=USA&to=MEX&amount=abc", "no-store", False),
    ("/?from=USA&to=MEX&amount=0", "no-store", False),
    ("/?from=USA&to=USA&amount=200", "no-store", False),
    ("/?from=USA&to=QQQ&amount=200", "no-store", False),
    ("/?from=USA&to=MEX&amount=200", "public, max-age=60", True),
])
async def test_caching_is_what_the_doc_says(api: TestClient, path: str,
                                            cache_control: str, etag: bool) -> None:
    # docs/api.md, "Caching": one line per kind of answer.
    resp = await api.get(path)
    assert resp.headers["Cache-Control"] == cache_control
    assert ("ETag" in resp.headers) == etag


async def test_openapi_describes_exactly_the_routes(api: TestClient) -> None:
    doc = await get_json(api, "/v1/openapi.json")
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item}
    routed = set()
    for route in api.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method in ("HEAD", "*") or path is None or path.startswith("/static"):
            continue
        routed.add((path, route.method))
    assert documented == routed
    # The query parameters each operation documents are exactly those its handler accepts
    # (a handler refuses any other with 400): a parameter cannot drift out of the contract.
    accepted = {
        "/v1/compare": COMPARE_PARAMS, "/v1/corridors": CORRIDORS_PARAMS,
        "/v1/corridors/{pair}": CORRIDOR_PARAMS,
        "/v1/corridors/{pair}/history": HISTORY_PARAMS,
        "/v1/indicators": INDICATORS_PARAMS, "/v1/kpis": KPIS_PARAMS,
        "/v1/postal/benchmark": POSTAL_PARAMS, "/": PAGE_PARAMS,
        "/v1/postal/summary": POSTAL_SUMMARY_PARAMS,
        "/v1/admin/collect": ADMIN_COLLECT_PARAMS,
        "/v1/admin/bulletin": ADMIN_BULLETIN_PARAMS,
        "/v1/admin/webhooks/{id}/deliveries": DELIVERIES_PARAMS,
    }
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
            # Routes not listed read no query parameter (the probes, the document, bulletins).
            assert query == accepted.get(path.removesuffix(".csv"), frozenset()), (method, path)
    from jsonschema import Draft202012Validator

    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


async def test_every_json_response_states_period_method_sources_licence(api: TestClient
                                                                       ) -> None:
    for path in ("/v1/compare?from=ITA&to=CHN&amount=140", "/v1/corridors",
                 "/v1/corridors/ITA-CHN", "/v1/corridors/ITA-CHN/history", "/v1/indicators",
                 "/v1/postal/benchmark"):
        body = await get_json(api, path)
        if path == "/v1/corridors":
            # Its rows are from several periods: each row says its own, and the answer names
            # none of them as its period, but counts the rows of each.
            assert body["period"] is None and len(body["periods"]) > 1
            assert sum(body["periods"].values()) == body["count"]
            assert all(c["period"] in body["periods"] for c in body["corridors"])
        else:
            assert body["period"]
        assert body["methodology_version"] == METHODOLOGY_VERSION
        assert body["sources"] and body["licence"] == "CC BY 4.0"


def test_a_fee_paid_on_top_never_passes_for_a_better_deal() -> None:
    from publish.data import _paid, _rank

    def entry(provider: str, received: float, fee: float) -> dict[str, Any]:
        return {"provider": provider, "service_id": provider, "amount_received": received,
                "total_cost_pct": 0.0, "fee": fee}

    on_top = {"send_amount": 100.0, "fee": 10.0, "fee_deducted": False}
    deducted = {"send_amount": 100.0, "fee": 5.0, "fee_deducted": True}
    # A: 1000 arrive, but the sender pays 110; B: 950 arrive for 100 paid.
    a, b = entry("A", 1000.0, 10.0), entry("B", 950.0, 5.0)
    ranked, by = _rank([(a, _paid(on_top)), (b, _paid(deducted))])
    assert by == "amount_received_per_amount_paid"
    assert [e["provider"] for e in ranked] == ["B", "A"]
    assert [e["rank"] for e in ranked] == [1, 2]
    # When a source does not say how its fee is charged, rank by total cost instead.
    unknown = {"send_amount": 100.0, "fee": 5.0, "fee_deducted": None}
    a["total_cost_pct"], b["total_cost_pct"] = 3.0, 4.0
    ranked, by = _rank([(a, _paid(on_top)), (b, _paid(unknown))])
    assert by == "total_cost_pct" and [e["provider"] for e in ranked] == ["A", "B"]


# --- the page's answers -------------------------------------------------------------------


@pytest.mark.parametrize(("url", "status", "says"), [
    # The page's own sentences (tests/test_page_i18n.py has them in every language).
    ("/?from=USA&to=MEX&amount=abc", 400, "We could not read the amount “abc”"),
    ("/?from=USA&to=MEX&amount=0", 422, "The amount must be more than zero."),
    ("/?from=USA&to=MEX&amount=999999999999999999999", 422, "at most 1,000,000,000"),
    ("/?from=USA&to=USA&amount=200", 422, "Choose two different countries."),
])
async def test_page_errors_are_shown_and_never_cached(api: TestClient, url: str,
                                                      status: int, says: str) -> None:
    resp = await api.get(url)
    assert resp.status == status and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store" and "ETag" not in resp.headers
    text = await resp.text()
    assert 'role="alert"' in text and says in text
    # A client holding any ETag gets the error again, never a 304.
    again = await api.get(url, headers={"If-None-Match": "*"})
    assert again.status == status


async def test_page_names_countries_when_no_price_is_known(api: TestClient) -> None:
    resp = await api.get("/?from=USA&to=FRA&amount=200")
    assert resp.status == 200
    text = await resp.text()
    assert "No prices are known for sending from United States to France yet." in text
    assert "from USA to FRA" not in text


async def test_page_forgives_spaces_typed_around_values(api: TestClient) -> None:
    # People type into the form; the API itself takes values exactly as documented.
    resp = await api.get("/?from=%20USA&to=MEX%20&amount=%20200%20")
    assert resp.status == 200 and 'id="ranked"' in await resp.text()


# --- Accept negotiation ------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "expected"), [
    ("text/csv", "text/csv"),
    ("text/csv;q=0", "application/json"),  # not acceptable: the JSON default
    ("text/csv, application/json;q=0.5", "text/csv"),
    ("application/json, text/csv;q=0.5", "application/json"),
    ("text/csv;q=0.8, application/json;q=0.9", "application/json"),
    ("text/csv, application/json", "application/json"),  # a tie: JSON
    ("text/*", "text/csv"),
    ("text/*;q=0.5, application/json;q=0.4", "text/csv"),
    ("text/*, text/csv;q=0", "application/json"),  # the most specific range counts
    ("*/*", "application/json"),
    ("*/*;q=0.1, text/csv", "text/csv"),
    ("application/json;q=0, */*", "text/csv"),
    ("application/*;q=0.2, text/csv;q=0.3", "text/csv"),
    ("text/html", "application/json"),  # neither acceptable: the JSON default
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
    ("TEXT/CSV; charset=utf-8", "text/csv"),
    ("text/csv;q=high", "application/json"),  # a malformed q: the range is ignored
    ("text/csv;q=1.5", "application/json"),
    ("", "application/json"),
])
async def test_accept_is_negotiated_by_q_values(api: TestClient, accept: str,
                                                expected: str) -> None:
    for url in ("/v1/corridors?from=ITA", "/v1/compare?from=ITA&to=CHN&amount=140"):
        resp = await api.get(url, headers={"Accept": accept})
        assert resp.status == 200 and resp.content_type == expected, (url, accept)
        assert resp.headers["Vary"] == "Accept"
        assert ("Sendcost-Period" in resp.headers) == (expected == "text/csv")


async def test_indicators_csv_names_the_cheapest_as_every_endpoint_does(
        api: TestClient) -> None:
    text = await (await api.get("/v1/indicators.csv?period=2014Q2")).text()
    header = text.splitlines()[0].split(",")
    assert {"cheapest_provider", "cheapest_total_cost_pct"} <= set(header)
    assert not {"cheapest_firm", "cheapest_total_cost"} & set(header)


# --- admin bulletin ---------------------------------------------------------------------------


async def test_admin_bulletin_says_where_it_is_served_not_the_servers_folder(
        rpw_loaded, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    async with TestClient(TestServer(make_app(database_url, data_dir=tmp_path))) as client:
        resp = await client.post("/v1/admin/bulletin?period=2014Q2",
                                 headers={"Authorization": "Bearer s3cret"})
        text = await resp.text()
        assert resp.status == 202, text
        assert str(tmp_path) not in text
        body = await resp.json()
        assert msgspec.json.decode(await resp.read(), type=AdminBulletin).period == "2014Q2"
        assert body == {"status": "published", "period": "2014Q2",
                        "url": "/v1/bulletins/2014Q2/", "folder": "bulletins/2014Q2"}
        assert (tmp_path / body["folder"] / "index.html").is_file()
        served = await client.get(body["url"])
        assert served.status == 200 and served.content_type == "text/html"


# --- the contract's statuses (last: it also checks what the tests above made the app answer)


def documented_path(route: str) -> str:
    """The OpenAPI path of a route's pattern: ``{path:.*}`` → ``{path}``."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route)


def undocumented_statuses(app: Any, doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Each (method, route, status) the app has answered that the document does not list
    for that operation (requests no route took are counted as "unmatched" and left out)."""
    missing = []
    for method, route, status in app[TELEMETRY].requests:
        if route == "unmatched" or route.startswith("/static"):  # the stylesheet: undocumented
            continue
        operation = doc["paths"][documented_path(route)][
            "get" if method == "HEAD" else method.lower()]
        if str(status) not in operation["responses"]:
            missing.append((method, route, status))
    return sorted(missing)


def concrete(path: str) -> str:
    return (path.replace("{pair}", "ITA-CHN").replace("{period}", "2014Q2")
            .replace("{path}", "index.html").replace("{country}", "MEX")
            .replace("{provider}", "western-union").replace("{id}", "1"))


async def test_openapi_declares_every_status_the_server_gives(api: TestClient) -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            # The pipeline's statuses, on every route (publish.middleware).
            assert {"405", "413", "414", "500"} <= set(responses), (path, method)
            assert ("429" in responses) == (path not in UNLIMITED), (path, method)
            for status in ("429", "503"):  # the pipeline's (/healthz's 503 is its own)
                if "application/problem+json" in responses.get(status, {}).get("content", {}):
                    assert "Retry-After" in responses[status]["headers"], (path, status)
            url = concrete(path)
            assert (await api.patch(url)).status == 405
            long = await api.request(method.upper(), f"{url}?x={'a' * MAX_QUERY}")
            assert long.status == 414, (path, method)
            big = await api.request(method.upper(), url, data=b"x" * (MAX_BODY + 1))
            assert big.status == 413, (path, method)
            await api.request(method.upper(), url)
            if method == "get":
                first = await api.get(url)
                if "ETag" in first.headers:
                    await api.get(url, headers={"If-None-Match": first.headers["ETag"]})
    # Everything this app has answered, in this test and in the tests before it.
    assert undocumented_statuses(api.app, doc) == []


async def test_rate_limited_and_unavailable_statuses_are_documented(
        rpw_loaded, database_url: str) -> None:
    doc = document()
    async with TestClient(TestServer(make_app(database_url, rate_limit=1))) as client:
        for path, item in doc["paths"].items():
            for method in item:
                for _ in range(2):
                    await client.request(method.upper(), concrete(path))
        limited = {(m, documented_path(r)) for m, r, s in client.app[TELEMETRY].requests
                   if s == 429}
        assert len(limited) >= len(doc["paths"]) - len(UNLIMITED) - 1
        assert undocumented_statuses(client.app, doc) == []
