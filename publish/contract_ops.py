"""The contract of the answers that are not data tables: problems, health, the admin actions,
the webhooks' admin API, the bulletins' list, the archive, ``/v1/postal/summary`` and the
OpenAPI document itself. Like ``publish.contract``'s (whose ``Model``, ``encode`` and CSV
twin they share), each is one msgspec model from which its JSON body and its schema in the
OpenAPI document are derived; a field left ``UNSET`` is absent from the body.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from corridors.alerts import DELIVERY_STATES, SCOPES
from metrics.postal import OPERATOR_COLUMNS, SUMMARY_COLUMNS
from publish.contract import Envelope, Model, Num, Pct

# --- problems (RFC 9457) -----------------------------------------------------------------------


class Problem(Model, kw_only=True):
    """Every error's ``application/problem+json`` body (``publish.problems``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | UnsetType = UNSET
    parameter: Annotated[str, Meta(
        description="the request parameter the problem is about")] | UnsetType = UNSET
    corridor: Annotated[str, Meta(
        description="404 of a corridor without quotes: the corridor, FROM-TO")] | UnsetType \
        = UNSET
    jobs: Annotated[list[str], Meta(
        description="409 of admin collect: the jobs already running")] | UnsetType = UNSET


# --- /healthz ----------------------------------------------------------------------------------


class StaleTariff(Model, kw_only=True):
    """A local postal tariff older than ``[collection] postal_tariff_max_age_days``, or one
    that cannot be read (then only its ``source``, ``enabled`` and ``error``)."""

    source: str
    dated: str | UnsetType = UNSET
    age_days: int | UnsetType = UNSET
    max_age_days: float | UnsetType = UNSET
    source_url: str | UnsetType | None = UNSET
    enabled: bool
    error: str | UnsetType = UNSET


class HealthDatabase(Model, kw_only=True):
    reachable: bool
    embedded: bool


class Collection(Model, kw_only=True):
    """The last collection run of a source."""

    source: str
    run_id: int
    status: str
    started_at: str
    finished_at: str | None
    quotes_stored: int | None
    quotes_quarantined: int | None


class Health(Model, kw_only=True):
    """``/healthz`` (200 when ok, 503 when degraded: the same body)."""

    status: Literal["ok", "degraded"]
    reasons: Annotated[list[str], Meta(
        description="why the service is degraded (empty when ok): the database unreachable, "
                    "restarting, or its disk full")]
    stale_tariffs: Annotated[list[StaleTariff], Meta(
        description="postal tariffs (local files) older than "
                    "collection.postal_tariff_max_age_days, or that cannot be read: they do "
                    "not degrade the service")]
    database: HealthDatabase
    collecting: Annotated[bool, Meta(
        description="whether this process collects (false: an API replica, serve "
                    "--no-collect, that only serves)")]
    collections: list[Collection]


# --- the admin actions -------------------------------------------------------------------------


class AdminCollect(Model, kw_only=True):
    """202 of ``POST /v1/admin/collect``."""

    status: Literal["triggered"]
    jobs: Annotated[list[str], Meta(description="the jobs triggered: each runs now")]
    already_running: Annotated[list[str], Meta(
        description="jobs asked for that were not triggered, as a run of each is under way")]
    at: str


class AdminBulletin(Model, kw_only=True):
    """202 of ``POST /v1/admin/bulletin``."""

    status: Literal["published"]
    period: str
    url: Annotated[str, Meta(description="where GET /v1/bulletins/{period}/ serves it")]
    folder: Annotated[str, Meta(
        description="its folder, relative to the service's data folder")]


# --- the webhooks' admin API -------------------------------------------------------------------

Scope = Annotated[str, Meta(extra_json_schema={"enum": list(SCOPES)})]
DeliveryState = Annotated[str, Meta(extra_json_schema={"enum": list(DELIVERY_STATES)})]


class Subscription(Model, kw_only=True):
    """What every answer about a webhook subscription says of it."""

    id: int
    url: str
    scope: Scope
    value: str | None
    created_at: str


class DeliveryCounts(Model, kw_only=True):
    pending: int
    delivered: int
    dead: int


class Webhook(Subscription, kw_only=True):
    """A subscription in ``GET /v1/admin/webhooks``, with its deliveries per state."""

    deliveries: DeliveryCounts


class Webhooks(Model, kw_only=True):
    """``GET /v1/admin/webhooks``."""

    webhooks: list[Webhook]


class Signature(Model, kw_only=True):
    header: str
    algorithm: str
    tolerance_seconds: int


class WebhookCreated(Subscription, kw_only=True):
    """201 of ``POST /v1/admin/webhooks``: the subscription and its secret, shown once."""

    secret: str
    signature: Signature


class Delivery(Model, kw_only=True):
    id: int
    event_id: int
    kind: str
    title: str
    state: DeliveryState
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str


class WebhookDeliveries(Model, kw_only=True):
    """``GET /v1/admin/webhooks/{id}/deliveries``."""

    webhook: int
    deliveries: list[Delivery]


class WebhookRedelivered(Model, kw_only=True):
    """202 of ``POST /v1/admin/webhooks/{id}/redeliver``."""

    webhook: int
    queued: Annotated[int, Meta(description="dead deliveries queued again")]


# --- the bulletins, the archive ----------------------------------------------------------------


