"""The SDG 10.c bulletin of one period: HTML, PDF, Markdown, charts, data and a zip.

``compute_bulletin`` gathers every figure (from ``metrics``); ``write_bulletin``
(``publish.bulletin_files``, so that this module never imports its rendering) renders and
writes one folder per period — atomically: it is built in a temporary folder beside the
target and renamed at the end, so a failure (or a period without data) writes nothing.
The same quotes give the same bytes in every file, the PDF and the zip included (no clock,
deterministic charts, rounded CSVs, a PDF laid out against a fixed base URL with an
identifier derived from its HTML, sorted zip entries with fixed timestamps).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from corridors.calendar import next_business_days
from corridors.config import MinimumBase
from corridors.errors import NoData
from corridors.periods import Period, parse_period
from corridors.reference import countries_frame, data_file
from corridors.types import EMULATED_WARNING, FIRM_TYPE_LABELS, FirmType
from metrics import aggregates as agg
from metrics import bulletin as mb
from metrics import corridors as mcor
from metrics import kinds
from metrics.indicators import compute_indicators, corridor_table
from metrics.kpis import compute_kpis, kpi_send_dates, scorecard_table
from metrics.postal import (
    postal_benchmark,
    postal_by_operator,
    postal_extremes,
    postal_summary,
    postal_summary_by_operator,
    postal_trend,
    postal_versus_firm_types,
    previous_period,
)
from metrics.progress import ProgressCall, progress_call
from metrics.services import services_in_period

log = logging.getLogger(__name__)

HEADLINE_AMOUNT = 200
SECOND_AMOUNT = 500
LICENCE = "CC BY 4.0"
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"
RPW_ATTRIBUTION = ("The World Bank, Remittance Prices Worldwide, available at "
                   "http://remittanceprices.worldbank.org")
REGION_NAMES = {
    "EAP": "East Asia & Pacific", "ECA": "Europe & Central Asia",
    "LAC": "Latin America & Caribbean", "MNA": "Middle East & North Africa",
    "NAC": "North America", "SAS": "South Asia", "SSA": "Sub-Saharan Africa",
}
#: The World Bank's published figures we reproduce: (metric in published_figures.csv, our
#: figure's key, label). Each is shown beside ours only for the same quarter.
OFFICIAL_METRICS = (
    ("global_average_usd200", "global_average", "Global average, USD 200 (SDG 10.c.1)"),
    ("global_weighted_average", "weighted_average", "Global weighted average"),
    ("smart_average", "smart_average", "Global SmaRT"),
    ("g20_sending_average", "g20_sending_average", "G20 sending countries"),
    ("g20_receiving_average", "g20_receiving_average", "G20 receiving countries"),
)
#: Corridors averaging above 5% shown in the documents (the most expensive first); the
#: complete list is data/corridors_above_5.csv.
ABOVE_5_SHOWN = 20
#: Post-office services shown at each end (cheapest and dearest against their corridor's
#: median); every one is in data/postal_benchmark.csv.
POSTAL_SHOWN = 10
#: The periods the postal trend covers at most (the latest ones held).
POSTAL_TREND_PERIODS = 12
#: The six sections, in order; their titles are the h2 headings of HTML, PDF and Markdown.
SECTIONS = (
    "1. Headline: the cost of sending USD 200",
    "2. The 5% component",
    "3. Trend and progress toward 2030",
    "4. Breakdowns",
    "5. The postal page",
    "6. Coverage and method",
    "7. The G20 remittance scorecard",
)


def flows() -> pl.LazyFrame:
    """World Bank bilateral remittance flows (every bundled matrix, with its year): the
    weights of the weighted average, the matrix nearest the period weighing."""
    from corridors.reading.matrix import read_bundled_flows

    return read_bundled_flows().lazy()


def official_figures() -> pl.LazyFrame:
    return mb.official_figures(pl.scan_csv(data_file("published_figures.csv"),
                                           infer_schema=False))


#: Figures of the World Bank's known only from other sites citing or copying it (its own
#: publication of them was not found): never set beside ours, only counted and named.
SECONDARY_FIGURES = "published_figures_secondary.csv"


def secondary_figures() -> pl.LazyFrame:
    """``SECONDARY_FIGURES`` as ``official_figures`` reads its file (quarters canonical),
    every row of it, whatever it says of itself: period, metric, value_pct, source_url."""
    return (pl.scan_csv(data_file(SECONDARY_FIGURES), infer_schema=False)
            .filter(~pl.col("period").str.ends_with("?"))
            .with_columns(pl.col("period").str.replace(r"^(\d{4})_([1-4])Q$", "${1}Q${2}"))
            .select("period", "metric", pl.col("value_pct").cast(pl.Float64),
                    pl.col("source_url_or_repo").alias("source_url")))


def load_rpw(path: str | Path | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Quotes straight from an RPW file (default: the bundled 2011–2014 extract)."""
    from corridors.reading.rpw import bundled_rpw_path, read_rpw

    p = Path(path) if path else bundled_rpw_path()
    frame = read_rpw(p).frame
    return frame, {"kind": "rpw-file", "file": p.name,
                   "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                   "quotes": frame.height}


# --- computing ---------------------------------------------------------------------------------


@dataclass
class Bulletin:
    """Every figure of one bulletin; rendering reads only this."""
    period: str
    doc: dict[str, Any]
    doc500: dict[str, Any] | None
    previous: dict[str, Any] | None  # the previous period with data (its document)
    year_before_period: str
    #: The indicators document of ``year_before_period`` (USD 200), None without its data.
    year_before: dict[str, Any] | None
    trend: pl.DataFrame
    progress: ProgressCall
    official: pl.DataFrame
    official_trend: pl.DataFrame
    five: dict[str, Any]
    above_5: pl.DataFrame
    firm_types: pl.DataFrame
    regions: pl.DataFrame
    sending: pl.DataFrame
    most: pl.DataFrame
    least: pl.DataFrame
    postal: pl.DataFrame
    postal_types: pl.DataFrame
    postal_operators: pl.DataFrame
    postal_cheapest: pl.DataFrame  # the services cheapest against their corridor's median
    postal_dearest: pl.DataFrame
    coverage: dict[str, Any]
    source_mix: pl.DataFrame
    corridors: pl.DataFrame
    generated_from: dict[str, Any]
    #: What each headline figure rests on, by key of ``_changes`` (see ``figure_bases``).
    bases: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The target corridors and how many are covered (``metrics.bulletin.corridor_coverage``).
    target: dict[str, Any] = field(default_factory=dict)
    minimum: MinimumBase = field(default_factory=MinimumBase)
    #: Quotes of the period (USD 200) from the World Bank's survey (the RPW sources).
    survey_quotes: int = 0
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: The G20 remittance scorecard at USD 200 (``g20_scorecard``).
    kpis: dict[str, Any] = field(default_factory=dict)
    #: Each post against its market per corridor and role, and per post
    #: (``metrics.postal.postal_summary``, ``postal_summary_by_operator``).
    postal_summary: pl.DataFrame = field(default_factory=pl.DataFrame)
    postal_summary_operators: pl.DataFrame = field(default_factory=pl.DataFrame)
    #: The same per period, over the trend's last ``POSTAL_TREND_PERIODS`` periods.
    postal_trend: pl.DataFrame = field(default_factory=pl.DataFrame)
    #: Labels of the figures of this very period known only from secondary sources
    #: (``SECONDARY_FIGURES``): not compared, and said so.
    not_compared: list[str] = field(default_factory=list)

    @property
    def headline(self) -> float | None:
        return self.doc["global_average"]

    def trend_value(self, period: str, column: str = "global_average") -> Any:
        row = self.trend.filter(pl.col("period") == period)
        if not row.height or column not in row.columns:
            return None
        return row.item(0, column)


def _year_before(p: Period) -> Period:
    return p.previous(4 if p.is_quarter else 12)


def publishable(quotes: pl.LazyFrame, available: list[str], like: Period) -> list[str]:
    """The periods of ``like``'s kind (quarters or months) whose bulletin can be published:
    those with services at the headline amount, as ``compute_indicators`` needs, not merely
    quotes (a period with quotes at USD 500 only, or stale reference rates only, has none)."""
    candidates = mb.trend_periods(available, "2999Q4" if like.is_quarter else "2999-12")
    return [c for c in candidates
            if services_in_period(quotes, period=c, amount_usd=HEADLINE_AMOUNT)
            .select(pl.len()).collect().item()]


def _target_corridors(quotes: pl.LazyFrame, period: str,
                      configured: list[tuple[str, str]], survey_sources: set[str]
                      ) -> pl.LazyFrame:
    """The corridors a global figure should cover: the configured ones and those the World
    Bank's survey priced in the period (its own sample)."""
    from metrics.services import period_labels

    names = quotes.collect_schema().names()
    survey = pl.col("source").cast(pl.String).is_in(sorted(survey_sources))
    if "kind" in names:
        survey = survey | (pl.col("kind").cast(pl.String) == "survey")
    surveyed = (quotes.filter(pl.col("period").is_in(period_labels(period)), survey)
                .select(pl.col("source_code", "destination_code").cast(pl.String)))
    config = pl.LazyFrame({"source_code": [c[0] for c in configured],
                           "destination_code": [c[1] for c in configured]},
                          schema={"source_code": pl.String, "destination_code": pl.String})
    return pl.concat([config, surveyed]).unique()


def _with_sufficiency(row: dict[str, Any], *, kind: str, minimum: MinimumBase,
                      coverage_pct: float | None) -> dict[str, Any]:
    """A base with ``sufficient`` and ``rule`` (the minimum it was held to)."""
    if kind == "global":
        share = minimum.global_corridor_coverage * 100
        ok = (row["corridors"] >= minimum.global_corridors
              and coverage_pct is not None and coverage_pct >= share)
        rule = (f"at least {minimum.global_corridors} corridors and {share:g}% of the target "
                f"corridors covered by {minimum.providers_per_corridor}+ providers")
    else:
        ok = (row["services"] >= minimum.group_services
              and row["providers"] >= minimum.group_providers)
        rule = (f"at least {minimum.group_services} services and {minimum.group_providers} "
                "providers")
    return {**row, "coverage_pct": coverage_pct if kind == "global" else None,
            "sufficient": ok, "rule": rule}


def figure_bases(quotes: pl.LazyFrame, *, period: str, countries: pl.LazyFrame,
                 flows: pl.LazyFrame | None, corridors: pl.DataFrame, minimum: MinimumBase,
                 configured: list[tuple[str, str]], survey_sources: set[str]
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """What each headline figure rests on (quotes, services, corridors, providers, first and
    last collection time, coverage of the target corridors), and whether it is enough.
    Returns (bases by figure key, the target's coverage)."""
    q200 = mb.averaged_quotes(quotes, period=period, amount_usd=HEADLINE_AMOUNT)
    q500 = mb.averaged_quotes(quotes, period=period, amount_usd=SECOND_AMOUNT)
    target = _target_corridors(quotes, period, configured, survey_sources)
    key = ["source_code", "destination_code"]
    smart = corridors.filter(pl.col("smart").is_not_null()).select(
        pl.col("source").alias("source_code"), pl.col("destination").alias("destination_code"))

    def member(group: str, side: str) -> pl.LazyFrame:
        return countries.filter(pl.col(group).fill_null(False)).select(
            pl.col("alpha3").cast(pl.String).alias(side))

    scopes: dict[str, tuple[pl.LazyFrame, str]] = {
        "global_average": (q200, "global"),
        "global_average_500": (q500, "global"),
        "smart_average": (q200.join(smart.lazy(), on=key, how="semi"), "global"),
        "weighted_average": ((q200.join(
            mcor.matrix_for_period(flows, parse_period(period).year)
            .select(pl.col(key).cast(pl.String)), on=key, how="semi") if flows is not None
                              else q200.filter(pl.lit(False))), "global"),
        # The G20/G8 averages span many corridors and stand beside the World Bank's own:
        # held to the global minimum, not a breakdown's.
        "g20_sending_average": (q200.join(member("g20", "source_code"), on="source_code",
                                          how="semi"), "global"),
        "g8_sending_average": (q200.join(member("g8", "source_code"), on="source_code",
                                         how="semi"), "global"),
        "g20_receiving_average": (q200.join(member("g20", "destination_code"),
                                            on="destination_code", how="semi"), "global"),
        "share_corridors_above_5": (q200, "global"),
        "share_corridors_above_10": (q200, "global"),
        "share_services_below_3": (q200, "global"),
    }
    plans = [mb.base(frame) for frame, _ in scopes.values()]
    plans.append(mb.corridor_coverage(q200, target,
                                      providers_per_corridor=minimum.providers_per_corridor))
    plans.append(mb.corridor_coverage(q500, target,
                                      providers_per_corridor=minimum.providers_per_corridor))
    done = pl.collect_all(plans)
    cov200, cov500 = done[-2].row(0, named=True), done[-1].row(0, named=True)
    bases = {}
    for (name, (_, kind)), frame in zip(scopes.items(), done, strict=False):
        cov = cov500 if name.endswith("_500") else cov200
        bases[name] = _with_sufficiency(frame.row(0, named=True), kind=kind, minimum=minimum,
                                        coverage_pct=cov["coverage_pct"])
    return bases, cov200


def trend_with_bases(quotes: pl.LazyFrame, trend: pl.DataFrame, *, minimum: MinimumBase,
                     configured: list[tuple[str, str]], survey_sources: set[str]
                     ) -> pl.DataFrame:
    """The trend with each period's base (``base_`` columns, coverage of that period's target
    corridors) and ``sufficient`` (the global minimum); a period below it has its averages
    left out (null): they are published figures too."""
    rows = []
    for period in trend.get_column("period").to_list():
        q = mb.averaged_quotes(quotes, period=period, amount_usd=HEADLINE_AMOUNT)
        target = _target_corridors(quotes, period, configured, survey_sources)
        base_row, cov = pl.collect_all([
            mb.base(q), mb.corridor_coverage(
                q, target, providers_per_corridor=minimum.providers_per_corridor)])
        judged = _with_sufficiency(base_row.row(0, named=True), kind="global",
                                   minimum=minimum, coverage_pct=cov.item(0, "coverage_pct"))
        rows.append({"period": period, **{f"base_{k}": judged[k] for k in
                                          (*mb.BASE_COLUMNS, "coverage_pct")},
                     "sufficient": judged["sufficient"]})
    schema: dict[str, Any] = {
              "period": pl.String, "base_quotes": pl.Int64, "base_services": pl.Int64,
              "base_corridors": pl.Int64, "base_providers": pl.Int64,
              "base_first_collected": pl.Datetime("us", "UTC"),
              "base_last_collected": pl.Datetime("us", "UTC"), "base_coverage_pct": pl.Float64,
              "sufficient": pl.Boolean}
    bases = pl.DataFrame(rows, schema=schema, orient="row")
    averages = ("global_average", "smart_average", "weighted_average")
    return (trend.join(bases, on="period", how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("sufficient")).then(pl.col(c)).alias(c)
                          for c in averages))


def group_bases(quotes: pl.LazyFrame, frame: pl.DataFrame, *, period: str, by: str,
                countries: pl.LazyFrame | None, minimum: MinimumBase) -> pl.DataFrame:
    """``frame`` (firm types, regions or sending countries, keyed by ``by``) with the base of
    each row (BASE_COLUMNS, prefixed ``base_``) and ``sufficient``."""
    q = mb.averaged_quotes(quotes, period=period, amount_usd=HEADLINE_AMOUNT)
    if by == "region":
        assert countries is not None
        q = q.join(countries.select(pl.col("alpha3").cast(pl.String).alias("destination_code"),
                                    "region"), on="destination_code", how="inner")
    column = "source_code" if by == "source" else by
    bases = mb.base(q, [column]).collect().rename(
        {c: f"base_{c}" for c in mb.BASE_COLUMNS})
    if column != by:
        bases = bases.rename({column: by})
    joined = frame.join(bases, on=by, how="left", maintain_order="left")
    enough = ((pl.col("base_services").fill_null(0) >= minimum.group_services)
              & (pl.col("base_providers").fill_null(0) >= minimum.group_providers))
    # Below the minimum the figure is not published as a number: its base says why.
    return joined.with_columns(enough.alias("sufficient")).with_columns(
        pl.when(pl.col("sufficient")).then(pl.col("average")).alias("average"))


def g20_scorecard(quotes: pl.LazyFrame, period: str, amount_usd: int) -> dict[str, Any]:
    """The G20 remittance scorecard (``metrics.kpis``) of a period, its business days those
    of the receiving countries (``corridors.calendar``), and the receiving countries counted
    with weekends only (``weekends_only``: no holiday calendar known for them)."""
    sent = kpi_send_dates(quotes, period=period, amount_usd=amount_usd).collect()
    calendar = next_business_days(sent)
    doc = compute_kpis(quotes, period=period, amount_usd=amount_usd, calendar=calendar.lazy())
    doc["weekends_only"] = calendar.filter(pl.col("calendar") == "weekends")[
        "destination_code"].unique().sort().to_list()
    return doc


def compute_bulletin(quotes: pl.DataFrame, period: str, *,
                     generated_from: dict[str, Any], minimum: MinimumBase | None = None,
                     configured: list[tuple[str, str]] | None = None,
                     survey_sources: set[str] | None = None,
                     weights_coverage_min: float = mcor.WEIGHT_COVERAGE_MIN) -> Bulletin:
    """All the figures of ``period``'s bulletin. Raises NoData when the period has none.

    ``minimum``: the least a figure must rest on (default: config.toml's defaults);
    ``configured``: the configured corridors; ``survey_sources``: the names of the sources
    whose quotes are the World Bank's survey (default: "rpw"). Together they make the target
    corridors a global figure's coverage is measured against. ``weights_coverage_min``: the
    weighted average's coverage rule, in % (config.toml [indicators])."""
    minimum = minimum or MinimumBase()
    configured = list(configured or [])
    survey_sources = set(survey_sources or {"rpw"})
    p = parse_period(period)
    canonical = str(p)
    lazy = quotes.lazy()
    countries = countries_frame(canonical).lazy()
    weights = flows()
    available = quotes.get_column("period").unique().to_list()
    try:
        doc = compute_indicators(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT,
                                 countries=countries, flows=weights,
                                 weights_coverage_min=weights_coverage_min)
    except NoData:
        known = ", ".join(publishable(lazy, available, p)) or "none"
        raise NoData(f"no quotes at USD {HEADLINE_AMOUNT} for period {canonical}; nothing "
                     f"written (periods of that kind with a bulletin to publish: {known})"
                     ) from None
    try:
        doc500 = compute_indicators(lazy, period=canonical, amount_usd=SECOND_AMOUNT,
                                    countries=countries, flows=weights,
                                    weights_coverage_min=weights_coverage_min)
    except NoData:
        doc500 = None
    periods = mb.trend_periods(available, canonical)
    trend = trend_with_bases(
        lazy, mb.trend(lazy, periods=periods, amount_usd=HEADLINE_AMOUNT, flows=weights,
                       weights_coverage_min=weights_coverage_min).collect(),
        minimum=minimum, configured=configured, survey_sources=survey_sources)
    earlier = [x for x in trend.get_column("period").to_list() if x != canonical]
    previous = (compute_indicators(lazy, period=earlier[-1], amount_usd=HEADLINE_AMOUNT,
                                   countries=countries, flows=weights,
                                   weights_coverage_min=weights_coverage_min)
                if earlier else None)
    # A year before comes from the same computation as this period and the previous one (and
    # /v1/indicators), so every key figure has it, not only the trend's three averages.
    year_before_period = str(_year_before(p))
    try:
        year_before = (compute_indicators(lazy, period=year_before_period,
                                          amount_usd=HEADLINE_AMOUNT, countries=countries,
                                          flows=weights,
                                          weights_coverage_min=weights_coverage_min)
                       if year_before_period in earlier else None)
    except NoData:
        year_before = None
    services = services_in_period(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT)
    # The caveats of each service and corridor reach the bulletin's tables and its CSVs: the
    # averages keep flagged services, as the World Bank's do, and the reader is told which.
    service_caveats = kinds.service_caveats(lazy, services, labels=p.labels,
                                            amount_usd=HEADLINE_AMOUNT).collect()
    corridor_caveats = kinds.corridor_caveats(service_caveats.lazy()).collect()
    table = _with_caveats(corridor_table(doc), corridor_caveats)
    prev_table = corridor_table(previous).lazy() if previous else None
    official_all = official_figures()
    # Only the same period: a quarter's bulletin beside that quarter's published figures; a
    # month has none (the World Bank publishes quarters).
    official = pl.concat([
        official_all.filter(pl.col("metric") == metric,
                            pl.col("period") == (canonical if p.is_quarter else "")).collect()
        .with_columns(pl.lit(label).alias("label"), pl.lit(ours).alias("ours_key"))
        for metric, ours, label in OFFICIAL_METRICS
    ])
    labels = {metric: label for metric, _, label in OFFICIAL_METRICS}
    not_compared = [labels[m] for m in secondary_figures().filter(
        pl.col("metric").is_in(list(labels)),
        pl.col("period") == (canonical if p.is_quarter else "")).collect()
        .get_column("metric").unique().sort().to_list()]
    official_trend = (official_all.filter(
        pl.col("metric").is_in([m for m, _, _ in OFFICIAL_METRICS]))
        .collect()
        .filter(pl.col("period").is_in([str(parse_period(x).quarter_of) for x in periods]))
        .sort("period", "metric"))
    plans = {
        "five": mb.five_percent_component(table.lazy()),
        "above_5": mb.corridors_above_5(table.lazy(), prev_table),
        "firm_types": agg.firm_type_averages(services),
        "regions": agg.receiving_region_averages(services, countries),
        "sending": mb.sending_country_averages(services, countries),
        "most": mb.ranked_lists(table.lazy(), 10)[0],
        "least": mb.ranked_lists(table.lazy(), 10)[1],
        "postal": postal_benchmark(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT),
        "postal_summary": postal_summary(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT,
                                         previous=previous_period(available, canonical)),
        "postal_trend": postal_trend(lazy, periods=periods[-POSTAL_TREND_PERIODS:],
                                     amount_usd=HEADLINE_AMOUNT),
        "coverage": mb.coverage(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT),
        "source_mix": mb.source_mix(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT),
    }
    done = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))
    postal = done["postal"].join(service_caveats.select("service_id", "caveats"),
                                 on="service_id", how="left", maintain_order="left"
                                 ).with_columns(pl.col("caveats").fill_null(""))
    # The call rests only on periods whose global average is published (its base enough).
    progress = progress_call(trend.lazy().filter(pl.col("global_average").is_not_null())
                             .select("period", pl.col("global_average").alias("value")),
                             latest=canonical)
    bases, target = figure_bases(lazy, period=canonical, countries=countries, flows=weights,
                                 corridors=table, minimum=minimum,
                                 configured=configured, survey_sources=survey_sources)
    grouped = {
        name: group_bases(lazy, done[name], period=canonical, by=by, countries=countries,
                          minimum=minimum)
        for name, by in (("firm_types", "firm_type"), ("regions", "region"),
                         ("sending", "source"))
    }
    return Bulletin(
        period=canonical, doc=doc, doc500=doc500, previous=previous,
        year_before_period=year_before_period, year_before=year_before, trend=trend,
        progress=progress,
        official=official, official_trend=official_trend,
        five=done["five"].row(0, named=True),
        above_5=_with_caveats(done["above_5"], corridor_caveats),
        firm_types=grouped["firm_types"], regions=grouped["regions"],
        sending=grouped["sending"],
        most=_with_caveats(done["most"], corridor_caveats),
        least=_with_caveats(done["least"], corridor_caveats),
        postal=postal,
        postal_types=postal_versus_firm_types(
            grouped["firm_types"].drop(*[c for c in grouped["firm_types"].columns
                                         if c.startswith("base_")]).lazy()).collect(),
        postal_operators=postal_by_operator(done["postal"].lazy()).collect(),
        postal_cheapest=postal_extremes(postal.lazy(), POSTAL_SHOWN).collect(),
        postal_dearest=postal_extremes(postal.lazy(), POSTAL_SHOWN, cheapest=False).collect(),
        coverage=done["coverage"].row(0, named=True), source_mix=done["source_mix"],
        corridors=table, generated_from=generated_from, bases=bases, target=target,
        minimum=minimum,
        survey_quotes=int(done["source_mix"].filter(
            pl.col("source").cast(pl.String).is_in(sorted(survey_sources)))
            .get_column("quotes").sum()),
        kpis=g20_scorecard(lazy, canonical, HEADLINE_AMOUNT),
        postal_summary=done["postal_summary"],
        postal_summary_operators=postal_summary_by_operator(
            done["postal_summary"].lazy()).collect(),
        postal_trend=done["postal_trend"],
        not_compared=not_compared,
    )


