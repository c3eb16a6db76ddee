"""Operator quote APIs: one configurable adapter for every operator that publishes a JSON
quote endpoint. Each operator is one ``[[sources]]`` entry — no code per operator.

``url`` is a template; placeholders: {source} {destination} (ISO alpha-3), {source2}
{destination2} (alpha-2), {send_currency} {receive_currency}, {amount}, {corridor}
("USA-MEX"). ``options.fields`` maps what we need to where the response has it (dotted
paths, list indices as numbers: "quote.fees.0.amount"). A path the answer lacks reads as
unknown, never as 0: an answer without a fee (an error body sent with 200) or without any
rate is quarantined by collector.validate (``fee_missing`` / ``rate_missing``).

With ``quotes_path`` one answer lists many quotes: one the parser cannot use is quarantined
on its own, the others kept — a fee or rate that is not a number as ``fee_missing`` /
``rate_missing`` (never 0), a pay-in or pay-out label without a mapping as
``unknown_label`` (never guessed), a quote that is not an object or another value that is
not a number as ``malformed_record``. Only an answer broken as a whole (not JSON,
``quotes_path`` not a list) is malformed.

``method = "POST"`` with ``body`` (a JSON template: ``"{send_currency}"`` a string,
``{amount}`` a number; ``"${NAME}"`` a secret from the environment, filled in only when
sent) asks an API that takes its question as JSON (Wise's ``POST /v3/quotes``);
``next_path`` names the link to the next page of a paginated answer (followed on the same
host, ``max_pages`` at most, default 10; each page archived and parsed like the first), or
``page_param`` the query parameter of a page's number (from ``first_page``, default 1,
until a page holds no quote or ``pages_path``, the number of pages, says it was the last);
``quotes_path = "."`` reads an answer that is itself an array of quotes, and a ``*`` step
every item of a list (``providers.*.quotes``); a field path starting ``$.`` is read from
the whole answer rather than the quote (a currency named once for all the quotes), one
starting ``^.`` from the quote's parent (the object holding its list: the provider of
``providers.*.quotes``); ``skip_when`` leaves out the quotes a field of which has the
value given (``{ disabled = "true" }``: not offered, not a price); a fee written with
its currency ("AUD 3.99", "3.99 AUD") gives both. ``fields.send_amount`` (the amount the
answer priced) is checked against the amount asked
(``amount_mismatch``); ``fields.source`` (the sending country the answer names) against the
corridor's; ``fields.fee_currency`` names the fee's currency, converted into the sending
currency through the reference rates when it is another. ``amount_scale`` divides the
answer's amounts (fee, send amount; received amount by ``received_amount_scale``, default
the same) for an API that writes them in minor units; ``{amount_scaled}`` in the URL is
the amount asked times that scale.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from collector import options as opt
from collector.errors import ParseError
from collector.model import CorridorSpec, Draft, service_key
from collector.parsing import (
    charset_of,
    dec,
    dig,
    iso_currency,
    load_json,
    money_with_currency,
)
from collector.run import RunContext
from collector.validate import Rejected, Rejection, Unusable, number
from corridors.config import SourceConfig
from corridors.errors import ConfigError
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

OPTIONS = {"firm": opt.STRING, "firm_type": opt.STRING, "product": opt.STRING,
           "quotes_path": opt.STRING, "fields": opt.STRING_TABLE, "fee_deducted": opt.BOOLEAN,
           "pay_in": opt.STRING, "pay_out": opt.STRING, "access_point": opt.STRING,
           "labels": opt.STRING_TABLE, "amount_scale": opt.POSITIVE_NUMBER,
           "received_amount_scale": opt.POSITIVE_NUMBER, "skip_when": opt.STRING_TABLE,
           "next_path": opt.STRING, "max_pages": opt.POSITIVE_NUMBER,
           "page_param": opt.STRING, "first_page": opt.POSITIVE_NUMBER,
           "pages_path": opt.STRING,
           "method": opt.STRING, "body": opt.STRING}
FIELDS = {"fee", "applied_rate", "received_amount", "send_currency", "receive_currency",
          "destination", "delivery_hours", "delivery_days", "pay_in", "pay_out", "product",
          "send_amount", "fee_currency", "source"}
PLACEHOLDERS = ("source", "destination", "source2", "destination2", "send_currency",
                "receive_currency", "amount", "amount_scaled", "corridor")


def check_options(source: SourceConfig) -> None:
    opt.allowed(source, OPTIONS)
    opt.string(source, "firm")
    opt.enum(source, "firm_type", FirmType, "mto")
    opt.enum(source, "pay_in", PayIn, None)
    opt.enum(source, "pay_out", PayOut, None)
    opt.enum(source, "access_point", AccessPoint, "internet")
    fields = opt.table(source, "fields")
    extra = sorted(set(fields) - FIELDS)
    if extra:
        raise ConfigError(f"{opt.where(source)}.fields: unknown field(s) {', '.join(extra)}; "
                          f"allowed: {', '.join(sorted(FIELDS))}")
    if "fee" not in fields:
        raise ConfigError(f"{opt.where(source)}.fields.fee: required (the path of the fee)")
    for name, path in fields.items():
        if not path:
            raise ConfigError(f"{opt.where(source)}.fields.{name}: expected a dotted path "
                              f"(quote.fee.amount), got {path!r}")
    labels = opt.table(source, "labels")
    for label, value in labels.items():
        if value not in {*PayIn, *PayOut}:
            raise ConfigError(f"{opt.where(source)}.labels.{label}: expected a pay-in or "
                              f"pay-out value, got {value!r}")
    method = source.options.get("method", "GET")
    if method not in ("GET", "POST"):
        raise ConfigError(f"{opt.where(source)}.method: expected GET or POST, got {method!r}")
    if (method == "POST") != ("body" in source.options):
        raise ConfigError(f"{opt.where(source)}.body: " + (
            "required with method POST (the JSON the API takes)" if method == "POST" else
            "only with method = \"POST\""))
    if "page_param" in source.options and "next_path" in source.options:
        raise ConfigError(f"{opt.where(source)}.page_param: pages are followed by their "
                          "number or by a link (next_path), not both")
    if "pages_path" in source.options and "page_param" not in source.options:
        raise ConfigError(f"{opt.where(source)}.pages_path: only with page_param")
    first = source.options.get("first_page", 1)
    if isinstance(first, float) and not first.is_integer():
        raise ConfigError(f"{opt.where(source)}.first_page: expected a whole number, got "
                          f"{first!r}")
    if method == "POST":
        for key in ("next_path", "page_param"):
            if key in source.options:
                raise ConfigError(f"{opt.where(source)}.{key}: pages are followed with GET; "
                                  "not with method POST")
        sample = CorridorSpec("USA", "MEX", "US", "MX", "USD", "MXN", ())
        try:
            json.loads(render_body(source.options["body"], sample, Decimal(200)))
        except ValueError as exc:
            raise ConfigError(f"{opt.where(source)}.body: not JSON once its placeholders "
                              f"are filled in ({exc})") from None
    try:
        _secrets_kept(source.url).format(**{p: "x" for p in PLACEHOLDERS})
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"sources[{source.name}].url: unknown placeholder {exc}; allowed: "
                          f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}") from None


_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def render_body(template: str, c: CorridorSpec, amount: Any, scale: Decimal = Decimal(1)
                ) -> bytes:
    """A POST body: the JSON ``template`` with its {placeholders} filled in (only those:
    JSON's own braces stay). Write ``"{send_currency}"`` for a string, ``{amount}`` bare
    for a number."""
    values = {"source": c.source, "destination": c.destination, "source2": c.source2,
              "destination2": c.destination2, "send_currency": c.send_currency,
              "receive_currency": c.receive_currency, "amount": f"{Decimal(amount):f}",
              "amount_scaled": f"{(Decimal(amount) * scale).normalize():f}",
              "corridor": c.key}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template).encode()


def request_of(source: SourceConfig, c: CorridorSpec, amount: Any) -> tuple[str, bytes | None]:
    """(URL, POST body or None) of one question. A POST's URL carries a fragment naming its
    body (never sent), so that each question is archived, and re-parsed, as its own."""
    url = quote_url(source.url, c, amount, _scale(source))
    if source.options.get("method", "GET") != "POST":
        return url, None
    body = render_body(source.options["body"], c, amount, _scale(source))
    return f"{url}#post-{hashlib.sha256(body).hexdigest()[:16]}", body


def _secrets_kept(template: str) -> str:
    """The template with each ${NAME} (an environment variable, filled in only when the
    request is sent) escaped from str.format: it stays ${NAME}."""
    return _ENV_REF.sub(lambda m: "${{" + m.group(1) + "}}", template)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _scale(source: SourceConfig, key: str = "amount_scale") -> Decimal:
    value = source.options.get(key)
    if value is None and key != "amount_scale":
        return _scale(source)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value or 1)


def quote_url(template: str, c: CorridorSpec, amount: Any, scale: Decimal = Decimal(1)
              ) -> str:
    scaled = (Decimal(amount) * scale).normalize()
    return _secrets_kept(template).format(
        source=c.source, destination=c.destination, source2=c.source2,
        destination2=c.destination2, send_currency=c.send_currency,
        receive_currency=c.receive_currency, amount=amount, amount_scaled=f"{scaled:f}",
        corridor=c.key)


async def collect(ctx: RunContext) -> None:
    source = ctx.source
    items = [(c, usd, amount) for c in ctx.corridors for usd, amount in c.amounts]

    pages = int(source.options.get("max_pages", 10))
    try:
        secrets = source.url_secrets()
    except ConfigError:  # a re-parse, where the environment may lack them: nothing sent
        secrets = {}

    async def one(item: tuple[CorridorSpec, int, Any]) -> None:
        c, usd, amount = item
        url: str | None
        url, body = request_of(source, c, amount)
        seen: set[str] = set()
        number = int(source.options.get("first_page", 1))
        while url is not None and len(seen) < pages:
            seen.add(url)
            fetched = await ctx.fetch(url, body)
            charset = charset_of(fetched.headers)
            await ctx.add_parsed(*parse(source, fetched.body, c, usd, amount, charset),
                                 fetched)
            url = (numbered_page(source, fetched.body, url, number, charset)
                   if "page_param" in source.options
                   else next_page(source, fetched.body, url, charset, secrets))
            number += 1
            if url in seen:
                break

    await ctx.each(items, one)


def numbered_page(source: SourceConfig, body: bytes, url: str, number: int,
                  charset: str | None = None) -> str | None:
    """The URL of the page after page ``number`` of an answer paginated by number
    (``options.page_param``: the query parameter, set to number + 1), None when this page
    was the last: it holds no quote, or ``pages_path`` (the number of pages the answer
    says there are) says so. The URL's other parameters, ${NAME}s included, are kept."""
    doc = load_json(body, f"{source.name} quote", charset)
    records, broken = quote_records(doc, source.options.get("quotes_path", ""), source.name)
    if not records and not broken:
        return None
    path = source.options.get("pages_path")
    if path:
        total = dig(doc, path, None)
        if not isinstance(total, int | float) or isinstance(total, bool):
            raise ParseError(f"{source.name}: {path!r} is {total!r}, not a number of pages")
        if number >= total:
            return None
    parts = urlsplit(url)
    param = source.options["page_param"]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param]
    query.append((param, str(number + 1)))
    return urlunsplit(parts._replace(query=urlencode(query, safe="${}")))


