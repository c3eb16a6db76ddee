"""The G20 cross-border payments scorecard for remittances: cost, speed, access and
transparency of a period's services, per corridor and globally (docs/METHODOLOGY.md, "The G20
scorecard").

What quotes show is the supply side: what services offer and what they tell a sender before
paying, not what payments were made. Shares are in percent, over the services (or quotes)
whose attribute is known, with those counts beside each share; null where none is known.

Speed needs the receiving country's business days: ``kpi_send_dates`` lists the (receiving
country, day sent) pairs of a period, the caller answers them with ``corridors.calendar``
(``next_business_days``) and passes the answer in as ``calendar``, so this module stays
pure Polars and its tests can write a calendar by hand.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from corridors.errors import NoData
from corridors.periods import parse_period
from corridors.types import AccessPoint, DataKind, PayIn, PayOut, Speed
from metrics import aggregates as agg
from metrics import corridors as cor
from metrics.services import period_labels, services_in_period

#: SDG 10.c, the G20's remittance cost target: global average below 3 %, no corridor above 5 %.
TARGET_GLOBAL_COST = 3.0
TARGET_CORRIDOR_COST = 5.0
#: The G20 speed target for remittances (end-2027): 75 % within one hour of payment
#: initiation, the rest (so all) within one business day.
TARGET_ONE_HOUR_SHARE = 75.0
TARGET_ONE_BUSINESS_DAY_SHARE = 100.0

#: Delivered within one business day whatever the day sent: within the hour, the same day or
#: the next (business) day.
WITHIN_A_DAY = (Speed.LESS_THAN_ONE_HOUR, Speed.SAME_DAY, Speed.NEXT_DAY)
#: Calendar days to delivery, at the latest, of the categories that are within one business
#: day only when the days after sending are not business days (a Friday, a holiday).
LATEST_DAYS = {Speed.TWO_DAYS: 2, Speed.THREE_TO_FIVE_DAYS: 5}
#: Pay-in without cash (paid from an account, a card or mobile money) ...
DIGITAL_PAY_IN = (PayIn.BANK_ACCOUNT, PayIn.CARD, PayIn.MOBILE_MONEY)
#: ... and not at a counter: a card handed over at an agent is not a digital service.
IN_PERSON_ACCESS = (AccessPoint.AGENT, AccessPoint.BRANCH, AccessPoint.POST_OFFICE_BRANCH)
#: Pay-out into an account, a wallet or a card: nobody has to collect cash.
ACCOUNT_PAY_OUT = (PayOut.BANK_ACCOUNT, PayOut.MOBILE_WALLET, PayOut.CARD)

#: Keys of one scorecard (global, or one corridor's after its source and destination).
SCORECARD_KEYS = (
    "services", "quotes", "providers", "average", "smart", "above_5",
    "services_with_speed", "providers_within_one_hour",
    "share_services_within_one_hour", "share_services_within_one_business_day",
    "quotes_with_speed", "share_quotes_within_one_hour",
    "share_quotes_within_one_business_day", "meets_speed_target",
    "services_with_channels", "share_services_digital",
    "share_quotes_fee_disclosed", "share_quotes_rate_disclosed",
    "share_quotes_total_disclosed", "share_quotes_delivery_time_disclosed",
    "share_quotes_transparent", "share_services_transparent",
)


# --- speed ----------------------------------------------------------------------------------


def within_one_hour() -> pl.Expr:
    """Delivery advertised or observed within one hour; null when the speed is unknown."""
    speed = pl.col("speed").cast(pl.String)
    return pl.when(speed.is_null()).then(None).otherwise(speed == Speed.LESS_THAN_ONE_HOUR)


def within_one_business_day() -> pl.Expr:
    """Delivery within one business day of the receiving country, counted from the day the
    quote was taken (``sent_on``) to the first business day after it (``next_business_day``).

    Same day, next day and within the hour always are; six days or more never; two days and
    three to five days are when their latest day is not after the next business day (sent on
    a Friday, two days arrive by Monday). Without a day sent, those two are counted as not.
    Null when the speed is unknown.
    """
    speed = pl.col("speed").cast(pl.String)
    latest = speed.replace_strict({str(k): v for k, v in LATEST_DAYS.items()}, default=None,
                                  return_dtype=pl.Int64)
    arrives = pl.col("sent_on") + pl.duration(days=latest)
    return (pl.when(speed.is_null()).then(None)
            .when(speed.is_in([str(s) for s in WITHIN_A_DAY])).then(True)
            .when(latest.is_null()).then(False)
            .otherwise((arrives <= pl.col("next_business_day")).fill_null(False)))


# --- access ---------------------------------------------------------------------------------


def digital_pay_in() -> pl.Expr:
    """Paid in without cash and not at a counter; null when the pay-in is unknown."""
    pay_in = pl.col("pay_in").cast(pl.String)
    access = pl.col("access_point").cast(pl.String)
    return (pl.when(pay_in.is_null()).then(None)
            .otherwise(pay_in.is_in([str(p) for p in DIGITAL_PAY_IN])
                       & ~access.is_in([str(a) for a in IN_PERSON_ACCESS]).fill_null(False)))


def account_pay_out() -> pl.Expr:
    """Paid out into an account, a wallet or a card; null when the pay-out is unknown."""
    pay_out = pl.col("pay_out").cast(pl.String)
    return pl.when(pay_out.is_null()).then(None).otherwise(
        pay_out.is_in([str(p) for p in ACCOUNT_PAY_OUT]))


def digital_at_both_ends() -> pl.Expr:
    """Usable fully digitally: digital pay-in and account or wallet pay-out (null when
    either end is unknown). Not Polars' ``&``, which is Kleene's (unknown & false = false):
    a survey that records only the pay-out (RPW before 2016) would then count every cash
    pay-out as known not digital and leave every account pay-out out, a share of 0 % made
    by the selection alone."""
    pay_in, pay_out = digital_pay_in(), account_pay_out()
    return pl.when(pay_in.is_null() | pay_out.is_null()).then(None).otherwise(
        pay_in & pay_out)


# --- transparency ---------------------------------------------------------------------------


def fee_disclosed() -> pl.Expr:
    """The quote states the sender's fee."""
    return pl.col("fee").is_not_null()


