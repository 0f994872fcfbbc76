"""Eye-tracking datasets: images, their fixations, and fixation density maps.

Three layouts load through :func:`load_dataset`, which detects them:

* **OSIE** (Xu et al., J. Vision 2014): ``stimuli/*.jpg`` + ``eye/fixations.mat``.
* **NUS Scene** (Liang et al., 2015): ``stimuli/*.jpg`` + ``tidy/fixations.mat`` (+ ``tidy/imgInfo.mat``).
* **A folder of your own**: images in ``images/`` or ``stimuli/`` (or the folder itself), and either
  ``fixations.csv`` (header ``image,x,y[,subject]``), ``fixations.json`` (``{"a.jpg": [[x, y], ...]}``, rows may
  carry a third subject column, or ``{"a.jpg": {"subject": [[x, y], ...]}}``), and/or density maps as
  ``maps/<image stem>.png`` the size of their image.  Subjects are given for every fixation or for none: of the
  file in a CSV, of an image in a JSON (subject ids only mean something within an image, where human consistency
  splits its viewers; an image given without them has one viewer, which that evaluation refuses by name).

Coordinates are 0-based float pixels of the stored image: pixel (0, 0) covers [0, 1) × [0, 1).  Reading the
``.mat`` files needs SciPy (``pip install "foveal[eval]"``, SciPy only, no torch); everything else needs only NumPy and
Pillow.

Every dataset has a fixed split by image (:meth:`Dataset.split`): ids sorted, ``default_rng(0).permutation(n)``,
first 80 % train, next 10 % val, last 10 % test.  Training, model selection and evaluation all use it.
"""
from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from foveal.errors import FovealError, ImageError, InputError, checked_count, is_list_like
from foveal.fileio import checked_path, open_input
from foveal.metrics import off_image
from foveal.imageio import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, checked_max_pixels, load_image, max_file_bytes,
                            open_pillow)

__all__ = ["Fixations", "Dataset", "load_dataset", "load_osie", "load_scene", "load_folder",
           "SPLITS", "OSIE_PIXELS_PER_DEGREE"]

SPLITS = ("train", "val", "test")

# OSIE: 800x600 images shown at 33.7 x 25.3 degrees of visual angle (22" monitor, 60 cm away; Xu et al. 2014),
# so one degree is ~24 px.  The density maps use a Gaussian of one degree, the usual choice (MIT/Tuebingen).
OSIE_PIXELS_PER_DEGREE = 24.0
# NUS Scene does not state a per-image visual angle; its images were shown scaled to the screen, so we take the
# same ~one degree relative to a 800x600 display area and scale sigma with the image's size relative to it.
_DISPLAY_HW = (600.0, 800.0)


@dataclass(frozen=True, eq=False)  # eq: the generated one compared arrays with ==, which has no truth value
class Fixations:
    """Fixations on one image: 0-based float pixel coordinates and the integer id of the viewer."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray

    def __post_init__(self) -> None:
        for name, kind in (("x", np.float64), ("y", np.float64), ("subject", np.int64)):
            object.__setattr__(self, name, _numbers(getattr(self, name), name, kind))
        if not (self.x.shape == self.y.shape == self.subject.shape and self.x.ndim == 1):
            raise InputError(f"Fixations: x, y, subject must be 1-D arrays of one length, got shapes "
                             f"{self.x.shape}, {self.y.shape}, {self.subject.shape}")

    @classmethod
    def from_arrays(cls, x: Sequence[float], y: Sequence[float],
                    subject: Sequence[int] | None = None) -> "Fixations":
        """Build from any sequences (subject defaults to 0 for every fixation)."""
        xa = _numbers(x, "x", np.float64).reshape(-1)
        sa = np.zeros(xa.shape, np.int64) if subject is None else _numbers(subject, "subject", np.int64).reshape(-1)
        return cls(xa, _numbers(y, "y", np.float64).reshape(-1), sa)

    def __len__(self) -> int:
        return int(self.x.size)

    def flipped(self, width: int) -> "Fixations":
        """The fixations of the horizontally mirrored image of this width."""
        return Fixations(width - self.x, self.y.copy(), self.subject.copy())

    def cropped(self, top: float, left: float, height: float, width: float) -> "Fixations":
        """The fixations inside the box (half-open), in the box's own coordinates."""
        inside = (self.y >= top) & (self.y < top + height) & (self.x >= left) & (self.x < left + width)
        return Fixations(self.x[inside] - left, self.y[inside] - top, self.subject[inside])


