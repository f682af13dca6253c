// Segment endpoints (docs/segments.md): definitions, users-count, refresh, uploads, members and contains-checks
// for services; pipeline runs (GET /pipelines/runs); the produced events (GET /outbox).
#pragma once

#include "api/router.h"
#include "bus/event_bus.h"
#include "metadata/metadata_store.h"
#include "segments/segment_service.h"

namespace analytics::api {

void AddSegmentRoutes(Router& router, segments::SegmentService& segments);
void AddPipelineRunRoutes(Router& router, metadata::MetadataStore& metadata);
void AddOutboxRoutes(Router& router, bus::EventBus& bus);

}  // namespace analytics::api
