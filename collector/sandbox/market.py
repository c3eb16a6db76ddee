"""The sandbox's market model: who sells, and at what price, drawn from the real RPW data.

Prices come from the bundled World Bank RPW data (corridors/data/rpw_quotes_2011Q1_2014Q2.csv.gz):
per firm type, the quantiles of fee % and FX margin over its transparent services, computed
once (``market()``); each emulated operator (``operators``) sits at its own deterministic
place in those distributions in each corridor (``price``). Mid-market rates
(``Market.usd_rates``, which the emulated ECB file, JSON rates and operators serve) come from
RPW's interbank rates, each read as a rate of the currency the service really pays out
(``_mid_rates``). No HTTP here: ``collector.sandbox.upstreams`` serves what this prices.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import statistics
from dataclasses import dataclass
from typing import Any, NamedTuple

import polars as pl

from corridors.config import DEFAULT_AMOUNTS
from corridors.reading.rpw import bundled_rpw_path, read_rpw
from corridors.reference import countries, legal_tender

#: Firm types of emulated operators, in RPW's proportions (MTO 67%, bank 29%, rounded).
OPERATOR_TYPES = ("mto", "mto", "bank", "mto", "mto", "bank", "mto", "mto", "bank", "mto")
_NAMES = ("Atlas", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor",
          "Iris", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pioneer",
          "Quartz", "Raven", "Summit", "Tundra")


def h01(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


@dataclass(frozen=True)
class Market:
    """Prices and rates of the emulated world (``market()``)."""

    usd_rates: dict[str, float]  # units of currency per USD
    fee_pct: dict[str, list[float]]  # firm type → 21 quantiles of fee % (USD 200)
    margin_pct: dict[str, list[float]]  # firm type → 21 quantiles of FX margin %
    corridors: list[tuple[str, str]]  # RPW corridors with known currencies, most services first
    #: currency → where its rate comes from: a survey round ("2014Q2"), "fixed amount" (RPW's
    #: local amount for USD 200) or "peg" (see PEGS)
    rate_basis: dict[str, str] = dataclasses.field(default_factory=dict)

    def mid(self, send: str, receive: str) -> float | None:
        a, b = self.usd_rates.get(send), self.usd_rates.get(receive)
        return b / a if a and b else None

    def local_200(self, currency: str) -> float:
        if currency in DEFAULT_AMOUNTS:
            return float(DEFAULT_AMOUNTS[currency][0])
        return 200 * self.usd_rates.get(currency, 1.0)


def quantile(qs: list[float], u: float) -> float:
    x = u * (len(qs) - 1)
    i = min(int(x), len(qs) - 2)
    return qs[i] + (qs[i + 1] - qs[i]) * (x - i)


def _series_quantile(s: pl.Series, q: float) -> float:
    # None only for a series without values: the bundled RPW data has priced quotes of
    # every firm type market() asks for.
    value = s.quantile(q)
    assert value is not None, "no priced quotes to take a quantile of"
    return float(value)


# -- mid-market rates from RPW's interbank rates ---------------------------------------------
#
# RPW's "inter lcu bank fx" is the interbank rate from the currency sent to the currency paid
# out, and that is often not the receiving country's own: many services pay out USD or EUR
# (notes such as "This RSP sends GBP and pays out USD in this corridor", "USD service"), the
# CIS corridors pay out RUB, and some senders' rates are quoted per USD instead of per unit
# sent (Brazil's and the Dominican Republic's). So each rate is read as evidence about the
# currency actually paid out, and a currency's rate is the one most corridors agree on.

#: Two rates within this fraction are one rate (a round's quotes were taken on different days).
SAME_RATE = 0.025
#: A rate seen in one corridor only, and not against USD, must agree this closely with the
#: round before; else the older round's is used.
CONFIRMING = 0.15
#: Currencies that RPW's services pay out only in the currency they are pegged to at par
#: (its notes: "Panama has officially adopted the USD", "The SZL is officially pegged to the
#: ZAR").
PEGS: dict[str, tuple[str, float]] = {"PAB": ("USD", 1.0), "SZL": ("ZAR", 1.0)}


class _Quote(NamedTuple):
    """One RPW service's interbank rate, as evidence about two currencies."""

    corridor: tuple[str, str]  # sending and receiving country
    send: str  # the currency sent
    local: str | None  # the receiving country's currency on the survey date
    paid: str | None  # the currency paid out, when RPW's notes name it
    rate: float  # units paid out per unit sent


_Candidate = tuple[float, tuple[str, str], bool]  # (units per USD, corridor, against USD)


