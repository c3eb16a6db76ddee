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
from publish.exports import (
    DIMENSIONS,
    m49,
    postal_export,
    sdmx_csv,
    sdmx_rows,
    series_list,
)
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
        # rounded as published: two decimals
        assert world[0]["OBS_VALUE"] == f"{doc['global_average']:.2f}"
        # what it rests on, for the statistics office to judge
        with_avg = sum(1 for c in doc["corridors"] if c["average"] is not None)
        assert (f"from {doc['services']['transparent']} transparent services in {with_avg} "
                "corridors") in world[0]["COMMENT_OBS"]
        # by sending country: SI_RMT_COST_SND (SI_RMT_COST is the receiving country's)
        services = [c for c in doc["corridors"] if c["source"] == "GBR"]
        assert services
        gbr = [r for r in rows if r["REF_AREA"] == m49("GBR") and r["TIME_PERIOD"] == time]
        assert m49("GBR") == "826"
        assert [r["SERIES"] for r in gbr] == ["SI_RMT_COST_SND"]
        # by receiving country: SI_RMT_COST, the mean over services sent to it
        ind = [r for r in rows if r["REF_AREA"] == m49("IND") and r["TIME_PERIOD"] == time]
        assert [r["SERIES"] for r in ind] == ["SI_RMT_COST"]
        to_ind = (quotes.lazy().pipe(_services, time_period=period)
                  .filter(pl.col("destination_code") == "IND").collect())
        assert ind[0]["OBS_VALUE"] == f"{to_ind.get_column('total_cost_pct').mean():.2f}"
    assert all(r["REF_AREA"].isdigit() for r in rows)


def _services(quotes: pl.LazyFrame, *, time_period: str) -> pl.LazyFrame:
    from metrics.services import services_in_period

    return services_in_period(quotes, period=time_period, amount_usd=200).filter(
        pl.col("transparent"), pl.col("total_cost_pct").is_not_null())


def test_sdmx_series_codes_are_the_un_series_list(quotes) -> None:
    """Every SERIES written is a 10.c.1 series of the UN SDG series list, release
    2022.Q1.G.03 (its rows bundled in corridors/data/sdg_series_10c1.csv), used for what the
    list says it is."""
    listed = {r["code"]: r for r in series_list()}
    assert {r["release"] for r in listed.values()} == {"2022.Q1.G.03"}
    assert {r["indicator"] for r in listed.values()} == {"10.c.1"}
    assert "to a receiving country" in listed["SI_RMT_COST"]["description"]
    assert "for a sending country" in listed["SI_RMT_COST_SND"]["description"]
    assert "in a corridor" in listed["SI_RMT_COST_BC"]["description"]
    assert listed["SI_RMT_COST_SC"]["description"].startswith("SmaRT")
    rows = sdmx_rows(quotes, start="2014Q2", end="2014Q2", corridors=True)
    written = {r["SERIES"] for r in rows}
    assert written == set(listed)
    sending = {m49(c) for c in quotes.filter(pl.col("period") == "2014Q2")
               .get_column("source_code").unique().to_list()}
    receiving = {m49(c) for c in quotes.filter(pl.col("period") == "2014Q2")
                 .get_column("destination_code").unique().to_list()}
    for r in rows:
        if r["SERIES"] == "SI_RMT_COST_SND":
            assert r["REF_AREA"] in sending and r["CUST_BREAKDOWN"] == "_T"
        elif r["SERIES"] == "SI_RMT_COST":
            assert r["REF_AREA"] == "1" or r["REF_AREA"] in receiving
        else:
            assert r["REF_AREA"] in sending and r["CUST_BREAKDOWN"][1:] in receiving
    # SmaRT by corridor: the 5% half of the target
    doc = compute_indicators(quotes.lazy(), period="2014Q2", amount_usd=200,
                             countries=countries_frame().lazy(), flows=None)
    sc = [r for r in rows if r["SERIES"] == "SI_RMT_COST_SC"]
    smart = [c for c in doc["corridors"] if c["smart"] is not None]
    assert len(sc) == len(smart) > 0
    usa_mex = next(c for c in smart if (c["source"], c["destination"]) == ("USA", "MEX"))
    row = next(r for r in sc if (r["REF_AREA"], r["CUST_BREAKDOWN"]) == ("840", "C484"))
    assert row["OBS_VALUE"] == f"{usa_mex['smart']:.2f}"


