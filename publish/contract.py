"""The API's contract: one typed model (a msgspec ``Struct``) per response, from which its
JSON body (``encode``), its CSV twin's columns and rows (``to_csv``) and its schema in the
OpenAPI document (``schemas``) are all derived, so that a key cannot be added to one and
forgotten in the others.

A model's fields are in the order its JSON body gives them; ``None`` is null, and a field
left ``UNSET`` is absent (the envelope's ``warning`` and ``includes``, present only when the
answer includes emulated data). The models are filled by the handlers
(``publish.api.<resource>``) and encoded as they are: nothing is validated or converted on
the way out (a number stays the int or float it was), which keeps encoding as fast as the
hand-written dicts were.

A model with a CSV twin lists its columns in ``csv_columns`` (their order is the CSV's, which
is older than the models and not the JSON's). Each column is a field of the model, or
``<field>_<subfield>`` of a nested model field (``cheapest_provider``); a nested model in
one column is written as its ``csv_key`` (a country as its alpha-3 code), a list as its items
separated by spaces, a mapping as ``key:value`` pairs separated by spaces (caveat counts), a
boolean as ``true``/``false``, null as an empty cell. A twin whose rows say their answer's
period and price point first (``/v1/indicators``, ``/v1/kpis``) names those in
``csv_answer_columns``, read from the answer ``to_csv`` is given. Columns that name no field
fail at import (``check_csv_columns``; ``CSV_TWINS`` pairs each item model with its answer).

The answers that are not data tables (problems, health, admin, webhooks, bulletins, the
archive, the postal summary, the OpenAPI document) are ``publish.contract_ops``' models, built
on this module's ``Model`` the same way.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, ClassVar, Literal, cast

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from corridors.types import EMULATED_WARNING, DataKind, FirmType
from metrics.kpis import SCORECARD_KEYS


class Model(Struct, kw_only=True, forbid_unknown_fields=True):
    """A part of a response. ``forbid_unknown_fields`` makes its schema closed
    (``additionalProperties: false``), as the contract is."""

    #: The columns of the CSV twin (models with one).
    csv_columns: ClassVar[tuple[str, ...]] = ()
    #: The CSV twin's first columns, taken from the answer that holds the items (the same on
    #: every row: a period's corridors say their period and price point).
    csv_answer_columns: ClassVar[tuple[str, ...]] = ()
    #: The field that stands for this model in one CSV cell (a country: its alpha-3 code).
    csv_key: ClassVar[str | None] = None


class Country(Model, kw_only=True):
    alpha2: str | None
    alpha3: str
    name: str | None
    csv_key: ClassVar[str | None] = "alpha3"


class Source(Model, kw_only=True):
    name: str
    title: str
    url: str | None
    licence: str | None


class Pair(Model, kw_only=True):
    """A corridor's two countries, as an item about one starts."""

    from_: Country = field(name="from")
    to: Country


class Codes(Pair, kw_only=True):
    """A corridor's countries, then their alpha-3 codes (as ``metrics`` names them)."""

    source: str
    destination: str


class Envelope(Model, kw_only=True):
    """The keys every JSON answer starts with (filled by ``publish.api.conventions.header``)."""

    warning: Annotated[str, Meta(description=f"present only with include=emulated: "
                                             f"{EMULATED_WARNING!r}")] | UnsetType = UNSET
    includes: list[Literal["emulated"]] | UnsetType = UNSET
    period: str | None
    methodology_version: str
    sources: list[Source]
    licence: str


class PairAnswer(Envelope, kw_only=True):
    """An answer about one corridor: the envelope, then its two countries."""

    from_: Country = field(name="from")
    to: Country


FirmTypeName = Annotated[str, Meta(extra_json_schema={"enum": [f.value for f in FirmType]})]
DataKindName = Annotated[str, Meta(extra_json_schema={"enum": [k.value for k in DataKind]})]
Num = float | None
Pct = Annotated[float | None, Meta(description="percent")]


