"""read_rpw on damaged and unusual files: clear errors naming the line and the reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from corridors.errors import ImportFileError
from corridors.frame import QUOTE_FRAME_SCHEMA
from corridors.reading.rpw import (
    REQUIRED_COLUMNS,
    SHEET_FROM_2016Q2,
    SHEET_UP_TO_2016Q1,
    read_rpw,
)

DATA = Path(__file__).resolve().parent.parent / "corridors" / "data"
RPW_GZ = DATA / "rpw_quotes_2011Q1_2014Q2.csv.gz"


def head(lines: int) -> str:
    """The first ``lines`` lines of the real file (header included), as text."""
    with gzip.open(RPW_GZ, "rt", encoding="utf-8") as fh:
        return "".join(next(fh) for _ in range(lines))


def write(tmp_path: Path, text: str, name: str = "rpw.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_real_file_reads_whole() -> None:
    read = read_rpw(RPW_GZ)
    assert list(read.frame.schema.items()) == list(QUOTE_FRAME_SCHEMA.items())
    assert read.rows_read == 28467
    # every label of the real file has an explicit mapping in corridors.types
    assert read.unknown_labels == {}
    assert read.rejected == []
    assert read.rows_kept == read.rows_read
    assert read.frame.select(pl.col("service_id").n_unique()).item() == read.rows_kept
    nt = read.frame.filter(~pl.col("transparent"))
    assert nt["fx_margin_reported"].null_count() == nt.height
    assert nt["total_cost_reported"].null_count() == nt.height
    assert nt["fee"].null_count() < nt.height
    assert set(read.frame["amount_usd"].unique()) == {200, 500}
    assert "CFA" not in set(read.frame["send_currency"].drop_nulls())


def test_one_row_gives_two_quotes(tmp_path: Path) -> None:
    read = read_rpw(write(tmp_path, head(2)))
    f = read.frame.sort("amount_usd")
    assert f.select("period", "source_code", "destination_code", "firm", "firm_type",
                    "amount_usd", "send_amount", "fee", "applied_rate", "reference_rate",
                    "fx_margin_reported", "total_cost_reported", "speed", "pay_out",
                    "send_currency").rows() == [
        ("2011Q1", "ARE", "EGY", "Al Fardan Exchange", "mto", 200, 735.0, 15.0, 1.57, 1.58,
         0.63, 2.67, "two_days", "bank_account", "AED"),
        ("2011Q1", "ARE", "EGY", "Al Fardan Exchange", "mto", 500, 1835.0, 15.0, 1.57, 1.58,
         0.63, 1.45, "two_days", "bank_account", "AED"),
    ]
    assert f["service_id"].to_list() == [
        "rpw:2011Q1:ARE:EGY:Al Fardan Exchange:Cash to account:13034"] * 2
    assert str(f["collected_at"][0]) == "2011-01-22 00:00:00+00:00"


def test_the_notes_give_the_pay_out_currency_once(tmp_path: Path) -> None:
    """RPW's free-text notes are read into ``payout_currency_noted`` by the reader: the first
    currency a note names, "LCU" the receiving country's, a code of no currency nothing."""
    import csv
    import io

    header, row = list(csv.reader(io.StringIO(head(2))))
    notes = [("USD service", ""), ("This RSP sends EUR and pays out USD in this corridor", ""),
             ("", "pays out LCU"), ("SGP service", ""), ("", ""), ("cfa service", "")]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for i, (note1, note2) in enumerate(notes):
        r = dict(zip(header, row, strict=True))
        r.update(id=str(90000 + i), note1=note1, note2=note2)
        w.writerow([r[c] for c in header])
    f = read_rpw(write(tmp_path, out.getvalue())).frame.filter(pl.col("amount_usd") == 200)
    got = dict(zip(f["service_id"].cast(pl.String).str.split(":").list.last(),
                   f["payout_currency_noted"].cast(pl.String), strict=True))
    # ARE -> EGY: the receiving country's currency is EGP; "CFA" is RPW's XOF.
    assert got == {"90000": "USD", "90001": "USD", "90002": "EGP", "90003": None,
                   "90004": None, "90005": "XOF"}


def test_plain_and_gzip_read_the_same(tmp_path: Path) -> None:
    text = head(50)
    plain = read_rpw(write(tmp_path, text))
    gz = tmp_path / "rpw.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert plain.frame.equals(read_rpw(gz).frame)


def test_corrupt_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 10)
    with pytest.raises(ImportFileError, match="not a readable gzip file"):
        read_rpw(bad)


def test_truncated_gzip(tmp_path: Path) -> None:
    data = RPW_GZ.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFileError, match=r"gzip.*ended before"):
        read_rpw(cut)


