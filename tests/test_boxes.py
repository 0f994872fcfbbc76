"""One box rule everywhere (foveal.boxes): the Python API and element files give the same pixels and refusals."""
from __future__ import annotations

import numpy as np
import pytest

from foveal import InputError, SaliencyMap
from foveal.boxes import resolve_boxes
from foveal.errors import ElementSpecError
from foveal.scoring.elements import make_element, parse_elements

HW = (100, 200)


@pytest.fixture
def smap() -> SaliencyMap:
    prob = np.random.default_rng(0).random(HW).astype(np.float32)
    return SaliencyMap(prob / prob.sum())


@pytest.mark.parametrize("box", [[10.5, 20.5, 30.0, 10.0], [2.5, 3.5, 4.5, 5.5], [0.5, 0.5, 1.0, 1.0],
                                 [11.49, 7.5, 0.52, 3.0]])
def test_api_and_element_files_round_the_same_way(smap, box):
    # Halves round up everywhere (np.rint rounded 10.5 to 10 in the API while element files gave 11).
    element = make_element("a", "cta", box, HW)
    x, y, w, h = element.box
    assert resolve_boxes(box, HW).tolist() == [[x, y, x + w, y + h]]
    assert smap.box_sum(box)[0] == pytest.approx(smap.prob[y:y + h, x:x + w].sum(dtype=np.float64), abs=1e-12)


def test_halves_computed_a_hair_low_still_round_up():
    """0.29 of 50 px is 14.5 to the person who wrote it, 14.499999999999998 in floating point: it rounded down, in
    about 2 % of the decimal fractions that land on a half. Checked against exact decimal arithmetic."""
    from decimal import ROUND_HALF_UP, Decimal

    checked = 0
    for width in range(1, 401):
        for k in range(1, 1000):
            exact = Decimal(k) / 1000 * width
            if exact % 1 != Decimal("0.5"):
                continue
            x1 = resolve_boxes([0, 0, k / 1000, 1], (1, width), box_format="xyxy", units="relative")[0, 2]
            assert x1 == int(exact.to_integral_value(ROUND_HALF_UP)), (k / 1000, width)
            checked += 1
    assert checked > 1900
    # a pixel edge made by x + w, and one just under a half, which stays down
    assert resolve_boxes([10.2, 0, 4.3, 1], (1, 100)).tolist() == [[10, 0, 15, 1]]
    assert resolve_boxes([14.4999999, 0, 10, 1], (1, 100)).tolist() == [[14, 0, 24, 1]]


def test_api_refuses_boxes_off_the_image_like_element_files(smap):
    box = [190, 90, 20, 20]
    with pytest.raises(ElementSpecError, match="outside"):
        make_element("a", "cta", box, HW)
    with pytest.raises(InputError, match="outside"):
        smap.share(box)  # used to be clipped to 10x10 and scored quietly


def test_share_and_lift_take_exactly_one_box(smap):
    with pytest.raises(InputError, match="exactly one box.*got 2"):
        smap.share([[0, 0, 10, 10], [50, 50, 10, 10]])  # used to return the first box's share
    with pytest.raises(InputError, match="exactly one box.*got 0"):
        smap.lift(np.zeros((0, 4)))
    assert smap.box_stats(np.zeros((0, 4)))["share"].shape == (0,)


def test_corner_boxes_are_declared_not_guessed(smap):
    assert smap.share([10, 20, 50, 60], box_format="xyxy") == pytest.approx(smap.share([10, 20, 40, 40]))
    spec = parse_elements({"box_format": "xyxy", "elements": [{"name": "a", "kind": "cta", "box": [10, 20, 50, 60]}]},
                          HW)
    assert spec.elements[0].box == (10, 20, 40, 40)
    # Read as [x, y, w, h] these corners run off the image: the refusal says what they probably are.
    with pytest.raises(InputError, match='box_format "xyxy"'):
        smap.share([120, 60, 180, 90])


def test_relative_boxes_in_the_api_match_element_files(smap):
    box = [0.25, 0.5, 0.5, 0.25]
    assert smap.share(box, units="relative") == pytest.approx(smap.share([50, 50, 100, 25]))
    with pytest.raises(InputError, match='declare units "relative"'):
        smap.share(box)


def test_pixel_boxes_declared_relative_get_the_right_hint():
    # The hint used to say 'relative boxes need "units": "relative"' to a file that had declared exactly that.
    with pytest.raises(ElementSpecError, match='look like pixels, so drop units "relative"') as info:
        make_element("a", "cta", [40, 20, 60, 30], HW, units="relative")
    assert "need \"units\"" not in str(info.value)


def test_box_stats_batch_takes_host_maps(smap):
    """Engine(device="auto") falls back to host maps on a machine without a GPU; batch queries still answer."""
    from foveal import box_stats_batch

    other = SaliencyMap(np.full((10, 20), 1 / 200, np.float32))
    boxes = [[[0, 0, 10, 10], [5, 5, 20, 30]], [[0, 0, 20, 10]]]
    stats = box_stats_batch(iter([smap, other]), iter(boxes))
    for got, m, b in zip(stats, [smap, other], boxes):
        expected = m.box_stats(b)
        assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)
    assert box_stats_batch([], []) == []
    with pytest.raises(InputError, match="box_stats_batch: maps must be SaliencyMaps .* got ndarray"):
        box_stats_batch([smap.prob], [[0, 0, 1, 1]])


