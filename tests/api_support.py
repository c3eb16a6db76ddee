"""Fixtures shared by the API and page tests: the real RPW data in the session's store, the
app in-process (aiohttp TestClient) and the app on a real port in a thread of its own (for
the property-based run and the browser)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.rpw_import import import_rpw
from corridors.config import parse_config
from corridors.db import DatabaseTarget
from corridors.reading.rpw import bundled_rpw_path
from corridors.store import Store
from sendcost.wiring import create_app


def make_app(database_url: str, *, rate_limit: int = 0,
             data_dir: Path | None = None) -> web.Application:
    config = parse_config({"service": {"import_rpw_on_empty": False},
                           "api": {"rate_limit_per_minute": rate_limit}})
    if data_dir is not None:
        # Set on the Config itself: $SENDCOST_DATA_DIR, which a developer may well have set
        # (newcomer-test does), wins over [service] data_dir.
        config = dataclasses.replace(config, data_dir=data_dir)
    return create_app(config, DatabaseTarget(database_url, embedded=False))


@pytest.fixture(scope="session")
async def rpw_loaded(store: Store) -> Store:
    """The bundled RPW data in the shared store (idempotent: other modules may load it too)."""
    await import_rpw(store, bundled_rpw_path())
    return store


@pytest.fixture(scope="session")
async def api(rpw_loaded: Store, database_url: str) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(make_app(database_url)))
    await client.start_server()
    try:
        yield client
    finally:
        # Bounded: a connection some test left open to this server keeps asyncio's
        # Server.wait_closed (Python 3.11) waiting for it, and with it the end of the whole
        # session (seen on the embedded database). The database is dropped WITH (FORCE)
        # after this, which ends whatever the app still holds.
        # Not wait_for: cancelling the close waits on the same stuck wait_closed.
        closing = asyncio.ensure_future(client.close())
        done, _ = await asyncio.wait({closing}, timeout=30)
        if not done:
            logging.getLogger(__name__).warning(
                "the shared API test server did not close within 30 s (a connection to it "
                "was left open); left behind")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app on 127.0.0.1:<port>, served by its own event loop in a thread."""

    def __init__(self, database_url: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._database_url = database_url
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-api", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(make_app(self._database_url))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> LiveServer:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="session")
def live_api(rpw_loaded: Store, database_url: str) -> Iterator[str]:
    server = LiveServer(database_url).start()
    yield server.url
    server.stop()
