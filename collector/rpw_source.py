"""The World Bank's RPW data as a scheduled source (kind ``rpw``, quarterly).

``url`` is an http(s) URL — fetched (and archived like every response) — or a local path,
relative to config.toml. The file goes through ``collector.rpw_import.import_rpw``: parsed
whole, stored in one transaction, idempotent, rejected rows listed in the ``imports`` table
(a file with more than ``[import] max_rejected_share`` of its rows rejected stores nothing).
A file already imported whole (same SHA-256) is not parsed again: the run says so and stores
nothing. A ``--reparse`` of such a run imports the archived file again: what is new is added, quotes
already stored are kept as they were (the run's message says so).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from collector import options as opt
from collector.context import RunContext
from collector.rpw_import import import_rpw
from corridors.config import SourceConfig


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, {})


def local_path(ctx: RunContext) -> Path:
    path = Path(ctx.source.url).expanduser()
    if not path.is_absolute() and ctx.config.path is not None:
        path = ctx.config.path.parent / path
    return path


async def collect(ctx: RunContext) -> None:
    url = ctx.source.url
    # A scheduled run that finds the file it already has (or the one the first start's
    # bundled import stored) does not parse it again; a re-parse always parses.
    unless_imported = not ctx.reparse
    # A file with more rejected rows than [import] allows fails the run and stores nothing.
    share = ctx.config.imports.max_rejected_share

    async def one(_: str) -> None:
        if url.startswith(("http://", "https://")):
            fetched = await ctx.fetch(url)
            suffix = "".join(Path(url.split("?", 1)[0]).suffixes[-2:]) or ".csv"
            with tempfile.TemporaryDirectory(prefix="sendcost-rpw-") as tmp:
                path = Path(tmp) / f"rpw{suffix}"
                await asyncio.to_thread(path.write_bytes, fetched.body)
                summary = await import_rpw(ctx.store, path, digest=fetched.content_hash,
                                           unless_imported=unless_imported,
                                           max_rejected_share=share)
        else:
            ctx.report.requests += 1
            summary = await import_rpw(ctx.store, local_path(ctx),
                                       unless_imported=unless_imported,
                                       max_rejected_share=share)
        if summary.same_as is not None:
            ctx.report.message = (f"the file is the one import {summary.same_as} stored "
                                  "(same SHA-256): nothing new, not parsed again")
            return
        ctx.report.stored += summary.quotes_stored
        ctx.report.duplicates += summary.duplicates
        notes = []
        if summary.rejected:
            notes.append(f"import {summary.import_id}: {len(summary.rejected)} rows rejected "
                         "(see the imports table)")
        if ctx.reparse and summary.duplicates:
            # RPW quotes belong to their import, not to a response: a re-parse adds what the
            # file now yields that is new, and replaces nothing already stored.
            notes.append(f"re-parse of an RPW file: the {summary.duplicates} quotes already "
                         "stored were kept as they are, not replaced")
        if notes:
            ctx.report.message = "; ".join(notes)

    await ctx.each([url], one)
