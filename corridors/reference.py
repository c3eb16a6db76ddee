"""Reference data: countries and currencies, with World Bank regions and G8/G20 membership.

Sources, both maintained upstream and shipped with the package:
- ISO 3166 / ISO 4217 names and codes: the ``pycountry`` package; a country's currency: the
  Unicode CLDR territory data via ``babel``.
- World Bank region, income group, G8/G20 membership: ``corridors/data/wb_countries.csv``
  (World Bank Country and Lending Groups; its header states the edition), and the regional
  changes since, each with the date it applies from: ``corridors/data/wb_region_changes.csv``.
  ``countries_frame(period)`` gives the classification in force in a period;
  ``classification_for`` lays a file's own columns (RPW's ``source_region``…) over it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import logging
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pycountry
from babel.numbers import get_territory_currencies

from corridors.types import Country, Currency

if TYPE_CHECKING:
    from country_converter import CountryConverter

REGION_NAMES: dict[str, str] = {
    "EAP": "East Asia & Pacific",
    "ECA": "Europe & Central Asia",
    "LAC": "Latin America & Caribbean",
    "MNA": "Middle East & North Africa",
    "NAC": "North America",
    "SAS": "South Asia",
    "SSA": "Sub-Saharan Africa",
}

#: The World Bank's names of its regions (RPW's ``source_region``/``destination_region``
#: columns, any case) → region code. FY2025 enlarged the Middle East & North Africa region
#: with Afghanistan and Pakistan and renamed it; it keeps its code (see region_name).
REGION_FROM_WB_NAME: dict[str, str] = {
    "east asia & pacific": "EAP",
    "east asia and pacific": "EAP",
    "europe & central asia": "ECA",
    "europe and central asia": "ECA",
    "latin america & caribbean": "LAC",
    "latin america and the caribbean": "LAC",
    "middle east & north africa": "MNA",
    "middle east and north africa": "MNA",
    "middle east, north africa, afghanistan & pakistan": "MNA",
    "middle east, north africa, afghanistan and pakistan": "MNA",
    "north america": "NAC",
    "south asia": "SAS",
    "sub-saharan africa": "SSA",
}

#: The World Bank's income-group names (both RPW sheets) → code. RPW's "Lower income" (on
#: 1,472 receiving rows of the 2016-2025 sheet) could be low or lower-middle income: not
#: mapped, so the bundled classification stands for those rows.
INCOME_FROM_WB_NAME: dict[str, str] = {
    "high income": "HIC",
    "high income: oecd": "HIC",
    "high income: nonoecd": "HIC",
    "upper middle income": "UMC",
    "lower middle income": "LMC",
    "low income": "LIC",
}

#: Country codes the World Bank uses where ISO 3166 has another (or none): each maps to the
#: one country of the table (Kosovo has no ISO code; XKX is the user-assigned code in use).
WB_COUNTRY_CODES: dict[str, str] = {
    "KSV": "XKX",
    "ROM": "ROU",
    "ZAR": "COD",
    "TMP": "TLS",
    "ADO": "AND",
    "WBG": "PSE",
}

#: Codes that RPW uses but ISO no longer lists, and their currency at the time.
_HISTORIC_CURRENCY = {"ANT": "ANG", "XKX": "EUR"}


def data_file(name: str) -> Path:
    """A data file shipped in ``corridors/data/`` (RPW extract, matrices, classifications)."""
    return Path(str(resources.files("corridors") / "data" / name))


@functools.cache
def countries() -> dict[str, Country]:
    """Every country, by ISO alpha-3."""
    out: dict[str, Country] = {}
    with data_file("wb_countries.csv").open(encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for row in rows:
            a3, a2 = row["alpha3"], row["alpha2"]
            iso = pycountry.countries.get(alpha_3=a3)
            currency = _HISTORIC_CURRENCY.get(a3)
            if currency is None:
                found = get_territory_currencies(a2, dt.date(2024, 1, 1))
                currency = found[0] if found else None
            out[a3] = Country(
                alpha2=a2,
                alpha3=a3,
                name=getattr(iso, "common_name", None) or row["name"],
                region=row["wb_region"] or None,
                income_group=row["income_group"] or None,
                g8=row["g8"] == "1",
                g20=row["g20"] == "1",
                currency=currency,
            )
    return out


@functools.cache
def _alpha2_index() -> dict[str, str]:
    return {c.alpha2: c.alpha3 for c in countries().values()}


def country_code(text: str) -> str | None:
    """ISO alpha-3 for an alpha-2 or alpha-3 code (any case, World Bank codes such as KSV
    included), or None when unknown."""
    t = text.strip().upper()
    t = WB_COUNTRY_CODES.get(t, t)
    if len(t) == 3 and t in countries():
        return t
    if len(t) == 2:
        return _alpha2_index().get(t)
    return None


def country(code: str) -> Country | None:
    a3 = country_code(code)
    return countries()[a3] if a3 else None


@functools.cache
def legal_tender(alpha3: str, period: str) -> tuple[str, ...]:
    """The currencies legal in a country when a period began (ZMK until 2013, then ZMW;
    HRK in Croatia until 2023), by CLDR; () for a code that is not a country."""
    from corridors.periods import parse_period

    c = countries().get(alpha3)
    if c is None or c.alpha2 is None:
        return ()
    return tuple(get_territory_currencies(c.alpha2, parse_period(period).start.date()))


@functools.cache
def currencies() -> dict[str, Currency]:
    out = {c.alpha_3: Currency(c.alpha_3, c.name, getattr(c, "numeric", None))
           for c in pycountry.currencies}
    out.setdefault("ANG", Currency("ANG", "Netherlands Antillean Guilder", "532"))
    return out


def currency_code(text: str) -> str | None:
    t = text.strip().upper()
    return t if t in currencies() else None


_COUNTRIES_SCHEMA: dict[str, pl.DataType] = {
    "alpha3": pl.String(), "alpha2": pl.String(), "name": pl.String(), "region": pl.String(),
    "income_group": pl.String(), "g8": pl.Boolean(), "g20": pl.Boolean(),
    "currency": pl.String()}


@functools.cache
def region_changes() -> pl.DataFrame:
    """Dated changes of World Bank regions: alpha3, region, applies_from (a date), edition."""
    with data_file("wb_region_changes.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    return pl.DataFrame(
        {"alpha3": [r["alpha3"] for r in rows], "region": [r["wb_region"] for r in rows],
         "applies_from": [dt.date.fromisoformat(r["applies_from"]) for r in rows],
         "edition": [r["edition"] for r in rows]},
        schema={"alpha3": pl.String, "region": pl.String, "applies_from": pl.Date,
                "edition": pl.String},
    ).sort("applies_from")


@functools.cache
def countries_frame(period: str | None = None) -> pl.DataFrame:
    """Countries as a Polars table: alpha3, alpha2, name, region, income_group, g8, g20,
    currency — the ``countries`` argument of the metrics.

    With ``period`` (``2025Q3``, ``2025_3Q``, ``2026-11``): regions as the World Bank
    classified them when the period began (``wb_region_changes.csv``: Afghanistan and
    Pakistan in the Middle East, North Africa, Afghanistan & Pakistan region from FY2025).
    Without: the base edition of ``wb_countries.csv``, as before periods were known.
    Income groups and G8/G20 are that one edition's in both cases.
    """
    rows = list(countries().values())
    frame = pl.DataFrame(
        {
            "alpha3": [c.alpha3 for c in rows],
            "alpha2": [c.alpha2 for c in rows],
            "name": [c.name for c in rows],
            "region": [c.region for c in rows],
            "income_group": [c.income_group for c in rows],
            "g8": [c.g8 for c in rows],
            "g20": [c.g20 for c in rows],
            "currency": [c.currency for c in rows],
        },
        schema=_COUNTRIES_SCHEMA,
    )
    if period is None:
        return frame
    from corridors.periods import parse_period

    begins = parse_period(period).start.date()
    changed = (region_changes().filter(pl.col("applies_from") <= begins)
               .group_by("alpha3").agg(pl.col("region").sort_by("applies_from").last()))
    return frame.update(changed, on="alpha3", how="left")


def region_name(code: str, period: str | None = None) -> str:
    """The World Bank's name of a region in a period (MNA is "Middle East, North Africa,
    Afghanistan & Pakistan" from FY2025, "Middle East & North Africa" before)."""
    if code == "MNA" and period is not None:
        from corridors.periods import parse_period

        enlarged = region_changes().filter(pl.col("region") == "MNA")["applies_from"].min()
        if isinstance(enlarged, dt.date) and parse_period(period).start.date() >= enlarged:
            return "Middle East, North Africa, Afghanistan & Pakistan"
    return REGION_NAMES.get(code, code)