def _with_caveats(frame: pl.DataFrame, caveats: pl.DataFrame) -> pl.DataFrame:
    """A table of corridors (``source``, ``destination``) with each one's ``caveats`` and
    ``flagged_services`` (``metrics.kinds.corridor_caveats``; none: "" and 0)."""
    return (frame.join(caveats, on=["source", "destination"], how="left",
                       maintain_order="left")
            .with_columns(pl.col("caveats").fill_null(""),
                          pl.col("flagged_services").fill_null(0)))


# --- formatting --------------------------------------------------------------------------------


INSUFFICIENT = "insufficient data"


def _day(v: Any) -> str:
    return "—" if v is None else v.strftime("%Y-%m-%d")


def base_text(base: dict[str, Any], *, prefix: str = "") -> str:
    """A figure's base as every rendering writes it: quotes, services, corridors, providers,
    the collection dates and (for a global figure) the share of target corridors covered.
    ``prefix``: "base_" for a table row's columns."""
    def g(k: str) -> Any:
        return base.get(prefix + k)

    if not g("quotes"):
        return "no quotes"

    def n(k: str, word: str) -> str:
        return f"{g(k):,} {word}{'' if g(k) == 1 else 's'}"

    cov = base.get("coverage_pct")
    covered = "" if cov is None else f" ({cov:.1f}% of target corridors covered)"
    return (f"{n('quotes', 'quote')}, {n('services', 'service')}, {n('corridors', 'corridor')}"
            f"{covered}, {n('providers', 'provider')}, collected "
            f"{_day(g('first_collected'))} to {_day(g('last_collected'))}")


