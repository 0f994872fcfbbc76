// Summed-area table. Memory-bound: one pass that reads the map once and writes the table once.
//
// Each output row is S[y+1] = S[y] + prefix(map[y]); the running row S[y] stays in a small buffer that lives in
// L1/L2, so the table itself is only ever written (with streaming stores when it is too big for the caches).
// Threads take contiguous row blocks; a block's first row needs the column sums of every row above it, which the
// thread reads itself before starting (a read-only pass, cheaper than the write pass), so no thread waits on
// another. Blocks are sized so that this extra read evens out.
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "kernels.hpp"

#if FOVEAL_X86
#include <immintrin.h>
#endif

namespace foveal {
namespace {

// Below this many table bytes, regular stores keep the table in cache for the box queries that follow.
constexpr std::size_t kStreamBytes = std::size_t{48} << 20;
constexpr index_t kMinRowsPerThread = 64;
constexpr int kMaxThreads = 4;  // beyond this the per-block column-sum reads outweigh the gain

template <class T>
void add_rows_generic(double *acc, const T *map, index_t rows, index_t w) {
    for (index_t y = 0; y < rows; ++y)
        for (index_t x = 0; x < w; ++x) acc[x] += static_cast<double>(map[y * w + x]);
}

template <class T>
void update_row_generic(const T *src, double *running, index_t w) {
    double carry = 0.0;
    for (index_t x = 0; x < w; ++x) {
        carry += static_cast<double>(src[x]);
        running[x] += carry;
    }
}

#if FOVEAL_X86
#define FOVEAL_AVX2 __attribute__((target("avx2,fma")))

FOVEAL_AVX2 inline __m256d load4(const float *p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
FOVEAL_AVX2 inline __m256d load4(const double *p) { return _mm256_loadu_pd(p); }

// Inclusive prefix sum of four lanes: [a, a+b, a+b+c, a+b+c+d].
FOVEAL_AVX2 inline __m256d prefix4(__m256d v) {
    v = _mm256_add_pd(v, _mm256_blend_pd(_mm256_permute4x64_pd(v, _MM_SHUFFLE(2, 1, 0, 3)), _mm256_setzero_pd(), 0x1));
    return _mm256_add_pd(v, _mm256_permute2f128_pd(v, v, 0x08));
}

FOVEAL_AVX2 inline __m256d last_lane(__m256d v) { return _mm256_permute4x64_pd(v, _MM_SHUFFLE(3, 3, 3, 3)); }

template <class T>
FOVEAL_AVX2 void add_rows_avx2(double *acc, const T *map, index_t rows, index_t w) {
    for (index_t y = 0; y < rows; ++y) {
        const T *src = map + y * w;
        index_t x = 0;
        for (; x + 4 <= w; x += 4) _mm256_store_pd(acc + x, _mm256_add_pd(_mm256_load_pd(acc + x), load4(src + x)));
        for (; x < w; ++x) acc[x] += static_cast<double>(src[x]);
    }
}

// dst[x] = prev[x] + src[0] + ... + src[x], vectorised from column `head` on. Table rows are (w+1) doubles long,
// so most start off a 32-byte boundary, and unaligned stores that split cache lines are slow: `head` is chosen
// from the row's offset in the table (not from its address, so results do not depend on where the table lives)
// to make the stores aligned in a 32-byte aligned table. Eight columns per step as two independent four-lane
// prefixes keep the loop-carried dependency at one add. `prev` may alias `running`, which (when not null)
// receives a copy of the row for the next one to read.
template <class T, bool Stream>
FOVEAL_AVX2 void sat_row_avx2(const T *src, const double *prev, double *running, double *dst, index_t w,
                              index_t head) {
    index_t x = 0;
    double carry_s = 0.0;
    for (; x < std::min(head, w); ++x) {
        carry_s += static_cast<double>(src[x]);
        dst[x] = prev[x] + carry_s;
        if (running) running[x] = dst[x];
    }
    __m256d carry = _mm256_set1_pd(carry_s);
    for (; x + 8 <= w; x += 8) {
        const __m256d a = prefix4(load4(src + x));
        const __m256d b = prefix4(load4(src + x + 4));
        const __m256d a_total = last_lane(a);
        const __m256d ra = _mm256_add_pd(_mm256_add_pd(a, carry), _mm256_loadu_pd(prev + x));
        const __m256d rb =
            _mm256_add_pd(_mm256_add_pd(b, _mm256_add_pd(carry, a_total)), _mm256_loadu_pd(prev + x + 4));
        carry = _mm256_add_pd(carry, _mm256_add_pd(a_total, last_lane(b)));
        if (running) {
            _mm256_storeu_pd(running + x, ra);
            _mm256_storeu_pd(running + x + 4, rb);
        }
        if constexpr (Stream) {  // streaming stores need the alignment; sat_impl checks it
            _mm256_stream_pd(dst + x, ra);
            _mm256_stream_pd(dst + x + 4, rb);
        } else {
            _mm256_storeu_pd(dst + x, ra);
            _mm256_storeu_pd(dst + x + 4, rb);
        }
    }
    carry_s = _mm256_cvtsd_f64(carry);
    for (; x < w; ++x) {
        carry_s += static_cast<double>(src[x]);
        dst[x] = prev[x] + carry_s;
        if (running) running[x] = dst[x];
    }
}

// Rows [0, rows) of a block whose running row S[y0] is in `running`. Cached tables read the previous row back
// from the table; streamed ones are not in cache, so they keep the running row up to date instead.
template <class T>
FOVEAL_AVX2 void sat_rows_avx2(const T *map, index_t rows, index_t w, double *running, const double *table,
                               double *out, bool stream) {
    for (index_t y = 0; y < rows; ++y) {
        double *dst = out + y * (w + 1);
        dst[0] = 0.0;
        const index_t head = (4 - (dst + 1 - table) % 4) % 4;
        if (stream)
            sat_row_avx2<T, true>(map + y * w, running, running, dst + 1, w, head);
        else
            sat_row_avx2<T, false>(map + y * w, y == 0 ? running : dst + 1 - (w + 1), nullptr, dst + 1, w, head);
    }
    if (stream) _mm_sfence();
}
#endif

// Row boundaries that even out per-thread cost: thread t pre-reads rows [0, start_t) at relative cost
// `read_cost` per row and then runs its own block at cost 1 per row.
std::vector<index_t> balanced_blocks(index_t h, int n, double read_cost) {
    std::vector<double> start(static_cast<std::size_t>(n + 1), 0.0);
    for (int t = 0; t < n; ++t) start[t + 1] = start[t] + 1.0 - read_cost * start[t];
    std::vector<index_t> rows(static_cast<std::size_t>(n + 1));
    for (int t = 0; t <= n; ++t) rows[t] = static_cast<index_t>(static_cast<double>(h) * start[t] / start[n] + 0.5);
    return rows;
}

template <class T>
void sat_impl(const T *map, index_t h, index_t w, double *sat) {
    require(h >= 1 && w >= 1, "prob must be at least 1x1, got " + std::to_string(h) + "x" + std::to_string(w));
    const bool stream = static_cast<std::size_t>((h + 1) * (w + 1)) * sizeof(double) >= kStreamBytes &&
                        reinterpret_cast<std::uintptr_t>(sat) % 32 == 0;
    const bool avx2 = cpu_has_avx2();
    std::fill(sat, sat + w + 1, 0.0);
    const int n = static_cast<int>(std::min<index_t>({thread_count(), kMaxThreads, h / kMinRowsPerThread}));
    // Pre-reading a row only loads sizeof(T) bytes per value, the block pass also writes 8.
    const double read_cost = static_cast<double>(sizeof(T)) / static_cast<double>(sizeof(T) + 2 * sizeof(double));
    const std::vector<index_t> rows = balanced_blocks(h, std::max(n, 1), read_cost);
    run_threads(std::max(n, 1), [&](int t) {
        const index_t y0 = rows[t], y1 = rows[t + 1];
        // Running row S[y] (without the zero column), 64-byte aligned and zeroed.
        const std::size_t bytes = (static_cast<std::size_t>(w) * sizeof(double) + 63) / 64 * 64;
        const std::unique_ptr<double, decltype(&std::free)> buffer(static_cast<double *>(std::aligned_alloc(64, bytes)),
                                                                   &std::free);
        if (!buffer) throw std::bad_alloc();
        double *running = buffer.get();
        std::fill(running, running + w, 0.0);
#if FOVEAL_X86
        if (avx2) {
            add_rows_avx2(running, map, y0, w);
            for (index_t x = 1; x < w; ++x) running[x] += running[x - 1];
            sat_rows_avx2(map + y0 * w, y1 - y0, w, running, sat, sat + (y0 + 1) * (w + 1), stream);
            return;
        }
#endif
        add_rows_generic(running, map, y0, w);
        for (index_t x = 1; x < w; ++x) running[x] += running[x - 1];
        for (index_t y = y0; y < y1; ++y) {
            double *dst = sat + (y + 1) * (w + 1);
            update_row_generic(map + y * w, running, w);
            dst[0] = 0.0;
            std::copy(running, running + w, dst + 1);
        }
    });
}

}  // namespace

void summed_area_table(const float *map, index_t h, index_t w, double *sat) { sat_impl(map, h, w, sat); }
void summed_area_table(const double *map, index_t h, index_t w, double *sat) { sat_impl(map, h, w, sat); }

}  // namespace foveal
