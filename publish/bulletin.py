"""The SDG 10.c bulletin of one period: HTML, PDF, Markdown, charts, data and a zip.

``compute_bulletin`` gathers every figure (from ``metrics``), ``write_bulletin`` renders and
writes one folder per period — atomically: it is built in a temporary folder beside the
target and renamed at the end, so a failure (or a period without data) writes nothing.
The same quotes give the same bytes in every file, the PDF and the zip included (no clock,
deterministic charts, rounded CSVs, a PDF laid out against a fixed base URL with an
identifier derived from its HTML, sorted zip entries with fixed timestamps).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from corridors.errors import NoData
from corridors.periods import Period, parse_period
from corridors.reference import countries_frame, data_file
from corridors.types import FIRM_TYPE_LABELS, FirmType
from metrics import METHODOLOGY_VERSION
from metrics import aggregates as agg
from metrics import bulletin as mb
from metrics.indicators import compute_indicators, corridor_table
from metrics.postal import (
    postal_benchmark,
    postal_by_operator,
    postal_extremes,
    postal_versus_firm_types,
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
INDICATIVE = ("sendcost's figures are indicative: they are computed from sendcost's own sample "
              "of services, at its own cadence and price points, and are not the official SDG "
              "10.c.1 value, which the World Bank publishes quarterly.")
REGION_NAMES = {
    "EAP": "East Asia & Pacific", "ECA": "Europe & Central Asia",
    "LAC": "Latin America & Caribbean", "MNA": "Middle East & North Africa",
    "NAC": "North America", "SAS": "South Asia", "SSA": "Sub-Saharan Africa",
}
OFFICIAL_METRICS = (
    ("global_average_usd200", "global_average", "Global average, USD 200 (SDG 10.c.1)"),
    ("global_weighted_average", "weighted_average", "Global weighted average"),
    ("smart_average", "smart_average", "Global SmaRT"),
)
#: Corridors averaging above 5% shown in the documents (the most expensive first); the
#: complete list is data/corridors_above_5.csv.
ABOVE_5_SHOWN = 20
#: Post-office services shown at each end (cheapest and dearest against their corridor's
#: median); every one is in data/postal_benchmark.csv.
POSTAL_SHOWN = 10
#: The six sections, in order; their titles are the h2 headings of HTML, PDF and Markdown.
SECTIONS = (
    "1. Headline: the cost of sending USD 200",
    "2. The 5% component",
    "3. Trend and progress toward 2030",
    "4. Breakdowns",
    "5. The postal page",
    "6. Coverage and method",
)


def flows() -> pl.LazyFrame:
    """World Bank bilateral remittance flows (2011): the weights of the weighted average."""
    from collector.flows import read_bilateral_flows

    return read_bilateral_flows().flows.lazy()


def official_figures() -> pl.LazyFrame:
    return mb.official_figures(pl.scan_csv(data_file("published_figures.csv"),
                                           infer_schema=False))


def load_rpw(path: str | Path | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Quotes straight from an RPW file (default: the bundled 2011–2014 extract)."""
    from collector.rpw import read_rpw
    from collector.rpw_import import bundled_rpw_path

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
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def headline(self) -> float | None:
        return self.doc["global_average"]

    def trend_value(self, period: str, column: str = "global_average") -> float | None:
        row = self.trend.filter(pl.col("period") == period)
        return row.item(0, column) if row.height else None


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