def shown(value: float | None, sufficient: bool, fmt: Any = None) -> str:
    """A figure as published: its value, or "insufficient data" below the minimum base."""
    if not sufficient:
        return INSUFFICIENT
    return (fmt or pct)(value)


def pct(v: float | None) -> str:
    """A percentage as every rendering shows it: 7.90%; an em dash when unknown."""
    return "—" if v is None else f"{v:.2f}%"


def points(v: float | None, *, zero: str = "0.00 points") -> str:
    """A difference in percentage points, signed: +4.90 points, −0.20 points; ``zero`` when
    it rounds to 0.00 (never "−0.00")."""
    if v is None:
        return "—"
    shown = round(v, 2)
    return zero if shown == 0 else f"{shown:+.2f} points".replace("-", "−")


def change(now: float | None, before: float | None, *, decimals: int = 2) -> str:
    """The change between two figures as the reader can check it: the difference of the two
    values as shown (rounded to ``decimals``), so 6.55% after 6.56% reads −0.01 points and
    12.24% after 12.24% reads "no change", whatever the third decimal."""
    if now is None or before is None:
        return "—"
    shown = round(round(now, decimals) - round(before, decimals), decimals)
    if shown == 0:
        return "no change"
    return f"{shown:+.{decimals}f} points".replace("-", "−")


