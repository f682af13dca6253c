"""Prepares the peers' input once per data set (cached next to the NDJSON by bench/compare/run):

  <name>.csv        the flattened rows for ClickHouse (columns engines.CLICKHOUSE_COLUMNS; CSV with "" quoting,
                    \\N for a missing amount, '' for other missing strings, time as 'YYYY-MM-DD HH:MM:SS' UTC
                    plus time_ms), written by DuckDB from the same flattening SQL the DuckDB engine loads with
  <name>.meta.json  rows (events kept after erasure), erased_users, first_day, last_day (UTC): the period
                    every engine is asked about

ClickHouse 18.16 reads neither Parquet nor DuckDB's NDJSON output quickly; CSV is its fast text format.
Not timed as anyone's load.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb

from engines import CLICKHOUSE_COLUMNS, duckdb_flatten_sql

STRING_COLUMNS = ["type", "user_id", "game_id", "currency", "country", "platform", "session_id", "id", "source",
                  "specversion", "datacontenttype", "traceparent", "data"]


# Bump when the flattening changes, so that cached files are rebuilt.
PREPARE_VERSION = 2


def prepare(ndjson: Path, csv: Path, meta: Path) -> dict:
    if csv.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("version") == PREPARE_VERSION:
            return info
    started = time.perf_counter()
    con = duckdb.connect()  # in memory; spills to a temp dir when needed
    con.execute(f"CREATE TEMP TABLE flat AS {duckdb_flatten_sql(ndjson)}")
    rows, erased_users, first_day, last_day = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE type = 'com.platform.account.user.deleted.v1'), "
        "CAST(min(time) AS DATE), CAST(max(time) AS DATE) FROM flat").fetchone()
    expressions = {"time": "strftime(time, '%Y-%m-%d %H:%M:%S')",
                   "time_ms": "CAST(epoch_ms(time) % 1000 AS USMALLINT)",
                   "amount": "amount"}
    for column in STRING_COLUMNS:
        expressions[column] = f"coalesce({column}, '')"
    select = ", ".join(f"{expressions[column]} AS {column}" for column in CLICKHOUSE_COLUMNS)
    tmp = csv.with_suffix(".csv.tmp")
    con.execute(f"""
      COPY (SELECT {select} FROM flat)
      TO '{str(tmp).replace("'", "''")}' (FORMAT CSV, HEADER false, NULLSTR '\\N', QUOTE '"', ESCAPE '"')""")
    con.close()
    tmp.rename(csv)
    info = {"version": PREPARE_VERSION, "rows": rows, "erased_users": erased_users,
            "first_day": str(first_day), "last_day": str(last_day), "prepare_seconds": time.perf_counter() - started}
    meta.write_text(json.dumps(info, indent=2) + "\n")
    return info
