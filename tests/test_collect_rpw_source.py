"""The RPW file as a scheduled source (kind ``rpw``): fetched over HTTP and archived, or read
from a path; imported once; a re-parse says it replaced nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from collector.run import Collector, RunReport
from collector.sandbox import Faults, Sandbox
from corridors.config import parse_config
from corridors.reading.rpw import bundled_rpw_path
from corridors.store import Store

BUNDLED_QUOTES = 56885


def assert_imported_or_known(report: RunReport) -> None:
    """Parsed and stored (each quote new or already there), or found to be a file imported
    whole before and not parsed again."""
    if report.message and "not parsed again" in report.message:
        assert (report.stored, report.duplicates) == (0, 0)
    else:
        assert report.stored + report.duplicates == BUNDLED_QUOTES, report.line()


async def test_rpw_source_over_http_then_a_reparse(store: Store) -> None:
    server = TestServer(Sandbox(Faults(), operators_n=1).app(), host="127.0.0.1")
    await server.start_server()
    name = f"rpw-{uuid.uuid4().hex[:8]}"
    config = parse_config({"sources": [{
        "name": name, "kind": "rpw", "url": str(server.make_url("/rpw/rpw_quotes.csv.gz")),
        "schedule": "0 3 1 1,4,7,10 *"}]})
    try:
        async with aiohttp.ClientSession() as session:
            collector = Collector(config, store, session)
            first = await collector.run(name)
            assert first.status == "ok", first.line()
            # Imported now, or by another test of the session before (then not parsed
            # again): every quote once.
            assert_imported_or_known(first)
            assert await store.pool.fetchval(
                "SELECT count(*) FROM raw_responses WHERE run_id = $1", first.run_id) == 1
            # The next scheduled run finds the same file: it is not parsed again.
            second = await collector.run(name)
            assert (second.status, second.stored, second.duplicates) == ("ok", 0, 0)
            assert second.message and "not parsed again" in second.message
            await server.close()  # a re-parse fetches nothing: the archived file is read
            again = await collector.reparse(first.run_id)
    finally:
        await server.close()
    assert (again.status, again.stored, again.duplicates) == ("ok", 0, BUNDLED_QUOTES)
    assert again.message and "not replaced" in again.message
    assert await store.pool.fetchval(
        "SELECT count(*) FROM raw_responses WHERE run_id = $1", again.run_id) == 0


async def test_rpw_source_from_a_path_relative_to_the_config(store: Store,
                                                              tmp_path: Path) -> None:
    (tmp_path / "rpw.csv.gz").write_bytes(bundled_rpw_path().read_bytes())
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[sources]]\nname = "rpw-{uuid.uuid4().hex[:8]}"\nkind = "rpw"\n'
                   'url = "rpw.csv.gz"\n')
    from corridors.config import load_config

    config = load_config(cfg)
    async with aiohttp.ClientSession() as session:
        report = await Collector(config, store, session).run(config.sources[0].name)
    assert report.status == "ok", report.line()
    assert_imported_or_known(report)
    async with aiohttp.ClientSession() as session:
        again = await Collector(config, store, session).run(config.sources[0].name)
    assert (again.status, again.stored) == ("ok", 0) and "not parsed again" in (again.message or "")
