"""A property-based run against the OpenAPI document: for every GET operation, queries drawn
from its parameters (valid, boundary and junk values, unknown parameters) never give a 5xx,
and every JSON or problem response validates against the schema the document gives it."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from api_support import live_api, rpw_loaded  # noqa: F401  (fixtures)
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
        return st.one_of(st.integers(-5, 1000).map(str), JUNK)
    if schema.get("type") == "number":
        return st.one_of(st.floats(-200, 200, allow_nan=False).map(lambda f: f"{f:.2f}"), JUNK)
    return JUNK


def operation(path: str) -> st.SearchStrategy[str]:
    params = DOC["paths"][path]["get"]["parameters"]
    query = st.fixed_dictionaries({}, optional={
        p["name"]: value_for(p["schema"]) for p in params if p["in"] == "query"})
    extra = st.dictionaries(st.sampled_from(["x", "sort", "page", "format"]), JUNK,
                            max_size=1)
    pair = st.one_of(st.sampled_from(["ITA-CHN", "US-MX", "USA-MEX", "GHA-ISL", "ZZ-QQ"]),
                     st.text(st.characters(codec="ascii", exclude_characters="/?#%"),
                             min_size=1, max_size=9))

    def build(q: dict[str, str], x: dict[str, str], p: str) -> str:
        concrete = path.replace("{pair}", urllib.parse.quote(p, safe=""))
        return concrete + "?" + urllib.parse.urlencode({**q, **x})

    return st.builds(build, query, st.one_of(st.just({}), extra), pair)


JSON_PATHS = [p for p, item in DOC["paths"].items() if "get" in item
              and "application/json" in item["get"]["responses"]["200"]["content"]
              and p not in ("/healthz", "/v1/openapi.json")]


def check(base: str, path: str, url: str) -> None:
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


@pytest.mark.parametrize("path", JSON_PATHS)
def test_no_5xx_and_schema_valid_responses(live_api: str, path: str) -> None:  # noqa: F811
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(url=operation(path))
    def run(url: str) -> None:
        check(live_api, path, url)

    run()
