"""``sendcost indicators``: the SDG 10.c figures of one period, from the store or a file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

from corridors.config import load_config
from corridors.errors import ImportFileError
from corridors.periods import parse_period
from corridors.types import EMULATED_WARNING
from sendcost.cli import common_options, setup_logging
from sendcost.commands import Subcommands

HELP = """\
Compute the SDG 10.c cost indicators of one period, as the World Bank does (RPW method):
global average, weighted average, SmaRT, G8/G20 averages, firm-type, receiving-region,
payment-instrument, access-point and pay-out averages, shares of corridors above 5% and 10%, and
every corridor with its flags and its cheapest service. Percentages are in percent (6.2
means 6.2%), unrounded; null where a figure is undefined. The JSON keys are documented in
docs/indicators.md.

The weighted average weighs corridor averages by the World Bank/KNOMAD bilateral
remittance matrix nearest the period (2011 or 2021, bundled) and says how many corridors
and how much volume it weighed; when the corridors it weighs carry less than
[indicators] weighted_min_volume_share (config.toml, default 75%) of the matrix's volume
between the period's sending and receiving countries, it is left out and the output says
"insufficient weights".

PERIOD is a quarter (2011Q3, or RPW's 2011_3Q) or a month (2026-11). Regions, income
groups and G8/G20 are the World Bank's classification in force in that period (an RPW
file's own region, income and G8/G20 columns, where it has them, take precedence).

With --from-file, standard error says what the read did (rows read, used, rejected by
reason, unknown labels); when more than [import] max_rejected_share of the rows are
rejected (config.toml, default 3%), no figure is computed and the exit code is 1.

Emulated quotes (collected from the sandbox: invented prices) are left out, and a period
with nothing else is an error naming their sources; --include-emulated keeps them, and the
output then says "emulated data — not real prices".

examples:
  sendcost indicators --period 2011Q3
  sendcost indicators --period 2011Q3 --amount 500 --format csv > corridors.csv
  sendcost indicators --period 2011Q3 --format json \\
      --from-file corridors/data/rpw_quotes_2011Q1_2014Q2.csv.gz   # no database needed
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("indicators", help="compute the SDG 10.c indicators of a period",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p)
    p.add_argument("--period", required=True, metavar="P",
                   help="quarter (2011Q3, 2011_3Q) or month (2026-11)")
    p.add_argument("--amount", type=int, choices=(200, 500), default=200,
                   help="price point in USD (default 200, the SDG headline)")
    p.add_argument("--from-file", metavar="PATH",
                   help="compute straight from an RPW file (.csv, .csv.gz, .xlsx), no database")
    p.add_argument("--include-emulated", action="store_true",
                   help="keep the sandbox's emulated quotes (left out by default); the "
                        "output then says \"emulated data — not real prices\"")
    p.add_argument("--format", choices=("json", "csv", "table"), default="table",
                   help="json: the whole document; csv/table: one row per corridor "
                        "(default: table)")
    p.set_defaults(func=run)


def _flows() -> pl.LazyFrame:
    """World Bank bilateral remittance flows (every bundled matrix, with its year): the
    weights of the weighted average, the matrix nearest the period weighing."""
    from corridors.reading.matrix import read_bundled_flows

    return read_bundled_flows().lazy()


def compute_from_frame(frame: pl.DataFrame, period: str, amount: int,
                       classifications: pl.DataFrame | None = None, *,
                       weights_coverage_min: float | None = None) -> dict[str, Any]:
    """The indicators of ``period``, with the country classification of that period
    (``classifications``: an RPW file's own, laid over the bundled one) and the weighted
    average's coverage rule in % (None: config.toml's default)."""
    from corridors.config import IndicatorsConfig
    from corridors.reference import classification_for
    from metrics.indicators import compute_indicators

    if weights_coverage_min is None:
        weights_coverage_min = IndicatorsConfig().weights_coverage_min
    countries = classification_for(period, classifications)
    return compute_indicators(frame.lazy(), period=period, amount_usd=amount,
                              countries=countries.lazy(), flows=_flows(),
                              weights_coverage_min=weights_coverage_min)


def _choose_kinds(frame: pl.DataFrame, period: str, include_emulated: bool) -> pl.DataFrame:
    """The quotes to compute from: without emulated ones unless asked; NoData naming the
    sandbox sources when nothing else is left."""
    from corridors.errors import NoData
    from metrics import kinds

    if include_emulated:
        return frame
    real = frame.filter(kinds.real_data())
    if real.height == 0 and frame.height:
        names = ", ".join(kinds.emulated_sources(frame.lazy()).collect()
                          .get_column("source").to_list())
        raise NoData(f"every quote of {period} is emulated data — not real prices — from the "
                     f"sandbox (sources: {names}); pass --include-emulated to compute from "
                     "them anyway")
    return real


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, "WARNING" if args.format != "table" else config.log_level)
    period = str(parse_period(args.period))
    classifications = None
    if args.from_file:
        from corridors.reading.rpw import read_rpw

        if Path(args.from_file).is_dir():
            raise ImportFileError("a folder, not an RPW file (a .csv.gz of quotes or the "
                                  "World Bank's .xlsx workbook)", path=args.from_file)
        read = read_rpw(args.from_file)
        print("\n".join(read.report()), file=sys.stderr, flush=True)
        read.check_rejected_share(config.imports.max_rejected_share)
        frame, classifications = read.frame, read.classifications
    else:
        from sendcost.wiring import open_store

        async def load() -> pl.DataFrame:
            async with open_store(config) as (store, _):
                return await store.quote_frame(period, amount_usd=args.amount)

        frame = asyncio.run(load())
    frame = _choose_kinds(frame, period, args.include_emulated)
    doc = compute_from_frame(frame, period, args.amount, classifications,
                             weights_coverage_min=config.indicators.weights_coverage_min)
    if args.include_emulated:
        doc = {"warning": EMULATED_WARNING, **doc}
        print(f"WARNING: {EMULATED_WARNING}", file=sys.stderr)
    if args.format == "json":
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from metrics.indicators import corridor_table

    table = corridor_table(doc)
    if args.format == "csv":
        # Through Python's stream (Polars writing to it straight reports a reader gone away,
        # `| head`, as its own error rather than BrokenPipeError).
        sys.stdout.write(table.write_csv())
        return 0
    _print_table(doc, table)
    return 0


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}%"


