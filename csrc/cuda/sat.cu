// Summed-area tables, GPU twin of csrc/native's summed_area_table: float32|float64 H x W -> float64
// (H+1) x (W+1) with a zero top row and left column, for a stack of equal-sized maps (blockIdx.z = map).
//
// Tiled in TILE_H x TILE_W tiles so the image is read twice and the table written once (16 bytes per pixel for
// float32 input, against 12 for a single pass and 28 for a row-scan-then-column-scan):
//   1. sat_tile_totals: each tile's per-row and per-column sums (double);
//   2. sat_row_carries: per image row, exclusive prefix of the row sums over tiles -> the sum left of each tile;
//      sat_strip_carries + sat_strip_prefix: per strip of tiles, the sum above the strip at every column
//      (exclusive over strips, inclusive along x) = the table's row at the strip's top edge;
//   3. sat_tiles: each tile scans its rows starting from the row carry, then walks its columns down starting
//      from the strip's top edge, writing the table.
// All sums are float64, so box sums agree with a float64 reference to rounding.
#include "cuda/common.cuh"

#ifndef FOVEAL_SAT_TILE_H
#define FOVEAL_SAT_TILE_H 32
#endif
#define TILE_H FOVEAL_SAT_TILE_H
#define TILE_W 128  // = blockDim.x of the tile kernels: one thread per tile column

namespace {

// rowsum: per map [H][ntx] (sum of each image row inside each tile column); colsum: per map [nty][W].
template <typename T>
__device__ void tile_totals(const T* __restrict__ p, int H, int W, double* __restrict__ rowsum,
                            double* __restrict__ colsum) {
  __shared__ double partial[TILE_W / 32][TILE_H];
  const int ntx = gridDim.x, nty = gridDim.y, n = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int x = blockIdx.x * TILE_W + threadIdx.x, y0 = blockIdx.y * TILE_H;
  p += (long long)n * H * W;
  double column = 0.0;
#pragma unroll 8
  for (int r = 0; r < TILE_H; ++r) {
    const int y = y0 + r;
    const double v = (x < W && y < H) ? double(p[(long long)y * W + x]) : 0.0;
    column += v;
    const double row = foveal::warp_sum(v);
    if (lane == 0) partial[warp][r] = row;
  }
  if (x < W) colsum[((long long)n * nty + blockIdx.y) * W + x] = column;
  __syncthreads();
  if (threadIdx.x < TILE_H && y0 + threadIdx.x < H) {
    double row = 0.0;
    for (int w = 0; w < TILE_W / 32; ++w) row += partial[w][threadIdx.x];
    rowsum[((long long)n * H + y0 + threadIdx.x) * ntx + blockIdx.x] = row;
  }
}

template <typename T>
__device__ void tiles(const T* __restrict__ p, int H, int W, const double* __restrict__ rowcarry,
                      const double* __restrict__ top, double* __restrict__ out) {
  __shared__ double prefix[TILE_H][TILE_W];
  const int ntx = gridDim.x, nty = gridDim.y, n = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int x0 = blockIdx.x * TILE_W, y0 = blockIdx.y * TILE_H;
  const long long pitch = W + 1;
  p += (long long)n * H * W;
  out += (long long)n * (H + 1) * pitch;
  // Rows: each warp owns ROWS rows and scans them 32 columns at a time, starting from the sum of the row left of
  // the tile. All of a warp's loads are issued before the first scan, so enough bytes are in flight to keep HBM
  // busy (a load-scan-load loop would leave each warp one 128-byte line at a time).
  constexpr int WARPS = TILE_W / 32, ROWS = TILE_H / WARPS, CHUNKS = TILE_W / 32;
  double v[ROWS][CHUNKS], carry[ROWS];
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
    const int y = y0 + warp + k * WARPS;
    carry[k] = y < H ? rowcarry[((long long)n * H + y) * ntx + blockIdx.x] : 0.0;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int x = x0 + 32 * c + lane;
      v[k][c] = (x < W && y < H) ? double(p[(long long)y * W + x]) : 0.0;
    }
  }
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const double s = foveal::warp_inclusive_scan(v[k][c], lane) + carry[k];
      prefix[warp + k * WARPS][32 * c + lane] = s;
      carry[k] = __shfl_sync(foveal::FULL_MASK, s, 31);
    }
  }
  __syncthreads();
  // Columns: one thread per column, starting from the table's row at the strip's top edge.
  const int x = x0 + threadIdx.x;
  if (x >= W) return;
  double acc = top[((long long)n * nty + blockIdx.y) * W + x];
  if (blockIdx.y == 0) out[x + 1] = 0.0;
  if (x == 0 && blockIdx.y == 0) out[0] = 0.0;
  for (int r = 0; r < TILE_H && y0 + r < H; ++r) {
    acc += prefix[r][threadIdx.x];
    out[(y0 + r + 1) * pitch + x + 1] = acc;
    if (x == 0) out[(y0 + r + 1) * pitch] = 0.0;
  }
}

}  // namespace

