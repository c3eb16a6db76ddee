"""Files in the real format of the World Bank's RPW workbook 2011-2025, built by the tests.

The sheet "Dataset (from Q2 2016)" of ``rpw_dataset_2011_2025_q3.xlsx`` (World Bank data
catalog 0037898, CC BY 4.0), as its labels and quirks are listed in the project's notes on
it: every label seen in its descriptive columns, numbers stored as text in some rows and as
numbers in others, ``id`` mixing integers and strings, text dates and real date-times, firm
names differing only by case or a trailing space, empty ``cc2`` fields, five header-less
helper columns filled only in 2025_3Q, ``..`` for a region or G8/G20 that does not apply,
Kosovo as ``KSV``, and the 2025 region "Middle East, North Africa, Afghanistan & Pakistan".
The prices are made up; what a test checks is computed from the rows written here.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHEET_OLD = "Dataset (up to Q1 2016)"
SHEET_NEW = "Dataset (from Q2 2016)"

#: Every label of the 2016-2025 sheet's descriptive columns (LABELS.md), as written there.
LABELS: dict[str, list[str]] = {
    "payment instrument": [
        "Cash", "Bank account transfer", "Debit card", "Credit Card", "Debit/credit card",
        "Bank account transfer,Debit/credit card", "Credit Card,Debit card",
        "Cash,Debit/credit card", "Credit card", "Mobile money"],
    "access point": [
        "Internet", "Agent", "Bank branch", "Bank branch,Call Center", "Call Center",
        "Agent,Internet", "Agent,Call Center", "Post Office branch", "Mobile phone"],
    "speed actual": [
        "Less than one hour", "Same day", "2 days", "Next day", "3-5 days", "6 days or more",
        "less than one hour", "1-3 days", "Next Day"],
    "pickup method": [
        "Cash", "Bank account", "Mobile wallet", "Own/partner bank account",
        "Bank account (same/partner bank)", "Own/partner Bank account", "Debit card",
        "ATM Network", "Cash, Mobile", "Mobile, Cash", "Bank Account",
        "Own/Partner bank account"],
    "pickup location": [
        "", "Agent", "Agent ", "Bank branch", "Home delivery", "ATM network",
        "Agent, Home delivery", "ATM Network", "Home Delivery", "ATM network, Bank account"],
    "firm_type": [
        "Money Transfer Operator", "Bank", "Money Transfer Operator / Post office",
        "Post office", "Bank / Money Transfer Operator", "Mobile Operator", "Non-Bank FI",
        "Money Transfer Operator / Post Office", "Post Office"],
    "transparent": ["yes", "Yes", "no", "yes"],
    "receiving network coverage": ["High", "Medium", "Low", "low"],
}

#: The sheet's named columns, in its order, then five helper columns without a header.
COLUMNS: list[str] = [
    "id", "period", "source_code", "source_name", "source_region", "source_income",
    "source_G8G20", "destination_code", "destination_name", "destination_region",
    "destination_income", "destination_G8G20", "corridor", "firm", "firm_type",
    "payment instrument", "access point", "speed actual", "pickup method", "pickup location",
    "receiving network coverage", "transparent",
    "cc1 lcu code", "cc1 lcu amount", "cc1 lcu fee", "cc1 lcu fx rate", "cc1 fx margin",
    "cc1 total cost %",
    "cc2 lcu code", "cc2 lcu amount", "cc2 lcu fee", "cc2 lcu fx rate", "cc2 fx margin",
    "cc2 total cost %",
    "inter lcu bank fx", "Standard Note", "date",
    "", "", "", "", "",
]

_SAS, _MNA = "South Asia", "Middle East & North Africa"
_MENAAP = "Middle East, North Africa, Afghanistan & Pakistan"


@dataclass(frozen=True)
class Side:
    code: str
    name: str
    region: str
    income: str
    g8g20: str
    currency: str


_COUNTRIES = {
    "USA": Side("USA", "United States", "..", "High income", "G8/G20", "USD"),
    "ARE": Side("ARE", "United Arab Emirates", "..", "High income", "..", "AED"),
    "GBR": Side("GBR", "United Kingdom", "..", "High income", "G8/G20", "GBP"),
    "SAU": Side("SAU", "Saudi Arabia", "..", "High income", "G20", "SAR"),
    "ITA": Side("ITA", "Italy", "..", "High income", "G8/G20", "EUR"),
    "MEX": Side("MEX", "Mexico", "Latin America & Caribbean", "Upper middle income", "G20",
                "MXN"),
    "PAK": Side("PAK", "Pakistan", _SAS, "Lower middle income", "..", "PKR"),
    "IND": Side("IND", "India", _SAS, "Lower middle income", "G20", "INR"),
    "NGA": Side("NGA", "Nigeria", "Sub-Saharan Africa", "Lower income", "..", "NGN"),
    "EGY": Side("EGY", "Egypt", _MNA, "Lower middle income", "..", "EGP"),
    "KSV": Side("KSV", "Kosovo", "Europe & Central Asia", "Upper middle income", "..", "EUR"),
}

CORRIDORS = [("USA", "MEX"), ("ARE", "PAK"), ("ARE", "IND"), ("GBR", "NGA"), ("SAU", "EGY"),
             ("ITA", "KSV")]
PERIODS = {"2016_2Q": (dt.datetime(2016, 5, 18), "18/May/2016"),
           "2025_3Q": (dt.datetime(2025, 8, 20), "23/Aug/2025")}
FIRMS = ["Ace Money Transfer", "ACE Money Transfer", "SBI remit", "SBI Remit",
         "Al Muzaini Exchange ", "Al Muzaini Exchange", "Western Union"]


def destination_region(code: str, period: str) -> str:
    """As the World Bank's file writes it: Pakistan's region renamed in 2025."""
    side = _COUNTRIES[code]
    if code == "PAK" and period.startswith("2025"):
        return _MENAAP
    if code == "EGY" and period.startswith("2025"):
        return _MENAAP
    return side.region


def new_sheet_rows(per_corridor: int = 12) -> list[dict[str, Any]]:
    """Rows of the 2016-2025 sheet: every corridor in both periods, every label used.

    A row's numbers are Python floats (written as numbers) or, on every fifth row, text;
    its date is a datetime on every third row, else text.
    """
    rows: list[dict[str, Any]] = []
    i = 0
    for period, (when, when_text) in PERIODS.items():
        for src, dst in CORRIDORS:
            for _ in range(per_corridor):
                s, d = _COUNTRIES[src], _COUNTRIES[dst]
                total = round(1.0 + (i * 37 % 97) / 9.0, 2)
                total500 = round(total * 0.6, 2)
                as_text = i % 5 == 4

                def num(v: float, as_text: bool = as_text) -> Any:
                    return f"{v}" if as_text else v

                row: dict[str, Any] = {
                    "id": str(1000 + i) if i % 2 else 1000 + i,
                    "period": period,
                    "source_code": src, "source_name": s.name,
                    "source_region": s.region, "source_income": s.income,
                    "source_G8G20": s.g8g20,
                    "destination_code": dst, "destination_name": d.name,
                    "destination_region": destination_region(dst, period),
                    "destination_income": d.income, "destination_G8G20": "..",
                    "corridor": src + dst,
                    "firm": FIRMS[i % len(FIRMS)],
                    "Standard Note": "",
                    "date": when if i % 3 == 0 else when_text,
                    "cc1 lcu code": s.currency, "cc1 lcu amount": num(200.0),
                    "cc1 lcu fee": num(5.0), "cc1 lcu fx rate": num(1.5),
                    "cc1 fx margin": num(round(total - 2.5, 2)),
                    "cc1 total cost %": num(total),
                    "cc2 lcu code": s.currency, "cc2 lcu amount": num(500.0),
                    "cc2 lcu fee": num(5.0), "cc2 lcu fx rate": num(1.5),
                    "cc2 fx margin": num(round(total500 - 1.0, 2)),
                    "cc2 total cost %": num(total500),
                    "inter lcu bank fx": num(1.52),
                }
                if i % 17 == 3:  # cc2 not priced
                    for k in ("cc2 lcu amount", "cc2 lcu fee", "cc2 lcu fx rate",
                              "cc2 fx margin", "cc2 total cost %"):
                        row[k] = None
                for col, labels in LABELS.items():
                    row[col] = labels[i % len(labels)]
                row["helpers"] = (["2025", f"{src}2025", f"{dst}2025", f"{src}2026",
                                   f"{dst}2026"] if period == "2025_3Q" else [None] * 5)
                rows.append(row)
                i += 1
    return rows


def _cells(row: dict[str, Any]) -> list[Any]:
    return [row.get(c) for c in COLUMNS[:-5]] + list(row["helpers"])


def write_workbook(path: Path, rows: list[dict[str, Any]],
                   old_rows: list[list[str]] | None = None) -> Path:
    """The workbook: the 2016-2025 sheet (and the older one when given), cell by cell."""
    import xlsxwriter

    with xlsxwriter.Workbook(str(path)) as wb:
        date_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        if old_rows is not None:
            ws_old = wb.add_worksheet(SHEET_OLD)
            for r, values in enumerate(old_rows):
                for c, v in enumerate(values):
                    if r > 0 and _is_number(v):
                        ws_old.write_number(r, c, float(v))
                    elif v != "":
                        ws_old.write_string(r, c, v)
        ws = wb.add_worksheet(SHEET_NEW)
        for c, name in enumerate(COLUMNS):
            if name:
                ws.write_string(0, c, name)
        for r, row in enumerate(rows, start=1):
            for c, v in enumerate(_cells(row)):
                if v is None or v == "":
                    continue
                if isinstance(v, dt.datetime):
                    ws.write_datetime(r, c, v, date_fmt)
                elif isinstance(v, (int, float)):
                    ws.write_number(r, c, v)
                else:
                    ws.write_string(r, c, v)
        wb.add_worksheet("Legend").write_string(0, 0, "made up for a test")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """The CSV form of the same sheet (dates as the workbook shows them)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow(["" if v is None else
                        v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, dt.datetime) else v
                        for v in _cells(row)])
    return path


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def expected_corridor_averages(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(period, source, destination) → mean of the published cc1 total cost % over the
    corridor's transparent services: the World Bank's corridor average."""
    sums: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        if str(row["transparent"]).lower() != "yes":
            continue
        dst = "XKX" if row["destination_code"] == "KSV" else row["destination_code"]
        period = f"{row['period'][:4]}Q{row['period'][5]}"  # 2025_3Q → 2025Q3
        key = (period, row["source_code"], dst)
        sums.setdefault(key, []).append(float(row["cc1 total cost %"]))
    return {k: sum(v) / len(v) for k, v in sums.items()}
