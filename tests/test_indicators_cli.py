"""`sendcost indicators`: the store path and the --from-file path agree, and match the
World Bank's official corridor averages."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "corridors" / "data"
RPW = DATA / "rpw_quotes_2011Q1_2014Q2.csv.gz"


def _run(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "sendcost", *args], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _rounded(doc: object) -> object:
    """The same document with floats to 9 decimals: the two paths read rows in another
    order, and a float sum depends on its order in the last bits."""
    if isinstance(doc, float):
        return round(doc, 9)
    if isinstance(doc, dict):
        return {k: _rounded(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_rounded(v) for v in doc]
    return doc


def test_store_and_file_paths_agree_and_match_official(fresh_database: str) -> None:
    imported = _run("import", "rpw", str(RPW), database_url=fresh_database)
    assert imported.returncode == 0, imported.stderr
    assert "quotes stored:" in imported.stdout
    official = {}
    with open(DATA / "official_corridor_averages_2011.csv") as fh:
        for row in csv.DictReader(fh):
            if row["period"] == "2011_3Q":
                official[(row["source_code"], row["destination_code"])] = float(
                    row["avg_total_cost_pct"])
    for amount in ("200", "500"):
        from_file = _run("indicators", "--period", "2011Q3", "--amount", amount, "--format",
                         "json", "--from-file", str(RPW))
        from_store = _run("indicators", "--period", "2011_3Q", "--amount", amount, "--format",
                          "json", database_url=fresh_database)
        assert from_file.returncode == 0, from_file.stderr
        assert from_store.returncode == 0, from_store.stderr
        a, b = json.loads(from_file.stdout), json.loads(from_store.stdout)
        assert _rounded(a) == _rounded(b)
    doc = json.loads(_run("indicators", "--period", "2011Q3", "--format", "json",
                          "--from-file", str(RPW)).stdout)
    averages = {(c["source"], c["destination"]): c["average"] for c in doc["corridors"]}
    assert len(official) > 200
    for key, value in official.items():
        assert abs(averages[key] - value) < 0.005, key


def test_csv_and_table_formats() -> None:
    out = _run("indicators", "--period", "2011Q1", "--format", "csv", "--from-file", str(RPW))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert {"source", "destination", "average", "smart", "above_5"} <= set(rows[0])
    table = _run("indicators", "--period", "2011Q1", "--from-file", str(RPW), "-q")
    assert table.returncode == 0
    assert "global average (10.c.1)" in table.stdout and "USA-MEX" in table.stdout


def test_bad_period_and_empty_period_are_clear() -> None:
    bad = _run("indicators", "--period", "2011-Q3", "--from-file", str(RPW))
    assert bad.returncode == 1
    assert "period '2011-Q3' is not understood: expected a quarter like 2011Q3" in bad.stderr
    empty = _run("indicators", "--period", "2019Q1", "--from-file", str(RPW))
    assert empty.returncode == 1
    assert "no quotes for period 2019Q1" in empty.stderr
    assert "Traceback" not in empty.stderr + bad.stderr


def test_output_piped_into_head_is_not_an_error() -> None:
    # `sendcost indicators … | head -2`: the reader goes away after two lines.
    proc = subprocess.Popen([sys.executable, "-m", "sendcost", "indicators", "--period",
                             "2011Q3", "--format", "csv", "--from-file", str(RPW), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err, err


def test_a_bad_command_line_exits_2() -> None:
    out = _run("import", "rpw")
    assert out.returncode == 2, out.stderr
    assert "give PATH, --bundled or --download" in out.stderr and "usage:" in out.stderr


def test_a_folder_or_an_unmakeable_data_folder_is_named(tmp_path: Path) -> None:
    folder = _run("indicators", "--period", "2011Q3", "--from-file", str(tmp_path))
    assert folder.returncode == 1
    assert f"{tmp_path}: a folder, not an RPW file" in folder.stderr
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SENDCOST_DATA_DIR"] = "/proc/no-such-folder"
    nowhere = subprocess.run([sys.executable, "-m", "sendcost", "db", "status"], env=env,
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert nowhere.returncode == 1
    assert "the embedded database's folder /proc/no-such-folder/pg cannot be made" in (
        nowhere.stderr), nowhere.stderr
    assert "SENDCOST_DATA_DIR" in nowhere.stderr and "Traceback" not in nowhere.stderr
