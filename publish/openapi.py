"""The OpenAPI 3.1 document of the public API: the contract, checked against the router and
the handlers in tests/test_api.py (``test_openapi_describes_exactly_the_routes``) so that a
route or a query parameter cannot exist without being described here (and the reverse), and
against live responses in tests/test_api_properties.py. Every route is described here, the
bulletin's included.

Every operation lists the statuses it can answer with: its own, and those of the pipeline
every route is behind (``publish.middleware``: 405, 413, 414, 429 where the rate limit
applies, 500), and 503 where it reads the data (``publish.data.StoreUnavailable``).
tests/test_api.py (``test_openapi_declares_every_status_the_server_gives``) fails when the
server answers a route with a status its operation does not list. The query parameters'
patterns are those the server reads them with (``publish.params``). The schemas of the
answers are their models' (``publish.contract``, ``publish.contract_ops``); only the
parameters and the webhook subscription's request body are written here.
"""

from __future__ import annotations

import copy
from typing import Any

from corridors.alerts import DELIVERY_STATES, SCOPES
from corridors.reference import REGION_NAMES
from corridors.types import FirmType, PayIn, PayOut
from publish import contract, contract_ops
from publish.middleware import MAX_BODY, MAX_QUERY, UNLIMITED
from publish.params import (
    COUNTRY_PATTERN,
    CURRENCY_PATTERN,
    MAX_AMOUNT,
    MAX_LIMIT,
    NUMBER_PATTERN,
    PAIR_PATTERN,
    PERIOD_PATTERN,
)

STR = {"type": "string"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


#: The schemas of every answer, from its model: the data answers' (``publish.contract``) and
#: the others' (``publish.contract_ops``: problems, health, admin, webhooks, bulletins, the
#: archive, the postal summary, this document).
SCHEMAS: dict[str, Any] = {**contract.schemas(), **contract_ops.schemas()}


def param(name: str, description: str, schema: dict[str, Any], *, required: bool = False,
          where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


COUNTRY = {"type": "string", "pattern": COUNTRY_PATTERN}
PERIOD = {"type": "string", "pattern": PERIOD_PATTERN}
#: A number as the server reads it (``publish.params.NUMBER_PATTERN``): optional minus,
#: ASCII digits, optional fraction; no plus sign, exponent or spaces. Malformed: 400; a
#: number out of range: 422.
NUMBER = {"type": "string", "pattern": NUMBER_PATTERN}
PRICE_POINT = {"type": "string", "enum": ["200", "500"], "default": "200"}
P_AMOUNT_USD = param("amount", "price point in USD: 200 (SDG headline) or 500", PRICE_POINT)
P_PERIOD = param("period", "quarter (2014Q2) or month (2026-11); default: the latest", PERIOD)
P_PERIOD_PATH = param("period", "quarter (2014Q2) or month (2026-11)", PERIOD, required=True,
                      where="path")
P_INCLUDE = param("include", "emulated: add the sandbox's emulated quotes, left out by "
                            "default; the answer then says \"emulated data — not real prices\" "
                            "(warning; on a CSV twin, the Sendcost-Warning header)",
                   {"enum": ["emulated"]})
#: A string parameter that is not a code, number or period: any text but the empty one (an
#: empty value of any parameter is 400, ``publish.params.Params.raw``).
TEXT = {"type": "string", "minLength": 1}
P_CURSOR = param("cursor", "next_cursor of the previous page (anything else: 400)", TEXT)
P_LIMIT = param("limit", f"items per page (1-{MAX_LIMIT}, default 100; a whole number out of "
                         "range: 422)",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
P_PAIR = param("pair", "FROM-TO, ISO 3166 alpha-2 or alpha-3 (USA-MEX, US-MX), two different "
                       "countries; problems about it name the parameter pair",
               {"type": "string", "pattern": PAIR_PATTERN},
               required=True, where="path")

PROBLEM_CONTENT = {"application/problem+json": {"schema": ref("Problem")}}
HTML_CONTENT = {"text/html": {"schema": STR}}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait",
                               "schema": {"type": "integer"}}}

#: What each error status means, wherever it is answered.
ERROR_TEXT = {
    400: "bad parameter",
    401: "no or wrong bearer token",
    404: "not found",
    405: "method not allowed (Allow lists those allowed)",
    409: "every job asked for is already running: none was triggered (the scheduler would "
         "skip it)",
    412: "a precondition (If-Match, If-Unmodified-Since) failed",
    413: f"request body larger than {MAX_BODY} bytes, whatever its framing",
    414: f"query string longer than {MAX_QUERY} characters",
    416: "range not satisfiable",
    422: "unusable parameter value",
    429: "rate limited (see Retry-After)",
    500: "unexpected error (logged; no details given)",
    503: "the database cannot be reached and no data is loaded yet (see Retry-After)",
}
ERROR_HEADERS = {
    405: {"Allow": {"description": "the methods the path takes", "schema": STR}},
    429: RETRY_AFTER,
    503: RETRY_AFTER,
}


def errors(*statuses: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in statuses:
        out[str(s)] = {"description": ERROR_TEXT[s], "content": PROBLEM_CONTENT}
        if s in ERROR_HEADERS:
            out[str(s)]["headers"] = ERROR_HEADERS[s]
    return out


def pipeline(path: str, *, data: bool) -> tuple[int, ...]:
    """The statuses every route gets from the pipeline (``publish.middleware``): 405 (the
    path exists, not for this method), 413, 414, 429 unless the path is outside the rate
    limit, 500; 503 when it reads the data (``data``)."""
    return (405, 413, 414, *(() if path in UNLIMITED else (429,)), 500,
            *((503,) if data else ()))


def get(path: str, summary: str, schema: str | None, params: list[dict[str, Any]], *,
        csv: bool = False, statuses: tuple[int, ...] = (400, 404, 422), data: bool = True,
        etag: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ref(schema)}} if schema else {
        "text/plain": {"schema": STR}}
    if csv:
        content["text/csv"] = {"schema": STR}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    if etag:
        responses["304"] = {"description": "not modified (If-None-Match)"}
    responses.update(errors(*sorted({*statuses, *pipeline(path, data=data)})))
    return {"get": {"summary": summary, "parameters": params, "responses": responses}}


def admin(path: str, summary: str, params: list[dict[str, Any]], schema: str, *,
          statuses: tuple[int, ...], data: bool) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": params,
                     "security": [{"bearer": []}],
                     "responses": {"202": {"description": "accepted", "content": {
                         "application/json": {"schema": ref(schema)}}},
                         **errors(*sorted({*statuses, *pipeline(path, data=data)}))}}}


