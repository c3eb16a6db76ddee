"""Indicators the bulletin needs beyond the indicators document, in pure Polars.

The 5% component (SmaRT and averages above 5%, corridors that entered or left the list),
the trend of the headline series over periods, sending-country averages, the most and
least expensive corridors (never overlapping), coverage counts, the World Bank's published
figures, and what each figure rests on (its base, the coverage of the target corridors).
No I/O, no clock: frames in, frames out.
"""

from __future__ import annotations

import polars as pl

from corridors.periods import parse_period
from metrics import aggregates as agg
from metrics import corridors as cor
from metrics.services import services_in_period

FIVE = 5.0
TEN = 10.0


def _corridor_key() -> list[str]:
    return ["source", "destination"]


def five_percent_component(corridors: pl.LazyFrame) -> pl.LazyFrame:
    """Counts of the SDG 10.c 5% component from a corridor table (metrics.indicators.
    corridor_table): one row.

    corridors: corridors observed; with_average: those with an average; smart_above_5 /
    average_above_5 / average_above_10: counts; too_few_qualifying: corridors without a SmaRT
    value (fewer than 3 qualifying services — they do not meet the 5% condition); shares in %
    (of corridors with a SmaRT, of corridors with an average, of all corridors).
    """
    smart, avg = pl.col("smart"), pl.col("average")
    n = pl.len()
    return corridors.select(
        n.alias("corridors"),
        smart.count().alias("with_smart"),
        (smart > FIVE).sum().alias("smart_above_5"),
        pl.when(smart.count() > 0).then((smart > FIVE).sum() / smart.count() * 100)
        .alias("share_smart_above_5"),
        avg.count().alias("with_average"),
        (avg > FIVE).sum().alias("average_above_5"),
        pl.when(avg.count() > 0).then((avg > FIVE).sum() / avg.count() * 100)
        .alias("share_average_above_5"),
        (avg > TEN).sum().alias("average_above_10"),
        pl.when(avg.count() > 0).then((avg > TEN).sum() / avg.count() * 100)
        .alias("share_average_above_10"),
        smart.is_null().sum().alias("too_few_qualifying"),
        (smart.is_null().sum() / n * 100).alias("share_too_few_qualifying"),
        ((smart <= FIVE).sum()).alias("meeting_5_condition"),
    )


def corridors_above_5(current: pl.LazyFrame, previous: pl.LazyFrame | None) -> pl.LazyFrame:
    """Corridors whose average is above 5% now or was in the previous period.

    Columns: source, destination, average, previous_average, change (points), smart,
    cheapest_firm, cheapest_firm_type, cheapest_total_cost, status ("entered" — above now,
    not before although observed; "stayed"; "new" — not observed before; "left" — above
    before, at or below 5% now; "not observed" — above before, no average now). Sorted by
    status order (entered, new, stayed, left, not observed) then average descending.
    """
    now = current.select(*_corridor_key(), "average", "smart", "cheapest_firm",
                         "cheapest_firm_type", "cheapest_total_cost")
    if previous is None:
        before = pl.LazyFrame(schema={"source": pl.String, "destination": pl.String,
                                      "previous_average": pl.Float64})
    else:
        before = previous.select(*_corridor_key(), pl.col("average").alias("previous_average"))
    joined = now.join(before, on=_corridor_key(), how="full", coalesce=True)
    above_now = pl.col("average") > FIVE
    above_before = pl.col("previous_average") > FIVE
    status = (
        pl.when(above_now & above_before).then(pl.lit("stayed"))
        .when(above_now & pl.col("previous_average").is_null()).then(pl.lit("new"))
        .when(above_now).then(pl.lit("entered"))
        .when(above_before & pl.col("average").is_not_null()).then(pl.lit("left"))
        .when(above_before).then(pl.lit("not observed"))
    )
    order = {"entered": 0, "new": 1, "stayed": 2, "left": 3, "not observed": 4}
    return (
        joined.with_columns(status.alias("status"),
                            (pl.col("average") - pl.col("previous_average")).alias("change"))
        .filter(pl.col("status").is_not_null())
        .with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int8)
                      .alias("_order"))
        .sort("_order", "average", "source", "destination", descending=[False, True, False,
                                                                       False],
              nulls_last=True)
        .select("source", "destination", "average", "previous_average", "change", "smart",
                "cheapest_firm", "cheapest_firm_type", "cheapest_total_cost", "status")
    )


