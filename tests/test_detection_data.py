"""Detection data: the digit box scenes, COCO JSON and box CSV readers, the box-aware
transforms and the (images, padded boxes) pipeline."""

import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from harness import torch_python
from keras_resnet import data
from keras_resnet.data import sources
from keras_resnet.data.augment import boxes as box_ops
from keras_resnet.data.augment import dense
from keras_resnet.data.detection import load_detection, original_boxes
from keras_resnet.data.sources.boxes import read_box_csv, read_coco_json
from keras_resnet.errors import InvalidArgument


@pytest.fixture(autouse=True)
def _keras_home(tmp_path, monkeypatch):
    """Mean images are cached under $KERAS_HOME; keep them out of the real home."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def _tight_box(ink):
    """(x1, y1, x2, y2) of the True pixels of a 2-D mask, exclusive ends; None if none."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not rows.size:
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


# Digit box scenes ------------------------------------------------------------------------------


def test_digit_boxes_enclose_exactly_each_digits_ink():
    images, boxes, classes, placements = sources.digit_boxes("train", count=300)
    digits, labels, _ = sources.digits_arrays()
    for image, scene_boxes, scene_classes, placed in zip(images, boxes, classes, placements):
        ink = image[..., 0] >= 128
        assert (image == image[..., :1]).all()
        covered = np.zeros(ink.shape, bool)
        present = placed[:, 0] >= 0
        assert (present == (scene_classes >= 0)).all()
        for (index, top, left, side), box, digit in zip(placed[present], scene_boxes[present],
                                                        scene_classes[present]):
            # The digit redrawn: each source pixel blown up to side x side, sampled at the
            # centre of every 8 x 8 block.
            patch = np.kron(digits[index, :, :, 0], np.ones((side, side), np.uint8))[4::8, 4::8]
            np.testing.assert_array_equal(image[top:top + side, left:left + side, 0], patch)
            x1, y1, x2, y2 = (int(v) for v in box)
            square = np.zeros_like(ink)
            square[top:top + side, left:left + side] = ink[top:top + side, left:left + side]
            assert (x1, y1, x2, y2) == _tight_box(square)
            assert digit == labels[index]
            covered[y1:y2, x1:x2] = True
        assert not (ink & ~covered).any()  # every ink pixel is in a box
        assert (scene_boxes[~present] == 0).all()
    counts = (classes >= 0).sum(axis=1)
    sides = placements[:, :, 3][placements[:, :, 0] >= 0]
    assert set(counts.tolist()) == {0, 1, 2, 3, 4}
    assert sides.min() == 8 and sides.max() == 32
    assert set(classes[classes >= 0].tolist()) == set(range(10))


def test_digit_box_splits_are_fixed_share_no_digit_and_have_empty_scenes():
    _, _, splits = sources.digits_arrays()
    used = {}
    for split, count in (("train", 2000), ("validation", 250), ("test", 500)):
        images, boxes, classes, placements = sources.digit_boxes(split)
        assert images.shape == (count, 64, 64, 3) and boxes.shape == (count, 4, 4)
        used[split] = set(placements[:, :, 0][placements[:, :, 0] >= 0].tolist())
        assert used[split] <= set(splits[split].tolist())
        empty = (classes < 0).all(axis=1)
        assert 0.02 < empty.mean() < 0.09 and (images[empty] == 0).all()
    assert not used["train"] & used["test"] and not used["train"] & used["validation"]
    assert not used["validation"] & used["test"]
    again = sources.digit_boxes("test", count=20)
    np.testing.assert_array_equal(again[0], sources.digit_boxes("test")[0][:20])
    source = sources.get_source("digit_boxes")
    assert source.class_names == [str(d) for d in range(10)] and not source.flip


# COCO JSON and box CSV ---------------------------------------------------------------------------


def _png(path, height, width):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)


COCO = {
    "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 12, "name": "bird"}],
    "images": [{"id": 10, "file_name": "a.png", "height": 20, "width": 30},
               {"id": 11, "file_name": "b.png", "height": 16, "width": 16},
               {"id": 12, "file_name": "sub/c.png", "height": 24, "width": 10},
               {"id": 13, "file_name": "d.png", "height": 12, "width": 12}],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 5], "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 12, "bbox": [0.5, 0, 4.5, 20], "iscrowd": 0},
        {"id": 3, "image_id": 11, "category_id": 3, "bbox": [1, 1, 14, 14], "iscrowd": 1},
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [4, 4, 3, 3]},
        {"id": 5, "image_id": 12, "category_id": 7, "bbox": [5, 20, 10, 10], "iscrowd": 0},
        {"id": 6, "image_id": 12, "category_id": 3, "bbox": [10, 2, 4, 4], "iscrowd": 0},
    ],
}


