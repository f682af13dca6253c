// SqliteMetadataStore: statements, transactions and the mapping of SQLite result codes to Status.
#include "metadata/sqlite/sqlite_metadata_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/time_util.h"
#include "metadata/documents.h"
#include "metadata/migrations/migrations.h"

namespace analytics::metadata {

using common::Result;
using common::Status;

namespace {

// Maps an SQLite result code (extended codes on) to a Status; `what` says what was being done.
Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = std::string(what) + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(std::move(message));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        return Status::AlreadyExists(std::move(message));
      }
      return Status::Internal(std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(std::move(message));
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return Status::IOError(std::move(message));
    case SQLITE_NOMEM:
      return Status::ResourceExhausted(std::move(message));
    case SQLITE_TOOBIG:
      return Status::InvalidArgument(std::move(message));
    default:
      return Status::Internal(std::move(message));
  }
}

// One prepared statement. Bind errors are remembered and reported by Step, so call sites stay linear.
class Statement {
 public:
  static Result<Statement> Prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return SqliteError(db, rc, "cannot prepare statement");
    }
    return Statement(db, stmt);
  }

  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  // Parameters are 1-based, as in SQL (?1, ?2, ...).
  void BindText(int param, std::string_view value) {
    Check(sqlite3_bind_text64(stmt_, param, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void BindInt64(int param, int64_t value) { Check(sqlite3_bind_int64(stmt_, param, value)); }
  void BindDouble(int param, double value) { Check(sqlite3_bind_double(stmt_, param, value)); }
  void BindNull(int param) { Check(sqlite3_bind_null(stmt_, param)); }
  // Any bytes; an empty value is an empty BLOB, not NULL.
  void BindBlob(int param, std::string_view bytes) {
    if (bytes.empty()) {
      Check(sqlite3_bind_zeroblob(stmt_, param, 0));
    } else {
      Check(sqlite3_bind_blob64(stmt_, param, bytes.data(), bytes.size(), SQLITE_TRANSIENT));
    }
  }

  // True for a row, false when done.
  Result<bool> Step(std::string_view what) {
    if (bind_rc_ != SQLITE_OK) return SqliteError(db_, bind_rc_, what);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, what);
  }
  // Steps a statement that returns no rows.
  Status Run(std::string_view what) {
    auto stepped = Step(what);
    return stepped.status();
  }
  // Makes the statement ready to run again with new bindings.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bind_rc_ = SQLITE_OK;
  }

  int64_t ColumnInt64(int column) { return sqlite3_column_int64(stmt_, column); }
  bool ColumnIsNull(int column) { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  double ColumnDouble(int column) { return sqlite3_column_double(stmt_, column); }
  std::string_view ColumnText(int column) {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    return text == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(text), size);
  }
  std::string_view ColumnBlob(int column) {
    const void* bytes = sqlite3_column_blob(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    return bytes == nullptr ? std::string_view() : std::string_view(static_cast<const char*>(bytes), size);
  }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

Status Exec(sqlite3* db, const std::string& sql, std::string_view what) {
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  return Status::Ok();
}

// A transaction; rolls back unless committed.
// BeginWrite (BEGIN IMMEDIATE) takes the database write lock up front (waiting up to busy_timeout), so a
// read-then-write sequence cannot fail half-way on a lock upgrade. BeginRead (BEGIN) only reads: many
// statements see one snapshot and share one read lock, and writers of other processes are not blocked.
class Transaction {
 public:
  static Result<Transaction> BeginWrite(sqlite3* db) {
    ANALYTICS_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", "cannot begin transaction"));
    return Transaction(db);
  }
  static Result<Transaction> BeginRead(sqlite3* db) {
    ANALYTICS_RETURN_IF_ERROR(Exec(db, "BEGIN", "cannot begin transaction"));
    return Transaction(db);
  }
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (db_ != nullptr) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status Commit() {
    Status status = Exec(db_, "COMMIT", "cannot commit transaction");
    if (status.ok()) db_ = nullptr;
    return status;
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

Status Configure(sqlite3* db, const SqliteMetadataOptions& options) {
  int rc = sqlite3_extended_result_codes(db, 1);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, options.busy_timeout_ms);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "cannot configure metadata database");
  // journal_mode answers with the mode now in effect; anything but "wal" means WAL was refused (e.g. the
  // file system lacks shared memory) and concurrent readers would block writers.
  ANALYTICS_ASSIGN_OR_RETURN(Statement journal, Statement::Prepare(db, "PRAGMA journal_mode = WAL"));
  ANALYTICS_ASSIGN_OR_RETURN(bool has_row, journal.Step("cannot switch metadata database to WAL mode"));
  const std::string mode = has_row ? std::string(journal.ColumnText(0)) : std::string();
  if (mode != "wal" && !(options.path == ":memory:" && mode == "memory")) {
    return Status::IOError("metadata database " + options.path + " cannot use WAL journal mode (got '" + mode +
                           "')");
  }
  ANALYTICS_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys = ON", "cannot enable foreign keys"));
  // NORMAL in WAL mode: a power loss may drop the last commits but never corrupts the database; metadata
  // writes are rare and retried by their callers.
  ANALYTICS_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous = NORMAL", "cannot set synchronous mode"));
  return Status::Ok();
}

Result<int> ReadSchemaVersion(sqlite3* db) {
  ANALYTICS_ASSIGN_OR_RETURN(Statement query,
                             Statement::Prepare(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
  ANALYTICS_ASSIGN_OR_RETURN(bool has_row, query.Step("cannot read schema version"));
  if (!has_row) return Status::Internal("cannot read schema version: no row");
  return static_cast<int>(query.ColumnInt64(0));
}

// Applies pending migrations in one transaction (see migrations/migrations.h).
Status Migrate(sqlite3* db) {
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db));
  ANALYTICS_RETURN_IF_ERROR(Exec(db,
                                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 " version INTEGER NOT NULL PRIMARY KEY,"
                                 " name TEXT NOT NULL,"
                                 " applied_at TEXT NOT NULL)",
                                 "cannot create schema_migrations"));
  ANALYTICS_ASSIGN_OR_RETURN(int applied, ReadSchemaVersion(db));
  ANALYTICS_ASSIGN_OR_RETURN(auto pending, PendingMigrations(SqliteMigrations(), applied, "sqlite"));
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement record,
      Statement::Prepare(db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)"));
  for (const Migration& migration : pending) {
    const std::string label =
        "metadata migration " + std::to_string(migration.version) + " (" + std::string(migration.name) + ")";
    ANALYTICS_RETURN_IF_ERROR(Exec(db, std::string(migration.sql), label + " failed"));
    record.Reset();
    record.BindInt64(1, migration.version);
    record.BindText(2, migration.name);
    record.BindText(3, common::FormatRfc3339Millis(common::NowMillis()));
    ANALYTICS_RETURN_IF_ERROR(record.Run("cannot record " + label));
  }
  return txn.Commit();
}

Status RequireName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("metric definition name is empty", "name");
  return Status::Ok();
}

// Binds the columns shared by INSERT and UPDATE: ?1 name, ?2 owner_service, ?3 is_realtime, ?4 version,
// ?5 created_at_ms, ?6 updated_at_ms, ?7 builtin, ?8 document.
void BindDefinitionRow(Statement& stmt, const query::MetricDefinition& def, const std::string& document) {
  stmt.BindText(1, def.name);
  stmt.BindText(2, def.owner_service);
  stmt.BindInt64(3, def.is_realtime ? 1 : 0);
  stmt.BindInt64(4, def.version);
  stmt.BindInt64(5, def.created_at_ms);
  stmt.BindInt64(6, def.updated_at_ms);
  stmt.BindInt64(7, def.builtin ? 1 : 0);
  stmt.BindText(8, document);
}

Status InsertTags(sqlite3* db, const query::MetricDefinition& def) {
  if (def.tags.empty()) return Status::Ok();
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db, "INSERT OR IGNORE INTO metric_definition_tags (name, tag) VALUES (?1, ?2)"));
  for (const std::string& tag : def.tags) {
    insert.Reset();
    insert.BindText(1, def.name);
    insert.BindText(2, tag);
    ANALYTICS_RETURN_IF_ERROR(insert.Run("cannot store tags of metric definition '" + def.name + "'"));
  }
  return Status::Ok();
}

