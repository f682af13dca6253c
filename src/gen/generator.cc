// The simulation behind Generate(): catalog, users, day-by-day behaviour, and the JSON rendering of events.
//
// Structure: users and games are created up front (users ordered by registration time). Then, for every day,
// the catalog changes of that day are scheduled, every registered and not-yet-churned user gets 0..n visits
// (login, store browsing with cart/checkout/payment, play sessions with achievements and reviews, social),
// anonymous visitors browse, and the day's records are sorted by (time, creation order) and rendered.
// Records later than the current day (sessions crossing midnight, refunds, deletions) wait in the bucket of
// their own day; records at or after the end of the window are dropped.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gen/calendar.h"
#include "gen/generator.h"
#include "gen/json_writer.h"
#include "gen/model.h"
#include "gen/random.h"

namespace analytics::gen {
namespace {

using namespace model;  // NOLINT: the vocabulary tables are this file's language

constexpr int64_t kSecondMs = 1000;
constexpr int64_t kMinuteMs = 60 * kSecondMs;
constexpr int64_t kHourMs = 60 * kMinuteMs;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr uint32_t kNone = 0xFFFFFFFFu;
constexpr int kLibrarySlots = 8;
constexpr int kWishSlots = 4;
constexpr int kMaxCartItems = 3;
constexpr int kMaxPending = 6;  // games acquired in one visit, waiting to be installed

struct CountryWeightTable {
  int w[kCountryCount];
};
constexpr CountryWeightTable MakeCountryWeights() {
  CountryWeightTable table{};
  for (int c = 0; c < kCountryCount; ++c) table.w[c] = kCountries[c].weight;
  return table;
}
constexpr CountryWeightTable kCountryWeights = MakeCountryWeights();

// ---- Records: one event before rendering. Field use per type is listed in Render(). ----
struct Rec {
  int64_t t = 0;         // event time, Unix ms
  uint64_t seq = 0;      // creation order (tie-break and cosmetic seed)
  uint64_t key = 0;      // entity number: cart/order, session, friendship, anonymous visitor, sale
  int64_t num = 0;       // money in minor units, a duration in seconds, or a timestamp
  uint32_t user = kNone;
  uint32_t game = kNone;
  uint32_t aux = kNone;  // second user, second game, old price, results count, playtime
  uint32_t aux2 = kNone; // third game, achievement index, day index
  uint8_t type = 0;
  uint8_t country = 0;
  uint8_t platform = 0;
  uint8_t currency = kRUB;
  uint8_t e1 = 0;
  uint8_t e2 = 0;
  uint8_t e3 = 0;
  uint8_t flags = 0;
};

struct Game {
  int64_t release_ms = 0;       // time of the published event
  int64_t release_date = 0;     // days since the epoch
  int64_t change_ms = std::numeric_limits<int64_t>::max();  // price_after applies from here
  uint32_t developer = 0;
  uint32_t publisher = kNone;   // kNone: self-published
  int32_t base_cents = 0;       // RUB list price in kopecks; 0: free to play
  int32_t price_before = 0;
  int32_t price_after = 0;
  int32_t sale_end_day = -1;    // day the current discount ends, -1: none
  uint32_t size_mb = 0;
  uint8_t disc_before = 0;
  uint8_t disc_after = 0;
  uint8_t quality10 = 30;       // 15..48: mean rating x 10
  uint8_t achievements = 10;
  uint8_t genre1 = 0;
  uint8_t genre2 = 0;
  uint8_t platforms = 1;        // bit per Platform (PC platforms only)
  uint8_t version_minor = 0;
  uint8_t version_patch = 0;
  uint8_t title_a = 0;
  uint8_t title_b = 0;
  uint8_t title_suffix = 0;
  bool in_window = false;       // released during the simulated window

  int32_t PriceAt(int64_t t) const { return t >= change_ms ? price_after : price_before; }
  uint8_t DiscountAt(int64_t t) const { return t >= change_ms ? disc_after : disc_before; }
};

enum UserFlags : uint8_t { kPaid = 1, kReferred = 2 };
enum LibFlags : uint8_t { kInstalled = 1, kEverInstalled = 2, kReviewed = 4 };

struct User {
  int64_t reg_ms = std::numeric_limits<int64_t>::min();  // min: registered before the window
  int64_t busy_until = std::numeric_limits<int64_t>::min();
  float activity = 1.0f;
  float p_day = 0.1f;
  int32_t reg_day = -1;
  int32_t last_day = 0;       // churn: no activity after this day
  uint32_t referrer = kNone;
  uint8_t country = 0;
  int8_t tz = 3;
  uint8_t platform = kWindows;
  uint8_t mobile = kNoPlatform;
  uint8_t currency = kRUB;
  uint8_t flags = 0;
  uint8_t auth_provider = 0;
  uint8_t lib_n = 0;
  uint8_t wish_n = 0;
  uint8_t lib_ach[kLibrarySlots] = {};
  uint8_t lib_flags[kLibrarySlots] = {};
  uint32_t lib_game[kLibrarySlots] = {};
  uint32_t lib_playtime[kLibrarySlots] = {};
  uint32_t wish[kWishSlots] = {};
  uint64_t owned_bloom = 0;   // every game ever owned (2 bits per game): owned games are never acquired again
};

struct Cart {
  uint64_t key = 0;
  int n = 0;
  uint32_t games[kMaxCartItems] = {};
  int64_t amounts[kMaxCartItems] = {};
  uint8_t discounts[kMaxCartItems] = {};
};

// Sorts a handful of values (std::sort on tiny stack arrays trips GCC 12's -Warray-bounds).
void SmallSort(int64_t* values, int n) {
  for (int i = 1; i < n; ++i) {
    const int64_t value = values[i];
    int j = i;
    for (; j > 0 && values[j - 1] > value; --j) values[j] = values[j - 1];
    values[j] = value;
  }
}

template <size_t N>
int PickWeighted(Rng& rng, const int (&weights)[N]) {
  int total = 0;
  for (int w : weights) total += w;
  int roll = static_cast<int>(rng.Below(static_cast<uint64_t>(total)));
  for (size_t i = 0; i < N; ++i) {
    if (roll < weights[i]) return static_cast<int>(i);
    roll -= weights[i];
  }
  return static_cast<int>(N - 1);
}

template <size_t N>
int PickWeightedQuick(QuickRng& rng, const int (&weights)[N]) {
  int total = 0;
  for (int w : weights) total += w;
  int roll = static_cast<int>(rng.Below(static_cast<uint64_t>(total)));
  for (size_t i = 0; i < N; ++i) {
    if (roll < weights[i]) return static_cast<int>(i);
    roll -= weights[i];
  }
  return static_cast<int>(N - 1);
}

template <typename T, size_t N>
const T& PickQuick(QuickRng& rng, const T (&items)[N]) {
  return items[rng.Below(N)];
}

// Amount in the wallet currency (minor units) for a RUB amount in kopecks.
int64_t ConvertCents(int64_t rub_cents, uint8_t currency) {
  const CurrencyInfo& info = kCurrencies[currency];
  int64_t cents = (rub_cents * info.rate_num + info.rate_den / 2) / info.rate_den;
  if (info.whole_units) cents = (cents + 50) / 100 * 100;
  return cents;
}

class Simulation {
 public:
  Simulation(const GeneratorOptions& options, int64_t start_day, const std::function<void(std::string_view)>& emit)
      : emit_(emit),
        rng_(Mix64(options.seed ^ 0x5eed0000a11ce5ULL)),
        seed_(options.seed),
        days_(options.days),
        start_ms_(start_day * kDayMs),
        end_ms_((start_day + options.days) * kDayMs),
        start_day_(start_day),
        user_count_(static_cast<uint32_t>(options.users)),
        game_count_(options.games > 0 ? static_cast<uint32_t>(options.games)
                                      : static_cast<uint32_t>(std::max<int64_t>(20, options.users / 500))) {
    for (int i = 0; i < 24; ++i) keys_[i] = Mix64(seed_ * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(i) + 1);
    buckets_.resize(static_cast<size_t>(days_));
    day_prefix_.resize(static_cast<size_t>(days_) + 1);
    for (int d = 0; d <= days_; ++d) {
      const CivilDate date = CivilFromDays(start_day_ + d);
      char buf[16];
      FormatDate(date, buf);
      buf[10] = 'T';
      day_prefix_[static_cast<size_t>(d)].assign(buf, 11);
    }
    for (int type = 0; type < kTypeCount; ++type) {
      headers_[type] = std::string("\",\"source\":\"") + std::string(kTypes[type].source) + "\",\"type\":\"" +
                       std::string(kTypes[type].name) + "\",\"time\":\"";
    }
    store_exposure_header_ = std::string("\",\"source\":\"") + std::string(kExperiments[kStoreHomeHero].source) +
                             "\",\"type\":\"" + std::string(kTypes[kExposureRecorded].name) + "\",\"time\":\"";
  }

  GeneratorStats Run() {
    BuildCatalog();
    BuildUsers();
    for (int d = 0; d < days_; ++d) {
      CatalogDay(d);
      UsersDay(d);
      AnonymousDay(d);
      Flush(d);
    }
    GeneratorStats stats;
    stats.events = event_counter_;
    for (uint64_t word : seen_) stats.users += static_cast<uint64_t>(__builtin_popcountll(word));
    for (int type = 0; type < kTypeCount; ++type) {
      if (type_counts_[type] > 0) stats.by_type[std::string(kTypes[type].name)] = type_counts_[type];
    }
    return stats;
  }

 private:
  // ------------------------------------------------------------------------------------------------------
  // Helpers
  // ------------------------------------------------------------------------------------------------------

  static void FormatDate(const CivilDate& date, char* buf) {
    auto two = [](char* p, int v) {
      p[0] = static_cast<char>('0' + v / 10);
      p[1] = static_cast<char>('0' + v % 10);
    };
    two(buf, date.year / 100);
    two(buf + 2, date.year % 100);
    buf[4] = '-';
    two(buf + 5, date.month);
    buf[7] = '-';
    two(buf + 8, date.day);
  }

  int64_t DayStart(int d) const { return start_ms_ + static_cast<int64_t>(d) * kDayMs; }
  double WeekdayFactor(int d) const { return kWeekdayFactor[WeekdayFromDays(start_day_ + d)]; }

  // A UTC time of day (ms) for a local-time hour drawn from the daily cycle of a user at UTC+tz.
  int64_t SampleTimeOfDay(int tz) {
    const int local_hour = PickWeighted(rng_, kHourWeight);
    const int64_t local_ms = local_hour * kHourMs + rng_.Below(static_cast<uint64_t>(kHourMs));
    int64_t utc = local_ms - tz * kHourMs;
    utc %= kDayMs;
    if (utc < 0) utc += kDayMs;
    return utc;
  }

  int64_t Gap(double mean_seconds) {
    return 1000 + static_cast<int64_t>(rng_.Exponential(mean_seconds * 1000.0));
  }