COMPARE_PARAMS = [
    param("from", "sending country", COUNTRY, required=True),
    param("to", "receiving country (not the sending one: 422)", COUNTRY, required=True),
    param("amount", f"amount to send, in the sending currency unless currency says USD; "
                    f"positive and at most {MAX_AMOUNT:,} (a number out of range, such as -5, "
                    "is 422)", NUMBER, required=True),
    param("currency", "ISO 4217: the sending currency (default) or USD (another known code: "
                      "422)", {"type": "string", "pattern": CURRENCY_PATTERN}),
    param("payin", "only services paid in this way", {"enum": [x.value for x in PayIn]}),
    param("payout", "only services paying out this way", {"enum": [x.value for x in PayOut]}),
    P_PERIOD, P_INCLUDE,
]
CORRIDORS_PARAMS = [
    param("from", "sending country", COUNTRY), param("to", "receiving country", COUNTRY),
    param("above", "only corridors whose average is above this % (-100 to 100; out of range: "
                   "422)", NUMBER),
    param("region", "receiving country's World Bank region", {"enum": list(REGION_NAMES)}),
    param("firm_type", "only corridors with a service of this firm type",
          {"enum": [f.value for f in FirmType]}),
    P_AMOUNT_USD, P_CURSOR, P_LIMIT, P_INCLUDE,
]

#: What the envelope of a JSON answer says, on its CSV twin (``publish.api.csv_headers``).
CSV_HEADERS = {
    "Sendcost-Period": {"description": "the data period (absent when the answer has no "
                                       "rows, or rows of several periods)", "schema": PERIOD},
    "Sendcost-Periods": {"description": "/v1/corridors: rows per period, when they are of "
                                        "several (2014Q2=221, 2026-12=14)", "schema": STR},
    "Sendcost-Warning": {"description": "with include=emulated: emulated data - not real "
                                        "prices", "schema": STR},
    "Sendcost-Methodology-Version": {"description": "the methodology version", "schema": STR},
    "Sendcost-Sources": {"description": "the sources, an RFC 8941 list: name;title=…;url=…;"
                                        "licence=…", "schema": STR},
    "Sendcost-Licence": {"description": "the licence of sendcost's figures", "schema": STR},
}