def _coco_files(folder, coco=COCO):
    for image in coco["images"]:
        _png(os.path.join(folder, image["file_name"]), image["height"], image["width"])
    path = os.path.join(folder, "boxes.json")
    with open(path, "w") as f:
        json.dump(coco, f)
    return path


def test_coco_json_reads_boxes_crowds_and_empty_images(tmp_path):
    records = read_coco_json(_coco_files(str(tmp_path)))
    assert records.class_names == ["dog", "cat", "bird"] and records.category_ids == [3, 7, 12]
    assert records.image_ids == [10, 11, 12, 13] and records.sizes[0] == (20, 30)
    assert records.images[2] == str(tmp_path / "sub" / "c.png")
    expected = [([[2, 3, 12, 8], [0.5, 0, 5, 20]], [1, 2]), ([[4, 4, 7, 7]], [0]),
                ([[5, 20, 10, 24]], [1]),  # clipped to its 10 x 24 image; annotation 6 dropped
                (np.zeros((0, 4)), [])]
    for (boxes, classes), got_boxes, got_classes in zip(expected, records.boxes,
                                                        records.classes):
        np.testing.assert_array_equal(got_boxes, np.reshape(boxes, (-1, 4)))
        assert got_boxes.dtype == np.float32 and got_classes.tolist() == classes
    assert records.dropped == 1 and records.most_boxes == 2
    assert [len(c) for c in records.crowd_classes] == [0, 1, 0, 0]
    np.testing.assert_array_equal(records.crowd_boxes[1], [[1, 1, 15, 15]])
    assert sources.lookup(str(tmp_path / "boxes.json")).name == "coco_json"


def test_coco_layout_is_a_dataset_of_load(tmp_path):
    coco = {**COCO, "images": [{**image, "file_name": os.path.basename(image["file_name"])}
                               for image in COCO["images"]]}
    path = _coco_files(str(tmp_path / "mini"), coco)
    os.makedirs(tmp_path / "annotations")
    annotations = str(tmp_path / "annotations" / "instances_mini.json")
    os.replace(path, annotations)  # COCO's layout: images in <root>/mini/
    counts, classes = 0, []
    for split in ("train", "validation", "test"):
        try:
            dataset, info = data.load(annotations, split, 8, training=False, image_size=32)
        except data.MissingSplit:
            continue
        counts += info.num_examples
        found = next(iter(dataset))[1]["classes"].numpy()
        classes += found[found >= 0].tolist()
        assert info.class_names == ["dog", "cat", "bird"]
    assert counts == 4 and sorted(classes) == [0, 1, 1, 2]


