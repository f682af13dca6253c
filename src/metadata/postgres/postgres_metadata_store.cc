// PostgresMetadataStore: SQL of the PostgreSQL adapter, migrations under an advisory lock.
#include "metadata/postgres/postgres_metadata_store.h"

#include <charconv>
#include <cstdint>
#include <string>
#include <utility>

#include "common/time_util.h"
#include "metadata/documents.h"
#include "metadata/migrations/migrations.h"
#include "metadata/postgres/pg_connection.h"

namespace analytics::metadata {

using common::Result;
using common::Status;

namespace {

// First key of the two-key advisory lock taken while migrating ("anMD"); the second is a hash of the schema
// name, so stores in different schemas of one database do not wait for each other.
constexpr int32_t kMigrationLockClass = 0x616e4d44;

bool IsValidSchemaName(std::string_view schema) {
  if (schema.empty() || schema.size() > 63) return false;
  if (schema[0] >= '0' && schema[0] <= '9') return false;
  for (char c : schema) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string Int(int64_t value) { return std::to_string(value); }
std::string Bool(bool value) { return value ? "true" : "false"; }

std::string_view Cell(const PgResult& result, int row, int column) {
  return std::string_view(PQgetvalue(result.get(), row, column),
                          static_cast<size_t>(PQgetlength(result.get(), row, column)));
}

Result<int64_t> CellInt(const PgResult& result, int row, int column) {
  const std::string_view text = Cell(result, row, column);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return Status::Corruption("PostgreSQL returned '" + std::string(text) + "' where an integer was expected");
  }
  return value;
}

// Applies pending migrations on `conn` in one transaction (see migrations/migrations.h).
Status Migrate(PGconn* conn, const std::string& schema) {
  ANALYTICS_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(conn));
  // Released at commit/rollback. Serializes replicas starting together, including the CREATE SCHEMA
  // (IF NOT EXISTS is not safe against a concurrent create).
  ANALYTICS_RETURN_IF_ERROR(PgRun(conn, "SELECT pg_advisory_xact_lock($1::integer, hashtext($2::text))",
                                  {Int(kMigrationLockClass), schema}, "cannot take the migration lock"));
  if (!schema.empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(std::string quoted, PgQuoteIdentifier(conn, schema));
    ANALYTICS_RETURN_IF_ERROR(
        PgExecScript(conn, "CREATE SCHEMA IF NOT EXISTS " + quoted, "cannot create schema " + quoted));
  }
  ANALYTICS_RETURN_IF_ERROR(PgExecScript(conn,
                                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                         " version INTEGER NOT NULL PRIMARY KEY,"
                                         " name TEXT NOT NULL,"
                                         " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                                         "cannot create schema_migrations"));
  ANALYTICS_ASSIGN_OR_RETURN(PgResult version,
                             PgExec(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {},
                                    "cannot read schema version"));
  ANALYTICS_ASSIGN_OR_RETURN(int64_t applied, CellInt(version, 0, 0));
  ANALYTICS_ASSIGN_OR_RETURN(auto pending,
                             PendingMigrations(PostgresMigrations(), static_cast<int>(applied), "postgres"));
  for (const Migration& migration : pending) {
    const std::string label =
        "metadata migration " + std::to_string(migration.version) + " (" + std::string(migration.name) + ")";
    ANALYTICS_RETURN_IF_ERROR(PgExecScript(conn, migration.sql, label + " failed"));
    ANALYTICS_RETURN_IF_ERROR(
        PgRun(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2::text)",
              {Int(migration.version), std::string(migration.name)}, "cannot record " + label));
  }
  return txn.Commit();
}

Status RequireName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("metric definition name is empty", "name");
  return Status::Ok();
}

// $1 name, $2 owner_service, $3 is_realtime, $4 version, $5 created_at_ms, $6 updated_at_ms, $7 builtin,
// $8 document: shared by INSERT and UPDATE.
PgParams DefinitionRow(const query::MetricDefinition& def, std::string document) {
  return {def.name,          def.owner_service,     Bool(def.is_realtime), Int(def.version),
          Int(def.created_at_ms), Int(def.updated_at_ms), Bool(def.builtin),     std::move(document)};
}

Status InsertTags(PGconn* conn, const query::MetricDefinition& def) {
  for (const std::string& tag : def.tags) {
    ANALYTICS_RETURN_IF_ERROR(PgRun(conn,
                                    "INSERT INTO metric_definition_tags (name, tag) VALUES ($1::text, $2::text)"
                                    " ON CONFLICT DO NOTHING",
                                    {def.name, tag}, "cannot store tags of metric definition '" + def.name + "'"));
  }
  return Status::Ok();
}

}  // namespace

