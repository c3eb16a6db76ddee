"""``sendcost import rpw PATH``: load World Bank RPW data into the store."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from corridors import health
from corridors.config import Config, load_config
from corridors.errors import DatabaseError
from sendcost.cli import EXIT_USAGE, common_options, setup_logging
from sendcost.commands import Subcommands

if TYPE_CHECKING:
    from collector.rpw_import import ImportSummary
    from corridors.reading.rpw import RpwRead

HELP = """\
Import World Bank Remittance Prices Worldwide (RPW) data into the store.

PATH is the RPW CSV (plain or .gz, as in corridors/data/) or the full RPW xlsx workbook
(sheets 'Dataset (up to Q1 2016)' and 'Dataset (from Q2 2016)'). The whole file is read and
checked first: a corrupt or truncated file is rejected with the line and the reason, and the
store is left as it was. A row is rejected only when a field an indicator uses is unusable
(line, column and value are listed); a label sendcost does not know is kept verbatim and
counted, never a reason to drop a row. Standard error says what happened: rows read, used,
rejected by reason, unknown labels. When more than [import] max_rejected_share of the rows
(config.toml, default 3%) are rejected, nothing is stored and the exit code is 1.
Importing the same file twice adds nothing.

--download fetches the World Bank's current workbook first ([import] rpw_url in
config.toml) into <data_dir>/rpw/ (or --to DIR), with progress, resuming an interrupted
download, checking [import] rpw_sha256 when set; then imports it. When the site refuses
the download (it may refuse clients that are not a browser), the message says how to
download it by hand and import it by path.

examples:
  sendcost import rpw corridors/data/rpw_quotes_2011Q1_2014Q2.csv.gz
  sendcost import rpw ~/Downloads/rpw_dataset_2011_2025_q3.xlsx
  sendcost import rpw --bundled          # the 2011-2014 data shipped with sendcost
  sendcost import rpw --download         # the current workbook from the World Bank
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("import", help="import World Bank RPW data (CSV, .gz or xlsx)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    rpw = kinds.add_parser("rpw", help="RPW quotes", description=HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(rpw)
    rpw.add_argument("path", nargs="?", metavar="PATH", help="RPW file (.csv, .csv.gz, .xlsx)")
    rpw.add_argument("--bundled", action="store_true",
                     help="import the 2011-2014 RPW data shipped with sendcost")
    rpw.add_argument("--download", action="store_true",
                     help="download the current workbook ([import] rpw_url), then import it")
    rpw.add_argument("--to", metavar="DIR",
                     help="with --download: the folder to keep the workbook in "
                          "(default <data_dir>/rpw)")
    rpw.set_defaults(func=run_rpw)


async def _download(config: Config, folder: Path | None) -> Path:
    from collector.rpw_download import download_rpw
    from sendcost.progress import Progress

    url = config.imports.rpw_url
    print(f"downloading {url}", file=sys.stderr, flush=True)
    return await download_rpw(url, folder or config.data_dir / "rpw",
                              expected_sha256=config.imports.rpw_sha256,
                              progress=Progress("downloading (bytes)"),
                              user_agent=config.collection.user_agent)


def _usage(message: str) -> int:
    """A bad command line: said as argparse says it, exit code 2 (``sendcost --help``)."""
    print(f"usage: sendcost import rpw [-h] [PATH | --bundled | --download [--to DIR]]\n"
          f"sendcost import rpw: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_rpw(args: argparse.Namespace) -> int:
    from collector.rpw_import import import_rpw
    from corridors.reading.rpw import bundled_rpw_path
    from sendcost.progress import Progress
    from sendcost.wiring import open_store

    config = load_config(args.config)
    setup_logging(args, config.log_level)
    if sum(map(bool, (args.path, args.bundled, args.download))) != 1:
        return _usage("give PATH, --bundled or --download (one of them)")
    if args.to and not args.download:
        return _usage("--to goes with --download")
    path = bundled_rpw_path() if args.bundled else args.path
    if args.download:
        path = asyncio.run(_download(config, Path(args.to) if args.to else None))

    def report(read: RpwRead) -> None:
        print("\n".join(read.report()), file=sys.stderr, flush=True)

    async def go() -> ImportSummary:
        async with open_store(config) as (store, _):
            return await import_rpw(store, path, progress=Progress("storing quotes"),
                                    max_rejected_share=config.imports.max_rejected_share,
                                    on_read=report)

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
