"""One collection run of one source: fetch, archive, parse, validate, store — and record it.

The order is the point: every upstream response is archived (``raw_responses``) before any
parser sees it, so a parser fix is ``sendcost collect --reparse RUN_ID``, never a re-fetch.
Quotes are validated against the reference rates known at the start of the run; implausible
ones go to ``quarantined_quotes`` with the reason. A batch — quotes and quarantine records —
is written atomically, through one writer per collector that commits the batches of
concurrent runs together (group commit: one transaction and one COPY for all of them).
Quotes are committed as they are parsed, in small batches (``store_batch`` quotes, or
whatever was held ``FLUSH_SECONDS``), not at a run's end. A batch the database refuses
mid-run is kept in memory and tried again with the next; a run whose last write fails is
marked ``failed``.

No valid quote is lost to an interruption:

* a response is journalled on arrival (``collector.spool.Journal``), so a process killed
  before its archive batch went out does not take it along;
* a response the database cannot archive goes to the local spool (``collector.spool``)
  instead, and is not parsed until it is archived;
* a run that is cancelled (SIGTERM, Ctrl-C) first writes what it holds, for at most
  ``STOP_FLUSH_SECONDS``, and archives the responses waiting for the archive;
* ``Collector.recover`` (at every start, and after a run that lost its database) replays the
  spool, records the run ends the database missed, and re-parses every run whose quotes were
  not all stored (``Store.runs_to_recover``): killed, cancelled, cut off from its database.
  A re-parse replaces what a run stored in one transaction, so a quote is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from collector import lease as leasing
from collector.errors import FetchError, LeaseLost, ParseError, Spooled, StorageError
from collector.http import PAYLOAD_ERROR_HEADER, Fetcher, Response, unexpected_content
from collector.kinds import data_kind
from collector.model import CorridorSpec, Draft, corridor_specs
from collector.rates import RateBook, ReferenceRate
from collector.spool import Spool, SpoolError
from collector.validate import Rejected, check
from corridors.config import Config, SourceConfig
from corridors.errors import ConfigError
from corridors.periods import month_of
from corridors.store import STORE_ERRORS, Store, WriteBatch, WriteResult
from corridors.types import Quote

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[int, int], None]

#: Source kinds that publish reference rates: they run before the quote sources.
RATE_KINDS = frozenset({"ecb_rates", "json_rates"})
#: Failures that say the upstream cannot be reached at all (no network, DNS, a closed port,
#: no answer, or its circuit already open): told once per outage (``Collector.outage``).
UNREACHABLE_KINDS = frozenset({"connection", "timeout", "circuit_open"})
BODY_FROM_HEADER = "X-Sendcost-Body-From"
#: Quotes held this long are written even when fewer than ``store_batch``: a run commits
#: what it parses as it goes, so an interruption finds little held.
FLUSH_SECONDS = 0.5
#: On cancellation (SIGTERM, Ctrl-C) a run writes what it holds, waiting this long at most;
#: the responses waiting for the archive get as long again.
STOP_FLUSH_SECONDS = 5.0


class NotArchived(Exception):
    """A re-parse asked for a URL the original run did not fetch: nothing to parse."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """An archived upstream response, handed to a parser."""

    raw_id: int
    url: str
    status: int
    body: bytes
    fetched_at: dt.datetime
    headers: dict[str, str]
    #: SHA-256 of the body, as archived.
    content_hash: str


@dataclass
class RunReport:
    run_id: int
    source: str
    status: str = "running"
    requests: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    rates: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    message: str | None = None
    seconds: float = 0.0
    store_seconds: float = 0.0
    reparse_of: int | None = None
    #: The run ended without storing what it parsed (its last write failed, or it was
    #: stopped with quotes unwritten).
    unstored: bool = False
    #: What went wrong last (kind and detail), so a failed run says why without -v.
    last_error: str | None = None

    @property
    def failures(self) -> int:
        return sum(v for k, v in self.errors.items() if not k.startswith("retry:"))

    def line(self) -> str:
        if self.status == "skipped":
            return f"{self.source}: skipped ({self.message})"
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        what = f"re-parse of run {self.reparse_of}" if self.reparse_of else "run"
        return (f"{self.source}: {what} {self.run_id} {self.status} in {self.seconds:.1f}s — "
                f"{self.requests} requests, {self.stored} quotes stored "
                f"({self.duplicates} already there), {self.quarantined} quarantined, "
                f"{self.rates} reference rates; errors: {errs}"
                + (f"; {self.message}" if self.message else ""))


#: A response waiting for the archive: its row, who waits for its id, whether it is in the
#: journal.
_Row = tuple[dict[str, Any], "asyncio.Future[int]", bool]


class _Archiver:
    """Archives responses in batches (one statement each); each caller waits for its row's id.

    One per collector, shared by its runs: under load, the responses of every source fetched
    side by side go in together. A row waits at most ``delay`` for others to join it. The
    batch size is what makes archiving cheap: at 10 rows a batch each row costs about four
    times the client CPU it costs at 100 (bench/collect.py; archiving comes before parsing,
    so on a busy collector this is most of what the database costs it).
    """

    def __init__(self, store: Store, spool: Spool, max_batch: int = 256,
                 delay: float = 0.02) -> None:
        self.store = store
        self.spool = spool
        self.max_batch = max_batch
        self.delay = delay
        self.rows: list[_Row] = []
        self.timer: asyncio.Task[None] | None = None
        self.flushes: set[asyncio.Task[None]] = set()
        #: Runs under way that archive through it; the last one out closes it.
        self.users = 0
        #: Statements written and responses archived (for the benchmark and the tests).
        self.writes = 0
        self.archived = 0
        self.spooled = 0
        #: Responses spooled since the archive last worked (the log says an outage once).
        self._spooling = 0

    async def add(self, row: dict[str, Any]) -> int:
        """Archive ``row``; its id. The row is in the spool's journal first, until archived
        or spooled: a process killed meanwhile does not take it along."""
        journalled = self.spool.journal.append(row)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.rows.append((row, fut, journalled))
        if len(self.rows) >= self.max_batch:
            self._start_flush()
        elif self.timer is None:
            self.timer = asyncio.create_task(self._later())
        return await fut

    async def _later(self) -> None:
        await asyncio.sleep(self.delay)
        self.timer = None
        self._start_flush()

    def _start_flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            task = asyncio.create_task(self._flush(rows))
            self.flushes.add(task)
            task.add_done_callback(self.flushes.discard)

    async def _flush(self, rows: list[_Row]) -> None:
        try:
            self.writes += 1
            ids = await self.store.archive_raw_many([r for r, _, _ in rows])
            self.archived += len(ids)
            self.spool.journal.done(sum(j for _, _, j in rows))
            if self._spooling:
                log.info("archiving responses again (%d were spooled meanwhile)",
                         self._spooling)
                self._spooling = 0
        except BaseException as exc:
            # Not archived (the database is away, or we are stopping mid-write): the rows
            # go to the spool, even those whose fetch was cancelled meanwhile.
            await self._spool(rows, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut, _), raw_id in zip(rows, ids, strict=True):
            if not fut.done():
                fut.set_result(raw_id)

    async def _spool(self, rows: list[_Row], exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else "stopping"
        try:
            # Writing and syncing files blocks: off the event loop.
            keys = await asyncio.shield(asyncio.to_thread(
                lambda: [self.spool.put(r) for r, _, _ in rows]))
        except (SpoolError, asyncio.CancelledError) as lost:
            # Still in the journal (kept until the next start), if it could be written.
            log.error("%d responses could neither be archived (%s) nor spooled (%s)",
                      len(rows), why, lost)
            for _, fut, _ in rows:
                if not fut.done():
                    fut.set_exception(StorageError(
                        f"could not archive the response ({why}) nor spool it ({lost})"))
            return
        self.spooled += len(keys)
        self.spool.journal.done(sum(j for _, _, j in rows))
        log.log(logging.DEBUG if self._spooling else logging.WARNING,
                "the database could not archive %d responses (%s): spooled in %s until it "
                "can", len(rows), why, self.spool.folder)
        self._spooling += len(keys)
        for _, fut, _ in rows:
            if not fut.done():
                fut.set_exception(Spooled(f"not archived ({why}); kept in the local spool, "
                                          "parsed when it is replayed"))

    def enter(self) -> None:
        self.users += 1

    async def leave(self) -> None:
        """A run is done with it; when no run is left, nothing is left waiting either: the
        responses still waiting (those of cancelled fetches: they were answered) are
        archived, or spooled, within ``STOP_FLUSH_SECONDS``."""
        self.users -= 1
        if self.users:
            return
        # Everything is taken before the first await: a run that starts meanwhile begins
        # with a fresh window of its own, untouched by this close.
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        self._start_flush()
        tasks = list(self.flushes)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=STOP_FLUSH_SECONDS)
        for task in late:
            task.cancel()  # the cancelled flush spools its rows
        await asyncio.gather(*tasks, return_exceptions=True)


class _Writer:
    """Group commit: batches handed in while a write is under way are written together next.

    One transaction for many runs' batches instead of one each: the per-write costs (a
    round trip per statement, the services check, the commit) are paid once. Should a joint
    write fail, each batch is tried alone, so one run's bad batch never sinks another's.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[tuple[WriteBatch, asyncio.Future[WriteResult]]] = []
        self.task: asyncio.Task[None] | None = None
        #: Seconds spent writing, and batches and writes (for the benchmark and the logs).
        self.seconds = 0.0
        self.batches = 0
        self.writes = 0

    async def write(self, batch: WriteBatch) -> WriteResult:
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self.pending.append((batch, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        # A run cancelled while its batch is being written does not undo the write.
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        try:
            while self.pending:
                # One batch per run in a write: a write tells its runs' counts apart by run id.
                group: list[tuple[WriteBatch, asyncio.Future[WriteResult]]] = []
                rest: list[tuple[WriteBatch, asyncio.Future[WriteResult]]] = []
                runs: set[int | None] = set()
                for item in self.pending:
                    (rest if item[0].run_id in runs else group).append(item)
                    runs.add(item[0].run_id)
                self.pending = rest
                started = time.perf_counter()
                try:
                    results = await self.store.write_batches([b for b, _ in group])
                except Exception as exc:
                    if len(group) == 1:
                        group[0][1].set_exception(exc)
                        continue
                    for batch, fut in group:
                        try:
                            [result] = await self.store.write_batches([batch])
                        except Exception as alone:
                            fut.set_exception(alone)
                        else:
                            fut.set_result(result)
                    continue
                finally:
                    self.seconds += time.perf_counter() - started
                    self.batches += len(group)
                    self.writes += 1
                for (_, fut), result in zip(group, results, strict=True):
                    fut.set_result(result)
        except BaseException as exc:
            # Cancelled (shutting down): nobody waits for ever.
            for _, fut in self.pending:
                if not fut.done():
                    fut.set_exception(StorageError(f"writer stopped: {exc!r}"))
            self.pending = []
            raise


class RunContext:
    """What an adapter gets: its source, the corridors to price, and the run's services."""

    def __init__(self, collector: Collector, source: SourceConfig, report: RunReport,
                 corridors: list[CorridorSpec], rates: RateBook, *,
                 archive: dict[str, dict[str, Any]] | None = None,
                 progress: Progress | None = None) -> None:
        self.collector = collector
        self.config = collector.config
        self.store = collector.store
        self.source = source
        self.options = source.options
        self.report = report
        self.corridors = corridors
        self.corridor_index = {(c.source, c.destination): c for c in corridors}
        self.rates = rates
        self.archive = archive
        self.reparse = archive is not None
        self.progress = progress
        self._archiver = collector.archiver
        self._archiver.enter()
        self._quotes: list[Quote] = []
        self._quarantine: list[dict[str, Any]] = []
        #: Flush when this many quotes are held (raised after a failed write, so a database
        #: that is away is not asked again for every quote).
        self._flush_at = collector.store_batch
        #: When the oldest quote or quarantine record held was added (monotonic).
        self._held_since: float | None = None
        self._references: dict[tuple[str, str], ReferenceRate | None] = {}
        self.successes = 0
        self.raw_ids: list[int] = []

    # -- fetching ----------------------------------------------------------------------------

    def _attempt(self, kind: str) -> None:
        self.report.requests += 1
        if kind != "ok":
            self.report.errors[f"retry:{kind}"] += 1

    async def fetch(self, url: str, json_body: bytes | None = None) -> Fetched:
        """The response for ``url`` (POSTed ``json_body`` when given), archived; raises
        FetchError when there is none usable."""
        if self.archive is not None:
            return await self._from_archive(url)
        resp: Response = await self.collector.fetcher.get(self.source, url, self._attempt,
                                                          json_body=json_body)
        headers = dict(resp.headers)
        if resp.body_from_raw_id is not None:
            headers[BODY_FROM_HEADER] = str(resp.body_from_raw_id)
        digest = hashlib.sha256(resp.body or b"").hexdigest()
        try:
            raw_id = await self._archiver.add({
                "source": self.source.name, "url": url, "fetched_at": resp.fetched_at,
                "status": resp.status, "content_type": resp.content_type, "headers": headers,
                # A 304 has no body of its own: it points at the response it re-uses, and
                # its hash is that body's (not the hash of nothing).
                "body": None if resp.status == 304 else resp.body,
                "content_hash": digest,
                "run_id": self.report.run_id, "licence": self.options.get("licence"),
            })
        except StorageError:
            raise  # spooled (parsed when replayed), or neither archived nor spooled
        except Exception as exc:
            # Nothing is parsed that is not archived first.
            raise StorageError(f"could not archive the response of {url}: "
                               f"{type(exc).__name__}: {exc}") from exc
        self.raw_ids.append(raw_id)
        self.collector.fetcher.remember(resp, raw_id)
        if resp.error is not None:  # archived, counted, and not parsed
            raise resp.error
        if resp.status >= 400 or (resp.status == 304 and resp.body_from_raw_id is None):
            kind = ("http_429" if resp.status == 429 else "http_5xx" if resp.status >= 500
                    else "http_4xx" if resp.status >= 400 else "http_304_without_body")
            raise FetchError(kind, f"HTTP {resp.status}", url=url, status=resp.status)
        return Fetched(raw_id, url, resp.status, resp.body, resp.fetched_at, headers, digest)

    async def read_file(self, url: str, path: Path) -> Fetched:
        """A local file (a bundled tariff, ``url`` as configured) as a response, archived
        like one: a re-parse reads the archived bytes, not the file as it is then."""
        if self.archive is not None:
            return await self._from_archive(url)
        self.report.requests += 1
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise FetchError("unreachable", f"cannot read {path}: {exc.strerror or exc}",
                             url=url) from None
        fetched_at = dt.datetime.now(dt.UTC)
        digest = hashlib.sha256(body).hexdigest()
        content_type = "application/json" if path.suffix == ".json" else "text/csv"
        try:
            raw_id = await self._archiver.add({
                "source": self.source.name, "url": url, "fetched_at": fetched_at,
                "status": 200, "content_type": content_type, "headers": {}, "body": body,
                "content_hash": digest, "run_id": self.report.run_id,
                "licence": self.options.get("licence")})
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"could not archive {url}: {type(exc).__name__}: {exc}"
                               ) from exc
        self.raw_ids.append(raw_id)
        return Fetched(raw_id, url, 200, body, fetched_at, {}, digest)

    async def _from_archive(self, url: str) -> Fetched:
        assert self.archive is not None
        row = self.archive.get(url)
        if row is None:
            raise NotArchived(url)
        self.report.requests += 1
        status = row["status"] or 0
        headers = row["headers"] or {}
        if status >= 400:
            raise FetchError("http_5xx" if status >= 500 else "http_4xx",
                             f"archived HTTP {status}", url=url, status=status)
        # A response the live run could not use is counted as it was then, not as a
        # malformed body: one whose body broke in transit (archived with what broke, and no
        # body), and a 2xx that was not the upstream's data (a captcha or login page).
        broke = next((v for k, v in headers.items()
                      if k.lower() == PAYLOAD_ERROR_HEADER.lower()), None)
        if broke is not None:
            raise FetchError("payload", f"archived HTTP {status} whose body broke in transit "
                             f"({broke})", url=url, status=status)
        body = row["payload"]
        why = unexpected_content(row["content_type"], body or b"") \
            if 200 <= status < 300 else None
        if why is not None:
            raise FetchError("unexpected_content", f"archived HTTP {status} with {why}",
                             url=url, status=status)
        if status == 304 and headers.get(BODY_FROM_HEADER):
            body = await self.store.raw_payload(int(headers[BODY_FROM_HEADER]))
        self.raw_ids.append(row["id"])
        return Fetched(row["id"], url, status, body or b"", row["fetched_at"], headers,
                       row["content_hash"])

    async def each(self, items: Iterable[T], fn: Callable[[T], Awaitable[None]]) -> None:
        """Run ``fn`` over ``items``, a few at a time; count each item's failure by kind."""
        todo = list(items)
        total, done = len(todo), 0
        queue = iter(todo)
        if self.progress:
            self.progress(0, total)

        async def worker() -> None:
            nonlocal done
            for item in queue:
                try:
                    await fn(item)
                    self.successes += 1
                    self.collector.reachable(self.source)
                except FetchError as exc:
                    # "kind: what (url)"; while an outage lasts, only the first is told.
                    self._failed(exc.kind, str(exc), self.collector.outage(self.source, exc))
                except ParseError as exc:
                    self._failed("malformed", f"malformed: {exc}")
                except Spooled as exc:
                    # The archiver said it once for the outage.
                    self._failed(exc.kind, f"{exc.kind}: {exc}", logging.DEBUG)
                except StorageError as exc:
                    self._failed(exc.kind, f"{exc.kind}: {exc}", logging.WARNING)
                except NotArchived:
                    pass
                except Exception as exc:
                    # A response of a shape the parser did not expect (a null list, a string
                    # where a number goes): count it, keep going. Its body is archived, so a
                    # parser fix is a --reparse away.
                    self._failed("malformed", f"malformed: could not parse a response "
                                 f"({type(exc).__name__}: {exc})", logging.WARNING,
                                 exc_info=log.isEnabledFor(logging.DEBUG))
                done += 1
                if self.progress:
                    self.progress(done, total)

        workers = max(1, min(total, self.source.max_concurrency * 2))
        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- results -----------------------------------------------------------------------------

    def reference(self, base: str, quote: str) -> ReferenceRate | None:
        key = (base, quote)
        if key not in self._references:
            self._references[key] = self.rates.rate(base, quote)
        return self._references[key]

    def corridor(self, source: str, destination: str) -> CorridorSpec | None:
        return self.corridor_index.get((source, destination))

    async def add_quote(self, draft: Draft, fetched: Fetched) -> None:
        cfg = self.config.collection
        collected_at = draft.observed_at or fetched.fetched_at
        c = draft.corridor
        ref = self.reference(c.send_currency, c.receive_currency) if c else None
        stale = ref is None or ref.age_hours(collected_at) > cfg.reference_max_age_hours
        rejection, extra = check(draft, ref.rate if ref else None, cfg, reference_stale=stale,
                                 rates=self.rates, at=collected_at)
        if rejection is not None:
            self._reject(rejection.reason, rejection.field, rejection.detail, draft, fetched)
            return
        assert c is not None
        flags = [*draft.flags, *extra]
        if stale:
            flags.append("reference_stale")
        self._quotes.append(Quote(
            source_code=c.source, destination_code=c.destination, firm=draft.firm,
            service=draft.service, service_key=draft.service_key,
            period=month_of(collected_at), amount_usd=draft.amount_usd,
            send_amount=draft.send_amount, send_currency=c.send_currency,
            receive_currency=c.receive_currency, fee=draft.fee,
            applied_rate=draft.applied_rate,
            reference_rate=ref.rate if ref else None,
            reference_source=ref.source if ref else None,
            reference_at=ref.as_of_for(collected_at) if ref else None,
            transparent=draft.applied_rate is not None,
            collected_at=collected_at, source=self.source.name,
            data_kind=data_kind(self.source, fetched.headers, self.config.sandbox),
            received_amount=draft.received_amount, fee_deducted=draft.fee_deducted,
            fx_margin_reported=draft.fx_margin_reported, raw_response_id=fetched.raw_id,
            raw_fetched_at=fetched.fetched_at,
            flags=tuple(dict.fromkeys(flags)),
        ))
        await self._maybe_flush()

    async def _maybe_flush(self) -> None:
        """Write what is held once it is ``store_batch`` quotes, or ``FLUSH_SECONDS`` old."""
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        if not self.reparse and (len(self._quotes) >= self._flush_at
                                 or now - self._held_since >= FLUSH_SECONDS):
            try:
                await self.flush()
            except StorageError as exc:
                # The batch stays held; the next flush (or the run's last) tries again.
                self._failed(exc.kind, f"{exc.kind}: {exc}; {len(self._quotes)} quotes held "
                             "for the next write", logging.WARNING)
                self._flush_at = len(self._quotes) + self.collector.store_batch
                self._held_since = time.monotonic()  # and not before FLUSH_SECONDS
            else:
                self._flush_at = self.collector.store_batch

    async def add_parsed(self, drafts: Iterable[Draft], rejected: Iterable[Rejected],
                         fetched: Fetched) -> None:
        """What an adapter made of one response: the records it could not use quarantined
        with their reasons, the others measured and kept (one bad record sinks only
        itself)."""
        for record, why in rejected:
            self._quarantined(why.reason, why.field, why.detail, record, fetched)
        for draft in drafts:
            await self.add_quote(draft, fetched)
        if self._quarantine and not self._quotes:
            await self._maybe_flush()

    def skipped_rates(self, skipped: Iterable[str]) -> None:
        """Rates left out of a response whose others were stored: there is no quarantine for
        rates, so each counts ``malformed`` (the run is ``partial``), named in the log and
        the run's message."""
        for what in skipped:
            self._failed("malformed", f"malformed: {what} (left out; the other rates stored)",
                         logging.WARNING)

    def _failed(self, kind: str, line: str, level: int = logging.INFO, *,
                exc_info: bool = False) -> None:
        """One failure of ``kind``: counted, the run's last error (``line``, "kind: what"),
        and logged."""
        self.report.errors[kind] += 1
        self.report.last_error = line
        log.log(level, "%s: %s", self.source.name, line, exc_info=exc_info)

    def _quarantined(self, reason: str, field_: str, detail: str, payload: dict[str, Any],
                     fetched: Fetched) -> None:
        """Keep a record for the quarantine table, with why it is not a quote."""
        self._quarantine.append({
            "source": self.source.name, "run_id": self.report.run_id,
            "raw_response_id": fetched.raw_id, "raw_fetched_at": fetched.fetched_at,
            "reason": reason, "field": field_,
            "payload": _jsonable({**payload, "detail": detail, "url": fetched.url}),
        })

    def _reject(self, reason: str, field_: str, detail: str, draft: Draft,
                fetched: Fetched) -> None:
        """Quarantine a draft that failed validation, with what identifies it."""
        payload = {**draft.payload, "corridor": draft.corridor.key if draft.corridor else None,
                   "amount_usd": draft.amount_usd, "send_amount": draft.send_amount,
                   "firm": draft.firm.name, "service_key": draft.service_key}
        self._quarantined(reason, field_, detail, payload, fetched)

    async def add_rates(self, rows: Sequence[tuple[str, str, Decimal, dt.datetime]],
                        fetched: Fetched) -> None:
        try:
            n = await self.store.store_reference_rates(
                [(self.source.name, b, q, r, at, fetched.raw_id) for b, q, r, at in rows])
        except STORE_ERRORS as exc:
            # Counted "database": the run is re-parsed when the database is back.
            raise StorageError(f"could not store {len(rows)} reference rates: "
                               f"{type(exc).__name__}: {exc}") from exc
        self.report.rates += n

    async def flush(self) -> None:
        """Write the quotes and quarantine records held so far, as one atomic batch.

        Raises StorageError when the database refuses it; the batch is then held again.
        """
        quotes, self._quotes = self._quotes, []
        bad, self._quarantine = self._quarantine, []
        held_since, self._held_since = self._held_since, None
        if not quotes and not bad and not self.reparse:
            return
        batch = WriteBatch(quotes, self.report.run_id, bad)
        started = time.perf_counter()
        try:
            if self.reparse:
                # A re-parse replaces what the original responses gave, even with nothing.
                result = await self.store.replace_quotes_of_raw(self.source.name,
                                                                self.raw_ids, batch)
            else:
                result = await self.collector.writer.write(batch)
        except Exception as exc:
            self._quotes[:0] = quotes
            self._quarantine[:0] = bad
            self._held_since = held_since
            raise StorageError(f"could not write {len(quotes)} quotes and {len(bad)} "
                               f"quarantine records: {type(exc).__name__}: {exc}") from exc
        finally:
            self.report.store_seconds += time.perf_counter() - started
        self.report.stored += result.inserted
        self.report.duplicates += result.duplicates
        self.report.quarantined += result.quarantined

    async def close(self) -> None:
        await self._archiver.leave()


class Collector:
    """Runs sources: the fetcher (limits, circuits, conditional requests) lives as long as
    the collector, so one per process."""

    def __init__(self, config: Config, store: Store, session: aiohttp.ClientSession, *,
                 seed: int | None = None, store_batch: int = 1000,
                 spool_dir: Path | None = None) -> None:
        from collector.sources import REGISTRY, check_sources

        self.config = config
        self.store = store
        self.fetcher = Fetcher(session, config.collection, seed=seed)
        # The strictest limits of every source on a host hold from the first request on.
        self.fetcher.declare(config.sources)
        self.store_batch = store_batch
        check_sources(config)
        self.registry = REGISTRY
        self._running: dict[str, asyncio.Lock] = {}
        #: How long a source's lease lasts unless renewed (collector/lease.py).
        self.lease_seconds = leasing.LEASE_SECONDS
        self._checked_dead = False
        #: Sources whose upstream could not be reached, since when (told once, then quiet
        #: until a request to it succeeds again).
        self.unreachable: dict[str, float] = {}
        self.writer = _Writer(store)
        self.spool = Spool(spool_dir or config.data_dir / "spool")
        self.archiver = _Archiver(store, self.spool)
        #: Run ends the database missed (run id → what finish_run records), written by
        #: ``recover``.
        self._unfinished: dict[int, dict[str, Any]] = {}
        #: Whether ``recover`` has something to do: at first (a previous process may have
        #: left work), and after a run that could not store everything.
        self.needs_recovery = True
        self._recovering = asyncio.Lock()

    async def _bind_spool(self) -> None:
        """The spool's folder is the database's own (``Spool.bind``): known once connected."""
        if not self.spool.bound:
            self.spool.bind(await self.store.database_key())

    def outage(self, source: SourceConfig, exc: FetchError) -> int:
        """The log level of ``exc``'s line: a source's first failure to reach its upstream
        is told at WARNING, once, with what happens next; later ones at DEBUG until a
        request succeeds (``reachable``). Other failures (an HTTP error, a body that broke)
        are answers: they end an outage, and keep INFO."""
        if exc.kind not in UNREACHABLE_KINDS:
            self.reachable(source)
            return logging.INFO
        if source.name in self.unreachable:
            return logging.DEBUG
        self.unreachable[source.name] = time.monotonic()
        c = self.config.collection
        host = urlsplit(exc.url or source.url).hostname or source.url
        log.warning("%s: the upstream %s is unreachable (%s); backing off: its circuit opens "
                    "after %d failures in a row and is tried again every %g s, quietly, "
                    "until it answers. The service goes on serving what it has",
                    source.name, host, exc.kind, c.circuit_failures,
                    c.circuit_cooldown_seconds)
        return logging.DEBUG

    def reachable(self, source: SourceConfig) -> None:
        """A request of ``source`` succeeded: an outage told before is over."""
        since = self.unreachable.pop(source.name, None)
        if since is not None:
            log.warning("%s: the upstream answers again (unreachable for %.0f s)",
                        source.name, time.monotonic() - since)

    async def _abandon_dead_runs_once(self) -> None:
        """Runs left 'running' by a process that died are marked failed, once per collector
        (``Store.abandon_dead_runs``): they must not look under way for ever."""
        if self._checked_dead:
            return
        self._checked_dead = True
        try:
            await self.store.abandon_dead_runs()
        except Exception as exc:  # never a reason not to collect
            log.warning("could not check for abandoned collection runs: %s", exc)

    async def recover(self) -> list[RunReport]:
        """Store every quote a previous interruption left unstored; return the re-parses.

        In order: the run ends the database missed are recorded; the spool is replayed into
        the archive; runs of dead processes are marked failed; then every run whose quotes
        were not all stored (``Store.runs_to_recover``: failed, or it spooled or could not
        write) is re-parsed from its archived responses — one process per run at a time
        (``Store.recovery_lock``). Raises what the store raises when the database is away
        (``needs_recovery`` stays set: the next call tries again).
        """
        async with self._recovering:
            # Cleared first: a run that ends meanwhile and needs recovering sets it again.
            self.needs_recovery = False
            try:
                return await self._recover()
            except BaseException:
                self.needs_recovery = True
                raise

    async def _recover(self) -> list[RunReport]:
        await self._bind_spool()
        for run_id, end in list(self._unfinished.items()):
            await self.store.finish_run(run_id, **end)
            del self._unfinished[run_id]
        await self.spool.replay(self.store)
        await self.store.abandon_dead_runs()
        names = [s.name for s in self.config.sources if s.kind in self.registry]
        reports = []
        for run_id in await self.store.runs_to_recover(names):
            async with self.store.recovery_lock(run_id) as mine:
                # Another process has it, or finished it just now.
                if not mine or not await self.store.runs_to_recover(names, [run_id]):
                    continue
                report = await self.reparse(run_id)
                log.info("%s: recovered run %d (its quotes had not all been stored): "
                         "re-parse run %d %s, %d quotes stored", report.source, run_id,
                         report.run_id, report.status, report.stored)
                reports.append(report)
        return reports

    async def recover_if_needed(self) -> list[RunReport]:
        """``recover`` when something may be left to recover and no recovery is under way;
        a database still away is logged, not raised (the next call tries again)."""
        if not self.needs_recovery or self._recovering.locked():
            return []
        try:
            return await self.recover()
        except Exception as exc:
            log.warning("recovering interrupted runs waits for the database: %s: %s",
                        type(exc).__name__, exc)
            return []

    async def run_all(self, names: Sequence[str] | None = None, *, corridor: str | None = None,
                      progress: Callable[[str], Progress | None] | None = None
                      ) -> list[RunReport]:
        """Rate sources first (the quotes are measured against them), then the others."""
        chosen = self.config.sources_to_run(names)
        reports = []
        first = [s for s in chosen if s.kind in RATE_KINDS]
        rest = [s for s in chosen if s.kind not in RATE_KINDS]
        for group in (first, rest):
            runs = [asyncio.create_task(self.run(s.name, corridor=corridor,
                                                 progress=progress(s.name) if progress
                                                 else None)) for s in group]
            try:
                reports += await asyncio.gather(*runs)
            except BaseException as exc:
                # Stopped (SIGTERM) or one failed: gather gives up at the first run that
                # ends so, while the others are still recording their end; wait for them
                # all, or the caller closes the pool under them ("pool is closing") and a
                # run is left 'running'. Stopped, they are cancelled already: once only,
                # so that no second cancellation cuts their recording short.
                if not isinstance(exc, asyncio.CancelledError):
                    for task in runs:
                        task.cancel()
                await asyncio.gather(*runs, return_exceptions=True)
                raise
        return reports

    async def run(self, name: str, *, corridor: str | None = None,
                  progress: Progress | None = None) -> RunReport:
        source = self.config.source(name)
        if source.kind not in self.registry:
            raise ConfigError(f"source {name!r}: no adapter for kind {source.kind!r}")
        try:
            source.request_headers()  # its environment variables are set
        except ConfigError as exc:
            where = f"{self.config.path}: " if self.config.path else ""
            raise ConfigError(f"{where}{exc}") from None
        corridors = corridor_specs(self.config, corridor)
        await self._abandon_dead_runs_once()
        await self._bind_spool()
        lock = self._running.setdefault(name, asyncio.Lock())
        report = None
        try:
            async with lock, leasing.hold(self.store, name, self.lease_seconds) as lease:
                if not isinstance(lease, leasing.Held):  # another process collects it now
                    report = RunReport(0, name, status="skipped",
                                       message=f"another collector has it: {lease.describe()}")
                    log.log(logging.DEBUG if progress else logging.INFO, "%s", report.line())
                    return report
                report = RunReport(await self._start_run(name), name)
                try:
                    await lease.name(report.run_id)
                    rates = await RateBook.load(self.store,
                                                sources=source.options.get("reference_sources"))
                except BaseException as exc:
                    # Stopped before it began (SIGTERM) or the database went: closed all
                    # the same, never left 'running'.
                    report.status = "failed"
                    report.errors["cancelled" if isinstance(exc, asyncio.CancelledError)
                                  else "database"] += 1
                    report.message = ("cancelled before it fetched anything"
                                      if isinstance(exc, asyncio.CancelledError)
                                      else f"could not start: {type(exc).__name__}: {exc}")
                    await self._record_end(report)
                    raise
                ctx = RunContext(self, source, report, corridors, rates, progress=progress)
                return await self._execute(ctx, quiet=name in self.unreachable)
        except LeaseLost as exc:
            if report is None:
                raise
            # The run's end is recorded already ("cancelled"); say why it was.
            report.status, report.message = "failed", f"{exc}; {report.message}"
            await self._record_end(report)
            return report

    async def _start_run(self, name: str) -> int:
        """A new run's id. Cancelled while the row is being written, the row (if written) is
        closed before the cancellation goes on: a run is never left 'running'."""
        start = asyncio.ensure_future(self.store.start_run(name))
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                run_id = await asyncio.wait_for(start, 10)
                report = RunReport(run_id, name, status="failed",
                                   message="cancelled before it fetched anything")
                report.errors["cancelled"] += 1
                await self._record_end(report)
            raise

    async def _record_end(self, report: RunReport) -> None:
        """Record a run's end outside ``_execute`` (bounded: a stopping process waits 10 s at
        most); one the database misses is recorded by the next ``recover``, as
        ``_execute``'s are."""
        end: dict[str, Any] = {
            "status": report.status, "requests": report.requests,
            "quotes_stored": report.stored, "quotes_quarantined": report.quarantined,
            "errors": dict(report.errors), "message": report.message}
        try:
            await asyncio.wait_for(self.store.finish_run(report.run_id, **end), 10)
        except Exception as exc:
            self._unfinished[report.run_id] = end
            self.needs_recovery = True
            log.warning("%s: could not record the end of run %d (%s: %s); it is recorded "
                        "when the database is back", report.source, report.run_id,
                        type(exc).__name__, exc)

    async def reparse(self, run_id: int, *, progress: Progress | None = None) -> RunReport:
        """Parse again what run ``run_id`` archived, without fetching anything."""
        info = await self.store.run_info(run_id)
        if info is None:
            raise ConfigError(f"--reparse {run_id}: no such collection run")
        source = self.config.source(info["source"])
        archived = await self.store.raw_responses_of_run(run_id)
        archive = {row["url"]: row for row in archived}  # the last response of each URL
        new_id = await self.store.start_run(source.name, reparse_of=run_id)
        report = RunReport(new_id, source.name, reparse_of=run_id)
        rates = await RateBook.load(self.store, known_at=info["finished_at"]
                                    or info["started_at"],
                                    sources=source.options.get("reference_sources"))
        ctx = RunContext(self, source, report, corridor_specs(self.config), rates,
                         archive=archive, progress=progress)
        return await self._execute(ctx)

    async def _execute(self, ctx: RunContext, *, quiet: bool = False) -> RunReport:
        """Run the adapter and record the run. ``quiet``: the source's upstream was already
        known unreachable, so a run that still reaches nothing is logged at DEBUG."""
        report = ctx.report
        started = time.perf_counter()
        adapter = self.registry[ctx.source.kind]
        try:
            try:
                await adapter(ctx)
            except Exception:
                # What was valid before the adapter failed is stored all the same.
                await ctx.flush()
                raise
            await ctx.flush()
            if report.failures and not ctx.successes:
                report.status = "failed"
                report.message = "no request succeeded"
            else:
                report.status = "partial" if report.failures else "ok"
            if report.failures and report.last_error:
                last = report.last_error if len(report.last_error) <= 300 else (
                    report.last_error[:297] + "...")
                report.message = "; ".join(filter(None, (report.message, f"last error: {last}")))
        except asyncio.CancelledError:
            report.status = "failed"
            report.errors["cancelled"] += 1
            held = len(ctx._quotes)
            try:
                if ctx.reparse:
                    # A re-parse cut short writes nothing: its replace would drop quotes
                    # of responses it had not finished parsing.
                    raise StorageError("a re-parse cut short writes nothing")
                # What is held is written before the run ends, within a bound.
                async with asyncio.timeout(STOP_FLUSH_SECONDS):
                    await ctx.flush()
                held = 0
            except (TimeoutError, StorageError) as exc:
                report.unstored = True
                log.warning("%s: run %d stopped with %d quotes unwritten (%s); they are "
                            "stored when it is recovered", ctx.source.name, report.run_id,
                            held, exc)
            report.message = ("cancelled; what it fetched is archived and is re-parsed at "
                              "the next start (or: `sendcost collect --reparse "
                              f"{report.run_id}`)")
            raise
        except Exception as exc:
            report.status = "failed"
            report.unstored = isinstance(exc, StorageError)
            report.message = f"{type(exc).__name__}: {exc}"
            log.exception("%s: run %d failed", ctx.source.name, report.run_id)
        finally:
            await ctx.close()
            report.seconds = time.perf_counter() - started
            # A re-parse that fails for its parser would fail again: only a lost database
            # calls for another recovery.
            if report.unstored or (not ctx.reparse and (
                    report.status == "failed" or {"spooled", "database"} & set(report.errors))):
                self.needs_recovery = True
            end: dict[str, Any] = {
                "status": report.status, "requests": report.requests,
                "quotes_stored": report.stored, "quotes_quarantined": report.quarantined,
                "errors": dict(report.errors), "message": report.message}
            try:
                await self.store.finish_run(report.run_id, **end)
            except Exception as exc:
                # Recorded by the next recover(), when the database is back.
                self._unfinished[report.run_id] = end
                self.needs_recovery = True
                log.warning("%s: could not record the end of run %d (%s: %s); it is "
                            "recorded when the database is back", ctx.source.name,
                            report.run_id, type(exc).__name__, exc)
        # With progress shown (an interactive `sendcost collect`), the command prints the
        # summary itself; a service logs it.
        still_out = quiet and ctx.source.name in self.unreachable and not ctx.successes
        log.log(logging.DEBUG if ctx.progress or still_out else logging.INFO, "%s",
                report.line())
        return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value