Status ValidatePostgresDsn(std::string_view dsn) {
  char* error = nullptr;
  const std::string text(dsn);
  PQconninfoOption* parsed = PQconninfoParse(text.c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Status::InvalidArgument("invalid PostgreSQL DSN: " + message);
  }
  PQconninfoFree(parsed);
  return Status::Ok();
}

Result<std::unique_ptr<MetadataStore>> OpenPostgresMetadataStore(const PostgresMetadataOptions& options) {
  ANALYTICS_RETURN_IF_ERROR(ValidatePostgresDsn(options.dsn).WithFieldPrefix("dsn"));
  if (!options.schema.empty() && !IsValidSchemaName(options.schema)) {
    return Status::InvalidArgument("must be 1-63 chars of a-z, 0-9 and _, not starting with a digit", "schema");
  }
  if (options.pool_size < 1) return Status::InvalidArgument("must be at least 1", "pool_size");
  if (options.connect_timeout_seconds < 0) {
    return Status::InvalidArgument("must not be negative", "connect_timeout_seconds");
  }
  auto pool = std::make_unique<PgConnectionPool>(PgPoolOptions{
      .dsn = options.dsn,
      .schema = options.schema,
      .size = options.pool_size,
      .connect_timeout_seconds = options.connect_timeout_seconds,
  });
  {
    ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool->Acquire());
    ANALYTICS_RETURN_IF_ERROR(Migrate(lease.get(), options.schema));
  }
  return std::unique_ptr<MetadataStore>(std::make_unique<PostgresMetadataStore>(std::move(pool)));
}

Status DropPostgresSchemaForTest(std::string_view dsn, std::string_view schema) {
  PgConnectionPool pool(PgPoolOptions{.dsn = std::string(dsn), .schema = {}, .size = 1});
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool.Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(std::string quoted, PgQuoteIdentifier(lease.get(), schema));
  return PgExecScript(lease.get(), "DROP SCHEMA IF EXISTS " + quoted + " CASCADE", "cannot drop schema " + quoted);
}

PostgresMetadataStore::PostgresMetadataStore(std::unique_ptr<PgConnectionPool> pool) : pool_(std::move(pool)) {}

PostgresMetadataStore::~PostgresMetadataStore() = default;

Status PostgresMetadataStore::Ping() {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  return PgExecScript(lease.get(), "SELECT 1", "PostgreSQL does not answer");
}

Result<int> PostgresMetadataStore::SchemaVersion() {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult version,
                             PgExec(lease.get(), "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {},
                                    "cannot read schema version"));
  ANALYTICS_ASSIGN_OR_RETURN(int64_t applied, CellInt(version, 0, 0));
  return static_cast<int>(applied);
}

Status PostgresMetadataStore::CreateMetricDefinition(const query::MetricDefinition& def) {
  ANALYTICS_RETURN_IF_ERROR(RequireName(def.name));
  ANALYTICS_ASSIGN_OR_RETURN(std::string document, EncodeMetricDocument(def));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(lease.get()));
  // ON CONFLICT DO NOTHING: a concurrent creator of the same name waits for the first to commit, then
  // inserts nothing; zero rows means the name was taken.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult inserted,
      PgExec(lease.get(),
             "INSERT INTO metric_definitions (name, owner_service, is_realtime, version, created_at_ms,"
             " updated_at_ms, builtin, document) VALUES ($1::text, $2::text, $3::boolean, $4::bigint, $5::bigint,"
             " $6::bigint, $7::boolean, $8::text) ON CONFLICT (name) DO NOTHING",
             DefinitionRow(def, std::move(document)), "cannot store metric definition '" + def.name + "'"));
  if (PgAffectedRows(inserted) == 0) {
    return Status::AlreadyExists("metric definition '" + def.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(InsertTags(lease.get(), def));
  return txn.Commit();
}

Result<query::MetricDefinition> PostgresMetadataStore::GetMetricDefinition(std::string_view name) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(), "SELECT document FROM metric_definitions WHERE name = $1::text",
                                    {std::string(name)}, "cannot read metric definition '" + std::string(name) + "'"));
  if (PQntuples(rows.get()) == 0) return Status::NotFound("metric definition '" + std::string(name) + "' not found");
  return DecodeMetricDocument(name, Cell(rows, 0, 0));
}

Result<std::vector<query::MetricDefinition>> PostgresMetadataStore::ListMetricDefinitions(
    const MetricDefinitionFilter& filter) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // An unset filter is NULL and its condition is true. name is COLLATE "C": byte order, as on SQLite.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(),
             "SELECT d.name, d.document FROM metric_definitions AS d"
             " WHERE ($1::text IS NULL OR EXISTS (SELECT 1 FROM metric_definition_tags AS t"
             "                                    WHERE t.name = d.name AND t.tag = $1::text))"
             "   AND ($2::text IS NULL OR d.owner_service = $2::text)"
             "   AND ($3::boolean IS NULL OR d.is_realtime = $3::boolean)"
             " ORDER BY d.name",
             {filter.tag, filter.owner_service,
              filter.is_realtime ? std::optional<std::string>(Bool(*filter.is_realtime)) : std::nullopt},
             "cannot list metric definitions"));
  std::vector<query::MetricDefinition> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(query::MetricDefinition def,
                               DecodeMetricDocument(Cell(rows, row_idx, 0), Cell(rows, row_idx, 1)));
    out.push_back(std::move(def));
  }
  return out;
}