def rate_disclosed() -> pl.Expr:
    """The quote states the exchange rate it applies (RPW's "transparent")."""
    return pl.col("transparent").fill_null(False)


def total_disclosed() -> pl.Expr:
    """The quote states what arrives (the received amount), or, in the survey, the total
    cost the World Bank's shoppers were given before paying."""
    # A frame read straight from an RPW file has no kind (corridors.frame): survey rows.
    survey = pl.col("data_kind").cast(pl.String).fill_null(DataKind.SURVEY) == DataKind.SURVEY
    return (pl.col("received_amount").is_not_null()
            | (survey & pl.col("total_cost_reported").is_not_null()))


def delivery_time_disclosed() -> pl.Expr:
    """The quote states when the money will be available."""
    return pl.col("speed").is_not_null()


def transparent_before_payment() -> pl.Expr:
    """Fee, rate, total and delivery time all stated before paying."""
    return fee_disclosed() & rate_disclosed() & total_disclosed() & delivery_time_disclosed()


# --- frames ---------------------------------------------------------------------------------


def _in_period(quotes: pl.LazyFrame, period: str, amount_usd: int) -> pl.LazyFrame:
    return quotes.filter(pl.col("period").cast(pl.String).is_in(period_labels(period)),
                         pl.col("amount_usd") == amount_usd)


def _sent_on() -> pl.Expr:
    return pl.col("collected_at").dt.date().alias("sent_on")


def kpi_send_dates(quotes: pl.LazyFrame, *, period: str, amount_usd: int) -> pl.LazyFrame:
    """The distinct (destination_code, sent_on) pairs of the period's quotes: what the
    calendar must answer (``corridors.calendar.next_business_days``)."""
    return (_in_period(quotes, period, amount_usd)
            .select(pl.col("destination_code").cast(pl.String), _sent_on())
            .unique().drop_nulls().sort("destination_code", "sent_on"))


