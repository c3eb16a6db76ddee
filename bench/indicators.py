"""Benchmark: the full ``sendcost indicators`` output on N synthetic quotes, against DuckDB.

Synthetic quotes are shaped like RPW: each synthetic service copies a real 2011-2014 RPW
service (corridor, firm, firm type, speed, transparency, fee % and FX margin %) and is quoted
30 times (a month of daily quotes, as sendcost's collectors do) with small noise, in the
quote-frame schema, rates computed (no published totals). 90% of quotes fall in the period
computed, 0.5% have a stale reference rate.

Each engine runs in its own subprocess on the same Parquet file, loaded into memory before
the clock starts (Polars DataFrame / DuckDB in-memory table), so seconds measure the
computation and the peak RSS is the process's own (``ru_maxrss``, which sees native
allocations that tracemalloc does not); the RSS added by the computation is sampled too.

    python bench/indicators.py --quotes 1000000
    python bench/indicators.py --quotes 10000000

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RPW_GZ = ROOT / "corridors" / "data" / "rpw_quotes_2011Q1_2014Q2.csv.gz"
MATRIX = ROOT / "corridors" / "data" / "bilateral_remittance_matrix_2011.csv"
PERIOD, OTHER_PERIOD = "2026-11", "2026-10"
QUOTES_PER_SERVICE = 30


def generate(n: int, path: Path, seed: int = 1) -> None:
    """Write ``n`` synthetic quotes to ``path`` (Parquet)."""
    from corridors.reading.rpw import read_rpw

    real = (read_rpw(RPW_GZ).frame.filter(pl.col("amount_usd") == 200)
            .with_columns((pl.col("fee") / pl.col("send_amount") * 100).fill_null(0)
                          .alias("fee_pct"),
                          pl.col("fx_margin_reported").fill_null(0).alias("margin"))
            .select("source_code", "destination_code", "firm", "firm_type", "speed",
                    "transparent", "fee_pct", "margin"))
    rng = np.random.default_rng(seed)
    n_services = max(1, n // QUOTES_PER_SERVICE)
    pick = rng.integers(0, real.height, n_services)
    services = real[pick].with_columns(
        pl.format("s{}", pl.int_range(n_services)).alias("service_id"),
        pl.format("p{}", pl.Series(rng.integers(0, 4, n_services))).alias("product"),
        pl.Series("ref", rng.uniform(0.5, 200.0, n_services)),
    )
    which = rng.integers(0, n_services, n)
    q = services[which]
    noise_fee = rng.normal(1.0, 0.05, n)
    noise_margin = rng.normal(0.0, 0.1, n)
    amount = 200.0
    fee = q["fee_pct"].to_numpy() * amount / 100 * noise_fee
    ref = q["ref"].to_numpy()
    applied = ref * (1 - (q["margin"].to_numpy() + noise_margin) / 100)
    quotes = q.select(
        pl.Series("period", np.where(rng.random(n) < 0.9, PERIOD, OTHER_PERIOD)),
        "source_code", "destination_code", "firm", "firm_type", "product", "service_id",
        "speed",
        pl.lit(200, pl.Int32).alias("amount_usd"),
        pl.lit(amount).alias("send_amount"),
        pl.lit("USD").alias("send_currency"),
        pl.Series("fee", fee),
        pl.Series("applied_rate", applied),
        pl.Series("reference_rate", ref),
        "transparent",
        pl.Series("reference_stale", rng.random(n) < 0.005),
        pl.lit("bench").alias("source"),
    )
    quotes.write_parquet(path, statistics=False)


# --- the two engines (each in its own process) ------------------------------------------------

class RssSampler:
    """Peak resident memory while the computation runs, sampled from /proc."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def run_sendcost(data: Path) -> dict[str, Any]:
    from corridors.frame import conform
    from corridors.reading.matrix import read_bilateral_flows
    from corridors.reference import countries_frame
    from metrics import compute_indicators

    countries = countries_frame().lazy()
    flows = read_bilateral_flows(MATRIX).flows.lazy()
    # The quote frame as sendcost holds it in memory (text as Categorical), built before
    # the clock starts, as DuckDB's table is.
    frame = conform(pl.read_parquet(data)).collect().lazy()
    base = RssSampler.rss()
    with RssSampler() as mem:
        t = time.perf_counter()
        doc = compute_indicators(frame, period=PERIOD, amount_usd=200, countries=countries,
                                 flows=flows)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "rss_before": base, "rss_peak_compute": mem.peak,
            "global_average": doc["global_average"], "smart_average": doc["smart_average"],
            "weighted_average": doc["weighted_average"], "corridors": len(doc["corridors"]),
            "services": doc["services"]}


