"""Alerts that come to the reader: events found in the served figures, and their wiring.

After each refresh of the snapshot the API serves (a collection, an import), the figures it
holds are compared with those last seen (``metrics.alerts``, pure Polars) and what moved is
recorded once as an event (``corridors.alerts``): a corridor's average or SmaRT crossing 3 %
or 5 %, a provider's fee or FX margin moving by more than ``[alerts]``'s thresholds, a new
cheapest provider; a published bulletin is one too. Events are real data only, as the API's
default answers are (emulated quotes never raise an alert). They are read as Atom feeds
(``publish.feeds``) and pushed to webhooks (``publish.webhooks``); ``publish.feeds`` wires
the three into the app and ``serve``'s scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import polars as pl
from aiohttp import web

from corridors import runtime
from corridors.alerts import SCOPES, Figures, NewEvent, provider_names, provider_slug
from corridors.alerts import record_detection as _record_detection
from corridors.alerts import record_event as _record_event
from corridors.config import Config
from corridors.reference import countries, country_code
from corridors.store import STORE_ERRORS
from metrics import alerts as moved
from publish.data import DATA, Snapshot
from publish.params import PAIR_PATTERN
from publish.problems import bad_parameter, not_found, unprocessable

log = logging.getLogger(__name__)

DETECT_JOB = "alerts-detect"

_MEASURES = {"average": "average total cost",
             "smart": "SmaRT (average of the three cheapest services)"}
_PRICE_MEASURES = {"fee_pct": ("fee_changed", "fee"),
                   "fx_margin_pct": ("fx_margin_changed", "FX margin")}


class Watcher:
    """Which snapshot this process last compared (so that an unchanged one costs nothing)."""

    def __init__(self) -> None:
        self.seen: Snapshot | None = None
        #: The store could not be reached at the last look (logged once).
        self.unreachable = False


WATCHER = web.AppKey("alerts_watcher", Watcher)


def _name(alpha3: str) -> str:
    c = countries().get(alpha3)
    return c.name if c is not None else alpha3


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}%"


def _corridor_path(src: str, dst: str, period: str, usd: int) -> str:
    return f"/v1/corridors/{src}-{dst}?period={period}&amount={usd}"


def _quote_ids(snap: Snapshot) -> pl.DataFrame:
    """The ids of the latest quotes behind each corridor, period, price point and service."""
    if not snap.quotes.height:
        return pl.DataFrame(schema={"source_code": pl.String, "destination_code": pl.String,
                                    "period": pl.String, "amount_usd": pl.Int32,
                                    "service_id": pl.String, "id": pl.Int64})
    return snap.quotes.select(
        pl.col("source_code", "destination_code", "period").cast(pl.String),
        pl.col("amount_usd").cast(pl.Int32), pl.col("service_id").cast(pl.String),
        pl.col("id").cast(pl.Int64))


def _ids_of(quotes: pl.DataFrame, **where: Any) -> tuple[int, ...]:
    return tuple(sorted(quotes.filter(**where).get_column("id").to_list()))


def _where(r: dict[str, Any]) -> tuple[str, str, int, str]:
    return r["source_code"], r["destination_code"], r["amount_usd"], r["period"]


def _changed(now: pl.DataFrame, before: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``now`` not in ``before`` as they are: the figures to write."""
    return now.join(before, on=now.columns, how="anti", nulls_equal=True)


