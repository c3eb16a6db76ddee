"""``/static/{name}``: the page's few static files."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from publish.problems import not_found
from publish.responses import send

STATIC = Path(__file__).parent.parent / "static"


async def static_file(request: web.Request) -> web.StreamResponse:
    """The page's few static files (a stylesheet), read once and kept, with an ETag."""
    name = request.match_info["name"]
    files = request.app[STATIC_FILES]
    if name not in files:
        path = STATIC / name
        if not (path.is_file() and path.parent == STATIC and path.suffix in STATIC_TYPES):
            raise not_found(f"no static file {name[:80]!r}")
        files[name] = path.read_bytes()
    return send(request, files[name], STATIC_TYPES[Path(name).suffix],
                cache_control="public, max-age=3600")


STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
STATIC_FILES = web.AppKey("publish_static_files", dict)
