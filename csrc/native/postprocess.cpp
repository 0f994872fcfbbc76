// Log-density grid -> probability map: bilinear upsample of the image's window, optional Gaussian blur, softmax.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels.hpp"

#if FOVEAL_X86
#include <immintrin.h>
#endif

namespace foveal {
namespace {

constexpr index_t kRowChunk = 16;
static_assert(kRowChunk % kSatRowAlign == 0, "row chunks must start on ExpRows restart rows");
// How far above the map's max a softmax shift may be: the largest value then still has exp >= e^-20, far from
// float underflow, and every value exp drops (below shift - 88) is under e^-68 of the largest.
constexpr float kMaxShiftSlack = 20.0f;

// Bilinear taps for output index o on a grid axis of `cells` values: grid coordinate
// origin + (o+0.5)*valid/out - 0.5, clamped to the grid (`edge`: it was).
struct Taps {
    std::vector<index_t> i0, i1;
    std::vector<float> frac;
    std::vector<char> edge;
};

Taps bilinear_taps(index_t out_size, double origin, double valid, index_t cells) {
    Taps t;
    t.i0.resize(static_cast<std::size_t>(out_size));
    t.i1.resize(static_cast<std::size_t>(out_size));
    t.frac.resize(static_cast<std::size_t>(out_size));
    t.edge.resize(static_cast<std::size_t>(out_size));
    const double step = valid / static_cast<double>(out_size);
    for (index_t o = 0; o < out_size; ++o) {
        const double unclamped = origin + (o + 0.5) * step - 0.5;
        const double g = std::min<double>(std::max(unclamped, 0.0), static_cast<double>(cells - 1));
        t.edge[o] = g != unclamped;
        const index_t i0 = static_cast<index_t>(std::floor(g));
        t.i0[o] = i0;
        t.i1[o] = std::min(i0 + 1, cells - 1);
        t.frac[o] = static_cast<float>(g - static_cast<double>(i0));
    }
    return t;
}

// Mirror index into [0, n) with the edge sample repeated (scipy.ndimage mode "reflect"), any distance out.
index_t reflect(index_t i, index_t n) {
    const index_t period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
}

std::vector<float> gaussian_weights(double sigma, index_t radius) {
    std::vector<double> k(static_cast<std::size_t>(2 * radius + 1));
    double total = 0.0;
    for (index_t i = -radius; i <= radius; ++i) {
        const double v = std::exp(-0.5 * (static_cast<double>(i) / sigma) * (static_cast<double>(i) / sigma));
        k[static_cast<std::size_t>(i + radius)] = v;
        total += v;
    }
    std::vector<float> out(k.size());
    for (std::size_t i = 0; i < k.size(); ++i) out[i] = static_cast<float>(k[i] / total);
    return out;
}

FOVEAL_CLONES
void lerp_rows(float *dst, const float *a, const float *b, float t, index_t n) {
    for (index_t i = 0; i < n; ++i) dst[i] = a[i] + t * (b[i] - a[i]);
}

// The largest (or smallest) of n values, in eight lanes of a GCC vector type: a plain max loop only vectorises
// under -ffast-math.
template <bool Largest>
FOVEAL_CLONES float row_extreme(const float *v, index_t n) {
    typedef float f8 __attribute__((vector_size(32)));
    const float start = Largest ? -INFINITY : INFINITY;
    f8 lanes;
    for (int j = 0; j < 8; ++j) lanes[j] = start;
    index_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 x;
        std::memcpy(&x, v + i, sizeof x);
        lanes = (Largest ? x > lanes : x < lanes) ? x : lanes;
    }
    float m = start;
    for (; i < n; ++i) m = Largest ? std::max(m, v[i]) : std::min(m, v[i]);
    for (int j = 0; j < 8; ++j) m = Largest ? std::max(m, lanes[j]) : std::min(m, lanes[j]);
    return m;
}

float row_max(const float *v, index_t n) { return row_extreme<true>(v, n); }
float row_min(const float *v, index_t n) { return row_extreme<false>(v, n); }

// exp(x - shift) in float with a branch-free Cephes-style polynomial so the loop vectorises; |rel err| < 2 ulp.
// Inputs are <= 0 after the shift; clamping at -88 makes 2^k underflow to exactly 0 below about -87.7.
FOVEAL_CLONES
void exp_shifted(float *v, index_t n, float shift) {
    for (index_t i = 0; i < n; ++i) {
        const float x = std::max(v[i] - shift, -88.0f);
        const float k = std::floor(x * 1.44269504088896341f + 0.5f);
        float r = x - k * 0.693359375f;
        r = r + k * 2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        const std::int32_t bits = (static_cast<std::int32_t>(k) + 127) << 23;
        float two_k;
        std::memcpy(&two_k, &bits, sizeof two_k);
        v[i] = p * two_k;
    }
}

// float64 sum in independent lanes (vectorisable, and more accurate than one running sum).
FOVEAL_CLONES
double sum_f64(const float *v, index_t n) {
    constexpr index_t kLanes = 8;
    double lanes[kLanes] = {};
    index_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (index_t j = 0; j < kLanes; ++j) lanes[j] += static_cast<double>(v[i + j]);
    double total = 0.0;
    for (; i < n; ++i) total += static_cast<double>(v[i]);
    for (double x : lanes) total += x;
    return total;
}

// exp_shifted then sum_f64, a cache-sized block at a time.
double exp_shifted_sum(float *v, index_t n, float shift) {
    constexpr index_t kBlock = 4096;
    double total = 0.0;
    for (index_t i = 0; i < n; i += kBlock) {
        const index_t len = std::min(kBlock, n - i);
        exp_shifted(v + i, len, shift);
        total += sum_f64(v + i, len);
    }
    return total;
}

FOVEAL_CLONES
void scale_row(float *v, index_t n, float s) {
    for (index_t i = 0; i < n; ++i) v[i] *= s;
}

// dst = k0 * c, then dst += k_j * (a_j + b_j): one symmetric Gaussian tap pair per pass.
FOVEAL_CLONES
void scale_into(float *dst, const float *c, float k0, index_t n) {
    for (index_t i = 0; i < n; ++i) dst[i] = k0 * c[i];
}

FOVEAL_CLONES
void add_pair(float *dst, const float *a, const float *b, float k, index_t n) {
    for (index_t i = 0; i < n; ++i) dst[i] += k * (a[i] + b[i]);
}

// Separable blur of the h x w map in place (vertical into a scratch map, then horizontal back); the maximum of
// each chunk of kRowChunk output rows goes to chunk_max.
void gaussian_blur(float *map, index_t h, index_t w, double sigma, float *chunk_max) {
    const index_t radius = static_cast<index_t>(std::ceil(3.0 * sigma));
    const std::vector<float> k = gaussian_weights(sigma, radius);
    const float *half = k.data() + radius;  // half[j] = weight at offset +-j
    const std::unique_ptr<float[]> tmp(new float[static_cast<std::size_t>(h * w)]);  // fully overwritten
    parallel_for(h, kRowChunk, [&](index_t y0, index_t y1) {
        for (index_t y = y0; y < y1; ++y) {
            float *dst = tmp.get() + y * w;
            scale_into(dst, map + y * w, half[0], w);
            for (index_t j = 1; j <= radius; ++j)
                add_pair(dst, map + reflect(y - j, h) * w, map + reflect(y + j, h) * w, half[j], w);
        }
    });
    parallel_for(h, kRowChunk, [&](index_t y0, index_t y1) {
        std::vector<float> padded(static_cast<std::size_t>(w + 2 * radius));
        float *centre = padded.data() + radius;
        for (index_t y = y0; y < y1; ++y) {
            const float *src = tmp.get() + y * w;
            std::copy(src, src + w, centre);
            for (index_t j = 1; j <= radius; ++j) {
                centre[-j] = src[reflect(-j, w)];
                centre[w - 1 + j] = src[reflect(w - 1 + j, w)];
            }
            float *dst = map + y * w;
            scale_into(dst, centre, half[0], w);
            for (index_t j = 1; j <= radius; ++j) add_pair(dst, centre - j, centre + j, half[j], w);
        }
        chunk_max[y0 / kRowChunk] = row_max(map + y0 * w, (y1 - y0) * w);
    });
}

// The rows between two restarts are made by products (ExpRows), so their loops are most of the map's arithmetic.
// Each takes one pass over the row: v *= q with results below FLT_MIN flushed to zero (runs of products then
// never slow down on subnormals), and the smallest result returned; `product_into` also writes v * scale to dst,
// `product_stats` adds the row's max and float64 sum to running ones. Sums go in 16 lanes (lane i % 16 for all
// but the last n % 16 values, which are added first), so the AVX2 and portable versions add in the same order
// and agree bit for bit. Several independent accumulators: with one, each step waits four cycles on the last.
constexpr index_t kSumLanes = 16;

float product_into_portable(float *v, const float *q, float *dst, float scale, index_t n) {
    float m = INFINITY;
    for (index_t i = 0; i < n; ++i) {
        const float x = v[i] * q[i];
        v[i] = x >= FLT_MIN ? x : 0.0f;
        dst[i] = v[i] * scale;
        m = std::min(m, v[i]);
    }
    return m;
}

float product_stats_portable(float *v, const float *q, index_t n, float &top, double &sum) {
    double lanes[kSumLanes] = {};
    const index_t body = n - n % kSumLanes;
    float m = INFINITY;
    for (index_t i = 0; i < n; ++i) {
        const float x = v[i] * q[i];
        v[i] = x >= FLT_MIN ? x : 0.0f;
        m = std::min(m, v[i]);
        top = std::max(top, v[i]);
        if (i < body) lanes[i % kSumLanes] += static_cast<double>(v[i]);
    }
    double total = 0.0;
    for (index_t i = body; i < n; ++i) total += static_cast<double>(v[i]);
    for (double x : lanes) total += x;
    sum += total;
    return m;
}

#if FOVEAL_X86
FOVEAL_AVX2 inline __m256 product8(float *v, const float *q, __m256 flush) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(v), _mm256_loadu_ps(q));
    const __m256 kept = _mm256_and_ps(x, _mm256_cmp_ps(x, flush, _CMP_GE_OQ));
    _mm256_storeu_ps(v, kept);
    return kept;
}