def figures_now(snap: Snapshot, config: Config, before: Figures) -> Figures:
    """The corridor, service and global figures of ``snap``, in the shapes of ``before``."""
    corridors = moved.latest_corridor_figures(snap.corridor_table.lazy()).collect()
    frames = [frame.lazy().select(*moved.SERVICE_KEY[:1], *moved.SERVICE_FIGURES[1:],
                                  "transparent", "total_cost_pct")
              .with_columns(pl.lit(period).alias("period"),
                            pl.lit(usd, pl.Int32).alias("amount_usd"))
              for (period, usd), frame in sorted(snap.services.items())]
    if frames:
        services_all = pl.concat(frames, how="diagonal")
        services, global_ = pl.collect_all([
            moved.latest_service_figures(services_all),
            moved.global_figures(services_all, snap.corridor_table.lazy(),
                                 min_corridors=config.bulletin.minimum.global_corridors)])
    else:
        services, global_ = before[1].clear(), before[2].clear()
    return (corridors.select(before[0].columns).cast(before[0].schema),
            services.select(before[1].columns).cast(before[1].schema),
            global_.select(before[2].columns).cast(before[2].schema))


def _crossed(r: dict[str, Any]) -> tuple[str, str]:
    """(rose above / fell to or below, above / at or below) for a crossing row."""
    rose = r["direction"] == "above"
    return ("rose above", "above") if rose else ("fell to or below", "at or below")


def _moved(r: dict[str, Any]) -> dict[str, Any]:
    return {"measure": r["measure"], "threshold": r["threshold"], "direction": r["direction"],
            "before": r["before"], "after": r["after"], "period_before": r["period_before"]}


def _corridor_event(r: dict[str, Any], version: int, quotes: pl.DataFrame) -> NewEvent:
    src, dst, usd, period = _where(r)
    what, target = _MEASURES[r["measure"]], r["threshold"]
    verb, side = _crossed(r)
    goal = "no corridor above 5%" if target == 5 else "3% on average by 2030"
    return NewEvent(
        key=f"corridor_crossed:{src}-{dst}:{usd}:{r['measure']}:{target:g}:{r['direction']}:"
            f"{version}",
        kind="corridor_crossed",
        title=f"{_name(src)} → {_name(dst)}, USD {usd}: the {what} {verb} {target:g}%",
        summary=f"Sending USD {usd} from {_name(src)} to {_name(dst)}: the {what} went from "
                f"{_pct(r['before'])} ({r['period_before']}) to {_pct(r['after'])} "
                f"({period}), {side} {target:g}% (SDG 10.c: {goal}).",
        figures_path=_corridor_path(src, dst, period, usd), source_code=src,
        destination_code=dst, period=period, amount_usd=usd, details=_moved(r),
        quote_ids=_ids_of(quotes, source_code=src, destination_code=dst, period=period,
                          amount_usd=usd))


def _global_event(r: dict[str, Any], version: int) -> NewEvent:
    usd, period, target = r["amount_usd"], r["period"], r["threshold"]
    what = {"average": "global average total cost (SDG 10.c.1)",
            "smart": "global SmaRT"}[r["measure"]]
    verb, side = _crossed(r)
    return NewEvent(
        key=f"global_crossed:{usd}:{r['measure']}:{target:g}:{r['direction']}:{version}",
        kind="global_crossed",
        title=f"Global, USD {usd}: the {what} {verb} {target:g}%",
        summary=f"Sending USD {usd}, all corridors: the {what} went from {_pct(r['before'])} "
                f"({r['period_before']}) to {_pct(r['after'])} ({period}), {side} "
                f"{target:g}% (SDG 10.c: 3% on average by 2030, no corridor above 5%).",
        figures_path=f"/v1/indicators?period={period}&amount={usd}", period=period,
        amount_usd=usd, details=_moved(r))


