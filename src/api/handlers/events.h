// Event routes: intake (POST /events), raw read-back (GET /events), erasure
// (DELETE /users/{user_id}/events), dead letters (GET /ingest/dead-letters, POST .../replay).
#pragma once

#include <functional>

#include <cstdint>

#include "api/router.h"
#include "events/pseudonymizer.h"
#include "ingest/intake.h"
#include "metadata/metadata_store.h"
#include "store/event_store.h"

namespace analytics::api {

struct EventRoutesOptions {
  uint64_t max_decompressed_bytes = 100 << 20;  // a compressed body may expand to at most this
  std::function<void(const std::string&)> on_user_erased;  // after DELETE /users/{user_id} (pseudonym)
};

void AddEventRoutes(Router& router, ingest::Intake& intake, store::EventStore& store,
                    metadata::MetadataStore& metadata, const events::Pseudonymizer& pseudonymizer,
                    EventRoutesOptions options);

}  // namespace analytics::api
