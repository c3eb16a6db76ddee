"""``sendcost bulletin``: write the SDG 10.c bulletin of one period."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

from corridors.config import load_config
from corridors.periods import parse_period
from sendcost.cli import common_options, setup_logging
from sendcost.commands import Subcommands

log = logging.getLogger(__name__)

HELP = """\
Write the SDG 10.c bulletin of one period into DIR/PERIOD/: index.html, bulletin.pdf,
bulletin.md (for email), charts/ (PNG and SVG), data/ (a CSV for every table and chart, and
metadata.json) and bulletin-PERIOD.zip. The folder is built aside and renamed when complete:
a period without data is an error and writes nothing. The same data gives the same files.

Every figure carries its base (quotes, services, corridors, providers, collection dates,
share of the target corridors covered); a figure below the minimum base of config.toml's
[bulletin.minimum] reads "insufficient data" with that base instead of a number.

PERIOD is a quarter (2014Q2, or RPW's 2014_2Q) or a month (2026-11).

Emulated quotes (collected from the sandbox: invented prices) are left out; a period that
has nothing else is refused, naming the sandbox sources, and nothing is written.
--include-emulated makes the bulletin of them anyway, with "emulated data — not real
prices" on every page, chart and file.

examples:
  sendcost bulletin --period 2014Q2 --source rpw          # the bundled RPW data, no database
  sendcost bulletin --period 2026-10 --out /srv/bulletins  # from the store
  sendcost bulletin --period 2026-12 --include-emulated   # a demo of the sandbox's data
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("bulletin", help="write the SDG 10.c bulletin of a period",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p)
    p.add_argument("--period", required=True, metavar="P",
                   help="quarter (2014Q2, 2014_2Q) or month (2026-11)")
    p.add_argument("--out", metavar="DIR", default="bulletins",
                   help="where to write the PERIOD folder (default: ./bulletins)")
    p.add_argument("--source", choices=("store", "rpw"), default="store",
                   help="store: the quotes in the database (default); rpw: straight from an "
                        "RPW file, no database")
    p.add_argument("--include-emulated", action="store_true",
                   help="with --source store: keep the sandbox's emulated quotes (left out "
                        "by default); every page, chart and file then says \"emulated data "
                        "— not real prices\"")
    p.add_argument("--rpw-file", metavar="PATH",
                   help="with --source rpw: the RPW file (default: the bundled 2011-2014 data)")
    p.set_defaults(func=run)


def load_quotes(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The quotes and a description of where they came from, for --source."""
    from publish.bulletin import load_rpw, load_store_quotes

    if args.source == "rpw":
        return load_rpw(args.rpw_file)
    config = load_config(args.config)
    from sendcost.wiring import open_store

    async def load() -> tuple[pl.DataFrame, dict[str, Any]]:
        async with open_store(config) as (store, _):
            return await load_store_quotes(store)

    return asyncio.run(load())


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    period = str(parse_period(args.period))
    from publish.bulletin_files import write_bulletin

    started = time.perf_counter()
    quotes, generated_from = load_quotes(args)
    log.info("loaded %d quotes (%s); writing the bulletin of %s", quotes.height,
             generated_from["kind"], period)
    folder = write_bulletin(quotes, period, Path(args.out), generated_from=generated_from,
                            include_emulated=args.include_emulated, config=config)
    print(f"bulletin {period} written to {folder} in {time.perf_counter() - started:.1f} s")
    return 0