FOVEAL_AVX2 inline float lanes_min(__m256 a) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}

FOVEAL_AVX2 inline float lanes_max(__m256 a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

FOVEAL_AVX2 float product_into_avx2(float *v, const float *q, float *dst, float scale, index_t n) {
    const __m256 flush = _mm256_set1_ps(FLT_MIN), s = _mm256_set1_ps(scale);
    __m256 low[4];
    for (__m256 &l : low) l = _mm256_set1_ps(INFINITY);
    index_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k) {
            const __m256 x = product8(v + i + 8 * k, q + i + 8 * k, flush);
            _mm256_storeu_ps(dst + i + 8 * k, _mm256_mul_ps(x, s));
            low[k] = _mm256_min_ps(low[k], x);
        }
    for (; i + 8 <= n; i += 8) {
        const __m256 x = product8(v + i, q + i, flush);
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(x, s));
        low[0] = _mm256_min_ps(low[0], x);
    }
    const float rest = product_into_portable(v + i, q + i, dst + i, scale, n - i);
    return std::min(rest, lanes_min(_mm256_min_ps(_mm256_min_ps(low[0], low[1]), _mm256_min_ps(low[2], low[3]))));
}

FOVEAL_AVX2 float product_stats_avx2(float *v, const float *q, index_t n, float &top, double &sum) {
    const __m256 flush = _mm256_set1_ps(FLT_MIN);
    __m256 low[2], high[2];
    __m256d lanes[4];
    for (int k = 0; k < 2; ++k) low[k] = _mm256_set1_ps(INFINITY), high[k] = _mm256_set1_ps(-INFINITY);
    for (__m256d &l : lanes) l = _mm256_setzero_pd();
    index_t i = 0;
    for (; i + kSumLanes <= n; i += kSumLanes)
        for (int k = 0; k < 2; ++k) {
            const __m256 x = product8(v + i + 8 * k, q + i + 8 * k, flush);
            low[k] = _mm256_min_ps(low[k], x);
            high[k] = _mm256_max_ps(high[k], x);
            lanes[2 * k] = _mm256_add_pd(lanes[2 * k], _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
            lanes[2 * k + 1] = _mm256_add_pd(lanes[2 * k + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
        }
    float m = INFINITY;
    double total = 0.0;
    for (; i < n; ++i) {
        const float x = v[i] * q[i];
        v[i] = x >= FLT_MIN ? x : 0.0f;
        m = std::min(m, v[i]);
        top = std::max(top, v[i]);
        total += static_cast<double>(v[i]);
    }
    alignas(32) double spilled[kSumLanes];
    for (int k = 0; k < 4; ++k) _mm256_store_pd(spilled + 4 * k, lanes[k]);
    for (double x : spilled) total += x;
    sum += total;
    top = std::max(top, lanes_max(_mm256_max_ps(high[0], high[1])));
    return std::min(m, lanes_min(_mm256_min_ps(low[0], low[1])));
}
#endif

float product_into(float *v, const float *q, float *dst, float scale, index_t n) {
#if FOVEAL_X86
    if (cpu_has_avx2()) return product_into_avx2(v, q, dst, scale, n);
#endif
    return product_into_portable(v, q, dst, scale, n);
}

float product_stats(float *v, const float *q, index_t n, float &top, double &sum) {
#if FOVEAL_X86
    if (cpu_has_avx2()) return product_stats_avx2(v, q, n, top, sum);
#endif
    return product_stats_portable(v, q, n, top, sum);
}

// Running max and float64 sum of rows of values; each row summed by sum_f64, so the order of the additions depends
// on the row width only.
struct RowStats {
    float max = -INFINITY;
    double sum = 0.0;

    void add_row(const float *v, index_t n) {
        max = std::max(max, row_max(v, n));
        sum += sum_f64(v, n);
    }
};

// The window's log-density, shifted by the grid max, interpolated along x: one row per grid row. Rows of the
// upsampled map are blends of two of these.
struct Upsample {
    index_t h, w;
    Taps ty;
    float dy;  // grid cells from one map row to the next
    std::vector<float> cols;  // gh x w

    const float *row0(index_t y) const { return cols.data() + ty.i0[y] * w; }
    const float *row1(index_t y) const { return cols.data() + ty.i1[y] * w; }
    // Row y of the upsampled log-density into dst.
    void row(index_t y, float *dst) const { lerp_rows(dst, row0(y), row1(y), ty.frac[y], w); }
};

constexpr index_t kMaxSide = index_t{1} << 24;
// Shifted log-densities are floored here: finite values ±3e38 apart overflowed to -inf after the shift, and the
// blend a + t * (b - a) then gave 0 * inf = NaN. Anything this far below the max has exp 0 at any tap weight
// a map's pixels can have (the floor only changes values whose exp was already 0).
constexpr float kLowest = -1e30f;

Upsample upsample(const float *grid, index_t gh, index_t gw, index_t h, index_t w, const Window &window) {
    require(gh >= 1 && gw >= 1, "log_density must be at least 1x1, got " + std::to_string(gh) + "x" +
                                    std::to_string(gw));
    require(h >= 1 && w >= 1, "out_hw must be at least (1, 1), got (" + std::to_string(h) + ", " +
                                  std::to_string(w) + ")");
    // Per-row and per-column interpolation tables take ~21 bytes an entry: a side of 2^31 would ask for 45 GB.
    require(h <= kMaxSide && w <= kMaxSide, "out_hw sides must be at most " + std::to_string(kMaxSide) +
                                                " pixels, got (" + std::to_string(h) + ", " + std::to_string(w) + ")");
    require(std::isfinite(window.height) && std::isfinite(window.width) && window.height > 0.0 && window.width > 0.0,
            "valid_hw must be positive and finite, got (" + std::to_string(window.height) + ", " +
                std::to_string(window.width) + ")");
    require(std::isfinite(window.top) && std::isfinite(window.left),
            "origin_hw must be finite, got (" + std::to_string(window.top) + ", " + std::to_string(window.left) + ")");

    // Shift by the grid max first: values near zero keep more float precision through interpolation, and a
    // bilinear blend of values <= 0 stays <= 0, so without a blur the shifted values need no second max.
    float grid_max = -INFINITY;
    for (index_t i = 0; i < gh * gw; ++i) {
        if (!std::isfinite(grid[i]))
            throw std::invalid_argument("log_density must be finite, found " + std::to_string(grid[i]) + " at (" +
                                        std::to_string(i / gw) + ", " + std::to_string(i % gw) + ")");
        grid_max = std::max(grid_max, grid[i]);
    }
    Upsample up{h, w, bilinear_taps(h, window.top, window.height, gh), static_cast<float>(window.height / h),
                std::vector<float>(gh * w)};
    const Taps tx = bilinear_taps(w, window.left, window.width, gw);
    parallel_for(gh, std::max<index_t>(1, (1 << 16) / w), [&](index_t g0, index_t g1) {
        for (index_t gy = g0; gy < g1; ++gy) {
            const float *src = grid + gy * gw;
            float *dst = up.cols.data() + gy * w;
            for (index_t x = 0; x < w; ++x) {
                const float a = std::max(src[tx.i0[x]] - grid_max, kLowest),
                            b = std::max(src[tx.i1[x]] - grid_max, kLowest);
                dst[x] = a + tx.frac[x] * (b - a);
            }
        }
    });
    return up;
}

// Rows of exp(v - shift) for the upsampled log-density v, made with few exps. Between two grid rows v is linear
// in y, so a row is the row above it times exp(dy * (lower grid row - upper grid row)), one product per value,
// with those factors computed once per grid row. A run of such rows starts from exact exps at a restart row:
// every kSatRowAlign-th row, where the grid rows change, at the clamped edges, and after a row holding a value
// below FLT_MIN (a zero or a subnormal has lost the precision a product would scale up). So a row depends on its
// run's restart row only, not on how rows are split among threads or blocks, and is within a few 1e-6 of its
// own exp (relative; at most 2.0e-6 on the shipped model's maps of 40 OSIE photos and the example creatives).
class ExpRows {
  public:
    explicit ExpRows(const Upsample &up)
        : up_(up), restart_(static_cast<std::size_t>(up.h)), factors_(up.cols.size()) {
        const Taps &ty = up.ty;
        for (index_t y = 0; y < up.h; ++y)
            restart_[y] = y % kSatRowAlign == 0 || ty.edge[y] || ty.edge[y - 1] || ty.i0[y] != ty.i0[y - 1];
        const index_t gh = static_cast<index_t>(up.cols.size()) / up.w;
        for (index_t g = 0; g + 1 < gh; ++g) {
            float *q = factors_.data() + g * up.w;
            const float *a = up.cols.data() + g * up.w;
            for (index_t x = 0; x < up.w; ++x) q[x] = std::min(up.dy * (a[x + up.w] - a[x]), 88.0f);
            exp_shifted(q, up.w, 0.0f);
        }
    }

    // Rows [y0, y1) (y0 a restart row) of exp(v - shift): their max and float64 sum into stats when given, else
    // times scale into dst.
    void rows(index_t y0, index_t y1, float shift, float scale, float *dst, RowStats *stats) const {
        const index_t w = up_.w;
        std::vector<float> e(static_cast<std::size_t>(w));
        float smallest = 0.0f;
        for (index_t y = y0; y < y1; ++y) {
            float *out = stats ? nullptr : dst + (y - y0) * w;
            if (restart_[y] || !(smallest >= FLT_MIN)) {
                up_.row(y, e.data());
                exp_shifted(e.data(), w, shift);
                smallest = row_min(e.data(), w);
                if (stats)
                    stats->add_row(e.data(), w);
                else
                    scale_into(out, e.data(), scale, w);
                continue;
            }
            const float *q = factors_.data() + up_.ty.i0[y] * w;
            smallest = stats ? product_stats(e.data(), q, w, stats->max, stats->sum)
                             : product_into(e.data(), q, out, scale, w);
        }
    }

  private:
    const Upsample &up_;
    std::vector<char> restart_;
    std::vector<float> factors_;  // row g: exp(dy * (cols row g+1 - cols row g)); unused for the last grid row
};

// The exp shift of the map (the max of v, or near it) and the float64 total of exp(v - shift). The shift must be
// known before the map exists: a blend of rows is at most the same blend of their maxima, an upper bound on the
// map's max. Where the bound is far above the max (row maxima in different columns), exp would lose the map to
// underflow; that rare case takes the true max and sums again. Per-chunk sums combine in a fixed order, so the
// result does not depend on the thread count.
std::pair<float, double> shift_and_total(const Upsample &up, const ExpRows &rows) {
    const index_t gh = static_cast<index_t>(up.cols.size()) / up.w;
    std::vector<float> row_maxes(static_cast<std::size_t>(gh));
    for (index_t g = 0; g < gh; ++g) row_maxes[g] = row_max(up.cols.data() + g * up.w, up.w);
    float shift = -INFINITY;
    for (index_t y = 0; y < up.h; ++y) {
        const float a = row_maxes[up.ty.i0[y]], b = row_maxes[up.ty.i1[y]];
        shift = std::max(shift, a + up.ty.frac[y] * (b - a));
    }
    const index_t n_chunks = (up.h + kRowChunk - 1) / kRowChunk;
    std::vector<RowStats> stats(static_cast<std::size_t>(n_chunks));
    auto sum_rows = [&](float s) {
        std::fill(stats.begin(), stats.end(), RowStats());
        parallel_for(up.h, kRowChunk, [&](index_t y0, index_t y1) {
            rows.rows(y0, y1, s, 1.0f, nullptr, &stats[static_cast<std::size_t>(y0 / kRowChunk)]);
        });
    };
    sum_rows(shift);
    float top = -INFINITY;
    for (const RowStats &s : stats) top = std::max(top, s.max);
    if (!(top >= std::exp(-kMaxShiftSlack))) {
        std::vector<float> maxes(static_cast<std::size_t>(n_chunks));
        parallel_for(up.h, kRowChunk, [&](index_t y0, index_t y1) {
            std::vector<float> v(static_cast<std::size_t>(up.w));
            float m = -INFINITY;
            for (index_t y = y0; y < y1; ++y) {
                up.row(y, v.data());
                m = std::max(m, row_max(v.data(), up.w));
            }
            maxes[static_cast<std::size_t>(y0 / kRowChunk)] = m;
        });
        shift = *std::max_element(maxes.begin(), maxes.end());
        sum_rows(shift);
    }
    double total = 0.0;
    for (const RowStats &s : stats) total += s.sum;
    return {shift, total};
}

// The upsampled map blurred, its exp shifted by the blurred max, unnormalised, into `out`; returns its float64
// total.
double blurred_density(const Upsample &up, double blur_sigma, float *out) {
    const index_t h = up.h, w = up.w;
    const index_t n_chunks = (h + kRowChunk - 1) / kRowChunk;
    std::vector<double> sums(static_cast<std::size_t>(n_chunks));
    std::vector<float> maxes(static_cast<std::size_t>(n_chunks));
    parallel_for(h, kRowChunk, [&](index_t y0, index_t y1) {
        for (index_t y = y0; y < y1; ++y) up.row(y, out + y * w);
    });
    gaussian_blur(out, h, w, blur_sigma, maxes.data());
    const float shift = *std::max_element(maxes.begin(), maxes.end());
    parallel_for(h, kRowChunk, [&](index_t y0, index_t y1) {
        sums[static_cast<std::size_t>(y0 / kRowChunk)] = exp_shifted_sum(out + y0 * w, (y1 - y0) * w, shift);
    });
    double total = 0.0;
    for (double s : sums) total += s;
    return total;
}

// The normalised map, made through `use(fill)`: fill(y0, y1) writes rows [y0, y1) of `out` (y0 a multiple of
// kSatRowAlign), from any thread. Without a blur the map is never stored unnormalised: a first pass only sums
// exp(v - shift) (cheap, see ExpRows), and fill writes each value once, already normalised. With one, the blurred
// density is stored first and fill scales it in place.
void normalised_rows(const float *grid, index_t gh, index_t gw, index_t h, index_t w, const Window &window,
                     double blur_sigma, float *out, const std::function<void(const RowFill &)> &use) {
    require(std::isfinite(blur_sigma) && blur_sigma >= 0.0,
            "blur_sigma must be finite and >= 0, got " + std::to_string(blur_sigma));
    const Upsample up = upsample(grid, gh, gw, h, w, window);
    if (blur_sigma > 0.0) {
        const float inv = static_cast<float>(1.0 / blurred_density(up, blur_sigma, out));
        use([&](index_t y0, index_t y1) { scale_row(out + y0 * w, (y1 - y0) * w, inv); });
        return;
    }
    const ExpRows rows(up);
    const auto [shift, total] = shift_and_total(up, rows);
    const float inv = static_cast<float>(1.0 / total);
    use([&](index_t y0, index_t y1) { rows.rows(y0, y1, shift, inv, out + y0 * w, nullptr); });
}

}  // namespace

void postprocess(const float *grid, index_t gh, index_t gw, index_t h, index_t w, const Window &window,
                 double blur_sigma, float *out) {
    normalised_rows(grid, gh, gw, h, w, window, blur_sigma, out,
                    [&](const RowFill &fill) { parallel_for(h, kRowChunk, fill); });
}

void postprocess_sat(const float *grid, index_t gh, index_t gw, index_t h, index_t w, const Window &window,
                     double blur_sigma, float *out, double *sat) {
    normalised_rows(grid, gh, gw, h, w, window, blur_sigma, out,
                    [&](const RowFill &fill) { summed_area_table_filled(out, h, w, fill, sat); });
}

}  // namespace foveal