// The dead-letter columns in SELECT order; ReadDeadLetter reads them.
constexpr std::string_view kDeadLetterColumns =
    "id, received_at_ms, source, event_id, event_type, code, field, message, payload, payload_bytes, channel,"
    " replay_count";

DeadLetter ReadDeadLetter(Statement& select) {
  DeadLetter letter;
  letter.id = select.ColumnInt64(0);
  letter.received_at_ms = select.ColumnInt64(1);
  letter.source = select.ColumnText(2);
  letter.event_id = select.ColumnText(3);
  letter.event_type = select.ColumnText(4);
  letter.code = select.ColumnText(5);
  letter.field = select.ColumnText(6);
  letter.message = select.ColumnText(7);
  letter.payload = select.ColumnText(8);
  letter.payload_bytes = select.ColumnInt64(9);
  letter.channel = select.ColumnText(10);
  letter.replay_count = static_cast<int>(select.ColumnInt64(11));
  return letter;
}

// The WHERE clause of a dead-letter filter: ?1 code, ?2 event_type, ?3 from_ms, ?4 to_ms and, when `paged`,
// ?5 after_id. Only set fields become conditions: SQLite plans a statement before values are bound, so
// "?1 IS NULL OR code = ?1" would keep it from using the indexes on code, event_type and received_at_ms.
std::string DeadLetterWhere(const DeadLetterFilter& filter, bool paged) {
  std::string where = " WHERE 1 = 1";
  if (filter.code) where += " AND code = ?1";
  if (filter.event_type) where += " AND event_type = ?2";
  if (filter.from_ms) where += " AND received_at_ms >= ?3";
  if (filter.to_ms) where += " AND received_at_ms < ?4";
  if (paged && filter.after_id) where += " AND id > ?5";
  return where;
}

// Binds the parameters of DeadLetterWhere(filter, paged).
void BindDeadLetterFilter(Statement& stmt, const DeadLetterFilter& filter, bool paged) {
  if (filter.code) stmt.BindText(1, *filter.code);
  if (filter.event_type) stmt.BindText(2, *filter.event_type);
  if (filter.from_ms) stmt.BindInt64(3, *filter.from_ms);
  if (filter.to_ms) stmt.BindInt64(4, *filter.to_ms);
  if (paged && filter.after_id) stmt.BindInt64(5, *filter.after_id);
}

// Runs `sql` (with the id as ?1) once per distinct id of `ids`, in one write transaction.
Status ForEachDistinctId(sqlite3* db, const std::vector<int64_t>& ids, std::string_view sql, std::string_view what) {
  std::vector<int64_t> distinct = ids;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db));
  ANALYTICS_ASSIGN_OR_RETURN(Statement stmt, Statement::Prepare(db, sql));
  for (int64_t id : distinct) {
    stmt.Reset();
    stmt.BindInt64(1, id);
    ANALYTICS_RETURN_IF_ERROR(stmt.Run(what));
  }
  return txn.Commit();
}

// Segments -----------------------------------------------------------------------------------------------------

// The segment columns in SELECT order; ReadSegment reads them.
constexpr std::string_view kSegmentColumns =
    "id, name, type, version, created_at_ms, updated_at_ms, created_by, definition";

Result<SegmentRecord> ReadSegment(Statement& select) {
  SegmentRecord record;
  record.id = select.ColumnText(0);
  record.name = select.ColumnText(1);
  record.type = select.ColumnText(2);
  record.version = select.ColumnInt64(3);
  record.created_at_ms = select.ColumnInt64(4);
  record.updated_at_ms = select.ColumnInt64(5);
  record.created_by = select.ColumnText(6);
  ANALYTICS_ASSIGN_OR_RETURN(record.definition, DecodeSegmentDefinition(record.id, select.ColumnText(7)));
  return record;
}

// Binds the columns shared by INSERT and UPDATE: ?1 id, ?2 name, ?3 type, ?4 version, ?5 created_at_ms,
// ?6 updated_at_ms, ?7 created_by, ?8 definition.
void BindSegmentRow(Statement& stmt, const SegmentRecord& record, const std::string& definition) {
  stmt.BindText(1, record.id);
  stmt.BindText(2, record.name);
  stmt.BindText(3, record.type);
  stmt.BindInt64(4, record.version);
  stmt.BindInt64(5, record.created_at_ms);
  stmt.BindInt64(6, record.updated_at_ms);
  stmt.BindText(7, record.created_by);
  stmt.BindText(8, definition);
}

// After a create failed on a unique key: which one was taken.
Status SegmentTaken(sqlite3* db, const SegmentRecord& record) {
  ANALYTICS_ASSIGN_OR_RETURN(Statement select, Statement::Prepare(db, "SELECT 1 FROM segments WHERE id = ?1"));
  select.BindText(1, record.id);
  ANALYTICS_ASSIGN_OR_RETURN(bool id_taken, select.Step("cannot read segment '" + record.id + "'"));
  if (id_taken) return Status::AlreadyExists("segment '" + record.id + "' already exists");
  return Status::AlreadyExists("a segment named '" + record.name + "' already exists");
}

constexpr std::string_view kMaterializationColumns =
    "segment_id, definition_version, as_of_ms, refreshed_at_ms, duration_ms, users_count, added, removed, run_id,"
    " refresh_trigger, bitmap";

SegmentMaterialization ReadMaterialization(Statement& select) {
  SegmentMaterialization m;
  m.segment_id = select.ColumnText(0);
  m.definition_version = select.ColumnInt64(1);
  m.as_of_ms = select.ColumnInt64(2);
  m.refreshed_at_ms = select.ColumnInt64(3);
  m.duration_ms = select.ColumnInt64(4);
  m.users_count = select.ColumnInt64(5);
  m.added = select.ColumnInt64(6);
  m.removed = select.ColumnInt64(7);
  m.run_id = select.ColumnText(8);
  m.trigger = select.ColumnText(9);
  m.bitmap = select.ColumnBlob(10);
  return m;
}

// Report definitions -------------------------------------------------------------------------------------------

constexpr std::string_view kReportDefinitionColumns =
    "id, name, version, builtin, created_at_ms, updated_at_ms, created_by, definition";

Result<ReportDefinitionRecord> ReadReportDefinition(Statement& select) {
  ReportDefinitionRecord record;
  record.id = select.ColumnText(0);
  record.name = select.ColumnText(1);
  record.version = select.ColumnInt64(2);
  record.builtin = select.ColumnInt64(3) != 0;
  record.created_at_ms = select.ColumnInt64(4);
  record.updated_at_ms = select.ColumnInt64(5);
  record.created_by = select.ColumnText(6);
  ANALYTICS_ASSIGN_OR_RETURN(record.definition, DecodeReportDefinition(record.id, select.ColumnText(7)));
  return record;
}

