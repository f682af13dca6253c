// libpq plumbing: statement execution, error mapping, transactions and the connection pool.
#include "metadata/postgres/pg_connection.h"

#include <cassert>
#include <charconv>
#include <limits>
#include <utility>

namespace analytics::metadata {

using common::Result;
using common::Status;

namespace {

// libpq messages span lines ("...failed: Connection refused\n\tIs the server running..."); one line reads
// better in logs and error envelopes.
std::string TrimmedMessage(const char* message) {
  std::string text;
  for (const char* c = message != nullptr ? message : ""; *c != '\0'; ++c) {
    const bool space = *c == '\n' || *c == '\t' || *c == ' ';
    if (space && (text.empty() || text.back() == ' ')) continue;
    text += space ? ' ' : *c;
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text.empty() ? "unknown libpq error" : text;
}

// Maps a failed result to a Status by its SQLSTATE class (PostgreSQL docs, appendix A).
Status PgError(PGconn* conn, const PGresult* result, std::string_view what) {
  const char* libpq_message = result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn);
  const std::string message = std::string(what) + ": " + TrimmedMessage(libpq_message);
  if (PQstatus(conn) != CONNECTION_OK) return Status::Unavailable(message);
  const char* sqlstate_ptr = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  if (sqlstate_ptr == nullptr) return Status::Unavailable(message);  // no server answer: a client-side failure
  const std::string_view sqlstate(sqlstate_ptr);
  const std::string_view sqlclass = sqlstate.substr(0, 2);
  if (sqlstate == "23505") return Status::AlreadyExists(message);             // unique_violation
  if (sqlclass == "08" || sqlclass == "57" || sqlstate == "40001" ||          // connection, shutdown/cancel,
      sqlstate == "40P01" || sqlstate == "55P03" || sqlstate == "53300") {    // serialization, deadlock, lock, slots
    return Status::Unavailable(message);
  }
  if (sqlclass == "53") return Status::ResourceExhausted(message);  // disk full, out of memory
  if (sqlclass == "22") return Status::InvalidArgument(message);    // data exception (bad value)
  if (sqlclass == "28") return Status::Unauthenticated(message);
  if (sqlstate == "42501") return Status::PermissionDenied(message);
  if (sqlclass == "XX") return Status::Corruption(message);  // internal error: data_corrupted, index_corrupted
  return Status::Internal(message);
}

}  // namespace

Result<PgResult> PgExec(PGconn* conn, std::string_view sql, const PgParams& params, std::string_view what) {
  std::vector<const char*> values;
  std::vector<int> lengths;  // read for binary parameters only
  std::vector<int> formats;  // 0 text, 1 binary
  values.reserve(params.size());
  lengths.reserve(params.size());
  formats.reserve(params.size());
  bool any_binary = false;
  for (size_t param_idx = 0; param_idx < params.size(); ++param_idx) {
    const auto& param = params[param_idx].value();
    if (params[param_idx].binary() && param) {
      if (param->size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
        return Status::InvalidArgument(std::string(what) + ": parameter $" + std::to_string(param_idx + 1) +
                                       " is larger than 2 GiB");
      }
      values.push_back(param->data());
      lengths.push_back(static_cast<int>(param->size()));
      formats.push_back(1);
      any_binary = true;
      continue;
    }
    if (param && param->find('\0') != std::string::npos) {
      return Status::InvalidArgument(std::string(what) + ": parameter $" + std::to_string(param_idx + 1) +
                                     " contains a NUL byte");
    }
    values.push_back(param ? param->c_str() : nullptr);
    lengths.push_back(0);
    formats.push_back(0);
  }
  const std::string sql_text(sql);
  PgResult result(PQexecParams(conn, sql_text.c_str(), static_cast<int>(values.size()), /*paramTypes=*/nullptr,
                               values.data(), any_binary ? lengths.data() : nullptr,
                               any_binary ? formats.data() : nullptr, /*resultFormat=*/0));
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return PgError(conn, result.get(), what);
  return result;
}

Status PgRun(PGconn* conn, std::string_view sql, const PgParams& params, std::string_view what) {
  return PgExec(conn, sql, params, what).status();
}

Status PgExecScript(PGconn* conn, std::string_view sql, std::string_view what) {
  const std::string sql_text(sql);
  PgResult result(PQexec(conn, sql_text.c_str()));
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return PgError(conn, result.get(), what);
  return Status::Ok();
}

int64_t PgAffectedRows(const PgResult& result) {
  const char* text = PQcmdTuples(result.get());
  int64_t rows = 0;
  if (text != nullptr) std::from_chars(text, text + std::char_traits<char>::length(text), rows);
  return rows;
}

Result<std::string> PgCellBytes(const PgResult& result, int row, int column) {
  size_t length = 0;
  unsigned char* bytes =
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(result.get(), row, column)), &length);
  // libpq returns null only when it cannot allocate the result.
  if (bytes == nullptr) return Status::ResourceExhausted("cannot allocate a BYTEA value read from PostgreSQL");
  std::string out(reinterpret_cast<const char*>(bytes), length);
  PQfreemem(bytes);
  return out;
}

Result<std::string> PgQuoteIdentifier(PGconn* conn, std::string_view identifier) {
  char* quoted = PQescapeIdentifier(conn, identifier.data(), identifier.size());
  if (quoted == nullptr) {
    return Status::InvalidArgument("cannot quote identifier: " + TrimmedMessage(PQerrorMessage(conn)));
  }
  std::string out(quoted);
  PQfreemem(quoted);
  return out;
}

