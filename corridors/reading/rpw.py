"""Parse World Bank Remittance Prices Worldwide (RPW) files into the quote frame.

No database here: ``read_rpw`` turns the CSV (plain or gzip) or the full xlsx workbook into
``corridors.frame`` rows, and reports what it could not take. The store-side import lives
in ``collector.rpw_import``; ``sendcost indicators --from-file`` and the bulletin use this
directly (``bundled_rpw_path``: the 2011-2014 file bundled in corridors/data).

Decisions, each one a place where RPW's file says less than the quote frame asks:

* Each RPW row is one *service* and gives two quotes: USD 200 from the ``cc1`` columns and
  USD 500 from ``cc2``. A price point with no amount, or with no fee, rate and total at all,
  was not priced and gives no quote.
* RPW's own ``cc1 fx margin`` and ``cc1 total cost %`` are kept in ``fx_margin_reported`` and
  ``total_cost_reported``. In 2011Q1-2014Q2 thousands of rows have fee fields that do not add
  up to the published total (margins are rounded to 2 decimals, and some fees are plainly
  inconsistent); the published total reproduces all 412 official 2011 corridor averages,
  recomputing fee % + margin misses 7 of them. See docs/indicators.md.
* A non-transparent service's margin is stored by RPW as 0 meaning "unknown": margin, total
  and the applied rate become null; the fee (which was disclosed) is kept.
* Structural damage (bad gzip, truncated file, a record with the wrong number of fields,
  missing required columns) raises ``ImportFileError`` naming the line: nothing is returned.
* A row is rejected only when a field an indicator uses is unusable (a missing id, period,
  country, firm, firm type or transparency; a number that is not one; a period that is not
  a quarter or lies more than three years from the row's own date), with line, column and
  value. Descriptive labels (firm type, speed, payment instrument, access point, pick-up
  method and location, network coverage) never reject a row: they are matched regardless
  of case and spacing, "A,B" is the set {A, B}, every label is kept verbatim in
  ``RpwRead.labels``, and one sendcost does not know is counted per label
  (``unknown_labels``); an unknown firm type counts as "other".
* RPW has no pay-out currency column; about a quarter of its rows say it in free-text notes
  (``note1``/``note2``, the workbook's ``Standard Note``): "USD service", "This RSP sends EUR
  and pays out USD in this corridor", "pays out LCU" (the receiving country's currency of the
  time). ``payout_currency_noted`` is the first currency a note names (``PAYOUT_NOTES``), read
  here once for every user of the file: the importer stores it beside each quote, the API and
  the sandbox read it. A code that is no currency of a country today (a typo such as "SGP")
  names nothing. It is what the note says changes hands, not always the unit of the row's
  amounts (publish/receive.py tells the two apart).
* A pick-up location naming a post office makes the pay-out ``post_office`` (the post as
  the receiving end; ``metrics.postal.post_role``), whatever the pick-up method.
* Numbers may be text, with thousands separators or a percent sign ("5.2%"). World Bank
  country codes that are not ISO's (``KSV``) are mapped (``corridors.reference``). The
  workbook's own region, income and G8/G20 columns become ``RpwRead.classifications``.
* Line numbers are the file's: the header is line 1 (in a workbook, the sheet's row number).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from corridors.errors import BadPeriod, ImportFileError
from corridors.frame import QUOTE_FRAME_SCHEMA, conform, empty_quote_frame
from corridors.periods import parse_period
from corridors.reading import xlsx
from corridors.types import (
    ACCESS_POINT_FROM_RPW,
    FIRM_TYPE_FROM_RPW,
    PAY_IN_FROM_RPW,
    PAYOUT_FROM_RPW,
    SPEED_FROM_RPW,
    FirmType,
    PayOut,
)

log = logging.getLogger(__name__)

#: The World Bank's 2011Q1-2014Q2 RPW extract bundled in corridors/data (RPW_README.md).
BUNDLED_RPW = "rpw_quotes_2011Q1_2014Q2.csv.gz"

SHEET_UP_TO_2016Q1 = "Dataset (up to Q1 2016)"
SHEET_FROM_2016Q2 = "Dataset (from Q2 2016)"

#: Columns without which no row can be read (both file forms have them).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "id", "period", "source_code", "destination_code", "firm", "firm_type", "speed actual",
    "cc1 lcu amount", "cc1 lcu code", "cc1 lcu fee", "cc1 lcu fx rate", "cc1 fx margin",
    "cc1 total cost %",
    "cc2 lcu amount", "cc2 lcu code", "cc2 lcu fee", "cc2 lcu fx rate", "cc2 fx margin",
    "cc2 total cost %",
    "inter lcu bank fx", "transparent",
)

#: Rows of a file read at a time (``iter_rpw``): with the workbook's shared strings, what a
#: read holds besides its results. Each chunk costs a read of the shared strings, and a
#: bigger one more memory without being faster (docs/indicators.md has the figures).
CHUNK_ROWS = 10_000

#: The order of a sheet's quotes in ``read_rpw``'s frame.
_QUOTE_ORDER = ("period", "source_code", "destination_code", "service_id", "amount_usd")

#: RPW currency labels that are not ISO 4217 codes, mapped explicitly.
CURRENCY_FROM_RPW: dict[str, str] = {"CFA": "XOF"}

#: RPW's free-text note columns, in the order they are read (the CSV's two, the workbook's).
NOTE_COLUMNS = ("note1", "note2", "standard note")
#: Notes naming the currency a service pays out in, tried in this order on each note (the
#: first group: a code; "LCU" is the receiving country's currency).
PAYOUT_NOTES = (r"pays? ?out (?:in )?([A-Z]{3})\b",
                r"(?i)^\s*([A-Z]{3}) service\b",
                r"sends ([A-Z]{3}) in this corridor")

_NUMERIC = ("lcu amount", "lcu fee", "lcu fx rate", "fx margin", "total cost %")
_COUNTRY = re.compile(r"^[A-Z]{3}$")
_DATE_FORMATS = ("%d/%b/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d/%m/%Y")
#: A header cell left empty: "__UNNAMED__7" (calamine), "" or "_duplicated_0" (Polars' CSV).
_HELPER_COLUMN = re.compile(r"^(__UNNAMED__\d+|_duplicated_\d+|)$")

#: How far a row's period may lie from its own collection date. In the 2011-2014 data the
#: World Bank re-used services with their old date for up to ten quarters (one row of
#: 2011_1Q is dated July 2013; one of 2013_1Q January 2011): three years keeps all of them
#: and still catches a typed period such as 2099_1Q.
PERIOD_DATE_TOLERANCE_DAYS = 3 * 366

#: The file's own classification of a country in a period (``RpwRead.classifications``).
CLASSIFICATION_SCHEMA: dict[str, pl.DataType] = {
    "period": pl.String(), "alpha3": pl.String(), "region": pl.String(),
    "income_group": pl.String(), "g8": pl.Boolean(), "g20": pl.Boolean()}


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row left out, with the file line it came from and why (the first unusable field's
    column, value and kind of reason; ``reason`` lists every one)."""

    line: int
    reason: str
    sheet: str | None = None
    column: str | None = None
    value: str | None = None
    kind: str = ""