_PATHS: dict[str, Any] = {
    "/v1/compare": get("/v1/compare",
                       "Services from one country to another for an amount, ranked",
                       "Compare", COMPARE_PARAMS, csv=True),
    "/v1/corridors": get("/v1/corridors", "Corridors with their latest average, SmaRT and flags",
                         "Corridors", CORRIDORS_PARAMS, csv=True, statuses=(400, 422)),
    "/v1/corridors/{pair}": get("/v1/corridors/{pair}",
                                "A corridor's latest indicators and services", "Corridor",
                                [P_PAIR, P_AMOUNT_USD, P_PERIOD, P_INCLUDE], csv=True),
    "/v1/corridors/{pair}/history": get("/v1/corridors/{pair}/history",
                                        "A corridor's averages over time", "History",
                                        [P_PAIR, P_AMOUNT_USD, P_CURSOR, P_LIMIT, P_INCLUDE],
                                        csv=True),
    "/v1/indicators": get("/v1/indicators", "The SDG 10.c figures of a period", "Indicators",
                          [P_PERIOD, P_AMOUNT_USD, P_INCLUDE], csv=True,
                          statuses=(400, 404)),
    "/v1/kpis": get("/v1/kpis", "The G20 remittance scorecard of a period: cost, speed, "
                    "access and transparency, per corridor and globally", "Kpis",
                    [P_PERIOD, P_AMOUNT_USD, P_INCLUDE], csv=True, statuses=(400, 404)),
    "/v1/postal/benchmark": get(
        "/v1/postal/benchmark", "Post-office services against their corridor's market",
        "PostalBenchmark",
        [param("period", "quarter (2014Q2) or month (2026-11); default: the latest period "
                         "with post-office quotes at the price point", PERIOD),
         P_AMOUNT_USD, P_CURSOR, P_LIMIT, P_INCLUDE], csv=True),
    "/v1/postal/summary": get(
        "/v1/postal/summary", "Each post against its market (the services no post sells or "
        "pays out), per corridor or per operator, with the change since the previous period",
        "PostalSummary",
        [param("period", "quarter (2014Q2) or month (2026-11); default: the latest period "
                         "with a post's services at the price point", PERIOD),
         P_AMOUNT_USD, param("by", "corridor (default) or operator",
                             {"enum": ["corridor", "operator"]}), P_INCLUDE], csv=True),
    "/v1/openapi.json": get("/v1/openapi.json", "This document", "OpenAPI", [], statuses=(),
                            data=False),
    "/metrics": get("/metrics", "Prometheus metrics (200 even without the database)", None, [],
                    statuses=(), data=False, etag=False),
    "/healthz": get("/healthz", "Database reachable and writable, last collection per source",
                    "Health", [],
                    statuses=(), data=False, etag=False),
    "/": get("/", "The comparison page (HTML)", None, [
        param("from", "sending country", COUNTRY), param("to", "receiving country", COUNTRY),
        param("amount", "amount to send, as people type it: 200,50, 1 000, 1.000,50, 500€ "
                        "and $200 are read (docs/api.md, \"The page\")", {"type": "string"}),
        param("lang", "the page's language: en, es, fr, pt, ar, hi, tl, ru or sw (a tag "
                      "such as es-MX counts as es); else Accept-Language decides",
              {"type": "string"}),
        param("include", "emulated: show the sandbox's emulated quotes under the banner "
                         "\"emulated data — not real prices\" (the default under "
                         "sendcost serve --sandbox)", {"enum": ["emulated"]})],
        statuses=(400, 422)),
    "/v1/admin/collect": admin("/v1/admin/collect", "Run the scheduled collection jobs now",
                               [param("source", "only this source's job", TEXT)],
                               "AdminCollect", statuses=(400, 401, 404, 409), data=False),
    "/v1/admin/bulletin": admin("/v1/admin/bulletin", "Publish the bulletin of a period",
                                [{**P_PERIOD, "required": True,
                                  "description": "quarter (2014Q2) or month (2026-11)"}],
                                "AdminBulletin", statuses=(400, 401, 404), data=True),
    "/v1/bulletins": get("/v1/bulletins", "The published monthly bulletins, newest first",
                         "Bulletins", [], statuses=(), data=False),
    "/v1/bulletins/{period}": get("/v1/bulletins/{period}",
                                  "Redirects to the bulletin's folder", None,
                                  [P_PERIOD_PATH], statuses=(400, 404), data=False, etag=False),
    "/v1/bulletins/{period}/{path}": get(
        "/v1/bulletins/{period}/{path}",
        "A file of a bulletin: index.html (empty path), bulletin.pdf, bulletin.md, charts/…, "
        "data/…, bulletin-PERIOD.zip", None,
        [P_PERIOD_PATH, param("path", "file inside the bulletin's folder", STR,
                              required=True, where="path")],
        statuses=(400, 404, 412, 416), data=False),
}
# Each path with a CSV twin gets its ``.csv`` path; the JSON one answers CSV too when Accept
# prefers it (docs/api.md, "CSV twin").
_ACCEPT_NOTE = ("JSON, or CSV (with the Sendcost-* headers) when Accept prefers text/csv "
                "to application/json by its q-values; JSON when neither is acceptable")
