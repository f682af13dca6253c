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
// First key of the advisory lock that serializes outbox appends ("anOB"); the second is a hash of the schema.
constexpr int32_t kOutboxLockClass = 0x616e4f42;

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

// Segments -----------------------------------------------------------------------------------------------------

constexpr std::string_view kSegmentColumns =
    "id, name, type, version, created_at_ms, updated_at_ms, created_by, definition";

Result<SegmentRecord> ReadSegment(const PgResult& rows, int row) {
  SegmentRecord record;
  record.id = Cell(rows, row, 0);
  record.name = Cell(rows, row, 1);
  record.type = Cell(rows, row, 2);
  ANALYTICS_ASSIGN_OR_RETURN(record.version, CellInt(rows, row, 3));
  ANALYTICS_ASSIGN_OR_RETURN(record.created_at_ms, CellInt(rows, row, 4));
  ANALYTICS_ASSIGN_OR_RETURN(record.updated_at_ms, CellInt(rows, row, 5));
  record.created_by = Cell(rows, row, 6);
  ANALYTICS_ASSIGN_OR_RETURN(record.definition, DecodeSegmentDefinition(record.id, Cell(rows, row, 7)));
  return record;
}

// $1 id, $2 name, $3 type, $4 version, $5 created_at_ms, $6 updated_at_ms, $7 created_by, $8 definition:
// shared by INSERT and UPDATE.
PgParams SegmentRow(const SegmentRecord& record, std::string definition) {
  return {record.id,
          record.name,
          record.type,
          Int(record.version),
          Int(record.created_at_ms),
          Int(record.updated_at_ms),
          record.created_by,
          std::move(definition)};
}

// After a create inserted nothing: which key was taken.
Status SegmentTaken(PGconn* conn, const SegmentRecord& record) {
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows, PgExec(conn, "SELECT 1 FROM segments WHERE id = $1::text", {record.id},
                                                   "cannot read segment '" + record.id + "'"));
  if (PQntuples(rows.get()) != 0) return Status::AlreadyExists("segment '" + record.id + "' already exists");
  return Status::AlreadyExists("a segment named '" + record.name + "' already exists");
}

constexpr std::string_view kMaterializationColumns =
    "segment_id, definition_version, as_of_ms, refreshed_at_ms, duration_ms, users_count, added, removed, run_id,"
    " refresh_trigger, bitmap";

Result<SegmentMaterialization> ReadMaterialization(const PgResult& rows, int row) {
  SegmentMaterialization m;
  m.segment_id = Cell(rows, row, 0);
  ANALYTICS_ASSIGN_OR_RETURN(m.definition_version, CellInt(rows, row, 1));
  ANALYTICS_ASSIGN_OR_RETURN(m.as_of_ms, CellInt(rows, row, 2));
  ANALYTICS_ASSIGN_OR_RETURN(m.refreshed_at_ms, CellInt(rows, row, 3));
  ANALYTICS_ASSIGN_OR_RETURN(m.duration_ms, CellInt(rows, row, 4));
  ANALYTICS_ASSIGN_OR_RETURN(m.users_count, CellInt(rows, row, 5));
  ANALYTICS_ASSIGN_OR_RETURN(m.added, CellInt(rows, row, 6));
  ANALYTICS_ASSIGN_OR_RETURN(m.removed, CellInt(rows, row, 7));
  m.run_id = Cell(rows, row, 8);
  m.trigger = Cell(rows, row, 9);
  ANALYTICS_ASSIGN_OR_RETURN(m.bitmap, PgCellBytes(rows, row, 10));
  return m;
}

// Member index -------------------------------------------------------------------------------------------------

// Distinct users per statement of MemberIndexes: one text[] parameter of at most ~50 MB (1 KB pseudonyms), a
// few MB for typical ones, and a million users in 20 round trips per phase.
constexpr size_t kMembersPerStatement = 50000;

// users[positions[first..first+count)] as a text[] literal: every element double-quoted, " and \ escaped.
std::string MemberArray(const std::vector<std::string_view>& users, const std::vector<size_t>& positions,
                        size_t first, size_t count) {
  std::string text = "{";
  for (size_t position_idx = first; position_idx < first + count; ++position_idx) {
    if (position_idx != first) text += ',';
    text += '"';
    for (char c : users[positions[position_idx]]) {
      if (c == '"' || c == '\\') text += '\\';
      text += c;
    }
    text += '"';
  }
  text += '}';
  return text;
}

