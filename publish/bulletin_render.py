"""Rendering of a computed bulletin: charts, HTML (screen and print), PDF, Markdown.

The HTML comes from Jinja2 templates (publish/templates/bulletin/), autoescaped: every value
is escaped unless it is markup the templates built. The HTML is written to be accessible: one
h1, h2 per section and h3 inside, alt text on every image, a caption and scoped header cells
on every table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup

from corridors.periods import parse_period
from corridors.reference import countries
from metrics import METHODOLOGY_VERSION
from metrics.kinds import TABLE_CAVEATS
from metrics.kpis import TARGET_ONE_HOUR_SHARE
from publish import charts as ch
from publish.bulletin import (
    ABOVE_5_SHOWN,
    INSUFFICIENT,
    LICENCE,
    LICENCE_URL,
    RPW_ATTRIBUTION,
    SECTIONS,
    Bulletin,
    _changes,
    _official_sentence,
    _progress_sentence,
    _source_sentence,
    base_text,
    change,
    firm_type_label,
    indicative,
    official_rows,
    pct,
    points,
    region_label,
    rpw_credit,
    shown,
)
from publish.data import CAVEATS

#: What the coverage section says about reference rates: what it shows, and what it cannot.
REFERENCE_RATE_NOTE = (
    "the margin of every quote is measured against the mid-market rate of the source named "
    "beside it in the source mix above, taken when the quote was collected. This bulletin "
    "shows that source and the number of quotes whose reference rate was too old (stored but "
    "left out of every average); it does not show the age of the rates used, because the "
    "quotes carry no time stamp of their reference rate.")

CHART_FILES = ("trend", "firm_types", "receiving_regions", "sending_countries",
               "most_expensive", "least_expensive", "postal_benchmark", "postal_trend",
               "g20_scorecard")


def country_name(code: str | None) -> str:
    if code is None:
        return "—"
    c = countries().get(code)
    return c.name if c else code


def corridor_label(src: str, dst: str) -> str:
    return f"{country_name(src)} → {country_name(dst)}"


def share(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}%"


def ranked_title(b: Bulletin, *, most: bool) -> str:
    """The heading of a ranked list: how many it shows of how many corridors ranked (the
    two lists never share a corridor)."""
    frame = b.most if most else b.least
    ranked = int(frame.item(0, "ranked")) if frame.height else (
        b.most.item(0, "ranked") if b.most.height else 0)
    which = "most" if most else "least"
    return f"The {frame.height} {which} expensive of {ranked} corridors ranked"


def five_rows(b: Bulletin) -> list[list[Any]]:
    """The 5% component's counts, each share with its denominator named (they differ)."""
    five = b.five
    ok = bool(b.bases.get("share_corridors_above_5", {}).get("sufficient", True))

    def sh(v: float | None) -> str:
        return shown(v, ok, share)

    smart_of = f"the {five['with_smart']:,} corridors with a SmaRT"
    avg_of = f"the {five['with_average']:,} corridors with an average"
    all_of = f"all {five['corridors']:,} corridors observed"
    return [
        ["Corridors observed", five["corridors"], "—", "—"],
        ["SmaRT above 5% (fails the 5% condition)", five["smart_above_5"],
         sh(five["share_smart_above_5"]), smart_of],
        ["Too few qualifying services for a SmaRT (fails the 5% condition)",
         five["too_few_qualifying"], sh(five["share_too_few_qualifying"]), all_of],
        ["SmaRT at or below 5% (meets the 5% condition)", five["meeting_5_condition"], "—",
         "—"],
        ["Average above 5%", five["average_above_5"], sh(five["share_average_above_5"]),
         avg_of],
        ["Average above 10%", five["average_above_10"], sh(five["share_average_above_10"]),
         avg_of],
    ]


def post_average(b: Bulletin) -> str:
    """The post offices' own average as published, with its base."""
    post = b.firm_types.filter(pl.col("firm_type") == "post_office")
    if not post.height:
        return pct(None)
    r = post.row(0, named=True)
    return f"{shown(r['average'], bool(r['sufficient']))} ({base_text(r, prefix='base_')})"


def _g(b: Bulletin, key: str) -> tuple[float | None, bool]:
    return b.doc[key], bool(b.bases.get(key, {}).get("sufficient", True))


def _sending_sentence(b: Bulletin, key: str, who: str) -> str:
    """What sending from ``who`` cost on average, or why no figure is given (its base and
    the minimum it falls short of), as a sentence."""
    value, sufficient = _g(b, key)
    if sufficient:
        return f"Sending from {who} cost {pct(value)} on average."
    base = b.bases.get(key, {})
    return (f"Sending from {who}: {INSUFFICIENT} ({base_text(base)}; below the minimum of "
            f"{base.get('rule', 'a global figure')}).")


CAVEAT_MARK = " †"


def caveat_mark(r: dict[str, Any]) -> str:
    return CAVEAT_MARK if r.get("caveat") else ""


def caveat_note(b: Bulletin) -> str:
    """What the † beside a ranked corridor means, when one is marked."""
    marked = [r for f in (b.most, b.least) for r in f.iter_rows(named=True) if r["caveat"]]
    if not marked:
        return ""
    names = ", ".join(corridor_label(r["source"], r["destination"]) for r in marked)
    text = (f"†: a negative average total cost ({names}): the survey's figure, kept as the "
            "World Bank keeps it, but a promotion or a distorted reference rate rather than "
            "a cheap way to send.")
    return text


#: The mark beside a figure resting on flagged services; its explanation follows the table.
FLAG_MARK = "⚠"