def _cheapest_event(r: dict[str, Any], version: int, quotes: pl.DataFrame) -> NewEvent:
    src, dst, usd, period = _where(r)
    return NewEvent(
        key=f"new_cheapest:{src}-{dst}:{usd}:{provider_slug(r['after'])}:{version}",
        kind="new_cheapest",
        title=f"{_name(src)} → {_name(dst)}, USD {usd}: {r['after']} is now the cheapest",
        summary=f"Sending USD {usd} from {_name(src)} to {_name(dst)} in {period}: the "
                f"cheapest provider is {r['after']} ({_pct(r['after_total_cost'])}), where "
                f"it was {r['before']} ({_pct(r['before_total_cost'])}, {r['period_before']}).",
        figures_path=_corridor_path(src, dst, period, usd), source_code=src,
        destination_code=dst, provider=r["after"], period=period, amount_usd=usd,
        details={"before": r["before"], "after": r["after"],
                 "before_total_cost_pct": r["before_total_cost"],
                 "after_total_cost_pct": r["after_total_cost"],
                 "period_before": r["period_before"]},
        quote_ids=_ids_of(quotes, source_code=src, destination_code=dst, period=period,
                          amount_usd=usd))


def _price_event(r: dict[str, Any], version: int, quotes: pl.DataFrame) -> NewEvent:
    src, dst, usd, period = _where(r)
    kind, what = _PRICE_MEASURES[r["measure"]]
    return NewEvent(
        key=f"{kind}:{r['service_id']}:{usd}:{version}",
        kind=kind,
        title=f"{r['firm']}: the {what} {'rose' if r['change'] > 0 else 'fell'} by "
              f"{abs(r['change']):.2f} points ({_name(src)} → {_name(dst)}, USD {usd})",
        summary=f"{r['firm']}, sending USD {usd} from {_name(src)} to {_name(dst)}: the "
                f"{what} went from {_pct(r['before'])} of the amount sent "
                f"({r['period_before']}) to {_pct(r['after'])} ({period}).",
        figures_path=_corridor_path(src, dst, period, usd), source_code=src,
        destination_code=dst, provider=r["firm"], period=period, amount_usd=usd,
        details={"measure": r["measure"], "service_id": r["service_id"],
                 "before": r["before"], "after": r["after"], "change": r["change"],
                 "period_before": r["period_before"]},
        quote_ids=_ids_of(quotes, service_id=r["service_id"], period=period, amount_usd=usd))


def find_events(snap: Snapshot, config: Config, before: Figures
                ) -> tuple[list[NewEvent], Figures]:
    """The events between the figures ``before`` and those of ``snap``, and the figures
    that changed, to keep (blocking: run in a thread)."""
    now = figures_now(snap, config, before)
    old = [f.lazy() for f in before]
    crossings, global_crossings, cheapest, prices = pl.collect_all([
        moved.corridor_crossings(old[0], now[0].lazy()),
        moved.corridor_crossings(old[2], now[2].lazy(), key=moved.GLOBAL_KEY),
        moved.new_cheapest(old[0], now[0].lazy()),
        moved.price_changes(old[1], now[1].lazy(),
                            fee_points=config.alerts.fee_change_points,
                            fx_margin_points=config.alerts.fx_margin_change_points)])
    quotes, version = _quote_ids(snap), snap.version
    events = [*(_corridor_event(r, version, quotes) for r in crossings.iter_rows(named=True)),
              *(_global_event(r, version) for r in global_crossings.iter_rows(named=True)),
              *(_cheapest_event(r, version, quotes) for r in cheapest.iter_rows(named=True)),
              *(_price_event(r, version, quotes) for r in prices.iter_rows(named=True))]
    changed = tuple(_changed(n, b) for n, b in zip(now, before, strict=True))
    return events, (changed[0], changed[1], changed[2])


async def detect(app: web.Application) -> list[int] | None:
    """Compare the snapshot served now with the figures last seen and record the events;
    their ids (None: nothing to compare, or another process saw a newer snapshot)."""
    data = app.get(DATA)
    snap = data.current() if data is not None else None
    watcher = app[WATCHER]
    if snap is None or snap is watcher.seen:
        return None
    config = app[runtime.CONFIG]

    async def find(before: Figures) -> tuple[list[NewEvent], Figures]:
        return await asyncio.to_thread(find_events, snap, config, before)

    ids = await _record_detection(app[runtime.STORE].pool, snap.version, find)
    watcher.seen = snap
    if ids:
        log.info("alerts: %d new event(s) at quote %d", len(ids), snap.version)
    return ids


