// The catalog tables, written by hand from docs/events.md (catalog version 1). One TypeSchema per type;
// the field lists follow the per-type tables of section 9 in the same order.
#include "events/event_catalog.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

namespace analytics::events {
namespace {

// ---- Builders: one line per field, so each table reads like the doc's. ----
constexpr bool kReq = true;
constexpr bool kOpt = false;

constexpr FieldSpec Id(std::string_view name, bool required = kOpt, int64_t max_chars = 128) {
  return {.name = name, .kind = FieldKind::kIdString, .required = required, .min = 1, .max = max_chars};
}
constexpr FieldSpec UserId(std::string_view name, bool required = kOpt) {
  return {.name = name, .kind = FieldKind::kUserId, .required = required};
}
constexpr FieldSpec Str(std::string_view name, bool required, int64_t max_chars, int64_t min_chars = 0) {
  return {.name = name, .kind = FieldKind::kString, .required = required, .min = min_chars, .max = max_chars};
}
constexpr FieldSpec Int(std::string_view name, bool required, int64_t min, int64_t max = kNoMax) {
  return {.name = name, .kind = FieldKind::kInteger, .required = required, .min = min, .max = max};
}
constexpr FieldSpec Num(std::string_view name, bool required, int64_t min, int64_t max) {
  return {.name = name, .kind = FieldKind::kNumber, .required = required, .min = min, .max = max};
}
constexpr FieldSpec Money(std::string_view name, bool required = kOpt) {
  return {.name = name, .kind = FieldKind::kMoney, .required = required};
}
constexpr FieldSpec Price(std::string_view name, bool required = kOpt) {
  return {.name = name, .kind = FieldKind::kPrice, .required = required};
}
constexpr FieldSpec Percent(std::string_view name, bool required = kOpt) {
  return {.name = name, .kind = FieldKind::kPercent, .required = required, .min = 0, .max = 100};
}
constexpr FieldSpec Bool(std::string_view name, bool required = kOpt) {
  return {.name = name, .kind = FieldKind::kBoolean, .required = required};
}
constexpr FieldSpec Enum(std::string_view name, bool required, std::span<const std::string_view> values) {
  return {.name = name, .kind = FieldKind::kEnum, .required = required, .values = values};
}
constexpr FieldSpec Currency(std::string_view name = "currency", bool required = kOpt) {
  return {.name = name, .kind = FieldKind::kCurrency, .required = required};
}
constexpr FieldSpec Country(std::string_view name = "country") {
  return {.name = name, .kind = FieldKind::kCountry};
}
constexpr FieldSpec Timestamp(std::string_view name) { return {.name = name, .kind = FieldKind::kTimestamp}; }
constexpr FieldSpec Date(std::string_view name) { return {.name = name, .kind = FieldKind::kDate}; }
constexpr FieldSpec Object(std::string_view name) { return {.name = name, .kind = FieldKind::kObject}; }
constexpr FieldSpec IdArray(std::string_view name) {
  return {.name = name, .kind = FieldKind::kIdStringArray, .unique_items = true};
}
constexpr FieldSpec PlatformArray(std::string_view name) {
  return {.name = name, .kind = FieldKind::kPlatformArray, .unique_items = true};
}
constexpr FieldSpec Dropped(std::string_view name) { return {.name = name, .kind = FieldKind::kDropped}; }
// Adds a conditional requirement to a spec.
constexpr FieldSpec RequiredIf(FieldSpec spec, std::string_view field, std::string_view value = {}) {
  spec.required_if_field = field;
  spec.required_if_value = value;
  return spec;
}

// ---- Enumerations (docs/events.md section 9). ----
constexpr std::string_view kAuthProviders[] = {"email", "phone", "vk", "yandex", "sber", "gosuslugi",
                                               "telegram", "other"};
constexpr std::string_view kAuthMethods[] = {"password", "oauth", "qr", "sso", "token", "other"};
constexpr std::string_view kLogoutReasons[] = {"user", "timeout", "forced", "other"};
constexpr std::string_view kDeletionReasons[] = {"user_request", "admin", "inactivity", "other"};
constexpr std::string_view kPriceChangeReasons[] = {"regular", "sale", "regional", "other"};
constexpr std::string_view kPageTypes[] = {"home", "game", "search", "category", "sale", "wishlist",
                                          "cart", "developer", "news", "other"};
constexpr std::string_view kReferrerTypes[] = {"direct", "internal", "search_engine", "social", "ad", "email",
                                               "other"};
constexpr std::string_view kWishlistRemovalReasons[] = {"user_removed", "purchased", "other"};
constexpr std::string_view kItemTypes[] = {"game", "dlc", "bundle", "in_game_item"};
constexpr std::string_view kCartRemovalReasons[] = {"user_removed", "unavailable", "already_owned", "other"};
constexpr std::string_view kPaymentMethods[] = {"card", "sbp", "wallet", "gift_card", "mobile", "other"};
constexpr std::string_view kFailureReasons[] = {"declined", "insufficient_funds", "fraud_suspected", "timeout",
                                                "cancelled_by_user", "technical_error", "other"};
constexpr std::string_view kRefundReasons[] = {"user_request", "technical_issue", "accidental_purchase",
                                               "fraud", "chargeback", "other"};
constexpr std::string_view kLaunchSources[] = {"library", "store", "desktop_shortcut", "notification", "other"};
constexpr std::string_view kSessionEndReasons[] = {"user_exit", "crash", "timeout", "shutdown", "other"};
constexpr std::string_view kFriendMethods[] = {"search", "invite_link", "suggestion", "in_game", "other"};

// ---- Fields every type may carry: well-known fields (section 4) and section 7. ----
constexpr FieldSpec kCommonFields[] = {
    UserId("user_id"),
    Id("game_id"),
    Id("session_id"),
    Money("amount"),  // requires currency: checked for every type by the validator
    Currency(),
    Country(),
    {.name = "platform", .kind = FieldKind::kPlatform},
    {.name = "ip", .kind = FieldKind::kIpAddress},
    Id("device_id"),
    Str("app_version", kOpt, 32),
    Str("locale", kOpt, 35),
};

// ---- 9.1 Account ----
constexpr FieldSpec kUserRegistered[] = {
    Enum("auth_provider", kOpt, kAuthProviders),
    Str("utm_source", kOpt, 128),
    Str("utm_medium", kOpt, 128),
    Str("utm_campaign", kOpt, 128),
    UserId("referrer_user_id"),
    Bool("marketing_consent"),
    Dropped("email"),
    Dropped("phone"),
    Dropped("display_name"),
};
constexpr FieldSpec kUserLoggedIn[] = {
    Enum("auth_method", kOpt, kAuthMethods),
    Bool("two_factor"),
};
constexpr FieldSpec kUserLoggedOut[] = {
    Enum("reason", kOpt, kLogoutReasons),
};
constexpr FieldSpec kProfileUpdated[] = {
    {.name = "changed_fields", .kind = FieldKind::kFieldNameArray, .required = kReq, .min = 1, .max = 32,
     .unique_items = true},
    Country(),
    Str("locale", kOpt, 35),
    Dropped("email"),
    Dropped("phone"),
    Dropped("display_name"),
    Dropped("first_name"),
    Dropped("last_name"),
};
constexpr FieldSpec kUserDeleted[] = {
    Enum("reason", kOpt, kDeletionReasons),
    Timestamp("requested_at"),
};

// ---- 9.2 Catalog ----
constexpr FieldSpec kGamePublished[] = {
    Id("game_id", kReq),
    Id("developer_id", kReq),
    Id("publisher_id"),
    Str("title", kOpt, 256),
    {.name = "genres", .kind = FieldKind::kStringArray, .min = 0, .max = 16, .unique_items = true, .item_min = 1,
     .item_max = 64},
    Date("release_date"),
    Bool("is_free"),
    Price("price"),
    RequiredIf(Currency(), "price"),
    PlatformArray("platforms"),
};
constexpr FieldSpec kPriceChanged[] = {
    Id("game_id", kReq),
    Currency("currency", kReq),
    Price("old_price", kReq),
    Price("new_price", kReq),
    Percent("discount_percent"),
    Enum("reason", kOpt, kPriceChangeReasons),
    Id("sale_id"),
    Timestamp("valid_until"),
    Country(),
};

// ---- 9.3 Store ----
constexpr FieldSpec kPageViewed[] = {
    Enum("page_type", kReq, kPageTypes),
    RequiredIf(Id("game_id"), "page_type", "game"),
    {.name = "page_path", .kind = FieldKind::kString, .min = 0, .max = 512,
     .treatment = FieldTreatment::kStripQueryAndFragment},
    Enum("referrer_type", kOpt, kReferrerTypes),
    Str("utm_source", kOpt, 128),
    Str("utm_medium", kOpt, 128),
    Str("utm_campaign", kOpt, 128),
    Id("anonymous_id"),
};
constexpr FieldSpec kSearchPerformed[] = {
    {.name = "query", .kind = FieldKind::kText, .required = kReq, .min = 1, .max = 1024,
     .treatment = FieldTreatment::kMaskAndTruncate},
    Int("results_count", kReq, 0),
    Int("page", kOpt, 1),
    Object("applied_filters"),
    Id("anonymous_id"),
};
constexpr FieldSpec kWishlistItemAdded[] = {
    Id("game_id", kReq),
    Enum("source_page", kOpt, kPageTypes),
};
constexpr FieldSpec kWishlistItemRemoved[] = {
    Id("game_id", kReq),
    Enum("reason", kOpt, kWishlistRemovalReasons),
};

// ---- 9.4 Cart ----
constexpr FieldSpec kCartItemAdded[] = {
    Id("cart_id", kReq),
    Id("game_id", kReq),
    Money("amount", kReq),
    Currency("currency", kReq),
    Enum("item_type", kOpt, kItemTypes),
    Id("item_id"),
    Percent("discount_percent"),
    Bool("is_gift"),
};
constexpr FieldSpec kCartItemRemoved[] = {
    Id("cart_id", kReq),
    Id("game_id", kReq),
    Enum("item_type", kOpt, kItemTypes),
    Id("item_id"),
    Money("amount"),
    RequiredIf(Currency(), "amount"),
    Enum("reason", kOpt, kCartRemovalReasons),
};
constexpr FieldSpec kCheckoutStarted[] = {
    Id("cart_id", kReq),
    Money("amount", kReq),
    Currency("currency", kReq),
    Int("items_count", kReq, 1),
    IdArray("game_ids"),
    Id("order_id"),
    Enum("payment_method", kOpt, kPaymentMethods),
};

// ---- 9.5 Payments ----
constexpr FieldSpec kPurchaseCompleted[] = {
    Id("order_id", kReq),
    Id("game_id", kReq),
    Money("amount", kReq),
    Currency("currency", kReq),
    Enum("item_type", kOpt, kItemTypes),
    Id("item_id"),
    Enum("payment_method", kOpt, kPaymentMethods),
    Percent("discount_percent"),
    Bool("is_gift"),
    RequiredIf(UserId("recipient_user_id"), "is_gift", "true"),
    Bool("is_first_purchase"),
    Id("cart_id"),
};
constexpr FieldSpec kPurchaseFailed[] = {
    Id("order_id", kReq),
    Money("amount", kReq),
    Currency("currency", kReq),
    Enum("failure_reason", kReq, kFailureReasons),
    Int("attempt", kOpt, 1),
    Enum("payment_method", kOpt, kPaymentMethods),
    IdArray("game_ids"),
    Id("game_id"),
};
constexpr FieldSpec kRefundCompleted[] = {
    Id("order_id", kReq),
    Id("game_id", kReq),
    Money("amount", kReq),
    Currency("currency", kReq),
    Id("refund_id"),
    Enum("item_type", kOpt, kItemTypes),
    Id("item_id"),
    Enum("reason", kOpt, kRefundReasons),
    Int("playtime_seconds", kOpt, 0),
    Int("days_since_purchase", kOpt, 0),
};

// ---- 9.6 Library and sessions ----
constexpr FieldSpec kGameInstalled[] = {
    Id("game_id", kReq),
    Str("game_version", kOpt, 64),
    Int("install_size_bytes", kOpt, 0),
    Int("install_duration_seconds", kOpt, 0),
    Bool("is_reinstall"),
};
constexpr FieldSpec kSessionStarted[] = {
    Id("game_id", kReq),
    Id("session_id", kReq),
    Str("game_version", kOpt, 64),
    Enum("launch_source", kOpt, kLaunchSources),
};
constexpr FieldSpec kSessionEnded[] = {
    Id("game_id", kReq),
    Id("session_id", kReq),
    Int("duration_seconds", kReq, 0, 604800),
    Enum("end_reason", kOpt, kSessionEndReasons),
};

// ---- 9.7 Achievements ----
constexpr FieldSpec kAchievementUnlocked[] = {
    Id("game_id", kReq),
    Id("achievement_id", kReq),
    Id("session_id"),
    Str("achievement_name", kOpt, 256),
    Int("points", kOpt, 0),
    Num("global_unlock_percent", kOpt, 0, 100),
};

// ---- 9.8 Reviews ----
constexpr FieldSpec kReviewPosted[] = {
    Id("game_id", kReq),
    Id("review_id", kReq),
    Int("rating", kOpt, 1, 5),
    Bool("recommended"),
    {.name = "text", .kind = FieldKind::kText, .min = 0, .max = kNoMax,
     .treatment = FieldTreatment::kDropRecordLength},
    Str("language", kOpt, 35),
    Int("playtime_seconds", kOpt, 0),
    Bool("is_update"),
};

// ---- 9.9 Social ----
constexpr FieldSpec kFriendAdded[] = {
    {.name = "friend_user_id", .kind = FieldKind::kUserId, .required = kReq, .must_differ_from_user = true},
    Id("friendship_id"),
    Enum("method", kOpt, kFriendMethods),
};

// ---- 9.10 Experiments ----
constexpr FieldSpec kExposureRecorded[] = {
    Id("experiment", kReq),
    Id("variant", kReq, 64),
    Str("surface", kOpt, 64),
};

// ---- The catalog: section 8, one entry per type. ----
constexpr UserRule kRequired = UserRule::kRequired;
constexpr UserRule kOptional = UserRule::kOptional;
constexpr UserRule kNone = UserRule::kNone;

const TypeSchema kCatalog[] = {
    {"com.platform.account.user.registered.v1", kRequired, kUserRegistered},
    {"com.platform.account.user.logged_in.v1", kRequired, kUserLoggedIn},
    {"com.platform.account.user.logged_out.v1", kRequired, kUserLoggedOut},
    {"com.platform.account.profile.updated.v1", kRequired, kProfileUpdated},
    {"com.platform.account.user.deleted.v1", kRequired, kUserDeleted},
    {"com.platform.catalog.game.published.v1", kNone, kGamePublished},
    {"com.platform.catalog.price.changed.v1", kNone, kPriceChanged},
    {"com.platform.store.page.viewed.v1", kOptional, kPageViewed},
    {"com.platform.store.search.performed.v1", kOptional, kSearchPerformed},
    {"com.platform.store.wishlist_item.added.v1", kRequired, kWishlistItemAdded},
    {"com.platform.store.wishlist_item.removed.v1", kRequired, kWishlistItemRemoved},
    {"com.platform.cart.item.added.v1", kRequired, kCartItemAdded},
    {"com.platform.cart.item.removed.v1", kRequired, kCartItemRemoved},
    {"com.platform.cart.checkout.started.v1", kRequired, kCheckoutStarted},
    {"com.platform.payments.purchase.completed.v1", kRequired, kPurchaseCompleted},
    {"com.platform.payments.purchase.failed.v1", kRequired, kPurchaseFailed},
    {"com.platform.payments.refund.completed.v1", kRequired, kRefundCompleted},
    {"com.platform.library.game.installed.v1", kRequired, kGameInstalled},
    {"com.platform.library.session.started.v1", kRequired, kSessionStarted},
    {"com.platform.library.session.ended.v1", kRequired, kSessionEnded},
    {"com.platform.achievements.achievement.unlocked.v1", kRequired, kAchievementUnlocked},
    {"com.platform.reviews.review.posted.v1", kRequired, kReviewPosted, {"rating", "recommended"}},
    {"com.platform.social.friend.added.v1", kRequired, kFriendAdded},
    {"com.platform.experiments.exposure.recorded.v1", kRequired, kExposureRecorded},
};

// Type name -> schema: open addressing, hashed 8 bytes at a time (a type name is ~40 bytes; std::hash and an
// unordered_map bucket walk cost several times more, once per event).
class TypeIndex {
 public:
  TypeIndex() {
    static_assert(std::size(kCatalog) * 2 < kSlots);
    slots_.fill(nullptr);
    for (const TypeSchema& schema : kCatalog) {
      size_t slot = Hash(schema.type);
      while (slots_[slot] != nullptr) slot = (slot + 1) & (kSlots - 1);
      slots_[slot] = &schema;
    }
  }