def _flag_words(flag: str) -> str:
    return flag.replace("_", " ")


def caveat_cell(r: dict[str, Any]) -> str:
    """A corridor's or a service's caveats as a table cell: "⚠ negative margin (3)" (3 of
    its services), or "" when it has none. A corridor row's ``caveats`` count services per
    flag ("negative_margin:3"); a service row's are plain flags."""
    text = r.get("caveats") or ""
    if not text:
        return ""
    parts = []
    for token in text.split():
        flag, _, n = token.partition(":")
        parts.append(f"{_flag_words(flag)} ({n})" if n else _flag_words(flag))
    return f"{FLAG_MARK} " + ", ".join(parts)


def flags_shown(*frames: pl.DataFrame) -> list[str]:
    """The caveats marked in these tables, in ``TABLE_CAVEATS`` order."""
    seen = {token.partition(":")[0] for f in frames if "caveats" in f.columns
            for text in f.get_column("caveats").to_list() if text for token in text.split()}
    return [f for f in TABLE_CAVEATS if f in seen]


#: What the ⚠ beside a corridor or service means, before each caveat's explanation.
FLAGS_LEAD = (f"{FLAG_MARK}: services with a caveat (beside a corridor, how many of its "
              "services carry it). They stay in the averages, as in the World Bank's (a stale "
              "reference rate excepted: left out); an estimate or a negative margin or total "
              "is never named a corridor's cheapest service. ")


def flags_explained(flags: list[str]) -> list[tuple[str, str]]:
    """Each caveat shown, in words, with what it means."""
    return [(_flag_words(f), CAVEATS[f]) for f in flags]


def flags_note(flags: list[str]) -> str:
    """What each ⚠ caveat of the tables above means; flagged services stay in the averages
    (but for a stale reference rate, which is left out of them) and are never named a
    corridor's cheapest when estimated or negative ("" without any)."""
    if not flags:
        return ""
    return FLAGS_LEAD + "; ".join(f"{w}: {t}" for w, t in flags_explained(flags)) + "."


def emulated_left_out_sentence(b: Bulletin) -> str:
    """Said on the bulletin when the sandbox's emulated quotes were left out of it."""
    names = b.generated_from.get("emulated_left_out") or []
    if not names:
        return ""
    return (f"Emulated quotes (the sandbox's invented prices, not real ones) from "
            f"{', '.join(names)} were in the store and are left out of every figure.")


def group_cells(r: dict[str, Any]) -> list[Any]:
    """A breakdown row's figure and base: average (or "insufficient data"), base."""
    return [shown(r["average"], bool(r["sufficient"])), base_text(r, prefix="base_")]


# --- charts ------------------------------------------------------------------------------------


def scorecard_bars(b: Bulletin) -> list[tuple[str, float | None]]:
    """The shares the scorecard's chart draws (global, USD 200)."""
    g = b.kpis["global"]
    return [("Quotes delivered within one hour", g["share_quotes_within_one_hour"]),
            ("Quotes delivered within one business day",
             g["share_quotes_within_one_business_day"]),
            ("Services digital at both ends", g["share_services_digital"]),
            ("Quotes disclosing fee, rate, total and time", g["share_quotes_transparent"])]


def scorecard_rows(b: Bulletin) -> list[list[Any]]:
    """The scorecard's table: each KPI, its figure, its base and its target."""
    g = b.kpis["global"]
    t = b.kpis["targets"]
    corridors = b.kpis["corridors"]
    meeting = sum(1 for c in corridors if c["meets_speed_target"])
    speed_known = sum(1 for c in corridors if c["meets_speed_target"] is not None)
    return [
        ["Cost: global average (USD 200)", pct(g["average"]),
         f"{g['services']:,} services", f"below {t['cost_global_average_below']:g}% by "
                                        f"{t['cost_target_year']}"],
        ["Speed: quotes within one hour", share(g["share_quotes_within_one_hour"]),
         f"{g['quotes_with_speed']:,} quotes stating a speed; "
         f"{g['providers_within_one_hour']:,} of {g['providers']:,} providers",
         f"{t['speed_share_within_one_hour']:g}% by {t['speed_target_year']}"],
        ["Speed: quotes within one business day",
         share(g["share_quotes_within_one_business_day"]),
         f"{g['quotes_with_speed']:,} quotes stating a speed",
         f"{t['speed_share_within_one_business_day']:g}% by {t['speed_target_year']}"],
        ["Speed: corridors meeting the speed target", f"{meeting} of {speed_known}",
         "corridors with a known speed", "every corridor"],
        ["Access: services digital at both ends", share(g["share_services_digital"]),
         f"{g['services_with_channels']:,} services stating pay-in and pay-out", "—"],
        ["Transparency: fee, rate, total and delivery time all disclosed",
         share(g["share_quotes_transparent"]),
         f"{g['quotes']:,} quotes (fee {share(g['share_quotes_fee_disclosed'])}, rate "
         f"{share(g['share_quotes_rate_disclosed'])}, total "
         f"{share(g['share_quotes_total_disclosed'])}, time "
         f"{share(g['share_quotes_delivery_time_disclosed'])})", "all providers by 2027"],
    ]


SCORECARD_COLUMNS = [("KPI", False), ("Value", True), ("Base", False), ("G20 target", False)]
#: What the scorecard section says it measures, in every rendering.
SCORECARD_SCOPE = (
    "The G20 targets for remittances (FSB, October 2021), measured on the supply side: the "
    "share of services and quotes that meet each as offered, not the share of payments "
    "made; one business day by the receiving country's holidays and weekend. Definitions "
    "and sources: docs/METHODOLOGY.md.")


