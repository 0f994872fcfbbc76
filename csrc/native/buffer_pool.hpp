// 64-byte aligned output buffers, large ones recycled. Fresh pages from the OS are zeroed by the kernel on first
// touch, which for a 4096x4096 summed-area table costs more than computing it; a freed table's memory is kept for
// the next one.
#pragma once

#include <cstddef>

namespace foveal {

// Smaller buffers are freed at once (malloc recycles them). Larger ones are kept: malloc hands a freed multi-MiB
// block back to the OS as soon as it sits at the top of the heap, so a table made and dropped per image (the
// engine's, at 1080p) would pay fresh, zeroed pages every time.
constexpr std::size_t kPoolMinBytes = std::size_t{2} << 20;

// At least `bytes` bytes, 64-byte aligned, from the pool when a kept buffer fits (no more than twice the
// size), else newly allocated; nullptr when out of memory.
void *pool_take(std::size_t bytes, std::size_t *capacity);

// Keeps a large buffer for reuse (at most four buffers, 512 MiB in all; the oldest kept ones are freed to make
// room) or frees it.
void pool_give(void *ptr, std::size_t capacity);

}  // namespace foveal