class Cheapest(Model, kw_only=True):
    provider: str
    firm_type: str | None
    product: str | None
    total_cost_pct: float | None


LeavesOut = Annotated[list[str], Meta(
    description="flags that keep a service from being named the corridor's cheapest (it "
                "keeps its rank, marked)")]
Caveats = Annotated[dict[str, int], Meta(
    description="per caveat flag, how many of the corridor's services carry it (estimate, "
                "negative_margin, negative_total_cost, bank_transfer_only, reference_stale, "
                "approximate_amount…); the averages keep them")]


class CorridorSummary(Model, kw_only=True):
    """How a corridor is summed up everywhere (``publish.api.summaries.corridor_summary``)."""

    average: Pct
    smart: Pct
    median: Pct
    services: int
    transparent_services: int
    above_5: bool | None
    above_10: bool | None
    too_few_services: bool | None
    no_transparent_service: bool | None
    points_above_3: Num
    points_above_5: Num
    cheapest: Cheapest | None
    cheapest_leaves_out: LeavesOut
    caveats: Caveats


class Service(Model, kw_only=True):
    """One service's quote at one amount (``publish.data``'s service entries)."""

    provider: str
    firm_type: FirmTypeName
    product: str | None
    service_id: str
    fee: Num
    fee_currency: str
    applied_rate: Num
    reference_rate: Num
    reference_rate_source: str | None
    reference_rate_at: str | None
    fee_pct: Pct
    fx_margin_pct: Pct
    total_cost_pct: Pct
    amount_received: Num
    amount_received_basis: Literal["reported", "fee_deducted", "fee_on_top", None]
    fee_paid_on_top: bool | None
    amount_received_if_fee_on_top: Num
    amount_received_if_fee_deducted: Num
    receive_currency: str | None
    speed: str | None
    pay_in: str | None
    pay_out: str | None
    access_point: str | None
    transparent: bool
    collected_at: str | None
    source: str
    data_kind: DataKindName
    flags: Annotated[list[str], Meta(
        description="caveats a reader must see (see the answer's flags_explained)")]
    effective_cost_pct: Annotated[float | None, Meta(
        description="100 × (1 − amount received / (amount paid × reference rate)): the cost "
                    "the ranking by what arrives per unit paid orders by")]
    rank: int | None
    receive_currency_basis: Literal["reported", "reference_rate", "rpw_note", None]
    receive_currency_note: str | None

    csv_columns: ClassVar[tuple[str, ...]] = (
        "rank", "provider", "firm_type", "product", "fee", "fee_currency", "applied_rate",
        "reference_rate", "reference_rate_source", "reference_rate_at", "fee_pct",
        "fx_margin_pct", "total_cost_pct", "effective_cost_pct", "amount_received",
        "amount_received_basis", "fee_paid_on_top", "amount_received_if_fee_on_top",
        "amount_received_if_fee_deducted", "receive_currency", "receive_currency_basis",
        "receive_currency_note", "speed", "pay_in", "pay_out", "access_point", "transparent",
        "collected_at", "source", "service_id", "data_kind", "flags",
    )


class Filters(Model, kw_only=True):
    payin: str | None
    payout: str | None
    note: str | None


RankedBy = Annotated[str, Meta(extra_json_schema={
    "enum": ["amount_received_per_amount_paid", "total_cost_pct"]})]


class Compare(PairAnswer, kw_only=True):
    """``/v1/compare``; its CSV twin is its services (``Service``), then those apart."""

    amount: float
    currency: str
    send_currency: str
    priced_amount: float
    priced_send_amount: float
    priced_amount_usd: int
    approximate: bool
    approximation: str | None
    priced_amounts: list[float]
    filters: Filters
    corridor: CorridorSummary
    ranked_by: RankedBy
    flags_explained: dict[str, str]
    services: list[Service]
    non_transparent: list[Service]


class Region(Model, kw_only=True):
    code: str
    name: str | None
    csv_key: ClassVar[str | None] = "code"