def compute_bulletin(quotes: pl.DataFrame, period: str, *,
                     generated_from: dict[str, Any]) -> Bulletin:
    """All the figures of ``period``'s bulletin. Raises NoData when the period has none."""
    p = parse_period(period)
    canonical = str(p)
    lazy = quotes.lazy()
    countries = countries_frame().lazy()
    weights = flows()
    available = quotes.get_column("period").unique().to_list()
    try:
        doc = compute_indicators(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT,
                                 countries=countries, flows=weights)
    except NoData:
        known = ", ".join(publishable(lazy, available, p)) or "none"
        raise NoData(f"no quotes at USD {HEADLINE_AMOUNT} for period {canonical}; nothing "
                     f"written (periods of that kind with a bulletin to publish: {known})"
                     ) from None
    try:
        doc500 = compute_indicators(lazy, period=canonical, amount_usd=SECOND_AMOUNT,
                                    countries=countries, flows=weights)
    except NoData:
        doc500 = None
    periods = mb.trend_periods(available, canonical)
    trend = mb.trend(lazy, periods=periods, amount_usd=HEADLINE_AMOUNT, flows=weights).collect()
    earlier = [x for x in trend.get_column("period").to_list() if x != canonical]
    previous = (compute_indicators(lazy, period=earlier[-1], amount_usd=HEADLINE_AMOUNT,
                                   countries=countries, flows=weights) if earlier else None)
    table = corridor_table(doc)
    prev_table = corridor_table(previous).lazy() if previous else None
    services = services_in_period(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT)
    official_all = official_figures()
    official = pl.concat([
        mb.latest_official(official_all, metric=metric, period=canonical).collect()
        .with_columns(pl.lit(label).alias("label"), pl.lit(ours).alias("ours_key"))
        for metric, ours, label in OFFICIAL_METRICS
    ])
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
        "most": mb.extremes(table.lazy(), 10, most=True),
        "least": mb.extremes(table.lazy(), 10, most=False),
        "postal": postal_benchmark(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT),
        "coverage": mb.coverage(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT),
        "source_mix": mb.source_mix(lazy, period=canonical, amount_usd=HEADLINE_AMOUNT),
    }
    done = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))
    progress = progress_call(trend.lazy().select(
        "period", pl.col("global_average").alias("value")), latest=canonical)
    return Bulletin(
        period=canonical, doc=doc, doc500=doc500, previous=previous,
        year_before_period=str(_year_before(p)), trend=trend, progress=progress,
        official=official, official_trend=official_trend,
        five=done["five"].row(0, named=True), above_5=done["above_5"],
        firm_types=done["firm_types"], regions=done["regions"], sending=done["sending"],
        most=done["most"], least=done["least"], postal=done["postal"],
        postal_types=postal_versus_firm_types(done["firm_types"].lazy()).collect(),
        postal_operators=postal_by_operator(done["postal"].lazy()).collect(),
        postal_cheapest=postal_extremes(done["postal"].lazy(), POSTAL_SHOWN).collect(),
        postal_dearest=postal_extremes(done["postal"].lazy(), POSTAL_SHOWN,
                                       cheapest=False).collect(),
        coverage=done["coverage"].row(0, named=True), source_mix=done["source_mix"],
        corridors=table, generated_from=generated_from,
    )


# --- formatting --------------------------------------------------------------------------------


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

    def row(key: str, label: str, value: float | None, amount: int = HEADLINE_AMOUNT,
            trend_col: str | None = None, is_share: bool = False) -> dict[str, Any]:
        pv = prev[key] if prev and amount == HEADLINE_AMOUNT else None
        yv = b.trend_value(yb, trend_col) if trend_col else None
        return {"indicator": key, "label": label, "amount_usd": amount, "value": value,
                "previous_period": prev_period if pv is not None else None,
                "previous_value": pv,
                "change": None if value is None or pv is None else value - pv,
                "year_before_period": yb if yv is not None else None, "year_before_value": yv,
                "change_year": None if value is None or yv is None else value - yv,
                "share": is_share}

    d = b.doc
    rows = [
        row("global_average", "Global average cost of sending USD 200 (10.c.1)",
            d["global_average"], trend_col="global_average"),
    ]
    if b.doc500 is not None:
        rows.append(row("global_average", "Global average cost of sending USD 500",
                        b.doc500["global_average"], amount=SECOND_AMOUNT))
    rows += [
        row("smart_average", "Global SmaRT (3 cheapest qualifying services)",
            d["smart_average"], trend_col="smart_average"),
        row("weighted_average", "Global weighted average (by remittance flows)",
            d["weighted_average"], trend_col="weighted_average"),
        row("g20_sending_average", "G20 sending countries", d["g20_sending_average"]),
        row("g8_sending_average", "G8 sending countries", d["g8_sending_average"]),
        row("g20_receiving_average", "G20 receiving countries", d["g20_receiving_average"]),
        row("share_corridors_above_5", "Share of corridors with an average above 5%",
            d["share_corridors_above_5"], is_share=True),
        row("share_corridors_above_10", "Share of corridors with an average above 10%",
            d["share_corridors_above_10"], is_share=True),
        row("share_services_below_3", "Share of services costing below 3%",
            d["share_services_below_3"], is_share=True),
    ]
    return rows


