"""The unit of what arrives: each service's receive currency, stated or inferred, never guessed.

A collector's quote states the currency it pays out in (``receive_currency``). An RPW quote
does not: the World Bank's file has no such column. It says it only in free-text notes on
about a quarter of its rows ("USD service", "This RSP sends EUR and pays out USD in this
corridor", "In this corridor all RSPs send and payout in EUR"); the importer keeps the
currency a note names (``payout_currency_noted``; corridors.reading.rpw reads the notes once).
Otherwise RPW's methodology prices the payout in the receiving country's currency. The quote
frame also keeps the service's reference rate (``inter lcu bank fx``), the interbank
rate from the sending currency into the currency the service pays out in — mostly:

* USA → Mexico, 2014Q2: 13 services at 12.95 (USD → MXN) and Citibank at 1.0 (USD → USD);
* Italy → China, 2014Q2: three at 1.37 (EUR → USD, "pays out USD") and one at 1.0 ("EUR
  service"): no service is priced in CNY;
* some rates are quoted from USD instead of the sending currency (Brazil → Paraguay "USD
  service" at 1.0 from BRL; Russia → Kyrgyzstan at 34.87, which is RUB per USD).

So a rate on its own can say several currencies. The amount received is named in a currency
only on this evidence (``basis: "reference_rate"``):

* the receiving country's one legal tender at the time (Unicode CLDR via babel) when the
  service's reference rate is the rate most of the corridor's transparent services share, that
  rate is not the USD, EUR or sending-currency rate (ratios to RPW's own USD price points),
  and the rates of corridors into that country from other sending currencies agree with it;
* USD when a service sending USD has a reference rate of exactly 1: nothing is converted.

Where the rate alone is not conclusive, the currency RPW's own note names
(``payout_currency_noted``, read once by corridors.reading.rpw and stored with the quote)
when the rate is a rate into that currency (``basis: "rpw_note"``). Where the rate names one
currency and the note another, the note says both. Otherwise ``receive_currency`` is null
and ``receive_currency_note`` says why. On the bundled data the rates name the currency of
29,957 of the 51,466 transparent RPW quotes. Of the 3,281 of them whose RPW note also states
a payout currency, 2,655 agree, 28 differ (notes such as "USD service" on a row priced at
the local rate), and 598 are EUR → West African CFA quotes whose rate is the fixed peg
(655.957 XOF per EUR) while the note says the money is paid out in EUR: their amounts are
XOF at the peg, which is what ``receive_currency`` names — the unit of the amounts, not the
notes that change hands (the note says both). Where the rate is not conclusive, the notes
name the currency of 8,105 more whose rate is a rate into it; 2,853 unknown ones name a
currency their rate does not bear out, and stay unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import polars as pl

from corridors.reference import legal_tender

#: Rates within 3% are the same rate (RPW's rates of one corridor are mostly identical).
SAME_RATE = math.log(1.03)
#: Implied USD rates within 20% may be the same currency: RPW's USD 200 price points are
#: rounded (EUR 160 for USD 200 in 2011Q1, when it was EUR 146).
SAME_CURRENCY = math.log(1.2)

Inferred = tuple[str | None, str | None, str | None]  # currency, basis, note

UNDISCLOSED = ("unknown: RPW does not state the pay-out currency, and this service did not "
               "disclose its exchange rate")
NOT_STATED = "unknown: the source does not state the pay-out currency"


def _ratio_within(a: float, b: float | None, tolerance: float) -> bool:
    return b is not None and a > 0 and b > 0 and abs(math.log(a / b)) <= tolerance


def _usd_rates(rpw: pl.DataFrame) -> dict[tuple[str, str], float]:
    """(period, currency) → units per USD, from RPW's own USD price points."""
    rates = rpw.group_by("period", "send_currency").agg(
        (pl.col("send_amount") / pl.col("amount_usd")).median().alias("per_usd"))
    out = {(p, c): r for p, c, r in rates.iter_rows() if r}
    for p in rpw["period"].unique().to_list():
        out[(p, "USD")] = 1.0
    return out


def _explained_otherwise(rate: float, per_usd: float, send: str, period: str, cd: str,
                         usd: dict[tuple[str, str], float]) -> bool:
    """Whether a rate looks like one into USD, EUR or the sending currency itself, or like
    the sending currency's own USD rate (quoted from USD): then it says nothing of ``cd``."""
    implied = per_usd * rate  # units of the pay-out currency per USD
    for code in ("USD", "EUR", send):
        if code != cd and _ratio_within(implied, usd.get((period, code)), SAME_CURRENCY):
            return True
    return send != cd and _ratio_within(rate, per_usd, SAME_CURRENCY)


