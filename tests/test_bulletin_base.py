"""What each bulletin figure rests on: a store holding five corridors of survey data gives
"insufficient data" where the base is below the minimum, lists that do not overlap, and the
same figures and bases in the HTML, the PDF, the Markdown and the CSV (through the CLI and a
real PostgreSQL)."""

from __future__ import annotations

import csv
import gzip
import io
import re
from html import unescape
from pathlib import Path

import polars as pl
import pypdfium2 as pdfium
import pytest

from publish.bulletin import INSUFFICIENT, load_rpw
from publish.bulletin_files import write_bulletin
from sendcost.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIVE = (("USA", "MEX"), ("GBR", "IND"), ("FRA", "SEN"), ("DEU", "TUR"), ("SAU", "PAK"))
PERIOD = "2014Q2"


def _config(path: Path) -> Path:
    corridors = "".join(f'[[corridors]]\nfrom = "{a}"\nto = "{b}"\n\n' for a, b in FIVE)
    cfg = path / "config.toml"
    cfg.write_text(f'[service]\ndata_dir = "{path / "data"}"\nimport_rpw_on_empty = false\n\n'
                   f"{corridors}", encoding="utf-8")
    return cfg


def _five_corridor_rpw(path: Path) -> Path:
    """The bundled RPW data of 2014Q2 for the five configured corridors only."""
    raw = pl.read_csv(ROOT / "corridors" / "data" / "rpw_quotes_2011Q1_2014Q2.csv.gz",
                      infer_schema=False)
    keep = pl.any_horizontal([(pl.col("source_code") == a) & (pl.col("destination_code") == b)
                              for a, b in FIVE])
    out = path / "rpw_five.csv.gz"
    out.write_bytes(gzip.compress(raw.filter(pl.col("period") == "2014_2Q", keep)
                                  .write_csv().encode(), mtime=0))
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _pdf_text(path: Path) -> str:
    pdf = pdfium.PdfDocument(path)
    try:
        text = "\n".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()
    return " ".join(text.split())


def _base(row: dict[str, str]) -> str:
    """The base as the documents write it, rebuilt from the CSV's columns."""
    cov = row["base_coverage_pct"]
    covered = f" ({float(cov):.1f}% of target corridors covered)" if cov else ""
    def n(k: str, word: str) -> str:
        return f"{int(row['base_' + k]):,} {word}{'' if int(row['base_' + k]) == 1 else 's'}"

    return (f"{n('quotes', 'quote')}, {n('services', 'service')}, "
            f"{n('corridors', 'corridor')}{covered}, {n('providers', 'provider')}, collected "
            f"{row['base_first_collected'][:10]} to {row['base_last_collected'][:10]}")


def _shown(row: dict[str, str]) -> str:
    if row["status"] != "published":
        return INSUFFICIENT
    value = float(row["value"])
    return f"{value:.1f}%" if row["indicator"].startswith("share_") else f"{value:.2f}%"


def assert_four_agree(folder: Path) -> list[dict[str, str]]:
    """Every headline figure and its base: the same in CSV, HTML, Markdown and PDF."""
    rows = _csv(folder / "data" / "headline.csv")
    html = (folder / "index.html").read_text(encoding="utf-8")
    md = (folder / "bulletin.md").read_text(encoding="utf-8")
    pdf = _pdf_text(folder / "bulletin.pdf")
    html_rows = re.findall(r"<tr>(.*?)</tr>", html)
    for row in rows:
        value, base = _shown(row), _base(row)
        label = row["label"]
        # Markdown: one table line holds the label, the figure and the base
        assert any(line.startswith(f"| {label} | {value} |") and line.endswith(f"| {base} |")
                   for line in md.splitlines()), (label, value, base)
        # HTML (and so the PDF's source): one table row holds all three
        cells = [re.sub(r"<[^>]+>", "", c) for r in html_rows
                 if f">{label}<" in unescape(r)
                 for c in [unescape(r)]]
        assert any(f">{value}<" in c or value in c for c in cells), (label, value)
        assert any(base in c for c in cells), (label, base)
        # PDF: the figure and its base are printed (table cells wrap, so compare words)
        assert value in pdf, (label, value)
        assert " ".join(base.split()) in pdf or all(w in pdf for w in base.split()), base
    # the headline's base is also printed whole, in the running text of every rendering
    g = next(r for r in rows if r["indicator"] == "global_average" and r["amount_usd"] == "200")
    for text in (html, md, pdf):
        assert f"Rests on {_base(g)}." in " ".join(text.split()), text[:200]
    return rows


