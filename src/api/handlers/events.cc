// Event intake, read-back, erasure and dead-letter endpoints.
#include "api/handlers/events.h"

#include <zlib.h>
#include <zstd.h>

#include <charconv>

#include "api/errors.h"
#include "api/handlers/json_body.h"
#include "api/handlers/query_params.h"
#include "common/time_util.h"
#include "events/event_json.h"

namespace analytics::api {
namespace {

using auth::Role;
using common::Result;
using common::Status;

const ErrorCodes kQueryCodes{error_code::kNotFound, error_code::kAlreadyExists, error_code::kInvalidQueryParameters};

std::string Lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string MediaType(const HttpRequest& request) {
  std::string type = Lower(request.Header("content-type"));
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  return type;
}

Result<std::string> Gunzip(std::string_view input, uint64_t limit) {
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return Status::Internal("zlib init failed");
  std::string out;
  char buffer[64 * 1024];
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  stream.avail_in = static_cast<uInt>(input.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    rc = inflate(&stream, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&stream);
      return Status::InvalidArgument("the gzip body is corrupt", "Content-Encoding");
    }
    out.append(buffer, sizeof(buffer) - stream.avail_out);
    if (out.size() > limit) {
      inflateEnd(&stream);
      return Status::ResourceExhausted("the decompressed body exceeds " + std::to_string(limit) + " bytes");
    }
    if (rc == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      return Status::InvalidArgument("the gzip body is truncated", "Content-Encoding");
    }
  }
  inflateEnd(&stream);
  return out;
}

Result<std::string> Unzstd(std::string_view input, uint64_t limit) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  std::string out;
  char buffer[64 * 1024];
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  size_t rc = 1;
  while (in.pos < in.size || rc != 0) {
    ZSTD_outBuffer chunk{buffer, sizeof(buffer), 0};
    rc = ZSTD_decompressStream(ctx.get(), &chunk, &in);
    if (ZSTD_isError(rc)) return Status::InvalidArgument("the zstd body is corrupt", "Content-Encoding");
    out.append(buffer, chunk.pos);
    if (out.size() > limit) {
      return Status::ResourceExhausted("the decompressed body exceeds " + std::to_string(limit) + " bytes");
    }
    if (in.pos == in.size && chunk.pos == 0 && rc != 0) {
      return Status::InvalidArgument("the zstd body is truncated", "Content-Encoding");
    }
  }
  return out;
}

HttpResponse Ingest(ingest::Intake& intake, const EventRoutesOptions& options, HttpRequest& request) {
  const std::string media = MediaType(request);
  events::BodyFormat format;
  if (media == "application/cloudevents+json" || media == "application/json" || media.empty()) {
    format = events::BodyFormat::kSingle;
  } else if (media == "application/cloudevents-batch+json") {
    format = events::BodyFormat::kBatch;
  } else if (media == "application/x-ndjson") {
    format = events::BodyFormat::kNdjson;
  } else {
    return ErrorResponse(415, error_code::kUnsupportedMediaType,
                         "expected application/cloudevents+json, application/cloudevents-batch+json, "
                         "application/x-ndjson or application/json, got '" + media + "'");
  }
  std::string decoded;
  std::string_view body = request.body;
  const std::string encoding = Lower(request.Header("content-encoding"));
  if (!encoding.empty() && encoding != "identity") {
    Result<std::string> inflated = Status::InvalidArgument("unsupported Content-Encoding '" + encoding +
                                                               "' (gzip and zstd are accepted)",
                                                           "Content-Encoding");
    if (encoding == "gzip" || encoding == "x-gzip") inflated = Gunzip(request.body, options.max_decompressed_bytes);
    if (encoding == "zstd") inflated = Unzstd(request.body, options.max_decompressed_bytes);
    if (!inflated.ok()) {
      if (inflated.status().code() == common::StatusCode::kResourceExhausted) {
        return ErrorResponse(413, error_code::kPayloadTooLarge, inflated.status().message());
      }
      if (inflated.status().message().rfind("unsupported", 0) == 0) {
        return ErrorResponse(415, error_code::kUnsupportedMediaType, inflated.status().message());
      }
      return ErrorResponse(400, error_code::kInvalidRequestBody, inflated.status().message(),
                           {{"field", "Content-Encoding"}});
    }
    decoded = std::move(inflated).value();
    body = decoded;
  }
  auto report = intake.Ingest(body, format, "http", common::NowMillis());
  if (!report.ok()) return StatusResponse(report.status());
  if (report->body_error) {
    return ErrorResponse(400, error_code::kInvalidRequestBody,
                         "the body cannot be parsed at byte " + std::to_string(report->body_error->byte_offset) +
                             ": " + report->body_error->message,
                         {{"byte_offset", report->body_error->byte_offset}});
  }
  return HttpResponse::Json(202, report->ToJson());
}

