"""The sandbox's faults: the knobs that make its emulated upstreams hostile, and the fault
middleware that applies them to every request but the sandbox's own (``/_sandbox/...``).

Latency, 5xx, timeouts, truncated bodies, 429 bursts with Retry-After, slow bodies, and
implausible operator quotes whose expected quarantine reason the sandbox can tell
(``expected_rejection``; ``spoil`` makes one).
"""

from __future__ import annotations

import asyncio
import collections
import random
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from collector.sandbox.market import h01

BAD_KINDS = ("fee_negative", "fee_above_amount", "rate_off_reference", "received_inconsistent",
             "currency_mismatch", "unknown_corridor", "implausible_negative_margin")
#: Requests the sandbox remembers for GET /_sandbox/log.
LOG_LIMIT = 100_000


@dataclass
class Faults:
    """Knobs of the emulated upstreams. Rates are per request (per quote for bad quotes)."""

    latency_ms: float = 0.0  # mean added latency (uniform 0 .. 2×)
    error_rate: float = 0.0  # share of 5xx answers (500/502/503/504)
    timeout_rate: float = 0.0  # share of requests that hang for hang_seconds
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0  # share of 200s with a truncated body
    slow_body_rate: float = 0.0  # share of 200s whose body trickles over slow_body_seconds
    slow_body_seconds: float = 2.0
    burst_429_every: int = 0  # every N requests, a burst of burst_429_length 429s (0: never)
    burst_429_length: int = 5
    retry_after: str = "1"
    bad_quote_rate: float = 0.0  # share of operator quotes that are implausible (see BAD_KINDS)
    price_epoch_seconds: float = 3600.0  # prices (and ETags) change once per epoch
    seed: int = 0


def expected_rejection(op: int, corridor: str, amount: str, rate: float) -> str | None:
    """The quarantine reason the sandbox built into this quote, or None for a valid one."""
    if h01("bad", op, corridor, amount) >= rate:
        return None
    return BAD_KINDS[int(h01("kind", op, corridor, amount) * len(BAD_KINDS))]



def spoil(quote: dict[str, Any], kind: str | None, amount: float, mid: float) -> None:
    """Make a quote implausible in the way ``kind`` names (see collector.validate)."""
    if kind is None:
        return
    if kind == "fee_negative":
        quote["fee"]["amount"] = -abs(quote["fee"]["amount"]) - 1
    elif kind == "fee_above_amount":
        quote["fee"]["amount"] = round(amount * 1.5, 2)
    elif kind == "rate_off_reference":
        quote["exchangeRate"] = float(f"{mid * 1.6:.6g}")
        quote["receiveAmount"] = round(amount * quote["exchangeRate"], 2)
    elif kind == "implausible_negative_margin":
        quote["exchangeRate"] = float(f"{mid * 1.12:.6g}")
        quote["receiveAmount"] = round(amount * quote["exchangeRate"], 2)
    elif kind == "received_inconsistent":
        quote["receiveAmount"] = round(quote["receiveAmount"] * 0.5, 2)
    elif kind == "currency_mismatch":
        quote["sendCurrency"] = "GBP" if quote["sendCurrency"] != "GBP" else "EUR"
    elif kind == "unknown_corridor":
        quote["destinationCountry"] = "ATA"


class FaultTarget(Protocol):
    """What the fault middleware reads and counts: the sandbox's knobs, its random source,
    and what it served (``collector.sandbox.server.Sandbox``)."""

    faults: Faults
    rng: random.Random
    requests: int
    log: collections.deque[tuple[str, str]]


def fault_middleware(target: FaultTarget) -> Middleware:
    """A middleware applying ``target.faults`` (read at each request: a test may change them
    while the sandbox serves) and logging each request's outcome in ``target.log``."""

    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox"):
            return await handler(request)
        f = target.faults
        target.requests += 1
        where = request.path_qs
        if f.burst_429_every and (target.requests % f.burst_429_every) < f.burst_429_length:
            target.log.append((where, "429"))
            return web.Response(status=429, headers={"Retry-After": f.retry_after},
                                text="slow down")
        if f.latency_ms:
            await asyncio.sleep(target.rng.uniform(0, 2 * f.latency_ms) / 1000)
        r = target.rng.random()
        if r < f.error_rate:
            target.log.append((where, "5xx"))
            return web.Response(status=target.rng.choice((500, 502, 503, 504)), text="oops")
        if r < f.error_rate + f.timeout_rate:
            target.log.append((where, "timeout"))
            await asyncio.sleep(f.hang_seconds)
            return web.Response(status=504, text="too late")
        resp = await handler(request)
        if not isinstance(resp, web.Response) or resp.status != 200 or resp.body is None:
            target.log.append((where, str(getattr(resp, "status", "?"))))
            return resp
        body = bytes(resp.body)  # type: ignore[arg-type]
        r = target.rng.random()
        if r < f.malformed_rate:
            target.log.append((where, "malformed"))
            return web.Response(body=body[: max(1, len(body) // 2)],
                                content_type=resp.content_type)
        if r < f.malformed_rate + f.slow_body_rate:
            target.log.append((where, "slow_body"))
            stream = web.StreamResponse(headers={"Content-Type": resp.content_type})
            stream.content_length = len(body)
            await stream.prepare(request)
            chunks = 5
            for i in range(chunks):
                await stream.write(body[i * len(body) // chunks:(i + 1) * len(body) // chunks])
                await asyncio.sleep(f.slow_body_seconds / chunks)
            await stream.write_eof()
            return stream
        target.log.append((where, "ok"))
        return resp

    return faults
