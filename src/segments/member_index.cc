#include "segments/member_index.h"

#include <mutex>

namespace analytics::segments {

using common::Result;
using common::Status;

void MemberIndex::InsertLocked(uint32_t index, std::string name) {
  if (name.empty()) return;
  auto [it, inserted] = index_.emplace(std::move(name), index);
  if (!inserted) return;
  if (names_.size() <= index) names_.resize(size_t{index} + 1, nullptr);
  names_[index] = &it->first;
}

Status MemberIndex::Load() {
  constexpr int kPage = 100000;
  while (true) {
    int64_t after;
    {
      std::shared_lock lock(mu_);
      after = loaded_up_to_;
    }
    ANALYTICS_ASSIGN_OR_RETURN(auto page, metadata_.ListMemberIndex(after, kPage));
    std::unique_lock lock(mu_);
    for (auto& [index, name] : page) {
      InsertLocked(index, std::move(name));
      loaded_up_to_ = std::max<int64_t>(loaded_up_to_, index);
    }
    if (page.size() < static_cast<size_t>(kPage)) return Status::Ok();
  }
}

std::optional<uint32_t> MemberIndex::Find(std::string_view user) const {
  std::shared_lock lock(mu_);
  const auto it = index_.find(user);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

Result<std::vector<uint32_t>> MemberIndex::IndexesOf(const std::vector<std::string>& users) {
  std::vector<uint32_t> out(users.size());
  std::vector<std::string> unknown;
  std::vector<size_t> unknown_at;
  {
    std::shared_lock lock(mu_);
    for (size_t i = 0; i < users.size(); ++i) {
      const auto it = index_.find(users[i]);
      if (it != index_.end()) {
        out[i] = it->second;
      } else {
        unknown.push_back(users[i]);
        unknown_at.push_back(i);
      }
    }
  }
  if (unknown.empty()) return out;
  ANALYTICS_ASSIGN_OR_RETURN(auto indexes, metadata_.MemberIndexes(unknown));
  std::unique_lock lock(mu_);
  for (size_t j = 0; j < unknown.size(); ++j) {
    out[unknown_at[j]] = indexes[j];
    InsertLocked(indexes[j], std::move(unknown[j]));
  }
  return out;
}

Result<std::string> MemberIndex::NameOf(uint32_t index) {
  {
    std::shared_lock lock(mu_);
    if (index < names_.size() && names_[index] != nullptr) return *names_[index];
    if (static_cast<int64_t>(index) <= loaded_up_to_) return std::string();
  }
  ANALYTICS_RETURN_IF_ERROR(Load());
  std::shared_lock lock(mu_);
  if (index < names_.size() && names_[index] != nullptr) return *names_[index];
  return std::string();
}

Result<std::optional<uint32_t>> MemberIndex::Forget(const std::string& user) {
  auto forgotten = metadata_.ForgetMember(user);
  if (!forgotten.ok() && forgotten.status().code() != common::StatusCode::kNotFound) return forgotten.status();
  std::unique_lock lock(mu_);
  const auto it = index_.find(user);
  std::optional<uint32_t> index;
  if (forgotten.ok()) index = *forgotten;
  if (it != index_.end()) {
    index = it->second;
    if (it->second < names_.size()) names_[it->second] = nullptr;
    index_.erase(it);
  }
  return index;
}

size_t MemberIndex::size() const {
  std::shared_lock lock(mu_);
  return index_.size();
}

}  // namespace analytics::segments
