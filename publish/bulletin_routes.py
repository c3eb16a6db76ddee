"""HTTP routes of the published bulletins.

GET /v1/bulletins                   the list of published bulletins (JSON), newest first
GET /v1/bulletins/{period}          redirects to the folder (so relative links resolve)
GET /v1/bulletins/{period}/         the bulletin (index.html)
GET /v1/bulletins/{period}/{path}   any file of it: bulletin.pdf, bulletin.md, charts/…,
                                    data/…, bulletin-{period}.zip

``setup_bulletin_routes(app)`` adds them; the files are read from
``<data_dir>/bulletins/`` as the scheduled job writes them.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from pathlib import Path

from aiohttp import web

from corridors import runtime
from publish import middleware
from publish.params import period_label
from publish.problems import not_found
from publish.responses import send

CONTENT_TYPES = {".md": "text/markdown; charset=utf-8", ".csv": "text/csv; charset=utf-8",
                 ".json": "application/json", ".svg": "image/svg+xml",
                 ".html": "text/html; charset=utf-8", ".pdf": "application/pdf",
                 ".png": "image/png", ".zip": "application/zip"}


def _root(request: web.Request) -> Path:
    return Path(request.app[runtime.CONFIG].data_dir) / "bulletins"


def _folder(request: web.Request) -> Path:
    # The pattern the OpenAPI document declares for it, as for every period parameter.
    period = period_label(request.match_info["period"])
    folder = _root(request) / period
    if not (folder / "index.html").is_file():
        raise not_found(f"no bulletin published for {period}")
    return folder


def published(root: Path) -> list[dict[str, object]]:
    """Every complete bulletin under ``root`` (hidden build folders excluded), newest first."""
    from publish.bulletin import describe

    items = []
    if root.is_dir():
        for folder in root.iterdir():
            if folder.name.startswith(".") or not (folder / "data" / "metadata.json").is_file():
                continue
            items.append(describe(folder))
    from metrics.progress import decimal_year

    return sorted(items, key=lambda i: (decimal_year(str(i["period"])), str(i["period"])),
                  reverse=True)


async def list_bulletins(request: web.Request) -> web.Response:
    base = "/v1/bulletins"
    items = []
    # Reading every bulletin's metadata is file I/O: off the event loop.
    for item in await asyncio.to_thread(published, _root(request)):
        p = item["period"]
        items.append({**item, "url": f"{base}/{p}/",
                      "files": {"html": f"{base}/{p}/", "pdf": f"{base}/{p}/bulletin.pdf",
                                "markdown": f"{base}/{p}/bulletin.md",
                                "metadata": f"{base}/{p}/data/metadata.json",
                                "zip": f"{base}/{p}/bulletin-{p}.zip"}})
    body = json.dumps({"bulletins": items}, ensure_ascii=False).encode()
    return send(request, body, "application/json", cache_control="no-cache")


async def bulletin_redirect(request: web.Request) -> web.StreamResponse:
    folder = _folder(request)
    raise web.HTTPMovedPermanently(f"/v1/bulletins/{folder.name}/")


async def bulletin_file(request: web.Request) -> web.StreamResponse:
    folder = _folder(request)
    rel = request.match_info.get("path") or "index.html"
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder.resolve()) or not target.is_file():
        raise not_found(f"no file {rel!r} in the bulletin of {folder.name}")
    ctype = CONTENT_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] \
        or "application/octet-stream"
    return web.FileResponse(target, headers={"Content-Type": ctype,
                                             "Cache-Control": "public, max-age=3600"})


def setup_bulletin_routes(app: web.Application) -> None:
    """The bulletin routes, guarded by the app's pipeline (``middleware.install`` first)."""
    middleware.get(app, "/v1/bulletins", list_bulletins, name="bulletins")
    middleware.get(app, "/v1/bulletins/{period}", bulletin_redirect, name="bulletin")
    middleware.get(app, "/v1/bulletins/{period}/{path:.*}", bulletin_file,
                   name="bulletin_file")