@dataclass
class RpwRead:
    """What ``read_rpw`` got out of a file."""

    path: str
    frame: pl.DataFrame  # exactly corridors.frame.QUOTE_FRAME_SCHEMA
    rejected: list[RejectedRow] = field(default_factory=list)
    #: column → label (verbatim, one part of a combined label) → rows: labels sendcost
    #: does not know, and country codes outside its classification; their rows are kept
    unknown_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    #: service_id and every descriptive column, each a sorted set of its labels, verbatim
    labels: pl.DataFrame = field(default_factory=pl.DataFrame)
    #: the file's own classification: CLASSIFICATION_SCHEMA (empty for the 2011-2014 CSV)
    classifications: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=CLASSIFICATION_SCHEMA))
    #: header-less helper columns that held values (ignored)
    helper_columns: set[str] = field(default_factory=set)
    rows_read: int = 0  # RPW rows (services) in the file
    rows_kept: int = 0  # RPW rows that gave at least one quote
    quote_count: int = 0  # quotes the rows gave (``frame``'s rows, when it holds them all)
    #: rows the file says it has, as far as it was read (a sheet's <dimension>, a CSV's
    #: rows), for progress; rows_read is what it had
    rows_declared: int = 0
    label_frames: list[pl.DataFrame] = field(default_factory=list, repr=False)

    @property
    def quotes(self) -> int:
        return self.quote_count

    @property
    def rejected_share(self) -> float:
        return len(self.rejected) / self.rows_read if self.rows_read else 0.0

    def rejected_by_kind(self) -> list[tuple[str, int]]:
        """(kind of reason and column, rows), most frequent first."""
        counts = Counter(f"{r.kind}: {r.column}" for r in self.rejected)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    def report(self) -> list[str]:
        """What the read did, for standard error: rows read, used, rejected by reason, the
        first rejected lines, and each unknown label once with its rows."""
        out = [f"{self.path}: {self.rows_read:,} rows read, {self.rows_kept:,} used "
               f"({self.quotes:,} quotes), {len(self.rejected):,} rejected"
               f" ({self.rejected_share:.1%})"]
        idle = self.rows_read - self.rows_kept - len(self.rejected)
        if idle:
            # Neither price point priced, or a service id a row before already had.
            out.append(f"  not used, no price at USD 200 or 500 (or a repeated service): "
                       f"{idle:,} rows")
        for kind, rows in self.rejected_by_kind():
            out.append(f"  rejected, {kind}: {rows:,} rows")
        for r in self.rejected[:10]:
            where = f"sheet {r.sheet!r} " if r.sheet else ""
            out.append(f"    {where}line {r.line}, column {r.column!r}, value {r.value!r}: "
                       f"{r.reason}")
        if len(self.rejected) > 10:
            out.append(f"    … and {len(self.rejected) - 10:,} more rejected rows")
        for col in sorted(self.unknown_labels):
            for label, rows in sorted(self.unknown_labels[col].items(),
                                      key=lambda kv: (-kv[1], kv[0])):
                what = ("country code not in the classification"
                        if col in ("source_code", "destination_code") else "unknown label")
                out.append(f"  {what} in {col!r}: {label!r} on {rows:,} rows (kept)")
        if self.helper_columns:
            out.append(f"  ignored {len(self.helper_columns)} helper column(s) without a "
                       "header")
        return out

    def check_rejected_share(self, max_share: float) -> None:
        """Raise ImportFileError when more than ``max_share`` of the rows were rejected (or
        the file has no rows): such a file is not to be used in part."""
        if self.rows_read == 0:
            raise ImportFileError("no data rows", path=self.path)
        if self.rejected_share > max_share:
            top = ", ".join(f"{kind} ({rows:,})" for kind, rows in self.rejected_by_kind()[:3])
            raise ImportFileError(
                f"{len(self.rejected):,} of {self.rows_read:,} rows rejected "
                f"({self.rejected_share:.1%}), more than the {max_share:.1%} allowed "
                f"(import.max_rejected_share): {top}; nothing used", path=self.path)


