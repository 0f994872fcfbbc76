// foveal's CPU kernels on raw, C-contiguous buffers. module.cpp owns arrays, shapes and the GIL; these
// functions own the arithmetic and throw std::invalid_argument on bad user input.
#pragma once

#include <cstdint>
#include <string>

#include "common.hpp"

namespace foveal {

// uint8 RGB HWC (h x w) -> float32 planar 3 x ph x pw: resized to rh x rw (area average when shrinking,
// half-pixel bilinear when enlarging, per axis), (x - mean) / stddev, placed with its top-left corner at
// (top, left) and edge-replicated into the padding on every side.
void preprocess(const std::uint8_t *image, index_t h, index_t w, index_t rh, index_t rw, index_t ph, index_t pw,
                index_t top, index_t left, const double mean[3], const double stddev[3], float *out);

// The image's region of the network's output grid, in (fractional) grid cells.
struct Window {
    double top, left, height, width;
};

// float32 log-density grid (gh x gw) -> float32 probability map (h x w) summing to one: the window upsampled.
// Without a blur most rows are products of the row above (see ExpRows in postprocess.cpp), within a few 1e-6
// (relative) of their own exps.
void postprocess(const float *grid, index_t gh, index_t gw, index_t h, index_t w, const Window &window,
                 double blur_sigma, float *out);

// postprocess, and the summed-area table of its output (as summed_area_table gives it): each block of map rows is
// written just before the table reads it, so map and table take one pass over memory together.
void postprocess_sat(const float *grid, index_t gh, index_t gw, index_t h, index_t w, const Window &window,
                     double blur_sigma, float *out, double *sat);

// Summed-area table (h+1) x (w+1) of an h x w map, zero top row and left column.
void summed_area_table(const float *map, index_t h, index_t w, double *sat);
void summed_area_table(const double *map, index_t h, index_t w, double *sat);

// Writes rows [y0, y1) of a map; y0 is a multiple of kSatRowAlign.
using RowFill = std::function<void(index_t y0, index_t y1)>;
constexpr index_t kSatRowAlign = 16;

// summed_area_table of a map that `fill` writes a block of rows at a time, each just before the table reads it
// (from any thread, once per row); so map and table take one pass over memory together. An exception from `fill`
// is rethrown after every block is done (the table is then garbage).
void summed_area_table_filled(const float *map, index_t h, index_t w, const RowFill &fill, double *sat);

// Sums of n half-open boxes (x0, y0, x1, y1) clipped to the h x w image behind `sat`.
void box_sums(const double *sat, index_t h, index_t w, const std::int64_t *boxes, index_t n, double *out);

// prob ~= q * scale with scale = max / (2**bits - 1); returns scale.
double quantize8(const float *prob, index_t n, std::uint8_t *q);
double quantize16(const float *prob, index_t n, std::uint16_t *q);

// 256-entry RGB table for a colormap name ("turbo" or "inferno").
const std::uint8_t *colormap_lut(const std::string &name);

// n values scaled by their max -> n RGB triples.
void colorize(const float *values, index_t n, const std::uint8_t *lut, std::uint8_t *rgb);

// image blended with the colormapped prob, per-pixel weight alpha * prob / max(prob).
void overlay(const std::uint8_t *image, const float *prob, index_t n, double alpha, const std::uint8_t *lut,
             std::uint8_t *rgb);

}  // namespace foveal