def test_coco_json_agrees_with_pycocotools(tmp_path):
    path = _coco_files(str(tmp_path))
    script = f"""
import json
from pycocotools.coco import COCO
coco = COCO({path!r})
ids = sorted(coco.getCatIds())
found = {{}}
for image in coco.dataset["images"]:
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
    found[image["id"]] = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                           a["bbox"][1] + a["bbox"][3], ids.index(a["category_id"]),
                           int(a.get("iscrowd", 0))] for a in anns]
print(json.dumps({{"names": [c["name"] for c in coco.loadCats(ids)], "found": found}}))
"""
    result = subprocess.run([torch_python(), "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    reference = json.loads(result.stdout.splitlines()[-1])
    records = read_coco_json(path)
    assert records.class_names == reference["names"]
    for n, image_id in enumerate(records.image_ids):
        rows = np.reshape(reference["found"][str(image_id)], (-1, 6))
        height, width = records.sizes[n]
        clipped = np.clip(rows[:, :4], 0, [width, height, width, height])
        kept = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        for crowd, got_boxes, got_classes in ((0, records.boxes[n], records.classes[n]),
                                              (1, records.crowd_boxes[n],
                                               records.crowd_classes[n])):
            chosen = kept & (rows[:, 5] == crowd)
            np.testing.assert_allclose(got_boxes, clipped[chosen])
            assert got_classes.tolist() == rows[chosen, 4].astype(int).tolist()


@pytest.mark.parametrize("change, message", [
    (lambda c: c["annotations"].append({"id": 9, "image_id": 10, "category_id": 99,
                                        "bbox": [0, 0, 1, 1]}), "annotation 9: category_id 99"),
    (lambda c: c["annotations"].append({"id": 8, "image_id": 10, "category_id": 3,
                                        "bbox": [0, 0, -1, 1]}), "annotation 8: bbox"),
    (lambda c: c["annotations"].append({"id": 7, "image_id": 77, "category_id": 3,
                                        "bbox": [0, 0, 1, 1]}), "annotation 7: image_id 77"),
    (lambda c: c["images"].append({"id": 14, "file_name": "gone.png", "height": 2,
                                   "width": 2}), "image 14: file"),
    (lambda c: c.pop("categories"), "has no list 'categories'"),
], ids=["unknown category", "negative width", "unknown image", "missing file", "no categories"])
def test_bad_coco_files_are_refused_naming_the_entry(tmp_path, change, message):
    coco = json.loads(json.dumps(COCO))
    change(coco)
    path = _coco_files(str(tmp_path), {**COCO, **coco, "images": COCO["images"]})
    with open(path, "w") as f:
        json.dump(coco, f)
    with pytest.raises(InvalidArgument, match=f"boxes.json.*{message}"):
        read_coco_json(path)


def _box_csv(folder, rows):
    for name, (height, width) in {"x.png": (20, 30), "y.png": (16, 16), "z.png": (8, 40)}.items():
        _png(os.path.join(folder, "images", name), height, width)
    path = os.path.join(folder, "boxes.csv")
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


CSV_ROWS = ["image_path,x1,y1,x2,y2,class_name", "images/x.png,1,2,11,12,zebra",
            "images/y.png,,,,,", "images/x.png,20.5,0,30,20,ant", "images/z.png,0,0,40,8,zebra"]


def test_box_csv_reads_boxes_empty_images_and_sorted_classes(tmp_path):
    path = _box_csv(str(tmp_path), CSV_ROWS)
    records = read_box_csv(path)
    assert records.class_names == ["ant", "zebra"] and records.category_ids is None
    assert [os.path.basename(p) for p in records.images] == ["x.png", "y.png", "z.png"]
    assert records.sizes == [(20, 30), (16, 16), (8, 40)]
    np.testing.assert_array_equal(records.boxes[0], [[1, 2, 11, 12], [20.5, 0, 30, 20]])
    assert [c.tolist() for c in records.classes] == [[1, 0], [], [1]]
    assert records.boxes[1].shape == (0, 4)
    assert sources.lookup(path).name == "box_csv"
    labels = tmp_path / "labels.csv"
    labels.write_text("images/x.png,zebra\n")
    assert sources.lookup(str(labels)).name == "labels_file"


@pytest.mark.parametrize("row, message", [
    ("images/x.png,5,2,4,12,zebra", "line 3: the box must have 0 <= x1 < x2"),
    ("images/x.png,1,2,11,zebra", "line 3: expected image_path"),
    ("images/x.png,1,2,31,12,zebra", "line 3: box .* leaves its 30x20"),
    ("images/x.png,1,2,11,12,", "line 3: give all of"),
    ("images/x.png,1,a,11,12,zebra", "line 3: x1,y1,x2,y2 must be numbers"),
    ("images/w.png,1,2,11,12,zebra", "line 3: .*w.png' does not exist"),
    ("images/y.png,1,2,11,12,zebra", "line 4: lists its image without boxes"),
], ids=["x2 < x1", "five fields", "outside", "no class", "not a number", "missing image",
        "empty and boxed"])
def test_bad_box_csv_rows_are_refused_naming_the_line(tmp_path, row, message):
    path = _box_csv(str(tmp_path), CSV_ROWS[:2] + [row] + CSV_ROWS[2:3])
    with pytest.raises(InvalidArgument, match=f"boxes.csv.*{message}"):
        read_box_csv(path)


# Box-aware transforms ----------------------------------------------------------------------------


RECTANGLES = np.array([[4, 6, 20, 18], [26, 3, 51, 11], [30, 22, 47, 37]], np.float32)


def _rectangles(height=40, width=56):
    """An image with rectangle k filled (255) in channel k, and the rectangles' boxes."""
    image = np.zeros((height, width, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(RECTANGLES.astype(int)):
        image[y1:y2, x1:x2, k] = 255
    return image, RECTANGLES.copy()


def _check_boxes_hold_rectangles(image, boxes, classes, atol):
    """Each box encloses its rectangle's pixels (at least half bright) within ``atol``."""
    image = np.asarray(image)
    for box, k in zip(np.asarray(boxes), np.asarray(classes)):
        ink = _tight_box(image[..., k] >= 127.5)
        assert ink is not None
        np.testing.assert_allclose(ink, box, atol=atol)


def test_flip_and_crop_move_boxes_with_the_pixels_exactly():
    image, boxes = _rectangles()
    flipped, flipped_boxes = box_ops.random_flip(image, boxes, [0, 0], probability=1.0)
    _check_boxes_hold_rectangles(flipped, flipped_boxes, [0, 1, 2], atol=0)
    kept_any = 0
    for seed in range(8):
        crop, crop_boxes, crop_classes = box_ops.random_crop(image, boxes, [0, 1, 2], [seed, 1],
                                                             (24, 28))
        assert crop.shape == (24, 28, 3)
        _check_boxes_hold_rectangles(crop, crop_boxes, crop_classes, atol=0)
        kept_any += len(crop_classes)
    assert kept_any > 0


def test_scale_moves_boxes_with_the_pixels_within_half_a_pixel():
    image, boxes = _rectangles()
    for size in ((80, 112), (29, 41), (20, 28), (53, 37)):
        scaled, scaled_boxes = box_ops.resize_with_boxes(image, boxes, size)
        assert scaled.shape == (*size, 3)
        _check_boxes_hold_rectangles(scaled, scaled_boxes, [0, 1, 2], atol=0.5 + 1e-4)
    kept = []
    for seed in range(6):
        out, out_boxes, out_classes = box_ops.train_example(
            image, boxes, tf.constant([0, 1, 2]), [seed, 7], size=(48, 48))
        assert out.shape == (48, 48, 3) and out_boxes.shape[0] == out_classes.shape[0]
        _check_boxes_hold_rectangles(out, out_boxes, out_classes, atol=0.5 + 1e-4)
        kept.append(len(out_classes))
    assert 3 in kept and min(kept) < 3  # some crops hold every rectangle's centre, some not


def test_crop_keeps_boxes_whose_centre_is_inside_then_clips_and_drops_slivers():
    boxes = tf.constant([
        [0, 0, 12, 12],  # centre (6, 6) -> (1, 1): kept, clipped to (0, 0, 7, 7)
        [0, 0, 8, 8],  # centre (4, 4) -> (-1, -1): outside, dropped
        [0, 0, 10, 10],  # centre (5, 5) -> (0, 0): on the edge, dropped (strictly inside)
        [14, 6, 30, 9],  # centre (22, 7.5) -> (17, 2.5): kept, clipped to (9, 1, 20, 4)
        [9.6, 9, 10.4, 12],  # centre inside, 0.8 pixels wide: dropped
        [24, 24, 25, 25],  # centre (24.5, 24.5) -> (19.5, 19.5): kept, 1 x 1
        [0, 8, 10, 12],  # centre (5, 10) -> (0, 5): on the left edge, dropped
        [20, 8, 30, 12],  # centre (25, 10) -> (20, 5): on the right edge, dropped
        [8, 20, 12, 30],  # centre (10, 25) -> (5, 20): on the bottom edge, dropped
    ], tf.float32)
    kept, classes = box_ops.crop_boxes(boxes, tf.range(9), 5, 5, (20, 20))
    np.testing.assert_array_equal(kept, [[0, 0, 7, 7], [9, 1, 20, 4], [19, 19, 20, 20]])
    assert classes.numpy().tolist() == [0, 3, 5]


def test_fit_and_pad_is_the_segmentation_fit_and_maps_back():
    image, boxes = _rectangles(40, 56)
    fitted, fitted_boxes, scale, original = box_ops.fit_and_pad(image, boxes, (32, 32))
    reference, _ = dense.fit_and_pad(image, tf.zeros((40, 56), tf.uint8), (32, 32))
    np.testing.assert_array_equal(fitted, reference)
    np.testing.assert_allclose(scale, [32 / 56, 23 / 40])
    assert original.numpy().tolist() == [40, 56]
    _check_boxes_hold_rectangles(fitted, fitted_boxes, [0, 1, 2], atol=0.5 + 1e-4)
    back = original_boxes(fitted_boxes.numpy()[None], scale.numpy()[None], original.numpy()[None])
    np.testing.assert_allclose(back[0], boxes, atol=1e-4)


# The pipeline --------------------------------------------------------------------------------


def _check_padding(boxes, classes, max_boxes):
    assert boxes.shape == (len(classes), max_boxes, 4) and boxes.dtype == np.float32
    assert classes.shape == (len(classes), max_boxes) and classes.dtype == np.int32
    present = classes >= 0
    assert (classes[~present] == -1).all() and (boxes[~present] == 0).all()
    assert (np.diff(present.astype(int), axis=1) <= 0).all()  # padding after the boxes
    real = boxes[present]
    assert (real[:, 2] - real[:, 0] >= 1).all() and (real[:, 3] - real[:, 1] >= 1).all()
    return present


def test_pipeline_evaluation_batches_are_the_scenes_with_padded_boxes():
    dataset, info = data.load("digit_boxes", "test", batch_size=64)
    assert info.task_kind == "detection" and info.num_classes == 10 and info.max_boxes == 100
    images, targets = next(iter(dataset))
    raw_images, raw_boxes, raw_classes, _ = sources.digit_boxes("test")
    present = _check_padding(targets["boxes"].numpy(), targets["classes"].numpy(), 100)
    assert images.dtype == tf.float32 and images.shape == (64, 64, 64, 3)
    np.testing.assert_allclose(images, raw_images[:64] / 255.0 - info.mean, atol=1e-6)
    np.testing.assert_array_equal(targets["classes"][:, :4], raw_classes[:64])
    np.testing.assert_array_equal(targets["boxes"][:, :4], raw_boxes[:64])
    assert (~present).all(axis=1).any()  # an image with no boxes
    np.testing.assert_array_equal(targets["scale"], np.ones((64, 2)))
    np.testing.assert_array_equal(targets["image_size"], np.full((64, 2), 64))
    again = type(info).from_config(json.loads(json.dumps(info.to_config())))
    assert again.to_config() == info.to_config()
    with pytest.raises(InvalidArgument, match="`max_boxes` 3 is less than the 4 boxes"):
        load_detection("digit_boxes", "test", 8, max_boxes=3)


def test_pipeline_training_batches_are_seeded_and_padded():
    def batch(seed):
        dataset, info = load_detection("digit_boxes", "train", 64, seed=seed, max_boxes=6,
                                       deterministic=True, shuffle_buffer=256)
        images, targets = next(iter(dataset))
        return images.numpy(), {k: v.numpy() for k, v in targets.items()}, info

    images, targets, info = batch(3)
    again, again_targets, _ = batch(3)
    other, _, _ = batch(4)
    assert set(targets) == {"boxes", "classes"} and images.shape == (64, 64, 64, 3)
    present = _check_padding(targets["boxes"], targets["classes"], 6)
    assert (~present).all(axis=1).any() and present.any(axis=1).sum() > 32
    assert targets["boxes"].min() >= 0 and targets["boxes"].max() <= 64
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(targets["boxes"], again_targets["boxes"])
    assert not np.array_equal(images, other) and not info.horizontal_flip
    # each box holds ink: the image under it, brought back to pixels, is bright somewhere
    pixels = (images + info.mean) * 255
    for n, row in zip(*np.nonzero(present)):
        x1, y1, x2, y2 = targets["boxes"][n, row]
        assert pixels[n, int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))].max() > 100


def test_box_csv_through_load_carries_scale_and_size(tmp_path):
    rows = ["images/x.png,1,2,11,12,zebra", "images/y.png,,,,,", "images/z.png,0,0,40,8,ant"]
    path = _box_csv(str(tmp_path), rows)
    source = sources.get_source(path)
    split = next(s for s in ("train", "validation", "test") if _has_split(source, s))
    dataset, info = data.load(path, split, batch_size=4, training=False, image_size=32)
    images, targets = next(iter(dataset))
    count = info.num_examples
    assert images.shape == (count, 32, 32, 3) and info.class_names == ["ant", "zebra"]
    _check_padding(targets["boxes"].numpy(), targets["classes"].numpy(), 100)
    sizes = [tuple(s) for s in targets["image_size"].numpy()]
    expected = {(20, 30): [[1, 2, 11, 12]], (16, 16): np.zeros((0, 4)), (8, 40): [[0, 0, 40, 8]]}
    for n, size in enumerate(sizes):
        boxes = targets["boxes"].numpy()[n][targets["classes"].numpy()[n] >= 0]
        back = original_boxes(boxes[None], targets["scale"][n:n + 1], [size])[0]
        np.testing.assert_allclose(back, np.reshape(expected[size], (-1, 4)), atol=1e-4)


def _has_split(source, split):
    try:
        source.make(split)
    except data.MissingSplit:
        return False
    return True