def sending_country_averages(services: pl.LazyFrame, countries: pl.LazyFrame) -> pl.LazyFrame:
    """Per sending country: mean total cost % over its transparent services, with G20/G8
    membership and name. Columns: source, name, g20, g8, average, services, corridors.
    Sorted by average descending (most expensive first), then source."""
    info = countries.select(pl.col("alpha3").alias("source_code"), "name",
                            pl.col("g20").fill_null(False), pl.col("g8").fill_null(False))
    return (
        services.filter(pl.col("transparent"), pl.col("total_cost_pct").is_not_null())
        .group_by("source_code")
        .agg(pl.col("total_cost_pct").mean().alias("average"), pl.len().alias("services"),
             pl.col("destination_code").n_unique().alias("corridors"))
        .join(info, on="source_code", how="left")
        .with_columns(pl.col("g20").fill_null(False), pl.col("g8").fill_null(False))
        .rename({"source_code": "source"})
        .select("source", "name", "g20", "g8", "average", "services", "corridors")
        .sort("average", "source", descending=[True, False])
    )


def trend(quotes: pl.LazyFrame, *, periods: list[str], amount_usd: int,
          flows: pl.LazyFrame | None,
          weights_coverage_min: float = cor.WEIGHT_COVERAGE_MIN) -> pl.LazyFrame:
    """The headline series over ``periods``: period, global_average, smart_average,
    weighted_average, services (transparent ones averaged). Periods without a quote at
    ``amount_usd`` are left out. Each period is weighed by the matrix of ``flows`` nearest
    it, and its weighted_average is null with insufficient weights (below
    ``weights_coverage_min`` % of the volume: metrics.corridors.weighted_global_average).
    Sorted by period (chronologically)."""
    parts = []
    for period in periods:
        s = services_in_period(quotes, period=period, amount_usd=amount_usd)
        averages = cor.corridor_average(s)
        g = agg.global_average(s).select(pl.col("average").alias("global_average"),
                                         pl.col("services"))
        sm = cor.global_smart(cor.smart(s)).select("smart_average")
        if flows is not None:
            matrix = cor.matrix_for_period(flows, parse_period(period).year)
            w = cor.weighted_global_average(
                averages, matrix, coverage_min=weights_coverage_min).select(
                pl.when(pl.col("sufficient")).then(pl.col("weighted_average"))
                .alias("weighted_average"))
        else:
            w = pl.LazyFrame({"weighted_average": [None]}, schema={"weighted_average":
                                                                  pl.Float64})
        parts.append(pl.concat([g, sm, w], how="horizontal")
                     .with_columns(pl.lit(period).alias("period"),
                                   pl.lit(_order_key(period)).alias("_order")))
    if not parts:
        return pl.LazyFrame(schema={"period": pl.String, "global_average": pl.Float64,
                                    "smart_average": pl.Float64,
                                    "weighted_average": pl.Float64, "services": pl.UInt32})
    return (
        pl.concat(parts)
        .filter(pl.col("services") > 0)
        .sort("_order")
        .select("period", "global_average", "smart_average", "weighted_average", "services")
    )


def _order_key(period: str) -> int:
    p = parse_period(period)
    return p.year * 12 + ((p.quarter - 1) * 3 if p.is_quarter else p.month - 1)


