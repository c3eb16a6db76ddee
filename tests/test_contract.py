"""The API's typed contract (publish/contract.py, publish/contract_ops.py): one model gives
the JSON, the CSV twin's columns and the OpenAPI schema. Whole live bodies are compared in
tests/test_api*.py, and decoded strictly as their models there and in the tests of each
handler (admin, webhooks, health, bulletins, archive, postal summary); these check the
derivations themselves, without a database."""

from __future__ import annotations

import json
from typing import ClassVar

import msgspec
import pytest

from metrics import indicators as metrics_indicators
from metrics import kpis as metrics_kpis
from metrics.kpis import SCORECARD_KEYS
from publish import contract, contract_ops
from publish.contract import (
    Cheapest,
    CorridorItem,
    Country,
    Model,
    Region,
    Scorecard,
    check_csv_columns,
    encode,
    to_csv,
)
from publish.openapi import document
from publish.problems import problem_body


def _item(**changes: object) -> CorridorItem:
    fields: dict[str, object] = dict(
        from_=Country(alpha2="IT", alpha3="ITA", name="Italy"),
        to=Country(alpha2="CN", alpha3="CHN", name="China"), period="2014Q2", amount_usd=200,
        first_collected=None, last_collected=None, data_kinds=["survey", "estimate"],
        average=8.5, smart=6.25, median=None, services=12, transparent_services=11,
        above_5=True, above_10=False, too_few_services=False, no_transparent_service=False,
        points_above_3=5.5, points_above_5=3.5,
        cheapest=Cheapest(provider="Post", firm_type="post_office", product=None,
                          total_cost_pct=2.5),
        cheapest_leaves_out=["estimate"], caveats={"estimate": 2, "negative_margin": 1},
        receiving_region=Region(code="EAP", name=None),
        sources=["rpw"])
    fields.update(changes)
    return CorridorItem(**fields)  # type: ignore[arg-type]


def test_the_json_body_follows_the_models_fields_and_names() -> None:
    body = json.loads(encode(_item()))
    assert list(body) == [f.encode_name for f in msgspec.structs.fields(CorridorItem)]
    assert body["from"] == {"alpha2": "IT", "alpha3": "ITA", "name": "Italy"}
    assert encode(_item()).startswith(b'{"from":{"alpha2":"IT"')  # no spaces, as before


def test_the_envelope_says_emulated_only_when_asked() -> None:
    base = {"period": "2014Q2", "methodology_version": "m", "sources": [], "licence": "l",
            "amount_usd": 200, "count": 0, "next_cursor": None, "caveats_explained": {},
            "corridors": []}
    plain = json.loads(encode(contract.Corridors(periods={}, **base)))  # type: ignore[arg-type]
    assert "warning" not in plain and "includes" not in plain
    shown = json.loads(encode(contract.Corridors(
        periods={}, warning="w", includes=["emulated"], **base)))  # type: ignore[arg-type]
    assert list(shown)[:3] == ["warning", "includes", "period"]


def test_the_csv_twin_reads_its_columns_from_the_model() -> None:
    lines = to_csv(CorridorItem, [_item(), _item(cheapest=None, receiving_region=None,
                                             above_5=None)]).decode().splitlines()
    assert lines[0].split(",") == list(CorridorItem.csv_columns)
    first = dict(zip(CorridorItem.csv_columns, lines[1].split(","), strict=True))
    assert (first["from"], first["to"], first["receiving_region"]) == ("ITA", "CHN", "EAP")
    assert (first["cheapest_provider"], first["cheapest_total_cost_pct"]) == ("Post", "2.5")
    assert (first["data_kinds"], first["above_5"], first["above_10"], first["median"]) == (
        "survey estimate", "true", "false", "")
    assert first["caveats"] == "estimate:2 negative_margin:1"
    second = dict(zip(CorridorItem.csv_columns, lines[2].split(","), strict=True))
    assert (second["cheapest_provider"], second["receiving_region"], second["above_5"]) == (
        "", "", "")


def test_a_csv_column_that_names_no_field_is_refused() -> None:
    class Broken(Model, kw_only=True):
        provider: str
        cheapest: Cheapest | None
        csv_columns: ClassVar[tuple[str, ...]] = ("provider", "cheapest_colour")

    with pytest.raises(TypeError, match="cheapest_colour"):
        check_csv_columns(Broken)

    class Whole(Model, kw_only=True):
        cheapest: Cheapest | None
        csv_columns: ClassVar[tuple[str, ...]] = ("cheapest",)  # no csv_key to stand for it

    with pytest.raises(TypeError, match="csv_key"):
        check_csv_columns(Whole)


def test_the_openapi_schemas_of_the_answers_are_the_models() -> None:
    schemas = document()["components"]["schemas"]
    for name, schema in {**contract.schemas(), **contract_ops.schemas()}.items():
        assert schemas[name] == schema, name
    for model in (*contract.RESPONSES, *contract_ops.RESPONSES):
        fields = msgspec.structs.fields(model)
        schema = schemas[model.__name__]
        assert list(schema["properties"]) == [f.encode_name for f in fields]
        assert schema["additionalProperties"] is False
        # a field that may be left out (UNSET) is optional; every other key is always there
        assert set(schema["required"]) == {f.encode_name for f in fields if f.required}


