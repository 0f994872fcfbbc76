// Postprocess, GPU twin of csrc/native's postprocess, batched over maps of different output sizes:
// log-density grid (shifted by its max) -> bilinear upsample of the image's window -> optional separable Gaussian
// blur (vertical, then horizontal, as the CPU) -> softmax.
//
// Every kernel runs on a (blocks, maps) grid and strides over its map's pixels. Per map, desc holds int64
// {H, W, offset of the map in the flat output}, window holds double {top, left, height, width}, the image's region
// of the grid in cells, and gmax the grid's max.
// Softmax is three passes (block max, block sum of exp in double, normalise); the per-block partials are combined
// in a fixed order by every block, so results are deterministic and every map sums to 1 within float rounding.
// Without blur the passes sample the grid on the fly ("sampled"), so the map is written exactly once; with blur
// they read the blurred map ("dense").
#include "cuda/common.cuh"

namespace {

struct Maps {
  const float* grid;  // N x gh x gw log-density
  int gh, gw;
  const long long* desc;
  const double* window;
  const float* gmax;  // per map: the grid's max
};

// The map this block works on (blockIdx.y): its output size and where it starts in the flat output.
struct Map {
  int n, H, W;
  long long offset, size;

  __device__ explicit Map(const long long* desc)
      : n(int(blockIdx.y)), H(int(desc[3 * blockIdx.y])), W(int(desc[3 * blockIdx.y + 1])),
        offset(desc[3 * blockIdx.y + 2]), size((long long)H * W) {}
};

// Shifted log-densities are floored as on the CPU (postprocess.cpp): finite values ±3e38 apart overflowed to -inf
// after the shift and the blend gave NaN; anything this far below the max has exp 0 at any tap weight.
constexpr float kLowest = -1e30f;

// Output pixel (Y, X) samples the grid at g = top + (Y + 0.5) * height / H - 0.5 (likewise x), clamped to the grid,
// after shifting the grid by its max (gmax[n]) as the CPU does: values near zero keep more float precision.
__device__ __forceinline__ float sample(const Maps& m, const Map& map, long long i) {
  const int n = map.n, Y = int(i / map.W), X = int(i - (long long)Y * map.W);
  const float* g = m.grid + (long long)n * m.gh * m.gw;
  const double* win = m.window + 4 * n;
  const double gy = fmin(fmax(win[0] + (Y + 0.5) * (win[2] / map.H) - 0.5, 0.0), double(m.gh - 1));
  const double gx = fmin(fmax(win[1] + (X + 0.5) * (win[3] / map.W) - 0.5, 0.0), double(m.gw - 1));
  const int y0 = int(gy), x0 = int(gx);
  const int y1 = min(y0 + 1, m.gh - 1), x1 = min(x0 + 1, m.gw - 1);
  const float ty = float(gy - y0), tx = float(gx - x0), shift = m.gmax[n];
  const float a0 = fmaxf(g[y0 * m.gw + x0] - shift, kLowest), b0 = fmaxf(g[y0 * m.gw + x1] - shift, kLowest);
  const float a1 = fmaxf(g[y1 * m.gw + x0] - shift, kLowest), b1 = fmaxf(g[y1 * m.gw + x1] - shift, kLowest);
  const float c0 = a0 + tx * (b0 - a0), c1 = a1 + tx * (b1 - a1);
  return c0 + ty * (c1 - c0);
}

template <bool Sampled>
__device__ __forceinline__ float value(const Maps& m, const float* dense, const Map& map, long long i) {
  if (Sampled) return sample(m, map, i);
  return dense[map.offset + i];
}

// The map's max from the per-block partials, combined identically in every block.
__device__ float map_max(const float* pmax, int n) {
  __shared__ float scratch[32];
  float v = foveal::neg_inf();
  for (int b = threadIdx.x; b < gridDim.x; b += blockDim.x) v = fmaxf(v, pmax[n * gridDim.x + b]);
  return foveal::block_max(v, scratch);
}

template <bool Sampled>
__device__ void softmax_max(const Maps m, const float* dense, float* pmax) {
  __shared__ float scratch[32];
  const Map map(m.desc);
  float v = foveal::neg_inf();
  for (long long i = foveal::grid_start(); i < map.size; i += foveal::grid_step())
    v = fmaxf(v, value<Sampled>(m, dense, map, i));
  v = foveal::block_max(v, scratch);
  if (threadIdx.x == 0) pmax[map.n * gridDim.x + blockIdx.x] = v;
}

template <bool Sampled>
__device__ void softmax_sum(const Maps m, const float* dense, const float* pmax, double* psum) {
  __shared__ double scratch[32];
  const Map map(m.desc);
  const float mx = map_max(pmax, map.n);
  double s = 0.0;
  for (long long i = foveal::grid_start(); i < map.size; i += foveal::grid_step())
    s += double(expf(value<Sampled>(m, dense, map, i) - mx));
  s = foveal::block_sum(s, scratch);
  if (threadIdx.x == 0) psum[map.n * gridDim.x + blockIdx.x] = s;
}

template <bool Sampled>
__device__ void softmax_normalize(const Maps m, const float* dense, const float* pmax, const double* psum,
                                  float* out) {
  __shared__ double scratch[32];
  const Map map(m.desc);
  const float mx = map_max(pmax, map.n);
  double s = 0.0;
  for (int b = threadIdx.x; b < gridDim.x; b += blockDim.x) s += psum[map.n * gridDim.x + b];
  s = foveal::block_sum(s, scratch);
  for (long long i = foveal::grid_start(); i < map.size; i += foveal::grid_step())
    out[map.offset + i] = float(double(expf(value<Sampled>(m, dense, map, i) - mx)) / s);
}

// Half-sample symmetric reflection (d c b a | a b c d | d c b a), valid for any offset.
__device__ __forceinline__ int reflect(int i, int n) {
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

template <bool Rows>
__device__ void blur(const float* in, const long long* desc, const float* taps, int radius, float* out) {
  const Map map(desc);
  const float* src = in + map.offset;
  for (long long i = foveal::grid_start(); i < map.size; i += foveal::grid_step()) {
    const int W = map.W, Y = int(i / W), X = int(i - (long long)Y * W);
    float acc = 0.f;
    for (int k = -radius; k <= radius; ++k) {
      const float v = Rows ? src[(long long)Y * W + reflect(X + k, W)] : src[(long long)reflect(Y + k, map.H) * W + X];
      acc += taps[k + radius] * v;
    }
    out[map.offset + i] = acc;
  }
}

}  // namespace

#define FOVEAL_MAPS_ARGS \
  const float *grid, int gh, int gw, const long long *desc, const double *window, const float *gmax
#define FOVEAL_MAPS Maps{grid, gh, gw, desc, window, gmax}

extern "C" __global__ void upsample_log_density(FOVEAL_MAPS_ARGS, float* out) {
  const Maps m = FOVEAL_MAPS;
  const Map map(desc);
  for (long long i = foveal::grid_start(); i < map.size; i += foveal::grid_step())
    out[map.offset + i] = sample(m, map, i);
}

extern "C" __global__ void blur_rows(const float* in, const long long* desc, const float* taps, int radius,
                                     float* out) {
  blur<true>(in, desc, taps, radius, out);
}

extern "C" __global__ void blur_cols(const float* in, const long long* desc, const float* taps, int radius,
                                     float* out) {
  blur<false>(in, desc, taps, radius, out);
}

extern "C" __global__ void softmax_max_sampled(FOVEAL_MAPS_ARGS, float* pmax) {
  softmax_max<true>(FOVEAL_MAPS, nullptr, pmax);
}
extern "C" __global__ void softmax_sum_sampled(FOVEAL_MAPS_ARGS, const float* pmax, double* psum) {
  softmax_sum<true>(FOVEAL_MAPS, nullptr, pmax, psum);
}
extern "C" __global__ void softmax_normalize_sampled(FOVEAL_MAPS_ARGS, const float* pmax, const double* psum,
                                                     float* out) {
  softmax_normalize<true>(FOVEAL_MAPS, nullptr, pmax, psum, out);
}

// The dense variants take the same map table (grid unused) so the launcher passes one argument list.
extern "C" __global__ void softmax_max_dense(FOVEAL_MAPS_ARGS, const float* dense, float* pmax) {
  softmax_max<false>(FOVEAL_MAPS, dense, pmax);
}
extern "C" __global__ void softmax_sum_dense(FOVEAL_MAPS_ARGS, const float* dense, const float* pmax, double* psum) {
  softmax_sum<false>(FOVEAL_MAPS, dense, pmax, psum);
}
extern "C" __global__ void softmax_normalize_dense(FOVEAL_MAPS_ARGS, const float* dense, const float* pmax,
                                                   const double* psum, float* out) {
  softmax_normalize<false>(FOVEAL_MAPS, dense, pmax, psum, out);
}
