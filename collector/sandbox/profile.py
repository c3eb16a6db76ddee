"""Configs that point the collectors at a sandbox: the ``[[sources]]`` and ``[[corridors]]``
tables of the emulated profile (``sendcost serve --sandbox``, ``sendcost sandbox
--print-config``) and of the tests and benchmarks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from collector.sandbox.market import market, operators
from corridors.config import DEFAULT_AMOUNTS
from corridors.reference import country

OPERATOR_FIELDS = {
    "fee": "quote.fee.amount", "applied_rate": "quote.exchangeRate",
    "received_amount": "quote.receiveAmount", "send_currency": "quote.sendCurrency",
    "receive_currency": "quote.receiveCurrency", "destination": "quote.destinationCountry",
    "delivery_hours": "quote.deliveryHours", "pay_in": "quote.payIn", "pay_out": "quote.payOut",
}
OPERATOR_LABELS = {"CARD": "card", "BANK": "bank_account", "CASH": "cash",
                   "ACCOUNT": "bank_account"}
OPERATOR_TEMPLATE = ("/operators/{n}/quote?source={{source}}&destination={{destination}}"
                     "&send_currency={{send_currency}}&receive_currency={{receive_currency}}"
                     "&amount={{amount}}")


def sources_config(base_url: str, *, operators_n: int = 10, posts: tuple[str, ...] = (),
                   schedule: str = "interval:900", json_rates: bool = False,
                   rpw: bool = False) -> list[dict[str, Any]]:
    """``[[sources]]`` tables (as parse_config takes them) for a sandbox at ``base_url``: the
    ECB rates, the comparison feed, the operators and ``posts``' tariffs; with ``json_rates``
    and ``rpw`` also the JSON rates and the RPW file, as config.toml's profile has them
    (tests and the benchmark collect quotes, not a whole RPW import)."""
    ops = operators(operators_n)
    out: list[dict[str, Any]] = [
        {"name": "sandbox-ecb", "kind": "ecb_rates", "url": f"{base_url}/ecb/eurofxref-daily.xml",
         "schedule": "interval:3600", "jitter_seconds": 5},
    ]
    if json_rates:
        out.append({"name": "sandbox-rates", "kind": "json_rates",
                    "url": f"{base_url}/rates/latest?base=USD", "schedule": "interval:3600",
                    "jitter_seconds": 5})
    out.append({"name": "sandbox-comparison", "kind": "comparison",
                "url": f"{base_url}/v4/comparisons", "schedule": schedule, "jitter_seconds": 5})
    for op in ops:
        out.append({
            "name": f"sandbox-op-{op.index}", "kind": "operator_json",
            "url": base_url + OPERATOR_TEMPLATE.format(n=op.index), "schedule": schedule,
            "jitter_seconds": 5,
            "options": {"firm": op.name, "firm_type": op.firm_type, "fields": OPERATOR_FIELDS,
                        "labels": OPERATOR_LABELS, "fee_deducted": False},
        })
    for post in posts:
        out.append({"name": f"sandbox-post-{post.lower()}", "kind": "postal_tariff",
                    "url": f"{base_url}/postal/{post}/tariff.json", "schedule": schedule,
                    "jitter_seconds": 5})
    if rpw:
        # RPW is quarterly: 03:00 UTC on the first day of each quarter, as in config.toml.
        out.append({"name": "sandbox-rpw", "kind": "rpw",
                    "url": f"{base_url}/rpw/rpw_quotes.csv.gz",
                    "schedule": "0 3 1 1,4,7,10 *", "jitter_seconds": 600})
    return out


def corridor_list(m: int) -> list[tuple[str, str]]:
    """``m`` corridors: RPW's, most services first; beyond those, RPW's sending countries
    paired with its receiving countries (for benchmarks wider than the survey)."""
    def priceable(s: str, d: str) -> bool:
        # The collector asks in the countries' currencies (ISO), which RPW's survey did not
        # always use (Costa Rica priced in USD): keep corridors the sandbox can price.
        cs, cd = country(s), country(d)
        return bool(cs and cd and cs.currency in market().usd_rates
                    and cd.currency in market().usd_rates)

    rpw = [c for c in market().corridors if priceable(*c)]
    out = list(rpw[:m])
    if len(out) < m:
        senders = sorted({s for s, _ in rpw})
        receivers = sorted({d for _, d in rpw})
        have = set(out)
        for d in receivers:
            for s in senders:
                if len(out) >= m:
                    return out
                if s != d and (s, d) not in have and priceable(s, d):
                    out.append((s, d))
                    have.add((s, d))
    return out


def corridors_config(m: int) -> list[dict[str, Any]]:
    """``corridor_list(m)`` as ``[[corridors]]`` tables; a sending currency without RPW's
    fixed local amounts gets USD 200/500 at the sandbox's rate, rounded to 2 digits."""
    out = []
    for s, d in corridor_list(m):
        table: dict[str, Any] = {"from": s, "to": d}
        cur = (country(s) or country("USA")).currency  # type: ignore[union-attr]
        if cur not in DEFAULT_AMOUNTS:
            rate = market().usd_rates.get(cur or "", 1.0)
            table["amounts"] = [float(f"{200 * rate:.2g}"), float(f"{500 * rate:.2g}")]
        out.append(table)
    return out


