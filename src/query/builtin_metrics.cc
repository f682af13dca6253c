// The built-in KPI definitions. Event types and their fields are the contract of docs/events.md; the metric
// semantics are docs/metrics.md ("Built-in KPIs"), which must be kept in step with this file.
#include "query/builtin_metrics.h"

#include <string>
#include <tuple>
#include <utility>

namespace analytics::query {
namespace {

using nlohmann::json;

// Event types (docs/events.md).
constexpr char kUserRegistered[] = "com.platform.account.user.registered.v1";
constexpr char kUserLoggedIn[] = "com.platform.account.user.logged_in.v1";
constexpr char kUserLoggedOut[] = "com.platform.account.user.logged_out.v1";
constexpr char kProfileUpdated[] = "com.platform.account.profile.updated.v1";
constexpr char kPageViewed[] = "com.platform.store.page.viewed.v1";
constexpr char kSearchPerformed[] = "com.platform.store.search.performed.v1";
constexpr char kWishlistItemAdded[] = "com.platform.store.wishlist_item.added.v1";
constexpr char kWishlistItemRemoved[] = "com.platform.store.wishlist_item.removed.v1";
constexpr char kCartItemAdded[] = "com.platform.cart.item.added.v1";
constexpr char kCartItemRemoved[] = "com.platform.cart.item.removed.v1";
constexpr char kCheckoutStarted[] = "com.platform.cart.checkout.started.v1";
constexpr char kPurchaseCompleted[] = "com.platform.payments.purchase.completed.v1";
constexpr char kPurchaseFailed[] = "com.platform.payments.purchase.failed.v1";
constexpr char kRefundCompleted[] = "com.platform.payments.refund.completed.v1";
constexpr char kGameInstalled[] = "com.platform.library.game.installed.v1";
constexpr char kSessionStarted[] = "com.platform.library.session.started.v1";
constexpr char kSessionEnded[] = "com.platform.library.session.ended.v1";
constexpr char kAchievementUnlocked[] = "com.platform.achievements.achievement.unlocked.v1";
constexpr char kReviewPosted[] = "com.platform.reviews.review.posted.v1";
constexpr char kFriendAdded[] = "com.platform.social.friend.added.v1";

// "Active" means the user did something on the platform: every user-initiated event type of the catalog.
// Left out on purpose: catalog events (no user), refund.completed (finished by the payment service, often
// days after the user asked), user.deleted (the user is erased), experiments exposure (a by-product of
// another event, and may be logged server-side for users who are not present).
json ActiveUserEventTypes() {
  return json::array({kUserRegistered, kUserLoggedIn, kUserLoggedOut, kProfileUpdated, kPageViewed,
                      kSearchPerformed, kWishlistItemAdded, kWishlistItemRemoved, kCartItemAdded, kCartItemRemoved,
                      kCheckoutStarted, kPurchaseCompleted, kPurchaseFailed, kGameInstalled, kSessionStarted,
                      kSessionEnded, kAchievementUnlocked, kReviewPosted, kFriendAdded});
}

// Fields every built-in has. Tags are "kpi" plus one category: engagement, monetization or acquisition.
struct Common {
  std::string name;
  std::string title;
  std::string description;
  std::string aggregation;
  std::string unit;
  std::string category;
  std::string owner_service;
  json dimensions;  // array of property names
  bool is_realtime;
};

json Body(const Common& common) {
  return json{{"name", common.name},
              {"title", common.title},
              {"description", common.description},
              {"aggregation", common.aggregation},
              {"unit", common.unit},
              {"tags", json::array({"kpi", common.category})},
              {"owner_service", common.owner_service},
              {"dimensions", common.dimensions},
              {"is_realtime", common.is_realtime}};
}

json WithEvents(json body, json event_types) {
  body["event_types"] = std::move(event_types);
  return body;
}

json Filter(const char* property, const char* op, json value) {
  return json{{"property", property}, {"op", op}, {"value", std::move(value)}};
}

json Ratio(const Common& common, const char* numerator, const char* denominator) {
  json body = Body(common);
  body["numerator"] = numerator;
  body["denominator"] = denominator;
  return body;
}

// The dimensions of most built-ins: the well-known columns of docs/events.md.
json GameGeo() { return json::array({"game_id", "country", "platform"}); }

}  // namespace

std::vector<json> BuiltinMetricDefinitionBodies() {
  std::vector<json> bodies;

  // --- Engagement: active users.
  bodies.push_back(WithEvents(
      Body({.name = "dau",
            .title = "Daily active users",
            .description = "Distinct users with at least one user-initiated event in the bucket: every catalog event "
                           "type with a user except account.user.deleted, payments.refund.completed and "
                           "experiments.exposure.recorded (docs/metrics.md, Active user). Anonymous events do not "
                           "count. Read at day granularity; at hour granularity it is hourly active users.",
            .aggregation = "unique_users",
            .unit = "users",
            .category = "engagement",
            .owner_service = "analytics",
            .dimensions = GameGeo(),
            .is_realtime = true}),
      ActiveUserEventTypes()));
  for (const auto& [name, title, days] : {std::tuple{"wau", "Weekly active users", 7},
                                          std::tuple{"mau", "Monthly active users", 30}}) {
    json body = WithEvents(
        Body({.name = name,
              .title = title,
              .description = "Distinct users with at least one user-initiated event (the same event types as dau) "
                             "in the rolling window of " + std::to_string(days) +
                             " days that ends with each bucket.",
              .aggregation = "unique_users",
              .unit = "users",
              .category = "engagement",
              .owner_service = "analytics",
              .dimensions = GameGeo(),
              .is_realtime = false}),
        ActiveUserEventTypes());
    body["window_days"] = days;
    bodies.push_back(std::move(body));
  }

  // --- Acquisition.
  bodies.push_back(WithEvents(Body({.name = "new_users",
                                    .title = "New users",
                                    .description = "Accounts registered in the bucket (count of "
                                                   "account.user.registered events).",
                                    .aggregation = "count",
                                    .unit = "users",
                                    .category = "acquisition",
                                    .owner_service = "account",
                                    .dimensions = json::array({"country", "platform", "auth_provider",
                                                               "utm_source", "utm_medium", "utm_campaign"}),
                                    .is_realtime = true}),
                              json::array({kUserRegistered})));

  // --- Engagement: play sessions.
  bodies.push_back(WithEvents(Body({.name = "sessions",
                                    .title = "Game sessions",
                                    .description = "Game sessions started in the bucket (count of "
                                                   "library.session.started events, i.e. game launches).",
                                    .aggregation = "count",
                                    .unit = "sessions",
                                    .category = "engagement",
                                    .owner_service = "library",
                                    .dimensions = GameGeo(),
                                    .is_realtime = true}),
                              json::array({kSessionStarted})));
  {
    json body = WithEvents(Body({.name = "avg_session_length_seconds",
                                 .title = "Average session length",
                                 .description = "Mean duration_seconds of the game sessions that ended in the "
                                                "bucket (library.session.ended events).",
                                 .aggregation = "avg",
                                 .unit = "seconds",
                                 .category = "engagement",
                                 .owner_service = "library",
                                 .dimensions = GameGeo(),
                                 .is_realtime = false}),
                           json::array({kSessionEnded}));
    body["property"] = "duration_seconds";
    bodies.push_back(std::move(body));
  }
  {
    json body = Body({.name = "peak_concurrent_players",
                      .title = "Peak concurrent players",
                      .description = "Highest number of game sessions open at the same moment within the bucket. "
                                     "A library.session.started event opens the session named by its "
                                     "session_id, the matching library.session.ended event closes it; a session "
                                     "with no end closes 12 hours after it started. Groups take the dimension "
                                     "values of the start event.",
                      .aggregation = "peak_concurrent",
                      .unit = "sessions",
                      .category = "engagement",
                      .owner_service = "library",
                      .dimensions = GameGeo(),
                      .is_realtime = true});
    body["concurrency"] = {{"start_event_type", kSessionStarted},
                           {"end_event_type", kSessionEnded},
                           {"key_property", "session_id"},
                           {"max_session_seconds", 43200}};
    bodies.push_back(std::move(body));
  }

  // --- Monetization. Revenue counts RUB only: amounts in different currencies are never added together.
  const json rub_only = json::array({Filter("currency", "eq", "RUB")});
  {
    json body = WithEvents(Body({.name = "revenue_gross_rub",
                                 .title = "Gross revenue, RUB",
                                 .description = "Sum of amount over payments.purchase.completed events paid in "
                                                "RUB (refunds not deducted).",
                                 .aggregation = "sum",
                                 .unit = "RUB",
                                 .category = "monetization",
                                 .owner_service = "payments",
                                 .dimensions = GameGeo(),
                                 .is_realtime = true}),
                           json::array({kPurchaseCompleted}));
    body["property"] = "amount";
    body["filters"] = rub_only;
    bodies.push_back(std::move(body));
  }
  {
    json body = WithEvents(Body({.name = "revenue_rub",
                                 .title = "Net revenue, RUB",
                                 .description = "Refund-aware revenue: sum of amount over "
                                                "payments.purchase.completed events minus sum of amount over "
                                                "payments.refund.completed events (weight -1), RUB only. A refund "
                                                "counts in the bucket where it completed, so a bucket can be "
                                                "negative.",
                                 .aggregation = "sum",
                                 .unit = "RUB",
                                 .category = "monetization",
                                 .owner_service = "payments",
                                 .dimensions = GameGeo(),
                                 .is_realtime = true}),
                           json::array({kPurchaseCompleted, kRefundCompleted}));
    body["property"] = "amount";
    body["event_weights"] = {{kRefundCompleted, -1}};
    body["filters"] = rub_only;
    bodies.push_back(std::move(body));
  }
  bodies.push_back(WithEvents(Body({.name = "purchases_count",
                                    .title = "Purchases",
                                    .description = "Completed purchases (count of payments.purchase.completed "
                                                   "events, one per purchased item), any currency.",
                                    .aggregation = "count",
                                    .unit = "purchases",
                                    .category = "monetization",
                                    .owner_service = "payments",
                                    .dimensions = GameGeo(),
                                    .is_realtime = false}),
                              json::array({kPurchaseCompleted})));
  bodies.push_back(WithEvents(Body({.name = "refunds_count",
                                    .title = "Refunds",
                                    .description = "Completed refunds (count of payments.refund.completed events, "
                                                   "one per refunded item), any currency.",
                                    .aggregation = "count",
                                    .unit = "refunds",
                                    .category = "monetization",
                                    .owner_service = "payments",
                                    .dimensions = GameGeo(),
                                    .is_realtime = false}),
                              json::array({kRefundCompleted})));
  {
    json body = WithEvents(Body({.name = "paying_users",
                                 .title = "Paying users",
                                 .description = "Distinct users with at least one payments.purchase.completed "
                                                "event with amount > 0 in the bucket, any currency.",
                                 .aggregation = "unique_users",
                                 .unit = "users",
                                 .category = "monetization",
                                 .owner_service = "payments",
                                 .dimensions = GameGeo(),
                                 .is_realtime = false}),
                           json::array({kPurchaseCompleted}));
    body["filters"] = json::array({Filter("amount", "gt", 0)});
    bodies.push_back(std::move(body));
  }
  bodies.push_back(Ratio({.name = "arpu",
                          .title = "ARPU, RUB",
                          .description = "Average revenue per active user: revenue_rub / dau, per bucket and "
                                         "group; null when dau is 0.",
                          .aggregation = "ratio",
                          .unit = "RUB",
                          .category = "monetization",
                          .owner_service = "analytics",
                          .dimensions = GameGeo(),
                          .is_realtime = false},
                         "revenue_rub", "dau"));
  bodies.push_back(Ratio({.name = "arppu",
                          .title = "ARPPU, RUB",
                          .description = "Average revenue per paying user: revenue_rub / paying_users, per bucket "
                                         "and group; null when paying_users is 0.",
                          .aggregation = "ratio",
                          .unit = "RUB",
                          .category = "monetization",
                          .owner_service = "payments",
                          .dimensions = GameGeo(),
                          .is_realtime = false},
                         "revenue_rub", "paying_users"));
  bodies.push_back(Ratio({.name = "payer_conversion",
                          .title = "Payer conversion",
                          .description = "Share of active users who paid: paying_users / dau, per bucket and "
                                         "group; null when dau is 0.",
                          .aggregation = "ratio",
                          .unit = "ratio",
                          .category = "monetization",
                          .owner_service = "analytics",
                          .dimensions = GameGeo(),
                          .is_realtime = false},
                         "paying_users", "dau"));
  bodies.push_back(Ratio({.name = "refund_rate",
                          .title = "Refund rate",
                          .description = "Refunds per purchase: refunds_count / purchases_count, per bucket and "
                                         "group; null when purchases_count is 0. Refunds count in the bucket "
                                         "where they completed, not where the purchase happened.",
                          .aggregation = "ratio",
                          .unit = "ratio",
                          .category = "monetization",
                          .owner_service = "payments",
                          .dimensions = GameGeo(),
                          .is_realtime = false},
                         "refunds_count", "purchases_count"));
  return bodies;
}

}  // namespace analytics::query