def firm_type_label(code: str | None) -> str:
    if code is None:
        return "—"
    try:
        return FIRM_TYPE_LABELS[FirmType(code)]
    except ValueError:
        return code


def region_label(code: str) -> str:
    return REGION_NAMES.get(code, code)


def _changes(b: Bulletin) -> list[dict[str, Any]]:
    """The key figures with their change since the previous period and a year before."""
    prev = b.previous
    prev_period = prev["period"] if prev else None
    yb = b.year_before_period
    year = b.year_before
    # The trend judged each period's base: a figure of a period below the minimum is not
    # published, so it is not compared either.
    year_ok = year is not None and bool(b.trend_value(yb, "sufficient"))

    def row(key: str, label: str, value: float | None, amount: int = HEADLINE_AMOUNT,
            is_share: bool = False) -> dict[str, Any]:
        base = b.bases.get(key if amount == HEADLINE_AMOUNT else f"{key}_{amount}", {})
        ok = bool(base.get("sufficient", True))
        value = value if ok else None
        prev_ok = prev is not None and bool(b.trend_value(prev["period"], "sufficient"))
        pv = prev[key] if prev and prev_ok and amount == HEADLINE_AMOUNT else None
        yv = year[key] if year is not None and year_ok and amount == HEADLINE_AMOUNT else None
        return {"indicator": key, "label": label, "amount_usd": amount, "value": value,
                "status": "published" if ok else INSUFFICIENT, "base": base,
                "previous_period": prev_period if pv is not None else None,
                "previous_value": pv,
                "change": None if value is None or pv is None else value - pv,
                "year_before_period": yb if yv is not None else None, "year_before_value": yv,
                "change_year": None if value is None or yv is None else value - yv,
                "share": is_share}

    d = b.doc
    rows = [
        row("global_average", "Global average cost of sending USD 200 (10.c.1)",
            d["global_average"]),
    ]
    if b.doc500 is not None:
        rows.append(row("global_average", "Global average cost of sending USD 500",
                        b.doc500["global_average"], amount=SECOND_AMOUNT))
    rows += [
        row("smart_average", "Global SmaRT (3 cheapest qualifying services)",
            d["smart_average"]),
        row("weighted_average", "Global weighted average (by remittance flows)",
            d["weighted_average"]),
        row("g20_sending_average", "G20 sending countries", d["g20_sending_average"]),
        row("g8_sending_average", "G8 sending countries", d["g8_sending_average"]),
        row("g20_receiving_average", "G20 receiving countries", d["g20_receiving_average"]),
        row("share_corridors_above_5", "Share of corridors with an average above 5% (of "
            f"the {b.five['with_average']:,} corridors with an average)",
            d["share_corridors_above_5"], is_share=True),
        row("share_corridors_above_10", "Share of corridors with an average above 10% (of "
            f"the {b.five['with_average']:,} corridors with an average)",
            d["share_corridors_above_10"], is_share=True),
        row("share_services_below_3", "Share of services costing below 3% (of the "
            f"{d['services']['transparent']:,} services with a disclosed rate)",
            d["share_services_below_3"], is_share=True),
    ]
    return rows


