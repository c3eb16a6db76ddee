"""Atom feeds (RFC 4287) of the alert events: per corridor, per sending or receiving country,
per provider, and one of every event (``global``); and the wiring of alerts into the app
(``setup_alerts``: the feeds, the webhooks' admin API) and into ``serve``'s scheduler
(``add_jobs``: the detection, ``publish.alerts``, and the delivery, ``publish.webhooks``).

Each feed and entry has a tag URI (RFC 4151) for id, which never changes; an entry links to
the figures behind it (the API's answer) and names the archived responses they came from
(``raw_responses`` ids; survey data has none). A bad path parameter is the API's usual
problem+json (400 malformed, 422 an unknown country, 404 an unknown provider).
"""

from __future__ import annotations

import datetime as dt
import logging
import xml.etree.ElementTree as ET
from typing import Any

from aiohttp import web
from apscheduler.triggers.cron import CronTrigger

from corridors import runtime
from corridors.alerts import AlertsPruned, feed_events, feeds_since, prune_alerts
from corridors.reference import countries
from corridors.store import STORE_ERRORS
from publish import middleware
from publish.alerts import DETECT_JOB, WATCHER, Watcher, detect_job, scope_value
from publish.data import LICENCE
from publish.params import Params
from publish.responses import send
from publish.webhooks import DELIVER_JOB, TAG, base_url, deliver_job, event_payload, setup_webhooks

log = logging.getLogger(__name__)

ATOM = "application/atom+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(alpha3: str) -> str:
    c = countries().get(alpha3)
    return c.name if c is not None else alpha3


def _title(scope: str, value: str | None) -> str:
    if scope == "corridor" and value is not None:
        src, dst = value.split("-")
        return f"sendcost alerts: {_name(src)} → {_name(dst)}"
    if scope == "sending" and value is not None:
        return f"sendcost alerts: sending from {_name(value)}"
    if scope == "receiving" and value is not None:
        return f"sendcost alerts: sending to {_name(value)}"
    if scope == "provider":
        return f"sendcost alerts: provider {value}"
    return "sendcost alerts: every corridor, provider and bulletin"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def render_feed(scope: str, value: str | None, path: str, events: list[Any],
                since: dt.datetime, base: str) -> bytes:
    """The Atom document of ``events`` (newest first); ``since``: its updated time when it
    has none."""
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _sub(feed, "id", f"{TAG}feed/{scope}" + (f"/{value}" if value else ""))
    _sub(feed, "title", _title(scope, value))
    _sub(feed, "subtitle", "Remittance cost alerts against SDG 10.c: corridors crossing 3% or "
                           "5%, providers' fee and FX margin changes, new cheapest providers, "
                           "new bulletins")
    _sub(feed, "updated", _iso(max((e["created_at"] for e in events), default=since)))
    _sub(feed, "link", rel="self", type=ATOM, href=base + path)
    if scope == "corridor" and value is not None:
        src, dst = value.split("-")
        _sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/?from={src}&to={dst}")
    author = _sub(feed, "author")
    _sub(author, "name", "sendcost")
    _sub(feed, "rights", f"Data: {LICENCE}; survey data: The World Bank, Remittance Prices "
                         "Worldwide (CC BY 4.0)")
    _sub(feed, "generator", "sendcost")
    for e in events:
        payload = event_payload(e, base)
        entry = _sub(feed, "entry")
        _sub(entry, "id", payload["id"])
        _sub(entry, "title", e["title"])
        _sub(entry, "updated", _iso(e["created_at"]))
        _sub(entry, "published", _iso(e["created_at"]))
        _sub(entry, "link", rel="alternate", type="application/json",
             href=payload["figures_url"])
        _sub(entry, "category", term=e["kind"])
        _sub(entry, "summary", e["summary"])
        raw = payload["raw_response_ids"]
        for raw_id in raw:
            _sub(entry, "link", rel="related", type="application/json",
                 href=f"{base}/v1/archive/{raw_id}")
        behind = (f"Archived responses behind these figures: raw_responses "
                  f"{', '.join(map(str, raw))} ({base}/v1/archive/{{id}})." if raw else
                  "No archived response is behind these figures (survey data, imported).")
        _sub(entry, "content", f"{e['summary']}\nFigures: {payload['figures_url']}\n{behind}",
             type="text")
    return (b'<?xml version="1.0" encoding="utf-8"?>\n'
            + ET.tostring(feed, encoding="utf-8", xml_declaration=False))


