// Intake: the pipeline every event goes through, whatever the channel (HTTP bodies, Kafka records):
//   parse + validate + treat personal data (events::Normalizer) → dedup + durable append (EventStore)
//   → rejected events to dead letters (MetadataStore) → account-deleted events erase their user.
// The answer says, per batch, how many events were accepted, how many were duplicates, and why each rejected
// one was rejected (index, id, code, field, message). One bad event never rejects its neighbours.
// Thread-safety: thread-safe; HTTP handler threads call Ingest concurrently.
#pragma once

#include <functional>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "events/normalizer.h"
#include "metadata/metadata_store.h"
#include "store/event_store.h"

namespace analytics::ingest {

struct IntakeOptions {
  int64_t dead_letter_retention_ms = 7LL * 86400000;  // dead letters older than this are purged
  // Listeners (segments: incremental updates and erasure). `wants_stored_users` is asked per batch; when it says
  // yes, `on_stored_users` gets the users (pseudonyms, one entry per stored event) of the events just made durable.
  std::function<bool()> wants_stored_users;
  std::function<void(std::vector<std::string>)> on_stored_users;
  std::function<void(const std::string&)> on_user_erased;  // after an account-deleted event erased the user
};

struct RejectedEvent {
  size_t index = 0;
  std::string id;
  std::string code;
  std::string field;
  std::string message;
};

struct IntakeReport {
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
  std::vector<RejectedEvent> rejected;
  uint64_t users_erased = 0;  // account-deleted events processed
  std::optional<events::BodyError> body_error;  // set when the body could not be parsed at all

  nlohmann::json ToJson() const;  // {"accepted","duplicates","rejected":[{index,id,code,field,message}]}
};

struct ReplayReport {
  uint64_t replayed = 0;          // dead letters processed
  uint64_t accepted = 0;          // stored now (their dead letters are deleted)
  uint64_t duplicates = 0;        // already stored (deleted too)
  uint64_t rejected_again = 0;    // still invalid (kept, replay_count + 1)
};

class Intake {
 public:
  Intake(const events::Normalizer& normalizer, store::EventStore& store, metadata::MetadataStore& metadata,
         IntakeOptions options = {});

  // Processes one body. IOError/Unavailable when the store cannot make the accepted events durable (then none
  // of them was acknowledged). A body that does not parse is reported in IntakeReport::body_error, not as a
  // Status error.
  common::Result<IntakeReport> Ingest(std::string_view body, events::BodyFormat format, std::string_view channel,
                                      int64_t now_ms);

  // Processes events the caller has already separated, one per record (Kafka messages; see
  // events::Normalizer::ProcessRecords): RejectedEvent::index is the record's index. Same durability contract
  // as Ingest; never sets body_error.
  common::Result<IntakeReport> IngestRecords(std::string_view buffer, std::span<const events::RawEvent> records,
                                             std::string_view channel, int64_t now_ms);

  // Runs the dead letters matching `filter` through intake again (after a fix of the producer or of the
  // catalog), in pages, up to `max_letters`.
  common::Result<ReplayReport> Replay(metadata::DeadLetterFilter filter, uint64_t max_letters, int64_t now_ms);

  // Removes dead letters older than the retention.
  common::Result<int64_t> PurgeExpiredDeadLetters(int64_t now_ms);

 private:
  common::Result<IntakeReport> StoreBatch(events::BatchResult batch, std::string_view channel, int64_t now_ms);

  const events::Normalizer& normalizer_;
  store::EventStore& store_;
  metadata::MetadataStore& metadata_;
  const IntakeOptions options_;
};

}  // namespace analytics::ingest