def _same(a: float, b: float) -> bool:
    return abs(a / b - 1) < SAME_RATE


def _current_currencies() -> set[str]:
    """The currencies of today's countries (and USD, EUR): no code of the past (HRK)."""
    return {c.currency for c in countries().values() if c.currency} | {"USD", "EUR"}


def _survey_quotes(frame: pl.DataFrame) -> dict[str, list[_Quote]]:
    """RPW's USD 200 interbank rates by survey round, with the pay-out currency the notes
    name (``frame``: ``read_rpw``'s rows, whose ``payout_currency_noted`` the reader took
    from the notes)."""
    rows = (frame.filter(pl.col("reference_rate") > 0)
            .select(pl.col("period", "source_code", "destination_code", "send_currency",
                           "payout_currency_noted").cast(pl.String),
                    "reference_rate"))
    out: dict[str, list[_Quote]] = {}
    for period, source, destination, send, paid, rate in rows.iter_rows():
        # The receiving country's currency in that round (Croatia paid out HRK in 2014).
        tender = legal_tender(destination, period)
        local = tender[0] if tender else getattr(countries().get(destination), "currency", None)
        out.setdefault(period, []).append(_Quote((source, destination), send, local, paid,
                                                 rate))
    return out


def _paid(q: _Quote, est: dict[str, float], others: list[str]) -> str | None:
    """The currency ``q`` pays out: the one its notes name, the sent one when its rate is 1,
    USD, EUR or a currency other services of its corridor pay out when its rate is theirs,
    else the receiving country's own."""
    if abs(q.rate - 1) < 1e-9:
        return q.send  # sent and paid out in one currency (or at a par peg): no rate in it
    if q.paid is not None and q.paid != q.send:
        return q.paid
    if q.send in est:
        x = est[q.send] * q.rate
        for other in others:
            if other != q.local and other in est and _same(x, est[other]):
                return other
    return q.local


def _paid_out_in(quotes: list[_Quote]) -> dict[tuple[str, str], list[str]]:
    """By corridor: USD, EUR and the currencies its services' notes say they pay out."""
    others: dict[tuple[str, str], list[str]] = {}
    for q in quotes:
        named = others.setdefault(q.corridor, ["USD", "EUR"])
        if q.paid is not None and q.paid not in named:
            named.append(q.paid)
    return others


def _candidates(quotes: list[_Quote], others: dict[tuple[str, str], list[str]],
                est: dict[str, float], priors: dict[str, float], skip: set[str]
                ) -> dict[str, list[_Candidate]]:
    """Every rate the quotes imply for a currency, given the rates known so far (``others``:
    ``_paid_out_in(quotes)``)."""
    out: dict[str, list[_Candidate]] = {}
    for q in quotes:
        if q.send in skip:
            continue
        paid = _paid(q, est, others[q.corridor])
        if paid is None or paid == q.send:
            continue
        direct = "USD" in (q.send, paid)
        if q.send in est:
            out.setdefault(paid, []).append((est[q.send] * q.rate, q.corridor, direct))
        if paid in est:
            value = est[paid] / q.rate
            prior = priors.get(q.send)
            # A sending currency's rate is within a factor 2 of RPW's own fixed local amount:
            # rates outside are another currency's (RUB's 2014 rates are RUB per USD).
            if prior is None or prior / 2 <= value <= prior * 2:
                out.setdefault(q.send, []).append((value, q.corridor, direct))
    return out


def _pick(candidates: list[_Candidate]) -> tuple[float, bool] | None:
    """The rate most corridors agree on (then most quotes against USD, then most quotes), and
    whether it is sure: seen in two corridors or against USD. Quotes against USD need no
    second rate: when there are some, their median is the rate."""
    weights: dict[_Candidate, int] = {}
    for c in candidates:
        weights[c] = weights.get(c, 0) + 1
    distinct = sorted(weights)
    values = [c[0] for c in distinct]
    best: tuple[tuple[int, int, int], list[_Candidate]] | None = None
    for centre in values:
        # Rates are positive and sorted: those _same as centre lie in this (wider) window.
        window = distinct[bisect.bisect_left(values, centre * (1 - 2 * SAME_RATE)):
                          bisect.bisect_right(values, centre * (1 + 2 * SAME_RATE))]
        members = [c for c in window if _same(c[0], centre)]
        key = (len({c[1] for c in members}), sum(weights[c] for c in members if c[2]),
               sum(weights[c] for c in members))
        if best is None or key > best[0]:
            best = (key, members)
    if best is None:
        return None
    (corridors, against_usd, quotes), members = best
    if quotes < 2 and not against_usd:
        return None  # one quote, not against USD: nothing to tell it from a slip
    picked = [c[0] for c in members for _ in range(weights[c]) if c[2] or not against_usd]
    return statistics.median(picked), corridors >= 2 or against_usd > 0