// Parses a time bound: RFC 3339, or a date (that whole day, UTC: `from` at 00:00, `to` at the next 00:00).
Result<int64_t> ParseBound(const std::string& text, bool is_end, const char* parameter) {
  if (text.size() == 10) {
    auto day = common::ParseRfc3339Millis(text + "T00:00:00Z");
    if (!day.ok()) return Status::InvalidArgument("not a date or RFC 3339 time: '" + text + "'", parameter);
    return *day + (is_end ? 86400000 : 0);
  }
  auto time = common::ParseRfc3339Millis(text);
  if (!time.ok()) return Status::InvalidArgument("not a date or RFC 3339 time: '" + text + "'", parameter);
  return *time;
}

HttpResponse ReadBack(store::EventStore& store, const events::Pseudonymizer& pseudonymizer, HttpRequest& request) {
  store::ScanQuery query;
  if (auto type = request.QueryParam("type")) query.type = *type;
  if (auto user = request.QueryParam("user_id")) {
    if (user->empty()) return StatusResponse(Status::InvalidArgument("must not be empty", "user_id"), kQueryCodes);
    query.user = pseudonymizer.Pseudonymize(*user);
  }
  if (auto from = request.QueryParam("from")) {
    auto parsed = ParseBound(*from, false, "from");
    if (!parsed.ok()) return StatusResponse(parsed.status(), kQueryCodes);
    query.from_ms = *parsed;
  }
  if (auto to = request.QueryParam("to")) {
    auto parsed = ParseBound(*to, true, "to");
    if (!parsed.ok()) return StatusResponse(parsed.status(), kQueryCodes);
    query.to_ms = *parsed;
  }
  auto limit = ParseLimit(request, 100, 1000);
  if (!limit.ok()) return StatusResponse(limit.status(), kQueryCodes);
  query.limit = static_cast<size_t>(*limit);
  if (auto cursor = request.QueryParam("cursor")) query.cursor = *cursor;
  auto result = store.Scan(query);
  if (!result.ok()) return StatusResponse(result.status(), kQueryCodes);
  nlohmann::json items = nlohmann::json::array();
  for (const auto& event : result->events) items.push_back(events::ToCloudEvent(event));
  return HttpResponse::Json(200, {{"items", std::move(items)},
                                  {"next_cursor", result->next_cursor.empty() ? nlohmann::json(nullptr)
                                                                              : nlohmann::json(result->next_cursor)}});
}

HttpResponse Erase(store::EventStore& store, const events::Pseudonymizer& pseudonymizer,
                   const EventRoutesOptions& options, HttpRequest& request) {
  const std::string& user_id = request.path_params["user_id"];
  const std::string pseudonym = pseudonymizer.Pseudonymize(user_id);
  auto removed = store.EraseUser(pseudonym);
  if (!removed.ok()) return StatusResponse(removed.status());
  if (options.on_user_erased) options.on_user_erased(pseudonym);
  return HttpResponse::Json(200, {{"user_id", user_id}, {"erased_events", *removed}});
}

Result<metadata::DeadLetterFilter> DeadLetterFilterFrom(const HttpRequest& request, const nlohmann::json* body) {
  metadata::DeadLetterFilter filter;
  for (const char* name : {"code", "type", "from", "to"}) {
    if (body != nullptr && body->contains(name) && !(*body)[name].is_string()) {
      return Status::InvalidArgument("must be a string", name);
    }
  }
  auto get = [&](const char* name) -> std::optional<std::string> {
    if (body != nullptr) {
      if (body->contains(name)) return (*body)[name].get<std::string>();
      return std::nullopt;
    }
    return request.QueryParam(name);
  };
  if (auto code = get("code")) filter.code = *code;
  if (auto type = get("type")) filter.event_type = *type;
  if (auto from = get("from")) {
    ANALYTICS_ASSIGN_OR_RETURN(int64_t value, ParseBound(*from, false, "from"));
    filter.from_ms = value;
  }
  if (auto to = get("to")) {
    ANALYTICS_ASSIGN_OR_RETURN(int64_t value, ParseBound(*to, true, "to"));
    filter.to_ms = value;
  }
  return filter;
}

nlohmann::json DeadLetterJson(const metadata::DeadLetter& letter) {
  nlohmann::json payload = letter.payload.empty() ? nlohmann::json(nullptr)
                                                  : nlohmann::json::parse(letter.payload, nullptr, false);
  if (payload.is_discarded()) payload = letter.payload;
  return {{"id", letter.id},
          {"received_at", common::FormatRfc3339Millis(letter.received_at_ms)},
          {"channel", letter.channel},
          {"source", letter.source},
          {"event_id", letter.event_id},
          {"event_type", letter.event_type},
          {"code", letter.code},
          {"field", letter.field},
          {"message", letter.message},
          {"payload", std::move(payload)},
          {"payload_bytes", letter.payload_bytes},
          {"replay_count", letter.replay_count}};
}