// Binds the columns shared by INSERT and UPDATE: ?1 id, ?2 name, ?3 version, ?4 builtin, ?5 created_at_ms,
// ?6 updated_at_ms, ?7 created_by, ?8 definition.
void BindReportDefinitionRow(Statement& stmt, const ReportDefinitionRecord& record, const std::string& definition) {
  stmt.BindText(1, record.id);
  stmt.BindText(2, record.name);
  stmt.BindInt64(3, record.version);
  stmt.BindInt64(4, record.builtin ? 1 : 0);
  stmt.BindInt64(5, record.created_at_ms);
  stmt.BindInt64(6, record.updated_at_ms);
  stmt.BindText(7, record.created_by);
  stmt.BindText(8, definition);
}

// After a create failed on a unique key: which one was taken.
Status ReportDefinitionTaken(sqlite3* db, const ReportDefinitionRecord& record) {
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db, "SELECT 1 FROM report_definitions WHERE id = ?1"));
  select.BindText(1, record.id);
  ANALYTICS_ASSIGN_OR_RETURN(bool id_taken, select.Step("cannot read report definition '" + record.id + "'"));
  if (id_taken) return Status::AlreadyExists("report definition '" + record.id + "' already exists");
  return Status::AlreadyExists("a report definition named '" + record.name + "' already exists");
}

// Pipeline runs ------------------------------------------------------------------------------------------------

constexpr std::string_view kRunColumns =
    "id, kind, target, status, parameters, result, error, requested_by, created_at_ms, started_at_ms,"
    " finished_at_ms, progress";

Result<PipelineRun> ReadRun(Statement& select) {
  PipelineRun run;
  run.id = select.ColumnText(0);
  run.kind = select.ColumnText(1);
  run.target = select.ColumnText(2);
  run.status = select.ColumnText(3);
  ANALYTICS_ASSIGN_OR_RETURN(run.parameters, DecodeRunDocument(run.id, "parameters", select.ColumnText(4)));
  ANALYTICS_ASSIGN_OR_RETURN(run.result, DecodeRunDocument(run.id, "result", select.ColumnText(5)));
  run.error = select.ColumnText(6);
  run.requested_by = select.ColumnText(7);
  run.created_at_ms = select.ColumnInt64(8);
  run.started_at_ms = select.ColumnInt64(9);
  run.finished_at_ms = select.ColumnInt64(10);
  run.progress = select.ColumnDouble(11);
  return run;
}

// The stored text of a run's JSON documents (parameters, result).
struct RunDocuments {
  std::string parameters;
  std::string result;
};

Result<RunDocuments> EncodeRun(const PipelineRun& run) {
  ANALYTICS_RETURN_IF_ERROR(CheckPipelineRun(run));
  RunDocuments documents;
  ANALYTICS_ASSIGN_OR_RETURN(documents.parameters, EncodeRunDocument(run.parameters, "parameters"));
  ANALYTICS_ASSIGN_OR_RETURN(documents.result, EncodeRunDocument(run.result, "result"));
  return documents;
}

// Binds ?1 id, ?2 kind, ?3 target, ?4 status, ?5 parameters, ?6 result, ?7 error, ?8 requested_by,
// ?9 created_at_ms, ?10 started_at_ms, ?11 finished_at_ms, ?12 progress: shared by INSERT and UPDATE.
void BindRunRow(Statement& stmt, const PipelineRun& run, const RunDocuments& documents) {
  stmt.BindText(1, run.id);
  stmt.BindText(2, run.kind);
  stmt.BindText(3, run.target);
  stmt.BindText(4, run.status);
  stmt.BindText(5, documents.parameters);
  stmt.BindText(6, documents.result);
  stmt.BindText(7, run.error);
  stmt.BindText(8, run.requested_by);
  stmt.BindInt64(9, run.created_at_ms);
  stmt.BindInt64(10, run.started_at_ms);
  stmt.BindInt64(11, run.finished_at_ms);
  stmt.BindDouble(12, run.progress);
}

// Runs a SELECT of kRunColumns to the end.
Result<std::vector<PipelineRun>> ReadRuns(Statement& select) {
  std::vector<PipelineRun> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list pipeline runs"));
    if (!has_row) break;
    ANALYTICS_ASSIGN_OR_RETURN(PipelineRun run, ReadRun(select));
    out.push_back(std::move(run));
  }
  return out;
}

// Outbox -------------------------------------------------------------------------------------------------------

constexpr std::string_view kOutboxColumns =
    "sequence, message_key, event_type, event_json, created_at_ms, relayed_at_ms";

// Runs a SELECT of kOutboxColumns to the end.
Result<std::vector<OutboxRecord>> ReadOutbox(Statement& select) {
  std::vector<OutboxRecord> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list the outbox"));
    if (!has_row) break;
    OutboxRecord record;
    record.sequence = select.ColumnInt64(0);
    record.key = select.ColumnText(1);
    record.type = select.ColumnText(2);
    record.event_json = select.ColumnText(3);
    record.created_at_ms = select.ColumnInt64(4);
    if (!select.ColumnIsNull(5)) record.relayed_at_ms = select.ColumnInt64(5);
    out.push_back(std::move(record));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<MetadataStore>> OpenSqliteMetadataStore(const SqliteMetadataOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("the metadata database path is empty", "path");
  if (options.busy_timeout_ms < 0) {
    return Status::InvalidArgument("must not be negative", "busy_timeout_ms");
  }
  if (options.path != ":memory:") {
    const std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
    if (!parent.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec) {
        return Status::IOError("cannot create directory " + parent.string() + " for the metadata database: " +
                               ec.message());
      }
    }
  }
  sqlite3* raw = nullptr;
  // NOMUTEX: the store serializes every use of the connection with its own mutex.
  int rc = sqlite3_open_v2(options.path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, DbCloser> db(raw);  // sqlite3_open_v2 may allocate a handle even when it fails
  if (rc != SQLITE_OK) return SqliteError(raw, rc, "cannot open metadata database " + options.path);
  ANALYTICS_RETURN_IF_ERROR(Configure(db.get(), options));
  ANALYTICS_RETURN_IF_ERROR(Migrate(db.get()));
  return std::unique_ptr<MetadataStore>(std::make_unique<SqliteMetadataStore>(db.release()));
}

SqliteMetadataStore::SqliteMetadataStore(sqlite3* db) : db_(db) {}

SqliteMetadataStore::~SqliteMetadataStore() { sqlite3_close_v2(db_); }

Status SqliteMetadataStore::Ping() {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement ping, Statement::Prepare(db_, "SELECT 1"));
  return ping.Run("metadata database does not answer");
}

Result<int> SqliteMetadataStore::SchemaVersion() {
  std::lock_guard lock(mu_);
  return ReadSchemaVersion(db_);
}