extern "C" __global__ void sat_tile_totals_f32(const float* p, int H, int W, double* rowsum, double* colsum) {
  tile_totals(p, H, W, rowsum, colsum);
}
extern "C" __global__ void sat_tile_totals_f64(const double* p, int H, int W, double* rowsum, double* colsum) {
  tile_totals(p, H, W, rowsum, colsum);
}

// In place: rowsum[n][y][j] -> sum of rowsum[n][y][0..j). One warp per image row (blockDim 32 x k).
extern "C" __global__ void sat_row_carries(double* rowsum, int rows, int ntx) {
  const long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y;  // over maps x H
  if (row >= rows) return;
  const int lane = threadIdx.x;
  double* r = rowsum + row * ntx;
  double carry = 0.0;
  for (int c = 0; c < ntx; c += 32) {
    const double v = c + lane < ntx ? r[c + lane] : 0.0;
    const double inclusive = foveal::warp_inclusive_scan(v, lane);
    if (c + lane < ntx) r[c + lane] = carry + inclusive - v;
    carry += __shfl_sync(foveal::FULL_MASK, inclusive, 31);
  }
}

// In place: colsum[n][i][x] -> sum of colsum[n][0..i)[x]. Blocks of 32 columns x 32 strip-groups
// (blockDim 32 x 32, blockIdx.y = map); each thread owns a run of consecutive strips.
extern "C" __global__ void sat_strip_carries(double* colsum, int W, int nty) {
  __shared__ double group[32][33];
  const int x = blockIdx.x * 32 + threadIdx.x;
  const int per = (nty + 31) / 32, i0 = threadIdx.y * per, i1 = min(i0 + per, nty);
  double* c = colsum + (long long)blockIdx.y * nty * W;
  double total = 0.0;
  if (x < W)
    for (int i = i0; i < i1; ++i) total += c[(long long)i * W + x];
  group[threadIdx.x][threadIdx.y] = total;
  __syncthreads();
  // Warp threadIdx.y scans the 32 group totals of column threadIdx.y of this block.
  {
    const double v = group[threadIdx.y][threadIdx.x];
    const double inclusive = foveal::warp_inclusive_scan(v, threadIdx.x);
    __syncwarp();
    group[threadIdx.y][threadIdx.x] = inclusive - v;
  }
  __syncthreads();
  if (x >= W) return;
  double acc = group[threadIdx.x][threadIdx.y];
  for (int i = i0; i < i1; ++i) {
    double* at = c + (long long)i * W + x;
    const double v = *at;
    *at = acc;
    acc += v;
  }
}

// In place: colsum[n][i][x] -> inclusive prefix along x. One block per (strip, map), any multiple of 32 threads.
extern "C" __global__ void sat_strip_prefix(double* colsum, int W, int nty) {
  __shared__ double warps[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  double* c = colsum + ((long long)blockIdx.y * nty + blockIdx.x) * W;
  double carry = 0.0;
  for (int base = 0; base < W; base += blockDim.x) {
    const int x = base + threadIdx.x;
    double v = x < W ? c[x] : 0.0;
    v = foveal::warp_inclusive_scan(v, lane);
    if (lane == 31) warps[warp] = v;
    __syncthreads();
    if (warp == 0) {
      const double t = lane < nwarps ? warps[lane] : 0.0;
      warps[lane] = foveal::warp_inclusive_scan(t, lane);
    }
    __syncthreads();
    if (x < W) c[x] = carry + v + (warp > 0 ? warps[warp - 1] : 0.0);
    carry += warps[nwarps - 1];
    __syncthreads();
  }
}

extern "C" __global__ void sat_tiles_f32(const float* p, int H, int W, const double* rowcarry, const double* top,
                                         double* out) {
  tiles(p, H, W, rowcarry, top, out);
}
extern "C" __global__ void sat_tiles_f64(const double* p, int H, int W, const double* rowcarry, const double* top,
                                         double* out) {
  tiles(p, H, W, rowcarry, top, out);
}
