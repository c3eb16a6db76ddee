"""Cut one worksheet of an xlsx workbook into small workbooks of a few rows each.

``read_excel`` (calamine, through fastexcel) builds the whole sheet in memory before the
first row can be used: for the World Bank's 2016-2025 RPW sheet (204,469 rows, 42 columns)
that is about 750 MiB at peak, more than all the rest of an import. Calamine has no row-by-row
reader, and one written in Python (expat) was several times slower than it on that sheet. So
the sheet's XML is read as it is inflated from the zip and cut at row ends, and each run of
rows becomes a workbook of its own, with the sheet's header row in front of it (renumbered
to stand just above the run, so that calamine's grid starts there) and the file's shared
strings, styles and date system beside it. Calamine reads each such workbook as it would
read the whole sheet, so every cell is the same text as before (numbers, dates, shared and
inline strings, errors), and what is held at a time is one run of rows.

The cut is made on the XML's bytes, not a parse of it: a row ends at ``</row>`` (with the
sheet's namespace prefix, if any), which cannot appear inside a cell's text, where ``<`` is
always escaped; only an XML comment or CDATA section holding that text would mislead it. A
sheet whose rows carry no row number (``<row r="…">``, which Excel and the writers in use
always write) cannot be renumbered: ``chunks`` says so and the caller reads the sheet whole.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.parsers import expat

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
#: expat's namespace separator: an element arrives as "<namespace> <local name>".
_SEP = " "
#: Name of the one sheet of each small workbook.
CHUNK_SHEET = "rows"

_SHEET_DATA = re.compile(rb"<(\w+:)?sheetData\b[^>]*?(/?)>")
_ROOT = re.compile(rb"<(\w+:)?worksheet\b[^>]*>")
_ROW_START = re.compile(rb"<(?:\w+:)?row\b[^>]*>")
_ROW_NUMBER = re.compile(rb"\sr=[\"'](\d+)[\"']")
_CELL_REF = re.compile(rb"(\sr=[\"'][A-Za-z]+)\d+([\"'])")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^>]*?\sref=[\"'][^\"']*?(\d+)[\"']")
_HAS_VALUE = re.compile(rb"<(?:\w+:)?(?:v|is)\b")


class XlsxError(Exception):
    """The file is not a workbook this reader can cut (not a zip, no such sheet, no sheet
    XML where the workbook says); the message says which."""


class NotNumbered(XlsxError):
    """The sheet's rows carry no row numbers: it cannot be cut (read it whole)."""


@dataclass(frozen=True)
class Chunk:
    """Rows of a sheet as a workbook of their own (sheet ``CHUNK_SHEET``): its first row
    is the sheet's header, numbered ``first_line - 1``; the sheet's row numbered
    ``first_line`` + i is the i-th row after it (rows without a value included)."""

    workbook: bytes
    first_line: int
    rows: int
    #: the data rows the whole sheet says it has (its ``<dimension>``), when it says so
    declared_rows: int | None = None


def sheet_names(path: str | Path) -> list[str]:
    """The workbook's sheet names, in its order."""
    with _open(path) as zf:
        return [name for name, _ in _sheets(zf)]


