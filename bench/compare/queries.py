"""The standard query set of `make bench`: each question once per engine (DuckDB SQL, ClickHouse SQL, our API).

The definitions in bench/README.md ("Comparison with DuckDB and ClickHouse") are the contract; every engine's
answer is brought to one canonical form by `canonical()` and compared there. To add a question (funnels,
retention, segments, A/B), append a `Query` to QUERIES: its SQL for both peers, the API request for ours
(and the metric definition the harness must create first, if no built-in fits), and a result `shape` that
`canonical()` understands (add a shape when none fits).

Every query is asked for a period [start, end) of whole UTC days, as the API is: the harness derives the
period from the data once (the first and last day with an event) and hands the same period to every engine.
SQL placeholders: {start} and {end} ('YYYY-MM-DD HH:MM:SS', UTC), {purchase_type}.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

PURCHASE_TYPE = "com.platform.payments.purchase.completed.v1"
REFUND_TYPE = "com.platform.payments.refund.completed.v1"  # not used by the revenue query (purchases only)
REVENUE_RELATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ApiCall:
    """A GET of /api/v1/analytics/metrics/values/{metric}. `definition`, when set, is POSTed to
    /api/v1/analytics/metrics/definitions before the first call (201, or 409 when it already exists)."""
    metric: str
    params: dict[str, str] = field(default_factory=dict)
    definition: dict[str, Any] | None = None


@dataclass(frozen=True)
class Query:
    name: str          # key in results JSON
    title: str         # row label of the table
    shape: str         # "day_counts" or "top_games_daily"
    duckdb: str
    clickhouse: str
    api: ApiCall
    top_n: int = 0     # for "top_games_daily"


# Definitions the harness creates for our engine. The built-in `dau` counts 19 "user-initiated" event types
# only (docs/metrics.md section 4) and there is no built-in purchases-only, all-currency revenue, so the
# benchmark defines its questions explicitly; both are valid metric definitions of docs/metrics.md.
BENCH_DAU = {
    "name": "bench_dau_any_event",
    "title": "Bench: distinct users with any event",
    "description": "make bench Q1: distinct users with at least one event of any type in the bucket.",
    "aggregation": "unique_users",
    "tags": ["bench"],
}
BENCH_REVENUE = {
    "name": "bench_purchase_revenue",
    "title": "Bench: purchase amount, any currency",
    "description": "make bench Q2: sum of amount of payments.purchase.completed events, every currency, "
                   "refunds not deducted.",
    "aggregation": "sum",
    "property": "amount",
    "event_types": [PURCHASE_TYPE],
    "dimensions": ["game_id"],
    "tags": ["bench"],
}

QUERIES: list[Query] = [
    Query(
        name="dau_per_day",
        title="Q1 DAU per day",
        shape="day_counts",
        duckdb="""
            SELECT CAST(time AS DATE) AS day, count(DISTINCT user_id) AS users
            FROM events
            WHERE time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}' AND user_id <> ''
            GROUP BY day ORDER BY day""",
        clickhouse="""
            SELECT toDate(time) AS day, uniqExact(user_id) AS users
            FROM events
            WHERE time >= toDateTime('{start}') AND time < toDateTime('{end}') AND user_id != ''
            GROUP BY day ORDER BY day""",
        api=ApiCall(metric=BENCH_DAU["name"], params={"granularity": "day"}, definition=BENCH_DAU),
    ),
    Query(
        name="revenue_top10_games_per_day",
        title="Q2 revenue per day, top-10 games",
        shape="top_games_daily",
        top_n=10,
        duckdb="""
            WITH purchases AS (
              SELECT game_id, CAST(time AS DATE) AS day, amount
              FROM events
              WHERE type = '{purchase_type}' AND time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}'
                AND amount IS NOT NULL AND game_id <> ''),
            top AS (
              SELECT game_id FROM purchases GROUP BY game_id ORDER BY sum(amount) DESC, game_id LIMIT 10)
            SELECT game_id, day, sum(amount) AS revenue
            FROM purchases WHERE game_id IN (SELECT game_id FROM top)
            GROUP BY game_id, day ORDER BY game_id, day""",
        clickhouse="""
            SELECT game_id, toDate(time) AS day, sum(amount) AS revenue
            FROM events
            WHERE type = '{purchase_type}' AND time >= toDateTime('{start}') AND time < toDateTime('{end}')
              AND isNotNull(amount) AND game_id IN (
                SELECT game_id FROM events
                WHERE type = '{purchase_type}' AND time >= toDateTime('{start}') AND time < toDateTime('{end}')
                  AND isNotNull(amount) AND game_id != ''
                GROUP BY game_id ORDER BY sum(amount) DESC, game_id LIMIT 10)
            GROUP BY game_id, day ORDER BY game_id, day""",
        api=ApiCall(metric=BENCH_REVENUE["name"],
                    params={"granularity": "day", "dimensions": '["game_id"]', "limit": "10"},
                    definition=BENCH_REVENUE),
    ),
]


def sql_for(query: Query, engine: str, period: tuple[dt.date, dt.date]) -> str:
    start, end = period
    text = query.duckdb if engine == "duckdb" else query.clickhouse
    return text.format(start=f"{start} 00:00:00", end=f"{end} 00:00:00", purchase_type=PURCHASE_TYPE)


def days_of(period: tuple[dt.date, dt.date]) -> list[str]:
    start, end = period
    return [str(start + dt.timedelta(days=i)) for i in range((end - start).days)]


def canonical(query: Query, rows: list[tuple], period: tuple[dt.date, dt.date]) -> Any:
    """Rows (day or game, day, value) → the canonical answer.

    day_counts: [[day, users], ...] for every day of the period, 0 where an engine returned no row.
    top_games_daily: {game_id: [revenue of each day of the period]} for the games the engine returned (the
    top N), 0.0 where it returned no row for a day. Zero filling is part of the answer's definition, so
    engines may return the sparse rows; it costs nothing next to the queries."""
    days = days_of(period)
    if query.shape == "day_counts":
        by_day = {str(day)[:10]: int(value) for day, value in rows}
        return [[day, by_day.get(day, 0)] for day in days]
    if query.shape == "top_games_daily":
        index = {day: i for i, day in enumerate(days)}
        games: dict[str, list[float]] = {}
        for game, day, value in rows:
            series = games.setdefault(str(game), [0.0] * len(days))
            day = str(day)[:10]
            if day in index:
                series[index[day]] += float(value)
        return dict(sorted(games.items()))
    raise ValueError(f"unknown shape {query.shape}")


def differences(query: Query, expected: Any, actual: Any) -> list[str]:
    """Empty when equal: counts exactly, money to REVENUE_RELATIVE_TOLERANCE relative. At most 5 lines."""
    out: list[str] = []
    if query.shape == "day_counts":
        if len(expected) != len(actual):
            return [f"{len(expected)} days vs {len(actual)} days"]
        for (day, want), (_, got) in zip(expected, actual):
            if want != got:
                out.append(f"{day}: {want} vs {got}")
    elif query.shape == "top_games_daily":
        if set(expected) != set(actual):
            return [f"top games differ: {sorted(expected)} vs {sorted(actual)}"]
        for game in expected:
            for day_idx, (want, got) in enumerate(zip(expected[game], actual[game])):
                if not _close(want, got):
                    out.append(f"{game} day #{day_idx}: {want!r} vs {got!r}")
    return out[:5]


def _close(want: float, got: float) -> bool:
    return math.isclose(want, got, rel_tol=REVENUE_RELATIVE_TOLERANCE, abs_tol=1e-6)


def api_rows(query: Query, body: dict) -> list[tuple]:
    """The metric-values response → rows in the shape the SQL gives. Series whose game_id is not a real
    game (the "other" remainder, null) are ignored."""
    rows: list[tuple] = []
    for series in body.get("series", []):
        dims = series.get("dimensions") or {}
        if query.shape == "day_counts":
            if dims:
                continue
            rows += [(point[0][:10], point[1] or 0) for point in series.get("points", [])]
        elif query.shape == "top_games_daily":
            game = dims.get("game_id")
            if game in (None, "", "other", "__other__") or series.get("other"):
                continue
            rows += [(game, point[0][:10], point[1] or 0.0) for point in series.get("points", [])]
    return rows

