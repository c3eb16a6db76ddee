"""How every answer of the API goes out: the envelope, content negotiation and the CSV
twin, the answers kept per snapshot, the snapshot a request reads."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from corridors.types import EMULATED_WARNING
from metrics import METHODOLOGY_VERSION
from publish.contract import Country, Source
from publish.data import DATA, LICENCE, Cached, Snapshot, country_ref, sources_of
from publish.problems import Problem, bad_parameter, not_found
from publish.responses import etag_of, send

JSON = "application/json"
CSV = "text/csv"
RESPONSE_CACHE_MAX = 8192

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def header(period: str | None, sources: Iterable[str], *,
           emulated: bool = False) -> dict[str, Any]:
    """The keys every JSON answer starts with, as the fields of a response model's
    ``contract.Envelope``: ``Model(**header(...), ...)`` (every answer with an envelope is
    one: ``publish.contract`` and ``publish.contract_ops``).
    ``emulated``: the answer was asked to include emulated data (``?include=emulated``), and
    says so first: ``warning`` (left unset, hence absent, otherwise)."""
    out: dict[str, Any] = {"warning": EMULATED_WARNING, "includes": ["emulated"]} \
        if emulated else {}
    out.update(period=period, methodology_version=METHODOLOGY_VERSION,
               sources=[Source(**s) for s in sources_of(list(sources))], licence=LICENCE)
    return out


@functools.lru_cache(maxsize=512)
def country(alpha3: str) -> Country:
    """A country as every answer shows it (``publish.data.country_ref``)."""
    return Country(**country_ref(alpha3))


#: The ``include`` parameter every data endpoint takes: ``emulated`` adds the sandbox's
#: invented quotes, left out by default.
INCLUDE = "include"
#: The warning as a header of a CSV twin (header values are ASCII).
EMULATED_HEADER_VALUE = "emulated data - not real prices"


def include_emulated(request: web.Request) -> bool:
    """True when the request asks for emulated data (``?include=emulated``)."""
    if INCLUDE not in request.query_string:  # decoded: "%69nclude" reads "include"
        return False  # without parsing the query: an answer from memory needs none
    value = request.query.get(INCLUDE)
    if value is None:
        return False
    if value == "":  # as every parameter (publish.params.Params.raw)
        raise bad_parameter(INCLUDE, "include is empty: give it a value or leave it out")
    if value != "emulated":
        raise bad_parameter(INCLUDE, f"include takes one value, 'emulated' (the sandbox's "
                                     f"invented quotes, left out by default), not {value!r}")
    return True


def _quality(ranges: list[tuple[str, str, float]], kind: str, sub: str) -> float:
    """The q of ``kind/sub`` under the most specific media range that matches it (0: none
    does, so it is not acceptable)."""
    q, specificity = 0.0, -1
    for r_kind, r_sub, r_q in ranges:
        if r_kind == kind and r_sub == sub:
            s = 2
        elif r_kind == kind and r_sub == "*":
            s = 1
        elif r_kind == "*" and r_sub == "*":
            s = 0
        else:
            continue
        if s > specificity or (s == specificity and r_q > q):
            q, specificity = r_q, s
    return q


_QVALUE = re.compile(r"(0(\.[0-9]{0,3})?|1(\.0{0,3})?)")


@functools.lru_cache(maxsize=256)
def negotiate(accept: str) -> str:
    """``json`` or ``csv`` for an ``Accept`` header (RFC 9110 §12.5.1): each type gets the q
    of the most specific range that matches it (``text/csv``, then ``text/*``, then
    ``*/*``); q=0 or no matching range means not acceptable. CSV when it is acceptable and
    preferred over JSON; JSON otherwise: on a tie, and when neither is acceptable (the
    default, rather than a 406). A range with a malformed q is ignored."""
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        media, *params = item.split(";")
        kind, _, sub = media.strip().lower().partition("/")
        if not kind or not sub:
            continue
        q: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else None
                break
        if q is not None:
            ranges.append((kind, sub.strip(), q))
    csv_q = _quality(ranges, "text", "csv")
    return "csv" if csv_q > 0 and csv_q > _quality(ranges, "application", "json") else "json"


def wants_csv(request: web.Request) -> bool:
    """The ``.csv`` twin's path, or an ``Accept`` header that prefers CSV to JSON."""
    if request.path.endswith(".csv"):
        return True
    accept = request.headers.get("Accept")
    return bool(accept) and negotiate(accept) == "csv"


