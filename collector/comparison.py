"""Comparison feeds: the Wise-style comparison API, one request → many providers' quotes.

``GET {url}?sourceCurrency=USD&targetCurrency=MXN&sendAmount=200[&sourceCountry=US
&targetCountry=MX]`` answers ``providers[]`` (alias, name, type) each with ``quotes[]``
(rate, fee, markup, receivedAmount, dateCollected, isConsideredMidMarketRate,
deliveryEstimation.duration.min/max as ISO 8601 durations).

Every quote is labelled with the feed it came from (its ``source`` and the flag
``comparison_feed``) and with the feed's own caveats (``options.caveats``; by default
``estimate`` — the feed's figures are its estimates, not our observation — and
``bank_transfer_only`` — it prices bank-account to bank-account transfers only).

One response lists many providers: a provider or quote the parser cannot use is quarantined
on its own (``unknown_label``; ``fee_missing`` / ``rate_missing`` when its fee or rate is
absent, null or not a number — never read as 0; ``malformed_record`` for anything else not
in the feed's format), and the others are kept. Only a response broken as a whole (not
JSON, no ``providers`` list, a currency that is not an ISO 4217 code) is malformed.

The response's ``amount`` must be the amount asked for (``amount_mismatch`` otherwise: a
price for 500 is not the price of 200, whatever its received amounts say); a quote's own
``sourceCountry`` / ``targetCountry`` must be the corridor's (``unknown_corridor``). A
provider the feed marks ``partner`` (a partner of the feed's, shown as a bank) keeps the
flag ``partner``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from collector import options as opt
from collector.context import RunContext
from collector.errors import ParseError
from collector.model import CorridorSpec, Draft, service_key
from collector.parsing import (
    charset_of,
    dec,
    dig,
    iso_currency,
    iso_duration_days,
    load_json,
    timestamp,
)
from collector.validate import Rejected, Rejection, Unusable, number
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

OPTIONS = {"caveats": opt.STRINGS, "provider_types": opt.STRING_TABLE,
           "country_params": opt.BOOLEAN}
DEFAULT_CAVEATS = ["estimate", "bank_transfer_only"]
#: The feed's provider types, mapped explicitly (extend with options.provider_types).
PROVIDER_TYPES = {"bank": "bank", "moneyTransferProvider": "mto"}


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, OPTIONS)
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
        await ctx.add_parsed(*parse(ctx.source, fetched.body, c, usd, amount,
                                    charset_of(fetched.headers)), fetched)

    await ctx.each(items, one)


def _currency(doc: Any, key: str, source: SourceConfig) -> str | None:
    """The response's ``key`` currency: None when it does not say (absent or null, never
    "NONE"); ParseError when it is not an ISO 4217 code."""
    value = dig(doc, key, None)
    if value is None:
        return None
    code = iso_currency(value) if isinstance(value, str) else None
    if code is None:
        raise ParseError(f"{source.name}: {key} {value!r} is not an ISO 4217 currency code")
    return code


def _amount(doc: Any) -> tuple[Decimal | None, str | None]:
    """(the amount the response says it priced, why it cannot be compared with ours)."""
    kind = dig(doc, "amountType", None)
    if kind is not None and kind != "SEND":
        return None, f"the answer prices a received amount (amountType {kind!r})"
    # v4 says "amount"; the v3 answers recorded in the wild say "sendAmount".
    value = dig(doc, "amount", None)
    if value is None:
        value = dig(doc, "sendAmount", None)
    try:
        return dec(value, "amount"), None
    except ParseError:
        return None, f"the answer's amount {value!r} is not a number"


def parse(source: SourceConfig, body: bytes, c: CorridorSpec, usd: int, amount: Any,
          charset: str | None = None) -> tuple[list[Draft], list[Rejected]]:
    """(drafts, the records quarantined by the parser) from one comparison response
    (``charset``: the Content-Type's, if it names one).

    Raises ParseError only for a response broken as a whole.
    """
    doc = load_json(body, f"{source.name} comparison", charset)
    providers = dig(doc, "providers", None)
    if not isinstance(providers, list):
        raise ParseError(f"{source.name}: 'providers' is not a list")
    send_cur = _currency(doc, "sourceCurrency", source)
    recv_cur = _currency(doc, "targetCurrency", source)
    priced, unpriced = _amount(doc)
    types = PROVIDER_TYPES | dict(source.options.get("provider_types", {}))
    flags = ("comparison_feed", *source.options.get("caveats", DEFAULT_CAVEATS))
    where = {"corridor": c.key, "amount_usd": usd, "send_amount": amount}
    drafts: list[Draft] = []
    rejected: list[Rejected] = []
    for i, p in enumerate(providers):
        if not isinstance(p, dict):
            rejected.append(({"provider": p, **where}, Rejection(
                "malformed_record", "record", f"providers.{i} is not an object")))
            continue
        alias, name, kind = p.get("alias"), p.get("name"), p.get("type")
        if not isinstance(kind, str) or kind not in types:
            rejected.append(({"provider": alias, "type": kind, **where}, Rejection(
                "unknown_label", "type", f"provider type {kind!r} has no firm-type mapping")))
            continue
        quotes = p.get("quotes")
        if not isinstance(name, str) or not name or not isinstance(quotes, list):
            problem = (("firm", f"providers.{i}.name is {name!r}: expected a name")
                       if not isinstance(name, str) or not name else
                       ("record", f"providers.{i}.quotes is {quotes!r}: expected a list"))
            rejected.append(({"provider": alias, "name": name, "type": kind,
                              "quotes": quotes, **where},
                             Rejection("malformed_record", *problem)))
            continue
        firm = Firm(name, FirmType(types[kind]))
        # A partner of the feed (a bank that offers the feed's own transfers) is not an
        # independent price: kept, and said.
        own = (*flags, "partner") if p.get("partner") is True else flags
        for q in quotes:
            record = {"provider": alias, "name": name, "type": kind, "quote": q}
            if p.get("partner") is True:
                record["partner"] = True
            try:
                if unpriced:
                    raise Unusable("amount_mismatch", "send_amount", unpriced)
                draft = _draft(q, c, usd, amount, firm, send_cur, recv_cur, own, record)
                draft.reported_amount = priced
                drafts.append(draft)
            except Unusable as exc:
                rejected.append(({**record, **where}, exc.rejection))
    return drafts, rejected


def _draft(q: Any, c: CorridorSpec, usd: int, amount: Any, firm: Firm, send_cur: str | None,
           recv_cur: str | None, flags: tuple[str, ...], record: dict[str, Any]) -> Draft:
    """One provider's quote as a draft; Unusable when it cannot be one."""
    if not isinstance(q, dict):
        raise Unusable("malformed_record", "record", f"a quote is not an object: {q!r}")
    # A fee absent or null reads as unknown (collector.validate quarantines it as
    # fee_missing), never as 0; one that is there but not a number is no better.
    fee = number(q.get("fee"), "fee", "fee", "fee_missing")
    # The feed's price is its rate: its receivedAmount and markup derive from it, and
    # cannot be checked without it.
    rate = number(q.get("rate"), "applied_rate", "rate", "rate_missing")
    if rate is None:
        raise Unusable("rate_missing", "applied_rate", "the quote has no rate")
    received = number(q.get("receivedAmount"), "received_amount", "receivedAmount")
    markup = number(q.get("markup"), "fx_margin_reported", "markup")
    corridor: CorridorSpec | None = c
    # A quote for another sending or receiving country than the corridor's (an HU quote
    # asked for DEU → HUN) is another corridor's price.
    origin, target = q.get("sourceCountry"), q.get("targetCountry")
    if (target and country_code(str(target)) != c.destination) or (
            origin and country_code(str(origin)) != c.source):
        corridor = None
    duration = dig(q, "deliveryEstimation.duration.max", None)
    try:
        speed = speed_from_days(iso_duration_days(duration)) if duration else None
    except ParseError:
        raise Unusable("malformed_record", "speed", f"deliveryEstimation.duration.max "
                       f"{duration!r} is not an ISO 8601 duration") from None
    collected = q.get("dateCollected")
    try:
        observed = timestamp(collected, "dateCollected") if collected else None
    except ParseError as exc:
        raise Unusable("malformed_record", "collected_at", str(exc)) from None
    # The feed does not name the product: an online bank transfer of that firm.
    service = ServiceAttributes(product="", pay_in=PayIn.BANK_ACCOUNT,
                                pay_out=PayOut.BANK_ACCOUNT,
                                access_point=AccessPoint.INTERNET, speed=speed)
    extra = ("mid_market_provider",) if q.get("isConsideredMidMarketRate") else ()
    return Draft(
        corridor=corridor, amount_usd=usd, send_amount=dec(amount, "sendAmount"),  # type: ignore[arg-type]
        firm=firm, service=service, service_key=service_key(firm, c.key, service),
        fee=fee, applied_rate=rate, received_amount=received,
        # The feed's receivedAmount is (amount − fee) × rate.
        fee_deducted=True, send_currency=send_cur, receive_currency=recv_cur,
        fx_margin_reported=markup, flags=(*flags, *extra), observed_at=observed,
        payload=record,
    )
