"""Open-data exports: the postal benchmark (CSV, JSON) and the 10.c.1 series as SDMX-CSV.

SDMX-CSV follows version 2.0 of the format (SDMX 3.0): the first columns are STRUCTURE,
STRUCTURE_ID and ACTION, then every dimension of the dataflow in order, OBS_VALUE, then the
attributes. The dataflow and codes are those of the UN SDG Global Database
(IAEG-SDGs:DF_SDG_GLH): series SI_RMT_COST (10.c.1, remittance costs as a proportion of the
amount remitted), REF_AREA as M49 codes (1 = World), every other breakdown _T (total).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import polars as pl

from corridors.errors import BadPeriod, NoData
from corridors.periods import parse_period
from corridors.reference import countries_frame
from metrics import METHODOLOGY_VERSION, kinds
from metrics import bulletin as mb
from metrics import corridors as cor
from metrics.postal import POSTAL_COLUMNS, postal_benchmark
from metrics.services import services_in_period

#: The UN SDG Global Database dataflow (agency:id(version)).
STRUCTURE_ID = "IAEG-SDGs:DF_SDG_GLH(1.26)"
#: Its dimensions, in the order of the data structure definition.
DIMENSIONS = ("FREQ", "REPORTING_TYPE", "SERIES", "REF_AREA", "SEX", "AGE", "URBANISATION",
              "INCOME_WEALTH_QUANTILE", "EDUCATION_LEV", "OCCUPATION", "CUST_BREAKDOWN",
              "COMPOSITE_BREAKDOWN", "DISABILITY_STATUS", "ACTIVITY", "PRODUCT", "TIME_PERIOD")
ATTRIBUTES = ("UNIT_MEASURE", "UNIT_MULT", "NATURE", "OBS_STATUS", "SOURCE_DETAIL",
              "COMMENT_OBS")
#: Every column of the SDMX-CSV file, in order.
SDMX_COLUMNS = ("STRUCTURE", "STRUCTURE_ID", "ACTION", *DIMENSIONS, "OBS_VALUE", *ATTRIBUTES)
SERIES_GLOBAL = "SI_RMT_COST"
#: Corridor series of the SDG database: REF_AREA the sending country, CUST_BREAKDOWN "C" +
#: the receiving country's M49 code.
SERIES_CORRIDOR = "SI_RMT_COST_BC"
WORLD = "1"
#: M49 codes of the few reference countries pycountry does not know.
M49_EXTRA = {"XKX": "412", "CHI": "830", "ANT": "530"}
COMMENT = ("Indicative figure computed by sendcost (methodology " + METHODOLOGY_VERSION
           + ") from {services} transparent services; not the official 10.c.1 value.")


def m49(alpha3: str) -> str | None:
    """The UN M49 numeric code as the SDG database writes it (no leading zeros)."""
    import pycountry

    if alpha3 in M49_EXTRA:
        return M49_EXTRA[alpha3]
    c = pycountry.countries.get(alpha_3=alpha3)
    return str(int(c.numeric)) if c else None


def sdmx_time(period: str) -> tuple[str, str]:
    """(FREQ, TIME_PERIOD) of a period: ("Q", "2014-Q2") or ("M", "2026-11")."""
    p = parse_period(period)
    return ("Q", f"{p.year}-Q{p.quarter}") if p.is_quarter else ("M", str(p))


# --- postal ------------------------------------------------------------------------------------


def postal_export(quotes: pl.DataFrame, *, period: str, amount_usd: int = 200
                  ) -> tuple[bytes, bytes]:
    """The postal benchmark of a period as (CSV, JSON) bytes. Raises NoData without quotes.
    Emulated quotes (the sandbox's) are never exported."""
    quotes = quotes.filter(kinds.real_data())
    canonical = str(parse_period(period))
    services = services_in_period(quotes.lazy(), period=canonical,
                                  amount_usd=amount_usd).collect()
    if services.height == 0:
        raise NoData(f"no quotes at USD {amount_usd} for period {canonical}")
    frame = postal_benchmark(quotes.lazy(), period=canonical, amount_usd=amount_usd).collect()
    body_csv = frame.write_csv(null_value="").encode()
    doc = {"period": canonical, "amount_usd": amount_usd,
           "methodology_version": METHODOLOGY_VERSION, "columns": list(POSTAL_COLUMNS),
           "services": frame.to_dicts()}
    return body_csv, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


# --- SDMX --------------------------------------------------------------------------------------


def periods_between(available: list[str], start: str, end: str) -> list[str]:
    """The periods with data from ``start`` to ``end`` (same cadence: quarters or months)."""
    a, b = parse_period(start), parse_period(end)
    if a.is_quarter != b.is_quarter:
        raise BadPeriod(f"--from {a} and --to {b}: give two quarters or two months")
    if b < a:
        raise BadPeriod(f"--from {a} is after --to {b}")
    first = mb.trend_periods([str(a)], str(a))[0]
    return [p for p in mb.trend_periods(available, str(b))
            if mb._order_key(p) >= mb._order_key(first)]


def sdmx_rows(quotes: pl.DataFrame, *, start: str, end: str, amount_usd: int = 200,
              corridors: bool = False) -> list[dict[str, str]]:
    """The 10.c.1 observations from ``start`` to ``end``: World, each sending country, and
    (with ``corridors``) each corridor. Raises NoData when no period in range has data.
    Emulated quotes (the sandbox's) are never exported: they are left out first."""
    quotes = quotes.filter(kinds.real_data())
    available = quotes.get_column("period").unique().to_list()
    periods = periods_between(available, start, end)
    lazy = quotes.lazy()
    countries = countries_frame().lazy()
    plans: list[pl.LazyFrame] = []
    for period in periods:
        s = services_in_period(lazy, period=period, amount_usd=amount_usd)
        plans.append(mb.trend(lazy, periods=[period], amount_usd=amount_usd, flows=None))
        plans.append(mb.sending_country_averages(s, countries))
        plans.append(cor.corridor_average(s) if corridors else pl.LazyFrame())
    done = pl.collect_all(plans) if plans else []
    rows: list[dict[str, str]] = []
    for i, period in enumerate(periods):
        g, sending, corridor = done[3 * i], done[3 * i + 1], done[3 * i + 2]
        if g.height == 0 or g.item(0, "global_average") is None:
            continue
        freq, time = sdmx_time(period)
        rows.append(_obs(freq, time, SERIES_GLOBAL, WORLD, "_T", g.item(0, "global_average"),
                         g.item(0, "services")))
        for r in sending.iter_rows(named=True):
            area = m49(r["source"])
            if area is not None and r["average"] is not None:
                rows.append(_obs(freq, time, SERIES_GLOBAL, area, "_T", r["average"],
                                 r["services"]))
        if corridors:
            for r in corridor.iter_rows(named=True):
                src, dst = m49(r["source_code"]), m49(r["destination_code"])
                if src and dst and r["average"] is not None:
                    rows.append(_obs(freq, time, SERIES_CORRIDOR, src, f"C{dst}",
                                     r["average"], r["transparent_services"]))
    if not rows:
        raise NoData(f"no quotes at USD {amount_usd} from {parse_period(start)} to "
                     f"{parse_period(end)}")
    return rows


def _obs(freq: str, time: str, series: str, area: str, cust: str, value: float,
         services: int) -> dict[str, str]:
    row: dict[str, Any] = {"STRUCTURE": "dataflow", "STRUCTURE_ID": STRUCTURE_ID,
                           "ACTION": "I"}
    row.update({d: "_T" for d in DIMENSIONS})
    row.update({"FREQ": freq, "REPORTING_TYPE": "G", "SERIES": series, "REF_AREA": area,
                "CUST_BREAKDOWN": cust, "TIME_PERIOD": time, "OBS_VALUE": repr(float(value)),
                "UNIT_MEASURE": "PT", "UNIT_MULT": "0", "NATURE": "E", "OBS_STATUS": "A",
                "SOURCE_DETAIL": "sendcost, RPW method (World Bank Remittance Prices Worldwide)",
                "COMMENT_OBS": COMMENT.format(services=services)})
    return row


def sdmx_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SDMX_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()
