// Colormap and overlay for previews, GPU twins of csrc/native's colorize/overlay, bit-identical to them: the
// launcher uploads the CPU's lookup table, and the arithmetic uses explicit round-to-nearest intrinsics so nvcc
// does not contract it into FMAs the CPU build does not use.
#include "cuda/common.cuh"

namespace {

// round(255 * v / max) clamped to the table, as the CPU's lut_index.
__device__ __forceinline__ int lut_index(float v, float k) {
  const float f = __fadd_rn(__fmul_rn(v, k), 0.5f);
  return f < 1.0f ? 0 : (f >= 255.0f ? 255 : int(f));
}

}  // namespace

// k = 255 / max(values) (0 when the max is <= 0).
extern "C" __global__ void colorize(const float* values, long long n, float k, const unsigned char* lut,
                                    unsigned char* rgb) {
  for (long long i = foveal::grid_start(); i < n; i += foveal::grid_step()) {
    const unsigned char* c = lut + 3 * lut_index(values[i], k);
    rgb[3 * i] = c[0];
    rgb[3 * i + 1] = c[1];
    rgb[3 * i + 2] = c[2];
  }
}

// k = 1 / max(prob) (0 when the max is 0); each pixel blends with weight alpha * min(1, prob * k), in the colour
// colorize gives it (k_index = 255 / max).
extern "C" __global__ void overlay(const unsigned char* image, const float* prob, long long n, float k, float k_index,
                                   float alpha, const unsigned char* lut, unsigned char* rgb) {
  for (long long i = foveal::grid_start(); i < n; i += foveal::grid_step()) {
    const float t = fminf(1.0f, __fmul_rn(prob[i], k));
    const float a = __fmul_rn(alpha, t);
    const unsigned char* c = lut + 3 * lut_index(prob[i], k_index);
    for (int ch = 0; ch < 3; ++ch) {
      const float px = float(image[3 * i + ch]);
      const float v = __fadd_rn(px, __fmul_rn(a, __fsub_rn(float(c[ch]), px)));
      rgb[3 * i + ch] = (unsigned char)(__fadd_rn(v, 0.5f));
    }
  }
}
