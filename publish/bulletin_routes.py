"""HTTP routes of the published bulletins.

GET /v1/bulletins                   the list of published bulletins (JSON), newest first
GET /v1/bulletins/{period}          redirects to the folder (so relative links resolve)
GET /v1/bulletins/{period}/         the bulletin (index.html)
GET /v1/bulletins/{period}/{path}   any file of it: bulletin.pdf, bulletin.md, charts/…,
                                    data/…, bulletin-{period}.zip

``setup_bulletin_routes(app)`` adds them; the files are read from
``<data_dir>/bulletins/`` as the scheduled job writes them. The list holds exactly the
bulletins the file routes serve. A file path with a control character is 400 (no file has
one); a failed precondition (412) or an unsatisfiable range (416) is a problem+json like every
other error, checked here before aiohttp's file response, which would answer them empty.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from corridors import runtime
from corridors.errors import BadPeriod
from corridors.periods import parse_period
from publish import middleware
from publish.contract import encode
from publish.contract_ops import BulletinFiles, BulletinItem, Bulletins
from publish.params import period_label
from publish.problems import Problem, bad_parameter, not_found
from publish.responses import send

log = logging.getLogger(__name__)

#: C0 controls and DEL: no file of a bulletin has one in its name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

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


def _served_period(folder: Path) -> str | None:
    """The period a folder is served as by ``bulletin_file``: its name, when that is a period
    label as the routes spell it and the folder has its index.html; else None."""
    try:
        label = str(parse_period(folder.name))
    except BadPeriod:
        return None
    if label != folder.name or not (folder / "index.html").is_file():
        return None
    return label


def published(root: Path) -> list[dict[str, Any]]:
    """Every bulletin under ``root`` that the file routes serve, newest first: a folder named
    as its period, with its index.html and a readable metadata.json naming that period
    (hidden build folders, copies cut short and strays are left out)."""
    from publish.bulletin import describe

    items = []
    if root.is_dir():
        for folder in root.iterdir():
            period = _served_period(folder)
            if period is None or not (folder / "data" / "metadata.json").is_file():
                continue
            try:
                item = describe(folder)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.debug("bulletin folder %s left out of the list: %s", folder.name, exc)
                continue
            if item["period"] == period:
                items.append(item)
    from metrics.progress import decimal_year

    return sorted(items, key=lambda i: (decimal_year(str(i["period"])), str(i["period"])),
                  reverse=True)


async def list_bulletins(request: web.Request) -> web.Response:
    base = "/v1/bulletins"
    items = []
    # Reading every bulletin's metadata is file I/O: off the event loop.
    for item in await asyncio.to_thread(published, _root(request)):
        p = item["period"]
        items.append(BulletinItem(
            **item, url=f"{base}/{p}/",
            files=BulletinFiles(html=f"{base}/{p}/", pdf=f"{base}/{p}/bulletin.pdf",
                                markdown=f"{base}/{p}/bulletin.md",
                                metadata=f"{base}/{p}/data/metadata.json",
                                zip=f"{base}/{p}/bulletin-{p}.zip")))
    body = encode(Bulletins(bulletins=items))
    return send(request, body, "application/json", cache_control="no-cache")


async def bulletin_redirect(request: web.Request) -> web.StreamResponse:
    folder = _folder(request)
    raise web.HTTPMovedPermanently(f"/v1/bulletins/{folder.name}/")


def _file_etag(st: os.stat_result) -> str:
    """The ETag aiohttp's ``FileResponse`` gives a file (its value, unquoted): the checks
    below must compare against what the response will carry (tested). A bulletin has no
    precompressed ``.gz``/``.br`` twins, which aiohttp would serve with an ETag of their own."""
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


def check_preconditions(request: web.Request, st: os.stat_result) -> None:
    """412 and 416 as aiohttp's ``FileResponse`` decides them (RFC 9110 §13.2.2: If-Match,
    else If-Unmodified-Since; then Range, unless If-Range says the copy is stale), raised as
    problems: the file response itself would send them with an empty body, the file's
    content type and its one-hour caching."""
    etag = _file_etag(st)
    if_match = request.if_match
    if if_match is not None:
        if not any(t.value == "*" or (t.value == etag and not t.is_weak) for t in if_match):
            raise Problem(412, "If-Match: the file's current ETag is none of those given")
    elif (since := request.if_unmodified_since) is not None \
            and st.st_mtime > since.timestamp():
        raise Problem(412, "If-Unmodified-Since: the file was modified after that date")
    if_range = request.if_range
    if "Range" not in request.headers or (if_range is not None
                                          and st.st_mtime > if_range.timestamp()):
        return
    unsatisfiable = Problem(416, f"Range: not satisfiable for a file of {st.st_size} bytes",
                            headers={"Content-Range": f"bytes */{st.st_size}"})
    try:
        rng = request.http_range
    except ValueError:
        raise unsatisfiable from None
    start = rng.start
    if start is not None and not (start < 0 and rng.stop is None) and start >= st.st_size:
        raise unsatisfiable


async def bulletin_file(request: web.Request) -> web.StreamResponse:
    folder = _folder(request)
    rel = request.match_info.get("path") or "index.html"
    if _CONTROL.search(rel):
        raise bad_parameter("path", "path holds a control character; no file of a bulletin "
                                    f"has one: {rel[:80]!r}")
    missing = not_found(f"no file {rel[:80]!r} in the bulletin of {folder.name}")
    try:
        target = (folder / rel).resolve()
        if not target.is_relative_to(folder.resolve()) or not target.is_file():
            raise missing
        st = target.stat()
    except (OSError, ValueError):  # a name too long for the file system, and the like
        raise missing from None
    check_preconditions(request, st)
    ctype = CONTENT_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] \
        or "application/octet-stream"
    headers = {"Content-Type": ctype, "Cache-Control": "public, max-age=3600"}
    if ctype.startswith(("text/html", "image/svg+xml")):
        headers["Content-Security-Policy"] = BULLETIN_CSP
    return web.FileResponse(target, headers=headers)


#: A bulletin's HTML carries its stylesheet inline (one self-contained file to archive or
#: mail), and matplotlib's SVG charts a <style> element: the site's policy, with inline
#: styles allowed; still no script.
BULLETIN_CSP = middleware.CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'")


def setup_bulletin_routes(app: web.Application) -> None:
    """The bulletin routes (the app's middlewares, ``publish.middleware.MIDDLEWARES``, give
    them their errors, headers and limits as every other route)."""
    app.router.add_get("/v1/bulletins", list_bulletins, name="bulletins")
    app.router.add_get("/v1/bulletins/{period}", bulletin_redirect, name="bulletin")
    # (?s): a file path with an encoded line break reaches the handler (400), as any other.
    app.router.add_get("/v1/bulletins/{period}/{path:(?s:.*)}", bulletin_file,
                       name="bulletin_file")
