"""Cost indicators of remittance services, in pure Polars (see /docs/indicators.md).

Quotes in (the ``corridors.frame`` quote frame), indicators out: no I/O, no clock, no
asyncio. One function per indicator of METHODOLOGY.md, named as there.
"""

from __future__ import annotations

from metrics.aggregates import (
    firm_type_averages,
    g8_sending_average,
    g20_receiving_average,
    g20_sending_average,
    global_average,
    receiving_region_averages,
    share_services_below,
)
from metrics.corridors import (
    cheapest_service,
    corridor_average,
    corridor_flags,
    global_smart,
    matrix_for_period,
    share_corridors_above,
    smart,
    weighted_global_average,
)
from metrics.cost import exact_cost_pct, fee_pct, fx_margin_pct, total_cost_pct
from metrics.indicators import (
    compute_indicators,
    corridor_table,
    indicators_from_services,
)
from metrics.instruments import (
    access_point_averages,
    pay_out_averages,
    payment_instrument_averages,
)
from metrics.services import services_from_rollups, services_in_period
from metrics.version import METHODOLOGY_VERSION

__all__ = [
    "METHODOLOGY_VERSION",
    "access_point_averages",
    "cheapest_service",
    "compute_indicators",
    "corridor_average",
    "corridor_flags",
    "corridor_table",
    "exact_cost_pct",
    "fee_pct",
    "firm_type_averages",
    "fx_margin_pct",
    "g8_sending_average",
    "g20_receiving_average",
    "g20_sending_average",
    "global_average",
    "global_smart",
    "indicators_from_services",
    "matrix_for_period",
    "pay_out_averages",
    "payment_instrument_averages",
    "receiving_region_averages",
    "services_from_rollups",
    "services_in_period",
    "share_corridors_above",
    "share_services_below",
    "smart",
    "total_cost_pct",
    "weighted_global_average",
]