def chunks(path: str | Path, sheet: str, chunk_rows: int) -> Iterator[Chunk]:
    """The sheet's data rows, ``chunk_rows`` rows at a time, each run as a workbook with the
    header row in front (the last may hold fewer rows; a sheet with a header and no rows
    gives one chunk without rows; a sheet without a row with a value gives none).

    Raises NotNumbered (before yielding) when the rows have no row numbers.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    with _open(path) as zf:
        target = dict(_sheets(zf)).get(sheet)
        if target is None:
            raise XlsxError(f"no sheet {sheet!r}")
        book = _Book(zf)
        try:
            with zf.open(target) as fh:
                yield from _cut(fh, book, chunk_rows)
        except KeyError:
            raise XlsxError(f"sheet {sheet!r}: no part {target} in the zip") from None
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise XlsxError(f"sheet {sheet!r} not readable ({exc})") from None


def _cut(fh: IO[bytes], book: _Book, chunk_rows: int) -> Iterator[Chunk]:
    buf = b""
    while (found := _SHEET_DATA.search(buf)) is None:
        block = fh.read(1 << 16)
        if not block:
            return  # no sheetData: no rows
        buf += block
    root = _ROOT.search(buf, 0, found.start())
    if root is None:
        raise XlsxError("no <worksheet> element before <sheetData>")
    prefix = (found.group(1) or b"").decode()
    book.wrap(root.group(0), prefix)
    dimension = _DIMENSION.search(buf, root.end(), found.start())
    if dimension is not None:
        book.declared_rows = max(int(dimension.group(1)) - 1, 0)
    if found.group(2):
        return  # <sheetData/>
    row_end = f"</{prefix}row>".encode()
    buf = buf[found.end():]
    header: bytes | None = None
    header_line = 0
    rows: list[bytes] = []
    eof = False
    while True:
        # Complete rows in buf, up to chunk_rows of them.
        start = 0
        while len(rows) < chunk_rows:
            end = buf.find(row_end, start)
            if end < 0:
                break
            end += len(row_end)
            row = buf[start:end]
            start = end
            if header is None:
                if not _HAS_VALUE.search(row):
                    continue
                header, header_line = row, _line_of(row)
                continue
            rows.append(row)
        buf = buf[start:]
        if len(rows) >= chunk_rows or (eof and rows):
            assert header is not None  # rows come after it
            made = book.chunk(header, rows)
            rows = []  # not held beside the workbook made of them
            yield made
            continue
        if eof:
            break
        block = fh.read(1 << 22)
        if block:
            buf += block
        else:
            eof = True
    if header is not None and header_line and not book.given:
        yield book.chunk(header, [])


def _line_of(row: bytes) -> int:
    """The row number of a ``<row r="…">`` element."""
    start = _ROW_START.search(row)
    number = _ROW_NUMBER.search(start.group(0)) if start else None
    if number is None:
        raise NotNumbered("rows without a row number (<row r=...>)")
    return int(number.group(1))


class _Book:
    """The parts every small workbook of a sheet shares, and how to make one."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        part = _workbook_part(zf)
        rels = _relationships(zf, part)
        self.parts: dict[str, bytes] = {}
        for kind, name in (("styles", "styles.xml"), ("sharedStrings", "sharedStrings.xml")):
            target = next((t for k, t in rels.values() if k.endswith("/" + kind)), None)
            if target is not None and target in zf.namelist():
                self.parts[name] = zf.read(target)
        self.date1904 = _is_1904(zf, part)
        self.root = b""
        self.prefix = ""
        self.given = False
        self.declared_rows: int | None = None

    def wrap(self, root: bytes, prefix: str) -> None:
        self.root, self.prefix = root, prefix

    def chunk(self, header: bytes, rows: list[bytes]) -> Chunk:
        """A workbook of ``header`` (renumbered to stand just above ``rows``) and
        ``rows``."""
        self.given = True
        first = _line_of(rows[0]) if rows else _line_of(header) + 1
        above = str(first - 1).encode()
        start = _ROW_START.search(header)
        assert start is not None
        opening = _ROW_NUMBER.sub(b' r="' + above + b'"', start.group(0), count=1)
        head = opening + _CELL_REF.sub(rb"\g<1>" + above + rb"\g<2>", header[start.end():])
        p = self.prefix
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
            zf.writestr("_rels/.rels", _PACKAGE_RELS)
            date1904 = '<workbookPr date1904="1"/>' if self.date1904 else ""
            zf.writestr("xl/workbook.xml", _WORKBOOK.format(date1904=date1904))
            zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS.format(extra="".join(
                _PART_REL.format(n=i, kind=name.removesuffix(".xml"), target=name)
                for i, name in enumerate(self.parts, start=2))))
            for name, data in self.parts.items():
                zf.writestr(f"xl/{name}", data)
            # Row by row into the zip: the rows are not copied into one string first.
            with zf.open("xl/worksheets/sheet1.xml", "w") as sheet:
                sheet.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n')
                sheet.write(self.root + f"<{p}sheetData>".encode() + header[:start.start()])
                sheet.write(head)
                for row in rows:
                    sheet.write(row)
                sheet.write(f"</{p}sheetData></{p}worksheet>".encode())
        return Chunk(out.getvalue(), first, len(rows), self.declared_rows)


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
_PACKAGE_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<workbook xmlns="{_MAIN}" xmlns:r="{_OFFICE_REL}">{{date1904}}<sheets>'
    f'<sheet name="{CHUNK_SHEET}" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
    f'Type="{_OFFICE_REL}/worksheet" Target="worksheets/sheet1.xml"/>{{extra}}'
    '</Relationships>')