def test_truncated_csv_names_the_line(tmp_path: Path) -> None:
    text = head(20)
    cut = text[: len(text) - 200]  # ends in the middle of line 20
    with pytest.raises(ImportFileError, match=r"line 20: .*(fields|cut short)") as err:
        read_rpw(write(tmp_path, cut))
    assert err.value.line == 20


def test_missing_column(tmp_path: Path) -> None:
    lines = head(5).splitlines()
    header = lines[0].split(",")
    drop = header.index("cc1 total cost %")
    rows = [",".join(f for i, f in enumerate(line.split(",")) if i != drop) for line in lines]
    with pytest.raises(ImportFileError, match=r"line 1: missing required column.*cc1 total cost %"):
        read_rpw(write(tmp_path, "\n".join(rows) + "\n"))


def test_bad_values_reject_only_their_row(tmp_path: Path) -> None:
    lines = head(6).splitlines()
    header = lines[0].split(",")

    def edit(line: str, column: str, value: str) -> str:
        fields = line.split(",")
        fields[header.index(column)] = value
        return ",".join(fields)

    lines[2] = edit(lines[2], "firm_type", "Hawala")  # line 3
    lines[3] = edit(lines[3], "cc1 lcu fee", "fifteen")  # line 4
    lines[4] = edit(lines[4], "period", "2011-Q9")  # line 5
    read = read_rpw(write(tmp_path, "\n".join(lines) + "\n"))
    assert [(r.line, r.column, r.value, r.kind, r.reason) for r in read.rejected] == [
        (4, "cc1 lcu fee", "fifteen", "not a number", "cc1 lcu fee is not a number: fifteen"),
        (5, "period", "2011-Q9", "not a period",
         "period 2011-Q9 is not a quarter like 2011_1Q"),
    ]
    # A firm type feeds no cost: the row is kept as "other", its label counted verbatim.
    assert read.unknown_labels == {"firm_type": {"Hawala": 1}}
    assert read.rows_read == 5
    assert read.rows_kept == 3
    hawala = read.frame.filter(pl.col("firm_type") == "other")
    assert hawala.height == 2
    assert read.labels.filter(pl.col("service_id") == hawala["service_id"][0])[
        "firm_type"].to_list() == [["Hawala"]]


def test_non_transparent_margin_is_unknown(tmp_path: Path) -> None:
    with gzip.open(RPW_GZ, "rt", encoding="utf-8") as fh:
        text = head(1) + "".join(line for line in fh if ",no," in line and "AUSFJI" in line)
    read = read_rpw(write(tmp_path, text))
    assert read.frame.height > 0
    assert read.frame["transparent"].to_list() == [False] * read.frame.height
    assert read.frame["fx_margin_reported"].null_count() == read.frame.height
    assert read.frame["applied_rate"].null_count() == read.frame.height
    assert read.frame["fee"].null_count() == 0


def _workbook(tmp_path: Path) -> Path:
    old = pl.read_csv(head(4).encode(), infer_schema=False)
    new = (
        pl.read_csv(head(4).encode(), infer_schema=False)
        .drop("product", "sending location", "pick-up method")
        .with_columns(
            pl.lit("2016_2Q").alias("period"),
            pl.lit("20/Jun/2016").alias("date"),
            pl.lit("Yes").alias("transparent"),
            pl.lit("Cash").alias("payment instrument"),
            pl.Series("access point", ["Agent", "Agent", "Teleport"]),
            pl.lit("Cash").alias("pickup method"),
            # the workbook stores numbers as numbers
            pl.col("cc1 total cost %").cast(pl.Float64),
        )
    )
    path = tmp_path / "rpw.xlsx"
    import xlsxwriter

    with xlsxwriter.Workbook(path) as wb:
        old.write_excel(wb, worksheet=SHEET_UP_TO_2016Q1)
        new.write_excel(wb, worksheet=SHEET_FROM_2016Q2)
        pl.DataFrame({"legend": ["x"]}).write_excel(wb, worksheet="Legend")
    return path


def test_workbook_with_both_sheets(tmp_path: Path) -> None:
    read = read_rpw(_workbook(tmp_path))
    assert read.rows_read == 6
    # An access point feeds no indicator: the row is kept, its label reported once.
    assert read.rejected == []
    assert read.unknown_labels == {"access point": {"Teleport": 1}}
    f = read.frame
    assert sorted(f["period"].unique().to_list()) == ["2011Q1", "2016Q2"]
    new = f.filter(pl.col("period") == "2016Q2")
    assert new.height == 6  # three rows, two price points each
    assert set(new["pay_in"]) == {"cash"}
    assert new["access_point"].value_counts(sort=True).rows() == [("agent", 4), (None, 2)]
    assert set(new["product"]) == {""}
    assert new["transparent"].all()
    old = f.filter(pl.col("period") == "2011Q1").sort("service_id", "amount_usd")
    csv = read_rpw(write(tmp_path, head(4))).frame.sort("service_id", "amount_usd")
    assert old.equals(csv)