def _round_rates(quotes: list[_Quote], priors: dict[str, float], skip: set[str]
                 ) -> dict[str, tuple[float, bool]]:
    """One survey round's rates (units per USD, sure), from USD outwards."""
    est: dict[str, float] = {"USD": 1.0}
    others = _paid_out_in(quotes)
    while True:  # grow: each pass reaches the currencies quoted against known ones
        found = {c: p for c, cands in _candidates(quotes, others, est, priors, skip).items()
                 if c not in est and (p := _pick(cands)) is not None}
        if not found:
            break
        est.update((c, v) for c, (v, _) in found.items())
    picked: dict[str, tuple[float, bool]] = {}
    for _ in range(3):  # refine: every rate again from every quote, knowing the others'
        picked = {"USD": (1.0, True)}
        for c, cands in sorted(_candidates(quotes, others, est, priors, skip).items()):
            if c != "USD" and (p := _pick(cands)) is not None:
                picked[c] = p
        est = {c: v for c, (v, _) in picked.items()}
    return picked


def _per_usd_senders(rounds: dict[str, list[_Quote]],
                     rates: dict[str, dict[str, tuple[float, bool]]]) -> set[str]:
    """Sending currencies whose interbank rates RPW mostly gives per USD, not per unit sent
    (Brazil's "6.86" to Bolivia is BOB per USD): their quotes say nothing sure."""
    score: dict[str, list[int]] = {}
    for period, quotes in rounds.items():
        est = {c: v for c, (v, _) in rates[period].items()}
        # Checked against sure rates only: a rate seen in this sender's corridor alone was
        # computed from these very quotes.
        sure = {c for c, (_, is_sure) in rates[period].items() if is_sure}
        for q in quotes:
            paid = q.paid if q.paid not in (None, q.send) else q.local
            if (q.send not in est or paid not in sure or paid == "USD"
                    or abs(q.rate - 1) < 1e-9 or abs(est[q.send] - 1) < 3 * SAME_RATE):
                continue
            tally = score.setdefault(q.send, [0, 0])
            if _same(q.rate, est[paid]):
                tally[0] += 1
            elif _same(q.rate * est[q.send], est[paid]):
                tally[1] += 1
    return {c for c, (per_usd, per_unit) in score.items() if per_usd > per_unit}


