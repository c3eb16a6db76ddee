"""``sendcost serve``: run the API, the comparison page, the collectors and the bulletin job."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from corridors.config import load_config
from corridors.db import database
from publish.middleware import HANDLER_ARGS
from sendcost.cli import common_options, port_number, setup_logging

log = logging.getLogger(__name__)

HELP = """\
Run sendcost: the public JSON API under /v1/, the comparison page at /, /healthz and
/metrics, the scheduled collectors and the monthly bulletin job. Stops cleanly on Ctrl-C or
SIGTERM (the embedded PostgreSQL, if used, is stopped too).

On an empty store it first imports the bundled World Bank RPW data (2011-2014), so the
figures are real from the first start ([service] import_rpw_on_empty).

No collected quote is lost to an interruption: a response the database cannot take is kept
in <data_dir>/spool until it can, and what a killed or stopped process, or the database
away, left unstored is stored at start and within 15 s of the database's return.

examples:
  sendcost serve                          # http://127.0.0.1:8080, embedded PostgreSQL
  sendcost serve --port 9000 --host 0.0.0.0
  DATABASE_URL=postgresql://user@db/sendcost sendcost serve
  sendcost serve --sandbox                # also serve the emulated upstreams that
                                          # config.toml's sandbox profile collects from
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service (API, page, collectors, bulletins)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p)
    p.add_argument("--host", help="address to listen on (default: [api] host, 127.0.0.1)")
    p.add_argument("--port", type=port_number, help="port to listen on (default: [api] port, 8080)")
    p.add_argument("--sandbox", action="store_true",
                   help="also run the sandbox upstreams (sendcost sandbox) in this process, "
                        "on 127.0.0.1:8765, for the shipped sandbox profile (their quotes are "
                        "stored as emulated data: the page shows them under the banner "
                        "\"emulated data — not real prices\", the API only with "
                        "?include=emulated); about 1 in 10 of "
                        "its operator quotes is implausible, to show the quarantine")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    from collector.sources import check_sources
    from sendcost.wiring import create_app

    # Before anything starts (the database, the HTTP session): a bad source option or an
    # unset header variable stops here with the config's error alone.
    check_sources(config)

    host = args.host or config.api.host
    port = args.port if args.port is not None else config.api.port
    with database(config.database_url, config.data_dir) as target:
        log.info("database: %s", "embedded PostgreSQL in " + str(config.data_dir / "pg")
                 if target.embedded else target.display)
        app = create_app(config, target)
        from sendcost.commands.sandbox import sandbox_ctx, sandbox_down

        if args.sandbox:
            # First in, last out: the upstreams are up before the first scheduled run.
            app.cleanup_ctx.insert(0, sandbox_ctx)
            # The quick start's page shows what the sandbox gave, under the banner
            # "emulated data — not real prices"; the API still leaves it out by default.
            from publish.page import PAGE_SHOWS_EMULATED

            app[PAGE_SHOWS_EMULATED] = True
        elif warning := sandbox_down(
                config.sources_to_run(),
                where="Start with 'sendcost serve --sandbox' (the sandbox in this process), "
                      "or run 'sendcost sandbox' beside it"):
            log.warning("%s", warning)
        # run_app turns SIGINT/SIGTERM into a graceful shutdown that runs cleanup_ctx.
        web.run_app(app, host=host, port=port, access_log=None, **HANDLER_ARGS,
                    print=lambda msg: log.info("%s", " ".join(msg.split())))
    return 0
