// Resize + normalise + pad: uint8 RGB HWC -> float32 NCHW, the network's input, the image at an offset inside
// edge-replicated padding.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.hpp"

#if FOVEAL_X86
#include <immintrin.h>
#endif

namespace foveal {
namespace {

// Per output index along one axis: the first source index and `taps` weights (zero-padded), so the 2-D
// resize is two cheap 1-D passes.
struct AxisWeights {
    index_t taps = 1;
    std::vector<index_t> first;
    std::vector<float> weight;  // out_size x taps
};

AxisWeights axis_weights(index_t in_size, index_t out_size) {
    AxisWeights a;
    a.first.resize(static_cast<std::size_t>(out_size));
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    if (out_size < in_size) {
        // Exact box filter: output o averages source interval [o*scale, (o+1)*scale), fractional end pixels
        // weighted by their covered fraction.
        a.taps = static_cast<index_t>(std::ceil(scale)) + 1;
        a.weight.assign(static_cast<std::size_t>(out_size * a.taps), 0.0f);
        for (index_t o = 0; o < out_size; ++o) {
            const double lo = o * scale, hi = std::min<double>((o + 1) * scale, static_cast<double>(in_size));
            const index_t i0 = static_cast<index_t>(std::floor(lo));
            a.first[o] = i0;
            for (index_t i = i0; i < in_size && static_cast<double>(i) < hi; ++i) {
                const double cover = std::min<double>(i + 1, hi) - std::max<double>(i, lo);
                a.weight[o * a.taps + (i - i0)] = static_cast<float>(cover / scale);
            }
        }
    } else {
        // Bilinear with half-pixel centres (align_corners=False), clamped at the borders.
        a.taps = 2;
        a.weight.assign(static_cast<std::size_t>(out_size * 2), 0.0f);
        for (index_t o = 0; o < out_size; ++o) {
            double src = (o + 0.5) * scale - 0.5;
            src = std::min<double>(std::max(src, 0.0), static_cast<double>(in_size - 1));
            index_t i0 = static_cast<index_t>(std::floor(src));
            double frac = src - static_cast<double>(i0);
            if (i0 == in_size - 1) {  // keep both taps inside the image
                i0 = std::max<index_t>(0, in_size - 2);
                frac = src - static_cast<double>(i0);
            }
            a.first[o] = i0;
            a.weight[o * 2] = static_cast<float>(1.0 - frac);
            if (in_size > 1) a.weight[o * 2 + 1] = static_cast<float>(frac);
        }
    }
    return a;
}

typedef float f4 __attribute__((vector_size(16)));

// Vertical pass of one row: dst = weight[0] * src[0] + weight[1] * src[1] + ... over `taps` (>= 1) source rows,
// added in that order, so the two versions round alike (columns [begin, n) here).
void weighted_rows_portable(float *dst, const std::uint8_t *const *src, const float *weight, index_t taps,
                            index_t begin, index_t n) {
    for (index_t i = begin; i < n; ++i) {
        float acc = weight[0] * static_cast<float>(src[0][i]);
        for (index_t k = 1; k < taps; ++k) acc += weight[k] * static_cast<float>(src[k][i]);
        dst[i] = acc;
    }
}

#if FOVEAL_X86
FOVEAL_AVX2 inline __m256 load8(const std::uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

// 32 columns at a time in registers: one pass over dst, where adding one source row at a time into dst took a
// load and a store of each value per row.
FOVEAL_AVX2 void weighted_rows_avx2(float *dst, const std::uint8_t *const *src, const float *weight, index_t taps,
                                    index_t n) {
    index_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 acc[4];
        const __m256 w0 = _mm256_set1_ps(weight[0]);
        for (int q = 0; q < 4; ++q) acc[q] = _mm256_mul_ps(w0, load8(src[0] + i + 8 * q));
        for (index_t k = 1; k < taps; ++k) {
            const __m256 wk = _mm256_set1_ps(weight[k]);
            for (int q = 0; q < 4; ++q) acc[q] = _mm256_add_ps(acc[q], _mm256_mul_ps(wk, load8(src[k] + i + 8 * q)));
        }
        for (int q = 0; q < 4; ++q) _mm256_storeu_ps(dst + i + 8 * q, acc[q]);
    }
    weighted_rows_portable(dst, src, weight, taps, i, n);
}
#endif

void weighted_rows(float *dst, const std::uint8_t *const *src, const float *weight, index_t taps, index_t n) {
#if FOVEAL_X86
    if (cpu_has_avx2()) return weighted_rows_avx2(dst, src, weight, taps, n);
#endif
    weighted_rows_portable(dst, src, weight, taps, 0, n);
}

// Horizontal pass of one row: interleaved RGB floats (`rows`, padded with zeros so that every tap and the fourth
// lane of the last pixel can be read) -> three planes, normalised. The three channels of a pixel go through one
// four-lane vector, in the same order of operations as one channel at a time.
void resample_row(const float *rows, const AxisWeights &wx, index_t rw, const f4 scale, const f4 offset,
                  float *const dst[3]) {
    for (index_t ox = 0; ox < rw; ++ox) {
        const float *wk = &wx.weight[ox * wx.taps];
        const float *src = rows + wx.first[ox] * 3;
        f4 acc = {0.0f, 0.0f, 0.0f, 0.0f};
        for (index_t k = 0; k < wx.taps; ++k) {
            f4 v;
            std::memcpy(&v, src + 3 * k, sizeof v);
            acc += wk[k] * v;
        }
        acc = acc * scale + offset;
        dst[0][ox] = acc[0];
        dst[1][ox] = acc[1];
        dst[2][ox] = acc[2];
    }
}

}  // namespace

void preprocess(const std::uint8_t *image, index_t h, index_t w, index_t rh, index_t rw, index_t ph, index_t pw,
                index_t top, index_t left, const double mean[3], const double stddev[3], float *out) {
    require(h >= 1 && w >= 1, "image must be at least 1x1, got " + std::to_string(h) + "x" + std::to_string(w));
    require(rh >= 1 && rw >= 1, "resized_hw must be at least (1, 1), got (" + std::to_string(rh) + ", " +
                                    std::to_string(rw) + ")");
    require(ph >= rh && pw >= rw, "padded_hw must be >= resized_hw, got padded (" + std::to_string(ph) + ", " +
                                      std::to_string(pw) + ") for resized (" + std::to_string(rh) + ", " +
                                      std::to_string(rw) + ")");
    require(top >= 0 && left >= 0 && top + rh <= ph && left + rw <= pw,
            "offset_hw must place the resized image inside the padding, got offset (" + std::to_string(top) + ", " +
                std::to_string(left) + ") for resized (" + std::to_string(rh) + ", " + std::to_string(rw) +
                ") in padded (" + std::to_string(ph) + ", " + std::to_string(pw) + ")");
    float scale[3], offset[3];
    for (int c = 0; c < 3; ++c) {
        require(std::isfinite(mean[c]), "mean must be finite, got mean[" + std::to_string(c) + "] = " +
                                            std::to_string(mean[c]));
        require(std::isfinite(stddev[c]) && stddev[c] != 0.0,
                "std must be finite and non-zero, got std[" + std::to_string(c) + "] = " + std::to_string(stddev[c]));
        scale[c] = static_cast<float>(1.0 / stddev[c]);
        offset[c] = static_cast<float>(-mean[c] / stddev[c]);
    }
    const AxisWeights wy = axis_weights(h, rh), wx = axis_weights(w, rw);
    const index_t plane = ph * pw;
    const index_t row_len = w * 3;

    const f4 scale4 = {scale[0], scale[1], scale[2], 0.0f}, offset4 = {offset[0], offset[1], offset[2], 0.0f};
    parallel_for(rh, 8, [&](index_t y_begin, index_t y_end) {
        // Taps past the image's last column have weight 0; they (and the last pixel's fourth lane) read zeros.
        std::vector<float> rows(static_cast<std::size_t>(row_len + 3 * wx.taps + 1), 0.0f);
        std::vector<const std::uint8_t *> src(static_cast<std::size_t>(wy.taps));
        std::vector<float> weight(static_cast<std::size_t>(wy.taps));
        for (index_t oy = y_begin; oy < y_end; ++oy) {
            // Vertical pass: weighted sum of source rows (interleaved RGB), then horizontal pass per pixel.
            index_t taps = 0;
            for (index_t k = 0; k < wy.taps; ++k) {
                const float wk = wy.weight[oy * wy.taps + k];
                if (wk == 0.0f) continue;  // past the image's last row, or a bilinear tap on a source row
                src[taps] = image + (wy.first[oy] + k) * row_len;
                weight[taps++] = wk;
            }
            weighted_rows(rows.data(), src.data(), weight.data(), taps, row_len);
            const index_t row = (top + oy) * pw + left;
            float *const dst[3] = {out + row, out + plane + row, out + 2 * plane + row};
            resample_row(rows.data(), wx, rw, scale4, offset4, dst);
            for (int c = 0; c < 3; ++c) {
                std::fill(dst[c] - left, dst[c], dst[c][0]);
                std::fill(dst[c] + rw, dst[c] + pw - left, dst[c][rw - 1]);
            }
        }
    });
    for (int c = 0; c < 3; ++c) {
        float *channel = out + c * plane;
        const float *first = channel + top * pw, *last = channel + (top + rh - 1) * pw;
        for (index_t y = 0; y < top; ++y) std::copy(first, first + pw, channel + y * pw);
        for (index_t y = top + rh; y < ph; ++y) std::copy(last, last + pw, channel + y * pw);
    }
}

}  // namespace foveal