_PART_REL = f'<Relationship Id="rId{{n}}" Type="{_OFFICE_REL}/{{kind}}" Target="{{target}}"/>'


# --- the workbook's parts --------------------------------------------------------------------


def _open(path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise XlsxError(f"not an xlsx workbook ({exc})") from None


def _parse_part(zf: zipfile.ZipFile, name: str, start: Callable[[str, dict[str, str]], None],
                end: Callable[[str], None] | None = None,
                chars: Callable[[str], None] | None = None) -> None:
    p = expat.ParserCreate(namespace_separator=_SEP)
    p.buffer_text = True
    p.StartElementHandler = start
    if end is not None:
        p.EndElementHandler = end
    if chars is not None:
        p.CharacterDataHandler = chars
    try:
        with zf.open(name) as fh:
            p.ParseFile(fh)
    except expat.ExpatError as exc:
        raise XlsxError(f"{name}: XML not readable ({exc})") from None


def _relationships(zf: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """A part's relationships (``_rels/<part>.rels``): id → (type, the part it names, as a
    path inside the zip); none when it has no such file."""
    folder, base = posixpath.split(part)
    rels: dict[str, tuple[str, str]] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == _PKG_REL + _SEP + "Relationship" and "Id" in attrs:
            target = attrs.get("Target", "")
            rels[attrs["Id"]] = (attrs.get("Type", ""), target.lstrip("/") if target.startswith(
                "/") else posixpath.normpath(posixpath.join(folder, target)))

    with contextlib.suppress(KeyError):
        _parse_part(zf, posixpath.join(folder, "_rels", base + ".rels"), start)
    return rels


def _workbook_part(zf: zipfile.ZipFile) -> str:
    found = [target for kind, target in _relationships(zf, "").values()
             if kind.endswith("/officeDocument")]
    return found[0] if found else "xl/workbook.xml"


def _sheets(zf: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, the part holding it), in the workbook's order."""
    part = _workbook_part(zf)
    rels = _relationships(zf, part)
    sheets: list[tuple[str, str]] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == _MAIN + _SEP + "sheet":
            rid = attrs.get(_OFFICE_REL + _SEP + "id", "")
            if rid in rels:
                sheets.append((attrs.get("name", ""), rels[rid][1]))

    try:
        _parse_part(zf, part, start)
    except KeyError:
        raise XlsxError("no workbook part (xl/workbook.xml)") from None
    return sheets


def _is_1904(zf: zipfile.ZipFile, part: str) -> bool:
    """Whether the workbook counts dates from 1904 (``<workbookPr date1904="1">``)."""
    found: list[bool] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == _MAIN + _SEP + "workbookPr":
            found.append(attrs.get("date1904", "0").lower() in ("1", "true"))

    _parse_part(zf, part, start)
    return bool(found and found[0])