def _numbers(values: object, name: str, kind: type) -> np.ndarray:
    """``values`` as an array of ``kind`` (float64 coordinates, int64 viewer ids), else InputError: text, or a
    viewer id with a fraction (it was truncated) or past int64."""
    array = None if isinstance(values, (str, bytes)) else np.asarray(values)
    if array is None or (array.size and not _holds(array, kind)):
        what = "numbers" if kind is np.float64 else "whole numbers (viewer ids)"
        raise InputError(f"Fixations: {name} must be {what}, got {values!r:.60}")
    return array.astype(kind)


def _holds(array: np.ndarray, kind: type) -> bool:
    """Whether every value of a non-empty ``array`` is one ``kind`` holds exactly (float64 takes any number)."""
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return kind is np.float64 or bool((array <= np.iinfo(np.int64).max).all())
    if np.issubdtype(array.dtype, np.integer):
        return True
    if np.issubdtype(array.dtype, np.floating):
        return kind is np.float64 or bool(
            (np.isfinite(array) & (array == np.round(array)) & (np.abs(array) < 2.0 ** 63)).all())
    return False


def gaussian_density(fix: Fixations, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Sum of one isotropic Gaussian per fixation, evaluated at pixel centres, normalised to sum 1 (float64).

    Separable and exact: ``density = Gy^T @ Gx`` with one Gaussian row per fixation, so it costs
    ``n * H * W`` and needs no SciPy.  An image without fixations gets the uniform map.
    """
    h, w = shape
    if len(fix) == 0:
        return np.full((h, w), 1.0 / (h * w))
    ys = np.arange(h) + 0.5
    xs = np.arange(w) + 0.5
    gy = np.exp(-0.5 * ((ys[None, :] - fix.y[:, None]) / sigma) ** 2)
    gx = np.exp(-0.5 * ((xs[None, :] - fix.x[:, None]) / sigma) ** 2)
    density = gy.T @ gx
    return density / density.sum()


def check_fixations(fix: Fixations, shape: tuple[int, int], where: str) -> None:
    """InputError unless every fixation is one the metrics take on the (H, W) image (:func:`foveal.metrics.off_image`):
    a recording error in the dataset's files, to be told as such, not as a fault of some model's map."""
    bad = off_image(fix.x, fix.y, shape)
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(f"{where}: fixation {k} at ({fix.x[k]:g}, {fix.y[k]:g}) lies outside its "
                         f"{shape[1]}x{shape[0]} image; correct or remove it in the dataset's fixations")


class Dataset:
    """Images with fixations and/or density maps, indexed 0..n-1 in sorted-id order.

    Args:
        name: dataset name (``"osie"``, ``"scene"``, a folder name); splits append ``-train`` etc.
        ids: image file names (sorted).
        paths: image file paths, one per id.
        fixations: one :class:`Fixations` per id, or None for density-map-only datasets.
        density_paths: one density-map PNG per id, or None to derive densities from fixations.
        sigma: function of (H, W) giving the density Gaussian's sigma in pixels.
        shapes: known (H, W) per id, or None to read them from the image headers.
        max_pixels: images and density maps larger than this are refused (:class:`foveal.TooManyPixelsError`).
    """

    def __init__(self, name: str, ids: Sequence[str], paths: Sequence[Path],
                 fixations: Sequence[Fixations] | None, density_paths: Sequence[Path] | None,
                 sigma: Callable[[int, int], float], shapes: Sequence[tuple[int, int]] | None = None, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.name = name
        self.ids = list(ids)
        self._paths = list(paths)
        self._fixations = None if fixations is None else list(fixations)
        self._density_paths = None if density_paths is None else list(density_paths)
        self._sigma = sigma
        self._shapes = None if shapes is None else [tuple(map(int, s)) for s in shapes]
        self.max_pixels = checked_max_pixels(max_pixels)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} images)"

    @property
    def has_fixations(self) -> bool:
        return self._fixations is not None

    def _check(self, i: int) -> int:
        """``i`` as an index of this dataset (negative from the end), else InputError: a float or text index was a
        TypeError, 1.9 as an index of subset() silently image 1."""
        index = checked_count(i, "image index", -len(self))
        if index >= len(self):
            raise InputError(f"image index {i} out of range for {self.name} with {len(self)} images")
        return index % len(self)

    def path(self, i: int) -> Path:
        return self._paths[self._check(i)]

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 RGB H×W×3 (EXIF-rotated, as foveal decodes every image)."""
        return load_image(self.path(i), self.max_pixels)

    def shape(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i``: the size its fixations were recorded on where the dataset states it, else
        :meth:`file_shape`."""
        i = self._check(i)
        if self._shapes is not None:
            return self._shapes[i]
        return self.file_shape(i)

    def file_shape(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i``'s file as foveal decodes it (EXIF-rotated), from its header (no decoding)."""
        return _header_shape(self.path(i), self.max_pixels)

    def fixations(self, i: int) -> Fixations:
        """Fixations on image ``i``; raises InputError for a density-map-only dataset."""
        if self._fixations is None:
            raise InputError(f"dataset {self.name!r} has density maps only, no fixations; "
                             f"add fixations.csv or fixations.json to use fixation-based metrics")
        return self._fixations[self._check(i)]

    def sigma(self, i: int) -> float:
        """Sigma in pixels of the Gaussian (~one degree of visual angle) that makes the density of image i."""
        return float(self._sigma(*self.shape(i)))

    def density(self, i: int) -> np.ndarray:
        """Fixation density of image ``i``: H×W float64 summing to 1 (from its map file, else its fixations)."""
        i = self._check(i)
        if self._density_paths is not None:
            return _read_density(self._density_paths[i], self.shape(i), self.max_pixels)
        return gaussian_density(self._fixations[i], self.shape(i), self.sigma(i))

    def subset(self, indices: Sequence[int], name: str) -> "Dataset":
        """A dataset of the given images (in the given order)."""
        if not is_list_like(indices):  # "12" was images 1 and 2
            raise InputError(f"subset: indices must be a list of image indices, got {type(indices).__name__}")
        idx = [self._check(i) for i in indices]
        pick = lambda seq: None if seq is None else [seq[k] for k in idx]  # noqa: E731
        return Dataset(name, pick(self.ids), pick(self._paths), pick(self._fixations),
                       pick(self._density_paths), self._sigma, pick(self._shapes), max_pixels=self.max_pixels)

    def split_indices(self, split: str) -> np.ndarray:
        """Sorted indices of the images in ``split`` ("train" 80 %, "val" 10 %, "test" 10 %)."""
        if split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}, got {split!r}")
        n = len(self)
        order = np.random.default_rng(0).permutation(n)
        cut = (0, int(round(0.8 * n)), int(round(0.9 * n)), n)
        k = SPLITS.index(split)
        return np.sort(order[cut[k]:cut[k + 1]])

    def split(self, split: str) -> "Dataset":
        """The fixed, seeded split of this dataset by image (see module docstring)."""
        return self.subset(self.split_indices(split), f"{self.name}-{split}")


def _header_shape(path: Path, max_pixels: int) -> tuple[int, int]:
    # Through the checked stream (regular file, bounded, pixel limit from the header): a FIFO or a bomb in a
    # dataset folder is an InputError like any other bad image.
    with open_input(path, max_file_bytes(max_pixels), "image file", ImageError) as fh:
        im = open_pillow(fh, str(path), max_pixels)
        w, h = im.size
        try:
            # EXIF orientations 5-8 rotate by 90 degrees; load_image applies them, so the shape must too.
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"cannot read image header of {path}: {e}") from e
    return h, w