Status PostgresMetadataStore::UpdateMetricDefinition(const query::MetricDefinition& def, int64_t expected_version) {
  ANALYTICS_RETURN_IF_ERROR(RequireName(def.name));
  ANALYTICS_ASSIGN_OR_RETURN(std::string document, EncodeMetricDocument(def));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(lease.get()));
  // The version check and the write are one statement: a concurrent updater blocks on the row lock, then
  // re-checks the WHERE clause against the committed row and updates nothing.
  PgParams params = DefinitionRow(def, std::move(document));
  params.push_back(Int(expected_version));
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult updated,
      PgExec(lease.get(),
             "UPDATE metric_definitions SET owner_service = $2::text, is_realtime = $3::boolean,"
             " version = $4::bigint, created_at_ms = $5::bigint, updated_at_ms = $6::bigint, builtin = $7::boolean,"
             " document = $8::text WHERE name = $1::text AND version = $9::bigint",
             params, "cannot update metric definition '" + def.name + "'"));
  if (PgAffectedRows(updated) == 0) {
    ANALYTICS_ASSIGN_OR_RETURN(PgResult current,
                               PgExec(lease.get(), "SELECT version FROM metric_definitions WHERE name = $1::text",
                                      {def.name}, "cannot read metric definition '" + def.name + "'"));
    if (PQntuples(current.get()) == 0) return Status::NotFound("metric definition '" + def.name + "' not found");
    return Status::FailedPrecondition("metric definition '" + def.name + "' is at version " +
                                      std::string(Cell(current, 0, 0)) + ", not " + Int(expected_version) +
                                      ": it was changed concurrently");
  }
  ANALYTICS_RETURN_IF_ERROR(PgRun(lease.get(), "DELETE FROM metric_definition_tags WHERE name = $1::text",
                                  {def.name}, "cannot update tags of metric definition '" + def.name + "'"));
  ANALYTICS_RETURN_IF_ERROR(InsertTags(lease.get(), def));
  return txn.Commit();
}

Status PostgresMetadataStore::DeleteMetricDefinition(std::string_view name) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // Tags go with the row (ON DELETE CASCADE).
  const std::string name_text(name);
  ANALYTICS_ASSIGN_OR_RETURN(PgResult deleted,
                             PgExec(lease.get(), "DELETE FROM metric_definitions WHERE name = $1::text", {name_text},
                                    "cannot delete metric definition '" + name_text + "'"));
  if (PgAffectedRows(deleted) == 0) return Status::NotFound("metric definition '" + name_text + "' not found");
  return Status::Ok();
}

Status PostgresMetadataStore::AppendAudit(const AuditRecord& record) {
  ANALYTICS_ASSIGN_OR_RETURN(std::string details, EncodeAuditDetails(record.details));
  const int64_t at_ms = record.at_ms != 0 ? record.at_ms : common::NowMillis();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  return PgRun(lease.get(),
               "INSERT INTO audit_log (at_ms, actor, action, resource, details)"
               " VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text)",
               {Int(at_ms), record.actor, record.action, record.resource, std::move(details)},
               "cannot append audit record");
}

Result<std::vector<AuditRecord>> PostgresMetadataStore::ListAudit(int limit) {
  if (limit <= 0) return Status::InvalidArgument("must be positive", "limit");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT id, at_ms, actor, action, resource, details FROM audit_log"
                                    " ORDER BY at_ms DESC, id DESC LIMIT $1::integer",
                                    {Int(limit)}, "cannot list audit records"));
  std::vector<AuditRecord> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    AuditRecord record;
    ANALYTICS_ASSIGN_OR_RETURN(record.id, CellInt(rows, row_idx, 0));
    ANALYTICS_ASSIGN_OR_RETURN(record.at_ms, CellInt(rows, row_idx, 1));
    record.actor = Cell(rows, row_idx, 2);
    record.action = Cell(rows, row_idx, 3);
    record.resource = Cell(rows, row_idx, 4);
    ANALYTICS_ASSIGN_OR_RETURN(record.details, DecodeAuditDetails(record.id, Cell(rows, row_idx, 5)));
    out.push_back(std::move(record));
  }
  return out;
}

Status PostgresMetadataStore::ExecuteForTest(std::string_view sql) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  return PgExecScript(lease.get(), sql, "test statement failed");
}

}  // namespace analytics::metadata
