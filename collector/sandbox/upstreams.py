"""The sandbox's emulated upstreams: one endpoint per source kind sendcost collects from,
each answering in that upstream's own format from the market model's prices.

  GET /operators/{n}/quote?source=&destination=&send_currency=&receive_currency=&amount=
                                   an operator's JSON quote API (operator_json)
  GET /v4/comparisons?sourceCurrency=&targetCurrency=&sendAmount=[&sourceCountry=&targetCountry=]
                                   a Wise-style comparison feed (comparison)
  GET /postal/{country}/tariff.json, /postal/{country}/tariff.csv
                                   a post's money-order tariff (postal_tariff)
  GET /ecb/eurofxref-daily.xml     the ECB's daily reference rates (ecb_rates)
  GET /rates/latest?base=USD       a JSON rates API (json_rates)
  GET /rpw/rpw_quotes.csv.gz       the bundled World Bank RPW extract (rpw)

Answers carry an ETag and honour If-None-Match; operator quotes change once per price epoch.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from collector.sandbox.faults import Faults, expected_rejection, spoil
from collector.sandbox.market import h01, market, operators, price, quantile
from corridors.reading.rpw import bundled_rpw_path
from corridors.reference import country

#: Operator quote bodies kept for the current price epoch (all of them, in the benchmark).
QUOTE_CACHE_LIMIT = 50_000

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




class Upstreams:
    """The emulated upstreams' endpoints over one market, with their operators."""

    def __init__(self, faults: Faults | None = None, *, operators_n: int = 10) -> None:
        self.faults = faults or Faults()
        self.operators = operators(operators_n)
        self.market = market()
        # Operator quote bodies of the current price epoch, by (operator, query): an
        # emulated upstream answers a repeated question from memory, so that on a 2-core
        # machine it leaves the CPU to the collector under test.
        self._quotes: dict[tuple[str, str, float], tuple[bytes, str]] = {}
        self._quotes_epoch = -1

    def epoch(self) -> int:
        return int(dt.datetime.now(dt.UTC).timestamp() // self.faults.price_epoch_seconds)

    def _conditional(self, request: web.Request, body: bytes, content_type: str,
                     etag: str | None = None) -> web.Response:
        etag = etag or _etag(body)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type=content_type, headers={"ETag": etag})

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
        p = price(self.market, op, source, destination, send, receive, amount,
                  self.epoch())
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
        spoil(quote, bad, amount, p["mid"])
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
            p = price(self.market, op, source, destination, send, receive, amount,
                  self.epoch())
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
            u = h01("post-fee", c.alpha3, dst)
            fixed = round(quantile(m.fee_pct["post_office"], u) / 100 * local200, 2)
            dests.append({
                "country": dst, "currency": rc.currency,
                "fx_margin_pct": round(quantile(m.margin_pct["post_office"],
                                                 h01("post-margin", c.alpha3, dst)), 2),
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

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/operators/{n:\\d+}/quote", self.operator_quote),
            web.get("/v4/comparisons", self.comparison),
            web.get("/postal/{country}/tariff.{fmt:json|csv}", self.postal),
            web.get("/ecb/eurofxref-daily.xml", self.ecb),
            web.get("/rates/latest", self.json_rates),
            web.get("/rpw/rpw_quotes.csv.gz", self.rpw),
        ]


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
