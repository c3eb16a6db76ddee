"""The registry of source kinds: kind → adapter (one async signature, ``collector.model.
Adapter``) and kind → options check. ``config.toml``'s ``[[sources]]`` pick a kind by name."""

from __future__ import annotations

from collections.abc import Callable

from collector import (
    comparison,
    ecb_rates,
    json_rates,
    operator_json,
    postal_tariff,
    rpw_source,
)
from collector.context import Adapter
from corridors.config import SOURCE_KINDS, Config, SourceConfig
from corridors.errors import ConfigError

REGISTRY: dict[str, Adapter] = {
    "operator_json": operator_json.collect,
    "comparison": comparison.collect,
    "postal_tariff": postal_tariff.collect,
    "ecb_rates": ecb_rates.collect,
    "json_rates": json_rates.collect,
    "rpw": rpw_source.collect,
}

OPTION_CHECKS: dict[str, Callable[[SourceConfig], None]] = {
    "operator_json": operator_json.check_options,
    "comparison": comparison.check_options,
    "postal_tariff": postal_tariff.check_options,
    "ecb_rates": ecb_rates.check_options,
    "json_rates": json_rates.check_options,
    "rpw": rpw_source.check_options,
}

assert set(REGISTRY) == set(OPTION_CHECKS) == SOURCE_KINDS


def check_sources(config: Config) -> None:
    """Raise ConfigError naming the source and key for any bad ``options``, or an enabled
    source header's environment variable that is not set.

    Prefixed with the config file, as ``corridors.config.load_config`` prefixes the errors
    it finds ("config.toml: sources[x].options.fields: ...").
    """
    for source in config.sources:
        try:
            OPTION_CHECKS[source.kind](source)
            if source.enabled:  # a disabled one is checked when it is run (Collector.run)
                source.request_headers()
        except ConfigError as exc:
            if config.path is None:
                raise
            raise ConfigError(f"{config.path}: {exc}") from None
