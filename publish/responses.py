"""GET responses of the public API: one ETag and Cache-Control rule for every endpoint."""

from __future__ import annotations

import hashlib

from aiohttp import web

#: Data changes at most with a new collection or import: a minute of caching is safe.
CACHE_CONTROL = "public, max-age=60"


def etag_of(body: bytes) -> str:
    """A strong ETag: 96 bits of the body's SHA-256 (with the CPU's SHA instructions, which
    OpenSSL uses, about twice as fast as BLAKE2b's portable code on a 12 KB answer)."""
    return '"' + hashlib.sha256(body).hexdigest()[:24] + '"'


def send(request: web.Request, body: bytes, content_type: str, *, etag: str | None = None,
         headers: dict[str, str] | None = None, cache_control: str = CACHE_CONTROL,
         status: int = 200) -> web.Response:
    """A GET response with ETag and Cache-Control; 304 when the client has this version.
    Any other status than 200 is an error, which is never cached (docs/api.md, "Caching"):
    no ETag, ``no-store``."""
    if status != 200:
        return web.Response(status=status, body=body, content_type=content_type,
                            charset="utf-8", headers={"Cache-Control": "no-store",
                                                      **(headers or {})})
    tag = etag or etag_of(body)
    out = {"ETag": tag, "Cache-Control": cache_control, "Vary": "Accept"}
    if headers:
        out.update(headers)
    match = request.headers.get("If-None-Match")
    if match and (match.strip() == "*" or tag in (t.strip().removeprefix("W/")
                                                   for t in match.split(","))):
        return web.Response(status=304, headers=out)
    # The Content-Type given whole, not as content_type and charset for aiohttp to join.
    out["Content-Type"] = content_type + "; charset=utf-8"
    return web.Response(body=body, headers=out)
