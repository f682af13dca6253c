"""`make bench` driver (called by bench/compare/run): load one data set into every engine, ask every query of
queries.QUERIES, check that the engines agree, print Markdown tables and write the results JSON.

Per engine and query: one warm-up run (reported as "first run"), then --runs timed runs whose median is
reported; every run's answer must equal the first one's. --queries Q7,Q1 asks only those (every engine still loads
the whole data set). Exit codes:
0 done (ours may be "not available"), 1 the engines disagree or an engine failed, 2 bad usage.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from engines import ClickHouseEngine, DataSet, DuckDBEngine, Engine, EngineUnavailable, OursEngine
from prepare import prepare
from queries import QUERIES, Query, canonical, differences, title_of

PEERS = ("duckdb", "clickhouse")
TARGET_SPEEDUP = 5.0  # the target: ours at least 5x faster than the faster peer


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_bytes"] = int(line.split()[1]) * 1024
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


def git_info(root: Path) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def make_engine(name: str, args) -> Engine:
    if name == "duckdb":
        return DuckDBEngine(args.work)
    if name == "clickhouse":
        return ClickHouseEngine(args.work, args.root, compression=args.clickhouse_compression)
    if name == "ours":
        return OursEngine(args.work, args.binary, args.ingest_load, query_cache_mb=args.ours_query_cache_mb)
    raise SystemExit(f"unknown engine {name} (ours, duckdb, clickhouse)")


def fmt_ms(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def select_queries(spec: str) -> list[Query]:
    """--queries: comma-separated query numbers ("Q7", "7") or names ("report_daily_kpi_summary"); empty: all."""
    if not spec.strip():
        return list(QUERIES)
    by_key: dict[str, Query] = {}
    for query in QUERIES:
        number = query.title.split()[0].upper()  # "Q7"
        by_key.update({number: query, number[1:]: query, query.name.upper(): query})
    chosen: list[Query] = []
    for key in (item.strip().upper() for item in spec.split(",") if item.strip()):
        if key not in by_key:
            raise SystemExit(f"--queries: unknown query {key} (Q1..Q{len(QUERIES)} or a name: "
                             f"{', '.join(query.name for query in QUERIES)})")
        if by_key[key] not in chosen:
            chosen.append(by_key[key])
    return [query for query in QUERIES if query in chosen]


def report_lines(engine_label: str, entry: dict) -> list[str]:
    """Progress lines for a report row (ours): server-side durations, the CSV's size and download, the other
    formats."""
    server, download = entry["server_duration_ms"], entry["download_ms"]
    out = [f"{engine_label} instance duration_ms (server) median {fmt_ms(server.get('median'))} "
           f"(first {fmt_ms(server.get('first'))}; runs {', '.join(fmt_ms(t) for t in server.get('runs', []))}); "
           f"CSV {entry.get('file_bytes') or 0:,} bytes, {entry.get('row_count')} rows, download median "
           f"{fmt_ms(download.get('median'))} ms"]
    for name, run in (entry.get("formats") or {}).items():
        if run.get("available") is False:
            out.append(f"{engine_label} {name.upper()} not measured: {run.get('reason')}")
        else:
            out.append(f"{engine_label} {name.upper()} (once): {fmt_ms(run['client_ms'])} ms client, "
                       f"{fmt_ms(run['server_duration_ms'])} ms server, {run['size_bytes']:,} bytes, download "
                       f"{fmt_ms(run['download_ms'])} ms")
    return out


def report_table(entry: dict) -> list[str]:
    """Markdown rows for a report row's extra figures (ours)."""
    server, download = entry["server_duration_ms"], entry["download_ms"]
    ratio = entry.get("ratio_to_fastest_peer")
    lines = ["| figure | median ms | first ms | bytes |", "|---|---:|---:|---:|",
             "| CSV, client: POST → instance seen completed"
             + (f" (ours / fastest peer {ratio:.3f})" if ratio is not None else "")
             + f" | {fmt_ms(entry['median_ms'])} | {fmt_ms(entry['first_ms'])} | {entry.get('file_bytes') or 0:,} |",
             f"| CSV, server: the instance's duration_ms | {fmt_ms(server.get('median'))} | "
             f"{fmt_ms(server.get('first'))} | |",
             f"| CSV download (GET .../download, untimed above) | {fmt_ms(download.get('median'))} | "
             f"{fmt_ms(download.get('first'))} | |"]
    for name, run in (entry.get("formats") or {}).items():
        if run.get("available") is False:
            lines.append(f"| {name.upper()} | not measured: {run.get('reason')} | | |")
        else:
            lines.append(f"| {name.upper()} once, client / server / download | {fmt_ms(run['client_ms'])} / "
                         f"{fmt_ms(run['server_duration_ms'])} / {fmt_ms(run['download_ms'])} | | "
                         f"{run['size_bytes']:,} |")
    return lines


