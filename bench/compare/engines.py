"""The three engines of `make bench`, behind one small interface (Engine) so that the harness treats them
alike and a fourth (ClickHouse through our service's ClickHouse adapter, a newer ClickHouse) is one class.

  start()                 start the server if the engine has one
  load(data) -> dict      load the data set, timed; returns load_seconds, rows, bytes (on disk), notes
  available(query)        (True, "") or (False, why): an engine may not answer a query yet
  execute(query, period)  (milliseconds, rows): one timed run, rows as in queries.py
  after_runs(query)       dict of extra figures for the results JSON, measured after the timed runs (ours, Q6:
                          server-side refresh durations, users-count / contains latencies; Q7: server-side
                          durations, file sizes and downloads, the other file formats); "problems": [...] in it
                          fail the run like a disagreement
  stop()                  stop what start() started; safe to call twice

Timing is each peer's best case: DuckDB in-process (execute + fetch of the result), ClickHouse and ours over
one keep-alive HTTP connection (request sent until the whole body is read; parsing after the clock stops).
Not thread-safe; the harness drives one engine at a time.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import io
import json
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import time
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queries import (Query, api_rows, as_of_of, canonical, differences, report_csv_rows, report_json_rows,
                     sql_for)

WELL_KNOWN = ["user_id", "game_id", "amount", "currency", "country", "platform", "session_id"]


@dataclass
class DataSet:
    ndjson: Path       # the generator's CloudEvents NDJSON
    csv: Path          # flattened rows for ClickHouse (prepare.py)
    events: int


def dir_bytes(path: Path) -> int:
    """Apparent size of every file under path (du -sb)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (/proc/PID/stat, clock ticks). On a shared machine CPU spent
    depends far less on the neighbours than wall time does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, reopened when the server closed it."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Engine:
    name = ""
    label = ""

    def version(self) -> str:
        return ""

    def start(self) -> None:
        pass

    def load(self, data: DataSet) -> dict[str, Any]:
        raise NotImplementedError

    def available(self, query: Query) -> tuple[bool, str]:
        return True, ""

    def execute(self, query: Query, period) -> tuple[float, list[tuple]]:
        raise NotImplementedError

    def after_runs(self, query: Query) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- DuckDB

DELETED_TYPE = "com.platform.account.user.deleted.v1"


def duckdb_flatten_sql(ndjson: Path) -> str:
    """NDJSON CloudEvents → one row per event with typed columns; `data` keeps the other properties.

    The user is `subject`, else data.user_id (docs/events.md section 3). The well-known data fields become
    columns and leave the JSON (RFC 7386 merge patch with nulls deletes them), so nothing is stored twice.
    Erasure as our service applies it (docs/events.md section 6): every event of a user who has an
    account.user.deleted event is dropped, and the deletion event is kept with its user removed. So every
    engine holds, and is asked about, the same events.
    """
    paths = ", ".join(f"'$.{key}'" for key in WELL_KNOWN)
    patch = "{" + ",".join(f'"{key}":null' for key in WELL_KNOWN) + "}"
    path = str(ndjson).replace("'", "''")
    return f"""
      WITH raw AS (
        SELECT *, json_extract_string(data, [{paths}]) AS w
        FROM read_ndjson('{path}', columns = {{
          specversion: 'VARCHAR', id: 'VARCHAR', source: 'VARCHAR', type: 'VARCHAR', time: 'VARCHAR',
          subject: 'VARCHAR', datacontenttype: 'VARCHAR', traceparent: 'VARCHAR', data: 'JSON'}})),
      flat AS (
        SELECT CAST(time AS TIMESTAMP) AS time, type, coalesce(subject, w[1]) AS user_id, w[2] AS game_id,
               CAST(w[3] AS DOUBLE) AS amount, w[4] AS currency, w[5] AS country, w[6] AS platform,
               w[7] AS session_id, id, source, specversion, datacontenttype, traceparent,
               CAST(json_merge_patch(data, '{patch}') AS VARCHAR) AS data
        FROM raw),
      erased AS (SELECT DISTINCT user_id FROM flat WHERE type = '{DELETED_TYPE}' AND user_id IS NOT NULL)
      SELECT * REPLACE (CASE WHEN type = '{DELETED_TYPE}' THEN NULL ELSE user_id END AS user_id)
      FROM flat
      WHERE type = '{DELETED_TYPE}' OR user_id IS NULL OR user_id NOT IN (SELECT user_id FROM erased)"""


