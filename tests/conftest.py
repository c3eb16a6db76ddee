"""Shared fixtures: a real PostgreSQL database of its own for this test session.

``SENDCOST_TEST_DATABASE_URL`` (else ``DATABASE_URL``) names a server where we may create
databases; each session creates ``sendcost_test_<pid>`` there and drops it at the end, so
parallel runs never see each other's rows. With neither set, the tests start the embedded
PostgreSQL in a temporary folder, as a newcomer's machine would.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from corridors.store import Store, connect

#: The API's shared fixtures (``api``, ``live_api``, ``rpw_loaded``), once for the session.
#: Imported into each test module instead, a session-scoped fixture is a fixture of that
#: module: seven modules held seven apps alive to the session's end, each polling the store.
pytest_plugins = ["api_support"]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "corridors" / "data"
RPW_GZ = DATA / "rpw_quotes_2011Q1_2014Q2.csv.gz"


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL whose user may CREATE DATABASE."""
    url = os.environ.get("SENDCOST_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from corridors.db import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="sc-", dir="/tmp") as tmp, \
            embedded_postgres(Path(tmp)) as uri:
        yield uri


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    name = f"sendcost_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    if "host=" in server_url:  # embedded: the socket is in the query string
        parts = urlsplit(server_url)
        url = urlunsplit(parts._replace(path="/" + name))
    else:
        url = _with_db(server_url, name)
    yield url
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def store(database_url: str) -> AsyncIterator[Store]:
    s = await connect(database_url, min_size=1, max_size=8)
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """An empty database for one test (for migration tests)."""
    name = f"sendcost_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(server_url)
    yield urlunsplit(parts._replace(path="/" + name))
    admin = await asyncpg.connect(server_url)
    with contextlib.suppress(asyncpg.PostgresError):
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()
