// libpq plumbing for the PostgreSQL metadata adapter: a small connection pool, statements with text (and
// binary BYTEA) parameters, transactions, and the mapping of SQLSTATE codes to Status. Internal to
// src/metadata/postgres/.
//
// Thread-safety: PgConnectionPool is thread-safe. A PGconn is used by one thread at a time: whoever holds
// its Lease. The free functions are safe on distinct connections.
#pragma once

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace analytics::metadata {

struct PgResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// One statement parameter. Text format by default (nullopt is SQL NULL); PgParam::Binary sends the bytes as
// they are in binary format, for BYTEA parameters ($n::bytea): no escaping, NUL bytes included, half the size
// of the hex text form.
class PgParam {
 public:
  PgParam(std::string text) : value_(std::move(text)) {}                 // NOLINT: implicit by design
  PgParam(std::optional<std::string> text) : value_(std::move(text)) {}  // NOLINT: implicit by design
  PgParam(std::nullopt_t) {}                                             // NOLINT: implicit by design
  static PgParam Binary(std::string bytes) {
    PgParam param(std::move(bytes));
    param.binary_ = true;
    return param;
  }

  const std::optional<std::string>& value() const { return value_; }
  bool binary() const { return binary_; }

 private:
  std::optional<std::string> value_;
  bool binary_ = false;
};
using PgParams = std::vector<PgParam>;

// Runs one statement with $1..$n parameters (extended protocol; values never touch the SQL text). OK results
// (commands and queries) come back; anything else becomes a Status prefixed with `what`. Unavailable when the
// connection is lost (libpq marks it bad; the pool resets it on next use). InvalidArgument when a text
// parameter contains a NUL byte (libpq's text parameters are C strings).
common::Result<PgResult> PgExec(PGconn* conn, std::string_view sql, const PgParams& params, std::string_view what);

// PgExec for statements whose result is not needed.
common::Status PgRun(PGconn* conn, std::string_view sql, const PgParams& params, std::string_view what);

// Runs a script of one or more statements without parameters (simple protocol), e.g. a migration.
common::Status PgExecScript(PGconn* conn, std::string_view sql, std::string_view what);

// Rows changed by an INSERT/UPDATE/DELETE result.
int64_t PgAffectedRows(const PgResult& result);

// The bytes of a BYTEA cell of a text-format result (hex or escape output, whatever bytea_output says).
// ResourceExhausted when libpq cannot allocate them.
common::Result<std::string> PgCellBytes(const PgResult& result, int row, int column);

// The schema name as a quoted SQL identifier. InvalidArgument when libpq cannot quote it.
common::Result<std::string> PgQuoteIdentifier(PGconn* conn, std::string_view identifier);

// A transaction on one connection: rolled back unless Commit() succeeds.
class PgTransaction {
 public:
  static common::Result<PgTransaction> Begin(PGconn* conn);
  PgTransaction(PgTransaction&& other) noexcept;
  PgTransaction& operator=(PgTransaction&&) = delete;
  ~PgTransaction();
  common::Status Commit();

 private:
  explicit PgTransaction(PGconn* conn) : conn_(conn) {}
  PGconn* conn_;  // null once committed
};

struct PgPoolOptions {
  std::string dsn;
  std::string schema;  // empty: leave search_path alone; else set search_path to it on every connection
  int size = 4;
  int connect_timeout_seconds = 5;
};

// Up to `size` connections, opened on demand and kept. A caller that finds them all leased waits for one.
//
// Broken connections: when a call loses its connection, libpq marks it bad and the call fails with
// Unavailable; the connection goes back to the pool and the next Acquire resets it (PQreset, then the
// session setup again). A connection that cannot be re-established is dropped and Acquire returns
// Unavailable, so a database outage shows up as errors, never as a hang or a crash.
class PgConnectionPool {
 public:
  // Exclusive use of one connection; gives it back when destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    PGconn* get() const { return conn_; }

   private:
    friend class PgConnectionPool;
    Lease(PgConnectionPool* pool, PGconn* conn) : pool_(pool), conn_(conn) {}
    PgConnectionPool* pool_;
    PGconn* conn_;
  };

  explicit PgConnectionPool(PgPoolOptions options);
  ~PgConnectionPool();  // every Lease must be gone
  PgConnectionPool(const PgConnectionPool&) = delete;
  PgConnectionPool& operator=(const PgConnectionPool&) = delete;

  // A ready connection (search_path set, JIT off). Unavailable when PostgreSQL cannot be reached.
  common::Result<Lease> Acquire();

 private:
  common::Result<PGconn*> Connect() const;
  common::Status SetUpSession(PGconn* conn) const;
  void Release(PGconn* conn);
  void Discard(PGconn* conn);

  const PgPoolOptions options_;
  std::mutex mu_;
  std::condition_variable available_;  // signalled when a connection is returned or a slot frees up
  std::vector<PGconn*> idle_;          // GUARDED_BY(mu_); owned
  int open_ = 0;                       // GUARDED_BY(mu_); idle + leased + being opened, <= options_.size
};

}  // namespace analytics::metadata
