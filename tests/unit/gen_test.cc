// Tests of the synthetic event generator (src/gen): determinism, time order, validity of every event against
// the catalog (docs/events.md, checked by a strict checker written here from the doc's rules), the causal
// links (refunds, sessions, achievements, deletions) and the documented behaviour (docs/generator.md:
// experiment effect, weekly and daily seasonality, activity skew, churn, prices).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gen/generator.h"
#include "gen/json_writer.h"
#include "gen/random.h"

namespace analytics::gen {
namespace {

using nlohmann::json;

// Pinned output of GoldenHash (users 300, days 5, seed 2024). Update both, and docs/generator.md, when the
// generator changes on purpose.
constexpr size_t kGoldenEvents = 4422;
constexpr uint64_t kGoldenHash = 387817075226780289ULL;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

struct Output {
  std::vector<std::string> lines;
  GeneratorStats stats;
};

Output GenerateAll(const GeneratorOptions& options) {
  Output out;
  out.stats = Generate(options, [&out](std::string_view line) { out.lines.emplace_back(line); });
  return out;
}

uint64_t Fnv1a(const std::vector<std::string>& lines) {
  uint64_t hash = 1469598103934665603ULL;
  for (const std::string& line : lines) {
    for (unsigned char c : line) hash = (hash ^ c) * 1099511628211ULL;
    hash = (hash ^ '\n') * 1099511628211ULL;
  }
  return hash;
}

int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

bool ValidCalendarDate(int y, int m, int d) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= (m == 2 && leap ? 29 : kDays[m - 1]);
}

bool Digits(const std::string& text, size_t pos, size_t count, int& out) {
  if (pos + count > text.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    out = out * 10 + (text[i] - '0');
  }
  return true;
}

// RFC 3339 date-time with a zone offset (Z or +-hh:mm), fractional seconds allowed; returns Unix ms or -1.
int64_t ParseRfc3339(const std::string& text) {
  int y, mo, d, h, mi, sec;
  if (!Digits(text, 0, 4, y) || text.size() < 20 || text[4] != '-' || !Digits(text, 5, 2, mo) || text[7] != '-' ||
      !Digits(text, 8, 2, d) || (text[10] != 'T' && text[10] != 't') || !Digits(text, 11, 2, h) || text[13] != ':' ||
      !Digits(text, 14, 2, mi) || text[16] != ':' || !Digits(text, 17, 2, sec)) {
    return -1;
  }
  if (!ValidCalendarDate(y, mo, d) || h > 23 || mi > 59 || sec > 60) return -1;
  int64_t ms = ((DaysFromCivil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + sec * 1000;
  size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0, frac = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 3) frac = frac * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return -1;
    for (int i = digits; i < 3; ++i) frac *= 10;
    ms += frac;
  }
  if (pos + 1 == text.size() && (text[pos] == 'Z' || text[pos] == 'z')) return ms;
  int oh, om;
  if (pos + 6 != text.size() || (text[pos] != '+' && text[pos] != '-') || !Digits(text, pos + 1, 2, oh) ||
      text[pos + 3] != ':' || !Digits(text, pos + 4, 2, om)) {
    return -1;
  }
  const int64_t offset = (oh * 60 + om) * 60000LL;
  return text[pos] == '+' ? ms - offset : ms + offset;
}

bool IsLowerIdent(const std::string& s, size_t begin, size_t end) {  // [a-z][a-z0-9_]*
  if (begin >= end || s[begin] < 'a' || s[begin] > 'z') return false;
  for (size_t i = begin + 1; i < end; ++i) {
    const char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// ^com\.platform\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[1-9][0-9]*$
bool IsTypeName(const std::string& s) {
  const std::string prefix = "com.platform.";
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  size_t pos = prefix.size();
  for (int segment = 0; segment < 3; ++segment) {
    const size_t dot = s.find('.', pos);
    if (dot == std::string::npos || !IsLowerIdent(s, pos, dot)) return false;
    pos = dot + 1;
  }
  if (pos + 2 > s.size() || s[pos] != 'v' || s[pos + 1] < '1' || s[pos + 1] > '9') return false;
  for (size_t i = pos + 2; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

bool IsUpperCode(const json& v, size_t length) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  return s.size() == length && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool IsUuid(const std::string& s) {
  if (s.size() != 36 || s[14] != '4' || std::string("89ab").find(s[19]) == std::string::npos) return false;
  for (size_t i = 0; i < 36; ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  }
  return true;
}

size_t CodePoints(const std::string& text) {
  size_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

// ---------------------------------------------------------------------------------------------------------
// A strict checker written from docs/events.md. Stricter than intake in one way: a data property that the
// catalog does not list for the type (nor section 7) is reported, so the generator sends only documented
// fields.
// ---------------------------------------------------------------------------------------------------------

enum class K {
  kId, kUserId, kInt, kIntGe0, kIntGe1, kMoney, kCurrency, kCountry, kPlatform, kTimestamp, kDate, kPercent,
  kEnum, kBool, kStr, kText, kIdArray, kPlatformArray, kGenres, kChangedFields, kObject, kNumber0to100, kRating,
  kDuration
};
enum class UserRule { kRequired, kOptional, kNone };

struct Field {
  std::string name;
  K kind;
  bool required = false;
  std::vector<std::string> values = {};
  size_t max_len = 0;  // strings: code points (0 = unlimited)
};

struct TypeSpec {
  std::string source;  // empty: any /services/<name>
  UserRule user;
  std::vector<Field> fields;
};

const std::vector<std::string> kPageTypeValues = {"home", "game",     "search",    "category", "sale",
                                                  "wishlist", "cart", "developer", "news",     "other"};
const std::vector<std::string> kItemTypes = {"game", "dlc", "bundle", "in_game_item"};
const std::vector<std::string> kPaymentMethods = {"card", "sbp", "wallet", "gift_card", "mobile", "other"};
const std::set<std::string> kPlatformValues = {"windows", "macos", "linux", "steamdeck", "android", "ios"};

const std::map<std::string, TypeSpec>& Catalog() {
  static const std::map<std::string, TypeSpec> catalog = {
      {"com.platform.account.user.registered.v1",
       {"/services/account",
        UserRule::kRequired,
        {{"auth_provider", K::kEnum, false,
          {"email", "phone", "vk", "yandex", "sber", "gosuslugi", "telegram", "other"}},
         {"utm_source", K::kStr, false, {}, 128},
         {"utm_medium", K::kStr, false, {}, 128},
         {"utm_campaign", K::kStr, false, {}, 128},
         {"referrer_user_id", K::kUserId},
         {"marketing_consent", K::kBool},
         {"email", K::kStr},
         {"phone", K::kStr},
         {"display_name", K::kStr}}}},
      {"com.platform.account.user.logged_in.v1",
       {"/services/account",
        UserRule::kRequired,
        {{"auth_method", K::kEnum, false, {"password", "oauth", "qr", "sso", "token", "other"}},
         {"two_factor", K::kBool}}}},
      {"com.platform.account.user.logged_out.v1",
       {"/services/account",
        UserRule::kRequired,
        {{"reason", K::kEnum, false, {"user", "timeout", "forced", "other"}}}}},
      {"com.platform.account.profile.updated.v1",
       {"/services/account",
        UserRule::kRequired,
        {{"changed_fields", K::kChangedFields, true},
         {"email", K::kStr},
         {"phone", K::kStr},
         {"display_name", K::kStr},
         {"first_name", K::kStr},
         {"last_name", K::kStr}}}},
      {"com.platform.account.user.deleted.v1",
       {"/services/account",
        UserRule::kRequired,
        {{"reason", K::kEnum, false, {"user_request", "admin", "inactivity", "other"}},
         {"requested_at", K::kTimestamp}}}},
      {"com.platform.catalog.game.published.v1",
       {"/services/catalog",
        UserRule::kNone,
        {{"game_id", K::kId, true},
         {"developer_id", K::kId, true},
         {"publisher_id", K::kId},
         {"title", K::kStr, false, {}, 256},
         {"genres", K::kGenres},
         {"release_date", K::kDate},
         {"is_free", K::kBool},
         {"price", K::kMoney},
         {"platforms", K::kPlatformArray}}}},
      {"com.platform.catalog.price.changed.v1",
       {"/services/catalog",
        UserRule::kNone,
        {{"game_id", K::kId, true},
         {"currency", K::kCurrency, true},
         {"old_price", K::kMoney, true},
         {"new_price", K::kMoney, true},
         {"discount_percent", K::kPercent},
         {"reason", K::kEnum, false, {"regular", "sale", "regional", "other"}},
         {"sale_id", K::kId},
         {"valid_until", K::kTimestamp}}}},
      {"com.platform.store.page.viewed.v1",
       {"/services/store",
        UserRule::kOptional,
        {{"page_type", K::kEnum, true, kPageTypeValues},
         {"page_path", K::kStr, false, {}, 512},
         {"referrer_type", K::kEnum, false, {"direct", "internal", "search_engine", "social", "ad", "email", "other"}},
         {"utm_source", K::kStr, false, {}, 128},
         {"utm_medium", K::kStr, false, {}, 128},
         {"utm_campaign", K::kStr, false, {}, 128},
         {"anonymous_id", K::kId}}}},
      {"com.platform.store.search.performed.v1",
       {"/services/store",
        UserRule::kOptional,
        {{"query", K::kText, true, {}, 1024},
         {"results_count", K::kIntGe0, true},
         {"page", K::kIntGe1},
         {"applied_filters", K::kObject},
         {"anonymous_id", K::kId}}}},
      {"com.platform.store.wishlist_item.added.v1",
       {"/services/store",
        UserRule::kRequired,
        {{"game_id", K::kId, true}, {"source_page", K::kEnum, false, kPageTypeValues}}}},
      {"com.platform.store.wishlist_item.removed.v1",
       {"/services/store",
        UserRule::kRequired,
        {{"game_id", K::kId, true}, {"reason", K::kEnum, false, {"user_removed", "purchased", "other"}}}}},
      {"com.platform.cart.item.added.v1",
       {"/services/cart",
        UserRule::kRequired,
        {{"cart_id", K::kId, true},
         {"game_id", K::kId, true},
         {"amount", K::kMoney, true},
         {"currency", K::kCurrency, true},
         {"item_type", K::kEnum, false, kItemTypes},
         {"item_id", K::kId},
         {"discount_percent", K::kPercent},
         {"is_gift", K::kBool}}}},
      {"com.platform.cart.item.removed.v1",
       {"/services/cart",
        UserRule::kRequired,
        {{"cart_id", K::kId, true},
         {"game_id", K::kId, true},
         {"item_type", K::kEnum, false, kItemTypes},
         {"item_id", K::kId},
         {"amount", K::kMoney},
         {"reason", K::kEnum, false, {"user_removed", "unavailable", "already_owned", "other"}}}}},
      {"com.platform.cart.checkout.started.v1",
       {"/services/cart",
        UserRule::kRequired,
        {{"cart_id", K::kId, true},
         {"amount", K::kMoney, true},
         {"currency", K::kCurrency, true},
         {"items_count", K::kIntGe1, true},
         {"game_ids", K::kIdArray},
         {"order_id", K::kId},
         {"payment_method", K::kEnum, false, kPaymentMethods}}}},
      {"com.platform.payments.purchase.completed.v1",
       {"/services/payments",
        UserRule::kRequired,
        {{"order_id", K::kId, true},
         {"game_id", K::kId, true},
         {"amount", K::kMoney, true},
         {"currency", K::kCurrency, true},
         {"item_type", K::kEnum, false, kItemTypes},
         {"item_id", K::kId},
         {"payment_method", K::kEnum, false, kPaymentMethods},
         {"discount_percent", K::kPercent},
         {"is_gift", K::kBool},
         {"recipient_user_id", K::kUserId},
         {"is_first_purchase", K::kBool},
         {"cart_id", K::kId}}}},
      {"com.platform.payments.purchase.failed.v1",
       {"/services/payments",
        UserRule::kRequired,
        {{"order_id", K::kId, true},
         {"amount", K::kMoney, true},
         {"currency", K::kCurrency, true},
         {"failure_reason", K::kEnum, true,
          {"declined", "insufficient_funds", "fraud_suspected", "timeout", "cancelled_by_user", "technical_error",
           "other"}},
         {"attempt", K::kIntGe1},
         {"payment_method", K::kEnum, false, kPaymentMethods},
         {"game_ids", K::kIdArray},
         {"game_id", K::kId}}}},
      {"com.platform.payments.refund.completed.v1",
       {"/services/payments",
        UserRule::kRequired,
        {{"order_id", K::kId, true},
         {"game_id", K::kId, true},
         {"amount", K::kMoney, true},
         {"currency", K::kCurrency, true},
         {"refund_id", K::kId},
         {"item_type", K::kEnum, false, kItemTypes},
         {"item_id", K::kId},
         {"reason", K::kEnum, false,
          {"user_request", "technical_issue", "accidental_purchase", "fraud", "chargeback", "other"}},
         {"playtime_seconds", K::kIntGe0},
         {"days_since_purchase", K::kIntGe0}}}},
      {"com.platform.library.game.installed.v1",
       {"/services/library",
        UserRule::kRequired,
        {{"game_id", K::kId, true},
         {"game_version", K::kStr, false, {}, 64},
         {"install_size_bytes", K::kIntGe0},
         {"install_duration_seconds", K::kIntGe0},
         {"is_reinstall", K::kBool}}}},
      {"com.platform.library.session.started.v1",
       {"/services/library",
        UserRule::kRequired,
        {{"game_id", K::kId, true},
         {"session_id", K::kId, true},
         {"game_version", K::kStr, false, {}, 64},
         {"launch_source", K::kEnum, false, {"library", "store", "desktop_shortcut", "notification", "other"}}}}},
      {"com.platform.library.session.ended.v1",
       {"/services/library",
        UserRule::kRequired,
        {{"game_id", K::kId, true},
         {"session_id", K::kId, true},
         {"duration_seconds", K::kDuration, true},
         {"end_reason", K::kEnum, false, {"user_exit", "crash", "timeout", "shutdown", "other"}}}}},
      {"com.platform.achievements.achievement.unlocked.v1",
       {"/services/achievements",
        UserRule::kRequired,
        {{"game_id", K::kId, true},
         {"achievement_id", K::kId, true},
         {"session_id", K::kId},
         {"achievement_name", K::kStr, false, {}, 256},
         {"points", K::kIntGe0},
         {"global_unlock_percent", K::kNumber0to100}}}},
      {"com.platform.reviews.review.posted.v1",
       {"/services/reviews",
        UserRule::kRequired,
        {{"game_id", K::kId, true},
         {"review_id", K::kId, true},
         {"rating", K::kRating},
         {"recommended", K::kBool},
         {"text", K::kText},
         {"language", K::kStr, false, {}, 35},
         {"playtime_seconds", K::kIntGe0},
         {"is_update", K::kBool}}}},
      {"com.platform.social.friend.added.v1",
       {"/services/social",
        UserRule::kRequired,
        {{"friend_user_id", K::kUserId, true},
         {"friendship_id", K::kId},
         {"method", K::kEnum, false, {"search", "invite_link", "suggestion", "in_game", "other"}}}}},
      {"com.platform.experiments.exposure.recorded.v1",
       {"",
        UserRule::kRequired,
        {{"experiment", K::kId, true}, {"variant", K::kId, true, {}, 64}, {"surface", K::kStr, false, {}, 64}}}},
  };
  return catalog;
}

// Section 7 (any type) and section 4 (well-known fields, same format everywhere).
const std::vector<Field>& CommonFields() {
  static const std::vector<Field> fields = {
      {"user_id", K::kUserId},         {"country", K::kCountry},   {"platform", K::kPlatform},
      {"ip", K::kStr},                 {"device_id", K::kId},      {"app_version", K::kStr, false, {}, 32},
      {"locale", K::kStr, false, {}, 35}, {"game_id", K::kId},     {"session_id", K::kId},
      {"amount", K::kMoney},           {"currency", K::kCurrency},
  };
  return fields;
}

bool IsIdString(const json& v, size_t max_len = 128) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > std::min<size_t>(128, max_len)) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-';
  });
}

bool IsInteger(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::floor(d) == d && d >= -9.2e18 && d <= 9.2e18;
}

int64_t AsInt(const json& v) {
  return v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
}

bool IsMoney(const json& v) {
  if (!v.is_number()) return false;
  const double d = v.get<double>();
  if (d < 0 || d > 1e9) return false;
  const double cents = d * 100.0;
  return std::fabs(cents - std::round(cents)) < 1e-6;
}


class Checker {
 public:
  // Returns the problems of one event (empty = valid).
  std::vector<std::string> Check(const json& event) {
    problems_.clear();
    if (!event.is_object()) {
      Fail("event is not an object");
      return problems_;
    }
    static const std::set<std::string> kEnvelope = {"specversion", "id",     "source", "type", "time",
                                                    "subject",     "datacontenttype", "dataschema", "data"};
    for (const auto& [name, value] : event.items()) {
      const bool extension = !name.empty() && name.size() <= 20 && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      });
      if (!kEnvelope.count(name) && !extension) Fail("unknown top-level member " + name);
    }
    if (event.value("specversion", json()) != "1.0") Fail("specversion");
    static const json kAbsent;
    static const json kEmptyObject = json::object();
    auto member = [&event](const char* name) -> const json& {
      auto it = event.find(name);
      return it == event.end() ? kAbsent : *it;
    };
    const json& id = member("id");
    if (!id.is_string() || id.get_ref<const std::string&>().empty() || id.get_ref<const std::string&>().size() > 256) {
      Fail("id");
    }
    const json& source = member("source");
    if (!source.is_string() || source.get<std::string>().rfind("/services/", 0) != 0 ||
        !IsLowerIdent(source.get<std::string>(), 10, source.get<std::string>().size())) {
      Fail("source");
    }
    const json& type = member("type");
    if (!type.is_string() || !IsTypeName(type.get<std::string>())) {
      Fail("type pattern");
      return problems_;
    }
    if (event.contains("time") && ParseRfc3339(event["time"].get<std::string>()) < 0) Fail("time");
    if (event.contains("datacontenttype") && event["datacontenttype"] != "application/json") Fail("datacontenttype");
    const json& data = event.contains("data") ? member("data") : kEmptyObject;
    if (!data.is_object()) {
      Fail("data is not an object");
      return problems_;
    }
    auto spec_it = Catalog().find(type.get<std::string>());
    if (spec_it == Catalog().end()) {
      Fail("type not in the catalog: " + type.get<std::string>());
      return problems_;
    }
    const TypeSpec& spec = spec_it->second;
    if (!spec.source.empty() && source != spec.source) {
      Fail("source " + source.dump() + " for " + type.get<std::string>());
    }
    // The user.
    const bool has_subject = event.contains("subject") && !event["subject"].is_null();
    const bool has_data_user = data.contains("user_id") && !data["user_id"].is_null();
    if (has_subject && !IsIdString(event["subject"])) Fail("subject is not a user id");
    if (has_subject && has_data_user && event["subject"] != data["user_id"]) Fail("subject != data.user_id");
    const bool has_user = has_subject || has_data_user;
    if (spec.user == UserRule::kRequired && !has_user) Fail("user required");
    if (spec.user == UserRule::kNone && has_user) Fail("user must be absent");
    // Fields.
    const std::set<std::string>& known = KnownFields(type.get_ref<const std::string&>(), spec);
    for (const Field& field : spec.fields) CheckField(data, field);
    for (const Field& field : CommonFields()) {
      const bool own = std::any_of(spec.fields.begin(), spec.fields.end(),
                                   [&](const Field& own_field) { return own_field.name == field.name; });
      if (!own) {
        CheckField(data, field);
      }
    }
    for (const auto& [name, value] : data.items()) {
      if (!known.count(name) && !value.is_null()) Fail("undocumented data property " + name);
    }
    // Every *_user_id at any depth must be a user id (section 6).
    CheckUserIdNames(data);
    // Conditional rules.
    if (data.contains("amount") && !data.contains("currency")) Fail("amount without currency");
    if (data.contains("price") && !data.contains("currency")) Fail("price without currency");
    const std::string& type_name = type.get_ref<const std::string&>();
    if (type_name == "com.platform.store.page.viewed.v1" && data.value("page_type", "") == "game" &&
        !data.contains("game_id")) {
      Fail("game page without game_id");
    }
    if (type_name == "com.platform.payments.purchase.completed.v1" && data.value("is_gift", false) &&
        !data.contains("recipient_user_id")) {
      Fail("gift without recipient_user_id");
    }
    if (type_name == "com.platform.reviews.review.posted.v1" && !data.contains("rating") &&
        !data.contains("recommended")) {
      Fail("review without rating and recommended");
    }
    if (type_name == "com.platform.social.friend.added.v1" && has_user) {
      const json user = has_subject ? event["subject"] : data["user_id"];
      if (data.value("friend_user_id", json()) == user) Fail("friend_user_id equals the user");
    }
    if (type_name == "com.platform.payments.purchase.failed.v1" && data.contains("game_id") &&
        data.contains("game_ids") &&
        (data["game_ids"].size() != 1 || data["game_ids"][0] != data["game_id"])) {
      Fail("failed purchase: game_id with several games");
    }
    return problems_;
  }