def next_page(source: SourceConfig, body: bytes, url: str, charset: str | None = None,
              secrets: Mapping[str, str] | None = None) -> str | None:
    """The next page's URL of a paginated answer (``options.next_path``: absolute, or
    relative to ``url``), None on the last page or without pagination. A link to another
    host is not followed; a secret the link repeats is put back as ${NAME}, so that it is
    never archived."""
    path = source.options.get("next_path")
    if not path:
        return None
    link = dig(load_json(body, f"{source.name} quote", charset), path, None)
    if not isinstance(link, str) or not link.strip():
        return None
    for name, value in (secrets or {}).items():
        link = link.replace(value, f"${{{name}}}")
    target = urljoin(url, link.strip())
    if urlsplit(target).netloc != urlsplit(url).netloc:
        raise ParseError(f"{source.name}: next page {link!r} is on another host; not "
                         "followed")
    return target


def parse(source: SourceConfig, body: bytes, c: CorridorSpec, usd: int, amount: Any,
          charset: str | None = None) -> tuple[list[Draft], list[Rejected]]:
    """(drafts, the quotes quarantined by the parser) from one quote response of ``c`` at
    ``amount`` (pure; ``charset``: the Content-Type's, if it names one). Raises ParseError
    only for an answer broken as a whole."""
    o = source.options
    doc = load_json(body, f"{source.name} quote", charset)
    path = o.get("quotes_path", "")
    if not path and not isinstance(doc, dict):
        raise ParseError(f"{source.name}: the answer is not an object: {doc!r:.80}")
    records, broken = quote_records(doc, path, source.name)
    where = {"corridor": c.key, "amount_usd": usd, "send_amount": amount}
    drafts: list[Draft] = []
    rejected: list[Rejected] = [({"record": rec, **where},
                                 Rejection("malformed_record", "record", detail))
                                for rec, detail in broken]
    for at, rec, parent in records:
        try:
            if not isinstance(rec, dict):
                raise Unusable("malformed_record", "record",
                               f"{at} is not an object: {rec!r:.80}")
            if _skipped(rec, o.get("skip_when", {}), doc, parent):
                continue  # not offered (disabled, another product): no price, no quote
            drafts.append(_draft(source, rec, c, usd, amount, doc, parent))
        except Unusable as exc:
            rejected.append(({**(rec if isinstance(rec, dict) else {"quote": rec}), **where},
                             exc.rejection))
    return drafts, rejected


