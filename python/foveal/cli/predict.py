"""``foveal predict IMAGE... -o DIR``: saliency map PNG, overlay PNG and float32 .npy per image."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import FovealError, InputError
from ..imageio import decode
from ..progress import progress
from . import add_engine_options, make_engine


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict saliency maps for images",
                       description="Write <name>.png (greyscale map), <name>.overlay.png and <name>.npy per image.")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default: %(default)s)")
    add_engine_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stems = [image.stem for image in args.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InputError(f"several inputs share the name {clashes[0]!r}; their outputs would overwrite each other")
    engine = make_engine(args)
    failures = 0
    chunks = [args.images[i:i + args.batch_size] for i in range(0, len(args.images), args.batch_size)]
    bar = progress(chunks, total=len(chunks), label="predict", enabled=not args.quiet and len(args.images) > 1)
    for chunk in bar:
        decoded = []
        for path in chunk:
            try:
                decoded.append(decode(path, engine.max_pixels))
            except FovealError as exc:
                failures += 1
                print(f"foveal: error: {exc}", file=sys.stderr)
        for path, image, smap in zip([Path(d.source) for d in decoded], decoded, engine.predict_batch(decoded)):
            smap.to_png(args.out / f"{path.stem}.png", bits=args.bits)
            smap.overlay(image.pixels, args.out / f"{path.stem}.overlay.png")
            smap.to_npy(args.out / f"{path.stem}.npy")
    if not args.quiet:
        written = f"{len(args.images) - failures} of {len(args.images)}" if failures else f"{len(args.images)}"
        print(f"foveal: {written} map(s) written to {args.out} "
              f"({engine.model.name} {engine.precision} on {engine.backend})")
    return 1 if failures else 0
