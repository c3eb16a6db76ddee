"""Parse World Bank Remittance Prices Worldwide (RPW) files into the quote frame.

No database here: ``read_rpw`` turns the CSV (plain or gzip) or the full xlsx workbook into
``corridors.frame`` rows, and reports what it could not take. The store-side import lives
in ``collector.rpw_import``; ``sendcost indicators --from-file`` uses this directly.

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
  A bad value in one row (unknown label, unparseable number, bad period) rejects that row
  with the reason, and the rest is read.
* Line numbers are the file's: the header is line 1 (in a workbook, the sheet's row number).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from corridors.errors import BadPeriod, ImportFileError
from corridors.frame import QUOTE_FRAME_SCHEMA, conform, empty_quote_frame
from corridors.periods import parse_period
from corridors.types import (
    FIRM_TYPE_FROM_RPW,
    PAY_IN_FROM_RPW,
    SPEED_FROM_RPW,
    access_point_from_rpw,
    payout_from_rpw,
)

if TYPE_CHECKING:
    from polars.expr.whenthen import Then

log = logging.getLogger(__name__)

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

#: The same field under the names of the two workbook sheets (first found wins).
_ALIASES: dict[str, tuple[str, ...]] = {
    "access": ("sending location", "access point"),
    "pickup": ("pick-up method", "pickup method"),
    "instrument": ("payment instrument",),
    "product": ("product",),
    "date": ("date",),
}

#: RPW currency labels that are not ISO 4217 codes, mapped explicitly.
CURRENCY_FROM_RPW: dict[str, str] = {"CFA": "XOF"}

_NUMERIC = ("lcu amount", "lcu fee", "lcu fx rate", "fx margin", "total cost %")
_COUNTRY = re.compile(r"^[A-Z]{3}$")
_DATE_FORMATS = ("%d/%b/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d/%m/%Y")


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row left out, with the file line it came from and why."""

    line: int
    reason: str
    sheet: str | None = None


@dataclass
class RpwRead:
    """What ``read_rpw`` got out of a file."""

    path: str
    frame: pl.DataFrame  # exactly corridors.frame.QUOTE_FRAME_SCHEMA
    rejected: list[RejectedRow] = field(default_factory=list)
    #: column → labels met there that have no explicit mapping (their rows are rejected)
    unknown_labels: dict[str, set[str]] = field(default_factory=dict)
    rows_read: int = 0  # RPW rows (services) in the file
    rows_kept: int = 0  # RPW rows that gave at least one quote

    @property
    def quotes(self) -> int:
        return self.frame.height


