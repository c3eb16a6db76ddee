"""``sendcost sandbox``: emulated upstreams on loopback (operators, a comparison feed,
postal tariffs, ECB and JSON reference rates, RPW) for demos, tests and benchmarks; and the
emulated profile that ``sendcost serve --sandbox`` / ``collect --sandbox`` put in place of
the config's sources."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from collector.kinds import SANDBOX_PORT, is_sandbox_url
from corridors.config import Config, SandboxConfig, parse_config
from sendcost.cli import argument, common_options, port_number, setup_logging
from sendcost.commands import Subcommands

if TYPE_CHECKING:
    from collector.sandbox import Faults
    from corridors.config import SourceConfig

log = logging.getLogger(__name__)

#: The sandbox's default port: a source collecting from it is emulated (collector.kinds).
DEFAULT_PORT = SANDBOX_PORT

HELP = f"""\
Serve emulated upstreams on loopback, with prices drawn from the World Bank's RPW data:
N operator quote APIs, a Wise-style comparison feed, postal tariffs (JSON and CSV), the
ECB's eurofxref-daily.xml, a JSON rates API and the bundled RPW file, on
http://127.0.0.1:{DEFAULT_PORT} unless told. 'sendcost collect --sandbox' (and 'sendcost
serve --sandbox', which runs one in-process) collects from the emulated profile at
config.toml's [sandbox] address instead of the config's real sources; --print-config
prints that profile. The sandbox reads no config file (it takes no --config): the options
below are all it is told.

Fault knobs make it a hostile upstream for resilience work: latency, 5xx, timeouts,
truncated bodies, 429 bursts with Retry-After, slow bodies, implausible quotes.

examples:
  sendcost sandbox                                  # then: sendcost collect --sandbox
  sendcost sandbox --port 8766                      # beside another; [sandbox] port = 8766
  sendcost sandbox --error-rate 0.2 --timeout-rate 0.1 --malformed-rate 0.05
  sendcost sandbox --print-config --operators 10 --corridors 50 > sandbox.toml
"""


#: A share of requests, 0 to 1 (0.05: one in twenty).
share = argument(float, lambda v: 0.0 <= v <= 1.0,
                 "a share from 0 to 1 (0.05 is one request in twenty)")
#: A duration in seconds (or milliseconds), 0 or more.
seconds = argument(float, lambda v: 0.0 <= v < float("inf"), "a duration of 0 or more")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number, ``minimum`` or more."""
    return argument(int, lambda v: v >= minimum, f"a whole number of at least {minimum}")


