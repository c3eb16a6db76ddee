"""The 2016-2025 RPW workbook in its real format: every label read, no row lost for one.

The files are built here (tests/rpw_real_format.py) with every label and quirk of the World
Bank's sheet "Dataset (from Q2 2016)"; the expected figures are computed from the rows
written, by the World Bank's definition (the mean of the published ``cc1 total cost %``
over a corridor's transparent services).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest
from rpw_real_format import (
    LABELS,
    SHEET_NEW,
    SHEET_OLD,
    expected_corridor_averages,
    new_sheet_rows,
    write_csv,
    write_workbook,
)

from corridors.reading.rpw import read_rpw
from corridors.reference import classification_for, countries_frame
from metrics import compute_indicators

DATA = Path(__file__).resolve().parent.parent / "corridors" / "data"


def _old_rows(lines: int) -> list[list[str]]:
    import csv

    with gzip.open(DATA / "rpw_quotes_2011Q1_2014Q2.csv.gz", "rt", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return [next(reader) for _ in range(lines)]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    return new_sheet_rows()


@pytest.fixture(scope="module")
def workbook(tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, object]]
             ) -> Path:
    path = tmp_path_factory.mktemp("rpw") / "rpw_dataset_2011_2025_q3.xlsx"
    return write_workbook(path, rows, old_rows=_old_rows(30))


def test_every_label_of_the_real_sheet_is_read_and_no_row_is_dropped(
        workbook: Path, rows: list[dict[str, object]]) -> None:
    read = read_rpw(workbook)
    assert read.rows_read == len(rows) + 29
    assert read.rejected == []
    assert read.rows_kept == read.rows_read
    # Every label of LABELS.md is known but RPW's "Lower income", which could be low or
    # lower-middle income: reported, and the bundled income group stands.
    assert read.unknown_labels == {"destination_income": {"Lower income": 24}}
    new = read.frame.filter(pl.col("period").is_in(["2016Q2", "2025Q3"]))
    assert new.select(pl.col("service_id").n_unique()).item() == len(rows)
    # The combined labels are kept as sets, verbatim.
    labels = read.labels.filter(pl.col("service_id").str.starts_with("rpw:2025Q3"))
    sets = {tuple(v) for v in labels["payment instrument"].to_list()}
    assert ("Bank account transfer", "Debit/credit card") in sets
    assert ("Agent",) in {tuple(v) for v in labels["pickup location"].drop_nulls().to_list()}
    assert set(new["pay_in"].drop_nulls()) == {"cash", "bank_account", "card", "mobile_money"}
    assert new["speed"].null_count() == 0
    assert new["pay_out"].null_count() == 0
    assert new["access_point"].null_count() == 0
    assert "other" not in set(new["firm_type"])
    # Text dates and real date-times are both read.
    assert new["collected_at"].null_count() == 0
    assert set(new["collected_at"].dt.date().cast(pl.String)) == {
        "2016-05-18", "2025-08-20", "2025-08-23"}


def test_csv_form_reads_as_the_workbook(tmp_path: Path, workbook: Path,
                                        rows: list[dict[str, object]]) -> None:
    from_csv = read_rpw(write_csv(tmp_path / "from_q2_2016.csv", rows))
    assert from_csv.rejected == []
    assert from_csv.unknown_labels == {"destination_income": {"Lower income": 24}}
    assert from_csv.helper_columns  # the five header-less columns, ignored
    book = read_rpw(workbook).frame.filter(pl.col("period").is_in(["2016Q2", "2025Q3"]))
    key = ["service_id", "amount_usd"]
    assert from_csv.frame.sort(key).equals(book.sort(key))


@pytest.mark.parametrize("period", ["2016_2Q", "2025_3Q"])
def test_corridor_averages_are_the_mean_of_the_published_totals(
        workbook: Path, rows: list[dict[str, object]], period: str) -> None:
    read = read_rpw(workbook)
    doc = compute_indicators(read.frame.lazy(), period=period, amount_usd=200,
                             countries=classification_for(period, read.classifications).lazy(),
                             flows=None)
    ours = {(doc["period"], c["source"], c["destination"]): c["average"]
            for c in doc["corridors"]}
    want = {k: v for k, v in expected_corridor_averages(rows).items() if k[0] == doc["period"]}
    assert len(want) == 6
    assert ours.keys() == want.keys()
    for key, value in want.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_regions_follow_the_period(workbook: Path, rows: list[dict[str, object]]) -> None:
    read = read_rpw(workbook)
    cls = read.classifications
    # The file's own columns: Pakistan in South Asia in 2016, in the enlarged MNA in 2025.
    assert cls.filter(pl.col("alpha3") == "PAK").select("period", "region").rows() == [
        ("2016Q2", "SAS"), ("2025Q3", "MNA")]
    # Kosovo, written KSV, is one country (XKX) and in its region's average.
    assert cls.filter(pl.col("alpha3") == "XKX")["region"].to_list() == ["ECA", "ECA"]
    # "..", "Lower income" and a missing G8/G20 leave the bundled value.
    nga = cls.filter((pl.col("alpha3") == "NGA") & (pl.col("period") == "2025Q3"))
    assert nga.select("region", "income_group", "g20").row(0) == ("SSA", None, None)
    usa = cls.filter((pl.col("alpha3") == "USA") & (pl.col("period") == "2025Q3"))
    assert usa.select("region", "income_group", "g8", "g20").row(0) == (
        None, "HIC", True, True)
    # The file's ".." on the receiving side does not take India and Mexico out of the G20.
    g20 = classification_for("2025_3Q", cls).filter(pl.col("g20"))["alpha3"].to_list()
    assert {"IND", "MEX", "USA", "GBR", "SAU", "ITA"} <= set(g20)
    doc = compute_indicators(read.frame.lazy(), period="2025_3Q", amount_usd=200,
                             countries=classification_for("2025_3Q", cls).lazy(), flows=None)
    assert doc["g20_receiving_average"] is not None

    for period in ("2016_2Q", "2025_3Q"):
        doc = compute_indicators(read.frame.lazy(), period=period, amount_usd=200,
                                 countries=classification_for(period, cls).lazy(),
                                 flows=None)
        canonical = doc["period"]
        by_region: dict[str, list[float]] = {}
        region_of = {"MEX": "LAC", "IND": "SAS", "NGA": "SSA", "EGY": "MNA", "KSV": "ECA",
                     "PAK": "SAS" if canonical == "2016Q2" else "MNA"}
        for row in rows:
            if row["period"] == period and str(row["transparent"]).lower() == "yes":
                region = region_of[str(row["destination_code"])]
                by_region.setdefault(region, []).append(float(str(row["cc1 total cost %"])))
        got = {k: v["average"] for k, v in doc["by_receiving_region"].items()}
        assert got == pytest.approx({k: sum(v) / len(v) for k, v in by_region.items()})


def test_bundled_classification_moves_afghanistan_and_pakistan_in_2025() -> None:
    """Without the file's columns (the CSV of 2011-2014, the store), the period decides."""
    def region(period: str, code: str) -> str:
        return countries_frame(period).filter(pl.col("alpha3") == code)["region"].item()

    assert [region(p, "PAK") for p in ("2011Q1", "2024Q3", "2025Q1", "2025Q3")] == [
        "SAS", "SAS", "MNA", "MNA"]
    assert region("2025Q3", "AFG") == "MNA" and region("2025Q3", "IND") == "SAS"
    assert countries_frame().filter(pl.col("alpha3") == "PAK")["region"].item() == "SAS"


def test_sheet_names_and_labels_inventory_are_the_real_ones() -> None:
    assert (SHEET_OLD, SHEET_NEW) == ("Dataset (up to Q1 2016)", "Dataset (from Q2 2016)")
    assert len(LABELS["payment instrument"]) == 10 and len(LABELS["pickup method"]) == 12
