"""The PostgreSQL side of alerts (migration 0009): events, the figures they are measured
against, webhook subscriptions and the queue of their deliveries.

An event is written once: its ``event_key`` is unique, and a detection holds
``alert_cursor``'s row for its whole transaction, so that replicas take turns and one whose
snapshot is not newer than the last one compared does nothing. A delivery is a queue row taken with
``FOR UPDATE SKIP LOCKED`` by whichever process delivers; taking it moves its next attempt
past the time one attempt may take (a lease), so a process killed in the middle of a
delivery leaves it to be tried again, never lost (receivers see a delivery at least once).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import polars as pl

#: What a feed or a subscription watches.
SCOPES = ("global", "corridor", "sending", "receiving", "provider")
#: The states of a delivery.
DELIVERY_STATES = ("pending", "delivered", "dead")


def provider_slug(name: str) -> str:
    """A provider's id in feed URLs: its name in lower case, runs of anything but a-z and
    0-9 made one hyphen (``Western Union`` → ``western-union``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class NewEvent:
    """An event to record. ``quote_ids``: the quotes behind it, whose archived responses
    the event names (``raw_response_ids``)."""

    key: str
    kind: str
    title: str
    summary: str
    figures_path: str
    source_code: str | None = None
    destination_code: str | None = None
    provider: str | None = None
    period: str | None = None
    amount_usd: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    quote_ids: tuple[int, ...] = ()


#: The figures last seen, as frames: (corridor figures, service figures, global figures).
Figures = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]
#: Given the figures last seen: the events, and the figures to keep for next time.
Detect = Callable[[Figures], Awaitable[tuple[list[NewEvent], Figures]]]

CORRIDOR_FIGURES_SCHEMA: dict[str, pl.DataType] = {
    "source_code": pl.String(), "destination_code": pl.String(), "amount_usd": pl.Int32(),
    "period": pl.String(), "average": pl.Float64(), "smart": pl.Float64(),
    "cheapest_firm": pl.String(), "cheapest_total_cost": pl.Float64(),
}
SERVICE_FIGURES_SCHEMA: dict[str, pl.DataType] = {
    "service_id": pl.String(), "amount_usd": pl.Int32(), "period": pl.String(),
    "firm": pl.String(), "source_code": pl.String(), "destination_code": pl.String(),
    "fee_pct": pl.Float64(), "fx_margin_pct": pl.Float64(),
}
GLOBAL_FIGURES_SCHEMA: dict[str, pl.DataType] = {
    "amount_usd": pl.Int32(), "period": pl.String(), "average": pl.Float64(),
    "smart": pl.Float64(), "corridors": pl.Int64(),
}


async def _frame(conn: asyncpg.Connection, table: str,
                 schema: dict[str, pl.DataType]) -> pl.DataFrame:
    rows = await conn.fetch(f"SELECT {', '.join(schema)} FROM {table}")
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


async def _upsert(conn: asyncpg.Connection, table: str, frame: pl.DataFrame,
                  key: Sequence[str], types: dict[str, str]) -> None:
    if not frame.height:
        return
    columns = list(types)
    rest = [c for c in columns if c not in key]
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest("
        + ", ".join(f"${i}::{types[c]}[]" for i, c in enumerate(columns, 1)) + ") "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in rest),
        *(frame.get_column(c).to_list() for c in columns))


_CORRIDOR_TYPES = {"source_code": "text", "destination_code": "text", "amount_usd": "smallint",
                   "period": "text", "average": "float8", "smart": "float8",
                   "cheapest_firm": "text", "cheapest_total_cost": "float8"}
_SERVICE_TYPES = {"service_id": "text", "amount_usd": "smallint", "period": "text",
                  "firm": "text", "source_code": "text", "destination_code": "text",
                  "fee_pct": "float8", "fx_margin_pct": "float8"}
_GLOBAL_TYPES = {"amount_usd": "smallint", "period": "text", "average": "float8",
                 "smart": "float8", "corridors": "integer"}