def _read_density(path: Path, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    with open_input(path, max_file_bytes(max_pixels), "density map", ImageError) as fh:
        im = open_pillow(fh, str(path), max_pixels)
        try:
            arr = np.asarray(im.convert("I") if im.mode in ("I", "I;16", "I;16B") else im.convert("L"),
                             dtype=np.float64)
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"cannot read density map {path}: {e}") from e
    if arr.shape != tuple(shape):
        raise InputError(f"density map {path} is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image is "
                         f"{shape[1]}x{shape[0]}; maps must have their image's size")
    total = arr.sum()
    if not total > 0:
        raise InputError(f"density map {path} is all zero; a density map needs some positive pixels")
    return arr / total


def _loadmat(path: Path) -> dict:
    try:
        import scipy.io
    except ImportError as e:
        raise FovealError(f"reading {path.name} needs SciPy; install it with `pip install \"foveal[eval]\"` (or "
                          "`pip install scipy`)") from e
    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001 - SciPy's reader meets a corrupt file with almost any exception
        # (MatReadError, zlib.error, IndexError, TypeError, UnboundLocalError, MemoryError...), none of them its own.
        raise InputError(f"cannot read MATLAB file {path}: {type(e).__name__}: {e}; is it a .mat file?") from e


def _one_degree(reference_sigma: float) -> Callable[[int, int], float]:
    """Sigma scaled by how much larger the stored image is than the 800x600 display area it was fitted to."""
    def sigma(h: int, w: int) -> float:
        return reference_sigma * max(h / _DISPLAY_HW[0], w / _DISPLAY_HW[1])
    return sigma


