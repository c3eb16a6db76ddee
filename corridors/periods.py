"""Periods: quarters (RPW's survey rounds) and months (sendcost's own cadence).

Canonical forms are ``2011Q1`` and ``2026-11``. Accepted input also includes RPW's own
``2011_1Q``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from corridors.errors import BadPeriod

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_RPW_QUARTER = re.compile(r"^(\d{4})_([1-4])Q$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    year: int
    # quarter periods: quarter 1-4, month 0; month periods: the month 1-12, quarter 0
    quarter: int
    month: int

    @property
    def is_quarter(self) -> bool:
        return self.month == 0

    def __str__(self) -> str:
        if self.is_quarter:
            return f"{self.year}Q{self.quarter}"
        return f"{self.year}-{self.month:02d}"

    @property
    def start(self) -> dt.datetime:
        m = (self.quarter - 1) * 3 + 1 if self.is_quarter else self.month
        return dt.datetime(self.year, m, 1, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """Exclusive end."""
        m = (self.quarter - 1) * 3 + 1 if self.is_quarter else self.month
        m += 3 if self.is_quarter else 1
        y = self.year + (m - 1) // 12
        return dt.datetime(y, (m - 1) % 12 + 1, 1, tzinfo=dt.UTC)

    def previous(self, steps: int = 1) -> Period:
        if self.is_quarter:
            idx = self.year * 4 + self.quarter - 1 - steps
            return Period(idx // 4, idx % 4 + 1, 0)
        idx = self.year * 12 + self.month - 1 - steps
        return Period(idx // 12, 0, idx % 12 + 1)

    @property
    def months(self) -> list[str]:
        """The month periods a quarter covers (itself for a month)."""
        if not self.is_quarter:
            return [str(self)]
        first = (self.quarter - 1) * 3 + 1
        return [f"{self.year}-{m:02d}" for m in range(first, first + 3)]

    @property
    def labels(self) -> list[str]:
        """The stored period labels whose quotes belong to this period: a quarter is its own
        label (RPW) and its three months (sendcost's collectors); a month is itself."""
        return [str(self), *self.months] if self.is_quarter else [str(self)]

    @property
    def quarter_of(self) -> Period:
        if self.is_quarter:
            return self
        return Period(self.year, (self.month - 1) // 3 + 1, 0)


def parse_period(text: str) -> Period:
    """Parse ``2011Q1``, ``2011_1Q`` or ``2026-11``; raise BadPeriod saying what is expected."""
    t = text.strip()
    if m := _QUARTER.match(t.upper()) or _RPW_QUARTER.match(t.upper()):
        return Period(int(m.group(1)), int(m.group(2)), 0)
    if m := _MONTH.match(t):
        return Period(int(m.group(1)), 0, int(m.group(2)))
    raise BadPeriod(
        f"period {text!r} is not understood: expected a quarter like 2011Q3 (or RPW's "
        "2011_3Q) or a month like 2026-11"
    )


def month_of(moment: dt.datetime) -> str:
    return f"{moment.year}-{moment.month:02d}"
