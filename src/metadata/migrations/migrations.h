// Versioned schema migrations of the metadata stores, one ordered list per SQL dialect.
//
// Each adapter keeps a `schema_migrations(version, name, applied_at)` table. When it opens, it applies every
// migration newer than the highest recorded version, in order, inside one transaction (PostgreSQL also takes
// an advisory lock, so replicas starting together do not race), and refuses a database whose recorded version
// is newer than the newest migration this code knows.
//
// Adding a table: append a Migration with the next version to BOTH lists (sqlite_migrations.cc and
// postgres_migrations.cc), with the same version and name; never edit or reorder a released migration.
// Thread-safety: immutable data and pure functions.
#pragma once

#include <span>
#include <string_view>

#include "common/status.h"

namespace analytics::metadata {

struct Migration {
  int version;             // 1, 2, 3, ... strictly increasing within a list
  std::string_view name;   // short snake_case description, recorded in schema_migrations
  std::string_view sql;    // one or more statements of the dialect, run inside the migration transaction
};

// The migrations of each dialect, oldest first.
std::span<const Migration> SqliteMigrations();
std::span<const Migration> PostgresMigrations();

// The migrations of `all` that come after `applied_version`, oldest first. FailedPrecondition when
// applied_version is newer than the newest migration of `all` (the database was written by newer code);
// `backend` names the store in the message.
common::Result<std::span<const Migration>> PendingMigrations(std::span<const Migration> all, int applied_version,
                                                              std::string_view backend);

}  // namespace analytics::metadata