 private:
  void Fail(const std::string& message) { problems_.push_back(message); }

  // The type's own fields plus those of sections 4 and 7.
  const std::set<std::string>& KnownFields(const std::string& type, const TypeSpec& spec) {
    auto it = known_.find(type);
    if (it != known_.end()) return it->second;
    std::set<std::string>& known = known_[type];
    for (const Field& field : spec.fields) known.insert(field.name);
    for (const Field& field : CommonFields()) known.insert(field.name);
    return known;
  }

  void CheckUserIdNames(const json& object) {
    for (const auto& [name, value] : object.items()) {
      const bool user_name =
          name == "user_id" || (name.size() > 8 && name.compare(name.size() - 8, 8, "_user_id") == 0);
      if (user_name && !value.is_null() && !IsIdString(value)) Fail(name + " is not a user id");
      if (value.is_object()) CheckUserIdNames(value);
    }
  }

  void CheckField(const json& data, const Field& field) {
    auto it = data.find(field.name);
    if (it == data.end() || it->is_null()) {
      if (field.required) Fail("missing required " + field.name);
      return;
    }
    const json& v = *it;
    bool ok = true;
    switch (field.kind) {
      case K::kId: ok = IsIdString(v, field.max_len ? field.max_len : 128); break;
      case K::kUserId: ok = IsIdString(v); break;
      case K::kInt: ok = IsInteger(v); break;
      case K::kIntGe0: ok = IsInteger(v) && AsInt(v) >= 0; break;
      case K::kIntGe1: ok = IsInteger(v) && AsInt(v) >= 1; break;
      case K::kDuration: ok = IsInteger(v) && AsInt(v) >= 0 && AsInt(v) <= 604800; break;
      case K::kRating: ok = IsInteger(v) && AsInt(v) >= 1 && AsInt(v) <= 5; break;
      case K::kPercent: ok = IsInteger(v) && AsInt(v) >= 0 && AsInt(v) <= 100; break;
      case K::kMoney: ok = IsMoney(v); break;
      case K::kNumber0to100: ok = v.is_number() && v.get<double>() >= 0 && v.get<double>() <= 100; break;
      case K::kCurrency: ok = IsUpperCode(v, 3); break;
      case K::kCountry: ok = IsUpperCode(v, 2); break;
      case K::kPlatform: ok = v.is_string() && kPlatformValues.count(v.get<std::string>()) > 0; break;
      case K::kTimestamp: ok = v.is_string() && ParseRfc3339(v.get<std::string>()) >= 0; break;
      case K::kDate: {
        int y, m, d;
        const std::string text = v.is_string() ? v.get<std::string>() : std::string();
        ok = text.size() == 10 && Digits(text, 0, 4, y) && text[4] == '-' && Digits(text, 5, 2, m) && text[7] == '-' &&
             Digits(text, 8, 2, d) && ValidCalendarDate(y, m, d);
        break;
      }
      case K::kEnum:
        ok = v.is_string() &&
             std::find(field.values.begin(), field.values.end(), v.get<std::string>()) != field.values.end();
        break;
      case K::kBool: ok = v.is_boolean(); break;
      case K::kStr:
        ok = v.is_string() && (field.max_len == 0 || CodePoints(v.get<std::string>()) <= field.max_len);
        break;
      case K::kText:
        ok = v.is_string() && CodePoints(v.get<std::string>()) >= (field.required ? 1u : 0u) &&
             (field.max_len == 0 || CodePoints(v.get<std::string>()) <= field.max_len);
        break;
      case K::kIdArray: {
        ok = v.is_array();
        std::set<std::string> seen;
        for (const json& item : v) ok = ok && IsIdString(item) && seen.insert(item.get<std::string>()).second;
        break;
      }
      case K::kPlatformArray: {
        ok = v.is_array();
        std::set<std::string> seen;
        for (const json& item : v) {
          ok = ok && item.is_string() && kPlatformValues.count(item.get<std::string>()) &&
               seen.insert(item.get<std::string>()).second;
        }
        break;
      }
      case K::kGenres: {
        ok = v.is_array() && v.size() <= 16;
        std::set<std::string> seen;
        for (const json& item : v) {
          ok = ok && item.is_string() && !item.get<std::string>().empty() &&
               CodePoints(item.get<std::string>()) <= 64 &&
               seen.insert(item.get<std::string>()).second;
        }
        break;
      }
      case K::kChangedFields: {
        ok = v.is_array() && !v.empty() && v.size() <= 32;
        std::set<std::string> seen;
        for (const json& item : v) {
          ok = ok && item.is_string() && item.get<std::string>().size() <= 64 &&
               IsLowerIdent(item.get<std::string>(), 0, item.get<std::string>().size()) &&
               seen.insert(item.get<std::string>()).second;
        }
        break;
      }
      case K::kObject: ok = v.is_object(); break;
    }
    if (!ok) Fail("bad " + field.name + ": " + v.dump());
  }