def quote_records(doc: Any, path: str, name: str = "source"
                  ) -> tuple[list[tuple[str, Any, Any]], list[tuple[Any, str]]]:
    """The quotes ``quotes_path`` names in ``doc``, each as (where, quote, its parent: the
    object that holds the list it is in), and the parts of the answer a ``*`` step reached
    that lack the rest of the path (each (part, why), quarantined on its own).

    ``""``: the answer is the one quote; ``"."``: the answer is the list; a dotted path
    (``data.options``, ``routes.0.quotes``) whose last step is the list; ``*`` takes every
    item of a list (``providers.*.quotes``: each provider's quotes, the provider being each
    quote's parent). ParseError when the path does not lead to a list (before any ``*``).
    """
    if not path:
        return [("answer", doc, doc)], []
    if path == ".":  # a top-level array of quotes
        if not isinstance(doc, list):
            raise ParseError(f"{name}: '.' (the answer itself) is not a list of quotes")
        return [(f"answer.{i}", rec, doc) for i, rec in enumerate(doc)], []
    # Each branch: (where, node, the object the last key was read from).
    branches: list[tuple[str, Any, Any]] = [("", doc, doc)]
    broken: list[tuple[Any, str]] = []
    spread = False
    for step in path.split("."):
        nxt: list[tuple[str, Any, Any]] = []
        for at, node, holder in branches:
            here = f"{at}.{step}" if at else step
            if step == "*":
                if isinstance(node, list):
                    nxt.extend((f"{at}.{i}", item, holder) for i, item in enumerate(node))
                    continue
            elif isinstance(node, dict) and step in node:
                nxt.append((here, node[step], node))
                continue
            elif isinstance(node, list) and step.lstrip("-").isdigit() and \
                    -len(node) <= int(step) < len(node):
                nxt.append((here, node[int(step)], holder))
                continue
            if not spread:
                raise ParseError(f"{name}: {path!r} is not a list of quotes (nothing at "
                                 f"{here!r})")
            broken.append((node, f"{here} is missing: {path!r} leads to no list here"))
        branches = nxt
        spread = spread or step == "*"
    out: list[tuple[str, Any, Any]] = []
    for at, node, holder in branches:
        if isinstance(node, list):
            out.extend((f"{at}.{i}", rec, holder) for i, rec in enumerate(node))
        elif not spread:
            raise ParseError(f"{name}: {path!r} is not a list of quotes")
        else:
            broken.append((node, f"{at} is not a list of quotes"))
    return out, broken