async def record_detection(pool: asyncpg.Pool, version: int, detect: Detect) -> list[int] | None:
    """Run ``detect`` against the figures last seen and record its events and the figures it
    gives back (those that changed), in one transaction holding the cursor; the ids of the
    events written (an event seen before is not written again). None, with nothing done,
    when the figures were last seen at this snapshot ``version`` (another replica, or this
    process before a restart, compared them) or a newer one."""
    async with pool.acquire() as conn, conn.transaction():
        seen = await conn.fetchval("SELECT version FROM alert_cursor WHERE id = 1 FOR UPDATE")
        if seen is None or version <= seen:
            return None
        before = (await _frame(conn, "alert_corridor_figures", CORRIDOR_FIGURES_SCHEMA),
                  await _frame(conn, "alert_service_figures", SERVICE_FIGURES_SCHEMA),
                  await _frame(conn, "alert_global_figures", GLOBAL_FIGURES_SCHEMA))
        events, (corridors, services, global_) = await detect(before)
        ids = await _insert_events(conn, events)
        await _upsert(conn, "alert_corridor_figures", corridors,
                      ("source_code", "destination_code", "amount_usd"), _CORRIDOR_TYPES)
        await _upsert(conn, "alert_service_figures", services, ("service_id", "amount_usd"),
                      _SERVICE_TYPES)
        await _upsert(conn, "alert_global_figures", global_, ("amount_usd",), _GLOBAL_TYPES)
        await conn.execute("UPDATE alert_cursor SET version = $1, updated_at = now() "
                           "WHERE id = 1", version)
        return ids


async def record_event(pool: asyncpg.Pool, event: NewEvent) -> int | None:
    """Record one event (a bulletin published) and queue its deliveries; its id, or None
    when it was recorded before."""
    async with pool.acquire() as conn, conn.transaction():
        ids = await _insert_events(conn, [event])
    return ids[0] if ids else None


async def _insert_events(conn: asyncpg.Connection, events: list[NewEvent]) -> list[int]:
    if not events:
        return []
    quote_ids = sorted({q for e in events for q in e.quote_ids})
    raw: dict[int, int] = {}
    if quote_ids:
        raw = {r["id"]: r["raw_response_id"] for r in await conn.fetch(
            "SELECT id, raw_response_id FROM quotes WHERE id = ANY ($1::bigint[]) "
            "AND raw_response_id IS NOT NULL", quote_ids)}
    ids = []
    for e in events:
        new_id = await conn.fetchval(
            "INSERT INTO alert_events (event_key, kind, title, summary, source_code, "
            "destination_code, provider, provider_slug, period, amount_usd, details, "
            "figures_path, raw_response_ids) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (event_key) DO NOTHING RETURNING id",
            e.key, e.kind, e.title, e.summary, e.source_code, e.destination_code, e.provider,
            provider_slug(e.provider) if e.provider else None, e.period, e.amount_usd,
            e.details, e.figures_path, sorted({raw[q] for q in e.quote_ids if q in raw}))
        if new_id is not None:
            ids.append(new_id)
    if ids:
        await conn.execute(
            "INSERT INTO webhook_deliveries (subscription_id, event_id) "
            "SELECT s.id, e.id FROM alert_events e JOIN webhook_subscriptions s ON "
            + _MATCHES + " WHERE e.id = ANY ($1::bigint[]) ON CONFLICT DO NOTHING", ids)
    return ids


#: Whether event ``e`` is one subscription ``s`` watches.
_MATCHES = ("(s.scope = 'global' "
            "OR (s.scope = 'corridor' AND s.scope_value = e.source_code || '-' "
            "|| e.destination_code) "
            "OR (s.scope = 'sending' AND s.scope_value = e.source_code) "
            "OR (s.scope = 'receiving' AND s.scope_value = e.destination_code) "
            "OR (s.scope = 'provider' AND s.scope_value = e.provider_slug))")


