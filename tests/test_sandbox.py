"""The sandbox (collector/sandbox/, ``sendcost sandbox``): mid rates that are plausible for
the survey's years in every document that publishes them, computed deterministically, and a
``--print-config`` that prints the emulated profile ``serve --sandbox`` collects from."""

from __future__ import annotations

import json
import re
import socket
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from collector.kinds import is_sandbox_url
from collector.sandbox import (
    PEGS,
    Sandbox,
    corridor_list,
    market,
    sources_config,
)
from corridors.config import load_config, parse_config
from corridors.reference import country
from sendcost.cli import build_parser, main
from sendcost.commands.sandbox import with_sandbox

ROOT = Path(__file__).resolve().parent.parent

#: Units per USD that any day of 2011Q1-2014Q2 could have seen (a wrong reading of RPW's
#: interbank rates is off by far more: TRY 1.001 was EUR paid out, RUB 0.029 inverted).
SANE = {
    "EUR": (0.68, 0.82), "GBP": (0.58, 0.68), "TRY": (1.5, 2.4), "RUB": (28, 40),
    "MXN": (11.5, 14), "INR": (44, 62), "PHP": (40, 46), "LBP": (1500, 1510),
    "ALL": (95, 115), "XOF": (440, 540), "PKR": (85, 106), "CNY": (6.0, 6.7),
    "JPY": (76, 106), "NGN": (150, 170), "GTQ": (7.5, 8.1), "BAM": (1.33, 1.6),
}
#: Currencies no service of the survey pays out in (the CIS corridors pay out RUB or USD):
#: the sandbox has no rate for them, and would have to be right if it had one.
UNPAID = {"AMD": (380, 420), "UAH": (7.8, 8.5)}