def ours_for(b: Bulletin, key: str) -> float | None:
    """Our figure ``key`` as published: None when it is below its minimum base."""
    if not b.bases.get(key, {}).get("sufficient", True):
        return None
    value = b.doc.get(key)
    return float(value) if value is not None else None


def official_rows(b: Bulletin) -> list[dict[str, Any]]:
    """The World Bank's figures for this very quarter beside ours, with the difference (ours
    minus theirs, of the figures as shown)."""
    out = []
    for r in b.official.iter_rows(named=True):
        ours = ours_for(b, r["ours_key"])
        ok = bool(b.bases.get(r["ours_key"], {}).get("sufficient", True))
        out.append({**r, "ours": ours, "ours_shown": shown(ours, ok),
                    "difference": change(ours, r["value_pct"])})
    return out


def _official_sentence(b: Bulletin) -> str:
    if not parse_period(b.period).is_quarter:
        return ("The World Bank publishes quarterly figures: this monthly bulletin is not set "
                "beside any of them (a figure of another period is no comparison).")
    rows = b.official.filter(pl.col("metric") == "global_average_usd200")
    if rows.height == 0:
        said = (f"The World Bank's global average for {b.period} is not among the figures "
                "sendcost ships from the World Bank's own publications; ours is not compared "
                "with another quarter's.")
    else:
        r = rows.row(0, named=True)
        said = (f"Official World Bank global average for {b.period}: {pct(r['value_pct'])} "
                f"(source: {r['source_title']}, {r['source_url']}).")
    return f"{said} {_not_compared_sentence(b)}".rstrip()


