// Intake normalization: split, parse, validate, treat; see normalizer.h.
#include "events/normalizer.h"

#include <simdjson.h>

#include <string>

#include "events/event_catalog.h"
#include "events/event_validator.h"
#include "events/json_text.h"
#include "events/treated_json_writer.h"

namespace analytics::events {
namespace {

// simdjson keeps its buffers between documents; one parser per thread keeps Process const and lock-free.
simdjson::dom::parser& ThreadParser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// Output text is built here and copied once, into the batch's rows: the treated `data` (or a rejected
// event's payload), the kept envelope attributes, the user's pseudonym.
JsonBuffer& ThreadBuffer() {
  thread_local JsonBuffer buffer;
  return buffer;
}
JsonBuffer& ThreadAttributesBuffer() {
  thread_local JsonBuffer buffer;
  return buffer;
}
std::string& ThreadPseudonym() {
  thread_local std::string pseudonym;
  return pseudonym;
}

Rejection MakeRejection(const RawEvent& raw, RejectionCode code, std::string field, std::string message) {
  Rejection rejection;
  rejection.index = raw.index;
  rejection.byte_offset = raw.byte_offset;
  rejection.event_bytes = raw.text.size();
  rejection.code = code;
  rejection.field = std::move(field);
  rejection.message = std::move(message);
  return rejection;
}

}  // namespace

Normalizer::Normalizer(NormalizerOptions options, const Pseudonymizer& pseudonymizer)
    : options_(options), pseudonymizer_(pseudonymizer) {}

BatchResult Normalizer::Process(std::string_view body, BodyFormat format, int64_t now_ms) const {
  return ProcessBody(body, format, now_ms, /*already_treated=*/false);
}

BatchResult Normalizer::ProcessTreated(std::string_view payload, int64_t now_ms) const {
  return ProcessBody(payload, BodyFormat::kSingle, now_ms, /*already_treated=*/true);
}

BatchResult Normalizer::ProcessRecords(std::string_view buffer, std::span<const RawEvent> records,
                                       int64_t now_ms) const {
  return ProcessEvents(buffer, records, /*body_must_be_json=*/false, /*separate_records=*/true, now_ms,
                       /*already_treated=*/false);
}

BatchResult Normalizer::ProcessBody(std::string_view body, BodyFormat format, int64_t now_ms,
                                    bool already_treated) const {
  BodySplit split = SplitBody(body, format);
  if (split.error) {
    BatchResult result;
    result.body_error = std::move(split.error);
    return result;
  }
  return ProcessEvents(body, split.events, /*body_must_be_json=*/format != BodyFormat::kNdjson,
                       /*separate_records=*/false, now_ms, already_treated);
}

BatchResult Normalizer::ProcessEvents(std::string_view body, std::span<const RawEvent> raw_events,
                                      bool body_must_be_json, bool separate_records, int64_t now_ms,
                                      bool already_treated) const {
  BatchResult result;
  // Rows take about as many bytes as the events' JSON text: most batches are written without moving.
  result.events.Reserve(body.size() + body.size() / 8, raw_events.size());
  result.event_indexes.reserve(raw_events.size());

  simdjson::dom::parser& parser = ThreadParser();
  JsonBuffer& buffer = ThreadBuffer();
  JsonBuffer& attributes = ThreadAttributesBuffer();
  std::string& pseudonym = ThreadPseudonym();
  const ValidatorOptions validator_options{options_.max_future_ms, options_.strict_types};
  ValidatedEnvelope envelope;
  TreatedJsonWriter writer(pseudonymizer_, TreatedJsonWriter::Mode::kStrict, already_treated);
  TreatedJsonWriter lenient_writer(pseudonymizer_, TreatedJsonWriter::Mode::kLenient, already_treated);
  const char* const body_end = body.data() + body.size();

  // A syntax error inside one element of a JSON body: the body is not JSON, refuse it whole. The offset comes
  // from the whole body (exact even at its end); this runs once per request at most.
  auto fail_body = [&](const RawEvent& raw, const BodyError& error) {
    result = BatchResult();
    std::optional<BodyError> whole = FindJsonSyntaxError(body);
    result.body_error = whole ? std::move(*whole) : BodyError{raw.byte_offset + error.byte_offset, error.message};
  };

  for (RawEvent raw : raw_events) {
    // A message of its own may start with a byte order mark, as a whole body may (SplitBody drops it there).
    if (separate_records && raw.text.starts_with("\xEF\xBB\xBF")) {
      raw.text.remove_prefix(3);
      raw.byte_offset += 3;
    }
    // Too large: not parsed into a DOM (bounded memory); in a JSON body its syntax still decides the body.
    if (raw.text.size() > options_.max_event_bytes) {
      if (body_must_be_json) {
        if (auto syntax = FindJsonSyntaxError(raw.text)) {
          fail_body(raw, *syntax);
          return result;
        }
      }
      result.rejections.push_back(MakeRejection(raw, RejectionCode::kEventTooLarge, "",
                                                "the event is " + std::to_string(raw.text.size()) +
                                                    " bytes; the limit is " +
                                                    std::to_string(options_.max_event_bytes)));
      continue;
    }

    // simdjson reads up to SIMDJSON_PADDING bytes past the end of its input. Every event but the last is
    // followed by that much of the body, which then serves as padding: it is parsed where it lies instead
    // of being copied into the parser's own padded buffer first.
    const bool padded_in_body = static_cast<size_t>(body_end - (raw.text.data() + raw.text.size())) >=
                                simdjson::SIMDJSON_PADDING;
    simdjson::dom::element root;
    if (const simdjson::error_code error =
            parser.parse(raw.text.data(), raw.text.size(), /*realloc_if_needed=*/!padded_in_body).get(root);
        error) {
      std::optional<BodyError> syntax = FindJsonSyntaxError(raw.text);
      if (syntax && body_must_be_json) {
        fail_body(raw, *syntax);
        return result;
      }
      // NDJSON line that is not JSON, or JSON simdjson cannot represent (integers beyond 64 bits).
      std::string message =
          !syntax ? std::string("unsupported JSON: ") + simdjson::error_message(error)
          : separate_records
              ? syntax->message + " at byte " + std::to_string(syntax->byte_offset) + " of the message"
              : syntax->message + " at byte " + std::to_string(raw.byte_offset + syntax->byte_offset) + " of the body";
      result.rejections.push_back(MakeRejection(raw, RejectionCode::kMalformedEvent, "", std::move(message)));
      continue;
    }

    std::optional<Violation> violation = ValidateEvent(root, validator_options, now_ms, envelope);
    // The user's pseudonym is looked up after `data` is written: its cache lines arrive meanwhile.
    const std::optional<std::string_view> user = envelope.subject ? envelope.subject : envelope.data_user_id;
    if (!violation && user) pseudonymizer_.PrefetchPseudonym(*user);
    buffer.Clear();
    if (!violation && envelope.has_data) violation = writer.WriteData(envelope.data, envelope.schema, buffer);
    if (violation) {
      Rejection rejection = MakeRejection(raw, violation->code, std::move(violation->field),
                                          std::move(violation->message));
      ReadRejectionIdentity(root, rejection);
      simdjson::dom::object object;
      if (root.get_object().get(object) == simdjson::SUCCESS) {
        std::string_view type;
        const TypeSchema* schema =
            object["type"].get_string().get(type) == simdjson::SUCCESS ? FindTypeSchema(type) : nullptr;
        buffer.Clear();
        lenient_writer.WriteEnvelope(object, schema, buffer);
        rejection.payload = buffer.view();
      }
      result.rejections.push_back(std::move(rejection));
      continue;
    }

    // Written straight into the batch's rows: the fields are views into the body, the writers' buffers and
    // the pseudonym.
    EventView event;
    result.event_indexes.push_back(raw.index);
    if (envelope.has_data) event.data = buffer.view();
    if (!envelope.kept_attributes.empty()) {
      attributes.Clear();
      writer.WriteAttributes(envelope.kept_attributes, attributes);
      event.extensions = attributes.view();
    }
    event.id = envelope.id;
    event.source = envelope.source;
    event.type = envelope.type;
    event.time_ms = envelope.time_ms;
    event.received_ms = now_ms;
    event.time_defaulted = envelope.time_defaulted;
    if (user) {
      pseudonymizer_.Pseudonymize(*user, pseudonym);
      event.user = pseudonym;
    }
    event.user_in_subject = envelope.subject.has_value();
    event.game_id = envelope.game_id;
    event.session_id = envelope.session_id;
    event.amount = envelope.amount;
    event.currency = envelope.currency;
    event.country = envelope.country;
    event.platform = envelope.platform;
    result.events.Add(event);
  }
  result.events.Seal();
  return result;
}

}  // namespace analytics::events
