"""The World Bank's 2025Q3 figures, from a file in the real 2016-2025 format built of the
real survey's corridor averages (tests/fixtures/rpw/README.md says where they come from).

Each corridor's services are written at its published average, so every mean over services
(global, by receiving region) is the real survey's to the rounding of those averages (two
decimals); the receiving regions come from the World Bank classification in force in
2025Q3 (the file's region columns say ".."), Afghanistan and Pakistan in "Middle East,
North Africa, Afghanistan & Pakistan". No database.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rpw_real_format import write_csv

from collector.rpw import read_rpw
from corridors.reference import countries_frame, legal_tender
from metrics.aggregates import receiving_region_averages
from metrics.services import services_in_period
from sendcost.commands.indicators import compute_from_frame

FIXTURE = Path(__file__).parent / "fixtures" / "rpw" / "rpw_2025Q3_corridor_averages.csv"

#: Receiving-region averages of 2025Q3 as RPW Issue 54 (September 2025) publishes them (its
#: key findings and Table 5), read from the report by viji-saravanan/remittance-watch
#: (`docs/research/raw-grounding-workflow-output.json`, commit 8f2ea106): Sub-Saharan Africa
#: 8.46, South Asia 5.30, Middle East, North Africa, Afghanistan & Pakistan 5.11, East Asia &
#: Pacific 5.83, Latin America & Caribbean 5.64, Europe & Central Asia (excluding Russia)
#: 6.80; global average 6.36.
PUBLISHED_REGIONS = {"SSA": 8.46, "SAS": 5.30, "MNA": 5.11, "EAP": 5.83, "LAC": 5.64,
                     "ECA": 6.80}
PUBLISHED_GLOBAL = 6.36
#: Inputs rounded to 2 decimals (±0.005 on any mean of them) against a published figure
#: rounded to 2 decimals (±0.005).
TOLERANCE = 0.01


def _corridors() -> list[dict[str, Any]]:
    with FIXTURE.open() as fh:
        return [{"source": r["source_code"], "destination": r["destination_code"],
                 "services": int(r["services"]), "average": float(r["average"])}
                for r in csv.DictReader(fh)]


def _rows() -> list[dict[str, Any]]:
    """One row per service, in the sheet's columns, priced at its corridor's average."""
    rows: list[dict[str, Any]] = []
    for c in _corridors():
        currency = legal_tender(c["source"], "2025Q3")[0]
        for k in range(c["services"]):
            rows.append({
                "id": 1_212_250_000 + len(rows), "period": "2025_3Q",
                "source_code": c["source"], "source_name": "", "source_region": "..",
                "source_income": "..", "source_G8G20": "..",
                "destination_code": c["destination"], "destination_name": "",
                "destination_region": "..", "destination_income": "..",
                "destination_G8G20": "..", "corridor": c["source"] + c["destination"],
                "firm": f"Firm {k}", "firm_type": "Money Transfer Operator",
                "payment instrument": "Cash", "access point": "Agent",
                "speed actual": "Same day", "pickup method": "Cash", "pickup location": "",
                "receiving network coverage": "High", "transparent": "yes",
                "cc1 lcu code": currency, "cc1 lcu amount": 200.0,
                # fee 2 × average on 200: the fee is the average %, the margin 0
                "cc1 lcu fee": round(c["average"] * 2, 6), "cc1 lcu fx rate": 1.0,
                "cc1 fx margin": 0.0, "cc1 total cost %": c["average"],
                "cc2 lcu code": currency, "inter lcu bank fx": 1.0,
                "Standard Note": "", "date": "20/Aug/2025", "helpers": [None] * 5,
            })
    return rows


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, dict[str, Any]]:
    path = write_csv(tmp_path_factory.mktemp("rpw") / "rpw_2025Q3.csv", _rows())
    read = read_rpw(path)
    assert (read.rows_read, len(read.rejected)) == (6_470, 0)
    doc = compute_from_frame(read.frame, "2025Q3", 200, read.classifications)
    return read.frame, doc


def test_the_file_is_the_real_survey(survey: tuple[pl.DataFrame, dict[str, Any]]) -> None:
    _, doc = survey
    assert len(doc["corridors"]) == 348
    assert doc["services"] == {"total": 6_470, "transparent": 6_470}
    assert doc["global_average"] == pytest.approx(PUBLISHED_GLOBAL, abs=TOLERANCE)


def test_receiving_regions_match_the_published_2025Q3_figures(
        survey: tuple[pl.DataFrame, dict[str, Any]]) -> None:
    _, doc = survey
    got = {region: v["average"] for region, v in doc["by_receiving_region"].items()}
    assert set(got) == set(PUBLISHED_REGIONS)
    for region, published in PUBLISHED_REGIONS.items():
        assert got[region] == pytest.approx(published, abs=TOLERANCE), region
    # Kosovo (KSV in the file) is counted in Europe & Central Asia: no service falls out
    assert sum(v["services"] for v in doc["by_receiving_region"].values()) == 6_470


def test_with_last_years_regions_south_asia_and_mena_would_be_wrong(
        survey: tuple[pl.DataFrame, dict[str, Any]]) -> None:
    """The issue's finding: Afghanistan and Pakistan left in South Asia give 4.88 and 5.95
    (published 5.30 and 5.11): the classification must be the period's."""
    frame, _ = survey
    services = services_in_period(frame.lazy(), period="2025Q3", amount_usd=200)
    old = receiving_region_averages(services, countries_frame("2024Q3").lazy()).collect()
    got = dict(zip(old["region"], old["average"], strict=True))
    assert got["SAS"] == pytest.approx(4.88, abs=TOLERANCE)
    assert got["MNA"] == pytest.approx(5.95, abs=TOLERANCE)
    assert abs(got["SAS"] - PUBLISHED_REGIONS["SAS"]) > 0.4


def test_the_weighted_average_matches_the_published_one_with_the_2021_weights(
        survey: tuple[pl.DataFrame, dict[str, Any]]) -> None:
    """Issue #12 gives 5.04 as the published 2025Q3 Global Weighted Average (5.63 with the
    2011 matrix). Weighed by the 2021 World Bank/KNOMAD matrix it is reproduced; the
    corridors it weighs carry 87.8 % of the volume between the surveyed countries."""
    _, doc = survey
    assert doc["weighted_average"] == pytest.approx(5.04, abs=TOLERANCE)
    coverage = doc["weighted_average_coverage"]
    assert coverage["matrix_year"] == 2021
    assert (coverage["corridors_weighed"], coverage["corridors_with_average"]) == (335, 348)
    assert coverage["volume_share"] == pytest.approx(87.75, abs=0.01)
    assert coverage["status"] == "ok"