def steady(values: pl.Series) -> list[Any]:
    """A chart's values to 9 decimals: Polars' parallel sums may differ in the last bit from
    one run to the next (metrics.services), which would move an axis limit, and so the SVG's
    clip-path ids, by a hair; the same data must give the same bytes."""
    return [None if v is None else round(v, 9) for v in values.to_list()]


def charts(b: Bulletin) -> list[ch.Chart]:
    periods = b.trend.get_column("period").to_list()
    series = {
        "Global average (ours)": steady(b.trend.get_column("global_average")),
        "SmaRT (ours)": steady(b.trend.get_column("smart_average")),
        "Weighted average (ours)": steady(b.trend.get_column("weighted_average")),
    }
    names = {"global_average_usd200": "World Bank: global average",
             "global_weighted_average": "World Bank: weighted average",
             "smart_average": "World Bank: SmaRT"}
    quarter_to_period: dict[str, str] = {}
    for p in periods:
        quarter_to_period.setdefault(str(parse_period(p).quarter_of), p)
    # Official figures are quarterly: drawn only on a trend of quarters, at their own quarter
    # (never at a month's place).
    official = [(quarter_to_period[r["period"]], r["value_pct"], names[r["metric"]])
                for r in b.official_trend.iter_rows(named=True)
                if r["period"] in quarter_to_period and r["metric"] in names
                and parse_period(quarter_to_period[r["period"]]).is_quarter]
    from metrics.progress import decimal_year

    out = [ch.trend_chart(periods, [decimal_year(p) for p in periods], series, official,
                          period=b.period)]
    ft = b.firm_types.filter(pl.col("average").is_not_null()).sort("average", descending=True)
    out.append(ch.bar_chart(
        "firm_types", "Average cost by type of provider", f"{b.period}, USD 200",
        [firm_type_label(x) for x in ft.get_column("firm_type")],
        steady(ft.get_column("average")),
        highlight=[x in ("post_office", "post_office_mto") for x in ft.get_column("firm_type")],
        highlight_label="postal", base_label="other providers", what="by firm type"))
    rg = b.regions.filter(pl.col("average").is_not_null()).sort("average", descending=True)
    out.append(ch.bar_chart(
        "receiving_regions", "Average cost by receiving region", f"{b.period}, USD 200",
        [region_label(x) for x in rg.get_column("region")], steady(rg.get_column("average")),
        what="by World Bank region of the receiving country"))
    sc = b.sending.filter(pl.col("average").is_not_null())
    out.append(ch.bar_chart(
        "sending_countries", "Average cost by sending country",
        f"{b.period}, USD 200; G20 members highlighted",
        [f"{n or s}{' (G20)' if g else ''}" for s, n, g in
         zip(sc.get_column("source"), sc.get_column("name"), sc.get_column("g20"), strict=True)],
        steady(sc.get_column("average")), highlight=sc.get_column("g20").to_list(),
        highlight_label="G20 member", base_label="not G20", what="by sending country"))
    for name, frame, title in (("most_expensive", b.most, ranked_title(b, most=True)),
                               ("least_expensive", b.least, ranked_title(b, most=False))):
        out.append(ch.bar_chart(
            name, title, f"{b.period}, USD 200, corridor averages",
            [corridor_label(r["source"], r["destination"]) + caveat_mark(r)
             for r in frame.iter_rows(named=True)],
            steady(frame.get_column("average")), what="corridor averages",
            per_corridor=True))
    known = b.postal.filter(pl.col("total_cost_pct").is_not_null(),
                            pl.col("corridor_median").is_not_null())
    out.append(ch.postal_chart(
        [(f"{r['firm']} {r['source_code']}-{r['destination_code']}", r["corridor_median"],
          r["total_cost_pct"]) for r in known.iter_rows(named=True)], period=b.period))
    out.append(postal_trend_chart(b))
    out.append(ch.scorecard_chart(scorecard_bars(b), period=b.period,
                                  speed_target=TARGET_ONE_HOUR_SHARE))
    assert tuple(c.name for c in out) == CHART_FILES
    return out


def postal_trend_series(b: Bulletin) -> tuple[list[str], dict[str, tuple[list[float | None],
                                                                      list[float | None]]]]:
    """The periods of the postal trend and, per post, corridor and role with a disclosed
    cost in the bulletin's period, (its cost, its market's median) in each: those held in
    the most periods first, then the widest gap to the market (``charts.POSTAL_TREND_LINES``
    of them are drawn; every one is in data/postal_trend.csv)."""
    t = b.postal_trend
    if not t.height:
        return [], {}
    periods = sorted(set(t.get_column("period").to_list()), key=parse_period)
    keys = ["source_code", "destination_code", "firm", "role"]
    now = t.filter(pl.col("period") == b.period, pl.col("post_total_cost_pct").is_not_null())
    ranked = (t.filter(pl.col("post_total_cost_pct").is_not_null())
              .group_by(keys).agg(pl.len().alias("held"))
              .join(now.select(*keys, pl.col("difference_to_median").abs().alias("gap")),
                    on=keys, how="inner")
              .sort(["held", "gap", "firm", "source_code", "destination_code"],
                    descending=[True, True, False, False, False], nulls_last=True)
              .head(ch.POSTAL_TREND_LINES))
    series: dict[str, tuple[list[float | None], list[float | None]]] = {}
    for r in ranked.iter_rows(named=True):
        rows = t.filter(*(pl.col(k) == r[k] for k in keys))
        by_period = {x["period"]: x for x in rows.iter_rows(named=True)}
        label = (f"{r['firm']}, {corridor_label(r['source_code'], r['destination_code'])}"
                 + (" (pays out)" if r["role"] == "receiver" else ""))
        series[label] = ([by_period[p]["post_total_cost_pct"] if p in by_period else None
                          for p in periods],
                         [by_period[p]["market_median"] if p in by_period else None
                          for p in periods])
    return periods, series