#: How many operators the emulated profile collects from unless told (``sendcost serve
#: --sandbox``, ``sendcost sandbox --print-config``).
PROFILE_OPERATORS = 3
#: The posts of the emulated profile: one tariff as JSON, one as CSV (both formats used).
PROFILE_POSTS: tuple[tuple[str, str], ...] = (("FRA", "json"), ("DEU", "csv"))


def emulated_profile(base_url: str, *, operators_n: int = PROFILE_OPERATORS,
                     posts: tuple[tuple[str, str], ...] = PROFILE_POSTS
                     ) -> list[dict[str, Any]]:
    """The emulated profile: ``[[sources]]`` tables (as parse_config takes them) for every
    kind of source, all at the sandbox at ``base_url``. ``sendcost serve --sandbox`` collects
    from these instead of the config's sources, and ``sendcost sandbox --print-config``
    prints them. ``posts``: (country, "json" or "csv") of the postal tariffs."""
    out: list[dict[str, Any]] = [
        {"name": "sandbox-ecb", "kind": "ecb_rates", "url": f"{base_url}/ecb/eurofxref-daily.xml",
         "schedule": "interval:3600", "jitter_seconds": 5},
        {"name": "sandbox-rates", "kind": "json_rates",
         "url": f"{base_url}/rates/latest?base=USD", "schedule": "interval:3600",
         "jitter_seconds": 5},
        {"name": "sandbox-comparison", "kind": "comparison", "url": f"{base_url}/v4/comparisons",
         "schedule": "interval:900", "jitter_seconds": 30,
         "options": {"caveats": ["estimate", "bank_transfer_only"]}},
    ]
    for op in operators(operators_n):
        out.append({
            "name": f"sandbox-op-{op.index}", "kind": "operator_json",
            "url": base_url + OPERATOR_TEMPLATE.format(n=op.index), "schedule": "interval:900",
            "jitter_seconds": 30,
            "options": {"firm": op.name, "firm_type": op.firm_type, "fields": OPERATOR_FIELDS,
                        "labels": OPERATOR_LABELS, "fee_deducted": False},
        })
    for code, fmt in posts:
        table: dict[str, Any] = {
            "name": f"sandbox-post-{code.lower()}", "kind": "postal_tariff",
            "url": f"{base_url}/postal/{code}/tariff.{fmt}", "schedule": "0 5 * * *",
            "jitter_seconds": 300}
        c = country(code)
        if fmt == "csv" and c is not None:  # a CSV tariff does not say whose it is
            table["options"] = {"operator": f"Post of {c.name}", "country": c.alpha3,
                                "currency": c.currency}
        out.append(table)
    # RPW is quarterly: 03:00 UTC on the first day of each quarter.
    out.append({"name": "sandbox-rpw", "kind": "rpw", "url": f"{base_url}/rpw/rpw_quotes.csv.gz",
                "schedule": "0 3 1 1,4,7,10 *", "jitter_seconds": 600})
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def toml_profile(host: str, port: int, *, operators_n: int = PROFILE_OPERATORS,
                 corridors_m: int = 20) -> str:
    """A config.toml fragment for a sandbox on ``host``:``port``: its ``[sandbox]`` address
    (so that what is collected from it is stored as emulated data), ``corridors_m``
    corridors and the emulated profile's sources (``emulated_profile``), their posts those
    of the first sending countries (up to three)."""
    base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    corridors = corridors_config(corridors_m)
    senders = sorted({c["from"] for c in corridors})[:3]
    posts = tuple((s, "json") for s in senders) or PROFILE_POSTS
    lines = [f"# sendcost's emulated profile: {operators_n} operators over {corridors_m} "
             f"corridors, every source at the sandbox on {base_url}",
             "[sandbox]", f"host = {json.dumps(host)}", f"port = {port}", ""]
    for c in corridors:
        lines += ["[[corridors]]", f'from = "{c["from"]}"', f'to = "{c["to"]}"']
        if "amounts" in c:
            lines.append(f"amounts = {json.dumps(c['amounts'])}")
        lines.append("")
    for s in emulated_profile(base_url, operators_n=operators_n, posts=posts):
        lines.append("[[sources]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in s.items() if k != "options"]
        lines += [f"options.{k} = {_toml_value(v)}" for k, v in s.get("options", {}).items()]
        lines.append("")
    return "\n".join(lines)


def nominal(amount: Decimal) -> str:
    """How an amount appears in the sandbox's URLs and logs (as the collector sends it)."""
    return str(amount)