// Sets indexes[p] for every p of `positions` whose user (users[p]) has an entry; leaves the others alone.
// LATERAL ... LIMIT 1 pins the plan to one probe of the pseudonym index per user: left to itself the planner
// hashes the whole index table for each chunk (a second per 50,000 users against a million entries).
Status LookUpMembers(PGconn* conn, const std::vector<std::string_view>& users, const std::vector<size_t>& positions,
                     std::vector<int64_t>& indexes) {
  for (size_t first = 0; first < positions.size(); first += kMembersPerStatement) {
    const size_t count = std::min(kMembersPerStatement, positions.size() - first);
    ANALYTICS_ASSIGN_OR_RETURN(
        PgResult rows,
        PgExec(conn,
               "SELECT u.ord, t.member_index FROM unnest($1::text[]) WITH ORDINALITY AS u (pseudonym, ord)"
               " CROSS JOIN LATERAL (SELECT member_index FROM segment_member_index"
               "                     WHERE pseudonym = u.pseudonym LIMIT 1) AS t",
               {MemberArray(users, positions, first, count)}, "cannot read the member index"));
    const int row_count = PQntuples(rows.get());
    for (int row_idx = 0; row_idx < row_count; ++row_idx) {
      ANALYTICS_ASSIGN_OR_RETURN(int64_t ord, CellInt(rows, row_idx, 0));
      ANALYTICS_ASSIGN_OR_RETURN(int64_t index, CellInt(rows, row_idx, 1));
      if (ord < 1 || static_cast<size_t>(ord) > count) {
        return Status::Internal("cannot read the member index: ordinality " + Int(ord) + " out of range");
      }
      indexes[positions[first + static_cast<size_t>(ord) - 1]] = index;
    }
  }
  return Status::Ok();
}

// The index the next new member gets: MAX + 1 (0 for an empty index).
Result<int64_t> NextMemberIndex(PGconn* conn) {
  ANALYTICS_ASSIGN_OR_RETURN(PgResult next,
                             PgExec(conn, "SELECT COALESCE(MAX(member_index) + 1, 0) FROM segment_member_index", {},
                                    "cannot read the member index"));
  return CellInt(next, 0, 0);
}

// Report definitions -------------------------------------------------------------------------------------------

constexpr std::string_view kReportDefinitionColumns =
    "id, name, version, builtin, created_at_ms, updated_at_ms, created_by, definition";

Result<ReportDefinitionRecord> ReadReportDefinition(const PgResult& rows, int row) {
  ReportDefinitionRecord record;
  record.id = Cell(rows, row, 0);
  record.name = Cell(rows, row, 1);
  ANALYTICS_ASSIGN_OR_RETURN(record.version, CellInt(rows, row, 2));
  record.builtin = Cell(rows, row, 3) == "t";
  ANALYTICS_ASSIGN_OR_RETURN(record.created_at_ms, CellInt(rows, row, 4));
  ANALYTICS_ASSIGN_OR_RETURN(record.updated_at_ms, CellInt(rows, row, 5));
  record.created_by = Cell(rows, row, 6);
  ANALYTICS_ASSIGN_OR_RETURN(record.definition, DecodeReportDefinition(record.id, Cell(rows, row, 7)));
  return record;
}

// $1 id, $2 name, $3 version, $4 builtin, $5 created_at_ms, $6 updated_at_ms, $7 created_by, $8 definition:
// shared by INSERT and UPDATE.
PgParams ReportDefinitionRow(const ReportDefinitionRecord& record, std::string definition) {
  return {record.id,
          record.name,
          Int(record.version),
          Bool(record.builtin),
          Int(record.created_at_ms),
          Int(record.updated_at_ms),
          record.created_by,
          std::move(definition)};
}

// After a create inserted nothing: which key was taken.
Status ReportDefinitionTaken(PGconn* conn, const ReportDefinitionRecord& record) {
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(conn, "SELECT 1 FROM report_definitions WHERE id = $1::text", {record.id},
                                    "cannot read report definition '" + record.id + "'"));
  if (PQntuples(rows.get()) != 0) {
    return Status::AlreadyExists("report definition '" + record.id + "' already exists");
  }
  return Status::AlreadyExists("a report definition named '" + record.name + "' already exists");
}

// Pipeline runs ------------------------------------------------------------------------------------------------

constexpr std::string_view kRunColumns =
    "id, kind, target, status, parameters, result, error, requested_by, created_at_ms, started_at_ms,"
    " finished_at_ms, progress";

Result<PipelineRun> ReadRun(const PgResult& rows, int row) {
  PipelineRun run;
  run.id = Cell(rows, row, 0);
  run.kind = Cell(rows, row, 1);
  run.target = Cell(rows, row, 2);
  run.status = Cell(rows, row, 3);
  ANALYTICS_ASSIGN_OR_RETURN(run.parameters, DecodeRunDocument(run.id, "parameters", Cell(rows, row, 4)));
  ANALYTICS_ASSIGN_OR_RETURN(run.result, DecodeRunDocument(run.id, "result", Cell(rows, row, 5)));
  run.error = Cell(rows, row, 6);
  run.requested_by = Cell(rows, row, 7);
  ANALYTICS_ASSIGN_OR_RETURN(run.created_at_ms, CellInt(rows, row, 8));
  ANALYTICS_ASSIGN_OR_RETURN(run.started_at_ms, CellInt(rows, row, 9));
  ANALYTICS_ASSIGN_OR_RETURN(run.finished_at_ms, CellInt(rows, row, 10));
  ANALYTICS_ASSIGN_OR_RETURN(run.progress, ParseProgress(run.id, Cell(rows, row, 11)));
  return run;
}

