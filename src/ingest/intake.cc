// The intake pipeline.
#include "ingest/intake.h"

#include "obs/logging.h"

namespace analytics::ingest {

using common::Result;
using common::Status;

namespace {

constexpr std::string_view kAccountDeletedType = "com.platform.account.user.deleted.v1";

metadata::DeadLetter ToDeadLetter(const events::Rejection& rejection, std::string_view channel, int64_t now_ms) {
  metadata::DeadLetter letter;
  letter.received_at_ms = now_ms;
  letter.source = rejection.source;
  letter.event_id = rejection.id;
  letter.event_type = rejection.type;
  letter.code = std::string(events::RejectionCodeName(rejection.code));
  letter.field = rejection.field;
  letter.message = rejection.message;
  letter.payload = rejection.payload;
  letter.payload_bytes = static_cast<int64_t>(rejection.event_bytes);
  letter.channel = std::string(channel);
  return letter;
}

}  // namespace

nlohmann::json IntakeReport::ToJson() const {
  nlohmann::json rejected_json = nlohmann::json::array();
  for (const auto& rejection : rejected) {
    rejected_json.push_back({{"index", rejection.index},
                             {"id", rejection.id.empty() ? nlohmann::json(nullptr) : nlohmann::json(rejection.id)},
                             {"code", rejection.code},
                             {"field", rejection.field},
                             {"message", rejection.message}});
  }
  return {{"accepted", accepted}, {"duplicates", duplicates}, {"rejected", std::move(rejected_json)}};
}

Intake::Intake(const events::Normalizer& normalizer, store::EventStore& store, metadata::MetadataStore& metadata,
               IntakeOptions options)
    : normalizer_(normalizer), store_(store), metadata_(metadata), options_(options) {}

Result<IntakeReport> Intake::Ingest(std::string_view body, events::BodyFormat format, std::string_view channel,
                                    int64_t now_ms) {
  events::BatchResult batch = normalizer_.Process(body, format, now_ms);
  if (batch.body_error) {
    IntakeReport report;
    report.body_error = batch.body_error;
    return report;
  }
  return StoreBatch(std::move(batch), channel, now_ms);
}

Result<IntakeReport> Intake::IngestRecords(std::string_view buffer, std::span<const events::RawEvent> records,
                                           std::string_view channel, int64_t now_ms) {
  return StoreBatch(normalizer_.ProcessRecords(buffer, records, now_ms), channel, now_ms);
}

Result<IntakeReport> Intake::StoreBatch(events::BatchResult batch, std::string_view channel, int64_t now_ms) {
  IntakeReport report;
  const std::vector<uint32_t> indexes = std::move(batch.event_indexes);  // still needed after the events move
  std::vector<std::string> deleted_users;
  // The deletions themselves are kept, without their user, so deletions stay countable (docs/events.md 6).
  std::vector<std::pair<size_t, events::StoredEvent>> deletions;
  for (size_t event_idx = 0; event_idx < batch.events.size(); ++event_idx) {
    const events::EventView& event = batch.events[event_idx];
    if (event.type == kAccountDeletedType && !event.user.empty()) {
      deleted_users.emplace_back(event.user);
      events::StoredEvent& kept = deletions.emplace_back(event_idx, event.ToStored()).second;
      kept.user.clear();
      kept.user_in_subject = false;
      auto data = nlohmann::json::parse(kept.data, nullptr, false);
      if (data.is_object() && data.erase("user_id") > 0) kept.data = data.dump();
    }
  }
  if (!deletions.empty()) {
    std::vector<std::pair<size_t, events::EventView>> replacements;
    for (const auto& [event_idx, kept] : deletions) replacements.emplace_back(event_idx, events::EventView::Of(kept));
    batch.events.Replace(replacements);
  }
  if (!batch.events.empty()) {
    std::vector<std::string> users;  // per event, for the stored-users listener
    const bool collect_users = options_.on_stored_users && options_.wants_stored_users && options_.wants_stored_users();
    if (collect_users) {
      users.reserve(batch.events.size());
      for (const events::EventView& event : batch.events) users.emplace_back(event.user);
    }
    ANALYTICS_ASSIGN_OR_RETURN(store::AppendResult appended, store_.Append(std::move(batch.events)));
    if (collect_users) {
      std::vector<std::string> stored;
      for (size_t i = 0; i < users.size() && i < appended.outcomes.size(); ++i) {
        if (appended.outcomes[i] == store::AppendOutcome::kStored && !users[i].empty()) stored.push_back(std::move(users[i]));
      }
      if (!stored.empty()) options_.on_stored_users(std::move(stored));
    }
    report.accepted = appended.stored;
    report.duplicates = appended.duplicates;
    size_t erased_idx = 0;
    for (size_t event_idx = 0; event_idx < appended.outcomes.size(); ++event_idx) {
      if (appended.outcomes[event_idx] != store::AppendOutcome::kUserErased) continue;
      report.rejected.push_back({indexes[event_idx], appended.erased_ids[erased_idx++], "USER_ERASED", "subject",
                                 "the user's data was erased; events are refused until the user registers again"});
    }
  }
  for (const auto& user : deleted_users) {
    auto erased = store_.EraseUser(user, /*count_events=*/false);
    if (!erased.ok()) return erased.status();
    if (options_.on_user_erased) options_.on_user_erased(user);
    ++report.users_erased;
  }
  if (!batch.rejections.empty()) {
    std::vector<metadata::DeadLetter> letters;
    letters.reserve(batch.rejections.size());
    for (const auto& rejection : batch.rejections) {
      report.rejected.push_back({rejection.index, rejection.id, std::string(events::RejectionCodeName(rejection.code)),
                                 rejection.field, rejection.message});
      letters.push_back(ToDeadLetter(rejection, channel, now_ms));
    }
    Status status = metadata_.AppendDeadLetters(letters);
    if (!status.ok()) {
      // The producer is told exactly what was rejected either way; losing the copy is logged loudly.
      obs::LogError("dead letters not written", {{"error", status.ToString()}, {"count", letters.size()}});
    }
  }
  std::sort(report.rejected.begin(), report.rejected.end(),
            [](const RejectedEvent& a, const RejectedEvent& b) { return a.index < b.index; });
  return report;
}

Result<ReplayReport> Intake::Replay(metadata::DeadLetterFilter filter, uint64_t max_letters, int64_t now_ms) {
  ReplayReport report;
  filter.limit = 500;
  while (report.replayed < max_letters) {
    ANALYTICS_ASSIGN_OR_RETURN(auto letters, metadata_.ListDeadLetters(filter));
    if (letters.empty()) break;
    filter.after_id = letters.back().id;
    std::vector<int64_t> done;
    std::vector<int64_t> still_bad;
    for (const auto& letter : letters) {
      if (report.replayed >= max_letters) break;
      ++report.replayed;
      if (letter.payload.empty()) {
        still_bad.push_back(letter.id);
        ++report.rejected_again;
        continue;
      }
      // The payload was treated on the way in: pseudonyms and hashes are kept as they are.
      events::BatchResult batch = normalizer_.ProcessTreated(letter.payload, now_ms);
      if (batch.body_error || batch.events.empty()) {
        still_bad.push_back(letter.id);
        ++report.rejected_again;
        continue;
      }
      ANALYTICS_ASSIGN_OR_RETURN(store::AppendResult appended, store_.Append(std::move(batch.events)));
      report.accepted += appended.stored;
      report.duplicates += appended.duplicates;
      if (appended.erased > 0) {
        still_bad.push_back(letter.id);
        ++report.rejected_again;
      } else {
        done.push_back(letter.id);
      }
    }
    if (!done.empty()) ANALYTICS_RETURN_IF_ERROR(metadata_.DeleteDeadLetters(done));
    if (!still_bad.empty()) ANALYTICS_RETURN_IF_ERROR(metadata_.MarkDeadLettersReplayed(still_bad));
  }
  return report;
}

Result<int64_t> Intake::PurgeExpiredDeadLetters(int64_t now_ms) {
  return metadata_.PurgeDeadLettersBefore(now_ms - options_.dead_letter_retention_ms);
}

}  // namespace analytics::ingest