def _corridor_rates(rpw: pl.DataFrame, usd: dict[tuple[str, str], float]
                    ) -> dict[tuple[str, str, str, int], tuple[float, str, int]]:
    """(period, from, to, amount_usd) → (rate, currency, corridors agreeing) of corridors
    whose majority rate is the rate into the receiving country's currency."""
    transparent = rpw.filter(pl.col("transparent") & (pl.col("reference_rate") > 0))
    keys = ["period", "source_code", "destination_code", "amount_usd"]
    groups = transparent.group_by(keys).agg(
        pl.col("send_currency").first(), pl.col("reference_rate").sort().alias("rates"))
    candidates: dict[tuple[str, str, str, int], tuple[float, str, str, float]] = {}
    for period, src, dst, amount_usd, send, rates in groups.iter_rows():
        middle = rates[(len(rates) - 1) // 2]
        shared = sum(_ratio_within(r, middle, SAME_RATE) for r in rates)
        tender = legal_tender(dst, period)
        per_usd = usd.get((period, send))
        if shared < 2 or 2 * shared <= len(rates) or len(tender) != 1 or per_usd is None:
            continue
        if _explained_otherwise(middle, per_usd, send, period, tender[0], usd):
            continue
        candidates[(period, src, dst, amount_usd)] = (middle, tender[0], send,
                                                      per_usd * middle)
    # Corroboration: the corridors into one country from other sending currencies must imply
    # the same USD rate for its currency (a rate quoted the wrong way round would not).
    by_destination: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for (period, src, dst, _), (_, _, _, implied) in candidates.items():
        by_destination.setdefault((period, dst), []).append((src, implied))
    out = {}
    for key, (rate, currency, _, implied) in candidates.items():
        peers = by_destination[(key[0], key[2])]
        if all(_ratio_within(implied, other, SAME_CURRENCY) for _, other in peers):
            out[key] = (rate, currency, len({src for src, _ in peers} - {key[1]}))
    return out


def infer(quotes: pl.DataFrame) -> dict[tuple[str, str, float], Inferred]:
    """(period, service_id, send_amount) → (currency, basis, note) for every quote without a
    stated receive currency (blocking: run it in a thread)."""
    unstated = quotes.filter(pl.col("receive_currency").is_null())
    rpw = unstated.filter(pl.col("source") == "rpw")
    usd = _usd_rates(rpw) if rpw.height else {}
    corridor = _corridor_rates(rpw, usd) if rpw.height else {}
    out: dict[tuple[str, str, float], Inferred] = {}
    columns = ["period", "service_id", "send_amount", "source", "source_code",
               "destination_code", "amount_usd", "send_currency", "reference_rate",
               "transparent", "payout_currency_noted"]
    if "payout_currency_noted" not in unstated.columns:  # a frame from before migration 12
        unstated = unstated.with_columns(pl.lit(None, pl.String).alias("payout_currency_noted"))
    for (period, service, amount, source, src, dst, amount_usd, send, rate, transparent,
         noted) in unstated.select(columns).iter_rows():
        key = (period, service, amount)
        if source != "rpw":
            out[key] = (None, None, NOT_STATED)
        elif not transparent or rate is None or rate <= 0:
            out[key] = (None, None, UNDISCLOSED)
        elif send == "USD" and rate == 1.0:
            out[key] = ("USD", "reference_rate",
                        "inferred: RPW does not state the pay-out currency; this service's "
                        "reference rate is 1 from USD, so nothing is converted")
        elif (found := corridor.get((period, src, dst, amount_usd))) is not None \
                and _ratio_within(rate, found[0], SAME_RATE):
            agreeing = (f"; the corridors into {found[1]} from {found[2]} other "
                        f"{'countries' if found[2] > 1 else 'country'} agree" if found[2]
                        else "")
            out[key] = (found[1], "reference_rate",
                        f"inferred: RPW does not state the pay-out currency; this service's "
                        f"reference rate, {rate:g} per {send}, is the rate most services of "
                        f"the corridor share, a rate into {found[1]}{agreeing}"
                        + _note_differs(noted, found[1]))
        elif noted is not None and _bears_out(noted, rate, send, period, usd):
            out[key] = (noted, "rpw_note",
                        f"noted: RPW's note says this service pays out in {noted}, and its "
                        f"reference rate, {rate:g} per {send}, is a rate into {noted}")
        else:
            out[key] = (None, None,
                        f"unknown: RPW does not state the pay-out currency, and this "
                        f"service's reference rate ({rate:g} from {send}) does not show it "
                        "unambiguously"
                        + (f"; RPW's note names {noted}, which the rate does not bear out"
                           if noted is not None else ""))
    return out


def _bears_out(noted: str, rate: float, send: str, period: str,
               usd: dict[tuple[str, str], float]) -> bool:
    """Whether a reference rate is one into the currency a note names: 1 when that is the
    currency sent, else the rate its USD rate implies (RPW's own price points, ``_usd_rates``)."""
    if noted == send:
        return rate == 1.0
    per_usd = usd.get((period, send))
    return per_usd is not None and _ratio_within(per_usd * rate, usd.get((period, noted)),
                                                 SAME_CURRENCY)


def _note_differs(noted: str | None, inferred: str) -> str:
    """What the amounts' unit leaves out: the note's currency, when it names another (EUR
    paid out at the XOF peg: the amounts are XOF, the notes handed over EUR)."""
    if noted is None or noted == inferred:
        return ""
    return f"; RPW's note says it pays out in {noted}"


def annotate(entries: Iterable[tuple[str, float, dict[str, Any]]],
             inferred: dict[tuple[str, str, float], Inferred]) -> None:
    """Give each (period, send amount, service entry) its receive currency, basis and note."""
    for period, amount, entry in entries:
        if entry.get("receive_currency") is not None:
            entry["receive_currency_basis"], entry["receive_currency_note"] = "reported", None
            continue
        currency, basis, note = inferred.get((period, entry["service_id"], amount),
                                             (None, None, NOT_STATED))
        entry["receive_currency"] = currency
        entry["receive_currency_basis"] = basis
        entry["receive_currency_note"] = note
