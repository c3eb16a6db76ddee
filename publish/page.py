"""``GET /``: the migrants' comparison page, rendered on the server, no JavaScript needed.

The form submits with GET to ``/`` itself, so a result is a plain link that can be shared.
The ranked table is the ``/v1/compare`` document rendered as HTML (Jinja2, autoescaped, from
``publish/templates/page.html``): what arrives, total cost, speed, how to pay in and pick up,
and the corridor's distance from 3% and 5%.

The page speaks the reader's language (``publish.i18n``: ``?lang=``, else
``Accept-Language``; gettext catalogs, CLDR numbers, money, dates and country names), reads
the amount as people type it (``publish.amounts``) and ignores the tracking parameters that
social networks and mailers add to a shared link (``TRACKING``), so the link opens as shared.
Bad input is shown on the page, in its language, with status 400 or 422, like every error
not cached (``no-store``, no ETag): only a page that answers its question is.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from babel.numbers import get_currency_symbol
from markupsafe import Markup
from multidict import MultiDict, MultiDictProxy, MultiMapping

from corridors.types import Speed
from metrics import METHODOLOGY_VERSION
from publish import i18n
from publish.amounts import OtherCurrency, UnreadableAmount, read_amount
from publish.api.compare import compare_document
from publish.api.conventions import receive_units
from publish.data import (
    CAVEATS,
    DATA,
    SHOWS_EMULATED,
    Snapshot,
    country_ref,
    sources_of,
)
from publish.params import MAX_AMOUNT, Params
from publish.problems import Problem
from publish.responses import send

PAGE_PARAMS = frozenset({"from", "to", "amount", "include", "lang"})
#: The parameters that ask a question (``include`` only says which data may answer it).
_QUESTION = ("from", "to", "amount")
#: True when the page shows emulated data without being asked (``publish.data``).
PAGE_SHOWS_EMULATED = SHOWS_EMULATED
#: Parameters that social networks, ad platforms and mailers add to a link (click ids,
#: campaign tags): the page ignores them, so a shared comparison opens as it was shared.
#: Any ``utm_*`` too (``TRACKING_PREFIXES``). The API stays strict about unknown parameters.
TRACKING = frozenset({"fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid",
                      "yclid", "twclid", "ttclid", "li_fat_id", "igshid", "mc_cid", "mc_eid",
                      "_ga", "_gl", "ref_src", "s_cid", "mkt_tok", "si"})
TRACKING_PREFIXES = ("utm_",)


def N_(message: str) -> str:
    """Marks a message for the catalogs; it is translated where it is shown."""
    return message


_KIND_LABELS = {"survey": N_("World Bank survey"), "observed": N_("provider's own quote"),
                "estimate": N_("comparison site's estimate"),
                "emulated": N_("emulated — not a real price"),
                "published_tariff": N_("post's published tariff")}
_PAY_LABELS = {
    "cash": N_("Cash"), "bank_account": N_("Bank account"), "card": N_("Card"),
    "mobile_money": N_("Mobile money"), "mobile_wallet": N_("Mobile wallet"),
    "home_delivery": N_("Home delivery"), "post_office": N_("Post office"),
}
_PAY_IN = {  # how the sender pays, and where
    "agent": N_("%(how)s at an agent"), "branch": N_("%(how)s at a branch"),
    "post_office_branch": N_("%(how)s at a post office"), "internet": N_("%(how)s online"),
    "mobile_phone": N_("%(how)s by mobile phone"), "call_center": N_("%(how)s by phone"),
}
_ACCESS_ONLY = {
    "agent": N_("At an agent"), "branch": N_("At a branch"),
    "post_office_branch": N_("At a post office"), "internet": N_("Online"),
    "mobile_phone": N_("By mobile phone"), "call_center": N_("By phone"),
}
_SPEED_LABELS = {
    Speed.LESS_THAN_ONE_HOUR: N_("Less than one hour"), Speed.SAME_DAY: N_("Same day"),
    Speed.NEXT_DAY: N_("Next day"), Speed.TWO_DAYS: N_("2 days"),
    Speed.THREE_TO_FIVE_DAYS: N_("3-5 days"), Speed.SIX_DAYS_OR_MORE: N_("6 days or more"),
}
#: The caveat marks' short names (their explanations are ``publish.data.CAVEATS``, whose
#: texts the catalogs translate too: tests/test_page_i18n.py checks they all do).
_FLAG_NAMES = {
    "emulated": N_("emulated"), "estimate": N_("estimate"), "partner": N_("partner"),
    "bank_transfer_only": N_("bank transfer only"), "negative_margin": N_("negative margin"),
    "negative_total_cost": N_("negative total cost"),
    "reference_stale": N_("reference stale"), "approximate_amount": N_("approximate amount"),
    "tariff_out_of_validity": N_("tariff out of validity"),
}


class Text:
    """The page's words in one language: gettext, and CLDR formatting."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._t = i18n.translations(lang)

    def __call__(self, message: str, **values: Any) -> str:
        text = self._t.gettext(message)
        return text % values if values else text

    def plural(self, singular: str, plural: str, n: int, **values: Any) -> str:
        return self._t.ngettext(singular, plural, n) % values

    def pct(self, value: float | None) -> str:
        return self("unknown") if value is None else i18n.percent(value, self.lang)

    def money(self, value: float | Decimal, currency: str) -> str:
        return i18n.money(value, currency, self.lang)

    def number(self, value: float | Decimal) -> str:
        return i18n.number(value, self.lang)

    def date(self, iso: str) -> str:
        return i18n.date(dt.date.fromisoformat(iso[:10]), self.lang)

    def country(self, ref: dict[str, Any]) -> str:
        return i18n.country(ref.get("alpha2"), ref.get("name") or ref.get("alpha3") or "?",
                            self.lang)