def register(sub: Subcommands) -> None:
    p = sub.add_parser("sandbox", help="serve emulated upstreams on loopback",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(p, config=False)  # a --config would be accepted and mean nothing here
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--operators", type=at_least(1), default=None,
                   help="emulated operators (default: 10 served; 3 in --print-config, as "
                        "serve --sandbox collects)")
    p.add_argument("--corridors", type=at_least(1), default=20,
                   help="corridors in --print-config (default 20, RPW's busiest)")
    p.add_argument("--print-config", action="store_true",
                   help="print the emulated profile for this sandbox's address and exit: "
                        "[sandbox], [[corridors]], and the [[sources]] serve --sandbox "
                        "collects from (the ECB and JSON rates, the comparison feed, each "
                        "operator, up to three posts and the RPW file)")
    knobs = p.add_argument_group("faults")
    knobs.add_argument("--latency-ms", type=seconds, default=0.0, help="mean added latency")
    knobs.add_argument("--error-rate", type=share, default=0.0, help="share of 5xx answers")
    knobs.add_argument("--timeout-rate", type=share, default=0.0,
                       help="share of requests that hang (--hang-seconds)")
    knobs.add_argument("--hang-seconds", type=seconds, default=30.0)
    knobs.add_argument("--malformed-rate", type=share, default=0.0,
                       help="share of truncated bodies")
    knobs.add_argument("--slow-body-rate", type=share, default=0.0,
                       help="share of bodies sent slowly (--slow-body-seconds)")
    knobs.add_argument("--slow-body-seconds", type=seconds, default=2.0)
    knobs.add_argument("--burst-429-every", type=at_least(0), default=0,
                       help="every N requests, a burst of 429s (0: never)")
    knobs.add_argument("--burst-429-length", type=at_least(1), default=5)
    knobs.add_argument("--retry-after", default="1", help="Retry-After sent with 429s")
    knobs.add_argument("--bad-quote-rate", type=share, default=0.0,
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


def with_sandbox(config: Config, port: int | None = None) -> Config:
    """``config`` with every source replaced by the emulated profile
    (``collector.sandbox.emulated_profile``) at its ``[sandbox]`` address, ``port`` (when
    given) in place of the configured port: what ``--sandbox`` collects from."""
    from collector.sandbox import PROFILE_OPERATORS, emulated_profile

    sandbox = config.sandbox if port is None else dataclasses.replace(config.sandbox, port=port)
    tables = emulated_profile(sandbox.base_url, operators_n=PROFILE_OPERATORS)
    return dataclasses.replace(config, sandbox=sandbox,
                               sources=parse_config({"sources": tables}).sources)


#: How long ``collect --sandbox`` waits for the sandbox to accept a connection (seconds).
SANDBOX_CONNECT_SECONDS = 2.0


def sandbox_answers(sandbox: SandboxConfig, timeout: float = SANDBOX_CONNECT_SECONDS) -> bool:
    """True when something accepts a TCP connection at the sandbox's host:port."""
    try:
        with socket.create_connection((sandbox.host, sandbox.port), timeout=timeout):
            return True
    except OSError:
        return False


def sandbox_down(sources: Iterable[SourceConfig], *, where: str,
                 sandbox: SandboxConfig | None = None) -> str | None:
    """A warning when ``sources`` (those about to run) collect from the sandbox's address
    (``sandbox``, default 127.0.0.1:DEFAULT_PORT) and nothing listens there, saying what to
    do; None otherwise. ``where``: how the sandbox is started beside this command."""
    sandbox = sandbox or SandboxConfig()
    names = [s.name for s in sources if is_sandbox_url(s.url, sandbox)]
    if not names:
        return None
    with contextlib.suppress(OSError), socket.create_connection((sandbox.host, sandbox.port),
                                                                 timeout=0.5):
        return None
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{len(names)} source(s) ({shown}) collect from the sandbox on "
            f"{sandbox.base_url}, and nothing listens there: their runs will "
            f"fail until it does. {where}, or point [[sources]] in config.toml at real "
            "upstreams")


#: The share of implausible operator quotes of ``sendcost serve --sandbox``'s upstreams.
SERVE_BAD_QUOTE_RATE = 0.1


def sandbox_ctx(sandbox: SandboxConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx for ``sendcost serve --sandbox``: the sandbox on ``sandbox``'s address,
    its operators sending a few implausible quotes (``SERVE_BAD_QUOTE_RATE``) as real
    upstreams now and then do, so that the quick start shows the quarantine at work."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from collector.sandbox import Faults, Sandbox

        server = Sandbox(Faults(bad_quote_rate=SERVE_BAD_QUOTE_RATE))
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, sandbox.host, sandbox.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SystemExit(
                f"sendcost serve --sandbox: cannot listen on {sandbox.base_url} ({exc}); "
                "another sandbox there? Choose another with --sandbox-port or [sandbox] "
                "port") from None
        log.info("sandbox upstreams on %s", sandbox.base_url)
        yield
        await runner.cleanup()

    return ctx


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    from collector.sandbox import Sandbox, toml_profile

    if args.print_config:
        print(toml_profile(args.host, args.port, corridors_m=args.corridors,
                           **({} if args.operators is None else
                              {"operators_n": args.operators})))
        return 0
    base = SandboxConfig(args.host, args.port).base_url
    operators_n = 10 if args.operators is None else args.operators
    sandbox = Sandbox(faults_from(args), operators_n=operators_n)
    log.info("sandbox: %d operators, prices from RPW; serving on %s", operators_n, base)
    web.run_app(sandbox.app(), host=args.host, port=args.port, access_log=None,
                print=lambda msg: log.info("%s", " ".join(msg.split())))
    return 0