def _scope_filter(scope: str, value: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause of a feed's events, and its arguments."""
    if scope == "global":
        return "TRUE", []
    if scope == "corridor":
        assert value is not None
        src, dst = value.split("-")
        return "source_code = $1 AND destination_code = $2", [src, dst]
    column = {"sending": "source_code", "receiving": "destination_code",
              "provider": "provider_slug"}[scope]
    return f"{column} = $1", [value]


async def feed_events(pool: asyncpg.Pool, scope: str, value: str | None,
                      limit: int) -> list[asyncpg.Record]:
    """The latest ``limit`` events a feed of ``scope`` (``value``) shows, newest first."""
    where, args = _scope_filter(scope, value)
    return await pool.fetch(f"SELECT * FROM alert_events WHERE {where} "
                            f"ORDER BY id DESC LIMIT {int(limit)}", *args)


async def feeds_since(pool: asyncpg.Pool) -> dt.datetime:
    """When alerts began (migration 0009 applied): the updated time of a feed without
    entries, so that it stays the same until one comes."""
    return await pool.fetchval("SELECT coalesce((SELECT applied_at FROM schema_migrations "
                               "WHERE version = 9), 'epoch'::timestamptz)")


async def provider_names(pool: asyncpg.Pool) -> list[str]:
    """Every provider (firm) the store knows, by name."""
    return [r["name"] for r in await pool.fetch("SELECT DISTINCT name FROM firms ORDER BY 1")]


# --- subscriptions -----------------------------------------------------------------------------


_SUBSCRIPTION = ("s.id, s.url, s.scope, s.scope_value, s.created_at, "
                 "count(d.id) FILTER (WHERE d.status = 'pending') AS pending, "
                 "count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered, "
                 "count(d.id) FILTER (WHERE d.status = 'dead') AS dead")


async def create_subscription(pool: asyncpg.Pool, url: str, scope: str, value: str | None,
                              secret: str) -> asyncpg.Record:
    return await pool.fetchrow(
        "INSERT INTO webhook_subscriptions (url, scope, scope_value, secret) "
        "VALUES ($1, $2, $3, $4) RETURNING id, url, scope, scope_value, created_at",
        url, scope, value, secret)


async def list_subscriptions(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions s "
        "LEFT JOIN webhook_deliveries d ON d.subscription_id = s.id GROUP BY s.id ORDER BY s.id")


async def delete_subscription(pool: asyncpg.Pool, subscription_id: int) -> bool:
    """Delete a subscription and its deliveries (those pending are not sent); False when
    there is none of that id."""
    done = await pool.execute("DELETE FROM webhook_subscriptions WHERE id = $1",
                              subscription_id)
    return str(done) != "DELETE 0"


# --- the delivery queue ------------------------------------------------------------------------


async def claim_due(pool: asyncpg.Pool, limit: int, lease_seconds: float
                    ) -> list[asyncpg.Record]:
    """Take up to ``limit`` deliveries due now (one attempt each, counted): their id,
    attempt number, subscription (url, secret) and event. Rows another process holds are
    skipped; a taken row is not due again for ``lease_seconds``, the longest an attempt
    may take, so that it is tried again if this process dies before saying how it went."""
    return await pool.fetch(
        "WITH due AS (SELECT id FROM webhook_deliveries "
        "  WHERE status = 'pending' AND next_attempt_at <= now() "
        "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED), "
        "taken AS (UPDATE webhook_deliveries d SET attempts = d.attempts + 1, "
        "  next_attempt_at = now() + make_interval(secs => $2) "
        "  FROM due WHERE d.id = due.id RETURNING d.id, d.attempts, d.subscription_id, "
        "  d.event_id) "
        "SELECT t.id AS delivery_id, t.attempts, s.url, s.secret, e.* FROM taken t "
        "JOIN webhook_subscriptions s ON s.id = t.subscription_id "
        "JOIN alert_events e ON e.id = t.event_id ORDER BY t.id", limit, lease_seconds)


async def finish_delivery(pool: asyncpg.Pool, delivery_id: int, state: str, *,
                          http_status: int | None, error: str | None,
                          retry_in_seconds: float = 0.0) -> None:
    """Record how an attempt went: ``delivered``, ``dead``, or ``pending`` again, to be
    tried in ``retry_in_seconds``."""
    await pool.execute(
        "UPDATE webhook_deliveries SET status = $2, last_status = $3, last_error = $4, "
        "delivered_at = CASE WHEN $2 = 'delivered' THEN now() END, "
        "next_attempt_at = now() + make_interval(secs => $5) WHERE id = $1",
        delivery_id, state, http_status, error, retry_in_seconds)


async def deliveries(pool: asyncpg.Pool, subscription_id: int, state: str | None,
                     limit: int) -> list[asyncpg.Record] | None:
    """A subscription's latest deliveries (of one state), newest first, with their event;
    None when there is no such subscription."""
    if await pool.fetchval("SELECT 1 FROM webhook_subscriptions WHERE id = $1",
                           subscription_id) is None:
        return None
    return await pool.fetch(
        "SELECT d.id, d.event_id, e.kind, e.title, d.status, d.attempts, d.next_attempt_at, "
        "d.last_status, d.last_error, d.delivered_at, d.created_at FROM webhook_deliveries d "
        "JOIN alert_events e ON e.id = d.event_id WHERE d.subscription_id = $1 "
        "AND ($2::text IS NULL OR d.status = $2) ORDER BY d.id DESC LIMIT $3",
        subscription_id, state, limit)


async def redeliver_dead(pool: asyncpg.Pool, subscription_id: int) -> int:
    """Queue a subscription's dead deliveries again, with their attempts back to none (the
    receiver is fixed); how many."""
    done = await pool.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, "
        "next_attempt_at = now() WHERE subscription_id = $1 AND status = 'dead'",
        subscription_id)
    return int(str(done).split()[-1])