Result<std::vector<PipelineRun>> ReadRuns(const PgResult& rows) {
  std::vector<PipelineRun> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(PipelineRun run, ReadRun(rows, row_idx));
    out.push_back(std::move(run));
  }
  return out;
}

// $1 id, $2 kind, $3 target, $4 status, $5 parameters, $6 result, $7 error, $8 requested_by, $9 created_at_ms,
// $10 started_at_ms, $11 finished_at_ms, $12 progress: shared by INSERT and UPDATE. Checks the run first.
Result<PgParams> RunRow(const PipelineRun& run) {
  ANALYTICS_RETURN_IF_ERROR(CheckPipelineRun(run));
  ANALYTICS_ASSIGN_OR_RETURN(std::string parameters, EncodeRunDocument(run.parameters, "parameters"));
  ANALYTICS_ASSIGN_OR_RETURN(std::string result, EncodeRunDocument(run.result, "result"));
  return PgParams{run.id,
                  run.kind,
                  run.target,
                  run.status,
                  std::move(parameters),
                  std::move(result),
                  run.error,
                  run.requested_by,
                  Int(run.created_at_ms),
                  Int(run.started_at_ms),
                  Int(run.finished_at_ms),
                  FormatProgress(run.progress)};
}

// A key that is not storable text (a NUL byte, invalid UTF-8) names no row; PostgreSQL would refuse it as a
// parameter, SQLite finds nothing. Both adapters answer as SQLite does.
bool CannotBeStored(std::string_view key) { return !IsStorableText(key); }

// Outbox -------------------------------------------------------------------------------------------------------

constexpr std::string_view kOutboxColumns =
    "sequence, message_key, event_type, event_json, created_at_ms, relayed_at_ms";

Result<std::vector<OutboxRecord>> ReadOutbox(const PgResult& rows) {
  std::vector<OutboxRecord> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    OutboxRecord record;
    ANALYTICS_ASSIGN_OR_RETURN(record.sequence, CellInt(rows, row_idx, 0));
    record.key = Cell(rows, row_idx, 1);
    record.type = Cell(rows, row_idx, 2);
    record.event_json = Cell(rows, row_idx, 3);
    ANALYTICS_ASSIGN_OR_RETURN(record.created_at_ms, CellInt(rows, row_idx, 4));
    if (!PQgetisnull(rows.get(), row_idx, 5)) {
      ANALYTICS_ASSIGN_OR_RETURN(record.relayed_at_ms, CellInt(rows, row_idx, 5));
    }
    out.push_back(std::move(record));
  }
  return out;
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

Status PostgresMetadataStore::CreateSegment(const SegmentRecord& record) {
  ANALYTICS_RETURN_IF_ERROR(CheckSegment(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeSegmentDefinition(record.definition));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // ON CONFLICT DO NOTHING (any unique key: id or name): a concurrent creator of the same name waits for the
  // first to commit, then inserts nothing.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult inserted,
      PgExec(lease.get(),
             "INSERT INTO segments (id, name, type, version, created_at_ms, updated_at_ms, created_by, definition)"
             " VALUES ($1::text, $2::text, $3::text, $4::bigint, $5::bigint, $6::bigint, $7::text, $8::text)"
             " ON CONFLICT DO NOTHING",
             SegmentRow(record, std::move(definition)), "cannot store segment '" + record.id + "'"));
  if (PgAffectedRows(inserted) == 0) return SegmentTaken(lease.get(), record);
  return Status::Ok();
}

Result<SegmentRecord> PostgresMetadataStore::GetSegment(std::string_view id) {
  const std::string id_text(id);
  if (CannotBeStored(id)) return Status::NotFound("segment '" + id_text + "' not found");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kSegmentColumns) + " FROM segments WHERE id = $1::text",
                                    {id_text}, "cannot read segment '" + id_text + "'"));
  if (PQntuples(rows.get()) == 0) return Status::NotFound("segment '" + id_text + "' not found");
  return ReadSegment(rows, 0);
}

Result<std::vector<SegmentRecord>> PostgresMetadataStore::ListSegments(const SegmentFilter& filter) {
  if (filter.type && CannotBeStored(*filter.type)) return std::vector<SegmentRecord>();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // An unset filter is NULL and its condition is true. name is COLLATE "C": byte order, as on SQLite.
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kSegmentColumns) +
                                        " FROM segments WHERE ($1::text IS NULL OR type = $1::text) ORDER BY name",
                                    {filter.type}, "cannot list segments"));
  std::vector<SegmentRecord> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(SegmentRecord record, ReadSegment(rows, row_idx));
    out.push_back(std::move(record));
  }
  return out;
}