def postal_trend_chart(b: Bulletin) -> ch.Chart:
    from metrics.progress import decimal_year

    periods, series = postal_trend_series(b)
    return ch.postal_trend_chart(periods, [decimal_year(p) for p in periods], series,
                                 period=b.period)


def postal_roles_sentence(b: Bulletin) -> str:
    """How the posts stand against their market in the period, senders and receivers told
    apart, and how many gaps closed since the previous period."""
    s = b.postal_summary
    if not s.height:
        return "No post sells or pays out a service in this period."
    parts = []
    for role, what in (("sender", "sell"), ("receiver", "pay out")):
        rows = s.filter(pl.col("role") == role)
        if not rows.height:
            parts.append(f"no post {what}s a service" if role == "sender" else
                         "none pays one out at its counters")
            continue
        posts = rows.get_column("firm").n_unique()
        priced = rows.filter(pl.col("difference_to_median").is_not_null())
        below = priced.filter(pl.col("difference_to_median") <= 0).height
        parts.append(f"{posts} post{'s' if posts != 1 else ''} {what} services in "
                     f"{rows.height} corridor{'s' if rows.height != 1 else ''}"
                     + (f", {below} of {priced.height} priced at or below their market's "
                        "median" if priced.height else ""))
    change = s.get_column("change_difference_to_median").drop_nulls()
    previous = s.get_column("previous_period").drop_nulls()
    since = (f" Since {previous[0]} the gap closed in {(change < 0).sum()} corridors, "
             f"widened in {(change > 0).sum()}." if previous.len() else "")
    return ("; ".join(parts) + " (the market: the services no post sells or pays out)."
            + since)


# --- HTML --------------------------------------------------------------------------------------

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d0d7de; --accent: #0b5cad;
        --bad: #a4001d; --ok: #1a7f37; --paper: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 "DejaVu Sans", system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 60rem; padding: 1.2rem; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 1rem; }
.kicker { text-transform: uppercase; letter-spacing: .08em; color: var(--accent);
          font-weight: 700; font-size: .8rem; margin: 0; }
