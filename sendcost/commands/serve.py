"""``sendcost serve``: run the API, the comparison page, the collectors and the bulletin job."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from corridors.config import load_config
from corridors.db import database, validate_url
from corridors.errors import ConfigError
from publish.middleware import HANDLER_ARGS
from sendcost.cli import common_options, port_number, setup_logging
from sendcost.commands import Subcommands

if TYPE_CHECKING:
    from corridors.config import Config

log = logging.getLogger(__name__)

HELP = """\
Run sendcost: the public JSON API under /v1/, the comparison page at /, /healthz and
/metrics, the scheduled collectors and the monthly bulletin job. Stops cleanly on Ctrl-C or
SIGTERM (the embedded PostgreSQL, if used, is stopped too, unless another sendcost command
still uses it).

With the embedded PostgreSQL (no DATABASE_URL), serve keeps it running: should it stop, it
is started again (backing off while it cannot, say on a full disk), the log says why, and
/healthz answers 503 "degraded" with the reason meanwhile. Several serve and collect
processes may share one database: a source is collected by one of them at a time.

On an empty store it first imports the bundled World Bank RPW data (2011-2014), so the
figures are real from the first start ([service] import_rpw_on_empty).

After each collection or import it records what moved (a corridor crossing 5% or 3%, a
provider's fee or FX margin changing, a new cheapest provider, a new bulletin) as events,
served as Atom feeds (/v1/feeds/...) and delivered to the webhooks subscribed through
/v1/admin/webhooks, signed, from a queue in the database that survives restarts
([alerts], docs/alerts.md).

No collected quote is lost to an interruption: a response the database cannot take is kept
in <data_dir>/spool until it can, and what a killed or stopped process, or the database
away, left unstored is stored at start and within 15 s of the database's return.

examples:
  sendcost serve                          # http://127.0.0.1:8080, embedded PostgreSQL
  sendcost serve --port 9000 --host 0.0.0.0
  DATABASE_URL=postgresql://user@db/sendcost sendcost serve
  sendcost serve --sandbox                # offline: emulated upstreams in-process,
                                          # collected from instead of [[sources]]
  sendcost serve --sandbox --port 8081 --sandbox-port 8766   # a second one beside it

API replicas (docs/deployment.md): 'serve --no-collect' only serves. It runs no collector,
import, recovery or migration, takes no source lease and writes nothing to the database: it
reads the rollups and latest prices the collecting process keeps, from the read database
(SENDCOST_READ_DATABASE_URL or [database] read_url: a streaming replica, or the primary
through a read-only role; else the write database), and refreshes its view when a
collector's write is announced (LISTEN on the write database, when one is set) or every
5 s. Start the collecting 'serve' first: a replica needs the migrated schema. Several
replicas and collecting processes may run side by side, on one machine or several.

  sendcost serve --sandbox --port 8080                 # collects (and serves)
  sendcost serve --no-collect --port 8081              # serves only, beside it
  SENDCOST_READ_DATABASE_URL=postgresql://reader@standby/sendcost \\
    DATABASE_URL=postgresql://reader@primary/sendcost sendcost serve --no-collect

Without --sandbox it collects from config.toml's [[sources]]: as shipped, real public
upstreams (Wise's comparison API, the ECB's and open.er-api's reference rates, the World
Bank's RPW workbook). An upstream it cannot reach is reported once, then backed off from
(the circuit breaker); the API and page go on serving what the store holds.
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("serve", help="run the service (API, page, collectors, bulletins)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p)
    p.add_argument("--host", help="address to listen on (default: [api] host, 127.0.0.1)")
    p.add_argument("--port", type=port_number, help="port to listen on (default: [api] port, 8080)")
    p.add_argument("--sandbox", action="store_true",
                   help="run the sandbox upstreams (sendcost sandbox) in this process, at "
                        "[sandbox] host:port (127.0.0.1:8765), and collect from the emulated "
                        "profile (sendcost sandbox --print-config) instead of the config's "
                        "[[sources]]; no network needed. Their quotes are stored as emulated "
                        "data: the page shows them under the banner \"emulated data — not "
                        "real prices\", the API only with ?include=emulated; about 1 in 10 "
                        "of its operator quotes is implausible, to show the quarantine")
    p.add_argument("--sandbox-port", type=sandbox_port, metavar="PORT",
                   help="with --sandbox: the sandbox's port (default: [sandbox] port, 8765), "
                        "so two instances can run side by side")
    p.add_argument("--no-collect", action="store_true",
                   help="an API replica: serve only, from the read database ([database] "
                        "read_url, SENDCOST_READ_DATABASE_URL; else the write one); no "
                        "collection, import, migration or lease, and no write to the "
                        "database (it works on a read-only connection)")
    p.set_defaults(func=run)


def sandbox_port(text: str) -> int:
    """An argparse type: a port the sandbox can be reached at (1-65535)."""
    port = port_number(text)
    if port == 0:
        raise argparse.ArgumentTypeError("expected a port number from 1 to 65535 (the "
                                         "collectors must know it in advance), not '0'")
    return port


def configured(args: argparse.Namespace) -> Config:
    """The config ``args`` ask for: with ``--sandbox``, its sources replaced by the emulated
    profile at the sandbox's address (``--sandbox-port`` over ``[sandbox] port``)."""
    config = load_config(args.config)
    if args.sandbox_port is not None and not args.sandbox:
        print("sendcost serve: error: --sandbox-port goes with --sandbox", file=sys.stderr)
        raise SystemExit(2)  # a bad command line, as argparse exits
    if args.no_collect and args.sandbox:
        print("sendcost serve: error: --no-collect serves what others collect; the "
              "--sandbox collects: run it in another 'sendcost serve'", file=sys.stderr)
        raise SystemExit(2)
    if args.sandbox:
        from sendcost.commands.sandbox import with_sandbox

        config = with_sandbox(config, args.sandbox_port)
    return config


def run(args: argparse.Namespace) -> int:
    config = configured(args)
    setup_logging(args, config.log_level)
    from collector.sources import check_sources
    from sendcost.wiring import create_app

    collecting = not args.no_collect
    if collecting:
        # Before anything starts (the database, the HTTP session): a bad source option or
        # an unset header variable stops here with the config's error alone.
        check_sources(config)
    if config.read_database_url:
        validate_url(config.read_database_url)
        if collecting and not config.database_url:
            raise ConfigError("database.read_url (or SENDCOST_READ_DATABASE_URL) is set but "
                              "database.url (or DATABASE_URL) is not: a collecting serve "
                              "writes to the embedded PostgreSQL, of which the read URL "
                              "cannot be a replica; set both, or serve --no-collect")

    host = args.host or config.api.host
    port = args.port if args.port is not None else config.api.port
    # A replica given only a read URL reads (and listens on) that one: no embedded server.
    write_url = config.database_url or (None if collecting else config.read_database_url)
    with database(write_url, config.data_dir) as target:
        log.info("database: %s", "embedded PostgreSQL in " + str(config.data_dir / "pg")
                 if target.embedded else target.display)
        app = create_app(config, target, collecting=collecting)
        from sendcost.commands.sandbox import sandbox_ctx, sandbox_down

        if args.sandbox:
            # First in, last out: the upstreams are up before the first scheduled run.
            app.cleanup_ctx.insert(0, sandbox_ctx(config.sandbox))
            # The quick start's page shows what the sandbox gave, under the banner
            # "emulated data — not real prices"; the API still leaves it out by default.
            from publish.page import PAGE_SHOWS_EMULATED

            app[PAGE_SHOWS_EMULATED] = True
        elif collecting and (warning := sandbox_down(
                config.sources_to_run(), sandbox=config.sandbox,
                where="Start with 'sendcost serve --sandbox' (the sandbox in this process), "
                      "or run 'sendcost sandbox' beside it")):
            log.warning("%s", warning)
        # run_app turns SIGINT/SIGTERM into a graceful shutdown that runs cleanup_ctx.
        web.run_app(app, host=host, port=port, access_log=None, **HANDLER_ARGS,
                    print=lambda msg: log.info("%s", " ".join(msg.split())))
    return 0