def test_sdmx_status_never_passes_estimates_or_negatives_as_normal(quotes) -> None:
    """A value resting on a comparison feed's estimate is E, a negative cost U; the rest A."""
    one = quotes.filter(pl.col("period") == "2014Q2")
    # Mark one corridor's quotes as a comparison feed's estimates.
    kinds = one.with_columns(
        pl.when((pl.col("source_code") == "USA") & (pl.col("destination_code") == "MEX"))
        .then(pl.lit("estimate")).otherwise(pl.lit("survey")).alias("data_kind"))
    rows = sdmx_rows(kinds, start="2014Q2", end="2014Q2", corridors=True)
    by_key = {(r["SERIES"], r["REF_AREA"], r["CUST_BREAKDOWN"]): r for r in rows}
    assert by_key[("SI_RMT_COST_BC", "840", "C484")]["OBS_STATUS"] == "E"
    assert by_key[("SI_RMT_COST_SC", "840", "C484")]["OBS_STATUS"] == "E"
    assert by_key[("SI_RMT_COST", "1", "_T")]["OBS_STATUS"] == "E"
    assert by_key[("SI_RMT_COST_SND", "840", "_T")]["OBS_STATUS"] == "E"
    assert "estimates" in by_key[("SI_RMT_COST_SND", "840", "_T")]["COMMENT_OBS"]
    assert by_key[("SI_RMT_COST_SND", "826", "_T")]["OBS_STATUS"] == "A"
    # negative corridor averages (USA->HND in 2014Q2) are marked low reliability
    negative = [r for r in rows if float(r["OBS_VALUE"]) < 0]
    assert negative and {r["OBS_STATUS"] for r in negative} == {"U"}
    assert ("SI_RMT_COST_BC", "840", "C340") in {(r["SERIES"], r["REF_AREA"],
                                                  r["CUST_BREAKDOWN"]) for r in negative}
    assert by_key[("SI_RMT_COST", "484", "_T")]["OBS_STATUS"] == "E"  # received in Mexico
    assert {r["OBS_STATUS"] for r in rows if float(r["OBS_VALUE"]) >= 0
            and r["REF_AREA"] not in ("840", "1", "484")} == {"A"}
    # without a data_kind column (the RPW file: survey data), nothing is an estimate
    plain = sdmx_rows(one, start="2014Q2", end="2014Q2")
    assert {r["OBS_STATUS"] for r in plain} <= {"A", "U"}


def test_sdmx_annual_frequency(quotes) -> None:
    rows = sdmx_rows(quotes, start="2013Q1", end="2014Q2", frequency="annual")
    assert {r["FREQ"] for r in rows} == {"A"}
    assert {r["TIME_PERIOD"] for r in rows} == {"2013", "2014"}
    quarterly = sdmx_rows(quotes, start="2014Q1", end="2014Q2")
    world = [float(r["OBS_VALUE"]) for r in quarterly if r["REF_AREA"] == "1"]
    doc = {p: compute_indicators(quotes.lazy(), period=p, amount_usd=200,
                                 countries=countries_frame().lazy(), flows=None)
           for p in ("2014Q1", "2014Q2")}
    a2014 = next(r for r in rows if r["TIME_PERIOD"] == "2014" and r["REF_AREA"] == "1")
    mean = (doc["2014Q1"]["global_average"] + doc["2014Q2"]["global_average"]) / 2
    assert a2014["OBS_VALUE"] == f"{mean:.2f}" and len(world) == 2
    assert "2014Q1, 2014Q2" in a2014["COMMENT_OBS"]
    with pytest.raises(BadPeriod):
        sdmx_rows(quotes, start="2014Q1", end="2014Q2", frequency="weekly")


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
    exported = pl.read_csv(body_csv, schema={**expected.schema, "data_kind": pl.String,
                                             "source": pl.String})
    assert_frame_equal(exported.drop("data_kind", "source"), expected,
                       check_exact=False, abs_tol=1e-9)
    # every service says where its quotes came from, as the by-corridor export does
    assert exported.select("data_kind", "source").unique().rows() == [("survey", "rpw")]
    doc = json.loads(body_json)
    assert doc["period"] == "2014Q2" and len(doc["services"]) == expected.height
    assert doc["columns"] == [*expected.columns, "data_kind", "source"]
    assert {(s["data_kind"], s["source"]) for s in doc["services"]} == {("survey", "rpw")}
    assert doc["provenance"] == [{"source": "rpw", "data_kind": "survey",
                                  "quotes": quotes.filter(pl.col("period") == "2014Q2",
                                                          pl.col("amount_usd") == 200).height,
                                  "from": "2014Q2", "to": "2014Q2"}]
    assert doc["licence"]["name"] == "CC BY 4.0"
    assert "The World Bank, Remittance Prices Worldwide" in doc["licence"]["attribution"]
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
    assert main(["export", "sdmx", "--from", "2014Q1", "--to", "2014Q2", "--source", "rpw",
                 "--frequency", "annual", "--corridors", "--out", str(out), "-q"]) == 0
    rows = _rows(out.read_bytes())
    assert {r["FREQ"] for r in rows} == {"A"}
    assert {r["SERIES"] for r in rows} == {"SI_RMT_COST", "SI_RMT_COST_SND", "SI_RMT_COST_BC",
                                           "SI_RMT_COST_SC"}
    # the series are defined for USD 200: a USD 500 export is refused, nothing written
    out.unlink()
    assert main(["export", "sdmx", "--from", "2014Q1", "--to", "2014Q2", "--source", "rpw",
                 "--amount", "500", "--out", str(out), "-q"]) == 2
    assert "defined for sending USD 200 only" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["export", "sdmx", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ready to load as it is" not in text
    assert "must still check" in text and "2022.Q1.G.03" in text
    assert main(["export", "sdmx", "--from", "2030Q1", "--to", "2030Q2", "--source",
                 "rpw", "-q"]) == 1
    assert "no quotes" in capsys.readouterr().err