  bool Push(Rec rec) {
    if (rec.t >= end_ms_ || rec.t < start_ms_) return false;
    rec.seq = seq_++;
    buckets_[static_cast<size_t>((rec.t - start_ms_) / kDayMs)].push_back(rec);
    return true;
  }

  Rec UserRec(Type type, int64_t t, uint32_t u, uint8_t platform) const {
    Rec rec;
    rec.type = type;
    rec.t = t;
    rec.user = u;
    rec.country = users_[u].country;
    rec.platform = platform;
    rec.currency = users_[u].currency;
    return rec;
  }

  uint32_t SampleGame(int64_t t) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      const double roll = rng_.Uniform() * game_cdf_.back();
      const size_t rank =
          static_cast<size_t>(std::upper_bound(game_cdf_.begin(), game_cdf_.end(), roll) - game_cdf_.begin());
      const uint32_t game = game_by_rank_[std::min(rank, game_by_rank_.size() - 1)];
      if (games_[game].release_ms <= t) return game;
    }
    return game_by_rank_[0];  // the top games exist before the window
  }

  uint32_t SampleFreeGame(int64_t t) {
    if (free_games_.empty()) return kNone;
    for (int attempt = 0; attempt < 4; ++attempt) {
      const double roll = rng_.Uniform() * free_cdf_.back();
      const size_t idx =
          static_cast<size_t>(std::upper_bound(free_cdf_.begin(), free_cdf_.end(), roll) - free_cdf_.begin());
      const uint32_t game = free_games_[std::min(idx, free_games_.size() - 1)];
      if (games_[game].release_ms <= t) return game;
    }
    return kNone;
  }

  static int LibrarySlot(const User& user, uint32_t game) {
    for (int i = 0; i < user.lib_n; ++i) {
      if (user.lib_game[i] == game) return i;
    }
    return -1;
  }
  static uint64_t BloomBits(uint32_t game) {
    const uint64_t h = Mix64(game);
    return (1ULL << (h & 63)) | (1ULL << ((h >> 6) & 63));
  }
  static bool MaybeOwned(const User& user, uint32_t game) {
    const uint64_t bits = BloomBits(game);
    return (user.owned_bloom & bits) == bits;
  }
  static int WishSlot(const User& user, uint32_t game) {
    for (int i = 0; i < user.wish_n; ++i) {
      if (user.wish[i] == game) return i;
    }
    return -1;
  }
  static void WishErase(User& user, int slot) {
    user.wish[slot] = user.wish[user.wish_n - 1];
    --user.wish_n;
  }
  // Adds a game to the library (evicting the least-played entry when full). Returns the slot.
  static int LibraryAdd(User& user, uint32_t game) {
    int slot = user.lib_n;
    if (user.lib_n < kLibrarySlots) {
      ++user.lib_n;
    } else {
      slot = 0;
      for (int i = 1; i < kLibrarySlots; ++i) {
        if (user.lib_playtime[i] < user.lib_playtime[slot]) slot = i;
      }
    }
    user.owned_bloom |= BloomBits(game);
    user.lib_game[slot] = game;
    user.lib_playtime[slot] = 0;
    user.lib_ach[slot] = 0;
    user.lib_flags[slot] = 0;
    return slot;
  }

  uint8_t VariantOf(uint32_t u, int experiment) const {
    return static_cast<uint8_t>(Mix64(static_cast<uint64_t>(u) ^ keys_[10 + experiment]) & 1);
  }

  // Another registered, still active user (not u), preferring the more active of two candidates.
  uint32_t PickOtherUser(uint32_t u, int64_t t, int d) {
    const uint32_t registered =
        static_cast<uint32_t>(std::upper_bound(reg_ms_.begin(), reg_ms_.end(), t) - reg_ms_.begin());
    if (registered < 2) return kNone;
    uint32_t best = kNone;
    int found = 0;
    for (int attempt = 0; attempt < 6 && found < 2; ++attempt) {
      const uint32_t v = rng_.Below(registered);
      if (v == u || users_[v].last_day < d) continue;
      ++found;
      if (best == kNone || users_[v].activity > users_[best].activity) best = v;
    }
    return best;
  }

  // ------------------------------------------------------------------------------------------------------
  // Set-up
  // ------------------------------------------------------------------------------------------------------

