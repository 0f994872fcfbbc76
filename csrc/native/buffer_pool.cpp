#include "buffer_pool.hpp"

#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <string>

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

// Below this, a request is served without looking at the machine's memory.
constexpr std::size_t kCheckBytes = std::size_t{1} << 30;

// Bytes this process may still get without the kernel's OOM killer stepping in: MemAvailable, capped by the
// room left under a cgroup v2 memory limit (a container's). SIZE_MAX when neither is known.
std::size_t available_bytes() {
    std::size_t available = std::numeric_limits<std::size_t>::max();
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    std::size_t kib = 0;
    while (meminfo >> key >> kib >> unit)
        if (key == "MemAvailable:") {
            available = kib * 1024;
            break;
        }
    std::ifstream self("/proc/self/cgroup");
    for (std::string line; std::getline(self, line);)
        if (line.rfind("0::", 0) == 0) {
            const std::string dir = "/sys/fs/cgroup" + line.substr(3);
            std::ifstream max_file(dir + "/memory.max"), current_file(dir + "/memory.current");
            std::size_t limit = 0, used = 0;
            if (max_file >> limit && current_file >> used)  // "max" (no limit) fails to parse: no cap
                available = std::min(available, limit > used ? limit - used : 0);
        }
    return available;
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
    // Linux overcommits: an allocation beyond the memory there is succeeds, and the process is killed later, when
    // its pages are first written. Refused here instead, as an error the caller can act on.
    if (bytes >= kCheckBytes && bytes > available_bytes()) return nullptr;
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
