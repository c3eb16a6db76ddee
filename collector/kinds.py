"""What kind of figure a collected quote is (corridors.types.DataKind), and how the collector
tells emulated data from real data.

A source's kind says what its quotes are: an operator's or a post's own quote is
``observed``, a comparison feed's figure for another provider an ``estimate``, an RPW file
the ``survey``. Whatever the config says, data from the sandbox is ``emulated``. The
collector knows it two ways, either enough:

* every response the sandbox sends carries ``Sendcost-Emulated: true``
  (``EMULATED_HEADER``; the header is archived with the response, so a re-parse knows it
  too). The header can only ever lower a quote to emulated, never raise one to real, so
  trusting it is safe whoever sends it;
* a source whose URL is the sandbox's address (``[sandbox] host`` and ``port`` of the
  config, 127.0.0.1:8765 unless changed: where ``sendcost serve --sandbox`` puts it and
  ``sendcost sandbox --print-config`` points the profile it prints; loopback names of that
  port count alike) is emulated even if a response came without the header (a proxy in
  between that drops it).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from corridors.config import DEFAULT_SANDBOX_PORT, SandboxConfig, SourceConfig
from corridors.types import DataKind

#: The header every response of the sandbox carries (value "true").
EMULATED_HEADER = "Sendcost-Emulated"
#: Where the sandbox listens by default (``sendcost sandbox``, ``sendcost serve --sandbox``).
SANDBOX_PORT = DEFAULT_SANDBOX_PORT
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

#: The kind of a real source's quotes, by source kind.
KIND_OF_SOURCE: dict[str, DataKind] = {
    "operator_json": DataKind.OBSERVED,
    "postal_tariff": DataKind.OBSERVED,
    "comparison": DataKind.ESTIMATE,
    "rpw": DataKind.SURVEY,
}


def is_sandbox_url(url: str, sandbox: SandboxConfig | None = None) -> bool:
    """True when ``url`` points at the sandbox's address (``sandbox``, default
    127.0.0.1:8765): its host, or any loopback name when that host is a loopback one."""
    sandbox = sandbox or SandboxConfig()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if port != sandbox.port or parts.hostname is None:
        return False
    host = sandbox.host.strip("[]").lower()
    return parts.hostname.lower() == host or (host in _LOOPBACK
                                              and parts.hostname in _LOOPBACK)


def marked_emulated(headers: Mapping[str, str]) -> bool:
    """True when a response's headers (as archived) carry the sandbox's mark."""
    return any(k.lower() == EMULATED_HEADER.lower() and str(v).strip().lower() == "true"
               for k, v in headers.items())


def data_kind(source: SourceConfig, headers: Mapping[str, str],
              sandbox: SandboxConfig | None = None) -> DataKind:
    """The kind of the quotes ``source`` parsed from a response with ``headers``, with the
    sandbox at ``sandbox`` (the config's ``[sandbox]``; default 127.0.0.1:8765). A postal
    tariff transcribed from a post's web page says so (``options.data_kind =
    "published_tariff"``, the bundled tariffs)."""
    if marked_emulated(headers) or is_sandbox_url(source.url, sandbox):
        return DataKind.EMULATED
    if source.kind == "postal_tariff" and source.options.get("data_kind") == (
            DataKind.PUBLISHED_TARIFF.value):
        return DataKind.PUBLISHED_TARIFF
    return KIND_OF_SOURCE.get(source.kind, DataKind.OBSERVED)