for _csv_path in ("/v1/compare", "/v1/corridors", "/v1/corridors/{pair}",
                  "/v1/corridors/{pair}/history", "/v1/indicators", "/v1/kpis",
                  "/v1/postal/benchmark", "/v1/postal/summary"):
    _item = copy.deepcopy(_PATHS[_csv_path])
    _item["get"]["summary"] += " (CSV)"
    _item["get"]["responses"]["200"]["content"] = {"text/csv": {"schema": STR}}
    _item["get"]["responses"]["200"]["headers"] = CSV_HEADERS
    _PATHS[_csv_path + ".csv"] = _item
    _PATHS[_csv_path]["get"]["responses"]["200"]["description"] = _ACCEPT_NOTE
# The page, the metrics and the files are not JSON.
_page = _PATHS["/"]["get"]["responses"]
_page["200"]["content"] = HTML_CONTENT
for _status in ("400", "422"):  # bad input is shown on the page itself
    _page[_status] = {"description": ERROR_TEXT[int(_status)] + ", shown on the page "
                                     "(role=alert)", "content": HTML_CONTENT}
_health = _PATHS["/healthz"]["get"]["responses"]
_health["503"] = {"description": "degraded: the database is unreachable, restarting, or "
                                 "refuses writes (a full disk); `reasons` says which",
                  "headers": RETRY_AFTER,
                  "content": {"application/json": {"schema": ref("Health")}}}
_redirect = _PATHS["/v1/bulletins/{period}"]["get"]["responses"]
del _redirect["200"]
_redirect["301"] = {"description": "to the bulletin's folder, /v1/bulletins/{period}/",
                    "headers": {"Location": {"schema": STR}}}
_files = _PATHS["/v1/bulletins/{period}/{path}"]["get"]["responses"]
_files["200"]["content"] = {"*/*": {"schema": STR}}
_files["206"] = {"description": "the range asked for (Range)", "content": {"*/*": {
    "schema": STR}}}
_files["304"] = {"description": "not modified (If-None-Match, If-Modified-Since)"}


# --- alerts (docs/alerts.md): the Atom feeds and the webhooks' admin API -----------------------
ATOM_CONTENT = {"application/atom+xml": {"schema": STR}}
P_FEED_COUNTRY = param("country", "ISO 3166 alpha-2 or alpha-3 (MEX, MX)", COUNTRY,
                       required=True, where="path")
_SCOPE = {"enum": list(SCOPES)}
_P_WEBHOOK = param("id", "the subscription's number", {"type": "string", "pattern": "^[0-9]+$"},
                   required=True, where="path")


def feed(path: str, summary: str, params: list[dict[str, Any]],
         statuses: tuple[int, ...]) -> dict[str, Any]:
    item = get(path, summary, None, params, statuses=statuses)
    item["get"]["responses"]["200"] = {"description": "an Atom feed (RFC 4287) of the latest "
                                       "alert events, newest first", "content": ATOM_CONTENT}
    return item