def kpi_quotes(quotes: pl.LazyFrame, *, period: str, amount_usd: int,
               calendar: pl.LazyFrame) -> pl.LazyFrame:
    """The period's quotes at ``amount_usd``, each with its scorecard flags.

    ``calendar``: destination_code, sent_on, next_business_day. Stale reference rates do not
    matter here (no cost is computed from these rows), so no quote is left out.
    """
    return (_in_period(quotes, period, amount_usd)
            .with_columns(pl.col("source_code", "destination_code", "firm", "service_id")
                          .cast(pl.String), _sent_on())
            .join(calendar.select("destination_code", "sent_on", "next_business_day"),
                  on=["destination_code", "sent_on"], how="left")
            .select("service_id", "source_code", "destination_code", "firm",
                    within_one_hour().alias("within_one_hour"),
                    within_one_business_day().alias("within_one_business_day"),
                    digital_at_both_ends().alias("digital"),
                    fee_disclosed().alias("fee_disclosed"),
                    rate_disclosed().alias("rate_disclosed"),
                    total_disclosed().alias("total_disclosed"),
                    delivery_time_disclosed().alias("delivery_time_disclosed"),
                    transparent_before_payment().alias("transparent"))
            .sort("service_id"))


def kpi_services(flagged: pl.LazyFrame) -> pl.LazyFrame:
    """One row per service: within one hour, within one business day and transparent when
    every one of its quotes in the period was (a promise kept whatever the day sent); digital
    as its channels say (the same on each quote)."""
    return (flagged.group_by("service_id").agg(
                pl.col("source_code", "destination_code", "firm", "digital").first(),
                pl.col("within_one_hour").is_not_null().any().alias("speed_known"),
                pl.col("within_one_hour").drop_nulls().all(),
                pl.col("within_one_business_day").drop_nulls().all(),
                pl.col("transparent").all())
            .with_columns(
                pl.when(pl.col("speed_known")).then(pl.col(c)).alias(c)
                for c in ("within_one_hour", "within_one_business_day"))
            .drop("speed_known")
            .sort("service_id"))


def _share(flag: str) -> pl.Expr:
    """Share in % of the rows where ``flag`` is known that have it; null when none is."""
    known = pl.col(flag).is_not_null()
    return pl.when(known.sum() > 0).then(
        pl.col(flag).cast(pl.Float64).mean() * 100).otherwise(None)


def _service_aggregates() -> list[pl.Expr]:
    return [
        pl.len().alias("services"),
        pl.col("firm").n_unique().alias("providers"),
        pl.col("within_one_hour").is_not_null().sum().alias("services_with_speed"),
        pl.col("firm").filter(pl.col("within_one_hour").fill_null(False)).n_unique()
        .alias("providers_within_one_hour"),
        _share("within_one_hour").alias("share_services_within_one_hour"),
        _share("within_one_business_day").alias("share_services_within_one_business_day"),
        pl.col("digital").is_not_null().sum().alias("services_with_channels"),
        _share("digital").alias("share_services_digital"),
        _share("transparent").alias("share_services_transparent"),
    ]


def _quote_aggregates() -> list[pl.Expr]:
    return [
        pl.len().alias("quotes"),
        pl.col("within_one_hour").is_not_null().sum().alias("quotes_with_speed"),
        _share("within_one_hour").alias("share_quotes_within_one_hour"),
        _share("within_one_business_day").alias("share_quotes_within_one_business_day"),
        *(_share(f).alias(f"share_quotes_{f}") for f in (
            "fee_disclosed", "rate_disclosed", "total_disclosed", "delivery_time_disclosed",
            "transparent")),
    ]


def meets_speed_target() -> pl.Expr:
    """75 % of the quotes within one hour and all within one business day (null when no
    quote's speed is known). Quotes stand in for payments, which sendcost does not see."""
    hour, day = pl.col("share_quotes_within_one_hour"), \
        pl.col("share_quotes_within_one_business_day")
    return pl.when(hour.is_null()).then(None).otherwise(
        (hour >= TARGET_ONE_HOUR_SHARE) & (day >= TARGET_ONE_BUSINESS_DAY_SHARE))


def corridor_scorecards(services: pl.LazyFrame, flagged: pl.LazyFrame) -> pl.LazyFrame:
    """Speed, access and transparency per corridor, sorted by corridor."""
    by = list(cor.CORRIDOR)
    return (services.group_by(by).agg(_service_aggregates())
            .join(flagged.group_by(by).agg(_quote_aggregates()), on=by, how="left")
            .with_columns(meets_speed_target().alias("meets_speed_target"))
            .sort(by))