def trend_periods(available: list[str], period: str) -> list[str]:
    """The periods of the same cadence as ``period`` (quarters or months) with data, up to and
    including it; for a quarter, months with data count toward their quarter."""
    target = parse_period(period)
    found: set[str] = set()
    for label in available:
        p = parse_period(label)
        if target.is_quarter:
            p = p.quarter_of
        elif p.is_quarter:
            continue
        if _order_key(str(p)) <= _order_key(period):
            found.add(str(p))
    return sorted(found, key=_order_key)


def coverage(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """Coverage of one period at one price point, one row: quotes, services, transparent
    services, non-transparent services (excluded from every average), corridors, sending and
    receiving countries, firms, services with a negative FX margin, quotes with a stale
    reference rate (left out), the first and last collection time."""
    from metrics.services import period_labels

    q = quotes.filter(pl.col("period").is_in(period_labels(period)),
                      pl.col("amount_usd") == amount_usd)
    s = services_in_period(quotes, period=period, amount_usd=amount_usd)
    services = s.select(
        pl.len().alias("services"),
        (pl.col("transparent") & pl.col("total_cost_pct").is_not_null()).sum()
        .alias("transparent_services"),
        (~pl.col("transparent")).sum().alias("non_transparent_services"),
        pl.struct("source_code", "destination_code").n_unique().alias("corridors"),
        pl.col("source_code").n_unique().alias("sending_countries"),
        pl.col("destination_code").n_unique().alias("receiving_countries"),
        pl.col("firm").n_unique().alias("firms"),
        (pl.col("transparent") & (pl.col("fx_margin_pct") < 0)).sum()
        .alias("negative_margin_services"),
    )
    raw = q.select(pl.len().alias("quotes"),
                   pl.col("reference_stale").fill_null(False).sum().alias("stale_reference_quotes"),
                   pl.col("collected_at").min().alias("first_collected"),
                   pl.col("collected_at").max().alias("last_collected"))
    return pl.concat([raw, services], how="horizontal")


def source_mix(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """Quotes per source and reference-rate source in the period: source, reference_source,
    quotes, share (%). Sorted by quotes descending, then source."""
    from metrics.services import period_labels

    q = quotes.filter(pl.col("period").is_in(period_labels(period)),
                      pl.col("amount_usd") == amount_usd)
    return (
        q.group_by("source", "reference_source")
        .agg(pl.len().alias("quotes"))
        .with_columns((pl.col("quotes") / pl.col("quotes").sum() * 100).alias("share"))
        .sort("quotes", "source", "reference_source", descending=[True, False, False],
              nulls_last=True)
    )


def official_figures(published: pl.LazyFrame) -> pl.LazyFrame:
    """The World Bank's published figures read from its own publications
    (corridors/data/published_figures.csv), with quarters made canonical: only rows whose
    ``source_kind`` is "primary" (read from the World Bank's report, DataBank or site at
    ``source_url``, the sentence stating it in ``quote``); a figure known only from another
    site citing or copying it is never an official comparison. Figures whose quarter the
    source left uncertain ("2015_3Q?") are dropped. Columns: period, metric, value_pct,
    source_title, source_url, source_kind, quote."""
    return (
        published.filter(~pl.col("period").str.ends_with("?"),
                         pl.col("source_kind") == "primary")
        .with_columns(pl.col("period").str.replace(r"^(\d{4})_([1-4])Q$", "${1}Q${2}"))
        .select("period", "metric", pl.col("value_pct").cast(pl.Float64),
                pl.col("source_title"), pl.col("source_url_or_repo").alias("source_url"),
                pl.col("source_kind"), pl.col("quote"))
    )


# --- what each figure rests on -----------------------------------------------------------------

#: The base of a figure, in order: what it was computed from.
BASE_COLUMNS = ("quotes", "services", "corridors", "providers", "first_collected",
                "last_collected")


def averaged_quotes(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """The quotes the averages of ``period`` at ``amount_usd`` rest on: reference rate not
    stale, provider's rate disclosed, a total cost. Columns: service_id, source_code,
    destination_code, firm, firm_type, collected_at (text as strings)."""
    from metrics.cost import total_cost_pct
    from metrics.services import period_labels

    return (
        quotes.filter(pl.col("period").is_in(period_labels(period)),
                      pl.col("amount_usd") == amount_usd,
                      ~pl.col("reference_stale").fill_null(False),
                      pl.col("transparent"), total_cost_pct().is_not_null())
        .select(pl.col("service_id", "source_code", "destination_code", "firm", "firm_type")
                .cast(pl.String), "collected_at")
    )


def _base_exprs() -> list[pl.Expr]:
    return [pl.len().alias("quotes"), pl.col("service_id").n_unique().alias("services"),
            pl.struct("source_code", "destination_code").n_unique().alias("corridors"),
            pl.col("firm").n_unique().alias("providers"),
            pl.col("collected_at").min().alias("first_collected"),
            pl.col("collected_at").max().alias("last_collected")]


def base(averaged: pl.LazyFrame, by: list[str] | None = None) -> pl.LazyFrame:
    """The base of a figure over ``averaged`` (``averaged_quotes``, filtered to the figure's
    scope): quotes, services, corridors, providers, first and last collection time; one row,
    or one per ``by`` group (sorted by it)."""
    if not by:
        return averaged.select(_base_exprs())
    return averaged.group_by(by).agg(_base_exprs()).sort(by)


def corridor_coverage(averaged: pl.LazyFrame, target: pl.LazyFrame, *,
                      providers_per_corridor: int) -> pl.LazyFrame:
    """How many of the ``target`` corridors (source_code, destination_code) are covered —
    priced by at least ``providers_per_corridor`` providers. One row: target_corridors,
    covered_corridors, coverage_pct (null without a target)."""
    per = (averaged.group_by("source_code", "destination_code")
           .agg(pl.col("firm").n_unique().alias("providers")))
    joined = target.unique().join(per, on=["source_code", "destination_code"], how="left")
    covered = (pl.col("providers").fill_null(0) >= providers_per_corridor).sum()
    return joined.select(
        pl.len().alias("target_corridors"), covered.alias("covered_corridors"),
        pl.when(pl.len() > 0).then(covered / pl.len() * 100).alias("coverage_pct"))


def ranked_lists(corridors: pl.LazyFrame, n: int = 10) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The most and the least expensive corridors by average, never overlapping: of the R
    corridors with an average, the ``min(n, ceil(R/2))`` dearest and the ``min(n, R//2)``
    cheapest (with one corridor, it is only among the most expensive). Each carries
    ``rank`` (1 = dearest or cheapest), ``ranked`` (R) and ``caveat`` (a negative average is
    marked)."""
    ranked = corridors.filter(pl.col("average").is_not_null())
    cols = ["source", "destination", "average", "smart", "transparent_services",
            "cheapest_firm", "cheapest_total_cost"]
    r = pl.len()
    dear = (ranked.sort("average", "source", "destination", descending=[True, False, False])
            .with_row_index("rank", offset=1)
            .with_columns(r.alias("ranked"))
            .filter(pl.col("rank") <= pl.min_horizontal(pl.lit(n), (pl.col("ranked") + 1) // 2)))
    cheap = (ranked.sort("average", "source", "destination", descending=[False, False, False])
             .with_row_index("rank", offset=1)
             .with_columns(r.alias("ranked"))
             .filter(pl.col("rank") <= pl.min_horizontal(pl.lit(n), pl.col("ranked") // 2)))
    # A negative average (a promotion, or a distorted reference rate) is kept, as the World
    # Bank keeps it, and marked: no reader should take it for the cheapest way to send.
    caveat = (pl.when(pl.col("average") < 0)
              .then(pl.lit("negative total cost: a promotion or a distorted reference rate"))
              .otherwise(pl.lit(None, pl.String)).alias("caveat"))
    out = [f.select(*cols, pl.col("rank").cast(pl.Int64),
                    pl.col("ranked").cast(pl.Int64), caveat) for f in (dear, cheap)]
    return out[0], out[1]