def _admin_webhooks(path: str, method: str, summary: str, ok: dict[str, Any],
                    params: list[dict[str, Any]], statuses: tuple[int, ...],
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params,
                          "security": [{"bearer": []}],
                          "responses": {**ok, **errors(*sorted({*statuses, *pipeline(
                              path, data=True)}))}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": body}}}
    return {method: op}


_P_ARCHIVE = param("id", "the archived response's number (an alert's raw_response_ids)",
                   {"type": "string", "pattern": "^[0-9]+$"}, required=True, where="path")


def _archive_body(path: str) -> dict[str, Any]:
    item = get(path, "An archived response's body, byte for byte as collected (JSON, XML, "
               "CSV and text as their type; anything else as a download)", None,
               [_P_ARCHIVE], statuses=(400, 404))
    item["get"]["responses"]["200"] = {"description": "the archived body", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    return item


_PATHS.update({
    "/v1/archive/{id}": get("/v1/archive/{id}", "An archived upstream response's provenance: "
                            "source, URL, time, status, hash, size, licence",
                            "ArchivedResponse", [_P_ARCHIVE], statuses=(400, 404)),
    "/v1/archive/{id}/body": _archive_body("/v1/archive/{id}/body"),
})


_PATHS.update({
    "/v1/feeds/global.atom": feed("/v1/feeds/global.atom", "Every alert event", [], (400,)),
    "/v1/feeds/corridor/{pair}.atom": feed(
        "/v1/feeds/corridor/{pair}.atom", "A corridor's alerts: its average or SmaRT crossing "
        "3% or 5%, a new cheapest provider, its providers' fee or FX margin changes",
        [P_PAIR], (400, 422)),
    "/v1/feeds/sending/{country}.atom": feed(
        "/v1/feeds/sending/{country}.atom", "The alerts of the corridors from a country",
        [P_FEED_COUNTRY], (400, 422)),
    "/v1/feeds/receiving/{country}.atom": feed(
        "/v1/feeds/receiving/{country}.atom", "The alerts of the corridors to a country",
        [P_FEED_COUNTRY], (400, 422)),
    "/v1/feeds/provider/{provider}.atom": feed(
        "/v1/feeds/provider/{provider}.atom", "A provider's alerts: its fee or FX margin "
        "changes, corridors where it became the cheapest",
        [param("provider", "the provider's id: its name in lower case, hyphens between "
                           "words (western-union); unknown: 404", STR, required=True,
               where="path")], (400, 404)),
    "/v1/admin/webhooks": {
        **_admin_webhooks("/v1/admin/webhooks", "post",
                          "Subscribe a URL to alert events (the secret is shown once)",
                          {"201": {"description": "subscribed", "content": {
                              "application/json": {"schema": ref("WebhookCreated")}}}},
                          [], (400, 401, 404, 422),
                          body={"type": "object", "required": ["url"],
                                "additionalProperties": False, "properties": {
                                    "url": STR, "scope": _SCOPE, "value": STR}}),
        **_admin_webhooks("/v1/admin/webhooks", "get",
                          "The webhook subscriptions, with their deliveries per state",
                          {"200": {"description": "OK", "content": {
                              "application/json": {"schema": ref("Webhooks")}}}},
                          [], (400, 401, 404))},
    "/v1/admin/webhooks/{id}/deliveries": _admin_webhooks(
        "/v1/admin/webhooks/{id}/deliveries", "get", "A subscription's latest deliveries, "
        "newest first, with their attempts and last error (state=dead: the dead letters)",
        {"200": {"description": "OK", "content": {"application/json": {
            "schema": ref("WebhookDeliveries")}}}},
        [_P_WEBHOOK, param("state", "only deliveries in this state",
                           {"enum": list(DELIVERY_STATES)}), P_LIMIT],
        (400, 401, 404, 422)),
    "/v1/admin/webhooks/{id}/redeliver": _admin_webhooks(
        "/v1/admin/webhooks/{id}/redeliver", "post", "Queue a subscription's dead deliveries "
        "again, their attempts back to none",
        {"202": {"description": "queued", "content": {"application/json": {
            "schema": ref("WebhookRedelivered")}}}},
        [_P_WEBHOOK], (400, 401, 404)),
    "/v1/admin/webhooks/{id}": _admin_webhooks(
        "/v1/admin/webhooks/{id}", "delete", "Delete a subscription (deliveries not yet made "
        "are dropped)", {"204": {"description": "deleted"}},
        [_P_WEBHOOK], (400, 401, 404)),
})


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
