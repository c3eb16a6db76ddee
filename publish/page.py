"""``GET /``: the migrants' comparison page, rendered on the server, no JavaScript needed.

The form submits with GET to ``/`` itself, so a result is a plain link that can be shared.
The ranked table is the ``/v1/compare`` document rendered as HTML: what arrives, total
cost, speed, how to pay in and pick up, and the corridor's distance from 3% and 5%.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

from corridors.types import SPEED_LABELS, Speed
from metrics import METHODOLOGY_VERSION
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


def _options(codes: list[tuple[str, str]], selected: str | None, prompt: str) -> str:
    out = [f'<option value="">{_e(prompt)}</option>']
    for code, name in codes:
        sel = " selected" if code == selected else ""
        out.append(f'<option value="{_e(code)}"{sel}>{_e(name)} ({_e(code)})</option>')
    return "\n".join(out)


def _received(s: dict[str, Any]) -> str:
    cur = s["receive_currency"] or ""
    if s["amount_received"] is not None:
        note = ""
        if s["fee_paid_on_top"] and s["fee"]:
            # Say it: this service's fee comes on top of the amount sent.
            note = (f'<br><span class="note">you also pay the fee, {s["fee"]:,.2f} '
                    f'{_e(s["fee_currency"] or "")}</span>')
        return f"{s['amount_received']:,.2f} {_e(cur)}{note}"
    low, high = s["amount_received_if_fee_deducted"], s["amount_received_if_fee_on_top"]
    if low is None and high is None:
        return "unknown"
    if low is None or high is None or abs(high - low) < 0.005:
        return f"{(high if high is not None else low):,.2f} {_e(cur)}"
    return (f'{low:,.2f}–{high:,.2f} {_e(cur)} '
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
    else:
        parts.append('<p id="no-services">No service in this corridor disclosed its exchange '
                     "rate: none can be ranked.</p>")
    if doc["non_transparent"]:
        names = ", ".join(_e(s["provider"]) for s in doc["non_transparent"])
        parts.append(f'<p class="note" id="non-transparent">Not ranked, because they do not '
                     f"disclose the exchange rate they apply: {names}.</p>")
    parts.append("</section>")
    return "\n".join(parts)


async def home(request: web.Request) -> web.StreamResponse:
    from publish.api import compare_document, send
    from publish.data import DATA, sources_of

    snap = await request.app[DATA].snapshot()
    senders = sorted({s for s, _ in snap.index})
    receivers = sorted({d for _, d in snap.index})
    from publish.data import country_ref

    def named(codes: list[str]) -> list[tuple[str, str]]:
        return sorted(((c, country_ref(c)["name"] or c) for c in codes), key=lambda x: x[1])

    result, status = "", 200
    src = dst = None
    amount_text = ""
    try:
        p = Params(request.query, PAGE_PARAMS)
        amount_text = (p.raw("amount") or "200")[:20]
        if any(p.raw(k) for k in PAGE_PARAMS):
            src = p.country("from", required=True)
            dst = p.country("to", required=True)
            amount = p.amount("amount", required=True)
            assert src and dst and amount is not None
            if src == dst:
                raise Problem(422, "Choose two different countries.", parameter="to")
            doc = compare_document(snap, src, dst, amount, None, None, None, None)
            result = render_result(doc)
    except Problem as exc:
        status = exc.status if exc.status != 404 else 200
        message = (exc.detail if exc.status != 404 else
                   f"No prices are known for sending from {src} to {dst} yet.")
        result = f'<p class="error" role="alert" id="error">{_e(message)}</p>'
    body = _template().substitute(
        title="sendcost – compare the cost of sending money",
        from_options=_options(named(senders), src, "Choose a country"),
        to_options=_options(named(receivers), dst, "Choose a country"),
        amount=_e(amount_text or "200"),
        result=result,
        sources="; ".join(f'{_e(s["title"])} ({_e(s["licence"])})'
                          for s in sources_of(["rpw"])),
        methodology=_e(METHODOLOGY_VERSION),
    ).encode()
    return send(request, body, "text/html", status=status)
