"""``sendcost export``: open-data files for partners — the postal benchmark, SDMX-CSV, and
a closed period's quotes as Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from corridors.config import load_config
from corridors.periods import parse_period
from sendcost.cli import common_options, setup_logging
from sendcost.commands import Subcommands

if TYPE_CHECKING:
    import polars as pl

HELP = """\
Export open data for partners.

  postal   the postal benchmark of a period (every post-office service against its
           corridor's median, cheapest service and SmaRT, with its rank) as CSV and JSON;
           with --by corridor or --by operator, each post against its market (the
           corridor's services no post sells or pays out): its cost, the market's median
           and cheapest, its rank, and the change since the previous period
  sdmx     the SDG 10.c.1 series as SDMX-CSV for the UN SDG Global Database dataflow
           IAEG-SDGs:DF_SDG_GLH, with the series codes of the UN SDG series list (release
           2022.Q1.G.03): SI_RMT_COST (World and each receiving country), SI_RMT_COST_SND
           (each sending country) and, with --corridors, SI_RMT_COST_BC and SI_RMT_COST_SC
           (each corridor's average and SmaRT). A draft for a statistics office, not a
           submission: see `sendcost export sdmx --help` for what it must still check.
  parquet  a closed period's quotes from the database, with their services, corridors, data
           kind and provenance, as Parquet files for Polars or DuckDB (docs/storage.md)

Emulated quotes (collected from the sandbox: invented prices) are never exported.

examples:
  sendcost export postal --period 2014Q2 --source rpw --out exports/
  sendcost export postal --period 2014Q2 --source rpw --by operator --out exports/
  sendcost export sdmx --from 2011Q1 --to 2014Q2 --source rpw > sdg_10c1.csv
  sendcost export parquet --period 2014Q2 --out exports/
"""

PARQUET_HELP = """\
The quotes of one closed period (a quarter: its own and its three months'; a month) from the
database, as Parquet files written by Polars: DIR/quotes-PERIOD/part-00000.parquet, ... (at
most 250,000 quotes each). Each quote carries its corridor, firm and firm type, service
attributes, amounts, fee and rates (exact decimals), flags, data kind (survey, observed,
estimate) and provenance: its source, the run or import that stored it (with the imported
file's SHA-256) and the archived response it was parsed from (URL, fetch time, SHA-256 of
the body, licence). Emulated quotes are never exported. A period not yet ended is refused;
an earlier export of the same period in DIR is replaced whole.
"""


POSTAL_HELP = """\
The postal benchmark of one period as postal-PERIOD.csv and postal-PERIOD.json in DIR:
every post-office service against its corridor's median, cheapest service and SmaRT, with
its rank, and the data kind and source of its quotes.

With --by corridor or --by operator: postal-PERIOD-by-corridor.csv and .json (or
-by-operator), each post against its market (the corridor's services no post sells or pays
out: its cost, the market's median and cheapest, its rank, the change since the previous
period), with the field names of /v1/postal/summary, and the previous period compared with.

Every JSON says what the figures rest on (per source, its data kind, quotes and periods) and
their licence, CC BY 4.0, with the attribution to give (crediting the World Bank's
Remittance Prices Worldwide when its survey quotes are among them).
"""


SDMX_HELP = """\
The 10.c.1 series from --from to --to (two quarters or two months) as SDMX-CSV (version 2.0),
on stdout or in --out: World and each receiving country (SI_RMT_COST), each sending country
(SI_RMT_COST_SND), and with --corridors each corridor's average (SI_RMT_COST_BC) and SmaRT
(SI_RMT_COST_SC), the codes of the UN SDG series list release 2022.Q1.G.03. Values are
rounded to two decimals; OBS_STATUS is A for survey and observed quotes, E when a comparison
feed's estimate is among them, U for a negative cost; NATURE is E (estimated by sendcost).

What a statistics office must still check before loading it: that the dataflow version
(IAEG-SDGs:DF_SDG_GLH 1.26) and the series list release are the ones its database holds
now; that REPORTING_TYPE G (global) and NATURE E suit its submission; that each REF_AREA
(M49) is one it reports; that the coverage (services
named in COMMENT_OBS) is enough to publish; and that an annual value as the mean of the
year's periods is the aggregation it wants. These are sendcost's indicative figures, not the
World Bank's official 10.c.1 values.
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("export", help="export the postal benchmark, SDMX-CSV or Parquet",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    def source_options(q: argparse.ArgumentParser) -> None:
        common_options(q)
        q.add_argument("--source", choices=("store", "rpw"), default="store",
                       help="store: the database (default); rpw: an RPW file, no database")
        q.add_argument("--rpw-file", metavar="PATH",
                       help="with --source rpw: the RPW file (default: the bundled data)")
        q.add_argument("--amount", type=int, choices=(200, 500), default=200,
                       help="price point in USD (default 200)")

    postal = what.add_parser("postal", help="the postal benchmark as CSV and JSON",
                             description=POSTAL_HELP,
                             epilog="examples:\n"
                                    "  sendcost export postal --period 2014Q2 --source rpw "
                                    "--out exports/\n"
                                    "  sendcost export postal --period 2014Q2 --source rpw "
                                    "--by corridor --out exports/\n"
                                    "  sendcost export postal --period 2026-10",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    source_options(postal)
    postal.add_argument("--period", required=True, metavar="P", help="quarter or month")
    postal.add_argument("--out", metavar="DIR", default=".",
                        help="folder to write into (default: the current one)")
    postal.add_argument("--by", choices=("service", "corridor", "operator"),
                        default="service",
                        help="service: every post-office service (default); corridor: each "
                             "post against its market per corridor; operator: the same "
                             "summed up per post")
    postal.set_defaults(func=run_postal)

    sdmx = what.add_parser("sdmx", help="the 10.c.1 series as SDMX-CSV",
                           description=SDMX_HELP,
                           epilog="examples:\n"
                                  "  sendcost export sdmx --from 2011Q1 --to 2014Q2 --source rpw "
                                  "> sdg_10c1.csv\n"
                                  "  sendcost export sdmx --from 2011Q1 --to 2014Q2 --source rpw "
                                  "--corridors --out sdg_10c1_corridors.csv\n"
                                  "  sendcost export sdmx --from 2011Q1 --to 2014Q2 --source rpw "
                                  "--frequency annual",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    source_options(sdmx)
    sdmx.add_argument("--from", dest="start", required=True, metavar="P")
    sdmx.add_argument("--to", dest="end", required=True, metavar="P")
    sdmx.add_argument("--corridors", action="store_true",
                      help="also every corridor: its average (SI_RMT_COST_BC) and its SmaRT "
                           "(SI_RMT_COST_SC)")
    sdmx.add_argument("--frequency", choices=("period", "annual"), default="period",
                      help="period: one observation per quarter or month with data (FREQ Q "
                           "or M, default); annual: per calendar year, the mean of its "
                           "periods' values (FREQ A, the periods named in COMMENT_OBS)")
    sdmx.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    sdmx.set_defaults(func=run_sdmx)

    parquet = what.add_parser(
        "parquet", help="a closed period's quotes as Parquet", description=PARQUET_HELP,
        epilog="examples:\n  sendcost export parquet --period 2014Q2 --out exports/\n"
               "  python -c \"import polars as pl; "
               "print(pl.scan_parquet('exports/quotes-2014Q2/*.parquet').collect())\"\n"
               "  duckdb -c \"SELECT source_code, destination_code, count(*) FROM "
               "'exports/quotes-2014Q2/*.parquet' GROUP BY ALL\"",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(parquet)
    parquet.add_argument("--period", required=True, metavar="P",
                         help="a closed quarter (2014Q2) or month (2026-10)")
    parquet.add_argument("--out", metavar="DIR", default=".",
                         help="folder to write into (default: the current one)")
    parquet.set_defaults(func=run_parquet)


def _quotes(args: argparse.Namespace) -> pl.DataFrame:
    from sendcost.commands.bulletin import load_quotes

    return load_quotes(args)[0]


def run_postal(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    from publish.exports import postal_export, postal_summary_export

    period = str(parse_period(args.period))
    by = getattr(args, "by", "service")
    if by == "service":
        body_csv, body_json = postal_export(_quotes(args), period=period,
                                            amount_usd=args.amount)
        stem, what = f"postal-{period}", "postal benchmark"
    else:
        body_csv, body_json = postal_summary_export(_quotes(args), period=period, by=by,
                                                    amount_usd=args.amount)
        stem, what = f"postal-{period}-by-{by}", f"postal summary by {by}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Both files or neither: each is written whole beside its final name, then renamed.
    for suffix, body in (("csv", body_csv), ("json", body_json)):
        part = out / f".{stem}.{suffix}.part"
        part.write_bytes(body)
    for suffix in ("csv", "json"):
        (out / f".{stem}.{suffix}.part").replace(out / f"{stem}.{suffix}")
    print(f"{what} {period}: {out / f'{stem}.csv'}, {out / f'{stem}.json'}", file=sys.stderr)
    return 0


def run_sdmx(args: argparse.Namespace) -> int:
    if args.amount != 200:
        # The series list defines every 10.c.1 series for sending USD 200: a USD 500 figure
        # filed under them would be read as the USD 200 one.
        print(f"sendcost export sdmx: error: --amount {args.amount}: the SDG 10.c.1 series "
              "(SI_RMT_COST, _SND, _BC, _SC) are defined for sending USD 200 only",
              file=sys.stderr)
        return 2
    config = load_config(args.config)
    setup_logging(args, "WARNING" if not args.out else config.log_level)
    from publish.exports import sdmx_csv, sdmx_rows

    rows = sdmx_rows(_quotes(args), start=args.start, end=args.end, amount_usd=args.amount,
                     corridors=args.corridors, frequency=args.frequency)
    body = sdmx_csv(rows)
    if args.out:
        Path(args.out).write_bytes(body)
        print(f"{len(rows)} observations written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(body.decode())
    return 0


def run_parquet(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    import asyncio

    from publish.parquet import ParquetExport, closed_period, export_parquet
    from sendcost.wiring import open_store

    closed_period(args.period)  # a bad or open period is said before the database starts

    async def go() -> ParquetExport:
        async with open_store(config) as (store, _):
            return await export_parquet(store, args.period, Path(args.out))

    done = asyncio.run(go())
    print(f"{done.quotes:,} quotes of {done.period} in {len(done.files)} Parquet file(s) in "
          f"{done.folder}", file=sys.stderr)
    return 0