def test_workbook_without_dataset_sheet(tmp_path: Path) -> None:
    path = tmp_path / "other.xlsx"
    pl.DataFrame({"a": [1]}).write_excel(path, worksheet="Sheet1")
    with pytest.raises(ImportFileError, match="no RPW dataset sheet"):
        read_rpw(path)


def test_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ImportFileError, match="not a readable xlsx"):
        read_rpw(path)


def test_required_columns_are_in_the_real_header() -> None:
    assert set(REQUIRED_COLUMNS) <= set(head(1).strip().split(","))


def test_percent_strings_are_read(tmp_path: Path) -> None:
    lines = head(3).splitlines()
    header = lines[0].split(",")
    plain = read_rpw(write(tmp_path, "\n".join(lines) + "\n", "plain.csv"))
    for i in (1, 2):
        fields = lines[i].split(",")
        for col in ("cc1 fx margin", "cc1 total cost %", "cc2 total cost %"):
            fields[header.index(col)] += "%"
        lines[i] = ",".join(fields)
    read = read_rpw(write(tmp_path, "\n".join(lines) + "\n", "percent.csv"))
    assert read.rejected == []
    assert read.frame.equals(plain.frame)


def test_period_is_checked_against_the_rows_date(tmp_path: Path) -> None:
    lines = head(4).splitlines()
    header = lines[0].split(",")
    fields = lines[2].split(",")
    fields[header.index("period")] = "2099_1Q"  # line 3, dated 2011
    lines[2] = ",".join(fields)
    read = read_rpw(write(tmp_path, "\n".join(lines) + "\n"))
    assert [(r.line, r.column, r.value, r.kind) for r in read.rejected] == [
        (3, "period", "2099_1Q", "period does not match date")]
    assert "2099_1Q is more than 3 years from the row's date 22/Jan/2011" in \
        read.rejected[0].reason
    assert read.rows_kept == 2


def test_kosovo_as_ksv_is_one_country_and_an_unknown_code_is_reported(tmp_path: Path
                                                                       ) -> None:
    lines = head(4).splitlines()
    header = lines[0].split(",")
    for i, code in ((1, "KSV"), (2, "QQQ")):
        fields = lines[i].split(",")
        fields[header.index("destination_code")] = code
        lines[i] = ",".join(fields)
    read = read_rpw(write(tmp_path, "\n".join(lines) + "\n"))
    assert read.rejected == []
    assert "XKX" in set(read.frame["destination_code"])
    assert read.unknown_labels == {"destination_code": {"QQQ": 1}}
    assert any("'QQQ' on 1 rows" in line for line in read.report())


def test_too_many_rejected_rows_fail_the_whole_file(tmp_path: Path) -> None:
    lines = head(5).splitlines()
    header = lines[0].split(",")
    fields = lines[1].split(",")
    fields[header.index("cc1 total cost %")] = "n/a%x"
    lines[1] = ",".join(fields)
    read = read_rpw(write(tmp_path, "\n".join(lines) + "\n"))
    assert read.rejected_share == 0.25
    read.check_rejected_share(0.25)  # at the limit: used
    with pytest.raises(ImportFileError, match=r"1 of 4 rows rejected \(25\.0%\), more than "
                                              r"the 3\.0% allowed.*not a number: cc1 total"):
        read.check_rejected_share(0.03)
    with pytest.raises(ImportFileError, match="no data rows"):
        read_rpw(write(tmp_path, lines[0] + "\n", "header_only.csv")).check_rejected_share(1)


def test_report_accounts_for_every_row(tmp_path: Path) -> None:
    frame = pl.read_csv(RPW_GZ, infer_schema=False, n_rows=5)
    first = pl.int_range(pl.len()) == 0
    frame = frame.with_columns(
        *(pl.when(first).then(None).otherwise(pl.col(c)).alias(c)
          for c in ("cc1 lcu amount", "cc2 lcu amount")),  # row 1: not priced
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("x")).otherwise(
            pl.col("cc1 lcu fee")).alias("cc1 lcu fee"))  # row 2: rejected
    path = tmp_path / "five.csv"
    frame.write_csv(path)
    report = read_rpw(path).report()
    assert report[0].endswith("five.csv: 5 rows read, 3 used (6 quotes), 1 rejected (20.0%)")
    assert report[1:4] == [
        "  not used, no price at USD 200 or 500 (or a repeated service): 1 rows",
        "  rejected, not a number: cc1 lcu fee: 1 rows",
        "    line 3, column 'cc1 lcu fee', value 'x': cc1 lcu fee is not a number: x"]
