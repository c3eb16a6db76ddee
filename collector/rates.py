"""Reference (mid-market) rates: the latest known rate of every pair, and cross rates.

A rate is pay-out units per sending unit (``base`` → ``quote``). A pair with no direct rate
is derived through EUR or USD (the two bases upstreams publish); a derived rate is as old as
its older leg, and its source says how it was derived ("ecb via EUR").
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from decimal import Decimal

from corridors.store import Store

PIVOTS = ("EUR", "USD")
#: The source of the rate 1 between a currency and itself.
IDENTITY = "identity"
_CTX = decimal.Context(prec=12)


@dataclass(frozen=True, slots=True)
class ReferenceRate:
    rate: Decimal
    source: str
    as_of: dt.datetime

    def age_hours(self, at: dt.datetime) -> float:
        """Hours between the rate and ``at``, either way: a rate published after the quote
        (a 2023 rate for a 2019 quote) is as far from it as one published before, never
        age 0. The identity rate of a currency with itself has no age."""
        if self.source == IDENTITY:
            return 0.0
        return abs((at - self.as_of).total_seconds()) / 3600

    def as_of_for(self, at: dt.datetime) -> dt.datetime:
        """When the rate held, as stored with a quote made at ``at``: its ``as_of``; for the
        identity rate (no time of its own, ``as_of`` the end of time), ``at``."""
        return at if self.source == IDENTITY else self.as_of


class RateBook:
    """The latest rate of each (base, quote) pair, whichever source published it."""

    def __init__(self, rows: list[tuple[str, str, Decimal, dt.datetime, str]]) -> None:
        self.direct: dict[tuple[str, str], ReferenceRate] = {}
        for base, quote, rate, as_of, source in rows:
            known = self.direct.get((base, quote))
            if known is None or as_of > known.as_of:
                self.direct[(base, quote)] = ReferenceRate(Decimal(rate), source, as_of)

    @classmethod
    async def load(cls, store: Store, *, known_at: dt.datetime | None = None,
                   sources: list[str] | None = None) -> RateBook:
        """Latest rates; with ``known_at``, only those fetched by then (for a re-parse);
        with ``sources``, only those rate sources' rates."""
        rows = await store.pool.fetch(
            "SELECT DISTINCT ON (base, quote, source) base, quote, rate, as_of, source "
            "FROM reference_rates WHERE ($1::timestamptz IS NULL OR fetched_at <= $1) "
            "AND ($2::text[] IS NULL OR source = ANY($2::text[])) "
            "ORDER BY base, quote, source, as_of DESC", known_at, sources)
        return cls([(r["base"], r["quote"], r["rate"], r["as_of"], r["source"]) for r in rows])

    def _leg(self, base: str, quote: str) -> ReferenceRate | None:
        if base == quote:
            return ReferenceRate(Decimal(1), IDENTITY, dt.datetime.max.replace(tzinfo=dt.UTC))
        direct = self.direct.get((base, quote))
        inverse = self.direct.get((quote, base))
        if inverse is not None and (direct is None or inverse.as_of > direct.as_of):
            return ReferenceRate(_CTX.divide(Decimal(1), inverse.rate), inverse.source,
                                 inverse.as_of)
        return direct

    def rate(self, base: str, quote: str) -> ReferenceRate | None:
        """The freshest reference rate for base → quote, direct or through EUR/USD."""
        best = self._leg(base, quote)
        for pivot in PIVOTS:
            if pivot in (base, quote):
                continue
            a, b = self._leg(base, pivot), self._leg(pivot, quote)
            if a is None or b is None:
                continue
            as_of = min(a.as_of, b.as_of)
            if best is None or as_of > best.as_of:
                source = a.source if a.source == b.source else f"{a.source}+{b.source}"
                best = ReferenceRate(_CTX.multiply(a.rate, b.rate), f"{source} via {pivot}",
                                     as_of)
        return best
