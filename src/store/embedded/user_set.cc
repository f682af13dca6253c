// UserSet's hash; see user_set.h.
#include "store/embedded/user_set.h"

#include <xxhash.h>

namespace analytics::store::embedded {

size_t UserSet::Hash::operator()(std::string_view user) const { return XXH3_64bits(user.data(), user.size()); }

}  // namespace analytics::store::embedded