def _feed(scope: str, parameter: str | None) -> middleware.Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        Params(request.query, frozenset())  # a feed takes no query parameter
        text = request.match_info[parameter] if parameter else None
        value = await scope_value(request.app, scope, text, parameter or "scope")
        pool = request.app[runtime.STORE].pool
        events = await feed_events(pool, scope, value,
                                   request.app[runtime.CONFIG].alerts.feed_entries)
        body = render_feed(scope, value, request.path, events, await feeds_since(pool),
                           base_url(request.app, request))
        return send(request, body, ATOM)

    handler.__name__ = f"feed_{scope}"
    handler.__doc__ = f"The Atom feed of the {scope} alerts."
    return handler


#: scope → (path, the path parameter naming its value)
FEEDS = {
    "global": ("/v1/feeds/global.atom", None),
    "corridor": ("/v1/feeds/corridor/{pair}.atom", "pair"),
    "sending": ("/v1/feeds/sending/{country}.atom", "country"),
    "receiving": ("/v1/feeds/receiving/{country}.atom", "country"),
    "provider": ("/v1/feeds/provider/{provider}.atom", "provider"),
}


def setup_feed_routes(app: web.Application) -> None:
    for scope, (path, parameter) in FEEDS.items():
        app.router.add_get(path, _feed(scope, parameter), name=f"feed_{scope}")


# --- wiring ------------------------------------------------------------------------------------


def setup_alerts(app: web.Application) -> None:
    """The feeds, the admin API of webhooks and the webhooks' metrics (call after the public
    routes)."""
    app[WATCHER] = Watcher()
    setup_feed_routes(app)
    setup_webhooks(app)


def add_jobs(app: web.Application, scheduler: Any) -> None:
    """The detection and the webhook delivery, on ``serve``'s scheduler."""
    config = app[runtime.CONFIG].alerts
    if not config.enabled:
        log.info("alerts are disabled ([alerts] enabled = false)")
        return
    scheduler.add_job(detect_job, "interval", seconds=config.check_seconds, args=[app],
                      id=DETECT_JOB, replace_existing=True, max_instances=1, coalesce=True)
    scheduler.add_job(deliver_job, "interval", seconds=config.delivery_seconds, args=[app],
                      id=DELIVER_JOB, replace_existing=True, max_instances=1, coalesce=True)
    if config.keep_deliveries_days or config.keep_events_days:
        scheduler.add_job(retention_job, CronTrigger(hour=0, minute=30, timezone="UTC"),
                          args=[app], id=RETENTION_JOB, replace_existing=True,
                          max_instances=1, coalesce=True, misfire_grace_time=6 * 3600)


#: serve's daily job: the alerts' retention ([alerts] keep_deliveries_days, keep_events_days).
RETENTION_JOB = "alerts-retention"


async def retention_job(app: web.Application) -> AlertsPruned | None:
    """Drop the ended deliveries and the events past their retention; said once when
    anything was dropped. A database away is said and left to tomorrow's run."""
    config = app[runtime.CONFIG].alerts
    try:
        pruned = await prune_alerts(app[runtime.STORE].pool,
                                    deliveries_days=config.keep_deliveries_days,
                                    events_days=config.keep_events_days)
    except STORE_ERRORS as exc:
        log.error("the alerts' retention failed (tried again tomorrow): %s: %s",
                  type(exc).__name__, exc)
        return None
    if pruned.deliveries or pruned.events:
        log.info("alerts' retention: dropped %d ended webhook deliveries (older than %d days) "
                 "and %d events (older than %s)", pruned.deliveries,
                 config.keep_deliveries_days, pruned.events,
                 f"{config.keep_events_days} days" if config.keep_events_days else "never")
    return pruned