  std::vector<std::string> problems_;
  std::map<std::string, std::set<std::string>> known_;
};

// ---------------------------------------------------------------------------------------------------------
// The shared data set: 2 500 accounts over 4 full weeks (2024-01-01 is a Monday), every event parsed and
// checked.
// ---------------------------------------------------------------------------------------------------------

struct Event {
  std::string type;  // without "com.platform." and ".v1"
  int64_t time = 0;
  std::string user;
  json data;
};

struct DataSet {
  GeneratorOptions options;
  Output output;
  std::vector<Event> events;
  std::vector<std::string> problems;  // the first 50 catalog violations
};

// Built once per process: generating and parsing is the expensive part under the sanitizers, and ctest runs
// each test in its own process, so all checks of this data set run in one test (GenDataSetTest below).
const DataSet& Data() {
  static const DataSet* data = [] {
    auto* built = new DataSet();
    built->options.users = 2500;
    built->options.days = 28;
    built->options.seed = 7;
    built->output = GenerateAll(built->options);
    built->events.reserve(built->output.lines.size());
    Checker checker;
    for (const std::string& line : built->output.lines) {
      json event = json::parse(line.data(), line.data() + line.size(), nullptr, /*allow_exceptions=*/false);
      if (event.is_discarded()) {
        built->problems.push_back("not JSON: " + line);
        continue;
      }
      for (const std::string& problem : checker.Check(event)) {
        if (built->problems.size() < 50) built->problems.push_back(problem + " in " + line);
      }
      Event parsed;
      const std::string type = event.value("type", "");
      parsed.type = type.size() > 16 ? type.substr(13, type.size() - 16) : type;
      parsed.time = ParseRfc3339(event.value("time", ""));
      if (event.contains("subject")) {
        parsed.user = event["subject"].get<std::string>();
      } else if (event.contains("data") && event["data"].contains("user_id")) {
        parsed.user = event["data"]["user_id"].get<std::string>();
      }
      if (event.contains("data")) parsed.data = std::move(event["data"]);
      built->events.push_back(std::move(parsed));
    }
    return built;
  }();
  return *data;
}

