"""Emulated upstreams on loopback, for the quick start, the tests and the benchmark.

One aiohttp app (``Sandbox``) serves every source kind sendcost collects from, with prices
drawn from the real RPW data. Its rooms:

* ``collector.sandbox.market``: the market model — operators, their fees and margins per
  firm type, and mid-market rates read from RPW's interbank rates;
* ``collector.sandbox.upstreams``: the emulated upstreams, each answering in its own format
  (operator quote APIs, a comparison feed, postal tariffs, ECB and JSON rates, RPW's file);
* ``collector.sandbox.faults``: the knobs that make them hostile, and the middleware that
  applies them;
* ``collector.sandbox.server``: the app that serves them all and logs what it served;
* ``collector.sandbox.profile``: configs that point the collectors at a sandbox.

It emulates upstreams; it imports nothing from later stages.
"""

from __future__ import annotations

from collector.sandbox.faults import BAD_KINDS, Faults, expected_rejection
from collector.sandbox.market import PEGS, Market, Operator, market, operators
from collector.sandbox.profile import (
    OPERATOR_FIELDS,
    OPERATOR_LABELS,
    PROFILE_OPERATORS,
    PROFILE_POSTS,
    corridor_list,
    corridors_config,
    emulated_profile,
    nominal,
    sources_config,
    toml_profile,
)
from collector.sandbox.server import SANDBOX, Sandbox
from collector.sandbox.upstreams import last_concertation

__all__ = ["BAD_KINDS", "OPERATOR_FIELDS", "OPERATOR_LABELS", "PEGS", "PROFILE_OPERATORS",
           "PROFILE_POSTS", "SANDBOX", "Faults", "Market", "Operator", "Sandbox",
           "corridor_list", "corridors_config", "emulated_profile", "expected_rejection",
           "last_concertation", "market", "nominal", "operators", "sources_config",
           "toml_profile"]