Status PostgresMetadataStore::UpdateSegment(const SegmentRecord& record, int64_t expected_version) {
  ANALYTICS_RETURN_IF_ERROR(CheckSegment(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeSegmentDefinition(record.definition));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The version check and the write are one statement: a concurrent updater blocks on the row lock, then
  // re-checks the WHERE clause against the committed row and updates nothing.
  PgParams params = SegmentRow(record, std::move(definition));
  params.push_back(Int(expected_version));
  auto updated = PgExec(lease.get(),
                        "UPDATE segments SET name = $2::text, type = $3::text, version = $4::bigint,"
                        " created_at_ms = $5::bigint, updated_at_ms = $6::bigint, created_by = $7::text,"
                        " definition = $8::text WHERE id = $1::text AND version = $9::bigint",
                        params, "cannot update segment '" + record.id + "'");
  if (updated.status().code() == common::StatusCode::kAlreadyExists) {  // the new name is another segment's
    return Status::AlreadyExists("a segment named '" + record.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(updated.status());
  if (PgAffectedRows(*updated) == 0) {
    ANALYTICS_ASSIGN_OR_RETURN(PgResult current,
                               PgExec(lease.get(), "SELECT version FROM segments WHERE id = $1::text", {record.id},
                                      "cannot read segment '" + record.id + "'"));
    if (PQntuples(current.get()) == 0) return Status::NotFound("segment '" + record.id + "' not found");
    return Status::FailedPrecondition("segment '" + record.id + "' is at version " +
                                      std::string(Cell(current, 0, 0)) + ", not " + Int(expected_version) +
                                      ": it was changed concurrently");
  }
  return Status::Ok();
}

Status PostgresMetadataStore::DeleteSegment(std::string_view id) {
  const std::string id_text(id);
  if (CannotBeStored(id)) return Status::NotFound("segment '" + id_text + "' not found");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The materialization goes with the row (ON DELETE CASCADE), in the same statement.
  ANALYTICS_ASSIGN_OR_RETURN(PgResult deleted, PgExec(lease.get(), "DELETE FROM segments WHERE id = $1::text",
                                                      {id_text}, "cannot delete segment '" + id_text + "'"));
  if (PgAffectedRows(deleted) == 0) return Status::NotFound("segment '" + id_text + "' not found");
  return Status::Ok();
}

Status PostgresMetadataStore::PutMaterialization(const SegmentMaterialization& m) {
  ANALYTICS_RETURN_IF_ERROR(CheckMaterialization(m));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // One statement. FOR KEY SHARE holds the segment row until commit, so a concurrent DeleteSegment either
  // waits and then takes the new materialization with it, or commits first and this inserts nothing (the
  // locking read skips the deleted row): zero rows is "the segment does not exist" in both races.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult upserted,
      PgExec(lease.get(),
             "WITH segment AS (SELECT id FROM segments WHERE id = $1::text FOR KEY SHARE)"
             " INSERT INTO segment_materializations (" + std::string(kMaterializationColumns) + ")"
             " SELECT segment.id, $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6::bigint, $7::bigint, $8::bigint,"
             " $9::text, $10::text, $11::bytea FROM segment"
             " ON CONFLICT (segment_id) DO UPDATE SET definition_version = EXCLUDED.definition_version,"
             " as_of_ms = EXCLUDED.as_of_ms, refreshed_at_ms = EXCLUDED.refreshed_at_ms,"
             " duration_ms = EXCLUDED.duration_ms, users_count = EXCLUDED.users_count, added = EXCLUDED.added,"
             " removed = EXCLUDED.removed, run_id = EXCLUDED.run_id, refresh_trigger = EXCLUDED.refresh_trigger,"
             " bitmap = EXCLUDED.bitmap",
             {m.segment_id, Int(m.definition_version), Int(m.as_of_ms), Int(m.refreshed_at_ms), Int(m.duration_ms),
              Int(m.users_count), Int(m.added), Int(m.removed), m.run_id, m.trigger, PgParam::Binary(m.bitmap)},
             "cannot store the materialization of segment '" + m.segment_id + "'"));
  if (PgAffectedRows(upserted) == 0) return Status::NotFound("segment '" + m.segment_id + "' not found");
  return Status::Ok();
}

Result<SegmentMaterialization> PostgresMetadataStore::GetMaterialization(std::string_view segment_id) {
  const std::string id_text(segment_id);
  if (CannotBeStored(segment_id)) return Status::NotFound("segment '" + id_text + "' has no materialization");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(),
             "SELECT " + std::string(kMaterializationColumns) +
                 " FROM segment_materializations WHERE segment_id = $1::text",
             {id_text}, "cannot read the materialization of segment '" + id_text + "'"));
  if (PQntuples(rows.get()) == 0) return Status::NotFound("segment '" + id_text + "' has no materialization");
  return ReadMaterialization(rows, 0);
}

Result<std::vector<SegmentMaterialization>> PostgresMetadataStore::ListMaterializations() {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kMaterializationColumns) +
                                        " FROM segment_materializations ORDER BY segment_id",
                                    {}, "cannot list segment materializations"));
  std::vector<SegmentMaterialization> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(SegmentMaterialization m, ReadMaterialization(rows, row_idx));
    out.push_back(std::move(m));
  }
  return out;
}

