// Shared helpers for foveal's CPU kernels: input checks, thread fan-out, CPU feature dispatch.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace foveal {

using index_t = std::ptrdiff_t;

// User errors become std::invalid_argument, which pybind11 turns into ValueError.
inline void require(bool ok, const std::string &message) {
    if (!ok) throw std::invalid_argument(message);
}

// Hot loops are compiled twice (AVX2+FMA and the x86-64-v2 baseline) and picked at load time, so one wheel
// runs everywhere and still uses wide vectors where the CPU has them.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define FOVEAL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
// Hand-vectorised kernels, called only where cpu_has_avx2().
#define FOVEAL_AVX2 __attribute__((target("avx2,fma")))
#define FOVEAL_X86 1
#else
#define FOVEAL_CLONES
#define FOVEAL_X86 0
#endif

bool cpu_has_avx2();

// Most workers FOVEAL_NUM_THREADS may ask for (foveal.cpu.MAX_THREADS refuses more before any work).
inline constexpr int kMaxThreads = 1024;

// Worker count: FOVEAL_NUM_THREADS when set (>= 1, at most kMaxThreads), else the CPUs this process may really use:
// its affinity mask, capped by a cgroup CPU quota (a container given 2 CPUs on a 64-core host gets 2 workers, not 64).
int thread_count();
// CPUs this process may run on: affinity and the cgroup quota, whatever FOVEAL_NUM_THREADS says.
int usable_cpus();

// Runs fn(tid) for every tid in [0, n) on the process's persistent workers and the calling thread, and returns
// when all have run; the first exception is rethrown here. A tid goes to whichever thread claims it first, the
// caller included, so a worker that the OS has not scheduled yet never holds the caller up: the caller runs the
// unclaimed tids itself. Workers sleep between jobs. A second caller that finds the workers busy runs its job
// alone rather than queue behind the first.
void run_threads(int n, const std::function<void(int)> &fn);

// Blocks until `flag` is set by another thread, spinning briefly and then sleeping: a waiter must not take the
// CPU from the thread it waits for when the machine has more runnable threads than cores.
void wait_until_set(const std::atomic<bool> &flag);

// Sets `flag` and wakes the threads sleeping in wait_until_set.
void set_and_wake(std::atomic<bool> &flag);

// Runs fn(begin, end) over [0, n) in chunks of `chunk` items handed out on demand: on a shared machine a thread
// that loses its CPU does not hold the others up. Chunk boundaries do not depend on the thread count, so
// per-chunk partial results (slot begin / chunk) combine in the same order however many threads run.
template <class Fn>
void parallel_for(index_t n, index_t chunk, Fn &&fn) {
    const index_t n_chunks = (n + chunk - 1) / chunk;
    const int n_threads = static_cast<int>(std::min<index_t>(thread_count(), n_chunks));
    std::atomic<index_t> next{0};
    run_threads(n_threads, [&](int) {
        for (index_t c = next++; c < n_chunks; c = next++) fn(c * chunk, std::min(n, (c + 1) * chunk));
    });
}

}  // namespace foveal
