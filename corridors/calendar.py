"""Business days of the receiving countries: when one business day after a date ends.

The G20 speed target counts "one business day" in the receiving jurisdiction. The public
holidays come from the ``holidays`` package (PyPI, MIT; its own per-country weekend too:
Friday-Saturday in Saudi Arabia, Saturday-Sunday in Mexico). A country that package does not
know is counted with a Saturday-Sunday weekend and no holidays, and its rows say so
(``calendar`` = ``weekends``).
"""

from __future__ import annotations

import datetime as dt
import functools

import holidays
import polars as pl

from corridors.reference import countries

#: Columns of ``next_business_days``' answer.
CALENDAR_SCHEMA: dict[str, pl.DataType] = {
    "destination_code": pl.String(), "sent_on": pl.Date(), "next_business_day": pl.Date(),
    "calendar": pl.String(),
}
#: The weekend of a country the holidays package does not know (Monday = 0).
DEFAULT_WEEKEND = frozenset({5, 6})


@functools.lru_cache(maxsize=512)
def _calendar(alpha3: str, year: int) -> tuple[frozenset[int], frozenset[dt.date], str]:
    """(weekend days, holidays, which calendar) of a country for a year and the next."""
    country = countries().get(alpha3)
    if country is not None and country.alpha2:
        try:
            days = holidays.country_holidays(country.alpha2, years=(year, year + 1))
        except NotImplementedError:
            pass
        else:
            return frozenset(days.weekend), frozenset(days), "holidays"
    return DEFAULT_WEEKEND, frozenset(), "weekends"


def next_business_day(alpha3: str, day: dt.date) -> tuple[dt.date, str]:
    """The first business day after ``day`` in the country, and which calendar said so."""
    weekend, off, calendar = _calendar(alpha3, day.year)
    following = day + dt.timedelta(days=1)
    while following.weekday() in weekend or following in off:
        following += dt.timedelta(days=1)
    return following, calendar


def next_business_days(pairs: pl.DataFrame) -> pl.DataFrame:
    """For each (destination_code, sent_on) row: the next business day in that country.

    ``pairs``: columns destination_code (ISO alpha-3) and sent_on (a date); the answer has
    CALENDAR_SCHEMA's columns, one row per distinct pair, sorted.
    """
    rows = []
    for alpha3, sent_on in pairs.select("destination_code", "sent_on").unique().drop_nulls() \
            .sort("destination_code", "sent_on").iter_rows():
        following, calendar = next_business_day(alpha3, sent_on)
        rows.append((alpha3, sent_on, following, calendar))
    return pl.DataFrame(rows, schema=CALENDAR_SCHEMA, orient="row")
