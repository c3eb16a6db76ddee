"""The OpenAPI 3.1 document of the public API: the contract, checked against the router and
the handlers in tests/test_api.py (``test_openapi_describes_exactly_the_routes``) so that a
route or a query parameter cannot exist without being described here (and the reverse), and
against live responses in tests/test_api_properties.py. Other publish modules add their
paths with ``add_path``.
"""

from __future__ import annotations

import copy
from typing import Any

from corridors.reference import REGION_NAMES
from corridors.types import FirmType, PayIn, PayOut

NUM = {"type": ["number", "null"]}
INT = {"type": "integer"}
STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
BOOL = {"type": "boolean"}
NBOOL = {"type": ["boolean", "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(name: str) -> dict[str, Any]:
    return {"oneOf": [ref(name), {"type": "null"}]}


def obj(props: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": extra}


ENVELOPE = {
    "period": NSTR,
    "methodology_version": STR,
    "sources": {"type": "array", "items": ref("Source")},
    "licence": STR,
}

SERVICE = obj({
    "provider": STR, "firm_type": {"enum": [f.value for f in FirmType]}, "product": NSTR,
    "service_id": STR, "fee": NUM, "fee_currency": STR, "applied_rate": NUM,
    "reference_rate": NUM, "reference_rate_source": NSTR, "reference_rate_at": NSTR,
    "fee_pct": NUM, "fx_margin_pct": NUM, "total_cost_pct": NUM, "amount_received": NUM,
    "amount_received_basis": {"enum": ["reported", "fee_deducted", "fee_on_top", None]},
    "fee_paid_on_top": NBOOL,
    "amount_received_if_fee_on_top": NUM, "amount_received_if_fee_deducted": NUM,
    "receive_currency": NSTR,
    "receive_currency_basis": {"enum": ["reported", "reference_rate", None]},
    "receive_currency_note": NSTR, "speed": NSTR, "pay_in": NSTR, "pay_out": NSTR,
    "access_point": NSTR, "transparent": BOOL, "collected_at": NSTR, "source": STR,
    "rank": {"type": ["integer", "null"]},
})

CHEAPEST = obj({"provider": STR, "firm_type": STR, "product": NSTR, "total_cost_pct": NUM})

SUMMARY_PROPS = {
    "average": NUM, "smart": NUM, "median": NUM, "services": INT,
    "transparent_services": INT, "above_5": NBOOL, "above_10": NBOOL,
    "too_few_services": NBOOL, "no_transparent_service": NBOOL, "points_above_3": NUM,
    "points_above_5": NUM, "cheapest": nullable("Cheapest"),
}

SCHEMAS: dict[str, Any] = {
    "Country": obj({"alpha2": NSTR, "alpha3": STR, "name": NSTR}),
    "Source": obj({"name": STR, "title": STR, "url": NSTR, "licence": NSTR}),
    "Service": SERVICE,
    "Cheapest": CHEAPEST,
    "CorridorSummary": obj(SUMMARY_PROPS),
    "Problem": {
        "type": "object",
        "properties": {"type": STR, "title": STR, "status": INT, "detail": STR,
                       "instance": STR, "parameter": STR, "corridor": STR},
        "required": ["type", "title", "status", "detail"],
    },
    "Compare": obj({
        **ENVELOPE, "from": ref("Country"), "to": ref("Country"), "amount": {"type": "number"},
        "currency": STR, "send_currency": STR, "priced_amount": {"type": "number"},
        "priced_send_amount": {"type": "number"}, "priced_amount_usd": INT,
        "approximate": BOOL, "approximation": NSTR,
        "priced_amounts": {"type": "array", "items": {"type": "number"}},
        "filters": obj({"payin": NSTR, "payout": NSTR}),
        "corridor": ref("CorridorSummary"),
        "ranked_by": {"enum": ["amount_received_per_amount_paid", "total_cost_pct"]},
        "services": {"type": "array", "items": ref("Service")},
        "non_transparent": {"type": "array", "items": ref("Service")},
    }),
    "CorridorItem": obj({
        "from": ref("Country"), "to": ref("Country"), "period": STR, "amount_usd": INT,
        **SUMMARY_PROPS,
        "receiving_region": {"oneOf": [obj({"code": STR, "name": NSTR}), {"type": "null"}]},
        "sources": {"type": "array", "items": STR},
    }),
    "Corridors": obj({
        **ENVELOPE, "amount_usd": INT, "count": INT, "next_cursor": NSTR,
        "corridors": {"type": "array", "items": ref("CorridorItem")},
    }),
    "Corridor": obj({
        **ENVELOPE, "from": ref("Country"), "to": ref("Country"), "amount_usd": INT,
        "send_amount": {"type": "number"}, "send_currency": STR,
        "periods": {"type": "array", "items": STR}, "indicators": ref("CorridorSummary"),
        "ranked_by": STR,
        "services": {"type": "array", "items": ref("Service")},
        "non_transparent": {"type": "array", "items": ref("Service")},
        "links": obj({"history": STR, "compare": STR}),
    }),
    "History": obj({
        **ENVELOPE, "from": ref("Country"), "to": ref("Country"), "amount_usd": INT,
        "next_cursor": NSTR,
        "history": {"type": "array", "items": obj({
            "period": STR, "amount_usd": INT, "average": NUM, "smart": NUM, "median": NUM,
            "services": INT, "transparent_services": INT, "above_5": NBOOL, "above_10": NBOOL,
            "too_few_services": NBOOL, "no_transparent_service": NBOOL, "points_above_5": NUM,
            "sources": {"type": "array", "items": STR}})},
    }),
    "Indicators": {
        "type": "object",
        "required": [*ENVELOPE, "amount_usd", "services", "global_average", "weighted_average",
                     "smart_average", "g20_sending_average", "g8_sending_average",
                     "g20_receiving_average", "by_firm_type", "by_receiving_region",
                     "share_corridors_above_5", "share_corridors_above_10",
                     "share_services_below_3", "corridors", "non_transparent"],
        "properties": {
            **ENVELOPE, "amount_usd": INT,
            "services": obj({"total": INT, "transparent": INT}),
            "global_average": NUM, "weighted_average": NUM, "smart_average": NUM,
            "g20_sending_average": NUM, "g8_sending_average": NUM,
            "g20_receiving_average": NUM,
            "by_firm_type": {"type": "object", "additionalProperties":
                             obj({"average": NUM, "services": INT})},
            "by_receiving_region": {"type": "object", "additionalProperties":
                                    obj({"average": NUM, "services": INT})},
            "share_corridors_above_5": NUM, "share_corridors_above_10": NUM,
            "share_services_below_3": NUM,
            "corridors": {"type": "array", "items": obj({
                "from": ref("Country"), "to": ref("Country"), "source": STR,
                "destination": STR, "average": NUM, "services": INT,
                "transparent_services": INT, "smart": NUM, "above_5": NBOOL,
                "above_10": NBOOL, "too_few_services": BOOL, "no_transparent_service": BOOL,
                "cheapest": {"oneOf": [obj({"firm": STR, "firm_type": STR, "product": STR,
                                            "total_cost": NUM}), {"type": "null"}]}})},
            "non_transparent": {"type": "array", "items": {"type": "object"}},
        },
        "additionalProperties": False,
    },
    "PostalBenchmark": obj({
        **ENVELOPE, "amount_usd": INT, "count": INT, "next_cursor": NSTR,
        "services": {"type": "array", "items": obj({
            "from": ref("Country"), "to": ref("Country"), "provider": STR, "firm_type": STR,
            "product": NSTR, "service_id": STR, "transparent": BOOL, "total_cost_pct": NUM,
            "rank": {"type": ["integer", "null"]}, "ranked_services": INT,
            "corridor_median": NUM, "corridor_average": NUM, "smart": NUM,
            "points_above_median": NUM, "cheapest": nullable("Cheapest")})},
    }),
    "AdminResult": {"type": "object", "required": ["status"],
                    "properties": {"status": STR}},
    "Bulletins": obj({"bulletins": {"type": "array", "items": obj({
        "period": STR, "methodology_version": STR, "generated_from": NSTR, "progress": NSTR,
        "url": STR, "files": obj({"html": STR, "pdf": STR, "markdown": STR, "metadata": STR,
                                  "zip": STR})})}}),
}


def param(name: str, description: str, schema: dict[str, Any], *, required: bool = False,
          where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


COUNTRY = {"type": "string", "pattern": "^[A-Za-z]{2,3}$"}
PERIOD = {"type": "string", "pattern": r"^(\d{4}Q[1-4]|\d{4}_[1-4]Q|\d{4}-(0[1-9]|1[0-2]))$"}
PRICE_POINT = {"type": "string", "enum": ["200", "500"], "default": "200"}
P_AMOUNT_USD = param("amount", "price point in USD: 200 (SDG headline) or 500", PRICE_POINT)
P_PERIOD = param("period", "quarter (2014Q2) or month (2026-11); default: the latest", PERIOD)
P_PERIOD_PATH = param("period", "quarter (2014Q2) or month (2026-11)", PERIOD, required=True,
                      where="path")
P_CURSOR = param("cursor", "next_cursor of the previous page", {"type": "string"})
P_LIMIT = param("limit", "items per page (1-500, default 100)",
                {"type": "integer", "minimum": 1, "maximum": 500})
P_PAIR = param("pair", "FROM-TO, ISO 3166 alpha-2 or alpha-3 (USA-MEX, US-MX)",
               {"type": "string", "pattern": "^[A-Za-z]{2,3}-[A-Za-z]{2,3}$"},
               required=True, where="path")

PROBLEM_CONTENT = {"application/problem+json": {"schema": ref("Problem")}}


def errors(*statuses: int) -> dict[str, Any]:
    text = {400: "bad parameter", 401: "no or wrong bearer token", 404: "not found",
            405: "method not allowed", 413: "body too large", 414: "query too long",
            422: "unusable parameter value", 429: "rate limited (see Retry-After)"}
    return {str(s): {"description": text[s], "content": PROBLEM_CONTENT} for s in statuses}


def get(summary: str, schema: str | None, params: list[dict[str, Any]], *, csv: bool = False,
        statuses: tuple[int, ...] = (400, 404, 422, 429)) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ref(schema)}} if schema else {
        "text/plain": {"schema": STR}}
    if csv:
        content["text/csv"] = {"schema": STR}
    return {"get": {"summary": summary, "parameters": params,
                    "responses": {"200": {"description": "OK", "content": content},
                                  "304": {"description": "not modified (If-None-Match)"},
                                  **errors(*statuses)}}}


def admin(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": params,
                     "security": [{"bearer": []}],
                     "responses": {"202": {"description": "accepted", "content": {
                         "application/json": {"schema": ref("AdminResult")}}},
                         **errors(400, 401, 404, 413, 429)}}}


COMPARE_PARAMS = [
    param("from", "sending country", COUNTRY, required=True),
    param("to", "receiving country", COUNTRY, required=True),
    param("amount", "amount to send, in the sending currency unless currency says USD",
          {"type": "string", "pattern": r"^\d{1,10}(\.\d{1,6})?$"}, required=True),
    param("currency", "ISO 4217: the sending currency (default) or USD",
          {"type": "string", "pattern": "^[A-Za-z]{3}$"}),
    param("payin", "only services paid in this way", {"enum": [x.value for x in PayIn]}),
    param("payout", "only services paying out this way", {"enum": [x.value for x in PayOut]}),
    P_PERIOD,
]
CORRIDORS_PARAMS = [
    param("from", "sending country", COUNTRY), param("to", "receiving country", COUNTRY),
    param("above", "only corridors whose average is above this %", {"type": "number"}),
    param("region", "receiving country's World Bank region", {"enum": list(REGION_NAMES)}),
    param("firm_type", "only corridors with a service of this firm type",
          {"enum": [f.value for f in FirmType]}),
    P_AMOUNT_USD, P_CURSOR, P_LIMIT,
]

#: What the envelope of a JSON answer says, on its CSV twin (``publish.api.csv_headers``).
CSV_HEADERS = {
    "Sendcost-Period": {"description": "the data period (absent when the answer has no "
                                       "rows)", "schema": PERIOD},
    "Sendcost-Methodology-Version": {"description": "the methodology version", "schema": STR},
    "Sendcost-Sources": {"description": "the sources, an RFC 8941 list: name;title=…;url=…;"
                                        "licence=…", "schema": STR},
    "Sendcost-Licence": {"description": "the licence of sendcost's figures", "schema": STR},
}

_PATHS: dict[str, Any] = {
    "/v1/compare": get("Services from one country to another for an amount, ranked",
                       "Compare", COMPARE_PARAMS, csv=True),
    "/v1/corridors": get("Corridors with their latest average, SmaRT and flags",
                         "Corridors", CORRIDORS_PARAMS, csv=True),
    "/v1/corridors/{pair}": get("A corridor's latest indicators and services", "Corridor",
                                [P_PAIR, P_AMOUNT_USD, P_PERIOD], csv=True),
    "/v1/corridors/{pair}/history": get("A corridor's averages over time", "History",
                                        [P_PAIR, P_AMOUNT_USD, P_CURSOR, P_LIMIT], csv=True),
    "/v1/indicators": get("The SDG 10.c figures of a period", "Indicators",
                          [P_PERIOD, P_AMOUNT_USD], csv=True),
    "/v1/postal/benchmark": get("Post-office services against their corridor's market",
                                "PostalBenchmark", [P_PERIOD, P_AMOUNT_USD, P_CURSOR, P_LIMIT],
                                csv=True),
    "/v1/openapi.json": get("This document", None, [], statuses=(429,)),
    "/metrics": get("Prometheus metrics", None, [], statuses=()),
    "/healthz": get("Database reachable, last collection per source", None, [], statuses=()),
    "/": get("The comparison page (HTML)", None, [
        param("from", "sending country", COUNTRY), param("to", "receiving country", COUNTRY),
        param("amount", "amount to send", {"type": "string"})], statuses=(400, 422, 429)),
    "/v1/admin/collect": admin("Run the scheduled collection jobs now",
                               [param("source", "only this source's job", STR)]),
    "/v1/admin/bulletin": admin("Publish the bulletin of a period",
                                [{**P_PERIOD, "required": True,
                                  "description": "quarter (2014Q2) or month (2026-11)"}]),
    "/v1/bulletins": get("The published monthly bulletins, newest first", "Bulletins", [],
                         statuses=(400, 429)),
    "/v1/bulletins/{period}": get("Redirects to the bulletin's folder", None,
                                  [P_PERIOD_PATH], statuses=(400, 404, 429)),
    "/v1/bulletins/{period}/{path}": get(
        "A file of a bulletin: index.html (empty path), bulletin.pdf, bulletin.md, charts/…, "
        "data/…, bulletin-PERIOD.zip", None,
        [P_PERIOD_PATH, param("path", "file inside the bulletin's folder", STR,
                              required=True, where="path")], statuses=(400, 404, 429)),
}
for _csv_path in ("/v1/compare", "/v1/corridors", "/v1/corridors/{pair}",
                  "/v1/corridors/{pair}/history", "/v1/indicators", "/v1/postal/benchmark"):
    _item = copy.deepcopy(_PATHS[_csv_path])
    _item["get"]["summary"] += " (CSV)"
    _item["get"]["responses"]["200"]["content"] = {"text/csv": {"schema": STR}}
    _item["get"]["responses"]["200"]["headers"] = CSV_HEADERS
    _PATHS[_csv_path + ".csv"] = _item
# The healthz, page and metrics documents are HTML/text: described loosely.
_PATHS["/healthz"]["get"]["responses"]["200"]["content"] = {"application/json": {
    "schema": {"type": "object"}}}
_PATHS["/"]["get"]["responses"]["200"]["content"] = {"text/html": {"schema": STR}}


def add_path(path: str, item: dict[str, Any]) -> None:
    """For other publish modules (bulletins): describe a route they add."""
    _PATHS[path] = item


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sendcost API",
            "version": "1",
            "summary": "What it costs to send money home, corridor by corridor (SDG 10.c)",
            "license": {"name": "Apache-2.0 (code); data CC BY 4.0",
                        "identifier": "Apache-2.0"},
        },
        "paths": _PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