def _stimuli(root: Path, folder: str = "stimuli") -> list[Path]:
    d = root / folder
    if not d.is_dir():
        raise InputError(f"{root}: expected a {folder}/ folder of images, found none")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return files


def load_osie(root: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """OSIE: 700 images of 800×600 with the fixations of 15 viewers (MATLAB 1-based pixel centres → 0-based)."""
    root = Path(checked_path(root, "OSIE folder"))
    files = {p.name: p for p in _stimuli(root)}
    path = root / "eye" / "fixations.mat"
    mat = _loadmat(path)
    if "fixations" not in mat:
        raise InputError(f"{path}: no 'fixations' variable; is this OSIE's file?")
    try:
        by_name = _osie_fixations(mat["fixations"])
    except (IndexError, KeyError, TypeError, ValueError) as e:  # what indexing a differently shaped variable raises
        raise InputError(f"{path}: 'fixations' is not OSIE's array of img and subjects (fix_x, fix_y) records "
                         f"({type(e).__name__}: {e}); is this OSIE's file?") from e
    missing = sorted(set(by_name) - set(files))
    if missing:
        raise InputError(f"{root}: fixations.mat names images missing from stimuli/: {missing[:5]}")
    ids = sorted(by_name)
    for n in ids:
        check_fixations(by_name[n], (600, 800), f"{path}: image {n!r}")
    return Dataset("osie", ids, [files[n] for n in ids], [by_name[n] for n in ids], None,
                   lambda h, w: OSIE_PIXELS_PER_DEGREE * w / 800.0, [(600, 800)] * len(ids), max_pixels=max_pixels)


def _osie_fixations(fixations: np.ndarray) -> dict[str, Fixations]:
    by_name: dict[str, Fixations] = {}
    for entry in fixations.reshape(-1):
        name = str(entry["img"].reshape(-1)[0].reshape(-1)[0])
        xs, ys, ss = [], [], []
        for s, subj in enumerate(entry["subjects"].reshape(-1)[0].reshape(-1)):
            rec = subj.reshape(-1)[0]
            # MATLAB's 1-based pixel k is centred on k, covering [k - 0.5, k + 0.5); foveal's 0-based pixel k - 1
            # covers [k - 1, k), so the shift is half a pixel less than one.  With `- 1`, floor() put 45 % of
            # OSIE's fixations in the pixel left of (or above) the one MATLAB's round() gives.
            x = np.asarray(rec["fix_x"], np.float64).reshape(-1) - 0.5
            y = np.asarray(rec["fix_y"], np.float64).reshape(-1) - 0.5
            xs.append(x)
            ys.append(y)
            ss.append(np.full(x.shape, s, np.int64))
        by_name[name] = Fixations(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss))
    return by_name


