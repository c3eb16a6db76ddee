"""``sendcost db migrate|status|partitions|detach|prune-raw``: the schema, what the store
holds, its month partitions and the retention of raw bodies (docs/storage.md)."""

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
  sendcost db partitions make the month partitions of quotes and raw responses ahead
                         ([storage] partitions_ahead_months; serve does this daily) and
                         list them
  sendcost db detach --before YYYY-MM
                         detach the month partitions before that month (closed quarters
                         only): their rows leave the store, kept as tables of their own
  sendcost db prune-raw  drop the bodies of raw responses older than [storage]
                         raw_retention_days in closed quarters (serve does this daily),
                         keeping each response's provenance, hash and size
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

    pa = dbsub.add_parser(
        "partitions", help="make month partitions ahead, and list them",
        description="Make the month partitions of quotes and raw_responses for this month "
                    "and [storage] partitions_ahead_months after it where missing (serve "
                    "does this at start and daily), then list the month partitions attached "
                    "and how many rows each default partition holds.",
        epilog="example:\n  sendcost db partitions",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(pa)
    pa.set_defaults(func=partitions_cmd)
    d = dbsub.add_parser(
        "detach", help="detach month partitions of closed quarters",
        description="Detach the month partitions of quotes and raw_responses for the months "
                    "before --before (at the latest the first month of the current quarter). "
                    "Their rows leave the store (the API, bulletins and exports no longer "
                    "see them; the rollups already made keep their sums; the latest prices "
                    "of those months go, and running services follow at once) and stay in "
                    "tables of the same name (quotes_p2024_01, ...), to be dumped (pg_dump "
                    "-t) and dropped by whoever keeps the archive; a later import leaves "
                    "their quotes out. A raw responses partition still named by rows that "
                    "stay (reference rates, quarantine records) is kept, and said so. The "
                    "default partitions are never detached.",
        epilog="example:\n  sendcost db detach --before 2025-01\n"
               "  pg_dump -t 'quotes_p2024_*' -t 'raw_responses_p2024_*' sendcost > 2024.sql",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(d)
    d.add_argument("--before", required=True, metavar="YYYY-MM",
                   help="detach the months before this one")
    d.set_defaults(func=detach)
    r = dbsub.add_parser(
        "prune-raw", help="drop old raw bodies, keep their provenance",
        description="Drop the bodies of raw responses fetched more than N days ago (--days, "
                    "else [storage] raw_retention_days) and before the current quarter. Each "
                    "response keeps its source, URL, fetch time, status, headers, licence, "
                    "SHA-256 of the body and the body's size (body_size), and says when its "
                    "body went (body_dropped_at); no quote is touched. Such a response can "
                    "no longer be re-parsed (collect --reparse).",
        epilog="examples:\n  sendcost db prune-raw\n  sendcost db prune-raw --days 400",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(r)
    r.add_argument("--days", type=int, metavar="N",
                   help="retention in days (default: [storage] raw_retention_days)")
    r.set_defaults(func=prune_raw)


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


def partitions_cmd(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    from corridors import partitions
    from sendcost.wiring import open_store

    async def go() -> tuple[list[str], list[partitions.Partition], dict[str, int]]:
        async with open_store(config) as (store, _):
            made = await partitions.ensure_partitions(
                store, config.storage.partitions_ahead_months)
            defaults = {t: int(await store.pool.fetchval(f"SELECT count(*) FROM {t}_default"))
                        for t in partitions.PARTITIONED}
            return made, await partitions.month_partitions(store), defaults

    made, parts, defaults = asyncio.run(go())
    print(f"made {len(made)} partition(s)" + (f": {', '.join(made)}" if made else ""))
    for table in partitions.PARTITIONED:
        months = [p.month.strftime("%Y-%m") for p in parts if p.table == table]
        print(f"{table}: {len(months)} month partition(s)"
              + (f", {months[0]} to {months[-1]}" if months else "")
              + f"; {defaults[table]:,} row(s) in {table}_default")
    return 0


def detach(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    from corridors import partitions
    from sendcost.wiring import open_store

    before = partitions.parse_month(args.before)

    async def go() -> partitions.Detached:
        async with open_store(config) as (store, _):
            return await partitions.detach_before(store, before)

    done = asyncio.run(go())
    print(f"detached {len(done.detached)} partition(s)"
          + (f": {', '.join(done.detached)}" if done.detached else ""))
    if done.latest_prices_removed:
        print(f"{done.latest_prices_removed:,} latest price(s) of those months no longer "
              "served")
    for name, why in done.kept:
        print(f"kept {name}: {why}")
    return 0


def prune_raw(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(args, config.log_level)
    from corridors import partitions
    from corridors.errors import ConfigError
    from sendcost.wiring import open_store

    days = config.storage.raw_retention_days if args.days is None else args.days
    if days < 1:
        raise ConfigError("no retention set: pass --days N (N ≥ 1) or set [storage] "
                          "raw_retention_days in config.toml")

    async def go() -> partitions.Pruned:
        async with open_store(config) as (store, _):
            return await partitions.drop_raw_bodies(store, days)

    done = asyncio.run(go())
    print(f"dropped {done.bodies:,} raw bodies ({done.bytes:,} bytes) fetched before "
          f"{done.before:%Y-%m-%d %H:%M} UTC")
    return 0
