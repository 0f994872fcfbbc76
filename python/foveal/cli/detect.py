"""``foveal detect IMAGE|FOLDER... -o DIR``: propose element boxes (face, headline, body text, CTA, logo, product).

Writes ``DIR/<name>.json`` per image: the standard element file ``foveal score --elements`` reads, each element
with its ``confidence`` and ``source: "auto"``, for a person to accept or edit.  Needs ``pip install
'foveal[detect]'``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ElementSpecError, FovealError, InputError, one_line
from ..fileio import path_is, write_json
from ..imageio import checked_max_pixels, decode
from ..progress import note, progress
from . import MAX_PIXELS, check_out_folder, error_line, path_arg
from .predict import expand


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="propose element boxes (faces, text, CTA, logo, product) for creatives",
                       description="Write <name>.json per image: detected elements with confidence and "
                                   "source \"auto\", ready for `foveal score --elements`.")
    p.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE|FOLDER",
                   help="images, or folders standing for the images directly inside them")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR", help="output folder (created if needed)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace element files already in DIR")
    existing.add_argument("--skip-existing", action="store_true",
                          help="leave images whose element file is already in DIR (to finish an interrupted run "
                               "without replacing files edited since)")
    p.add_argument("--max-pixels", type=MAX_PIXELS, default=100e6, help="refuse larger images (default: 100e6)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    max_pixels = checked_max_pixels(args.max_pixels)  # once, before the folder is made: not once per image
    from ..detect import default_detector, element_file

    images = expand(args.images)
    seen: dict[str, Path] = {}
    for image in images:
        first = seen.setdefault(image.stem, image)
        if first is not image and os.path.abspath(first) == os.path.abspath(image):
            raise InputError(f"{image} is listed twice (a folder and a file in it count too); list each image once")
        if first is not image:
            raise InputError(f"{first} and {image} would both write {image.stem}.json; rename one or detect them "
                             "into different folders")
    targets = [args.out / f"{image.stem}.json" for image in images]
    skipped = 0
    if args.skip_existing:
        kept = [(i, t) for i, t in zip(images, targets) if not os.path.lexists(t)]
        skipped = len(targets) - len(kept)
        images, targets = [i for i, _ in kept], [t for _, t in kept]
    elif not args.overwrite:
        existing = [t for t in targets if os.path.lexists(t)]  # a link to nothing is in the way too
        if existing:
            raise InputError(f"{existing[0]} exists (maybe edited by hand); pass --skip-existing to keep it and "
                             "detect the rest, --overwrite to replace it, or another -o DIR")
    detector = default_detector()  # fails here, once, without the detect extra
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the way, no permission: said once, not once per image
        raise InputError(f"-o {args.out}: cannot create this folder ({exc.strerror or exc}); choose a writable "
                         "location") from None
    failures = 0
    bar = progress(list(zip(images, targets)), total=len(targets), label="detect",
                   enabled=not args.quiet and len(targets) > 1)
    for image, target in bar:
        try:  # writing too: a file that cannot be written (a folder, an input) loses no other image's
            decoded = decode(image, max_pixels)
            found = detector.detect(decoded, max_pixels)
            if not found:  # an empty element file is one foveal score refuses
                raise ElementSpecError(f"{image}: automatic detection found no elements (no text, button, face or "
                                       "product); no file written: write its element file by hand")
            if path_is(target, Path.is_dir):  # --overwrite cannot replace it, and the name is not the user's to give
                raise InputError(f"{target} is a folder where this image's element file goes; move it or choose "
                                 "another -o")
            write_json(target, element_file(found, decoded.pixels.shape[:2]), replace=args.overwrite)
        except FileExistsError:
            failures += 1
            note(f"foveal: error: {target} appeared while detecting (maybe written by hand); kept it: pass "
                 "--overwrite to replace it")
        except FovealError as exc:
            failures += 1
            note(error_line(exc, args))
        except Exception as exc:  # noqa: BLE001 - a bug met on one image loses that image, not the rest
            if os.environ.get("FOVEAL_DEBUG"):
                raise
            failures += 1
            note(f"foveal: internal error on {image}: {type(exc).__name__}: {one_line(str(exc))} (set "
                 "FOVEAL_DEBUG=1 for details)")
    if not args.quiet and (len(targets) > 1 or not failures):  # one image's failure is its error line alone
        left = f"; {skipped} skipped, their element files already there" if skipped else ""
        print(f"foveal: element files for {len(targets) - failures} of {len(targets)} image(s) written to "
              f"{args.out}{left}", file=sys.stderr)
    return 1 if failures else 0
