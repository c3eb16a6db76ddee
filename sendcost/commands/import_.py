"""``sendcost import rpw PATH``: load World Bank RPW data into the store."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import asyncpg

from corridors import health
from corridors.config import load_config
from corridors.errors import DatabaseError
from sendcost.cli import common_options, setup_logging

if TYPE_CHECKING:
    from collector.rpw_import import ImportSummary

HELP = """\
Import World Bank Remittance Prices Worldwide (RPW) data into the store.

PATH is the RPW CSV (plain or .gz, as in corridors/data/) or the full RPW xlsx workbook
(sheets 'Dataset (up to Q1 2016)' and 'Dataset (from Q2 2016)'). The whole file is read and
checked first: a corrupt or truncated file is rejected with the line and the reason, and the
store is left as it was. Rows with an unknown label are rejected and listed (never guessed).
Importing the same file twice adds nothing.

examples:
  sendcost import rpw corridors/data/rpw_quotes_2011Q1_2014Q2.csv.gz
  sendcost import rpw ~/Downloads/rpw_dataset_2011_2025_q3.xlsx
  sendcost import rpw --bundled          # the 2011-2014 data shipped with sendcost
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="import World Bank RPW data (CSV, .gz or xlsx)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    rpw = kinds.add_parser("rpw", help="RPW quotes", description=HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(rpw)
    rpw.add_argument("path", nargs="?", metavar="PATH", help="RPW file (.csv, .csv.gz, .xlsx)")
    rpw.add_argument("--bundled", action="store_true",
                     help="import the 2011-2014 RPW data shipped with sendcost")
    rpw.set_defaults(func=run_rpw)


def run_rpw(args: argparse.Namespace) -> int:
    from collector.rpw_import import bundled_rpw_path, import_rpw
    from sendcost.progress import Progress
    from sendcost.wiring import open_store

    config = load_config(args.config)
    setup_logging(args, config.log_level)
    if bool(args.path) == bool(args.bundled):
        raise SystemExit("sendcost import rpw: give PATH or --bundled (one of them)")
    path = bundled_rpw_path() if args.bundled else args.path

    async def go() -> ImportSummary:
        async with open_store(config) as (store, _):
            return await import_rpw(store, path, progress=Progress("storing quotes"))

    try:
        summary = asyncio.run(go())
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError) as exc:
        # The database refused the import or went away mid-way (a full disk, say): the
        # import is one transaction, so nothing of it was stored.
        raise DatabaseError(f"import rpw: {_why(exc)}; nothing was imported (the import is "
                            "one transaction): run it again once that is fixed") from None
    except OSError as exc:
        if health.classify(exc) != "disk_full":
            raise
        raise DatabaseError(f"import rpw: {_why(exc)}; nothing was imported") from None
    print("\n".join(summary.lines()))
    return 0


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    kind = health.classify(exc)
    return health.reason(kind, text) if kind else f"the database refused it ({text})"
