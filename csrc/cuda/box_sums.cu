// Box sums over summed-area tables, GPU twin of csrc/native's box_sums: thousands of half-open boxes
// (x0, y0, x1, y1) over many tables in one launch. Boxes were validated by the launcher; here they are clipped to
// their map. tables: per map int64 {device pointer to float64 (H+1) x (W+1), H, W}.
extern "C" __global__ void box_sums(const long long* tables, const long long* boxes, const long long* map_index,
                                    long long count, double* out) {
  // A grid-stride loop: the launcher caps the grid, and a batch can hold more boxes than its threads.
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += stride) {
    const long long* t = tables + 3 * map_index[k];
    const double* sat = reinterpret_cast<const double*>(t[0]);
    const long long H = t[1], W = t[2], pitch = W + 1;
    const long long* b = boxes + 4 * k;
    const long long x0 = min(max(b[0], 0LL), W), y0 = min(max(b[1], 0LL), H);
    const long long x1 = min(max(b[2], 0LL), W), y1 = min(max(b[3], 0LL), H);
    out[k] = sat[y1 * pitch + x1] - sat[y0 * pitch + x1] - sat[y1 * pitch + x0] + sat[y0 * pitch + x0];
  }
}
