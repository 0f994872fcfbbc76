// Summed-area table. Memory-bound: the table is written once, with the map read from memory once.
//
// Each table row is S[y+1] = S[y] + prefix(map[y]). Rows are cut into blocks whose map rows fit in L2. A block
// first sums its map rows column-wise (reading them into L2), and S at its top plus the row prefix of those sums
// gives S at the top of the next block; so blocks are chained by one cheap step each (decoupled look-back),
// while their write passes, which re-read the map rows from L2, run on any thread in any order. Blocks are
// handed out on demand, so a thread that loses its CPU on a shared machine holds the others up only briefly,
// and the result does not depend on the thread count.
#include <atomic>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "kernels.hpp"

#if FOVEAL_X86
#include <immintrin.h>
#endif

namespace foveal {
namespace {

// Tables this large are written with streaming stores, which skip reading each line in before overwriting it. A
// table larger than a core's L2 is out of cache by the time it is made again (decode and network run between), so
// regular stores paid that read: a 1920x1080 map and table took 3.6 ms on one thread in predict instead of 2.7 (2-core
// Intel Xeon VM). Smaller tables stay in cache for the box queries that follow.
constexpr std::size_t kStreamBytes = std::size_t{2} << 20;
// Map bytes per block: read twice, the second time from L2.
constexpr std::size_t kBlockBytes = std::size_t{256} << 10;

template <class T>
void add_rows_generic(double *acc, const T *map, index_t rows, index_t w) {
    for (index_t y = 0; y < rows; ++y)
        for (index_t x = 0; x < w; ++x) acc[x] += static_cast<double>(map[y * w + x]);
}

void prefix_add_generic(const double *src, const double *prev, double *dst, index_t w) {
    double carry = 0.0;
    for (index_t x = 0; x < w; ++x) {
        carry += src[x];
        dst[x] = prev[x] + carry;
    }
}

template <class T>
void sat_rows_generic(const T *map, index_t rows, index_t w, double *running, const double * /*table*/,
                      double *out, bool /*stream*/, const T * /*ahead*/, index_t /*ahead_rows*/) {
    for (index_t y = 0; y < rows; ++y) {
        double *dst = out + y * (w + 1);
        double carry = 0.0;
        dst[0] = 0.0;
        for (index_t x = 0; x < w; ++x) {
            carry += static_cast<double>(map[y * w + x]);
            running[x] += carry;
            dst[x + 1] = running[x];
        }
    }
}

#if FOVEAL_X86
FOVEAL_AVX2 inline __m256d load4(const float *p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
FOVEAL_AVX2 inline __m256d load4(const double *p) { return _mm256_loadu_pd(p); }

// Inclusive prefix sum of four lanes: [a, a+b, a+b+c, a+b+c+d].
FOVEAL_AVX2 inline __m256d prefix4(__m256d v) {
    v = _mm256_add_pd(v, _mm256_blend_pd(_mm256_permute4x64_pd(v, _MM_SHUFFLE(2, 1, 0, 3)), _mm256_setzero_pd(), 0x1));
    return _mm256_add_pd(v, _mm256_permute2f128_pd(v, v, 0x08));
}

FOVEAL_AVX2 inline __m256d last_lane(__m256d v) { return _mm256_permute4x64_pd(v, _MM_SHUFFLE(3, 3, 3, 3)); }

// acc += column sums of `rows` map rows, four rows per pass to cut the accumulator traffic.
template <class T>
FOVEAL_AVX2 void add_rows_avx2(double *acc, const T *map, index_t rows, index_t w) {
    index_t y = 0;
    for (; y + 4 <= rows; y += 4) {
        const T *r0 = map + y * w, *r1 = r0 + w, *r2 = r1 + w, *r3 = r2 + w;
        index_t x = 0;
        for (; x + 4 <= w; x += 4) {
            const __m256d s = _mm256_add_pd(_mm256_add_pd(load4(r0 + x), load4(r1 + x)),
                                            _mm256_add_pd(load4(r2 + x), load4(r3 + x)));
            _mm256_store_pd(acc + x, _mm256_add_pd(_mm256_load_pd(acc + x), s));
        }
        for (; x < w; ++x)
            acc[x] += (static_cast<double>(r0[x]) + static_cast<double>(r1[x])) +
                      (static_cast<double>(r2[x]) + static_cast<double>(r3[x]));
    }
    for (; y < rows; ++y) {
        const T *src = map + y * w;
        index_t x = 0;
        for (; x + 4 <= w; x += 4) _mm256_store_pd(acc + x, _mm256_add_pd(_mm256_load_pd(acc + x), load4(src + x)));
        for (; x < w; ++x) acc[x] += static_cast<double>(src[x]);
    }
}

// dst[x] = prev[x] + src[0] + ... + src[x], vectorised from column `head` on. Table rows are (w+1) doubles long,
// so most start off a 32-byte boundary, and unaligned stores that split cache lines are slow: `head` is chosen
// from the row's offset in the table (not from its address, so results do not depend on where the table lives)
// to make the stores aligned in an aligned table (32 bytes; 64 for streaming stores). Eight columns per step as
// two independent four-lane prefixes keep the loop-carried dependency at one add. `prev` may alias `running`,
// which (when not null) receives a copy of the row for the next one to read. `ahead` (when not null) is a map row
// of a later block, prefetched so that its column-sum pass, which otherwise waits on memory, finds it in cache.
template <class T, bool Stream>
FOVEAL_AVX2 void sat_row_avx2(const T *src, const double *prev, double *running, double *dst, index_t w,
                              index_t head, const T *ahead) {
    index_t x = 0;
    double carry_s = 0.0;
    for (; x < std::min(head, w); ++x) {
        carry_s += static_cast<double>(src[x]);
        dst[x] = prev[x] + carry_s;
        if (running) running[x] = dst[x];
    }
    __m256d carry = _mm256_set1_pd(carry_s);
    for (; x + 8 <= w; x += 8) {
        if (ahead) _mm_prefetch(reinterpret_cast<const char *>(ahead + x), _MM_HINT_T1);
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

// Table rows for `rows` map rows below the row in `running`. Cached tables read the previous row back from the
// table; streamed ones are not in cache, so they keep `running` up to date instead.
template <class T>
FOVEAL_AVX2 void sat_rows_avx2(const T *map, index_t rows, index_t w, double *running, const double *table,
                               double *out, bool stream, const T *ahead, index_t ahead_rows) {
    for (index_t y = 0; y < rows; ++y) {
        double *dst = out + y * (w + 1);
        dst[0] = 0.0;
        // Streaming stores go out a whole cache line at a time only when each eight-column step fills one line:
        // aligned to 32 bytes but not 64, half the rows sent split lines, and the 4096^2 table took 7-16 % longer.
        const index_t offset = dst + 1 - table;
        const index_t head = stream ? (8 - offset % 8) % 8 : (4 - offset % 4) % 4;
        const T *next = y < ahead_rows ? ahead + y * w : nullptr;
        if (stream)
            sat_row_avx2<T, true>(map + y * w, running, running, dst + 1, w, head, next);
        else
            sat_row_avx2<T, false>(map + y * w, y == 0 ? running : dst + 1 - (w + 1), nullptr, dst + 1, w, head, next);
    }
    if (stream) _mm_sfence();
}

FOVEAL_AVX2 void prefix_add_avx2(const double *src, const double *prev, double *dst, index_t w) {
    sat_row_avx2<double, false>(src, prev, nullptr, dst, w, 0, nullptr);
}
#endif

// 64-byte aligned scratch rows, zeroed.
struct Rows {
    index_t stride;
    std::unique_ptr<double, decltype(&std::free)> data{nullptr, &std::free};
    Rows(index_t count, index_t w) : stride((w + 7) / 8 * 8) {
        const std::size_t n = static_cast<std::size_t>(count * stride);
        data.reset(static_cast<double *>(std::aligned_alloc(64, std::max<std::size_t>(n, 1) * sizeof(double))));
        if (!data) throw std::bad_alloc();
        std::fill(data.get(), data.get() + n, 0.0);
    }
    double *row(index_t i) const { return data.get() + i * stride; }
};

// `fill` (when given) writes each block's map rows just before the block reads them, so making the map costs no
// pass over memory of its own: the rows are still in L2 when the table is built from them.
template <class T>
void sat_impl(const T *map, index_t h, index_t w, double *sat, const RowFill *fill = nullptr) {
    require(h >= 1 && w >= 1, "prob must be at least 1x1, got " + std::to_string(h) + "x" + std::to_string(w));
    const bool stream = static_cast<std::size_t>((h + 1) * (w + 1)) * sizeof(double) >= kStreamBytes &&
                        reinterpret_cast<std::uintptr_t>(sat) % 64 == 0;
    auto add_rows = &add_rows_generic<T>;
    auto prefix_add = &prefix_add_generic;
    auto sat_rows = &sat_rows_generic<T>;
#if FOVEAL_X86
    if (cpu_has_avx2()) {
        add_rows = &add_rows_avx2<T>;
        prefix_add = &prefix_add_avx2;
        sat_rows = &sat_rows_avx2<T>;
    }
#endif
    // Whole multiples of kSatRowAlign rows, so a map written block by block (summed_area_table_filled) is asked
    // for rows from a multiple of it.
    const index_t fit = static_cast<index_t>(kBlockBytes / (sizeof(T) * w)) / kSatRowAlign * kSatRowAlign;
    const index_t block = std::max<index_t>(kSatRowAlign, fit);
    const index_t n_blocks = (h + block - 1) / block;
    const int n_threads = static_cast<int>(std::min<index_t>(thread_count(), n_blocks));

    // Everything is allocated up front: a throw inside would leave other threads waiting on its block.
    // Block tops live in a small ring; a slot is rewritten only after its previous block copied its top out.
    const index_t ring = 2 * n_threads + 2;
    Rows tops(ring, w);  // tops.row(b % ring) = S[b * block], the table row above block b
    Rows scratch(2 * n_threads, w);
    const std::unique_ptr<std::atomic<bool>[]> ready(new std::atomic<bool>[static_cast<std::size_t>(n_blocks)]);
    const std::unique_ptr<std::atomic<bool>[]> taken(new std::atomic<bool>[static_cast<std::size_t>(n_blocks)]);
    for (index_t b = 0; b < n_blocks; ++b) {
        ready[b].store(b == 0, std::memory_order_relaxed);
        taken[b].store(false, std::memory_order_relaxed);
    }
    std::fill(sat, sat + w + 1, 0.0);
    std::atomic<index_t> next{0};
    // A throwing fill must not leave the other threads waiting on its block: its block goes on with whatever the
    // rows hold, and the first exception is rethrown once every thread is done.
    std::exception_ptr fill_error;
    std::mutex fill_error_mutex;
    run_threads(n_threads, [&](int t) {
        double *colsum = scratch.row(2 * t), *running = scratch.row(2 * t + 1);
        for (index_t b = next++; b < n_blocks; b = next++) {
            const index_t y0 = b * block, rows = std::min(block, h - y0);
            if (fill) {
                try {
                    (*fill)(y0, y0 + rows);
                } catch (...) {
                    const std::lock_guard<std::mutex> lock(fill_error_mutex);
                    if (!fill_error) fill_error = std::current_exception();
                }
            }
            if (b + 1 < n_blocks) {
                std::fill(colsum, colsum + w, 0.0);
                add_rows(colsum, map + y0 * w, rows, w);
                wait_until_set(ready[b]);
                if (b + 1 >= ring) wait_until_set(taken[b + 1 - ring]);  // its slot is about to be reused
                prefix_add(colsum, tops.row(b % ring), tops.row((b + 1) % ring), w);
                set_and_wake(ready[b + 1]);
            } else {
                wait_until_set(ready[b]);
            }
            const double *top = tops.row(b % ring);
            std::copy(top, top + w, running);
            set_and_wake(taken[b]);
            // Prefetch the block this thread is likely to take next (the L3 is shared if another one does).
            const index_t ahead0 = y0 + n_threads * block;
            const index_t ahead_rows = std::max<index_t>(0, std::min(block, h - ahead0));
            sat_rows(map + y0 * w, rows, w, running, sat, sat + (y0 + 1) * (w + 1), stream,
                     ahead_rows ? map + ahead0 * w : nullptr, ahead_rows);
        }
    });
    if (fill_error) std::rethrow_exception(fill_error);
}

}  // namespace

void summed_area_table(const float *map, index_t h, index_t w, double *sat) { sat_impl(map, h, w, sat); }
void summed_area_table(const double *map, index_t h, index_t w, double *sat) { sat_impl(map, h, w, sat); }
void summed_area_table_filled(const float *map, index_t h, index_t w, const RowFill &fill, double *sat) {
    sat_impl<float>(map, h, w, sat, &fill);
}

}  // namespace foveal