def _sf_string(text: object) -> str:
    """An RFC 8941 string: quoted, backslash and quote escaped, ASCII only."""
    ascii_text = str(text).encode("ascii", "replace").decode()
    return '"' + ascii_text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def csv_headers(period: str | None, sources: Iterable[str], *,
                emulated: bool = False) -> dict[str, str]:
    """The envelope of a JSON answer, as headers of its CSV twin (whose body has no room for
    it): data period, methodology version, sources and licence, and the warning when it
    includes emulated data. No period, no header (the JSON twin says null)."""
    out = {"Sendcost-Methodology-Version": METHODOLOGY_VERSION,
           "Sendcost-Sources": ", ".join(
               f'{s["name"]};title={_sf_string(s["title"])}'
               + (f";url={_sf_string(s['url'])}" if s["url"] else "")
               + (f";licence={_sf_string(s['licence'])}" if s["licence"] else "")
               for s in sources_of(list(sources))),
           "Sendcost-Licence": LICENCE}
    if period is not None:
        out["Sendcost-Period"] = period
    if emulated:
        out["Sendcost-Warning"] = EMULATED_HEADER_VALUE
    return out


def marked_emulated(body: bytes) -> bytes:
    """A CSV twin holding emulated data, with a last column ``warning`` saying so on every
    row: a header is lost when the file is saved, and a file of invented prices must say
    what it is wherever it goes (as the bulletin's CSV files do)."""
    rows = list(csv.reader(io.StringIO(body.decode())))
    if not rows:
        return body
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*rows[0], "warning"])
    writer.writerows([*r, EMULATED_WARNING] for r in rows[1:])
    return buf.getvalue().encode()


def send_csv(request: web.Request, body: bytes, meta: dict[str, str], *, filename: str,
             etag: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """Every CSV twin goes out here: with ``csv_headers`` and a file name. One holding
    emulated data (``Sendcost-Warning``) says so in its rows and in its file name."""
    if "Sendcost-Warning" in meta:
        body, filename, etag = marked_emulated(body), f"{filename}-EMULATED", None
    return send(request, body, CSV, etag=etag,
                headers={**(headers or {}), **meta,
                         "Content-Disposition": f'inline; filename="{filename}.csv"'})


def next_link(request: web.Request, cursor: str | None) -> dict[str, str]:
    if cursor is None:
        return {}
    url = request.rel_url.update_query({"cursor": cursor})
    return {"Link": f'<{url}>; rel="next"'}


async def snapshot_of(request: web.Request) -> Snapshot:
    return await request.app[DATA].snapshot(include_emulated=include_emulated(request))


#: (Snapshot version, with emulated quotes) → the work that gives its services their
#: receive currency.
RECEIVE_UNITS = web.AppKey("publish_receive_units", dict)


def _annotate_receive_units(snap: Snapshot) -> None:
    # The index gives each corridor's services their receive units as it makes them.
    snap.index.prepare()


async def receive_units(app: web.Application, snap: Snapshot) -> None:
    """Give the snapshot's services their receive currency (``publish.receive``) before any
    of them is shown: once per snapshot, in a worker thread, shared by concurrent requests."""
    tasks = app[RECEIVE_UNITS]
    # A version has two snapshots: without emulated quotes, and (when asked) with them.
    key = (snap.version, snap.include_emulated)
    task = tasks.get(key)
    if task is None:
        for old in [k for k in tasks if k[0] != snap.version]:
            del tasks[old]  # an older snapshot's entry is not needed again
        task = tasks[key] = asyncio.ensure_future(
            asyncio.to_thread(_annotate_receive_units, snap))
    try:
        await asyncio.shield(task)
    except Exception:
        tasks.pop(key, None)  # the next request tries again
        raise


def cached(snap: Snapshot, key: tuple[Any, ...]) -> Cached | None:
    return snap.responses.get(key)


def remember(snap: Snapshot, key: tuple[Any, ...], body: bytes,
              headers: dict[str, str] | None = None) -> Cached:
    """Keep an answer: its body, ETag and the headers it goes out with (a CSV twin's
    ``csv_headers``), so that a cached answer is sent as it was first sent."""
    return remember_entry(snap, key, (body, etag_of(body), headers or {}))

def remember_entry(snap: Snapshot, key: tuple[Any, ...], entry: Cached) -> Cached:
    """Keep an answer. Past the cache's bound the oldest answer kept leaves, one for each
    new one: emptied whole when full, the cache freed some 100 MB of answers at once, in the
    request that found it full (a p99 of 90 ms under amounts seldom asked)."""
    while len(snap.responses) >= RESPONSE_CACHE_MAX:
        snap.responses.popitem(last=False)
    snap.responses[key] = entry
    return entry


def no_costed_services(snap: Snapshot, label: str, amount_usd: int) -> Problem:
    """404 for a period without services at the price point, naming the periods that have
    some there (not every period holding quotes: one may hold quotes at the other price point
    only, or quotes that give no cost, as a post's published tariff: a fee, no rate)."""
    priced = [p for p in snap.periods if (p, amount_usd) in snap.services]
    why = (": the quotes it holds are at another price point or give no cost"
           if label in snap.periods else "")
    return not_found(f"no services at USD {amount_usd} in {label}{why}; periods with "
                     f"services at USD {amount_usd}: {', '.join(priced) or 'none'}")