// Two phases, so a call whose users are all known (the usual case) only reads, in parallel with anyone:
// first every distinct user is looked up (one text[] parameter per kMembersPerStatement users). Then, only if
// some are unknown, one transaction takes the table in SHARE ROW EXCLUSIVE mode (only one holder at a time,
// across replicas; readers are not blocked) and inserts them as MAX + 1, MAX + 2, ... in order. Because every
// new index is assigned under that lock and rows are never deleted, the index stays dense and no two callers
// give a user different indexes (the UNIQUE pseudonym constraint would refuse it anyway). MAX only grows, so
// when it is the same under the lock as before the first phase, nobody added entries in between and the
// unknown users are still unknown; otherwise they are looked up again first.
Result<std::vector<uint32_t>> PostgresMetadataStore::MemberIndexes(const std::vector<std::string>& users) {
  ANALYTICS_ASSIGN_OR_RETURN(DistinctMembers members, DistinctMemberList(users));
  if (users.empty()) return std::vector<uint32_t>();
  constexpr int64_t kUnknown = -1;
  std::vector<int64_t> indexes(members.distinct.size(), kUnknown);
  std::vector<size_t> everyone(members.distinct.size());
  for (size_t member_idx = 0; member_idx < everyone.size(); ++member_idx) everyone[member_idx] = member_idx;
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(const int64_t next_before_lookup, NextMemberIndex(lease.get()));
  ANALYTICS_RETURN_IF_ERROR(LookUpMembers(lease.get(), members.distinct, everyone, indexes));
  std::vector<size_t> unknown;
  for (size_t member_idx = 0; member_idx < indexes.size(); ++member_idx) {
    if (indexes[member_idx] == kUnknown) unknown.push_back(member_idx);
  }
  if (!unknown.empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(lease.get()));
    ANALYTICS_RETURN_IF_ERROR(PgExecScript(lease.get(), "LOCK TABLE segment_member_index IN SHARE ROW EXCLUSIVE MODE",
                                           "cannot lock the member index"));
    ANALYTICS_ASSIGN_OR_RETURN(int64_t next_index, NextMemberIndex(lease.get()));
    std::vector<size_t> fresh;
    if (next_index == next_before_lookup) {
      fresh = std::move(unknown);
    } else {
      ANALYTICS_RETURN_IF_ERROR(LookUpMembers(lease.get(), members.distinct, unknown, indexes));
      for (size_t member_idx : unknown) {
        if (indexes[member_idx] == kUnknown) fresh.push_back(member_idx);
      }
    }
    ANALYTICS_RETURN_IF_ERROR(CheckMemberIndexRange(next_index, fresh.size()));
    for (size_t first = 0; first < fresh.size(); first += kMembersPerStatement) {
      const size_t count = std::min(kMembersPerStatement, fresh.size() - first);
      ANALYTICS_RETURN_IF_ERROR(PgRun(lease.get(),
                                      "INSERT INTO segment_member_index (member_index, pseudonym)"
                                      " SELECT $2::bigint + u.ord - 1, u.pseudonym"
                                      " FROM unnest($1::text[]) WITH ORDINALITY AS u (pseudonym, ord)",
                                      {MemberArray(members.distinct, fresh, first, count), Int(next_index)},
                                      "cannot extend the member index"));
      for (size_t position_idx = first; position_idx < first + count; ++position_idx) {
        indexes[fresh[position_idx]] = next_index++;
      }
    }
    ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  }
  std::vector<uint32_t> out;
  out.reserve(users.size());
  for (uint32_t slot : members.slot) out.push_back(static_cast<uint32_t>(indexes[slot]));
  return out;
}

Result<std::vector<std::pair<uint32_t, std::string>>> PostgresMetadataStore::ListMemberIndex(int64_t after,
                                                                                             int limit) {
  ANALYTICS_RETURN_IF_ERROR(CheckMemberIndexPage(limit));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(),
             "SELECT member_index, pseudonym FROM segment_member_index"
             " WHERE member_index > $1::bigint AND pseudonym IS NOT NULL ORDER BY member_index LIMIT $2::integer",
             {Int(after), Int(limit)}, "cannot list the member index"));
  std::vector<std::pair<uint32_t, std::string>> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(int64_t index, CellInt(rows, row_idx, 0));
    out.emplace_back(static_cast<uint32_t>(index), std::string(Cell(rows, row_idx, 1)));
  }
  return out;
}

Result<uint32_t> PostgresMetadataStore::ForgetMember(std::string_view user) {
  ANALYTICS_RETURN_IF_ERROR(CheckMember(user, "user"));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The row stays (with a NULL pseudonym), so MAX(member_index) never goes down and the index is not reused.
  ANALYTICS_ASSIGN_OR_RETURN(PgResult forgotten,
                             PgExec(lease.get(),
                                    "UPDATE segment_member_index SET pseudonym = NULL WHERE pseudonym = $1::text"
                                    " RETURNING member_index",
                                    {std::string(user)}, "cannot forget a member"));
  if (PQntuples(forgotten.get()) == 0) return Status::NotFound("the user has no member index entry");
  ANALYTICS_ASSIGN_OR_RETURN(int64_t index, CellInt(forgotten, 0, 0));
  return static_cast<uint32_t>(index);
}