Result<PgTransaction> PgTransaction::Begin(PGconn* conn) {
  ANALYTICS_RETURN_IF_ERROR(PgExecScript(conn, "BEGIN", "cannot begin transaction"));
  return PgTransaction(conn);
}

PgTransaction::PgTransaction(PgTransaction&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}

PgTransaction::~PgTransaction() {
  // On a broken connection there is nothing to roll back; the server aborted the transaction.
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PQclear(PQexec(conn_, "ROLLBACK"));
  }
}

Status PgTransaction::Commit() {
  ANALYTICS_RETURN_IF_ERROR(PgExecScript(conn_, "COMMIT", "cannot commit transaction"));
  conn_ = nullptr;
  return Status::Ok();
}

PgConnectionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::exchange(other.conn_, nullptr)) {}

PgConnectionPool::Lease::~Lease() {
  if (conn_ != nullptr) pool_->Release(conn_);
}

PgConnectionPool::PgConnectionPool(PgPoolOptions options) : options_(std::move(options)) {
  assert(options_.size >= 1);
}

PgConnectionPool::~PgConnectionPool() {
  std::lock_guard lock(mu_);
  assert(static_cast<int>(idle_.size()) == open_ && "a connection lease outlived its pool");
  for (PGconn* conn : idle_) PQfinish(conn);
}

Result<PGconn*> PgConnectionPool::Connect() const {
  const std::string timeout = std::to_string(options_.connect_timeout_seconds);
  // Order matters: later keywords override earlier ones. The DSN (expanded from dbname) may override the
  // application name; our timeout and encoding win over the DSN.
  const char* keywords[] = {"fallback_application_name", "dbname", "connect_timeout", "client_encoding", nullptr};
  const char* values[] = {"analytics-service", options_.dsn.c_str(), timeout.c_str(), "UTF8", nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Status::ResourceExhausted("cannot allocate a PostgreSQL connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    Status status = Status::Unavailable("cannot connect to PostgreSQL: " + TrimmedMessage(PQerrorMessage(conn)));
    PQfinish(conn);
    return status;
  }
  // NOTICEs ("schema ... already exists, skipping") are expected and would go to stderr; drop them.
  PQsetNoticeProcessor(conn, [](void* /*arg*/, const char* /*message*/) {}, nullptr);
  Status status = SetUpSession(conn);
  if (!status.ok()) {
    PQfinish(conn);
    return status;
  }
  return conn;
}

Status PgConnectionPool::SetUpSession(PGconn* conn) const {
  // Metadata statements are short; JIT compilation (triggered by cost estimates that grow with array
  // parameters, e.g. 50,000 member lookups) costs 0.2-0.4 s a statement and never pays off here. Servers
  // without JIT (before PostgreSQL 11) have no such setting and are left alone.
  ANALYTICS_RETURN_IF_ERROR(
      PgRun(conn, "SELECT set_config('jit', 'off', false) WHERE current_setting('jit', true) IS NOT NULL", {},
            "cannot turn JIT off"));
  if (options_.schema.empty()) return Status::Ok();
  // The schema may not exist yet (Open creates it under the migration lock); PostgreSQL accepts that and
  // starts using the schema once it exists.
  ANALYTICS_ASSIGN_OR_RETURN(std::string quoted, PgQuoteIdentifier(conn, options_.schema));
  return PgRun(conn, "SELECT set_config('search_path', $1::text, false)", {quoted}, "cannot set search_path");
}

Result<PgConnectionPool::Lease> PgConnectionPool::Acquire() {
  PGconn* conn = nullptr;
  {
    std::unique_lock lock(mu_);
    available_.wait(lock, [this] { return !idle_.empty() || open_ < options_.size; });
    if (!idle_.empty()) {
      conn = idle_.back();
      idle_.pop_back();
    } else {
      ++open_;  // reserve the slot; connect outside the lock
    }
  }
  if (conn == nullptr) {
    auto connected = Connect();
    if (!connected.ok()) {
      std::lock_guard lock(mu_);
      --open_;
      available_.notify_one();
      return connected.status();
    }
    return Lease(this, *connected);
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    PQreset(conn);
    Status status = PQstatus(conn) == CONNECTION_OK
                        ? SetUpSession(conn)
                        : Status::Unavailable("cannot reconnect to PostgreSQL: " +
                                              TrimmedMessage(PQerrorMessage(conn)));
    if (!status.ok()) {
      Discard(conn);
      return status;
    }
  }
  return Lease(this, conn);
}

void PgConnectionPool::Release(PGconn* conn) {
  if (PQstatus(conn) == CONNECTION_OK) {
    switch (PQtransactionStatus(conn)) {
      case PQTRANS_IDLE:
        break;
      case PQTRANS_INTRANS:
      case PQTRANS_INERROR:
        // Left mid-transaction by an error path: start the next user clean.
        PQclear(PQexec(conn, "ROLLBACK"));
        break;
      case PQTRANS_ACTIVE:
      case PQTRANS_UNKNOWN:
        Discard(conn);  // a command still in flight: the connection's state is unknown
        return;
    }
  }
  // Broken connections are kept too: the next Acquire resets them.
  std::lock_guard lock(mu_);
  idle_.push_back(conn);
  available_.notify_one();
}

void PgConnectionPool::Discard(PGconn* conn) {
  PQfinish(conn);
  std::lock_guard lock(mu_);
  --open_;
  available_.notify_one();
}

}  // namespace analytics::metadata
