"""Emulated upstreams on loopback, for the quick start, the tests and the benchmark.

One aiohttp app serves every source kind sendcost collects from:

  GET /operators/{n}/quote?source=&destination=&send_currency=&receive_currency=&amount=
                                   an operator's JSON quote API (operator_json)
  GET /v4/comparisons?sourceCurrency=&targetCurrency=&sendAmount=[&sourceCountry=&targetCountry=]
                                   a Wise-style comparison feed (comparison)
  GET /postal/{country}/tariff.json, /postal/{country}/tariff.csv
                                   a post's money-order tariff (postal_tariff)
  GET /ecb/eurofxref-daily.xml     the ECB's daily reference rates (ecb_rates)
  GET /rates/latest?base=USD       a JSON rates API (json_rates)
  GET /rpw/rpw_quotes.csv.gz       the bundled World Bank RPW extract (rpw)
  GET /_sandbox/log                what was served, request by request (for tests)

Every response carries ``Sendcost-Emulated: true`` (``collector.kinds``): whatever the
config calls a source, what the collector parses from the sandbox is stored as emulated
data, which nothing publishes as a real price unless asked to.

Prices are drawn from the real RPW data (corridors/data/rpw_quotes_2011Q1_2014Q2.csv.gz):
per firm type, the quantiles of fee % and FX margin over its transparent services, computed
once; each emulated operator sits at its own deterministic place in those distributions in
each corridor. Mid-market rates (``market().usd_rates``, served as the ECB file, the JSON
rates and the operators' applied rates) come from RPW's interbank rates, each read as a rate
of the currency the service really pays out (``_mid_rates``). Faults (``Faults``) are the
knobs: latency, 5xx, timeouts, malformed bodies, 429 bursts, slow bodies, and implausible
quotes whose expected quarantine reason the sandbox can tell (``expected_rejection``).

This module emulates upstreams; it imports nothing from later stages.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import random
import re
import statistics
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import polars as pl
from aiohttp import web

from collector.kinds import EMULATED_HEADER
from corridors.config import DEFAULT_AMOUNTS
from corridors.reading.rpw import CURRENCY_FROM_RPW, bundled_rpw_path, read_rpw
from corridors.reference import countries, country, legal_tender

BAD_KINDS = ("fee_negative", "fee_above_amount", "rate_off_reference", "received_inconsistent",
             "currency_mismatch", "unknown_corridor", "implausible_negative_margin")
#: Firm types of emulated operators, in RPW's proportions (MTO 67%, bank 29%, rounded).
OPERATOR_TYPES = ("mto", "mto", "bank", "mto", "mto", "bank", "mto", "mto", "bank", "mto")
#: Requests the sandbox remembers for GET /_sandbox/log.
LOG_LIMIT = 100_000
#: Operator quote bodies kept for the current price epoch (all of them, in the benchmark).
QUOTE_CACHE_LIMIT = 50_000
_NAMES = ("Atlas", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor",
          "Iris", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pioneer",
          "Quartz", "Raven", "Summit", "Tundra")


@dataclass
class Faults:
    """Knobs of the emulated upstreams. Rates are per request (per quote for bad quotes)."""

    latency_ms: float = 0.0  # mean added latency (uniform 0 .. 2×)
    error_rate: float = 0.0  # share of 5xx answers (500/502/503/504)
    timeout_rate: float = 0.0  # share of requests that hang for hang_seconds
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0  # share of 200s with a truncated body
    slow_body_rate: float = 0.0  # share of 200s whose body trickles over slow_body_seconds
    slow_body_seconds: float = 2.0
    burst_429_every: int = 0  # every N requests, a burst of burst_429_length 429s (0: never)
    burst_429_length: int = 5
    retry_after: str = "1"
    bad_quote_rate: float = 0.0  # share of operator quotes that are implausible (see BAD_KINDS)
    price_epoch_seconds: float = 3600.0  # prices (and ETags) change once per epoch
    seed: int = 0


def _h01(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


@dataclass(frozen=True)
class Market:
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


def _quantile(qs: list[float], u: float) -> float:
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
#: RPW notes naming the currency a service pays out in ("LCU": the receiving country's).
_PAYOUT_NOTES = (re.compile(r"pays? ?out (?:in )?([A-Z]{3})\b"),
                 re.compile(r"^\s*([A-Z]{3}) service\b", re.IGNORECASE),
                 re.compile(r"sends ([A-Z]{3}) in this corridor"))


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


def _paid_in(notes: tuple[str | None, ...], local: str | None, known: set[str]) -> str | None:
    for note in notes:
        for pattern in _PAYOUT_NOTES:
            found = pattern.search(note or "")
            if found is None:
                continue
            code = found.group(1).upper()
            if code == "LCU":
                return local
            code = CURRENCY_FROM_RPW.get(code, code)
            if code in known:  # not a typo ("SGP") or a made-up code ("BGT")
                return code
    return None


def _survey_quotes(frame: pl.DataFrame) -> dict[str, list[_Quote]]:
    """RPW's USD 200 interbank rates by survey round, with the payout currency the notes
    name (``frame``: ``read_rpw``'s rows; the notes are read from the same file)."""
    notes = pl.read_csv(bundled_rpw_path(), columns=["id", "note1", "note2"],
                        infer_schema=False)
    rows = (frame.filter(pl.col("reference_rate") > 0)
            .with_columns(pl.col("service_id").cast(pl.String).str.split(":").list.last()
                          .alias("id"))
            .join(notes, on="id", how="left", maintain_order="left")
            .select(pl.col("period", "source_code", "destination_code",
                           "send_currency").cast(pl.String),
                    "reference_rate", "note1", "note2"))
    known = _current_currencies()
    out: dict[str, list[_Quote]] = {}
    for period, source, destination, send, rate, note1, note2 in rows.iter_rows():
        # The receiving country's currency in that round (Croatia paid out HRK in 2014).
        tender = legal_tender(destination, period)
        local = tender[0] if tender else getattr(countries().get(destination), "currency", None)
        out.setdefault(period, []).append(_Quote(
            (source, destination), send, local, _paid_in((note1, note2), local, known), rate))
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


def expected_rejection(op: int, corridor: str, amount: str, rate: float) -> str | None:
    """The quarantine reason the sandbox built into this quote, or None for a valid one."""
    if _h01("bad", op, corridor, amount) >= rate:
        return None
    return BAD_KINDS[int(_h01("kind", op, corridor, amount) * len(BAD_KINDS))]


#: The ECB sets its rates at 14:15 CET (Frankfurt time) and names the file by that day.
ECB_CONCERTATION = dt.time(14, 15)
FRANKFURT = ZoneInfo("Europe/Berlin")


def last_concertation(now: dt.datetime) -> dt.date:
    """The day of the last reference rates published by ``now``: today after 14:15 in
    Frankfurt, else yesterday — a file dated today before then would claim rates from the
    future. The sandbox publishes every day (the real ECB skips weekends and TARGET
    holidays), so its quick start is never measured against stale rates."""
    local = now.astimezone(FRANKFURT)
    day = local.date()
    return day if local.time() >= ECB_CONCERTATION else day - dt.timedelta(days=1)


class Sandbox:
    """State of one emulated upstream world: its knobs, its operators, what it served."""

    def __init__(self, faults: Faults | None = None, *, operators_n: int = 10) -> None:
        self.faults = faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.operators = operators(operators_n)
        self.market = market()
        self.requests = 0
        #: (path?query, outcome) of the latest LOG_LIMIT requests (a long-running sandbox
        #: must not grow without bound).
        self.log: collections.deque[tuple[str, str]] = collections.deque(maxlen=LOG_LIMIT)
        # Operator quote bodies of the current price epoch, by (operator, query): an
        # emulated upstream answers a repeated question from memory, so that on a 2-core
        # machine it leaves the CPU to the collector under test.
        self._quotes: dict[tuple[str, str, float], tuple[bytes, str]] = {}
        self._quotes_epoch = -1

    def epoch(self) -> int:
        return int(dt.datetime.now(dt.UTC).timestamp() // self.faults.price_epoch_seconds)

    # -- prices ------------------------------------------------------------------------------

    def price(self, op: Operator, source: str, destination: str, send: str, receive: str,
              amount: float) -> dict[str, Any] | None:
        mid = self.market.mid(send, receive)
        if mid is None:
            return None
        key = f"{source}-{destination}"
        u, v = _h01("fee", op.index, key), _h01("margin", op.index, key)
        fee_pct = _quantile(self.market.fee_pct[op.firm_type], u)
        margin = _quantile(self.market.margin_pct[op.firm_type], v)
        margin *= 1 + 0.1 * (_h01("drift", op.index, key, self.epoch()) - 0.5)
        if _h01("promo", op.index, key) < 0.03:
            margin = -1.0  # a promotional rate above mid-market: real, kept and flagged
        local200 = self.market.local_200(send)
        fixed = fee_pct / 100 * local200
        fee = round(0.8 * fixed + 0.2 * fixed * amount / local200, 2)
        rate = float(f"{mid * (1 - margin / 100):.6g}")
        speed = (1, 24, 48, 72)[int(_h01("speed", op.index, key) * 4)]
        return {"fee": fee, "rate": rate, "received": round(amount * rate, 2), "hours": speed,
                "margin": margin, "mid": mid}

    # -- middleware: faults ------------------------------------------------------------------

    @web.middleware
    async def faults_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sandbox"):
            return await handler(request)
        f = self.faults
        self.requests += 1
        where = request.path_qs
        if f.burst_429_every and (self.requests % f.burst_429_every) < f.burst_429_length:
            self.log.append((where, "429"))
            return web.Response(status=429, headers={"Retry-After": f.retry_after},
                                text="slow down")
        if f.latency_ms:
            await asyncio.sleep(self.rng.uniform(0, 2 * f.latency_ms) / 1000)
        r = self.rng.random()
        if r < f.error_rate:
            self.log.append((where, "5xx"))
            return web.Response(status=self.rng.choice((500, 502, 503, 504)), text="oops")
        if r < f.error_rate + f.timeout_rate:
            self.log.append((where, "timeout"))
            await asyncio.sleep(f.hang_seconds)
            return web.Response(status=504, text="too late")
        resp = await handler(request)
        if not isinstance(resp, web.Response) or resp.status != 200 or resp.body is None:
            self.log.append((where, str(getattr(resp, "status", "?"))))
            return resp
        body = bytes(resp.body)  # type: ignore[arg-type]
        r = self.rng.random()
        if r < f.malformed_rate:
            self.log.append((where, "malformed"))
            return web.Response(body=body[: max(1, len(body) // 2)],
                                content_type=resp.content_type)
        if r < f.malformed_rate + f.slow_body_rate:
            self.log.append((where, "slow_body"))
            stream = web.StreamResponse(headers={"Content-Type": resp.content_type})
            stream.content_length = len(body)
            await stream.prepare(request)
            chunks = 5
            for i in range(chunks):
                await stream.write(body[i * len(body) // chunks:(i + 1) * len(body) // chunks])
                await asyncio.sleep(f.slow_body_seconds / chunks)
            await stream.write_eof()
            return stream
        self.log.append((where, "ok"))
        return resp

    def _conditional(self, request: web.Request, body: bytes, content_type: str,
                     etag: str | None = None) -> web.Response:
        etag = etag or _etag(body)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type=content_type, headers={"ETag": etag})

    # -- upstreams ---------------------------------------------------------------------------

    async def operator_quote(self, request: web.Request) -> web.Response:
        epoch = self.epoch()
        if epoch != self._quotes_epoch or len(self._quotes) >= QUOTE_CACHE_LIMIT:
            self._quotes.clear()
            self._quotes_epoch = epoch
        key = (request.match_info["n"], request.query_string, self.faults.bad_quote_rate)
        if (hit := self._quotes.get(key)) is not None:
            return self._conditional(request, hit[0], "application/json", hit[1])
        q = request.query
        try:
            op = self.operators[int(request.match_info["n"])]
            source, destination = q["source"], q["destination"]
            send, receive, amount_text = q["send_currency"], q["receive_currency"], q["amount"]
            amount = float(amount_text)
        except (KeyError, ValueError, IndexError):
            return web.json_response({"error": "bad request"}, status=400)
        p = self.price(op, source, destination, send, receive, amount)
        if p is None:
            return web.json_response({"error": "corridor not served"}, status=404)
        quote: dict[str, Any] = {
            "id": f"q-{op.index}-{source}{destination}-{amount_text}-{self.epoch()}",
            "sendAmount": amount, "sendCurrency": send, "receiveCurrency": receive,
            "destinationCountry": destination, "fee": {"amount": p["fee"], "currency": send},
            "exchangeRate": p["rate"], "receiveAmount": p["received"],
            "deliveryHours": p["hours"], "payIn": "CARD" if op.firm_type == "mto" else "BANK",
            "payOut": "CASH" if op.firm_type == "mto" else "ACCOUNT",
        }
        bad = expected_rejection(op.index, f"{source}-{destination}", amount_text,
                                 self.faults.bad_quote_rate)
        _spoil(quote, bad, amount, p["mid"])
        body = json.dumps({"operator": op.name, "quote": quote}).encode()
        self._quotes[key] = (body, _etag(body))
        return self._conditional(request, body, "application/json", self._quotes[key][1])

    async def comparison(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            send, receive = q["sourceCurrency"], q["targetCurrency"]
            amount = float(q["sendAmount"])
        except (KeyError, ValueError):
            return web.json_response({"errors": [{"message": "bad request"}]}, status=400)
        src = country(q.get("sourceCountry", "")) if q.get("sourceCountry") else None
        dst = country(q.get("targetCountry", "")) if q.get("targetCountry") else None
        source = src.alpha3 if src else send
        destination = dst.alpha3 if dst else receive
        providers = []
        collected = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for op in self.operators[:6]:
            p = self.price(op, source, destination, send, receive, amount)
            if p is None:
                continue
            hours = p["hours"]
            providers.append({
                "id": 100 + op.index, "alias": op.name.lower().replace(" ", "-"),
                "name": op.name, "logos": {}, "partner": False,
                "type": "bank" if op.firm_type == "bank" else "moneyTransferProvider",
                "quotes": [{
                    "rate": p["rate"], "fee": p["fee"],
                    "receivedAmount": round((amount - p["fee"]) * p["rate"], 2),
                    "dateCollected": collected.isoformat().replace("+00:00", "Z"),
                    "sourceCountry": src.alpha2 if src else None,
                    "targetCountry": dst.alpha2 if dst else None,
                    "markup": round(p["margin"], 4),
                    "isConsideredMidMarketRate": False,
                    "deliveryEstimation": {
                        "duration": {"min": f"PT{max(1, hours // 2)}H", "max": f"PT{hours}H"},
                        "providerGivesEstimate": True},
                }],
            })
        body = json.dumps({"sourceCurrency": send, "targetCurrency": receive,
                           "sourceCountry": None, "targetCountry": None,
                           "providerCountry": None,
                           "providerTypes": ["bank", "moneyTransferProvider"],
                           "amount": amount, "amountType": "SEND",
                           "providers": providers}).encode()
        return self._conditional(request, body, "application/json")

    def tariff(self, sending: str) -> dict[str, Any] | None:
        c = country(sending)
        if c is None or c.currency is None:
            return None
        m = self.market
        local200 = m.local_200(c.currency)
        dests = []
        seen = set()
        for src, dst in m.corridors:
            rc = country(dst)
            if src != c.alpha3 or dst in seen or rc is None or not rc.currency:
                continue
            seen.add(dst)
            u = _h01("post-fee", c.alpha3, dst)
            fixed = round(_quantile(m.fee_pct["post_office"], u) / 100 * local200, 2)
            dests.append({
                "country": dst, "currency": rc.currency,
                "fx_margin_pct": round(_quantile(m.margin_pct["post_office"],
                                                 _h01("post-margin", c.alpha3, dst)), 2),
                "applied_rate": None, "delivery_days": 1 + int(u * 5),
                "bands": [{"up_to": round(local200 * 1.5), "fixed_fee": fixed, "pct_fee": 0},
                          {"up_to": round(local200 * 10), "fixed_fee": fixed, "pct_fee": 0.5}],
            })
        year = dt.datetime.now(dt.UTC).year
        return {"operator": f"Post of {c.name}", "country": c.alpha3, "currency": c.currency,
                "valid_from": f"{year}-01-01", "valid_to": f"{year}-12-31",
                "destinations": dests}

    async def postal(self, request: web.Request) -> web.Response:
        tariff = self.tariff(request.match_info["country"])
        if tariff is None:
            return web.Response(status=404, text="no such post")
        if request.match_info["fmt"] == "json":
            return self._conditional(request, json.dumps(tariff).encode(), "application/json")
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["destination", "currency", "up_to", "fixed_fee", "pct_fee", "fx_margin_pct",
                    "applied_rate", "delivery_days", "valid_from", "valid_to"])
        for d in tariff["destinations"]:
            for b in d["bands"]:
                w.writerow([d["country"], d["currency"], b["up_to"], b["fixed_fee"],
                            b["pct_fee"], d["fx_margin_pct"], "", d["delivery_days"],
                            tariff["valid_from"], tariff["valid_to"]])
        return self._conditional(request, out.getvalue().encode(), "text/csv")

    async def ecb(self, request: web.Request) -> web.Response:
        eur = self.market.usd_rates["EUR"]
        day = last_concertation(dt.datetime.now(dt.UTC)).isoformat()
        cubes = "".join(f"\t\t\t<Cube currency='{cur}' rate='{rate / eur:.6g}'/>\n"
                        for cur, rate in sorted(self.market.usd_rates.items()) if cur != "EUR")
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
                'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
                "\t<gesmes:subject>Reference rates</gesmes:subject>\n"
                "\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n"
                f"\t</gesmes:Sender>\n\t<Cube>\n\t\t<Cube time='{day}'>\n{cubes}"
                "\t\t</Cube>\n\t</Cube>\n</gesmes:Envelope>\n").encode()
        return self._conditional(request, body, "text/xml")

    async def json_rates(self, request: web.Request) -> web.Response:
        base = request.query.get("base", "USD").upper()
        b = self.market.usd_rates.get(base)
        if b is None:
            return web.json_response({"error": f"unknown base {base}"}, status=400)
        body = json.dumps({
            "base": base, "date": dt.datetime.now(dt.UTC).date().isoformat(),
            "rates": {c: float(f"{r / b:.6g}") for c, r in sorted(self.market.usd_rates.items())
                      if c != base}}).encode()
        return self._conditional(request, body, "application/json")

    async def rpw(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(bundled_rpw_path().read_bytes)
        return self._conditional(request, body, "application/gzip")

    async def served(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests,
                                  "log": [list(e) for e in self.log],
                                  "faults": dataclasses.asdict(self.faults)})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults_middleware])
        app[SANDBOX] = self
        # Every response, whatever its route, status or fault, says it is emulated: the
        # collector marks what it parses from it so (collector.kinds).
        app.on_response_prepare.append(_mark_emulated)
        app.router.add_get("/operators/{n:\\d+}/quote", self.operator_quote)
        app.router.add_get("/v4/comparisons", self.comparison)
        app.router.add_get("/postal/{country}/tariff.{fmt:json|csv}", self.postal)
        app.router.add_get("/ecb/eurofxref-daily.xml", self.ecb)
        app.router.add_get("/rates/latest", self.json_rates)
        app.router.add_get("/rpw/rpw_quotes.csv.gz", self.rpw)
        app.router.add_get("/_sandbox/log", self.served)
        return app


SANDBOX = web.AppKey("sandbox", Sandbox)


async def _mark_emulated(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[EMULATED_HEADER] = "true"


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _spoil(quote: dict[str, Any], kind: str | None, amount: float, mid: float) -> None:
    """Make a quote implausible in the way ``kind`` names (see collector.validate)."""
    if kind is None:
        return
    if kind == "fee_negative":
        quote["fee"]["amount"] = -abs(quote["fee"]["amount"]) - 1
    elif kind == "fee_above_amount":
        quote["fee"]["amount"] = round(amount * 1.5, 2)
    elif kind == "rate_off_reference":
        quote["exchangeRate"] = float(f"{mid * 1.6:.6g}")
        quote["receiveAmount"] = round(amount * quote["exchangeRate"], 2)
    elif kind == "implausible_negative_margin":
        quote["exchangeRate"] = float(f"{mid * 1.12:.6g}")
        quote["receiveAmount"] = round(amount * quote["exchangeRate"], 2)
    elif kind == "received_inconsistent":
        quote["receiveAmount"] = round(quote["receiveAmount"] * 0.5, 2)
    elif kind == "currency_mismatch":
        quote["sendCurrency"] = "GBP" if quote["sendCurrency"] != "GBP" else "EUR"
    elif kind == "unknown_corridor":
        quote["destinationCountry"] = "ATA"


# -- a config that points the collectors at a sandbox -------------------------------------

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


__all__ = ["BAD_KINDS", "SANDBOX", "Faults", "Market", "Operator", "Sandbox",
           "corridor_list", "corridors_config", "emulated_profile", "expected_rejection",
           "last_concertation", "market", "nominal", "operators", "sources_config",
           "toml_profile"]
