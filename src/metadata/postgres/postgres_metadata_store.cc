// PostgresMetadataStore: SQL of the PostgreSQL adapter, migrations under an advisory lock.
#include "metadata/postgres/postgres_metadata_store.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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

// Letters per INSERT statement: 11 parameters each stay far below PostgreSQL's 65535 per statement, and a
// batch of 1,000 takes two round trips.
constexpr size_t kDeadLettersPerInsert = 500;

constexpr std::string_view kDeadLetterColumns =
    "id, received_at_ms, source, event_id, event_type, code, field, message, payload, payload_bytes, channel,"
    " replay_count";

// The types of the parameters of one inserted dead letter, in AppendDeadLetterRow's order.
constexpr const char* kDeadLetterParamTypes[] = {"bigint", "text", "text",   "text", "text",   "text",
                                                 "text",   "text", "bigint", "text", "integer"};

// "INSERT ... VALUES (...), (...) RETURNING id" for `rows` letters (parameters: see AppendDeadLetterRow).
std::string DeadLetterInsert(size_t rows) {
  std::string sql =
      "INSERT INTO dead_letters (received_at_ms, source, event_id, event_type, code, field, message, payload,"
      " payload_bytes, channel, replay_count) VALUES ";
  size_t param = 1;
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    sql += row_idx == 0 ? "(" : ", (";
    for (size_t column_idx = 0; column_idx < std::size(kDeadLetterParamTypes); ++column_idx) {
      if (column_idx != 0) sql += ", ";
      sql += '$';
      sql += std::to_string(param++);
      sql += "::";
      sql += kDeadLetterParamTypes[column_idx];
    }
    sql += ")";
  }
  sql += " RETURNING id";
  return sql;
}

void AppendDeadLetterRow(PgParams& params, const DeadLetter& letter, int64_t received_at_ms) {
  params.emplace_back(Int(received_at_ms));
  params.emplace_back(letter.source);
  params.emplace_back(letter.event_id);
  params.emplace_back(letter.event_type);
  params.emplace_back(letter.code);
  params.emplace_back(letter.field);
  params.emplace_back(letter.message);
  params.emplace_back(letter.payload);
  params.emplace_back(Int(letter.payload_bytes));
  params.emplace_back(letter.channel);
  params.emplace_back(Int(letter.replay_count));
}

Result<DeadLetter> ReadDeadLetter(const PgResult& rows, int row) {
  DeadLetter letter;
  ANALYTICS_ASSIGN_OR_RETURN(letter.id, CellInt(rows, row, 0));
  ANALYTICS_ASSIGN_OR_RETURN(letter.received_at_ms, CellInt(rows, row, 1));
  letter.source = Cell(rows, row, 2);
  letter.event_id = Cell(rows, row, 3);
  letter.event_type = Cell(rows, row, 4);
  letter.code = Cell(rows, row, 5);
  letter.field = Cell(rows, row, 6);
  letter.message = Cell(rows, row, 7);
  letter.payload = Cell(rows, row, 8);
  ANALYTICS_ASSIGN_OR_RETURN(letter.payload_bytes, CellInt(rows, row, 9));
  letter.channel = Cell(rows, row, 10);
  ANALYTICS_ASSIGN_OR_RETURN(int64_t replay_count, CellInt(rows, row, 11));
  letter.replay_count = static_cast<int>(replay_count);
  return letter;
}

// The conditions of a dead-letter filter on $1 code, $2 event_type, $3 from_ms, $4 to_ms; an unset filter is
// NULL and its condition is true. PostgreSQL plans the statement with the bound values, so the conditions
// of unset filters fold away and the indexes of set ones are used.
constexpr std::string_view kDeadLetterConditions =
    " WHERE ($1::text IS NULL OR code = $1::text)"
    "   AND ($2::text IS NULL OR event_type = $2::text)"
    "   AND ($3::bigint IS NULL OR received_at_ms >= $3::bigint)"
    "   AND ($4::bigint IS NULL OR received_at_ms < $4::bigint)";

std::optional<std::string> OptionalInt(const std::optional<int64_t>& value) {
  return value ? std::optional<std::string>(Int(*value)) : std::nullopt;
}

PgParams DeadLetterFilterParams(const DeadLetterFilter& filter) {
  return {filter.code, filter.event_type, OptionalInt(filter.from_ms), OptionalInt(filter.to_ms)};
}