int64_t StartMs() { return DaysFromCivil(2024, 1, 1) * 86400000LL; }

// ---------------------------------------------------------------------------------------------------------
// Determinism and the API
// ---------------------------------------------------------------------------------------------------------

TEST(GenDeterminismTest, SameSeedSameBytesOtherSeedOtherBytes) {
  GeneratorOptions options;
  options.users = 600;
  options.days = 6;
  options.seed = 42;
  const Output first = GenerateAll(options);
  const Output second = GenerateAll(options);
  ASSERT_GT(first.lines.size(), 1000u);
  EXPECT_EQ(Fnv1a(first.lines), Fnv1a(second.lines));
  EXPECT_EQ(first.lines, second.lines);
  options.seed = 43;
  const Output other = GenerateAll(options);
  EXPECT_NE(Fnv1a(first.lines), Fnv1a(other.lines));
  options.seed = 42;
  options.start_date = "2024-03-01";
  EXPECT_NE(Fnv1a(first.lines), Fnv1a(GenerateAll(options).lines));
}

// The output must be byte-identical on every machine and build type (own PRNG, own log/exp, integer money).
// This pins it: when the generator changes on purpose, update the constant and docs/generator.md.
TEST(GenDeterminismTest, GoldenHash) {
  GeneratorOptions options;
  options.users = 300;
  options.days = 5;
  options.seed = 2024;
  const Output out = GenerateAll(options);
  EXPECT_EQ(out.lines.size(), kGoldenEvents);
  EXPECT_EQ(Fnv1a(out.lines), kGoldenHash) << std::hex << Fnv1a(out.lines);
}