Status SqliteMetadataStore::CreateMetricDefinition(const query::MetricDefinition& def) {
  ANALYTICS_RETURN_IF_ERROR(RequireName(def.name));
  ANALYTICS_ASSIGN_OR_RETURN(std::string document, EncodeMetricDocument(def));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_,
                         "INSERT INTO metric_definitions (name, owner_service, is_realtime, version, created_at_ms,"
                         " updated_at_ms, builtin, document) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  BindDefinitionRow(insert, def, document);
  Status inserted = insert.Run("cannot store metric definition '" + def.name + "'");
  if (inserted.code() == common::StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("metric definition '" + def.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(inserted);
  ANALYTICS_RETURN_IF_ERROR(InsertTags(db_, def));
  return txn.Commit();
}

Result<query::MetricDefinition> SqliteMetadataStore::GetMetricDefinition(std::string_view name) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT document FROM metric_definitions WHERE name = ?1"));
  select.BindText(1, name);
  ANALYTICS_ASSIGN_OR_RETURN(bool found, select.Step("cannot read metric definition '" + std::string(name) + "'"));
  if (!found) return Status::NotFound("metric definition '" + std::string(name) + "' not found");
  return DecodeMetricDocument(name, select.ColumnText(0));
}

Result<std::vector<query::MetricDefinition>> SqliteMetadataStore::ListMetricDefinitions(
    const MetricDefinitionFilter& filter) {
  std::lock_guard lock(mu_);
  // An unset filter binds NULL and its condition is true.
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_,
                         "SELECT d.name, d.document FROM metric_definitions AS d"
                         " WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM metric_definition_tags AS t"
                         "                              WHERE t.name = d.name AND t.tag = ?1))"
                         "   AND (?2 IS NULL OR d.owner_service = ?2)"
                         "   AND (?3 IS NULL OR d.is_realtime = ?3)"
                         " ORDER BY d.name"));
  if (filter.tag) {
    select.BindText(1, *filter.tag);
  } else {
    select.BindNull(1);
  }
  if (filter.owner_service) {
    select.BindText(2, *filter.owner_service);
  } else {
    select.BindNull(2);
  }
  if (filter.is_realtime) {
    select.BindInt64(3, *filter.is_realtime ? 1 : 0);
  } else {
    select.BindNull(3);
  }
  std::vector<query::MetricDefinition> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list metric definitions"));
    if (!has_row) break;
    ANALYTICS_ASSIGN_OR_RETURN(query::MetricDefinition def,
                               DecodeMetricDocument(select.ColumnText(0), select.ColumnText(1)));
    out.push_back(std::move(def));
  }
  return out;
}

Status SqliteMetadataStore::UpdateMetricDefinition(const query::MetricDefinition& def, int64_t expected_version) {
  ANALYTICS_RETURN_IF_ERROR(RequireName(def.name));
  ANALYTICS_ASSIGN_OR_RETURN(std::string document, EncodeMetricDocument(def));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  // The version check and the write are one statement inside the write lock: no lost updates.
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement update,
      Statement::Prepare(db_,
                         "UPDATE metric_definitions SET owner_service = ?2, is_realtime = ?3, version = ?4,"
                         " created_at_ms = ?5, updated_at_ms = ?6, builtin = ?7, document = ?8"
                         " WHERE name = ?1 AND version = ?9"));
  BindDefinitionRow(update, def, document);
  update.BindInt64(9, expected_version);
  ANALYTICS_RETURN_IF_ERROR(update.Run("cannot update metric definition '" + def.name + "'"));
  if (sqlite3_changes(db_) == 0) {
    ANALYTICS_ASSIGN_OR_RETURN(Statement current,
                               Statement::Prepare(db_, "SELECT version FROM metric_definitions WHERE name = ?1"));
    current.BindText(1, def.name);
    ANALYTICS_ASSIGN_OR_RETURN(bool found, current.Step("cannot read metric definition '" + def.name + "'"));
    if (!found) return Status::NotFound("metric definition '" + def.name + "' not found");
    return Status::FailedPrecondition("metric definition '" + def.name + "' is at version " +
                                      std::to_string(current.ColumnInt64(0)) + ", not " +
                                      std::to_string(expected_version) + ": it was changed concurrently");
  }
  ANALYTICS_ASSIGN_OR_RETURN(Statement clear_tags,
                             Statement::Prepare(db_, "DELETE FROM metric_definition_tags WHERE name = ?1"));
  clear_tags.BindText(1, def.name);
  ANALYTICS_RETURN_IF_ERROR(clear_tags.Run("cannot update tags of metric definition '" + def.name + "'"));
  ANALYTICS_RETURN_IF_ERROR(InsertTags(db_, def));
  return txn.Commit();
}

Status SqliteMetadataStore::DeleteMetricDefinition(std::string_view name) {
  std::lock_guard lock(mu_);
  // Tags go with the row (ON DELETE CASCADE; foreign keys are on for this connection).
  ANALYTICS_ASSIGN_OR_RETURN(Statement remove,
                             Statement::Prepare(db_, "DELETE FROM metric_definitions WHERE name = ?1"));
  remove.BindText(1, name);
  ANALYTICS_RETURN_IF_ERROR(remove.Run("cannot delete metric definition '" + std::string(name) + "'"));
  if (sqlite3_changes(db_) == 0) return Status::NotFound("metric definition '" + std::string(name) + "' not found");
  return Status::Ok();
}

Status SqliteMetadataStore::AppendAudit(const AuditRecord& record) {
  ANALYTICS_ASSIGN_OR_RETURN(std::string details, EncodeAuditDetails(record.details));
  const int64_t at_ms = record.at_ms != 0 ? record.at_ms : common::NowMillis();
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_,
                         "INSERT INTO audit_log (at_ms, actor, action, resource, details)"
                         " VALUES (?1, ?2, ?3, ?4, ?5)"));
  insert.BindInt64(1, at_ms);
  insert.BindText(2, record.actor);
  insert.BindText(3, record.action);
  insert.BindText(4, record.resource);
  insert.BindText(5, details);
  return insert.Run("cannot append audit record");
}

Result<std::vector<AuditRecord>> SqliteMetadataStore::ListAudit(int limit) {
  if (limit <= 0) return Status::InvalidArgument("must be positive", "limit");
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_,
                         "SELECT id, at_ms, actor, action, resource, details FROM audit_log"
                         " ORDER BY at_ms DESC, id DESC LIMIT ?1"));
  select.BindInt64(1, limit);
  std::vector<AuditRecord> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list audit records"));
    if (!has_row) break;
    AuditRecord record;
    record.id = select.ColumnInt64(0);
    record.at_ms = select.ColumnInt64(1);
    record.actor = select.ColumnText(2);
    record.action = select.ColumnText(3);
    record.resource = select.ColumnText(4);
    ANALYTICS_ASSIGN_OR_RETURN(record.details, DecodeAuditDetails(record.id, select.ColumnText(5)));
    out.push_back(std::move(record));
  }
  return out;
}

Status SqliteMetadataStore::AppendDeadLetters(std::vector<DeadLetter>& letters) {
  for (size_t letter_idx = 0; letter_idx < letters.size(); ++letter_idx) {
    ANALYTICS_RETURN_IF_ERROR(
        CheckDeadLetter(letters[letter_idx]).WithFieldPrefix("letters[" + std::to_string(letter_idx) + "]"));
  }
  if (letters.empty()) return Status::Ok();
  const int64_t now_ms = common::NowMillis();
  std::vector<int64_t> ids;
  ids.reserve(letters.size());
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  // One statement, prepared once and re-bound per letter, inside one transaction: one fsync per batch.
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_,
                         "INSERT INTO dead_letters (received_at_ms, source, event_id, event_type, code, field, message,"
                         " payload, payload_bytes, channel, replay_count)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"));
  for (const DeadLetter& letter : letters) {
    insert.Reset();
    insert.BindInt64(1, letter.received_at_ms != 0 ? letter.received_at_ms : now_ms);
    insert.BindText(2, letter.source);
    insert.BindText(3, letter.event_id);
    insert.BindText(4, letter.event_type);
    insert.BindText(5, letter.code);
    insert.BindText(6, letter.field);
    insert.BindText(7, letter.message);
    insert.BindText(8, letter.payload);
    insert.BindInt64(9, letter.payload_bytes);
    insert.BindText(10, letter.channel);
    insert.BindInt64(11, letter.replay_count);
    ANALYTICS_RETURN_IF_ERROR(insert.Run("cannot append dead letter"));
    ids.push_back(sqlite3_last_insert_rowid(db_));
  }
  ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  AssignDeadLetterIds(letters, ids, now_ms);
  return Status::Ok();
}

