// Export stages: quantize to 8/16-bit with a scale, colormap, overlay on the image.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.hpp"

namespace foveal {
namespace {

constexpr index_t kPixelChunk = 1 << 16;

// Largest value of n floats; throws naming `what` on NaN, inf or (when `non_negative`) a negative value.
float checked_max(const float *v, index_t n, const char *what, bool non_negative) {
    const index_t n_chunks = (n + kPixelChunk - 1) / kPixelChunk;
    std::vector<float> maxes(static_cast<std::size_t>(n_chunks), 0.0f);
    std::vector<char> bad(static_cast<std::size_t>(n_chunks), 0);
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        float m = 0.0f, lo = 0.0f;
        bool finite = true;
        for (index_t i = i0; i < i1; ++i) {
            m = v[i] > m ? v[i] : m;
            lo = v[i] < lo ? v[i] : lo;
            finite &= std::isfinite(v[i]);
        }
        maxes[static_cast<std::size_t>(i0 / kPixelChunk)] = m;
        bad[static_cast<std::size_t>(i0 / kPixelChunk)] = !finite || (non_negative && lo < 0.0f);
    });
    for (char b : bad)
        require(!b, std::string(what) + " must be finite" + (non_negative ? " and >= 0" : "") +
                        "; found NaN, inf" + (non_negative ? " or a negative value" : ""));
    float m = 0.0f;
    for (float x : maxes) m = std::max(m, x);
    return m;
}

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
        for (index_t i = i0; i < i1; ++i)
            q[i] = static_cast<Q>(std::min(levels, std::floor(static_cast<double>(prob[i]) * k + 0.5)));
    });
    return static_cast<double>(m) / levels;
}

// Colormap index: round(255 * v / max), clamped to the table.
inline int lut_index(float v, float k) {
    const float f = v * k + 0.5f;
    return f < 1.0f ? 0 : (f >= 255.0f ? 255 : static_cast<int>(f));
}

}  // namespace

double quantize8(const float *prob, index_t n, std::uint8_t *q) { return quantize_impl(prob, n, q); }
double quantize16(const float *prob, index_t n, std::uint16_t *q) { return quantize_impl(prob, n, q); }

void colorize(const float *values, index_t n, const std::uint8_t *lut, std::uint8_t *rgb) {
    const float m = checked_max(values, n, "values", false);
    const float k = m > 0.0f ? 255.0f / m : 0.0f;
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        for (index_t i = i0; i < i1; ++i) {
            const std::uint8_t *c = lut + 3 * lut_index(values[i], k);
            rgb[3 * i] = c[0];
            rgb[3 * i + 1] = c[1];
            rgb[3 * i + 2] = c[2];
        }
    });
}

void overlay(const std::uint8_t *image, const float *prob, index_t n, double alpha, const std::uint8_t *lut,
             std::uint8_t *rgb) {
    require(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0,
            "alpha must be in [0, 1], got " + std::to_string(alpha));
    const float m = checked_max(prob, n, "prob", true);
    const float k = m > 0.0f ? 1.0f / m : 0.0f;
    const float a_max = static_cast<float>(alpha);
    parallel_for(n, kPixelChunk, [&](index_t i0, index_t i1) {
        for (index_t i = i0; i < i1; ++i) {
            const float t = std::min(1.0f, prob[i] * k);
            const float a = a_max * t;
            const std::uint8_t *c = lut + 3 * lut_index(t, 255.0f);
            for (int ch = 0; ch < 3; ++ch) {
                const float v = static_cast<float>(image[3 * i + ch]) + a * (static_cast<float>(c[ch]) -
                                                                             static_cast<float>(image[3 * i + ch]));
                rgb[3 * i + ch] = static_cast<std::uint8_t>(v + 0.5f);
            }
        }
    });
}

}  // namespace foveal
