"""``foveal compare A B --elements A.json B.json -o DIR``: where attention moved between two creatives.

Writes ``compare.json`` (verdict, per-element Δshare/Δlift, both creatives' scores, definitions), ``compare.png``
(A and B overlays and the B − A difference map) and, unless ``--no-html``, a self-contained ``compare.html``.
Nothing is written unless everything succeeded.
"""
from __future__ import annotations

import argparse
import sys

from ..fileio import check_output, remove_stale, save_png, unicode_name, write_json, write_text, written_together
from ..imageio import decode
from ..scoring.compare import build_document, compare_figure, compare_scores, difference_map, render_html
from ..scoring.elements import load_elements
from ..scoring.report import GENERATOR_META
from ..scoring.scores import score_creative
from . import add_engine_options, check_out_folder, make_engine, path_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="A/B: where attention moved between two creatives",
                       usage="foveal compare A B --elements FILE [FILE] -o DIR [options]",
                       description="Compare creative B with A: difference map B - A, per-element change in share "
                                   "and lift, and a verdict on conversion elements vs distractors.")
    # Optional to argparse only so that run() can say why they are missing: --elements takes one or two files,
    # and given before A and B it takes them too.
    p.add_argument("image_a", type=path_arg, nargs="?", metavar="A", help="the reference creative")
    p.add_argument("image_b", type=path_arg, nargs="?", metavar="B", help="the variant")
    # extend: "--elements A.json --elements B.json" kept only B's file, and scored A with B's boxes.
    p.add_argument("--elements", type=path_arg, nargs="+", action="extend", required=True, metavar="FILE",
                   help="element files for A and B (one file: the same for both)")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--no-html", action="store_true", help="write compare.json and compare.png only")
    p.add_argument("--allow-format-mismatch", action="store_true",
                   help="compare creatives of different formats anyway (the verdict is marked indicative)")
    add_engine_options(p, for_decisions=True)
    p.set_defaults(handler=run, parser=p)


def run(args: argparse.Namespace) -> int:
    if args.image_b is None:
        took = " (it took the images too)" if len(args.elements) > 2 else ""
        args.parser.error(f"give the creatives A and B before --elements, which takes one or two files{took}")
    outputs = ("compare.png", "compare.json") if args.no_html else ("compare.png", "compare.html", "compare.json")
    check_out_folder(args.out, outputs)
    if len(args.elements) > 2:
        args.parser.error(f"--elements takes one or two files (A's and B's), got {len(args.elements)}")
    element_files = args.elements if len(args.elements) == 2 else args.elements * 2
    engine = make_engine(args)
    decoded = [decode(path, engine.max_pixels) for path in (args.image_a, args.image_b)]
    specs = [load_elements(f, d.pixels.shape[:2]) for f, d in zip(element_files, decoded)]
    map_a, map_b = engine.predict_batch(decoded, batch_size=args.batch_size)
    scores_a = score_creative(map_a, specs[0].elements, format=specs[0].format)
    scores_b = score_creative(map_b, specs[1].elements, format=specs[1].format)
    comparison = compare_scores(scores_a, scores_b, allow_format_mismatch=args.allow_format_mismatch)
    diff = difference_map(map_a.prob, map_b.prob)
    inputs = {key: {"image": unicode_name(path, "the image's file name"),
                    "elements": unicode_name(f, "the element file's name"), "image_sha256": d.sha256}
              for key, path, f, d in zip("ab", (args.image_a, args.image_b), element_files, decoded)}
    doc = build_document(comparison, scores_a, scores_b, diff, map_b.provenance, inputs)
    figure = compare_figure(decoded[0].pixels, map_a, scores_a, decoded[1].pixels, map_b, scores_b, diff)
    page = None if args.no_html else render_html(doc, figure)
    png_file, html_file, json_file = (args.out / name for name in ("compare.png", "compare.html", "compare.json"))
    for name in outputs:  # again, all first: one made meanwhile must not leave a new compare.png beside the old
        check_output(args.out / name)
    with written_together():  # a full disk at compare.json must not leave a new compare.png beside the old page
        save_png(png_file, figure)
        if page is not None:
            write_text(html_file, page)
        write_json(json_file, doc)
    if page is None:  # an earlier run's page would contradict this compare.json
        remove_stale(html_file, GENERATOR_META.encode())
    if not args.quiet:
        print(f"foveal: {comparison.summary}; {100 * doc['moved_mass']:.1f}% of attention moved. "
              f"Wrote {args.out}/compare.json", file=sys.stderr)
    return 0