Result<std::vector<DeadLetter>> SqliteMetadataStore::ListDeadLetters(const DeadLetterFilter& filter) {
  ANALYTICS_RETURN_IF_ERROR(CheckDeadLetterPage(filter));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kDeadLetterColumns) +
                                                         " FROM dead_letters" + DeadLetterWhere(filter, true) +
                                                         " ORDER BY id LIMIT ?6"));
  BindDeadLetterFilter(select, filter, true);
  select.BindInt64(6, filter.limit);
  std::vector<DeadLetter> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list dead letters"));
    if (!has_row) break;
    out.push_back(ReadDeadLetter(select));
  }
  return out;
}

Result<int64_t> SqliteMetadataStore::CountDeadLetters(const DeadLetterFilter& filter) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement count,
      Statement::Prepare(db_, "SELECT COUNT(*) FROM dead_letters" + DeadLetterWhere(filter, false)));
  BindDeadLetterFilter(count, filter, false);
  ANALYTICS_ASSIGN_OR_RETURN(bool has_row, count.Step("cannot count dead letters"));
  if (!has_row) return Status::Internal("cannot count dead letters: no row");
  return count.ColumnInt64(0);
}

Status SqliteMetadataStore::DeleteDeadLetters(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  return ForEachDistinctId(db_, ids, "DELETE FROM dead_letters WHERE id = ?1", "cannot delete dead letters");
}

Status SqliteMetadataStore::MarkDeadLettersReplayed(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  return ForEachDistinctId(db_, ids, "UPDATE dead_letters SET replay_count = replay_count + 1 WHERE id = ?1",
                           "cannot mark dead letters replayed");
}

Result<int64_t> SqliteMetadataStore::PurgeDeadLettersBefore(int64_t received_before_ms) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement purge,
                             Statement::Prepare(db_, "DELETE FROM dead_letters WHERE received_at_ms < ?1"));
  purge.BindInt64(1, received_before_ms);
  ANALYTICS_RETURN_IF_ERROR(purge.Run("cannot purge dead letters"));
  return static_cast<int64_t>(sqlite3_changes64(db_));
}

Status SqliteMetadataStore::CreateSegment(const SegmentRecord& record) {
  ANALYTICS_RETURN_IF_ERROR(CheckSegment(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeSegmentDefinition(record.definition));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_,
                         "INSERT INTO segments (id, name, type, version, created_at_ms, updated_at_ms, created_by,"
                         " definition) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  BindSegmentRow(insert, record, definition);
  Status inserted = insert.Run("cannot store segment '" + record.id + "'");
  if (inserted.code() == common::StatusCode::kAlreadyExists) return SegmentTaken(db_, record);
  ANALYTICS_RETURN_IF_ERROR(inserted);
  return txn.Commit();
}

Result<SegmentRecord> SqliteMetadataStore::GetSegment(std::string_view id) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_, "SELECT " + std::string(kSegmentColumns) + " FROM segments WHERE id = ?1"));
  select.BindText(1, id);
  ANALYTICS_ASSIGN_OR_RETURN(bool found, select.Step("cannot read segment '" + std::string(id) + "'"));
  if (!found) return Status::NotFound("segment '" + std::string(id) + "' not found");
  return ReadSegment(select);
}

Result<std::vector<SegmentRecord>> SqliteMetadataStore::ListSegments(const SegmentFilter& filter) {
  std::lock_guard lock(mu_);
  // Only a set filter becomes a condition (see DeadLetterWhere).
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kSegmentColumns) + " FROM segments" +
                                                         (filter.type ? " WHERE type = ?1" : "") + " ORDER BY name"));
  if (filter.type) select.BindText(1, *filter.type);
  std::vector<SegmentRecord> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list segments"));
    if (!has_row) break;
    ANALYTICS_ASSIGN_OR_RETURN(SegmentRecord record, ReadSegment(select));
    out.push_back(std::move(record));
  }
  return out;
}

Status SqliteMetadataStore::UpdateSegment(const SegmentRecord& record, int64_t expected_version) {
  ANALYTICS_RETURN_IF_ERROR(CheckSegment(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeSegmentDefinition(record.definition));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  // The version check and the write are one statement inside the write lock: no lost updates.
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement update,
      Statement::Prepare(db_,
                         "UPDATE segments SET name = ?2, type = ?3, version = ?4, created_at_ms = ?5,"
                         " updated_at_ms = ?6, created_by = ?7, definition = ?8 WHERE id = ?1 AND version = ?9"));
  BindSegmentRow(update, record, definition);
  update.BindInt64(9, expected_version);
  Status updated = update.Run("cannot update segment '" + record.id + "'");
  if (updated.code() == common::StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("a segment named '" + record.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(updated);
  if (sqlite3_changes(db_) == 0) {
    ANALYTICS_ASSIGN_OR_RETURN(Statement current,
                               Statement::Prepare(db_, "SELECT version FROM segments WHERE id = ?1"));
    current.BindText(1, record.id);
    ANALYTICS_ASSIGN_OR_RETURN(bool found, current.Step("cannot read segment '" + record.id + "'"));
    if (!found) return Status::NotFound("segment '" + record.id + "' not found");
    return Status::FailedPrecondition("segment '" + record.id + "' is at version " +
                                      std::to_string(current.ColumnInt64(0)) + ", not " +
                                      std::to_string(expected_version) + ": it was changed concurrently");
  }
  return txn.Commit();
}

Status SqliteMetadataStore::DeleteSegment(std::string_view id) {
  std::lock_guard lock(mu_);
  // The materialization goes with the row (ON DELETE CASCADE), in the same statement.
  ANALYTICS_ASSIGN_OR_RETURN(Statement remove, Statement::Prepare(db_, "DELETE FROM segments WHERE id = ?1"));
  remove.BindText(1, id);
  ANALYTICS_RETURN_IF_ERROR(remove.Run("cannot delete segment '" + std::string(id) + "'"));
  if (sqlite3_changes(db_) == 0) return Status::NotFound("segment '" + std::string(id) + "' not found");
  return Status::Ok();
}

Status SqliteMetadataStore::PutMaterialization(const SegmentMaterialization& m) {
  ANALYTICS_RETURN_IF_ERROR(CheckMaterialization(m));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  ANALYTICS_ASSIGN_OR_RETURN(Statement exists, Statement::Prepare(db_, "SELECT 1 FROM segments WHERE id = ?1"));
  exists.BindText(1, m.segment_id);
  ANALYTICS_ASSIGN_OR_RETURN(bool found, exists.Step("cannot read segment '" + m.segment_id + "'"));
  if (!found) return Status::NotFound("segment '" + m.segment_id + "' not found");
  exists.Reset();
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement upsert,
      Statement::Prepare(db_,
                         "INSERT INTO segment_materializations (" + std::string(kMaterializationColumns) +
                             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                             " ON CONFLICT (segment_id) DO UPDATE SET definition_version = excluded.definition_version,"
                             " as_of_ms = excluded.as_of_ms, refreshed_at_ms = excluded.refreshed_at_ms,"
                             " duration_ms = excluded.duration_ms, users_count = excluded.users_count,"
                             " added = excluded.added, removed = excluded.removed, run_id = excluded.run_id,"
                             " refresh_trigger = excluded.refresh_trigger, bitmap = excluded.bitmap"));
  upsert.BindText(1, m.segment_id);
  upsert.BindInt64(2, m.definition_version);
  upsert.BindInt64(3, m.as_of_ms);
  upsert.BindInt64(4, m.refreshed_at_ms);
  upsert.BindInt64(5, m.duration_ms);
  upsert.BindInt64(6, m.users_count);
  upsert.BindInt64(7, m.added);
  upsert.BindInt64(8, m.removed);
  upsert.BindText(9, m.run_id);
  upsert.BindText(10, m.trigger);
  upsert.BindBlob(11, m.bitmap);
  ANALYTICS_RETURN_IF_ERROR(upsert.Run("cannot store the materialization of segment '" + m.segment_id + "'"));
  return txn.Commit();
}

Result<SegmentMaterialization> SqliteMetadataStore::GetMaterialization(std::string_view segment_id) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kMaterializationColumns) +
                                                         " FROM segment_materializations WHERE segment_id = ?1"));
  select.BindText(1, segment_id);
  ANALYTICS_ASSIGN_OR_RETURN(
      bool found, select.Step("cannot read the materialization of segment '" + std::string(segment_id) + "'"));
  if (!found) return Status::NotFound("segment '" + std::string(segment_id) + "' has no materialization");
  return ReadMaterialization(select);
}

