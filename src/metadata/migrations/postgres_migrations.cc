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
};

}  // namespace

std::span<const Migration> PostgresMigrations() { return kPostgresMigrations; }

}  // namespace analytics::metadata