async def detect_job(app: web.Application) -> None:
    """The scheduled detection: an outage is logged once, and its end."""
    watcher = app[WATCHER]
    try:
        await detect(app)
    except asyncio.CancelledError:
        # The service is stopping: the detection's transaction is rolled back, and the same
        # figures are compared again at the next start.
        log.debug("alerts: detection stopped (the service is stopping)")
        return
    except STORE_ERRORS as exc:
        if not watcher.unreachable:
            watcher.unreachable = True
            log.warning("alerts: the store cannot be reached (%s); events are looked for "
                        "again when it answers", str(exc).strip() or type(exc).__name__)
        return
    if watcher.unreachable:
        watcher.unreachable = False
        log.info("alerts: the store answers again")


async def bulletin_published(app: Any, period: str) -> None:
    """Record the event of a published bulletin (once per period; a bulletin published
    again is not news)."""
    if not app[runtime.CONFIG].alerts.enabled:
        return
    await _record_event(app[runtime.STORE].pool, NewEvent(
        key=f"new_bulletin:{period}", kind="new_bulletin",
        title=f"The sendcost bulletin of {period} is published",
        summary=f"The bulletin of {period}: the SDG 10.c figures, corridor by corridor, with "
                "their base, in HTML, PDF, Markdown and CSV.",
        figures_path=f"/v1/bulletins/{period}/", period=period, details={"period": period}))


# --- what a feed or subscription watches --------------------------------------------------------


async def scope_value(app: web.Application, scope: str, text: str | None,
                      parameter: str) -> str | None:
    """The canonical value a feed or subscription of ``scope`` watches, from ``text``
    (``USA-MEX`` or ``US-MX`` for a corridor, an alpha-2 or alpha-3 code for a country, a
    provider's id): 400 when malformed, 422 when it names no known country, 404 when no
    provider has that id."""
    if scope not in SCOPES:
        raise bad_parameter(parameter, f"{parameter} must be one of {', '.join(SCOPES)}, "
                                       f"not {str(scope)[:40]!r}")
    if scope == "global":
        if text is not None:
            raise bad_parameter(parameter, "the global scope watches everything: give no "
                                           "value")
        return None
    if not isinstance(text, str) or not text:
        raise bad_parameter(parameter, f"a {scope} scope needs a value")
    if scope == "corridor":
        m = re.match(PAIR_PATTERN, text)
        if not m:
            raise bad_parameter(parameter, f"{parameter} must be FROM-TO with ISO 3166 "
                                           f"alpha-2 or alpha-3 codes, such as USA-MEX, not "
                                           f"{text[:40]!r}")
        codes = [_country(code, parameter, text) for code in m.groups()]
        if codes[0] == codes[1]:
            raise unprocessable(parameter, f"{parameter} {text!r} names one country twice: a "
                                           "corridor joins two countries")
        return f"{codes[0]}-{codes[1]}"
    if scope in ("sending", "receiving"):
        if not text.isalpha() or len(text) not in (2, 3):
            raise bad_parameter(parameter, f"{parameter} must be an ISO 3166 alpha-2 or "
                                           f"alpha-3 country code, such as MEX, not "
                                           f"{text[:40]!r}")
        return _country(text, parameter, text)
    slug = text.lower()
    known = {provider_slug(n) for n in await provider_names(app[runtime.STORE].pool)}
    if slug not in known:
        raise not_found(f"no provider has the id {text[:80]!r} (a provider's id is its name "
                        "in lower case, hyphens between words: western-union)")
    return slug


def _country(code: str, parameter: str, text: str) -> str:
    a3 = country_code(code)
    if a3 is None:
        raise unprocessable(parameter, f"{parameter} {text[:40]!r}: {code!r} is not a known "
                                       "ISO 3166 country code")
    return a3