def _weights_line(w: dict[str, Any]) -> str:
    """How much the weighted average could weigh, and "insufficient weights" below the rule."""
    share = "—" if w["corridor_share"] is None else f"{w['corridor_share']:.0f}%"
    volume = "—" if w["volume_share"] is None else f"{w['volume_share']:.0f}%"
    return (f"{w['status']}: {w['matrix_year']} matrix weighs {w['corridors_weighed']} of "
            f"{w['corridors_with_average']} corridors ({share}), "
            f"USD {w['flow_usd_m']:,.0f} million = {volume} of the volume between their "
            f"countries (rule: {w['volume_share_min']:g}%)")


def _print_table(doc: dict[str, Any], table: pl.DataFrame) -> None:
    print(f"period {doc['period']}, USD {doc['amount_usd']}, methodology "
          f"{doc['methodology_version']}")
    print(f"services: {doc['services']['total']:,} ({doc['services']['transparent']:,} "
          "transparent)")
    for key, label in [("global_average", "global average (10.c.1)"),
                       ("weighted_average", "weighted average"),
                       ("smart_average", "SmaRT"),
                       ("g20_sending_average", "G20 sending"),
                       ("g8_sending_average", "G8 sending"),
                       ("g20_receiving_average", "G20 receiving"),
                       ("share_corridors_above_5", "corridors above 5%"),
                       ("share_corridors_above_10", "corridors above 10%")]:
        print(f"  {label:<26} {_fmt(doc[key])}")
        if key == "weighted_average" and doc["weighted_average_coverage"] is not None:
            print(f"  {'':<26} {_weights_line(doc['weighted_average_coverage'])}")
    for key, label in [("by_payment_instrument", "by payment instrument"),
                       ("by_access_point", "by access point"),
                       ("by_pay_out", "by pay-out instrument")]:
        if doc[key]:
            print(f"  {label:<26} " + ", ".join(
                f"{name} {_fmt(v['average'])} ({v['services']})"
                for name, v in doc[key].items()))
    print()
    print(f"{'corridor':<9} {'average':>8} {'SmaRT':>8} {'services':>8} {'transp.':>7}  "
          f"{'flags':<14} cheapest")
    for c in doc["corridors"]:
        flags = ",".join(name for name, on in [(">10%", c["above_10"]),
                                               (">5%", c["above_5"] and not c["above_10"]),
                                               ("n<3", c["too_few_services"]),
                                               ("opaque", c["no_transparent_service"])] if on)
        cheap = c["cheapest"]
        cheapest = f"{cheap['firm']} {_fmt(cheap['total_cost'])}" if cheap else "—"
        print(f"{c['source']}-{c['destination']:<5} {_fmt(c['average']):>8} "
              f"{_fmt(c['smart']):>8} {c['services']:>8} {c['transparent_services']:>7}  "
              f"{flags:<14} {cheapest}")
