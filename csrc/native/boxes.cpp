// Box sums from a summed-area table: four reads per box.
#include <atomic>
#include <limits>

#include "kernels.hpp"

namespace foveal {
namespace {

constexpr index_t kBoxChunk = 16384;

bool box_ok(const std::int64_t *b, index_t h, index_t w) {
    return b[2] > b[0] && b[3] > b[1] && b[2] > 0 && b[3] > 0 && b[0] < w && b[1] < h;
}

std::string box_error(const std::int64_t *b, index_t i, index_t h, index_t w) {
    const std::string box = "boxes[" + std::to_string(i) + "] = (" + std::to_string(b[0]) + ", " +
                            std::to_string(b[1]) + ", " + std::to_string(b[2]) + ", " + std::to_string(b[3]) + ")";
    if (!(b[2] > b[0] && b[3] > b[1])) return box + " is empty: need x1 > x0 and y1 > y0 (x0, y0, x1, y1 half-open)";
    return box + " lies entirely outside the " + std::to_string(w) + "x" + std::to_string(h) + " (WxH) image";
}

}  // namespace

void box_sums(const double *sat, index_t h, index_t w, const std::int64_t *boxes, index_t n, double *out) {
    require(h >= 1 && w >= 1, "sat must be at least 2x2 (an (H+1)x(W+1) table), got " + std::to_string(h + 1) + "x" +
                                  std::to_string(w + 1));
    const index_t stride = w + 1;
    std::atomic<index_t> first_bad{std::numeric_limits<index_t>::max()};
    parallel_for(n, kBoxChunk, [&](index_t begin, index_t end) {
        for (index_t i = begin; i < end; ++i) {
            const std::int64_t *b = boxes + 4 * i;
            if (!box_ok(b, h, w)) {
                index_t seen = first_bad.load();
                while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
                }
                return;  // later boxes of this chunk cannot be the first bad one
            }
            const index_t x0 = std::max<std::int64_t>(b[0], 0), y0 = std::max<std::int64_t>(b[1], 0);
            const index_t x1 = std::min<std::int64_t>(b[2], w), y1 = std::min<std::int64_t>(b[3], h);
            out[i] = (sat[y1 * stride + x1] - sat[y0 * stride + x1]) - (sat[y1 * stride + x0] - sat[y0 * stride + x0]);
        }
    });
    const index_t bad = first_bad.load();
    if (bad != std::numeric_limits<index_t>::max()) throw std::invalid_argument(box_error(boxes + 4 * bad, bad, h, w));
}

}  // namespace foveal
