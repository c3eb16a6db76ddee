"""config.toml: the shipped file loads, every bad value is named with what was expected."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from corridors.config import load_config, parse_config
from corridors.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.api.port == 8080
    assert any(c.source == "USA" and c.destination == "MEX" for c in config.corridors)
    assert config.collection.timeout_seconds > 0


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
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:  # type: ignore[type-arg]
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