TEST(GenApiTest, StatsMatchOutput) {
  GeneratorOptions options;
  options.users = 500;
  options.days = 4;
  const Output out = GenerateAll(options);
  EXPECT_EQ(out.stats.events, out.lines.size());
  uint64_t sum = 0;
  for (const auto& [type, count] : out.stats.by_type) sum += count;
  EXPECT_EQ(sum, out.stats.events);
  std::set<std::string> users;
  for (const std::string& line : out.lines) {
    const json event = json::parse(line);
    if (event.contains("subject")) users.insert(event["subject"].get<std::string>());
    if (event["data"].contains("user_id")) users.insert(event["data"]["user_id"].get<std::string>());
  }
  EXPECT_EQ(out.stats.users, users.size());
  EXPECT_LE(out.stats.users, 500u);
}

TEST(GenApiTest, InvalidOptionsProduceNothing) {
  auto count = [](GeneratorOptions options) { return GenerateAll(options).lines.size(); };
  GeneratorOptions options;
  options.users = 0;
  EXPECT_EQ(count(options), 0u);
  options = {};
  options.days = 0;
  EXPECT_EQ(count(options), 0u);
  options = {};
  options.start_date = "2024-02-30";
  EXPECT_EQ(count(options), 0u);
  options = {};
  options.games = -1;
  EXPECT_EQ(count(options), 0u);
}

TEST(GenApiTest, TinyAndLongRunsAreValid) {
  GeneratorOptions options;
  options.users = 1;
  options.days = 1;
  const Output out = GenerateAll(options);
  EXPECT_GE(out.lines.size(), 20u);  // at least the catalog snapshot
  Checker checker;
  auto check_all = [&checker](const GeneratorOptions& run) {
    int64_t previous = 0;
    size_t count = 0;
    for (const std::string& line : GenerateAll(run).lines) {
      const json event = json::parse(line);
      const std::vector<std::string> problems = checker.Check(event);
      EXPECT_TRUE(problems.empty()) << problems.front() << " in " << line;
      const int64_t t = ParseRfc3339(event["time"].get<std::string>());
      EXPECT_GE(t, previous);
      previous = t;
      ++count;
    }
    return count;
  };
  options.games = 3;  // fewer games than the free-to-play ranks assume
  options.users = 50;
  options.days = 2;
  EXPECT_GT(check_all(options), 50u);
  options.games = 0;
  options.users = 30;
  options.days = 800;  // across year ends and 2024-02-29
  options.start_date = "2023-12-20";
  EXPECT_GT(check_all(options), 1000u);
}

TEST(GenCliTest, WritesTheSameBytesAsGenerate) {
  const std::string path = ::testing::TempDir() + "gen_cli_test.ndjson";
  ASSERT_EQ(
      RunGenerateCommand({"--users", "300", "--days", "3", "--seed", "5", "--start", "2024-06-01", "--out", path}), 0);
  std::ifstream file(path, std::ios::binary);
  std::stringstream content;
  content << file.rdbuf();
  GeneratorOptions options;
  options.users = 300;
  options.days = 3;
  options.seed = 5;
  options.start_date = "2024-06-01";
  std::string expected;
  for (const std::string& line : GenerateAll(options).lines) expected += line + "\n";
  EXPECT_EQ(content.str(), expected);
  std::remove(path.c_str());
}

TEST(GenCliTest, BadUsage) {
  EXPECT_EQ(RunGenerateCommand({"--help"}), 0);
  EXPECT_EQ(RunGenerateCommand({"--users", "0", "--days", "1", "--seed", "1"}), 2);
  EXPECT_EQ(RunGenerateCommand({"--users", "10", "--days", "x", "--seed", "1"}), 2);
  EXPECT_EQ(RunGenerateCommand({"--users", "10", "--days", "1"}), 2);
  EXPECT_EQ(RunGenerateCommand({"--users", "10", "--days", "1", "--seed", "-1"}), 2);
  EXPECT_EQ(RunGenerateCommand({"--users", "10", "--days", "1", "--seed", "1", "--start", "2024-13-01"}), 2);
  EXPECT_EQ(RunGenerateCommand({"--users", "10", "--days", "1", "--seed", "1", "--bogus", "1"}), 2);
  EXPECT_EQ(RunGenerateCommand({"--users", "10", "--days", "1", "--seed"}), 2);
  EXPECT_EQ(
      RunGenerateCommand({"--users", "10", "--days", "1", "--seed", "1", "--out", "/nonexistent-dir/x.ndjson"}), 1);
}

TEST(GenInternalsTest, JsonWriterEscapes) {
  JsonWriter w;
  const std::string text = std::string("a\"b\\c\n\t\x01 «ёж» \x7f end") + std::string(1, '\0') + "z";
  w.BeginObject();
  w.Key("s");
  w.String(text);
  w.Key("m");
  w.Hundredths(104930);
  w.Key("n");
  w.Hundredths(5);
  w.Key("w");
  w.Hundredths(49900);
  w.Key("t");
  w.Tenths(614);
  w.EndObject();
  const json parsed = json::parse(w.view());
  EXPECT_EQ(parsed["s"].get<std::string>(), text);
  EXPECT_EQ(parsed["m"].get<double>(), 1049.3);
  EXPECT_EQ(parsed["n"].get<double>(), 0.05);
  EXPECT_EQ(w.view().find("\"w\":499,"), w.view().find("\"w\""));
  EXPECT_EQ(parsed["t"].get<double>(), 61.4);
}

TEST(GenInternalsTest, DeterministicMathIsAccurate) {
  for (double x : {1e-300, 1e-9, 0.001, 0.5, 0.7071, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300}) {
    EXPECT_NEAR(DetLog(x), std::log(x), 1e-13 * std::max(1.0, std::fabs(std::log(x)))) << x;
  }
  for (double x : {-700.0, -20.0, -1.0, -1e-9, 0.0, 0.3, 1.0, 5.5, 100.0, 700.0}) {
    EXPECT_NEAR(DetExp(x) / std::exp(x), 1.0, 1e-13) << x;
  }
  Rng rng(1);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) sum += rng.Exponential(2.0);
  EXPECT_NEAR(sum / 100000, 2.0, 0.05);
}

// ---------------------------------------------------------------------------------------------------------
// Validity and order
// ---------------------------------------------------------------------------------------------------------

