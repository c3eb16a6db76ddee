"""Benchmark: the whole RPW workbook 2011-2025 read (and imported) vs a bare read of it.

The World Bank's ``rpw_dataset_2011_2025_q3.xlsx`` has 49,491 rows in "Dataset (up to Q1
2016)" and 204,469 in "Dataset (from Q2 2016)" (about 50 MB). This generates a workbook of
that size and shape (the same sheets and columns, the real labels, numbers stored as text
in about 6 % of rows, text dates and date-times, the 2025_3Q helper columns), once, into
``--file`` (default /tmp/sendcost_rpw_bench.xlsx), and one of half its rows beside it
(``…_half.xlsx``), so that what grows with the rows shows; then, at each size and
``--runs`` times (medians printed), measures, each in a process of its own so that its peak
memory is its own:

* ``read``: ``corridors.reading.rpw.read_rpw`` — both sheets into the quote frame, every check;
* the peer, ``bare``: Polars' calamine reader (fastexcel) loading the same two sheets as
  text and nothing else;
* ``import``: ``collector.rpw_import.import_rpw`` into a throw-away database on the server
  of ``--database-url`` (default ``$SENDCOST_TEST_DATABASE_URL``, else the one below;
  ``''`` skips it): read and stored a chunk of rows at a time in one transaction, then
  the partitions of the survey's months made (their quotes moving in).

    .venv/bin/python bench/rpw_import.py [--database-url postgresql://postgres@127.0.0.1:5432/test]

Goal (issue 15): the whole workbook imported in under 60 s and under 1 GB on a 2-core
machine. Figures are printed with the ratio to the bare read, and how each peak grows per
100,000 rows between the two sizes; they go in docs, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
OLD_ROWS, NEW_ROWS = 49_491, 204_469
SHEET_OLD, SHEET_NEW = "Dataset (up to Q1 2016)", "Dataset (from Q2 2016)"

LABELS = {
    "payment instrument": [
        "Cash", "Bank account transfer", "Debit card", "Credit Card", "Debit/credit card",
        "Bank account transfer,Debit/credit card", "Credit Card,Debit card",
        "Cash,Debit/credit card", "Credit card", "Mobile money"],
    "access point": [
        "Internet", "Agent", "Bank branch", "Bank branch,Call Center", "Call Center",
        "Agent,Internet", "Agent,Call Center", "Post Office branch", "Mobile phone"],
    "speed actual": ["Less than one hour", "Same day", "2 days", "Next day", "3-5 days",
                     "6 days or more"],
    "pickup method": ["Cash", "Bank account", "Mobile wallet", "Own/partner bank account",
                      "Bank account (same/partner bank)", "Debit card", "ATM Network"],
    "pickup location": ["", "Agent", "Agent ", "Bank branch", "Home delivery"],
    "firm_type": ["Money Transfer Operator", "Bank", "Money Transfer Operator / Post office",
                  "Post office", "Mobile Operator", "Non-Bank FI"],
    "receiving network coverage": ["High", "Medium", "Low"],
}
NEW_COLUMNS = [
    "id", "period", "source_code", "source_name", "source_region", "source_income",
    "source_G8G20", "destination_code", "destination_name", "destination_region",
    "destination_income", "destination_G8G20", "corridor", "firm", "firm_type",
    "payment instrument", "access point", "speed actual", "pickup method", "pickup location",
    "receiving network coverage", "transparent",
    "cc1 lcu code", "cc1 lcu amount", "cc1 lcu fee", "cc1 lcu fx rate", "cc1 fx margin",
    "cc1 total cost %",
    "cc2 lcu code", "cc2 lcu amount", "cc2 lcu fee", "cc2 lcu fx rate", "cc2 fx margin",
    "cc2 total cost %", "inter lcu bank fx", "Standard Note", "date", "", "", "", "", "",
]


def _periods() -> list[str]:
    """2016_2Q … 2025_3Q without 2025_2Q: 37 rounds, as in the real sheet."""
    out = []
    for year in range(2016, 2026):
        for q in range(1, 5):
            p = f"{year}_{q}Q"
            if (year, q) >= (2016, 2) and (year, q) <= (2025, 3) and p != "2025_2Q":
                out.append(p)
    return out


def generate(path: Path, share: float = 1.0) -> None:
    """A workbook of the real one's shape with ``share`` of its rows in each sheet."""
    import xlsxwriter

    from corridors.reference import countries

    table = sorted(countries())
    senders = ["USA", "GBR", "DEU", "FRA", "ITA", "ESP", "SAU", "ARE", "RUS", "JPN", "CAN",
               "AUS", "ZAF", "KOR", "SGP", "QAT", "KWT", "NZL", "CHE", "BEL"]
    receivers = [c for c in table if c not in senders][:120]
    corridors = [(s, r) for i, s in enumerate(senders) for r in receivers[i::7]][:365]
    periods = _periods()
    with gzip.open(ROOT / "corridors" / "data" / "rpw_quotes_2011Q1_2014Q2.csv.gz", "rt",
                   encoding="utf-8") as fh:
        import csv

        reader = csv.reader(fh)
        old_header = next(reader)
        old = [row for row in reader]
    with xlsxwriter.Workbook(str(path), {"constant_memory": True}) as wb:
        ws = wb.add_worksheet(SHEET_OLD)
        ws.write_row(0, 0, old_header)
        id_col = old_header.index("id")
        for r in range(round(OLD_ROWS * share)):
            row = list(old[r % len(old)])
            row[id_col] = str(100_000 + r)
            ws.write_row(r + 1, 0, row)
        ws = wb.add_worksheet(SHEET_NEW)
        date_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        for c, name in enumerate(NEW_COLUMNS):
            if name:
                ws.write_string(0, c, name)
        new_rows = round(NEW_ROWS * share)
        per_period = new_rows // len(periods) + 1
        for r in range(new_rows):
            period = periods[min(r // per_period, len(periods) - 1)]
            src, dst = corridors[r % len(corridors)]
            year, q = int(period[:4]), int(period[5])
            when = dt.datetime(year, 3 * q - 1, 1 + r % 27)
            total = round(1.0 + (r * 37 % 997) / 97.0, 2)
            text = r % 16 == 0  # about 6 % of rows hold their numbers as text
            nums = [200.0, 5.0, 1.5, round(total - 2.5, 2), total]
            nums2 = [500.0, 5.0, 1.5, round(total * 0.6 - 1, 2), round(total * 0.6, 2)]
            cells: list[object] = [
                r, period, src, src, "..", "High income", "G20", dst, dst,
                "South Asia", "Lower middle income", "..", src + dst, f"Firm {r % 211}",
                *(LABELS[c][r % len(LABELS[c])] for c in (
                    "firm_type", "payment instrument", "access point", "speed actual",
                    "pickup method", "pickup location", "receiving network coverage")),
                ["yes", "Yes", "yes", "no"][r % 4],
                "USD", *nums, "USD", *nums2, 1.52, "", when if r % 15 == 0 else
                when.strftime("%d/%b/%Y"),
                *(["2025", f"{src}2025", f"{dst}2025", f"{src}2026", f"{dst}2026"]
                  if period == "2025_3Q" else [None] * 5)]
            for c, v in enumerate(cells):
                if v is None or v == "":
                    continue
                if isinstance(v, dt.datetime):
                    ws.write_datetime(r + 1, c, v, date_fmt)
                elif isinstance(v, (int, float)) and not text:
                    ws.write_number(r + 1, c, v)
                else:
                    ws.write_string(r + 1, c, str(v))


def _peak_mib() -> float:
    """This process's peak resident memory since it started: VmHWM where /proc has it
    (ru_maxrss keeps the parent's size from the fork that started a stage)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pids: list[int]) -> float | None:
    """CPU seconds of PostgreSQL's backends for this database (same machine only; None
    when /proc does not show them)."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def stage(name: str, path: Path, database_url: str | None) -> dict[str, object]:
    """Run one stage in this process; its time and this process's peak memory."""
    started = time.perf_counter()
    if name == "bare":
        import polars as pl

        frames = pl.read_excel(path, sheet_name=[SHEET_OLD, SHEET_NEW], engine="calamine",
                               infer_schema_length=0)
        rows = sum(f.height for f in frames.values())
        out: dict[str, object] = {"rows": rows}
    elif name == "read":
        from corridors.reading.rpw import read_rpw

        read = read_rpw(path)
        out = {"rows": read.rows_read, "used": read.rows_kept, "quotes": read.quotes,
               "rejected": len(read.rejected), "unknown": read.unknown_labels}
    else:
        from collector.rpw_import import import_rpw
        from corridors.store import connect

        assert database_url is not None

        async def go() -> dict[str, object]:
            store = await connect(database_url)
            try:
                await store.migrate()
                started_import = time.perf_counter()
                s = await import_rpw(store, path)
                pids = [r["pid"] for r in await store.pool.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
                return {"rows": s.rows_read, "stored": s.quotes_stored,
                        "import_seconds": time.perf_counter() - started_import,
                        "postgres_cpu": _backend_cpu(pids)}
            finally:
                await store.close()

        out = asyncio.run(go())
    # CPU time beside wall time: on a machine shared with other work the wall time says
    # more about the neighbours than about the import (PostgreSQL's own CPU is not in it).
    out.update(seconds=time.perf_counter() - started, cpu=_cpu_seconds(), peak_mib=_peak_mib())
    return out


def run_stage(name: str, path: Path, database_url: str | None = None) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--stage", name, "--file", str(path)]
    if database_url:
        cmd += ["--database-url", database_url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"stage {name} failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _database(url: str, create: bool, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(url)
    try:
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _median(runs: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(str(r[key])) for r in runs)


def measure(path: Path, database_url: str, runs: int) -> dict[str, list[dict[str, object]]]:
    """Each stage ``runs`` times on ``path``, the bare read first in each round."""
    out: dict[str, list[dict[str, object]]] = {"bare": [], "read": [], "import": []}
    for _ in range(runs):
        out["bare"].append(run_stage("bare", path))
        out["read"].append(run_stage("read", path))
        if database_url:
            name = f"sendcost_bench_{uuid.uuid4().hex[:8]}"
            asyncio.run(_database(database_url, True, name))
            try:
                parts = urlsplit(database_url)
                out["import"].append(run_stage("import", path,
                                               urlunsplit(parts._replace(path="/" + name))))
            finally:
                asyncio.run(_database(database_url, False, name))
    return out


def report(path: Path, got: dict[str, list[dict[str, object]]]) -> None:
    bare, read, imported = got["bare"], got["read"], got["import"]
    runs = len(bare)
    print(f"workbook {path} ({path.stat().st_size / 2**20:.1f} MiB, {bare[0]['rows']:,} rows;"
          f" medians of {runs} run{'s' * (runs > 1)})")
    b = _median(bare, "seconds")
    print(f"  bare calamine read (peer): {b:6.1f} s (CPU {_median(bare, 'cpu'):5.1f} s)  "
          f"peak {_median(bare, 'peak_mib'):,.0f} MiB")
    r = _median(read, "seconds")
    print(f"  read_rpw:                  {r:6.1f} s (CPU {_median(read, 'cpu'):5.1f} s)  "
          f"peak {_median(read, 'peak_mib'):,.0f} MiB  ({r / b:.2f} × bare; "
          f"{read[0]['used']:,} rows used, {read[0]['rejected']:,} rejected, "
          f"{read[0]['quotes']:,} quotes)")
    if imported:
        i = _median(imported, "seconds")
        print(f"  import_rpw (parse + store):{i:6.1f} s (CPU "
              f"{_median(imported, 'cpu'):5.1f} s)  peak "
              f"{_median(imported, 'peak_mib'):,.0f} MiB  ({i / b:.2f} × bare; "
              f"{imported[0]['stored']:,} quotes stored)")
        if all(x.get("postgres_cpu") is not None for x in imported):
            print(f"  PostgreSQL's backends:     CPU {_median(imported, 'postgres_cpu'):5.1f} s")
        if runs > 1:
            print("  each run (bare / import, s): " + ", ".join(
                f"{float(str(x['seconds'])):.1f}/{float(str(y['seconds'])):.1f}"
                for x, y in zip(bare, imported, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=Path("/tmp/sendcost_rpw_bench.xlsx"))
    parser.add_argument("--database-url", default=os.environ.get(
        "SENDCOST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a server where a throw-away database may be created, to time the import "
             "into it ('' to time the reads only)")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs of each stage at each size (medians are printed)")
    parser.add_argument("--stage", choices=("bare", "read", "import"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.file, args.database_url), default=str))
        return 0
    half = args.file.with_name(args.file.stem + "_half" + args.file.suffix)
    for path, share in ((half, 0.5), (args.file, 1.0)):
        if not path.exists():
            started = time.perf_counter()
            print(f"generating {path} ({round(OLD_ROWS * share):,} + "
                  f"{round(NEW_ROWS * share):,} rows) …", flush=True)
            generate(path, share)
            print(f"  {path.stat().st_size / 2**20:.1f} MiB in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    small = measure(half, args.database_url, args.runs)
    report(half, small)
    full = measure(args.file, args.database_url, args.runs)
    report(args.file, full)
    rows = float(str(full["bare"][0]["rows"])) - float(str(small["bare"][0]["rows"]))
    print(f"peak growth per 100,000 rows, {small['bare'][0]['rows']:,} → "
          f"{full['bare'][0]['rows']:,} rows:")
    for stage_name in ("bare", "read", "import"):
        if full[stage_name]:
            grow = _median(full[stage_name], "peak_mib") - _median(small[stage_name], "peak_mib")
            print(f"  {stage_name:7} {grow / rows * 100_000:+8.0f} MiB")
    if full["import"]:
        seconds, peak = _median(full["import"], "seconds"), _median(full["import"], "peak_mib")
        print(f"load average {os.getloadavg()[0]:.1f}; goal (under 60 s and 1 GB): "
              f"{'met' if seconds < 60 and peak < 1024 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