def _not_compared_sentence(b: Bulletin) -> str:
    """Which figures of this period are not compared because only other sites citing the
    World Bank give them ("" when none)."""
    if not b.not_compared:
        return ""
    return (f"Not compared: {', '.join(b.not_compared)} for {b.period}, known only from "
            "other sites citing the World Bank (its own publication of them was not found; "
            f"corridors/data/{SECONDARY_FIGURES}).")


def _progress_sentence(b: Bulletin) -> str:
    c = b.progress
    if c.call == "target achieved":
        return (f"Target achieved: the global average of {c.latest_period} "
                f"({pct(c.latest_value)}) is at or below {c.target:g}%.")
    if c.observed_rate is None:
        return (f"Progress call: {c.call} — the trend needs at least two periods with data "
                "(or a base value above the target).")
    needed = ("" if c.needed_rate is None
              else f"; needed to reach {c.target:g}% by {c.target_year}: "
                   f"{c.needed_rate * 100:.2f}% a year")
    ratio = "" if c.ratio is None else f" (ratio {c.ratio * 100:.0f}%)"
    return (f"Progress call: {c.call}{ratio}. Base period {c.base_period} "
            f"({pct(c.base_value)}), latest {c.latest_period} ({pct(c.latest_value)}); "
            f"observed rate of change {c.observed_rate * 100:.2f}% a year{needed}. "
            "Rule: Open SDG (Statistics Canada) compound annual growth rate, ratio of observed "
            "to needed rate: ≥ 95% on track, 60–95% acceleration needed, 0–60% limited "
            "progress, below 0 deterioration.")


