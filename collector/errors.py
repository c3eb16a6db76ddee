"""Why a collection failed, as kinds a run can count (``collection_runs.errors``).

FetchError (a corridors.errors.CollectError)
├── kind "timeout"       no complete response within the per-attempt timeout, after retries
├── kind "http_5xx"      the upstream kept answering 5xx
├── kind "http_429"      the upstream kept rate-limiting us past the retries
├── kind "http_4xx"      any other 4xx (not retried: asking again will not help)
├── kind "connection"    refused, reset, DNS
├── kind "payload"       the body broke in transit (dropped mid-body, a false gzip header)
├── kind "unexpected_content"  a 2xx that is not the upstream's data (an HTML captcha page,
│                        an empty body): archived, and a failure for the circuit breaker
├── kind "auth"          no OAuth bearer token from the source's token endpoint
└── kind "circuit_open"  the source's circuit breaker is open: not asked at all
ParseError  kind "malformed": a response that does not have the upstream's format
StorageError  kind "database": the store could not archive a response or write a batch
└── Spooled  kind "spooled": the database could not archive a response, so it was kept in
             the local spool (collector/spool.py) to be archived and parsed when it is back
"""

from __future__ import annotations

from corridors.errors import CollectError


class FetchError(CollectError):
    def __init__(self, kind: str, message: str, *, url: str | None = None,
                 status: int | None = None):
        super().__init__(f"{kind}: {message}" + (f" ({url})" if url else ""))
        self.kind = kind
        self.url = url
        self.status = status


class ParseError(CollectError):
    """The body is not what the upstream's format promises (names the field)."""

    kind = "malformed"


class StorageError(CollectError):
    """The database refused or lost a write (archive or batch); what it held is kept."""

    kind = "database"


class Spooled(StorageError):
    """A response the database could not archive, kept in the local spool instead: it is
    parsed once the spool is replayed (``Collector.recover``), not now."""

    kind = "spooled"