class CorridorItem(Pair, kw_only=True):
    """A corridor in ``/v1/corridors``: its latest row at the price point."""

    period: str
    amount_usd: int
    first_collected: str | None
    last_collected: str | None
    data_kinds: list[DataKindName]
    average: Pct
    smart: Pct
    median: Pct
    services: int
    transparent_services: int
    above_5: bool | None
    above_10: bool | None
    too_few_services: bool | None
    no_transparent_service: bool | None
    points_above_3: Num
    points_above_5: Num
    cheapest: Cheapest | None
    cheapest_leaves_out: LeavesOut
    caveats: Caveats
    receiving_region: Region | None
    sources: list[str]

    csv_columns: ClassVar[tuple[str, ...]] = (
        "from", "to", "period", "first_collected", "last_collected", "data_kinds",
        "amount_usd", "average", "smart", "median", "services", "transparent_services",
        "above_5", "above_10", "too_few_services", "no_transparent_service", "points_above_3",
        "points_above_5", "receiving_region", "cheapest_provider", "cheapest_total_cost_pct",
        "caveats",
    )


class Corridors(Envelope, kw_only=True):
    """``/v1/corridors``; its CSV twin is its corridors (``CorridorItem``)."""

    amount_usd: int
    periods: Annotated[dict[str, int], Meta(
        description="rows per period, over every page (period is null when they differ)")]
    count: int
    next_cursor: str | None
    caveats_explained: Annotated[dict[str, str], Meta(
        description="what each caveat of this page's rows means")]
    corridors: list[CorridorItem]


class Links(Model, kw_only=True):
    history: str
    compare: str


class Corridor(PairAnswer, kw_only=True):
    """``/v1/corridors/{pair}``; its CSV twin is its services (``Service``)."""

    amount_usd: int
    send_amount: float
    send_currency: str
    periods: list[str]
    indicators: CorridorSummary
    ranked_by: RankedBy
    services: list[Service]
    non_transparent: list[Service]
    links: Links


class HistoryItem(Model, kw_only=True):
    """A period of ``/v1/corridors/{pair}/history``."""

    period: str
    amount_usd: int
    first_collected: str | None
    last_collected: str | None
    data_kinds: list[DataKindName]
    average: Pct
    smart: Pct
    median: Pct
    services: int
    transparent_services: int
    above_5: bool | None
    above_10: bool | None
    too_few_services: bool | None
    no_transparent_service: bool | None
    caveats: Caveats
    points_above_5: Num
    sources: list[str]

    csv_columns: ClassVar[tuple[str, ...]] = (
        "period", "amount_usd", "first_collected", "last_collected", "data_kinds", "average",
        "smart", "median", "services", "transparent_services", "above_5", "above_10",
        "too_few_services", "no_transparent_service", "caveats",
    )


class History(PairAnswer, kw_only=True):
    """``/v1/corridors/{pair}/history``; its CSV twin is its periods (``HistoryItem``)."""

    amount_usd: int
    next_cursor: str | None
    history: list[HistoryItem]


class Average(Model, kw_only=True):
    average: Pct
    services: int


class ShareDenominator(Model, kw_only=True):
    of: str
    count: int | None


class ServiceCount(Model, kw_only=True):
    total: int
    transparent: int


class IndicatorsCorridor(Codes, kw_only=True):
    """A corridor of ``/v1/indicators``; the CSV twin's rows (after the answer's period and
    price point), those of ``metrics.indicators.corridor_table`` with its cheapest service
    named as everywhere (``cheapest_provider``, ``cheapest_total_cost_pct``)."""

    average: Pct
    services: int
    transparent_services: int
    smart: Pct
    above_5: bool | None
    above_10: bool | None
    too_few_services: bool
    no_transparent_service: bool
    cheapest: Cheapest | None
    cheapest_left_out: Annotated[int, Meta(
        description="transparent services the cheapest rule left out (cheapest_leaves_out)")]
    data_kinds: Annotated[list[DataKindName], Meta(
        description="what kinds of data the corridor's figures rest on")]

    csv_answer_columns: ClassVar[tuple[str, ...]] = ("period", "amount_usd")
    csv_columns: ClassVar[tuple[str, ...]] = (
        "source", "destination", "average", "services", "transparent_services", "smart",
        "above_5", "above_10", "too_few_services", "no_transparent_service",
        "cheapest_provider", "cheapest_firm_type", "cheapest_product",
        "cheapest_total_cost_pct", "cheapest_left_out",
    )


