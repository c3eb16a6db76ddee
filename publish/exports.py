"""Open-data exports: the postal benchmark (CSV, JSON) and the 10.c.1 series as SDMX-CSV.

SDMX-CSV follows version 2.0 of the format (SDMX 3.0): the first columns are STRUCTURE,
STRUCTURE_ID and ACTION, then every dimension of the dataflow in order, OBS_VALUE, then the
attributes. The dataflow and codes are those of the UN SDG Global Database
(IAEG-SDGs:DF_SDG_GLH), with the 10.c.1 series as the UN SDG series list (release
2022.Q1.G.03, bundled as corridors/data/sdg_series_10c1.csv) defines them:

  SI_RMT_COST      to a receiving country (REF_AREA the receiving country; 1 = World, the
                   global average)
  SI_RMT_COST_SND  for a sending country (REF_AREA the sending country)
  SI_RMT_COST_BC   in a corridor (REF_AREA the sending country, CUST_BREAKDOWN "C" + the
                   receiving country's M49 code)
  SI_RMT_COST_SC   SmaRT in a corridor (the same keys)

REF_AREA as M49 codes, every other breakdown _T (total). Values are rounded to two decimals,
as the World Bank publishes them. OBS_STATUS says what a value rests on: A (normal) for
survey and observed quotes only, E (estimated) when a comparison feed's estimate is among
them, U (low reliability) for a negative cost.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import polars as pl

from corridors.errors import BadPeriod, NoData
from corridors.periods import parse_period
from corridors.reference import data_file
from metrics import METHODOLOGY_VERSION, kinds
from metrics import bulletin as mb
from metrics import corridors as cor
from metrics.postal import (
    OPERATOR_COLUMNS,
    POSTAL_COLUMNS,
    SUMMARY_COLUMNS,
    postal_benchmark,
    postal_summary,
    postal_summary_by_operator,
    previous_period,
)
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


# --- postal ------------------------------------------------------------------------------------


def postal_export(quotes: pl.DataFrame, *, period: str, amount_usd: int = 200
                  ) -> tuple[bytes, bytes]:
    """The postal benchmark of a period as (CSV, JSON) bytes: every post-office service, with
    the sources and data kinds of its quotes (``data_kind``, ``source``); the JSON adds what
    the figures rest on (``provenance``, as ``postal_summary_export``'s) and the licence with
    its attribution. Raises NoData without quotes. Emulated quotes (the sandbox's) are never
    exported."""
    quotes = _with_survey_kind(quotes.filter(kinds.real_data()))
    canonical = str(parse_period(period))
    services = services_in_period(quotes.lazy(), period=canonical,
                                  amount_usd=amount_usd).collect()
    if services.height == 0:
        raise NoData(f"no quotes at USD {amount_usd} for period {canonical}")
    benchmark = postal_benchmark(quotes.lazy(), period=canonical, amount_usd=amount_usd)
    # A service's quotes come from one source as a rule; should several ever price it, each
    # is named (sorted, joined by ";") rather than one picked.
    origin = (quotes.lazy().filter(pl.col("period").is_in(parse_period(canonical).labels),
                                   pl.col("amount_usd") == amount_usd)
              .group_by(pl.col("service_id").cast(pl.String))
              .agg(pl.col("data_kind").cast(pl.String).drop_nulls().unique().sort()
                   .str.join(";"),
                   pl.col("source").cast(pl.String).drop_nulls().unique().sort()
                   .str.join(";")))
    frame = (benchmark.join(origin, on="service_id", how="left", maintain_order="left")
             .select(*POSTAL_EXPORT_COLUMNS).collect())
    body_csv = frame.write_csv(null_value="").encode()
    provenance = _provenance(quotes, [canonical], amount_usd)
    doc = {"period": canonical, "amount_usd": amount_usd,
           "methodology_version": METHODOLOGY_VERSION,
           "provenance": provenance,
           "licence": _licence(provenance, f"postal benchmark {canonical}"),
           "columns": list(POSTAL_EXPORT_COLUMNS), "services": frame.to_dicts()}
    return body_csv, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


#: The by-service export's columns: the benchmark's, then where each service's quotes came
#: from (its data kind and source; several joined by ";").
POSTAL_EXPORT_COLUMNS = (*POSTAL_COLUMNS, "data_kind", "source")
#: The licence of every export, and the credit the World Bank's RPW survey asks for.
LICENCE = "CC BY 4.0"
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"
RPW_ATTRIBUTION = ("The World Bank, Remittance Prices Worldwide, available at "
                   "http://remittanceprices.worldbank.org")


def _licence(provenance: list[dict[str, Any]], what: str) -> dict[str, str]:
    """The licence of an export of ``what`` and its attribution, crediting the World Bank's
    RPW when survey quotes are among those it rests on (``provenance``)."""
    survey = any(r["data_kind"] == "survey" for r in provenance)
    credit = f"; includes data from {RPW_ATTRIBUTION} ({LICENCE})" if survey else ""
    return {"name": LICENCE, "url": LICENCE_URL,
            "attribution": f"sendcost {what} ({LICENCE}){credit}."}


def _with_survey_kind(quotes: pl.DataFrame) -> pl.DataFrame:
    """``quotes`` with the data kind an RPW file leaves unsaid (survey) filled in."""
    return quotes.with_columns(
        pl.when(pl.col("data_kind").is_null() & (pl.col("source").cast(pl.String)
                                                  == _RPW_SOURCE))
        .then(pl.lit("survey")).otherwise(pl.col("data_kind").cast(pl.String))
        .alias("data_kind"))


#: ``sendcost export postal --by``: service by service (the benchmark), or the post against
#: its market per corridor or per operator (``metrics.postal.postal_summary``).
POSTAL_BY = ("service", "corridor", "operator")
#: What a quote frame read from an RPW file is, when it does not say (the reader leaves the
#: kind null: collector.kinds.KIND_OF_SOURCE["rpw"]).
_RPW_SOURCE = "rpw"


def _provenance(quotes: pl.DataFrame, periods: list[str], amount_usd: int
                ) -> list[dict[str, Any]]:
    """Per source and data kind, the quotes of ``periods`` at ``amount_usd`` it gave, and
    the first and last period it covers: what the figures rest on."""
    labels = [label for p in periods for label in parse_period(p).labels]
    rows = (quotes.lazy().filter(pl.col("period").is_in(labels),
                                 pl.col("amount_usd") == amount_usd)
            .group_by(pl.col("source").cast(pl.String), pl.col("data_kind").cast(pl.String))
            .agg(pl.len().alias("quotes"), pl.col("period").cast(pl.String).min().alias("from"),
                 pl.col("period").cast(pl.String).max().alias("to"))
            .sort("source", "data_kind", nulls_last=True).collect())
    return rows.to_dicts()


def postal_summary_export(quotes: pl.DataFrame, *, period: str, by: str,
                          amount_usd: int = 200) -> tuple[bytes, bytes]:
    """The post against its market in ``period`` (``by``: "corridor" or "operator") as
    (CSV, JSON) bytes, with the field names of ``/v1/postal/summary``. The JSON says what
    the figures rest on: the period and the previous one compared with, and per source its
    data kind, quotes and periods. Raises NoData without quotes. Emulated quotes (the
    sandbox's) are never exported."""
    if by not in ("corridor", "operator"):
        raise ValueError(f"by: expected corridor or operator, got {by!r}")
    quotes = _with_survey_kind(quotes.filter(kinds.real_data()))
    canonical = str(parse_period(period))
    services = services_in_period(quotes.lazy(), period=canonical,
                                  amount_usd=amount_usd).collect()
    if services.height == 0:
        raise NoData(f"no quotes at USD {amount_usd} for period {canonical}")
    previous = previous_period(quotes.get_column("period").cast(pl.String).unique().to_list(),
                               canonical)
    summary = postal_summary(quotes.lazy(), period=canonical, amount_usd=amount_usd,
                             previous=previous)
    frame = (summary if by == "corridor" else postal_summary_by_operator(summary)).collect()
    columns = SUMMARY_COLUMNS if by == "corridor" else OPERATOR_COLUMNS
    body_csv = frame.write_csv(null_value="").encode()
    provenance = _provenance(quotes, [canonical] + ([previous] if previous else []),
                             amount_usd)
    doc = {"period": canonical, "previous_period": previous, "amount_usd": amount_usd,
           "by": by, "methodology_version": METHODOLOGY_VERSION,
           "market": "each corridor's transparent services that no post sells or pays out",
           "provenance": provenance,
           "licence": _licence(provenance, f"postal summary by {by} {canonical}"),
           "columns": list(columns), "rows": frame.to_dicts()}
    return body_csv, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


# --- SDMX --------------------------------------------------------------------------------------

#: The 10.c.1 series as the UN SDG series list defines them (corridors/data/
#: sdg_series_10c1.csv, release 2022.Q1.G.03).
SERIES_RECEIVING = "SI_RMT_COST"  # to a receiving country; REF_AREA 1 (World): the global one
SERIES_SENDING = "SI_RMT_COST_SND"
SERIES_CORRIDOR = "SI_RMT_COST_BC"
SERIES_SMART_CORRIDOR = "SI_RMT_COST_SC"
SERIES_LIST_RELEASE = "2022.Q1.G.03"
#: Kept for callers of the old name: the World figure's series.
SERIES_GLOBAL = SERIES_RECEIVING
WORLD = "1"
#: Decimals of OBS_VALUE: as the World Bank publishes RPW figures.
SDMX_DECIMALS = 2
#: OBS_STATUS codes (SDMX cross-domain code list CL_OBS_STATUS).
STATUS_NORMAL = "A"
STATUS_ESTIMATED = "E"
STATUS_LOW_RELIABILITY = "U"
#: --frequency values.
FREQUENCIES = ("period", "annual")
#: M49 codes of the few reference countries pycountry does not know.
M49_EXTRA = {"XKX": "412", "CHI": "830", "ANT": "530"}
COMMENT = ("Indicative figure computed by sendcost (methodology " + METHODOLOGY_VERSION
           + ") from {services} transparent services in {corridors} corridors{over}; not the "
           "official 10.c.1 value.")


def series_list() -> list[dict[str, str]]:
    """The bundled rows of the UN SDG series list for 10.c.1 (release 2022.Q1.G.03)."""
    with data_file("sdg_series_10c1.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


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


def periods_between(available: list[str], start: str, end: str) -> list[str]:
    """The periods with data from ``start`` to ``end`` (same cadence: quarters or months)."""
    a, b = parse_period(start), parse_period(end)
    if a.is_quarter != b.is_quarter:
        raise BadPeriod(f"--from {a} and --to {b}: give two quarters or two months")
    if b < a:
        raise BadPeriod(f"--from {a} is after --to {b}")
    first = mb.trend_periods([str(a)], str(a))[0]
    return [p for p in mb.trend_periods(available, str(b))
            if mb.period_order(p) >= mb.period_order(first)]


def _estimated_services(quotes: pl.LazyFrame, names: list[str]) -> pl.LazyFrame:
    """service_id, estimate: whether any quote of the service is a comparison feed's
    estimate for another provider (the quote frame's ``data_kind`` column, when it has one)."""
    if "data_kind" not in names:
        return quotes.select(pl.col("service_id").cast(pl.String).unique(),
                             pl.lit(False).alias("estimate"))
    return quotes.group_by(pl.col("service_id").cast(pl.String)).agg(
        (pl.col("data_kind").cast(pl.String) == "estimate").any().alias("estimate"))


def _period_observations(quotes: pl.LazyFrame, period: str, amount_usd: int,
                         corridors: bool, names: list[str]) -> pl.LazyFrame:
    """One period's observations: series, area, cust, value, services, estimate."""
    s = (services_in_period(quotes, period=period, amount_usd=amount_usd)
         .join(_estimated_services(quotes, names), on="service_id", how="left")
         .with_columns(pl.col("estimate").fill_null(False)))
    averaged = s.filter(pl.col("transparent"), pl.col("total_cost_pct").is_not_null())

    def by(series: str, area: pl.Expr, cust: pl.Expr, keys: list[str]) -> pl.LazyFrame:
        grouped = averaged.group_by(keys) if keys else averaged.group_by(pl.lit(1))
        return grouped.agg(pl.col("total_cost_pct").mean().alias("value"),
                           pl.len().alias("services"), pl.col("estimate").any(),
                           pl.struct("source_code", "destination_code").n_unique()
                           .alias("corridors")).select(
            pl.lit(series).alias("series"), area.alias("area"), cust.alias("cust"),
            "value", pl.col("services").cast(pl.Int64), "estimate",
            pl.col("corridors").cast(pl.Int64))

    parts = [
        by(SERIES_RECEIVING, pl.lit(WORLD), pl.lit("_T"), []),
        by(SERIES_RECEIVING, pl.col("destination_code"), pl.lit("_T"), ["destination_code"]),
        by(SERIES_SENDING, pl.col("source_code"), pl.lit("_T"), ["source_code"]),
    ]
    if corridors:
        corridor_keys = ["source_code", "destination_code"]
        parts.append(by(SERIES_CORRIDOR, pl.col("source_code"), pl.col("destination_code"),
                        corridor_keys))
        estimate = averaged.group_by(corridor_keys).agg(pl.col("estimate").any())
        parts.append(
            cor.smart(s).filter(pl.col("smart").is_not_null())
            .join(estimate, on=corridor_keys, how="left")
            .select(pl.lit(SERIES_SMART_CORRIDOR).alias("series"),
                    pl.col("source_code").alias("area"),
                    pl.col("destination_code").alias("cust"),
                    pl.col("smart").alias("value"),
                    pl.lit(cor.SMART_SERVICES, pl.Int64).alias("services"),
                    pl.col("estimate").fill_null(False),
                    pl.lit(1, pl.Int64).alias("corridors")))
    return pl.concat(parts).with_columns(pl.lit(period).alias("period"))


def sdmx_rows(quotes: pl.DataFrame, *, start: str, end: str, amount_usd: int = 200,
              corridors: bool = False, frequency: str = "period") -> list[dict[str, str]]:
    """The 10.c.1 observations from ``start`` to ``end``: World and each receiving country
    (SI_RMT_COST), each sending country (SI_RMT_COST_SND) and, with ``corridors``, each
    corridor's average (SI_RMT_COST_BC) and SmaRT (SI_RMT_COST_SC).

    ``frequency``: "period" (each quarter or month with data, FREQ Q or M) or "annual" (FREQ
    A: per calendar year, the mean of the year's period values of each series and area, the
    periods named in COMMENT_OBS). Raises NoData when no period in range has data.
    Emulated quotes (the sandbox's) are never exported: they are left out first.
    """
    if frequency not in FREQUENCIES:
        raise BadPeriod(f"--frequency {frequency!r}: expected one of {', '.join(FREQUENCIES)}")
    quotes = quotes.filter(kinds.real_data())
    available = quotes.get_column("period").unique().to_list()
    periods = periods_between(available, start, end)
    lazy = quotes.lazy()
    names = lazy.collect_schema().names()
    plans = [_period_observations(lazy, p, amount_usd, corridors, names) for p in periods]
    obs = pl.concat(pl.collect_all(plans)) if plans else pl.DataFrame()
    if obs.height == 0:
        raise NoData(f"no quotes at USD {amount_usd} from {parse_period(start)} to "
                     f"{parse_period(end)}")
    keys = ["series", "area", "cust"]
    if frequency == "annual":
        obs = (obs.with_columns(pl.col("period").str.slice(0, 4).alias("time"))
               .group_by("time", *keys)
               .agg(pl.col("value").mean(), pl.col("services").sum(),
                    pl.col("estimate").any(), pl.col("corridors").max(),
                    pl.col("period").sort().str.join(", ").alias("over"))
               .with_columns(pl.lit("A").alias("freq")))
    else:
        obs = obs.with_columns(
            pl.col("period").map_elements(lambda p: sdmx_time(p)[1], return_dtype=pl.String)
            .alias("time"),
            pl.col("period").map_elements(lambda p: sdmx_time(p)[0], return_dtype=pl.String)
            .alias("freq"),
            pl.lit(None, pl.String).alias("over"))
    order = {SERIES_RECEIVING: 0, SERIES_SENDING: 1, SERIES_CORRIDOR: 2,
             SERIES_SMART_CORRIDOR: 3}
    rows: list[dict[str, str]] = []
    for r in obs.sort("time", "series", "area", "cust").iter_rows(named=True):
        area = WORLD if r["area"] == WORLD else m49(r["area"])
        cust = "_T" if r["cust"] == "_T" else m49(r["cust"])
        if area is None or cust is None or r["value"] is None:
            continue
        rows.append(_obs(r["freq"], r["time"], r["series"], area,
                         "_T" if cust == "_T" else f"C{cust}", r["value"], r["services"],
                         estimate=r["estimate"], over=r["over"], corridors=r["corridors"]))
    rows.sort(key=lambda x: (x["TIME_PERIOD"], order[x["SERIES"]],
                             x["REF_AREA"] != WORLD, int(x["REF_AREA"]),
                             x["CUST_BREAKDOWN"]))
    return rows


def obs_status(value: float, *, estimate: bool) -> str:
    """OBS_STATUS of a value: estimates are never exported as normal (observed) values, nor
    is a negative cost (a promotion or a distorted reference rate: kept, marked)."""
    if round(value, SDMX_DECIMALS) < 0:
        return STATUS_LOW_RELIABILITY
    return STATUS_ESTIMATED if estimate else STATUS_NORMAL


def _obs(freq: str, time: str, series: str, area: str, cust: str, value: float,
         services: int, *, estimate: bool = False, over: str | None = None,
         corridors: int = 1) -> dict[str, str]:
    row: dict[str, Any] = {"STRUCTURE": "dataflow", "STRUCTURE_ID": STRUCTURE_ID,
                           "ACTION": "I"}
    row.update({d: "_T" for d in DIMENSIONS})
    shown = round(float(value), SDMX_DECIMALS) + 0.0  # no "-0.00"
    notes = []
    if estimate:
        notes.append("includes comparison-feed estimates for other providers")
    if shown < 0:
        notes.append("negative cost: a promotion or a distorted reference rate")
    comment = COMMENT.format(services=services, corridors=corridors,
                             over=f" (mean of the periods {over})" if over else "")
    row.update({"FREQ": freq, "REPORTING_TYPE": "G", "SERIES": series, "REF_AREA": area,
                "CUST_BREAKDOWN": cust, "TIME_PERIOD": time,
                "OBS_VALUE": f"{shown:.{SDMX_DECIMALS}f}",
                "UNIT_MEASURE": "PT", "UNIT_MULT": "0", "NATURE": "E",
                "OBS_STATUS": obs_status(shown, estimate=estimate),
                "SOURCE_DETAIL": "sendcost, RPW method (World Bank Remittance Prices Worldwide)",
                "COMMENT_OBS": comment + (" " + "; ".join(notes) + "." if notes else "")})
    return row


def sdmx_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SDMX_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()
