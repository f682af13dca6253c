"""The three engines of `make bench`, behind one small interface (Engine) so that the harness treats them
alike and a fourth (ClickHouse through our service's ClickHouse adapter, a newer ClickHouse) is one class.

  start()                 start the server if the engine has one
  load(data) -> dict      load the data set, timed; returns load_seconds, rows, bytes (on disk), notes
  available(query)        (True, "") or (False, why): an engine may not answer a query yet
  execute(query, period)  (milliseconds, rows): one timed run, rows as in queries.py
  stop()                  stop what start() started; safe to call twice

Timing is each peer's best case: DuckDB in-process (execute + fetch of the result), ClickHouse and ours over
one keep-alive HTTP connection (request sent until the whole body is read; parsing after the clock stops).
Not thread-safe; the harness drives one engine at a time.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queries import Query, api_rows, sql_for

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
    restart so the memtable is flushed to segments, then GET /metrics/values/{metric} (Q1, Q2) or POST
    /analysis/{funnels,retention,experiments} (Q3-Q5)."""
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


class EngineUnavailable(Exception):
    """The engine cannot answer this query (yet): reported as "not available", the run goes on."""