def test_box_stats_batch_names_the_bad_box_by_map_and_box(smap):
    """The label counted within one map's list: boxes[2] for the third box of the second map, boxes[1] for the
    second box of the first."""
    from foveal import box_stats_batch

    a = b = SaliencyMap(np.full((4, 4), 1 / 16, np.float32))
    with pytest.raises(InputError, match=r"^boxes\[1\]\[2\]"):
        box_stats_batch([a, b], [[[0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0, 2, 2], [0, 0, 2, 2], [3, 3, 2, 2]]])
    with pytest.raises(InputError, match=r"^boxes\[0\]\[1\]"):
        box_stats_batch([a, b], [[[0, 0, 1, 1], [3, 3, 2, 2]], [[0, 0, 2, 2]]])
    with pytest.raises(InputError, match="expected a list of maps and a list of box lists"):
        box_stats_batch(np.array(5.0), [[0, 0, 1, 1]])


@pytest.mark.parametrize("boxes", [[True, 0, 5, 5], [[0, 0, 5, 5], [0, np.True_, 5, 5]], ((1, 1, False, 4),)])
def test_a_bool_among_box_numbers_is_refused_like_an_element_files(smap, boxes):
    """NumPy turned [True, 0, 5, 5] into integers, so the API measured a box an element file refuses."""
    with pytest.raises(InputError, match="box coordinates must be real numbers, got a bool"):
        smap.box_stats(boxes)


def test_a_bool_batch_size_is_refused():
    from foveal.errors import checked_count

    with pytest.raises(InputError, match="batch_size must be an integer >= 1, got True"):
        checked_count(True, "batch_size")
    with pytest.raises(InputError, match="batch_size must be an integer >= 1, got np.True_"):
        checked_count(np.True_, "batch_size")
    assert checked_count(np.int64(3), "batch_size") == 3


def test_a_map_and_its_table_cannot_be_written_and_pickle_as_the_map():
    """Written through the map, prob and its table went out of step: box queries answered from the old table."""
    import copy
    import pickle

    prob = np.random.default_rng(4).random((30, 40)).astype(np.float32)
    prob /= prob.sum()
    smap = SaliencyMap(prob, {"model": "test"})
    share = smap.share([0, 0, 10, 10])
    for array in (smap.prob, smap.sat):
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 1.0
    assert prob.flags.writeable  # the caller's own array is not frozen
    for clone in (pickle.loads(pickle.dumps(smap)), copy.deepcopy(smap)):
        assert type(clone) is SaliencyMap and clone.provenance == {"model": "test"}
        assert not clone.prob.flags.writeable and clone.share([0, 0, 10, 10]) == pytest.approx(share)


#: Fractions whose float32 value widened to float64 lands a hair under a half-pixel edge of these sizes (0.7 of
#: 300 with w 0.125: x1 = 247.5), which then rounded a pixel lower than the decimal the float32 stands for.
FRACTIONS = (0.1, 0.125, 0.3, 0.35, 0.45, 0.7)
SIZES = ((300, 300), (250, 728), (1080, 1080), (728, 250))


@pytest.mark.parametrize("image_hw", SIZES)
@pytest.mark.parametrize("narrow", [np.float32, np.float16])
@pytest.mark.parametrize("box_format", ["xywh", "xyxy"])
def test_float32_relative_boxes_give_the_pixels_of_their_decimals(image_hw, narrow, box_format):
    boxes = [[x, y, w, h] if box_format == "xywh" else [x, y, x + w, y + h]
             for x in FRACTIONS for y in FRACTIONS for w in FRACTIONS for h in (0.1, 0.3)
             if x + w <= 1 and y + h <= 1]
    narrow_boxes = np.asarray(boxes, narrow)
    decimals = [[float(str(v)) for v in box] for box in narrow_boxes]  # what each narrow value stands for
    expected = resolve_boxes(decimals, image_hw, box_format=box_format, units="relative")
    got = resolve_boxes(narrow_boxes, image_hw, box_format=box_format, units="relative")
    assert (got == expected).all(), [(b, e, g) for b, e, g in zip(decimals, expected.tolist(), got.tolist())
                                     if e != g][:3]
    # element boxes: a numpy box, and numpy scalars in a list
    if box_format == "xywh":
        for box, pixels in zip(narrow_boxes[:40], expected[:40].tolist()):
            x, y, w, h = make_element("a", "cta", box, image_hw, units="relative").box
            assert [x, y, x + w, y + h] == pixels
            spec = parse_elements({"units": "relative", "elements": [{"name": "a", "kind": "cta", "box": list(box)}]},
                                  image_hw)
            assert spec.elements[0].box == (x, y, w, h)


def test_pixel_boxes_of_float32_are_read_as_before():
    """Only fractions are read as their decimals: a pixel value rounds the same either way."""
    boxes = np.asarray([[10.5, 20.5, 30.25, 10.0], [213.49998, 0.5, 1.5, 2.5]], np.float32)
    assert resolve_boxes(boxes, (300, 300)).tolist() == resolve_boxes(boxes.astype(np.float64), (300, 300)).tolist()