class BulletinFiles(Model, kw_only=True):
    html: str
    pdf: str
    markdown: str
    metadata: str
    zip: str


class BulletinItem(Model, kw_only=True):
    """A published bulletin (``publish.bulletin.describe``) and where its files are."""

    period: str
    methodology_version: str
    generated_from: str | None
    progress: str | None
    url: str
    files: BulletinFiles


class Bulletins(Model, kw_only=True):
    """``GET /v1/bulletins``: newest first."""

    bulletins: list[BulletinItem]


class ArchivedResponse(Model, kw_only=True):
    """``GET /v1/archive/{id}``: an archived upstream response's provenance."""

    id: int
    source: str
    url: str
    fetched_at: str
    status: int | None
    content_type: str | None
    content_hash: str
    body_size: int | None
    body_dropped_at: str | None
    body_url: str | None
    licence: str | None
    run_id: int | None


# --- /v1/postal/summary ------------------------------------------------------------------------


class PostalSummaryRow(Model, kw_only=True):
    """A post, corridor and role (sender: the post sells the service; receiver: it pays it
    out) of ``/v1/postal/summary?by=corridor``: ``metrics.postal.SUMMARY_COLUMNS``, those of
    ``sendcost export postal --by corridor`` (checked at import)."""

    period: str
    source_code: str
    destination_code: str
    firm: str
    firm_type: str
    role: Literal["sender", "receiver"]
    post_services: int
    post_total_cost_pct: Pct
    market_services: int
    market_median: Pct
    market_cheapest: Pct
    market_cheapest_firm: str | None
    median_with_post: Pct
    difference_to_median: Num
    difference_to_cheapest: Num
    rank: int | None
    previous_period: str | None
    previous_total_cost_pct: Pct
    previous_market_median: Pct
    previous_difference_to_median: Num
    change_total_cost_pct: Num
    change_difference_to_median: Num
    sources: str | None
    data_kinds: str | None

    csv_columns: ClassVar[tuple[str, ...]] = SUMMARY_COLUMNS


class PostalOperatorRow(Model, kw_only=True):
    """A post and role of ``/v1/postal/summary?by=operator``:
    ``metrics.postal.OPERATOR_COLUMNS``, those of ``sendcost export postal --by operator``
    (checked at import)."""

    period: str
    firm: str
    firm_type: str
    role: Literal["sender", "receiver"]
    corridors: int
    priced_corridors: int
    average_total_cost_pct: Pct
    median_difference_to_median: Num
    at_or_below_median: int
    cheapest_in_corridor: int
    gap_closing: int
    gap_widening: int
    previous_period: str | None
    sources: str | None
    data_kinds: str | None

    csv_columns: ClassVar[tuple[str, ...]] = OPERATOR_COLUMNS


class PostalSummaryHead(Envelope, kw_only=True):
    """What ``/v1/postal/summary`` says before its rows, either way."""

    amount_usd: int
    by: Literal["corridor", "operator"]
    previous_period: str | None
    market: Annotated[str, Meta(
        description="what each post is measured against: its corridors' services that no "
                    "post sells or pays out")]
    count: int
    columns: Annotated[list[str], Meta(description="the rows' keys, in order (the CSV "
                                                   "twin's columns)")]


class PostalSummaryByCorridor(PostalSummaryHead, kw_only=True):
    """``/v1/postal/summary?by=corridor`` (the default); its CSV twin is its rows."""

    by: Literal["corridor"]
    rows: list[PostalSummaryRow]


class PostalSummaryByOperator(PostalSummaryHead, kw_only=True):
    """``/v1/postal/summary?by=operator``; its CSV twin is its rows."""

    by: Literal["operator"]
    rows: list[PostalOperatorRow]


# --- /v1/openapi.json --------------------------------------------------------------------------


class OpenAPI(Model, kw_only=True):
    """``/v1/openapi.json``: the OpenAPI 3.1 document (``publish.openapi.document``)."""

    openapi: Literal["3.1.0"]
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


#: The answers the OpenAPI document takes its schemas from (and the parts they name).
RESPONSES: tuple[type[Model], ...] = (
    Problem, Health, AdminCollect, AdminBulletin, Webhooks, WebhookCreated, WebhookDeliveries,
    WebhookRedelivered, Bulletins, ArchivedResponse, PostalSummaryByCorridor,
    PostalSummaryByOperator, OpenAPI)


def schemas() -> dict[str, Any]:
    """The JSON schemas of ``RESPONSES`` and of every model they hold, by model name, with
    references as the OpenAPI document's components; ``PostalSummary`` is either of its
    two models (``by``)."""
    _, components = msgspec.json.schema_components(
        RESPONSES, ref_template="#/components/schemas/{name}")
    components["PostalSummary"] = {"oneOf": [
        {"$ref": f"#/components/schemas/{m.__name__}"}
        for m in (PostalSummaryByCorridor, PostalSummaryByOperator)]}
    return components


for _row, _columns in ((PostalSummaryRow, SUMMARY_COLUMNS),
                       (PostalOperatorRow, OPERATOR_COLUMNS)):
    if tuple(f.name for f in msgspec.structs.fields(_row)) != _columns:
        raise TypeError(f"contract_ops.{_row.__name__}'s fields are not metrics.postal's "
                        "columns")
