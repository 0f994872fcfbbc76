// Resize + normalise + pad: uint8 RGB HWC -> float32 NCHW, the network's input, the image at an offset inside
// edge-replicated padding.
#include <cmath>
#include <vector>

#include "kernels.hpp"

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

FOVEAL_CLONES
void accumulate_row(float *acc, const std::uint8_t *src, float weight, index_t n) {
    for (index_t i = 0; i < n; ++i) acc[i] += weight * static_cast<float>(src[i]);
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

    parallel_for(rh, 8, [&](index_t y_begin, index_t y_end) {
        std::vector<float> rows(static_cast<std::size_t>(row_len));
        for (index_t oy = y_begin; oy < y_end; ++oy) {
            // Vertical pass: weighted sum of source rows (interleaved RGB), then horizontal pass per channel.
            std::fill(rows.begin(), rows.end(), 0.0f);
            for (index_t k = 0; k < wy.taps; ++k) {
                const float wk = wy.weight[oy * wy.taps + k];
                if (wk != 0.0f) accumulate_row(rows.data(), image + (wy.first[oy] + k) * row_len, wk, row_len);
            }
            const index_t row = (top + oy) * pw + left;
            float *dst[3] = {out + row, out + plane + row, out + 2 * plane + row};
            for (index_t ox = 0; ox < rw; ++ox) {
                const float *wk = &wx.weight[ox * wx.taps];
                const float *src = rows.data() + wx.first[ox] * 3;
                float r = 0.0f, g = 0.0f, b = 0.0f;
                for (index_t k = 0; k < wx.taps && wx.first[ox] + k < w; ++k) {
                    r += wk[k] * src[3 * k];
                    g += wk[k] * src[3 * k + 1];
                    b += wk[k] * src[3 * k + 2];
                }
                dst[0][ox] = r * scale[0] + offset[0];
                dst[1][ox] = g * scale[1] + offset[1];
                dst[2][ox] = b * scale[2] + offset[2];
            }
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