void EveryEventIsValidPerTheCatalog() {
  ASSERT_GT(Data().events.size(), 100000u);
  for (const std::string& problem : Data().problems) ADD_FAILURE() << problem;
  EXPECT_TRUE(Data().problems.empty());
  EXPECT_EQ(Data().output.stats.events, Data().output.lines.size());
}

void AllCatalogTypesAppear() {
  std::set<std::string> seen;
  for (const auto& [type, count] : Data().output.stats.by_type) seen.insert(type);
  for (const auto& [type, spec] : Catalog()) EXPECT_TRUE(seen.count(type)) << type;
}

void TimesAreOrderedUtcMillisWithinTheWindow() {
  static const std::regex kFormat(R"(^"time":"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"$)");
  const int64_t start = StartMs();
  const int64_t end = start + Data().options.days * 86400000LL;
  int64_t previous = 0;
  for (size_t i = 0; i < Data().events.size(); ++i) {
    const int64_t t = (Data().events)[i].time;
    ASSERT_GE(t, previous) << Data().output.lines[i];
    ASSERT_GE(t, start);
    ASSERT_LT(t, end);
    previous = t;
    if (i % 97 == 0) {
      const std::string& line = Data().output.lines[i];
      const size_t pos = line.find("\"time\":\"");
      ASSERT_NE(pos, std::string::npos);
      EXPECT_TRUE(std::regex_match(line.substr(pos, 33), kFormat)) << line.substr(pos, 33);
    }
  }
}