def global_scorecard(services: pl.LazyFrame, flagged: pl.LazyFrame) -> pl.LazyFrame:
    """Speed, access and transparency over every service and quote of the period (one row)."""
    return (pl.concat([services.select(_service_aggregates()),
                       flagged.select(_quote_aggregates())], how="horizontal")
            .with_columns(meets_speed_target().alias("meets_speed_target")))


def compute_kpis(quotes: pl.LazyFrame, *, period: str, amount_usd: int,
                 calendar: pl.LazyFrame) -> dict[str, Any]:
    """The scorecard of ``period`` at ``amount_usd``: ``global`` and ``corridors`` (each with
    the SCORECARD_KEYS), and the targets measured against. Cost is as in the indicators
    (transparent services, stale references left out). Raises NoData for an empty period."""
    canonical = str(parse_period(period))
    flagged = kpi_quotes(quotes, period=canonical, amount_usd=amount_usd,
                         calendar=calendar).collect().lazy()
    costed = services_in_period(quotes, period=canonical, amount_usd=amount_usd)
    services = kpi_services(flagged)
    plans = {
        "corridors": corridor_scorecards(services, flagged),
        "global": global_scorecard(services, flagged),
        "averages": cor.corridor_flags(cor.corridor_average(costed)),
        "smart": cor.smart(costed),
        "global_average": agg.global_average(costed),
    }
    done = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))
    if done["global"].item(0, "quotes") == 0:
        raise NoData(f"no quotes for period {canonical} at USD {amount_usd}")
    smart = done["smart"]
    global_smart = smart["smart"].mean() if smart.height else None
    corridors = (done["corridors"]
                 .join(done["averages"].select(*cor.CORRIDOR, "average", "above_5"),
                       on=list(cor.CORRIDOR), how="left")
                 .join(smart.select(*cor.CORRIDOR, "smart"), on=list(cor.CORRIDOR), how="left")
                 .sort(*cor.CORRIDOR))
    g = done["global"].row(0, named=True)
    averages = done["averages"]
    g.update(average=done["global_average"].item(0, "average")
             if done["global_average"].height else None,
             smart=global_smart,
             above_5=averages["above_5"].any() if averages["above_5"].count() else None)
    return {
        "period": canonical,
        "amount_usd": amount_usd,
        "targets": TARGETS,
        "global": {k: g[k] for k in SCORECARD_KEYS},
        "corridors": [{"source": r["source_code"], "destination": r["destination_code"],
                       **{k: r[k] for k in SCORECARD_KEYS}}
                      for r in corridors.iter_rows(named=True)],
    }


#: The targets of the scorecard, as the document states them.
TARGETS = {
    "cost_global_average_below": TARGET_GLOBAL_COST,
    "cost_no_corridor_above": TARGET_CORRIDOR_COST,
    "speed_share_within_one_hour": TARGET_ONE_HOUR_SHARE,
    "speed_share_within_one_business_day": TARGET_ONE_BUSINESS_DAY_SHARE,
    "cost_target_year": 2030,
    "speed_target_year": 2027,
}

#: Columns of ``scorecard_table`` (the CSV twin), in order.
TABLE_COLUMNS = ("period", "amount_usd", "source", "destination", *SCORECARD_KEYS)


def scorecard_table(doc: dict[str, Any]) -> pl.DataFrame:
    """The document's corridors as one flat row each (the CSV twin)."""
    rows = [{"period": doc["period"], "amount_usd": doc["amount_usd"], **c}
            for c in doc["corridors"]]
    schema: dict[str, pl.DataType] = {
        "period": pl.String(), "amount_usd": pl.Int32(), "source": pl.String(),
        "destination": pl.String()}
    for key in SCORECARD_KEYS:
        if key.startswith("share_") or key in ("average", "smart"):
            schema[key] = pl.Float64()
        elif key in ("above_5", "meets_speed_target"):
            schema[key] = pl.Boolean()
        else:
            schema[key] = pl.Int64()
    return pl.DataFrame(rows, schema=schema, orient="row")