HttpResponse ListDeadLetters(metadata::MetadataStore& metadata, HttpRequest& request) {
  auto filter = DeadLetterFilterFrom(request, nullptr);
  if (!filter.ok()) return StatusResponse(filter.status(), kQueryCodes);
  auto limit = ParseLimit(request, 100, 1000);
  if (!limit.ok()) return StatusResponse(limit.status(), kQueryCodes);
  if (auto cursor = request.QueryParam("cursor")) {
    int64_t after = 0;
    auto [ptr, ec] = std::from_chars(cursor->data(), cursor->data() + cursor->size(), after);
    if (ec != std::errc() || ptr != cursor->data() + cursor->size() || after < 0) {
      return StatusResponse(Status::InvalidArgument("malformed cursor", "cursor"), kQueryCodes);
    }
    filter->after_id = after;
  }
  auto total = metadata.CountDeadLetters(*filter);
  if (!total.ok()) return StatusResponse(total.status());
  filter->limit = static_cast<int>(*limit);
  auto letters = metadata.ListDeadLetters(*filter);
  if (!letters.ok()) return StatusResponse(letters.status());
  // A full page may be followed by more; the cursor of an exactly-full last page leads to an empty page.
  nlohmann::json next = nullptr;
  if (letters->size() == static_cast<size_t>(*limit)) next = std::to_string(letters->back().id);
  nlohmann::json items = nlohmann::json::array();
  for (const auto& letter : *letters) items.push_back(DeadLetterJson(letter));
  return HttpResponse::Json(200, {{"items", std::move(items)}, {"total", *total}, {"next_cursor", next}});
}

HttpResponse ReplayDeadLetters(ingest::Intake& intake, HttpRequest& request) {
  nlohmann::json body = nlohmann::json::object();
  if (!request.body.empty()) {
    HttpResponse error;
    auto parsed = ParseJsonBody(request, error);
    if (!parsed) return error;
    if (!parsed->is_object()) return ErrorResponse(400, error_code::kInvalidRequestBody, "the body must be an object");
    body = std::move(*parsed);
  }
  for (const auto& [key, unused] : body.items()) {
    if (key != "code" && key != "type" && key != "from" && key != "to" && key != "max") {
      return StatusResponse(Status::InvalidArgument("unknown field", key));
    }
  }
  auto filter = DeadLetterFilterFrom(request, &body);
  if (!filter.ok()) return StatusResponse(filter.status());
  uint64_t max = 100000;
  if (body.contains("max")) {
    if (!body["max"].is_number_unsigned() || body["max"].get<uint64_t>() == 0) {
      return StatusResponse(Status::InvalidArgument("must be a positive integer", "max"));
    }
    max = body["max"].get<uint64_t>();
  }
  auto report = intake.Replay(*filter, max, common::NowMillis());
  if (!report.ok()) return StatusResponse(report.status());
  return HttpResponse::Json(200, {{"replayed", report->replayed},
                                  {"accepted", report->accepted},
                                  {"duplicates", report->duplicates},
                                  {"rejected_again", report->rejected_again}});
}

}  // namespace

void AddEventRoutes(Router& router, ingest::Intake& intake, store::EventStore& store,
                    metadata::MetadataStore& metadata, const events::Pseudonymizer& pseudonymizer,
                    EventRoutesOptions options) {
  const std::vector<Role> producers = {Role::kService, Role::kPlatformAdmin};
  const std::vector<Role> admins = {Role::kPlatformAdmin};
  router.Add({"POST", "/api/v1/analytics/events", true, producers, "Ingest CloudEvents",
              [&intake, options](HttpRequest& request) { return Ingest(intake, options, request); }});
  router.Add({"GET", "/api/v1/analytics/events", true, admins, "Read stored events back",
              [&store, &pseudonymizer](HttpRequest& request) { return ReadBack(store, pseudonymizer, request); }});
  router.Add({"DELETE", "/api/v1/analytics/users/{user_id}/events", true, admins, "Erase a user's events",
              [&store, &pseudonymizer, options](HttpRequest& request) {
                return Erase(store, pseudonymizer, options, request);
              }});
  router.Add({"GET", "/api/v1/analytics/ingest/dead-letters", true, admins, "List dead letters",
              [&metadata](HttpRequest& request) { return ListDeadLetters(metadata, request); }});
  router.Add({"POST", "/api/v1/analytics/ingest/dead-letters/replay", true, admins, "Replay dead letters",
              [&intake](HttpRequest& request) { return ReplayDeadLetters(intake, request); }});
}

}  // namespace analytics::api
