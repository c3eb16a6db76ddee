"""config.toml: the shipped file loads, every bad value is named with what was expected."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from collector.options import COMMON, Kind
from corridors.config import load_config, parse_config
from corridors.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.api.port == 8080
    assert any(c.source == "USA" and c.destination == "MEX" for c in config.corridors)
    assert config.collection.timeout_seconds > 0


def test_the_shipped_profile_is_real_public_upstreams() -> None:
    """config.toml's sources are real upstreams that need no account (none names a ${NAME}),
    none at the sandbox; rate sources cover every currency of its corridors; Wise is asked
    politely (one request at a time, a handful of times a day)."""
    from collector.kinds import is_sandbox_url
    from collector.sources import check_sources
    from corridors.reference import country

    config = load_config(ROOT / "config.toml")
    check_sources(config)
    # The real posts' tariffs are bundled files, transcribed from their pages:
    # tests/test_postal_tariffs.py.
    tariffs = [s for s in config.sources if s.kind == "postal_tariff"]
    assert len(tariffs) >= 3 and all(s.enabled for s in tariffs)
    assert all(s.url.startswith("corridors/data/postal_tariffs/") for s in tariffs)
    config = dataclasses.replace(config, sources=tuple(
        s for s in config.sources if s.kind != "postal_tariff"))
    by_name = {s.name: s for s in config.sources}
    assert {s.kind for s in config.sources} == {"comparison", "ecb_rates", "json_rates", "rpw"}
    for s in config.sources:
        assert s.enabled and s.url.startswith("https://"), s
        assert not is_sandbox_url(s.url, config.sandbox), s
        assert not s.headers and not s.oauth and "${" not in s.url, s
        assert s.options.get("licence"), f"{s.name}: the licence kept with its responses"
    wise = by_name["wise-comparison"]
    assert (wise.kind, wise.url) == ("comparison", "https://api.wise.com/v4/comparisons/")
    interval = float(wise.schedule.removeprefix("interval:"))
    requests_a_day = len(config.corridors) * 2 * 86400 / interval
    assert wise.max_concurrency == 1 and wise.requests_per_second <= 1
    assert requests_a_day <= 100, requests_a_day
    assert by_name["ecb-daily"].url == (
        "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml")
    er = by_name["open-er-api"]
    assert er.url == "https://open.er-api.com/v6/latest/USD"
    assert "exchangerate-api.com" in er.options["licence"]  # the attribution its terms ask
    assert float(er.schedule.removeprefix("interval:")) >= 3600  # at most hourly, as asked
    rpw = by_name["worldbank-rpw"]
    assert rpw.url == config.imports.rpw_url and rpw.schedule == "0 3 1 1,4,7,10 *"
    # sendcost names itself and where to reach its maintainers.
    assert re.fullmatch(r"sendcost/\S+ \(\+https://\S+\)", config.collection.user_agent)
    # The ECB publishes none of XOF, SAR, PKR: the second rate source is there for them.
    ecb = set((ROOT / "tests/fixtures/collect/real/ecb-eurofxref-daily-2025-05-09.xml")
              .read_text(encoding="utf-8").split("currency='")[1:])
    ecb_codes = {c[:3] for c in ecb} | {"EUR"}
    currencies = {country(code).currency  # type: ignore[union-attr]
                  for c in config.corridors for code in (c.source, c.destination)}
    assert currencies - ecb_codes == {"XOF", "SAR", "PKR", "RSD"}
    assert config.sandbox.base_url == "http://127.0.0.1:8765"


def test_the_sandbox_address_is_configurable() -> None:
    config = parse_config({"sandbox": {"host": "::1", "port": 9001}})
    assert (config.sandbox.host, config.sandbox.port) == ("::1", 9001)
    assert config.sandbox.base_url == "http://[::1]:9001"
    assert parse_config({}).sandbox.base_url == "http://127.0.0.1:8765"


def test_defaults_without_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SENDCOST_CONFIG", raising=False)
    monkeypatch.setenv("SENDCOST_DATA_DIR", str(tmp_path / "d"))
    config = load_config()
    assert config.data_dir == tmp_path / "d"
    assert config.corridors == ()


def test_alpha2_codes_become_alpha3() -> None:
    config = parse_config({"corridors": [{"from": "us", "to": "MX", "amounts": [200, 500.5]}]})
    assert config.corridors[0].source == "USA"
    assert config.corridors[0].destination == "MEX"
    assert config.corridors[0].amounts == (Decimal("200"), Decimal("500.5"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"api": {"port": "80"}}, "api.port: expected an integer, got '80'"),
        ({"api": {"port": 70000}}, "api.port: expected 0-65535"),
        ({"api": {"prot": 1}}, "api: unknown key(s) prot"),
        ({"corridors": [{"from": "USA", "to": "ZZZ"}]}, "corridors[0].to: 'ZZZ' is not an ISO"),
        ({"corridors": [{"from": "USA"}]}, "corridors[0]: expected keys from and to"),
        ({"corridors": [{"from": "USA", "to": "MEX", "amounts": [-1]}]},
         "corridors[0].amounts: expected a list of positive amounts"),
        ({"sources": [{"name": "a", "kind": "ftp", "url": "x"}]},
         "sources[0].kind: expected one of"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "x", "schedule": "often"}]},
         "sources[0].schedule: expected 'interval:SECONDS' or a 5-field crontab"),
        ({"collection": {"timeout_seconds": 0}}, "collection.timeout_seconds: expected a positive"),
        ({"collection": {"max_retries": True}}, "collection.max_retries: expected an integer"),
        ({"service": {"log_level": "LOUD"}}, "service.log_level: expected DEBUG"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "x", "schedule": "a b c d e"}]},
         "sources[0].schedule: 'a b c d e' is not a valid crontab"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "x", "max_concurrency": 0}]},
         "sources[0].max_concurrency: expected an integer ≥ 1, got 0"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "x", "jitter_seconds": -5}]},
         "sources[0].jitter_seconds: expected an integer ≥ 0"),
        ({"collection": {"max_retries": -1}}, "collection.max_retries: expected an integer ≥ 0"),
        ({"collection": {"circuit_failures": 0}}, "collection.circuit_failures: expected an"),
        ({"sources": [{"name": "a", "kind": "comparison", "url": "not a url"}]},
         "sources[0].url: expected an absolute http(s) URL, got 'not a url'"),
        ({"sources": [{"name": "a", "kind": "json_rates", "url": "ftp://a/x"}]},
         "sources[0].url: expected an absolute http(s) URL, got 'ftp://a/x'"),
        ({"sources": [{"name": "a", "kind": "ecb_rates", "url": "http://"}]},
         "sources[0].url: expected an absolute http(s) URL"),
        # A postal tariff may be a local file (a bundled tariff), but not another scheme.
        ({"sources": [{"name": "a", "kind": "postal_tariff", "url": "ftp://a/tariff.json"}]},
         "sources[0].url: expected an absolute http(s) URL or a local path"),
        ({"sources": [{"name": "a", "kind": "operator_json",
                       "url": "http://a b/quote?amount={amount}"}]},
         "sources[0].url: expected an absolute http(s) URL"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "ftp://a/x"}]},
         "sources[0].url: expected an absolute http(s) URL or a local path, got 'ftp://a/x'"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": ""}]},
         "sources[0].url: expected an absolute http(s) URL or a local path, got ''"),
        ({"api": {"rate_limit_per_minute": -1}},
         "api.rate_limit_per_minute: expected an integer ≥ 0"),
        ({"sandbox": {"port": 0}}, "sandbox.port: expected a port 1-65535, got 0"),
        ({"sandbox": {"port": "8765"}}, "sandbox.port: expected an integer, got '8765'"),
        ({"sandbox": {"port": True}}, "sandbox.port: expected an integer, got True"),
        ({"sandbox": {"host": ""}}, "sandbox.host: expected a host name or IP address"),
        ({"sandbox": {"host": "http://x/"}}, "sandbox.host: expected a host name or IP"),
        ({"sandbox": {"hots": "x"}}, "sandbox: unknown key(s) hots"),
        ({"sandbox": 8765}, "config.sandbox: expected a table, got 8765"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "x", "timeout_seconds": 0}]},
         "sources[0].timeout_seconds: expected a positive"),
        ({"sources": [{"name": "a", "kind": "rpw", "url": "x", "timeout_seconds": "9"}]},
         "sources[0].timeout_seconds: expected an integer or a number, got '9'"),
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert message in str(err.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[api\nport = 1")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        load_config(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_source_urls_and_templates_are_accepted() -> None:
    config = parse_config({"sources": [
        {"name": "op", "kind": "operator_json",
         "url": "https://api.example.com/v1/quote?from={source2}&to={destination2}"
                "&amount={amount}&currency={send_currency}"},
        {"name": "by-host", "kind": "operator_json", "url": "https://{corridor}.example.com/q"},
        {"name": "ecb", "kind": "ecb_rates", "url": "http://127.0.0.1:8765/ecb/daily.xml"},
        {"name": "rpw-file", "kind": "rpw", "url": "data/rpw_quotes.csv.gz"},
        {"name": "rpw-url", "kind": "rpw", "url": "https://example.org/rpw.csv"},
    ]})
    assert [s.url for s in config.sources][-1] == "https://example.org/rpw.csv"


def minimal_options(kind: str) -> dict[str, Any]:
    """The options a source of ``kind`` cannot do without."""
    options: dict[str, dict[str, Any]] = {
        "operator_json": {"firm": "Acme", "fields": {"fee": "quote.fee"}},
        "postal_tariff": {"format": "json"}}
    return options.get(kind, {})


#: A value of each type a config.toml can hold.
VALUES: list[Any] = [3, 2.5, True, "x", ["x"], {"a": "b"}, [1], {"a": 1}]


def declared_options() -> list[tuple[str, str, Kind]]:
    from collector import comparison, ecb_rates, json_rates, operator_json, postal_tariff
    from collector.sources import OPTION_CHECKS

    declared = {"comparison": comparison.OPTIONS, "operator_json": operator_json.OPTIONS,
                "postal_tariff": postal_tariff.OPTIONS, "ecb_rates": ecb_rates.OPTIONS,
                "json_rates": json_rates.OPTIONS, "rpw": {}}
    assert set(declared) == set(OPTION_CHECKS)
    return [(kind, key, k) for kind, options in declared.items()
            for key, k in {**COMMON, **options}.items()]


@pytest.mark.parametrize(("kind", "key", "expected"), declared_options(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_option_is_type_checked(kind: str, key: str, expected: Kind) -> None:
    """Each option every kind declares fails the start-up check when given a value of
    another type, naming the source and key — never at the first run."""
    from collector.sources import check_sources

    wrong = [v for v in VALUES if not expected.test(v)]
    assert wrong
    for value in wrong:
        config = parse_config({"sources": [{
            "name": "s", "kind": kind, "url": "http://x/q",
            "options": minimal_options(kind) | {key: value}}]})
        with pytest.raises(ConfigError, match=re.escape(
                f"sources[s].options.{key}: expected {expected.name}, got {value!r}")):
            check_sources(config)


def test_a_licence_that_is_not_a_string_fails_at_start() -> None:
    from collector.sources import check_sources

    config = parse_config({"sources": [{"name": "ecb", "kind": "ecb_rates",
                                        "url": "http://x/e.xml", "options": {"licence": 3}}]})
    with pytest.raises(ConfigError, match=r"sources\[ecb\]\.options\.licence: expected a "
                                          r"string, got 3"):
        check_sources(config)
    for kind, options in [("comparison", {"provider_types": {"crypto": ["mto"]}}),
                          ("operator_json", {"firm": "A", "fields": {"fee": 1}}),
                          ("operator_json", {"firm": "A", "fields": {"fee": ""}}),
                          ("operator_json", {"firm": "A", "fields": {"fee": "f"},
                                             "labels": {"CARD": ["card"]}})]:
        config = parse_config({"sources": [{"name": "s", "kind": kind, "url": "http://x/",
                                            "options": options}]})
        with pytest.raises(ConfigError, match=r"sources\[s\]\.options\."):
            check_sources(config)


def test_option_errors_name_the_file(tmp_path: Path) -> None:
    """Like every other error in it, a bad option names the config file."""
    from collector.sources import check_sources

    bad = tmp_path / "bad.toml"
    bad.write_text('[[sources]]\nname = "x"\nkind = "operator_json"\n'
                   'url = "http://127.0.0.1:1/q?amount={amount}"\n'
                   'options.firm = "Acme"\noptions.fields = { fe = "fee", fee = "fee" }\n')
    config = load_config(bad)
    with pytest.raises(ConfigError) as err:
        check_sources(config)
    assert str(err.value).startswith(f"{bad.resolve()}: sources[x].options.fields: unknown "
                                     "field(s) fe")
    with pytest.raises(ConfigError) as err:
        check_sources(parse_config({"sources": [{"name": "x", "kind": "operator_json",
                                                 "url": "http://h/", "options": {}}]}))
    assert str(err.value).startswith("sources[x].options.")  # no file: no prefix


@pytest.mark.parametrize(("headers", "error"), [
    ({"Bad Name": "x"}, "sources[0].headers: 'Bad Name' is not a valid header name"),
    ({"User-Agent": "me"}, "sources[0].headers.User-Agent: sendcost sets this header itself"),
    ({"if-none-match": "*"}, "sources[0].headers.if-none-match: sendcost sets this header"),
    ({"X-Key": 3}, "sources[0].headers.X-Key: expected a string, got 3"),
    ({"X-Key": "a\r\nHost: evil"}, "sources[0].headers.X-Key: a header value cannot hold a "
                                   "line break"),
    ({"X-Key": "${not-a-name}"}, "sources[0].headers.X-Key: expected ${NAME}"),
    ({"X-Key": "Bearer ${TOKEN"}, "sources[0].headers.X-Key: expected ${NAME}"),
])
def test_bad_source_headers_fail_when_the_config_is_read(headers: dict[str, Any],
                                                         error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse_config({"sources": [{"name": "s", "kind": "ecb_rates", "url": "http://x/e.xml",
                                   "headers": headers}]})


def test_source_headers_read_their_variables_when_the_source_is_to_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """${NAME} is filled in from the environment: checked at start for an enabled source,
    and only when it runs for a disabled one (a token not yet issued does not stop the
    service)."""
    from collector.sources import check_sources

    monkeypatch.delenv("SENDCOST_KEY", raising=False)
    raw = {"name": "wise", "kind": "comparison", "url": "https://api.example/v4/comparisons",
           "headers": {"Authorization": "Bearer ${SENDCOST_KEY}", "X-Ids": "${A}-${B}"}}
    config = parse_config({"sources": [raw]})
    [source] = config.sources
    assert source.headers == {"Authorization": "Bearer ${SENDCOST_KEY}", "X-Ids": "${A}-${B}"}
    assert source.request_headers({"SENDCOST_KEY": "k1", "A": "1", "B": "$2"}) == {
        "Authorization": "Bearer k1", "X-Ids": "1-$2"}
    with pytest.raises(ConfigError, match=re.escape(
            "sources[wise].headers.X-Ids: an environment variable it names (A, B) holds a "
            "line break")):
        source.request_headers({"SENDCOST_KEY": "k1", "A": "1", "B": "2\r\nHost: evil"})
    with pytest.raises(ConfigError, match=re.escape(
            "sources[wise].headers.Authorization: environment variable SENDCOST_KEY is not "
            "set")):
        check_sources(config)
    check_sources(parse_config({"sources": [raw | {"enabled": False}]}))
    monkeypatch.setenv("SENDCOST_KEY", "k2")
    monkeypatch.setenv("A", "a")
    monkeypatch.setenv("B", "b")
    check_sources(config)
    assert source.request_headers()["Authorization"] == "Bearer k2"
