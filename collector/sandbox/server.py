"""The sandbox's server: one aiohttp app serving every emulated upstream, with its faults
applied, remembering what it served (``GET /_sandbox/log``, for tests).

Every response carries ``Sendcost-Emulated: true`` (``collector.kinds``): whatever the config
calls a source, what the collector parses from the sandbox is stored as emulated data, which
nothing publishes as a real price unless asked to.
"""

from __future__ import annotations

import collections
import dataclasses
import random

from aiohttp import web

from collector.kinds import EMULATED_HEADER
from collector.sandbox.faults import LOG_LIMIT, Faults, fault_middleware
from collector.sandbox.upstreams import Upstreams


class Sandbox(Upstreams):
    """State of one emulated upstream world: its knobs, its operators, what it served."""

    def __init__(self, faults: Faults | None = None, *, operators_n: int = 10) -> None:
        super().__init__(faults, operators_n=operators_n)
        self.rng = random.Random(self.faults.seed)
        self.requests = 0
        #: (path?query, outcome) of the latest LOG_LIMIT requests (a long-running sandbox
        #: must not grow without bound).
        self.log: collections.deque[tuple[str, str]] = collections.deque(maxlen=LOG_LIMIT)

    async def served(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests,
                                  "log": [list(e) for e in self.log],
                                  "faults": dataclasses.asdict(self.faults)})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[fault_middleware(self)])
        app[SANDBOX] = self
        # Every response, whatever its route, status or fault, says it is emulated: the
        # collector marks what it parses from it so (collector.kinds).
        app.on_response_prepare.append(_mark_emulated)
        app.router.add_routes(self.routes())
        app.router.add_get("/_sandbox/log", self.served)
        return app


SANDBOX = web.AppKey("sandbox", Sandbox)


async def _mark_emulated(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[EMULATED_HEADER] = "true"
