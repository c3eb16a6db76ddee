"""``/v1/archive/{id}``: an archived upstream response, as collected — its provenance, and
``/v1/archive/{id}/body`` its bytes — so that a reader can check what a figure rests on (an
alert's entry links the responses behind it; docs/alerts.md).

What is shown is what was stored: the URL as archived (secrets from the environment were
never written into it), never the request's or the response's headers. A body that retention
dropped (``[storage] raw_retention_days``) is gone: its provenance, hash and size stay.
"""

from __future__ import annotations

from aiohttp import web

from corridors import runtime
from publish.api.conventions import JSON
from publish.contract import encode
from publish.contract_ops import ArchivedResponse
from publish.problems import bad_parameter, not_found
from publish.responses import send

#: Archived bodies served as their own type; any other (an HTML captcha page, a binary) is
#: sent as bytes to download, never rendered on this site's origin.
SHOWN_AS_IS = frozenset({"application/json", "application/xml", "text/xml", "text/csv",
                         "text/plain", "application/atom+xml"})
#: An archived response never changes; only retention may drop its body.
IMMUTABLE = "public, max-age=86400"
_MAX_ID = 2**63 - 1

_COLUMNS = ("id, source, url, fetched_at, status, content_type, content_hash, body_size, "
            "body_dropped_at, licence, run_id")


def _id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit() or int(text) > _MAX_ID:
        raise bad_parameter("id", f"expected the archived response's number, got {text!r}")
    return int(text)


def body_url(raw_id: int) -> str:
    return f"/v1/archive/{raw_id}/body"


async def archived_response(request: web.Request) -> web.StreamResponse:
    raw_id = _id(request)
    row = await runtime.read_store(request.app).pool.fetchrow(
        f"SELECT {_COLUMNS}, payload IS NOT NULL AS kept FROM raw_responses WHERE id = $1",
        raw_id)
    if row is None:
        raise not_found(f"no archived response {raw_id}")
    doc = ArchivedResponse(
        id=row["id"], source=row["source"], url=row["url"],
        fetched_at=row["fetched_at"].isoformat(), status=row["status"],
        content_type=row["content_type"], content_hash=row["content_hash"],
        body_size=row["body_size"],
        body_dropped_at=(row["body_dropped_at"].isoformat()
                         if row["body_dropped_at"] else None),
        body_url=body_url(raw_id) if row["kept"] else None,
        licence=row["licence"], run_id=row["run_id"],
    )
    return send(request, encode(doc), JSON, cache_control=IMMUTABLE)


async def archived_body(request: web.Request) -> web.StreamResponse:
    raw_id = _id(request)
    row = await runtime.read_store(request.app).pool.fetchrow(
        "SELECT content_type, content_hash, payload, body_dropped_at FROM raw_responses "
        "WHERE id = $1", raw_id)
    if row is None:
        raise not_found(f"no archived response {raw_id}")
    if row["payload"] is None:
        why = (f"its body was dropped by retention on {row['body_dropped_at']:%Y-%m-%d}"
               if row["body_dropped_at"] else "it was archived without a body")
        raise not_found(f"archived response {raw_id} has no body: {why}")
    media = (row["content_type"] or "").split(";")[0].strip().lower()
    headers = {"ETag": f'"{row["content_hash"]}"', "Cache-Control": IMMUTABLE}
    if media in SHOWN_AS_IS:
        content_type = row["content_type"]
    else:
        content_type = "application/octet-stream"
        headers["Content-Disposition"] = f'attachment; filename="archive-{raw_id}"'
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=bytes(row["payload"]), headers={**headers,
                                                             "Content-Type": content_type})