Result<std::vector<SegmentMaterialization>> SqliteMetadataStore::ListMaterializations() {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kMaterializationColumns) +
                                                         " FROM segment_materializations ORDER BY segment_id"));
  std::vector<SegmentMaterialization> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list segment materializations"));
    if (!has_row) break;
    out.push_back(ReadMaterialization(select));
  }
  return out;
}

// Two phases, so a call whose users are all known (the usual case) only reads: first every distinct user is
// looked up in one read transaction; then, only if some are unknown, the write lock is taken and they are
// inserted as MAX + 1, MAX + 2, ... in order (one another process added meanwhile keeps its index). Each phase
// is one transaction re-binding prepared statements, so a million users cost a million or two steps and one
// fsync, not a million transactions.
Result<std::vector<uint32_t>> SqliteMetadataStore::MemberIndexes(const std::vector<std::string>& users) {
  ANALYTICS_ASSIGN_OR_RETURN(DistinctMembers members, DistinctMemberList(users));
  if (users.empty()) return std::vector<uint32_t>();
  constexpr int64_t kUnknown = -1;
  std::vector<int64_t> indexes(members.distinct.size(), kUnknown);
  std::vector<size_t> unknown;  // positions in members.distinct
  constexpr std::string_view kLookup = "SELECT member_index FROM segment_member_index WHERE pseudonym = ?1";
  std::lock_guard lock(mu_);
  {
    ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginRead(db_));
    ANALYTICS_ASSIGN_OR_RETURN(Statement lookup, Statement::Prepare(db_, kLookup));
    for (size_t member_idx = 0; member_idx < members.distinct.size(); ++member_idx) {
      lookup.Reset();
      lookup.BindText(1, members.distinct[member_idx]);
      ANALYTICS_ASSIGN_OR_RETURN(bool found, lookup.Step("cannot read the member index"));
      if (found) {
        indexes[member_idx] = lookup.ColumnInt64(0);
        lookup.Reset();  // no statement stays active across the COMMIT or the INSERTs
      } else {
        unknown.push_back(member_idx);
      }
    }
    ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  }
  if (!unknown.empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
    ANALYTICS_ASSIGN_OR_RETURN(
        Statement next, Statement::Prepare(db_, "SELECT COALESCE(MAX(member_index) + 1, 0) FROM segment_member_index"));
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, next.Step("cannot read the member index"));
    if (!has_row) return Status::Internal("cannot read the member index: no row");
    int64_t next_index = next.ColumnInt64(0);
    next.Reset();
    ANALYTICS_RETURN_IF_ERROR(CheckMemberIndexRange(next_index, unknown.size()));
    // A user another process added since the first phase conflicts and keeps its index.
    ANALYTICS_ASSIGN_OR_RETURN(Statement insert,
                               Statement::Prepare(db_,
                                                  "INSERT INTO segment_member_index (member_index, pseudonym)"
                                                  " VALUES (?1, ?2) ON CONFLICT (pseudonym) DO NOTHING"));
    ANALYTICS_ASSIGN_OR_RETURN(Statement lookup, Statement::Prepare(db_, kLookup));
    for (size_t member_idx : unknown) {
      insert.Reset();
      insert.BindInt64(1, next_index);
      insert.BindText(2, members.distinct[member_idx]);
      ANALYTICS_RETURN_IF_ERROR(insert.Run("cannot extend the member index"));
      if (sqlite3_changes(db_) == 1) {
        indexes[member_idx] = next_index++;
        continue;
      }
      lookup.Reset();
      lookup.BindText(1, members.distinct[member_idx]);
      ANALYTICS_ASSIGN_OR_RETURN(bool found, lookup.Step("cannot read the member index"));
      if (!found) return Status::Internal("cannot read the member index: a conflicting entry is missing");
      indexes[member_idx] = lookup.ColumnInt64(0);
      lookup.Reset();
    }
    ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  }
  std::vector<uint32_t> out;
  out.reserve(users.size());
  for (uint32_t slot : members.slot) out.push_back(static_cast<uint32_t>(indexes[slot]));
  return out;
}

Result<std::vector<std::pair<uint32_t, std::string>>> SqliteMetadataStore::ListMemberIndex(int64_t after,
                                                                                           int limit) {
  ANALYTICS_RETURN_IF_ERROR(CheckMemberIndexPage(limit));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_,
                         "SELECT member_index, pseudonym FROM segment_member_index"
                         " WHERE member_index > ?1 AND pseudonym IS NOT NULL ORDER BY member_index LIMIT ?2"));
  select.BindInt64(1, after);
  select.BindInt64(2, limit);
  std::vector<std::pair<uint32_t, std::string>> out;
  out.reserve(static_cast<size_t>(limit));
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list the member index"));
    if (!has_row) break;
    out.emplace_back(static_cast<uint32_t>(select.ColumnInt64(0)), std::string(select.ColumnText(1)));
  }
  return out;
}

Result<uint32_t> SqliteMetadataStore::ForgetMember(std::string_view user) {
  ANALYTICS_RETURN_IF_ERROR(CheckMember(user, "user"));
  std::lock_guard lock(mu_);
  // The row stays (with a NULL pseudonym), so MAX(member_index) never goes down and the index is not reused.
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement forget,
      Statement::Prepare(db_,
                         "UPDATE segment_member_index SET pseudonym = NULL WHERE pseudonym = ?1"
                         " RETURNING member_index"));
  forget.BindText(1, user);
  ANALYTICS_ASSIGN_OR_RETURN(bool found, forget.Step("cannot forget a member"));
  if (!found) return Status::NotFound("the user has no member index entry");
  const auto index = static_cast<uint32_t>(forget.ColumnInt64(0));
  // Step to the end: the statement (and its implicit transaction) completes there, errors included.
  ANALYTICS_ASSIGN_OR_RETURN(bool more, forget.Step("cannot forget a member"));
  if (more) return Status::Internal("cannot forget a member: the pseudonym has two entries");
  return index;
}

