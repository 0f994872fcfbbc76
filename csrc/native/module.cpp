// Python bindings: foveal._native. Arrays are checked and allocated here with the GIL held; the kernels run
// with it released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <initializer_list>
#include <utility>
#include <vector>

#include "buffer_pool.hpp"
#include "kernels.hpp"

namespace py = pybind11;
using foveal::index_t;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_of(const py::array &a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

void require_2d(const py::array &a, const char *name, const char *expected = "(H, W)") {
    foveal::require(a.ndim() == 2, std::string(name) + " must have shape " + expected + ", got " + shape_of(a));
}

void require_image(const py::array &a, const char *name) {
    foveal::require(a.ndim() == 3 && a.shape(2) == 3,
                    std::string(name) + " must have shape (H, W, 3), got " + shape_of(a));
}

// Uninitialised, 64-byte aligned output array; large ones live in recycled memory (see buffer_pool.hpp).
// A size that cannot be allocated is the caller's input error (a ValueError naming the shape).
template <class T>
py::array_t<T> new_array(std::initializer_list<index_t> dims) {
    std::vector<py::ssize_t> shape(dims.begin(), dims.end());
    std::string shape_text;
    for (index_t d : dims) shape_text += (shape_text.empty() ? "" : ", ") + std::to_string(d);
    std::size_t bytes = sizeof(T);
    bool overflow = false;
    for (index_t d : dims)
        overflow |= __builtin_mul_overflow(bytes, static_cast<std::size_t>(std::max<index_t>(d, 0)), &bytes);
    struct Block {
        void *ptr;
        std::size_t capacity;
    };
    auto *block = new Block{nullptr, 0};
    if (!overflow) block->ptr = foveal::pool_take(bytes, &block->capacity);
    if (block->ptr == nullptr) {
        delete block;
        throw std::invalid_argument("cannot allocate an output of shape (" + shape_text + ") (" +
                                    (overflow ? std::string("too many") : std::to_string(bytes)) +
                                    " bytes); ask for a smaller size");
    }
    py::capsule owner(block, [](void *b) {
        auto *blk = static_cast<Block *>(b);
        foveal::pool_give(blk->ptr, blk->capacity);
        delete blk;
    });
    return py::array_t<T>(shape, static_cast<T *>(block->ptr), owner);
}

template <class T>
py::array_t<double> summed_area_table(const carray<T> &prob) {
    require_2d(prob, "prob");
    const index_t h = prob.shape(0), w = prob.shape(1);
    auto sat = new_array<double>({h + 1, w + 1});
    const T *src = prob.data();
    double *dst = sat.mutable_data();
    py::gil_scoped_release release;
    foveal::summed_area_table(src, h, w, dst);
    return sat;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "foveal's C++ CPU kernels. Use foveal.cpu, which checks and converts arguments.";

    m.def(
        "preprocess",
        [](const carray<std::uint8_t> &image, std::pair<index_t, index_t> resized_hw,
           std::pair<index_t, index_t> padded_hw, std::array<double, 3> mean, std::array<double, 3> std,
           std::pair<index_t, index_t> offset_hw) {
            require_image(image, "image");
            // Sizes are checked by the kernel; clamping keeps a bad size from failing in the allocator first.
            auto out = new_array<float>({1, 3, std::max<index_t>(padded_hw.first, 0),
                                         std::max<index_t>(padded_hw.second, 0)});
            const std::uint8_t *src = image.data();
            float *dst = out.mutable_data();
            py::gil_scoped_release release;
            foveal::preprocess(src, image.shape(0), image.shape(1), resized_hw.first, resized_hw.second,
                               padded_hw.first, padded_hw.second, offset_hw.first, offset_hw.second, mean.data(),
                               std.data(), dst);
            return out;
        },
        py::arg("image"), py::arg("resized_hw"), py::arg("padded_hw"), py::arg("mean"), py::arg("std"),
        py::arg("offset_hw"), "uint8[H, W, 3] RGB -> float32[1, 3, Hp, Wp]: resized, (x - mean) / std, placed at "
        "offset_hw inside edge padding.");

    m.def(
        "postprocess",
        [](const carray<float> &log_density, std::pair<index_t, index_t> out_hw, std::pair<double, double> valid_hw,
           double blur_sigma, std::pair<double, double> origin_hw) {
            const foveal::Window window{origin_hw.first, origin_hw.second, valid_hw.first, valid_hw.second};
            require_2d(log_density, "log_density", "(h, w)");
            auto out = new_array<float>({std::max<index_t>(out_hw.first, 0), std::max<index_t>(out_hw.second, 0)});
            const float *src = log_density.data();
            float *dst = out.mutable_data();
            py::gil_scoped_release release;
            foveal::postprocess(src, log_density.shape(0), log_density.shape(1), out_hw.first, out_hw.second, window,
                                blur_sigma, dst);
            return out;
        },
        py::arg("log_density"), py::arg("out_hw"), py::arg("valid_hw"), py::arg("blur_sigma"), py::arg("origin_hw"),
        "float32[h, w] log-density -> float32[H, W] probability map summing to 1.");

    m.def(
        "postprocess_sat",
        [](const carray<float> &log_density, std::pair<index_t, index_t> out_hw, std::pair<double, double> valid_hw,
           double blur_sigma, std::pair<double, double> origin_hw) {
            const foveal::Window window{origin_hw.first, origin_hw.second, valid_hw.first, valid_hw.second};
            require_2d(log_density, "log_density", "(h, w)");
            const index_t h = std::max<index_t>(out_hw.first, 0), w = std::max<index_t>(out_hw.second, 0);
            auto out = new_array<float>({h, w});
            auto sat = new_array<double>({h + 1, w + 1});
            const float *src = log_density.data();
            float *dst = out.mutable_data();
            double *table = sat.mutable_data();
            {
                py::gil_scoped_release release;
                foveal::postprocess_sat(src, log_density.shape(0), log_density.shape(1), out_hw.first,
                                        out_hw.second, window, blur_sigma, dst, table);
            }
            return py::make_tuple(out, sat);
        },
        py::arg("log_density"), py::arg("out_hw"), py::arg("valid_hw"), py::arg("blur_sigma"), py::arg("origin_hw"),
        "postprocess and the summed-area table of its output, the map written block by block beside its table: "
        "(prob, sat).");

    m.def("summed_area_table", &summed_area_table<float>, py::arg("prob"));
    m.def("summed_area_table", &summed_area_table<double>, py::arg("prob"),
          "float32|float64[H, W] -> float64[H+1, W+1] summed-area table (zero top row and left column).");

    m.def(
        "box_sums",
        [](const carray<double> &sat, const carray<std::int64_t> &boxes) {
            require_2d(sat, "sat", "(H+1, W+1)");
            foveal::require(boxes.ndim() == 2 && boxes.shape(1) == 4,
                            "boxes must have shape (N, 4), got " + shape_of(boxes));
            const index_t n = boxes.shape(0);
            auto out = new_array<double>({n});
            const double *table = sat.data();
            const std::int64_t *b = boxes.data();
            double *dst = out.mutable_data();
            py::gil_scoped_release release;
            foveal::box_sums(table, sat.shape(0) - 1, sat.shape(1) - 1, b, n, dst);
            return out;
        },
        py::arg("sat"), py::arg("boxes"),
        "float64[H+1, W+1] SAT, int64[N, 4] half-open (x0, y0, x1, y1) boxes -> float64[N] clipped sums.");

    m.def(
        "quantize",
        [](const carray<float> &prob, int bits) -> std::pair<py::array, double> {
            require_2d(prob, "prob");
            foveal::require(bits == 8 || bits == 16, "bits must be 8 or 16, got " + std::to_string(bits));
            const index_t n = prob.size();
            const float *src = prob.data();
            if (bits == 8) {
                auto q = new_array<std::uint8_t>({prob.shape(0), prob.shape(1)});
                std::uint8_t *dst = q.mutable_data();
                py::gil_scoped_release release;
                return {q, foveal::quantize8(src, n, dst)};
            }
            auto q = new_array<std::uint16_t>({prob.shape(0), prob.shape(1)});
            std::uint16_t *dst = q.mutable_data();
            py::gil_scoped_release release;
            return {q, foveal::quantize16(src, n, dst)};
        },
        py::arg("prob"), py::arg("bits") = 8,
        "float32[H, W] -> (uint8|uint16[H, W], scale) with prob ~= q * scale, scale = max / (2**bits - 1).");

    m.def(
        "colorize",
        [](const carray<float> &values, const std::string &cmap) {
            require_2d(values, "values");
            const std::uint8_t *lut = foveal::colormap_lut(cmap);
            auto rgb = new_array<std::uint8_t>({values.shape(0), values.shape(1), 3});
            const float *src = values.data();
            std::uint8_t *dst = rgb.mutable_data();
            py::gil_scoped_release release;
            foveal::colorize(src, values.size(), lut, dst);
            return rgb;
        },
        py::arg("values"), py::arg("cmap") = "turbo", "float32[H, W] scaled by its max -> uint8[H, W, 3] RGB.");

    m.def(
        "overlay",
        [](const carray<std::uint8_t> &image, const carray<float> &prob, double alpha, const std::string &cmap) {
            require_image(image, "image");
            require_2d(prob, "prob");
            foveal::require(prob.shape(0) == image.shape(0) && prob.shape(1) == image.shape(1),
                            "prob must have the image's (H, W) = (" + std::to_string(image.shape(0)) + ", " +
                                std::to_string(image.shape(1)) + "), got " + shape_of(prob));
            const std::uint8_t *lut = foveal::colormap_lut(cmap);
            auto rgb = new_array<std::uint8_t>({image.shape(0), image.shape(1), 3});
            const std::uint8_t *img = image.data();
            const float *p = prob.data();
            std::uint8_t *dst = rgb.mutable_data();
            py::gil_scoped_release release;
            foveal::overlay(img, p, prob.size(), alpha, lut, dst);
            return rgb;
        },
        py::arg("image"), py::arg("prob"), py::arg("alpha") = 0.6, py::arg("cmap") = "turbo",
        "uint8[H, W, 3] image blended with the colormapped prob, per-pixel alpha * prob / max(prob).");

    m.attr("num_threads") = foveal::thread_count();
    m.def("usable_cpus", &foveal::usable_cpus, "CPUs this process may run on (affinity and cgroup quota); read anew.");
#ifdef FOVEAL_VERSION
    m.attr("__version__") = FOVEAL_VERSION;
#else
    m.attr("__version__") = "dev";
#endif
}
