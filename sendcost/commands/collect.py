"""``sendcost collect``: run collections now (one source, or all enabled), or re-parse."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

import aiohttp

from corridors.config import load_config
from sendcost.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, common_options, setup_logging
from sendcost.commands import Subcommands
from sendcost.commands.serve import sandbox_port
from sendcost.progress import clear_all

if TYPE_CHECKING:
    from collector.run import RunReport

log = logging.getLogger(__name__)

HELP = """\
Collect quotes and reference rates now, from the sources in config.toml ([[sources]]).

Without --source, every enabled source runs: reference-rate sources first (quotes are
measured against them), then the others side by side. Every upstream response is archived
before it is parsed; implausible quotes are quarantined with their reason; each run is
recorded (sendcost db status, GET /healthz).

--reparse RUN_ID parses again what that run archived, fetching nothing: after a parser fix,
the run's quotes are replaced by the re-parsed ones (in one transaction).

Nothing fetched is lost to an interruption. Quotes are written as they are parsed (in small
batches); a response the database cannot archive is kept in the spool
(<data_dir>/spool/<database>) until it can; on SIGTERM or Ctrl-C what is held is written
(5 s at most). Before collecting
(and again after a run that lost its database), the command replays the spool and re-parses
every earlier run whose quotes were not all stored (killed, stopped, cut off from the
database); a "recovered:" line names each such re-parse.

examples:
  sendcost collect                               # all enabled sources
  sendcost collect --source wise-comparison --corridor USA-MEX
  sendcost collect --reparse 42
  sendcost sandbox &  sendcost collect --sandbox # the emulated profile, no network needed
  sendcost sandbox --port 8766 &  sendcost collect --sandbox --sandbox-port 8766

With --sandbox, the sandbox must answer at [sandbox] host:port (or --sandbox-port) within
2 s; otherwise the command exits 1 at once, saying how to start it, and records no run.

One collector per source at a time, on one machine or several: a source that another
process is collecting is skipped, and its summary line names that process (host, pid, run).

exit codes: 0 every run ok (or skipped), 1 a run failed or was partial (the summary says
which), 2 usage, 143 stopped by SIGTERM (the runs under way are recorded as failed, like
Ctrl-C: 130).
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("collect", help="collect quotes and reference rates now",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p)
    p.add_argument("--source", action="append", metavar="NAME",
                   help="only this source (repeatable; default: every enabled source)")
    p.add_argument("--corridor", metavar="FROM-TO",
                   help="only this configured corridor, e.g. USA-MEX")
    p.add_argument("--reparse", type=int, metavar="RUN_ID",
                   help="re-parse the responses archived by run RUN_ID (no fetching)")
    p.add_argument("--sandbox", action="store_true",
                   help="collect from the emulated profile (sendcost sandbox --print-config) "
                        "at [sandbox] host:port instead of the config's [[sources]]: a "
                        "'sendcost sandbox' must be running there")
    p.add_argument("--sandbox-port", type=sandbox_port, metavar="PORT",
                   help="with --sandbox: the sandbox's port (default: [sandbox] port, 8765), "
                        "as 'sendcost sandbox --port PORT' listens")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.reparse is not None and (args.source or args.corridor):
        print("sendcost collect: error: --reparse takes no --source or --corridor (it "
              "re-parses what the run fetched)", file=sys.stderr)
        return EXIT_USAGE
    if args.sandbox_port is not None and not args.sandbox:
        print("sendcost collect: error: --sandbox-port goes with --sandbox", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    if args.sandbox:
        from sendcost.commands.sandbox import sandbox_answers, with_sandbox

        config = with_sandbox(config, args.sandbox_port)
        # Without it every emulated source would fail in turn (9 failed runs, ~46 s): say so
        # before any run is recorded. A re-parse fetches nothing and needs no sandbox.
        if args.reparse is None and not sandbox_answers(config.sandbox):
            where = f"{config.sandbox.host}:{config.sandbox.port}"
            print(f"sendcost collect: error: no sandbox at {where} — start `sendcost sandbox` "
                  "(or `sendcost serve --sandbox`), or give --sandbox-port", file=sys.stderr)
            return EXIT_ERROR
    setup_logging(args, config.log_level)
    from collector.run import Collector
    from collector.sources import check_sources
    from sendcost.progress import Progress
    from sendcost.wiring import open_store

    check_sources(config)
    if args.reparse is None:
        from sendcost.commands.sandbox import sandbox_down

        if warning := sandbox_down(config.sources_to_run(args.source), sandbox=config.sandbox,
                                   where="Run 'sendcost sandbox' first (in another "
                                         "terminal, or 'sendcost sandbox &')"):
            log.warning("%s", warning)

    terminated = False

    async def go() -> tuple[list[RunReport], list[RunReport]]:
        # SIGTERM (systemd, cron, docker stop) stops like Ctrl-C: the runs under way are
        # cancelled and recorded as failed, never left 'running'.
        main = asyncio.current_task()
        assert main is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            main.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        timeout = aiohttp.ClientTimeout(total=config.collection.timeout_seconds,
                                        connect=min(10.0, config.collection.timeout_seconds))
        async with open_store(config) as (store, _), aiohttp.ClientSession(
                timeout=timeout, headers={"User-Agent": config.collection.user_agent}
        ) as session:
            collector = Collector(config, store, session)
            if args.reparse is not None:
                return [await collector.reparse(
                    args.reparse, progress=Progress(f"re-parse {args.reparse}"))], []
            recovered = await collector.recover_if_needed()
            reports = await collector.run_all(args.source, corridor=args.corridor,
                                              progress=lambda name: Progress(name))
            # A run that lost its database mid-way: what it could not store, stored now if
            # the database is back (else at the next start).
            recovered += await collector.recover_if_needed()
            return reports, recovered

    try:
        reports, recovered = asyncio.run(go())
    except asyncio.CancelledError:
        if not terminated:
            raise
        clear_all()
        print("sendcost collect: stopped by SIGTERM; the runs under way were recorded as "
              "failed; what they fetched and could not write is stored at the next start "
              "(or: --reparse RUN_ID)",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    for r in recovered:
        print(f"recovered: {r.line()}")
    for r in reports:
        print(r.line())
    if not reports:
        print("no enabled sources in the config ([[sources]] in config.toml)")
    # A source another collector has at the moment is not a failure: it is being collected.
    return EXIT_OK if all(r.status in ("ok", "skipped") for r in reports) else EXIT_ERROR
