// The generator's fixed vocabulary and distribution tables (docs/generator.md documents every number here).
// Internal to analytics_gen. Thread-safety: constants only.
#pragma once

#include <cstdint>
#include <string_view>

namespace analytics::gen::model {

// ---- Event types (docs/events.md section 8) ----

enum Type : uint8_t {
  kRegistered,
  kLoggedIn,
  kLoggedOut,
  kProfileUpdated,
  kUserDeleted,
  kGamePublished,
  kPriceChanged,
  kPageViewed,
  kSearchPerformed,
  kWishlistAdded,
  kWishlistRemoved,
  kCartItemAdded,
  kCartItemRemoved,
  kCheckoutStarted,
  kPurchaseCompleted,
  kPurchaseFailed,
  kRefundCompleted,
  kGameInstalled,
  kSessionStarted,
  kSessionEnded,
  kAchievementUnlocked,
  kReviewPosted,
  kFriendAdded,
  kExposureRecorded,
  kTypeCount
};

struct TypeInfo {
  std::string_view name;
  std::string_view source;
};

inline constexpr TypeInfo kTypes[kTypeCount] = {
    {"com.platform.account.user.registered.v1", "/services/account"},
    {"com.platform.account.user.logged_in.v1", "/services/account"},
    {"com.platform.account.user.logged_out.v1", "/services/account"},
    {"com.platform.account.profile.updated.v1", "/services/account"},
    {"com.platform.account.user.deleted.v1", "/services/account"},
    {"com.platform.catalog.game.published.v1", "/services/catalog"},
    {"com.platform.catalog.price.changed.v1", "/services/catalog"},
    {"com.platform.store.page.viewed.v1", "/services/store"},
    {"com.platform.store.search.performed.v1", "/services/store"},
    {"com.platform.store.wishlist_item.added.v1", "/services/store"},
    {"com.platform.store.wishlist_item.removed.v1", "/services/store"},
    {"com.platform.cart.item.added.v1", "/services/cart"},
    {"com.platform.cart.item.removed.v1", "/services/cart"},
    {"com.platform.cart.checkout.started.v1", "/services/cart"},
    {"com.platform.payments.purchase.completed.v1", "/services/payments"},
    {"com.platform.payments.purchase.failed.v1", "/services/payments"},
    {"com.platform.payments.refund.completed.v1", "/services/payments"},
    {"com.platform.library.game.installed.v1", "/services/library"},
    {"com.platform.library.session.started.v1", "/services/library"},
    {"com.platform.library.session.ended.v1", "/services/library"},
    {"com.platform.achievements.achievement.unlocked.v1", "/services/achievements"},
    {"com.platform.reviews.review.posted.v1", "/services/reviews"},
    {"com.platform.social.friend.added.v1", "/services/social"},
    // The source of an exposure is the service showing the variant: /services/cart for checkout_v2,
    // /services/store for store_home_hero_v2 (see kExperiments).
    {"com.platform.experiments.exposure.recorded.v1", "/services/cart"},
};

// ---- Experiments ----

struct ExperimentInfo {
  std::string_view key;
  std::string_view source;
  std::string_view surface;
  std::string_view variants[2];
};
inline constexpr int kCheckoutV2 = 0;
inline constexpr int kStoreHomeHero = 1;
inline constexpr ExperimentInfo kExperiments[2] = {
    {"checkout_v2", "/services/cart", "cart", {"A", "B"}},
    {"store_home_hero_v2", "/services/store", "store_home", {"control", "b"}},
};
// checkout_v2: probability that a cart with items proceeds to checkout (A, B). B is +20% relative.
inline constexpr double kCheckoutProbability[2] = {0.46, 0.58};

// ---- Countries, currencies, platforms ----

enum Currency : uint8_t { kRUB, kKZT, kBYN, kAMD, kUSD, kEUR, kCurrencyCount };
struct CurrencyInfo {
  std::string_view code;
  int64_t rate_num;   // amount in this currency = RUB amount * rate_num / rate_den
  int64_t rate_den;
  bool whole_units;   // prices rounded to whole units (KZT, AMD)
};
inline constexpr CurrencyInfo kCurrencies[kCurrencyCount] = {
    {"RUB", 1, 1, false},     {"KZT", 52, 10, true},     {"BYN", 35, 1000, false},
    {"AMD", 43, 10, true},    {"USD", 11, 1000, false},  {"EUR", 102, 10000, false},
};

struct CountryInfo {
  std::string_view code;
  int weight;                // per 10000 users
  int tz_hours;              // UTC offset used for the daily cycle (RU: see kRussiaTz)
  std::string_view locale_a; // 70% of users
  std::string_view locale_b; // 30%
  Currency foreign_currency; // wallet currency of foreign_percent of the country's users (the rest: RUB)
  int foreign_percent;
  bool russian_speaking;     // review language "ru" (else "en")
};
inline constexpr CountryInfo kCountries[] = {
    {"RU", 7200, 3, "ru-RU", "ru-RU", kRUB, 0, true},   {"KZ", 800, 5, "ru-KZ", "kk-KZ", kKZT, 30, true},
    {"BY", 500, 3, "ru-BY", "be-BY", kBYN, 20, true},   {"UZ", 400, 5, "uz-UZ", "ru-UZ", kUSD, 5, true},
    {"AM", 250, 4, "hy-AM", "ru-AM", kAMD, 15, true},   {"KG", 150, 6, "ky-KG", "ru-KG", kUSD, 5, true},
    {"GE", 150, 4, "ka-GE", "ru-GE", kUSD, 20, false},  {"AZ", 150, 4, "az-AZ", "ru-AZ", kUSD, 20, true},
    {"TR", 100, 3, "tr-TR", "en-US", kUSD, 30, false},  {"RS", 100, 1, "sr-RS", "en-US", kEUR, 30, false},
    {"DE", 100, 1, "de-DE", "en-US", kEUR, 60, false},  {"US", 100, -5, "en-US", "en-US", kUSD, 60, false},
};
inline constexpr int kCountryCount = static_cast<int>(sizeof(kCountries) / sizeof(kCountries[0]));
// Russian users' time zones: UTC+3 (75%), +5 (15%), +7 (10%).
inline constexpr int kRussiaTz[3] = {3, 5, 7};
inline constexpr int kRussiaTzWeight[3] = {75, 15, 10};

enum Platform : uint8_t { kWindows, kMacos, kLinux, kSteamdeck, kAndroid, kIos, kPlatformCount };
inline constexpr uint8_t kNoPlatform = 255;
inline constexpr std::string_view kPlatforms[kPlatformCount] = {"windows",   "macos",   "linux",
                                                                 "steamdeck", "android", "ios"};
// Primary (PC) platform of a user.
inline constexpr int kPcPlatformWeight[4] = {80, 6, 4, 10};
// 35% of users also browse the store from the mobile app (android 70%, ios 30%), on 30% of their visits.
inline constexpr double kMobileUserShare = 0.35;
inline constexpr double kMobileVisitShare = 0.30;

// ---- Time ----

// Local-time hour-of-day weights (evening peak at 20-21 h local).
inline constexpr int kHourWeight[24] = {30, 18, 10, 6, 4, 4, 6, 10, 15, 20, 25, 30,
                                        34, 36, 38, 42, 48, 56, 66, 76, 82, 80, 66, 48};
// Activity multiplier by UTC weekday, 0 = Sunday.
inline constexpr double kWeekdayFactor[7] = {1.20, 0.95, 0.93, 0.93, 0.95, 1.03, 1.24};

// ---- Store vocabulary ----

enum PageType : uint8_t {
  kHome, kGame, kSearch, kCategory, kSale, kWishlist, kCart, kDeveloper, kNews, kOther, kPageTypeCount
};
inline constexpr std::string_view kPageTypes[kPageTypeCount] = {"home", "game",      "search",    "category", "sale",
                                                                "wishlist", "cart", "developer", "news", "other"};
inline constexpr std::string_view kReferrerTypes[] = {"direct", "internal", "search_engine", "social",
                                                      "ad",     "email",    "other"};
inline constexpr int kExternalReferrerWeight[7] = {45, 0, 20, 12, 12, 6, 5};

inline constexpr std::string_view kGenres[16] = {"action",   "rpg",    "strategy", "simulation", "adventure", "indie",
                                                 "casual",   "shooter", "racing",  "sports",     "puzzle",    "horror",
                                                 "survival", "open_world", "multiplayer", "roguelike"};
inline constexpr std::string_view kTitleAdjectives[20] = {
    "Northern", "Silent", "Iron",  "Crimson", "Lost",    "Eternal", "Hidden", "Frozen", "Wild",  "Last",
    "Broken",   "Golden", "Dark",  "Neon",    "Ancient", "Steel",   "Shadow", "Star",   "Deep",  "Red"};
inline constexpr std::string_view kTitleNouns[20] = {
    "Lights",  "Frontier", "Kingdom", "Empire", "Signal", "Horizon", "Legends", "Depths", "Protocol", "Outpost",
    "Voyage",  "Tactics",  "Racers",  "Tales",  "Skies",  "Colony",  "Arena",   "Harbor", "Dungeon",  "Odyssey"};
inline constexpr std::string_view kAchievementPrefixes[8] = {"First",       "Master of",   "Legend of", "Hunter of",
                                                             "Savior of",   "Explorer of", "Champion of", "Ghost of"};
inline constexpr std::string_view kSearchWordsRu[12] = {"стратегия", "гонки",     "выживание", "шутер",
                                                        "кооператив", "хоррор",   "симулятор", "инди",
                                                        "рпг",        "онлайн",   "бесплатно", "скидки"};

// Catalog price points (RUB) and their weights; 10% of games are free to play.
inline constexpr int kPricePoints[] = {99,  149, 199, 249,  299,  349,  399,  449,  499,  599,  699,  799, 899,
                                       999, 1199, 1299, 1499, 1799, 1999, 2299, 2499, 2999, 3499, 3999, 4999};
inline constexpr int kPriceWeights[] = {12, 12, 18, 12, 18, 10, 18, 8, 18, 12, 12, 10, 6,
                                        12, 6,  6,  8,  4,  6,  2,  4, 4,  2,  2,  1};
inline constexpr int kPricePointCount = static_cast<int>(sizeof(kPricePoints) / sizeof(kPricePoints[0]));
inline constexpr double kFreeGameShare = 0.10;
inline constexpr int kDiscounts[] = {10, 15, 20, 25, 30, 33, 40, 50, 60, 66, 75};
inline constexpr int kDiscountWeights[] = {8, 6, 12, 10, 12, 6, 10, 12, 6, 4, 4};

// ---- Account ----

inline constexpr std::string_view kAuthProviders[] = {"email", "phone",     "vk",       "yandex",
                                                      "sber",  "gosuslugi", "telegram", "other"};
inline constexpr int kAuthProviderWeight[8] = {35, 8, 20, 12, 5, 5, 10, 5};
inline constexpr std::string_view kAuthMethods[] = {"password", "oauth", "qr", "sso", "token", "other"};
inline constexpr int kAuthMethodWeight[6] = {40, 30, 10, 3, 15, 2};
inline constexpr std::string_view kLogoutReasons[] = {"user", "timeout", "forced", "other"};
inline constexpr std::string_view kDeleteReasons[] = {"user_request", "admin", "inactivity", "other"};
inline constexpr int kDeleteReasonWeight[4] = {80, 5, 10, 5};
inline constexpr std::string_view kProfileFields[7] = {"avatar",  "display_name", "locale", "privacy",
                                                       "country", "email",        "phone"};
inline constexpr std::string_view kUtmSources[] = {"vk_ads",  "yandex_direct", "telegram_ads",
                                                   "youtube", "twitch",        "mytarget"};
inline constexpr std::string_view kUtmMediums[] = {"cpc", "social", "influencer", "email", "referral"};
inline constexpr std::string_view kUtmCampaigns[] = {"launch_2024", "winter_sale", "streamer_promo", "retargeting",
                                                     "new_releases"};

// ---- Payments ----

inline constexpr std::string_view kPaymentMethods[] = {"card", "sbp", "wallet", "gift_card", "mobile", "other"};
inline constexpr int kPaymentMethodWeight[6] = {45, 30, 12, 5, 5, 3};
inline constexpr std::string_view kFailureReasons[] = {"declined",          "insufficient_funds", "fraud_suspected",
                                                       "timeout",           "cancelled_by_user",  "technical_error",
                                                       "other"};
inline constexpr int kFailureReasonWeight[7] = {30, 25, 3, 10, 20, 10, 2};
inline constexpr std::string_view kRefundReasons[] = {"user_request", "technical_issue", "accidental_purchase",
                                                      "fraud",        "chargeback",      "other"};
inline constexpr int kRefundReasonWeight[6] = {45, 25, 20, 3, 2, 5};
inline constexpr std::string_view kCartRemoveReasons[] = {"user_removed", "unavailable", "already_owned", "other"};
inline constexpr std::string_view kPriceReasons[] = {"regular", "sale", "regional", "other"};

// ---- Library ----

inline constexpr std::string_view kLaunchSources[] = {"library", "store", "desktop_shortcut", "notification", "other"};
inline constexpr int kLaunchSourceWeight[5] = {70, 8, 15, 4, 3};
inline constexpr std::string_view kEndReasons[] = {"user_exit", "crash", "timeout", "shutdown", "other"};
inline constexpr int kEndReasonWeight[5] = {930, 30, 10, 20, 10};

// ---- Social and reviews ----

inline constexpr std::string_view kFriendMethods[] = {"search", "invite_link", "suggestion", "in_game", "other"};
inline constexpr int kFriendMethodWeight[5] = {30, 15, 30, 20, 5};

inline constexpr std::string_view kReviewPhrasesEn[] = {
    "Great game",
    "Beautiful world, a few bugs in chapter 2",
    "The co-op mode is \"amazing\"",
    "Too short for the price",
    "Runs well on the Steam Deck",
    "Soundtrack is fantastic",
    "Crashes after the last update",
    "Worth it on sale",
    "The story hooked me from the first hour",
    "Controls feel clunky",
    "Best purchase this year",
    "Needs more content",
};
inline constexpr std::string_view kReviewPhrasesRu[] = {
    "Отличная игра",
    "Красивый мир, но есть баги",
    "Кооператив просто «огонь»",
    "Слишком коротко для такой цены",
    "Оптимизация ужасная",
    "Сюжет затягивает с первого часа",
    "Рекомендую всем друзьям",
    "Ждём продолжения",
    "Стоит своих денег",
    "Управление неудобное",
    "Лучшая покупка за год",
    "Саундтрек шикарный",
};

}  // namespace analytics::gen::model
