#include "common.hpp"

#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if FOVEAL_X86
#include <immintrin.h>
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

namespace {

// CPUs allowed by a cgroup quota on `dir` (v2 cpu.max, v1 cfs files), rounded up; 0 when there is none.
int cgroup_quota_cpus(const std::string &dir, bool v2) {
    double quota = -1, period = 0;
    if (v2) {
        std::ifstream file(dir + "/cpu.max");
        std::string q;
        if (!(file >> q >> period) || q == "max") return 0;
        quota = std::atof(q.c_str());
    } else {
        std::ifstream q(dir + "/cpu.cfs_quota_us"), p(dir + "/cpu.cfs_period_us");
        if (!(q >> quota) || !(p >> period)) return 0;
    }
    if (quota <= 0 || period <= 0) return 0;
    return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

// The tightest quota on this process's cgroup and its ancestors (a parent's quota binds its children too).
int cgroup_cpus() {
    std::ifstream self("/proc/self/cgroup");
    std::string line;
    int best = 0;
    while (std::getline(self, line)) {
        const auto first = line.find(':'), second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        const std::string controllers = line.substr(first + 1, second - first - 1);
        std::string path = line.substr(second + 1);
        const bool v2 = controllers.empty();
        if (!v2 && ("," + controllers + ",").find(",cpu,") == std::string::npos) continue;
        const std::string root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/cpu";
        for (;;) {
            const int n = cgroup_quota_cpus(root + path, v2);
            if (n > 0) best = best ? std::min(best, n) : n;
            if (path.empty() || path == "/") break;
            path = path.substr(0, path.find_last_of('/'));
        }
    }
    return best;
}

int detect_threads() {
    if (const char *env = std::getenv("FOVEAL_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n >= 1) return std::min(n, kMaxThreads);
    }
    return usable_cpus();
}

inline void cpu_relax() {
#if FOVEAL_X86
    _mm_pause();
#endif
}

// One run_threads call: tids are claimed with `next`; `done` counts finished tids.
struct Job {
    const std::function<void(int)> *fn;
    int n;
    std::atomic<int> next{1};  // tid 0 is the caller's
    std::atomic<int> done{0};
    std::vector<std::exception_ptr> errors;
    std::mutex mutex;
    std::condition_variable finished;

    Job(const std::function<void(int)> &f, int count) : fn(&f), n(count), errors(static_cast<std::size_t>(count)) {}

    void run(int tid) {
        try {
            (*fn)(tid);
        } catch (...) {
            errors[static_cast<std::size_t>(tid)] = std::current_exception();
        }
        if (done.fetch_add(1) + 1 == n) {
            std::lock_guard<std::mutex> lock(mutex);
            finished.notify_all();
        }
    }

    // Runs tids until none is left to claim. A worker that wakes after the job ended claims nothing, so it never
    // calls `fn`, whose captures are gone by then; the Job itself lives on through the worker's shared_ptr.
    void claim_all() {
        for (int t = next++; t < n; t = next++) run(t);
    }
};

struct Pool {
    std::mutex mutex;
    std::condition_variable wake;
    std::shared_ptr<Job> job;
    std::uint64_t generation = 0;
    bool busy = false;
    int workers = 0;

    void start(int count) {
        for (int i = 0; i < count; ++i) std::thread([this] { serve(); }).detach();
        std::lock_guard<std::mutex> lock(mutex);
        workers = count;
    }

    void serve() {
        std::uint64_t seen = 0;
        for (;;) {
            std::shared_ptr<Job> current;
            {
                std::unique_lock<std::mutex> lock(mutex);
                wake.wait(lock, [&] { return generation != seen; });
                seen = generation;
                current = job;
            }
            if (current) current->claim_all();
        }
    }
};

// Never destroyed: workers sleep in them until the process exits. A forked child starts afresh (the parent's
// workers do not exist there, and a mutex may have been held at the fork): the child handler only clears the
// pointers, which is async-signal-safe, and the next use builds new ones.
std::atomic<Pool *> g_pool{nullptr};

struct Sleepers {
    std::mutex mutex;
    std::condition_variable wake;
    std::atomic<int> count{0};
};

std::atomic<Sleepers *> g_sleepers{nullptr};

void forget_after_fork() {
    g_pool.store(nullptr);
    g_sleepers.store(nullptr);
}

template <class T, class Init>
T &lazy(std::atomic<T *> &slot, Init &&init) {
    if (T *existing = slot.load()) return *existing;
    static std::once_flag registered;
#if defined(__linux__)
    std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, forget_after_fork); });
#endif
    auto *made = new T;
    T *expected = nullptr;
    if (!slot.compare_exchange_strong(expected, made)) {
        delete made;
        return *expected;
    }
    init(*made);
    return *made;
}

Pool &pool() {
    return lazy(g_pool, [](Pool &p) { p.start(thread_count() - 1); });
}

Sleepers &sleepers() {
    return lazy(g_sleepers, [](Sleepers &) {});
}

// About 10-40 µs of spinning: longer than a block of kernel work takes to publish, far shorter than a time slice.
constexpr int kSpins = 1 << 10;

}  // namespace

int usable_cpus() {
    int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#if defined(__linux__)
    // hardware_concurrency() counts the host's CPUs; a container or taskset may give us fewer.
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = std::max(1, CPU_COUNT(&set));
    if (const int quota = cgroup_cpus(); quota > 0) n = std::min(n, quota);
#endif
    return n;
}

int thread_count() {
    static const int n = detect_threads();
    return n;
}

void run_threads(int n, const std::function<void(int)> &fn) {
    if (n <= 1) {
        fn(0);
        return;
    }
    auto job = std::make_shared<Job>(fn, n);
    Pool &p = pool();
    bool shared = false;
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        if (!p.busy && p.workers > 0) {
            p.busy = shared = true;
            p.job = job;
            ++p.generation;
        }
    }
    if (shared) p.wake.notify_all();
    job->run(0);
    job->claim_all();
    {
        std::unique_lock<std::mutex> lock(job->mutex);
        job->finished.wait(lock, [&] { return job->done.load() == n; });
    }
    if (shared) {
        std::lock_guard<std::mutex> lock(p.mutex);
        p.job.reset();
        p.busy = false;
    }
    for (auto &e : job->errors)
        if (e) std::rethrow_exception(e);
}

void wait_until_set(const std::atomic<bool> &flag) {
    for (int i = 0; i < kSpins; ++i) {
        if (flag.load(std::memory_order_acquire)) return;
        cpu_relax();
    }
    Sleepers &s = sleepers();
    std::unique_lock<std::mutex> lock(s.mutex);
    // seq_cst on `count` and `flag` (here and in set_and_wake): either the setter sees this sleeper, or this
    // sleeper sees the flag.
    s.count.fetch_add(1);
    s.wake.wait(lock, [&] { return flag.load(); });
    s.count.fetch_sub(1);
}

void set_and_wake(std::atomic<bool> &flag) {
    flag.store(true);
    Sleepers &s = sleepers();
    if (s.count.load() > 0) {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.wake.notify_all();
    }
}

}  // namespace foveal
