"""What an adapter is given and what it hands back: the run's context, seen from an adapter.

``collector.run`` drives a run and provides the context (``collector.run.SourceRun``); the
adapters (``collector.sources.REGISTRY``) only use it. Keeping the interface here, apart from
the runner, lets the runner import the adapters without the adapters importing the runner
back: ``RunContext`` is a ``typing.Protocol``, and mypy checks at the registry's call that
the runner's context has every member an adapter may use.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from collector.model import CorridorSpec, Draft
from collector.rates import ReferenceRate
from collector.validate import Rejected
from corridors.config import Config, SourceConfig
from corridors.store import Store

T = TypeVar("T")


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


class RunContext(Protocol):
    """What an adapter gets: its source, the corridors to price, and the run's services
    (fetching archived responses, measuring and storing quotes, storing rates)."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def source(self) -> SourceConfig: ...
    @property
    def options(self) -> Mapping[str, Any]: ...
    @property
    def report(self) -> RunReport: ...
    @property
    def corridors(self) -> list[CorridorSpec]: ...
    @property
    def reparse(self) -> bool: ...

    async def fetch(self, url: str, json_body: bytes | None = None) -> Fetched:
        """The response for ``url`` (POSTed ``json_body`` when given), archived; raises
        FetchError when there is none usable."""
        ...

    async def read_file(self, url: str, path: Path) -> Fetched:
        """A local file (``url`` as configured) as a response, archived like one."""
        ...

    async def each(self, items: Iterable[T], fn: Callable[[T], Awaitable[None]]) -> None:
        """Run ``fn`` over ``items``, a few at a time; count each item's failure by kind."""
        ...

    def reference(self, base: str, quote: str) -> ReferenceRate | None:
        """The reference rate known at the start of the run, if any."""
        ...

    def corridor(self, source: str, destination: str) -> CorridorSpec | None:
        """The monitored corridor from ``source`` to ``destination`` (ISO alpha-3)."""
        ...

    async def add_quote(self, draft: Draft, fetched: Fetched) -> None:
        """Measure ``draft`` against its reference rate: kept, or quarantined with why."""
        ...

    async def add_parsed(self, drafts: Iterable[Draft], rejected: Iterable[Rejected],
                         fetched: Fetched) -> None:
        """What the adapter made of one response: records it could not use, and drafts."""
        ...

    def skipped_rates(self, skipped: Iterable[str]) -> None:
        """Rates left out of a response whose others were stored (each counts malformed)."""
        ...

    async def add_rates(self, rows: Sequence[tuple[str, str, Decimal, dt.datetime]],
                        fetched: Fetched) -> None:
        """Store reference rates (base, quote, rate, as of) read from ``fetched``."""
        ...


#: The one signature of every adapter: collect what the source offers through ``ctx``
#: (fetching via ctx.fetch, handing what it parsed to ctx.add_parsed, rates to ctx.add_rates).
Adapter = Callable[[RunContext], Awaitable[None]]