@functools.cache
def _environment(lang: str) -> jinja2.Environment:
    """One Jinja2 environment per language, its catalog installed (autoescape on: every
    value from the data is escaped)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, extensions=["jinja2.ext.i18n"], trim_blocks=True,
        lstrip_blocks=True, undefined=jinja2.StrictUndefined,
        # Templates are package files: read once, not checked on every request.
        auto_reload=False)
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def _received(s: dict[str, Any], t: Text) -> tuple[str, str]:
    """What arrives, and a note under it."""
    # The unit is named only where it is known (publish.receive); otherwise the figure says
    # it has none rather than pass for the sending or the receiving currency.
    cur = s.get("receive_currency")

    unknown = t("(currency unknown)")

    def amount(value: float) -> str:
        return t.money(value, cur) if cur else f"{t.number(value)} {unknown}"

    if s["amount_received"] is not None:
        note = ""
        if s["fee_paid_on_top"] and s["fee"]:
            # Say it: this service's fee comes on top of the amount sent.
            fee = (t.money(s["fee"], s["fee_currency"]) if s["fee_currency"]
                   else t.number(s["fee"]))
            note = t("you also pay the fee, %(fee)s", fee=fee)
        return amount(s["amount_received"]), note
    low, high = s["amount_received_if_fee_deducted"], s["amount_received_if_fee_on_top"]
    if low is None and high is None:
        return t("unknown"), ""
    if low is None or high is None or abs(high - low) < 0.005:
        return amount(high if high is not None else low), ""
    return (f"{amount(low)} – {amount(high)}",
            t("(fee taken from the amount – paid on top)"))


def _pay_in(s: dict[str, Any], t: Text) -> str:
    how = t(_PAY_LABELS[s["pay_in"]]) if s.get("pay_in") in _PAY_LABELS else ""
    where = s.get("access_point") or ""
    if how and where in _PAY_IN:
        return t(_PAY_IN[where], how=how)
    if where in _ACCESS_ONLY:
        return t(_ACCESS_ONLY[where])
    return how or t("not stated")


def _speed(value: str | None, t: Text) -> str:
    if not value:
        return t("unknown")
    try:
        return t(_SPEED_LABELS[Speed(value)])
    except ValueError:
        return value


def _flag(f: str, t: Text, explained: str = "") -> dict[str, str]:
    """A caveat mark's name and explanation in the page's language (a flag the catalogs
    do not know yet shows as the API names and explains it)."""
    name = t(_FLAG_NAMES[f]) if f in _FLAG_NAMES else f.replace("_", " ")
    return {"name": name, "title": t(CAVEATS[f]) if f in CAVEATS else explained}


def _heading(doc: dict[str, Any], t: Text) -> str:
    """The result's heading names the amount every figure is for: the one priced, and,
    when that is not the one asked, the one asked beside it."""
    cur = doc["currency"]
    names = {"source": t.country(doc["from"]), "destination": t.country(doc["to"])}
    if not doc["approximate"]:
        return t("Prices for %(amount)s from %(source)s to %(destination)s",
                 amount=t.money(doc["amount"], cur), **names)
    everything = doc["services"] + doc["non_transparent"]
    surveyed = bool(everything) and all(s["data_kind"] == "survey" for s in everything)
    message = (N_("Prices for %(priced)s, the nearest amount surveyed to your %(amount)s, "
                  "from %(source)s to %(destination)s") if surveyed else
               N_("Prices for %(priced)s, the nearest amount priced to your %(amount)s, "
                  "from %(source)s to %(destination)s"))
    return t(message, priced=t.money(doc["priced_amount"], cur),
             amount=t.money(doc["amount"], cur), **names)


def _collected(doc: dict[str, Any], t: Text) -> str:
    """The period the prices are of, what kind of data they are and when they were
    collected: a survey's figure never passes for this month's."""
    everything = doc["services"] + doc["non_transparent"]
    days = sorted(s["collected_at"][:10] for s in everything if s["collected_at"])
    kinds = sorted({s["data_kind"] for s in everything})
    what = ", ".join(t(_KIND_LABELS[k]) if k in _KIND_LABELS else k for k in kinds)
    what = what or t("no quotes")
    if not days:
        return t("Prices of %(period)s (%(kinds)s).", period=doc["period"], kinds=what)
    if days[-1] == days[0]:
        return t("Prices of %(period)s (%(kinds)s, collected %(date)s).",
                 period=doc["period"], kinds=what, date=t.date(days[0]))
    return t("Prices of %(period)s (%(kinds)s, collected %(first)s to %(last)s).",
             period=doc["period"], kinds=what, first=t.date(days[0]), last=t.date(days[-1]))


def _within_an_hour(doc: dict[str, Any], t: Text) -> str:
    """The G20 speed target on the page: how many of the corridor's providers deliver within
    an hour (a provider counts when one of its services does), as /v1/kpis counts them."""
    everything = doc["services"] + doc["non_transparent"]
    providers = {s["provider"] for s in everything}
    fast = {s["provider"] for s in everything if s["speed"] == Speed.LESS_THAN_ONE_HOUR}
    if not providers:
        return ""
    return t.plural("%(fast)s of %(total)s provider delivers within an hour",
                    "%(fast)s of %(total)s providers deliver within an hour",
                    len(providers), fast=len(fast), total=len(providers))


def _targets(corridor: dict[str, Any], t: Text) -> list[dict[str, str]]:
    out = []
    for target in (3, 5):
        points = corridor[f"points_above_{target}"]
        pct = i18n.percent(target, t.lang, 0)
        if points is None:
            out.append({"cls": "", "text": t(
                "No average for this corridor: no distance from the %(target)s target to "
                "show.", target=pct)})
        elif points > 0:
            out.append({"cls": "above", "text": t(
                "%(points)s points above the %(target)s target", points=t.number(points),
                target=pct)})
        else:
            out.append({"cls": "below", "text": t(
                "%(points)s points below the %(target)s target", points=t.number(abs(points)),
                target=pct)})
    return out


def _result(doc: dict[str, Any], t: Text) -> dict[str, Any]:
    """What the template shows of a ``/v1/compare`` document, in the page's language."""
    cur = doc["currency"]
    corridor = doc["corridor"]
    # The cost column is the one the ranking orders by; the survey method's additive total
    # (fee % + FX margin %) stands beside it when the ranking is by what arrives per unit
    # paid, which a fee paid on top makes differ.
    per_unit = doc["ranked_by"] == "amount_received_per_amount_paid"
    head = [(t("Rank"), True), (t("Service"), False), (t("What arrives"), True)]
    head += ([(t("Cost (share of all you pay)"), True),
              (t("Total cost (survey method: fee % + FX margin %)"), True)] if per_unit
             else [(t("Total cost"), True)])
    head += [(t("Speed"), False), (t("How to pay"), False), (t("How it is picked up"), False),
             (t("Collected"), False)]
    rows = []
    for s in doc["services"]:
        received, received_note = _received(s, t)
        costs = ([s["effective_cost_pct"], s["total_cost_pct"]] if per_unit
                 else [s["total_cost_pct"]])
        cells: list[dict[str, Any]] = [
            {"text": str(s["rank"])},
            {"text": s["provider"], "flags": [_flag(f, t) for f in s["flags"]],
             "note": s["product"] or ""},
            {"text": received, "note": received_note},
            *({"text": t.pct(c)} for c in costs),
            {"text": _speed(s["speed"], t)},
            {"text": _pay_in(s, t)},
            {"text": t(_PAY_LABELS[s["pay_out"]]) if s.get("pay_out") in _PAY_LABELS
             else t("not stated")},
            {"text": t.date(s["collected_at"]) if s["collected_at"] else t("unknown"),
             "note": t(_KIND_LABELS[s["data_kind"]]) if s["data_kind"] in _KIND_LABELS
             else s["data_kind"]},
        ]
        rows.append([{"flags": [], "note": "", **c, "label": label, "num": num}
                     for c, (label, num) in zip(cells, head, strict=True)])
    return {
        "heading": _heading(doc, t),
        "approximate": (t("No service was priced at the %(amount)s you asked for: every "
                          "figure below is for %(priced)s, not scaled.",
                          amount=t.money(doc["amount"], cur),
                          priced=t.money(doc["priced_amount"], cur))
                        if doc["approximate"] else ""),
        "collected": _collected(doc, t),
        "average": t.pct(corridor["average"]),
        "average_below_zero": corridor["average"] is not None and corridor["average"] < 0,
        "within_an_hour": _within_an_hour(doc, t),
        "targets": _targets(corridor, t),
        # "Watch this corridor": its Atom feed of alerts (docs/alerts.md).
        "feed": f"/v1/feeds/corridor/{doc['from']['alpha3']}-{doc['to']['alpha3']}.atom",
        "columns": [{"text": text, "num": num} for text, num in head],
        "rows": rows,
        "currency_unknown": any(not s.get("receive_currency") for s in doc["services"]),
        "caveats": [_flag(f, t, text) for f, text in doc["flags_explained"].items()],
        # Each name isolated (<bdi>) for a page in the other direction; markupsafe escapes it.
        "non_transparent": Markup(", ").join(Markup("<bdi>{}</bdi>").format(s["provider"])
                                             for s in doc["non_transparent"]),
    }