def indicative(b: Bulletin) -> str:
    """Why the bulletin's figures are indicative, naming what they were computed from: an RPW
    file (the World Bank's survey), or the store, with or without the survey's quotes."""
    if b.generated_from.get("kind") == "rpw-file":
        made = ("recomputed with sendcost's methodology from the World Bank's Remittance "
                "Prices Worldwide survey quotes")
    elif b.survey_quotes and b.survey_quotes >= b.coverage.get("quotes", 0):
        made = ("computed with sendcost's methodology from the World Bank's Remittance Prices "
                "Worldwide survey quotes in sendcost's store")
    elif b.survey_quotes:
        made = ("computed from sendcost's store: quotes it collected from its own sample of "
                "services, at its own cadence and price points, beside the World Bank's "
                "Remittance Prices Worldwide survey quotes")
    else:
        made = ("computed from sendcost's store of quotes collected from its own sample of "
                "services, at its own cadence and price points")
    return (f"sendcost's figures are indicative: they are {made}, and are not the official "
            "SDG 10.c.1 value, which the World Bank publishes quarterly.")


def _source_sentence(b: Bulletin) -> str:
    g = b.generated_from
    if g.get("kind") == "rpw-file":
        return (f"Computed from the World Bank's quote-level RPW data ({g['file']}), "
                "recomputed with sendcost's methodology; the World Bank's own published "
                "global figures for 2011–2014 are not reproducible to the second decimal "
                "from this extract (see docs/indicators.md).")
    base = b.bases.get("global_average", {})
    sources = b.source_mix.get_column("source").cast(pl.String).unique().sort().to_list()
    return (f"The global average rests on {base_text(base)}, of the {g.get('quotes', 0):,} "
            f"quotes in sendcost's store (sources with quotes in {b.period}: "
            f"{', '.join(sources) or 'none'}).")


# --- tables (the CSVs, and the rows every rendering shows) ---------------------------------------


def data_tables(b: Bulletin) -> dict[str, pl.DataFrame]:
    """Every table and chart's data, by CSV file stem (the renderings round to 2 decimals)."""
    rows = []
    for r in _changes(b):
        base = r["base"]
        rows.append({**{k: v for k, v in r.items() if k not in ("base", "share")},
                     **{f"base_{k}": base.get(k) for k in (*mb.BASE_COLUMNS, "coverage_pct")},
                     "minimum_base": base.get("rule")})
    changes = pl.DataFrame(rows, schema={
        "indicator": pl.String, "label": pl.String, "amount_usd": pl.Int64,
        "value": pl.Float64, "status": pl.String, "previous_period": pl.String,
        "previous_value": pl.Float64, "change": pl.Float64, "year_before_period": pl.String,
        "year_before_value": pl.Float64, "change_year": pl.Float64,
        "base_quotes": pl.Int64, "base_services": pl.Int64, "base_corridors": pl.Int64,
        "base_providers": pl.Int64, "base_first_collected": pl.Datetime("us", "UTC"),
        "base_last_collected": pl.Datetime("us", "UTC"), "base_coverage_pct": pl.Float64,
        "minimum_base": pl.String},
        orient="row").with_columns(pl.lit(b.period).alias("period"))
    progress = pl.DataFrame([b.progress.as_dict()])
    tables = {
        "headline": changes,
        "official": pl.DataFrame(
            [{"metric": r["metric"], "label": r["label"], "period": r["period"],
              "value_pct": r["value_pct"], "ours_pct": r["ours"],
              "ours_status": "published" if r["ours_shown"] != INSUFFICIENT else INSUFFICIENT,
              "difference_points": (None if r["ours"] is None
                                    else round(round(r["ours"], 2) - round(r["value_pct"], 2), 2)),
              "source_title": r["source_title"], "source_url": r["source_url"],
              "source_kind": r["source_kind"], "source_quote": r["quote"]}
             for r in official_rows(b)],
            schema={"metric": pl.String, "label": pl.String, "period": pl.String,
                    "value_pct": pl.Float64, "ours_pct": pl.Float64, "ours_status": pl.String,
                    "difference_points": pl.Float64, "source_title": pl.String,
                    "source_url": pl.String, "source_kind": pl.String,
                    "source_quote": pl.String}),
        "five_percent": pl.DataFrame([{
            **b.five,
            "status": ("published" if b.bases.get("share_corridors_above_5", {})
                       .get("sufficient", True) else INSUFFICIENT),
            **{f"base_{k}": b.bases.get("share_corridors_above_5", {}).get(k)
               for k in (*mb.BASE_COLUMNS, "coverage_pct")}}]),
        "corridors_above_5": b.above_5,
        "trend": b.trend,
        "trend_official": b.official_trend,
        "progress": progress,
        "firm_types": b.firm_types.with_columns(
            pl.col("firm_type").map_elements(firm_type_label, return_dtype=pl.String)
            .alias("label")),
        "receiving_regions": b.regions.with_columns(
            pl.col("region").replace_strict(REGION_NAMES, default=pl.col("region"))
            .alias("name")),
        "sending_countries": b.sending,
        "most_expensive": b.most,
        "least_expensive": b.least,
        "postal_benchmark": b.postal,
        "postal_vs_firm_types": b.postal_types,
        "postal_summary": b.postal_summary,
        "postal_summary_operators": b.postal_summary_operators,
        "postal_trend": b.postal_trend,
        "postal_operators": b.postal_operators.with_columns(
            pl.col("firm_type").map_elements(firm_type_label, return_dtype=pl.String)
            .alias("label")),
        "coverage": pl.DataFrame([b.coverage]),
        "source_mix": b.source_mix,
        "corridors": b.corridors,
        "non_transparent": pl.DataFrame(b.doc["non_transparent"], schema={
            "source": pl.String, "destination": pl.String, "firm": pl.String,
            "fee_pct": pl.Float64}),
        "g20_scorecard": scorecard_table(b.kpis),
        "g20_scorecard_global": scorecard_table(
            {**b.kpis, "corridors": [{"source": None, "destination": None,
                                      **b.kpis["global"]}]}),
    }
    return tables


