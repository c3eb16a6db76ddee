"""A property-based run against the OpenAPI document: for every GET operation, queries drawn
from its parameters (valid, boundary and junk values, unknown parameters) never give a 5xx,
every status is one the operation lists, every JSON or problem response validates against
the schema the document gives it, and a value the document's schema allows (its pattern,
enum or integer type) is never refused as malformed (400) — out of range is 422."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from publish.openapi import document

DOC = document()
REGISTRY = Registry().with_resource("urn:sendcost", Resource.from_contents(
    {"$schema": "https://json-schema.org/draft/2020-12/schema", **DOC}))

JUNK = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "NaN", "inf", "1e309", "200.5", "'; DROP TABLE quotes;--",
                     "<script>", "%00", "US", "USA", "MX", "MEX", "GB", "IND", "ITA", "CHN",
                     "2014Q2", "2011_3Q", "2026-11", "200", "500", "cash", "LAC", "mto"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def value_for(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if "enum" in schema:
        return st.one_of(st.sampled_from([str(v) for v in schema["enum"]]), JUNK)
    if schema.get("type") == "integer":
        return st.one_of(st.integers(-5, 1000).map(str), st.integers().map(str), JUNK)
    if "pattern" in schema:
        return st.one_of(st.from_regex(schema["pattern"], fullmatch=True), JUNK)
    return JUNK


def allowed(schema: dict[str, Any], value: str) -> bool | None:
    """Whether the document's schema allows ``value`` (None: it does not say precisely)."""
    if "enum" in schema:
        return value in [str(v) for v in schema["enum"]]
    if schema.get("type") == "integer":
        return re.fullmatch(r"-?[0-9]+", value) is not None
    if "pattern" in schema:
        return re.search(schema["pattern"], value) is not None
    return None


def operation(path: str) -> st.SearchStrategy[tuple[str, dict[str, str]]]:
    params = DOC["paths"][path]["get"]["parameters"]
    query = st.fixed_dictionaries({}, optional={
        p["name"]: value_for(p["schema"]) for p in params if p["in"] == "query"})
    extra = st.dictionaries(st.sampled_from(["x", "sort", "page", "format"]), JUNK,
                            max_size=1)
    pair = st.one_of(st.sampled_from(["ITA-CHN", "US-MX", "USA-MEX", "GHA-ISL", "ZZ-QQ"]),
                     st.text(st.characters(codec="ascii", exclude_characters="/?#%"),
                             min_size=1, max_size=9))

    def build(q: dict[str, str], x: dict[str, str], p: str) -> tuple[str, dict[str, str]]:
        concrete = path.replace("{pair}", urllib.parse.quote(p, safe=""))
        given = {**q, **x, **({"pair": p} if "{pair}" in path else {})}
        return concrete + "?" + urllib.parse.urlencode({**q, **x}), given

    return st.builds(build, query, st.one_of(st.just({}), extra), pair)


#: Every GET answering JSON, /healthz and this document included (their schemas are their
#: models', publish.contract_ops, as every other answer's).
JSON_PATHS = [p for p, item in DOC["paths"].items() if "get" in item
              and "application/json" in item["get"]["responses"].get("200", {}).get(
                  "content", {})]


def check(base: str, path: str, url: str, given: dict[str, str]) -> None:
    try:
        with urllib.request.urlopen(base + url, timeout=30) as resp:
            status, ctype, body = resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, body = err.code, err.headers["Content-Type"], err.read()
    assert status < 500, (url, body[:300])
    responses = DOC["paths"][path]["get"]["responses"]
    assert str(status) in responses, (url, status)
    if ctype.startswith("application/problem+json"):
        schema = {"$ref": "urn:sendcost#/components/schemas/Problem"}
    elif ctype.startswith("application/json"):
        name = responses["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        schema = {"$ref": f"urn:sendcost#/components/schemas/{name}"}
    else:
        raise AssertionError(f"{url}: unexpected content type {ctype}")
    Draft202012Validator(schema, registry=REGISTRY).validate(json.loads(body))
    if status == 400:
        # Refused as malformed: then the document's schema does not allow the value either.
        name = json.loads(body).get("parameter")
        declared = {p["name"]: p["schema"] for p in DOC["paths"][path]["get"]["parameters"]}
        if name in given and name in declared:
            assert allowed(declared[name], given[name]) is not True, (url, body[:300])


@pytest.mark.parametrize("path", JSON_PATHS)
def test_no_5xx_and_schema_valid_responses(live_api: str, path: str) -> None:
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(case=operation(path))
    def run(case: tuple[str, dict[str, str]]) -> None:
        check(live_api, path, *case)

    run()
