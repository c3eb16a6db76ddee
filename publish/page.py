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
from publish.data import DATA, Snapshot, country_ref, period_key, sources_of
from publish.params import Params
from publish.problems import Problem

PAGE_PARAMS = frozenset({"from", "to", "amount"})

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


def render_result(doc: dict[str, Any]) -> str:
    f, t = doc["from"], doc["to"]
    cur = doc["currency"]
    parts = [f'<section aria-labelledby="result-title"><h2 id="result-title">Sending '
             f'{doc["amount"]:,.2f} {_e(cur)} from {_e(f["name"])} to {_e(t["name"])}</h2>']
    if doc["approximate"]:
        parts.append(f'<p class="note" id="approximate">Services were priced at '
                     f'{doc["priced_amount"]:,.2f} {_e(cur)}, not at the amount you asked: the '
                     "figures below are for that amount.</p>")
    corridor = doc["corridor"]
    parts.append(f'<p>Survey period {_e(doc["period"])}. Average cost in this corridor: '
                 f'<strong id="corridor-average">{_pct(corridor["average"])}</strong>.</p>')
    parts.append('<ul id="targets">' + _distance(corridor["points_above_3"], 3)
                 + _distance(corridor["points_above_5"], 5) + "</ul>")
    rows = []
    for s in doc["services"]:
        rows.append(
            f'<tr><td class="num">{s["rank"]}</td><td>{_e(s["provider"])}'
            f'<br><span class="note">{_e(s["product"] or "")}</span></td>'
            f'<td class="num">{_received(s)}</td>'
            f'<td class="num">{_pct(s["total_cost_pct"])}</td>'
            f'<td>{_speed(s["speed"])}</td><td>{_pay_in(s)}</td>'
            f'<td>{_e(_PAY_LABELS.get(s["pay_out"] or "", "not stated"))}</td></tr>')
    if rows:
        parts.append(
            '<table id="ranked"><caption>Services ranked from cheapest to most expensive'
            '</caption><thead><tr><th scope="col" class="num">Rank</th>'
            '<th scope="col">Service</th><th scope="col" class="num">What arrives</th>'
            '<th scope="col" class="num">Total cost</th><th scope="col">Speed</th>'
            '<th scope="col">How to pay</th><th scope="col">How it is picked up</th></tr>'
            "</thead><tbody>" + "".join(rows) + "</tbody></table>")
        if any(not s.get("receive_currency") for s in doc["services"]):
            parts.append('<p class="note" id="currency-unknown">Where the currency is '
                         "unknown, the source does not say which currency the service pays "
                         "out in, and its exchange rate does not show it.</p>")
    else:
        parts.append('<p id="no-services">No service in this corridor disclosed its exchange '
                     "rate: none can be ranked.</p>")
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
        currencies: dict[str, str] = {}
        for (src, _), by_period in snap.index.items():
            latest = by_period[max(by_period, key=period_key)]
            currencies.setdefault(src, latest[0].send_currency)
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
    from publish.api import compare_document, receive_units, send

    snap = await request.app[DATA].snapshot()
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
        if any(p.raw(k) for k in PAGE_PARAMS):
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
        sources=_sources(shown_sources),
        methodology=_e(METHODOLOGY_VERSION),
    ).encode()
    return send(request, body, "text/html", status=status)
