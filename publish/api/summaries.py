"""How a corridor is shown in every answer: its path parameter, its periods, its summary
and its cheapest service, and the sources a period's answers name."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from aiohttp import web

from corridors.reference import country_code
from metrics.kinds import CHEAPEST_LEAVES_OUT
from publish.contract import Cheapest, CorridorSummary
from publish.data import (
    TARGET_CORRIDOR,
    TARGET_GLOBAL,
    CorridorPeriods,
    Snapshot,
    finite,
)
from publish.params import PAIR_PATTERN
from publish.problems import bad_parameter, not_found, unprocessable

_PAIR = re.compile(PAIR_PATTERN)


def corridor_pair(request: web.Request) -> tuple[str, str]:
    """The corridor of the path parameter ``pair`` (the name problems give, as the OpenAPI
    document does): malformed is 400; an unknown code or one country twice, 422."""
    text = request.match_info["pair"]
    m = _PAIR.match(text)
    if not m:
        raise bad_parameter("pair", "pair must be FROM-TO with ISO 3166 alpha-2 or alpha-3 "
                                    f"codes, such as USA-MEX, not {text[:40]!r}")
    out = []
    for role, code in (("sending", m.group(1)), ("receiving", m.group(2))):
        a3 = country_code(code)
        if a3 is None:
            raise unprocessable("pair", f"pair {text!r}: the {role} country {code!r} is not a "
                                        "known ISO 3166 country code")
        out.append(a3)
    if out[0] == out[1]:
        raise unprocessable("pair", f"pair {text!r} names one country twice: a corridor joins "
                                    "two countries")
    return out[0], out[1]


def corridor_periods(snap: Snapshot, src: str, dst: str) -> CorridorPeriods:
    by_period = snap.index.get((src, dst))
    if not by_period:
        raise not_found(f"no quotes for the corridor {src} → {dst}", corridor=f"{src}-{dst}")
    return by_period


def _distance(average: float | None, target: float) -> float | None:
    return None if average is None else average - target


def corridor_summary(row: dict[str, Any] | None) -> CorridorSummary:
    if row is None:
        return CorridorSummary(
            average=None, smart=None, median=None, services=0, transparent_services=0,
            above_5=None, above_10=None, too_few_services=None, no_transparent_service=None,
            points_above_3=None, points_above_5=None, cheapest=None,
            cheapest_leaves_out=list(CHEAPEST_LEAVES_OUT), caveats={})
    avg = finite(row["average"])
    return CorridorSummary(
        average=avg,
        smart=finite(row["smart"]),
        median=finite(row["median"]),
        services=row["services"],
        transparent_services=row["transparent_services"],
        above_5=row["above_5"],
        above_10=row["above_10"],
        too_few_services=row["too_few_services"],
        no_transparent_service=row["no_transparent_service"],
        points_above_3=_distance(avg, TARGET_GLOBAL),
        points_above_5=_distance(avg, TARGET_CORRIDOR),
        cheapest=cheapest_named(row["cheapest_firm"], row["cheapest_firm_type"],
                                row["cheapest_product"], row["cheapest_total_cost"]),
        # Services flagged so are not named cheapest (they keep their rank, marked).
        cheapest_leaves_out=list(CHEAPEST_LEAVES_OUT),
        # How many of its services carry each caveat (publish.data.CAVEATS says what each
        # means): the averages keep them, a reader is told.
        caveats=corridor_caveats(row.get("caveats")),
    )


def corridor_caveats(text: str | None) -> dict[str, int]:
    """``{"negative_margin": 3, …}`` from the corridor table's "negative_margin:3 …"."""
    return {flag: int(n) for flag, n in (item.split(":") for item in (text or "").split())}


def cheapest_named(firm: str | None, firm_type: str | None, product: str | None,
                   total_cost: float | None) -> Cheapest | None:
    """A corridor's cheapest service as every endpoint names it (None without one)."""
    if firm is None:
        return None
    return Cheapest(provider=firm, firm_type=firm_type, product=product or None,
                    total_cost_pct=finite(total_cost))


def sources_used(snap: Snapshot, label: str, amount_usd: int | None = None) -> list[str]:
    """The sources of a period's corridors (at one price point, or at any)."""
    table = snap.corridor_table.filter(pl.col("period") == label)
    if amount_usd is not None:
        table = table.filter(pl.col("amount_usd") == amount_usd)
    return table["sources"].explode().drop_nulls().unique().sort().to_list() or ["rpw"]