Status PostgresMetadataStore::CreateReportDefinition(const ReportDefinitionRecord& record) {
  ANALYTICS_RETURN_IF_ERROR(CheckReportDefinition(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeReportDefinition(record.definition));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // ON CONFLICT DO NOTHING (any unique key: id or name): a concurrent creator of the same name waits for the
  // first to commit, then inserts nothing.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult inserted,
      PgExec(lease.get(),
             "INSERT INTO report_definitions (" + std::string(kReportDefinitionColumns) +
                 ") VALUES ($1::text, $2::text, $3::bigint, $4::boolean, $5::bigint, $6::bigint, $7::text, $8::text)"
                 " ON CONFLICT DO NOTHING",
             ReportDefinitionRow(record, std::move(definition)),
             "cannot store report definition '" + record.id + "'"));
  if (PgAffectedRows(inserted) == 0) return ReportDefinitionTaken(lease.get(), record);
  return Status::Ok();
}

Result<ReportDefinitionRecord> PostgresMetadataStore::GetReportDefinition(std::string_view id) {
  const std::string id_text(id);
  if (CannotBeStored(id)) return Status::NotFound("report definition '" + id_text + "' not found");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kReportDefinitionColumns) +
                                        " FROM report_definitions WHERE id = $1::text",
                                    {id_text}, "cannot read report definition '" + id_text + "'"));
  if (PQntuples(rows.get()) == 0) return Status::NotFound("report definition '" + id_text + "' not found");
  return ReadReportDefinition(rows, 0);
}

Result<std::vector<ReportDefinitionRecord>> PostgresMetadataStore::ListReportDefinitions() {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // name is COLLATE "C": byte order, as on SQLite.
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kReportDefinitionColumns) +
                                        " FROM report_definitions ORDER BY name",
                                    {}, "cannot list report definitions"));
  std::vector<ReportDefinitionRecord> out;
  const int row_count = PQntuples(rows.get());
  out.reserve(static_cast<size_t>(row_count));
  for (int row_idx = 0; row_idx < row_count; ++row_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(ReportDefinitionRecord record, ReadReportDefinition(rows, row_idx));
    out.push_back(std::move(record));
  }
  return out;
}

Status PostgresMetadataStore::UpdateReportDefinition(const ReportDefinitionRecord& record, int64_t expected_version) {
  ANALYTICS_RETURN_IF_ERROR(CheckReportDefinition(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeReportDefinition(record.definition));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The version check and the write are one statement: a concurrent updater blocks on the row lock, then
  // re-checks the WHERE clause against the committed row and updates nothing.
  PgParams params = ReportDefinitionRow(record, std::move(definition));
  params.push_back(Int(expected_version));
  auto updated = PgExec(lease.get(),
                        "UPDATE report_definitions SET name = $2::text, version = $3::bigint, builtin = $4::boolean,"
                        " created_at_ms = $5::bigint, updated_at_ms = $6::bigint, created_by = $7::text,"
                        " definition = $8::text WHERE id = $1::text AND version = $9::bigint",
                        params, "cannot update report definition '" + record.id + "'");
  if (updated.status().code() == common::StatusCode::kAlreadyExists) {  // the new name is another definition's
    return Status::AlreadyExists("a report definition named '" + record.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(updated.status());
  if (PgAffectedRows(*updated) == 0) {
    ANALYTICS_ASSIGN_OR_RETURN(PgResult current,
                               PgExec(lease.get(), "SELECT version FROM report_definitions WHERE id = $1::text",
                                      {record.id}, "cannot read report definition '" + record.id + "'"));
    if (PQntuples(current.get()) == 0) return Status::NotFound("report definition '" + record.id + "' not found");
    return Status::FailedPrecondition("report definition '" + record.id + "' is at version " +
                                      std::string(Cell(current, 0, 0)) + ", not " + Int(expected_version) +
                                      ": it was changed concurrently");
  }
  return Status::Ok();
}

Status PostgresMetadataStore::DeleteReportDefinition(std::string_view id) {
  const std::string id_text(id);
  if (CannotBeStored(id)) return Status::NotFound("report definition '" + id_text + "' not found");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult deleted,
                             PgExec(lease.get(), "DELETE FROM report_definitions WHERE id = $1::text", {id_text},
                                    "cannot delete report definition '" + id_text + "'"));
  if (PgAffectedRows(deleted) == 0) return Status::NotFound("report definition '" + id_text + "' not found");
  return Status::Ok();
}

Status PostgresMetadataStore::CreatePipelineRun(const PipelineRun& run) {
  ANALYTICS_ASSIGN_OR_RETURN(PgParams row, RunRow(run));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult inserted,
      PgExec(lease.get(),
             "INSERT INTO pipeline_runs (" + std::string(kRunColumns) +
                 ") VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text,"
                 " $9::bigint, $10::bigint, $11::bigint, $12::double precision) ON CONFLICT (id) DO NOTHING",
             row, "cannot store pipeline run '" + run.id + "'"));
  if (PgAffectedRows(inserted) == 0) return Status::AlreadyExists("pipeline run '" + run.id + "' already exists");
  return Status::Ok();
}

Status PostgresMetadataStore::UpdatePipelineRun(const PipelineRun& run) {
  ANALYTICS_ASSIGN_OR_RETURN(PgParams row, RunRow(run));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult updated,
      PgExec(lease.get(),
             "UPDATE pipeline_runs SET kind = $2::text, target = $3::text, status = $4::text, parameters = $5::text,"
             " result = $6::text, error = $7::text, requested_by = $8::text, created_at_ms = $9::bigint,"
             " started_at_ms = $10::bigint, finished_at_ms = $11::bigint, progress = $12::double precision"
             " WHERE id = $1::text",
             row, "cannot update pipeline run '" + run.id + "'"));
  if (PgAffectedRows(updated) == 0) return Status::NotFound("pipeline run '" + run.id + "' not found");
  return Status::Ok();
}