def _mid_rates(frame: pl.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
    """Units per USD of every currency the survey can price, and where each comes from.

    Per survey round, from USD outwards: each interbank rate is a rate of the currency its
    service pays out — the one its notes name, else USD or EUR (or another currency paid out
    in its corridor) when the rate is theirs, else the receiving country's currency of the
    time (HRK, not EUR, in Croatia). A rate of exactly 1 (sent and paid out in one currency)
    says nothing. A currency's rate is the one most corridors agree on (within SAME_RATE),
    the median of its quotes against USD when it has some. Senders whose rates RPW gives per
    USD are left out (``_per_usd_senders``).

    Each currency takes its latest round where the rate is sure (two corridors, or a quote
    against USD) or confirmed by the round before. A sending currency without one takes RPW's
    fixed local amount for USD 200 (RUB: 6,300), and a currency only ever paid out in its
    anchor takes its peg (PEGS). Currencies paid out by no service (AMD, UAH, KZT...: the
    survey's CIS corridors pay out RUB or USD) and codes of the past (HRK, LTL) have no rate.
    """
    rounds = _survey_quotes(frame)
    priors = {c: float(v) for c, v in frame.filter(pl.col("send_amount") > 0)
              .group_by(pl.col("send_currency").cast(pl.String))
              .agg((pl.col("send_amount") / 200).median()).iter_rows()}
    first = {p: _round_rates(q, priors, set()) for p, q in rounds.items()}
    skip = _per_usd_senders(rounds, first)
    by_round = {p: _round_rates(q, priors, skip) for p, q in sorted(rounds.items())}
    rates: dict[str, float] = {}
    basis: dict[str, str] = {}
    periods = sorted(by_round, reverse=True)
    for c in sorted({c for r in by_round.values() for c in r}):
        seen = [(p, by_round[p][c]) for p in periods if c in by_round[p]]
        for i, (period, (value, sure)) in enumerate(seen):
            older = seen[i + 1][1][0] if i + 1 < len(seen) else None
            if sure or (older is not None and abs(value / older - 1) < CONFIRMING):
                rates[c], basis[c] = value, period
                break
    for c, prior in sorted(priors.items()):  # RUB: its quotes name no rate of RUB
        if c not in rates:
            rates[c], basis[c] = prior, "fixed amount"
    for c, (anchor, factor) in PEGS.items():
        if c not in rates and anchor in rates:
            rates[c], basis[c] = rates[anchor] * factor, "peg"
    current = _current_currencies()
    return ({c: v for c, v in rates.items() if c in current},
            {c: b for c, b in basis.items() if c in current})


@functools.cache
def market() -> Market:
    """Distributions and rates from the bundled RPW data (computed once per process)."""
    # The project's own RPW reader: its label maps and currency codes, not a second parse.
    frame = read_rpw(bundled_rpw_path()).frame.filter(pl.col("amount_usd") == 200)
    df = frame.select(
        pl.col("period", "source_code", "destination_code", "firm_type",
               "send_currency").cast(pl.String),
        pl.col("transparent"),
        pl.col("send_amount").alias("amount"),
        pl.col("fee"),
        pl.col("fx_margin_reported").alias("margin"),
    )
    currency_of = {c.alpha3: c.currency for c in countries().values()}
    df = df.with_columns(pl.col("destination_code").replace_strict(
        currency_of, default=None).alias("receive_currency"))
    probs = [i / 20 for i in range(21)]
    fee_q: dict[str, list[float]] = {}
    margin_q: dict[str, list[float]] = {}
    priced = df.filter(pl.col("amount") > 0, pl.col("fee").is_not_null(),
                       pl.col("transparent"), pl.col("margin").is_not_null())
    for kind in ("bank", "mto", "post_office"):
        part = priced.filter(pl.col("firm_type") == kind)
        fee = (part["fee"] / part["amount"] * 100)
        # The 2nd-98th percentiles: the extremes of a survey are not a market's typical price.
        fee_q[kind] = [_series_quantile(fee, 0.02 + 0.96 * p) for p in probs]
        margin_q[kind] = [_series_quantile(part["margin"], 0.02 + 0.96 * p) for p in probs]
    usd, basis = _mid_rates(frame)
    corridors = (df.filter(pl.col("send_currency").is_in(list(usd)),
                           pl.col("receive_currency").is_in(list(usd)))
                 .group_by("source_code", "destination_code").len()
                 .sort(["len", "source_code", "destination_code"],
                       descending=[True, False, False]))
    return Market(usd, fee_q, margin_q,
                  [(r[0], r[1]) for r in corridors.select("source_code", "destination_code")
                   .iter_rows()], basis)


@dataclass(frozen=True)
class Operator:
    index: int
    name: str
    firm_type: str


def operators(n: int) -> list[Operator]:
    out = []
    for i in range(n):
        kind = OPERATOR_TYPES[i % len(OPERATOR_TYPES)]
        suffix = {"bank": "Bank", "mto": "Remit"}[kind]
        name = f"{_NAMES[i % len(_NAMES)]} {suffix}" + (f" {i // len(_NAMES) + 1}"
                                                        if i >= len(_NAMES) else "")
        out.append(Operator(i, name, kind))
    return out


def price(m: Market, op: Operator, source: str, destination: str, send: str, receive: str,
          amount: float, epoch: int) -> dict[str, Any] | None:
    """What ``op`` charges for ``amount`` in a corridor during a price ``epoch``: its fee,
    rate, amount received, delivery hours, FX margin and the mid-market rate (None when the
    market has no rate for the pair). Each operator sits at its own deterministic place in
    its firm type's distributions of fee and margin, drifting a little with the epoch."""
    mid = m.mid(send, receive)
    if mid is None:
        return None
    key = f"{source}-{destination}"
    u, v = h01("fee", op.index, key), h01("margin", op.index, key)
    fee_pct = quantile(m.fee_pct[op.firm_type], u)
    margin = quantile(m.margin_pct[op.firm_type], v)
    margin *= 1 + 0.1 * (h01("drift", op.index, key, epoch) - 0.5)
    if h01("promo", op.index, key) < 0.03:
        margin = -1.0  # a promotional rate above mid-market: real, kept and flagged
    local200 = m.local_200(send)
    fixed = fee_pct / 100 * local200
    fee = round(0.8 * fixed + 0.2 * fixed * amount / local200, 2)
    rate = float(f"{mid * (1 - margin / 100):.6g}")
    speed = (1, 24, 48, 72)[int(h01("speed", op.index, key) * 4)]
    return {"fee": fee, "rate": rate, "received": round(amount * rate, 2), "hours": speed,
            "margin": margin, "mid": mid}