def _skipped(rec: dict[str, Any], when: Mapping[str, str], doc: Any = None,
             parent: Any = None) -> bool:
    """True when one of the quote's fields (or, by ``$.`` / ``^.``, the answer's or the
    quote's parent's) has the value ``skip_when`` names for it (as JSON writes it: true,
    false, null, a number or a string)."""
    for path, value in when.items():
        got = field_of(rec, path, doc, parent, _ABSENT)
        if got is not _ABSENT and (got if isinstance(got, str) else json.dumps(got)) == value:
            return True
    return False


_ABSENT = object()


def field_of(rec: Any, path: str, doc: Any, parent: Any, default: Any = None) -> Any:
    """A field path's value: ``$.x.y`` of the whole answer (a currency it names once for
    all its quotes), ``^.x.y`` of the quote's parent (the object holding the list the quote
    is in: a provider's name over its quotes), else of the quote itself; nested keys and
    list indexes alike (``$.meta.rates.0.value``)."""
    if path.startswith("$."):
        return dig(doc, path[2:], default)
    if path.startswith("^."):
        return dig(parent, path[2:], default)
    return dig(rec, path, default)


def _draft(source: SourceConfig, rec: dict[str, Any], c: CorridorSpec, usd: int, amount: Any,
           doc: Any = None, parent: Any = None) -> Draft:
    """One quote as a draft; Unusable when it cannot be one."""
    o = source.options
    fields: Mapping[str, str] = o.get("fields", {})
    labels: Mapping[str, str] = o.get("labels", {})
    firm, access_point, default_pay_in, default_pay_out = _fixed(
        o["firm"], o.get("firm_type", "mto"), o.get("access_point", "internet"),
        o.get("pay_in"), o.get("pay_out"))

    def get(name: str) -> Any:
        path = fields.get(name)
        return None if path is None else field_of(rec, path, doc, parent)

    corridor: CorridorSpec | None = c
    dest, origin = get("destination"), get("source")
    # A quote for another destination (or from another country) than the one asked for is
    # not this corridor's price, whatever it is: quarantined as unknown_corridor.
    if (dest is not None and country_code(str(dest)) != c.destination) or (
            origin is not None and country_code(str(origin)) != c.source):
        corridor = None
    pay_in_label = get("pay_in")
    pay_out_label = get("pay_out")
    pay_in = (_label(pay_in_label, labels, PayIn, "pay_in") if pay_in_label
              else default_pay_in)
    pay_out = (_label(pay_out_label, labels, PayOut, "pay_out") if pay_out_label
               else default_pay_out)
    hours = number(get("delivery_hours"), "speed", "delivery_hours")
    days = number(get("delivery_days"), "speed", "delivery_days")
    speed = (speed_from_days(float(hours) / 24) if hours is not None else
             speed_from_days(float(days)) if days is not None else None)
    product = str(get("product") or o.get("product", ""))
    service = ServiceAttributes(product=product, pay_in=pay_in, pay_out=pay_out,
                                access_point=access_point,
                                speed=speed)
    send_cur, recv_cur = get("send_currency"), get("receive_currency")
    fee_cur = get("fee_currency")
    raw_fee = get("fee")
    written = money_with_currency(raw_fee)
    if written is not None:  # "AUD 3.99": the fee and its currency in one string
        raw_fee, said = written
        if fee_cur is not None and str(fee_cur).upper() != said:
            raise Unusable("malformed_record", "fee_currency",
                           f"fee {get('fee')!r} names {said}, fee_currency says {fee_cur!r}")
        fee_cur = said
    if fee_cur is not None and (not isinstance(fee_cur, str) or not iso_currency(fee_cur)):
        raise Unusable("malformed_record", "fee_currency",
                       f"fee currency {fee_cur!r} is not an ISO 4217 code")
    # Amounts in minor units (a fee of 750000 for HUF 7,500.00) are divided by the scale.
    scale, received_scale = _scale(source), _scale(source, "received_amount_scale")
    fee = number(raw_fee, "fee", "fee", "fee_missing")
    received = number(get("received_amount"), "received_amount", "received_amount")
    reported = number(get("send_amount"), "send_amount", "send_amount")
    return Draft(
        corridor=corridor, amount_usd=usd, send_amount=dec(amount, "amount"),  # type: ignore[arg-type]
        firm=firm, service=service, service_key=service_key(firm, c.key, service),
        # Absent or null: unknown, quarantined by collector.validate as fee_missing /
        # rate_missing; there but not a number: no better (never read as 0).
        fee=None if fee is None else fee / scale,
        applied_rate=number(get("applied_rate"), "applied_rate", "applied_rate",
                            "rate_missing"),
        received_amount=None if received is None else received / received_scale,
        reported_amount=None if reported is None else reported / scale,
        fee_currency=fee_cur.upper() if isinstance(fee_cur, str) else None,
        fee_deducted=o.get("fee_deducted"),
        send_currency=str(send_cur).upper() if send_cur else None,
        receive_currency=str(recv_cur).upper() if recv_cur else None,
        payload=rec,
    )


@functools.lru_cache(maxsize=256)
def _fixed(firm: str, firm_type: str, access_point: str, pay_in: str | None,
           pay_out: str | None) -> tuple[Firm, AccessPoint, PayIn | None, PayOut | None]:
    """What a source's options fix for all its quotes, made once per source rather than
    per quote: the firm, the access point and the default pay-in and pay-out."""
    return (Firm(firm, FirmType(firm_type)), AccessPoint(access_point),
            PayIn(pay_in) if pay_in else None, PayOut(pay_out) if pay_out else None)


def _label(value: Any, labels: Mapping[str, str], kind: type[PayIn] | type[PayOut],
           field: str) -> Any:
    text = str(value)
    mapped = labels.get(text, text)
    try:
        return kind(mapped)
    except ValueError:
        raise Unusable("unknown_label", field, f"unmapped {kind.__name__} label {text!r} "
                       f"(add it to options.labels)") from None