class NonTransparent(Codes, kw_only=True):
    provider: str
    fee_pct: Pct


class WeightCoverage(Model, kw_only=True):
    matrix_year: int | None
    corridors_weighed: int
    corridors_with_average: int
    corridor_share: Num
    flow_usd_m: Num
    flow_between_countries_usd_m: Num
    volume_share: Num
    volume_share_min: Num
    matrix_flow_usd_m: Num
    status: Literal["ok", "insufficient weights"]


class Indicators(Envelope, kw_only=True):
    """``/v1/indicators``: a period's SDG 10.c figures (``metrics.indicators``' document).
    Its CSV twin is its corridors (``IndicatorsCorridor``)."""

    amount_usd: int
    data_kinds: Annotated[list[DataKindName], Meta(
        description="what kinds of data the figures rest on (survey, observed, estimate, "
                    "published_tariff; emulated only with include=emulated)")]
    services: ServiceCount
    global_average: Pct
    weighted_average: Pct
    smart_average: Pct
    g20_sending_average: Pct
    g8_sending_average: Pct
    g20_receiving_average: Pct
    by_firm_type: dict[str, Average]
    by_receiving_region: dict[str, Average]
    share_corridors_above_5: Pct
    share_corridors_above_10: Pct
    share_services_below_3: Pct
    share_denominators: Annotated[dict[str, ShareDenominator], Meta(
        description="what each share is a share of, and how many")]
    corridors: list[IndicatorsCorridor]
    cheapest_leaves_out: LeavesOut
    non_transparent: Annotated[list[NonTransparent], Meta(
        description="services that do not disclose their exchange rate (not averaged): "
                    "their fee as a percentage of the amount")]
    weighted_average_coverage: Annotated[WeightCoverage | None, Meta(
        description="what the weighted average could weigh: the World Bank/KNOMAD bilateral "
                    "remittance matrix nearest the period, the corridors it weighed of those "
                    "with an average, and the volume weighed (USD millions, and % of the "
                    "matrix's volume between the period's sending and receiving countries); "
                    "'insufficient weights' (and a null weighted_average) below "
                    "volume_share_min (config.toml [indicators]); null without a matrix")]
    by_payment_instrument: Annotated[dict[str, Average], Meta(
        description="average over transparent services by the instrument that funds the "
                    "transfer")]
    by_access_point: Annotated[dict[str, Average], Meta(
        description="average over transparent services by where the transfer is sent from")]
    by_pay_out: Annotated[dict[str, Average], Meta(
        description="average over transparent services by the instrument that pays the "
                    "transfer out to the receiver")]


class PostalService(Pair, kw_only=True):
    """A post-office service of ``/v1/postal/benchmark`` beside its corridor's market."""

    provider: str
    firm_type: str
    product: str | None
    service_id: str
    transparent: bool
    total_cost_pct: Pct
    rank: int | None
    ranked_services: int
    corridor_median: Pct
    corridor_average: Pct
    smart: Pct
    points_above_median: Num
    cheapest: Cheapest | None

    csv_columns: ClassVar[tuple[str, ...]] = (
        "from", "to", "provider", "firm_type", "product", "transparent", "total_cost_pct",
        "rank", "ranked_services", "corridor_median", "corridor_average", "smart",
        "points_above_median", "cheapest_provider", "cheapest_total_cost_pct", "service_id",
    )


class PostalBenchmark(Envelope, kw_only=True):
    """``/v1/postal/benchmark``; its CSV twin is its services (``PostalService``)."""

    amount_usd: int
    count: int
    next_cursor: str | None
    services: list[PostalService]


