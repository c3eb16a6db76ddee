"""Webhooks: subscriptions through the admin API, signed payloads, delivery from the queue.

A subscription names a URL and what it watches (``global``, a corridor, a sending or
receiving country, a provider); its secret is made here and shown once, when it is created.
Each event it watches is POSTed to it as JSON, signed with HMAC-SHA256 over
``"<timestamp>.<body>"``: the header ``Sendcost-Signature: t=<unix seconds>,v1=<hex>``.
A receiver recomputes the signature, compares it in constant time and refuses a timestamp
older than ``SIGNATURE_TOLERANCE_SECONDS`` (a replayed request), as ``verify`` does
(docs/alerts.md). Deliveries are taken from the queue in PostgreSQL (``corridors.alerts``)
by ``serve``'s scheduler; a 2xx answer is delivered, anything else is tried again after
``[alerts] backoff_base_seconds × 2^(attempt-1)`` (at most ``backoff_max_seconds``), and
after ``max_attempts`` the delivery is dead. Counts per state are in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import Counter, Gauge

from corridors import runtime
from corridors.alerts import (
    DELIVERY_STATES,
    SCOPES,
    claim_due,
    create_subscription,
    delete_subscription,
    deliveries,
    delivery_counts,
    finish_delivery,
    list_subscriptions,
    redeliver_dead,
)
from corridors.reference import countries
from corridors.store import STORE_ERRORS
from publish import middleware
from publish.alerts import scope_value
from publish.api.admin import accepted, admin_answer, authorise
from publish.contract_ops import (
    Delivery,
    DeliveryCounts,
    Signature,
    Webhook,
    WebhookCreated,
    WebhookDeliveries,
    WebhookRedelivered,
    Webhooks,
)
from publish.params import Params
from publish.problems import bad_parameter, not_found

log = logging.getLogger(__name__)

DELIVER_JOB = "alerts-deliver"

#: The signature header, and how old its timestamp may be before a receiver refuses it.
SIGNATURE_HEADER = "Sendcost-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
#: Entry ids of feeds and payloads: tag URIs (RFC 4151) that never change.
TAG = "tag:sendcost.org,2026:"
#: Longest subscription URL accepted.
MAX_URL = 2000
SUBSCRIPTION_KEYS = frozenset({"url", "scope", "value"})


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Sendcost-Signature`` header's value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """What a receiver does (docs/alerts.md): the signature matches and is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if not parts.get("t", "").isdigit() or "v1" not in parts:
        return False
    t = int(parts["t"])
    if abs((time.time() if now is None else now) - t) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def backoff_seconds(attempts: int, base: float, most: float) -> float:
    """The wait after failed attempt ``attempts`` (1, 2, …): base × 2^(attempts-1), at most
    ``most``."""
    return float(min(most, base * 2 ** (attempts - 1)))


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _country(alpha3: str | None) -> dict[str, Any] | None:
    if alpha3 is None:
        return None
    c = countries().get(alpha3)
    return {"alpha2": c.alpha2 if c else None, "alpha3": alpha3, "name": c.name if c else None}


def base_url(app: web.Application, request: web.Request | None = None) -> str:
    """Where links point: ``[api] public_url``, else the request's own origin, else
    nothing (links relative to the service)."""
    public = app[runtime.CONFIG].api.public_url.rstrip("/")
    if public:
        return public
    return str(request.url.origin()) if request is not None else ""


def event_payload(event: Any, base: str) -> dict[str, Any]:
    """An event as a webhook's JSON body (and as the feeds read it)."""
    corridor = (f"{event['source_code']}-{event['destination_code']}"
                if event["source_code"] and event["destination_code"] else None)
    return {
        "id": f"{TAG}event/{event['id']}",
        "event_id": event["id"],
        "kind": event["kind"],
        "title": event["title"],
        "summary": event["summary"],
        "created_at": _iso(event["created_at"]),
        "corridor": corridor,
        "from": _country(event["source_code"]),
        "to": _country(event["destination_code"]),
        "provider": event["provider"],
        "provider_id": event["provider_slug"],
        "period": event["period"],
        "amount_usd": event["amount_usd"],
        "details": event["details"],
        "figures_url": base + event["figures_path"],
        "raw_response_ids": list(event["raw_response_ids"]),
        "feed_url": base + (f"/v1/feeds/corridor/{corridor}.atom" if corridor
                            else "/v1/feeds/global.atom"),
    }


# --- delivery ----------------------------------------------------------------------------------