def render_result(doc: dict[str, Any], lang: str = i18n.DEFAULT) -> str:
    """The result section alone (what the page shows under its form for ``doc``)."""
    t = Text(lang)
    return _environment(lang).get_template("result.html").render(
        **_page_defaults(t), result=_result(doc, t))


@dataclass(frozen=True)
class _Form:
    """What the page's form offers, worked out once per snapshot (``Snapshot.keep``)."""

    senders: list[str]
    receivers: list[str]
    #: Each sending country's currency in its latest priced period (what the amount is in).
    send_currencies: dict[str, str]
    #: The sources of all the data.
    sources: list[str]


def _form_data(snap: Snapshot) -> _Form:
    def make() -> _Form:
        # From the latest prices, without making every corridor's price points.
        currencies = snap.index.send_currencies()
        return _Form(sorted({s for s, _ in snap.index}), sorted({d for _, d in snap.index}),
                     currencies, sorted(set(snap.quotes["source"].unique().to_list())))
    return snap.keep(("page-form",), make)


def _options(snap: Snapshot, codes: list[str], t: Text,
             currencies: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The options of a country list, named in the page's language and sorted by that name;
    with ``currencies``, each names its currency (the form works without JavaScript, so the
    amount's currency is shown before a choice). Made once per snapshot and language."""
    def make() -> list[dict[str, str]]:
        out = []
        for code in codes:
            name = t.country(country_ref(code))
            label = f"{name} ({code})"
            if currencies and code in currencies:
                label += f" – {currencies[code]}"
            out.append({"code": code, "label": label, "key": i18n.collation_key(name)})
        return sorted(out, key=lambda o: (o["key"], o["code"]))
    return snap.keep(("page-options", t.lang, bool(currencies)), make)


@functools.cache
def _currency_names(currency: str) -> frozenset[str]:
    """The ISO code and every symbol the page's languages write ``currency`` with: what an
    amount typed with a currency may name."""
    names = {currency.upper()}
    for lang in i18n.LANGUAGES:
        names.add(get_currency_symbol(currency, locale=i18n.locale(lang.code)).upper())
    return frozenset(names)


def without_tracking(query: MultiMapping[str]) -> MultiDictProxy[str]:
    """``query`` less the parameters in ``TRACKING`` and those starting ``utm_``."""
    kept = MultiDict((k, v) for k, v in query.items()
                     if k not in TRACKING and not k.lower().startswith(TRACKING_PREFIXES))
    return MultiDictProxy(kept)


@dataclass(frozen=True)
class _Error:
    field: str
    message: str


#: The amount the form shows before anything is typed, and prices when a link has none.
DEFAULT_AMOUNT = Decimal(200)


def _read_amount(p: Params, currency: str | None, t: Text) -> Decimal:
    """The amount typed into the box, read as ``publish.amounts`` reads it."""
    if "amount" not in p.query:
        # A link naming the corridor alone (a feed's, one shared by hand): the form's own
        # amount, as if the box had been left as it is shown. A box emptied is asked for.
        return DEFAULT_AMOUNT
    text = p.raw("amount")
    example = t("for example %(whole)s or %(decimal)s", whole=i18n.number(200, t.lang, 0),
                decimal=t.number(Decimal("200.50")))
    if text is None:
        raise _PageError(400, "amount", t("Type the amount you want to send, %(example)s.",
                                          example=example))
    try:
        amount = read_amount(text, _currency_names(currency) if currency else frozenset())
    except UnreadableAmount:
        raise _PageError(400, "amount", t(
            "We could not read the amount “%(typed)s”. Type only the number, %(example)s.",
            typed=text[:40], example=example)) from None
    except OtherCurrency as exc:
        raise _PageError(422, "amount", t(
            "The amount is in %(currency)s, the sending country's currency: “%(named)s” is "
            "another one. Type the amount in %(currency)s.", currency=currency,
            named=str(exc)[:20])) from None
    if amount <= 0:
        raise _PageError(422, "amount", t("The amount must be more than zero."))
    if amount > MAX_AMOUNT:
        raise _PageError(422, "amount", t("The amount must be at most %(max)s.",
                                          max=i18n.number(MAX_AMOUNT, t.lang, 0)))
    return amount


class _PageError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = _Error(field, message)


def _country(p: Params, name: str, t: Text) -> str:
    """A country of the form, or the page's sentence about what is wrong with it."""
    try:
        code = p.country(name, required=True)
    except Problem as exc:
        if p.raw(name) is None:
            message = (t("Choose the country you send money from.") if name == "from"
                       else t("Choose the country the money goes to."))
        else:
            message = t("We do not know the country “%(code)s”. Choose one from the list.",
                        code=(p.raw(name) or "")[:40])
        raise _PageError(exc.status, name, message) from None
    assert code is not None
    return code


def _page_defaults(t: Text) -> dict[str, Any]:
    return {"lang": t.lang, "dir": i18n.direction(t.lang),
            "pct3": i18n.percent(3, t.lang, 0), "pct5": i18n.percent(5, t.lang, 0),
            "pct75": i18n.percent(75, t.lang, 0)}


def _switch(query: MultiDictProxy[str], lang: str) -> list[dict[str, str | bool]]:
    """The language switch: this page's link in each language (its question kept)."""
    kept = [(k, v) for k, v in query.items() if k != "lang"]
    return [{"code": lang_.code, "autonym": lang_.autonym, "dir": i18n.direction(lang_.code),
             "current": lang_.code == lang,
             "href": "/?" + urlencode([*kept, ("lang", lang_.code)])}
            for lang_ in i18n.LANGUAGES]


async def home(request: web.Request) -> web.StreamResponse:
    query = without_tracking(request.query)
    asked_lang = (query.get("lang") or "").strip() or None
    lang = i18n.negotiate(asked_lang, request.headers.get("Accept-Language"))
    t = Text(lang)
    # Emulated quotes only when asked (include=emulated) or under `serve --sandbox`.
    asked = (query.get("include") or "").strip() == "emulated"
    emulated = asked or request.app.get(PAGE_SHOWS_EMULATED, False)
    snap = await request.app[DATA].snapshot(include_emulated=emulated)
    form = _form_data(snap)

    result: dict[str, Any] | None = None
    error: _Error | None = None
    status = 200
    src = dst = None
    amount_text = ""
    # The footer names the sources of what the page shows: the result's, else all the data's.
    shown_sources = form.sources
    try:
        # People type into the form: spaces around a value are forgiven here.
        try:
            p = Params(query, PAGE_PARAMS, trim=True)
            p.choice("include", ("emulated",))
        except Problem as exc:
            raise _PageError(exc.status, exc.parameter or "", t(
                "This link has something we cannot read (%(parameter)s). Choose again "
                "below.", parameter=exc.parameter or "?")) from None
        amount_text = (p.raw("amount") or str(DEFAULT_AMOUNT))[:40]
        if any(p.raw(k) for k in _QUESTION):
            src = _country(p, "from", t)
            dst = _country(p, "to", t)
            amount = _read_amount(p, form.send_currencies.get(src), t)
            if src == dst:
                raise _PageError(422, "to", t("Choose two different countries."))
            await receive_units(request.app, snap)
            try:
                doc = compare_document(snap, src, dst, amount, None, None, None, None)
            except Problem as exc:
                if exc.status != 404:
                    raise
                raise _PageError(200, "", t(
                    "No prices are known for sending from %(source)s to %(destination)s yet.",
                    source=t.country(country_ref(src)),
                    destination=t.country(country_ref(dst)))) from None
            shown_sources = [s["name"] for s in doc["sources"]]
            result = _result(doc, t)
    except _PageError as exc:
        status, error = exc.status, exc.error
    env = _environment(lang)
    body = env.get_template("page.html").render(
        **_page_defaults(t),
        canonical=(str(request.url.with_query(query).relative())
                   if len(query) != len(request.query) else ""),
        languages=_switch(query, lang),
        lang_asked=asked_lang is not None,
        senders=_options(snap, form.senders, t, form.send_currencies),
        receivers=_options(snap, form.receivers, t),
        selected_from=src, selected_to=dst,
        amount=amount_text or "200",
        amount_currency=(form.send_currencies[src] if src in form.send_currencies else
                         t("in the sending country's currency")),
        error=error,
        result=result,
        emulated=snap.include_emulated,
        asked_emulated=asked,
        sources=sources_of(shown_sources),
        methodology=Markup("<bdi>{}</bdi>").format(METHODOLOGY_VERSION),
    ).encode()
    return send(request, body, "text/html", status=status,
                headers={"Content-Language": lang, "Vary": "Accept, Accept-Language"})
