"""Comparison feeds: the Wise-style comparison API, one request → many providers' quotes.

``GET {url}?sourceCurrency=USD&targetCurrency=MXN&sendAmount=200[&sourceCountry=US
&targetCountry=MX]`` answers ``providers[]`` (alias, name, type) each with ``quotes[]``
(rate, fee, markup, receivedAmount, dateCollected, isConsideredMidMarketRate,
deliveryEstimation.duration.min/max as ISO 8601 durations).

Every quote is labelled with the feed it came from (its ``source`` and the flag
``comparison_feed``) and with the feed's own caveats (``options.caveats``; by default
``estimate`` — the feed's figures are its estimates, not our observation — and
``bank_transfer_only`` — it prices bank-account to bank-account transfers only).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from collector import options as opt
from collector.errors import ParseError
from collector.model import CorridorSpec, Draft, service_key
from collector.parsing import dec, dig, iso_duration_days, load_json, timestamp
from collector.run import RunContext
from corridors.config import SourceConfig
from corridors.reference import country_code
from corridors.types import (
    AccessPoint,
    Firm,
    FirmType,
    PayIn,
    PayOut,
    ServiceAttributes,
    speed_from_days,
)

OPTIONS = {"caveats", "provider_types", "country_params"}
DEFAULT_CAVEATS = ["estimate", "bank_transfer_only"]
#: The feed's provider types, mapped explicitly (extend with options.provider_types).
PROVIDER_TYPES = {"bank": "bank", "moneyTransferProvider": "mto"}


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, OPTIONS)
    opt.strings(source, "caveats", DEFAULT_CAVEATS)
    opt.boolean(source, "country_params", True)
    for label, value in opt.table(source, "provider_types").items():
        if value not in set(FirmType):
            raise opt.ConfigError(f"{opt.where(source)}.provider_types.{label}: expected one "
                                  f"of {', '.join(FirmType)}, got {value!r}")


def comparison_url(source: SourceConfig, c: CorridorSpec, amount: Any) -> str:
    params = {"sourceCurrency": c.send_currency, "targetCurrency": c.receive_currency,
              "sendAmount": str(amount)}
    if source.options.get("country_params", True):
        params |= {"sourceCountry": c.source2, "targetCountry": c.destination2}
    return f"{source.url}{'&' if '?' in source.url else '?'}{urlencode(params)}"


async def collect(ctx: RunContext) -> None:
    items = [(c, usd, amount) for c in ctx.corridors for usd, amount in c.amounts]

    async def one(item: tuple[CorridorSpec, int, Any]) -> None:
        c, usd, amount = item
        fetched = await ctx.fetch(comparison_url(ctx.source, c, amount))
        drafts, unknown = parse(ctx.source, fetched.body, c, usd, amount)
        for rec, detail in unknown:
            await ctx.reject("unknown_label", "type", detail, rec, fetched)
        for draft in drafts:
            await ctx.add_quote(draft, fetched)

    await ctx.each(items, one)


def parse(source: SourceConfig, body: bytes, c: CorridorSpec, usd: int, amount: Any
          ) -> tuple[list[Draft], list[tuple[dict[str, Any], str]]]:
    """(drafts, records with an unmapped provider type) from one comparison response."""
    doc = load_json(body, f"{source.name} comparison")
    providers = dig(doc, "providers")
    if not isinstance(providers, list):
        raise ParseError(f"{source.name}: 'providers' is not a list")
    send_cur = str(dig(doc, "sourceCurrency", c.send_currency)).upper()
    recv_cur = str(dig(doc, "targetCurrency", c.receive_currency)).upper()
    types = PROVIDER_TYPES | dict(source.options.get("provider_types", {}))
    flags = ("comparison_feed", *source.options.get("caveats", DEFAULT_CAVEATS))
    drafts, unknown = [], []
    for p in providers:
        alias, name, kind = dig(p, "alias"), dig(p, "name"), dig(p, "type")
        if kind not in types:
            unknown.append(({"provider": p.get("alias"), "type": kind},
                            f"provider type {kind!r} has no firm-type mapping"))
            continue
        firm = Firm(str(name), FirmType(types[kind]))
        for q in dig(p, "quotes"):
            corridor: CorridorSpec | None = c
            target = q.get("targetCountry")
            if target and country_code(str(target)) != c.destination:
                corridor = None
            duration = dig(q, "deliveryEstimation.duration.max", None)
            speed = speed_from_days(iso_duration_days(duration)) if duration else None
            # The feed does not name the product: an online bank transfer of that firm.
            service = ServiceAttributes(product="",
                                        pay_in=PayIn.BANK_ACCOUNT,
                                        pay_out=PayOut.BANK_ACCOUNT,
                                        access_point=AccessPoint.INTERNET, speed=speed)
            collected = q.get("dateCollected")
            extra = ("mid_market_provider",) if q.get("isConsideredMidMarketRate") else ()
            drafts.append(Draft(
                corridor=corridor, amount_usd=usd, send_amount=dec(amount, "sendAmount"),  # type: ignore[arg-type]
                firm=firm, service=service,
                service_key=service_key(firm, c.key, service),
                fee=dec(dig(q, "fee"), "fee"), applied_rate=dec(dig(q, "rate"), "rate"),
                received_amount=dec(q.get("receivedAmount"), "receivedAmount"),
                # The feed's receivedAmount is (amount − fee) × rate.
                fee_deducted=True, send_currency=send_cur, receive_currency=recv_cur,
                fx_margin_reported=dec(q.get("markup"), "markup"),
                flags=(*flags, *extra),
                observed_at=timestamp(collected, "dateCollected") if collected else None,
                payload={"provider": alias, "name": name, "type": kind, "quote": q},
            ))
    return drafts, unknown