def test_five_corridors_from_the_store_give_insufficient_data(
        fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path)
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    assert main(["import", "rpw", str(_five_corridor_rpw(tmp_path)), "--config", str(cfg),
                 "-q"]) == 0
    out = tmp_path / "bulletins"
    assert main(["bulletin", "--period", PERIOD, "--source", "store", "--out", str(out),
                 "--config", str(cfg), "-q"]) == 0
    folder = out / PERIOD
    rows = {(r["indicator"], r["amount_usd"]): r for r in assert_four_agree(folder)}
    # a global figure from 5 corridors (fewer than 20) is not published as a number
    g = rows[("global_average", "200")]
    assert (g["status"], g["value"], g["base_corridors"]) == (INSUFFICIENT, "", "5")
    assert g["base_coverage_pct"] == "100.0"  # all five configured corridors covered
    for key in ("smart_average", "share_corridors_above_5", "share_services_below_3",
                "g20_sending_average", "g8_sending_average", "g20_receiving_average"):
        assert rows[(key, "200")]["status"] == INSUFFICIENT, key
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert f'<p class="big">{INSUFFICIENT}</p>' in html
    assert f"There is <strong>{INSUFFICIENT}</strong> for a global average" in html
    assert "below the minimum a global figure needs (at least 20 corridors" in html
    # the store's headline names the base it used, not the store's size
    # (79 of the 89 services disclose their rate; the store holds 178 quotes: two amounts)
    assert "The global average rests on 79 quotes, 79 services, 5 corridors" in html
    assert "of the 178 quotes in sendcost" in html
    # breakdowns below 10 services or 3 providers read insufficient data too
    for name in ("firm_types", "receiving_regions", "sending_countries"):
        for r in _csv(folder / "data" / f"{name}.csv"):
            thin = int(r["base_services"] or 0) < 10 or int(r["base_providers"] or 0) < 3
            assert (r["sufficient"] == "false") == thin and (r["average"] == "") == thin
    five = _csv(folder / "data" / "five_percent.csv")[0]
    assert (five["status"], five["base_corridors"]) == (INSUFFICIENT, "5")
    assert f"The shares rest on {_base(g)}." in html
    # so are the trend's periods, and no progress call rests on them
    trend = {r["period"]: r for r in _csv(folder / "data" / "trend.csv")}
    assert (trend[PERIOD]["sufficient"], trend[PERIOD]["global_average"]) == ("false", "")
    assert _csv(folder / "data" / "progress.csv")[0]["call"] == INSUFFICIENT
    # the ranked lists never overlap, and say how many they rank
    most, least = (_csv(folder / "data" / f"{n}.csv") for n in ("most_expensive",
                                                                 "least_expensive"))
    assert (len(most), len(least)) == (3, 2)
    assert not {(r["source"], r["destination"]) for r in most} & {
        (r["source"], r["destination"]) for r in least}
    assert {r["ranked"] for r in most + least} == {"5"}
    assert "The 3 most expensive of 5 corridors ranked" in html
    assert "The 2 least expensive of 5 corridors ranked" in html
    # USD 500 below its minimum reads as a sentence with its base, in every rendering
    usd500 = rows[("global_average", "500")]
    assert usd500["status"] == INSUFFICIENT
    said = (f"Sending USD 500: {INSUFFICIENT} ({_base(usd500)}; below the minimum of at "
            "least 20 corridors and 75% of the target corridors covered by 3+ providers).")
    md = (folder / "bulletin.md").read_text(encoding="utf-8")
    pdf = _pdf_text(folder / "bulletin.pdf")
    for text in (unescape(html), md, pdf):
        assert said in " ".join(text.split())
        assert f"cost {INSUFFICIENT}" not in text
    g20 = rows[("g20_sending_average", "200")]
    assert (f"Sending from a G20 country: {INSUFFICIENT} ({_base(g20)}; below the minimum of "
            "at least 20 corridors") in " ".join(unescape(html).split())
    # the store holds survey quotes only: the box names them, not a sample of sendcost's own
    for text in (unescape(html), md):
        assert ("they are computed with sendcost's methodology from the World Bank's "
                "Remittance Prices Worldwide survey quotes in sendcost's store") in text
        assert "own sample" not in text


def test_rpw_bulletin_figures_and_bases_agree(tmp_path: Path) -> None:
    quotes, generated_from = load_rpw()
    folder = write_bulletin(quotes, PERIOD, tmp_path, generated_from=generated_from)
    rows = assert_four_agree(folder)
    assert {r["status"] for r in rows} == {"published"}
    # each share names its denominator
    md = (folder / "bulletin.md").read_text(encoding="utf-8")
    assert "| Average above 5% |" in md and "the 225 corridors with an average |" in md
    assert "the 224 corridors with a SmaRT |" in md and "all 226 corridors observed |" in md
    # negative survey averages stay in the ranking (as the World Bank keeps them), marked
    least = {(r["source"], r["destination"]): r for r in _csv(folder / "data" /
                                                            "least_expensive.csv")}
    assert least[("USA", "HND")]["caveat"].startswith("negative total cost")
    assert least[("RUS", "ARM")]["caveat"] == ""
    assert "| United States → Honduras † | -4.55% |" in md
    assert "†: a negative average total cost (United States → Honduras, Spain → Honduras)" in md
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert 'id="ranked-caveats"' in html and "United States → Honduras †" in html
    # the box says the figures come from the RPW survey, not from sendcost's own sample
    for text in (unescape(html), md):
        assert ("they are recomputed with sendcost's methodology from the World Bank's "
                "Remittance Prices Worldwide survey quotes") in text
        assert "own sample" not in text and "own cadence" not in text