def _answer_schemas() -> dict[tuple[str, str, str], str]:
    """(path, method, status) → the schema name of each JSON or problem answer the
    document describes."""
    out = {}
    for path, item in document()["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                for media, content in response.get("content", {}).items():
                    if "json" in media:
                        out[(path, method, status)] = content["schema"]["$ref"].rsplit(
                            "/", 1)[1]
    return out


def test_every_json_answer_of_the_document_is_a_model() -> None:
    models = {m.__name__ for m in (*contract.RESPONSES, *contract_ops.RESPONSES)}
    answers = _answer_schemas()
    assert set(answers.values()) - models == {"PostalSummary"}
    assert document()["components"]["schemas"]["PostalSummary"] == {"oneOf": [
        {"$ref": "#/components/schemas/PostalSummaryByCorridor"},
        {"$ref": "#/components/schemas/PostalSummaryByOperator"}]}
    expected = {
        ("/healthz", "get", "200"): "Health", ("/healthz", "get", "503"): "Health",
        ("/v1/admin/collect", "post", "202"): "AdminCollect",
        ("/v1/admin/collect", "post", "409"): "Problem",
        ("/v1/admin/bulletin", "post", "202"): "AdminBulletin",
        ("/v1/admin/webhooks", "post", "201"): "WebhookCreated",
        ("/v1/admin/webhooks", "get", "200"): "Webhooks",
        ("/v1/admin/webhooks/{id}/deliveries", "get", "200"): "WebhookDeliveries",
        ("/v1/admin/webhooks/{id}/redeliver", "post", "202"): "WebhookRedelivered",
        ("/v1/bulletins", "get", "200"): "Bulletins",
        ("/v1/archive/{id}", "get", "200"): "ArchivedResponse",
        ("/v1/openapi.json", "get", "200"): "OpenAPI",
        ("/v1/indicators", "get", "200"): "Indicators", ("/v1/kpis", "get", "200"): "Kpis",
    }
    assert {k: answers[k] for k in expected} == expected
    # every error of every operation is a problem, but /healthz's 503 (degraded: its body)
    assert {v for (path, _, status), v in answers.items()
            if int(status) >= 400 and path != "/healthz"} == {"Problem"}


def test_a_problem_says_only_what_it_was_given() -> None:
    body = encode(problem_body(400, "amount is not a number", instance="/v1/compare?amount=x",
                               parameter="amount"))
    assert json.loads(body) == {
        "type": "https://sendcost.org/problems/bad-parameter", "title": "Bad Request",
        "status": 400, "detail": "amount is not a number",
        "instance": "/v1/compare?amount=x", "parameter": "amount"}
    assert body.startswith(b'{"type":"https://sendcost.org/problems/bad-parameter",')
    conflict = json.loads(encode(problem_body(409, "busy", jobs=["collect:a"])))
    assert list(conflict) == ["type", "title", "status", "detail", "jobs"]


def test_the_indicators_and_kpis_csv_twins_keep_the_metrics_tables_columns() -> None:
    renamed = {"cheapest_firm": "cheapest_provider",
               "cheapest_total_cost": "cheapest_total_cost_pct"}
    twin = (*contract.IndicatorsCorridor.csv_answer_columns,
            *contract.IndicatorsCorridor.csv_columns)
    assert twin == tuple(renamed.get(c, c) for c in metrics_indicators.TABLE_COLUMNS)
    assert (*contract.KpisCorridor.csv_answer_columns,
            *contract.KpisCorridor.csv_columns) == metrics_kpis.TABLE_COLUMNS


def test_a_csv_twin_starts_with_its_answers_columns() -> None:
    item = contract.IndicatorsCorridor(
        from_=Country(alpha2="IT", alpha3="ITA", name="Italy"),
        to=Country(alpha2="CN", alpha3="CHN", name="China"), source="ITA", destination="CHN",
        average=8.5, services=12, transparent_services=11, smart=6.25, above_5=True,
        above_10=False, too_few_services=False, no_transparent_service=False,
        cheapest=Cheapest(provider="Post", firm_type="post_office", product=None,
                          total_cost_pct=2.5), cheapest_left_out=1)
    answer = msgspec.structs.replace(_indicators(), corridors=[item])
    lines = to_csv(contract.IndicatorsCorridor, answer.corridors, answer).decode().splitlines()
    assert lines[1] == "2014Q2,200,ITA,CHN,8.5,12,11,6.25,true,false,false,false,Post," \
                       "post_office,,2.5,1"
    with pytest.raises(TypeError, match="period, amount_usd"):
        to_csv(contract.IndicatorsCorridor, answer.corridors)


def _indicators() -> contract.Indicators:
    """An Indicators answer with nothing in it but its period and price point."""
    return contract.Indicators(
        period="2014Q2", methodology_version="m", sources=[], licence="l", amount_usd=200,
        services=contract.ServiceCount(total=0, transparent=0), global_average=None,
        weighted_average=None, smart_average=None, g20_sending_average=None,
        g8_sending_average=None, g20_receiving_average=None, by_firm_type={},
        by_receiving_region={}, share_corridors_above_5=None, share_corridors_above_10=None,
        share_services_below_3=None, share_denominators={}, corridors=[],
        cheapest_leaves_out=[], non_transparent=[], weighted_average_coverage=None,
        by_payment_instrument={}, by_access_point={}, by_pay_out={})


def test_the_scorecard_model_is_the_metrics_scorecard() -> None:
    assert tuple(f.name for f in msgspec.structs.fields(Scorecard)) == SCORECARD_KEYS
    corridor = [f.encode_name for f in msgspec.structs.fields(contract.KpisCorridor)]
    assert corridor == ["from", "to", "source", "destination", *SCORECARD_KEYS]