class DuckDBEngine(Engine):
    """DuckDB (PyPI `duckdb`) in this process, a database file, the table sorted by (type, time)."""
    name = "duckdb"
    label = "DuckDB"

    def __init__(self, work: Path):
        import duckdb
        self.duckdb = duckdb
        self.dir = work / "duckdb"
        self.db = self.dir / "events.duckdb"
        self.con = None

    def version(self) -> str:
        return self.duckdb.__version__

    def load(self, data: DataSet) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in (self.db, Path(str(self.db) + ".wal")):
            leftover.unlink(missing_ok=True)
        con = self.duckdb.connect(str(self.db))
        started, cpu = time.perf_counter(), own_cpu_seconds()
        con.execute(f"CREATE TABLE events AS {duckdb_flatten_sql(data.ndjson)} ORDER BY type, time")
        con.execute("CHECKPOINT")
        seconds, cpu = time.perf_counter() - started, own_cpu_seconds() - cpu
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
        # Reopen: queries start from the file, as after a restart (the buffer pool then warms up).
        self.con = self.duckdb.connect(str(self.db), read_only=True)
        return {"load_seconds": seconds, "load_cpu_seconds": cpu, "rows": rows, "bytes": dir_bytes(self.dir),
                "notes": "CREATE TABLE AS SELECT from read_ndjson (JSON parsing and flattening included), "
                         "ORDER BY type, time; CHECKPOINT"}

    def execute(self, query: Query, period) -> tuple[float, list[tuple]]:
        sql = sql_for(query, "duckdb", period)
        started = time.perf_counter()
        rows = self.con.execute(sql).fetchall()
        return (time.perf_counter() - started) * 1000, rows

    def stop(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


# ---------------------------------------------------------------------------------------------- ClickHouse

CLICKHOUSE_TABLE = """
CREATE TABLE events (
  time DateTime('UTC'),
  time_ms UInt16,
  type LowCardinality(String),
  user_id String,
  game_id LowCardinality(String),
  amount Nullable(Float64),
  currency LowCardinality(String),
  country LowCardinality(String),
  platform LowCardinality(String),
  session_id String,
  id String,
  source LowCardinality(String),
  specversion LowCardinality(String),
  datacontenttype LowCardinality(String),
  traceparent String,
  data String
) ENGINE = MergeTree() PARTITION BY toYYYYMM(time) ORDER BY (type, time)
"""
# Columns of the CSV prepare.py writes for ClickHouse, in this order.
CLICKHOUSE_COLUMNS = ["time", "time_ms", "type", "user_id", "game_id", "amount", "currency", "country",
                      "platform", "session_id", "id", "source", "specversion", "datacontenttype",
                      "traceparent", "data"]


class ClickHouseEngine(Engine):
    """A throwaway ClickHouse server (scripts/servers/clickhouse), MergeTree ordered by (type, time)."""
    name = "clickhouse"
    label = "ClickHouse"

    def __init__(self, work: Path, root: Path, compression: str = "lz4"):
        self.dir = work / "clickhouse"
        self.script = root / "scripts" / "servers" / "clickhouse"
        self.compression = compression
        self.env: dict[str, str] = {}
        self.http: HttpConnection | None = None

    def start(self) -> None:
        env = dict(os.environ, CLICKHOUSE_COMPRESSION=self.compression)
        subprocess.run([str(self.script), "start", str(self.dir)], check=True, env=env)
        for line in (self.dir / "clickhouse.env").read_text().splitlines():
            key, _, value = line.partition("=")
            self.env[key] = value
        self.http = HttpConnection(int(self.env["CLICKHOUSE_HTTP_PORT"]))

    def version(self) -> str:
        return self.env.get("CLICKHOUSE_VERSION", "")

    def sql(self, text: str) -> bytes:
        status, body = self.http.request("POST", "/", text.encode())
        if status != 200:
            raise RuntimeError(f"ClickHouse answered {status}: {body[:500].decode(errors='replace')}")
        return body

    def load(self, data: DataSet) -> dict[str, Any]:
        self.sql("DROP TABLE IF EXISTS events")
        self.sql(CLICKHOUSE_TABLE)
        server_pid = int((self.dir / "clickhouse.pid").read_text())
        started, cpu, client_cpu = time.perf_counter(), process_cpu_seconds(server_pid), children_cpu_seconds()
        with open(data.csv, "rb") as csv:
            subprocess.run(["clickhouse-client", "--host", "127.0.0.1", "--port", self.env["CLICKHOUSE_TCP_PORT"],
                            "--query", f"INSERT INTO events ({', '.join(CLICKHOUSE_COLUMNS)}) FORMAT CSV"],
                           stdin=csv, check=True)
        insert_seconds = time.perf_counter() - started
        cpu, client_cpu = process_cpu_seconds(server_pid) - cpu, children_cpu_seconds() - client_cpu
        started = time.perf_counter()
        self.sql("OPTIMIZE TABLE events FINAL")
        optimize_seconds = time.perf_counter() - started
        rows = int(self.sql("SELECT count() FROM events"))
        parts, size = self.sql("SELECT count(), sum(bytes_on_disk) FROM system.parts "
                               "WHERE active AND database = 'default' AND table = 'events'").split()
        # clickhouse-client parses the CSV and sends native blocks: its CPU is part of ClickHouse's load.
        return {"load_seconds": insert_seconds, "load_cpu_seconds": cpu + client_cpu, "server_cpu_seconds": cpu,
                "client_cpu_seconds": client_cpu,
                "optimize_seconds": optimize_seconds, "rows": rows,
                "bytes": int(size), "parts": int(parts),
                "notes": f"clickhouse-client INSERT ... FORMAT CSV of the prepared file (flattening done "
                         f"beforehand by DuckDB, not timed), then OPTIMIZE TABLE FINAL (timed apart); "
                         f"{self.compression} compression; bytes = active parts"}

    def execute(self, query: Query, period) -> tuple[float, list[tuple]]:
        sql = sql_for(query, "clickhouse", period) + "\nFORMAT TabSeparated"
        started = time.perf_counter()
        body = self.sql(sql)
        elapsed = (time.perf_counter() - started) * 1000
        rows = [tuple(line.split("\t")) for line in body.decode().splitlines() if line]
        return elapsed, rows

    def stop(self) -> None:
        if self.env:
            subprocess.run([str(self.script), "stop", str(self.dir)], check=False)
            self.env = {}


# ---------------------------------------------------------------------------------------------- ours

class OursEngine(Engine):
    """analytics-service (Release) with a fresh data dir: ingest through POST /events (bench/tools/ingest_load),
    restart so the memtable is flushed to segments, then GET /metrics/values/{metric} (Q1, Q2), POST
    /analysis/{funnels,retention,experiments} (Q3-Q5), a refresh of a dynamic segment (Q6: `_refresh`) or an
    instance of a built-in report (Q7: `_report`)."""
    name = "ours"
    label = "ours"

    def __init__(self, work: Path, binary: Path, ingest_load: Path, connections: int = 4,
                 query_cache_mb: int | None = None):
        self.dir = work / "ours"
        self.query_cache_mb = query_cache_mb  # None: the service's default
        self.binary = binary
        self.ingest_load = ingest_load
        self.connections = connections
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.token = ""
        self.http: HttpConnection | None = None
        self.defined: dict[str, str] = {}   # metric → "" when created, else why not
        self.data: DataSet | None = None
        self.segments: dict[str, dict[str, Any]] = {}          # query name → {"id", "name", "initial_refresh"}
        self.refreshes: dict[str, list[dict[str, Any]]] = {}   # query name → one entry per execute()
        self.report_ids: dict[str, str] = {}                   # report definition name → its id
        self.reports: dict[str, dict[str, Any]] = {}           # query name → {"period", "runs", "rows"}

    def env(self) -> dict[str, str]:
        return dict(os.environ, ANALYTICS_DATA_DIR=str(self.dir / "data"), ANALYTICS_API_PORT=str(self.port),
                    ANALYTICS_API_HOST="127.0.0.1", LOG_LEVEL="warn",
                    ANALYTICS_PSEUDONYM_KEY_FILE=str(self.dir / "pseudonym.key"))

    def version(self) -> str:
        out = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # Defaults (durability on) except one: an append waits for the flush instead of failing with 503
        # after 30 s. ingest_load does not retry, and on this shared 2-core machine a flush can fall that
        # far behind at 10M events; waiting measures the sustainable intake rate, as a retrying client would.
        config = self.dir / "bench.yaml"
        overlay = "event_store:\n  sync: true\n  append_wait_seconds: 600\n  maintenance_interval_seconds: 5\n"
        if self.query_cache_mb is not None:
            overlay += f"  query_cache_mb: {self.query_cache_mb}\n"
        config.write_text(overlay)
        log = open(self.dir / "service.log", "ab")
        self.proc = subprocess.Popen([str(self.binary), "serve", "--config", str(config)], env=self.env(),
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        (self.dir / "service.pid").write_text(f"{self.proc.pid}\n")  # for bench/compare/run's trap
        deadline = time.monotonic() + 120  # a restart replays the WAL
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"analytics-service exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                status, _ = HttpConnection(self.port).request("GET", "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"analytics-service did not become healthy: {self.log_tail()}")
        self.token = subprocess.run([str(self.binary), "token", "--role", "platform_admin", "--sub", "bench"],
                                    env=self.env(), capture_output=True, text=True, check=True).stdout.strip()
        self.http = HttpConnection(self.port)

    def log_tail(self) -> str:
        try:
            return "\n".join((self.dir / "service.log").read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: flushes the memtable to segments
            try:
                self.proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        (self.dir / "service.pid").unlink(missing_ok=True)

    def load(self, data: DataSet) -> dict[str, Any]:
        self.data = data
        started, cpu = time.perf_counter(), process_cpu_seconds(self.proc.pid)
        out = subprocess.run([str(self.ingest_load), "--port", str(self.port), "--token", self.token,
                              "--file", str(data.ndjson), "--batch", "1000",
                              "--connections", str(self.connections)],
                             capture_output=True, text=True)
        wall, cpu = time.perf_counter() - started, process_cpu_seconds(self.proc.pid) - cpu
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"ingest_load failed ({out.returncode}): {out.stdout.strip()} {out.stderr.strip()}")
        intake = json.loads(out.stdout)
        # Restart: SIGTERM flushes everything to segments; the new process starts from them.
        started = time.perf_counter()
        self.stop()
        flush_seconds = time.perf_counter() - started
        self.start()
        # Settle: after the restart, background compaction merges each closed day's segments (a day counts as
        # closed a minute after its last flush; docs/formats/embedded-store.md), replacing segments, and with
        # them their cached partials, while the first queries run. Waited for and timed apart, as ClickHouse
        # gets OPTIMIZE FINAL.
        started = time.perf_counter()
        self._settle()
        settle_seconds = time.perf_counter() - started
        events_dir = self.dir / "data" / "events"
        return {"load_seconds": intake.get("seconds", wall), "load_wall_seconds": wall, "load_cpu_seconds": cpu,
                "client_cpu_seconds": intake.get("load_cpu_seconds"),
                "flush_seconds": flush_seconds, "settle_seconds": settle_seconds, "rows": intake.get("accepted"),
                "events_per_second": intake.get("events_per_second"),
                "ack_latency_ms_p50": intake.get("ack_latency_ms_p50"),
                "ack_latency_ms_p99": intake.get("ack_latency_ms_p99"),
                "rejected": intake.get("rejected"), "failed_batches": intake.get("failed_batches"),
                # At rest = segments + manifest. The WAL the service wrote during intake is still there
                # after a clean shutdown and restart (the store truncates it at its next flush), so it is
                # reported apart rather than counted as storage.
                "bytes": dir_bytes(events_dir) - dir_bytes(events_dir / "wal"),
                "bytes_segments": dir_bytes(events_dir / "segments"),
                "bytes_wal_left": dir_bytes(events_dir / "wal"),
                "query_cache_mb": "default" if self.query_cache_mb is None else self.query_cache_mb,
                "notes": "HTTP POST /api/v1/analytics/events, 1,000-event NDJSON batches over "
                         f"{self.connections} connections (ingest_load; the file is read before the clock "
                         "starts), WAL fdatasync on, append_wait_seconds 600; then SIGTERM (flush to "
                         "segments) and restart, then a wait until compaction has merged every day's "
                         "segments (settle_seconds, timed apart); bytes = data/events/ without wal/ (reported "
                         "apart as bytes_wal_left)"}

    def _settle(self) -> None:
        """Until every day partition is one segment, or nothing changed for 100 s (days larger than
        compaction_max_rows keep several), at most 600 s; then until the replaced segments' files are gone
        (the store deletes a file once nothing reads its segment any more, which can be a moment after the
        compaction that replaced it), at most 60 s more, so that the bytes measured are the live segments'."""
        def stats() -> dict:
            status, body = self.http.request("GET", "/readyz")
            return json.loads(body)["components"]["event_store"]["stats"] if status == 200 else {}
        last, changed = None, time.monotonic()
        deadline = changed + 600
        while time.monotonic() < deadline:
            current = stats()
            now = (current.get("segments"), current.get("partitions"), current.get("compactions"))
            if now[0] is not None and now[0] <= now[1]:
                break
            if now != last:
                last, changed = now, time.monotonic()
            elif time.monotonic() - changed > 100:
                break
            time.sleep(0.5)
        segments = self.dir / "data" / "events" / "segments"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stats().get("segment_bytes") != dir_bytes(segments):
            time.sleep(0.5)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _define(self, definition: dict) -> str:
        name = definition["name"]
        if name not in self.defined:
            status, body = self.http.request("POST", "/api/v1/analytics/metrics/definitions",
                                             json.dumps(definition).encode(),
                                             dict(self._auth(), **{"Content-Type": "application/json"}))
            self.defined[name] = "" if status in (201, 409) else \
                f"creating metric {name} answered {status}: {body[:300].decode(errors='replace')}"
        return self.defined[name]

    def _path(self, query: Query, period) -> str:
        # The period is half-open [period_start, period_end) (docs/metrics.md section 3).
        start, end = period
        params = dict(query.api.params, period_start=f"{start}T00:00:00Z", period_end=f"{end}T00:00:00Z")
        return f"/api/v1/analytics/metrics/values/{query.api.metric}?{urllib.parse.urlencode(params)}"

    @staticmethod
    def analysis_body(query: Query, period) -> dict[str, Any]:
        """The JSON body of an analysis POST: the query's body plus the period as dates. The API's end date is
        inclusive (its whole day), so the harness's half-open [start, end) is period_start = start,
        period_end = end - 1 day: exactly the events the SQL of the peers reads, in UTC."""
        start, end = period
        return dict(query.api.body or {}, period_start=str(start), period_end=str(end - dt.timedelta(days=1)),
                    timezone="UTC")

    def available(self, query: Query) -> tuple[bool, str]:
        if query.api.method == "GET" and query.api.definition is not None:
            problem = self._define(query.api.definition)
            if problem:
                return False, problem
        return True, ""

    def execute(self, query: Query, period) -> tuple[float, list[tuple]]:
        if query.api.method == "SEGMENT":
            return self._refresh(query, period)
        if query.api.method == "REPORT":
            return self._report(query, period)
        if query.api.method == "POST":
            path = query.api.path
            payload = json.dumps(self.analysis_body(query, period)).encode()
            headers = dict(self._auth(), **{"Content-Type": "application/json"})
        else:
            path, payload, headers = self._path(query, period), None, self._auth()
        started = time.perf_counter()
        status, body = self.http.request(query.api.method, path, payload, headers)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise EngineUnavailable(f"{query.api.method} {path} answered {status}: "
                                    f"{body[:300].decode(errors='replace')}")
        return elapsed, api_rows(query, json.loads(body))


    # ------------------------------------------------------------------------------------------ segments (Q6)

    SEGMENTS = "/api/v1/analytics/segments"
    RUNS = "/api/v1/analytics/pipelines/runs"
    RUN_TIMEOUT_SECONDS = 600
    BUSY_POLL_SECONDS = 0.002   # poll without sleeping for the first 2 ms of a run, then every 0.5 ms
    POLL_SLEEP_SECONDS = 0.0005
    READS = 2000                # the micro-measure: GETs of users-count, and of contains/{user_id}
    CONTAINS_MEMBERS = 1000     # of the contains GETs: members asked (cycled when fewer), the rest non-members
    READ_TARGET_P99_MS = 1.0    # issue 6: users-count and contains under 1 ms p99

    def _call(self, method: str, path: str, document: Any = None) -> tuple[int, Any, bytes]:
        """One untimed API call: (status, parsed JSON body or None, raw body)."""
        headers = self._auth()
        payload = None
        if document is not None:
            payload = json.dumps(document).encode()
            headers["Content-Type"] = "application/json"
        status, body = self.http.request(method, path, payload, headers)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return status, parsed, body

    @staticmethod
    def _unexpected(what: str, status: int, body: bytes) -> Exception:
        """A 404/405/501 means the endpoint is not there yet ("not available", the run goes on); any other
        unexpected status is a failure of the run."""
        text = f"{what} answered {status}: {body[:300].decode(errors='replace')}"
        return EngineUnavailable(text) if status in (404, 405, 501) else RuntimeError(text)

    def _wait_run(self, run_id: str, started: float) -> tuple[float, dict[str, Any]]:
        """A segment refresh: _wait_done on GET /pipelines/runs/{run_id}."""
        return self._wait_done(f"{self.RUNS}/{urllib.parse.quote(str(run_id), safe='')}", started,
                               f"segment refresh run {run_id}")

    def _wait_done(self, path: str, started: float, what: str) -> tuple[float, dict[str, Any]]:
        """Polls GET `path` (a pipeline run or a report instance, both with "status" queued → running →
        completed) over the keep-alive connection until it says completed: (milliseconds from `started` until
        the answer saying so was read, the document). Any other final status raises. No sleep for the first
        BUSY_POLL_SECONDS, then POLL_SLEEP_SECONDS between polls."""
        headers = self._auth()
        while True:
            status, body = self.http.request("GET", path, None, headers)
            seen = time.perf_counter()
            if status != 200:
                raise self._unexpected(f"GET {path}", status, body)
            run = json.loads(body)
            state = run.get("status")
            if state == "completed":
                return (seen - started) * 1000, run
            if state == "failed":
                raise RuntimeError(f"{what} failed: {run.get('error')}")
            if state not in ("queued", "running"):
                raise RuntimeError(f"{what} has status {state!r}: {run.get('error')}")
            if seen - started > self.RUN_TIMEOUT_SECONDS:
                raise RuntimeError(f"{what} not completed after {self.RUN_TIMEOUT_SECONDS} s")
            if seen - started > self.BUSY_POLL_SECONDS:
                time.sleep(self.POLL_SLEEP_SECONDS)

    def _segment(self, query: Query, period) -> dict[str, Any]:
        """The query's segment, created on the first call (untimed): POST /segments/definitions with the rule
        and as_of = the period's last millisecond, then a wait for the first refresh that creation queues."""
        if query.name in self.segments:
            return self.segments[query.name]
        as_of = as_of_of(period).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        template = dict(query.api.definition or {})
        prefix = template.pop("name", "bench_segment")
        for n in range(1, 101):  # the data dir is fresh, so _1 is free unless a definition was left behind
            definition = {"name": f"{prefix}_{n}", "type": "dynamic", **template, "as_of": as_of,
                          "rule": query.api.body}
            started = time.perf_counter()
            status, created, body = self._call("POST", f"{self.SEGMENTS}/definitions", definition)
            if status != 409:
                break
        if status != 201 or not isinstance(created, dict) or not created.get("id"):
            raise self._unexpected(f"POST {self.SEGMENTS}/definitions", status, body)
        segment = {"id": str(created["id"]), "name": definition["name"], "as_of": as_of, "definition": definition}
        run_id = created.get("refresh_run_id")
        if run_id is None:  # not queued by the creation: ask for it
            started = time.perf_counter()
            status, queued, body = self._call("POST", f"{self.SEGMENTS}/{segment['id']}/refresh")
            if status != 202 or not isinstance(queued, dict) or "run_id" not in queued:
                raise self._unexpected(f"POST {self.SEGMENTS}/{segment['id']}/refresh", status, body)
            run_id = queued["run_id"]
        client_ms, run = self._wait_run(run_id, started)
        segment["initial_refresh"] = {"run_id": run_id, "client_ms": client_ms,
                                      "server_duration_ms": run.get("duration_ms"),
                                      "users_count": (run.get("result") or {}).get("users_count"),
                                      "result": run.get("result"),
                                      "note": "the refresh queued by the creation; client_ms from sending the "
                                              "creating POST until the run was seen completed"}
        self.segments[query.name] = segment
        self.refreshes[query.name] = []
        return segment

    def _users_count(self, segment_id: str) -> int:
        path = f"{self.SEGMENTS}/{urllib.parse.quote(segment_id, safe='')}/users-count"
        status, answer, body = self._call("GET", path)
        if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("users_count"), int):
            raise self._unexpected(f"GET {path}", status, body)
        return answer["users_count"]

    def _refresh(self, query: Query, period) -> tuple[float, list[tuple]]:
        """One timed run of a segment row: POST /segments/{id}/refresh (202 {"run_id"}), then GET
        /pipelines/runs/{run_id} until completed; the clock runs from sending the POST until the answer saying
        "completed" is read. The answer, users-count, is read after the clock and checked against the run's
        result; the run's own duration_ms (server side) is kept for after_runs()."""
        segment = self._segment(query, period)
        path = f"{self.SEGMENTS}/{urllib.parse.quote(segment['id'], safe='')}/refresh"
        headers = self._auth()
        started = time.perf_counter()
        status, body = self.http.request("POST", path, b"", headers)
        if status != 202:
            raise self._unexpected(f"POST {path}", status, body)
        run_id = json.loads(body)["run_id"]
        elapsed, run = self._wait_run(run_id, started)
        users = self._users_count(segment["id"])
        result_users = (run.get("result") or {}).get("users_count")
        if result_users is not None and result_users != users:
            raise RuntimeError(f"refresh run {run_id} says users_count {result_users}, users-count says {users}")
        self.refreshes[query.name].append({"run_id": run_id, "client_ms": elapsed,
                                           "server_duration_ms": run.get("duration_ms"), "users_count": users,
                                           "result": run.get("result")})
        return elapsed, [(users,)]

    def after_runs(self, query: Query) -> dict[str, Any]:
        if query.api.method == "REPORT":
            return self._report_after_runs(query)
        if query.api.method != "SEGMENT" or query.name not in self.segments:
            return {}
        segment, refreshes = self.segments[query.name], self.refreshes[query.name]
        server = [r["server_duration_ms"] for r in refreshes[1:] if isinstance(r["server_duration_ms"], (int, float))]
        out: dict[str, Any] = {
            "segment": {key: segment[key] for key in ("id", "name", "as_of", "definition")},
            "initial_refresh": segment["initial_refresh"],
            # The pipeline run's own duration_ms of the warm-up (first) and each timed run, beside the client's.
            "server_duration_ms": {
                "first": refreshes[0]["server_duration_ms"] if refreshes else None,
                "median": statistics.median(server) if server else None,
                "runs": [r["server_duration_ms"] for r in refreshes[1:]]},
            "refresh_run_ids": [r["run_id"] for r in refreshes],
            "last_refresh_result": refreshes[-1]["result"] if refreshes else None,  # the run's "result" as is
        }
        if not refreshes:
            return out
        users = refreshes[-1]["users_count"]
        problems: list[str] = []
        try:
            out["reads"] = self._segment_reads(segment["id"], users, problems)
        except EngineUnavailable as error:
            out["reads"] = {"available": False, "reason": str(error)}
        except Exception as error:  # the refresh figures stand; the reads failed
            out["reads"] = {"available": False, "reason": f"failed: {type(error).__name__}: {error}"}
            problems.append(f"{query.name}: ours' segment reads failed: {type(error).__name__}: {error}")
        out["problems"] = problems
        return out

    def _members(self, segment_id: str) -> list[str]:
        """Every member's original user id, GET /segments/{id}/members page by page (untimed)."""
        members: list[str] = []
        cursor = None
        for _ in range(100000):
            params = {"limit": "1000"}
            if cursor:
                params["cursor"] = cursor
            path = f"{self.SEGMENTS}/{urllib.parse.quote(segment_id, safe='')}/members?" + \
                urllib.parse.urlencode(params)
            status, page, body = self._call("GET", path)
            if status != 200 or not isinstance(page, dict):
                raise self._unexpected(f"GET {path}", status, body)
            members += [str(user) for user in page.get("users") or []]
            cursor = page.get("next_cursor")
            if not cursor:
                return members
        raise RuntimeError("GET members: more than 100,000 pages")

    def _non_members(self, members: set[str], wanted: int) -> list[str]:
        """Users of the data set (subject, else data.user_id) who are not members, from the start of the NDJSON."""
        found: dict[str, None] = {}
        if self.data is None:
            return []
        with open(self.data.ndjson, encoding="utf-8") as lines:
            for count, line in enumerate(lines):
                if len(found) >= wanted or count >= 5_000_000:
                    break
                event = json.loads(line)
                user = event.get("subject") or (event.get("data") or {}).get("user_id")
                if isinstance(user, str) and user and user not in members:
                    found.setdefault(user)
        return list(found)

    def _segment_reads(self, segment_id: str, users: int, problems: list[str]) -> dict[str, Any]:
        """The micro-measure (after the timed runs; ours only): READS GETs of users-count, then READS GETs of
        contains/{user_id} (members and non-members interleaved), one at a time over the keep-alive
        connection, each timed from sending the request until its whole body is read. Every answer is checked
        after the clock: users-count = the refreshed count, contains true for members and false otherwise."""
        quoted = urllib.parse.quote(segment_id, safe="")
        members = self._members(segment_id)
        member_set = set(members)
        if len(members) != users or len(member_set) != len(members):
            problems.append(f"segment {segment_id}: GET members listed {len(members)} users "
                            f"({len(member_set)} distinct), users-count says {users}")
        outsiders = self._non_members(member_set, self.READS - self.CONTAINS_MEMBERS)
        rng = random.Random(42)
        asked_members = rng.sample(members, min(len(members), self.CONTAINS_MEMBERS))
        if not asked_members and not outsiders:
            raise RuntimeError("no user to ask contains about")
        # READS questions: CONTAINS_MEMBERS about members (cycled when there are fewer), the rest about
        # non-members; all about one kind when the other has nobody.
        member_questions = self.CONTAINS_MEMBERS if asked_members and outsiders else \
            (self.READS if asked_members else 0)
        plan = [(asked_members[i % len(asked_members)], True) for i in range(member_questions)] + \
               [(outsiders[i % len(outsiders)], False) for i in range(self.READS - member_questions)]
        rng.shuffle(plan)
        headers = self._auth()

        count_path = f"{self.SEGMENTS}/{quoted}/users-count"
        count_ms, wrong_counts = [], []
        for _ in range(self.READS):
            started = time.perf_counter()
            status, body = self.http.request("GET", count_path, None, headers)
            count_ms.append((time.perf_counter() - started) * 1000)
            answer = json.loads(body) if status == 200 else None
            if answer is None or answer.get("users_count") != users:
                wrong_counts.append(f"{status} {body[:200].decode(errors='replace')}")
        if wrong_counts:
            problems.append(f"segment {segment_id}: {len(wrong_counts)} of {self.READS} users-count answers were "
                            f"not {users}, e.g. {wrong_counts[0]}")

        contains_ms, wrong = [], []
        for user, expected in plan:
            path = f"{self.SEGMENTS}/{quoted}/contains/{urllib.parse.quote(user, safe='')}"
            started = time.perf_counter()
            status, body = self.http.request("GET", path, None, headers)
            contains_ms.append((time.perf_counter() - started) * 1000)
            answer = json.loads(body) if status == 200 else None
            if answer is None or answer.get("contains") is not expected:
                wrong.append(f"{user} ({'member' if expected else 'non-member'}): {status} "
                             f"{body[:200].decode(errors='replace')}")
        if wrong:
            problems.append(f"segment {segment_id}: {len(wrong)} of {len(plan)} contains answers wrong, e.g. "
                            + "; ".join(wrong[:3]))
        members_asked = sum(1 for _, expected in plan if expected)
        return {
            "members_listed": len(members),
            "members_sha1": hashlib.sha1("\n".join(sorted(members)).encode()).hexdigest(),
            "users_count": dict(latency_summary(count_ms), wrong=len(wrong_counts),
                                meets_target=percentile(count_ms, 99) < self.READ_TARGET_P99_MS),
            "contains": dict(latency_summary(contains_ms), wrong=len(wrong), members_asked=members_asked,
                             distinct_members=len(asked_members), non_members_asked=len(plan) - members_asked,
                             distinct_non_members=len(outsiders),
                             meets_target=percentile(contains_ms, 99) < self.READ_TARGET_P99_MS),
            "target_p99_ms": self.READ_TARGET_P99_MS,
            "method": f"{self.READS} GET users-count, then {self.READS} GET contains/{{user_id}} (members and "
                      "non-members shuffled), one at a time over one keep-alive connection; each timed from "
                      "sending the request until the whole body is read; answers checked after the clock",
        }

    # ------------------------------------------------------------------------------------------ reports (Q7)

    def _report_definition_id(self, query: Query) -> str:
        """The id of the report definition named query.api.report: GET `path`/definitions once (untimed)."""
        name = query.api.report
        if name not in self.report_ids:
            path = f"{query.api.path}/definitions"
            status, listing, body = self._call("GET", path)
            if status != 200 or not isinstance(listing, dict):
                raise self._unexpected(f"GET {path}", status, body)
            ids = [item.get("id") for item in listing.get("items") or [] if item.get("name") == name]
            if not ids or not ids[0]:
                raise EngineUnavailable(f"GET {path} lists no report definition named {name}")
            self.report_ids[name] = str(ids[0])
        return self.report_ids[name]

    @staticmethod
    def report_parameters(period) -> dict[str, str]:
        """The period as the report's parameters: its end date is inclusive (its whole day), like the analysis
        bodies', so [start, end) is period_start = start, period_end = end - 1 day, in UTC."""
        start, end = period
        return {"period_start": str(start), "period_end": str(end - dt.timedelta(days=1)), "timezone": "UTC"}

    def _report_instance(self, query: Query, period, output_format: str) -> dict[str, Any]:
        """One report instance. Timed (client_ms): from sending POST `path`/instances (202 {"instance_id"})
        until the GET `path`/instances/{id} answer saying completed is read, polled as a segment refresh is.
        Then, untimed by that clock, GET its download_path, timed apart (download_ms). The file's size must be
        the document's file.size_bytes. Returns the figures and the file ("content")."""
        request = dict(query.api.body or {}, report_definition_id=self._report_definition_id(query),
                       parameters=self.report_parameters(period), output_format=output_format)
        path = f"{query.api.path}/instances"
        payload = json.dumps(request).encode()
        headers = dict(self._auth(), **{"Content-Type": "application/json"})
        started = time.perf_counter()
        status, body = self.http.request("POST", path, payload, headers)
        if status != 202:
            raise self._unexpected(f"POST {path}", status, body)
        instance_id = str(json.loads(body)["instance_id"])
        instance_path = f"{path}/{urllib.parse.quote(instance_id, safe='')}"
        client_ms, instance = self._wait_done(instance_path, started, f"report instance {instance_id}")

        file = instance.get("file") or {}
        download_path = file.get("download_path") or f"{instance_path}/download"
        started = time.perf_counter()
        status, content = self.http.request("GET", download_path, None, self._auth())
        download_ms = (time.perf_counter() - started) * 1000
        if status != 200:
            raise self._unexpected(f"GET {download_path}", status, content)
        if file.get("size_bytes") is not None and file["size_bytes"] != len(content):
            raise RuntimeError(f"report instance {instance_id}: file.size_bytes {file['size_bytes']}, "
                               f"downloaded {len(content)} bytes")
        section_rows = next((section.get("rows") for section in instance.get("sections") or []
                             if section.get("name") == query.api.section), None)
        return {"instance_id": instance_id, "output_format": output_format, "client_ms": client_ms,
                "server_duration_ms": instance.get("duration_ms"), "size_bytes": len(content),
                "download_ms": download_ms, "row_count": instance.get("row_count"), "section_rows": section_rows,
                "content": content}

    def _report(self, query: Query, period) -> tuple[float, list[tuple]]:
        """One timed run of a report row: an instance in the timed format (query.api.body's output_format,
        CSV); the answer is its file's section, read after the clock and checked against the instance's row
        count for the section."""
        output_format = (query.api.body or {}).get("output_format", "csv")
        if output_format != "csv":
            raise ValueError(f"{query.name}: the timed report format must be csv, not {output_format}")
        run = self._report_instance(query, period, output_format)
        rows = report_csv_rows(query, run.pop("content").decode("utf-8"))
        if run["section_rows"] is not None and run["section_rows"] != len(rows):
            raise RuntimeError(f"report instance {run['instance_id']}: section {query.api.section} has "
                               f"{run['section_rows']} rows, the CSV {len(rows)}")
        state = self.reports.setdefault(query.name, {"runs": []})
        state.update(period=period, rows=rows)
        state["runs"].append(run)
        return run["client_ms"], rows

    def _report_after_runs(self, query: Query) -> dict[str, Any]:
        """The report row's extra figures: the instances' own duration_ms (server side) and the CSV's size and
        download times beside the client times; then one instance each in JSON and XLSX (client and server
        time, size, download), the JSON's section checked against the CSV's answer and the XLSX's sheet of the
        section counted."""
        state = self.reports.get(query.name)
        if not state or not state["runs"]:
            return {}
        runs, period = state["runs"], state["period"]
        timed = runs[1:]  # runs[0] is the warm-up

        def summary(key: str) -> dict[str, Any]:
            values = [run[key] for run in timed if isinstance(run[key], (int, float))]
            return {"first": runs[0][key], "median": statistics.median(values) if values else None,
                    "runs": [run[key] for run in timed]}

        out: dict[str, Any] = {
            "report": {"definition_id": self._report_definition_id(query), "name": query.api.report,
                       "section": query.api.section, "parameters": self.report_parameters(period)},
            "server_duration_ms": summary("server_duration_ms"),
            "download_ms": summary("download_ms"),
            "file_bytes": runs[-1]["size_bytes"],
            "row_count": runs[-1]["row_count"],
            "instance_ids": [run["instance_id"] for run in runs],
        }
        problems: list[str] = []
        answer = canonical(query, state["rows"], period)
        formats: dict[str, Any] = {}
        for output_format in ("json", "xlsx"):
            try:
                run = self._report_instance(query, period, output_format)
                content = run.pop("content")
                if output_format == "json":
                    rows = report_json_rows(query, json.loads(content))
                    diff = differences(query, answer, canonical(query, rows, period))
                    run["agrees_with_csv"] = not diff
                    if diff:
                        problems.append(f"{query.name}: ours' JSON report differs from its CSV: " + "; ".join(diff))
                else:
                    run["sheet_rows"] = xlsx_sheet_rows(content, query.api.section)
                    if run["sheet_rows"] != len(state["rows"]):
                        problems.append(f"{query.name}: ours' XLSX report has {run['sheet_rows']} data rows in "
                                        f"sheet {query.api.section}, the CSV {len(state['rows'])}")
                formats[output_format] = run
            except EngineUnavailable as error:
                formats[output_format] = {"available": False, "reason": str(error)}
            except Exception as error:
                formats[output_format] = {"available": False, "reason": f"failed: {type(error).__name__}: {error}"}
                problems.append(f"{query.name}: ours' {output_format} report failed: {type(error).__name__}: {error}")
        out["formats"] = formats
        out["problems"] = problems
        return out


