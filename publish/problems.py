"""RFC 9457 problem details: the one error shape of the public API.

Handlers raise ``Problem`` (or let aiohttp raise its ``HTTPException``s); the error
middleware in ``publish.middleware`` is the only place that turns either into an
``application/problem+json`` response. A problem about a request parameter names it in
``parameter`` and says what was expected in ``detail``.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from msgspec import UNSET

from publish import contract_ops
from publish.contract import encode

#: Seconds a client is asked to wait when the database cannot be reached: a 503 from an admin
#: action, or from a data endpoint before the first snapshot (the store is asked again at
#: that pace, publish.data.REFRESH_SECONDS).
RETRY_AFTER_UNAVAILABLE = 5
PROBLEM_TYPE_BASE = "https://sendcost.org/problems/"
CONTENT_TYPE = "application/problem+json"

#: Problem type slug per status, documented in docs/api.md.
SLUGS = {
    400: "bad-parameter",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "request-too-large",
    414: "query-too-long",
    416: "range-not-satisfiable",
    422: "unprocessable-parameter",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


class Problem(Exception):
    """An error the API reports to its client (status 4xx or 5xx)."""

    def __init__(self, status: int, detail: str, *, parameter: str | None = None,
                 headers: dict[str, str] | None = None, corridor: str | None = None,
                 jobs: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter
        self.headers = headers or {}
        self.corridor = corridor
        self.jobs = jobs


def bad_parameter(parameter: str, detail: str) -> Problem:
    """400: the parameter is malformed (not a number, not a code, not a period, unknown)."""
    return Problem(400, detail, parameter=parameter)


def unprocessable(parameter: str, detail: str) -> Problem:
    """422: the parameter is well formed but its value cannot be used."""
    return Problem(422, detail, parameter=parameter)


def not_found(detail: str, *, corridor: str | None = None) -> Problem:
    return Problem(404, detail, corridor=corridor)


def problem_body(status: int, detail: str, *, instance: str | None = None,
                 parameter: str | None = None, corridor: str | None = None,
                 jobs: list[str] | None = None) -> contract_ops.Problem:
    """The body of a problem (``publish.contract_ops.Problem``): the keys given as None are
    left out."""
    return contract_ops.Problem(
        type=PROBLEM_TYPE_BASE + SLUGS.get(status, "error"), title=HTTPStatus(status).phrase,
        status=status, detail=detail,
        instance=UNSET if instance is None else instance,
        parameter=UNSET if parameter is None else parameter,
        corridor=UNSET if corridor is None else corridor,
        jobs=UNSET if jobs is None else jobs)


def problem_response(status: int, detail: str, *, instance: str | None = None,
                     parameter: str | None = None, headers: dict[str, str] | None = None,
                     corridor: str | None = None, jobs: list[str] | None = None
                     ) -> web.Response:
    body = problem_body(status, detail, instance=instance, parameter=parameter,
                        corridor=corridor, jobs=jobs)
    out_headers = {"Cache-Control": "no-store"}
    out_headers.update(headers or {})
    return web.Response(status=status, body=encode(body), content_type=CONTENT_TYPE,
                        headers=out_headers)
