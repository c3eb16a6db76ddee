"""``GET /``: the migrants' comparison page, rendered on the server, no JavaScript needed.

The form submits with GET to ``/`` itself, so a result is a plain link that can be shared.
The ranked table is the ``/v1/compare`` document rendered as HTML: what arrives, total
cost, speed, how to pay in and pick up, and the corridor's distance from 3% and 5%.

Bad input is shown on the page with status 400 or 422, like every error not cached
(``no-store``, no ETag): only a page that answers its question is.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

from corridors.types import SPEED_LABELS, Speed
from metrics import METHODOLOGY_VERSION
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
from publish.emulated import banner_html
from publish.params import Params
from publish.problems import Problem
from publish.responses import send

PAGE_PARAMS = frozenset({"from", "to", "amount", "include"})
#: The parameters that ask a question (``include`` only says which data may answer it).
_QUESTION = ("from", "to", "amount")
#: True when the page shows emulated data without being asked (``publish.data``).
PAGE_SHOWS_EMULATED = SHOWS_EMULATED

_KIND_LABELS = {"survey": "World Bank survey", "observed": "provider's own quote",
                "estimate": "comparison site's estimate",
                "emulated": "emulated — not a real price"}

_PAY_LABELS = {
    "cash": "Cash", "bank_account": "Bank account", "card": "Card",
    "mobile_money": "Mobile money", "mobile_wallet": "Mobile wallet",
    "home_delivery": "Home delivery",
}
_ACCESS_LABELS = {
    "agent": "at an agent", "branch": "at a branch", "post_office_branch": "at a post office",
    "internet": "online", "mobile_phone": "by mobile phone", "call_center": "by phone",
}


@functools.cache
def _template() -> Template:
    path = Path(__file__).parent / "templates" / "page.html"
    return Template(path.read_text(encoding="utf-8"))


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}%"


def _options(codes: list[tuple[str, str]], selected: str | None, prompt: str,
             currencies: dict[str, str] | None = None) -> str:
    """The options of a country list; with ``currencies``, each names its currency (the
    form works without JavaScript, so the amount's currency is shown before a choice)."""
    out = [f'<option value="">{_e(prompt)}</option>']
    for code, name in codes:
        sel = " selected" if code == selected else ""
        cur = f" – {_e(currencies[code])}" if currencies and code in currencies else ""
        out.append(f'<option value="{_e(code)}"{sel}>{_e(name)} ({_e(code)}){cur}</option>')
    return "\n".join(out)


def _received(s: dict[str, Any]) -> str:
    # The unit is named only where it is known (publish.receive); otherwise the figure says
    # it has none rather than pass for the sending or the receiving currency.
    cur = (_e(s["receive_currency"]) if s.get("receive_currency") else
           f'<span class="note" title="{_e(s.get("receive_currency_note") or "")}">'
           "(currency unknown)</span>")
    if s["amount_received"] is not None:
        note = ""
        if s["fee_paid_on_top"] and s["fee"]:
            # Say it: this service's fee comes on top of the amount sent.
            note = (f'<br><span class="note">you also pay the fee, {s["fee"]:,.2f} '
                    f'{_e(s["fee_currency"] or "")}</span>')
        return f"{s['amount_received']:,.2f} {cur}{note}"
    low, high = s["amount_received_if_fee_deducted"], s["amount_received_if_fee_on_top"]
    if low is None and high is None:
        return "unknown"
    if low is None or high is None or abs(high - low) < 0.005:
        return f"{(high if high is not None else low):,.2f} {cur}"
    return (f'{low:,.2f}–{high:,.2f} {cur} '
            '<span class="note">(fee taken from the amount – paid on top)</span>')


def _pay_in(s: dict[str, Any]) -> str:
    parts = [_PAY_LABELS.get(s["pay_in"] or "", ""), _ACCESS_LABELS.get(s["access_point"] or "",
                                                                       "")]
    text = " ".join(p for p in parts if p)
    return _e(text or "not stated")


def _speed(value: str | None) -> str:
    try:
        return _e(SPEED_LABELS[Speed(value)]) if value else "unknown"
    except ValueError:
        return _e(value)


def _distance(points: float | None, target: int) -> str:
    if points is None:
        return f"<li>No average for this corridor: no distance from {target}% to show.</li>"
    if points > 0:
        return (f'<li><span class="above">{points:.2f} points above</span> the {target}% '
                "target</li>")
    return f'<li><span class="below">{-points:.2f} points below</span> the {target}% target</li>'


def _amount(value: float, currency: str) -> str:
    return f"{value:,.2f} {_e(currency)}"


def _heading(doc: dict[str, Any]) -> str:
    """The result's heading names the amount every figure is for: the one priced, and,
    when that is not the one asked, the one asked beside it."""
    f, t, cur = doc["from"], doc["to"], doc["currency"]
    where = f"from {_e(f['name'])} to {_e(t['name'])}"
    if not doc["approximate"]:
        return f"Prices for {_amount(doc['amount'], cur)} {where}"
    everything = doc["services"] + doc["non_transparent"]
    how = ("surveyed" if everything and all(s["data_kind"] == "survey" for s in everything)
           else "priced")
    return (f"Prices for {_amount(doc['priced_amount'], cur)}, the nearest amount {how} to "
            f"your {_amount(doc['amount'], cur)}, {where}")


def _collected(doc: dict[str, Any]) -> str:
    """The period the prices are of, what kind of data they are and when they were
    collected: a survey's figure never passes for this month's."""
    everything = doc["services"] + doc["non_transparent"]
    days = sorted(s["collected_at"][:10] for s in everything if s["collected_at"])
    kinds = sorted({s["data_kind"] for s in everything})
    what = ", ".join(_KIND_LABELS.get(k, k) for k in kinds) or "no quotes"
    when = (f", collected {days[0]}" + (f" to {days[-1]}" if days[-1] != days[0] else "")
            if days else "")
    return f"Prices of {_e(doc['period'])} ({_e(what)}{when})"


def _within_an_hour(doc: dict[str, Any]) -> str:
    """The G20 speed target on the page: how many of the corridor's providers deliver within
    an hour (a provider counts when one of its services does), as /v1/kpis counts them."""
    everything = doc["services"] + doc["non_transparent"]
    providers = {s["provider"] for s in everything}
    fast = {s["provider"] for s in everything if s["speed"] == Speed.LESS_THAN_ONE_HOUR}
    if not providers:
        return ""
    return (f'<p id="within-an-hour">{len(fast)} of {len(providers)} provider'
            f'{"" if len(providers) == 1 else "s"} deliver within an hour '
            '<span class="note">(the G20 target: 75% of remittances within an hour by '
            "2027)</span>.</p>")


def _flag_marks(s: dict[str, Any]) -> str:
    return "".join(f' <span class="flag" title="{_e(CAVEATS.get(f, f))}">&#9888; '
                   f"{_e(f.replace('_', ' '))}</span>" for f in s["flags"])


def render_result(doc: dict[str, Any]) -> str:
    cur = doc["currency"]
    parts = []
    parts.append(f'<section aria-labelledby="result-title"><h2 id="result-title">'
                 f"{_heading(doc)}</h2>")
    if doc["approximate"]:
        parts.append(f'<p class="note" id="approximate">No service was priced at the '
                     f'{_amount(doc["amount"], cur)} you asked for: every figure below is '
                     f'for {_amount(doc["priced_amount"], cur)}, not scaled.</p>')
    corridor = doc["corridor"]
    parts.append(f'<p id="collected">{_collected(doc)}. Average cost in this corridor: '
                 f'<strong id="corridor-average">{_pct(corridor["average"])}</strong>.</p>')
    if corridor["average"] is not None and corridor["average"] < 0:
        parts.append('<p class="note" id="average-below-zero">&#9888; An average below zero '
                     "rests on services whose rate beats the mid-market rate: see the marks "
                     "below.</p>")
    parts.append(_within_an_hour(doc))
    parts.append('<ul id="targets">' + _distance(corridor["points_above_3"], 3)
                 + _distance(corridor["points_above_5"], 5) + "</ul>")
    parts.append(f'<p id="watch"><a href="/v1/feeds/corridor/{_e(doc["from"]["alpha3"])}-'
                 f'{_e(doc["to"]["alpha3"])}.atom" type="application/atom+xml">Watch this '
                 "corridor</a>: its feed tells you when its cost crosses 3% or 5%.</p>")
    # The cost column is the one the ranking orders by; the survey method's additive total
    # (fee % + FX margin %) stands beside it when the ranking is by what arrives per unit
    # paid, which a fee paid on top makes differ.
    per_unit = doc["ranked_by"] == "amount_received_per_amount_paid"
    cost_head = ('<th scope="col" class="num">Cost (share of all you pay)</th>'
                 '<th scope="col" class="num">Total cost (survey method: fee % + FX '
                 "margin %)</th>" if per_unit else
                 '<th scope="col" class="num">Total cost</th>')
    rows = []
    for s in doc["services"]:
        cost = (f'<td class="num">{_pct(s["effective_cost_pct"])}</td>'
                f'<td class="num">{_pct(s["total_cost_pct"])}</td>' if per_unit else
                f'<td class="num">{_pct(s["total_cost_pct"])}</td>')
        rows.append(
            f'<tr><td class="num">{s["rank"]}</td><td>{_e(s["provider"])}{_flag_marks(s)}'
            f'<br><span class="note">{_e(s["product"] or "")}</span></td>'
            f'<td class="num">{_received(s)}</td>{cost}'
            f'<td>{_speed(s["speed"])}</td><td>{_pay_in(s)}</td>'
            f'<td>{_e(_PAY_LABELS.get(s["pay_out"] or "", "not stated"))}</td>'
            f'<td>{_e((s["collected_at"] or "")[:10] or "unknown")}'
            f'<br><span class="note">{_e(_KIND_LABELS.get(s["data_kind"], s["data_kind"]))}'
            "</span></td></tr>")
    if rows:
        parts.append(
            '<table id="ranked"><caption>Services ranked from cheapest to most expensive'
            '</caption><thead><tr><th scope="col" class="num">Rank</th>'
            '<th scope="col">Service</th><th scope="col" class="num">What arrives</th>'
            f'{cost_head}<th scope="col">Speed</th>'
            '<th scope="col">How to pay</th><th scope="col">How it is picked up</th>'
            '<th scope="col">Collected</th></tr>'
            "</thead><tbody>" + "".join(rows) + "</tbody></table>")
        if any(not s.get("receive_currency") for s in doc["services"]):
            parts.append('<p class="note" id="currency-unknown">Where the currency is '
                         "unknown, the source does not say which currency the service pays "
                         "out in, and its exchange rate does not show it.</p>")
    else:
        parts.append('<p id="no-services">No service in this corridor disclosed its exchange '
                     "rate: none can be ranked.</p>")
    if doc["flags_explained"]:
        items = "".join(f'<li><span class="flag">&#9888; {_e(f.replace("_", " "))}</span>: '
                        f"{_e(text)}</li>" for f, text in doc["flags_explained"].items())
        parts.append('<div id="caveats"><p>Marked services keep their rank; read the mark '
                     f"before relying on them:</p><ul>{items}</ul></div>")
    if doc["non_transparent"]:
        names = ", ".join(_e(s["provider"]) for s in doc["non_transparent"])
        parts.append(f'<p class="note" id="non-transparent">Not ranked, because they do not '
                     f"disclose the exchange rate they apply: {names}.</p>")
    parts.append("</section>")
    return "\n".join(parts)


@dataclass(frozen=True)
class _Form:
    """What the page's form offers, worked out once per snapshot (``Snapshot.keep``)."""

    senders: list[tuple[str, str]]  # (code, name), by name
    receivers: list[tuple[str, str]]
    #: Each sending country's currency in its latest priced period (what the amount is in).
    send_currencies: dict[str, str]
    #: The sources of all the data.
    sources: list[str]


def _form_data(snap: Snapshot) -> _Form:
    def named(codes: set[str]) -> list[tuple[str, str]]:
        return sorted(((c, country_ref(c)["name"] or c) for c in codes), key=lambda x: x[1])

    def make() -> _Form:
        # From the latest prices, without making every corridor's price points.
        currencies = snap.index.send_currencies()
        return _Form(named({s for s, _ in snap.index}), named({d for _, d in snap.index}),
                     currencies, sorted(set(snap.quotes["source"].unique().to_list())))
    return snap.keep(("page-form",), make)


def _sources(names: list[str]) -> str:
    items = []
    for s in sources_of(names):
        title = (f'<a href="{_e(s["url"])}">{_e(s["title"])}</a>' if s["url"]
                 else _e(s["title"]))
        items.append(f"{title} ({_e(s['licence'])})" if s["licence"] else title)
    return "; ".join(items)


def _name(code: str | None) -> str:
    """A country's name for a sentence (its code when it has no name)."""
    return (country_ref(code)["name"] or code) if code else "?"


async def home(request: web.Request) -> web.StreamResponse:
    # Emulated quotes only when asked (include=emulated) or under `serve --sandbox`.
    asked = (request.query.get("include") or "").strip() == "emulated"
    emulated = asked or request.app.get(PAGE_SHOWS_EMULATED, False)
    snap = await request.app[DATA].snapshot(include_emulated=emulated)
    form = _form_data(snap)

    result, status = "", 200
    src = dst = None
    amount_text = ""
    # The footer names the sources of what the page shows: the result's, else all the data's.
    shown_sources = form.sources
    try:
        # People type into the form: spaces around a value are forgiven here.
        p = Params(request.query, PAGE_PARAMS, trim=True)
        amount_text = (p.raw("amount") or "200")[:20]
        p.choice("include", ("emulated",))
        if any(p.raw(k) for k in _QUESTION):
            src = p.country("from", required=True)
            dst = p.country("to", required=True)
            amount = p.amount("amount", required=True)
            assert src and dst and amount is not None
            if src == dst:
                raise Problem(422, "Choose two different countries.", parameter="to")
            await receive_units(request.app, snap)
            doc = compare_document(snap, src, dst, amount, None, None, None, None)
            shown_sources = [s["name"] for s in doc["sources"]]
            result = render_result(doc)
    except Problem as exc:
        status = exc.status if exc.status != 404 else 200
        message = (exc.detail if exc.status != 404 else
                   f"No prices are known for sending from {_name(src)} to {_name(dst)} yet.")
        result = f'<p class="error" role="alert" id="error">{_e(message)}</p>'
    body = _template().substitute(
        title="sendcost – compare the cost of sending money",
        from_options=_options(form.senders, src, "Choose a country", form.send_currencies),
        to_options=_options(form.receivers, dst, "Choose a country"),
        amount=_e(amount_text or "200"),
        amount_currency=(_e(form.send_currencies[src]) if src in form.send_currencies else
                         "in the sending country's currency"),
        result=result,
        banner=banner_html() if snap.include_emulated else "",
        hidden=('<input type="hidden" name="include" value="emulated">' if asked else ""),
        sources=_sources(shown_sources),
        methodology=_e(METHODOLOGY_VERSION),
    ).encode()
    return send(request, body, "text/html", status=status)
