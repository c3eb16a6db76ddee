"""Reading an RPW workbook a chunk of rows at a time: the same read whatever the chunk, and
memory that does not grow with the rows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from rpw_real_format import SHEET_NEW, new_sheet_rows, write_workbook

from corridors.reading import xlsx
from corridors.reading.rpw import REQUIRED_COLUMNS, read_rpw

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = new_sheet_rows()
    rows[5]["cc1 lcu fee"] = "five"  # a rejected row, to be found in whichever chunk
    return write_workbook(tmp_path_factory.mktemp("chunks") / "rpw.xlsx", rows)


def test_the_chunk_size_does_not_change_what_is_read(workbook: Path) -> None:
    whole = read_rpw(workbook, chunk_rows=1_000_000)
    assert whole.rows_read > 50 and len(whole.rejected) == 1
    for chunk_rows in (1, 7):
        cut = read_rpw(workbook, chunk_rows=chunk_rows)
        assert_frame_equal(cut.frame, whole.frame)
        assert_frame_equal(cut.labels.sort("service_id"), whole.labels.sort("service_id"))
        assert_frame_equal(cut.classifications, whole.classifications)
        assert (cut.rows_read, cut.rows_kept, cut.quotes) == (
            whole.rows_read, whole.rows_kept, whole.quotes)
        assert cut.rejected == whole.rejected
        assert cut.unknown_labels == whole.unknown_labels
        assert cut.helper_columns == whole.helper_columns
        assert cut.report() == whole.report()


def test_a_sheet_is_cut_into_workbooks_of_chunk_rows(workbook: Path) -> None:
    chunks = list(xlsx.chunks(workbook, SHEET_NEW, 7))
    assert [c.rows for c in chunks[:-1]] == [7] * (len(chunks) - 1)
    assert 1 <= chunks[-1].rows <= 7
    # Each run of rows follows the last, from the row under the header.
    assert [c.first_line for c in chunks] == [2 + 7 * i for i in range(len(chunks))]
    read = pl.read_excel(chunks[1].workbook, sheet_name=xlsx.CHUNK_SHEET, engine="calamine",
                         infer_schema_length=0)
    assert read.height == 7 and set(REQUIRED_COLUMNS) <= set(read.columns)


def test_line_numbers_are_the_sheets_row_numbers(tmp_path: Path) -> None:
    """A row with no value between data rows is no row, and the lines after it are still
    the sheet's own row numbers."""
    rows = new_sheet_rows()[:6]
    rows[4]["transparent"] = "perhaps"
    path = write_workbook(tmp_path / "gap.xlsx", [*rows[:3], {"helpers": []}, *rows[3:]])
    read = read_rpw(path, chunk_rows=2)
    assert read.rows_read == 6
    # Header on row 1, rows 2-4, an empty row 5, then rows 6-8: rows[4] is on row 7.
    assert [r.line for r in read.rejected] == [7]


def _big_workbook(path: Path, rows: int) -> Path:
    """A 2016-2025 sheet of ``rows`` rows of the required columns, written straight as XML
    (xlsxwriter takes seconds per ten thousand rows)."""
    columns = [*REQUIRED_COLUMNS, "date"]
    names = "".join(f'<c t="inlineStr"><is><t>{c}</t></is></c>' for c in columns)
    values = {"period": "2024_1Q", "source_code": "USA", "destination_code": "MEX",
              "firm": "Firm", "firm_type": "Bank", "speed actual": "Same day",
              "cc1 lcu code": "USD", "cc2 lcu code": "USD", "transparent": "yes",
              "date": "15/Feb/2024"}

    def cell(col: str, r: int) -> str:
        if col == "id":
            return f"<c><v>{r}</v></c>"
        if col in values:
            return f'<c t="inlineStr"><is><t>{values[col]}</t></is></c>'
        return f"<c><v>{1 + r % 97 / 10}</v></c>"

    body = "".join(f'<row r="{r}">' + "".join(cell(c, r) for c in columns) + "</row>"
                   for r in range(2, rows + 2))
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", xlsx._CONTENT_TYPES)
        zf.writestr("_rels/.rels", xlsx._PACKAGE_RELS)
        zf.writestr("xl/workbook.xml", f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
                    f'<sheet name="{SHEET_NEW}" sheetId="1" r:id="rId1"/></sheets></workbook>')
        zf.writestr("xl/_rels/workbook.xml.rels", xlsx._WORKBOOK_RELS.format(extra=""))
        zf.writestr("xl/worksheets/sheet1.xml", f'<worksheet xmlns="{main}"><sheetData>'
                    f'<row r="1">{names}</row>{body}</sheetData></worksheet>')
    return path


# The peak is VmHWM, this process's own since its exec: ru_maxrss would keep the pytest
# process's size, from the fork that started it.
_PEAK = """
import json, re, sys
from pathlib import Path
from corridors.reading.rpw import RpwRead, iter_rpw
from corridors.frame import empty_quote_frame
read = RpwRead(path=sys.argv[1], frame=empty_quote_frame())
quotes = sum(f.height for _, f in iter_rpw(sys.argv[1], read, chunk_rows=5000, labels=False))
peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(json.dumps({"rows": read.rows_read, "quotes": quotes, "peak_mib": int(peak[1]) / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_reading_memory_does_not_grow_with_the_rows(tmp_path: Path) -> None:
    """Read chunk by chunk, 90,000 rows take no more memory than 10,000: within 40 MiB,
    where calamine reading the sheet whole grows by more than three times that
    (docs/indicators.md)."""
    peaks = {}
    for rows in (10_000, 90_000):
        path = _big_workbook(tmp_path / f"rows_{rows}.xlsx", rows)
        done = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        assert (got["rows"], got["quotes"]) == (rows, 2 * rows)
        peaks[rows] = got["peak_mib"]
    assert peaks[90_000] - peaks[10_000] < 40, peaks


def _rewrite_sheets(src: Path, dst: Path, change: Callable[[bytes], bytes]) -> Path:
    """``src`` with every worksheet's XML passed through ``change``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, change(data) if item.filename.startswith("xl/worksheets/")
                          else data)
    return dst


def test_a_prefixed_or_unnumbered_sheet_reads_the_same(workbook: Path, tmp_path: Path) -> None:
    """Writers other than Excel may put the sheet's elements under a prefix (``<x:row>``);
    a sheet whose rows have no row number cannot be cut and is read whole."""
    whole = read_rpw(workbook)

    def prefixed(xml: bytes) -> bytes:
        xml = re.sub(rb"<(/?)(?!\?)([A-Za-z]+)\b", rb"<\1x:\2", xml)
        return xml.replace(b'<x:worksheet xmlns="', b'<x:worksheet xmlns:x="', 1)

    def unnumbered(xml: bytes) -> bytes:
        return re.sub(rb'(<row\b[^>]*?) r="\d+"', rb"\1", xml)

    for change in (prefixed, unnumbered):
        path = _rewrite_sheets(workbook, tmp_path / f"{change.__name__}.xlsx", change)
        if change is prefixed:
            assert len(list(xlsx.chunks(path, SHEET_NEW, 5))) > 10
        else:
            with pytest.raises(xlsx.NotNumbered):
                next(xlsx.chunks(path, SHEET_NEW, 5))
        read = read_rpw(path, chunk_rows=5)
        assert_frame_equal(read.frame, whole.frame)
        assert read.rejected == whole.rejected