def xlsx_sheet_rows(content: bytes, sheet: str) -> int:
    """Data rows (rows after the header) of the worksheet named `sheet` in an XLSX file."""
    with zipfile.ZipFile(io.BytesIO(content)) as book:
        workbook = book.read("xl/workbook.xml").decode()
        match = re.search(r'<sheet [^>]*name="' + re.escape(sheet) + r'"[^>]*r:id="([^"]+)"', workbook)
        if not match:
            raise ValueError(f"XLSX: no sheet named {sheet}")
        rels = book.read("xl/_rels/workbook.xml.rels").decode()
        target = re.search(r'<Relationship [^>]*Id="' + re.escape(match.group(1)) + r'"[^>]*Target="([^"]+)"', rels)
        if not target:
            target = re.search(r'<Relationship [^>]*Target="([^"]+)"[^>]*Id="' + re.escape(match.group(1)) + '"',
                               rels)
        if not target:
            raise ValueError(f"XLSX: sheet {sheet} has no part")
        part = target.group(1).lstrip("/")
        part = part if part.startswith("xl/") else "xl/" + part
        return book.read(part).decode().count("<row ") - 1


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def latency_summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": statistics.median(values), "p99_ms": percentile(values, 99),
            "max_ms": max(values), "mean_ms": statistics.fmean(values)}


class EngineUnavailable(Exception):
    """The engine cannot answer this query (yet): reported as "not available", the run goes on."""