def load_scene(root: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """NUS Scene: 500 images of mixed sizes; fixation cells hold (row, col, onset, duration) per viewer."""
    root = Path(checked_path(root, "NUS Scene folder"))
    files = _stimuli(root)
    tidy = root / "tidy"
    cells = _loadmat(tidy / "fixations.mat").get("fixations")
    info = _loadmat(tidy / "imgInfo.mat").get("imgInfo")
    if cells is None or info is None:
        raise InputError(f"{tidy}: expected 'fixations' in fixations.mat and 'imgInfo' in imgInfo.mat")
    try:
        shapes = np.asarray(info.reshape(-1)[0][0], np.int64)
    except (IndexError, KeyError, TypeError, ValueError) as e:  # what indexing a differently shaped variable raises
        raise InputError(f"{tidy / 'imgInfo.mat'}: 'imgInfo' does not hold the images' sizes "
                         f"({type(e).__name__}: {e}); is this NUS Scene's file?") from e
    if cells.shape[0] != len(files) or shapes.shape != (len(files), 2):
        raise InputError(f"{root}: {len(files)} stimuli but fixations.mat has {cells.shape[0]} rows and "
                         f"imgInfo sizes of shape {shapes.shape}; the files do not belong together")
    try:
        fixations = [_scene_fixations(row) for row in cells]
    except (IndexError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{tidy / 'fixations.mat'}: 'fixations' is not NUS Scene's cells of (row, col, ...) rows "
                         f"per image and viewer ({type(e).__name__}: {e}); is this NUS Scene's file?") from e
    for p, fix, (h, w) in zip(files, fixations, shapes):
        check_fixations(fix, (int(h), int(w)), f"{tidy / 'fixations.mat'}: image {p.name!r}")
    return Dataset("scene", [p.name for p in files], files, fixations, None,
                   _one_degree(OSIE_PIXELS_PER_DEGREE), [tuple(s) for s in shapes], max_pixels=max_pixels)


def _scene_fixations(row: np.ndarray) -> Fixations:
    xs, ys, ss = [], [], []
    for s, cell in enumerate(row):
        a = np.asarray(cell, np.float64)
        if a.size == 0:
            continue
        # Columns are (row, col): read as (x, y) 7.6 % of the points would leave their image.
        ys.append(a[:, 0])
        xs.append(a[:, 1])
        ss.append(np.full(a.shape[0], s, np.int64))
    return (Fixations.from_arrays(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss))
            if xs else Fixations.from_arrays([], []))


# One fixation as read from a file: x, y, subject, and where it stands ("fixations.csv:7") for error messages.
_Row = tuple[float, float, int, str]


def _folder_images(root: Path) -> Path:
    for sub in ("images", "stimuli"):
        if (root / sub).is_dir():
            return root / sub
    return root


