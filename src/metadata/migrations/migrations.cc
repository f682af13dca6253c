// PendingMigrations: which migrations of a list a database still needs.
#include "metadata/migrations/migrations.h"

#include <cassert>
#include <string>

namespace analytics::metadata {

common::Result<std::span<const Migration>> PendingMigrations(std::span<const Migration> all, int applied_version,
                                                              std::string_view backend) {
  for (size_t migration_idx = 1; migration_idx < all.size(); ++migration_idx) {
    assert(all[migration_idx].version > all[migration_idx - 1].version && "migrations must be in version order");
  }
  const int latest = all.empty() ? 0 : all.back().version;
  if (applied_version > latest) {
    return common::Status::FailedPrecondition(
        "the " + std::string(backend) + " metadata schema is at version " + std::to_string(applied_version) +
        " but this build knows migrations up to version " + std::to_string(latest) +
        ": the database was migrated by a newer analytics-service; run that version (or restore a backup)");
  }
  size_t first_pending = 0;
  while (first_pending < all.size() && all[first_pending].version <= applied_version) ++first_pending;
  return all.subspan(first_pending);
}

}  // namespace analytics::metadata
