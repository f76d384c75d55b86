"""keras_resnet.coco_map against pycocotools' COCOeval (bbox), and cases checked by hand.

The committed reference (tests/fixtures/coco_map_reference.json) is pycocotools' own figures on
random cases made by tests/fixtures/make_coco_map_reference.py; where pycocotools is installed
beside torch ($KERAS_RESNET_TORCH_PYTHON), the same script scores cases of other seeds live.
"""

import json
import os
import subprocess

import numpy as np
import pytest

from harness import torch_python
from keras_resnet.coco_map import STAT_NAMES, box_iou, coco_map
from keras_resnet.errors import InvalidArgument, InvalidType

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "fixtures", "make_coco_map_reference.py")
with open(os.path.join(HERE, "fixtures", "coco_map_reference.json")) as _file:
    REFERENCE = json.load(_file)


def assert_equal_to_cocoeval(case):
    """Every stat and class AP of ``case`` within 1e-6 of COCOeval's; the largest difference."""
    got = coco_map(case["detections"], case["ground_truths"], case["class_count"])
    assert {str(label) for label in got["per_class"]} == set(case["per_class"])
    differences = [abs(got[name] - case["stats"][name]) for name in STAT_NAMES]
    differences += [abs(got["per_class"][int(label)] - value)
                    for label, value in case["per_class"].items()]
    assert max(differences) <= 1e-6, (case["name"], got, case["stats"])
    return max(differences)


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda case: case["name"])
def test_equal_to_pycocotools(case):
    assert_equal_to_cocoeval(case)


def test_reference_cases_reach_the_rules():
    cases = {case["name"]: case for case in REFERENCE["cases"]}
    crowded = cases["over_100_detections"]["detections"][0]["classes"]
    assert np.bincount(crowded).max() > 100  # the cut at 100 detections per image
    stats = [case["stats"] for case in cases.values()]
    assert any(stat["map_small"] > 0 and stat["map_large"] > 0 for stat in stats)
    assert any(any(image["iscrowd"]) for case in cases.values() for image in case["ground_truths"])
    assert any(not image["boxes"] for case in cases.values() for image in case["detections"])


def test_equal_to_pycocotools_on_fresh_cases(tmp_path):
    python = torch_python()
    for seed in (1, 2):
        path = str(tmp_path / f"cases_{seed}.json")
        done = subprocess.run([python, SCRIPT, "--seed", str(seed), "--out", path],
                              capture_output=True, text=True, timeout=120)
        if "No module named 'pycocotools'" in done.stderr:
            pytest.skip("pycocotools is not installed beside torch")
        assert done.returncode == 0, done.stderr[-3000:]
        with open(path) as file:
            for case in json.load(file)["cases"]:
                assert_equal_to_cocoeval(case)


def _image(boxes, classes, scores=None, **extra):
    entry = {"boxes": boxes, "classes": classes, **extra}
    return entry if scores is None else {**entry, "scores": scores}


TRUTH = [_image([[0, 0, 20, 20], [30, 30, 80, 90]], [0, 1]),  # small, medium
         _image([[10, 10, 150, 130]], [1]),  # large
         _image([], [])]


def test_perfect_detections_score_one():
    found = [_image(image["boxes"], image["classes"], [0.9] * len(image["classes"]))
             for image in TRUTH]
    got = coco_map(found, TRUTH)
    for name in STAT_NAMES:
        assert got[name] == pytest.approx(1.0, abs=1e-12), name
    assert got["per_class"] == pytest.approx({0: 1.0, 1: 1.0}, abs=1e-12)


def test_no_detections_score_zero():
    got = coco_map([_image([], [], [])] * 3, TRUTH)
    assert [got[name] for name in STAT_NAMES] == [0.0] * 12
    assert got["per_class"] == {0: 0.0, 1: 0.0}


@pytest.mark.parametrize("height, thresholds", [(58, 2), (60, 3)])  # IoU .58; .60 (counts at .60)
def test_one_box_counts_at_thresholds_up_to_its_overlap(height, thresholds):
    got = coco_map([_image([[0, 0, 100, height]], [0], [0.7])], [_image([[0, 0, 100, 100]], [0])])
    assert got["map_50"] == pytest.approx(1.0) and got["map_75"] == 0.0
    assert got["map"] == pytest.approx(thresholds / 10)
    assert got["mar_100"] == pytest.approx(thresholds / 10)
    assert got["map_large"] == pytest.approx(thresholds / 10)
    assert got["map_small"] == got["map_medium"] == got["mar_small"] == -1.0


def test_crowd_region_neither_missed_nor_false_positive():
    truth = [_image([[0, 0, 40, 40], [50, 0, 150, 100]], [0, 0], iscrowd=[0, 1])]
    inside_crowd = [60, 10, 80, 30]  # IoU with the region .04, intersection / its area 1
    found = [_image([inside_crowd, [0, 0, 40, 40]], [0, 0], [0.9, 0.8])]
    assert coco_map(found, truth)["map"] == pytest.approx(1.0)
    truth[0]["iscrowd"] = [0, 0]  # an ordinary box: missed, and the first detection is wrong
    # precision 1/2 up to recall 1/2: at 51 of the 101 recall points
    assert coco_map(found, truth)["map"] == pytest.approx(0.5 * 51 / 101)


def test_ground_truth_area_decides_its_range():
    truth = [_image([[0, 0, 40, 40]], [0])]
    found = [_image([[0, 0, 40, 40]], [0], [0.9])]
    assert coco_map(found, truth)["map_medium"] == pytest.approx(1.0)
    got = coco_map(found, [{**truth[0], "area": [1000.0]}])  # a segmentation under 32**2
    assert got["map_small"] == pytest.approx(1.0) and got["map_medium"] == -1.0


def test_box_iou_by_hand():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6]])
    expected = [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(box_iou(boxes, boxes), expected, atol=1e-12)
    # crowd: the intersection over the first box's area
    np.testing.assert_allclose(box_iou(boxes[:1], boxes[1:2], crowd=[True]), [[0.5]])


@pytest.mark.parametrize("detections, truths, class_count, error, words", [
    ([], TRUTH, None, InvalidArgument, "one entry per image"),
    ([_image([[5, 0, 1, 4]], [0], [0.5])], TRUTH[:1], None, InvalidArgument, "x2 >= x1"),
    ([_image([[0, 0, 1]], [0], [0.5])], TRUTH[:1], None, InvalidArgument, "shape (n, 4)"),
    ([_image([[0, 0, 1, 1]], [0], [0.5, 0.4])], TRUTH[:1], None, InvalidArgument, "per box"),
    ([_image([[0, 0, 1, 1]], [3], [0.5])], TRUTH[:1], 3, InvalidArgument, "[0, 3)"),
    ([{"boxes": [[0, 0, 1, 1]], "labels": [0], "scores": [1]}], TRUTH[:1], None,
     InvalidArgument, "classes"),
    (["boxes"], TRUTH[:1], None, InvalidType, "dict"),
    ([_image([], [], [])], TRUTH[:1], 0, InvalidArgument, "class_count"),
])
def test_bad_input_raises(detections, truths, class_count, error, words):
    with pytest.raises(error) as raised:
        coco_map(detections, truths, class_count)
    assert words in str(raised.value) and "\n" not in str(raised.value)
