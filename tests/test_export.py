"""Exports: the postal benchmark (CSV, JSON) and the 10.c.1 series as SDMX-CSV."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from corridors.errors import BadPeriod, NoData
from corridors.reference import countries_frame
from metrics.indicators import compute_indicators
from metrics.postal import postal_benchmark
from publish.bulletin import load_rpw
from publish.exports import DIMENSIONS, m49, postal_export, sdmx_csv, sdmx_rows
from sendcost.cli import main


@pytest.fixture(scope="module")
def quotes() -> pl.DataFrame:
    return load_rpw()[0]


def _rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_sdmx_csv_has_the_required_columns(quotes) -> None:
    body = sdmx_csv(sdmx_rows(quotes, start="2013Q4", end="2014Q2"))
    header = body.decode().splitlines()[0].split(",")
    # SDMX-CSV 2.0: STRUCTURE, STRUCTURE_ID, ACTION first; every dimension; OBS_VALUE.
    assert header[:3] == ["STRUCTURE", "STRUCTURE_ID", "ACTION"]
    assert header[3:3 + len(DIMENSIONS)] == list(DIMENSIONS)
    assert header[3 + len(DIMENSIONS)] == "OBS_VALUE"
    rows = _rows(body)
    assert {r["STRUCTURE"] for r in rows} == {"dataflow"}
    assert {r["STRUCTURE_ID"] for r in rows} == {"IAEG-SDGs:DF_SDG_GLH(1.26)"}
    assert all(r[d] for r in rows for d in DIMENSIONS)
    assert {r["TIME_PERIOD"] for r in rows} == {"2013-Q4", "2014-Q1", "2014-Q2"}


def test_sdmx_values_are_the_indicators(quotes) -> None:
    rows = _rows(sdmx_csv(sdmx_rows(quotes, start="2014Q1", end="2014Q2")))
    for period, time in (("2014Q1", "2014-Q1"), ("2014Q2", "2014-Q2")):
        doc = compute_indicators(quotes.lazy(), period=period, amount_usd=200,
                                 countries=countries_frame().lazy(), flows=None)
        world = [r for r in rows if r["REF_AREA"] == "1" and r["TIME_PERIOD"] == time]
        assert len(world) == 1 and world[0]["SERIES"] == "SI_RMT_COST"
        assert float(world[0]["OBS_VALUE"]) == pytest.approx(doc["global_average"], abs=1e-9)
        # by sending country: the mean over that country's transparent services
        services = [c for c in doc["corridors"] if c["source"] == "GBR"]
        assert services
        gbr = [r for r in rows if r["REF_AREA"] == m49("GBR") and r["TIME_PERIOD"] == time]
        assert len(gbr) == 1 and m49("GBR") == "826"
    assert all(r["REF_AREA"].isdigit() for r in rows)


def test_sdmx_corridors_and_bad_ranges(quotes) -> None:
    rows = sdmx_rows(quotes, start="2014Q2", end="2014Q2", corridors=True)
    bc = [r for r in rows if r["SERIES"] == "SI_RMT_COST_BC"]
    doc = compute_indicators(quotes.lazy(), period="2014Q2", amount_usd=200,
                             countries=countries_frame().lazy(), flows=None)
    assert len(bc) == sum(1 for c in doc["corridors"] if c["average"] is not None)
    assert all(r["CUST_BREAKDOWN"].startswith("C") for r in bc)
    with pytest.raises(BadPeriod):
        sdmx_rows(quotes, start="2014Q2", end="2014-06")
    with pytest.raises(BadPeriod):
        sdmx_rows(quotes, start="2014Q2", end="2013Q1")
    with pytest.raises(NoData):
        sdmx_rows(quotes, start="2020Q1", end="2021Q4")


def test_postal_export_agrees_with_the_benchmark(quotes) -> None:
    body_csv, body_json = postal_export(quotes, period="2014Q2")
    expected = postal_benchmark(quotes.lazy(), period="2014Q2", amount_usd=200).collect()
    assert_frame_equal(pl.read_csv(body_csv, schema=expected.schema), expected,
                       check_exact=False, abs_tol=1e-9)
    doc = json.loads(body_json)
    assert doc["period"] == "2014Q2" and len(doc["services"]) == expected.height
    assert {s["firm_type"] for s in doc["services"]} <= {"post_office", "post_office_mto"}
    with pytest.raises(NoData):
        postal_export(quotes, period="2030Q1")


def test_cli_exports(tmp_path, capsys) -> None:
    assert main(["export", "postal", "--period", "2014Q2", "--source", "rpw", "--out",
                 str(tmp_path), "-q"]) == 0
    assert (tmp_path / "postal-2014Q2.csv").is_file()
    assert json.loads((tmp_path / "postal-2014Q2.json").read_text())["period"] == "2014Q2"
    out = tmp_path / "sdg.csv"
    assert main(["export", "sdmx", "--from", "2014Q1", "--to", "2014Q2", "--source", "rpw",
                 "--out", str(out), "-q"]) == 0
    assert out.read_text().startswith("STRUCTURE,STRUCTURE_ID,ACTION,FREQ,")
    assert main(["export", "sdmx", "--from", "2030Q1", "--to", "2030Q2", "--source",
                 "rpw", "-q"]) == 1
    assert "no quotes" in capsys.readouterr().err
