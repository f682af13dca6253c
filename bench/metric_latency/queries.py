"""Asks every metric definition of a running service for a whole period per day, without and with a game_id
dimension (top 10), --runs times each over one keep-alive connection, and prints per query the first run,
median, p95 and max latency (ms, request sent until the whole answer is read), and the p95 of the runs after
the first (warm: the first run of a shape after a start reads the segments and fills the caches), then the
worst of each against the spec's 500 ms. Used by bench/metric_latency/run."""
import argparse
import datetime as dt
import http.client
import importlib.util
import json
import os
import sys
import time
import urllib.parse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    end = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
    headers = {"Authorization": "Bearer " + args.token}

    def get(path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, (time.perf_counter() - started) * 1000

    status, body, _ = get("/api/v1/analytics/metrics/definitions?limit=1000")
    if status != 200:
        raise SystemExit(f"listing definitions answered {status}: {body[:300]!r}")
    definitions = json.loads(body)["items"]
    rows = []
    for definition in definitions:
        for dimensions in ([], ["game_id"]):
            if dimensions and "game_id" not in definition.get("dimensions", []):
                continue
            params = {"period_start": args.start, "period_end": str(end), "granularity": "day"}
            if dimensions:
                params.update({"dimensions": json.dumps(dimensions), "limit": "10"})
            path = f"/api/v1/analytics/metrics/values/{definition['name']}?{urllib.parse.urlencode(params)}"
            latencies = []
            for _ in range(args.runs):
                status, body, ms = get(path)
                if status != 200:
                    raise SystemExit(f"GET {path} answered {status}: {body[:300]!r}")
                latencies.append(ms)
            ordered = sorted(latencies)
            warm = sorted(latencies[1:]) or ordered
            name = definition["name"] + (" by game_id" if dimensions else "")
            rows.append((name, latencies[0], ordered[len(ordered) // 2], percentile_95(ordered), ordered[-1],
                         percentile_95(warm)))
    print(f"{'query':<44}{'first':>10}{'median':>10}{'p95':>10}{'max':>10}{'warm p95':>10}  (ms, {args.runs} runs)")
    for name, first, median, p95, worst, warm_p95 in rows:
        print(f"{name:<44}{first:>10.1f}{median:>10.1f}{p95:>10.1f}{worst:>10.1f}{warm_p95:>10.1f}")
    worst_p95 = max(rows, key=lambda row: row[3])
    worst_warm = max(rows, key=lambda row: row[5])
    worst_first = max(rows, key=lambda row: row[1])
    print(f"worst p95: {worst_p95[3]:.1f} ms ({worst_p95[0]}); worst warm p95: {worst_warm[5]:.1f} ms "
          f"({worst_warm[0]}); worst first run: {worst_first[1]:.1f} ms ({worst_first[0]}); "
          f"spec: p95 under 500 ms for every metric")
    ask_analysis(conn, args.token, args.runs, args.start, str(end))


def ask_analysis(conn: http.client.HTTPConnection, token: str, runs: int, start: str, last: str) -> None:
    """The POST questions of make bench over the period [start, last] (dates: an end date includes its day)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compare", "queries.py")
    spec = importlib.util.spec_from_file_location("compare_queries", path)
    compare = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compare  # dataclasses look their module up there
    spec.loader.exec_module(compare)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    print(f"{'question':<44}{'first':>10}{'median':>10}{'p95':>10}{'max':>10}  (ms, {runs} runs)")
    for query in compare.QUERIES:
        if query.api.method != "POST":
            continue
        payload = json.dumps(dict(query.api.body or {}, period_start=start, period_end=last, timezone="UTC"))
        latencies = []
        for _ in range(runs):
            started = time.perf_counter()
            conn.request("POST", query.api.path, body=payload, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"POST {query.api.path} answered {response.status}: {answer[:300]!r}")
        ordered = sorted(latencies)
        print(f"{query.title:<44}{latencies[0]:>10.1f}{ordered[len(ordered) // 2]:>10.1f}"
              f"{percentile_95(ordered):>10.1f}{ordered[-1]:>10.1f}")


def percentile_95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


if __name__ == "__main__":
    main()
