"""``foveal detect IMAGE... -o DIR``: propose element boxes (face, headline, body text, CTA, logo, product).

Writes ``DIR/<name>.json`` per image: the standard element file ``foveal score --elements`` reads, each element
with its ``confidence`` and ``source: "auto"``, for a person to accept or edit.  Needs ``pip install
'foveal[detect]'``.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import ElementSpecError, FovealError, InputError
from ..fileio import write_json
from ..imageio import checked_max_pixels, decode
from ..progress import note, progress
from . import MAX_PIXELS, check_out_folder, error_line, path_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="propose element boxes (faces, text, CTA, logo, product) for creatives",
                       description="Write <name>.json per image: detected elements with confidence and "
                                   "source \"auto\", ready for `foveal score --elements`.")
    p.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--overwrite", action="store_true", help="replace element files already in DIR")
    p.add_argument("--max-pixels", type=MAX_PIXELS, default=100e6, help="refuse larger images (default: 100e6)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    max_pixels = checked_max_pixels(args.max_pixels)  # once, before the folder is made: not once per image
    from ..detect import default_detector, element_file

    stems = [image.stem for image in args.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InputError(f"several inputs share the name {clashes[0]!r}; their element files would collide")
    targets = [args.out / f"{stem}.json" for stem in stems]
    if not args.overwrite:
        existing = [t for t in targets if os.path.lexists(t)]  # a link to nothing is in the way too
        if existing:
            raise InputError(f"{existing[0]} exists (maybe edited by hand); pass --overwrite or another -o DIR")
    detector = default_detector()  # fails here, once, without the detect extra
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the way, no permission: said once, not once per image
        raise InputError(f"-o {args.out}: cannot create this folder ({exc.strerror or exc}); choose a writable "
                         "location") from None
    failures = 0
    bar = progress(list(zip(args.images, targets)), total=len(targets), label="detect",
                   enabled=not args.quiet and len(targets) > 1)
    for image, target in bar:
        try:  # writing too: a file that cannot be written (a folder, an input) loses no other image's
            decoded = decode(image, max_pixels)
            found = detector.detect(decoded, max_pixels)
            if not found:  # an empty element file is one foveal score refuses
                raise ElementSpecError(f"{image}: automatic detection found no elements (no text, button, face or "
                                       "product); no file written: write its element file by hand")
            write_json(target, element_file(found, decoded.pixels.shape[:2]), replace=args.overwrite)
        except FileExistsError:
            failures += 1
            note(f"foveal: error: {target} appeared while detecting (maybe written by hand); kept it: pass "
                 "--overwrite to replace it")
        except FovealError as exc:
            failures += 1
            note(error_line(exc, args))
    if not args.quiet and (len(targets) > 1 or not failures):  # one image's failure is its error line alone
        print(f"foveal: element files for {len(targets) - failures} of {len(targets)} image(s) written to "
              f"{args.out}", file=sys.stderr)
    return 1 if failures else 0