Result<PipelineRun> PostgresMetadataStore::GetPipelineRun(std::string_view id) {
  const std::string id_text(id);
  if (CannotBeStored(id)) return Status::NotFound("pipeline run '" + id_text + "' not found");
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(), "SELECT " + std::string(kRunColumns) + " FROM pipeline_runs WHERE id = $1::text", {id_text},
             "cannot read pipeline run '" + id_text + "'"));
  if (PQntuples(rows.get()) == 0) return Status::NotFound("pipeline run '" + id_text + "' not found");
  return ReadRun(rows, 0);
}

Result<std::vector<PipelineRun>> PostgresMetadataStore::ListPipelineRuns(const PipelineRunFilter& filter) {
  ANALYTICS_RETURN_IF_ERROR(CheckPipelineRunPage(filter));
  if (filter.before_id && CannotBeStored(*filter.before_id)) {
    return Status::InvalidArgument("names no pipeline run (it may have been purged)", "before_id");
  }
  for (const auto* text : {&filter.kind, &filter.status, &filter.target, &filter.requested_by}) {
    if (*text && CannotBeStored(**text)) return std::vector<PipelineRun>();  // matches nothing
  }
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  std::optional<std::string> cursor_created_at_ms;
  if (filter.before_id) {
    ANALYTICS_ASSIGN_OR_RETURN(
        PgResult cursor, PgExec(lease.get(), "SELECT created_at_ms FROM pipeline_runs WHERE id = $1::text",
                                {*filter.before_id}, "cannot read pipeline run '" + *filter.before_id + "'"));
    if (PQntuples(cursor.get()) == 0) {
      return Status::InvalidArgument("names no pipeline run (it may have been purged)", "before_id");
    }
    cursor_created_at_ms = std::string(Cell(cursor, 0, 0));
  }
  // An unset filter is NULL and its condition is true; PostgreSQL plans with the bound values, so the
  // conditions of unset filters fold away and the (field, created_at_ms, id) index of a set one is used.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(),
             "SELECT " + std::string(kRunColumns) +
                 " FROM pipeline_runs"
                 " WHERE ($1::text IS NULL OR kind = $1::text)"
                 "   AND ($2::text IS NULL OR status = $2::text)"
                 "   AND ($3::text IS NULL OR target = $3::text)"
                 "   AND ($4::bigint IS NULL OR created_at_ms >= $4::bigint)"
                 "   AND ($5::bigint IS NULL OR created_at_ms < $5::bigint)"
                 "   AND ($6::bigint IS NULL OR (created_at_ms, id) < ($6::bigint, $7::text))"
                 "   AND ($9::text IS NULL OR requested_by = $9::text)"
                 " ORDER BY created_at_ms DESC, id DESC LIMIT $8::integer",
             {filter.kind, filter.status, filter.target, OptionalInt(filter.created_from_ms),
              OptionalInt(filter.created_to_ms), cursor_created_at_ms, filter.before_id, Int(filter.limit),
              filter.requested_by},
             "cannot list pipeline runs"));
  return ReadRuns(rows);
}

Result<std::vector<PipelineRun>> PostgresMetadataStore::ListUnfinishedPipelineRuns() {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The condition is the one of the partial index pipeline_runs_unfinished, which is already in this order.
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kRunColumns) +
                                        " FROM pipeline_runs WHERE status IN ('queued', 'running')"
                                        " ORDER BY created_at_ms, id",
                                    {}, "cannot list unfinished pipeline runs"));
  return ReadRuns(rows);
}

