"""The CUDA kernels compile for sm_90 with both compilers that matter, and export the entry points gpu.py launches.

- nvcc, exactly as the pre-stop hook runs it (``nvcc -std=c++17 -arch=sm_90 -Icsrc``), to a cubin;
- NVRTC, on the text ``foveal.gpu`` hands to ``cupy.RawModule`` (header inlined, same ``#define`` preamble).

Neither needs a GPU. Symbols are read from the cubin's ELF symbol table.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from foveal import gpu

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"

EXPECTED = {
    "preprocess.cu": {"preprocess_u8_f32", "preprocess_u8_f16"},
    "postprocess.cu": {"upsample_log_density", "blur_rows", "blur_cols",
                       "softmax_max_sampled", "softmax_sum_sampled", "softmax_normalize_sampled",
                       "softmax_max_dense", "softmax_sum_dense", "softmax_normalize_dense"},
    "sat.cu": {"sat_tile_totals_f32", "sat_tile_totals_f64", "sat_row_carries", "sat_strip_carries",
               "sat_strip_prefix", "sat_tiles_f32", "sat_tiles_f64"},
    "box_sums.cu": {"box_sums"},
    "colormap.cu": {"colorize", "overlay"},
}
# What gpu.py compiles each file with (it passes the SAT tile height as a define).
DEFINES = {"sat.cu": f"#define FOVEAL_SAT_TILE_H {gpu.SAT_TILE_H}\n"}


def test_every_source_is_listed() -> None:
    assert sorted(p.name for p in CUDA_DIR.glob("*.cu")) == sorted(EXPECTED)


def elf_functions(blob: bytes) -> set[str]:
    """Global function symbols of a 64-bit little-endian ELF image (a cubin)."""
    assert blob[:4] == b"\x7fELF" and blob[4] == 2 and blob[5] == 1, "not a 64-bit little-endian ELF"
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", blob, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 2:  # SHT_SYMTAB
            continue
        strtab_offset = sections[link][4]
        for at in range(offset, offset + size, entsize):
            st_name, st_info = struct.unpack_from("<IB", blob, at)
            if st_info & 0xF == 2 and st_info >> 4 == 1:  # STT_FUNC, STB_GLOBAL
                end = blob.index(b"\0", strtab_offset + st_name)
                names.add(blob[strtab_offset + st_name:end].decode())
    return names


def find_nvcc() -> str | None:
    return shutil.which("nvcc") or next((str(p) for p in [Path("/usr/local/cuda/bin/nvcc")] if p.is_file()), None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_nvcc_sm90(name: str, tmp_path: Path) -> None:
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found on PATH or in /usr/local/cuda/bin")
    cubin = tmp_path / "k.cubin"
    # The hook's exact command (-c to an object), then the same flags to a cubin to read its symbols.
    for extra in (["-c", "-o", str(tmp_path / "k.o")], ["-cubin", "-o", str(cubin)]):
        run = subprocess.run([nvcc, "-std=c++17", "-arch=sm_90", "-Icsrc", *extra, f"csrc/cuda/{name}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    assert EXPECTED[name] <= elf_functions(cubin.read_bytes())


def load_nvrtc() -> ctypes.CDLL | None:
    candidates = [ctypes.util.find_library("nvrtc")]
    try:
        import nvidia  # the nvidia-cuda-nvrtc wheel (a CuPy dependency)

        for root in nvidia.__path__:
            candidates += sorted(str(p) for p in Path(root).glob("*/lib/libnvrtc.so*") if "builtins" not in p.name)
    except ImportError:
        pass
    candidates += sorted(str(p) for p in Path("/usr/local/cuda/lib64").glob("libnvrtc.so*"))
    for path in filter(None, candidates):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def nvrtc_cubin(lib: ctypes.CDLL, source: str, options: list[str]) -> bytes:
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernel.cu", 0, None, None) == 0
    try:
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        status = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        assert status == 0, log.value.decode(errors="replace")
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        assert lib.nvrtcGetCUBIN(prog, cubin) == 0
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_nvrtc_sm90(name: str) -> None:
    lib = load_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc, or a CUDA toolkit in /usr/local/cuda)")
    source = DEFINES.get(name, "") + gpu.kernel_source(name)
    assert '#include "cuda/' not in source
    cubin = nvrtc_cubin(lib, source, ["-std=c++17", "-arch=sm_90"])
    assert EXPECTED[name] <= elf_functions(cubin)