def read_rpw(path: str | Path) -> RpwRead:
    """Read an RPW file (``.csv``, ``.csv.gz`` or ``.xlsx``) into the quote frame.

    Raises ImportFileError, naming the line, when the file is corrupt or truncated.
    """
    p = Path(path)
    if p.suffix.lower() in (".xlsx", ".xlsm"):
        sheets: Sequence[tuple[str | None, pl.DataFrame]] = _read_workbook(p)
    else:
        sheets = [(None, _read_csv_text(p))]
    frames: list[pl.DataFrame] = []
    result = RpwRead(path=str(p), frame=empty_quote_frame())
    for sheet, raw in sheets:
        frames.append(_parse_sheet(raw, sheet, str(p), result))
    result.frame = pl.concat(frames, how="vertical") if frames else empty_quote_frame()
    result.rows_kept = result.frame.select(pl.col("service_id").n_unique()).item()
    result.rejected.sort(key=lambda r: (r.sheet or "", r.line))
    log.info("read %s: %d rows, %d quotes, %d rows rejected", p, result.rows_read,
             result.quotes, len(result.rejected))
    return result


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
    try:
        return pl.read_csv(text.encode(), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise ImportFileError(f"CSV not readable ({exc})", path=str(path)) from None


def _looks_complete(last: str, header: list[str]) -> bool:
    """A final line with no newline is complete when its last field (`corridor`) is whole."""
    fields = next(csv.reader([last]))
    if len(fields) != len(header):
        return False
    if header[-1] == "corridor":
        return len(fields[-1]) == 6
    return True


def _read_workbook(path: Path) -> list[tuple[str, pl.DataFrame]]:
    """Both dataset sheets of the full RPW workbook, as frames of strings."""
    try:
        import fastexcel

        names = fastexcel.read_excel(str(path)).sheet_names
    except FileNotFoundError:
        raise ImportFileError("no such file", path=str(path)) from None
    except Exception as exc:  # fastexcel raises its own error types for a broken zip/xml
        raise ImportFileError(f"not a readable xlsx workbook ({exc})", path=str(path)) from None
    wanted = [s for s in (SHEET_UP_TO_2016Q1, SHEET_FROM_2016Q2) if s in names]
    if not wanted:
        raise ImportFileError(
            f"no RPW dataset sheet: expected {SHEET_UP_TO_2016Q1!r} and/or "
            f"{SHEET_FROM_2016Q2!r}, found {names}", path=str(path))
    out = []
    for sheet in wanted:
        try:
            # All as text: the workbook mixes numbers, text and datetimes in one column.
            frame = pl.read_excel(path, sheet_name=sheet, engine="calamine",
                                  infer_schema_length=0)
        except Exception as exc:
            raise ImportFileError(f"sheet {sheet!r} not readable ({exc})",
                                  path=str(path)) from None
        _check_columns(frame.columns, str(path), sheet)
        out.append((sheet, frame))
    return out


def _check_columns(header: list[str], path: str, sheet: str | None) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        where = f"sheet {sheet!r}: " if sheet else ""
        raise ImportFileError(f"{where}missing required column(s) {missing}", line=1, path=path)


# --- rows into quotes ------------------------------------------------------------------------


def _first_present(columns: list[str], key: str) -> str | None:
    return next((c for c in _ALIASES[key] if c in columns), None)


def _label_map(values: list[str | None], fn: Callable[[str | None], object]
               ) -> tuple[dict[str, str | None], set[str]]:
    """Map each distinct label once with ``fn``; return the map and the unknown labels."""
    mapped: dict[str, str | None] = {}
    unknown: set[str] = set()
    for v in values:
        if v is None:
            continue
        try:
            out = fn(v)
        except KeyError:
            unknown.add(v)
            continue
        mapped[v] = None if out is None else str(out)
    return mapped, unknown


def _dict_fn(mapping: Mapping[str, object]) -> Callable[[str | None], object]:
    def fn(label: str | None) -> object:
        return mapping[label.strip() if label is not None else ""]
    return fn


def _parse_sheet(raw: pl.DataFrame, sheet: str | None, path: str, result: RpwRead
                 ) -> pl.DataFrame:
    n = raw.height
    result.rows_read += n
    if n == 0:
        return empty_quote_frame()
    cols = raw.columns
    # Strings everywhere; strip stray spaces so "yes " and "yes" are one label.
    raw = raw.with_columns(pl.all().cast(pl.String).str.strip_chars())
    raw = raw.with_columns(pl.int_range(2, n + 2, dtype=pl.Int64).alias("_line"))

    # Each check appends a reason (or null) per row; a row with any reason is rejected.
    reasons: list[Then] = []

    def require(col: str) -> None:
        reasons.append(pl.when(pl.col(col).is_null() | (pl.col(col) == ""))
                       .then(pl.lit(f"missing {col}")))

    for col in ("id", "period", "source_code", "destination_code", "firm", "firm_type",
                "transparent"):
        require(col)
    for col in ("source_code", "destination_code"):
        reasons.append(pl.when(pl.col(col).is_not_null() & ~pl.col(col).str.contains(
            _COUNTRY.pattern)).then(pl.format(f"{col} {{}} is not an ISO alpha-3 code",
                                              pl.col(col))))
    reasons.append(pl.when(pl.col("transparent").is_not_null()
                           & ~pl.col("transparent").str.to_lowercase().is_in(["yes", "no"]))
                   .then(pl.format("transparent must be yes or no, not {}",
                                   pl.col("transparent"))))

    # Numbers: a value present but not a number rejects the row (named column and value).
    num_cols = [f"{cc} {suffix}" for cc in ("cc1", "cc2") for suffix in _NUMERIC]
    num_cols.append("inter lcu bank fx")
    numbers = {c: pl.col(c).str.replace_all(",", "").cast(pl.Float64, strict=False)
               for c in num_cols}
    for c, expr in numbers.items():
        reasons.append(pl.when(pl.col(c).is_not_null() & (pl.col(c) != "") & expr.is_null())
                       .then(pl.format(f"{c} is not a number: {{}}", pl.col(c))))

    # Periods: parse each distinct value once.
    periods: dict[str, str] = {}
    for value in raw["period"].drop_nulls().unique().to_list():
        with contextlib.suppress(BadPeriod):
            periods[value] = str(parse_period(value))
    reasons.append(pl.when(pl.col("period").is_not_null()
                           & ~pl.col("period").is_in(list(periods)))
                   .then(pl.format("period {} is not a quarter like 2011_1Q", pl.col("period"))))

    # Labels: every label mapped explicitly; an unknown one is reported, never guessed.
    label_cols: dict[str, tuple[str, Callable[[str | None], object]]] = {
        "firm_type": ("firm_type", _dict_fn(FIRM_TYPE_FROM_RPW)),
        "speed": ("speed actual", _dict_fn(SPEED_FROM_RPW)),
    }
    for key, target, fn in (("access", "access_point", access_point_from_rpw),
                            ("pickup", "pay_out", payout_from_rpw),
                            ("instrument", "pay_in", _dict_fn(PAY_IN_FROM_RPW))):
        present = _first_present(cols, key)
        if present is not None:
            label_cols[target] = (present, fn)
    mapped_exprs: dict[str, pl.Expr] = {}
    for target, (col, fn) in label_cols.items():
        mapping, unknown = _label_map(raw[col].unique().to_list(), fn)
        if unknown:
            result.unknown_labels.setdefault(col, set()).update(unknown)
            reasons.append(pl.when(pl.col(col).is_in(sorted(unknown)))
                           .then(pl.format(f"unknown {col} label {{}}", pl.col(col))))
        mapped_exprs[target] = pl.col(col).replace_strict(
            mapping, default=None, return_dtype=pl.String)

    checked = raw.with_columns(
        pl.concat_list([r.otherwise(None) for r in reasons]).list.drop_nulls()
        .list.join("; ").alias("_reason"))
    bad = checked.filter(pl.col("_reason") != "").select("_line", "_reason")
    result.rejected.extend(RejectedRow(line, reason, sheet) for line, reason in bad.iter_rows())
    good = checked.filter(pl.col("_reason") == "")

    product_col = _first_present(cols, "product")
    date_col = _first_present(cols, "date")
    period = pl.col("period").replace_strict(periods, default=None, return_dtype=pl.String)
    transparent = pl.col("transparent").str.to_lowercase() == "yes"
    product = pl.col(product_col).fill_null("") if product_col else pl.lit("")
    collected = (
        pl.coalesce([pl.col(date_col).str.strptime(pl.Datetime("us"), f, strict=False)
                     for f in _DATE_FORMATS]).dt.replace_time_zone("UTC")
        if date_col else pl.lit(None, pl.Datetime("us", "UTC"))
    )
    service_id = pl.format("rpw:{}:{}:{}:{}:{}:{}", period, pl.col("source_code"),
                           pl.col("destination_code"), pl.col("firm"), product, pl.col("id"))
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
    return out.sort("period", "source_code", "destination_code", "service_id", "amount_usd")


# --- the bilateral remittance matrix ---------------------------------------------------------


def read_bilateral_matrix(path: str | Path) -> pl.DataFrame:
    """The World Bank bilateral remittance matrix as it is: names, strings, one row a sender.

    The file is Windows-1252 text (``Côte d'Ivoire``) with thousands separators and notes
    under the table; ``collector.flows.read_bilateral_flows`` turns it into corridor flows.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read ({exc})", path=str(p)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    try:
        return pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError as exc:
        raise ImportFileError(f"matrix not readable ({exc})", path=str(p)) from None