class WebhookMetrics:
    """The webhooks' series in the app's ``/metrics`` registry."""

    def __init__(self, registry: Any) -> None:
        self.deliveries = Gauge("sendcost_webhook_deliveries",
                                "Webhook deliveries in the queue per state (as of the last "
                                "look at the queue)", ["state"], registry=registry)
        self.attempts = Counter("sendcost_webhook_delivery_attempts",
                                "Webhook delivery attempts made by this process, by outcome "
                                "(delivered, retry, dead)", ["outcome"], registry=registry)
        for state in DELIVERY_STATES:
            self.deliveries.labels(state)
        for outcome in ("delivered", "retry", "dead"):
            self.attempts.labels(outcome)


METRICS = web.AppKey("webhook_metrics", WebhookMetrics)


async def _attempt(session: aiohttp.ClientSession, row: Any, base: str,
                   timeout: float) -> tuple[int | None, str | None]:
    """POST one delivery: (HTTP status, error); delivered when the status is 2xx."""
    body = json.dumps(event_payload(row, base), ensure_ascii=False,
                      separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign(row["secret"], body, int(time.time())),
               "Sendcost-Event-Id": str(row["id"]),
               "Sendcost-Delivery-Id": str(row["delivery_id"])}
    try:
        async with session.post(row["url"], data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.read()
            return resp.status, None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, f"{type(exc).__name__}: {str(exc).strip()}"[:300] or "no detail"


async def deliver_due(app: web.Application) -> int:
    """Deliver what is due in the queue, a batch at a time; the number of attempts made."""
    config = app[runtime.CONFIG].alerts
    pool, session = app[runtime.STORE].pool, app[runtime.HTTP]
    metrics, base = app[METRICS], base_url(app)
    made = 0
    while True:
        batch = await claim_due(pool, config.delivery_batch,
                                config.delivery_timeout_seconds + 30)
        results = await asyncio.gather(*(
            _attempt(session, row, base, config.delivery_timeout_seconds) for row in batch))
        for row, (status, error) in zip(batch, results, strict=True):
            if error is None:
                state, delay = "delivered", 0.0
            elif row["attempts"] >= config.max_attempts:
                state, delay = "dead", 0.0
                log.warning("webhook delivery %d of event %d to %s is dead after %d attempts: "
                            "%s", row["delivery_id"], row["id"], row["url"], row["attempts"],
                            error)
            else:
                state = "pending"
                delay = backoff_seconds(row["attempts"], config.backoff_base_seconds,
                                        config.backoff_max_seconds)
                log.info("webhook delivery %d to %s failed (%s); attempt %d in %g s",
                         row["delivery_id"], row["url"], error, row["attempts"] + 1, delay)
            await finish_delivery(pool, row["delivery_id"], state, http_status=status,
                                  error=error, retry_in_seconds=delay)
            metrics.attempts.labels("retry" if state == "pending" else state).inc()
        made += len(batch)
        if len(batch) < config.delivery_batch:
            break
    for state, n in (await delivery_counts(pool)).items():
        metrics.deliveries.labels(state).set(n)
    return made


async def deliver_job(app: web.Application) -> None:
    """The scheduled delivery: a store outage is logged and the queue looked at next time
    (nothing taken is lost: its lease runs out and it is due again)."""
    try:
        await deliver_due(app)
    except asyncio.CancelledError:
        # The service is stopping: what was taken and not finished is due again when its
        # lease runs out. Ending here keeps APScheduler from logging a traceback.
        log.debug("webhook delivery stopped (the service is stopping)")
    except STORE_ERRORS as exc:
        log.warning("webhooks: the store cannot be reached (%s); deliveries wait",
                    str(exc).strip() or type(exc).__name__)


# --- the admin API -----------------------------------------------------------------------------


def _subscription(row: Any) -> dict[str, Any]:
    """A subscription's row as the fields of ``Subscription``."""
    return {"id": row["id"], "url": row["url"], "scope": row["scope"],
            "value": row["scope_value"], "created_at": _iso(row["created_at"])}


def _webhook(row: Any) -> Webhook:
    return Webhook(**_subscription(row),
                   deliveries=DeliveryCounts(**{s: row[s] for s in DELIVERY_STATES}))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise bad_parameter("body", "the body must be a JSON object such as {\"url\": "
                                    "\"https://…\", \"scope\": \"corridor\", \"value\": "
                                    "\"USA-MEX\"}") from None
    if not isinstance(body, dict):
        raise bad_parameter("body", "the body must be a JSON object with url, scope and "
                                    "(but for scope global) value")
    unknown = sorted(set(body) - SUBSCRIPTION_KEYS)
    if unknown:
        raise bad_parameter(unknown[0], f"unknown key(s) {', '.join(unknown)}; a subscription "
                                        "takes url, scope and value")
    return body


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise bad_parameter("url", "url is required: the http(s) URL events are POSTed to")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > MAX_URL:
        raise bad_parameter("url", f"url must be an http or https URL with a host, at most "
                                   f"{MAX_URL} characters, not {value[:80]!r}")
    return value


async def create_webhook(request: web.Request) -> web.StreamResponse:
    """POST /v1/admin/webhooks: subscribe a URL; the answer shows its secret, once."""
    authorise(request)
    Params(request.query, frozenset())
    body = await _body(request)
    url = _url(body.get("url"))
    scope = body.get("scope", "global")
    if scope not in SCOPES:
        raise bad_parameter("scope", f"scope must be one of {', '.join(SCOPES)}, not "
                                     f"{str(scope)[:40]!r}")
    value = await scope_value(request.app, scope, body.get("value"), "value")
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = await create_subscription(request.app[runtime.STORE].pool, url, scope, value, secret)
    return admin_answer(
        WebhookCreated(**_subscription(row), secret=secret, signature=Signature(
            header=SIGNATURE_HEADER, algorithm="HMAC-SHA256 over '<t>.<body>'",
            tolerance_seconds=SIGNATURE_TOLERANCE_SECONDS)),
        status=201, headers={"Location": f"/v1/admin/webhooks/{row['id']}"})


async def list_webhooks(request: web.Request) -> web.StreamResponse:
    """GET /v1/admin/webhooks: the subscriptions with their deliveries per state."""
    authorise(request)
    Params(request.query, frozenset())
    rows = await list_subscriptions(request.app[runtime.STORE].pool)
    return admin_answer(Webhooks(webhooks=[_webhook(r) for r in rows]))


async def remove_webhook(request: web.Request) -> web.StreamResponse:
    """DELETE /v1/admin/webhooks/{id}: unsubscribe (deliveries not yet made are dropped)."""
    authorise(request)
    Params(request.query, frozenset())
    subscription = _subscription_id(request)
    if not await delete_subscription(request.app[runtime.STORE].pool, subscription):
        raise not_found(f"no webhook subscription {subscription}")
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


DELIVERIES_PARAMS = frozenset({"state", "limit"})


def _subscription_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise bad_parameter("id", f"id must be a subscription's number, not {text[:40]!r}")
    return int(text)


async def list_deliveries(request: web.Request) -> web.StreamResponse:
    """GET /v1/admin/webhooks/{id}/deliveries[?state=][&limit=]: the latest deliveries, with
    their attempts and last error (the dead letters: ``state=dead``)."""
    authorise(request)
    p = Params(request.query, DELIVERIES_PARAMS)
    state = p.raw("state")
    if state is not None and state not in DELIVERY_STATES:
        raise bad_parameter("state", f"state must be one of {', '.join(DELIVERY_STATES)}, "
                                     f"not {state[:40]!r}")
    subscription = _subscription_id(request)
    rows = await deliveries(request.app[runtime.STORE].pool, subscription, state, p.limit())
    if rows is None:
        raise not_found(f"no webhook subscription {subscription}")
    return admin_answer(WebhookDeliveries(webhook=subscription, deliveries=[
        Delivery(id=r["id"], event_id=r["event_id"], kind=r["kind"], title=r["title"],
                 state=r["status"], attempts=r["attempts"],
                 next_attempt_at=(_iso(r["next_attempt_at"]) if r["status"] == "pending"
                                  else None),
                 last_status=r["last_status"], last_error=r["last_error"],
                 delivered_at=_iso(r["delivered_at"]) if r["delivered_at"] else None,
                 created_at=_iso(r["created_at"])) for r in rows]))


async def redeliver(request: web.Request) -> web.StreamResponse:
    """POST /v1/admin/webhooks/{id}/redeliver: queue the dead deliveries again."""
    authorise(request)
    Params(request.query, frozenset())
    subscription = _subscription_id(request)
    pool = request.app[runtime.STORE].pool
    if await deliveries(pool, subscription, "dead", 1) is None:
        raise not_found(f"no webhook subscription {subscription}")
    queued = await redeliver_dead(pool, subscription)
    return accepted(WebhookRedelivered(webhook=subscription, queued=queued))


def setup_webhooks(app: web.Application) -> None:
    app[METRICS] = WebhookMetrics(app[middleware.TELEMETRY].registry)
    app.router.add_post("/v1/admin/webhooks", create_webhook, name="admin_webhooks_create")
    app.router.add_get("/v1/admin/webhooks", list_webhooks, name="admin_webhooks")
    app.router.add_delete("/v1/admin/webhooks/{id}", remove_webhook,
                          name="admin_webhooks_delete")
    app.router.add_get("/v1/admin/webhooks/{id}/deliveries", list_deliveries,
                       name="admin_webhook_deliveries")
    app.router.add_post("/v1/admin/webhooks/{id}/redeliver", redeliver,
                        name="admin_webhook_redeliver")