def _in(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def test_mid_rates_are_plausible_for_2011_to_2014() -> None:
    rates, basis = market().usd_rates, market().rate_basis
    wrong = {c: rates.get(c) for c, bounds in SANE.items()
             if c not in rates or not _in(rates[c], bounds)}
    assert not wrong, f"implausible or missing rates per USD: {wrong}"
    for c, bounds in UNPAID.items():
        assert c not in rates or _in(rates[c], bounds), (c, rates[c])
    assert rates["USD"] == 1.0
    # Each rate says where it comes from: a survey round, RPW's fixed local amount, a peg.
    assert set(basis) == set(rates)
    assert all(re.fullmatch(r"20(11|12|13|14)Q[1-4]", b) or b in ("fixed amount", "peg")
               for b in basis.values()), basis
    assert basis["TRY"] == basis["EUR"] == "2014Q2"
    assert basis["RUB"] == "fixed amount" and rates["RUB"] == 31.5  # RPW's RUB 6,300 = USD 200


def test_no_currency_takes_another_ones_rate_but_at_a_par_peg() -> None:
    """The symptom of reading a rate paid out in USD or EUR as the local currency's: LBP at
    1.0, ALL at EUR's rate. Only a currency pegged at par shares its anchor's rate."""
    rates = market().usd_rates
    by_value: dict[float, set[str]] = {}
    for c, v in rates.items():
        by_value.setdefault(float(f"{v:.6g}"), set()).add(c)
    pegged = {c: anchor for c, (anchor, factor) in PEGS.items() if factor == 1.0}
    for group in by_value.values():
        if len(group) > 1:
            assert all(pegged.get(c) in group for c in group - set(pegged.values())), group
    at_one = {c for c, v in rates.items() if abs(v - 1) < 0.005}
    assert at_one == {"USD", "PAB"}  # Panama: "has officially adopted the USD"


def test_the_rates_are_computed_the_same_every_time() -> None:
    first = market()
    # Computed afresh beside the process's cached one, which the other tests go on using
    # (clearing the cache would make the next test compute it a third time).
    again = market.__wrapped__()
    assert again is not first
    assert again.usd_rates == first.usd_rates
    assert again.rate_basis == first.rate_basis
    assert again.corridors == first.corridors


def test_the_benchmark_corridors_are_all_priced() -> None:
    corridors = corridor_list(250)
    assert len(corridors) == len(set(corridors)) == 250
    m = market()
    for s, d in corridors:
        cs, cd = country(s), country(d)
        assert cs and cd and m.mid(cs.currency or "", cd.currency or "") is not None, (s, d)


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    server = TestServer(Sandbox(operators_n=3).app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as resp:
        assert resp.status == 200, url
        return await resp.read()


async def test_every_published_rate_is_plausible(sandbox_url: str) -> None:
    """What the collectors read: the JSON rates, the ECB file and the operators' applied rates
    (the shipped DEU-TUR corridor stored EUR->TRY at 1.371 when EUR pay-outs were read as
    TRY's)."""
    from collector import ecb_rates

    async with aiohttp.ClientSession() as session:
        usd = json.loads(await _get(session, f"{sandbox_url}/rates/latest?base=USD"))
        eur = json.loads(await _get(session, f"{sandbox_url}/rates/latest?base=EUR"))
        ecb = ecb_rates.parse(await _get(session, f"{sandbox_url}/ecb/eurofxref-daily.xml"))
        quote = json.loads(await _get(
            session, f"{sandbox_url}/operators/0/quote?source=DEU&destination=TUR"
                     "&send_currency=EUR&receive_currency=TRY&amount=140"))["quote"]

    assert usd["base"] == "USD"
    for c, bounds in SANE.items():
        if c != "USD":
            assert _in(usd["rates"][c], bounds), (c, usd["rates"][c])
    assert [c for c, v in usd["rates"].items() if v == 1.0] == ["PAB"]
    assert not any(v == 1.0 for v in eur["rates"].values())

    per_eur = {row[1]: float(row[2]) for row in ecb}
    assert {row[0] for row in ecb} == {"EUR"}
    assert set(per_eur) == set(usd["rates"]) - {"EUR"} | {"USD"}
    assert 1.22 <= per_eur["USD"] <= 1.47
    for c, (low, high) in SANE.items():
        if c != "EUR":
            # A currency per EUR is its rate per USD times USD per EUR (both in range).
            assert low * 1.22 * 0.99 <= per_eur[c] <= high * 1.47 * 1.01, (c, per_eur[c])
        assert per_eur.get(c, per_eur["USD"]) == pytest.approx(
            eur["rates"].get(c, per_eur["USD"]), rel=1e-5)

    # EUR -> TRY in 2011-2014 was 2.1-3.2; an operator's rate is the mid less its margin.
    mid = per_eur["TRY"]
    assert 2.1 <= mid <= 3.2
    assert quote["sendCurrency"] == "EUR" and quote["receiveCurrency"] == "TRY"
    assert 0.85 * mid <= quote["exchangeRate"] <= 1.06 * mid


def _profile_kinds(raw: dict[str, object]) -> set[str]:
    return {s["kind"] for s in raw["sources"]}  # type: ignore[attr-defined]


def test_print_config_prints_the_emulated_profile_serve_sandbox_collects(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--print-config prints the profile `serve --sandbox` puts in place of the config's
    sources (every kind of source), with the [sandbox] address that marks it emulated."""
    assert main(["sandbox", "--print-config", "--corridors", "5", "--port", "8799"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["sandbox"] == {"host": "127.0.0.1", "port": 8799}
    assert _profile_kinds(printed) == {
        "ecb_rates", "json_rates", "comparison", "operator_json", "postal_tariff", "rpw"}
    names = [s["name"] for s in printed["sources"]]
    assert len(names) == len(set(names))
    by_kind = {s["kind"]: s for s in printed["sources"]}
    assert by_kind["json_rates"]["url"] == "http://127.0.0.1:8799/rates/latest?base=USD"
    assert by_kind["rpw"]["url"] == "http://127.0.0.1:8799/rpw/rpw_quotes.csv.gz"
    config = parse_config(printed)  # a config sendcost takes as it is
    assert len(config.corridors) == 5
    assert sum(s.kind == "operator_json" for s in config.sources) == 3  # as serve --sandbox
    assert all(is_sandbox_url(s.url, config.sandbox) for s in config.sources)

    # The same tables (names, kinds, schedules, options) as serve --sandbox collects from,
    # but for the posts, which follow the printed corridors.
    served = with_sandbox(load_config(ROOT / "config.toml"), 8799)
    mine = {s.name: s for s in config.sources if s.kind != "postal_tariff"}
    theirs = {s.name: s for s in served.sources if s.kind != "postal_tariff"}
    assert mine == theirs
    assert main(["sandbox", "--print-config", "--operators", "7", "--corridors", "1"]) == 0
    wider = parse_config(tomllib.loads(capsys.readouterr().out))
    assert sum(s.kind == "operator_json" for s in wider.sources) == 7


def test_sources_for_tests_and_the_benchmark_leave_out_the_rpw_import() -> None:
    base = "http://127.0.0.1:1"
    assert _profile_kinds({"sources": sources_config(base, operators_n=1)}) == {
        "ecb_rates", "comparison", "operator_json"}
    assert _profile_kinds({"sources": sources_config(base, operators_n=1, posts=("FRA",),
                                                     json_rates=True, rpw=True)}) == {
        "ecb_rates", "json_rates", "comparison", "operator_json", "postal_tariff", "rpw"}


def test_the_sandbox_takes_no_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    """It reads none, so --config is refused rather than silently ignored; --help says so."""
    parser = build_parser()
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["sandbox", "--config", "config.toml"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --config" in capsys.readouterr().err
    args = parser.parse_args(["sandbox", "-q", "--print-config"])
    assert args.quiet and not args.verbose and not hasattr(args, "config")

    with pytest.raises(SystemExit) as helped:
        parser.parse_args(["sandbox", "--help"])
    assert helped.value.code == 0
    text = capsys.readouterr().out
    assert "reads no config file" in text
    assert not re.search(r"^\s+--config\b", text, re.MULTILINE)  # not among the options
    assert re.search(r"^\s+-q, --quiet\b", text, re.MULTILINE)


async def test_a_repeated_quote_is_answered_the_same_until_prices_change() -> None:
    """Operator quotes are kept for their price epoch (so that the emulated upstream leaves
    the CPU to the collector under test), without changing what is served."""
    sandbox = Sandbox(operators_n=2)
    server = TestServer(sandbox.app(), host="127.0.0.1")
    await server.start_server()
    url = (f"{str(server.make_url('')).rstrip('/')}/operators/1/quote?source=USA"
           "&destination=MEX&send_currency=USD&receive_currency=MXN&amount=200")
    try:
        async with aiohttp.ClientSession() as session:
            async def get(**headers: str) -> tuple[int, bytes, str]:
                async with session.get(url, headers=headers) as resp:
                    return resp.status, await resp.read(), resp.headers["ETag"]

            status, body, etag = await get()
            assert status == 200 and json.loads(body)["quote"]["sendAmount"] == 200
            assert await get() == (200, body, etag)
            assert (await get(**{"If-None-Match": etag}))[0] == 304
            # A knob turned: the quote is made anew (every quote is then a bad one).
            sandbox.faults.bad_quote_rate = 1.0
            assert (await get())[1] != body
            sandbox.faults.bad_quote_rate = 0.0
            # The next price epoch: new prices, a new ETag.
            sandbox.faults.price_epoch_seconds = 1.0
            assert (await get())[2] != etag
    finally:
        await server.close()
    assert sandbox.log.maxlen and [outcome for _, outcome in sandbox.log][:2] == ["ok", "ok"]


def test_a_newcomer_without_the_sandbox_is_told_what_to_do() -> None:
    """The emulated profile collects from the sandbox's address; with nothing listening
    there, `collect --sandbox` says so once, and how to start it, instead of only failing run
    by run. The shipped profile's real sources are not the sandbox's business."""
    from sendcost.commands.sandbox import sandbox_down

    shipped = load_config(ROOT / "config.toml")
    assert sandbox_down(shipped.sources, where="x", sandbox=shipped.sandbox) is None
    assert sandbox_down([], where="x") is None
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    emulated = with_sandbox(shipped, port)
    listener.listen()
    try:
        # it listens
        assert sandbox_down(emulated.sources, where="Run it", sandbox=emulated.sandbox) is None
    finally:
        listener.close()
    warning = sandbox_down(emulated.sources, where="Run 'sendcost sandbox' first",
                           sandbox=emulated.sandbox)
    assert warning is not None
    n = len(emulated.sources)
    assert warning.startswith(f"{n} source(s) ({', '.join(s.name for s in emulated.sources[:3])}"
                              f" and {n - 3} more) collect from the sandbox on "
                              f"http://127.0.0.1:{port}, and nothing listens there")
    assert "Run 'sendcost sandbox' first, or point [[sources]]" in warning
    # The same sources seen with the sandbox at its default port are not at the sandbox.
    assert sandbox_down(emulated.sources, where="x") is None


@pytest.mark.parametrize(("args", "said"), [
    (["--error-rate", "5"], "--error-rate: expected a share from 0 to 1"),
    (["--bad-quote-rate", "-0.1"], "--bad-quote-rate: expected a share from 0 to 1"),
    (["--operators", "-3", "--print-config"], "--operators: expected a whole number of at least 1"),
    (["--hang-seconds", "nan"], "--hang-seconds: expected a duration of 0 or more"),
    (["--burst-429-length", "0"], "--burst-429-length: expected a whole number of at least 1"),
])
def test_impossible_fault_knobs_are_refused(args: list[str], said: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["sandbox", *args])
    assert refused.value.code == 2
    assert said in capsys.readouterr().err