// `ids` as a bigint[] literal, e.g. "{1,2,3}".
std::string IdArray(const std::vector<int64_t>& ids) {
  std::string text = "{";
  for (size_t id_idx = 0; id_idx < ids.size(); ++id_idx) {
    if (id_idx != 0) text += ',';
    text += Int(ids[id_idx]);
  }
  text += '}';
  return text;
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

Status PostgresMetadataStore::AppendDeadLetters(std::vector<DeadLetter>& letters) {
  for (size_t letter_idx = 0; letter_idx < letters.size(); ++letter_idx) {
    ANALYTICS_RETURN_IF_ERROR(
        CheckDeadLetter(letters[letter_idx]).WithFieldPrefix("letters[" + std::to_string(letter_idx) + "]"));
  }
  if (letters.empty()) return Status::Ok();
  const int64_t now_ms = common::NowMillis();
  std::vector<int64_t> ids;
  ids.reserve(letters.size());
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(lease.get()));
  for (size_t first = 0; first < letters.size(); first += kDeadLettersPerInsert) {
    const size_t rows = std::min(kDeadLettersPerInsert, letters.size() - first);
    PgParams params;
    params.reserve(rows * std::size(kDeadLetterParamTypes));
    for (size_t letter_idx = first; letter_idx < first + rows; ++letter_idx) {
      const DeadLetter& letter = letters[letter_idx];
      AppendDeadLetterRow(params, letter, letter.received_at_ms != 0 ? letter.received_at_ms : now_ms);
    }
    ANALYTICS_ASSIGN_OR_RETURN(
        PgResult inserted, PgExec(lease.get(), DeadLetterInsert(rows), params, "cannot append dead letters"));
    const int returned = PQntuples(inserted.get());
    if (returned != static_cast<int>(rows)) {
      return Status::Internal("cannot append dead letters: " + std::to_string(rows) + " inserted, " +
                              std::to_string(returned) + " ids returned");
    }
    // The identity is drawn row by row in VALUES order, so the ids ascending are the letters in order
    // (RETURNING itself promises no order).
    std::vector<int64_t> chunk_ids;
    chunk_ids.reserve(rows);
    for (int row_idx = 0; row_idx < returned; ++row_idx) {
      ANALYTICS_ASSIGN_OR_RETURN(int64_t id, CellInt(inserted, row_idx, 0));
      chunk_ids.push_back(id);
    }
    std::sort(chunk_ids.begin(), chunk_ids.end());
    ids.insert(ids.end(), chunk_ids.begin(), chunk_ids.end());
  }
  ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  AssignDeadLetterIds(letters, ids, now_ms);
  return Status::Ok();
}

Result<std::vector<DeadLetter>> PostgresMetadataStore::ListDeadLetters(const DeadLetterFilter& filter) {
  ANALYTICS_RETURN_IF_ERROR(CheckDeadLetterPage(filter));
  PgParams params = DeadLetterFilterParams(filter);
  params.push_back(OptionalInt(filter.after_id));
  params.push_back(Int(filter.limit));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(),
             "SELECT " + std::string(kDeadLetterColumns) + " FROM dead_letters" + std::string(kDeadLetterConditions) +
                 "   AND ($5::bigint IS NULL OR id > $5::bigint) ORDER BY id LIMIT $6::integer",
             params, "cannot list dead letters"));
  std::vector<DeadLetter> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(DeadLetter letter, ReadDeadLetter(rows, row_idx));
    out.push_back(std::move(letter));
  }
  return out;
}

Result<int64_t> PostgresMetadataStore::CountDeadLetters(const DeadLetterFilter& filter) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult count,
      PgExec(lease.get(), "SELECT COUNT(*) FROM dead_letters" + std::string(kDeadLetterConditions),
             DeadLetterFilterParams(filter), "cannot count dead letters"));
  return CellInt(count, 0, 0);
}

Status PostgresMetadataStore::DeleteDeadLetters(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // One statement: atomic on its own.
  return PgRun(lease.get(), "DELETE FROM dead_letters WHERE id = ANY($1::bigint[])", {IdArray(ids)},
               "cannot delete dead letters");
}

Status PostgresMetadataStore::MarkDeadLettersReplayed(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // One statement; ANY matches each row once however often its id is listed.
  return PgRun(lease.get(), "UPDATE dead_letters SET replay_count = replay_count + 1 WHERE id = ANY($1::bigint[])",
               {IdArray(ids)}, "cannot mark dead letters replayed");
}

Result<int64_t> PostgresMetadataStore::PurgeDeadLettersBefore(int64_t received_before_ms) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult purged,
                             PgExec(lease.get(), "DELETE FROM dead_letters WHERE received_at_ms < $1::bigint",
                                    {Int(received_before_ms)}, "cannot purge dead letters"));
  return PgAffectedRows(purged);
}

Status PostgresMetadataStore::ExecuteForTest(std::string_view sql) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  return PgExecScript(lease.get(), sql, "test statement failed");
}

}  // namespace analytics::metadata
