// Shared helpers for foveal's CPU kernels: input checks, thread fan-out, CPU feature dispatch.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
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
#define FOVEAL_X86 1
#else
#define FOVEAL_CLONES
#define FOVEAL_X86 0
#endif

bool cpu_has_avx2();

// Worker count: FOVEAL_NUM_THREADS when set (>= 1), else the CPUs this process may run on.
int thread_count();

// Runs fn(tid) for tid in [0, n) with tid 0 on the calling thread; the first exception is rethrown here.
template <class Fn>
void run_threads(int n, Fn &&fn) {
    if (n <= 1) {
        fn(0);
        return;
    }
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
    std::vector<std::thread> workers;
    workers.reserve(static_cast<std::size_t>(n - 1));
    for (int t = 1; t < n; ++t) {
        workers.emplace_back([&, t] {
            try {
                fn(t);
            } catch (...) {
                errors[static_cast<std::size_t>(t)] = std::current_exception();
            }
        });
    }
    try {
        fn(0);
    } catch (...) {
        errors[0] = std::current_exception();
    }
    for (auto &w : workers) w.join();
    for (auto &e : errors)
        if (e) std::rethrow_exception(e);
}

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