def read_rpw(path: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> RpwRead:
    """Read an RPW file (``.csv``, ``.csv.gz`` or ``.xlsx``) into the quote frame.

    Raises ImportFileError, naming the line, when the file is corrupt or truncated.
    """
    p = Path(path)
    result = RpwRead(path=str(p), frame=empty_quote_frame())
    sheets: dict[str | None, list[pl.DataFrame]] = {}
    for sheet, frame in iter_rpw(p, result, chunk_rows=chunk_rows):
        sheets.setdefault(sheet, []).append(frame)
    # Each sheet's quotes in one order, whatever the chunks were.
    frames = [pl.concat(parts, how="vertical").sort(*_QUOTE_ORDER)
              for parts in sheets.values()]
    result.frame = pl.concat(frames, how="vertical") if frames else empty_quote_frame()
    log.info("read %s: %d rows, %d quotes, %d rows rejected", p, result.rows_read,
             result.quotes, len(result.rejected))
    return result


def iter_rpw(path: str | Path, result: RpwRead, *, chunk_rows: int = CHUNK_ROWS,
             labels: bool = True) -> Iterator[tuple[str | None, pl.DataFrame]]:
    """Read an RPW file ``chunk_rows`` rows at a time: (sheet, quote-frame rows of those
    rows) for each chunk, the sheet None for a CSV file. What the whole read found (rows
    read and used, rejected rows, unknown labels, the file's classifications, and, with
    ``labels``, the verbatim label sets) is in ``result`` once the iterator is exhausted;
    ``result.frame`` is left as it is.

    What it holds at a time is one chunk of the file's rows and their quotes, besides the
    workbook's shared strings and what ``result`` collects; a CSV file is read whole first.
    Raises ImportFileError, naming the line, when the file is corrupt or truncated: rows
    of it may have been handed out by then.
    """
    p = Path(path)
    if p.suffix.lower() in (".xlsx", ".xlsm"):
        sheets: Iterable[tuple[str | None, Iterator[tuple[pl.DataFrame, int | None]]]] = (
            _workbook_sheets(p, chunk_rows))
    else:
        sheets = [(None, _csv_chunks(p, chunk_rows))]
    service_ids: list[pl.Series] = []
    counts: list[pl.DataFrame] = []
    for sheet, chunks in sheets:
        for i, (raw, declared) in enumerate(chunks):
            if i == 0:
                result.rows_declared += declared or 0
            out = _parse_sheet(raw, sheet, str(p), result, labels=labels,
                               classification_counts=counts)
            result.quote_count += out.height
            service_ids.append(out["service_id"].unique())
            yield sheet, out
    result.rows_kept = (pl.concat(service_ids).n_unique() if service_ids else 0)
    result.rejected.sort(key=lambda r: (r.sheet or "", r.line))
    if result.label_frames:
        result.labels = pl.concat(result.label_frames, how="diagonal")
    result.classifications = _classifications(counts)
    result.label_frames = []


# --- reading the bytes -----------------------------------------------------------------------


def _read_csv_text(path: Path) -> pl.DataFrame:
    """The CSV as a frame of strings, after checking its structure record by record."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise ImportFileError("no such file", path=str(path)) from None
    except (OSError, EOFError, zlib.error) as exc:
        # gzip says "Compressed file ended before the end-of-stream marker was reached" for a
        # truncated download: pass its words on.
        raise ImportFileError(f"not a readable gzip file ({exc})", path=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(f"not UTF-8 text ({exc.reason})", line=line,
                              path=str(path)) from None
    if not text.strip():
        raise ImportFileError("empty file", path=str(path))

    # Polars would fill a short record with nulls; a record with a wrong field count is a cut
    # or corrupt file, not a row to guess at.
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    _check_columns(header, str(path), None)
    width = len(header)
    for record in reader:
        if len(record) != width and record:
            raise ImportFileError(
                f"record has {len(record)} fields, the header has {width} "
                "(truncated or corrupt file)", line=reader.line_num, path=str(path))
    if not text.endswith("\n") and text.count("\n") >= 1:
        # A last record cut exactly at a field boundary still has the right field count.
        last = text.rsplit("\n", 1)[1]
        if last and not _looks_complete(last, header):
            raise ImportFileError("last record is cut short (truncated file)",
                                  line=text.count("\n") + 1, path=str(path))
    # Header cells left empty (the 2025_3Q helper columns) get a name of their own, so that
    # several of them do not collide.
    names = [h if h.strip() else f"__UNNAMED__{i}" for i, h in enumerate(header)]
    try:
        return pl.read_csv(text.encode(), infer_schema=False, new_columns=names)
    except pl.exceptions.PolarsError as exc:
        raise ImportFileError(f"CSV not readable ({exc})", path=str(path)) from None


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[pl.DataFrame, int | None]]:
    """The CSV's rows, ``chunk_rows`` at a time, each with its ``_line`` (the header is
    line 1), and the rows of the file."""
    frame = _read_csv_text(path)
    frame = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias("_line"))
    if frame.height == 0:
        yield frame, 0
        return
    for part in frame.iter_slices(chunk_rows):
        yield part, frame.height


def _looks_complete(last: str, header: list[str]) -> bool:
    """A final line with no newline is complete when its last field (`corridor`) is whole."""
    fields = next(csv.reader([last]))
    if len(fields) != len(header):
        return False
    if header[-1] == "corridor":
        return len(fields[-1]) == 6
    return True


def _workbook_sheets(path: Path, chunk_rows: int
                     ) -> list[tuple[str | None, Iterator[tuple[pl.DataFrame, int | None]]]]:
    """Both dataset sheets of the full RPW workbook, each as frames of strings of
    ``chunk_rows`` rows with their ``_line`` (``corridors.reading.xlsx``: row by row, never
    the whole sheet)."""
    try:
        names = xlsx.sheet_names(path)
    except FileNotFoundError:
        raise ImportFileError("no such file", path=str(path)) from None
    except xlsx.XlsxError as exc:
        raise ImportFileError(f"not a readable xlsx workbook ({exc})", path=str(path)) from None
    wanted = [s for s in (SHEET_UP_TO_2016Q1, SHEET_FROM_2016Q2) if s in names]
    if not wanted:
        raise ImportFileError(
            f"no RPW dataset sheet: expected {SHEET_UP_TO_2016Q1!r} and/or "
            f"{SHEET_FROM_2016Q2!r}, found {names}", path=str(path))
    return [(sheet, _sheet_chunks(path, sheet, chunk_rows)) for sheet in wanted]


def _sheet_chunks(path: Path, sheet: str, chunk_rows: int
                  ) -> Iterator[tuple[pl.DataFrame, int | None]]:
    header = False
    try:
        for chunk in xlsx.chunks(path, sheet, chunk_rows):
            # All as text: the workbook mixes numbers, text and datetimes in one column.
            frame = pl.read_excel(chunk.workbook, sheet_name=xlsx.CHUNK_SHEET,
                                  engine="calamine", infer_schema_length=0,
                                  drop_empty_rows=False)
            if not header:
                _check_columns(frame.columns, str(path), sheet)
                header = True
            frame = frame.with_columns(pl.int_range(chunk.first_line,
                                                    chunk.first_line + frame.height,
                                                    dtype=pl.Int64).alias("_line"))
            # A row without a value is no row (as read_excel leaves it out).
            yield (frame.filter(~pl.all_horizontal(pl.exclude("_line").is_null())),
                   chunk.declared_rows)
    except xlsx.NotNumbered:
        yield _whole_sheet(path, sheet), None
        return
    except xlsx.XlsxError as exc:
        raise ImportFileError(f"sheet {sheet!r} not readable ({exc})", path=str(path)) from None
    except Exception as exc:  # fastexcel raises its own error types for broken xml
        raise ImportFileError(f"sheet {sheet!r} not readable ({exc})",
                              path=str(path)) from None
    if not header:
        raise ImportFileError(f"sheet {sheet!r} not readable (no rows)", path=str(path))


def _whole_sheet(path: Path, sheet: str) -> pl.DataFrame:
    """A sheet whose rows carry no row numbers, read whole (lines counted from 2)."""
    try:
        frame = pl.read_excel(path, sheet_name=sheet, engine="calamine",
                              infer_schema_length=0)
    except Exception as exc:
        raise ImportFileError(f"sheet {sheet!r} not readable ({exc})",
                              path=str(path)) from None
    _check_columns(frame.columns, str(path), sheet)
    return frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias("_line"))


def _check_columns(header: list[str], path: str, sheet: str | None) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        where = f"sheet {sheet!r}: " if sheet else ""
        raise ImportFileError(f"{where}missing required column(s) {missing}", line=1, path=path)


# --- rows into quotes ------------------------------------------------------------------------


def _first_present(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    return next((c for c in aliases if c in columns), None)


def bundled_rpw_path() -> Path:
    """The bundled 2011Q1-2014Q2 RPW file (``BUNDLED_RPW``)."""
    from corridors.reference import data_file

    return data_file(BUNDLED_RPW)


@functools.lru_cache(maxsize=1)
def _bundled_firms() -> tuple[frozenset[str], dict[str, str]]:
    """The firm names of the bundled 2011-2014 file, and for each name's matching key
    (``_norm``) its most frequent spelling there."""
    data = gzip.decompress(bundled_rpw_path().read_bytes())
    counts = Counter(row["firm"] for row in csv.DictReader(io.StringIO(data.decode())))
    spelling: dict[str, str] = {}
    for name, _ in counts.most_common():
        spelling.setdefault(_norm(name), name)
    return frozenset(counts), spelling


@functools.lru_cache(maxsize=4096)
def canonical_firm(name: str) -> str:
    """A firm's name as a service's identity takes it: as the bundled 2011-2014 file writes
    it when that file has it (in any case or spacing: "WESTERN  UNION" is its "Western
    Union"), else with its spaces collapsed. A name of the bundled file is itself, so the
    services already stored keep their keys."""
    names, spelling = _bundled_firms()
    if name in names:
        return name
    return spelling.get(_norm(name), " ".join(name.split()))


def _norm(label: str) -> str:
    """A label's key for matching: RPW writes one label in several cases and spacings."""
    return " ".join(label.split()).casefold()


@dataclass(frozen=True, slots=True)
class LabelField:
    """A descriptive RPW column: mapped to a quote-frame field where sendcost has one, and
    kept verbatim (as a set of its comma-separated parts) in ``RpwRead.labels``.

    None of these feeds the arithmetic of an indicator, so a label never rejects a row: an
    unknown one leaves the field null (or ``unknown_as``) and is counted per label.
    """

    target: str | None  # quote-frame column, or None: kept in ``labels`` only
    aliases: tuple[str, ...]  # the column's names in the two sheets (first found wins)
    table: Mapping[str, object] | None = None
    split: bool = True  # "A,B" is a set of labels (the first known one gives the field)
    unknown_as: object = None

    def lookup(self) -> dict[str, object]:
        return {_norm(k): v for k, v in (self.table or {}).items()}


LABEL_FIELDS: tuple[LabelField, ...] = (
    LabelField("firm_type", ("firm_type",), FIRM_TYPE_FROM_RPW, split=False,
               unknown_as=FirmType.OTHER),
    LabelField("speed", ("speed actual",), SPEED_FROM_RPW, split=False),
    LabelField("pay_in", ("payment instrument",), PAY_IN_FROM_RPW),
    LabelField("access_point", ("sending location", "access point"), ACCESS_POINT_FROM_RPW),
    LabelField("pay_out", ("pick-up method", "pickup method"), PAYOUT_FROM_RPW),
    LabelField(None, ("pickup location",)),
    LabelField(None, ("receiving network coverage", "coverage")),
)


def _map_labels(field_: LabelField, counts: Mapping[str, int]
                ) -> tuple[dict[str, str | None], dict[str, int]]:
    """Each distinct label → the field's value; and unknown label parts → rows."""
    lookup = field_.lookup()
    mapped: dict[str, str | None] = {}
    unknown: dict[str, int] = {}
    for label, rows in counts.items():
        parts = [p.strip() for p in label.split(",")] if field_.split else [label]
        value: object = None
        missed = False
        for part in (p for p in parts if p):
            key = _norm(part)
            if key not in lookup:
                unknown[part] = unknown.get(part, 0) + rows
                missed = True
            elif value is None:
                value = lookup[key]
        if value is None and missed:
            value = field_.unknown_as
        mapped[label] = None if value is None else str(value)
    return mapped, unknown


def _label_sets(col: str) -> pl.Expr:
    """A label column as the sorted set of its comma-separated parts, verbatim."""
    return (pl.col(col).str.split(",")
            .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            .list.unique().list.sort().alias(col))


@dataclass(frozen=True, slots=True)
class _Check:
    """One way a row's indicator field can be unusable."""

    kind: str  # the reason, for counting ("not a number")
    column: str  # the column it names
    bad: pl.Expr  # true on a row that fails
    message: pl.Expr  # the reason for one row, with its value


def _checks(raw: pl.DataFrame, numbers: Mapping[str, pl.Expr], periods: Mapping[str, str],
            collected: pl.Expr) -> list[_Check]:
    def present(col: str) -> pl.Expr:
        return pl.col(col).is_not_null() & (pl.col(col) != "")

    checks = [_Check("missing value", col, ~present(col), pl.lit(f"missing {col}"))
              for col in ("id", "period", "source_code", "destination_code", "firm",
                          "firm_type", "transparent")]
    for col in ("source_code", "destination_code"):
        checks.append(_Check(
            "not a country code", col,
            present(col) & ~pl.col(col).str.contains(_COUNTRY.pattern),
            pl.format(f"{col} {{}} is not an ISO alpha-3 code", pl.col(col))))
    checks.append(_Check(
        "not yes or no", "transparent",
        present("transparent") & ~pl.col("transparent").str.to_lowercase().is_in(["yes", "no"]),
        pl.format("transparent must be yes or no, not {}", pl.col("transparent"))))
    for col, expr in numbers.items():
        checks.append(_Check("not a number", col, present(col) & expr.is_null(),
                             pl.format(f"{col} is not a number: {{}}", pl.col(col))))
    checks.append(_Check(
        "not a period", "period", present("period") & ~pl.col("period").is_in(list(periods)),
        pl.format("period {} is not a quarter like 2011_1Q", pl.col("period"))))
    # A period years away from the row's own collection date is a typo, not a survey round.
    starts = {label: parse_period(p).start.replace(tzinfo=None) for label, p in periods.items()}
    start = pl.col("period").replace_strict(starts, default=None, return_dtype=pl.Datetime("us"))
    apart = (collected.dt.replace_time_zone(None) - start).abs()
    checks.append(_Check(
        "period does not match date", "period",
        start.is_not_null() & collected.is_not_null()
        & (apart > pl.duration(days=PERIOD_DATE_TOLERANCE_DAYS)),
        pl.format("period {} is more than 3 years from the row's date {}",
                  pl.col("period"), pl.col("_date"))))
    return checks


def _classification_counts(raw: pl.DataFrame, period: pl.Expr) -> pl.DataFrame | None:
    """The file's own classification of each country in each period as these rows say it
    (the 2016-2025 sheet's ``source_region``, ``destination_income``, ``source_G8G20``…):
    rows per period, country and classification; "..", blank or an unknown name is null
    (not known), so the bundled classification stands there. None: no such column."""
    from corridors.reference import INCOME_FROM_WB_NAME, REGION_FROM_WB_NAME

    def named(col: str, table: Mapping[str, str]) -> pl.Expr:
        if col not in raw.columns:
            return pl.lit(None, pl.String)
        return (pl.col(col).str.to_lowercase().str.replace_all(r"\s+", " ")
                .replace_strict(table, default=None, return_dtype=pl.String))

    sides = []
    for side, code in (("source", "source_code"), ("destination", "destination_code")):
        cols = [f"{side}_region", f"{side}_income", f"{side}_G8G20"]
        if not any(c in raw.columns for c in cols):
            continue
        g = f"{side}_G8G20"
        group = pl.col(g) if g in raw.columns else pl.lit(None, pl.String)
        # ".." is "not applicable" (on most receiving rows): it leaves the bundled
        # membership, as a blank does; "G20" and "G8/G20" say which groups.
        known = group.is_not_null() & ~group.is_in(["", ".."])
        sides.append(raw.select(
            period.alias("period"), pl.col(code).alias("alpha3"),
            named(f"{side}_region", REGION_FROM_WB_NAME).alias("region"),
            named(f"{side}_income", INCOME_FROM_WB_NAME).alias("income_group"),
            pl.when(known).then(group.str.contains("G8")).alias("g8"),
            pl.when(known).then(group.str.contains("G20")).alias("g20")))
    if not sides:
        return None
    return (pl.concat(sides).filter(pl.col("period").is_not_null())
            .group_by("period", "alpha3", "region", "income_group", "g8", "g20")
            .agg(pl.len().alias("rows")))


def _classifications(counts: list[pl.DataFrame]) -> pl.DataFrame:
    """Each country's classification in each period: per field, the value most rows give
    (the smallest of equally frequent ones), from ``_classification_counts`` of every
    chunk; null where no row gives one."""
    if not counts:
        return pl.DataFrame(schema=CLASSIFICATION_SCHEMA)
    rows = pl.concat(counts)
    out = rows.select("period", "alpha3").unique()
    for col in ("region", "income_group", "g8", "g20"):
        mode = (rows.filter(pl.col(col).is_not_null())
                .group_by("period", "alpha3", col).agg(pl.col("rows").sum())
                .sort("rows", col, descending=[True, False])
                .group_by("period", "alpha3", maintain_order=True).first()
                .select("period", "alpha3", col))
        out = out.join(mode, on=["period", "alpha3"], how="left")
    return out.sort("period", "alpha3").cast(CLASSIFICATION_SCHEMA)  # type: ignore[arg-type]


def _parse_sheet(raw: pl.DataFrame, sheet: str | None, path: str, result: RpwRead, *,
                 labels: bool, classification_counts: list[pl.DataFrame]) -> pl.DataFrame:
    """One chunk of a sheet's rows (strings, with their ``_line``) into quote-frame rows,
    sorted by ``_QUOTE_ORDER``; what it rejected and found unknown goes into ``result``
    (the verbatim label sets too, with ``labels``), its rows per classification into
    ``classification_counts``."""
    from corridors.reference import WB_COUNTRY_CODES, countries

    # The 2025_3Q rows carry five helper columns without a header (years, "USA2025"…):
    # no field of RPW's, dropped by name.
    helpers = [c for c in raw.columns if _HELPER_COLUMN.match(c)]
    if helpers:
        filled = [c for c in helpers if raw[c].drop_nulls().len()]
        if filled:
            result.helper_columns.update(filled)
        raw = raw.drop(helpers)
    n = raw.height
    result.rows_read += n
    if n == 0:
        return empty_quote_frame()
    cols = raw.columns
    # Strings everywhere; strip stray spaces so "yes " and "yes" are one label.
    raw = raw.with_columns(pl.exclude("_line").cast(pl.String).str.strip_chars())
    # World Bank country codes that are not ISO's (KSV for Kosovo) name one country.
    raw = raw.with_columns(pl.col("source_code", "destination_code").replace(WB_COUNTRY_CODES))
    # One firm, one name: the name is part of a service's identity, and the full workbook
    # writes some firms otherwise than the bundled 2011-2014 file does for the same quotes.
    firms = raw["firm"].drop_nulls().unique().to_list()
    raw = raw.with_columns(pl.col("firm").replace(
        {name: canonical_firm(name) for name in firms if canonical_firm(name) != name}))

    # Numbers: thousands separators and a percent sign ("5.2%") are read as the number.
    num_cols = [f"{cc} {suffix}" for cc in ("cc1", "cc2") for suffix in _NUMERIC]
    num_cols.append("inter lcu bank fx")
    numbers = {c: pl.col(c).str.replace_all(",", "").str.strip_suffix("%").str.strip_chars()
               .cast(pl.Float64, strict=False) for c in num_cols}

    # Periods: parse each distinct value once.
    periods: dict[str, str] = {}
    for value in raw["period"].drop_nulls().unique().to_list():
        with contextlib.suppress(BadPeriod):
            periods[value] = str(parse_period(value))
    date_col = _first_present(cols, ("date",))
    raw = raw.with_columns((pl.col(date_col) if date_col else pl.lit(None, pl.String))
                           .alias("_date"))
    collected = pl.coalesce([pl.col("_date").str.strptime(pl.Datetime("us"), f, strict=False)
                             for f in _DATE_FORMATS]).dt.replace_time_zone("UTC")

    checks = _checks(raw, numbers, periods, collected)
    checked = raw.with_columns(
        pl.concat_list([pl.when(c.bad).then(c.message) for c in checks]).list.drop_nulls()
        .alias("_reasons"),
        pl.min_horizontal([pl.when(c.bad).then(pl.lit(i)) for i, c in enumerate(checks)])
        .alias("_check"))
    bad = checked.filter(pl.col("_check").is_not_null())
    for row in bad.iter_rows(named=True):
        first = checks[row["_check"]]
        result.rejected.append(RejectedRow(
            line=row["_line"], reason="; ".join(row["_reasons"]), sheet=sheet,
            column=first.column, value=row[first.column], kind=first.kind))
    good = checked.filter(pl.col("_check").is_null())

    # Labels: mapped where sendcost has the field; an unknown one counted, never a rejection.
    mapped_exprs: dict[str, pl.Expr] = {}
    kept: list[str] = []
    for field_ in LABEL_FIELDS:
        col = _first_present(cols, field_.aliases)
        if col is None:
            continue
        kept.append(col)
        if field_.target is None or field_.table is None:
            continue
        counts = dict(good[col].value_counts().drop_nulls(col).iter_rows())
        mapping, unknown = _map_labels(field_, counts)
        for label, rows in unknown.items():
            seen = result.unknown_labels.setdefault(col, {})
            seen[label] = seen.get(label, 0) + rows
        mapped_exprs[field_.target] = pl.col(col).replace_strict(
            mapping, default=None, return_dtype=pl.String)
    # The pick-up location (2016- sheet) says where the money is collected: at a post
    # office, the post is the receiving end of the service (pay-out post_office), whatever
    # the method (cash, mostly).
    location = _first_present(cols, ("pickup location",))
    if location is not None:
        mapped_exprs["pay_out"] = (
            pl.when(pl.col(location).str.to_lowercase().str.contains("post office"))
            .then(pl.lit(PayOut.POST_OFFICE.value))
            .otherwise(mapped_exprs.get("pay_out", pl.lit(None, pl.String))))
    # The file's own classification: a name not known leaves the bundled value; say so.
    from corridors.reference import INCOME_FROM_WB_NAME, REGION_FROM_WB_NAME

    for side in ("source", "destination"):
        for col, known in ((f"{side}_region", set(REGION_FROM_WB_NAME)),
                           (f"{side}_income", set(INCOME_FROM_WB_NAME)),
                           (f"{side}_G8G20", {"g8/g20", "g20", "g8"})):
            if col not in cols:
                continue
            for label, rows in good[col].value_counts().drop_nulls(col).iter_rows():
                if label not in ("", "..") and " ".join(label.split()).lower() not in known:
                    seen = result.unknown_labels.setdefault(col, {})
                    seen[label] = seen.get(label, 0) + rows
    # A country code outside the classification table is kept (its corridor is measured)
    # but reported: it would fall out of every regional and G20 average.
    table = countries()
    for col in ("source_code", "destination_code"):
        for code, rows in good[col].value_counts().iter_rows():
            if code not in table:
                seen = result.unknown_labels.setdefault(col, {})
                seen[code] = seen.get(code, 0) + rows

    product_col = _first_present(cols, ("product",))
    period = pl.col("period").replace_strict(periods, default=None, return_dtype=pl.String)
    noted = _payout_noted(good, [c for c in cols if c.lower() in NOTE_COLUMNS], period)
    transparent = pl.col("transparent").str.to_lowercase() == "yes"
    product = pl.col(product_col).fill_null("") if product_col else pl.lit("")
    service_id = pl.format("rpw:{}:{}:{}:{}:{}:{}", period, pl.col("source_code"),
                           pl.col("destination_code"), pl.col("firm"), product, pl.col("id"))
    if labels:
        result.label_frames.append(good.select(service_id.alias("service_id"),
                                               *(_label_sets(c) for c in kept)))
    found = _classification_counts(good, period)
    if found is not None:
        classification_counts.append(found)
    common = good.select(
        period.alias("period"),
        pl.col("source_code"),
        pl.col("destination_code"),
        pl.col("firm"),
        *(e.alias(k) for k, e in mapped_exprs.items()),
        product.alias("product"),
        service_id.alias("service_id"),
        numbers["inter lcu bank fx"].alias("reference_rate"),
        transparent.alias("transparent"),
        collected.alias("collected_at"),
        noted.alias("payout_currency_noted"),
        *(numbers[c] for c in num_cols if c != "inter lcu bank fx"),
        pl.col("cc1 lcu code"), pl.col("cc2 lcu code"),
    )

    quotes = []
    for cc, usd in (("cc1", 200), ("cc2", 500)):
        amount, fee = pl.col(f"{cc} lcu amount"), pl.col(f"{cc} lcu fee")
        rate, total = pl.col(f"{cc} lcu fx rate"), pl.col(f"{cc} total cost %")
        priced = amount.is_not_null() & ~(fee.is_null() & rate.is_null() & total.is_null())
        tr = pl.col("transparent")
        quotes.append(common.filter(priced).with_columns(
            pl.lit(usd, pl.Int32).alias("amount_usd"),
            amount.alias("send_amount"),
            # Both price points are in the sender's currency; a few rows name it only once.
            pl.coalesce(pl.col(f"{cc} lcu code"), pl.col("cc1 lcu code"), pl.col("cc2 lcu code"))
            .replace(CURRENCY_FROM_RPW).alias("send_currency"),
            fee.alias("fee"),
            # Non-transparent: RPW's rate and its 0 margin are not what the sender paid.
            pl.when(tr).then(rate).alias("applied_rate"),
            pl.when(tr).then(pl.col(f"{cc} fx margin")).alias("fx_margin_reported"),
            pl.when(tr).then(total).alias("total_cost_reported"),
            pl.lit("rpw").alias("reference_source"),
            pl.lit("rpw").alias("source"),
            pl.lit(False).alias("reference_stale"),
        ))
    out = conform(pl.concat(quotes, how="vertical")).collect()
    assert list(out.schema) == list(QUOTE_FRAME_SCHEMA)
    return out.sort(*_QUOTE_ORDER)


def _known_currencies() -> set[str]:
    """The currencies of today's countries, and USD and EUR."""
    from corridors.reference import countries

    return {c.currency for c in countries().values() if c.currency} | {"USD", "EUR"}


def _payout_noted(good: pl.DataFrame, notes: list[str], period: pl.Expr) -> pl.Expr:
    """The pay-out currency the row's notes name: the first match of ``PAYOUT_NOTES`` over
    ``notes`` (in order) that is a known currency or "LCU", "LCU" read as the receiving
    country's currency in the row's period (Croatia paid out HRK in 2014)."""
    if not notes:
        return pl.lit(None, pl.String)
    known = sorted(_known_currencies() | {"LCU"})
    named = pl.coalesce([
        pl.when(code.is_in(known)).then(code)
        for note in notes for pattern in PAYOUT_NOTES
        for code in [pl.col(note).str.extract(pattern, 1).str.to_uppercase()
                     .replace(CURRENCY_FROM_RPW)]])
    lcu = good.select(period.alias("p"), pl.col("destination_code").alias("d"),
                      named.alias("n")).filter(pl.col("n") == "LCU").unique(["p", "d"])
    from corridors.reference import countries, legal_tender

    local: dict[str, str | None] = {}
    for p, d, _ in lcu.iter_rows():
        if p is None:
            continue
        tender = legal_tender(d, p)
        local[f"{p}|{d}"] = tender[0] if tender else getattr(countries().get(d), "currency",
                                                             None)
    return (pl.when(named == "LCU")
            .then(pl.format("{}|{}", period, pl.col("destination_code"))
                  .replace_strict(local, default=None, return_dtype=pl.String))
            .otherwise(named))