def _read_csv(path: Path) -> dict[str, list[_Row]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            return _csv_rows(path, csv.DictReader(f))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from e
    except csv.Error as e:  # a field over the csv module's limit (131,072 characters), a NUL byte...
        raise InputError(f"{path}: not a CSV of image,x,y[,subject] rows ({e})") from e


def _csv_rows(path: Path, reader: csv.DictReader) -> dict[str, list[_Row]]:
    rows: dict[str, list[_Row]] = {}
    header = [h.strip() for h in (reader.fieldnames or [])]
    if header[:3] != ["image", "x", "y"] or header[3:] not in ([], ["subject"]):
        raise InputError(f"{path}: header must be 'image,x,y' or 'image,x,y,subject', got {','.join(header)!r}")
    reader.fieldnames = header
    blank = given = 0  # first line with an empty / a filled subject cell
    for rec in reader:
        line = reader.line_num  # of the file (the row's last line): the reader skips blank lines, so rows != lines
        # Values past the header (a subject with no header, decimal commas) land under None, unread; empty ones
        # (a trailing comma) lose nothing.
        if any(v.strip() for v in rec.get(None, ())):
            raise InputError(f"{path}:{line}: {len(header) + len(rec[None])} values but the header names "
                             f"{len(header)} ({','.join(header)}); quote values that hold a comma, and name a "
                             f"subject column in the header")
        has_subject = "subject" in rec and rec["subject"] not in (None, "")
        blank, given = blank or (0 if has_subject else line), given or (line if has_subject else 0)
        if blank and given:
            # A blank read as viewer 0 would pool these rows with the real viewer 0 (human consistency, splits).
            raise InputError(f"{path}:{blank}: subject is empty but line {given} has one; give every row a "
                             f"subject or leave the column out")
        try:
            x, y = float(rec["x"]), float(rec["y"])
            s = int(rec["subject"]) if has_subject else 0
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}:{line}: x, y must be numbers and subject an integer ({e})") from e
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError(f"{path}:{line}: fixation ({x}, {y}) is not finite")
        image, where = str(rec["image"]).strip(), f"{path}:{line}"
        rows.setdefault(image, []).append((x, y, _subject(s, where), f"{where}: fixation of {image!r}"))
    return rows


def _subject(value: float, where: str) -> int:
    """A subject id, checked: rows are stored as float64, which holds whole numbers of up to 15 digits exactly."""
    if not (abs(value) < 10**15 and float(value).is_integer()):
        raise InputError(f"{where}: subject {value!r} is not a whole number of at most 15 digits; subjects are "
                         f"viewer ids such as 0, 1, 2")
    return int(value)


