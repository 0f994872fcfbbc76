// 64-byte aligned output buffers, large ones recycled. Fresh pages from the OS are zeroed by the kernel on first
// touch, which for a 4096x4096 summed-area table costs more than computing it; a freed table's memory is kept for
// the next one.
#pragma once

#include <cstddef>

namespace foveal {

// Smaller buffers are freed at once (malloc recycles them). Larger ones are kept: glibc serves blocks over its
// 128 KiB mmap threshold with fresh pages, and trims a freed block at the top of the heap back to the OS, so a
// table made and dropped per image (an ad's map or table is 0.1-4 MiB) would pay a zeroed page per 4 KiB every
// time: at 500x500 that was five times the table's own cost.
constexpr std::size_t kPoolMinBytes = std::size_t{64} << 10;

// At least `bytes` bytes, 64-byte aligned, from the pool when a kept buffer fits (no more than twice the
// size), else newly allocated; nullptr when out of memory, or when a request of 1 GiB or more is larger than
// the memory the machine (or its cgroup) has available.
void *pool_take(std::size_t bytes, std::size_t *capacity);

// Keeps a large buffer for reuse (at most eight buffers, 512 MiB in all; the oldest kept ones are freed to make
// room) or frees it.
void pool_give(void *ptr, std::size_t capacity);

}  // namespace foveal