def extra_lines(engine_label: str, entry: dict) -> list[str]:
    return report_lines(engine_label, entry) if "formats" in entry else segment_lines(engine_label, entry)


def extra_table(entry: dict) -> list[str]:
    return report_table(entry) if "formats" in entry else segment_table(entry)


def segment_lines(engine_label: str, entry: dict) -> list[str]:
    """Progress lines for a segment row: the server-side refresh durations and the read micro-measure."""
    if "server_duration_ms" not in entry:
        return []
    server, initial = entry["server_duration_ms"], entry.get("initial_refresh") or {}
    out = [f"{engine_label} refresh duration_ms (server) median {fmt_ms(server.get('median'))} "
           f"(first {fmt_ms(server.get('first'))}; runs {', '.join(fmt_ms(t) for t in server.get('runs', []))}); "
           f"refresh queued by the creation: {fmt_ms(initial.get('client_ms'))} ms client, "
           f"{fmt_ms(initial.get('server_duration_ms'))} ms server"]
    reads = entry.get("reads") or {}
    if reads.get("available") is False:
        out.append(f"{engine_label} users-count / contains not measured: {reads.get('reason')}")
    elif reads:
        for key in ("users_count", "contains"):
            r = reads[key]
            out.append(f"{engine_label} GET {key.replace('_', '-')}: p50 {r['p50_ms']:.3f} ms, "
                       f"p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms over {r['n']:,} "
                       f"({r['wrong']} wrong answers)")
    return out


