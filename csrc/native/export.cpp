// Export stages: quantize to 8/16-bit with a scale, colormap, overlay on the image.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.hpp"

namespace foveal {
namespace {

constexpr index_t kPixelChunk = 1 << 16;

typedef float f8 __attribute__((vector_size(32)));

struct Range {
    float max, min;
    bool finite;
};

// Max, min and finiteness of n floats in eight lanes (x - x is NaN exactly for NaN and inf).
FOVEAL_CLONES
Range scan(const float *v, index_t n) {
    f8 hi = {}, lo = {}, bad = {};
    index_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 x;
        std::memcpy(&x, v + i, sizeof x);
        hi = x > hi ? x : hi;
        lo = x < lo ? x : lo;
        bad += x - x;
    }
    Range r{0.0f, 0.0f, true};
    for (; i < n; ++i) {
        r.max = std::max(r.max, v[i]);
        r.min = std::min(r.min, v[i]);
        r.finite &= std::isfinite(v[i]);
    }
    for (int j = 0; j < 8; ++j) {
        r.max = std::max(r.max, hi[j]);
        r.min = std::min(r.min, lo[j]);
        r.finite &= bad[j] == 0.0f;
    }
    return r;
}

// Largest value of n floats (0 if none is positive); throws naming `what` on NaN, inf or (when `non_negative`)
// a negative value.
float checked_max(const float *v, index_t n, const char *what, bool non_negative) {
    const index_t n_chunks = (n + kPixelChunk - 1) / kPixelChunk;
    std::vector<Range> ranges(static_cast<std::size_t>(n_chunks));
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        ranges[static_cast<std::size_t>(i0 / kPixelChunk)] = scan(v + i0, i1 - i0);
    });
    float m = 0.0f;
    for (const Range &r : ranges) {
        require(r.finite && !(non_negative && r.min < 0.0f),
                std::string(what) + " must be finite" + (non_negative ? " and >= 0" : "") + "; found NaN, inf" +
                    (non_negative ? " or a negative value" : ""));
        m = std::max(m, r.max);
    }
    return m;
}

// q = round(p * k) in float64 (so |p - q * scale| <= scale / 2 holds at 16 bits), capped at `levels`, and at least
// 1 where p > 0. A density's tail is far below max / 510: rounded to 0, half of a typical 8-bit map became holes,
// and whoever normalises the PNG and takes logs (KLD, information gain) scored the holes, not the model (OSIE val
// KLD 0.69 from the 8-bit PNG against 0.46 from the map; 0.51 with the floor).
template <class Q>
inline void quantize_range(const float *p, index_t n, double k, Q *q) {
    const double levels = static_cast<double>(std::numeric_limits<Q>::max());
    for (index_t i = 0; i < n; ++i) {
        const double v = std::min(levels, std::floor(double{p[i]} * k + 0.5));
        q[i] = static_cast<Q>(static_cast<std::int32_t>(std::max(v, p[i] > 0.0f ? 1.0 : 0.0)));
    }
}

FOVEAL_CLONES
void quantize_range8(const float *p, index_t n, double k, std::uint8_t *q) { quantize_range(p, n, k, q); }
FOVEAL_CLONES
void quantize_range16(const float *p, index_t n, double k, std::uint16_t *q) { quantize_range(p, n, k, q); }

template <class Q>
double quantize_impl(const float *prob, index_t n, Q *q) {
    const double levels = static_cast<double>(std::numeric_limits<Q>::max());
    const float m = checked_max(prob, n, "prob", true);
    if (m == 0.0f) {
        std::fill(q, q + n, Q{0});
        return 0.0;
    }
    const double k = levels / static_cast<double>(m);
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        if constexpr (sizeof(Q) == 1)
            quantize_range8(prob + i0, i1 - i0, k, q + i0);
        else
            quantize_range16(prob + i0, i1 - i0, k, q + i0);
    });
    return static_cast<double>(m) / levels;
}

// Colormap indices round(v * k) clamped to [0, 255]; with k = 255 / max that is round(255 * v / max).
FOVEAL_CLONES
void lut_indices(const float *v, index_t n, float k, std::uint8_t *index) {
    for (index_t i = 0; i < n; ++i) {
        const float f = std::min(255.0f, std::max(0.0f, v[i] * k + 0.5f));
        index[i] = static_cast<std::uint8_t>(static_cast<std::int32_t>(f));
    }
}

FOVEAL_CLONES
void scale_capped(const float *v, index_t n, float k, float *out) {
    for (index_t i = 0; i < n; ++i) out[i] = std::min(1.0f, v[i] * k);
}

}  // namespace

double quantize8(const float *prob, index_t n, std::uint8_t *q) { return quantize_impl(prob, n, q); }
double quantize16(const float *prob, index_t n, std::uint16_t *q) { return quantize_impl(prob, n, q); }

void colorize(const float *values, index_t n, const std::uint8_t *lut, std::uint8_t *rgb) {
    const float m = checked_max(values, n, "values", false);
    const float k = m > 0.0f ? 255.0f / m : 0.0f;
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        std::vector<std::uint8_t> index(static_cast<std::size_t>(i1 - i0));
        lut_indices(values + i0, i1 - i0, k, index.data());
        std::uint8_t *dst = rgb + 3 * i0;
        for (std::uint8_t j : index) {
            std::memcpy(dst, lut + 3 * j, 3);
            dst += 3;
        }
    });
}

void overlay(const std::uint8_t *image, const float *prob, index_t n, double alpha, const std::uint8_t *lut,
             std::uint8_t *rgb) {
    require(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0,
            "alpha must be in [0, 1], got " + std::to_string(alpha));
    const float m = checked_max(prob, n, "prob", true);
    const float k = m > 0.0f ? 1.0f / m : 0.0f;
    // The colour index is colorize's own, round(prob * (255 / max)): rounding prob / max * 255 instead can land
    // on the other side of a .5 tie, and the overlay would then show a colour the colormap PNG does not.
    const float k_index = m > 0.0f ? 255.0f / m : 0.0f;
    const float a_max = static_cast<float>(alpha);
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        const index_t len = i1 - i0;
        std::vector<float> t(static_cast<std::size_t>(len));  // prob / max, at most 1
        std::vector<std::uint8_t> index(static_cast<std::size_t>(len));
        scale_capped(prob + i0, len, k, t.data());
        lut_indices(prob + i0, len, k_index, index.data());
        for (index_t j = 0; j < len; ++j) {
            const float a = a_max * t[static_cast<std::size_t>(j)];
            const std::uint8_t *c = lut + 3 * index[static_cast<std::size_t>(j)];
            const std::uint8_t *px = image + 3 * (i0 + j);
            std::uint8_t *out = rgb + 3 * (i0 + j);
            for (int ch = 0; ch < 3; ++ch) {
                const float v = static_cast<float>(px[ch]);
                out[ch] = static_cast<std::uint8_t>(v + a * (static_cast<float>(c[ch]) - v) + 0.5f);
            }
        }
    });
}

}  // namespace foveal