  void BuildCatalog() {
    const uint32_t n = game_count_;
    games_.resize(n);
    // Popularity: Zipf(1.05) over a random permutation of the games.
    game_by_rank_.resize(n);
    for (uint32_t i = 0; i < n; ++i) game_by_rank_[i] = i;
    for (uint32_t i = n - 1; i > 0; --i) std::swap(game_by_rank_[i], game_by_rank_[rng_.Below(i + 1)]);
    std::vector<uint32_t> rank_of(n);
    for (uint32_t r = 0; r < n; ++r) rank_of[game_by_rank_[r]] = r;
    game_cdf_.resize(n);
    double total = 0.0;
    for (uint32_t r = 0; r < n; ++r) {
      total += 1.0 / DetPow(static_cast<double>(r) + 1.0, 1.05);
      game_cdf_[r] = total;
    }
    // Developers: consecutive groups of a shuffled order (1-30 games each, mean ~4.5).
    std::vector<uint32_t> order(n);
    for (uint32_t i = 0; i < n; ++i) order[i] = i;
    for (uint32_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng_.Below(i + 1)]);
    uint32_t developer = 0;
    static constexpr int kGroupWeight[6] = {20, 20, 25, 20, 12, 3};  // 1, 2, 3-5, 6-10, 11-20, 21-30
    static constexpr int kGroupLo[6] = {1, 2, 3, 6, 11, 21};
    static constexpr int kGroupHi[6] = {1, 2, 5, 10, 20, 30};
    const uint32_t publishers = std::max<uint32_t>(3, n / 40);
    for (uint32_t pos = 0; pos < n;) {
      const int group = PickWeighted(rng_, kGroupWeight);
      const uint32_t size = static_cast<uint32_t>(rng_.Range(kGroupLo[group], kGroupHi[group]));
      const uint32_t publisher = rng_.Chance(0.45) ? kNone : rng_.Below(publishers);
      for (uint32_t k = 0; k < size && pos < n; ++k, ++pos) {
        games_[order[pos]].developer = developer;
        games_[order[pos]].publisher = publisher;
      }
      ++developer;
    }
    std::vector<uint32_t> in_window_games;
    for (uint32_t g = 0; g < n; ++g) {
      Game& game = games_[g];
      const uint32_t rank = rank_of[g];
      const bool is_free = rank == 2 || rank == 7 || (rank > 7 && rng_.Chance(kFreeGameShare));
      game.base_cents = is_free ? 0 : kPricePoints[PickWeighted(rng_, kPriceWeights)] * 100;
      game.price_before = game.price_after = game.base_cents;
      game.quality10 = static_cast<uint8_t>(rng_.Range(15, 48));
      game.achievements = static_cast<uint8_t>(rng_.Range(8, 60));
      game.genre1 = static_cast<uint8_t>(rng_.Below(16));
      game.genre2 = static_cast<uint8_t>(rng_.Below(16));
      game.platforms = 1u << kWindows;
      if (rng_.Chance(0.25)) game.platforms |= 1u << kLinux;
      if (rng_.Chance(0.20)) game.platforms |= 1u << kMacos;
      if (rng_.Chance(0.45)) game.platforms |= 1u << kSteamdeck;
      game.version_minor = static_cast<uint8_t>(rng_.Range(0, 20));
      game.version_patch = static_cast<uint8_t>(rng_.Range(0, 9));
      game.size_mb = static_cast<uint32_t>(std::min(150000.0, rng_.Pareto(300.0, 0.9)));
      game.title_a = static_cast<uint8_t>(rng_.Below(20));
      game.title_b = static_cast<uint8_t>(rng_.Below(20));
      game.title_suffix = static_cast<uint8_t>(rng_.Chance(0.15) ? 1 + rng_.Below(3) : 0);
      // 15% are released during the window (never the 10 most popular), the rest exist before it.
      game.in_window = days_ > 1 && rank >= 10 && rng_.Chance(0.15);
      if (game.in_window) {
        in_window_games.push_back(g);
        const int day = static_cast<int>(rng_.Range(1, days_ - 1));
        game.release_date = start_day_ + day;
        game.release_ms = DayStart(day) + 7 * kHourMs;  // fixed below to keep them distinct
      } else {
        game.release_date = start_day_ - rng_.Range(30, 3650);
        game.release_ms = start_ms_;  // the catalog snapshot: all at the first instant, emitted first
      }
    }
    // New releases of one day go out at 07:00 UTC, one second apart.
    std::vector<int> per_day(static_cast<size_t>(days_), 0);
    for (uint32_t g : in_window_games) {
      Game& game = games_[g];
      const int day = static_cast<int>(game.release_date - start_day_);
      game.release_ms += static_cast<int64_t>(per_day[static_cast<size_t>(day)]++) * kSecondMs;
    }
    double free_total = 0.0;
    for (uint32_t r = 0; r < n; ++r) {
      const uint32_t g = game_by_rank_[r];
      if (games_[g].base_cents != 0) continue;
      free_games_.push_back(g);
      free_total += 1.0 / DetPow(static_cast<double>(r) + 1.0, 1.05);
      free_cdf_.push_back(free_total);
    }
    // Published events: the snapshot at the start and the in-window releases.
    for (uint32_t g = 0; g < n; ++g) {
      Rec rec;
      rec.type = kGamePublished;
      rec.t = games_[g].release_ms;
      rec.game = g;
      Push(rec);
    }
  }

  void BuildUsers() {
    const uint32_t n = user_count_;
    users_.resize(n);
    reg_ms_.assign(n, std::numeric_limits<int64_t>::min());
    seen_.assign((n + 63) / 64, 0);
    // 50% of the accounts exist before the window; the others register during it, front-loaded:
    // P(day d) ~ exp(-d / tau) x weekday factor, tau = max(1, days / 1.5).
    const uint32_t existing = n / 2;
    const double tau = std::max(1.0, days_ / 1.5);
    std::vector<double> day_cdf(static_cast<size_t>(days_));
    double total = 0.0;
    for (int d = 0; d < days_; ++d) {
      total += DetExp(-d / tau) * WeekdayFactor(d);
      day_cdf[static_cast<size_t>(d)] = total;
    }
    // Attributes first (so that the time zone of a registration is the user's), then sort by time.
    for (uint32_t u = 0; u < n; ++u) {
      User& user = users_[u];
      user.country = static_cast<uint8_t>(PickWeighted(rng_, kCountryWeights.w));
      const CountryInfo& country = kCountries[user.country];
      user.tz = static_cast<int8_t>(user.country == 0 ? kRussiaTz[PickWeighted(rng_, kRussiaTzWeight)]
                                                      : country.tz_hours);
      user.platform = static_cast<uint8_t>(PickWeighted(rng_, kPcPlatformWeight));
      if (rng_.Chance(kMobileUserShare)) user.mobile = rng_.Chance(0.7) ? kAndroid : kIos;
      user.currency = rng_.Chance(country.foreign_percent / 100.0) ? country.foreign_currency : kRUB;
      user.auth_provider = static_cast<uint8_t>(PickWeighted(rng_, kAuthProviderWeight));
      // Activity: Pareto(x_m = 1, alpha = 1.5), capped at 30; pre-existing accounts are survivors (x1.3).
      double activity = std::min(30.0, rng_.Pareto(1.0, 1.5));
      if (u < existing) activity = std::min(30.0, activity * 1.3);
      user.activity = static_cast<float>(activity);
      user.p_day = static_cast<float>(std::min(0.92, 0.08 * DetPow(activity, 0.85)));
      if (u < existing) {
        user.last_day = static_cast<int32_t>(std::min(1.0e6, rng_.Exponential(100.0)));
      } else {
        const double roll = rng_.Uniform();
        const double pick = rng_.Uniform() * total;
        int32_t day = static_cast<int32_t>(std::upper_bound(day_cdf.begin(), day_cdf.end(), pick) - day_cdf.begin());
        day = std::min(day, days_ - 1);
        user.reg_day = day;
        user.reg_ms = DayStart(day) + SampleTimeOfDay(user.tz);
        // Churn: 40% are seen on their first day only, 25% leave within days 2-7, 35% stay ~2 months.
        if (roll < 0.40) {
          user.last_day = day;
        } else if (roll < 0.65) {
          user.last_day = day + static_cast<int32_t>(rng_.Range(1, 6));
        } else {
          user.last_day = day + 7 + static_cast<int32_t>(std::min(1.0e6, rng_.Exponential(60.0)));
        }
      }
    }
    // Order the newcomers by registration time (stable on the draw order).
    std::stable_sort(users_.begin() + existing, users_.end(),
                     [](const User& a, const User& b) { return a.reg_ms < b.reg_ms; });
    for (uint32_t u = 0; u < n; ++u) reg_ms_[u] = users_[u].reg_ms;
    // Pre-existing users own games already (no events for that history).
    for (uint32_t u = 0; u < existing; ++u) {
      User& user = users_[u];
      const int owned = std::min(kLibrarySlots, rng_.Poisson(std::min(6.0, 1.0 + 0.6 * user.activity)));
      for (int k = 0; k < owned; ++k) {
        const uint32_t game = SampleGame(start_ms_);
        if (MaybeOwned(user, game)) continue;
        const int slot = LibraryAdd(user, game);
        user.lib_playtime[slot] = static_cast<uint32_t>(rng_.Range(600, 400000));
        user.lib_ach[slot] = static_cast<uint8_t>(rng_.Below(games_[game].achievements / 3 + 1));
        user.lib_flags[slot] = static_cast<uint8_t>(rng_.Chance(0.7) ? kInstalled | kEverInstalled : kEverInstalled);
        if (rng_.Chance(0.1)) user.lib_flags[slot] |= kReviewed;
        if (games_[game].base_cents > 0) user.flags |= kPaid;
      }
    }
    // Referrals: 8% of newcomers were invited by an earlier user.
    for (uint32_t u = existing; u < n; ++u) {
      if (!rng_.Chance(0.08)) continue;
      const uint32_t referrer = PickOtherUser(u, users_[u].reg_ms - 1, users_[u].reg_day);
      if (referrer == kNone) continue;
      users_[u].referrer = referrer;
      users_[u].flags |= kReferred;
    }
    // Account deletions: 4% of the users who churn delete their account 18-30 days after their last day
    // (later than any refund or session of theirs can complete, so a deleted user has no later events).
    for (uint32_t u = 0; u < n; ++u) {
      const User& user = users_[u];
      if (!rng_.Chance(0.04)) continue;
      const int64_t delete_day = static_cast<int64_t>(user.last_day) + rng_.Range(18, 30);
      if (delete_day >= days_) continue;
      const int64_t at = DayStart(static_cast<int>(delete_day)) + SampleTimeOfDay(user.tz);
      Rec rec = UserRec(kUserDeleted, at, u, user.platform);
      rec.e1 = static_cast<uint8_t>(PickWeighted(rng_, kDeleteReasonWeight));
      rec.num = DayStart(user.last_day + 2) + rng_.Below(static_cast<uint64_t>(kDayMs));  // requested_at
      Push(rec);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Catalog: releases (scheduled at set-up), sales, deals and regular price changes at 07:00 UTC.
  // ------------------------------------------------------------------------------------------------------

  void PriceChange(uint32_t g, int64_t t, int32_t new_cents, uint8_t discount, uint8_t reason, uint64_t sale,
                   int32_t valid_until_day) {
    Game& game = games_[g];
    Rec rec;
    rec.type = kPriceChanged;
    rec.t = t;
    rec.game = g;
    rec.aux = static_cast<uint32_t>(game.price_after);
    rec.num = new_cents;
    rec.e1 = discount;
    rec.e2 = reason;
    rec.key = sale;
    rec.aux2 = valid_until_day >= 0 ? static_cast<uint32_t>(valid_until_day) : kNone;
    Push(rec);
    game.price_before = game.price_after;
    game.disc_before = game.disc_after;
    game.price_after = new_cents;
    game.disc_after = discount;
    game.change_ms = t;
  }

  void CatalogDay(int d) {
    const int64_t day_start = DayStart(d);
    for (Game& game : games_) {
      if (game.change_ms < day_start) {
        game.price_before = game.price_after;
        game.disc_before = game.disc_after;
      }
    }
    // The seasonal sale: 40% of the paid games, 7 days from day days/3 (windows of 8 days or more).
    const int sale_start = days_ >= 8 ? days_ / 3 : -1;
    int64_t t = day_start + 7 * kHourMs + 500;  // after the releases of the day (07:00:00.000 + n s)
    size_t changes = 0;
    auto next_time = [&]() { return t + static_cast<int64_t>(changes++) * 200; };
    for (uint32_t g = 0; g < game_count_; ++g) {
      Game& game = games_[g];
      if (game.base_cents == 0 || game.release_date > start_day_ + d) continue;
      if (game.sale_end_day == d) {
        game.sale_end_day = -1;
        PriceChange(g, next_time(), game.base_cents, 0, 1, 0, -1);  // the discount ends
        continue;
      }
      if (game.sale_end_day >= 0 || (game.release_date == start_day_ + d)) continue;
      int discount = 0;
      int length = 0;
      uint64_t sale = 0;
      if (d == sale_start && rng_.Chance(0.40)) {
        discount = kDiscounts[PickWeighted(rng_, kDiscountWeights)];
        length = 7;
        sale = 1;
      } else if (rng_.Chance(0.01)) {
        discount = kDiscounts[PickWeighted(rng_, kDiscountWeights)];
        length = static_cast<int>(rng_.Range(3, 10));
        sale = 2;  // a deal
      } else if (rng_.Chance(0.002)) {
        // Regular change of the list price to a neighbouring price point.
        int idx = 0;
        while (idx < kPricePointCount - 1 && kPricePoints[idx] * 100 < game.base_cents) ++idx;
        idx += rng_.Chance(0.5) ? 1 : -1;
        idx = std::clamp(idx, 0, kPricePointCount - 1);
        if (kPricePoints[idx] * 100 == game.base_cents) continue;
        game.base_cents = kPricePoints[idx] * 100;
        PriceChange(g, next_time(), game.base_cents, 0, 0, 0, -1);
        continue;
      }
      if (discount == 0) continue;
      const int end_day = d + length;
      game.sale_end_day = end_day < days_ ? end_day : days_;
      const int64_t cents = (static_cast<int64_t>(game.base_cents) * (100 - discount) + 50) / 100;
      PriceChange(g, next_time(), static_cast<int32_t>(cents), static_cast<uint8_t>(discount), 1, sale, end_day);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Users
  // ------------------------------------------------------------------------------------------------------

  void UsersDay(int d) {
    const int64_t day_start = DayStart(d);
    const int64_t day_end = day_start + kDayMs;
    const uint32_t registered =
        static_cast<uint32_t>(std::lower_bound(reg_ms_.begin(), reg_ms_.end(), day_end) - reg_ms_.begin());
    const double weekday = WeekdayFactor(d);
    int64_t times[8];
    for (uint32_t u = 0; u < registered; ++u) {
      User& user = users_[u];
      if (user.last_day < d) continue;
      const bool registers_today = user.reg_day == d;
      int visits = 0;
      if (registers_today) {
        visits = rng_.Poisson(0.3);
      } else {
        double p = user.p_day * weekday;
        if (user.reg_day >= 0 && d - user.reg_day <= 3) p *= 1.6;
        if (!rng_.Chance(std::min(0.95, p))) continue;
        visits = 1 + rng_.Poisson(std::min(3.0, 0.12 * user.activity * weekday));
      }
      visits = std::min(visits, 8);
      for (int i = 0; i < visits; ++i) times[i] = day_start + SampleTimeOfDay(user.tz);
      SmallSort(times, visits);
      if (registers_today) Visit(u, user.reg_ms, true, d);
      for (int i = 0; i < visits; ++i) {
        int64_t t = times[i];
        if (user.busy_until != std::numeric_limits<int64_t>::min()) {
          t = std::max(t, user.busy_until + rng_.Range(2, 30) * kMinuteMs);
        }
        if (t >= day_end) break;
        Visit(u, t, false, d);
      }
    }
  }

  void PageView(uint32_t u, uint64_t anon, int64_t t, uint8_t country, uint8_t platform, PageType page, uint32_t game,
                uint8_t referrer) {
    Rec rec;
    rec.type = kPageViewed;
    rec.t = t;
    rec.user = u;
    rec.key = anon;
    rec.country = country;
    rec.platform = platform;
    rec.e1 = page;
    rec.e2 = referrer;
    rec.game = page == kGame ? game : kNone;
    if (page == kDeveloper) rec.aux = game;  // the developer page of this game's developer
    Push(rec);
  }

  void Search(uint32_t u, uint64_t anon, int64_t t, uint8_t country, uint8_t platform) {
    Rec rec;
    rec.type = kSearchPerformed;
    rec.t = t;
    rec.user = u;
    rec.key = anon;
    rec.country = country;
    rec.platform = platform;
    rec.aux = rng_.Chance(0.08) ? 0 : static_cast<uint32_t>(rng_.Range(1, 60));
    rec.e1 = static_cast<uint8_t>(rng_.Chance(0.85) ? 1 : rng_.Range(2, 4));
    rec.flags = static_cast<uint8_t>(rng_.Chance(0.2) ? 1 : 0);  // applied_filters
    Push(rec);
  }

  void Exposure(uint32_t u, int64_t t, uint8_t platform, int experiment) {
    Rec rec = UserRec(kExposureRecorded, t, u, platform);
    rec.e1 = static_cast<uint8_t>(experiment);
    rec.e2 = VariantOf(u, experiment);
    Push(rec);
  }

  uint8_t ExternalReferrer() { return static_cast<uint8_t>(PickWeighted(rng_, kExternalReferrerWeight)); }

  // One visit of a user: returns when it ends.
  int64_t Visit(uint32_t u, int64_t t, bool registration, int d) {
    User& user = users_[u];
    const bool mobile = !registration && user.mobile != kNoPlatform && rng_.Chance(kMobileVisitShare);
    const uint8_t platform = mobile ? user.mobile : user.platform;
    if (registration) {
      // A few anonymous pages before the sign-up (which happens exactly at reg_ms, so that a user is never
      // referenced before the registered event), then the first sign-in.
      const uint64_t anon = ++anon_counter_;
      const int pages = 1 + static_cast<int>(rng_.Below(3));
      const uint8_t referrer = ExternalReferrer();
      int64_t gaps[3];
      int64_t total_gap = 0;
      for (int i = 0; i < pages; ++i) total_gap += gaps[i] = Gap(25);
      int64_t page_t = std::max(DayStart(d), t - total_gap);
      for (int i = 0; i < pages; ++i) {
        const bool game_page = rng_.Chance(i == 0 ? 0.4 : 0.6);
        PageView(kNone, anon, page_t, user.country, platform, game_page ? kGame : kHome,
                 game_page ? SampleGame(page_t) : kNone, i == 0 ? referrer : 1);
        page_t = std::min(page_t + gaps[i], t);
      }
      Rec reg = UserRec(kRegistered, t, u, platform);
      reg.e1 = user.auth_provider;
      reg.aux = user.referrer;
      const bool provider_email = user.auth_provider == 0;
      const bool provider_phone = user.auth_provider == 1;
      uint8_t flags = 0;
      if (rng_.Chance(provider_email ? 0.5 : 0.1)) flags |= 1;  // email (should not be sent; intake drops it)
      if (rng_.Chance(provider_phone ? 0.5 : 0.02)) flags |= 2; // phone
      if (rng_.Chance(0.2)) flags |= 4;                         // display_name
      if (referrer == 4 || rng_.Chance(0.15)) flags |= 8;       // utm_*
      if (rng_.Chance(0.6)) flags |= 16;                        // marketing_consent true (else false)
      reg.flags = flags;
      Push(reg);
      t += rng_.Range(1500, 6000);
      Rec login = UserRec(kLoggedIn, t, u, platform);
      login.e1 = static_cast<uint8_t>(provider_email || provider_phone ? 0 : 1);  // password / oauth
      Push(login);
      t += Gap(5);
    } else if (rng_.Chance(0.85)) {
      Rec login = UserRec(kLoggedIn, t, u, platform);
      login.e1 = static_cast<uint8_t>(PickWeighted(rng_, kAuthMethodWeight));
      login.flags = static_cast<uint8_t>(rng_.Chance(0.25) ? 1 : 0);
      Push(login);
      t += Gap(5);
    }

    Cart cart;
    uint32_t to_install[kMaxPending];
    int to_install_n = 0;
    if (rng_.Chance(registration ? 0.9 : 0.55)) t = Browse(u, t, platform, d, cart, to_install, to_install_n);
    if (!mobile) t = Play(u, t, registration, to_install, to_install_n);

    // Social.
    if (rng_.Chance(registration && user.referrer != kNone ? 0.6 : 0.02)) {
      const uint32_t other = registration && user.referrer != kNone && users_[user.referrer].last_day >= d
                                 ? user.referrer
                                 : PickOtherUser(u, t, d);
      if (other != kNone) {
        t += Gap(20);
        const uint64_t friendship = ++friendship_counter_;
        const uint8_t method = static_cast<uint8_t>(
            registration && other == user.referrer ? 1 : PickWeighted(rng_, kFriendMethodWeight));
        Rec mine = UserRec(kFriendAdded, t, u, platform);
        mine.aux = other;
        mine.key = friendship;
        mine.e1 = method;
        Push(mine);
        Rec theirs = UserRec(kFriendAdded, t, other, users_[other].platform);
        theirs.aux = u;
        theirs.key = friendship;
        theirs.e1 = method;
        Push(theirs);
      }
    }
    // Profile changes.
    if (rng_.Chance(registration ? 0.25 : 0.005)) {
      t += Gap(30);
      uint8_t fields = 0;
      const int count = 1 + static_cast<int>(rng_.Below(2));
      for (int i = 0; i < count; ++i) fields |= static_cast<uint8_t>(1u << rng_.Below(7));
      if (fields & (1u << 4)) {  // country changed: to a neighbouring market
        uint8_t next = static_cast<uint8_t>(rng_.Below(kCountryCount));
        if (next == user.country) next = static_cast<uint8_t>((next + 1) % kCountryCount);
        user.country = next;
      }
      Rec rec = UserRec(kProfileUpdated, t, u, platform);
      rec.e1 = fields;
      rec.flags = static_cast<uint8_t>((fields & (1u << 5)) && rng_.Chance(0.3) ? 1 : 0);  // sends the new email
      Push(rec);
    }
    // Wishlist clean-up.
    if (user.wish_n > 0 && rng_.Chance(0.01)) {
      t += Gap(10);
      const int slot = static_cast<int>(rng_.Below(user.wish_n));
      Rec rec = UserRec(kWishlistRemoved, t, u, platform);
      rec.game = user.wish[slot];
      rec.e1 = 0;  // user_removed
      Push(rec);
      WishErase(user, slot);
    }
    // Sign-out: explicit (50%) or by timeout (15%).
    const double roll = rng_.Uniform();
    if (roll < 0.5) {
      t += rng_.Range(1000, 60000);
      Rec rec = UserRec(kLoggedOut, t, u, platform);
      rec.e1 = 0;
      Push(rec);
    } else if (roll < 0.65) {
      t += 30 * kMinuteMs;
      Rec rec = UserRec(kLoggedOut, t, u, platform);
      rec.e1 = 1;
      Push(rec);
    }
    user.busy_until = t;
    return t;
  }

  int64_t Browse(uint32_t u, int64_t t, uint8_t platform, int d, Cart& cart, uint32_t* to_install, int& to_install_n) {
    User& user = users_[u];
    const int pages = 1 + rng_.Poisson(2.5 + 0.1 * std::min(20.0, static_cast<double>(user.activity)));
    bool home_exposed = false;
    bool force_game = false;
    for (int i = 0; i < pages; ++i) {
      PageType page;
      if (force_game) {
        page = kGame;
        force_game = false;
      } else if (i == 0) {
        static constexpr int kLanding[6] = {55, 20, 8, 10, 4, 3};  // home game sale category news search
        static constexpr PageType kLandingPages[6] = {kHome, kGame, kSale, kCategory, kNews, kSearch};
        page = kLandingPages[PickWeighted(rng_, kLanding)];
      } else {
        static constexpr int kNext[9] = {55, 12, 10, 6, 5, 5, 3, 2, 2};
        static constexpr PageType kNextPages[9] = {kGame, kSearch, kCategory, kHome, kWishlist,
                                                   kSale, kDeveloper, kNews, kOther};
        page = kNextPages[PickWeighted(rng_, kNext)];
        if (page == kWishlist && user.wish_n == 0) page = kGame;
      }
      const uint8_t referrer = i == 0 ? ExternalReferrer() : 1;
      if (page == kSearch) {
        Search(u, 0, t, user.country, platform);
        t += Gap(8);
        PageView(u, 0, t, user.country, platform, kSearch, kNone, 1);
        force_game = rng_.Chance(0.7);
      } else if (page == kGame) {
        uint32_t game = user.wish_n > 0 && rng_.Chance(0.2) ? user.wish[rng_.Below(user.wish_n)] : SampleGame(t);
        PageView(u, 0, t, user.country, platform, kGame, game, referrer);
        t = GamePageActions(u, t, platform, game, cart, to_install, to_install_n);
      } else {
        const uint32_t game = page == kDeveloper ? SampleGame(t) : kNone;
        PageView(u, 0, t, user.country, platform, page, game, referrer);
        if (page == kHome && !home_exposed) {
          home_exposed = true;
          Exposure(u, t + 1, platform, kStoreHomeHero);
        }
      }
      t += Gap(25);
    }
    if (cart.n == 0) return t;
    // The cart page shows the checkout_v2 variant.
    PageView(u, 0, t, user.country, platform, kCart, kNone, 1);
    Exposure(u, t + 1, platform, kCheckoutV2);
    t += Gap(15);
    // Each item leaves the cart with p = 0.08 (user_removed 90%, unavailable 5%, other 5%).
    static constexpr int kRemoveReasonWeight[4] = {90, 5, 0, 5};
    for (int i = 0; i < cart.n; ++i) {
      if (!rng_.Chance(0.08)) continue;
      Rec rec = UserRec(kCartItemRemoved, t, u, platform);
      rec.key = cart.key;
      rec.game = cart.games[i];
      rec.num = cart.amounts[i];
      rec.e1 = static_cast<uint8_t>(PickWeighted(rng_, kRemoveReasonWeight));
      Push(rec);
      for (int k = i; k + 1 < cart.n; ++k) {
        cart.games[k] = cart.games[k + 1];
        cart.amounts[k] = cart.amounts[k + 1];
        cart.discounts[k] = cart.discounts[k + 1];
      }
      --cart.n;
      --i;
      t += Gap(8);
    }
    if (cart.n == 0 || !rng_.Chance(kCheckoutProbability[VariantOf(u, kCheckoutV2)])) return t;
    return Checkout(u, t, platform, d, cart, to_install, to_install_n);
  }

  int64_t GamePageActions(uint32_t u, int64_t t, uint8_t platform, uint32_t game, Cart& cart, uint32_t* to_install,
                          int& to_install_n) {
    User& user = users_[u];
    const Game& info = games_[game];
    if (MaybeOwned(user, game)) return t;
    if (info.base_cents == 0) {
      if (to_install_n < kMaxCartItems && !MaybeOwned(user, game) && rng_.Chance(0.12)) {
        bool already = false;
        for (int i = 0; i < to_install_n; ++i) already |= to_install[i] == game;
        if (!already) to_install[to_install_n++] = game;
      }
      return t;
    }
    for (int i = 0; i < cart.n; ++i) {
      if (cart.games[i] == game) return t;
    }
    const bool wished = WishSlot(user, game) >= 0;
    const uint8_t discount = info.DiscountAt(t);
    double p_cart = 0.045;
    if (discount > 0) p_cart *= 1.8;
    if (wished) p_cart *= 2.5;
    if (info.PriceAt(t) > 199900) p_cart *= 0.6;
    if (cart.n < kMaxCartItems && rng_.Chance(p_cart)) {
      t += Gap(10);
      if (cart.n == 0) cart.key = ++cart_counter_;
      Rec rec = UserRec(kCartItemAdded, t, u, platform);
      rec.key = cart.key;
      rec.game = game;
      rec.num = ConvertCents(info.PriceAt(t), user.currency);
      rec.e1 = discount;
      Push(rec);
      cart.games[cart.n] = game;
      cart.amounts[cart.n] = rec.num;
      cart.discounts[cart.n] = discount;
      ++cart.n;
    } else if (!wished && user.wish_n < kWishSlots && rng_.Chance(0.035)) {
      t += Gap(5);
      Rec rec = UserRec(kWishlistAdded, t, u, platform);
      rec.game = game;
      rec.e1 = kGame;
      Push(rec);
      user.wish[user.wish_n++] = game;
    }
    return t;
  }

  int64_t Checkout(uint32_t u, int64_t t, uint8_t platform, int d, const Cart& cart, uint32_t* to_install,
                   int& to_install_n) {
    User& user = users_[u];
    int64_t total = 0;
    for (int i = 0; i < cart.n; ++i) total += cart.amounts[i];
    uint8_t method = static_cast<uint8_t>(PickWeighted(rng_, kPaymentMethodWeight));
    Rec checkout = UserRec(kCheckoutStarted, t, u, platform);
    checkout.key = cart.key;
    checkout.num = total;
    checkout.game = cart.games[0];
    checkout.aux = cart.n > 1 ? cart.games[1] : kNone;
    checkout.aux2 = cart.n > 2 ? cart.games[2] : kNone;
    checkout.e1 = method;
    checkout.e2 = static_cast<uint8_t>(cart.n);
    Push(checkout);
    t += rng_.Range(8000, 60000);
    for (int attempt = 1; attempt <= 3; ++attempt) {
      if (rng_.Chance(0.11)) {
        Rec failed = checkout;
        failed.type = kPurchaseFailed;
        failed.t = t;
        failed.e1 = method;
        failed.e2 = static_cast<uint8_t>(attempt);
        failed.e3 = static_cast<uint8_t>(PickWeighted(rng_, kFailureReasonWeight));
        Push(failed);
        if (attempt == 3 || !rng_.Chance(0.55)) return t;
        t += rng_.Range(15000, 120000);
        if (rng_.Chance(0.3)) method = static_cast<uint8_t>(PickWeighted(rng_, kPaymentMethodWeight));
        continue;
      }
      // Paid: one purchase per item, all at the same moment (1 ms apart).
      const bool first = (user.flags & kPaid) == 0;
      user.flags |= kPaid;
      Rec refunded[kMaxCartItems];
      int refunded_n = 0;
      for (int i = 0; i < cart.n; ++i) {
        const uint32_t game = cart.games[i];
        const int64_t at = t + i;
        Rec purchase = UserRec(kPurchaseCompleted, at, u, platform);
        purchase.key = cart.key;
        purchase.game = game;
        purchase.num = cart.amounts[i];
        purchase.e1 = method;
        purchase.e2 = cart.discounts[i];
        uint32_t recipient = kNone;
        if (rng_.Chance(0.03)) recipient = PickOtherUser(u, at, d);
        purchase.aux = recipient;
        purchase.flags = static_cast<uint8_t>((recipient != kNone ? 1 : 0) | (first ? 2 : 0));
        if (!Push(purchase)) return t;
        const int wish_slot = WishSlot(user, game);
        if (wish_slot >= 0) {
          Rec removed = UserRec(kWishlistRemoved, at, u, platform);
          removed.game = game;
          removed.e1 = 1;  // purchased
          Push(removed);
          WishErase(user, wish_slot);
        }
        if (recipient != kNone) {
          User& other = users_[recipient];
          if (!MaybeOwned(other, game)) LibraryAdd(other, game);
          continue;
        }
        // Refunds: 3.5% of paid items (6.5% for poorly rated games); the game never enters the library.
        if (rng_.Chance(games_[game].quality10 < 25 ? 0.065 : 0.035)) {
          user.owned_bloom |= BloomBits(game);
          refunded[refunded_n++] = purchase;
          continue;
        }
        LibraryAdd(user, game);
        if (to_install_n < kMaxPending) to_install[to_install_n++] = game;
      }
      t += cart.n;
      for (int i = 0; i < refunded_n; ++i) t = RefundedPurchase(u, t, platform, refunded[i]);
      return t + Gap(10);
    }
    return t;
  }

  // A purchase that will be refunded: maybe a short try-out session first; the game never enters the library.
  int64_t RefundedPurchase(uint32_t u, int64_t t, uint8_t platform, const Rec& purchase) {
    User& user = users_[u];
    int64_t playtime = 0;
    int64_t end = t;
    if (user.platform == platform && rng_.Chance(0.5)) {
      const Game& game = games_[purchase.game];
      Rec install = UserRec(kGameInstalled, t + Gap(30), u, platform);
      install.game = purchase.game;
      install.aux = InstallSeconds(game);
      Push(install);
      const int64_t start = install.t + static_cast<int64_t>(install.aux) * kSecondMs + Gap(20);
      playtime = rng_.Range(180, 5400);
      const uint64_t session = ++session_counter_;
      Rec started = UserRec(kSessionStarted, start, u, platform);
      started.game = purchase.game;
      started.key = session;
      started.e1 = 0;
      Push(started);
      Rec ended = UserRec(kSessionEnded, start + playtime * kSecondMs, u, platform);
      ended.game = purchase.game;
      ended.key = session;
      ended.num = playtime;
      ended.e1 = 0;
      Push(ended);
      end = ended.t;
    }
    // Refund: 70% within hours (10 min + Exp(mean 6 h), capped at 2 days), 30% after 2-14 days.
    const int64_t delay =
        rng_.Chance(0.7)
            ? 10 * kMinuteMs + std::min<int64_t>(2 * kDayMs, static_cast<int64_t>(rng_.Exponential(6.0 * kHourMs)))
            : rng_.Range(2 * kDayMs, 14 * kDayMs);
    Rec refund = purchase;
    refund.type = kRefundCompleted;
    refund.t = end + delay;
    refund.aux = static_cast<uint32_t>(playtime);
    refund.e1 = static_cast<uint8_t>(PickWeighted(rng_, kRefundReasonWeight));
    refund.e2 = static_cast<uint8_t>(std::min<int64_t>(255, (refund.t - purchase.t) / kDayMs));
    refund.key = purchase.key;
    refund.aux2 = static_cast<uint32_t>(++refund_counter_);
    Push(refund);
    return end;
  }

  static uint32_t InstallSeconds(const Game& game) {
    // ~40 MB/s, at least 20 s, at most 40 min (long downloads run in the background).
    return std::clamp<uint32_t>(game.size_mb / 40, 20, 2400);
  }

  int64_t Install(uint32_t u, int64_t t, uint8_t platform, int slot) {
    User& user = users_[u];
    const Game& game = games_[user.lib_game[slot]];
    Rec rec = UserRec(kGameInstalled, t, u, platform);
    rec.game = user.lib_game[slot];
    rec.aux = InstallSeconds(game);
    rec.flags = static_cast<uint8_t>((user.lib_flags[slot] & kEverInstalled) ? 1 : 0);
    Push(rec);
    user.lib_flags[slot] |= kInstalled | kEverInstalled;
    return t + static_cast<int64_t>(rec.aux) * kSecondMs + Gap(20);
  }

  int64_t Play(uint32_t u, int64_t t, bool registration, const uint32_t* to_install, int to_install_n) {
    User& user = users_[u];
    const uint8_t platform = user.platform;
    int fresh_slot = -1;
    // Games acquired in this visit: free games found in the store, purchases.
    for (int i = 0; i < to_install_n; ++i) {
      int slot = LibrarySlot(user, to_install[i]);
      if (slot < 0) {
        if (MaybeOwned(user, to_install[i])) continue;  // owned before and evicted from the tracked slots
        slot = LibraryAdd(user, to_install[i]);
      }
      if (!rng_.Chance(0.8)) continue;
      t = Install(u, t, platform, slot);
      if (fresh_slot < 0) fresh_slot = slot;
    }
    // Newcomers without games often pick up a free one.
    if (user.lib_n == 0 && rng_.Chance(registration ? 0.5 : 0.05)) {
      const uint32_t game = SampleFreeGame(t);
      if (game != kNone && !MaybeOwned(user, game)) {
        const int slot = LibraryAdd(user, game);
        t = Install(u, t, platform, slot);
        fresh_slot = slot;
      }
    }
    if (user.lib_n == 0) return t;
    if (fresh_slot < 0 && !rng_.Chance(registration ? 0.5 : 0.75)) return t;
    const int sessions = 1 + std::min(3, rng_.Poisson(std::min(2.0, 0.2 * DetPow(user.activity, 0.5))));
    const int64_t play_start = t;
    for (int s = 0; s < sessions && t - play_start < 16 * kHourMs; ++s) {
      int slot;
      if (s == 0 && fresh_slot >= 0) {
        slot = fresh_slot;
      } else if (rng_.Chance(0.5)) {
        slot = 0;
        for (int i = 1; i < user.lib_n; ++i) {
          if (user.lib_playtime[i] > user.lib_playtime[slot]) slot = i;
        }
      } else {
        slot = static_cast<int>(rng_.Below(user.lib_n));
      }
      if (!(user.lib_flags[slot] & kInstalled)) t = Install(u, t, platform, slot);
      t = Session(u, t, platform, slot);
      t += rng_.Range(1, 15) * kMinuteMs;
    }
    return t;
  }

  int64_t Session(uint32_t u, int64_t t, uint8_t platform, int slot) {
    User& user = users_[u];
    const uint32_t game_idx = user.lib_game[slot];
    const Game& game = games_[game_idx];
    const uint64_t session = ++session_counter_;
    Rec started = UserRec(kSessionStarted, t, u, platform);
    started.game = game_idx;
    started.key = session;
    started.e1 = static_cast<uint8_t>(PickWeighted(rng_, kLaunchSourceWeight));
    Push(started);
    // Length: log-normal, median 45 min, sigma 0.9; 60 s .. 12 h.
    const double minutes = 45.0 * DetExp(0.9 * rng_.Normalish());
    const int64_t seconds = std::clamp<int64_t>(static_cast<int64_t>(minutes * 60.0), 60, 12 * 3600);
    const int64_t end = t + seconds * kSecondMs;
    // Achievements: up to 1 + (>1 h) + (>3 h) tries, p = min(0.6, 0.15 + 0.1 x hours) x 0.93^unlocked.
    const double hours = static_cast<double>(seconds) / 3600.0;
    const int tries = 1 + (hours > 1.0 ? 1 : 0) + (hours > 3.0 ? 1 : 0);
    int64_t unlock_times[3];
    int unlocks = 0;
    for (int k = 0; k < tries; ++k) {
      if (user.lib_ach[slot] + unlocks >= game.achievements) break;
      const double p = std::min(0.6, 0.15 + 0.1 * hours) * DetPow(0.93, user.lib_ach[slot] + unlocks);
      if (rng_.Chance(p)) {
        const uint64_t span = static_cast<uint64_t>(seconds * kSecondMs - 2000);
        unlock_times[unlocks++] = t + 1000 + static_cast<int64_t>(rng_.Below(span));
      }
    }
    SmallSort(unlock_times, unlocks);
    for (int k = 0; k < unlocks; ++k) {
      Rec rec = UserRec(kAchievementUnlocked, unlock_times[k], u, platform);
      rec.game = game_idx;
      rec.key = session;
      rec.aux2 = user.lib_ach[slot]++;
      Push(rec);
    }
    Rec ended = UserRec(kSessionEnded, end, u, platform);
    ended.game = game_idx;
    ended.key = session;
    ended.num = seconds;
    ended.e1 = static_cast<uint8_t>(PickWeighted(rng_, kEndReasonWeight));
    Push(ended);
    user.lib_playtime[slot] += static_cast<uint32_t>(seconds);
    if (rng_.Chance(0.01)) user.lib_flags[slot] &= static_cast<uint8_t>(~kInstalled);  // uninstalled later
    int64_t after = end;
    // Reviews: 4% after a session once the player has 2 h in the game; edits are rare.
    const bool reviewed = (user.lib_flags[slot] & kReviewed) != 0;
    if ((!reviewed && user.lib_playtime[slot] >= 7200 && rng_.Chance(0.04)) || (reviewed && rng_.Chance(0.004))) {
      after += rng_.Range(10, 600) * kSecondMs;
      Rec rec = UserRec(kReviewPosted, after, u, platform);
      rec.game = game_idx;
      const double score = game.quality10 / 10.0 + 0.9 * rng_.Normalish();
      const int rating = static_cast<int>(std::clamp(score + 0.5, 1.0, 5.99));
      const double form = rng_.Uniform();  // 65% both, 25% recommended only, 10% rating only
      rec.e1 = static_cast<uint8_t>(form < 0.9 && form >= 0.65 ? 0 : rating);
      rec.e2 = static_cast<uint8_t>(form >= 0.9 ? 0 : (rating >= 3 ? 2 : 1));
      rec.aux = user.lib_playtime[slot];
      rec.flags = static_cast<uint8_t>((rng_.Chance(0.7) ? 1 : 0) | (reviewed ? 2 : 0) |
                                       (kCountries[user.country].russian_speaking ? 4 : 0));
      Push(rec);
      user.lib_flags[slot] |= kReviewed;
    }
    return after;
  }

  // Anonymous visitors: users x 2% a day (x weekday factor), 1-4 pages, some searches.
  void AnonymousDay(int d) {
    const int64_t count = static_cast<int64_t>(static_cast<double>(user_count_) * 0.02 * WeekdayFactor(d));
    static constexpr int kAnonPlatformWeight[6] = {50, 8, 5, 0, 25, 12};
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t country = static_cast<uint8_t>(PickWeighted(rng_, kCountryWeights.w));
      const uint8_t platform = static_cast<uint8_t>(PickWeighted(rng_, kAnonPlatformWeight));
      int64_t t = DayStart(d) + SampleTimeOfDay(country == 0 ? 3 : kCountries[country].tz_hours);
      const uint64_t anon = ++anon_counter_;
      const int pages = 1 + static_cast<int>(rng_.Below(4));
      for (int p = 0; p < pages; ++p) {
        if (p > 0 && rng_.Chance(0.25)) {
          Search(kNone, anon, t, country, platform);
          t += Gap(10);
        }
        const bool game_page = rng_.Chance(p == 0 ? 0.35 : 0.7);
        PageView(kNone, anon, t, country, platform, game_page ? kGame : (p == 0 ? kHome : kCategory),
                 game_page ? SampleGame(t) : kNone, p == 0 ? ExternalReferrer() : 1);
        t += Gap(30);
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Output
  // ------------------------------------------------------------------------------------------------------

  void Flush(int d) {
    std::vector<Rec>& bucket = buckets_[static_cast<size_t>(d)];
    const int64_t day_start = DayStart(d);
    order_.resize(bucket.size());
    for (size_t i = 0; i < bucket.size(); ++i) {
      order_[i] = (static_cast<uint64_t>(bucket[i].t - day_start) << 32) | static_cast<uint64_t>(i);
    }
    std::sort(order_.begin(), order_.end());
    for (uint64_t entry : order_) Render(bucket[entry & 0xFFFFFFFFu], d);
    std::vector<Rec>().swap(bucket);
  }

  // Identifier writers. Distinct inputs give distinct ids: Mix64 is a bijection.
  void Uuid(JsonWriter& w, uint64_t a, uint64_t b) {
    static constexpr char kHex[] = "0123456789abcdef";
    char out[36];
    int pos = 0;
    auto put = [&](uint64_t nibble) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) out[pos++] = '-';
      out[pos++] = kHex[nibble & 15];
    };
    for (int i = 15; i >= 4; --i) put(a >> (i * 4));  // 12 digits: a bits 63..16
    put(4);                                          // version 4
    for (int i = 3; i >= 1; --i) put(a >> (i * 4));  // 3 digits: a bits 15..4
    put(8 | (b & 3));                                // variant 10xx
    put(a);                                          // a bits 3..0
    for (int i = 13; i >= 0; --i) put(b >> (8 + i * 4));  // 14 digits of b
    w.Raw(std::string_view(out, 36));
  }
  void UserId(JsonWriter& w, uint32_t u) {
    Uuid(w, Mix64(static_cast<uint64_t>(u) ^ keys_[2]), Mix64(static_cast<uint64_t>(u) ^ keys_[3]));
  }
  void QuotedUserId(JsonWriter& w, uint32_t u) {
    w.Char('"');
    UserId(w, u);
    w.Char('"');
  }
  void HexId(JsonWriter& w, std::string_view prefix, uint64_t value, int digits) {
    w.Char('"');
    w.Raw(prefix);
    w.HexDigits(value, digits);
    w.Char('"');
  }
  void NumId(JsonWriter& w, std::string_view prefix, uint64_t value) {
    w.Char('"');
    w.Raw(prefix);
    w.Int(static_cast<int64_t>(value));
    w.Char('"');
  }
  void GameId(JsonWriter& w, uint32_t g) { NumId(w, "game_", 1000 + static_cast<uint64_t>(g)); }
  void SessionId(JsonWriter& w, uint64_t session) { HexId(w, "s-", Mix64(session ^ keys_[4]), 16); }
  // "hh:mm:ss.mmmZ" for a time of day in milliseconds (0 <= ms_of_day < one day).
  static void WriteTimeOfDay(JsonWriter& w, int64_t ms_of_day) {
    char buf[13];
    const int hh = static_cast<int>(ms_of_day / kHourMs);
    const int mm = static_cast<int>(ms_of_day / kMinuteMs % 60);
    const int ss = static_cast<int>(ms_of_day / kSecondMs % 60);
    const int milli = static_cast<int>(ms_of_day % kSecondMs);
    buf[0] = static_cast<char>('0' + hh / 10);
    buf[1] = static_cast<char>('0' + hh % 10);
    buf[2] = ':';
    buf[3] = static_cast<char>('0' + mm / 10);
    buf[4] = static_cast<char>('0' + mm % 10);
    buf[5] = ':';
    buf[6] = static_cast<char>('0' + ss / 10);
    buf[7] = static_cast<char>('0' + ss % 10);
    buf[8] = '.';
    buf[9] = static_cast<char>('0' + milli / 100);
    buf[10] = static_cast<char>('0' + milli / 10 % 10);
    buf[11] = static_cast<char>('0' + milli % 10);
    buf[12] = 'Z';
    w.Raw(std::string_view(buf, 13));
  }
  void Time(JsonWriter& w, int64_t t) {
    const int64_t day = (t - start_ms_) / kDayMs;
    w.Raw(day_prefix_[static_cast<size_t>(day)]);
    WriteTimeOfDay(w, t - start_ms_ - day * kDayMs);
  }
  // Timestamps outside the window (requested_at of a deletion) use the generic civil conversion.
  void AnyTime(JsonWriter& w, int64_t t) {
    if (t >= start_ms_ && t < end_ms_) {
      Time(w, t);
      return;
    }
    const int64_t days = (t >= 0 ? t : t - kDayMs + 1) / kDayMs;
    char buf[16];
    FormatDate(CivilFromDays(days), buf);
    buf[10] = 'T';
    w.Raw(std::string_view(buf, 11));
    WriteTimeOfDay(w, t - days * kDayMs);
  }
  void Date(JsonWriter& w, int64_t days) {
    char buf[16];
    FormatDate(CivilFromDays(days), buf);
    w.Char('"');
    w.Raw(std::string_view(buf, 10));
    w.Char('"');
  }
  void CompactDate(JsonWriter& w, int64_t days) {  // YYYYMMDD
    const CivilDate date = CivilFromDays(days);
    w.Int(static_cast<int64_t>(date.year) * 10000 + date.month * 100 + date.day);
  }
  void GameVersion(JsonWriter& w, const Game& game, int d) {
    w.Char('"');
    w.Raw("1.");
    w.Int(game.version_minor);
    w.Char('.');
    w.Int(game.version_patch + d / 7);
    w.Char('"');
  }
  void Ip(JsonWriter& w, uint64_t h) {
    w.Char('"');
    if (h % 10 == 0) {  // 10% IPv6, documentation prefix 2001:db8::/32
      w.Raw("2001:db8:");
      w.HexDigits(h >> 8, 4);
      w.Char(':');
      w.HexDigits(h >> 24, 4);
      w.Raw("::");
      w.HexDigits((h >> 40) | 1, 4);
    } else {  // IPv4 documentation ranges (RFC 5737)
      static constexpr std::string_view kNets[3] = {"192.0.2.", "198.51.100.", "203.0.113."};
      w.Raw(kNets[(h >> 8) % 3]);
      w.Int(static_cast<int64_t>(1 + (h >> 16) % 254));
    }
    w.Char('"');
  }
  void Money(JsonWriter& w, int64_t cents, uint8_t currency) {
    w.Key("amount");
    w.Hundredths(cents);
    w.Key("currency");
    w.Char('"');
    w.Raw(kCurrencies[currency].code);
    w.Char('"');
  }
  void CountryPlatform(JsonWriter& w, const Rec& rec, bool country, bool platform) {
    if (country) {
      w.Key("country");
      w.Char('"');
      w.Raw(kCountries[rec.country].code);
      w.Char('"');
    }
    if (platform) {
      w.Key("platform");
      w.Char('"');
      w.Raw(kPlatforms[rec.platform]);
      w.Char('"');
    }
  }
  void Enum(JsonWriter& w, std::string_view key, std::string_view value) {
    w.Key(key);
    w.Char('"');
    w.Raw(value);
    w.Char('"');
  }
  void GameIdArray(JsonWriter& w, const Rec& rec) {
    w.Key("game_ids");
    w.Char('[');
    GameId(w, rec.game);
    if (rec.aux != kNone) {
      w.Char(',');
      GameId(w, rec.aux);
    }
    if (rec.aux2 != kNone) {
      w.Char(',');
      GameId(w, rec.aux2);
    }
    w.Char(']');
  }
  void GameTitle(JsonWriter& w, const Game& game) {
    static constexpr std::string_view kSuffix[4] = {"", " 2", " II", ": Remastered"};
    w.Char('"');
    w.Raw(kTitleAdjectives[game.title_a]);
    w.Char(' ');
    w.Raw(kTitleNouns[game.title_b]);
    w.Raw(kSuffix[game.title_suffix]);
    w.Char('"');
  }

  void SearchQuery(JsonWriter& w, QuickRng& q) {
    scratch_.clear();
    const double roll = static_cast<double>(q.Below(10000)) / 10000.0;
    if (roll < 0.0015) {  // pasted contact details (intake masks them)
      scratch_ = "refund help player";
      scratch_ += std::to_string(q.Below(100000));
      scratch_ += "@example.com";
    } else if (roll < 0.0025) {
      scratch_ = "поддержка +7 000 ";
      scratch_ += std::to_string(100 + q.Below(900));
      scratch_ += "-";
      scratch_ += std::to_string(10 + q.Below(90));
      scratch_ += "-";
      scratch_ += std::to_string(10 + q.Below(90));
    } else {
      // 0.3%: a long query (pasted text, > 100 characters; intake truncates it).
      const int words = roll < 0.0055 ? 18 : 1 + static_cast<int>(q.Below(3));
      for (int i = 0; i < words; ++i) {
        if (i > 0) scratch_ += ' ';
        const uint32_t kind = q.Below(3);
        if (kind == 0) {
          scratch_ += PickQuick(q, kSearchWordsRu);
        } else if (kind == 1) {
          std::string_view genre = PickQuick(q, kGenres);
          for (char c : genre) scratch_ += c == '_' ? ' ' : c;
        } else {
          for (char c : (q.Chance(0.5) ? PickQuick(q, kTitleAdjectives) : PickQuick(q, kTitleNouns))) {
            scratch_ += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
          }
        }
      }
    }
    w.String(scratch_);
  }

  void ReviewText(JsonWriter& w, QuickRng& q, bool russian) {
    scratch_.clear();
    const int phrases = 1 + static_cast<int>(q.Below(3));
    const bool newline = q.Chance(0.08);
    for (int i = 0; i < phrases; ++i) {
      if (i > 0) scratch_ += newline ? ".\n" : ". ";
      scratch_ += russian ? PickQuick(q, kReviewPhrasesRu) : PickQuick(q, kReviewPhrasesEn);
    }
    scratch_ += q.Chance(0.3) ? "!" : ".";
    w.String(scratch_);
  }

  void Render(const Rec& rec, int d) {
    JsonWriter& w = writer_;
    w.Clear();
    const uint64_t counter = event_counter_++;
    QuickRng q(rec.seq ^ keys_[5]);
    w.Raw("{\"specversion\":\"1.0\",\"id\":\"");
    Uuid(w, Mix64(counter ^ keys_[0]), Mix64(counter ^ keys_[1]));
    const bool store_exposure = rec.type == kExposureRecorded && rec.e1 == kStoreHomeHero;
    w.Raw(store_exposure ? store_exposure_header_ : headers_[rec.type]);
    Time(w, rec.t);
    w.Char('"');
    const bool has_user = rec.user != kNone;
    const bool user_in_subject = has_user && rec.type != kAchievementUnlocked;
    if (user_in_subject) {
      w.Raw(",\"subject\":");
      QuotedUserId(w, rec.user);
    }
    if (has_user) seen_[rec.user >> 6] |= 1ULL << (rec.user & 63);
    if (rec.type == kRegistered) w.Raw(",\"datacontenttype\":\"application/json\"");
    if (rec.type == kPurchaseCompleted) {  // W3C trace context extension attribute
      w.Raw(",\"traceparent\":\"00-");
      w.HexDigits(Mix64(rec.key ^ keys_[6]), 16);
      w.HexDigits(Mix64(rec.key ^ keys_[7]), 16);
      w.Char('-');
      w.HexDigits(Mix64(rec.seq ^ keys_[8]), 16);
      w.Raw("-01\"");
    }
    w.Raw(",\"data\":");
    w.BeginObject();
    switch (rec.type) {
      case kRegistered: {
        Enum(w, "auth_provider", kAuthProviders[rec.e1]);
        if (rec.flags & 8) {
          Enum(w, "utm_source", PickQuick(q, kUtmSources));
          Enum(w, "utm_medium", PickQuick(q, kUtmMediums));
          Enum(w, "utm_campaign", PickQuick(q, kUtmCampaigns));
        }
        if (rec.aux != kNone) {
          w.Key("referrer_user_id");
          QuotedUserId(w, rec.aux);
        }
        w.Key("marketing_consent");
        w.Bool((rec.flags & 16) != 0);
        const uint64_t h = Mix64(static_cast<uint64_t>(rec.user) ^ keys_[9]);
        if (rec.flags & 1) {
          static constexpr std::string_view kDomains[3] = {"example.com", "example.org", "example.net"};
          w.Key("email");
          w.Raw("\"player");
          w.HexDigits(h, 8);
          w.Char('@');
          w.Raw(kDomains[(h >> 40) % 3]);
          w.Char('"');
        }
        if (rec.flags & 2) {
          w.Key("phone");
          w.Raw("\"+7 000 ");
          w.Int(static_cast<int64_t>(100 + (h >> 8) % 900));
          w.Char('-');
          w.Int(static_cast<int64_t>(10 + (h >> 20) % 90));
          w.Char('-');
          w.Int(static_cast<int64_t>(10 + (h >> 30) % 90));
          w.Char('"');
        }
        if (rec.flags & 4) {
          w.Key("display_name");
          w.Raw("\"Player_");
          w.HexDigits(h >> 12, 6);
          w.Char('"');
        }
        CountryPlatform(w, rec, true, true);
        w.Key("ip");
        Ip(w, Mix64(static_cast<uint64_t>(rec.user) ^ keys_[12]));
        const CountryInfo& country = kCountries[rec.country];
        Enum(w, "locale", q.Chance(0.7) ? country.locale_a : country.locale_b);
        break;
      }
      case kLoggedIn: {
        Enum(w, "auth_method", kAuthMethods[rec.e1]);
        w.Key("two_factor");
        w.Bool((rec.flags & 1) != 0);
        CountryPlatform(w, rec, true, true);
        w.Key("ip");  // usually the home address, 20% another network
        Ip(w, q.Chance(0.2) ? q.Next() : Mix64(static_cast<uint64_t>(rec.user) ^ keys_[12]));
        w.Key("device_id");
        const bool mobile = rec.platform == kAndroid || rec.platform == kIos;
        HexId(w, "dev-", Mix64(static_cast<uint64_t>(rec.user) ^ keys_[mobile ? 14 : 13]), 12);
        w.Key("app_version");
        w.Raw("\"2.");
        w.Int(14 + d / 14);
        w.Char('.');
        w.Int(static_cast<int64_t>(q.Below(4)));
        w.Char('"');
        break;
      }
      case kLoggedOut:
        Enum(w, "reason", kLogoutReasons[rec.e1]);
        CountryPlatform(w, rec, false, true);
        break;
      case kProfileUpdated: {
        w.Key("changed_fields");
        w.NameArray(kProfileFields, rec.e1 & 0x7Fu);
        if (rec.e1 & (1u << 4)) CountryPlatform(w, rec, true, false);
        if (rec.e1 & (1u << 2)) Enum(w, "locale", kCountries[rec.country].locale_b);
        if (rec.flags & 1) {
          w.Key("email");
          w.Raw("\"new.player");
          w.HexDigits(q.Next(), 6);
          w.Raw("@example.org\"");
        }
        break;
      }
      case kUserDeleted:
        Enum(w, "reason", kDeleteReasons[rec.e1]);
        w.Key("requested_at");
        w.Char('"');
        AnyTime(w, rec.num);
        w.Char('"');
        break;
      case kGamePublished: {
        const Game& game = games_[rec.game];
        w.Key("game_id");
        GameId(w, rec.game);
        w.Key("developer_id");
        NumId(w, "dev_", 100 + static_cast<uint64_t>(game.developer));
        if (game.publisher != kNone) {
          w.Key("publisher_id");
          NumId(w, "pub_", 10 + static_cast<uint64_t>(game.publisher));
        }
        w.Key("title");
        GameTitle(w, game);
        w.Key("genres");
        w.Raw("[\"");
        w.Raw(kGenres[game.genre1]);
        if (game.genre2 != game.genre1) {
          w.Raw("\",\"");
          w.Raw(kGenres[game.genre2]);
        }
        w.Raw("\"]");
        w.Key("release_date");
        Date(w, game.release_date);
        w.Key("is_free");
        w.Bool(game.base_cents == 0);
        if (game.base_cents != 0) {
          w.Key("price");
          w.Hundredths(game.base_cents);
          Enum(w, "currency", "RUB");
        }
        w.Key("platforms");
        w.NameArray(kPlatforms, game.platforms & 0xFu);  // games ship on the first four (desktop) platforms
        break;
      }
      case kPriceChanged:
        w.Key("game_id");
        GameId(w, rec.game);
        Enum(w, "currency", "RUB");
        w.Key("old_price");
        w.Hundredths(rec.aux);
        w.Key("new_price");
        w.Hundredths(rec.num);
        w.Key("discount_percent");
        w.Int(rec.e1);
        Enum(w, "reason", kPriceReasons[rec.e2]);
        if (rec.key == 1) {  // the seasonal sale, named by its first day
          w.Key("sale_id");
          w.Raw("\"seasonal_sale_");
          CompactDate(w, start_day_ + days_ / 3);
          w.Char('"');
        } else if (rec.key == 2) {  // a deal on one game, named by its first day and the game
          w.Key("sale_id");
          w.Raw("\"deal_");
          CompactDate(w, start_day_ + d);
          w.Raw("_");
          w.Int(1000 + static_cast<int64_t>(rec.game));
          w.Char('"');
        }
        if (rec.aux2 != kNone) {
          w.Key("valid_until");
          w.Char('"');
          AnyTime(w, DayStart(static_cast<int>(rec.aux2)) + 7 * kHourMs);
          w.Char('"');
        }
        break;
      case kPageViewed: {
        Enum(w, "page_type", kPageTypes[rec.e1]);
        if (rec.e1 == kGame) {
          w.Key("game_id");
          GameId(w, rec.game);
        }
        w.Key("page_path");
        w.Char('"');
        switch (rec.e1) {
          case kHome: w.Raw("/"); break;
          case kGame: w.Raw("/app/game_"); w.Int(1000 + static_cast<int64_t>(rec.game)); break;
          case kSearch: w.Raw("/search"); break;
          case kCategory: w.Raw("/category/"); w.Raw(PickQuick(q, kGenres)); break;
          case kDeveloper:
            w.Raw("/developer/dev_");
            w.Int(100 + static_cast<int64_t>(games_[rec.aux].developer));
            break;
          default: w.Char('/'); w.Raw(kPageTypes[rec.e1]); break;
        }
        const std::string_view utm_source = PickQuick(q, kUtmSources);
        if (rec.e2 == 4) {  // ad traffic lands with UTM parameters in the URL (intake strips the query)
          w.Raw("?utm_source=");
          w.Raw(utm_source);
          w.Raw("&utm_medium=cpc");
        }
        w.Char('"');
        Enum(w, "referrer_type", kReferrerTypes[rec.e2]);
        if (rec.e2 == 4) {
          Enum(w, "utm_source", utm_source);
          Enum(w, "utm_medium", "cpc");
        }
        if (!has_user) {
          w.Key("anonymous_id");
          HexId(w, "anon-", Mix64(rec.key ^ keys_[15]), 16);
        }
        CountryPlatform(w, rec, true, true);
        break;
      }
      case kSearchPerformed:
        w.Key("query");
        SearchQuery(w, q);
        w.Key("results_count");
        w.Int(rec.aux);
        w.Key("page");
        w.Int(rec.e1);
        if (rec.flags & 1) {
          w.Key("applied_filters");
          w.BeginObject();
          Enum(w, "genre", PickQuick(q, kGenres));
          if (q.Chance(0.5)) {
            static constexpr int kMaxPrices[4] = {300, 500, 1000, 2000};
            w.Key("max_price");
            w.Int(PickQuick(q, kMaxPrices));
          }
          w.EndObject();
        }
        if (!has_user) {
          w.Key("anonymous_id");
          HexId(w, "anon-", Mix64(rec.key ^ keys_[15]), 16);
        }
        CountryPlatform(w, rec, true, true);
        break;
      case kWishlistAdded:
        w.Key("game_id");
        GameId(w, rec.game);
        Enum(w, "source_page", kPageTypes[rec.e1]);
        CountryPlatform(w, rec, false, true);
        break;
      case kWishlistRemoved: {
        static constexpr std::string_view kReasons[3] = {"user_removed", "purchased", "other"};
        w.Key("game_id");
        GameId(w, rec.game);
        Enum(w, "reason", kReasons[rec.e1]);
        break;
      }
      case kCartItemAdded:
        w.Key("cart_id");
        NumId(w, "cart_", rec.key);
        w.Key("game_id");
        GameId(w, rec.game);
        Money(w, rec.num, rec.currency);
        Enum(w, "item_type", "game");
        if (rec.e1 > 0) {
          w.Key("discount_percent");
          w.Int(rec.e1);
        }
        CountryPlatform(w, rec, true, true);
        break;
      case kCartItemRemoved:
        w.Key("cart_id");
        NumId(w, "cart_", rec.key);
        w.Key("game_id");
        GameId(w, rec.game);
        Enum(w, "item_type", "game");
        Money(w, rec.num, rec.currency);
        Enum(w, "reason", kCartRemoveReasons[rec.e1]);
        break;
      case kCheckoutStarted:
        w.Key("cart_id");
        NumId(w, "cart_", rec.key);
        w.Key("order_id");
        NumId(w, "ord_", rec.key);
        Money(w, rec.num, rec.currency);
        w.Key("items_count");
        w.Int(rec.e2);
        GameIdArray(w, rec);
        Enum(w, "payment_method", kPaymentMethods[rec.e1]);
        CountryPlatform(w, rec, true, true);
        break;
      case kPurchaseCompleted:
        w.Key("order_id");
        NumId(w, "ord_", rec.key);
        w.Key("game_id");
        GameId(w, rec.game);
        Money(w, rec.num, rec.currency);
        Enum(w, "item_type", "game");
        Enum(w, "payment_method", kPaymentMethods[rec.e1]);
        if (rec.e2 > 0) {
          w.Key("discount_percent");
          w.Int(rec.e2);
        }
        w.Key("is_gift");
        w.Bool((rec.flags & 1) != 0);
        if (rec.flags & 1) {
          w.Key("recipient_user_id");
          QuotedUserId(w, rec.aux);
        }
        w.Key("is_first_purchase");
        w.Bool((rec.flags & 2) != 0);
        w.Key("cart_id");
        NumId(w, "cart_", rec.key);
        CountryPlatform(w, rec, true, true);
        break;
      case kPurchaseFailed:
        w.Key("order_id");
        NumId(w, "ord_", rec.key);
        Money(w, rec.num, rec.currency);
        Enum(w, "failure_reason", kFailureReasons[rec.e3]);
        w.Key("attempt");
        w.Int(rec.e2);
        Enum(w, "payment_method", kPaymentMethods[rec.e1]);
        GameIdArray(w, rec);
        if (rec.aux == kNone) {
          w.Key("game_id");
          GameId(w, rec.game);
        }
        break;
      case kRefundCompleted:
        w.Key("order_id");
        NumId(w, "ord_", rec.key);
        w.Key("refund_id");
        NumId(w, "rf_", rec.aux2);
        w.Key("game_id");
        GameId(w, rec.game);
        Money(w, rec.num, rec.currency);
        Enum(w, "item_type", "game");
        Enum(w, "reason", kRefundReasons[rec.e1]);
        w.Key("playtime_seconds");
        w.Int(rec.aux);
        w.Key("days_since_purchase");
        w.Int(rec.e2);
        CountryPlatform(w, rec, true, false);
        break;
      case kGameInstalled: {
        const Game& game = games_[rec.game];
        w.Key("game_id");
        GameId(w, rec.game);
        w.Key("game_version");
        GameVersion(w, game, d);
        w.Key("install_size_bytes");
        w.Int(static_cast<int64_t>(game.size_mb) * 1048576 + static_cast<int64_t>(q.Below(1048576)));
        w.Key("install_duration_seconds");
        w.Int(rec.aux);
        w.Key("is_reinstall");
        w.Bool((rec.flags & 1) != 0);
        CountryPlatform(w, rec, false, true);
        break;
      }
      case kSessionStarted:
        w.Key("game_id");
        GameId(w, rec.game);
        w.Key("session_id");
        SessionId(w, rec.key);
        w.Key("game_version");
        GameVersion(w, games_[rec.game], d);
        Enum(w, "launch_source", kLaunchSources[rec.e1]);
        CountryPlatform(w, rec, true, true);
        w.Key("device_id");
        HexId(w, "dev-", Mix64(static_cast<uint64_t>(rec.user) ^ keys_[13]), 12);
        break;
      case kSessionEnded:
        w.Key("game_id");
        GameId(w, rec.game);
        w.Key("session_id");
        SessionId(w, rec.key);
        w.Key("duration_seconds");
        w.Int(rec.num);
        Enum(w, "end_reason", kEndReasons[rec.e1]);
        CountryPlatform(w, rec, true, true);
        break;
      case kAchievementUnlocked: {
        const Game& game = games_[rec.game];
        w.Key("user_id");
        QuotedUserId(w, rec.user);
        w.Key("game_id");
        GameId(w, rec.game);
        w.Key("achievement_id");
        NumId(w, "ach_", rec.aux2);
        w.Key("session_id");
        SessionId(w, rec.key);
        w.Key("achievement_name");
        w.Char('"');
        w.Raw(kAchievementPrefixes[(rec.aux2 + game.title_a) % 8]);
        w.Char(' ');
        w.Raw(kTitleNouns[(rec.aux2 * 7 + game.title_b) % 20]);
        w.Char('"');
        w.Key("points");
        w.Int(5 * (1 + static_cast<int64_t>((rec.aux2 * 3 + game.title_a) % 20)));
        w.Key("global_unlock_percent");  // 80% x 0.88^k, in tenths
        w.Tenths(std::max<int64_t>(1, static_cast<int64_t>(800.0 * DetPow(0.88, rec.aux2))));
        break;
      }
      case kReviewPosted: {
        w.Key("user_id");
        QuotedUserId(w, rec.user);
        w.Key("game_id");
        GameId(w, rec.game);
        w.Key("review_id");
        HexId(w, "rev_", Mix64(((static_cast<uint64_t>(rec.user) << 32) | rec.game) ^ keys_[16]), 16);
        if (rec.e1 > 0) {
          w.Key("rating");
          w.Int(rec.e1);
        }
        if (rec.e2 > 0) {
          w.Key("recommended");
          w.Bool(rec.e2 == 2);
        }
        const bool russian = (rec.flags & 4) != 0;
        if (rec.flags & 1) {
          w.Key("text");
          ReviewText(w, q, russian);
        }
        Enum(w, "language", russian ? "ru" : "en");
        w.Key("playtime_seconds");
        w.Int(rec.aux);
        w.Key("is_update");
        w.Bool((rec.flags & 2) != 0);
        break;
      }
      case kFriendAdded:
        w.Key("friend_user_id");
        QuotedUserId(w, rec.aux);
        w.Key("friendship_id");
        NumId(w, "fr_", rec.key);
        Enum(w, "method", kFriendMethods[rec.e1]);
        break;
      case kExposureRecorded: {
        const ExperimentInfo& experiment = kExperiments[rec.e1];
        Enum(w, "experiment", experiment.key);
        Enum(w, "variant", experiment.variants[rec.e2]);
        Enum(w, "surface", experiment.surface);
        CountryPlatform(w, rec, true, true);
        break;
      }
      default:
        break;
    }
    w.EndObject();
    w.Char('}');
    ++type_counts_[rec.type];
    emit_(w.view());
  }

  const std::function<void(std::string_view)>& emit_;
  Rng rng_;
  uint64_t seed_;
  int days_;
  int64_t start_ms_;
  int64_t end_ms_;
  int64_t start_day_;
  uint32_t user_count_;
  uint32_t game_count_;
  uint64_t keys_[24] = {};

  std::vector<Game> games_;
  std::vector<uint32_t> game_by_rank_;
  std::vector<double> game_cdf_;
  std::vector<uint32_t> free_games_;
  std::vector<double> free_cdf_;
  std::vector<User> users_;
  std::vector<int64_t> reg_ms_;
  std::vector<uint64_t> seen_;

  std::vector<std::vector<Rec>> buckets_;
  std::vector<uint64_t> order_;
  uint64_t seq_ = 0;
  uint64_t event_counter_ = 0;
  uint64_t anon_counter_ = 0;
  uint64_t cart_counter_ = 100000;
  uint64_t session_counter_ = 0;
  uint64_t friendship_counter_ = 500000;
  uint64_t refund_counter_ = 10000;
  uint64_t type_counts_[kTypeCount] = {};

  std::vector<std::string> day_prefix_;
  std::string headers_[kTypeCount];
  std::string store_exposure_header_;
  JsonWriter writer_;
  std::string scratch_;
};

}  // namespace

GeneratorStats Generate(const GeneratorOptions& options, const std::function<void(std::string_view)>& emit) {
  const auto start_day = ParseIsoDate(options.start_date);
  if (!start_day || options.users < 1 || options.users >= static_cast<int64_t>(kNone) || options.days < 1 ||
      options.games < 0 || options.days > 36600) {
    return {};
  }
  Simulation simulation(options, *start_day, emit);
  return simulation.Run();
}

}  // namespace analytics::gen