def _official_sentence(b: Bulletin) -> str:
    rows = b.official.filter(pl.col("metric") == "global_average_usd200")
    if rows.height == 0:
        return ("The World Bank has published no global average for this quarter or an "
                "earlier one in the figures sendcost ships.")
    r = rows.row(0, named=True)
    same = "this quarter" if r["period"] == str(parse_period(b.period).quarter_of) else \
        f"{r['period']}, the latest published for this period"
    return (f"Latest official World Bank figure: {pct(r['value_pct'])} ({same}; source: "
            f"{r['source_title']}).")


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


def _source_sentence(b: Bulletin) -> str:
    g = b.generated_from
    if g.get("kind") == "rpw-file":
        return (f"Computed from the World Bank's quote-level RPW data ({g['file']}), "
                "recomputed with sendcost's methodology; the World Bank's own published "
                "global figures for 2011–2014 are not reproducible to the second decimal "
                "from this extract (see docs/indicators.md).")
    return (f"Computed from the {g.get('quotes', 0):,} quotes in sendcost's store "
            f"(sources: {', '.join(g.get('sources', [])) or 'none'}).")


# --- tables (the CSVs, and the rows every rendering shows) ---------------------------------------


def data_tables(b: Bulletin) -> dict[str, pl.DataFrame]:
    """Every table and chart's data, by CSV file stem (the renderings round to 2 decimals)."""
    changes = pl.DataFrame(_changes(b), schema={
        "indicator": pl.String, "label": pl.String, "amount_usd": pl.Int64,
        "value": pl.Float64, "previous_period": pl.String, "previous_value": pl.Float64,
        "change": pl.Float64, "year_before_period": pl.String,
        "year_before_value": pl.Float64, "change_year": pl.Float64, "share": pl.Boolean},
        orient="row").with_columns(pl.lit(b.period).alias("period")).drop("share")
    progress = pl.DataFrame([b.progress.as_dict()])
    tables = {
        "headline": changes,
        "official": b.official.select("metric", "label", "period", "value_pct",
                                      "source_title", "source_url"),
        "five_percent": pl.DataFrame([b.five]),
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
        "postal_operators": b.postal_operators.with_columns(
            pl.col("firm_type").map_elements(firm_type_label, return_dtype=pl.String)
            .alias("label")),
        "coverage": pl.DataFrame([b.coverage]),
        "source_mix": b.source_mix,
        "corridors": b.corridors,
        "non_transparent": pl.DataFrame(b.doc["non_transparent"], schema={
            "source": pl.String, "destination": pl.String, "firm": pl.String,
            "fee_pct": pl.Float64}),
    }
    return tables


#: Decimals kept in the data files. Polars' parallel sums may differ in the last bit of a
#: float from one run to the next; rounding far below any meaningful difference (a
#: millionth of a percentage point) keeps the files byte-identical for the same data.
DECIMALS = 6


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """A table as CSV: UTF-8, header, floats to DECIMALS, ISO timestamps, LF endings."""
    out = frame.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             pl.col(pl.Float64, pl.Float32).round(DECIMALS))
    return out.write_csv(null_value="", float_precision=None).encode()


# --- writing -----------------------------------------------------------------------------------


