// Fused preprocess, GPU twin of csrc/native's preprocess: uint8 HWC RGB -> resize -> x * scale + offset
// (scale = 1/std, offset = -mean/std, as the CPU computes them) -> NCHW,
// placed at a per-image offset inside edge padding, for a whole batch in one launch (blockIdx.z = image).
//
// Resize conventions (per axis, as on the CPU): area average when shrinking, output cell o covering input
// [o*s, (o+1)*s) with s = in/out, each input pixel weighted by its overlap; bilinear when enlarging (or equal),
// half-pixel centres src = (o + 0.5) * in/out - 0.5 clamped to [0, in-1].
#include "cuda/common.cuh"

namespace {

// One output coordinate's input taps along an axis: pixels first..last with weights weight(i).
struct Taps {
  int first, last;
  bool area;
  double a, b, scale;  // area: input interval [a, b), scale = b - a
  float t;             // bilinear: weight of `last`

  __device__ Taps(int o, int in, int out) {
    scale = double(in) / double(out);
    area = out < in;
    if (area) {
      a = o * scale;
      b = (o + 1) * scale;
      first = int(floor(a));
      last = min(int(ceil(b)) - 1, in - 1);
      t = 0.f;
    } else {
      double src = fmin(fmax((o + 0.5) * scale - 0.5, 0.0), double(in - 1));
      first = int(floor(src));
      last = min(first + 1, in - 1);
      t = float(src - first);
      a = b = 0.0;
    }
  }

  __device__ float weight(int i) const {
    if (area) return float((fmin(double(i + 1), b) - fmax(double(i), a)) / scale);
    if (first == last) return 1.f;
    return i == first ? 1.f - t : t;
  }
};

template <typename Out>
__device__ void store(Out* p, float v);
template <>
__device__ void store<float>(float* p, float v) { *p = v; }
template <>
__device__ void store<unsigned short>(unsigned short* p, float v) { *p = foveal::float_to_half_bits(v); }

// desc: per image int64 {device pointer to uint8 HxWx3, H, W, resized H, resized W, top, left}.
template <typename Out>
__device__ void preprocess(const long long* __restrict__ desc, int hp, int wp, float k0, float k1, float k2,
                           float b0, float b1, float b2, Out* __restrict__ out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  const int n = blockIdx.z;
  if (x >= wp || y >= hp) return;
  const long long* d = desc + 7 * n;
  const unsigned char* img = reinterpret_cast<const unsigned char*>(d[0]);
  const int h = int(d[1]), w = int(d[2]), rh = int(d[3]), rw = int(d[4]), top = int(d[5]), left = int(d[6]);
  // Edge padding repeats the first or last resized row/column.
  const Taps ty(min(max(y - top, 0), rh - 1), h, rh), tx(min(max(x - left, 0), rw - 1), w, rw);
  float r = 0.f, g = 0.f, bl = 0.f;
  for (int iy = ty.first; iy <= ty.last; ++iy) {
    const float wy = ty.weight(iy);
    const unsigned char* row = img + (long long)iy * w * 3;
    float rr = 0.f, gg = 0.f, bb = 0.f;
    for (int ix = tx.first; ix <= tx.last; ++ix) {
      const float wx = tx.weight(ix);
      rr += wx * row[3 * ix];
      gg += wx * row[3 * ix + 1];
      bb += wx * row[3 * ix + 2];
    }
    r += wy * rr;
    g += wy * gg;
    bl += wy * bb;
  }
  const long long plane = (long long)hp * wp, at = (long long)y * wp + x;
  Out* o = out + 3 * plane * n;
  store(o + at, __fadd_rn(__fmul_rn(r, k0), b0));
  store(o + plane + at, __fadd_rn(__fmul_rn(g, k1), b1));
  store(o + 2 * plane + at, __fadd_rn(__fmul_rn(bl, k2), b2));
}

}  // namespace

extern "C" __global__ void preprocess_u8_f32(const long long* desc, int hp, int wp, float k0, float k1, float k2,
                                             float b0, float b1, float b2, float* out) {
  preprocess(desc, hp, wp, k0, k1, k2, b0, b1, b2, out);
}

// fp16 output stored as raw half bits (unsigned short): CuPy views the buffer as float16.
extern "C" __global__ void preprocess_u8_f16(const long long* desc, int hp, int wp, float k0, float k1, float k2,
                                             float b0, float b1, float b2, unsigned short* out) {
  preprocess(desc, hp, wp, k0, k1, k2, b0, b1, b2, out);
}
