"""Fetch the World Bank's current RPW workbook (``sendcost import rpw --download``).

The workbook (about 50 MB) comes from the World Bank's data catalog, at the URL of
``[import] rpw_url`` in config.toml. The download goes to ``<name>.part`` beside the final
file and is renamed only when complete (and, with ``[import] rpw_sha256``, only when its
SHA-256 is the expected one), so a file of that name is always whole. An interrupted
download is resumed with an HTTP ``Range`` request; a server that ignores it sends the
whole file again, which replaces the part.

The World Bank's file servers may refuse a client that is not a browser (403, a challenge
page in HTML instead of the spreadsheet): that is a ``DownloadRefused`` whose message says
how to download the file by hand and import it by path. A download that fails on the way
(offline, a dropped line) says the same, keeping a part only when it holds bytes to resume
from.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from corridors.errors import DownloadError, DownloadRefused

log = logging.getLogger(__name__)

#: Where a person finds the workbook, for a download by hand.
CATALOG_PAGE = "https://remittanceprices.worldbank.org/data-download"
_CHUNK = 1 << 16
_XLSX_MAGIC = b"PK\x03\x04"


def file_name(url: str) -> str:
    name = unquote(Path(urlsplit(url).path).name)
    return name or "rpw_dataset.xlsx"


def _refused(url: str, why: str) -> DownloadRefused:
    return DownloadRefused(
        f"{url}: the site refused the download ({why}). It may not serve clients that are "
        f"not a browser: download the workbook by hand from {CATALOG_PAGE}, then run "
        "`sendcost import rpw PATH`")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


async def download_rpw(url: str, folder: Path, *, expected_sha256: str = "",
                       progress: Callable[[int, int], None] | None = None,
                       user_agent: str = "sendcost", timeout_seconds: float = 60.0) -> Path:
    """Download ``url`` into ``folder`` (resuming a ``.part`` left there) and return the
    complete file's path. Raises DownloadRefused, or DownloadError naming what failed."""
    final, part, have = await asyncio.to_thread(_prepare, folder, url)
    headers = {"User-Agent": user_agent}
    if have:
        headers["Range"] = f"bytes={have}-"
    # No total limit: 50 MB on a slow line may take long; a stalled read may not.
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_seconds,
                                    sock_read=timeout_seconds)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, headers=headers) as resp:
            total = await _receive(resp, url, part, have, progress)
    except aiohttp.ClientError as exc:
        raise _failed(url, part, f"download interrupted ({exc.__class__.__name__}: {exc})"
                      ) from None
    except TimeoutError:
        raise _failed(url, part, f"no data for {timeout_seconds:g} s") from None
    return await asyncio.to_thread(_finish, url, part, final, total, expected_sha256)


def _failed(url: str, part: Path, why: str) -> DownloadError:
    """A download that failed on the way (offline, a dropped line, a stall): what was kept
    to resume from (an empty part is removed: there is nothing to resume), and how to get
    the workbook by hand and import it by path."""
    kept = _size(part)
    if kept:
        where = f"{kept:,} bytes kept in {part}, run again to resume"
    else:
        part.unlink(missing_ok=True)
        where = "nothing was kept"
    return DownloadError(
        f"{url}: {why}; {where}. Without a connection to it, download the workbook by hand "
        f"from {CATALOG_PAGE} (on any machine that has one), then run "
        "`sendcost import rpw PATH`")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _prepare(folder: Path, url: str) -> tuple[Path, Path, int]:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / file_name(url)
    part = final.with_name(final.name + ".part")
    return final, part, _size(part)


def _finish(url: str, part: Path, final: Path, total: int | None, expected_sha256: str
            ) -> Path:
    """Check the complete part (size, an xlsx, its SHA-256) and give it its name."""
    size = _size(part)
    if total is not None and size != total:
        raise DownloadError(f"{url}: the server closed after {size:,} of {total:,} bytes; "
                            f"kept in {part}, run again to resume")
    with part.open("rb") as fh:
        if fh.read(4) != _XLSX_MAGIC:
            part.unlink()
            raise _refused(url, "what came is not an xlsx workbook")
    digest = _sha256(part)
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink()
        raise DownloadError(f"{url}: SHA-256 {digest} is not the expected {expected_sha256} "
                            "([import] rpw_sha256); the download was deleted")
    part.replace(final)
    log.info("downloaded %s to %s (%d bytes, SHA-256 %s)", url, final, size, digest)
    return final


async def _receive(resp: aiohttp.ClientResponse, url: str, part: Path, have: int,
                   progress: Callable[[int, int], None] | None) -> int | None:
    """Write the response body to ``part``; the whole file's size when the server said."""
    if resp.status in (401, 403, 407, 429, 451):
        raise _refused(url, f"HTTP {resp.status} {resp.reason}")
    if resp.status == 416 and have:
        # The part is already whole (a run that stopped before the rename).
        return have
    if resp.status not in (200, 206):
        raise DownloadError(f"{url}: HTTP {resp.status} {resp.reason}")
    if resp.content_type.startswith("text/html"):
        raise _refused(url, "an HTML page came instead of the workbook")
    length = resp.content_length
    if resp.status == 206:
        start = _range_start(resp.headers.get("Content-Range", ""))
        if start != have:
            raise DownloadError(f"{url}: the server resumed at byte {start}, not {have}")
        mode, done = "ab", have
    else:  # the whole file again: the part is replaced
        mode, done = "wb", 0
    total = done + length if length is not None else None
    with part.open(mode) as fh:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            fh.write(chunk)
            done += len(chunk)
            if progress is not None and total:
                progress(done, total)
    return total


def _range_start(content_range: str) -> int | None:
    # "bytes 1000-4999/5000"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None
