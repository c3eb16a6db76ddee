"""``sendcost sandbox``: emulated upstreams on loopback (operators, a comparison feed,
postal tariffs, ECB and JSON reference rates, RPW) for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from collector.kinds import SANDBOX_PORT
from sendcost.cli import common_options, port_number, setup_logging

if TYPE_CHECKING:
    from collector.sandbox import Faults
    from corridors.config import SourceConfig

log = logging.getLogger(__name__)

#: The sandbox's default port: a source collecting from it is emulated (collector.kinds).
DEFAULT_PORT = SANDBOX_PORT

HELP = f"""\
Serve emulated upstreams on loopback, with prices drawn from the World Bank's RPW data:
N operator quote APIs, a Wise-style comparison feed, postal tariffs (JSON and CSV), the
ECB's eurofxref-daily.xml, a JSON rates API and the bundled RPW file. config.toml's
sandbox profile points the collectors at http://127.0.0.1:{DEFAULT_PORT}. The sandbox
reads no config file (it takes no --config): the options below are all it is told.

Fault knobs make it a hostile upstream for resilience work: latency, 5xx, timeouts,
truncated bodies, 429 bursts with Retry-After, slow bodies, implausible quotes.

examples:
  sendcost sandbox                                  # then: sendcost collect
  sendcost sandbox --error-rate 0.2 --timeout-rate 0.1 --malformed-rate 0.05
  sendcost sandbox --print-config --operators 10 --corridors 50 > sandbox.toml
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help="serve emulated upstreams on loopback",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p, config=False)  # a --config would be accepted and mean nothing here
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--operators", type=int, default=10, help="emulated operators (default 10)")
    p.add_argument("--corridors", type=int, default=20,
                   help="corridors in --print-config (default 20, RPW's busiest)")
    p.add_argument("--print-config", action="store_true",
                   help="print a profile for this sandbox like config.toml's and exit: "
                        "[[corridors]], and [[sources]] for the ECB and JSON rates, the "
                        "comparison feed, each operator, up to three posts and the RPW file")
    knobs = p.add_argument_group("faults")
    knobs.add_argument("--latency-ms", type=float, default=0.0, help="mean added latency")
    knobs.add_argument("--error-rate", type=float, default=0.0, help="share of 5xx answers")
    knobs.add_argument("--timeout-rate", type=float, default=0.0,
                       help="share of requests that hang (--hang-seconds)")
    knobs.add_argument("--hang-seconds", type=float, default=30.0)
    knobs.add_argument("--malformed-rate", type=float, default=0.0,
                       help="share of truncated bodies")
    knobs.add_argument("--slow-body-rate", type=float, default=0.0,
                       help="share of bodies sent slowly (--slow-body-seconds)")
    knobs.add_argument("--slow-body-seconds", type=float, default=2.0)
    knobs.add_argument("--burst-429-every", type=int, default=0,
                       help="every N requests, a burst of 429s (0: never)")
    knobs.add_argument("--burst-429-length", type=int, default=5)
    knobs.add_argument("--retry-after", default="1", help="Retry-After sent with 429s")
    knobs.add_argument("--bad-quote-rate", type=float, default=0.0,
                       help="share of implausible operator quotes (quarantine fodder)")
    knobs.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def faults_from(args: argparse.Namespace) -> Faults:
    from collector.sandbox import Faults

    return Faults(latency_ms=args.latency_ms, error_rate=args.error_rate,
                  timeout_rate=args.timeout_rate, hang_seconds=args.hang_seconds,
                  malformed_rate=args.malformed_rate, slow_body_rate=args.slow_body_rate,
                  slow_body_seconds=args.slow_body_seconds,
                  burst_429_every=args.burst_429_every,
                  burst_429_length=args.burst_429_length, retry_after=args.retry_after,
                  bad_quote_rate=args.bad_quote_rate, seed=args.seed)


def sandbox_down(sources: Iterable[SourceConfig], *, where: str) -> str | None:
    """A warning when ``sources`` (those about to run) collect from the sandbox's address
    (127.0.0.1:DEFAULT_PORT, as the shipped profile does) and nothing listens there, saying
    what to do; None otherwise. ``where``: how the sandbox is started beside this command."""
    names = [s.name for s in sources
             if (u := urlsplit(s.url)).hostname in ("127.0.0.1", "localhost")
             and u.port == DEFAULT_PORT]
    if not names:
        return None
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", DEFAULT_PORT),
                                                                 timeout=0.5):
        return None
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{len(names)} source(s) ({shown}) collect from the sandbox on "
            f"http://127.0.0.1:{DEFAULT_PORT}, and nothing listens there: their runs will "
            f"fail until it does. {where}, or point [[sources]] in config.toml at real "
            "upstreams")


#: The share of implausible operator quotes of ``sendcost serve --sandbox``'s upstreams.
SERVE_BAD_QUOTE_RATE = 0.1


async def sandbox_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx for ``sendcost serve --sandbox``: the sandbox on 127.0.0.1:8765, its
    operators sending a few implausible quotes (``SERVE_BAD_QUOTE_RATE``) as real upstreams
    now and then do, so that the quick start shows the quarantine at work."""
    from collector.sandbox import Faults, Sandbox

    sandbox = Sandbox(Faults(bad_quote_rate=SERVE_BAD_QUOTE_RATE))
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", DEFAULT_PORT)
    await site.start()
    log.info("sandbox upstreams on http://127.0.0.1:%d", DEFAULT_PORT)
    yield
    await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    from collector.sandbox import Sandbox, toml_profile

    base = f"http://{args.host}:{args.port}"
    if args.print_config:
        print(toml_profile(base, operators_n=args.operators, corridors_m=args.corridors))
        return 0
    sandbox = Sandbox(faults_from(args), operators_n=args.operators)
    log.info("sandbox: %d operators, prices from RPW; serving on %s", args.operators, base)
    web.run_app(sandbox.app(), host=args.host, port=args.port, access_log=None,
                print=lambda msg: log.info("%s", " ".join(msg.split())))
    return 0