Share = Annotated[float | None, Meta(
    description="percent of the services or quotes whose attribute is known; null when none "
                "is")]


class Scorecard(Model, kw_only=True):
    """One scorecard of the G20 remittance targets (docs/METHODOLOGY.md): shares in percent
    over the services or quotes whose attribute is known, null when none is. Its fields are
    ``metrics.kpis.SCORECARD_KEYS``, in that order (checked at import)."""

    services: int
    quotes: int
    providers: int
    average: Pct
    smart: Pct
    above_5: bool | None
    services_with_speed: int
    providers_within_one_hour: int
    share_services_within_one_hour: Share
    share_services_within_one_business_day: Share
    quotes_with_speed: int
    share_quotes_within_one_hour: Share
    share_quotes_within_one_business_day: Share
    meets_speed_target: bool | None
    services_with_channels: int
    share_services_digital: Share
    share_quotes_fee_disclosed: Share
    share_quotes_rate_disclosed: Share
    share_quotes_total_disclosed: Share
    share_quotes_delivery_time_disclosed: Share
    share_quotes_transparent: Share
    share_services_transparent: Share


#: A corridor's scorecard: the corridor, then the ``Scorecard``'s fields (made from them, so
#: that the two cannot drift apart). Its CSV twin's rows are ``metrics.kpis.scorecard_table``'s
#: (after the answer's period and price point).
KpisCorridor = cast(type[Codes], msgspec.defstruct(
    "KpisCorridor", [(f.name, f.type) for f in msgspec.structs.fields(Scorecard)],
    bases=(Codes,), kw_only=True, module=__name__,
    namespace={"csv_answer_columns": ("period", "amount_usd"),
               "csv_columns": ("source", "destination", *SCORECARD_KEYS)}))


class Targets(Model, kw_only=True):
    cost_global_average_below: float
    cost_no_corridor_above: float
    speed_share_within_one_hour: float
    speed_share_within_one_business_day: float
    cost_target_year: int
    speed_target_year: int


class Kpis(Envelope, kw_only=True):
    """``/v1/kpis``: the G20 scorecard of a period, globally and per corridor. Its CSV twin
    is its corridors (``KpisCorridor``)."""

    amount_usd: int
    scope: Annotated[str, Meta(description="what the scorecard measures: the supply (services "
                                           "and quotes), not payments")]
    targets: Targets
    weekends_only: Annotated[list[str], Meta(
        description="receiving countries whose business days were counted without public "
                    "holidays (none known)")]
    global_: Scorecard = field(name="global")
    corridors: list[KpisCorridor]  # type: ignore[valid-type]


#: The responses the OpenAPI document takes its schemas from (and the parts they name).
RESPONSES: tuple[type[Model], ...] = (Compare, Corridors, Corridor, History, Indicators,
                                      PostalBenchmark, Kpis)


def encode(model: Model) -> bytes:
    """A response's JSON body: UTF-8, no spaces, keys in the model's order."""
    return _ENCODER.encode(model)


def encode_value(value: Any) -> bytes:
    """Any part of a response (a list of models) as ``encode`` writes it within the
    response: the same encoder, so the bytes can be spliced in (``msgspec.Raw``)."""
    return _ENCODER.encode(value)


_ENCODER = msgspec.json.Encoder()


def schemas() -> dict[str, Any]:
    """The JSON schemas of ``RESPONSES`` and of every model they hold, by model name, with
    references as the OpenAPI document's components (``#/components/schemas/<name>``)."""
    _, components = msgspec.json.schema_components(
        RESPONSES, ref_template="#/components/schemas/{name}")
    return components


# --- the CSV twin ------------------------------------------------------------------------------

Getter = Callable[[Any], Any]


def _struct_of(tp: msgspec.inspect.Type) -> type[Model] | None:
    """The model class of a field's type (through Optional and Annotated), else None."""
    if isinstance(tp, msgspec.inspect.Metadata):
        tp = tp.type
    if isinstance(tp, msgspec.inspect.UnionType):
        found = [t for t in tp.types if not isinstance(t, msgspec.inspect.NoneType)]
        tp = found[0] if len(found) == 1 else tp
    if isinstance(tp, msgspec.inspect.StructType) and issubclass(tp.cls, Model):
        return tp.cls
    return None


