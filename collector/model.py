"""What adapters produce and what they are given: corridors to price and quote drafts (the
adapter signature and the run's context are in ``collector.context``). Kept apart from the
registry so adapters can import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from corridors.config import Config, CorridorConfig
from corridors.errors import ConfigError
from corridors.reference import country
from corridors.types import Firm, ServiceAttributes

#: The nominal price points, in the order of a corridor's configured amounts.
PRICE_POINTS = (200, 500)


@dataclass(frozen=True, slots=True)
class CorridorSpec:
    """A monitored corridor with what adapters need to ask for its prices."""

    source: str  # ISO alpha-3
    destination: str
    source2: str  # ISO alpha-2
    destination2: str
    send_currency: str
    receive_currency: str
    amounts: tuple[tuple[int, Decimal], ...]  # (amount_usd, local send amount)

    @property
    def key(self) -> str:
        return f"{self.source}-{self.destination}"


def corridor_specs(config: Config, only: str | None = None) -> list[CorridorSpec]:
    """The configured corridors (or just ``only``, "USA-MEX"), ready to be priced."""
    out = []
    for c in config.corridors:
        spec = _spec(config, c)
        if only is None or spec.key == only.upper():
            out.append(spec)
    if only is not None and not out:
        known = ", ".join(f"{c.source}-{c.destination}" for c in config.corridors) or "none"
        raise ConfigError(f"--corridor {only}: not a configured corridor (configured: {known})")
    return out


def _spec(config: Config, c: CorridorConfig) -> CorridorSpec:
    src, dst = country(c.source), country(c.destination)
    where = f"corridors[{c.source}-{c.destination}]"
    if src is None or dst is None or not src.currency or not dst.currency:
        raise ConfigError(f"{where}: no currency known for one of the countries")
    amounts = config.amounts_for(c, src.currency)
    return CorridorSpec(src.alpha3, dst.alpha3, src.alpha2, dst.alpha2, src.currency,
                        dst.currency, tuple(zip(PRICE_POINTS, amounts, strict=False)))


@dataclass(slots=True)
class Draft:
    """A quote as an adapter read it, before reference rates and validation.

    ``corridor`` is None when the upstream priced a corridor we do not monitor.
    ``send_currency``/``receive_currency`` are what the upstream said (None: not said).
    """

    corridor: CorridorSpec | None
    amount_usd: int
    send_amount: Decimal
    firm: Firm
    service: ServiceAttributes
    service_key: str
    fee: Decimal | None
    applied_rate: Decimal | None
    received_amount: Decimal | None = None
    fee_deducted: bool | None = None
    send_currency: str | None = None
    receive_currency: str | None = None
    fx_margin_reported: Decimal | None = None
    #: The amount the upstream says it priced (None: not said); checked against the amount
    #: asked (``amount_mismatch``).
    reported_amount: Decimal | None = None
    #: The currency of the fee when the upstream says it (None: the sending currency); a
    #: fee in another currency is converted through the reference rates before it is kept.
    fee_currency: str | None = None
    flags: tuple[str, ...] = ()
    #: When the upstream says it observed the price (else: when we fetched it).
    observed_at: Any = None
    #: The upstream's own record, kept verbatim in quarantine if the quote is rejected.
    payload: dict[str, Any] = field(default_factory=dict)


def service_key(firm: Firm, corridor: str, service: ServiceAttributes) -> str:
    """The identity of a service: firm × corridor × product × pay-in × pay-out.

    Who reported the price is not part of it: a firm's own quote API and a comparison feed
    that lists the same firm and product are two measurements of one service, which must
    count once in every average (each quote keeps its source).
    """
    return ":".join((str(firm.firm_type), firm.name, corridor, service.product,
                     str(service.pay_in or ""), str(service.pay_out or "")))

