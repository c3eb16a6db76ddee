"""The headers of a hardened public site (issue 16, item 3): on the page, an API answer, an
error, a static file, a bulletin's files, a 304, a redirect and a request no route takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app
from multidict import CIMultiDictProxy

from corridors.store import Store
from publish import middleware

STRICT_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def hardened(headers: CIMultiDictProxy[str], csp: str = STRICT_CSP) -> None:
    assert headers["Content-Security-Policy"] == csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path, status, content_type", [
    ("/", 200, "text/html"),
    ("/?from=USA&to=MEX&amount=200", 200, "text/html"),
    ("/v1/indicators?period=2014Q2", 200, "application/json"),
    ("/v1/indicators.csv?period=2014Q2", 200, "text/csv"),
    ("/v1/openapi.json", 200, "application/json"),
    ("/static/style.css", 200, "text/css"),
    ("/v1/indicators?period=1999Q1", 404, "application/problem+json"),
    ("/v1/compare?from=USA", 400, "application/problem+json"),
    ("/static/nothing.css", 404, "application/problem+json"),
    ("/no/such/resource", 404, "application/problem+json"),
])
async def test_every_kind_of_answer_is_hardened(api: TestClient,
                                                path: str, status: int,
                                                content_type: str) -> None:
    resp = await api.get(path)
    await resp.read()
    assert resp.status == status, path
    assert resp.content_type == content_type
    hardened(resp.headers)


async def test_a_304_and_a_method_not_allowed_are_hardened(api: TestClient
                                                           ) -> None:
    first = await api.get("/static/style.css")
    again = await api.get("/static/style.css",
                          headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    hardened(again.headers)
    refused = await api.delete("/v1/indicators")
    assert refused.status == 405
    hardened(refused.headers)


async def test_the_page_loads_nothing_its_policy_forbids(api: TestClient
                                                        ) -> None:
    """The policy is strict and the page still works under it: no script, no inline style,
    no resource from another origin."""
    html = await (await api.get("/?from=USA&to=MEX&amount=200")).text()
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert "http://" not in html.replace('xmlns="http://', "") \
        and "https://" not in html.split("<footer", 1)[0]


@pytest.fixture
async def bulletin_app(store: Store, database_url: str,
                       tmp_path: Path) -> AsyncIterator[TestClient]:
    folder = tmp_path / "bulletins" / "2014Q2"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<style>p{}</style><p>bulletin</p>", encoding="utf-8")
    (folder / "bulletin.md").write_text("# Bulletin 2014Q2\n", encoding="utf-8")
    async with TestClient(TestServer(make_app(database_url, data_dir=tmp_path))) as client:
        yield client


async def test_a_bulletin_is_hardened_with_its_inline_stylesheet_allowed(
        bulletin_app: TestClient) -> None:
    html = await bulletin_app.get("/v1/bulletins/2014Q2/index.html")
    assert html.status == 200
    hardened(html.headers, STRICT_CSP.replace("style-src 'self'",
                                              "style-src 'self' 'unsafe-inline'"))
    md = await bulletin_app.get("/v1/bulletins/2014Q2/bulletin.md")
    assert md.status == 200
    hardened(md.headers)
    moved = await bulletin_app.get("/v1/bulletins/2014Q2", allow_redirects=False)
    assert moved.status in (301, 302, 307, 308)
    hardened(moved.headers)


async def test_a_route_added_the_ordinary_way_gets_the_whole_pipeline(
        rpw_loaded: Store, database_url: str) -> None:
    """The cross-cutting rules are aiohttp middlewares: a route added after create_app with
    a plain ``app.router.add_get`` gets the security headers, CORS, problem+json errors, the
    limits and the metrics without asking for them."""
    app = make_app(database_url, rate_limit=3)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a newly added route")

    async def refuses(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app.router.add_get("/extra/hello", hello)
    app.router.add_get("/extra/broken", broken)
    app.router.add_get("/extra/refuses", refuses)
    async with TestClient(TestServer(app)) as client:
        ok = await client.get("/extra/hello")
        assert ok.status == 200 and await ok.text() == "hello"
        hardened(ok.headers)
        assert ok.headers["Access-Control-Allow-Origin"] == "*"

        for path, status, detail in [
            ("/extra/broken", 500, "an unexpected error occurred; it has been logged"),
            ("/extra/refuses", 404, "no resource at /extra/refuses; see /v1/openapi.json"),
        ]:
            resp = await client.get(path)
            assert resp.status == status, path
            assert resp.content_type == "application/problem+json"
            hardened(resp.headers)
            body = await resp.json()
            assert body["status"] == status and body["detail"] == detail
            assert body["instance"] == path

        # The rate limit (3 a minute here) counts the new route too.
        limited = await client.get("/extra/hello")
        assert limited.status == 429
        assert limited.content_type == "application/problem+json"
        hardened(limited.headers)

        metrics = await (await client.get("/metrics")).text()
        for status in (200, 500, 404, 429):
            route = {200: "/extra/hello", 500: "/extra/broken", 404: "/extra/refuses",
                     429: "/extra/hello"}[status]
            assert (f'sendcost_http_requests_total{{method="GET",route="{route}",'
                    f'status="{status}"}}') in metrics


def test_an_app_without_the_middlewares_is_refused_at_setup() -> None:
    """The middlewares' state is installed only on an app that has them: a hand-made app
    without them would answer without the pipeline, so it is refused at once."""
    with pytest.raises(ValueError, match=r"middlewares=publish\.middleware\.MIDDLEWARES"):
        middleware.install(web.Application(), rate_limit_per_minute=0)


async def test_a_connect_request_gets_a_hardened_problem(api: TestClient) -> None:
    """A CONNECT names a host, not a path, so no route takes it; the middlewares still do."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", api.server.port)
    writer.write(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n"
                 b"Connection: close\r\n\r\n")
    await writer.drain()
    head = (await reader.read(4096)).decode()
    writer.close()
    assert head.startswith("HTTP/1.1 404 ")
    assert "Content-Type: application/problem+json" in head
    assert f"Content-Security-Policy: {STRICT_CSP}" in head