Result<int64_t> PostgresMetadataStore::PurgePipelineRunsBefore(int64_t before_ms, std::string_view kind) {
  if (CannotBeStored(kind)) return int64_t{0};  // names no run
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The status condition is the one of the partial index pipeline_runs_finished; an empty kind is NULL here.
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult purged,
      PgExec(lease.get(),
             "DELETE FROM pipeline_runs WHERE status IN ('completed', 'failed', 'cancelled')"
             " AND finished_at_ms < $1::bigint AND ($2::text IS NULL OR kind = $2::text)",
             {Int(before_ms), kind.empty() ? std::nullopt : std::optional<std::string>(kind)},
             "cannot purge pipeline runs"));
  return PgAffectedRows(purged);
}

// Outbox -------------------------------------------------------------------------------------------------------

Result<int64_t> PostgresMetadataStore::AppendOutbox(const std::string& key, const std::string& type,
                                                    const std::string& event_json, int64_t now_ms) {
  ANALYTICS_RETURN_IF_ERROR(CheckOutboxAppend(key, type, event_json, now_ms));
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(lease.get()));
  // Held until commit: the identity value is drawn after the lock is taken and committed before it is released,
  // so sequence order is commit order (see MetadataStore's outbox section).
  ANALYTICS_RETURN_IF_ERROR(PgRun(lease.get(), "SELECT pg_advisory_xact_lock($1::integer, hashtext(current_schema()))",
                                  {Int(kOutboxLockClass)}, "cannot take the outbox lock"));
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult inserted,
      PgExec(lease.get(),
             "INSERT INTO outbox (message_key, event_type, event_json, created_at_ms)"
             " VALUES ($1::text, $2::text, $3::text, $4::bigint) RETURNING sequence",
             {key, type, event_json, Int(now_ms)}, "cannot append to the outbox"));
  if (PQntuples(inserted.get()) != 1) return Status::Internal("cannot append to the outbox: no sequence returned");
  ANALYTICS_ASSIGN_OR_RETURN(int64_t sequence, CellInt(inserted, 0, 0));
  ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  return sequence;
}

Result<std::vector<OutboxRecord>> PostgresMetadataStore::ListOutbox(int64_t after_sequence, size_t limit,
                                                                    const std::string& type) {
  if (limit == 0) return std::vector<OutboxRecord>();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult rows,
      PgExec(lease.get(),
             "SELECT " + std::string(kOutboxColumns) +
                 " FROM outbox WHERE sequence > $1::bigint AND ($3::text IS NULL OR event_type = $3::text)"
                 " ORDER BY sequence LIMIT $2::bigint",
             {Int(after_sequence), Int(OutboxLimit(limit)),
              type.empty() ? std::nullopt : std::optional<std::string>(type)},
             "cannot list the outbox"));
  return ReadOutbox(rows);
}

Result<std::vector<OutboxRecord>> PostgresMetadataStore::ListUnrelayedOutbox(size_t limit) {
  if (limit == 0) return std::vector<OutboxRecord>();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // The condition is the one of the partial index outbox_unrelayed.
  ANALYTICS_ASSIGN_OR_RETURN(PgResult rows,
                             PgExec(lease.get(),
                                    "SELECT " + std::string(kOutboxColumns) +
                                        " FROM outbox WHERE relayed_at_ms IS NULL ORDER BY sequence LIMIT $1::bigint",
                                    {Int(OutboxLimit(limit))}, "cannot list the unrelayed outbox"));
  return ReadOutbox(rows);
}

Status PostgresMetadataStore::MarkOutboxRelayed(const std::vector<int64_t>& sequences, int64_t now_ms) {
  if (now_ms < 0) return Status::InvalidArgument("must not be negative", "relayed_at_ms");
  if (sequences.empty()) return Status::Ok();
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  // One statement; ANY matches each row once however often its sequence is listed.
  return PgRun(lease.get(),
               "UPDATE outbox SET relayed_at_ms = $2::bigint"
               " WHERE sequence = ANY($1::bigint[]) AND relayed_at_ms IS NULL",
               {IdArray(sequences), Int(now_ms)}, "cannot mark outbox records relayed");
}

Result<int64_t> PostgresMetadataStore::CountUnrelayedOutbox() {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(PgResult count,
                             PgExec(lease.get(), "SELECT COUNT(*) FROM outbox WHERE relayed_at_ms IS NULL", {},
                                    "cannot count the unrelayed outbox"));
  return CellInt(count, 0, 0);
}

Result<int64_t> PostgresMetadataStore::PurgeOutbox(int64_t before_ms, bool only_relayed) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  ANALYTICS_ASSIGN_OR_RETURN(
      PgResult purged,
      PgExec(lease.get(),
             std::string("DELETE FROM outbox WHERE created_at_ms < $1::bigint") +
                 (only_relayed ? " AND relayed_at_ms IS NOT NULL" : ""),
             {Int(before_ms)}, "cannot purge the outbox"));
  return PgAffectedRows(purged);
}

Status PostgresMetadataStore::ExecuteForTest(std::string_view sql) {
  ANALYTICS_ASSIGN_OR_RETURN(PgConnectionPool::Lease lease, pool_->Acquire());
  return PgExecScript(lease.get(), sql, "test statement failed");
}

}  // namespace analytics::metadata
