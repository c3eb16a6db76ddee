"""Plausibility checks: a quote either passes (perhaps flagged) or is quarantined with a
reason and the field at fault. Pure functions; no I/O.

Reasons (``quarantined_quotes.reason``):
  unknown_corridor            the upstream priced a corridor we do not monitor
  currency_mismatch           the upstream's currency is not the corridor's
  amount_not_positive         send amount ≤ 0
  amount_mismatch             the upstream priced another amount than the one asked for
                              (more than 1 % off; within it: kept, flagged approximate_amount)
  amount_above_tariff         the amount is above a tariff's largest band: no price for it
  fee_missing                 no fee: an answer without one is not a price (an error body, {})
  rate_missing                no applied rate, no received amount and no FX margin: the
                              exchange-rate half of the price is missing (unless the quote
                              is flagged rate_undisclosed: a post's published tariff that
                              states its fee and not its rate, kept as a non-transparent
                              service, as RPW records a service that does not disclose it)
  fee_negative                fee < 0
  fee_above_amount            fee > amount sent
  rate_not_positive           applied rate ≤ 0
  rate_off_reference          applied rate off the reference by more than max_rate_deviation
  margin_off_reference        the upstream's own FX margin (markup) disagrees with the margin
                              measured against our reference by more than
                              max_margin_disagreement_pct percentage points
  fee_currency_unconverted    a fee in another currency than the sending one, with no
                              fresh reference rate to convert it
  implausible_negative_margin FX margin below min_fx_margin_pct
  received_inconsistent       received amount ≠ (amount − fee) × rate (or amount × rate)
  unknown_label               a label of the upstream's (a provider type, a pay-in or pay-out
                              label) without a mapping: never guessed
  malformed_record            one record of a response with many is not in the upstream's
                              format (not an object, a value that is not a number, a date or
                              a duration); the response's other records are kept
Flags kept on stored quotes: negative_margin (plausible promotion), reference_stale,
fee_converted:CUR (the fee was charged in CUR and converted through the reference rates).

``check`` also completes a draft before judging it: a fee in another currency is converted
into the sending currency, and a corridor paid out in the currency sent (USA → SLV in USD)
without a rate has the rate 1.

An adapter quarantines a record it cannot make a draft of itself (``Unusable``): a fee or
rate that is there but not a number is as good as none (fee_missing, rate_missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from collector.errors import ParseError
from collector.model import Draft
from collector.parsing import dec
from corridors.config import CollectionConfig

if TYPE_CHECKING:
    from collector.rates import RateBook

#: The flag of a quote from a post's published tariff that states no rate (collector.
#: postal_tariff): its fee is the post's word, its rate unknown; stored non-transparent.
RATE_UNDISCLOSED = "rate_undisclosed"

#: Received amounts are rounded by upstreams (to the unit in some currencies).
RECEIVED_REL_TOLERANCE = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    field: str
    detail: str


class Unusable(Exception):
    """One record of a response cannot be made a draft: quarantine it, keep the others."""

    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(f"{reason} ({field}): {detail}")
        self.rejection = Rejection(reason, field, detail)


#: A record an adapter could not make a draft of (the upstream's record), and why.
Rejected = tuple[dict[str, Any], Rejection]


def _half_last_digit(value: Decimal) -> Decimal:
    """Half a unit of the last decimal given (0.00005 for 1.3714); 0 for a whole number,
    whose precision the upstream does not say."""
    exponent = value.as_tuple().exponent
    return Decimal(5).scaleb(exponent - 1) if isinstance(exponent, int) and exponent < 0 \
        else Decimal(0)


def number(value: Any, field: str, what: str, reason: str = "malformed_record"
           ) -> Decimal | None:
    """The upstream's ``what`` as a Decimal (None when absent or null); a value that is not
    a number makes the record Unusable (``reason``, ``field``), never 0."""
    try:
        return dec(value, what)
    except ParseError as exc:
        raise Unusable(reason, field, str(exc)) from None


#: Against a stale reference (older than reference_max_age_hours), only an applied rate
#: this many times off (or that fraction of it) is rejected: a unit error (per 100, an
#: inverted rate), never a currency that moved while no fresh rate came in.
STALE_REFERENCE_FACTOR = Decimal(10)


#: An amount the upstream says it priced is the one asked for when within half a cent
#: (200.0 for 200; never 500 for 200).
AMOUNT_TOLERANCE = Decimal("0.005")
#: An amount priced within this share of the one asked (a provider that prices whole units
#: or steps of its own: 346 EUR for 345) is an approximate amount, as RPW's surveyors record
#: the nearest amount a provider offers: the quote is kept for the amount priced (its fee
#: and rate are that amount's price) and flagged ``approximate_amount``; further off it is
#: another amount's price (``amount_mismatch``). One per cent moves a fixed fee's share of
#: the amount by at most one per cent of itself (0.05 points on a 5 % fee).
APPROXIMATE_AMOUNT_SHARE = Decimal("0.01")


def convert_fee(draft: Draft, rates: RateBook | None, config: CollectionConfig,
                at: Any = None) -> tuple[Rejection | None, tuple[str, ...]]:
    """A fee charged in another currency than the sending one, converted into it through
    the reference rates (``draft.fee`` replaced; flag ``fee_converted:CUR``); quarantined
    as ``fee_currency_unconverted`` when no reference rate younger than
    ``reference_max_age_hours`` (at ``at``) converts it. Never kept as if sent currency."""
    c = draft.corridor
    cur = draft.fee_currency
    if c is None or cur is None or cur == c.send_currency or draft.fee is None:
        return None, ()
    ref = rates.rate(cur, c.send_currency) if rates is not None else None
    if ref is None or (at is not None
                       and ref.age_hours(at) > config.reference_max_age_hours):
        why = "no reference rate" if ref is None else f"only a stale one ({ref.source})"
        return Rejection("fee_currency_unconverted", "fee",
                         f"fee {draft.fee} {cur} on a {c.send_currency} corridor: {why} "
                         f"for {cur} → {c.send_currency}"), ()
    draft.fee = (draft.fee * ref.rate).quantize(Decimal("0.0001"), ROUND_HALF_UP)
    draft.fee_currency = c.send_currency
    return None, (f"fee_converted:{cur}",)


def check(draft: Draft, reference: Decimal | None, config: CollectionConfig, *,
          reference_stale: bool = False, rates: RateBook | None = None, at: Any = None
          ) -> tuple[Rejection | None, tuple[str, ...]]:
    """(rejection or None, extra flags) for one draft measured against ``reference``.

    A stale reference still catches absurd rates, but neither decides ``rate_off_reference``
    by ``max_rate_deviation`` nor measures a margin: the quote is stored, flagged
    ``reference_stale``, and left out of the averages until it can be measured.

    The draft is completed first: a fee in another currency is converted through ``rates``
    (at the quote's time ``at``), and a corridor sending and paying out one currency gets
    the rate 1 when the upstream gives none."""
    c = draft.corridor
    if c is None:
        return Rejection("unknown_corridor", "corridor", "not a monitored corridor"), ()
    if draft.send_currency is not None and draft.send_currency != c.send_currency:
        return Rejection("currency_mismatch", "send_currency",
                         f"{draft.send_currency} for a {c.send_currency} corridor"), ()
    if draft.receive_currency is not None and draft.receive_currency != c.receive_currency:
        return Rejection("currency_mismatch", "receive_currency",
                         f"{draft.receive_currency} for a {c.receive_currency} corridor"), ()
    amount = draft.send_amount
    if amount <= 0:
        return Rejection("amount_not_positive", "send_amount", f"{amount}"), ()
    reported = draft.reported_amount
    approximate: tuple[str, ...] = ()
    if reported is not None and abs(reported - amount) > AMOUNT_TOLERANCE:
        if reported <= 0 or abs(reported - amount) > APPROXIMATE_AMOUNT_SHARE * amount:
            # Priced for another amount: its fee and rate are another amount's price.
            return Rejection("amount_mismatch", "send_amount",
                             f"the answer prices {reported}, not the {amount} asked for"), ()
        # Near the amount asked: kept as the price of the amount priced, and said.
        draft.send_amount = amount = reported
        approximate = ("approximate_amount",)
    rejection, converted = convert_fee(draft, rates, config, at)
    if rejection is not None:
        return rejection, ()
    if (draft.applied_rate is None and c.send_currency == c.receive_currency
            and draft.receive_currency in (None, c.receive_currency)):
        # Sent and paid out in one currency (USA → SLV in USD): nothing is exchanged.
        draft.applied_rate = Decimal(1)
    fee = draft.fee
    if fee is None:
        # An unknown fee is not a fee of 0, and a quote without one is no quote: an upstream's
        # {"error": …} or {"quote": {}} answered with 200 must not be stored as a price.
        return Rejection("fee_missing", "fee", "the answer carries no fee"), ()
    if fee < 0:
        return Rejection("fee_negative", "fee", f"{fee}"), ()
    if fee > amount:
        return Rejection("fee_above_amount", "fee", f"{fee} > {amount}"), ()
    rate = draft.applied_rate
    if (rate is None and draft.received_amount is None and draft.fx_margin_reported is None
            and RATE_UNDISCLOSED not in draft.flags):
        # A fee with no rate, no received amount and no FX margin prices half a transfer. (A
        # reported margin is a price: a postal tariff's, measured once a reference exists.)
        return Rejection("rate_missing", "applied_rate", "the answer carries neither an "
                         "applied rate nor a received amount (nor an FX margin)"), ()
    flags: list[str] = [*approximate, *converted]
    if rate is not None:
        if rate <= 0:
            return Rejection("rate_not_positive", "applied_rate", f"{rate}"), ()
        if reference is not None and reference_stale:
            factor = max(rate / reference, reference / rate)
            if factor > STALE_REFERENCE_FACTOR:
                return Rejection("rate_off_reference", "applied_rate",
                                 f"{rate} vs stale reference {reference}: off by a factor "
                                 f"of {float(factor):.1f}"), ()
        elif reference is not None:
            deviation = abs(rate / reference - 1)
            if deviation > Decimal(str(config.max_rate_deviation)):
                return Rejection("rate_off_reference", "applied_rate",
                                 f"{rate} vs reference {reference}: off by "
                                 f"{float(deviation) * 100:.1f}%"), ()
            margin_pct = (reference - rate) / reference * 100
            if margin_pct < Decimal(str(config.min_fx_margin_pct)):
                return Rejection("implausible_negative_margin", "applied_rate",
                                 f"margin {float(margin_pct):.2f}%"), ()
            told = draft.fx_margin_reported
            if told is not None and abs(told - margin_pct) > Decimal(
                    str(config.max_margin_disagreement_pct)):
                # The cost would use the upstream's margin; ours says otherwise: one of
                # the two rates is not what it claims to be.
                return Rejection("margin_off_reference", "fx_margin_reported",
                                 f"the upstream's margin {told}% vs {float(margin_pct):.2f}% "
                                 f"measured against the reference {reference}"), ()
            # An applied rate given to 4 decimals cannot tell a margin within half its last
            # digit from none: rounding is not a promotion.
            if margin_pct < 0 and rate - reference > _half_last_digit(rate):
                flags.append("negative_margin")
    received = draft.received_amount
    if received is not None and rate is not None:
        candidates = {False: amount * rate, True: (amount - fee) * rate}
        wanted = ([candidates[draft.fee_deducted]] if draft.fee_deducted is not None
                  else list(candidates.values()))
        close = (abs(received - w) <= RECEIVED_REL_TOLERANCE * abs(w) + 1 for w in wanted)
        if not any(close):
            return Rejection("received_inconsistent", "received_amount",
                             f"{received} received; expected "
                             f"{' or '.join(f'{w:.2f}' for w in wanted)}"), ()
    return None, tuple(flags)