Status SqliteMetadataStore::CreateReportDefinition(const ReportDefinitionRecord& record) {
  ANALYTICS_RETURN_IF_ERROR(CheckReportDefinition(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeReportDefinition(record.definition));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  ANALYTICS_ASSIGN_OR_RETURN(Statement insert,
                             Statement::Prepare(db_, "INSERT INTO report_definitions (" +
                                                         std::string(kReportDefinitionColumns) +
                                                         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  BindReportDefinitionRow(insert, record, definition);
  Status inserted = insert.Run("cannot store report definition '" + record.id + "'");
  if (inserted.code() == common::StatusCode::kAlreadyExists) return ReportDefinitionTaken(db_, record);
  ANALYTICS_RETURN_IF_ERROR(inserted);
  return txn.Commit();
}

Result<ReportDefinitionRecord> SqliteMetadataStore::GetReportDefinition(std::string_view id) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kReportDefinitionColumns) +
                                                         " FROM report_definitions WHERE id = ?1"));
  select.BindText(1, id);
  ANALYTICS_ASSIGN_OR_RETURN(bool found, select.Step("cannot read report definition '" + std::string(id) + "'"));
  if (!found) return Status::NotFound("report definition '" + std::string(id) + "' not found");
  return ReadReportDefinition(select);
}

Result<std::vector<ReportDefinitionRecord>> SqliteMetadataStore::ListReportDefinitions() {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kReportDefinitionColumns) +
                                                         " FROM report_definitions ORDER BY name"));
  std::vector<ReportDefinitionRecord> out;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(bool has_row, select.Step("cannot list report definitions"));
    if (!has_row) break;
    ANALYTICS_ASSIGN_OR_RETURN(ReportDefinitionRecord record, ReadReportDefinition(select));
    out.push_back(std::move(record));
  }
  return out;
}

Status SqliteMetadataStore::UpdateReportDefinition(const ReportDefinitionRecord& record, int64_t expected_version) {
  ANALYTICS_RETURN_IF_ERROR(CheckReportDefinition(record));
  ANALYTICS_ASSIGN_OR_RETURN(std::string definition, EncodeReportDefinition(record.definition));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  // The version check and the write are one statement inside the write lock: no lost updates.
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement update,
      Statement::Prepare(db_,
                         "UPDATE report_definitions SET name = ?2, version = ?3, builtin = ?4, created_at_ms = ?5,"
                         " updated_at_ms = ?6, created_by = ?7, definition = ?8 WHERE id = ?1 AND version = ?9"));
  BindReportDefinitionRow(update, record, definition);
  update.BindInt64(9, expected_version);
  Status updated = update.Run("cannot update report definition '" + record.id + "'");
  if (updated.code() == common::StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("a report definition named '" + record.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(updated);
  if (sqlite3_changes(db_) == 0) {
    ANALYTICS_ASSIGN_OR_RETURN(Statement current,
                               Statement::Prepare(db_, "SELECT version FROM report_definitions WHERE id = ?1"));
    current.BindText(1, record.id);
    ANALYTICS_ASSIGN_OR_RETURN(bool found, current.Step("cannot read report definition '" + record.id + "'"));
    if (!found) return Status::NotFound("report definition '" + record.id + "' not found");
    return Status::FailedPrecondition("report definition '" + record.id + "' is at version " +
                                      std::to_string(current.ColumnInt64(0)) + ", not " +
                                      std::to_string(expected_version) + ": it was changed concurrently");
  }
  return txn.Commit();
}

Status SqliteMetadataStore::DeleteReportDefinition(std::string_view id) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement remove,
                             Statement::Prepare(db_, "DELETE FROM report_definitions WHERE id = ?1"));
  remove.BindText(1, id);
  ANALYTICS_RETURN_IF_ERROR(remove.Run("cannot delete report definition '" + std::string(id) + "'"));
  if (sqlite3_changes(db_) == 0) return Status::NotFound("report definition '" + std::string(id) + "' not found");
  return Status::Ok();
}

Status SqliteMetadataStore::CreatePipelineRun(const PipelineRun& run) {
  ANALYTICS_ASSIGN_OR_RETURN(RunDocuments documents, EncodeRun(run));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_, "INSERT INTO pipeline_runs (" + std::string(kRunColumns) +
                                  ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"));
  BindRunRow(insert, run, documents);
  Status inserted = insert.Run("cannot store pipeline run '" + run.id + "'");
  if (inserted.code() == common::StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("pipeline run '" + run.id + "' already exists");
  }
  return inserted;
}

Status SqliteMetadataStore::UpdatePipelineRun(const PipelineRun& run) {
  ANALYTICS_ASSIGN_OR_RETURN(RunDocuments documents, EncodeRun(run));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement update,
      Statement::Prepare(db_,
                         "UPDATE pipeline_runs SET kind = ?2, target = ?3, status = ?4, parameters = ?5, result = ?6,"
                         " error = ?7, requested_by = ?8, created_at_ms = ?9, started_at_ms = ?10,"
                         " finished_at_ms = ?11, progress = ?12 WHERE id = ?1"));
  BindRunRow(update, run, documents);
  ANALYTICS_RETURN_IF_ERROR(update.Run("cannot update pipeline run '" + run.id + "'"));
  if (sqlite3_changes(db_) == 0) return Status::NotFound("pipeline run '" + run.id + "' not found");
  return Status::Ok();
}

Result<PipelineRun> SqliteMetadataStore::GetPipelineRun(std::string_view id) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_, "SELECT " + std::string(kRunColumns) + " FROM pipeline_runs WHERE id = ?1"));
  select.BindText(1, id);
  ANALYTICS_ASSIGN_OR_RETURN(bool found, select.Step("cannot read pipeline run '" + std::string(id) + "'"));
  if (!found) return Status::NotFound("pipeline run '" + std::string(id) + "' not found");
  return ReadRun(select);
}

Result<std::vector<PipelineRun>> SqliteMetadataStore::ListPipelineRuns(const PipelineRunFilter& filter) {
  ANALYTICS_RETURN_IF_ERROR(CheckPipelineRunPage(filter));
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginRead(db_));  // the cursor and the page: one snapshot
  int64_t cursor_created_at_ms = 0;
  if (filter.before_id) {
    ANALYTICS_ASSIGN_OR_RETURN(Statement cursor,
                               Statement::Prepare(db_, "SELECT created_at_ms FROM pipeline_runs WHERE id = ?1"));
    cursor.BindText(1, *filter.before_id);
    ANALYTICS_ASSIGN_OR_RETURN(bool found, cursor.Step("cannot read pipeline run '" + *filter.before_id + "'"));
    if (!found) return Status::InvalidArgument("names no pipeline run (it may have been purged)", "before_id");
    cursor_created_at_ms = cursor.ColumnInt64(0);
  }
  // Only set fields become conditions (see DeadLetterWhere), so SQLite can pick the index of a set one.
  std::string where = " WHERE 1 = 1";
  if (filter.kind) where += " AND kind = ?1";
  if (filter.status) where += " AND status = ?2";
  if (filter.target) where += " AND target = ?3";
  if (filter.created_from_ms) where += " AND created_at_ms >= ?4";
  if (filter.created_to_ms) where += " AND created_at_ms < ?5";
  if (filter.before_id) where += " AND (created_at_ms, id) < (?6, ?7)";
  if (filter.requested_by) where += " AND requested_by = ?9";
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_, "SELECT " + std::string(kRunColumns) + " FROM pipeline_runs" + where +
                                  " ORDER BY created_at_ms DESC, id DESC LIMIT ?8"));
  if (filter.kind) select.BindText(1, *filter.kind);
  if (filter.status) select.BindText(2, *filter.status);
  if (filter.target) select.BindText(3, *filter.target);
  if (filter.created_from_ms) select.BindInt64(4, *filter.created_from_ms);
  if (filter.created_to_ms) select.BindInt64(5, *filter.created_to_ms);
  if (filter.before_id) {
    select.BindInt64(6, cursor_created_at_ms);
    select.BindText(7, *filter.before_id);
  }
  select.BindInt64(8, filter.limit);
  if (filter.requested_by) select.BindText(9, *filter.requested_by);
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<PipelineRun> runs, ReadRuns(select));
  ANALYTICS_RETURN_IF_ERROR(txn.Commit());
  return runs;
}

