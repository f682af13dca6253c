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
};

}  // namespace

std::span<const Migration> SqliteMigrations() { return kSqliteMigrations; }

}  // namespace analytics::metadata
