"""Domain types shared by every stage: firm types, service attributes, quotes.

The vocabulary follows the World Bank's Remittance Prices Worldwide (RPW) methodology
(see docs/METHODOLOGY.md). Every RPW label is mapped explicitly (the RPW importer
matches them regardless of case and spacing): an unknown label is reported and kept
verbatim, never guessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class FirmType(StrEnum):
    """The kind of remittance service provider."""

    BANK = "bank"
    MTO = "mto"
    POST_OFFICE = "post_office"
    # An MTO's service sold over post-office counters: kept apart from the post's own service.
    POST_OFFICE_MTO = "post_office_mto"
    MOBILE_OPERATOR = "mobile_operator"
    CREDIT_UNION = "credit_union"
    NON_BANK_FI = "non_bank_fi"
    OTHER = "other"


#: Human-readable names, as the World Bank's reports write them.
FIRM_TYPE_LABELS: dict[FirmType, str] = {
    FirmType.BANK: "Bank",
    FirmType.MTO: "Money Transfer Operator",
    FirmType.POST_OFFICE: "Post office",
    FirmType.POST_OFFICE_MTO: "Money Transfer Operator / Post office",
    FirmType.MOBILE_OPERATOR: "Mobile operator",
    FirmType.CREDIT_UNION: "Credit union",
    FirmType.NON_BANK_FI: "Non-bank financial institution",
    FirmType.OTHER: "Other",
}

#: Every firm-type label found in RPW data (both workbook sheets), mapped explicitly.
FIRM_TYPE_FROM_RPW: dict[str, FirmType] = {
    "Bank": FirmType.BANK,
    "Money Transfer Operator": FirmType.MTO,
    "Post office": FirmType.POST_OFFICE,
    "Post Office": FirmType.POST_OFFICE,
    "Money Transfer Operator / Post office": FirmType.POST_OFFICE_MTO,
    "Money Transfer Operator / Post Office": FirmType.POST_OFFICE_MTO,
    # A bank that also runs an MTO brand is priced as a bank by the World Bank's reports.
    "Bank / Money Transfer Operator": FirmType.BANK,
    # A postal bank: its services are the post's own.
    "Bank/Post office": FirmType.POST_OFFICE,
    "Bank / Post office": FirmType.POST_OFFICE,
    "Non-Bank FI": FirmType.NON_BANK_FI,
    "Non-bank FI": FirmType.NON_BANK_FI,
    "Money Transfer Operator / Building Society": FirmType.NON_BANK_FI,
    "Building Society": FirmType.NON_BANK_FI,
    "Credit Union": FirmType.CREDIT_UNION,
    "Mobile Operator": FirmType.MOBILE_OPERATOR,
    "Mobile operator": FirmType.MOBILE_OPERATOR,
    "Mobile Money Operator": FirmType.MOBILE_OPERATOR,
    "Other": FirmType.OTHER,
}


class DataKind(StrEnum):
    """What kind of figure a quote is: what a reader may take it for.

    ``survey``: a price the World Bank's RPW survey recorded (an RPW import).
    ``observed``: a provider's own quote, collected from that provider.
    ``estimate``: a comparison feed's figure for another provider (not the provider's word).
    ``emulated``: the sandbox's invented prices: never a real price, never published as one
    unless a user asks for it, and then marked "emulated data — not real prices".
    ``published_tariff``: a post's price list as published on its web page, transcribed by
    hand into a bundled file (corridors/data/postal_tariffs/, each with the page's URL and
    the date it was read): the fee schedule, not a quote for a transfer.
    """

    SURVEY = "survey"
    OBSERVED = "observed"
    ESTIMATE = "estimate"
    EMULATED = "emulated"
    PUBLISHED_TARIFF = "published_tariff"


#: What every rendering says beside emulated data, where a reader cannot miss it.
EMULATED_WARNING = "emulated data — not real prices"


class Speed(StrEnum):
    """How long until the money is available to the receiver (RPW's categories)."""

    LESS_THAN_ONE_HOUR = "less_than_one_hour"
    SAME_DAY = "same_day"
    NEXT_DAY = "next_day"
    TWO_DAYS = "two_days"
    THREE_TO_FIVE_DAYS = "three_to_five_days"
    SIX_DAYS_OR_MORE = "six_days_or_more"


SPEED_LABELS: dict[Speed, str] = {
    Speed.LESS_THAN_ONE_HOUR: "Less than one hour",
    Speed.SAME_DAY: "Same day",
    Speed.NEXT_DAY: "Next day",
    Speed.TWO_DAYS: "2 days",
    Speed.THREE_TO_FIVE_DAYS: "3-5 days",
    Speed.SIX_DAYS_OR_MORE: "6 days or more",
}

#: Speeds that qualify a service for SmaRT (money available within 5 days).
SMART_SPEEDS: frozenset[Speed] = frozenset(set(Speed) - {Speed.SIX_DAYS_OR_MORE})

#: RPW speed labels; "N/A" means unknown (None), which does not qualify for SmaRT.
SPEED_FROM_RPW: dict[str, Speed | None] = {
    "Less than one hour": Speed.LESS_THAN_ONE_HOUR,
    "Same day": Speed.SAME_DAY,
    "Next day": Speed.NEXT_DAY,
    "2 days": Speed.TWO_DAYS,
    "3-5 days": Speed.THREE_TO_FIVE_DAYS,
    "6 days or more": Speed.SIX_DAYS_OR_MORE,
    # One row of the 2016-2025 sheet: at most three days, so within SmaRT's five; counted in
    # the slowest category it may be.
    "1-3 days": Speed.THREE_TO_FIVE_DAYS,
    "N/A": None,
    "": None,
}


def speed_from_days(max_days: float) -> Speed:
    """The RPW speed category of a delivery promised within ``max_days`` days."""
    if max_days < 1 / 24:
        return Speed.LESS_THAN_ONE_HOUR
    if max_days < 1:
        return Speed.SAME_DAY
    if max_days <= 1:
        return Speed.NEXT_DAY
    if max_days <= 2:
        return Speed.TWO_DAYS
    if max_days <= 5:
        return Speed.THREE_TO_FIVE_DAYS
    return Speed.SIX_DAYS_OR_MORE


class PayIn(StrEnum):
    CASH = "cash"
    BANK_ACCOUNT = "bank_account"
    CARD = "card"
    MOBILE_MONEY = "mobile_money"


class PayOut(StrEnum):
    CASH = "cash"
    BANK_ACCOUNT = "bank_account"
    MOBILE_WALLET = "mobile_wallet"
    HOME_DELIVERY = "home_delivery"
    CARD = "card"
    # Paid out at a post office counter (a postal money order, or an MTO's service whose
    # receiving agent is the post): the post as the receiver's end.
    POST_OFFICE = "post_office"


class AccessPoint(StrEnum):
    AGENT = "agent"
    BRANCH = "branch"
    POST_OFFICE_BRANCH = "post_office_branch"
    INTERNET = "internet"
    MOBILE_PHONE = "mobile_phone"
    CALL_CENTER = "call_center"


#: RPW "pick-up method" labels (2011-2016 sheet). Several methods → the first listed is
#: the service's main pay-out; an "ATM network" pays cash. A label missing here is reported.
PAYOUT_FROM_RPW: dict[str, PayOut | None] = {
    "": None,
    "N/A": None,
    "Cash": PayOut.CASH,
    "ATM Network": PayOut.CASH,
    "Bank Account": PayOut.BANK_ACCOUNT,
    "Bank account": PayOut.BANK_ACCOUNT,
    "Own/partner Bank Account": PayOut.BANK_ACCOUNT,
    "Own/Partner bank account": PayOut.BANK_ACCOUNT,
    "Own/partner bank account in receiving country": PayOut.BANK_ACCOUNT,
    # Spellings as they stand in the World Bank's files (typos included), mapped by hand.
    "own/partner Bank Account": PayOut.BANK_ACCOUNT,
    "Bank Acciunt": PayOut.BANK_ACCOUNT,
    "Home Delivery": PayOut.HOME_DELIVERY,
    "Home delivery": PayOut.HOME_DELIVERY,
    "Door to Door": PayOut.HOME_DELIVERY,
    "Door to door": PayOut.HOME_DELIVERY,
    "Mobile": PayOut.MOBILE_WALLET,
    "Mobile wallet": PayOut.MOBILE_WALLET,
    "Prepaid cash card": PayOut.CARD,
    "Credit Card": PayOut.CARD,
    "Debit card": PayOut.CARD,
    "ATM": PayOut.CASH,
    # The 2016-2025 sheet's "pickup method" labels (../shared/data/rpw/LABELS.md).
    "Own/partner bank account": PayOut.BANK_ACCOUNT,
    "Bank account (same/partner bank)": PayOut.BANK_ACCOUNT,
    # Pay-out at a post office: none in the bundled 2011-2014 data; mapped so that a real
    # file's label is counted as the post's, not reported as unknown.
    "Post office": PayOut.POST_OFFICE,
    "Post Office": PayOut.POST_OFFICE,
    "Post office branch": PayOut.POST_OFFICE,
    "Post Office branch": PayOut.POST_OFFICE,
}


def payout_from_rpw(label: str | None) -> PayOut | None:
    """Map an RPW pick-up label (possibly a comma-separated list) to the main pay-out.

    Raises KeyError naming the label when any part of it is unknown.
    """
    if label is None:
        return None
    parts = [p.strip() for p in label.split(",")]
    mapped = []
    for part in parts:
        if part not in PAYOUT_FROM_RPW:
            raise KeyError(f"unknown RPW pick-up method {part!r} in {label!r}")
        mapped.append(PAYOUT_FROM_RPW[part])
    return next((m for m in mapped if m is not None), None)


#: RPW "sending location" (2011-2016 sheet) and "access point" (sheet from Q2 2016) labels →
#: access point (first listed wins).
ACCESS_POINT_FROM_RPW: dict[str, AccessPoint | None] = {
    "Not available": None,
    "N/A": None,
    "": None,
    "at Branch": AccessPoint.BRANCH,
    "Branch": AccessPoint.BRANCH,
    "Bank branch": AccessPoint.BRANCH,
    "Bank Branch": AccessPoint.BRANCH,
    "Call Center": AccessPoint.CALL_CENTER,
    "Call center": AccessPoint.CALL_CENTER,
    "On-line": AccessPoint.INTERNET,
    "Online": AccessPoint.INTERNET,
    "Internet": AccessPoint.INTERNET,
    "Agent": AccessPoint.AGENT,
    "Post office": AccessPoint.POST_OFFICE_BRANCH,
    "Post Office": AccessPoint.POST_OFFICE_BRANCH,
    "Post office branch": AccessPoint.POST_OFFICE_BRANCH,
    "Post Office branch": AccessPoint.POST_OFFICE_BRANCH,
    "Mobile": AccessPoint.MOBILE_PHONE,
    "Mobile phone": AccessPoint.MOBILE_PHONE,
    "On mobile phone": AccessPoint.MOBILE_PHONE,
    "on mobile phone": AccessPoint.MOBILE_PHONE,
}

#: RPW "payment instrument" labels (sheet from Q2 2016) → pay-in.
PAY_IN_FROM_RPW: dict[str, PayIn | None] = {
    "": None,
    "N/A": None,
    "Cash": PayIn.CASH,
    "Bank account": PayIn.BANK_ACCOUNT,
    "Bank Account": PayIn.BANK_ACCOUNT,
    "Online banking": PayIn.BANK_ACCOUNT,
    "Debit card": PayIn.CARD,
    "Debit Card": PayIn.CARD,
    "Credit card": PayIn.CARD,
    "Credit Card": PayIn.CARD,
    "Debit/credit card": PayIn.CARD,
    "Bank account transfer": PayIn.BANK_ACCOUNT,
    "Mobile money": PayIn.MOBILE_MONEY,
    "Mobile wallet": PayIn.MOBILE_MONEY,
}


def access_point_from_rpw(label: str | None) -> AccessPoint | None:
    if label is None:
        return None
    for part in (p.strip() for p in label.split(",")):
        if part not in ACCESS_POINT_FROM_RPW:
            raise KeyError(f"unknown RPW sending location {part!r} in {label!r}")
        if ACCESS_POINT_FROM_RPW[part] is not None:
            return ACCESS_POINT_FROM_RPW[part]
    return None


@dataclass(frozen=True, slots=True)
class Country:
    alpha2: str
    alpha3: str
    name: str
    region: str | None  # World Bank region code: EAP, ECA, LAC, MNA, NAC, SAS, SSA
    income_group: str | None  # World Bank: LIC, LMC, UMC, HIC
    g8: bool
    g20: bool
    currency: str | None  # ISO 4217


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    name: str
    numeric: str | None


@dataclass(frozen=True, slots=True)
class Corridor:
    """Sending country → receiving country (ISO alpha-3), with their currencies."""

    source: str
    destination: str
    send_currency: str
    receive_currency: str

    @property
    def key(self) -> str:
        return f"{self.source}-{self.destination}"


@dataclass(frozen=True, slots=True)
class Firm:
    name: str
    firm_type: FirmType


@dataclass(frozen=True, slots=True)
class ServiceAttributes:
    """What distinguishes one service of a firm in a corridor from another."""

    product: str = ""
    pay_in: PayIn | None = None
    pay_out: PayOut | None = None
    access_point: AccessPoint | None = None
    speed: Speed | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """One priced transfer: a service at one send amount at one moment.

    Money is Decimal in the sending currency; rates are pay-out units per sending unit.
    Unknown values are None, never 0.
    """

    source_code: str
    destination_code: str
    firm: Firm
    service: ServiceAttributes
    # Stable identity of the service across quotes (e.g. "op:acme:USA-MEX:cash-cash"); each
    # distinct service counts once in an average, so two services must never share a key.
    service_key: str
    period: str  # "2011Q1" (quarter) or "2026-11" (month)
    amount_usd: int  # the nominal price point: 200 (headline) or 500
    send_amount: Decimal
    send_currency: str
    receive_currency: str | None
    fee: Decimal | None
    applied_rate: Decimal | None
    reference_rate: Decimal | None
    reference_source: str | None
    reference_at: dt.datetime | None
    transparent: bool
    collected_at: dt.datetime
    source: str
    # What kind of figure this is (no default: every writer says, so none can forget).
    data_kind: DataKind
    received_amount: Decimal | None = None
    # True when the fee is taken out of the amount sent; None when the source does not say.
    fee_deducted: bool | None = None
    # Figures the upstream published itself (RPW's own margin and total), kept as given.
    fx_margin_reported: Decimal | None = None
    total_cost_reported: Decimal | None = None
    raw_response_id: int | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)
    # When that response was fetched: with its id, its key in the partitioned archive
    # (migration 10). The store looks it up when the writer does not say.
    raw_fetched_at: dt.datetime | None = None