Result<std::vector<PipelineRun>> SqliteMetadataStore::ListUnfinishedPipelineRuns() {
  std::lock_guard lock(mu_);
  // The condition is the one of the partial index pipeline_runs_unfinished, which is already in this order.
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kRunColumns) +
                                                         " FROM pipeline_runs WHERE status IN ('queued', 'running')"
                                                         " ORDER BY created_at_ms, id"));
  return ReadRuns(select);
}

Result<int64_t> SqliteMetadataStore::PurgePipelineRunsBefore(int64_t before_ms, std::string_view kind) {
  std::lock_guard lock(mu_);
  // The status condition is the one of the partial index pipeline_runs_finished.
  std::string sql =
      "DELETE FROM pipeline_runs WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at_ms < ?1";
  if (!kind.empty()) sql += " AND kind = ?2";
  ANALYTICS_ASSIGN_OR_RETURN(Statement purge, Statement::Prepare(db_, sql));
  purge.BindInt64(1, before_ms);
  if (!kind.empty()) purge.BindText(2, kind);
  ANALYTICS_RETURN_IF_ERROR(purge.Run("cannot purge pipeline runs"));
  return static_cast<int64_t>(sqlite3_changes64(db_));
}

// Outbox -------------------------------------------------------------------------------------------------------

Result<int64_t> SqliteMetadataStore::AppendOutbox(const std::string& key, const std::string& type,
                                                  const std::string& event_json, int64_t now_ms) {
  ANALYTICS_RETURN_IF_ERROR(CheckOutboxAppend(key, type, event_json, now_ms));
  std::lock_guard lock(mu_);
  // The store runs with synchronous=NORMAL (a power loss may drop the last commits); a produced event must not be
  // lost once its producer has been told it is stored, so this commit is synced (FULL syncs the WAL at commit,
  // together with any earlier unsynced commits). The mode is per connection and changes only outside a
  // transaction; mu_ keeps every other call out until it is back to NORMAL.
  ANALYTICS_RETURN_IF_ERROR(Exec(db_, "PRAGMA synchronous = FULL", "cannot set synchronous mode"));
  Result<int64_t> appended = [&]() -> Result<int64_t> {
    ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
    ANALYTICS_ASSIGN_OR_RETURN(
        Statement insert,
        Statement::Prepare(db_,
                           "INSERT INTO outbox (message_key, event_type, event_json, created_at_ms)"
                           " VALUES (?1, ?2, ?3, ?4)"));
    insert.BindText(1, key);
    insert.BindText(2, type);
    insert.BindText(3, event_json);
    insert.BindInt64(4, now_ms);
    ANALYTICS_RETURN_IF_ERROR(insert.Run("cannot append to the outbox"));
    const int64_t sequence = sqlite3_last_insert_rowid(db_);
    ANALYTICS_RETURN_IF_ERROR(txn.Commit());
    return sequence;
  }();
  Status restored = Exec(db_, "PRAGMA synchronous = NORMAL", "cannot set synchronous mode");
  if (appended.ok() && !restored.ok()) return restored;
  return appended;
}

Result<std::vector<OutboxRecord>> SqliteMetadataStore::ListOutbox(int64_t after_sequence, size_t limit,
                                                                  const std::string& type) {
  if (limit == 0) return std::vector<OutboxRecord>();
  std::lock_guard lock(mu_);
  // Only a set type becomes a condition: SQLite plans before values are bound (see DeadLetterWhere).
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_, "SELECT " + std::string(kOutboxColumns) + " FROM outbox WHERE sequence > ?1" +
                                  (type.empty() ? "" : " AND event_type = ?3") + " ORDER BY sequence LIMIT ?2"));
  select.BindInt64(1, after_sequence);
  select.BindInt64(2, OutboxLimit(limit));
  if (!type.empty()) select.BindText(3, type);
  return ReadOutbox(select);
}

Result<std::vector<OutboxRecord>> SqliteMetadataStore::ListUnrelayedOutbox(size_t limit) {
  if (limit == 0) return std::vector<OutboxRecord>();
  std::lock_guard lock(mu_);
  // The condition is the one of the partial index outbox_unrelayed.
  ANALYTICS_ASSIGN_OR_RETURN(Statement select,
                             Statement::Prepare(db_, "SELECT " + std::string(kOutboxColumns) +
                                                         " FROM outbox WHERE relayed_at_ms IS NULL"
                                                         " ORDER BY sequence LIMIT ?1"));
  select.BindInt64(1, OutboxLimit(limit));
  return ReadOutbox(select);
}

Status SqliteMetadataStore::MarkOutboxRelayed(const std::vector<int64_t>& sequences, int64_t now_ms) {
  if (now_ms < 0) return Status::InvalidArgument("must not be negative", "relayed_at_ms");
  if (sequences.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  std::vector<int64_t> distinct = sequences;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  ANALYTICS_ASSIGN_OR_RETURN(Transaction txn, Transaction::BeginWrite(db_));
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement update,
      Statement::Prepare(db_, "UPDATE outbox SET relayed_at_ms = ?2 WHERE sequence = ?1 AND relayed_at_ms IS NULL"));
  for (int64_t sequence : distinct) {
    update.Reset();
    update.BindInt64(1, sequence);
    update.BindInt64(2, now_ms);
    ANALYTICS_RETURN_IF_ERROR(update.Run("cannot mark outbox records relayed"));
  }
  return txn.Commit();
}

Result<int64_t> SqliteMetadataStore::CountUnrelayedOutbox() {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(Statement count,
                             Statement::Prepare(db_, "SELECT COUNT(*) FROM outbox WHERE relayed_at_ms IS NULL"));
  ANALYTICS_ASSIGN_OR_RETURN(bool has_row, count.Step("cannot count the unrelayed outbox"));
  if (!has_row) return Status::Internal("cannot count the unrelayed outbox: no row");
  return count.ColumnInt64(0);
}

Result<int64_t> SqliteMetadataStore::PurgeOutbox(int64_t before_ms, bool only_relayed) {
  std::lock_guard lock(mu_);
  ANALYTICS_ASSIGN_OR_RETURN(
      Statement purge,
      Statement::Prepare(db_, std::string("DELETE FROM outbox WHERE created_at_ms < ?1") +
                                  (only_relayed ? " AND relayed_at_ms IS NOT NULL" : "")));
  purge.BindInt64(1, before_ms);
  ANALYTICS_RETURN_IF_ERROR(purge.Run("cannot purge the outbox"));
  return static_cast<int64_t>(sqlite3_changes64(db_));
}

Status SqliteMetadataStore::ExecuteForTest(std::string_view sql) {
  std::lock_guard lock(mu_);
  return Exec(db_, std::string(sql), "test statement failed");
}

}  // namespace analytics::metadata