async def delivery_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Deliveries per state (every state named, 0 included)."""
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    for r in await pool.fetch("SELECT status, count(*) AS n FROM webhook_deliveries "
                              "GROUP BY status"):
        counts[r["status"]] = r["n"]
    return counts


# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertsPruned:
    """What one pass of the alerts' retention dropped."""

    deliveries: int
    events: int


async def _delete_in_batches(pool: asyncpg.Pool, sql: str, *args: Any,
                             batch: int = 10_000) -> int:
    """Run a ``DELETE … WHERE id IN (SELECT id … LIMIT $n)`` until it deletes fewer than
    ``batch`` rows (each batch its own short transaction, so a long history is dropped
    without one long lock); how many rows in all."""
    total = 0
    while True:
        done = int(str(await pool.execute(sql, *args, batch)).split()[-1])
        total += done
        if done < batch:
            return total


async def prune_alerts(pool: asyncpg.Pool, *, deliveries_days: int, events_days: int,
                       now: dt.datetime | None = None) -> AlertsPruned:
    """Drop the deliveries that ended (delivered or dead) more than ``deliveries_days`` ago
    and the events older than ``events_days`` that no delivery still waits for (their ended
    deliveries go with them); 0 keeps that kind forever. A pending delivery and its event
    are never dropped, whatever their age."""
    now = now or dt.datetime.now(dt.UTC)
    deliveries = events = 0
    if deliveries_days > 0:
        deliveries = await _delete_in_batches(
            pool,
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
            "WHERE status <> 'pending' AND coalesce(delivered_at, next_attempt_at) < $1 "
            "LIMIT $2)", now - dt.timedelta(days=deliveries_days))
    if events_days > 0:
        events = await _delete_in_batches(
            pool,
            "DELETE FROM alert_events WHERE id IN (SELECT e.id FROM alert_events e "
            "WHERE e.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d "
            "WHERE d.event_id = e.id AND d.status = 'pending') LIMIT $2)",
            now - dt.timedelta(days=events_days))
    return AlertsPruned(deliveries, events)
