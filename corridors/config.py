"""Configuration: ``config.toml`` read once with tomllib into frozen dataclasses.

Every key is documented in the shipped ``config.toml``. Secrets come only from the
environment (``DATABASE_URL``, ``SENDCOST_ADMIN_TOKEN``, and a source's ``${NAME}``s in its
headers or URL).
A bad value fails at start with a ConfigError naming the key and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from corridors.errors import ConfigError

#: RPW's fixed local amounts for the USD 200 / USD 500 price points, per sending currency.
#: These are the World Bank's rounded local equivalents; they are not re-converted each period.
DEFAULT_AMOUNTS: dict[str, tuple[Decimal, Decimal]] = {
    "USD": (Decimal(200), Decimal(500)),
    "GBP": (Decimal(120), Decimal(300)),
    "EUR": (Decimal(140), Decimal(345)),
    "JPY": (Decimal(17000), Decimal(42000)),
    "SAR": (Decimal(750), Decimal(1870)),
    "AED": (Decimal(735), Decimal(1835)),
    "CAD": (Decimal(200), Decimal(500)),
    "AUD": (Decimal(200), Decimal(500)),
    "CHF": (Decimal(160), Decimal(400)),  # as in RPW's CHE corridors, 2011-2014
}

SOURCE_KINDS = frozenset({"operator_json", "comparison", "postal_tariff", "ecb_rates", "json_rates",
                          "rpw"})


@dataclass(frozen=True, slots=True)
class CorridorConfig:
    source: str  # ISO alpha-3
    destination: str
    # Local send amounts for the USD 200 and USD 500 price points (None: defaults by currency).
    amounts: tuple[Decimal, ...] | None = None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    kind: str
    url: str
    enabled: bool = True
    # "interval:SECONDS" or a 5-field crontab ("0 6 * * *").
    schedule: str = "interval:3600"
    jitter_seconds: int = 60
    max_concurrency: int = 4
    requests_per_second: float = 5.0
    # Kind-specific settings, validated by the adapter when the source is built.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Request headers sent with every request to the source (credentials: an API key, a
    # token), as written: ${NAME} stands for the environment variable NAME, read when the
    # source is about to run (``request_headers``), so secrets stay out of the file.
    headers: Mapping[str, str] = field(default_factory=dict)
    # OAuth 2.0 client credentials (token_url, client_id, client_secret, scope): a bearer
    # token fetched before the source's requests; client_secret is always ${NAME}.
    oauth: Mapping[str, str] = field(default_factory=dict)
    # Time for one attempt at this source's requests, in place of collection.timeout_seconds
    # (None: that one): a large file (the RPW workbook, ~50 MB) needs longer than a quote.
    timeout_seconds: float | None = None

    def oauth_credentials(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``oauth`` with its ${NAME}s read from ``environ`` (default: the process
        environment); ConfigError naming the source, key and variable if one is unset."""
        env = os.environ if environ is None else environ
        out = {}
        for key, template in self.oauth.items():
            missing = [v for v in _ENV_REF.findall(template) if v not in env]
            if missing:
                raise ConfigError(
                    f"sources[{self.name}].oauth.{key}: environment variable {missing[0]} is "
                    f"not set (the value names it as ${{{missing[0]}}})")
            out[key] = _ENV_REF.sub(lambda m: env[m.group(1)], template)
        return out

    def url_secrets(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The values of the ${NAME}s in ``url`` (an API key in a query string) and in a POST
        ``options.body`` (a key in the JSON question), read from
        ``environ`` (default: the process environment), by NAME; ConfigError naming the
        source and variable if one is unset or holds a line break or a space. They are
        put in the URL only when a request is sent: what is archived and logged keeps
        ${NAME} (``collector.http.Fetcher``)."""
        env = os.environ if environ is None else environ
        out = {}
        for name in dict.fromkeys(_ENV_REF.findall(self.url)):
            if name not in env:
                raise ConfigError(f"sources[{self.name}].url: environment variable {name} is "
                                  f"not set (the URL names it as ${{{name}}})")
            if not env[name] or any(ch.isspace() for ch in env[name]):
                raise ConfigError(f"sources[{self.name}].url: environment variable {name} is "
                                  "empty or holds a space or a line break")
            out[name] = env[name]
        # A POST body's ${NAME}s (a key the API takes in its JSON question): the same, filled
        # in only when the request is sent.
        body = self.options.get("body")
        for name in dict.fromkeys(_ENV_REF.findall(body if isinstance(body, str) else "")):
            if name in out:
                continue
            if not env.get(name) or "\n" in env[name] or "\r" in env[name]:
                raise ConfigError(
                    f"sources[{self.name}].options.body: environment variable {name} is "
                    + ("not set" if name not in env else "empty or holds a line break")
                    + f" (the body names it as ${{{name}}})")
            out[name] = env[name]
        return out

    def request_headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers with their ${NAME}s filled in from ``environ`` (default: the process
        environment); ConfigError naming the source, header and variable if one is unset
        (or one of the URL's, ``url_secrets``: this is the check made before a source runs)."""
        env = os.environ if environ is None else environ
        self.url_secrets(env)
        self.oauth_credentials(env)
        out = {}
        for name, template in self.headers.items():
            missing = [v for v in _ENV_REF.findall(template) if v not in env]
            if missing:
                raise ConfigError(
                    f"sources[{self.name}].headers.{name}: environment variable "
                    f"{missing[0]} is not set (the header's value names it as ${{{missing[0]}}})")
            value = _ENV_REF.sub(lambda m: env[m.group(1)], template)
            if "\n" in value or "\r" in value:
                raise ConfigError(
                    f"sources[{self.name}].headers.{name}: an environment variable it names "
                    f"({', '.join(_ENV_REF.findall(template))}) holds a line break")
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class CollectionConfig:
    timeout_seconds: float = 20.0
    max_retries: int = 3
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # Retry-After is honoured, never shortened; a longer asked wait gives the request up.
    retry_after_max_seconds: float = 300.0
    circuit_failures: int = 5
    circuit_cooldown_seconds: float = 300.0
    user_agent: str = "sendcost/0.1 (+https://github.com/sendcost/sendcost)"
    reference_max_age_hours: float = 48.0
    # A quote whose applied rate is off the reference rate by more than this fraction is absurd.
    max_rate_deviation: float = 0.25
    # A plausible negative margin is kept and flagged; below this (in %) it is quarantined.
    min_fx_margin_pct: float = -5.0
    # An upstream's own FX margin (a comparison feed's markup) further than this many
    # percentage points from the margin measured against our reference is quarantined.
    max_margin_disagreement_pct: float = 2.0
    # A postal tariff whose figures are older than this many days (its as_of date, else the
    # day it was read) is reported: logged once per source and listed by /healthz.
    postal_tariff_max_age_days: float = 365.0


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    rate_limit_per_minute: int = 600
    public_url: str = ""


#: Where the sandbox (``sendcost sandbox``, ``sendcost serve --sandbox``) listens by default.
DEFAULT_SANDBOX_HOST = "127.0.0.1"
DEFAULT_SANDBOX_PORT = 8765


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """``[sandbox]``: the address of the emulated upstreams. ``serve --sandbox`` binds it and
    points every source at it; a source collecting from it is emulated data
    (``collector.kinds``)."""

    host: str = DEFAULT_SANDBOX_HOST
    port: int = DEFAULT_SANDBOX_PORT

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    # Empty: an embedded PostgreSQL in the data folder. DATABASE_URL overrides this.
    url: str = ""
    # Where the serving side reads (a streaming replica, or the primary through a read-only
    # role); empty: the same as ``url``. SENDCOST_READ_DATABASE_URL overrides this.
    read_url: str = ""
    pool_min: int = 1
    pool_max: int = 10
    connect_timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """``[storage]``: the quote store's monthly partitions and how long raw bodies are kept
    (docs/storage.md)."""

    # Month partitions of quotes and raw_responses made ahead of this month, at every start
    # and daily in serve.
    partitions_ahead_months: int = 3
    # Bodies of raw responses fetched more than this many days ago, in a closed quarter, are
    # dropped (the row keeps its provenance, hash and size; quotes are never dropped), daily
    # in serve and by `sendcost db prune-raw`. 0: every body is kept.
    raw_retention_days: int = 0


@dataclass(frozen=True, slots=True)
class MinimumBase:
    """The least a bulletin figure must rest on to be published as a number; below it the
    figure reads "insufficient data" with its base (docs/bulletin.md, "What each figure
    rests on")."""
    # A global figure (10.c.1, SmaRT, weighted, G20/G8 averages, the shares of corridors and
    # of services) needs this many corridors covered...
    global_corridors: int = 20
    # ...and this share (0-1) of the target corridors (the configured ones and those the
    # survey priced in the period) covered.
    global_corridor_coverage: float = 0.75
    # A corridor counts as covered with at least this many providers (the three of SmaRT).
    providers_per_corridor: int = 3
    # A breakdown figure (a firm type, region, sending country) needs this many services and
    # this many providers.
    group_services: int = 10
    group_providers: int = 3


@dataclass(frozen=True, slots=True)
class BulletinConfig:
    # Publish last month's bulletin on the first day of each month at this hour (UTC).
    publish_hour_utc: int = 6
    enabled: bool = True
    minimum: MinimumBase = field(default_factory=MinimumBase)


#: The default of ``[import] max_rejected_share``: a few percent.
DEFAULT_MAX_REJECTED_SHARE = 0.03
#: The World Bank's current RPW workbook (linked from remittanceprices.worldbank.org's data
#: download page and data catalog entry 0037898).
DEFAULT_RPW_URL = ("https://remittanceprices.worldbank.org/sites/default/files/"
                   "rpw_dataset_2011_2025_q3.xlsx")


@dataclass(frozen=True, slots=True)
class ImportConfig:
    """``[import]``: how much of an RPW file may be rejected before none of it is used."""

    # Above this share of rejected rows, an import (and indicators --from-file) fails whole.
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE
    # Where ``sendcost import rpw --download`` fetches the current workbook, and the SHA-256
    # it must have ("" = not checked; the digest is printed either way).
    rpw_url: str = DEFAULT_RPW_URL
    rpw_sha256: str = ""


#: The default of ``[indicators] weighted_min_volume_share``.
DEFAULT_WEIGHTED_MIN_VOLUME_SHARE = 0.75


@dataclass(frozen=True, slots=True)
class IndicatorsConfig:
    """``[indicators]``: the coverage rule of the weighted global average."""

    # The corridors the bilateral remittance matrix weighs must carry at least this share
    # (0-1) of its volume between the period's sending and receiving countries; below it
    # the weighted average reads "insufficient weights".
    weighted_min_volume_share: float = DEFAULT_WEIGHTED_MIN_VOLUME_SHARE

    @property
    def weights_coverage_min(self) -> float:
        """The rule in percent, as metrics.corridors.weighted_global_average takes it."""
        return self.weighted_min_volume_share * 100


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """``[alerts]``: what counts as a provider's price change, how often new figures are
    looked at, and how webhooks are delivered (docs/alerts.md)."""

    enabled: bool = True
    # A provider's fee % or FX margin % moving by more than this many percentage points.
    fee_change_points: float = 0.5
    fx_margin_change_points: float = 0.5
    # How often the served figures are compared with those last seen (seconds).
    check_seconds: float = 5.0
    # Entries in a feed (the latest).
    feed_entries: int = 50
    # How often the webhook queue is looked at, and how many deliveries are taken at once.
    delivery_seconds: float = 5.0
    delivery_batch: int = 20
    # Time for one delivery attempt; a 2xx answer within it is delivered.
    delivery_timeout_seconds: float = 10.0
    # Attempts before a delivery is dead; the wait after attempt n is base × 2^(n-1), at most max.
    max_attempts: int = 8
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0
    # Retention, daily in serve: deliveries that ended (delivered or dead) this many days ago,
    # and events this old that no delivery waits for, are dropped; 0 keeps them forever.
    keep_deliveries_days: int = 90
    keep_events_days: int = 0


def _alerts(table: Mapping[str, Any]) -> AlertsConfig:
    d = AlertsConfig()
    _unknown_keys(table, {f for f in AlertsConfig.__dataclass_fields__}, "alerts")

    def number(key: str) -> float:
        return float(_positive(_expect(table, key, (int, float), "alerts", getattr(d, key)),
                               f"alerts.{key}"))

    def count(key: str) -> int:
        return _at_least(_expect(table, key, int, "alerts", getattr(d, key)), 1,
                         f"alerts.{key}")

    def days(key: str) -> int:
        return _at_least(_expect(table, key, int, "alerts", getattr(d, key)), 0,
                         f"alerts.{key}")

    out = AlertsConfig(
        enabled=_expect(table, "enabled", bool, "alerts", d.enabled),
        fee_change_points=number("fee_change_points"),
        fx_margin_change_points=number("fx_margin_change_points"),
        check_seconds=number("check_seconds"), feed_entries=count("feed_entries"),
        delivery_seconds=number("delivery_seconds"), delivery_batch=count("delivery_batch"),
        delivery_timeout_seconds=number("delivery_timeout_seconds"),
        max_attempts=count("max_attempts"), backoff_base_seconds=number("backoff_base_seconds"),
        backoff_max_seconds=number("backoff_max_seconds"),
        keep_deliveries_days=days("keep_deliveries_days"),
        keep_events_days=days("keep_events_days"))
    if out.backoff_max_seconds < out.backoff_base_seconds:
        raise ConfigError(f"alerts.backoff_max_seconds: expected at least backoff_base_seconds "
                          f"({out.backoff_base_seconds:g}), got {out.backoff_max_seconds:g}")
    return out


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    import_rpw_on_empty: bool = True
    log_level: str = "INFO"
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    bulletin: BulletinConfig = field(default_factory=BulletinConfig)
    imports: ImportConfig = field(default_factory=ImportConfig)
    indicators: IndicatorsConfig = field(default_factory=IndicatorsConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    corridors: tuple[CorridorConfig, ...] = ()
    sources: tuple[SourceConfig, ...] = ()
    path: Path | None = None

    @property
    def database_url(self) -> str | None:
        """The external database in use, or None for the embedded one."""
        return os.environ.get("DATABASE_URL") or self.database.url or None

    @property
    def read_database_url(self) -> str | None:
        """Where the serving side reads, when not where the collecting side writes (a
        streaming replica, a read-only role on the primary); None: the write database."""
        return os.environ.get("SENDCOST_READ_DATABASE_URL") or self.database.read_url or None

    @property
    def admin_token(self) -> str | None:
        return os.environ.get("SENDCOST_ADMIN_TOKEN") or None

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config (known: {known})")

    def sources_to_run(self, names: Sequence[str] | None = None) -> list[SourceConfig]:
        """The sources named (ConfigError for a name not in the config), or without names
        every enabled one: what ``sendcost collect`` and the schedule run."""
        if names:
            return [self.source(n) for n in names]
        return [s for s in self.sources if s.enabled]

    def amounts_for(self, corridor: CorridorConfig, currency: str) -> tuple[Decimal, ...]:
        if corridor.amounts:
            return corridor.amounts
        if currency in DEFAULT_AMOUNTS:
            return DEFAULT_AMOUNTS[currency]
        raise ConfigError(
            f"corridors[{corridor.source}-{corridor.destination}].amounts: no default local "
            f"amounts for {currency}; set amounts = [<USD 200 equiv>, <USD 500 equiv>]"
        )


def _expect(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    # bool is an int in Python: never accept true for a number.
    if isinstance(value, bool) and kind is not bool and bool not in (
        kind if isinstance(kind, tuple) else (kind,)
    ):
        raise ConfigError(f"{where}.{key}: expected {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def _positive(value: float, key: str) -> float:
    if value <= 0:
        raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    return value


def _at_least(value: int, minimum: int, key: str) -> int:
    if value < minimum:
        raise ConfigError(f"{key}: expected an integer ≥ {minimum}, got {value!r}")
    return value


def _country(value: Any, key: str) -> str:
    from corridors.reference import country_code

    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected an ISO 3166 country code, got {value!r}")
    code = country_code(value)
    if code is None:
        raise ConfigError(f"{key}: {value!r} is not an ISO 3166 alpha-2 or alpha-3 country code")
    return code


def _schedule(value: str, key: str) -> str:
    if value.startswith("interval:"):
        try:
            seconds = float(value.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"{key}: expected interval:SECONDS, got {value!r}") from None
        _positive(seconds, key)
        return value
    if len(value.split()) == 5:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ConfigError(f"{key}: {value!r} is not a valid crontab: {exc}") from None
        return value
    raise ConfigError(f"{key}: expected 'interval:SECONDS' or a 5-field crontab like "
                      f"'0 6 * * *', got {value!r}")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


#: ${NAME} in a source header's value: the environment variable NAME.
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers sendcost sets itself on every request (or aiohttp does), which a source's
#: headers may not replace: the User-Agent names sendcost, the rest make conditional and
#: compressed requests work.
_OWN_HEADERS = frozenset({"user-agent", "if-none-match", "if-modified-since",
                          "accept-encoding", "host", "content-length"})


def _headers(value: Mapping[str, Any], key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, v in value.items():
        if not _HEADER_NAME.match(name):
            raise ConfigError(f"{key}: {name!r} is not a valid header name")
        if name.lower() in _OWN_HEADERS:
            raise ConfigError(f"{key}.{name}: sendcost sets this header itself")
        if not isinstance(v, str):
            raise ConfigError(f"{key}.{name}: expected a string, got {v!r}")
        if "\n" in v or "\r" in v:
            raise ConfigError(f"{key}.{name}: a header value cannot hold a line break")
        if "${" in _ENV_REF.sub("", v):
            raise ConfigError(f"{key}.{name}: expected ${{NAME}} (an environment variable: "
                              f"letters, digits, _), got {v!r}")
        out[name] = v
    return out


def _oauth(value: Mapping[str, Any], headers: Mapping[str, Any], key: str) -> dict[str, str]:
    """OAuth 2.0 client credentials: token_url (http(s)), client_id and client_secret
    (required; the secret only as ${NAME}, never written in the file), scope."""
    if not value:
        return {}
    _unknown_keys(value, {"token_url", "client_id", "client_secret", "scope"}, key)
    for required in ("token_url", "client_id", "client_secret"):
        if not isinstance(value.get(required), str) or not value[required]:
            raise ConfigError(f"{key}.{required}: required (a string)")
    if not isinstance(value.get("scope", ""), str):
        raise ConfigError(f"{key}.scope: expected a string, got {value['scope']!r}")
    _source_url(_ENV_REF.sub("x", value["token_url"]), "oauth", f"{key}.token_url")
    if not _ENV_REF.fullmatch(value["client_secret"]):
        raise ConfigError(f"{key}.client_secret: expected ${{NAME}} (the environment "
                          "variable that holds it): a secret stays out of the config file")
    if any(str(h).lower() == "authorization" for h in headers):
        raise ConfigError(f"{key}: the token goes in the Authorization header; the source's "
                          "headers cannot set it too")
    return dict(value)


def _source_url(value: str, kind: str, key: str) -> str:
    """An absolute http(s) URL (for ``rpw``, a local path too). An operator_json URL is a
    template: its ``{placeholders}`` are checked by the adapter, and pass here."""
    local = kind in ("rpw", "postal_tariff")
    if local and value.strip() and not _SCHEME.match(value):
        return value  # a local file, relative to config.toml
    expected = "an absolute http(s) URL" + (" or a local path" if local else "")
    try:
        parts = urlsplit(value)
        # Lower case, as the rpw adapter tells a URL from a path.
        ok = value.startswith(("http://", "https://")) and bool(parts.hostname)
    except ValueError:  # "http://[::1" and the like
        ok = False
    if not ok or any(ch.isspace() for ch in value):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    if "${" in _ENV_REF.sub("", value):
        raise ConfigError(f"{key}: expected ${{NAME}} (an environment variable: letters, "
                          f"digits, _), got {value!r}")
    return value


def _sandbox(table: Mapping[str, Any]) -> SandboxConfig:
    _unknown_keys(table, {"host", "port"}, "sandbox")
    host = _expect(table, "host", str, "sandbox", DEFAULT_SANDBOX_HOST).strip()
    if not host or any(ch.isspace() or ch in "/?#@" for ch in host):
        raise ConfigError(f"sandbox.host: expected a host name or IP address, got {host!r}")
    port = _expect(table, "port", int, "sandbox", DEFAULT_SANDBOX_PORT)
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"sandbox.port: expected a port 1-65535, got {port!r}")
    return SandboxConfig(host=host, port=port)


def default_data_dir() -> Path:
    env = os.environ.get("SENDCOST_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sendcost"


def parse_config(raw: Mapping[str, Any], path: Path | None = None) -> Config:
    """Build a Config from a parsed TOML document, validating every key."""
    _unknown_keys(raw, {"service", "database", "api", "collection", "bulletin", "import",
                        "indicators", "sandbox", "storage", "corridors", "sources",
                        "alerts"}, "config")
    svc = _expect(raw, "service", dict, "config", {})
    _unknown_keys(svc, {"data_dir", "import_rpw_on_empty", "log_level"}, "service")
    data_dir_raw = _expect(svc, "data_dir", str, "service", "")
    if "\x00" in data_dir_raw:  # TOML's \u0000: no file system takes it in a path
        raise ConfigError(f"service.data_dir: a path cannot hold a NUL character, got "
                          f"{data_dir_raw!r}")
    if os.environ.get("SENDCOST_DATA_DIR") or not data_dir_raw:
        data_dir = default_data_dir()
    else:
        data_dir = Path(data_dir_raw).expanduser()
        if not data_dir.is_absolute() and path is not None:
            data_dir = path.parent / data_dir
    log_level = _expect(svc, "log_level", str, "service", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"service.log_level: expected DEBUG, INFO, WARNING or ERROR, "
                          f"got {log_level!r}")

    db = _expect(raw, "database", dict, "config", {})
    _unknown_keys(db, {"url", "read_url", "pool_min", "pool_max", "connect_timeout_seconds"},
                  "database")
    database = DatabaseConfig(
        url=_expect(db, "url", str, "database", ""),
        read_url=_expect(db, "read_url", str, "database", ""),
        pool_min=_expect(db, "pool_min", int, "database", 1),
        pool_max=_expect(db, "pool_max", int, "database", 10),
        connect_timeout_seconds=float(_expect(db, "connect_timeout_seconds", (int, float),
                                              "database", 10.0)),
    )
    if database.pool_min < 0 or database.pool_max < max(1, database.pool_min):
        raise ConfigError("database.pool_max: expected an integer ≥ pool_min and ≥ 1")

    api_raw = _expect(raw, "api", dict, "config", {})
    _unknown_keys(api_raw, {"host", "port", "rate_limit_per_minute", "public_url"}, "api")
    api = ApiConfig(
        host=_expect(api_raw, "host", str, "api", "127.0.0.1"),
        port=_expect(api_raw, "port", int, "api", 8080),
        rate_limit_per_minute=_at_least(_expect(api_raw, "rate_limit_per_minute", int, "api",
                                                600), 0, "api.rate_limit_per_minute"),
        public_url=_expect(api_raw, "public_url", str, "api", ""),
    )
    if not 0 <= api.port <= 65535:
        raise ConfigError(f"api.port: expected 0-65535, got {api.port}")

    col = _expect(raw, "collection", dict, "config", {})
    defaults = CollectionConfig()
    allowed = set(CollectionConfig.__dataclass_fields__)
    _unknown_keys(col, allowed, "collection")
    values: dict[str, Any] = {}
    for name in allowed:
        default = getattr(defaults, name)
        kind: type | tuple[type, ...] = (
            (int, float) if isinstance(default, float) else type(default))
        v = _expect(col, name, kind, "collection", default)
        values[name] = float(v) if isinstance(default, float) else v
    collection = CollectionConfig(**values)
    for name in ("timeout_seconds", "backoff_base_seconds", "reference_max_age_hours",
                 "max_rate_deviation", "backoff_max_seconds", "circuit_cooldown_seconds",
                 "retry_after_max_seconds", "max_margin_disagreement_pct",
                 "postal_tariff_max_age_days"):
        _positive(getattr(collection, name), f"collection.{name}")
    _at_least(collection.max_retries, 0, "collection.max_retries")
    _at_least(collection.circuit_failures, 1, "collection.circuit_failures")

    bul = _expect(raw, "bulletin", dict, "config", {})
    _unknown_keys(bul, {"publish_hour_utc", "enabled", "minimum"}, "bulletin")
    mini = _expect(bul, "minimum", dict, "bulletin", {})
    d = MinimumBase()
    _unknown_keys(mini, {"global_corridors", "global_corridor_coverage",
                         "providers_per_corridor", "group_services", "group_providers"},
                  "bulletin.minimum")
    coverage = float(_expect(mini, "global_corridor_coverage", (int, float), "bulletin.minimum",
                             d.global_corridor_coverage))
    if not 0 <= coverage <= 1:
        raise ConfigError("bulletin.minimum.global_corridor_coverage: expected a share "
                          f"between 0 and 1, got {coverage!r}")
    minimum = MinimumBase(
        global_corridors=_at_least(_expect(mini, "global_corridors", int, "bulletin.minimum",
                                           d.global_corridors), 1,
                                   "bulletin.minimum.global_corridors"),
        global_corridor_coverage=coverage,
        providers_per_corridor=_at_least(
            _expect(mini, "providers_per_corridor", int, "bulletin.minimum",
                    d.providers_per_corridor), 1, "bulletin.minimum.providers_per_corridor"),
        group_services=_at_least(_expect(mini, "group_services", int, "bulletin.minimum",
                                         d.group_services), 1,
                                 "bulletin.minimum.group_services"),
        group_providers=_at_least(_expect(mini, "group_providers", int, "bulletin.minimum",
                                          d.group_providers), 1,
                                  "bulletin.minimum.group_providers"),
    )
    bulletin = BulletinConfig(
        publish_hour_utc=_expect(bul, "publish_hour_utc", int, "bulletin", 6),
        enabled=_expect(bul, "enabled", bool, "bulletin", True),
        minimum=minimum,
    )
    if not 0 <= bulletin.publish_hour_utc <= 23:
        raise ConfigError("bulletin.publish_hour_utc: expected an hour 0-23")

    imp = _expect(raw, "import", dict, "config", {})
    _unknown_keys(imp, {"max_rejected_share", "rpw_url", "rpw_sha256"}, "import")
    share = _expect(imp, "max_rejected_share", (int, float), "import",
                    DEFAULT_MAX_REJECTED_SHARE)
    if isinstance(share, bool) or not 0 <= share <= 1:
        raise ConfigError(f"import.max_rejected_share: expected a share from 0 to 1 (0.03 is "
                          f"3%), got {share!r}")
    rpw_url = _expect(imp, "rpw_url", str, "import", DEFAULT_RPW_URL)
    if urlsplit(rpw_url).scheme not in ("http", "https") or not urlsplit(rpw_url).netloc:
        raise ConfigError(f"import.rpw_url: expected an http(s) URL, got {rpw_url!r}")
    rpw_sha256 = _expect(imp, "rpw_sha256", str, "import", "").strip().lower()
    if rpw_sha256 and not re.fullmatch(r"[0-9a-f]{64}", rpw_sha256):
        raise ConfigError("import.rpw_sha256: expected 64 hexadecimal digits (or \"\" for no "
                          f"check), got {rpw_sha256!r}")
    imports = ImportConfig(max_rejected_share=float(share), rpw_url=rpw_url,
                           rpw_sha256=rpw_sha256)

    ind = _expect(raw, "indicators", dict, "config", {})
    _unknown_keys(ind, {"weighted_min_volume_share"}, "indicators")
    min_volume = _expect(ind, "weighted_min_volume_share", (int, float), "indicators",
                         DEFAULT_WEIGHTED_MIN_VOLUME_SHARE)
    if not 0 <= min_volume <= 1:
        raise ConfigError("indicators.weighted_min_volume_share: expected a share from 0 to 1 "
                          f"(0.75 is 75%), got {min_volume!r}")
    indicators = IndicatorsConfig(weighted_min_volume_share=float(min_volume))

    sandbox = _sandbox(_expect(raw, "sandbox", dict, "config", {}))

    sto = _expect(raw, "storage", dict, "config", {})
    _unknown_keys(sto, {"partitions_ahead_months", "raw_retention_days"}, "storage")
    storage = StorageConfig(
        partitions_ahead_months=_at_least(
            _expect(sto, "partitions_ahead_months", int, "storage", 3), 0,
            "storage.partitions_ahead_months"),
        raw_retention_days=_at_least(_expect(sto, "raw_retention_days", int, "storage", 0), 0,
                                     "storage.raw_retention_days"),
    )

    corridors = []
    for i, c in enumerate(_expect(raw, "corridors", list, "config", [])):
        where = f"corridors[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(f"{where}: expected a table with from and to")
        _unknown_keys(c, {"from", "to", "amounts"}, where)
        if "from" not in c or "to" not in c:
            raise ConfigError(f"{where}: expected keys from and to (ISO country codes)")
        amounts = c.get("amounts")
        amts = None
        if amounts is not None:
            if (not isinstance(amounts, list) or not amounts
                    or not all(isinstance(a, int | float) and not isinstance(a, bool) and a > 0
                               for a in amounts)):
                raise ConfigError(f"{where}.amounts: expected a list of positive amounts in "
                                  f"the sending currency, got {amounts!r}")
            amts = tuple(Decimal(str(a)) for a in amounts)
        corridors.append(CorridorConfig(_country(c["from"], f"{where}.from"),
                                        _country(c["to"], f"{where}.to"), amts))

    sources = []
    seen: set[str] = set()
    for i, s in enumerate(_expect(raw, "sources", list, "config", [])):
        where = f"sources[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(f"{where}: expected a table")
        fields = {"name", "kind", "url", "enabled", "schedule", "jitter_seconds",
                  "max_concurrency", "requests_per_second", "options", "headers", "oauth",
                  "timeout_seconds"}
        _unknown_keys(s, fields, where)
        for required in ("name", "kind", "url"):
            if required not in s:
                raise ConfigError(f"{where}.{required}: required")
        name = _expect(s, "name", str, where, "")
        if name in seen:
            raise ConfigError(f"{where}.name: duplicate source name {name!r}")
        seen.add(name)
        kind_ = _expect(s, "kind", str, where, "")
        if kind_ not in SOURCE_KINDS:
            raise ConfigError(f"{where}.kind: expected one of {', '.join(sorted(SOURCE_KINDS))}, "
                              f"got {kind_!r}")
        sources.append(SourceConfig(
            name=name,
            kind=kind_,
            url=_source_url(_expect(s, "url", str, where, ""), kind_, f"{where}.url"),
            enabled=_expect(s, "enabled", bool, where, True),
            schedule=_schedule(_expect(s, "schedule", str, where, "interval:3600"),
                               f"{where}.schedule"),
            jitter_seconds=_at_least(_expect(s, "jitter_seconds", int, where, 60), 0,
                                     f"{where}.jitter_seconds"),
            max_concurrency=_at_least(_expect(s, "max_concurrency", int, where, 4), 1,
                                      f"{where}.max_concurrency"),
            requests_per_second=float(_positive(
                _expect(s, "requests_per_second", (int, float), where, 5.0),
                f"{where}.requests_per_second")),
            options=_expect(s, "options", dict, where, {}),
            headers=_headers(_expect(s, "headers", dict, where, {}), f"{where}.headers"),
            oauth=_oauth(_expect(s, "oauth", dict, where, {}), s.get("headers") or {},
                         f"{where}.oauth"),
            timeout_seconds=(None if "timeout_seconds" not in s else float(_positive(
                _expect(s, "timeout_seconds", (int, float), where, None),
                f"{where}.timeout_seconds"))),
        ))

    return Config(
        data_dir=data_dir,
        import_rpw_on_empty=_expect(svc, "import_rpw_on_empty", bool, "service", True),
        log_level=log_level,
        database=database,
        api=api,
        collection=collection,
        bulletin=bulletin,
        imports=imports,
        indicators=indicators,
        sandbox=sandbox,
        storage=storage,
        alerts=_alerts(_expect(raw, "alerts", dict, "config", {})),
        corridors=tuple(corridors),
        sources=tuple(sources),
        path=path,
    )


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--config, else $SENDCOST_CONFIG, else ./config.toml, else none (built-in defaults)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SENDCOST_CONFIG")
    if env:
        return Path(env)
    here = Path("config.toml")
    return here if here.is_file() else None


def not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """Where bytes that are not UTF-8 are (TOML is UTF-8): offset, line and column."""
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    bad = " ".join(f"0x{b:02x}" for b in data[exc.start:exc.end])
    return (f"not UTF-8 text, as TOML must be: {bad} at byte offset {exc.start} "
            f"(line {line}, column {column}): {exc.reason}")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    found = find_config_path(path)
    if found is None:
        return parse_config({})
    try:
        with open(found, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{found}: config file not found") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{found}: {not_utf8(data, exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{found}: not valid TOML: {exc}") from None
    try:
        return parse_config(raw, found.resolve())
    except ConfigError as exc:
        raise ConfigError(f"{found}: {exc}") from None
