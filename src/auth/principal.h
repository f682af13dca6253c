// Principal: who is calling, as proven by a verified JWT; and the roles of spec section 3.1.
// Thread-safety: plain values.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace analytics::auth {

enum class Role { kPlatformAdmin, kDeveloper, kMarketingManager, kService };

std::string_view RoleName(Role role);
std::optional<Role> RoleFromName(std::string_view name);

struct Principal {
  std::string subject;               // `sub`
  std::set<Role> roles;              // known roles from `roles`; unknown names are ignored
  std::set<std::string> game_ids;    // `game_ids`: the games a developer owns
  int64_t expires_at = 0;            // `exp`, seconds since the epoch

  bool Has(Role role) const { return roles.count(role) > 0; }
  bool HasAny(const std::vector<Role>& allowed) const {
    for (Role role : allowed) {
      if (Has(role)) return true;
    }
    return false;
  }
  // True when the principal sees every game: any role but developer-only.
  bool SeesAllGames() const {
    return Has(Role::kPlatformAdmin) || Has(Role::kMarketingManager) || Has(Role::kService);
  }
  // May this principal see data of `game_id`?
  bool MaySeeGame(std::string_view game_id) const {
    return SeesAllGames() || game_ids.count(std::string(game_id)) > 0;
  }
};

}  // namespace analytics::auth