DUCKDB_SERVICES = """
CREATE OR REPLACE TEMP TABLE s AS
SELECT service_id,
       first(source_code) AS source_code, first(destination_code) AS destination_code,
       first(firm) AS firm, first(firm_type) AS firm_type, first(product) AS product,
       first(speed) AS speed, bool_or(transparent) AS transparent, count(*) AS quotes,
       avg(fee / send_amount * 100) AS fee_pct,
       avg(CASE WHEN transparent THEN (reference_rate - applied_rate) / reference_rate * 100
           END) AS fx_margin_pct,
       avg(CASE WHEN transparent THEN fee / send_amount * 100
                + (reference_rate - applied_rate) / reference_rate * 100 END) AS total_cost_pct
FROM quotes
WHERE period IN ($period) AND amount_usd = 200 AND NOT coalesce(reference_stale, false)
GROUP BY service_id
"""

DUCKDB_QUERIES = {
    "corridors": """
        SELECT source_code, destination_code,
               avg(total_cost_pct) FILTER (WHERE transparent) AS average,
               count(*) AS services,
               count(*) FILTER (WHERE transparent AND total_cost_pct IS NOT NULL) AS ts,
               average > 5 AS above_5, average > 10 AS above_10, ts < 3 AS too_few,
               ts = 0 AS no_transparent
        FROM s GROUP BY ALL ORDER BY source_code, destination_code""",
    "smart": """
        WITH q AS (SELECT source_code, destination_code, total_cost_pct,
                          row_number() OVER (PARTITION BY source_code, destination_code
                                             ORDER BY total_cost_pct) AS rn
                   FROM s WHERE transparent AND total_cost_pct IS NOT NULL
                     AND speed IS NOT NULL AND speed <> 'six_days_or_more')
        SELECT source_code, destination_code,
               CASE WHEN count(*) >= 3 THEN avg(total_cost_pct) FILTER (WHERE rn <= 3) END
                 AS smart
        FROM q GROUP BY ALL ORDER BY source_code, destination_code""",
    "cheapest": """
        SELECT source_code, destination_code,
               arg_min(firm, (total_cost_pct, firm, product, service_id)) AS firm,
               arg_min(firm_type, (total_cost_pct, firm, product, service_id)) AS firm_type,
               arg_min(product, (total_cost_pct, firm, product, service_id)) AS product,
               min(total_cost_pct) AS total_cost
        FROM s WHERE transparent AND total_cost_pct IS NOT NULL
        GROUP BY ALL ORDER BY source_code, destination_code""",
    "global": """SELECT avg(total_cost_pct), count(*) FROM s
                 WHERE transparent AND total_cost_pct IS NOT NULL""",
    "g20_sending": """SELECT avg(total_cost_pct) FROM s JOIN countries c
                      ON c.alpha3 = s.source_code AND c.g20
                      WHERE transparent AND total_cost_pct IS NOT NULL""",
    "g8_sending": """SELECT avg(total_cost_pct) FROM s JOIN countries c
                     ON c.alpha3 = s.source_code AND c.g8
                     WHERE transparent AND total_cost_pct IS NOT NULL""",
    "g20_receiving": """SELECT avg(total_cost_pct) FROM s JOIN countries c
                        ON c.alpha3 = s.destination_code AND c.g20
                        WHERE transparent AND total_cost_pct IS NOT NULL""",
    "regions": """SELECT region, avg(total_cost_pct), count(*) FROM s JOIN countries c
                  ON c.alpha3 = s.destination_code
                  WHERE transparent AND total_cost_pct IS NOT NULL AND region IS NOT NULL
                  GROUP BY region ORDER BY region""",
    "firm_types": """SELECT firm_type,
                     avg(total_cost_pct) FILTER (WHERE transparent),
                     count(*) FILTER (WHERE transparent AND total_cost_pct IS NOT NULL)
                     FROM s GROUP BY firm_type ORDER BY firm_type""",
    "shares": """WITH c AS (SELECT avg(total_cost_pct) FILTER (WHERE transparent) AS a
                            FROM s GROUP BY source_code, destination_code)
                 SELECT 100.0 * count(*) FILTER (WHERE a > 5) / count(a),
                        100.0 * count(*) FILTER (WHERE a > 10) / count(a) FROM c""",
    "below_3": """SELECT 100.0 * count(*) FILTER (WHERE total_cost_pct < 3) / count(*)
                  FROM s WHERE transparent AND total_cost_pct IS NOT NULL""",
    "weighted": """WITH c AS (SELECT source_code, destination_code,
                                     avg(total_cost_pct) FILTER (WHERE transparent) AS a
                              FROM s GROUP BY ALL)
                   SELECT sum(a * flow_usd_m) / sum(flow_usd_m) FROM c
                   JOIN flows f USING (source_code, destination_code)
                   WHERE a IS NOT NULL AND flow_usd_m > 0""",
    "non_transparent": """SELECT source_code, destination_code, firm, fee_pct FROM s
                          WHERE NOT transparent
                          ORDER BY source_code, destination_code, firm, fee_pct""",
}