def _field(name: str) -> Getter:
    def get(item: Any) -> Any:
        return getattr(item, name)
    return get


def _nested(name: str, sub: str) -> Getter:
    def get(item: Any) -> Any:
        value = getattr(item, name)
        return None if value is None else getattr(value, sub)
    return get


@functools.cache
def _fields(cls: type[Model]) -> dict[str, msgspec.inspect.Field]:
    """A model's fields by JSON name (kept: inspecting a large answer takes milliseconds)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: f for f in info.fields}


def _getter(cls: type[Model], column: str) -> Getter:
    fields = _fields(cls)
    if column in fields:
        f = fields[column]
        nested = _struct_of(f.type)
        if nested is None:
            return _field(f.name)
        if nested.csv_key is None:
            raise TypeError(f"{cls.__name__}.csv_columns: {column} is a {nested.__name__}, "
                            "which has no csv_key to stand for it in one cell")
        return _nested(f.name, nested.csv_key)
    for f in fields.values():
        nested = _struct_of(f.type)
        prefix = f.encode_name + "_"
        if nested is not None and column.startswith(prefix):
            sub = _fields(nested).get(column.removeprefix(prefix))
            if sub is not None:
                return _nested(f.name, sub.name)
    raise TypeError(f"{cls.__name__}.csv_columns: {column!r} is neither a field of the model "
                    "nor <field>_<subfield> of a nested one")


_GETTERS: dict[type[Model], list[Getter]] = {}


def check_csv_columns(cls: type[Model]) -> list[Getter]:
    """How each of ``cls.csv_columns`` is read from an item (TypeError for a column that
    names no field)."""
    getters = _GETTERS.get(cls)
    if getters is None:
        getters = _GETTERS[cls] = [_getter(cls, c) for c in cls.csv_columns]
    return getters


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):  # counts by flag, as the corridor table writes them
        return " ".join(f"{k}:{v}" for k, v in value.items())
    return value


def to_csv(cls: type[Model], items: Iterable[Model], answer: Model | None = None) -> bytes:
    """The CSV twin of a list of ``cls``: a header of ``cls.csv_answer_columns`` and
    ``cls.csv_columns``, one row an item; the first columns are ``answer``'s (the answer that
    holds the items), when ``cls`` has such columns."""
    getters = check_csv_columns(cls)
    first = [_cell(getattr(answer, _fields(type(answer))[c].name)) for c in
             cls.csv_answer_columns] if answer is not None else []
    if len(first) != len(cls.csv_answer_columns):
        raise TypeError(f"{cls.__name__}'s CSV twin starts with its answer's "
                        f"{', '.join(cls.csv_answer_columns)}: give the answer")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow((*cls.csv_answer_columns, *cls.csv_columns))
    for item in items:
        writer.writerow([*first, *(_cell(g(item)) for g in getters)])
    return buf.getvalue().encode()


#: Each model with a CSV twin, and the answer that holds its items.
CSV_TWINS: dict[type[Model], type[Model]] = {
    Service: Compare, CorridorItem: Corridors, HistoryItem: History,
    IndicatorsCorridor: Indicators, PostalService: PostalBenchmark,
    KpisCorridor: Kpis}


def csv_models() -> Sequence[type[Model]]:
    return list(CSV_TWINS)


for _model, _answer in CSV_TWINS.items():
    check_csv_columns(_model)
    for _column in _model.csv_answer_columns:
        if _column not in _fields(_answer):
            raise TypeError(f"{_model.__name__}.csv_answer_columns: {_column!r} is not a "
                            f"field of {_answer.__name__}")
if tuple(f.name for f in msgspec.structs.fields(Scorecard)) != SCORECARD_KEYS:
    raise TypeError("contract.Scorecard's fields are not metrics.kpis.SCORECARD_KEYS")
