"""``foveal predict IMAGE|FOLDER... -o DIR``: saliency map PNG and overlay PNG per image (float32 .npy on request)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import DiskFullError, FovealError, InputError
from ..fileio import check_output, note_input, written_together
from ..imageio import DecodedImage, decode
from ..progress import note, progress
from ..saliency_map import SaliencyMap, is_map_png
from . import add_engine_options, check_out_folder, error_line, make_engine, path_arg
from ..batch import list_images

# What one image writes into the output folder, by suffix after its stem.
_PNG, _OVERLAY, _NPY = ".png", ".overlay.png", ".npy"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict saliency maps for images",
                       description="Write <name>.png (greyscale map) and <name>.overlay.png per image, and "
                                   "<name>.npy (float32 probabilities) with --npy. A FOLDER stands for the images "
                                   "directly inside it. Outputs never replace an input.")
    p.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE|FOLDER")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default: %(default)s)")
    p.add_argument("--npy", action="store_true", help="also write the float32 probability map as <name>.npy")
    add_engine_options(p)
    p.set_defaults(handler=run)


def expand(paths: Sequence[Path]) -> list[Path]:
    """Images named on the command line, folders replaced by the images inside them, in order."""
    images: list[Path] = []
    for path in paths:
        images.extend(list_images(path) if path.is_dir() else [path])
    return images


def _check_outputs(images: Sequence[Path], suffixes: Sequence[str]) -> None:
    """No two images may write the same file: a.png and a.jpg both make a.png; a.png's overlay is a.overlay.png's
    map."""
    seen: dict[str, Path] = {}
    real: dict[str, Path] = {}
    for image in images:
        first = real.get(os.path.realpath(image))
        if first is not None and os.path.abspath(first) == os.path.abspath(image):  # renaming one is no way out
            raise InputError(f"{image} is listed twice (a folder and a file in it count too); list each image once")
        if first is not None:  # a link beside the file it names: naming only one of them leaves the user guessing
            raise InputError(f"{first} and {image} are the same file (one links to the other); predict one of them: "
                             "list it alone, or remove the link from its folder")
        real[os.path.realpath(image)] = image
        for suffix in suffixes:
            name = f"{image.stem}{suffix}"
            if name in seen:
                raise InputError(f"{seen[name]} and {image} would both write {name}; rename one or predict them "
                                 "into different folders")
            seen[name] = image


def _check_not_an_image(target: Path) -> None:
    """A map's name is an image's name too: photo.jpg predicted into its own folder would replace photo.png, an
    image of the user's that this run does not read. An earlier run's map (it carries its scale) is replaced."""
    if os.path.lexists(target) and not is_map_png(target):
        raise InputError(f"{target} exists and is not a map foveal wrote (an image of yours?); writing this map "
                         "would replace it: choose another -o, or move it")


def run(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    images = expand(args.images)
    suffixes = (_PNG, _OVERLAY, _NPY) if args.npy else (_PNG, _OVERLAY)
    _check_outputs(images, suffixes)
    for image in images:
        note_input(image)
    for image in images:  # before any work: an output must never replace an input, nor fail after hours of it
        for suffix in suffixes:
            check_output(args.out / f"{image.stem}{suffix}")
        _check_not_an_image(args.out / f"{image.stem}{_PNG}")
    engine = make_engine(args)
    failures = 0
    results = _predicted(engine, images, args.batch_size)
    for path, decoded, result in progress(results, total=len(images), label="predict",
                                          enabled=not args.quiet and len(images) > 1):
        if isinstance(result, FovealError):
            failures += 1
            note(error_line(result, args))
            continue
        try:  # a file that became unwritable meanwhile costs its image, not the images after it
            with written_together():  # an image's map and overlay are of one run
                result.to_png(args.out / f"{path.stem}{_PNG}", bits=args.bits)
                result.overlay(decoded.pixels, args.out / f"{path.stem}{_OVERLAY}")
                if args.npy:
                    result.to_npy(args.out / f"{path.stem}{_NPY}")
        except DiskFullError:
            raise  # every later image would fail the same way
        except FovealError as exc:
            failures += 1
            note(error_line(exc, args))
    if not args.quiet and (len(images) > 1 or not failures):  # one image's failure is its error line alone
        written = f"{len(images) - failures} of {len(images)}" if failures else f"{len(images)}"
        print(f"foveal: {written} map(s) written{f' to {args.out}' if failures < len(images) else ''} "
              f"({engine.model.name} {engine.precision} on {engine.backend})", file=sys.stderr)
    return 1 if failures else 0


def _predicted(engine, images: list[Path], batch_size: int,
               ) -> Iterator[tuple[Path, DecodedImage | None, SaliencyMap | FovealError]]:
    """One ``(path, decoded image, map or the error that stopped it)`` per image, in order, batch by batch: on the
    CPU as many images at once as the engine runs side by side (16 at a time held sixteen decoded images and maps,
    1.7 GB for 6-MP photos, and were slower than one by one), on a GPU ``batch_size``."""
    step = engine.lanes or batch_size
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        decoded: dict[Path, DecodedImage | FovealError] = {}
        for path in chunk:
            try:
                decoded[path] = decode(path, engine.max_pixels)
            except FovealError as exc:
                decoded[path] = exc
        ready = [path for path in chunk if isinstance(decoded[path], DecodedImage)]
        maps = dict(zip(ready, engine.predict_batch([decoded[p] for p in ready], batch_size, errors="return")))
        for path in chunk:
            image = decoded[path]
            if isinstance(image, FovealError):  # its message names the file (decode's own)
                yield path, None, image
            elif isinstance(maps[path], FovealError):  # the model's failure on it (NaN out) does not
                yield path, image, FovealError(f"{path}: {maps[path]}")
            else:
                yield path, image, maps[path]