def run_duckdb(data: Path) -> dict[str, Any]:
    import duckdb

    from corridors.reading.matrix import read_bilateral_flows
    from corridors.reference import countries_frame

    # No pyarrow here: hand the small tables over as Parquet next to the quotes.
    countries_file = data.with_name("countries.parquet")
    flows_file = data.with_name("flows.parquet")
    countries_frame().write_parquet(countries_file)
    read_bilateral_flows(MATRIX).flows.write_parquet(flows_file)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE countries AS SELECT * FROM read_parquet('{countries_file}')")
    con.execute(f"CREATE TABLE flows AS SELECT * FROM read_parquet('{flows_file}')")
    con.execute(f"CREATE TABLE quotes AS SELECT * FROM read_parquet('{data}')")
    base = RssSampler.rss()
    with RssSampler() as mem:
        t = time.perf_counter()
        con.execute(DUCKDB_SERVICES.replace("$period", f"'{PERIOD}'"))
        out = {name: con.execute(sql).fetchall() for name, sql in DUCKDB_QUERIES.items()}
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "rss_before": base, "rss_peak_compute": mem.peak,
            "global_average": out["global"][0][0], "weighted_average": out["weighted"][0][0],
            "corridors": len(out["corridors"])}


def child(engine: str, data: Path) -> None:
    result = run_sendcost(data) if engine == "sendcost" else run_duckdb(data)
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


def measure(engine: str, data: Path, repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` runs, each in a fresh process."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", engine, "--data", str(data)],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{engine} failed:\n{out.stderr}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda r: r["seconds"])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quotes", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["sendcost", "duckdb"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data)
        return
    with tempfile.TemporaryDirectory(prefix="sendcost-bench-") as tmp:
        data = Path(tmp) / "quotes.parquet"
        t = time.perf_counter()
        generate(args.quotes, data)
        print(f"{args.quotes:,} synthetic quotes generated in {time.perf_counter() - t:.1f} s "
              f"({os.cpu_count()} CPUs, polars {pl.__version__})")
        sc = measure("sendcost", data, args.repeat)
        dd = measure("duckdb", data, args.repeat)
    for name, r in (("sendcost", sc), ("duckdb", dd)):
        print(f"{name:9s} {r['seconds']:7.3f} s   process peak {gib(r['ru_maxrss'])}   "
              f"added by the computation {gib(r['rss_peak_compute'] - r['rss_before'])}   "
              f"(data loaded: {gib(r['rss_before'])})")
    same = (abs(sc["global_average"] - dd["global_average"]) < 1e-9
            and sc["corridors"] == dd["corridors"]
            and abs(sc["weighted_average"] - dd["weighted_average"]) < 1e-9)
    print(f"same results: {same} (global average {sc['global_average']:.6f}, "
          f"{sc['corridors']} corridors)")
    print(f"ratio sendcost/duckdb: {sc['seconds'] / dd['seconds']:.2f}")


if __name__ == "__main__":
    main()