h1 { font-size: 1.7rem; margin: .2rem 0 .4rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid var(--line);
     padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.hero { display: flex; gap: 1.5rem; align-items: center; margin: .6rem 0; }
.big { flex: none; font-size: 3rem; font-weight: 700; color: var(--accent); margin: 0;
       line-height: 1; }
.hero-text { flex: 1 1 0; margin: 0; }
.gap { color: var(--bad); font-weight: 700; }
.box { background: var(--paper); border-left: 4px solid var(--accent); padding: .6rem 1rem;
       margin: 1rem 0; }
.box.warn { border-left-color: #b35900; }
.call { font-size: 1.05rem; }
.call strong { color: var(--bad); }
table { border-collapse: collapse; width: 100%; margin: .8rem 0 1.2rem; font-size: .88rem; }
/* A phone (390 px) scrolls a wide table within itself, never the page; a file path or URL
   in running text breaks wherever it must. */
.table-scroll { overflow-x: auto; margin: .8rem 0 1.2rem; }
.table-scroll > table { margin: 0; }
p, li, figcaption, caption, code, td a { overflow-wrap: anywhere; }
caption { text-align: left; font-weight: 700; padding: .3rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .4rem; text-align: left;
         vertical-align: top; }
thead th { border-bottom: 2px solid var(--ink); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th.num { white-space: normal; }
.above { color: var(--bad); }
figure { margin: 1rem 0; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85rem; }
.note, footer { color: var(--muted); font-size: .85rem; }
footer { border-top: 1px solid var(--line); margin-top: 2rem; padding-top: .5rem; }
a { color: var(--accent); }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  /* The postal page starts a page of its own, to be handed to postal partners. */
  section#postal h2 { break-before: page; }
  h3, caption { break-after: avoid; }
  figure, tr, .box { break-inside: avoid; }
  .table-scroll { overflow: visible; }
  table { font-size: 8pt; }
  a { color: var(--ink); text-decoration: none; }
}
"""


def _key_rows(b: Bulletin) -> list[list[Any]]:
    rows = []
    for r in _changes(b):
        fmt = share if r["share"] else pct
        rows.append([r["label"], shown(r["value"], r["status"] == "published", fmt),
                     f"{fmt(r['previous_value'])} ({r['previous_period']})"
                     if r["previous_value"] is not None else "—",
                     change(r["value"], r["previous_value"],
                            decimals=1 if r["share"] else 2),
                     f"{fmt(r['year_before_value'])} ({r['year_before_period']})"
                     if r["year_before_value"] is not None else "—",
                     change(r["value"], r["year_before_value"],
                            decimals=1 if r["share"] else 2),
                     base_text(r["base"])])
    return rows


def _key_columns(b: Bulletin) -> list[tuple[str, bool]]:
    return [("Indicator", False), (b.period, True), ("Previous period", True),
            ("Change", True), ("A year before", True), ("Change in a year", True),
            ("Base (what the figure rests on)", False)]


def headline_numbers(b: Bulletin) -> dict[str, str]:
    g = b.doc["global_average"]
    r = _changes(b)[0]
    prev = (f"{change(r['value'], r['previous_value'])} since {r['previous_period']} "
            f"({pct(r['previous_value'])})" if r["change"] is not None
            else "no earlier period with data to compare")
    year = (f"{change(r['value'], r['year_before_value'])} since {r['year_before_period']} "
            f"({pct(r['year_before_value'])})" if r["change_year"] is not None
            else f"no data for {b.year_before_period}, a year before")
    d500 = b.doc500["global_average"] if b.doc500 else None
    ok = r["status"] == "published"
    ok500 = bool(b.bases.get("global_average_500", {}).get("sufficient", True))
    gap = change(g, 3.0) if ok else "unknown"
    return {"global": shown(g, ok), "gap": "0.00 points" if gap == "no change" else gap,
            "previous": prev if ok else "no comparison (insufficient data)",
            "year": year if ok else "no comparison (insufficient data)",
            "usd500": _usd500_sentence(b, d500, ok500), "base": base_text(r["base"])}


def _usd500_sentence(b: Bulletin, value: float | None, sufficient: bool) -> str:
    """The USD 500 figure as a sentence: its value, or why there is none (no quotes at that
    amount, or a base below the minimum, with the base and the rule it falls short of)."""
    if b.doc500 is None:
        return f"Sending USD 500: no quotes at that amount in {b.period}."
    if not sufficient:
        base = b.bases.get("global_average_500", {})
        return (f"Sending USD 500: {INSUFFICIENT} ({base_text(base)}; below the minimum of "
                f"{base.get('rule', 'a global figure')}).")
    return f"Sending USD 500 cost {pct(value)} on average."


def hero_lead(b: Bulletin, h: dict[str, str]) -> str:
    """What the headline figure is, or why there is none (the Markdown's; the HTML's is in
    its template)."""
    if h["global"] == INSUFFICIENT:
        rule = b.bases.get("global_average", {}).get("rule", "")
        return (f"for the global average cost of sending USD 200 in {b.period}: its base is "
                f"below the minimum a global figure needs ({rule}).")
    return (f"average total cost of sending USD 200 in {b.period}, {h['gap']} from the 3% SDG "
            f"target. {h['previous']}; {h['year']}.")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("publish", "templates/bulletin"),
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


_ENV: jinja2.Environment | None = None


def template(name: str) -> jinja2.Template:
    """A template of publish/templates/bulletin/ (autoescaped; an undefined name is an
    error, not an empty string)."""
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV.get_template(name)


def weights_rule(b: Any) -> str:
    """The weighted average's coverage rule and what it reached in the period, in words."""
    w = b.doc.get("weighted_average_coverage")
    if w is None:
        return "the coverage rule of config.toml [indicators] (no matrix was used)"
    reached = ("no volume" if w["volume_share"] is None
               else f"{w['volume_share']:.1f}% of it")
    return (f"{w['volume_share_min']:g}% of the remittance volume between the surveyed "
            f"countries (this period, the {w['matrix_year']} matrix weighs "
            f"{w['corridors_weighed']} of {w['corridors_with_average']} corridors with an "
            f"average, {reached}: {w['status']})")


def _source_cell(r: dict[str, Any]) -> dict[str, Any]:
    """The table cell of a published figure's source: a link to it and the sentence stating
    the figure (``macros.html``'s ``cell``)."""
    return {"href": r["source_url"], "text": r["source_title"], "quote": r["quote"]}


def html(b: Bulletin, charts_: Sequence[ch.Chart]) -> str:
    """The bulletin as one HTML page (publish/templates/bulletin/bulletin.html)."""
    five = b.five
    status_names = {"entered": "entered the list", "new": "new (not observed before)",
                    "stayed": "still above 5%", "left": "left the list",
                    "not observed": "not observed this period"}
    moved = b.above_5.filter(pl.col("status").is_in(["entered", "new", "left",
                                                     "not observed"]))
    above = b.above_5.filter(pl.col("average") > 5).sort(
        "average", "source", "destination", descending=[True, False, False])
    prev_label = b.previous["period"] if b.previous else "previous period"

    def above_row(r: dict[str, Any], *, status: bool) -> list[Any]:
        row = [corridor_label(r["source"], r["destination"]), pct(r["average"]),
               pct(r["previous_average"]), change(r["average"], r["previous_average"]),
               pct(r["smart"]), f"{r['cheapest_firm']} ({pct(r['cheapest_total_cost'])})"
               if r["cheapest_firm"] else "—", caveat_cell(r)]
        return [*row, status_names[r["status"]]] if status else row

    n_shown = min(ABOVE_5_SHOWN, above.height)

    def extreme_rows(frame: pl.DataFrame) -> list[list[Any]]:
        return [[corridor_label(r["source"], r["destination"]) + caveat_mark(r),
                 pct(r["average"]),
                 pct(r["smart"]), r["transparent_services"],
                 f"{r['cheapest_firm']} ({pct(r['cheapest_total_cost'])})"
                 if r["cheapest_firm"] else "—", caveat_cell(r)]
                for r in frame.iter_rows(named=True)]

    post_kind = {"post_office": "post's own", "post_office_mto": "MTO at post counters"}

    def postal_rows(frame: pl.DataFrame) -> list[list[Any]]:
        return [[f"{r['firm']} — {r['product'] or 'service'}",
                 corridor_label(r["source_code"], r["destination_code"]),
                 pct(r["total_cost_pct"]), pct(r["corridor_median"]),
                 points(r["difference_to_median"]),
                 f"{r['rank']} of {r['corridor_services']}", caveat_cell(r)]
                for r in frame.iter_rows(named=True)]

    known = b.postal.filter(pl.col("rank").is_not_null())
    cov = b.coverage
    credit = rpw_credit(b)
    return template("bulletin.html").render(
        # The stylesheet is this module's constant, not data: inserted as it is (escaping
        # would turn its quotes into entities inside <style>).
        css=Markup(CSS),
        period=b.period, sections=SECTIONS, h=headline_numbers(b), insufficient=INSUFFICIENT,
        global_rule=b.bases.get("global_average", {}).get("rule", ""),
        progress_call=b.progress.call, progress_sentence=_progress_sentence(b),
        indicative=indicative(b), official_sentence=_official_sentence(b),
        source_sentence=_source_sentence(b),
        key_columns=_key_columns(b), key_rows=_key_rows(b),
        official=[[r["label"], r["ours_shown"], pct(r["value_pct"]), r["difference"],
                   _source_cell(r)] for r in official_rows(b)],
        five=five, five_rows=five_rows(b), prev_label=prev_label,
        entered=moved.filter(pl.col("status").is_in(["entered", "new"])).height,
        left=moved.filter(pl.col("status") == "left").height,
        above_cols=[("Corridor", False), ("Average", True), (f"Average {prev_label}", True),
                    ("Change", True), ("SmaRT", True), ("Cheapest service", False),
                    ("Caveats", False)],
        moved_rows=[above_row(r, status=True) for r in moved.iter_rows(named=True)],
        above_rows=[above_row(r, status=False)
                    for r in above.head(n_shown).iter_rows(named=True)],
        n_shown=n_shown, n_above=above.height,
        five_base=base_text(b.bases.get("share_corridors_above_5", {})),
        flags_lead=FLAGS_LEAD,
        five_flags=flags_explained(flags_shown(moved, above.head(n_shown))),
        charts={chart.name: chart for chart in charts_},
        ft_rows=[[firm_type_label(r["firm_type"]), *group_cells(r)]
                 for r in b.firm_types.sort("average", descending=True, nulls_last=True)
                 .iter_rows(named=True)],
        rg_rows=[[region_label(r["region"]), *group_cells(r)]
                 for r in b.regions.sort("average", descending=True, nulls_last=True)
                 .iter_rows(named=True)],
        sc_rows=[[f"{r['name'] or r['source']} ({r['source']})", "G20" if r["g20"] else "",
                  *group_cells(r)]
                 for r in b.sending.sort("average", "source", descending=[True, False],
                                         nulls_last=True).iter_rows(named=True)],
        g20=_sending_sentence(b, "g20_sending_average", "a G20 country"),
        g8=_sending_sentence(b, "g8_sending_average", "a G8 country"),
        most_title=ranked_title(b, most=True), least_title=ranked_title(b, most=False),
        ext_cols=[("Corridor", False), ("Average", True), ("SmaRT", True),
                  ("Services", True), ("Cheapest service", False), ("Caveats", False)],
        most_rows=extreme_rows(b.most), least_rows=extreme_rows(b.least),
        global_base=base_text(b.bases.get("global_average", {})),
        caveat_text=caveat_note(b),
        ranked_flags=flags_explained(flags_shown(b.most, b.least)),
        post_avg=post_average(b), postal_known=known.height,
        postal_roles=postal_roles_sentence(b),
        postal_below=known.filter(pl.col("total_cost_pct") <= pl.col("corridor_median")).height,
        postal_undisclosed=b.postal.height - known.height, postal_total=b.postal.height,
        pt_rows=[[firm_type_label(r["firm_type"]), shown(r["average"], bool(r["sufficient"])),
                  r["services"],
                  "reference" if r["firm_type"] == "post_office"
                  else points(r["difference_to_post_office"])]
                 for r in b.postal_types.iter_rows(named=True)],
        op_rows=[[r["firm"], post_kind.get(r["firm_type"], firm_type_label(r["firm_type"])),
                  r["services"], r["corridors"], r["transparent"], pct(r["average"]),
                  f"{r['at_or_below_median']} of {r['transparent']}" if r["transparent"]
                  else "—", r["cheapest_in_corridor"] if r["transparent"] else "—"]
                 for r in b.postal_operators.iter_rows(named=True)],
        postal_cols=[("Service", False), ("Corridor", False), ("Total cost", True),
                     ("Corridor median", True), ("Against the median", True),
                     ("Rank", True), ("Caveats", False)],
        postal_cheapest_rows=postal_rows(b.postal_cheapest),
        postal_dearest_rows=postal_rows(b.postal_dearest),
        postal_flags=flags_explained(flags_shown(b.postal_cheapest, b.postal_dearest)),
        cov_rows=[
            ["Quotes", f"{cov['quotes']:,}"], ["Services", f"{cov['services']:,}"],
            ["Transparent services (in the averages)", f"{cov['transparent_services']:,}"],
            ["Services excluded: fee disclosed, exchange rate not disclosed",
             f"{cov['non_transparent_services']:,}"],
            ["Services with a negative FX margin (kept, flagged)",
             f"{cov['negative_margin_services']:,}"],
            ["Quotes with a stale reference rate (left out)",
             f"{cov['stale_reference_quotes']:,}"],
            ["Corridors", f"{cov['corridors']:,}"],
            ["Sending / receiving countries",
             f"{cov['sending_countries']} / {cov['receiving_countries']}"],
            ["Providers", f"{cov['firms']:,}"],
            ["Collected", f"{_day(cov['first_collected'])} to {_day(cov['last_collected'])}"],
            ["Methodology version", METHODOLOGY_VERSION],
        ],
        transparent_share=share((cov["transparent_services"] / cov["services"] * 100)
                                if cov["services"] else None),
        source_mix=", ".join(f"{r['source']} ({r['quotes']:,} quotes, reference rates: "
                             f"{r['reference_source'] or 'unknown'})"
                             for r in b.source_mix.iter_rows(named=True)),
        emulated_left_out=emulated_left_out_sentence(b),
        reference_rate_note=REFERENCE_RATE_NOTE, weights_rule=weights_rule(b),
        licence=LICENCE, licence_url=LICENCE_URL,
        rpw_attribution=RPW_ATTRIBUTION,
        scorecard_scope=SCORECARD_SCOPE, scorecard_columns=SCORECARD_COLUMNS,
        scorecard_rows=scorecard_rows(b), weekends=b.kpis["weekends_only"],
        methodology_version=METHODOLOGY_VERSION, credit=credit[:1].upper() + credit[1:],
    )


def _day(v: Any) -> str:
    return "—" if v is None else v.strftime("%Y-%m-%d")


#: The fixed base URL the PDF is laid out against; images are fetched from the bulletin's
#: folder through it. A real path (the temporary build folder) would end up in the PDF — in
#: the image names WeasyPrint derives from their URLs and in every link — and change its bytes
#: from one run to the next.
PDF_BASE = "file:///sendcost-bulletin/"


def pdf(document: str, folder: Path) -> bytes:
    """The HTML printed to PDF with WeasyPrint (images resolved inside ``folder``).

    Deterministic: the same HTML and images give the same bytes. The layout never sees the
    folder's real path; links to the bulletin's own files stay relative (``data/trend.csv``),
    so they work beside the PDF once the folder is unzipped; the PDF identifier is derived
    from the HTML, and WeasyPrint writes no creation date unless the HTML gives one.
    """
    import hashlib
    import logging

    # WeasyPrint logs every unsupported CSS property at WARNING (ours are screen-only) and
    # its steps at INFO, some of them while it is imported.
    for name in ("weasyprint", "weasyprint.progress"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    root = folder.resolve().as_uri() + "/"

    class _Fetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            if not url.startswith(PDF_BASE):
                raise ValueError(f"the bulletin fetches only its own files, not {url}")
            return super().fetch(root + url.removeprefix(PDF_BASE), headers)

    rendered = HTML(string=document, base_url=PDF_BASE, url_fetcher=_Fetcher()).render()
    for page in rendered.pages:
        page.links = [(kind, target.removeprefix(PDF_BASE)
                       if kind == "external" else target, *rest)
                      for kind, target, *rest in page.links]
    identifier = hashlib.sha256(document.encode()).hexdigest()[:32].encode()
    return rendered.write_pdf(pdf_identifier=identifier)


# --- Markdown ----------------------------------------------------------------------------------


def _md_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v if v is not None else "—").replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(b: Bulletin) -> str:
    h = headline_numbers(b)
    five = b.five
    key = _md_table([label for label, _ in _key_columns(b)], _key_rows(b))
    rows_o = official_rows(b)
    official = _md_table(
        ["Indicator", f"sendcost {b.period}", f"World Bank {b.period}",
         "Difference (ours − World Bank)", "Source"],
        [[r["label"], r["ours_shown"], pct(r["value_pct"]), r["difference"],
          f"{r['source_title']} ({r['source_url']}): “{r['quote']}”"]
         for r in rows_o]) if rows_o else \
        "No World Bank figure of this very period to set ours beside."
    moved = b.above_5.filter(pl.col("status") != "stayed")
    moved_rows = [[corridor_label(r["source"], r["destination"]), pct(r["average"]),
                   pct(r["previous_average"]),
                   change(r["average"], r["previous_average"]), r["status"], caveat_cell(r)]
                  for r in moved.iter_rows(named=True)]

    def md_postal(frame: pl.DataFrame) -> str:
        return _md_table(["Service", "Corridor", "Total cost", "Corridor median",
                          "Against the median", "Rank", "Caveats"],
                         [[f"{r['firm']} — {r['product'] or 'service'}",
                           corridor_label(r["source_code"], r["destination_code"]),
                           pct(r["total_cost_pct"]), pct(r["corridor_median"]),
                           points(r["difference_to_median"]),
                           f"{r['rank']} of {r['corridor_services']}", caveat_cell(r)]
                          for r in frame.iter_rows(named=True)])

    def extreme(frame: pl.DataFrame) -> str:
        return _md_table(["Corridor", "Average", "SmaRT", "Services", "Cheapest service",
                          "Caveats"],
                         [[corridor_label(r["source"], r["destination"]) + caveat_mark(r),
                           pct(r["average"]), pct(r["smart"]), r["transparent_services"],
                           f"{r['cheapest_firm']} ({pct(r['cheapest_total_cost'])})"
                           if r["cheapest_firm"] else "—", caveat_cell(r)]
                          for r in frame.iter_rows(named=True)])

    known = b.postal.filter(pl.col("rank").is_not_null())
    below = known.filter(pl.col("total_cost_pct") <= pl.col("corridor_median")).height
    cov = b.coverage
    parts = [
        f"# What it costs to send money home: {b.period}",
        f"sendcost SDG 10.c bulletin, {b.period}. Figures are indicative, not the official "
        "SDG 10.c.1 value.",
        f"## {SECTIONS[0]}",
        f"**{h['global']}**: {hero_lead(b, h)} {h['usd500']} Rests on {h['base']}.",
        f"> **Ours is indicative, not the official SDG 10.c.1 value.** {indicative(b)} "
        f"{_official_sentence(b)} {_source_sentence(b)}",
        key, official,
        f"## {SECTIONS[1]}",
        f"{five['smart_above_5'] + five['too_few_qualifying']} of {five['corridors']} corridors "
        f"do not meet the 5% condition.",
        _md_table(["Corridors", "Number", "Share", "Share of"], five_rows(b)),
        f"The shares rest on {base_text(b.bases.get('share_corridors_above_5', {}))}.",
        "Corridors that entered or left the list of corridors averaging above 5% (the full "
        "list: data/corridors_above_5.csv):",
        _md_table(["Corridor", "Average", "Before", "Change", "Status", "Caveats"], moved_rows)
        if moved_rows else "None.",
        flags_note(flags_shown(moved)),
        f"## {SECTIONS[2]}",
        "![Trend of the global average, SmaRT and weighted average with the 3% "
        "target](charts/trend.png)",
        _progress_sentence(b),
        f"## {SECTIONS[3]}",
        "### By type of provider",
        _md_table(["Provider type", "Average", "Base"],
                  [[firm_type_label(r["firm_type"]), *group_cells(r)]
                   for r in b.firm_types.sort("average", descending=True, nulls_last=True)
                   .iter_rows(named=True)]),
        "### By receiving region",
        _md_table(["Region", "Average", "Base"],
                  [[region_label(r["region"]), *group_cells(r)]
                   for r in b.regions.sort("average", descending=True, nulls_last=True)
                   .iter_rows(named=True)]),
        "### By sending country",
        f"G20 sending countries: {shown(*_g(b, 'g20_sending_average'))}; G8: "
        f"{shown(*_g(b, 'g8_sending_average'))}; G20 receiving countries: "
        f"{shown(*_g(b, 'g20_receiving_average'))}.",
        _md_table(["Sending country", "G20", "Average", "Base"],
                  [[f"{r['name'] or r['source']} ({r['source']})", "G20" if r["g20"] else "",
                    *group_cells(r)]
                   for r in b.sending.sort("average", "source", descending=[True, False],
                                           nulls_last=True).iter_rows(named=True)]),
        f"### {ranked_title(b, most=True)}", extreme(b.most),
        f"### {ranked_title(b, most=False)}", extreme(b.least),
        caveat_note(b),
        flags_note(flags_shown(b.most, b.least)),
        "The two lists never share a corridor: of the corridors with an average, the dearest "
        "half (ten at most) and the cheapest half (ten at most). Each corridor's average rests "
        "on the services counted beside it; the ranking on "
        f"{base_text(b.bases.get('global_average', {}))}.",
        f"## {SECTIONS[4]}",
        f"Post offices' own services averaged {post_average(b)}. Of "
        f"{known.height} post-office services with a disclosed exchange rate, {below} cost no "
        "more than their corridor's median. Every service: data/postal_benchmark.csv.",
        f"Posts against their market: {postal_roles_sentence(b)} Over time: "
        "charts/postal_trend.svg; each post per corridor: data/postal_summary.csv, per post: "
        "data/postal_summary_operators.csv.",
        _md_table(["Provider type", "Average", "Services", "Difference to post offices"],
                  [[firm_type_label(r["firm_type"]), shown(r["average"], bool(r["sufficient"])),
                    r["services"], "reference" if r["firm_type"] == "post_office"
                    else points(r["difference_to_post_office"])]
                   for r in b.postal_types.iter_rows(named=True)]),
        "Postal operators (average over the services that disclose their rate):",
        _md_table(["Operator", "Type", "Services", "Rate disclosed", "Average",
                   "At or below corridor median"],
                  [[r["firm"], firm_type_label(r["firm_type"]), r["services"],
                    r["transparent"], pct(r["average"]),
                    f"{r['at_or_below_median']} of {r['transparent']}"
                    if r["transparent"] else "—"]
                   for r in b.postal_operators.iter_rows(named=True)]),
        f"Post-office services furthest below their corridor's median "
        f"({b.postal_cheapest.height}):",
        md_postal(b.postal_cheapest),
        f"Post-office services furthest above their corridor's median "
        f"({b.postal_dearest.height}):",
        md_postal(b.postal_dearest),
        flags_note(flags_shown(b.postal_cheapest, b.postal_dearest)),
        f"## {SECTIONS[5]}",
        f"{cov['quotes']:,} quotes; {cov['services']:,} services, of which "
        f"{cov['transparent_services']:,} transparent (in the averages) and "
        f"{cov['non_transparent_services']:,} excluded (exchange rate not disclosed); "
        f"{cov['negative_margin_services']:,} with a negative FX margin (kept); "
        f"{cov['stale_reference_quotes']:,} quotes with a stale reference rate (left out); "
        f"{cov['corridors']:,} corridors, {cov['sending_countries']} sending and "
        f"{cov['receiving_countries']} receiving countries. Sources: "
        + ", ".join(f"{r['source']} ({r['quotes']:,} quotes, reference rates: "
                    f"{r['reference_source'] or 'unknown'})"
                    for r in b.source_mix.iter_rows(named=True))
        + f". Methodology version {METHODOLOGY_VERSION}.",
        f"**{emulated_left_out_sentence(b)}**" if emulated_left_out_sentence(b) else "",
        f"Reference (interbank) rates: {REFERENCE_RATE_NOTE}",
        f"Licence: {LICENCE} ({LICENCE_URL}). Attribution: {RPW_ATTRIBUTION}.",
        f"## {SECTIONS[6]}",
        SCORECARD_SCOPE,
        _md_table([c for c, _ in SCORECARD_COLUMNS], scorecard_rows(b)),
        "![The G20 remittance scorecard](charts/g20_scorecard.png)",
        "Per corridor: data/g20_scorecard.csv.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