def segment_table(entry: dict) -> list[str]:
    """Markdown rows for a segment row's extra figures (ours)."""
    server, initial = entry["server_duration_ms"], entry.get("initial_refresh") or {}
    lines = ["| figure | median / p50 ms | p99 ms | first / max ms | target |", "|---|---:|---:|---:|---|"]
    ratio = entry.get("ratio_to_fastest_peer")
    lines.append(f"| refresh, client: POST → run seen completed | {fmt_ms(entry['median_ms'])} | | "
                 f"{fmt_ms(entry['first_ms'])} | ≤ 0.2 × fastest peer"
                 + (f" ({ratio:.3f})" if ratio is not None else "") + " |")
    lines.append(f"| refresh, server: the run's duration_ms | {fmt_ms(server.get('median'))} | | "
                 f"{fmt_ms(server.get('first'))} | |")
    lines.append(f"| first refresh (queued by the creation), client / server | {fmt_ms(initial.get('client_ms'))} / "
                 f"{fmt_ms(initial.get('server_duration_ms'))} | | | |")
    reads = entry.get("reads") or {}
    if reads.get("available") is False:
        lines.append(f"| users-count / contains | not measured: {reads.get('reason')} | | | |")
    elif reads:
        contains = reads["contains"]
        for key, title in (("users_count", f"GET users-count (× {reads['users_count']['n']:,})"),
                           ("contains", f"GET contains/{{user_id}} (× {contains['n']:,}: "
                                        f"{contains['members_asked']:,} members, "
                                        f"{contains['non_members_asked']:,} non-members)")):
            r = reads[key]
            verdict = ("p99 < 1 ms: " + ("yes" if r["meets_target"] else "no")) + \
                      (f"; {r['wrong']} WRONG answers" if r["wrong"] else "")
            lines.append(f"| {title} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.3f} | {verdict} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--ndjson", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--meta", type=Path, required=True)
    parser.add_argument("--events", type=int, required=True, help="events in the NDJSON file")
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--ingest-load", type=Path, required=True)
    parser.add_argument("--engines", default="ours,duckdb,clickhouse")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", default="", help="only these queries: Q1..Q7 or names, comma-separated")
    parser.add_argument("--clickhouse-compression", default="lz4", choices=["lz4", "zstd"])
    parser.add_argument("--ours-query-cache-mb", type=int, default=None,
                        help="event_store.query_cache_mb of our service (0 = no partial-aggregate cache)")
    parser.add_argument("--generator", default="{}", help="JSON: the generator's parameters, for the record")
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    # SIGTERM (and the run script's trap) should still stop the servers: turn it into an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    names = [name.strip() for name in args.engines.split(",") if name.strip()]
    queries = select_queries(args.queries)
    machine = machine_info()
    started_at = dt.datetime.now(dt.timezone.utc)

    print("bench: preparing the peers' input (cached)", flush=True)
    meta = prepare(args.ndjson, args.csv, args.meta)
    data = DataSet(ndjson=args.ndjson, csv=args.csv, events=args.events)
    period = (dt.date.fromisoformat(meta["first_day"]),
              dt.date.fromisoformat(meta["last_day"]) + dt.timedelta(days=1))
    print(f"bench: {data.events:,} events ({meta['rows']:,} kept after erasing {meta['erased_users']:,} "
          f"deleted users), days {period[0]} .. {meta['last_day']}", flush=True)

    engines = [make_engine(name, args) for name in names]
    loads: dict[str, dict] = {}
    results: dict[str, dict] = {query.name: {} for query in queries}
    problems: list[str] = []
    versions: dict[str, str] = {}
    try:
        for engine in engines:
            print(f"bench: {engine.label}: starting and loading", flush=True)
            engine.start()
            versions[engine.name] = engine.version()
            loads[engine.name] = engine.load(data)
            load = loads[engine.name]
            load["events_per_second"] = load.get("events_per_second") or data.events / load["load_seconds"]
            load["bytes_per_event"] = load["bytes"] / data.events
            # Peers load the erased data set; ours accepts every event and erases inside its store.
            expected = data.events if engine.name == "ours" else meta["rows"]
            if load["rows"] != expected:
                problems.append(f"{engine.label} took {load['rows']} rows, expected {expected}")
            print(f"bench: {engine.label}: {load['rows']:,} rows in {load['load_seconds']:.1f} s, "
                  f"{load['bytes'] / 1e6:,.1f} MB ({load['bytes_per_event']:.1f} bytes/event)", flush=True)

        for query in queries:
            for engine in engines:
                entry: dict = {}
                results[query.name][engine.name] = entry
                ok, why = engine.available(query)
                if ok:
                    try:
                        # The warm-up is also reported ("first run"): ours keeps partial aggregates of
                        # immutable segments (query_cache_mb) and, whatever that size, each segment's footer
                        # and the dense ids of its users; the peers keep only their buffer caches.
                        first_ms, rows = engine.execute(query, period)
                        answer = canonical(query, rows, period)
                        timings = []
                        for _ in range(args.runs):
                            elapsed, rows = engine.execute(query, period)
                            timings.append(elapsed)
                            # A cache must not change the answer: every run is checked against the first.
                            diff = differences(query, answer, canonical(query, rows, period))
                            if diff:
                                problems.append(f"{query.name}: {engine.label} answered a repeated run "
                                                f"differently: " + "; ".join(diff))
                        entry.update(first_ms=first_ms, median_ms=statistics.median(timings), min_ms=min(timings),
                                     max_ms=max(timings), runs_ms=timings, answer=answer)
                        # Engine-specific figures measured after the timed runs (ours, Q6: the refreshes'
                        # server-side durations and the users-count / contains micro-measure; Q7: the
                        # instances' server-side durations, file sizes and downloads, the other formats).
                        extra = engine.after_runs(query)
                        problems.extend(extra.pop("problems", []))
                        entry.update(extra)
                    except EngineUnavailable as error:
                        ok, why = False, str(error)
                    except Exception as error:  # a failed query, an answer that cannot be read: the run goes on
                        ok, why = False, f"failed: {type(error).__name__}: {error}"
                        problems.append(f"{query.name}: {engine.label} {why}")
                if not ok:
                    entry.update(available=False, reason=why)
                    print(f"bench: {query.name}: {engine.label} not available: {why}", flush=True)
                else:
                    entry["available"] = True
                    print(f"bench: {query.name}: {engine.label} median {fmt_ms(entry['median_ms'])} ms "
                          f"(first {fmt_ms(entry['first_ms'])}; runs {', '.join(fmt_ms(t) for t in timings)})",
                          flush=True)
                    for line in extra_lines(engine.label, entry):
                        print(f"bench: {query.name}: {line}", flush=True)
    finally:
        for engine in reversed(engines):
            engine.stop()

    # Agreement: the first peer that answered is the reference; every other answer must equal it.
    for query in queries:
        answered = [name for name in names if results[query.name][name].get("available")]
        reference = next((name for name in answered if name in PEERS), answered[0] if answered else None)
        for name in answered:
            if name == reference:
                continue
            diff = differences(query, results[query.name][reference]["answer"], results[query.name][name]["answer"])
            results[query.name][name]["agrees_with"] = reference if not diff else None
            if diff:
                problems.append(f"{query.name}: {name} differs from {reference}: " + "; ".join(diff))
        if reference:
            results[query.name][reference]["agrees_with"] = "(reference)"

    label = {engine.name: engine.label for engine in engines}
    lines = ["", f"Data: {data.events:,} events ({meta['rows']:,} after erasure), {period[0]} .. {meta['last_day']} "
                 f"(generator {json.dumps(json.loads(args.generator))}); {args.runs} timed runs after one warm-up, "
                 f"medians in ms." + (f" Ours with query_cache_mb {args.ours_query_cache_mb}."
                                      if args.ours_query_cache_mb is not None else ""), ""]
    header = ["query"] + [label[name] for name in names] + ["ours / fastest peer"]
    lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for query in queries:
        row = results[query.name]
        cells = [title_of(query, period)]
        for name in names:
            cells.append(fmt_ms(row[name]["median_ms"]) if row[name].get("available") else "not available")
        peer_ms = [row[name]["median_ms"] for name in names if name in PEERS and row[name].get("available")]
        ratio = None
        if "ours" in names and row["ours"].get("available") and peer_ms:
            ratio = row["ours"]["median_ms"] / min(peer_ms)
            row["ours"]["ratio_to_fastest_peer"] = ratio
            row["ours"]["meets_target"] = ratio <= 1 / TARGET_SPEEDUP
        cells.append(f"{ratio:.3f}" if ratio is not None else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "First run after the load (the warm-up; ours reads each segment's users and fills its "
                  "partial-aggregate cache here), ms:", "", "| query | " + " | ".join(label[name] for name in names) + " |",
              "|---" + "|---:" * len(names) + "|"]
    for query in queries:
        row = results[query.name]
        lines.append("| " + " | ".join([title_of(query, period)] + [fmt_ms(row[name]["first_ms"]) if row[name].get("available")
                                                         else "not available" for name in names]) + " |")
    for query in queries:
        for name in names:
            entry = results[query.name][name]
            if entry.get("available") and "server_duration_ms" in entry:
                lines += ["", f"{title_of(query, period)}, {label[name]}:", ""] + extra_table(entry)
    lines += ["", "| engine | load s | events/s | engine CPU s | bytes on disk | bytes/event |",
              "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        load = loads.get(name)
        if not load:
            continue
        extra = f" (+ OPTIMIZE FINAL {load['optimize_seconds']:.1f} s)" if "optimize_seconds" in load else ""
        if "settle_seconds" in load:
            extra = f" (+ compaction settle {load['settle_seconds']:.1f} s)"
        lines.append(f"| {label[name]} | {load['load_seconds']:.1f}{extra} | {load['events_per_second']:,.0f} | "
                     f"{load['load_cpu_seconds']:.1f} | {load['bytes']:,} | {load['bytes_per_event']:.1f} |")
    lines.append("")
    print("\n".join(lines))

    machine["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    report = {
        "date": started_at.date().isoformat(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "git": git_info(args.root),
        "machine": machine,
        "versions": versions,
        "data": {"events": data.events, "rows_after_erasure": meta["rows"], "erased_users": meta["erased_users"],
                 "first_day": meta["first_day"], "last_day": meta["last_day"],
                 "generator": json.loads(args.generator), "ndjson_bytes": args.ndjson.stat().st_size},
        "runs": args.runs,
        "queries_asked": [query.name for query in queries],
        "timing": {"duckdb": "in-process execute + fetchall", "clickhouse": "HTTP POST over keep-alive, "
                   "until the whole TabSeparated body is read", "ours": "HTTP GET (metric values) or POST "
                   "(analysis) over keep-alive, until the whole JSON body is read; segment rows (Q6): from sending "
                   "POST /segments/{id}/refresh until GET /pipelines/runs/{run_id} (polled without sleeping for "
                   "2 ms, then every 0.5 ms) says completed; users-count read after the clock; report rows (Q7): "
                   "from sending POST /reports/instances until GET /reports/instances/{id} (polled the same way) "
                   "says completed; the CSV downloaded and read after the clock"},
        "load": loads,
        "queries": {query.name: {"title": title_of(query, period), "engines": results[query.name]}
                    for query in queries},
        "problems": problems,
        "table_markdown": "\n".join(lines).strip(),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=1) + "\n")
    print(f"bench: results in {args.results}")
    if problems:
        print("bench: FAILED: " + "\n  ".join(["the engines disagree or lost data:"] + problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
