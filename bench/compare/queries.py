"""The standard query set of `make bench`: each question once per engine (DuckDB SQL, ClickHouse SQL, our API).

The definitions in bench/README.md ("Comparison with DuckDB and ClickHouse") are the contract; every engine's
answer is brought to one canonical form by `canonical()` and compared there. To add a question (segments,
paths), append a `Query` to QUERIES: its SQL for both peers, the API request for ours
(and the metric definition the harness must create first, if no built-in fits), and a result `shape` that
`canonical()` understands (add a shape when none fits).

Every query is asked for a period [start, end) of whole UTC days, as the API is: the harness derives the
period from the data once (the first and last day with an event) and hands the same period to every engine.
SQL placeholders: {start} and {end} ('YYYY-MM-DD HH:MM:SS', UTC), {start_date} and {end_date} ('YYYY-MM-DD';
end_date is the first day after the period), {purchase_type}, and the query's own `sql_params`.

Segment rows (Q6) are evaluated at as_of = the last millisecond of the period (the last day, 23:59:59.999 UTC):
{as_of} ('YYYY-MM-DD HH:MM:SS.fff'), {as_of_second} (the same second, for ClickHouse's whole-second DateTime),
and the query's `windows` ({placeholder: N}): midnight of the first of the N calendar days ending on the as_of
date ('YYYY-MM-DD 00:00:00'), so that [it, as_of] is the API's `"within_days": N` window.

Our API: the metric rows (Q1, Q2) GET /metrics/values/{metric}; the analysis rows (Q3-Q5) POST a JSON body to
/analysis/{funnels,retention,experiments}, to which the harness adds period_start (the first day),
period_end (the last day: the API's end date is inclusive, so [start, end) exactly) and timezone "UTC";
the segment rows (Q6) create a dynamic segment with the rule once and time POST /segments/{id}/refresh until
its pipeline run completed, then read GET /segments/{id}/users-count; the report rows (Q7) time POST
/reports/instances of a built-in report until GET /reports/instances/{id} says completed, then download the file
and read its table (engines.OursEngine).

A title may hold {days}, the number of days of the period: the harness prints title_of(query, period).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass, field
from typing import Any

PURCHASE_TYPE = "com.platform.payments.purchase.completed.v1"
REFUND_TYPE = "com.platform.payments.refund.completed.v1"  # not in Q2 (purchases only); in Q7's revenue_rub
REVENUE_RELATIVE_TOLERANCE = 1e-6
MEDIAN_RELATIVE_TOLERANCE = 1e-6   # Q3's median seconds to convert
P_VALUE_TOLERANCE = 1e-9           # Q5's p-values (relative and absolute)

# Q3 funnel: three steps, 24 h window from the first step, held constant on game_id, first touch.
FUNNEL_STEPS = ("com.platform.store.page.viewed.v1", "com.platform.cart.item.added.v1", PURCHASE_TYPE)
FUNNEL_WINDOW_SECONDS = 86400
# Q4 retention: cohorts by the first registration, ISO weeks, on day N.
REGISTERED_TYPE = "com.platform.account.user.registered.v1"
RETENTION_PERIODS = (1, 7, 30)
# Q5 A/B: the generator's cart experiment (src/gen/model.h kExperiments; B raises cart -> checkout).
EXPOSURE_TYPE = "com.platform.experiments.exposure.recorded.v1"
EXPERIMENT_KEY = "checkout_v2"
EXPERIMENT_CONTROL = "A"
# Q6 segment: at least 2 purchases in the last 30 days and no session start in the last 7, as of the end of
# the data (the session-start type of src/gen/model.h kSessionStarted).
SESSION_STARTED_TYPE = "com.platform.library.session.started.v1"
SEGMENT_MIN_PURCHASES = 2
SEGMENT_PURCHASE_DAYS = 30
SEGMENT_SESSION_DAYS = 7
# Q7 report: the built-in daily_kpi_summary (src/reports/definition.cc) over the whole period, timed as CSV. Its
# metrics are the built-in KPIs of docs/metrics.md section 4; the peers' SQL computes each with that definition.
REPORT_NAME = "daily_kpi_summary"
REPORT_SECTION = "kpis"
KPI_COLUMNS = ("date", "dau", "new_users", "sessions", "revenue_rub", "purchases_count", "paying_users", "arpu",
               "payer_conversion")
KPI_COUNT_COLUMNS = ("dau", "new_users", "sessions", "purchases_count", "paying_users")  # compared exactly
RATIO_RELATIVE_TOLERANCE = 1e-9    # Q7's payer_conversion (a ratio of two exact counts)
# The 19 "active user" types of dau (docs/metrics.md section 4, "Active user"; src/query/builtin_metrics.cc).
ACTIVE_USER_TYPES = tuple(f"com.platform.{name}.v1" for name in (
    "account.user.registered", "account.user.logged_in", "account.user.logged_out", "account.profile.updated",
    "store.page.viewed", "store.search.performed", "store.wishlist_item.added", "store.wishlist_item.removed",
    "cart.item.added", "cart.item.removed", "cart.checkout.started", "payments.purchase.completed",
    "payments.purchase.failed", "library.game.installed", "library.session.started", "library.session.ended",
    "achievements.achievement.unlocked", "reviews.review.posted", "social.friend.added"))
# Every type a KPI of the report reads: the active types (registrations, session starts and purchases among
# them) and refunds (revenue_rub).
KPI_TYPES = ACTIVE_USER_TYPES + (REFUND_TYPE,)


def sql_list(values) -> str:
    return ", ".join(f"'{value}'" for value in values)


QUIET_BUYERS_RULE = {"and": [
    {"performed": {"event_type": PURCHASE_TYPE, "count": {"gte": SEGMENT_MIN_PURCHASES},
                   "within_days": SEGMENT_PURCHASE_DAYS}},
    {"not": {"performed": {"event_type": SESSION_STARTED_TYPE, "within_days": SEGMENT_SESSION_DAYS}}}]}


@dataclass(frozen=True)
class ApiCall:
    """method "GET" (default): a GET of /api/v1/analytics/metrics/values/{metric} with `params` and the period.
    `definition`, when set, is POSTed to /api/v1/analytics/metrics/definitions before the first call (201, or
    409 when it already exists).
    method "POST": a POST of `body` (JSON) to `path`; the harness adds period_start, period_end and timezone.
    method "SEGMENT": `definition` (name prefix, type, description) and `body` (the rule) of a dynamic segment,
    which the harness creates once (POST `path`/definitions, named `<name>_<n>`, with the period's as_of);
    each run is then a refresh of it (engines.OursEngine).
    method "REPORT": an instance of the report definition named `report` (its id looked up once, by name, in
    GET `path`/definitions), POSTed to `path`/instances with `body` (output_format); the harness adds
    report_definition_id and the parameters period_start and period_end (the period's first and last day) and
    timezone "UTC". Each run is one instance; the rows of its file's section `section` are the answer."""
    metric: str = ""
    params: dict[str, str] = field(default_factory=dict)
    definition: dict[str, Any] | None = None
    method: str = "GET"
    path: str = ""
    body: dict[str, Any] | None = None
    report: str = ""
    section: str = ""


@dataclass(frozen=True)
class Query:
    name: str          # key in results JSON
    title: str         # row label of the table
    shape: str         # "day_counts", "top_games_daily", "funnel_steps", "retention_cohorts", "ab_conversion",
                       # "user_count", "daily_kpis"
    duckdb: str
    clickhouse: str
    api: ApiCall
    top_n: int = 0     # for "top_games_daily"
    control: str = ""  # for "ab_conversion": the variant the others are tested against
    sql_params: dict[str, Any] = field(default_factory=dict)  # extra SQL placeholders of this query
    windows: dict[str, int] = field(default_factory=dict)  # segment windows: placeholder → within_days N


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
    Query(
        name="funnel_3_steps_24h_by_game",
        title="Q3 funnel, 3 steps, 24 h, per game",
        shape="funnel_steps",
        sql_params={"step1": FUNNEL_STEPS[0], "step2": FUNNEL_STEPS[1], "step3": FUNNEL_STEPS[2],
                    "window_ms": FUNNEL_WINDOW_SECONDS * 1000},
        duckdb="""
            WITH ev AS (
              SELECT user_id, game_id, type, epoch_ms(time) AS t
              FROM events
              WHERE type IN ('{step1}', '{step2}', '{step3}')
                AND time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}' AND user_id <> '' AND game_id <> ''),
            s1 AS (
              SELECT user_id, game_id, min(t) AS t0 FROM ev WHERE type = '{step1}' GROUP BY user_id, game_id),
            s2 AS (
              SELECT s1.user_id, s1.game_id, min(ev.t) AS t1
              FROM s1 JOIN ev ON ev.user_id = s1.user_id AND ev.game_id = s1.game_id
              WHERE ev.type = '{step2}' AND ev.t > s1.t0 AND ev.t <= s1.t0 + {window_ms}
              GROUP BY s1.user_id, s1.game_id),
            s3 AS (
              SELECT s1.user_id, s1.game_id, min(ev.t) AS t2
              FROM s1 JOIN s2 ON s2.user_id = s1.user_id AND s2.game_id = s1.game_id
                      JOIN ev ON ev.user_id = s1.user_id AND ev.game_id = s1.game_id
              WHERE ev.type = '{step3}' AND ev.t > s2.t1 AND ev.t <= s1.t0 + {window_ms}
              GROUP BY s1.user_id, s1.game_id),
            pairs AS (
              SELECT user_id, game_id, t0, t1, t2
              FROM s1 LEFT JOIN s2 USING (user_id, game_id) LEFT JOIN s3 USING (user_id, game_id)),
            reached AS (
              SELECT 1 AS step, user_id, game_id, t0, NULL::DOUBLE AS seconds FROM pairs
              UNION ALL SELECT 2, user_id, game_id, t0, (t1 - t0) / 1000.0 FROM pairs WHERE t1 IS NOT NULL
              UNION ALL SELECT 3, user_id, game_id, t0, (t2 - t1) / 1000.0 FROM pairs WHERE t2 IS NOT NULL),
            per_user AS (
              SELECT step, seconds FROM reached
              QUALIFY row_number() OVER (PARTITION BY step, user_id ORDER BY t0, game_id) = 1)
            SELECT step, count(*) AS users, quantile_cont(seconds, 0.5) AS median_seconds
            FROM per_user GROUP BY step ORDER BY step""",
        clickhouse="""
            SELECT step, users,
                   if(step = 1, NULL, if(users % 2 = 1, v[intDiv(users + 1, 2)],
                                         (v[intDiv(users, 2)] + v[intDiv(users, 2) + 1]) / 2)) AS median_seconds
            FROM (
              SELECT step, count() AS users, arraySort(groupArray(seconds)) AS v
              FROM (
                SELECT step, user_id, argMin(seconds, (t0, game_id)) AS seconds
                FROM (
                  SELECT user_id, game_id, t0,
                         arrayJoin(arrayFilter(s -> s = 1 OR (s = 2 AND t1 > 0) OR (s = 3 AND t2 > 0),
                                               [1, 2, 3])) AS step,
                         multiIf(step = 2, (t1 - t0) / 1000, step = 3, (t2 - t1) / 1000, 0) AS seconds
                  FROM (
                    SELECT user_id, game_id, t0, t1,
                           if(t1 = 0, 0, arrayReduce('min', arrayFilter(x -> x > t1 AND x <= t0 + {window_ms},
                                                                         ts3))) AS t2
                    FROM (
                      SELECT user_id, game_id, t0, ts3,
                             arrayReduce('min', arrayFilter(x -> x > t0 AND x <= t0 + {window_ms}, ts2)) AS t1
                      FROM (
                        SELECT user_id, game_id, minIf(t, type = '{step1}') AS t0,
                               groupArrayIf(t, type = '{step2}') AS ts2, groupArrayIf(t, type = '{step3}') AS ts3
                        FROM (
                          SELECT user_id, game_id, type, toUInt64(time) * 1000 + time_ms AS t
                          FROM events
                          WHERE type IN ('{step1}', '{step2}', '{step3}') AND time >= toDateTime('{start}')
                            AND time < toDateTime('{end}') AND user_id != '' AND game_id != '')
                        GROUP BY user_id, game_id
                        HAVING countIf(type = '{step1}') > 0))))
                GROUP BY step, user_id)
              GROUP BY step)
            ORDER BY step""",
        api=ApiCall(method="POST", path="/api/v1/analytics/analysis/funnels",
                    body={"steps": [{"event_type": step} for step in FUNNEL_STEPS],
                          "window_seconds": FUNNEL_WINDOW_SECONDS, "order": "ordered", "entry": "first_touch",
                          "hold_constant": ["game_id"]}),
    ),
    Query(
        name="retention_weekly_d1_d7_d30",
        title="Q4 weekly retention D1/D7/D30",
        shape="retention_cohorts",
        sql_params={"registered_type": REGISTERED_TYPE, "periods": ", ".join(map(str, RETENTION_PERIODS))},
        duckdb="""
            WITH cohort AS (
              SELECT user_id, CAST(min(time) AS DATE) AS d0
              FROM events
              WHERE type = '{registered_type}' AND time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}'
                AND user_id <> ''
              GROUP BY user_id),
            returned AS (
              SELECT DISTINCT c.user_id, CAST(e.time AS DATE) - c.d0 AS n
              FROM events e JOIN cohort c ON e.user_id = c.user_id
              WHERE e.time >= TIMESTAMP '{start}' AND e.time < TIMESTAMP '{end}'
                AND CAST(e.time AS DATE) - c.d0 IN ({periods})),
            cells AS (
              SELECT CAST(date_trunc('week', c.d0) AS DATE) AS cohort_start, p.n,
                     count(*) AS users, count(r.user_id) AS retained
              FROM cohort c CROSS JOIN (SELECT unnest([{periods}]) AS n) p
                   LEFT JOIN returned r ON r.user_id = c.user_id AND r.n = p.n
              GROUP BY cohort_start, p.n),
            measured AS (
              SELECT *, least(cohort_start + 6, DATE '{end_date}' - 1) + n < DATE '{end_date}' AS measurable
              FROM cells)
            SELECT cohort_start, users, n, measurable, CASE WHEN measurable THEN retained END AS retained_users
            FROM measured ORDER BY cohort_start, n""",
        clickhouse="""
            SELECT cohort_start, users, n, measurable, if(measurable, retained, NULL) AS retained_users
            FROM (
              SELECT toMonday(d0) AS cohort_start, n, count() AS users, sum(has(days, d0 + n)) AS retained,
                     least(cohort_start + 6, toDate('{end_date}') - 1) + n < toDate('{end_date}') AS measurable
              FROM (
                SELECT user_id, minIf(toDate(time), type = '{registered_type}') AS d0,
                       groupUniqArray(toDate(time)) AS days
                FROM events
                WHERE time >= toDateTime('{start}') AND time < toDateTime('{end}') AND user_id != ''
                  AND user_id IN (
                    SELECT user_id FROM events
                    WHERE type = '{registered_type}' AND time >= toDateTime('{start}')
                      AND time < toDateTime('{end}') AND user_id != '')
                GROUP BY user_id)
              ARRAY JOIN [{periods}] AS n
              GROUP BY cohort_start, n)
            ORDER BY cohort_start, n""",
        api=ApiCall(method="POST", path="/api/v1/analytics/analysis/retention",
                    body={"start_event": {"event_type": REGISTERED_TYPE}, "return_event": None,
                          "cohort_granularity": "week", "periods": list(RETENTION_PERIODS), "mode": "on_day",
                          "cohort_type": "first_time"}),
    ),
    Query(
        name="ab_checkout_v2_purchase_conversion",
        title="Q5 A/B conversion to purchase",
        shape="ab_conversion",
        control=EXPERIMENT_CONTROL,
        sql_params={"exposure_type": EXPOSURE_TYPE, "experiment": EXPERIMENT_KEY},
        duckdb="""
            WITH exposures AS (
              SELECT user_id, epoch_ms(time) AS t, json_extract_string(data, '$.variant') AS variant
              FROM events
              WHERE type = '{exposure_type}' AND time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}'
                AND user_id <> '' AND json_extract_string(data, '$.experiment') = '{experiment}'
                AND json_extract_string(data, '$.variant') <> ''),
            first_exposure AS (
              SELECT user_id, min(t) AS t_exp FROM exposures GROUP BY user_id),
            assigned AS (
              SELECT e.user_id, f.t_exp, min(e.variant) AS variant
              FROM exposures e JOIN first_exposure f ON e.user_id = f.user_id AND e.t = f.t_exp
              GROUP BY e.user_id, f.t_exp),
            purchases AS (
              SELECT user_id, max(epoch_ms(time)) AS last_t
              FROM events
              WHERE type = '{purchase_type}' AND time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}'
                AND user_id <> ''
              GROUP BY user_id)
            SELECT variant, count(*) AS exposed_users, count(*) FILTER (WHERE p.last_t > a.t_exp) AS converters
            FROM assigned a LEFT JOIN purchases p ON p.user_id = a.user_id
            GROUP BY variant ORDER BY variant""",
        clickhouse="""
            SELECT variant, count() AS exposed_users, sum(last_t > t_exp) AS converters
            FROM (
              SELECT user_id, first.1 AS t_exp, first.2 AS variant
              FROM (
                SELECT user_id,
                       min((toUInt64(time) * 1000 + time_ms, visitParamExtractString(data, 'variant'))) AS first
                FROM events
                WHERE type = '{exposure_type}' AND time >= toDateTime('{start}') AND time < toDateTime('{end}')
                  AND user_id != '' AND visitParamExtractString(data, 'experiment') = '{experiment}'
                  AND visitParamExtractString(data, 'variant') != ''
                GROUP BY user_id))
            ANY LEFT JOIN (
              SELECT user_id, max(toUInt64(time) * 1000 + time_ms) AS last_t
              FROM events
              WHERE type = '{purchase_type}' AND time >= toDateTime('{start}') AND time < toDateTime('{end}')
                AND user_id != ''
              GROUP BY user_id) USING user_id
            GROUP BY variant ORDER BY variant""",
        api=ApiCall(method="POST", path="/api/v1/analytics/analysis/experiments",
                    body={"experiment": EXPERIMENT_KEY, "exposure_event": EXPOSURE_TYPE,
                          "experiment_property": "experiment", "variant_property": "variant",
                          "control": EXPERIMENT_CONTROL,
                          "goals": [{"kind": "conversion", "event_type": PURCHASE_TYPE}]}),
    ),
    Query(
        name="segment_quiet_buyers",
        title="Q6 segment: >=2 purchases in 30 d, no session in 7 d",
        shape="user_count",
        sql_params={"session_type": SESSION_STARTED_TYPE, "min_purchases": SEGMENT_MIN_PURCHASES},
        windows={"purchases_from": SEGMENT_PURCHASE_DAYS, "sessions_from": SEGMENT_SESSION_DAYS},
        duckdb="""
            SELECT count(*) AS users
            FROM (
              SELECT user_id
              FROM events
              WHERE type = '{purchase_type}' AND time >= TIMESTAMP '{purchases_from}'
                AND time <= TIMESTAMP '{as_of}' AND user_id <> ''
              GROUP BY user_id
              HAVING count(*) >= {min_purchases})
            WHERE user_id NOT IN (
              SELECT user_id FROM events
              WHERE type = '{session_type}' AND time >= TIMESTAMP '{sessions_from}'
                AND time <= TIMESTAMP '{as_of}' AND user_id <> '')""",
        clickhouse="""
            SELECT count() AS users
            FROM (
              SELECT user_id
              FROM events
              WHERE type = '{purchase_type}' AND time >= toDateTime('{purchases_from}')
                AND time <= toDateTime('{as_of_second}') AND user_id != ''
              GROUP BY user_id
              HAVING count() >= {min_purchases})
            WHERE user_id NOT IN (
              SELECT user_id FROM events
              WHERE type = '{session_type}' AND time >= toDateTime('{sessions_from}')
                AND time <= toDateTime('{as_of_second}') AND user_id != '')""",
        api=ApiCall(method="SEGMENT", path="/api/v1/analytics/segments",
                    definition={"name": "bench_quiet_buyers", "type": "dynamic",
                                "description": "make bench Q6: at least 2 purchases in the last 30 days and no "
                                               "session start in the last 7, as of the end of the data."},
                    body=QUIET_BUYERS_RULE),
    ),
    Query(
        name="report_daily_kpi_summary",
        title="Q7 daily KPI summary report, {days} days",
        shape="daily_kpis",
        sql_params={"active_types": sql_list(ACTIVE_USER_TYPES), "kpi_types": sql_list(KPI_TYPES),
                    "registered_type": REGISTERED_TYPE, "session_type": SESSION_STARTED_TYPE,
                    "refund_type": REFUND_TYPE},
        duckdb="""
            WITH kpis AS (
              SELECT CAST(time AS DATE) AS day,
                     count(DISTINCT user_id) FILTER (WHERE type IN ({active_types}) AND user_id <> '') AS dau,
                     count(*) FILTER (WHERE type = '{registered_type}') AS new_users,
                     count(*) FILTER (WHERE type = '{session_type}') AS sessions,
                     coalesce(sum(CASE WHEN type = '{purchase_type}' THEN amount
                                       WHEN type = '{refund_type}' THEN -amount END)
                              FILTER (WHERE currency = 'RUB'), 0) AS revenue_rub,
                     count(*) FILTER (WHERE type = '{purchase_type}') AS purchases_count,
                     count(DISTINCT user_id) FILTER (WHERE type = '{purchase_type}' AND amount > 0
                                                       AND user_id <> '') AS paying_users
              FROM events
              WHERE type IN ({kpi_types}) AND time >= TIMESTAMP '{start}' AND time < TIMESTAMP '{end}'
              GROUP BY day)
            SELECT day, dau, new_users, sessions, revenue_rub, purchases_count, paying_users,
                   CASE WHEN dau > 0 THEN revenue_rub / dau END AS arpu,
                   CASE WHEN dau > 0 THEN CAST(paying_users AS DOUBLE) / dau END AS payer_conversion
            FROM kpis ORDER BY day""",
        clickhouse="""
            SELECT day, dau, new_users, sessions, revenue_rub, purchases_count, paying_users,
                   if(dau > 0, revenue_rub / dau, NULL) AS arpu,
                   if(dau > 0, paying_users / dau, NULL) AS payer_conversion
            FROM (
              SELECT toDate(time) AS day,
                     uniqExactIf(user_id, type IN ({active_types}) AND user_id != '') AS dau,
                     countIf(type = '{registered_type}') AS new_users,
                     countIf(type = '{session_type}') AS sessions,
                     sumIf(if(type = '{purchase_type}', 1, -1) * ifNull(amount, 0),
                           type IN ('{purchase_type}', '{refund_type}') AND currency = 'RUB') AS revenue_rub,
                     countIf(type = '{purchase_type}') AS purchases_count,
                     uniqExactIf(user_id, type = '{purchase_type}' AND ifNull(amount, 0) > 0
                                          AND user_id != '') AS paying_users
              FROM events
              WHERE type IN ({kpi_types}) AND time >= toDateTime('{start}') AND time < toDateTime('{end}')
              GROUP BY day)
            ORDER BY day""",
        api=ApiCall(method="REPORT", path="/api/v1/analytics/reports", report=REPORT_NAME, section=REPORT_SECTION,
                    body={"output_format": "csv"}),
    ),
]


def title_of(query: Query, period: tuple[dt.date, dt.date]) -> str:
    """The row label: the query's title with {days} replaced by the period's length in days."""
    return query.title.replace("{days}", str((period[1] - period[0]).days))


def as_of_of(period: tuple[dt.date, dt.date]) -> dt.datetime:
    """The evaluation time of the segment rows: the last millisecond of the period (its last day, 23:59:59.999
    UTC), so that every event of the data is at or before it."""
    return dt.datetime.combine(period[1], dt.time(), dt.timezone.utc) - dt.timedelta(milliseconds=1)


def within_days_start(period: tuple[dt.date, dt.date], days: int) -> dt.date:
    """First day of `"within_days": days` as of as_of_of(period): the N calendar days ending on the as_of date,
    that day included."""
    return as_of_of(period).date() - dt.timedelta(days=days - 1)


def sql_for(query: Query, engine: str, period: tuple[dt.date, dt.date]) -> str:
    start, end = period
    text = query.duckdb if engine == "duckdb" else query.clickhouse
    as_of = as_of_of(period)
    params = dict(query.sql_params, as_of=as_of.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                  as_of_second=as_of.strftime("%Y-%m-%d %H:%M:%S"))
    for placeholder, days in query.windows.items():
        params[placeholder] = f"{within_days_start(period, days)} 00:00:00"
    return text.format(start=f"{start} 00:00:00", end=f"{end} 00:00:00", start_date=str(start), end_date=str(end),
                       purchase_type=PURCHASE_TYPE, **params)


def days_of(period: tuple[dt.date, dt.date]) -> list[str]:
    start, end = period
    return [str(start + dt.timedelta(days=i)) for i in range((end - start).days)]


def canonical(query: Query, rows: list[tuple], period: tuple[dt.date, dt.date]) -> Any:
    """Rows as the SQL gives them → the canonical answer.

    day_counts: [[day, users], ...] for every day of the period, 0 where an engine returned no row.
    top_games_daily: {game_id: [revenue of each day of the period]} for the games the engine returned (the
    top N), 0.0 where it returned no row for a day. Zero filling is part of the answer's definition, so
    engines may return the sparse rows; it costs nothing next to the queries.
    funnel_steps, retention_cohorts, ab_conversion: see their branches below (rows (step, users, median);
    (cohort_start, users, period, measurable, retained users or NULL); (variant, exposed users, converters
    [, p-value]); user_count: (users,)); daily_kpis: rows in the order of KPI_COLUMNS.
    The answers are stored in the results JSON as they are (the format of Q1/Q2 is unchanged)."""
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
    if query.shape == "funnel_steps":
        # [[step (1-based), users, median seconds to convert or None], ...] for every step. The first step
        # has no time to convert: its median is None whatever the engine says.
        by_step = {int(step): (int(users), _float_or_none(median)) for step, users, median in rows}
        out = []
        for step in range(1, len(FUNNEL_STEPS) + 1):
            users, median = by_step.get(step, (0, None))
            out.append([step, users, None if step == 1 else median])
        return out
    if query.shape == "retention_cohorts":
        # [[cohort_start, users, [[period, measurable, retained users or None], ...]], ...] by cohort_start;
        # a cell the engine did not return is [period, None, None] (and so differs from any real cell).
        cohorts: dict[str, tuple[int, dict[int, list]]] = {}
        for cohort_start, users, period_n, measurable, retained in rows:
            key = str(cohort_start)[:10]
            cohorts.setdefault(key, (int(users), {}))[1][int(period_n)] = \
                [int(period_n), _bool(measurable), None if _float_or_none(retained) is None else int(retained)]
        return [[key, users, [cells.get(n, [n, None, None]) for n in RETENTION_PERIODS]]
                for key, (users, cells) in sorted(cohorts.items())]
    if query.shape == "ab_conversion":
        # {variant: {"exposed_users", "converters", "p_value"}}. The p-value (two-proportion z-test, pooled,
        # two-sided, against the control) is computed here from the engine's counts when the engine gives
        # only counts (the peers), and taken from the answer when it gives one (ours); None for the control.
        variants = {str(row[0]): {"exposed_users": int(row[1]), "converters": int(row[2]),
                                  "p_value": _float_or_none(row[3]) if len(row) > 3 else "compute"}
                    for row in rows}
        control = variants.get(query.control)
        for name, variant in variants.items():
            if name == query.control:
                variant["p_value"] = None
            elif variant["p_value"] == "compute":
                variant["p_value"] = None if control is None else two_proportion_p_value(
                    control["converters"], control["exposed_users"], variant["converters"],
                    variant["exposed_users"])
        return dict(sorted(variants.items()))
    if query.shape == "user_count":
        # One number: the users in the segment (the peers' one row; ours' users-count after the refresh).
        return int(rows[0][0]) if rows else 0
    if query.shape == "daily_kpis":
        # [[day, dau, new_users, sessions, revenue_rub, purchases_count, paying_users, arpu, payer_conversion],
        # ...] for every day of the period. A day without a row is what the metrics give for an empty bucket:
        # counts and revenue 0, the ratios null (their denominator dau is 0).
        by_day = {}
        for row in rows:
            day = str(row[0])[:10]
            by_day[day] = [day] + [_int_or_none(value) if column in KPI_COUNT_COLUMNS else _float_or_none(value)
                                   for column, value in zip(KPI_COLUMNS[1:], row[1:])]
        empty = [0 if column in KPI_COUNT_COLUMNS else 0.0 if column == "revenue_rub" else None
                 for column in KPI_COLUMNS[1:]]
        return [by_day.get(day, [day] + empty) for day in days]
    raise ValueError(f"unknown shape {query.shape}")


def two_proportion_p_value(c1: int, n1: int, c2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of c2/n2 against c1/n1 (1.0 when the pooled
    rate is 0 or 1, None when a group is empty)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (c1 + c2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (c2 / n2 - c1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _float_or_none(value: Any) -> float | None:
    """SQL NULL (None, ClickHouse's \\N) and NaN → None, else a float."""
    if value is None or value == "\\N" or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _int_or_none(value: Any) -> int | None:
    """SQL NULL → None; an integer, its text, or an integral float (or its text, "12.0") → int."""
    if value is None or value == "\\N" or value == "":
        return None
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{value!r} is not a whole number") from None
        return int(number)


def _bool(value: Any) -> bool | None:
    if value is None or value == "\\N":
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return bool(value)


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
    elif query.shape == "funnel_steps":
        for (step, want_users, want_median), (_, got_users, got_median) in zip(expected, actual):
            if want_users != got_users:
                out.append(f"step {step} users: {want_users} vs {got_users}")
            if not _close_or_none(want_median, got_median, MEDIAN_RELATIVE_TOLERANCE, 1e-9):
                out.append(f"step {step} median seconds: {want_median!r} vs {got_median!r}")
    elif query.shape == "retention_cohorts":
        want_by, got_by = {row[0]: row for row in expected}, {row[0]: row for row in actual}
        if set(want_by) != set(got_by):
            return [f"cohorts differ: {sorted(want_by)} vs {sorted(got_by)}"]
        for cohort, (_, want_users, want_cells) in want_by.items():
            _, got_users, got_cells = got_by[cohort]
            if want_users != got_users:
                out.append(f"cohort {cohort} users: {want_users} vs {got_users}")
            for want, got in zip(want_cells, got_cells):
                if want != got:
                    out.append(f"cohort {cohort} day {want[0]} [period, measurable, users]: {want} vs {got}")
    elif query.shape == "ab_conversion":
        if set(expected) != set(actual):
            return [f"variants differ: {sorted(expected)} vs {sorted(actual)}"]
        for name, want in expected.items():
            got = actual[name]
            for key in ("exposed_users", "converters"):
                if want[key] != got[key]:
                    out.append(f"variant {name} {key}: {want[key]} vs {got[key]}")
            if not _close_or_none(want["p_value"], got["p_value"], P_VALUE_TOLERANCE, P_VALUE_TOLERANCE):
                out.append(f"variant {name} p_value: {want['p_value']!r} vs {got['p_value']!r}")
    elif query.shape == "user_count":
        if expected != actual:
            out.append(f"users: {expected} vs {actual}")
    elif query.shape == "daily_kpis":
        # Counts exactly; revenue_rub and arpu (sums of doubles, added in different orders) to
        # REVENUE_RELATIVE_TOLERANCE; payer_conversion (a ratio of two counts) to RATIO_RELATIVE_TOLERANCE.
        if [row[0] for row in expected] != [row[0] for row in actual]:
            return [f"days differ: {len(expected)} vs {len(actual)} days"]
        for want_row, got_row in zip(expected, actual):
            for column, want, got in zip(KPI_COLUMNS[1:], want_row[1:], got_row[1:]):
                if column in KPI_COUNT_COLUMNS:
                    same = want == got
                elif column == "payer_conversion":
                    same = _close_or_none(want, got, RATIO_RELATIVE_TOLERANCE, 1e-12)
                else:
                    same = _close_or_none(want, got, REVENUE_RELATIVE_TOLERANCE, 1e-6)
                if not same:
                    out.append(f"{want_row[0]} {column}: {want!r} vs {got!r}")
    return out[:5]


def _close_or_none(want: float | None, got: float | None, rel: float, abs_: float) -> bool:
    if want is None or got is None:
        return want is None and got is None
    return math.isclose(want, got, rel_tol=rel, abs_tol=abs_)


def _close(want: float, got: float) -> bool:
    return math.isclose(want, got, rel_tol=REVENUE_RELATIVE_TOLERANCE, abs_tol=1e-6)


def report_columns(query: Query) -> tuple[str, ...]:
    """The columns of a report row's answer, in the order canonical() expects."""
    if query.shape == "daily_kpis":
        return KPI_COLUMNS
    raise ValueError(f"shape {query.shape} is not a report's")


def report_csv_rows(query: Query, text: str) -> list[tuple]:
    """Our report file as CSV (src/reports/formats/writer.h: per section a header row whose first cell is
    "section", then rows whose first cell is the section name; an empty line between sections; null is an empty
    field) → the rows of section query.api.section, cells as text (None for an empty field) in the order of
    report_columns(), picked by column name."""
    wanted = report_columns(query)
    header: list[str] | None = None
    rows: list[tuple] = []
    for record in csv.reader(io.StringIO(text, newline="")):
        if not record:
            continue
        if record[0] == "section":
            header = record
            continue
        if record[0] != query.api.section:
            continue
        if header is None or len(record) != len(header):
            raise ValueError(f"report CSV: a row of section {record[0]!r} does not match its header {header}")
        missing = [column for column in wanted if column not in header]
        if missing:
            raise ValueError(f"report CSV: section {record[0]!r} has no column {', '.join(missing)} ({header})")
        cells = dict(zip(header, record))
        rows.append(tuple(cells[column] if cells[column] != "" else None for column in wanted))
    return rows


def report_json_rows(query: Query, document: dict) -> list[tuple]:
    """Our report file as JSON ({"sections": [{"name", "rows": [{column: value}]}]}) → the rows of section
    query.api.section in the order of report_columns()."""
    wanted = report_columns(query)
    for section in document.get("sections") or []:
        if section.get("name") == query.api.section:
            return [tuple(row.get(column) for column in wanted) for row in section.get("rows") or []]
    raise ValueError(f"report JSON: no section {query.api.section!r}")


def api_rows(query: Query, body: dict) -> list[tuple]:
    """Our response → rows in the shape the SQL gives. Metric values: series whose game_id is not a real
    game (the "other" remainder, null) are ignored. Analysis answers: the fields the comparison needs (ours
    says more: conversion rates, shares, intervals, the SRM check); A/B rows carry ours' p-value as a 4th
    column, which canonical() keeps instead of computing one."""
    if query.shape == "funnel_steps":
        return [(index + 1, step.get("users") or 0, step.get("median_seconds_to_convert"))
                for index, step in enumerate(body.get("steps", []))]
    if query.shape == "retention_cohorts":
        # Our answer lists every cohort bucket of the period, empty ones too (users 0); the peers' SQL can only
        # produce cohorts that have users, so empty ones are left out here.
        return [(cohort["cohort_start"][:10], cohort.get("users") or 0, cell["period"], cell.get("measurable"),
                 cell.get("users"))
                for cohort in body.get("cohorts", []) if cohort.get("users") for cell in cohort.get("retained", [])]
    if query.shape == "ab_conversion":
        rows_ab = []
        for variant in body.get("variants", []):
            goal = (variant.get("goals") or [{}])[0]
            rows_ab.append((variant["variant"], variant.get("exposed_users") or 0, goal.get("converters") or 0,
                            goal.get("p_value")))
        return rows_ab
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

