#include "common.hpp"

#include <cstdlib>

#if defined(__linux__)
#include <sched.h>
#endif

namespace foveal {

bool cpu_has_avx2() {
#if FOVEAL_X86
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
#else
    return false;
#endif
}

static int detect_threads() {
    if (const char *env = std::getenv("FOVEAL_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n >= 1) return n;
    }
#if defined(__linux__)
    // hardware_concurrency() counts the host's CPUs; a container or taskset may give us fewer.
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

int thread_count() {
    static const int n = detect_threads();
    return n;
}

}  // namespace foveal