  const TypeSchema* Find(std::string_view type) const {
    for (size_t slot = Hash(type);; slot = (slot + 1) & (kSlots - 1)) {
      const TypeSchema* schema = slots_[slot];
      if (schema == nullptr || schema->type == type) return schema;
    }
  }

 private:
  static constexpr size_t kSlots = 256;

  static size_t Hash(std::string_view text) {
    constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
    uint64_t hash = text.size() * kMul;
    size_t pos = 0;
    for (; pos + 8 <= text.size(); pos += 8) {
      uint64_t word;
      std::memcpy(&word, text.data() + pos, 8);
      hash = (hash ^ word) * kMul;
      hash ^= hash >> 29;
    }
    for (; pos < text.size(); ++pos) hash = (hash ^ static_cast<unsigned char>(text[pos])) * kMul;
    return static_cast<size_t>(hash >> 56);  // the top byte: kSlots = 256
  }

  std::array<const TypeSchema*, kSlots> slots_;
};

const TypeIndex& CatalogIndex() {
  static const TypeIndex index;
  return index;
}

WellKnownColumn ColumnForName(std::string_view name) {
  if (name == "user_id") return WellKnownColumn::kUserId;
  if (name == "game_id") return WellKnownColumn::kGameId;
  if (name == "session_id") return WellKnownColumn::kSessionId;
  if (name == "amount") return WellKnownColumn::kAmount;
  if (name == "currency") return WellKnownColumn::kCurrency;
  if (name == "country") return WellKnownColumn::kCountry;
  if (name == "platform") return WellKnownColumn::kPlatform;
  return WellKnownColumn::kNone;
}

// Lookups in catalog order; the last one is for generic types (schema nullptr).
const std::vector<FieldLookup>& FieldLookups() {
  static const auto* lookups = [] {
    auto* built = new std::vector<FieldLookup>();
    built->reserve(std::size(kCatalog) + 1);
    for (const TypeSchema& schema : kCatalog) built->emplace_back(&schema);
    built->emplace_back(nullptr);
    return built;
  }();
  return *lookups;
}

}  // namespace

bool TypeSchema::data_required() const {
  for (const FieldSpec& field : fields) {
    if (field.required) return true;
  }
  return false;
}

FieldLookup::FieldLookup(const TypeSchema* schema) {
  slots_.fill(-1);
  count_ = FieldCount(schema);
  if (count_ > kMaxFields) {  // static tables: a catalog edit broke the 64-field bound (validator bitmaps)
    std::fprintf(stderr, "analytics events: a catalog type has more than 64 fields\n");
    std::abort();
  }
  for (size_t field_idx = 0; field_idx < count_; ++field_idx) {
    const FieldSpec& spec = FieldAt(schema, static_cast<int>(field_idx));
    specs_[field_idx] = &spec;
    columns_[field_idx] = ColumnForName(spec.name);
    size_t slot = Hash(spec.name);
    while (slots_[slot] >= 0) slot = (slot + 1) & (kSlots - 1);
    slots_[slot] = static_cast<int8_t>(field_idx);
  }
}

const FieldLookup& FieldLookupOf(const TypeSchema* schema) {
  const std::vector<FieldLookup>& lookups = FieldLookups();
  return schema != nullptr ? lookups[static_cast<size_t>(schema - kCatalog)] : lookups.back();
}

const TypeSchema* FindTypeSchema(std::string_view type) { return CatalogIndex().Find(type); }

std::span<const TypeSchema> AllTypeSchemas() { return kCatalog; }

std::span<const FieldSpec> CommonFields() { return kCommonFields; }

int FindFieldIndex(const TypeSchema* schema, std::string_view name) { return FieldLookupOf(schema).Find(name); }

WellKnownColumn ColumnOf(const TypeSchema* schema, int field_idx) { return FieldLookupOf(schema).Column(field_idx); }

const FieldSpec& FieldAt(const TypeSchema* schema, int field_idx) {
  const size_t own = schema != nullptr ? schema->fields.size() : 0;
  const auto index = static_cast<size_t>(field_idx);
  return index < own ? schema->fields[index] : kCommonFields[index - own];
}

size_t FieldCount(const TypeSchema* schema) {
  return (schema != nullptr ? schema->fields.size() : 0) + std::size(kCommonFields);
}

const FieldSpec* FindFieldSpec(const TypeSchema* schema, std::string_view name) {
  if (schema != nullptr) {
    for (const FieldSpec& field : schema->fields) {
      if (field.name == name) return &field;
    }
  }
  for (const FieldSpec& field : kCommonFields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

}  // namespace analytics::events