def _zip(folder: Path, target: Path, prefix: str) -> None:
    """A deterministic zip of ``folder``: sorted entries, fixed timestamps and modes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != target)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(f"{prefix}/{path.relative_to(folder).as_posix()}",
                                   date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def _metadata(b: Bulletin, files: dict[str, bytes]) -> dict[str, Any]:
    c = b.coverage
    return {
        "title": f"sendcost SDG 10.c bulletin, {b.period}",
        "period": b.period,
        "amount_usd": HEADLINE_AMOUNT,
        "methodology_version": METHODOLOGY_VERSION,
        "indicative": INDICATIVE,
        "licence": {"name": LICENCE, "url": LICENCE_URL,
                    "attribution": f"sendcost bulletin {b.period}; includes data from "
                                   f"{RPW_ATTRIBUTION} ({LICENCE})."},
        "sources": [
            {"name": "World Bank Remittance Prices Worldwide (RPW)",
             "url": "http://remittanceprices.worldbank.org", "licence": LICENCE,
             "attribution": RPW_ATTRIBUTION,
             "used_for": "quotes (when generated from RPW) and the method"},
            {"name": "World Bank published RPW figures (corridors/data/published_figures.csv)",
             "used_for": "official figures shown beside ours", "licence": LICENCE},
            {"name": "World Bank bilateral remittance matrix 2011",
             "used_for": "weights of the weighted average", "licence": LICENCE},
        ],
        "generated_from": b.generated_from,
        "coverage": {k: (v.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(v, "strftime") else v)
                     for k, v in c.items()},
        "progress": {k: round(v, DECIMALS) if isinstance(v, float) else v
                     for k, v in b.progress.as_dict().items()},
        # Every file but this one and the zip (which contains this one); the zip's hash is in
        # bulletin-<period>.zip.sha256 beside it.
        "files": {name: hashlib.sha256(data).hexdigest()
                  for name, data in sorted(files.items())},
    }


def render_files(b: Bulletin, folder: Path) -> list[str]:
    """Write every file of the bulletin into ``folder`` (which exists and is empty)."""
    from publish import bulletin_render as render
    from publish import charts as ch

    charts = render.charts(b)
    for chart in charts:
        ch.save(chart, folder / "charts")
    written: dict[str, bytes] = {}
    data = folder / "data"
    data.mkdir()
    for name, frame in data_tables(b).items():
        body = csv_bytes(frame)
        (data / f"{name}.csv").write_bytes(body)
        written[f"data/{name}.csv"] = body
    for path in sorted((folder / "charts").iterdir()):
        written[f"charts/{path.name}"] = path.read_bytes()
    html = render.html(b, charts)
    md = render.markdown(b)
    (folder / "index.html").write_text(html, encoding="utf-8")
    (folder / "bulletin.md").write_text(md, encoding="utf-8")
    written["index.html"] = html.encode()
    written["bulletin.md"] = md.encode()
    pdf = render.pdf(html, folder)
    (folder / "bulletin.pdf").write_bytes(pdf)
    written["bulletin.pdf"] = pdf
    meta = json.dumps(_metadata(b, written), indent=2, ensure_ascii=False, sort_keys=False)
    (data / "metadata.json").write_text(meta + "\n", encoding="utf-8")
    archive = folder / f"bulletin-{b.period}.zip"
    _zip(folder, archive, b.period)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    # The format of sha256sum, so `sha256sum -c bulletin-P.zip.sha256` checks it.
    (folder / f"{archive.name}.sha256").write_text(f"{digest}  {archive.name}\n",
                                                   encoding="utf-8")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def write_bulletin(quotes: pl.DataFrame, period: str, out_dir: str | Path, *,
                   generated_from: dict[str, Any]) -> Path:
    """Compute and write ``<out_dir>/<period>/``; replace an older one only when done.

    Raises NoData (writing nothing) when the period has no quotes.
    """
    b = compute_bulletin(quotes, period, generated_from=generated_from)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / b.period
    tmp = Path(tempfile.mkdtemp(prefix=f".{b.period}.", dir=out))
    try:
        render_files(b, tmp)
        tmp.chmod(0o755)
        old = None
        if final.exists():
            old = out / f".{b.period}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --- the running service -----------------------------------------------------------------------


async def load_store_quotes(store: Any) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every quote in the store, with a description of what the bulletin is generated from."""
    frame = await store.quote_frame()
    sources = sorted(s for s in frame.get_column("source").unique().to_list() if s)
    return frame, {"kind": "store", "quotes": frame.height, "sources": sources,
                   "periods": sorted(frame.get_column("period").unique().to_list())}


async def publish_bulletin(app: Any, period: str) -> dict[str, Any]:
    """Publish ``period``'s bulletin of the running service into <data_dir>/bulletins/.

    The heavy work (Polars, matplotlib, WeasyPrint) runs in a worker thread.
    """
    from corridors import runtime

    store = app[runtime.STORE]
    out = bulletins_dir(app[runtime.CONFIG])
    quotes, generated_from = await load_store_quotes(store)
    folder = await asyncio.to_thread(write_bulletin, quotes, period, out,
                                     generated_from=generated_from)
    log.info("published the bulletin of %s in %s", period, folder)
    return {"period": folder.name, "folder": str(folder)}


def bulletins_dir(config: Any) -> Path:
    return Path(config.data_dir) / "bulletins"


def describe(folder: Path) -> dict[str, Any]:
    """One published bulletin as the listing shows it (from its metadata.json)."""
    meta = json.loads((folder / "data" / "metadata.json").read_text(encoding="utf-8"))
    return {"period": meta["period"], "methodology_version": meta["methodology_version"],
            "generated_from": meta["generated_from"].get("kind"),
            "progress": meta["progress"]["call"]}