void IdsAreUniqueUuids() {
  std::unordered_set<std::string> ids;
  for (size_t i = 0; i < Data().output.lines.size(); ++i) {
    const std::string id = Data().output.lines[i].substr(Data().output.lines[i].find("\"id\":\"") + 6, 36);
    EXPECT_TRUE(ids.insert(id).second) << "duplicate id " << id;
    if (i % 101 == 0) {
      EXPECT_TRUE(IsUuid(id)) << id;
    }
  }
  for (const Event& event : Data().events) {
    if (!event.user.empty()) {
      ASSERT_TRUE(IsUuid(event.user)) << event.user;
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Causal links
// ---------------------------------------------------------------------------------------------------------

void GamesArePublishedBeforeUseAndDevelopersOwnSeveralGames() {
  std::map<std::string, int64_t> published;
  std::map<std::string, std::set<std::string>> games_of_developer;
  for (const Event& event : Data().events) {
    if (event.type == "catalog.game.published") {
      const std::string game = event.data["game_id"];
      EXPECT_FALSE(published.count(game)) << "published twice: " << game;
      published[game] = event.time;
      games_of_developer[event.data["developer_id"]].insert(game);
      continue;
    }
    auto check = [&](const std::string& game) {
      auto it = published.find(game);
      ASSERT_NE(it, published.end()) << event.type << " references unpublished " << game;
      EXPECT_LE(it->second, event.time);
    };
    if (event.data.contains("game_id")) check(event.data["game_id"]);
    if (event.data.contains("game_ids")) {
      for (const json& game : event.data["game_ids"]) check(game);
    }
  }
  size_t max_games = 0;
  for (const auto& [developer, games] : games_of_developer) max_games = std::max(max_games, games.size());
  EXPECT_GE(max_games, 3u);
  EXPECT_GT(static_cast<double>(published.size()) / games_of_developer.size(), 2.0);
  EXPECT_EQ(published.size(), 20u);  // max(20, 2500 / 500)
}

std::pair<std::string, std::string> OrderLine(const Event& event) {
  return {event.data["order_id"].get<std::string>(), event.data["game_id"].get<std::string>()};
}

void RefundsFollowTheirPurchase() {
  struct Purchase {
    int64_t time;
    std::string user;
    double amount;
    std::string currency;
  };
  std::map<std::pair<std::string, std::string>, Purchase> purchases;  // (order, game)
  std::set<std::pair<std::string, std::string>> refunded;
  size_t refunds = 0;
  size_t paid = 0;
  for (const Event& event : Data().events) {
    if (event.type == "payments.purchase.completed") {
      const auto key = OrderLine(event);
      EXPECT_FALSE(purchases.count(key));
      purchases[key] = {event.time, event.user, event.data["amount"].get<double>(),
                        event.data["currency"].get<std::string>()};
      paid += event.data["amount"].get<double>() > 0;
    } else if (event.type == "payments.refund.completed") {
      ++refunds;
      const auto key = OrderLine(event);
      auto it = purchases.find(key);
      ASSERT_NE(it, purchases.end()) << "refund without purchase " << key.first << " " << key.second;
      EXPECT_GT(event.time, it->second.time);
      EXPECT_EQ(event.user, it->second.user);
      EXPECT_EQ(event.data["amount"].get<double>(), it->second.amount);
      EXPECT_EQ(event.data["currency"], it->second.currency);
      EXPECT_EQ(event.data["days_since_purchase"].get<int64_t>(), (event.time - it->second.time) / 86400000);
      EXPECT_TRUE(refunded.insert(key).second) << "refunded twice";
    }
  }
  ASSERT_GT(paid, 200u);
  const double rate = static_cast<double>(refunds) / static_cast<double>(paid);
  EXPECT_GT(rate, 0.01);
  EXPECT_LT(rate, 0.10);
}

void SessionsEndAfterTheirStart() {
  struct Start {
    int64_t time;
    std::string user;
    std::string game;
    bool ended = false;
  };
  std::unordered_map<std::string, Start> starts;
  std::vector<int64_t> durations;
  for (const Event& event : Data().events) {
    if (event.type == "library.session.started") {
      const std::string session = event.data["session_id"];
      EXPECT_FALSE(starts.count(session)) << "session id reused " << session;
      starts[session] = {event.time, event.user, event.data["game_id"].get<std::string>()};
    } else if (event.type == "library.session.ended") {
      auto it = starts.find(event.data["session_id"].get<std::string>());
      ASSERT_NE(it, starts.end()) << "end without start";
      EXPECT_FALSE(it->second.ended) << "ended twice";
      it->second.ended = true;
      EXPECT_EQ(event.user, it->second.user);
      EXPECT_EQ(event.data["game_id"], it->second.game);
      const int64_t duration = event.data["duration_seconds"].get<int64_t>();
      EXPECT_EQ(event.time - it->second.time, duration * 1000);
      durations.push_back(duration);
    } else if (event.type == "achievements.achievement.unlocked") {
      auto it = starts.find(event.data["session_id"].get<std::string>());
      ASSERT_NE(it, starts.end());
      EXPECT_FALSE(it->second.ended) << "achievement after the session ended";
      EXPECT_EQ(event.user, it->second.user);
      EXPECT_EQ(event.data["game_id"], it->second.game);
    }
  }
  // Only sessions still running at the end of the window lack an end.
  const int64_t window_end = StartMs() + Data().options.days * 86400000LL;
  size_t open = 0;
  for (const auto& [session, start] : starts) {
    if (start.ended) continue;
    ++open;
    EXPECT_GT(start.time, window_end - 2 * 86400000LL);
  }
  EXPECT_LT(open, starts.size() / 20);
  ASSERT_GT(durations.size(), 10000u);
  std::sort(durations.begin(), durations.end());
  const int64_t median = durations[durations.size() / 2];
  EXPECT_GT(median, 30 * 60);
  EXPECT_LT(median, 60 * 60);
  EXPECT_GE(durations.front(), 60);
  EXPECT_LE(durations.back(), 12 * 3600);
}

void AchievementsAndReviewsAreConsistent() {
  std::set<std::string> unlocked;  // user|game|achievement
  std::map<std::string, int> reviews;  // review_id -> count of non-update posts
  for (const Event& event : Data().events) {
    if (event.type == "achievements.achievement.unlocked") {
      const std::string key = event.user + "|" + event.data["game_id"].get<std::string>() + "|" +
                              event.data["achievement_id"].get<std::string>();
      EXPECT_TRUE(unlocked.insert(key).second) << "unlocked twice: " << key;
    } else if (event.type == "reviews.review.posted") {
      if (!event.data["is_update"].get<bool>()) {
        EXPECT_EQ(++reviews[event.data["review_id"].get<std::string>()], 1) << "posted twice";
      }
    }
  }
  EXPECT_GT(unlocked.size(), 1000u);
  EXPECT_GT(reviews.size(), 50u);
}

void DeletedUsersHaveNoLaterEvents() {
  std::unordered_map<std::string, int64_t> deleted;
  for (const Event& event : Data().events) {
    if (event.type == "account.user.deleted") {
      EXPECT_FALSE(deleted.count(event.user));
      deleted[event.user] = event.time;
      continue;
    }
    for (const std::string& user : {event.user, event.data.value("friend_user_id", std::string()),
                                    event.data.value("recipient_user_id", std::string()),
                                    event.data.value("referrer_user_id", std::string())}) {
      if (user.empty()) continue;
      EXPECT_FALSE(deleted.count(user)) << event.type << " after the deletion of " << user;
    }
  }
  EXPECT_GT(deleted.size(), 0u);
}

void FriendshipsAreMutual() {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> sides;
  for (const Event& event : Data().events) {
    if (event.type != "social.friend.added") continue;
    sides[event.data["friendship_id"]].emplace_back(event.user, event.data["friend_user_id"].get<std::string>());
  }
  ASSERT_GT(sides.size(), 100u);
  for (const auto& [friendship, pair] : sides) {
    ASSERT_EQ(pair.size(), 2u) << friendship;
    EXPECT_EQ(pair[0].first, pair[1].second);
    EXPECT_EQ(pair[0].second, pair[1].first);
  }
}

void UsersAreRegisteredBeforeTheirEventsOrExistedBefore() {
  std::unordered_map<std::string, int64_t> registered;
  std::unordered_map<std::string, int64_t> first_seen;
  for (const Event& event : Data().events) {
    if (event.user.empty()) continue;
    if (event.type == "account.user.registered") {
      EXPECT_FALSE(registered.count(event.user)) << "registered twice";
      EXPECT_FALSE(first_seen.count(event.user)) << "events before the registration";
      registered[event.user] = event.time;
    }
    first_seen.emplace(event.user, event.time);
  }
  // Half of the accounts register during the window.
  EXPECT_EQ(registered.size(), 1250u);
}

// ---------------------------------------------------------------------------------------------------------
// Documented behaviour (docs/generator.md)
// ---------------------------------------------------------------------------------------------------------

// The string value of "key" in a generated line (the generator writes no spaces and escapes no ids).
std::string_view StringField(std::string_view line, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":\"";
  const size_t pos = line.find(needle);
  if (pos == std::string_view::npos) return {};
  const size_t begin = pos + needle.size();
  return line.substr(begin, line.find('"', begin) - begin);
}

// checkout_v2: variant B has a real effect on conversion to purchase after the first exposure. A larger data
// set than the fixture's (15 000 accounts), scanned as text to stay fast under the sanitizers.
TEST(GenExperimentTest, VariantBConvertsBetterAfterExposure) {
  GeneratorOptions options;
  options.users = 15000;
  options.days = 28;
  options.seed = 11;
  std::unordered_map<std::string, std::pair<std::string, std::string>> first_exposure;  // user -> (time, variant)
  std::unordered_map<std::string, std::set<std::string>> variants_seen;                 // user|experiment
  std::unordered_set<std::string> converted_users;
  Generate(options, [&](std::string_view line) {
    if (line.find("exposure.recorded") != std::string_view::npos) {
      const std::string user(StringField(line, "subject"));
      const std::string experiment(StringField(line, "experiment"));
      const std::string variant(StringField(line, "variant"));
      variants_seen[user + "|" + experiment].insert(variant);
      if (experiment == "checkout_v2") {
        first_exposure.emplace(user, std::make_pair(std::string(StringField(line, "time")), variant));
      }
    } else if (line.find("payments.purchase.completed") != std::string_view::npos &&
               line.find("\"amount\":0,") == std::string_view::npos) {
      const std::string user(StringField(line, "subject"));
      auto it = first_exposure.find(user);
      // Times are UTC with milliseconds, so string order is time order.
      if (it != first_exposure.end() && std::string(StringField(line, "time")) >= it->second.first) {
        converted_users.insert(user);
      }
    }
  });
  for (const auto& [key, variants] : variants_seen) {
    EXPECT_EQ(variants.size(), 1u) << key << " saw several variants";
  }
  std::map<std::string, std::pair<int, int>> conversion;  // variant -> (exposed, converted)
  for (const auto& [user, exposure] : first_exposure) {
    auto& [exposed, converted] = conversion[exposure.second];
    ++exposed;
    converted += converted_users.count(user) > 0;
  }
  ASSERT_EQ(conversion.size(), 2u);
  const auto [exposed_a, converted_a] = conversion["A"];
  const auto [exposed_b, converted_b] = conversion["B"];
  ASSERT_GT(exposed_a, 1000);
  ASSERT_GT(exposed_b, 1000);
  // 50/50 split.
  EXPECT_NEAR(static_cast<double>(exposed_a) / (exposed_a + exposed_b), 0.5, 0.03);
  const double rate_a = static_cast<double>(converted_a) / exposed_a;
  const double rate_b = static_cast<double>(converted_b) / exposed_b;
  const double pooled = static_cast<double>(converted_a + converted_b) / (exposed_a + exposed_b);
  const double z = (rate_b - rate_a) / std::sqrt(pooled * (1 - pooled) * (1.0 / exposed_a + 1.0 / exposed_b));
  // docs/generator.md: about +20% relative (0.52 -> 0.63 at 28 days); asserted with margin for sampling noise.
  EXPECT_GT(rate_b / rate_a, 1.08) << "A " << rate_a << " B " << rate_b;
  EXPECT_LT(rate_b / rate_a, 1.40) << "A " << rate_a << " B " << rate_b;
  EXPECT_GT(z, 3.0) << "A " << rate_a << " B " << rate_b;
}

// Every user sees one variant per experiment, split 50/50 (also in store_home_hero_v2, which has no effect).
void ExperimentsAssignOneVariantPerUser() {
  std::unordered_map<std::string, std::set<std::string>> variants_seen;
  std::map<std::string, std::set<std::string>> users_by_variant;
  for (const Event& event : Data().events) {
    if (event.type != "experiments.exposure.recorded") continue;
    const std::string experiment = event.data["experiment"];
    const std::string variant = event.data["variant"];
    variants_seen[event.user + "|" + experiment].insert(variant);
    users_by_variant[experiment + ":" + variant].insert(event.user);
  }
  for (const auto& [key, variants] : variants_seen) {
    EXPECT_EQ(variants.size(), 1u) << key;
  }
  EXPECT_EQ(users_by_variant.size(), 4u);  // checkout_v2 A/B, store_home_hero_v2 control/b
  const double control = users_by_variant["store_home_hero_v2:control"].size();
  const double b = users_by_variant["store_home_hero_v2:b"].size();
  EXPECT_NEAR(control / (control + b), 0.5, 0.05);
}

void WeekendsAreBusier() {
  std::map<int64_t, int64_t> per_day;
  for (const Event& event : Data().events) {
    if (!event.user.empty()) ++per_day[event.time / 86400000];
  }
  double weekend = 0, weekday = 0;
  int weekend_days = 0, weekdays = 0;
  for (const auto& [day, count] : per_day) {
    const int weekday_index = static_cast<int>(((day % 7) + 11) % 7);  // 0 = Sunday
    if (weekday_index == 0 || weekday_index == 6) {
      weekend += count;
      ++weekend_days;
    } else {
      weekday += count;
      ++weekdays;
    }
  }
  ASSERT_EQ(weekend_days, 8);
  ASSERT_EQ(weekdays, 20);
  EXPECT_GT((weekend / weekend_days) / (weekday / weekdays), 1.2);
}

void EveningPeak() {
  std::vector<int64_t> per_hour(24, 0);
  for (const Event& event : Data().events) ++per_hour[static_cast<size_t>(event.time / 3600000 % 24)];
  // UTC 15-19 is 18-22 in Moscow; UTC 0-4 is the night.
  int64_t evening = 0, night = 0;
  for (int h = 15; h < 20; ++h) evening += per_hour[static_cast<size_t>(h)];
  for (int h = 0; h < 5; ++h) night += per_hour[static_cast<size_t>(h)];
  EXPECT_GT(evening, 3 * night);
}

void ActivityIsSkewedAndUsersChurn() {
  std::unordered_map<std::string, int64_t> per_user;
  std::unordered_map<std::string, std::set<int64_t>> days_of_user;
  std::unordered_set<std::string> newcomers;
  for (const Event& event : Data().events) {
    if (event.user.empty()) continue;
    ++per_user[event.user];
    days_of_user[event.user].insert(event.time / 86400000);
    if (event.type == "account.user.registered") newcomers.insert(event.user);
  }
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const auto& [user, count] : per_user) {
    counts.push_back(count);
    total += count;
  }
  std::sort(counts.rbegin(), counts.rend());
  int64_t top = 0;
  for (size_t i = 0; i < counts.size() / 10; ++i) top += counts[i];
  EXPECT_GT(static_cast<double>(top) / total, 0.35) << "top 10% share";
  size_t one_day = 0;
  for (const std::string& user : newcomers) one_day += days_of_user[user].size() == 1;
  EXPECT_GT(static_cast<double>(one_day) / newcomers.size(), 0.25) << "newcomers seen on one day only";
}

void PricesAndCurrencies() {
  size_t catalog_paid = 0, catalog_in_range = 0, money = 0, rub = 0;
  std::set<std::string> currencies;
  for (const Event& event : Data().events) {
    if (event.type == "catalog.game.published" && event.data.contains("price")) {
      ++catalog_paid;
      const double price = event.data["price"];
      catalog_in_range += price >= 99 && price <= 2999;
    }
    if (event.type == "payments.purchase.completed") {
      ++money;
      const std::string currency = event.data["currency"];
      currencies.insert(currency);
      rub += currency == "RUB";
    }
  }
  EXPECT_GE(catalog_in_range * 10, catalog_paid * 8);
  const double non_rub = 1.0 - static_cast<double>(rub) / money;
  EXPECT_GT(non_rub, 0.005);
  EXPECT_LT(non_rub, 0.15);
  EXPECT_GE(currencies.size(), 2u);
}

void PersonalDataFieldsArePresentForPrivacyTests() {
  std::map<std::string, size_t> found;
  for (const Event& event : Data().events) {
    for (const char* name : {"email", "phone", "display_name", "ip", "device_id", "anonymous_id", "referrer_user_id",
                             "friend_user_id", "recipient_user_id", "text", "query"}) {
      if (event.data.contains(name)) ++found[name];
    }
    if (event.type == "store.search.performed") {
      const std::string query = event.data["query"];
      if (query.find('@') != std::string::npos) ++found["query_email"];
      if (CodePoints(query) > 100) ++found["query_long"];
    }
  }
  for (const char* name : {"email", "phone", "display_name", "ip", "device_id", "anonymous_id", "referrer_user_id",
                           "friend_user_id", "text", "query"}) {
    EXPECT_GT(found[name], 0u) << name;
  }
}

// All checks of the shared data set, in one process (see Data()).
TEST(GenDataSetTest, ValidOrderedConsistentAndRealistic) {
  {
    SCOPED_TRACE("EveryEventIsValidPerTheCatalog");
    EveryEventIsValidPerTheCatalog();
  }
  {
    SCOPED_TRACE("AllCatalogTypesAppear");
    AllCatalogTypesAppear();
  }
  {
    SCOPED_TRACE("TimesAreOrderedUtcMillisWithinTheWindow");
    TimesAreOrderedUtcMillisWithinTheWindow();
  }
  {
    SCOPED_TRACE("IdsAreUniqueUuids");
    IdsAreUniqueUuids();
  }
  {
    SCOPED_TRACE("GamesArePublishedBeforeUseAndDevelopersOwnSeveralGames");
    GamesArePublishedBeforeUseAndDevelopersOwnSeveralGames();
  }
  {
    SCOPED_TRACE("RefundsFollowTheirPurchase");
    RefundsFollowTheirPurchase();
  }
  {
    SCOPED_TRACE("SessionsEndAfterTheirStart");
    SessionsEndAfterTheirStart();
  }
  {
    SCOPED_TRACE("AchievementsAndReviewsAreConsistent");
    AchievementsAndReviewsAreConsistent();
  }
  {
    SCOPED_TRACE("DeletedUsersHaveNoLaterEvents");
    DeletedUsersHaveNoLaterEvents();
  }
  {
    SCOPED_TRACE("FriendshipsAreMutual");
    FriendshipsAreMutual();
  }
  {
    SCOPED_TRACE("UsersAreRegisteredBeforeTheirEventsOrExistedBefore");
    UsersAreRegisteredBeforeTheirEventsOrExistedBefore();
  }
  {
    SCOPED_TRACE("ExperimentsAssignOneVariantPerUser");
    ExperimentsAssignOneVariantPerUser();
  }
  {
    SCOPED_TRACE("WeekendsAreBusier");
    WeekendsAreBusier();
  }
  {
    SCOPED_TRACE("EveningPeak");
    EveningPeak();
  }
  {
    SCOPED_TRACE("ActivityIsSkewedAndUsersChurn");
    ActivityIsSkewedAndUsersChurn();
  }
  {
    SCOPED_TRACE("PricesAndCurrencies");
    PricesAndCurrencies();
  }
  {
    SCOPED_TRACE("PersonalDataFieldsArePresentForPrivacyTests");
    PersonalDataFieldsArePresentForPrivacyTests();
  }
}

}  // namespace
}  // namespace analytics::gen