def test_minimum_base_is_configurable(tmp_path: Path) -> None:
    from corridors.config import parse_config
    from corridors.errors import ConfigError

    c = parse_config({"bulletin": {"minimum": {"global_corridors": 3,
                                               "global_corridor_coverage": 0.5}}}, tmp_path)
    assert (c.bulletin.minimum.global_corridors, c.bulletin.minimum.group_services) == (3, 10)
    with pytest.raises(ConfigError, match="global_corridor_coverage"):
        parse_config({"bulletin": {"minimum": {"global_corridor_coverage": 75}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"bulletin\.minimum"):
        parse_config({"bulletin": {"minimum": {"corridors": 3}}}, tmp_path)


def test_rpw_is_credited_for_data_only_when_its_quotes_are_used(tmp_path: Path) -> None:
    import json

    quotes, _ = load_rpw()
    one = quotes.filter(pl.col("period") == PERIOD)
    collected = one.with_columns(pl.lit("operator-x").cast(pl.Categorical).alias("source"))
    for frame, credited in ((one, True), (collected, False)):
        folder = write_bulletin(frame, PERIOD, tmp_path / str(credited),
                                generated_from={"kind": "store", "quotes": frame.height})
        meta = json.loads((folder / "data" / "metadata.json").read_text(encoding="utf-8"))
        rpw = meta["sources"][0]
        html = (folder / "index.html").read_text(encoding="utf-8")
        if credited:
            assert "includes data from" in meta["licence"]["attribution"]
            assert rpw["used_for"].startswith("2,951 of the period's 2,951 quotes")
        else:
            assert "includes data from" not in meta["licence"]["attribution"]
            assert rpw["used_for"] == "the method only: no RPW quote in this period"
            assert "No RPW quote in this period; method, published figures" in html


def test_caveats_reach_the_bulletins_tables_in_all_four_renderings(tmp_path: Path) -> None:
    # RPW 2014Q2: USA → HND's 8 services all have a negative margin (a bad interbank rate);
    # each table that lists it says so, with the number of services, and explains the mark.
    quotes, generated_from = load_rpw()
    folder = write_bulletin(quotes, PERIOD, tmp_path, generated_from=generated_from)
    least = {(r["source"], r["destination"]): r for r in _csv(folder / "data" /
                                                            "least_expensive.csv")}
    hnd = least[("USA", "HND")]
    assert hnd["caveats"] == "negative_margin:8 negative_total_cost:8"
    assert hnd["flagged_services"] == "8"
    # one rule for "cheapest": every service of the corridor is flagged, so none is named
    assert hnd["cheapest_firm"] == ""
    corridors = {(r["source"], r["destination"]): r for r in _csv(folder / "data" /
                                                                "corridors.csv")}
    assert corridors[("USA", "HND")]["caveats"] == hnd["caveats"]
    assert corridors[("USA", "HND")]["cheapest_left_out"] == "8"
    assert all(r["caveats"] == "" for r in corridors.values() if r["flagged_services"] == "0")
    cell = "⚠ negative margin (8), negative total cost (8)"
    md = (folder / "bulletin.md").read_text(encoding="utf-8")
    assert f"| United States → Honduras † | -4.55% | -5.10% | 8 | — | {cell} |" in md
    explained = ("negative margin: the rate applied beats the mid-market reference rate")
    assert explained in md
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert f"<td>{cell}</td>" in html and 'id="ranked-flags"' in html
    assert "negative margin</strong>: the rate applied beats" in html
    pdf = _pdf_text(folder / "bulletin.pdf")
    assert all(w in pdf for w in cell.split()) and "the rate applied beats the mid-market" in pdf
    # the post-office services carry theirs, in the CSV and the tables
    postal = _csv(folder / "data" / "postal_benchmark.csv")
    flagged = [r for r in postal if r["caveats"]]
    assert flagged and all(set(r["caveats"].split()) <= {
        "negative_margin", "negative_total_cost"} for r in flagged)
    assert all(float(r["fx_margin_pct"]) < 0 for r in flagged if r["fx_margin_pct"]
               and "negative_margin" in r["caveats"])
    assert all(r["caveats"] == "" for r in postal
               if r["fx_margin_pct"] and float(r["fx_margin_pct"]) >= 0
               and r["total_cost_pct"] and float(r["total_cost_pct"]) >= 0)


def test_the_bulletin_says_when_emulated_quotes_were_left_out(tmp_path: Path) -> None:
    quotes, generated_from = load_rpw()
    about = {**generated_from, "emulated_left_out": ["sandbox-op-0", "sandbox-post-FRA"]}
    folder = write_bulletin(quotes, PERIOD, tmp_path, generated_from=about)
    said = ("Emulated quotes (the sandbox's invented prices, not real ones) from sandbox-op-0, "
            "sandbox-post-FRA were in the store and are left out of every figure.")
    html = (folder / "index.html").read_text(encoding="utf-8")
    md = (folder / "bulletin.md").read_text(encoding="utf-8")
    assert 'id="emulated-left-out"' in html and said in unescape(html)
    assert f"**{said}**" in md
    assert said in _pdf_text(folder / "bulletin.pdf")
