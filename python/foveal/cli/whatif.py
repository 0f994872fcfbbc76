"""``foveal whatif``: measure an edit's effect on attention before it ships.

Edits, applied in the order given::

    foveal whatif creative.png --elements creative.json --move cta:0,-60 --scale logo:0.8 --swap cta,headline -o out/

Search for the best position of one element::

    foveal whatif creative.png --elements creative.json --search cta [--grid 5x5 | --step 40] [--top 3] -o out/

Writes ``whatif.json`` (element shares and lifts before → after, the verdict, for a search the best positions and
every position tried), ``whatif.png`` (before, after and the difference map) and ``edited.png`` (the edited
creative; for a search, the best one).  Nothing is written unless everything succeeded.
"""
from __future__ import annotations

import argparse
import sys
import time

from ..fileio import check_output, save_png, unicode_name, write_json, written_together
from ..imageio import decode
from ..progress import progress
from ..scoring.compare import compare_figure, difference_map
from ..scoring.edits import parse_move, parse_scale, parse_swap
from ..scoring.elements import load_elements
from ..scoring.recommend import Thresholds
from ..scoring.whatif import MAX_OVERLAP, parse_grid, whatif_document, whatif_edits, whatif_search
from . import add_engine_options, check_out_folder, int_arg, library_arg, make_engine, number_arg, path_arg

#: The files a run writes into its -o folder.
OUTPUTS = ("whatif.png", "edited.png", "whatif.json")


class _EditAction(argparse.Action):
    """Collect --move/--scale/--swap into one list, keeping their command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("whatif", help="move/scale/swap elements and measure the change in attention",
                       description="Edit a creative's pixels (move, scale or swap elements; holes are filled from "
                                   "their surroundings), re-run the model and report each element's share before "
                                   "and after; or search the best position of one element.")
    p.add_argument("image", type=path_arg, metavar="IMAGE")
    p.add_argument("--elements", type=path_arg, required=True, metavar="FILE", help="element file (.json/.csv)")
    edits = p.add_argument_group("edits (applied in the order given)")
    edits.add_argument("--move", action=_EditAction, dest="edits", type=library_arg(parse_move, "move: "),
                       metavar="NAME:DX,DY",
                       help="move an element by whole pixels (dy < 0 is up), e.g. cta:0,-60")
    edits.add_argument("--scale", action=_EditAction, dest="edits", type=library_arg(parse_scale, "scale: "),
                       metavar="NAME:FACTOR",
                       help="resize an element about its centre, e.g. logo:0.8")
    edits.add_argument("--swap", action=_EditAction, dest="edits", type=library_arg(parse_swap, "swap: "),
                       metavar="NAME,NAME",
                       help="exchange two elements, each centred on the other's centre")
    search = p.add_argument_group("search")
    search.add_argument("--search", metavar="NAME", help="try many positions for this element")
    layout = search.add_mutually_exclusive_group()
    layout.add_argument("--grid", type=library_arg(parse_grid, "grid: "), metavar="COLSxROWS",
                        help="positions spread over the image (default: 5x5)")
    layout.add_argument("--step", type=int_arg(1), metavar="PX", help="positions every PX pixels from the current one")
    search.add_argument("--top", type=int_arg(1), metavar="N", help="best positions to report (default: 3)")
    search.add_argument("--max-overlap", type=number_arg(0, 1), metavar="F",
                        help="largest overlap with another element, as a fraction of the smaller box "
                             f"(default: {MAX_OVERLAP:g})")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR", help="output folder (created if needed)")
    add_engine_options(p, for_decisions=True)
    p.set_defaults(handler=run, parser=p, edits=None)


def run(args: argparse.Namespace) -> int:
    check_out_folder(args.out, OUTPUTS)  # before the search, not after
    if bool(args.edits) == (args.search is not None):
        args.parser.error("give edits (--move/--scale/--swap) or --search NAME, not both" if args.edits
                          else "nothing to do: give --move/--scale/--swap edits or --search NAME")
    if args.search is None and any(v is not None for v in (args.grid, args.step, args.top, args.max_overlap)):
        # else an option given with edits would be ignored without a word
        args.parser.error("--grid, --step, --top and --max-overlap go with --search")
    edits = args.edits or []
    # whatif.json is UTF-8: a name the OS cannot decode would go in as a lone surrogate.
    image_name = unicode_name(args.image, "the image's file name")
    elements_name = unicode_name(args.elements, "the element file's name")
    engine = make_engine(args)
    decoded = decode(args.image, engine.max_pixels)
    elements = load_elements(args.elements, decoded.pixels.shape[:2]).elements
    start = time.perf_counter()
    if edits:
        body, outcome, n_images = whatif_edits(engine, decoded.pixels, elements, edits, batch_size=args.batch_size)
    else:
        bar = (lambda items, total: progress(items, total, label="whatif search", enabled=not args.quiet))
        given = {k: v for k, v in (("top", args.top), ("max_overlap", args.max_overlap)) if v is not None}
        body, outcome, n_images = whatif_search(engine, decoded.pixels, elements, args.search, grid=args.grid,
                                                step=args.step, **given,
                                                batch_size=args.batch_size, progress=bar,
                                                thresholds=Thresholds.of_card(engine.graph))
    inputs = {"image": image_name, "image_sha256": decoded.sha256, "elements": elements_name}
    doc = whatif_document(body, outcome, inputs, seconds=time.perf_counter() - start, images_predicted=n_images,
                          batch_size=args.batch_size)
    diff = difference_map(outcome.map_before.prob, outcome.map_after.prob)
    figure = compare_figure(decoded.pixels, outcome.map_before, outcome.before, outcome.edited.image,
                            outcome.map_after, outcome.after, diff, labels=("before", "after"))
    preview_file, edited_file, json_file = (args.out / name for name in OUTPUTS)
    for target in (preview_file, edited_file, json_file):
        check_output(target)  # all first: an input named edited.png must not leave a new whatif.png beside the old
    with written_together():
        save_png(preview_file, figure)
        save_png(edited_file, outcome.edited.image)
        write_json(json_file, doc)
    if not args.quiet:
        line = body["statement"] if edits else body["search"]["best"][0]["statement"]
        print(f"foveal: {line}; {outcome.comparison.summary}. Wrote {args.out}/whatif.json "
              f"({n_images} images in {doc['timing']['seconds']:.1f} s)", file=sys.stderr)
        for note in body.get("notes", ()):  # an element the edits hid or erased qualifies the verdict just printed
            print(f"foveal: note: {note}", file=sys.stderr)
    return 0
