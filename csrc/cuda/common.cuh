// Device helpers shared by foveal's CUDA kernels. Header-only and free of host headers so that NVRTC (via
// cupy.RawModule) compiles it as readily as nvcc; gpu.py inlines it into each .cu before compiling.
#pragma once

namespace foveal {

constexpr unsigned FULL_MASK = 0xffffffffu;

// NVRTC defines no INFINITY macro.
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// A grid-stride loop over a 1-D range along x: for (i = grid_start(); i < n; i += grid_step()).
__device__ __forceinline__ long long grid_start() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_step() { return (long long)gridDim.x * blockDim.x; }

__device__ __forceinline__ double warp_inclusive_scan(double v, int lane) {
  for (int d = 1; d < 32; d <<= 1) {
    double up = __shfl_up_sync(FULL_MASK, v, d);
    if (lane >= d) v += up;
  }
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(FULL_MASK, v, d);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int d = 16; d > 0; d >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, d));
  return v;
}

// Block-wide reductions for 1-D blocks whose size is a multiple of 32 (at most 1024). Every thread gets the
// result; the fixed combining order makes them deterministic. `scratch` holds 32 values.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : neg_inf();
  return warp_max(v);
}

// float -> IEEE half bits, round to nearest even, without cuda_fp16.h (not every NVRTC ships it).
__device__ __forceinline__ unsigned short float_to_half_bits(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

}  // namespace foveal
