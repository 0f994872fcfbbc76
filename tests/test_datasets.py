"""foveal.datasets: folder datasets built in tmp_path, error handling, and the real OSIE / NUS Scene files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.datasets import (OSIE_PIXELS_PER_DEGREE, SPLITS, Fixations, gaussian_density, load_dataset,
                             load_folder)
from foveal.errors import FovealError, InputError
from foveal.metrics import pixel_indices

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "osie").is_dir() or not (DATA / "scene").is_dir(),
                                reason=f"eye-tracking data not found at {DATA} (../shared/data)")


def _images(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / name)


@pytest.fixture
def csv_dataset(tmp_path: Path) -> Path:
    _images(tmp_path, {"a.png": (20, 30), "b.png": (40, 10), "unused.png": (5, 5)})
    (tmp_path / "fixations.csv").write_text("image,x,y,subject\na.png,1.5,2.5,0\nb.png,9.9,39.9,1\n"
                                            "a.png,29.0,0.0,1\n")
    return tmp_path


def test_csv_folder(csv_dataset: Path) -> None:
    ds = load_dataset(csv_dataset)
    assert ds.name == csv_dataset.name and len(ds) == 2 and ds.ids == ["a.png", "b.png"]
    f = ds.fixations(0)
    np.testing.assert_array_equal(f.x, [1.5, 29.0])
    np.testing.assert_array_equal(f.y, [2.5, 0.0])
    np.testing.assert_array_equal(f.subject, [0, 1])
    assert ds.shape(1) == (40, 10)
    assert ds.image(1).shape == (40, 10, 3) and ds.image(1).dtype == np.uint8
    d = ds.density(0)
    assert d.shape == (20, 30) and d.dtype == np.float64
    assert d.sum() == pytest.approx(1.0)


def test_json_folder_with_and_without_subjects(tmp_path: Path) -> None:
    _images(tmp_path, {"a.jpg": (10, 10), "b.jpg": (10, 10), "c.jpg": (10, 10)})
    (tmp_path / "fixations.json").write_text(json.dumps(
        {"a.jpg": [[1, 2, 3], [3, 4, 7]], "b.jpg": {"anna": [[5, 5]], "ben": [[6, 6], [7, 7]]}, "c.jpg": [[1, 1]]}))
    ds = load_folder(tmp_path)
    np.testing.assert_array_equal(ds.fixations(0).subject, [3, 7])
    np.testing.assert_array_equal(ds.fixations(2).subject, [0])
    np.testing.assert_array_equal(ds.fixations(1).subject, [0, 1, 1])
    np.testing.assert_array_equal(ds.fixations(1).x, [5, 6, 7])


def test_density_map_folder(tmp_path: Path) -> None:
    _images(tmp_path, {"a.png": (8, 6)})
    (tmp_path / "maps").mkdir()
    m = np.zeros((8, 6), np.uint8)
    m[2, 3], m[5, 1] = 255, 85
    Image.fromarray(m).save(tmp_path / "maps" / "a.png")
    ds = load_dataset(tmp_path)
    d = ds.density(0)
    assert d[2, 3] == pytest.approx(0.75) and d[5, 1] == pytest.approx(0.25) and d.sum() == pytest.approx(1)
    assert not ds.has_fixations
    with pytest.raises(InputError, match="density maps only"):
        ds.fixations(0)


@pytest.mark.parametrize("content, match", [
    ("img,x,y\na.png,1,1\n", "header"),
    ("image,x,y\na.png,one,1\n", r"fixations.csv:2"),
    ("image,x,y\na.png,nan,1\n", "not finite"),
    ("image,x,y\nmissing.png,1,1\n", "not found"),
    ("image,x,y\na.png,30,1\n", "outside"),
    ("image,x,y\na.png,-0.5,1\n", "outside"),
    # the file and line of the fixation, not just the dataset folder
    ("image,x,y\na.png,1,1\n\na.png,30,1\n", r"fixations.csv:4: fixation of 'a.png' \(30, 1\) is outside its 30x20"),
    ("image,x,y\na.png,1,1\nmissing.png,1,1\n", r"fixations.csv:3: fixation of 'missing.png' names an image not found"),
    pytest.param("image,x,y\na.png," + "1" * 131_073 + ",2\n", "not a CSV.*field limit", id="field-over-limit"),
    ("image,x,y,subject\na.png,1,2,99999999999999999999999\n", "subject 99999999999999999999999 is not a whole"),
    ("image,x,y,subject\na.png,1,2,3\na.png,1,2,\n", r"fixations.csv:3: subject is empty but line 2 has one"),
    ("image,x,y,subject\na.png,1,2\na.png,1,2,3\n", r"fixations.csv:2: subject is empty but line 3 has one"),
    # a value past the header's columns (a subject with no header, "1,5" decimal commas) was silently dropped
    ("image,x,y\na.png,1,2,7\n", r"fixations.csv:2: 4 values but the header names 3"),
    ("image,x,y\na.png,1,5,2,5\n", r"fixations.csv:2: 5 values but the header names 3"),
    ("image,x,y\na.png,1,2,\na.png,1,2,7\n", r"fixations.csv:3: 4 values but the header names 3"),
    # csv skips blank lines; the message still names the line of the file, not the count of rows
    ("image,x,y\n\n\na.png,one,1\n", r"fixations.csv:4: x, y must be numbers"),
    ("image,x,y,subject\na.png,1,2,3\n\na.png,1,2,\n", r"fixations.csv:4: subject is empty but line 2 has one"),
])
def test_bad_csv(tmp_path: Path, content: str, match: str) -> None:
    _images(tmp_path, {"a.png": (20, 30)})
    (tmp_path / "fixations.csv").write_text(content)
    with pytest.raises(InputError, match=match):
        load_dataset(tmp_path)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected an object"),
    ('{"a.png": [[1]]}', "fixation 0"),
    ('{"a.png": [[1, true]]}', "fixation 0"),
    ('{"a.png": 3}', "must be a list"),
    ('{"a.png": {"s": [[1, 2, 3]]}}', "fixation 0"),
    ('{"a.png": [[1, 2, 3], [1, 2]]}', r"mix \[x, y\] and \[x, y, subject\]"),
    pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="deep-nesting"),
    pytest.param('{"a.png": [[' + "1" * 401 + ", 2]]}", "finite numbers", id="int-beyond-float"),
    pytest.param('{"a.png": [[' + "1" * 5000 + ", 2]]}", "finite numbers", id="int-over-4300-digits"),
    ('{"a.png": [[1, 2, 1.7]]}', "subject 1.7 is not a whole number"),
    ('{"a.png": [[1, 2, 1e300]]}', r"subject 1e\+300 is not a whole number"),
    ('{"a.png": [[1, 2], [1, 20]]}', r"fixations.json: fixation 1 of 'a.png' \(1, 20\) is outside its 30x20 image"),
    ('{"a.png": [[1, 2]], "b.png": [[1, 2]]}', r"fixations.json: fixation 0 of 'b.png' names an image not found in"),
    ('{"a.png": [[1, 2]], "b.png": []}', r"fixations.json: 'b.png' names an image not found in"),
])
def test_bad_json(tmp_path: Path, content: str, match: str) -> None:
    _images(tmp_path, {"a.png": (20, 30)})
    (tmp_path / "fixations.json").write_text(content)
    with pytest.raises(InputError, match=match):
        load_dataset(tmp_path)


def test_csv_not_utf8(tmp_path: Path) -> None:
    _images(tmp_path, {"a.png": (20, 30)})
    (tmp_path / "fixations.csv").write_bytes(b"image,x,y\na\xe9.png,1,2\n")
    with pytest.raises(InputError, match="fixations.csv: not UTF-8"):
        load_dataset(tmp_path)


def test_fixation_files_may_start_with_a_utf8_bom(tmp_path: Path) -> None:
    """Notepad and Excel save UTF-8 with a BOM; the CSV reader skipped it, the JSON reader refused the file."""
    _images(tmp_path / "csv", {"a.png": (20, 30)})
    _images(tmp_path / "json", {"a.png": (20, 30)})
    (tmp_path / "csv" / "fixations.csv").write_bytes(b"\xef\xbb\xbfimage,x,y\na.png,1,2\n")
    (tmp_path / "json" / "fixations.json").write_bytes(b'\xef\xbb\xbf{"a.png": [[1, 2]]}')
    for kind in ("csv", "json"):
        np.testing.assert_array_equal(load_dataset(tmp_path / kind).fixations(0).x, [1.0])


def test_an_all_blank_subject_column_means_no_subjects(tmp_path: Path) -> None:
    _images(tmp_path, {"a.png": (20, 30)})
    (tmp_path / "fixations.csv").write_text("image,x,y,subject\na.png,1,2,\na.png,3,4,\n")
    np.testing.assert_array_equal(load_dataset(tmp_path).fixations(0).subject, [0, 0])


def test_subject_ids_are_whole_numbers_kept_exactly(tmp_path: Path) -> None:
    _images(tmp_path, {"a.png": (20, 30)})
    (tmp_path / "fixations.json").write_text('{"a.png": [[1, 2, 999999999999999], [3, 4, 2.0], [5, 6, -1]]}')
    np.testing.assert_array_equal(load_dataset(tmp_path).fixations(0).subject, [999999999999999, 2, -1])


def _mat_dataset(root: Path, layout: str, files: dict[str, object]) -> Path:
    """An OSIE (``eye/``) or NUS Scene (``tidy/``) folder with one stimulus and the given .mat files (bytes are
    written as they are, dicts through scipy.io.savemat)."""
    scipy_io = pytest.importorskip("scipy.io")
    (root / "stimuli").mkdir(parents=True)
    (root / layout).mkdir()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(root / "stimuli" / "1.jpg")
    for name, content in files.items():
        if isinstance(content, bytes):
            (root / layout / name).write_bytes(content)
        else:
            scipy_io.savemat(str(root / layout / name), content)
    return root


def _struct(**fields: object) -> np.ndarray:
    """A 1x1 MATLAB struct with these fields."""
    s = np.zeros((1, 1), [(k, "O") for k in fields])
    for k, v in fields.items():
        s[0, 0][k] = v
    return s


_SIZES = {"imgInfo": _struct(sizes=np.array([[60, 80]]))}


@pytest.mark.parametrize("layout, files, match", [
    ("eye", {"fixations.mat": b"x\n"}, r"cannot read MATLAB file .*eye/fixations.mat: MatReadError"),
    ("tidy", {"fixations.mat": b"x\n"}, r"cannot read MATLAB file .*tidy/fixations.mat: MatReadError"),
    ("eye", {"fixations.mat": {"fixations": np.zeros((2, 2))}}, r"eye/fixations.mat: 'fixations' is not OSIE's"),
    ("eye", {"fixations.mat": {"fixations": _struct(img="1.jpg")}}, "is not OSIE's.*no field of name subjects"),
    ("tidy", {"fixations.mat": {"fixations": np.zeros((1, 2))}, "imgInfo.mat": _SIZES},
     r"tidy/fixations.mat: 'fixations' is not NUS Scene's"),
    ("tidy", {"fixations.mat": {"fixations": np.zeros((1, 1))}, "imgInfo.mat": {"imgInfo": np.zeros((1, 1))}},
     r"tidy/imgInfo.mat: 'imgInfo' does not hold the images' sizes"),
], ids=["osie-garbage", "scene-garbage", "osie-numbers", "osie-no-subjects", "scene-numbers", "scene-no-sizes"])
def test_bad_mat_files(tmp_path: Path, layout: str, files: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_dataset(_mat_dataset(tmp_path, layout, files))


def test_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        load_dataset(tmp_path / "nope")
    _images(tmp_path, {"a.png": (4, 4)})
    with pytest.raises(InputError, match="no fixations.csv"):
        load_dataset(tmp_path)
    (tmp_path / "maps").mkdir()
    with pytest.raises(InputError, match="missing density maps"):
        load_dataset(tmp_path)
    Image.fromarray(np.ones((5, 4), np.uint8)).save(tmp_path / "maps" / "a.png")
    with pytest.raises(InputError, match="size"):
        load_dataset(tmp_path).density(0)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "maps" / "a.png")
    with pytest.raises(InputError, match="all zero"):
        load_dataset(tmp_path).density(0)
    (tmp_path / "images" / "a.png").write_bytes(b"not an image")
    with pytest.raises(FovealError):
        load_dataset(tmp_path).shape(0)


def test_gaussian_density_centre_and_width() -> None:
    d = gaussian_density(Fixations.from_arrays([50.0], [30.0]), (60, 100), sigma=5.0)
    ys, xs = np.mgrid[:60, :100] + 0.5
    assert (d * xs).sum() == pytest.approx(50.0, abs=1e-6)
    assert (d * ys).sum() == pytest.approx(30.0, abs=1e-6)
    assert np.sqrt((d * (xs - 50) ** 2).sum()) == pytest.approx(5.0, rel=1e-3)
    empty = gaussian_density(Fixations.from_arrays([], []), (3, 4), 1.0)
    np.testing.assert_allclose(empty, 1 / 12)


def test_cropped_fixations_are_those_inside_the_box_in_its_coordinates() -> None:
    f = Fixations.from_arrays([1.0, 5.0, 9.99, 10.0, 4.0], [2.0, 3.0, 4.0, 4.0, 7.0], [0, 1, 2, 3, 4])
    c = f.cropped(2.0, 1.0, 5.0, 9.0)  # rows [2, 7), columns [1, 10)
    np.testing.assert_array_equal(c.x, [0.0, 4.0, 8.99])
    np.testing.assert_array_equal(c.y, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(c.subject, [0, 1, 2])


def test_flipped_fixations_follow_the_mirror_image() -> None:
    f = Fixations.from_arrays([0.25, 9.0], [1.0, 2.0], [3, 4]).flipped(10)
    np.testing.assert_array_equal(f.x, [9.75, 1.0])
    np.testing.assert_array_equal(f.subject, [3, 4])


def test_split_is_a_deterministic_partition(csv_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("many")
    _images(root, {f"{k:02d}.png": (4, 4) for k in range(20)})
    (root / "fixations.csv").write_text("image,x,y\n" + "".join(f"{k:02d}.png,1,1\n" for k in range(20)))
    ds = load_dataset(root)
    parts = {s: ds.split(s) for s in SPLITS}
    assert [len(parts[s]) for s in SPLITS] == [16, 2, 2]
    ids = [i for s in SPLITS for i in parts[s].ids]
    assert sorted(ids) == ds.ids
    order = np.random.default_rng(0).permutation(20)
    assert parts["test"].ids == sorted(ds.ids[k] for k in order[18:])
    assert parts["val"].name == f"{root.name}-val"
    with pytest.raises(InputError, match="split"):
        ds.split("training")
    with pytest.raises(InputError, match="image index 20 out of range"):  # a FovealError, as every bad input
        ds.fixations(20)
    for bad in (None, "0", 1.0):  # were TypeErrors (and 1.9 in subset() was image 1)
        with pytest.raises(InputError, match="image index must be an integer"):
            ds.image(bad)
        with pytest.raises(InputError, match="image index must be an integer"):
            ds.subset([0, bad], "x")
    with pytest.raises(InputError, match="indices must be a list"):  # "12" was images 1 and 2
        ds.subset("12", "x")


def test_osie_matlab_coordinates_land_in_matlabs_pixel(tmp_path: Path) -> None:
    # OSIE's fix_x/fix_y are MATLAB's 1-based pixel coordinates: pixel k is centred on k, so MATLAB's pixel is
    # round(c) and the 0-based pixel round(c) - 1.  foveal's (floor(y), floor(x)) must agree, and the Gaussian of
    # a fixation on a pixel centre must peak on that pixel.
    c = np.array([[1.0, 1.6, 2.4, 400.0, 799.6, 800.4]])
    subjects = np.empty((1, 1), object)
    subjects[0, 0] = _struct(fix_x=c, fix_y=c * 0.75, fix_duration=np.ones_like(c))
    root = _mat_dataset(tmp_path, "eye", {"fixations.mat": {"fixations": _struct(img="1.jpg", subjects=subjects)}})
    f = load_dataset(root).fixations(0)
    row, col = pixel_indices(f.x, f.y, (600, 800))
    np.testing.assert_array_equal(col, np.round(c[0]) - 1)
    np.testing.assert_array_equal(row, np.round(c[0] * 0.75) - 1)
    d = gaussian_density(Fixations.from_arrays(f.x[3:4], f.y[3:4]), (600, 800), 24.0)
    assert np.unravel_index(d.argmax(), d.shape) == (row[3], col[3]) == (299, 399)
    assert d[299, 398] == pytest.approx(d[299, 400])  # centred on the pixel, not on its left edge


@pytest.mark.data
@needs_data
def test_osie() -> None:
    ds = load_dataset(DATA / "osie")
    assert ds.name == "osie" and len(ds) == 700
    assert sum(len(ds.fixations(i)) for i in range(len(ds))) == 98_321
    assert ds.shape(0) == (600, 800) == ds.image(0).shape[:2]
    for i in range(len(ds)):
        f = ds.fixations(i)
        assert ((f.x >= 0) & (f.x < 800) & (f.y >= 0) & (f.y < 600)).all()
        assert set(np.unique(f.subject)) <= set(range(15))
    assert ds.sigma(0) == OSIE_PIXELS_PER_DEGREE
    assert ds.density(3).sum() == pytest.approx(1.0)


@pytest.mark.data
@needs_data
def test_scene() -> None:
    ds = load_dataset(DATA / "scene")
    assert ds.name == "scene" and len(ds) == 500
    total = 0
    for i in range(len(ds)):
        h, w = ds.shape(i)
        f = ds.fixations(i)
        total += len(f)
        assert ((f.x >= 0) & (f.x < w) & (f.y >= 0) & (f.y < h)).all(), ds.ids[i]
    assert total == 43_894
    # Sizes from imgInfo.mat agree with the files (checked on a sample to keep the test fast).
    for i in range(0, 500, 50):
        assert ds.shape(i) == ds.image(i).shape[:2]


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name, sizes", [("osie", (560, 70, 70)), ("scene", (400, 50, 50))])
def test_real_splits(name: str, sizes: tuple[int, int, int]) -> None:
    ds = load_dataset(DATA / name)
    parts = [ds.split(s) for s in SPLITS]
    assert tuple(len(p) for p in parts) == sizes
    ids = [set(p.ids) for p in parts]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert parts[2].ids == load_dataset(DATA / name).split("test").ids


def _osie_fixations_at(x: float, y: float) -> dict[str, object]:
    subject = _struct(fix_x=np.array([[10.0, x]]), fix_y=np.array([[10.0, y]]))
    return {"fixations.mat": {"fixations": _struct(img="1.jpg", subjects=subject)}}


@pytest.mark.parametrize("x, y", [(-20.0, 10.0), (10.0, 700.0), (np.nan, 10.0)])
def test_osie_fixations_off_the_image_are_named_with_their_file(tmp_path: Path, x: float, y: float) -> None:
    # They reached the metrics, whose error blamed the model's map (and CC, KLD and SIM used them unchecked).
    with pytest.raises(InputError, match=r"eye/fixations.mat: image '1.jpg': fixation 1 at .* lies outside its 800x600 "
                                         r"image; correct or remove it"):
        load_dataset(_mat_dataset(tmp_path, "eye", _osie_fixations_at(x, y)))


def test_osie_fixations_on_the_border_are_kept(tmp_path: Path) -> None:
    dataset = load_dataset(_mat_dataset(tmp_path, "eye", _osie_fixations_at(800.4, 600.4)))
    assert dataset.fixations(0).x.tolist() == [9.5, 799.9]


def test_scene_fixations_off_the_image_are_named_with_their_file(tmp_path: Path) -> None:
    cells = np.empty((1, 1), object)
    cells[0, 0] = np.array([[5.0, 5.0, 0, 100], [5.0, 95.0, 0, 100]])  # (row, col): col 95 of an 80-wide image
    root = _mat_dataset(tmp_path, "tidy", {"fixations.mat": {"fixations": cells}, "imgInfo.mat": _SIZES})
    with pytest.raises(InputError, match=r"tidy/fixations.mat: image '1.jpg': fixation 1 at \(95, 5\) lies outside "
                                         r"its 80x60 image"):
        load_dataset(root)


@pytest.mark.parametrize("text", ['{"a.png": [[1, 2], [3, 4]], "a.png": [[5, 6]]}',
                                  '{"a.png": {"s1": [[1, 2]], "s1": [[5, 6]]}}'])
def test_a_key_given_twice_in_fixations_json_is_refused(tmp_path: Path, text: str) -> None:
    # json keeps the last of two keys: the image's (or subject's) first fixations were dropped without a word.
    _images(tmp_path, {"a.png": (20, 30)})
    (tmp_path / "fixations.json").write_text(text)
    with pytest.raises(InputError, match=r"fixations.json: '(a.png|s1)' is given twice; put all its fixations under "
                                         r"one key"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("suffix", [".gif", ".jfif", ".JPE"])
def test_every_image_format_a_folder_run_reads_is_a_dataset_image(tmp_path: Path, suffix: str) -> None:
    """A dataset image in .gif was "not found in images/" though it was there and predict read it."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "images" / f"a{suffix}", format="GIF" if suffix == ".gif" else "JPEG")
    (tmp_path / "fixations.csv").write_text(f"image,x,y\na{suffix},3,4\n")
    assert load_dataset(tmp_path).image(0).shape == (20, 30, 3)


@pytest.mark.parametrize("kwargs, says", [
    (dict(x="ab", y=[3, 4]), "x must be numbers"),
    (dict(x=[1, 2], y=[3, 4], subject=["a", "b"]), "subject must be whole numbers"),
    (dict(x=[1, 2], y=[3, 4], subject=[0.5, 1.5]), "subject must be whole numbers"),  # was truncated to 0, 1
    (dict(x=[1, 2], y=[3, 4], subject=[10**30, 1]), "subject must be whole numbers"),  # was an OverflowError
])
def test_fixations_are_numbers_and_viewer_ids_whole(kwargs, says) -> None:
    with pytest.raises(InputError, match=says):
        Fixations.from_arrays(**kwargs)


def test_fixations_built_from_lists() -> None:
    # An AttributeError ('list' object has no attribute 'shape'); whole floats are fine as viewer ids.
    fix = Fixations([1, 2], [3, 4], [0.0, 1.0])
    assert fix.x.dtype == np.float64 and fix.subject.tolist() == [0, 1] and fix.subject.dtype == np.int64
    assert fix != Fixations.from_arrays([1, 2], [3, 4])  # compared by identity: == on arrays raised ValueError
