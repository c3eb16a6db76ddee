"""The API's typed contract (publish/contract.py): one model gives the JSON, the CSV twin's
columns and the OpenAPI schema. Whole live bodies are compared in tests/test_api*.py; these
check the derivations themselves, without a database."""

from __future__ import annotations

import json
from typing import ClassVar

import msgspec
import pytest

from metrics.kpis import SCORECARD_KEYS
from publish import contract
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
    for name, schema in contract.schemas().items():
        assert schemas[name] == schema, name
    for model in contract.RESPONSES:
        fields = msgspec.structs.fields(model)
        schema = schemas[model.__name__]
        assert list(schema["properties"]) == [f.encode_name for f in fields]
        assert schema["additionalProperties"] is False
        # warning and includes are optional; every other key is always there
        assert set(schema["required"]) == {f.encode_name for f in fields} - {"warning",
                                                                              "includes"}


def test_the_scorecard_model_is_the_metrics_scorecard() -> None:
    assert tuple(f.name for f in msgspec.structs.fields(Scorecard)) == SCORECARD_KEYS
    corridor = [f.encode_name for f in msgspec.structs.fields(contract.KpisCorridor)]
    assert corridor == ["from", "to", "source", "destination", *SCORECARD_KEYS]