#: Decimals kept in the data files. Polars' parallel sums may differ in the last bit of a
#: float from one run to the next; rounding far below any meaningful difference (a
#: millionth of a percentage point) keeps the files byte-identical for the same data.
DECIMALS = 6


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """A table as CSV: UTF-8, header, floats to DECIMALS, ISO timestamps, LF endings."""
    # Rounded to 9 decimals first: a mean that lands on a rounding boundary (2014Q2 NZL's
    # 9.4018125) comes out of Polars' parallel sum a last bit above or below it, and would
    # round to DECIMALS either way from one run to the next.
    out = frame.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             pl.col(pl.Float64, pl.Float32).round(9).round(DECIMALS))
    return out.write_csv(null_value="", float_precision=None).encode()


# --- writing -----------------------------------------------------------------------------------


def rpw_credit(b: Bulletin) -> str:
    """How the World Bank's RPW is credited: its data only when its quotes are in the
    period (a store month of collected quotes uses its method, not its data)."""
    return ("includes data from" if b.survey_quotes else
            "no RPW quote in this period; method, published figures and weights from")


class EmulatedOnly(NoData):
    """The period's quotes are all emulated: no bulletin is made of them unless asked."""


def choose_data(quotes: pl.DataFrame, period: str, generated_from: dict[str, Any], *,
                include_emulated: bool = False) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The quotes a bulletin of ``period`` is made of, and what it is generated from.

    Emulated quotes (the sandbox's) are left out, and ``generated_from`` names their sources
    (``emulated_left_out``); a period with nothing else raises EmulatedOnly naming them.
    ``include_emulated`` keeps them: ``generated_from["emulated"]`` then names the sources,
    and every page, file and chart says "emulated data — not real prices".
    """
    from metrics.services import period_labels

    labels = period_labels(str(parse_period(period)))
    lazy = quotes.lazy()
    in_period = kinds.emulated_sources(
        lazy.filter(pl.col("period").cast(pl.String).is_in(labels))).collect()
    everywhere = kinds.emulated_sources(lazy).collect().get_column("source").to_list()
    if not everywhere:
        return quotes, generated_from
    if include_emulated:
        return quotes, {**generated_from, "emulated": everywhere,
                        "warning": EMULATED_WARNING}
    real = quotes.filter(kinds.real_data())
    real_in_period = real.filter(pl.col("period").cast(pl.String).is_in(labels)).height
    if in_period.height and not real_in_period:
        named = ", ".join(f"{r['source']} ({r['quotes']:,} quotes)"
                          for r in in_period.iter_rows(named=True))
        raise EmulatedOnly(
            f"every quote of {period} is emulated data — not real prices — from the sandbox "
            f"(sources: {named}): no bulletin is made of them, nothing written. Collect from "
            "real upstreams, or pass --include-emulated for a bulletin marked as emulated on "
            "every page and chart")
    out = {**generated_from, "emulated_left_out": everywhere}
    if "quotes" in out:
        out["quotes"] = real.height
    if "sources" in out:
        out["sources"] = [x for x in out["sources"]
                          if x in set(real.get_column("source").cast(pl.String).unique())]
    return real, out


def base_settings(config: Any) -> dict[str, Any]:
    """What ``compute_bulletin`` needs of the config to judge each figure's base: the
    minimum base, the configured corridors, the names of the survey (RPW) sources, the
    weighted average's coverage rule."""
    if config is None:
        return {}
    return {"minimum": config.bulletin.minimum,
            "configured": [(c.source, c.destination) for c in config.corridors],
            "survey_sources": {"rpw"} | {s.name for s in config.sources if s.kind == "rpw"},
            "weights_coverage_min": config.indicators.weights_coverage_min}


# --- the running service -----------------------------------------------------------------------


async def load_store_quotes(store: Any) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every quote in the store, with a description of what the bulletin is generated from."""
    frame = await store.quote_frame()
    sources = sorted(s for s in frame.get_column("source").unique().to_list() if s)
    return frame, {"kind": "store", "quotes": frame.height, "sources": sources,
                   "periods": sorted(frame.get_column("period").unique().to_list())}


def bulletins_dir(config: Any) -> Path:
    return Path(config.data_dir) / "bulletins"


def describe(folder: Path) -> dict[str, Any]:
    """One published bulletin as the listing shows it (from its metadata.json)."""
    meta = json.loads((folder / "data" / "metadata.json").read_text(encoding="utf-8"))
    return {"period": meta["period"], "methodology_version": meta["methodology_version"],
            "generated_from": meta["generated_from"].get("kind"),
            "progress": meta["progress"]["call"]}

