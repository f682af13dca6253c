"""Asks the analysis questions of `make bench` (bench/compare/queries.py: every query whose API call is a POST:
the funnel, weekly retention, A/B conversion) of a running service for the whole period, --runs times each over
one keep-alive connection, and prints per question the first run, median, p95 and max latency (ms, request sent
until the whole answer is read). Issue 5's target at 100M events: each under 1 s. Used by
bench/metric_latency/run."""
import argparse
import datetime as dt
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compare"))
import queries  # noqa: E402  (bench/compare/queries.py: the same bodies make bench sends)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    last = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
    headers = {"Authorization": "Bearer " + args.token, "Content-Type": "application/json"}
    print(f"{'question':<44}{'first':>10}{'median':>10}{'p95':>10}{'max':>10}  (ms, {args.runs} runs)")
    for query in queries.QUERIES:
        if query.api.method != "POST":
            continue
        # Dates: an end date includes its whole day (docs/analysis.md section 1).
        body = dict(query.api.body or {}, period_start=args.start, period_end=str(last), timezone="UTC")
        payload = json.dumps(body)
        latencies = []
        for _ in range(args.runs):
            started = time.perf_counter()
            conn.request("POST", query.api.path, body=payload, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"POST {query.api.path} answered {response.status}: {answer[:300]!r}")
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
        print(f"{query.title:<44}{latencies[0]:>10.1f}{ordered[len(ordered) // 2]:>10.1f}{p95:>10.1f}{ordered[-1]:>10.1f}")


if __name__ == "__main__":
    main()
