// Schema migrations for the PostgreSQL adapter (see migrations.h for the rules). Tables are created
// unqualified, so they land in the schema the adapter put first on search_path.
//
// Names use COLLATE "C" so ORDER BY name is byte order, as on SQLite, whatever the database locale.
// Documents are TEXT, not JSONB: SQL never looks inside them (the filtered fields are columns), TEXT returns
// them byte for byte, and JSONB would reject strings containing \u0000.
#include "metadata/migrations/migrations.h"

namespace analytics::metadata {
namespace {

constexpr Migration kPostgresMigrations[] = {
    {1, "metric_definitions", R"sql(
CREATE TABLE metric_definitions (
  name          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  owner_service TEXT    NOT NULL,
  is_realtime   BOOLEAN NOT NULL,
  version       BIGINT  NOT NULL,
  created_at_ms BIGINT  NOT NULL,
  updated_at_ms BIGINT  NOT NULL,
  builtin       BOOLEAN NOT NULL DEFAULT FALSE,
  document      TEXT    NOT NULL
);
CREATE INDEX metric_definitions_by_owner ON metric_definitions (owner_service);
CREATE TABLE metric_definition_tags (
  name TEXT COLLATE "C" NOT NULL REFERENCES metric_definitions (name) ON DELETE CASCADE,
  tag  TEXT NOT NULL,
  PRIMARY KEY (name, tag)
);
CREATE INDEX metric_definition_tags_by_tag ON metric_definition_tags (tag, name);
)sql"},
    {2, "audit_log", R"sql(
CREATE TABLE audit_log (
  id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at_ms    BIGINT NOT NULL,
  actor    TEXT   NOT NULL,
  action   TEXT   NOT NULL,
  resource TEXT   NOT NULL,
  details  TEXT   NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at_ms, id);
)sql"},
    // code and event_type are COLLATE "C" (byte equality; their indexes do not depend on the OS locale) and
    // their indexes end in id, so a filtered page (ORDER BY id) is one index range.
    {3, "dead_letters", R"sql(
CREATE TABLE dead_letters (
  id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  received_at_ms BIGINT  NOT NULL,
  source         TEXT    NOT NULL,
  event_id       TEXT    NOT NULL,
  event_type     TEXT COLLATE "C" NOT NULL,
  code           TEXT COLLATE "C" NOT NULL,
  field          TEXT    NOT NULL,
  message        TEXT    NOT NULL,
  payload        TEXT    NOT NULL,
  payload_bytes  BIGINT  NOT NULL CHECK (payload_bytes >= 0),
  channel        TEXT    NOT NULL,
  replay_count   INTEGER NOT NULL DEFAULT 0 CHECK (replay_count >= 0)
);
CREATE INDEX dead_letters_by_time ON dead_letters (received_at_ms);
CREATE INDEX dead_letters_by_code ON dead_letters (code, id);
CREATE INDEX dead_letters_by_event_type ON dead_letters (event_type, id);
)sql"},
    // Segments, their materialized members, the member index and pipeline runs (issue 6).
    // - Keys and names are COLLATE "C": byte equality and byte order, as on SQLite.
    // - A materialization goes with its segment (ON DELETE CASCADE); its bitmap is BYTEA (any bytes).
    // - segment_member_index: member_index is assigned by the adapter (MAX + 1 under an advisory lock, so it is
    //   dense and replicas agree), never from a sequence (a sequence leaves gaps on conflicts and rollbacks).
    //   Rows are never deleted (erasure sets pseudonym to NULL; UNIQUE allows many NULLs), so an index is
    //   never reused.
    // - The pipeline_runs indexes end in (created_at_ms, id), so a filtered page (ORDER BY created_at_ms DESC,
    //   id DESC) is one backward index range; the partial indexes serve the restart scan and the purge.
    {4, "segments_and_pipeline_runs", R"sql(
CREATE TABLE segments (
  id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  name          TEXT COLLATE "C" NOT NULL UNIQUE,
  type          TEXT COLLATE "C" NOT NULL CHECK (type IN ('static', 'dynamic')),
  version       BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  created_by    TEXT   NOT NULL,
  definition    TEXT   NOT NULL
);
CREATE INDEX segments_by_type ON segments (type, name);
CREATE TABLE segment_materializations (
  segment_id         TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES segments (id) ON DELETE CASCADE,
  definition_version BIGINT NOT NULL,
  as_of_ms           BIGINT NOT NULL,
  refreshed_at_ms    BIGINT NOT NULL,
  duration_ms        BIGINT NOT NULL,
  users_count        BIGINT NOT NULL,
  added              BIGINT NOT NULL,
  removed            BIGINT NOT NULL,
  run_id             TEXT   NOT NULL,
  refresh_trigger    TEXT   NOT NULL,
  bitmap             BYTEA  NOT NULL
);
CREATE TABLE segment_member_index (
  member_index BIGINT NOT NULL PRIMARY KEY CHECK (member_index >= 0 AND member_index <= 4294967295),
  pseudonym    TEXT COLLATE "C" UNIQUE
);
CREATE TABLE pipeline_runs (
  id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  kind           TEXT COLLATE "C" NOT NULL,
  target         TEXT COLLATE "C" NOT NULL,
  status         TEXT COLLATE "C" NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
  parameters     TEXT   NOT NULL,
  result         TEXT   NOT NULL,
  error          TEXT   NOT NULL,
  requested_by   TEXT   NOT NULL,
  created_at_ms  BIGINT NOT NULL,
  started_at_ms  BIGINT NOT NULL,
  finished_at_ms BIGINT NOT NULL
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
    // - report_definitions is keyed and ordered like segments (COLLATE "C": byte equality and order).
    // - The status CHECK of migration 4 has PostgreSQL's default name pipeline_runs_status_check; it is
    //   replaced under the same name. Existing runs get progress 1 when completed, else 0.
    // - pipeline_runs_finished (the purge) now covers cancelled runs; pipeline_runs_by_requested_by serves the
    //   requested_by filter, ending in (created_at_ms, id) like the other filter indexes.
    {5, "report_definitions_and_run_progress", R"sql(
CREATE TABLE report_definitions (
  id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  name          TEXT COLLATE "C" NOT NULL UNIQUE,
  version       BIGINT  NOT NULL,
  builtin       BOOLEAN NOT NULL DEFAULT FALSE,
  created_at_ms BIGINT  NOT NULL,
  updated_at_ms BIGINT  NOT NULL,
  created_by    TEXT    NOT NULL,
  definition    TEXT    NOT NULL
);
ALTER TABLE pipeline_runs DROP CONSTRAINT pipeline_runs_status_check;
ALTER TABLE pipeline_runs ADD CONSTRAINT pipeline_runs_status_check
  CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled'));
ALTER TABLE pipeline_runs ADD COLUMN progress DOUBLE PRECISION NOT NULL DEFAULT 0
  CONSTRAINT pipeline_runs_progress_check CHECK (progress >= 0 AND progress <= 1);
UPDATE pipeline_runs SET progress = 1 WHERE status = 'completed';
CREATE INDEX pipeline_runs_by_requested_by ON pipeline_runs (requested_by, created_at_ms, id);
DROP INDEX pipeline_runs_finished;
CREATE INDEX pipeline_runs_finished ON pipeline_runs (finished_at_ms)
  WHERE status IN ('completed', 'failed', 'cancelled');
)sql"},
    // The outbox of produced events (issue 8).
    // - sequence is an identity column (a BIGSERIAL in today's spelling, as audit_log and dead_letters): never
    //   reused. The adapter serializes appends with a transaction-scoped advisory lock, so sequence order is
    //   commit order (a sequence is drawn before its transaction commits; without the lock a reader could see
    //   N + 1 before N).
    // - event_type is COLLATE "C" (byte equality); outbox_by_type ends in sequence, so a type-filtered page is one
    //   index range. outbox_unrelayed (partial: the records the relay still has to deliver) serves the relay's
    //   scan and count, outbox_by_time the retention purge.
    {6, "outbox", R"sql(
CREATE TABLE outbox (
  sequence      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_key   TEXT   NOT NULL,
  event_type    TEXT COLLATE "C" NOT NULL,
  event_json    TEXT   NOT NULL,
  created_at_ms BIGINT NOT NULL CHECK (created_at_ms >= 0),
  relayed_at_ms BIGINT CHECK (relayed_at_ms >= 0)
);
CREATE INDEX outbox_unrelayed ON outbox (sequence) WHERE relayed_at_ms IS NULL;
CREATE INDEX outbox_by_type ON outbox (event_type, sequence);
CREATE INDEX outbox_by_time ON outbox (created_at_ms);
)sql"},
};

}  // namespace

std::span<const Migration> PostgresMigrations() { return kPostgresMigrations; }

}  // namespace analytics::metadata
