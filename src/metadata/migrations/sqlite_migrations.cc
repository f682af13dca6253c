// Schema migrations for the SQLite adapter (see migrations.h for the rules). Booleans are 0/1 integers,
// timestamps Unix milliseconds. Documents are JSON text, read back by the adapter.
#include "metadata/migrations/migrations.h"

namespace analytics::metadata {
namespace {

constexpr Migration kSqliteMigrations[] = {
    {1, "metric_definitions", R"sql(
CREATE TABLE metric_definitions (
  name          TEXT    NOT NULL PRIMARY KEY,
  owner_service TEXT    NOT NULL,
  is_realtime   INTEGER NOT NULL CHECK (is_realtime IN (0, 1)),
  version       INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  builtin       INTEGER NOT NULL DEFAULT 0 CHECK (builtin IN (0, 1)),
  document      TEXT    NOT NULL
);
CREATE INDEX metric_definitions_by_owner ON metric_definitions (owner_service);
CREATE TABLE metric_definition_tags (
  name TEXT NOT NULL REFERENCES metric_definitions (name) ON DELETE CASCADE,
  tag  TEXT NOT NULL,
  PRIMARY KEY (name, tag)
) WITHOUT ROWID;
CREATE INDEX metric_definition_tags_by_tag ON metric_definition_tags (tag, name);
)sql"},
    {2, "audit_log", R"sql(
CREATE TABLE audit_log (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms    INTEGER NOT NULL,
  actor    TEXT    NOT NULL,
  action   TEXT    NOT NULL,
  resource TEXT    NOT NULL,
  details  TEXT    NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at_ms, id);
)sql"},
    // The indexes on code and event_type end in the rowid (id), so a filtered page is one index range.
    {3, "dead_letters", R"sql(
CREATE TABLE dead_letters (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  received_at_ms INTEGER NOT NULL,
  source         TEXT    NOT NULL,
  event_id       TEXT    NOT NULL,
  event_type     TEXT    NOT NULL,
  code           TEXT    NOT NULL,
  field          TEXT    NOT NULL,
  message        TEXT    NOT NULL,
  payload        TEXT    NOT NULL,
  payload_bytes  INTEGER NOT NULL CHECK (payload_bytes >= 0),
  channel        TEXT    NOT NULL,
  replay_count   INTEGER NOT NULL DEFAULT 0 CHECK (replay_count >= 0)
);
CREATE INDEX dead_letters_by_time ON dead_letters (received_at_ms);
CREATE INDEX dead_letters_by_code ON dead_letters (code);
CREATE INDEX dead_letters_by_event_type ON dead_letters (event_type);
)sql"},
    // Segments, their materialized members, the member index and pipeline runs (issue 6).
    // - Names compare byte for byte (BINARY collation), so ORDER BY name is byte order.
    // - A materialization goes with its segment (ON DELETE CASCADE; the adapter turns foreign keys on).
    // - segment_member_index.member_index is the rowid: dense, assigned by the adapter under the write lock, and
    //   never reused because rows are never deleted (erasure sets pseudonym to NULL; UNIQUE allows many NULLs).
    // - The pipeline_runs indexes end in (created_at_ms, id), so a filtered page (ORDER BY created_at_ms DESC,
    //   id DESC) is one index range; the partial indexes serve the restart scan and the retention purge.
    {4, "segments_and_pipeline_runs", R"sql(
CREATE TABLE segments (
  id            TEXT    NOT NULL PRIMARY KEY,
  name          TEXT    NOT NULL UNIQUE,
  type          TEXT    NOT NULL CHECK (type IN ('static', 'dynamic')),
  version       INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  created_by    TEXT    NOT NULL,
  definition    TEXT    NOT NULL
);
CREATE INDEX segments_by_type ON segments (type, name);
CREATE TABLE segment_materializations (
  segment_id         TEXT    NOT NULL PRIMARY KEY REFERENCES segments (id) ON DELETE CASCADE,
  definition_version INTEGER NOT NULL,
  as_of_ms           INTEGER NOT NULL,
  refreshed_at_ms    INTEGER NOT NULL,
  duration_ms        INTEGER NOT NULL,
  users_count        INTEGER NOT NULL,
  added              INTEGER NOT NULL,
  removed            INTEGER NOT NULL,
  run_id             TEXT    NOT NULL,
  refresh_trigger    TEXT    NOT NULL,
  bitmap             BLOB    NOT NULL
);
CREATE TABLE segment_member_index (
  member_index INTEGER PRIMARY KEY CHECK (member_index >= 0 AND member_index <= 4294967295),
  pseudonym    TEXT UNIQUE
);
CREATE TABLE pipeline_runs (
  id             TEXT    NOT NULL PRIMARY KEY,
  kind           TEXT    NOT NULL,
  target         TEXT    NOT NULL,
  status         TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
  parameters     TEXT    NOT NULL,
  result         TEXT    NOT NULL,
  error          TEXT    NOT NULL,
  requested_by   TEXT    NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  started_at_ms  INTEGER NOT NULL,
  finished_at_ms INTEGER NOT NULL
);
CREATE INDEX pipeline_runs_by_time ON pipeline_runs (created_at_ms, id);
CREATE INDEX pipeline_runs_by_kind ON pipeline_runs (kind, created_at_ms, id);
CREATE INDEX pipeline_runs_by_status ON pipeline_runs (status, created_at_ms, id);
CREATE INDEX pipeline_runs_by_target ON pipeline_runs (target, created_at_ms, id);
CREATE INDEX pipeline_runs_unfinished ON pipeline_runs (created_at_ms, id)
  WHERE status IN ('queued', 'running');
CREATE INDEX pipeline_runs_finished ON pipeline_runs (finished_at_ms)
  WHERE status IN ('completed', 'failed');
)sql"},
    // Report definitions; pipeline runs gain progress and the status 'cancelled' (issue 7).
    // - report_definitions is keyed and ordered like segments (BINARY collation: byte order).
    // - SQLite cannot change a CHECK constraint in place, so pipeline_runs is rebuilt (the documented
    //   "make other kinds of table schema changes" procedure: new table, copy, drop, rename) and its indexes
    //   are created again. Nothing references pipeline_runs, so foreign keys need no care. Existing runs keep
    //   every field and get progress 1 when completed, else 0.
    // - pipeline_runs_finished (the purge) now covers cancelled runs; pipeline_runs_by_requested_by serves the
    //   requested_by filter, ending in (created_at_ms, id) like the other filter indexes.
    {5, "report_definitions_and_run_progress", R"sql(
CREATE TABLE report_definitions (
  id            TEXT    NOT NULL PRIMARY KEY,
  name          TEXT    NOT NULL UNIQUE,
  version       INTEGER NOT NULL,
  builtin       INTEGER NOT NULL DEFAULT 0 CHECK (builtin IN (0, 1)),
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  created_by    TEXT    NOT NULL,
  definition    TEXT    NOT NULL
);
CREATE TABLE pipeline_runs_v5 (
  id             TEXT    NOT NULL PRIMARY KEY,
  kind           TEXT    NOT NULL,
  target         TEXT    NOT NULL,
  status         TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
  progress       REAL    NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
  parameters     TEXT    NOT NULL,
  result         TEXT    NOT NULL,
  error          TEXT    NOT NULL,
  requested_by   TEXT    NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  started_at_ms  INTEGER NOT NULL,
  finished_at_ms INTEGER NOT NULL
);
INSERT INTO pipeline_runs_v5 (id, kind, target, status, progress, parameters, result, error, requested_by,
                              created_at_ms, started_at_ms, finished_at_ms)
  SELECT id, kind, target, status, CASE WHEN status = 'completed' THEN 1.0 ELSE 0.0 END, parameters, result, error,
         requested_by, created_at_ms, started_at_ms, finished_at_ms
  FROM pipeline_runs;
DROP TABLE pipeline_runs;
ALTER TABLE pipeline_runs_v5 RENAME TO pipeline_runs;
CREATE INDEX pipeline_runs_by_time ON pipeline_runs (created_at_ms, id);
CREATE INDEX pipeline_runs_by_kind ON pipeline_runs (kind, created_at_ms, id);
CREATE INDEX pipeline_runs_by_status ON pipeline_runs (status, created_at_ms, id);
CREATE INDEX pipeline_runs_by_target ON pipeline_runs (target, created_at_ms, id);
CREATE INDEX pipeline_runs_by_requested_by ON pipeline_runs (requested_by, created_at_ms, id);
CREATE INDEX pipeline_runs_unfinished ON pipeline_runs (created_at_ms, id)
  WHERE status IN ('queued', 'running');
CREATE INDEX pipeline_runs_finished ON pipeline_runs (finished_at_ms)
  WHERE status IN ('completed', 'failed', 'cancelled');
)sql"},
    // The outbox of produced events (issue 8).
    // - sequence is the rowid with AUTOINCREMENT, so it is never reused, not even after the newest records are
    //   purged; it is assigned under the write lock, so sequence order is commit order.
    // - outbox_unrelayed (partial: the records the relay still has to deliver) serves the relay's scan and count;
    //   outbox_by_type serves a type-filtered page (ORDER BY sequence), outbox_by_time the retention purge.
    {6, "outbox", R"sql(
CREATE TABLE outbox (
  sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
  message_key   TEXT    NOT NULL,
  event_type    TEXT    NOT NULL,
  event_json    TEXT    NOT NULL,
  created_at_ms INTEGER NOT NULL CHECK (created_at_ms >= 0),
  relayed_at_ms INTEGER CHECK (relayed_at_ms >= 0)
);
CREATE INDEX outbox_unrelayed ON outbox (sequence) WHERE relayed_at_ms IS NULL;
CREATE INDEX outbox_by_type ON outbox (event_type, sequence);
CREATE INDEX outbox_by_time ON outbox (created_at_ms);
)sql"},
};

}  // namespace

std::span<const Migration> SqliteMigrations() { return kSqliteMigrations; }

}  // namespace analytics::metadata
