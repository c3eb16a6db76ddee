"""A TCP proxy in front of a PostgreSQL server, to cut it off for a while: a real outage.

The tests' PostgreSQL is shared (other sessions use it): it is never stopped. A collector
reaches it through this proxy instead, and ``cut()`` makes the database unreachable for that
collector alone: every open connection is reset and new ones are refused until
``restore()``. The upstream is a TCP address or, for the embedded server, its Unix socket.
Used by tests/test_collect_durable.py and bench/faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit, urlunsplit


class PgProxy:
    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        query = parse_qs(parts.query)
        self.url = server_url
        self.socket_dir = query["host"][0] if "host" in query else None
        self.host = parts.hostname or "127.0.0.1"
        self.upstream_port = int(query.get("port", [parts.port or 5432])[0])
        self.port = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()
        #: Connections the proxy accepted (a cut counts the ones it reset).
        self.accepted = 0

    def proxied(self, url: str) -> str:
        """``url`` (a database on the proxied server) as reached through the proxy."""
        parts = urlsplit(url)
        user = parts.username or "postgres"
        auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
        return urlunsplit(("postgresql", f"{auth}127.0.0.1:{self.port}", parts.path, "", ""))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            if self.socket_dir is not None:
                up_r, up_w = await asyncio.open_unix_connection(
                    f"{self.socket_dir}/.s.PGSQL.{self.upstream_port}")
            else:
                up_r, up_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.close()
            return
        self.pipes.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self.pipes.difference_update((writer, up_w))

    async def cut(self) -> None:
        """The database goes away: connections reset, new ones refused."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.pipes):
            transport = w.transport
            with contextlib.suppress(OSError, AttributeError):
                transport.abort()
        self.pipes.clear()

    async def restore(self) -> None:
        """The database is back, on the same port."""
        if self.server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