def classification_for(period: str, overrides: pl.DataFrame | None = None) -> pl.DataFrame:
    """The countries table of ``period``: the bundled classification in force then, with
    a file's own classification laid over it where the file has one.

    ``overrides``: period, alpha3, region, income_group, g8, g20 (e.g. ``RpwRead.
    classifications``); a null there leaves the bundled value.
    """
    from corridors.periods import parse_period

    canonical = str(parse_period(period))
    base = countries_frame(canonical)
    if overrides is None or overrides.is_empty():
        return base
    mine = overrides.filter(pl.col("period") == canonical).drop("period")
    if mine.is_empty():
        return base
    extra = mine.join(base.select("alpha3"), on="alpha3", how="anti")
    out = base.update(mine, on="alpha3", how="left")
    if not extra.is_empty():
        out = pl.concat([out, extra.with_columns(
            alpha2=pl.lit(None, pl.String), name=pl.col("alpha3"),
            currency=pl.lit(None, pl.String)).select(list(_COUNTRIES_SCHEMA))],
            how="vertical_relaxed")
    return out.select(list(_COUNTRIES_SCHEMA)).cast(_COUNTRIES_SCHEMA)  # type: ignore[arg-type]


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    # country_converter logs every unknown name itself; country_codes returns them instead.
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@functools.cache
def _converter() -> CountryConverter:
    import country_converter as coco
    import pandas as pd

    # country_converter 1.3.2 reads its table so that pandas 3 turns Namibia's ISO2 "NA" into
    # NaN and its constructor then fails; read the table as it intends: its missing cells are
    # the empty ones (no other token of pandas' default NA list occurs in it), "NA" is Namibia.
    table = pd.read_csv(coco.country_converter.COUNTRY_DATA_FILE, sep="\t", encoding="utf-8",
                        dtype=str, keep_default_na=False, na_values=[""])
    return coco.CountryConverter(country_data=table)


def country_codes(names: list[str]) -> dict[str, str | None]:
    """ISO alpha-3 for each country *name* as the World Bank writes them ("Egypt, Arab
    Rep.", "Côte d'Ivoire"), by the regular expressions of ``country_converter``; None when
    a name is not a country (aggregates such as "Total") or not recognised."""
    unique = sorted(set(names))
    if not unique:
        return {}
    with _quiet("country_converter"), _quiet("country_converter.country_converter"):
        codes = _converter().convert(unique, src="regex", to="ISO3", not_found="")
    if isinstance(codes, str):
        codes = [codes]
    return {n: (c if isinstance(c, str) and len(c) == 3 else None)
            for n, c in zip(unique, codes, strict=True)}
