#include "buffer_pool.hpp"

#include <cstdlib>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <utility>
#include <vector>

namespace foveal {
namespace {

constexpr std::size_t kMaxKept = 8;
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kMaxKeptBytes = std::size_t{512} << 20;

struct Pool {
    std::mutex mutex;
    std::vector<std::pair<void *, std::size_t>> kept;
    std::size_t kept_bytes = 0;
};

Pool &pool() {
    static Pool *p = new Pool;  // never destroyed: capsules may return buffers during interpreter shutdown
    return *p;
}

}  // namespace

void *pool_take(std::size_t bytes, std::size_t *capacity) {
    Pool &p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        auto best = p.kept.end();
        for (auto it = p.kept.begin(); it != p.kept.end(); ++it)
            if (it->second >= bytes && it->second <= 2 * bytes && (best == p.kept.end() || it->second < best->second))
                best = it;
        if (best != p.kept.end()) {
            void *ptr = best->first;
            *capacity = best->second;
            p.kept_bytes -= best->second;
            p.kept.erase(best);
            return ptr;
        }
    }
    if (bytes < kHugePage) {
        const std::size_t rounded = std::max<std::size_t>(64, (bytes + 63) / 64 * 64);
        *capacity = rounded;
        return std::aligned_alloc(64, rounded);
    }
    // A fresh large buffer costs a page fault per page on first touch: 2 MiB pages take 512x fewer (NumPy asks
    // for them too). The kernel may still refuse; the advice is only that.
    const std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    *capacity = rounded;
    void *ptr = std::aligned_alloc(kHugePage, rounded);
#if defined(MADV_HUGEPAGE)
    if (ptr) madvise(ptr, rounded, MADV_HUGEPAGE);
#endif
    return ptr;
}

void pool_give(void *ptr, std::size_t capacity) {
    if (capacity < kPoolMinBytes || capacity > kMaxKeptBytes) {
        std::free(ptr);
        return;
    }
    // The buffer just freed is kept, the oldest ones make room: the sizes in use now are the ones asked for next,
    // and a pool full of an earlier workload's buffers would otherwise refuse every new size for good.
    std::vector<void *> evicted;
    {
        Pool &p = pool();
        std::lock_guard<std::mutex> lock(p.mutex);
        while (!p.kept.empty() && (p.kept.size() >= kMaxKept || p.kept_bytes + capacity > kMaxKeptBytes)) {
            evicted.push_back(p.kept.front().first);
            p.kept_bytes -= p.kept.front().second;
            p.kept.erase(p.kept.begin());
        }
        p.kept.emplace_back(ptr, capacity);
        p.kept_bytes += capacity;
    }
    for (void *old : evicted) std::free(old);
}

}  // namespace foveal