def _json_points(path: Path, name: str, points: object, subject: int | None) -> list[_Row]:
    if not isinstance(points, list):
        raise InputError(f"{path}: fixations of {name!r} must be a list of [x, y] or [x, y, subject]")
    out = []
    for k, p in enumerate(points):
        ok = isinstance(p, list) and len(p) in ((2, 3) if subject is None else (2,)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        if not ok:
            raise InputError(f"{path}: fixation {k} of {name!r} is {p!r}; expected [x, y]"
                             + (" or [x, y, subject]" if subject is None else "") + " with finite numbers")
        s = subject if subject is not None else (
            _subject(p[2], f"{path}: fixation {k} of {name!r}") if len(p) == 3 else 0)
        out.append((float(p[0]), float(p[1]), s, f"{path}: fixation {k} of {name!r}"))
    if subject is None and len({len(p) for p in points}) > 1:  # as in the CSV: no silent viewer 0 among real ones
        raise InputError(f"{path}: fixations of {name!r} mix [x, y] and [x, y, subject]; give every fixation a "
                         f"subject or none")
    return out


def _unique_keys(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose every key is new: json keeps the last of two, and an image's (or a subject's) first
    fixations were dropped without a word."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InputError(f"{path}: {key!r} is given twice; put all its fixations under one key")
        obj[key] = value
    return obj


def _read_json(path: Path) -> dict[str, list[_Row]]:
    try:
        # Integers read as floats, as coordinates and subject ids are stored: float() takes any number of digits,
        # where int() refuses over 4,300 and an int beyond 1e308 cannot become a float.
        data = json.loads(path.read_text(encoding="utf-8-sig"), parse_int=float,  # -sig: a BOM, as the CSV allows
                          object_pairs_hook=functools.partial(_unique_keys, path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    except RecursionError as e:
        raise InputError(f"{path}: JSON nested too deeply to read; expected {{\"image\": [[x, y], ...], ...}}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object mapping image names to fixations, got {type(data).__name__}")
    rows: dict[str, list[_Row]] = {}
    for name, value in data.items():
        if isinstance(value, dict):  # {"subject": [[x, y], ...]}: subjects numbered in order of appearance
            rows[name] = [pt for s, pts in enumerate(value.values()) for pt in _json_points(path, name, pts, s)]
        else:
            rows[name] = _json_points(path, name, value, None)
    return rows


def load_folder(root: str | Path, name: str | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """A folder dataset: images plus fixations.csv / fixations.json and/or maps/<stem>.png (see module doc)."""
    root = Path(checked_path(root, "dataset"))
    if not root.is_dir():
        raise InputError(f"dataset path {root} is not a folder")
    max_pixels = checked_max_pixels(max_pixels)
    image_dir = _folder_images(root)
    files = {p.name: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    csv_path, json_path, map_dir = root / "fixations.csv", root / "fixations.json", root / "maps"
    if csv_path.is_file() and json_path.is_file():
        raise InputError(f"{root}: both fixations.csv and fixations.json exist; keep one")
    rows = _read_csv(csv_path) if csv_path.is_file() else _read_json(json_path) if json_path.is_file() else None
    if rows is None and not map_dir.is_dir():
        raise InputError(f"{root}: no fixations.csv, fixations.json or maps/ folder; a dataset needs one of them")
    if rows is not None:
        missing = sorted(set(rows) - set(files))
        if missing:
            first = rows[missing[0]]  # a JSON entry may list no fixations
            where = first[0][3] if first else f"{csv_path if csv_path.is_file() else json_path}: {missing[0]!r}"
            more = f" (and {len(missing) - 1} other names: {missing[1:5]})" if len(missing) > 1 else ""
            raise InputError(f"{where} names an image not found in {image_dir}{more}")
        ids = sorted(rows)
    else:
        ids = sorted(files)
    if not ids:
        raise InputError(f"{root}: no images with fixations or density maps found")
    density_paths = None
    if map_dir.is_dir():
        density_paths = [map_dir / (Path(n).stem + ".png") for n in ids]
        absent = [p.name for p in density_paths if not p.is_file()]
        if absent:
            raise InputError(f"{map_dir}: missing density maps {absent[:5]}; every image needs <stem>.png")
    fixations = None
    if rows is not None:
        fixations = []
        for n in ids:
            a = np.asarray([r[:3] for r in rows[n]], np.float64).reshape(-1, 3)
            h, w = _header_shape(files[n], max_pixels)
            bad = ~((a[:, 0] >= 0) & (a[:, 0] < w) & (a[:, 1] >= 0) & (a[:, 1] < h))
            if bad.any():
                k = int(np.argmax(bad))
                raise InputError(f"{rows[n][k][3]} ({a[k, 0]:g}, {a[k, 1]:g}) is outside its {w}x{h} image; "
                                 f"coordinates are 0-based pixels with 0 <= x < width, 0 <= y < height")
            fixations.append(Fixations(a[:, 0].copy(), a[:, 1].copy(), a[:, 2].astype(np.int64)))
    return Dataset(name or root.name, ids, [files[n] for n in ids], fixations, density_paths,
                   _one_degree(OSIE_PIXELS_PER_DEGREE), max_pixels=max_pixels)


def load_dataset(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """Load OSIE, NUS Scene or a folder dataset, detected from the files under ``path``; images and density maps
    over ``max_pixels`` are refused."""
    root = Path(checked_path(path, "dataset"))
    if not root.is_dir():
        raise InputError(f"dataset path {root} is not a folder")
    if (root / "eye" / "fixations.mat").is_file():
        return load_osie(root, max_pixels=max_pixels)
    if (root / "tidy" / "fixations.mat").is_file():
        return load_scene(root, max_pixels=max_pixels)
    return load_folder(root, max_pixels=max_pixels)
