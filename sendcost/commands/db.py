"""``sendcost db migrate|status``: the schema and what the store holds."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from corridors.config import load_config
from sendcost.cli import common_options, setup_logging
from sendcost.commands import Subcommands

#: The migration that made source_leases.
LEASES_VERSION = 7

HELP = """\
Manage the PostgreSQL store.

  sendcost db migrate    apply pending schema migrations (serve does this on start too)
  sendcost db status     schema version, rows per table, which database is in use, and
                         which process collects which source now
"""


def register(sub: Subcommands) -> None:
    p = sub.add_parser("db", help="apply migrations, show the store's status",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    m = dbsub.add_parser(
        "migrate", help="apply pending migrations",
        description="Apply the schema migrations the database does not have yet (serve does "
                    "this on start too). Safe to run twice, or from two processes at once.",
        epilog="example:\n  DATABASE_URL=postgresql://user@db/sendcost sendcost db migrate",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(m)
    m.set_defaults(func=migrate)
    s = dbsub.add_parser(
        "status", help="schema version, row counts, database in use",
        description="Which database is in use (embedded or external), its schema version "
                    "and pending migrations, rows per table, the periods with quotes, and "
                    "which process (host, pid, run) collects which source now.",
        epilog="examples:\n  sendcost db status\n  sendcost db status --json | jq .tables",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=status)


def migrate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    from sendcost.wiring import open_store

    async def go() -> list[str]:
        async with open_store(config, migrate=False) as (store, _):
            return await store.migrate()

    applied = asyncio.run(go())
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else
                                                    " (schema up to date)"))
    return 0


def status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, "WARNING")
    from sendcost.wiring import open_store

    async def go() -> dict[str, Any]:
        async with open_store(config, migrate=False) as (store, target):
            from corridors import leases
            from corridors.store import migrations

            version = await store.schema_version()
            collecting = await leases.held(store) if version >= LEASES_VERSION else []
            return {
                "database": target.display,
                "embedded": target.embedded,
                "schema_version": version,
                "latest_version": migrations()[-1][0],
                "tables": await store.row_counts(),
                "periods": await store.periods() if version else [],
                # Which process collects which source now (one at a time: their leases).
                "collecting": [{"source": h.source, "host": h.host, "pid": h.pid,
                                "run_id": h.run_id, "until": h.expires_at.isoformat()}
                               for h in collecting],
            }

    info = asyncio.run(go())
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    kind = "embedded PostgreSQL" if info["embedded"] else "external PostgreSQL"
    print(f"database:       {info['database']} ({kind})")
    pending = info["latest_version"] - info["schema_version"]
    print(f"schema version: {info['schema_version']}"
          + (f" ({pending} migration(s) pending: run 'sendcost db migrate')" if pending else
             " (up to date)"))
    for table, count in info["tables"].items():
        print(f"  {table:<20} {count:>10,}")
    if info["periods"]:
        print(f"periods:        {', '.join(info['periods'])}")
    for c in info["collecting"]:
        run = f"run {c['run_id']}" if c["run_id"] is not None else "a run starting"
        print(f"collecting:     {c['source']}: {run} of process {c['pid']} on {c['host']}")
    return 0
