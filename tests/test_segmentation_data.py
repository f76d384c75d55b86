"""Segmentation data: the digit scenes, mask folders (paired and VOC layouts), the paired
transforms and the (images, masks) pipeline."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_resnet import data
from keras_resnet.data import sources
from keras_resnet.data.augment import dense
from keras_resnet.errors import InvalidArgument, MissingFile


@pytest.fixture(autouse=True)
def _keras_home(tmp_path, monkeypatch):
    """Mean images are cached under $KERAS_HOME; keep them out of the real home."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def _first_batch(dataset):
    images, masks = next(iter(dataset))
    return images.numpy(), masks.numpy()


# Digit scenes -------------------------------------------------------------------------------


def test_scene_masks_are_the_digits_ink_redrawn():
    images, masks, placements = sources.digit_scenes("train", count=60)
    digits, labels, _ = sources.digits_arrays()
    for image, mask, placed in zip(images, masks, placements):
        expected_image = np.zeros((64, 64), np.uint8)
        expected_mask = np.zeros((64, 64), np.uint8)
        for index, top, left, side in placed[placed[:, 0] >= 0]:
            # Each source pixel blown up to side x side, then one sample at the centre of
            # every 8 x 8 block: the source pixel under each output pixel's centre.
            patch = np.kron(digits[index, :, :, 0], np.ones((side, side), np.uint8))[4::8, 4::8]
            expected_image[top:top + side, left:left + side] = patch
            ink = patch >= 128
            expected_mask[top:top + side, left:left + side][ink] = labels[index] + 1
        np.testing.assert_array_equal(image, np.repeat(expected_image[..., None], 3, axis=-1))
        np.testing.assert_array_equal(mask, expected_mask)
    counts = (placements[:, :, 0] >= 0).sum(axis=1)
    sides = placements[:, :, 3][placements[:, :, 0] >= 0]
    assert counts.min() >= 1 and counts.max() == 3 and (counts >= 2).mean() > 0.9
    assert sides.min() >= 12 and sides.max() <= 32 and len(set(sides.tolist())) > 10
    assert set(np.unique(masks).tolist()) == set(range(11))


def test_scenes_are_deterministic_and_splits_use_their_own_digits():
    first = sources.digit_scenes("validation")
    second = sources.digit_scenes("validation")
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    _, _, splits = sources.digits_arrays()
    used = {}
    for split, count in (("train", 2000), ("validation", 250), ("test", 500)):
        images, masks, placements = sources.digit_scenes(split)
        assert images.shape == (count, 64, 64, 3) and masks.shape == (count, 64, 64)
        used[split] = set(placements[:, :, 0][placements[:, :, 0] >= 0].tolist())
        assert used[split] <= set(splits[split].tolist())
    assert not used["train"] & used["test"] and not used["train"] & used["validation"]
    assert not np.array_equal(sources.digit_scenes("test", count=5)[0], first[0][:5])


def test_scene_pipeline_evaluation_is_the_normalised_scene():
    dataset, info = data.load("digit_scenes", "test", batch_size=100)
    assert info.class_names == ["background"] + [str(d) for d in range(10)]
    assert info.num_classes == 11 and info.num_examples == 500 and info.task_kind == "segmentation"
    raw_images, raw_masks, _ = sources.digit_scenes("test")
    train_images = sources.digit_scenes("train")[0]
    np.testing.assert_allclose(info.mean, train_images.mean(axis=(0, 1, 2)) / 255, rtol=1e-5)
    images, masks = _first_batch(dataset)
    assert images.dtype == np.float32 and masks.dtype == np.int32
    np.testing.assert_allclose(images, raw_images[:100] / 255.0 - info.mean, atol=1e-6)
    np.testing.assert_array_equal(masks, raw_masks[:100])
    again = data.SegmentationInfo.from_config(json.loads(json.dumps(info.to_config())))
    assert again.to_config() == info.to_config() and again.base_size == 64


def test_scene_training_batches_are_seeded_crops():
    def batch(seed):
        dataset, info = data.load("digit_scenes", "train", batch_size=16, seed=seed,
                                  deterministic=True)
        return _first_batch(dataset), info

    (images, masks), info = batch(3)
    (again_images, again_masks), _ = batch(3)
    (other_images, _), _ = batch(4)
    assert images.shape == (16, 64, 64, 3) and masks.shape == (16, 64, 64)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(masks, again_masks)
    assert not np.array_equal(images, other_images)
    assert info.train_sides == (32, 128) and not info.horizontal_flip
    assert set(np.unique(masks).tolist()) <= set(range(11)) | {255}
    padded = masks == 255  # crops beyond a shrunk scene: padding, black before normalising
    assert padded.any()
    np.testing.assert_allclose(images[padded], np.broadcast_to(-info.mean, images[padded].shape),
                               atol=1e-6)


def test_classification_options_are_refused_for_masks():
    for options in ({"ten_crop": True, "training": False}, {"task": "multilabel"},
                    {"augment": "cifar"}):
        with pytest.raises(InvalidArgument, match="segmentation"):
            data.load("digit_scenes", "test", 8, **options)
    with pytest.raises(data.MissingSplit, match="'val'"):
        data.load("digit_scenes", "val", 8)


@pytest.mark.slow  # 2 s or more of its own
def test_holdout_takes_a_share_of_the_training_scenes():
    train, info = data.load("digit_scenes", "train", 50, training=False, holdout=data.Holdout())
    validation, held = data.load("digit_scenes", "validation", 50, holdout=data.Holdout())
    assert (info.num_examples, held.num_examples) == (1800, 200)
    kept = {m.tobytes() for _, masks in train.as_numpy_iterator() for m in masks}
    out = [m.tobytes() for _, masks in validation.as_numpy_iterator() for m in masks]
    assert len(out) == 200 and not kept & set(out)


# Paired transforms ----------------------------------------------------------------------------

COLOURS = np.array([[30, 60, 90], [200, 10, 10], [10, 200, 10], [10, 10, 200], [120, 120, 5],
                    [5, 120, 120]], np.uint8)


def _blocks(height=40, width=56):
    """An image of coloured blocks and the mask of each pixel's block colour."""
    rows, cols = np.mgrid[:height, :width]
    mask = ((rows // 10) * 2 + cols // 14) % len(COLOURS)
    return COLOURS[mask], mask.astype(np.uint8)


def _misaligned_pixels(image, mask):
    """Pixels deep inside a block (5x5 of one class) whose colour is not the block's, and
    padded pixels (255) that are not black."""
    inside = np.zeros(mask.shape, bool)
    padded = np.pad(mask.astype(int), 2, constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
    inside = (windows == mask[..., None, None]).all(axis=(-1, -2)) & (mask != 255)
    wrong = np.abs(image - COLOURS[np.minimum(mask, 5)]).max(axis=-1) > 1
    return int((inside & wrong).sum() + (np.abs(image[mask == 255]) > 0).sum()), int(inside.sum())


def test_training_transform_keeps_image_and_mask_aligned():
    image, mask = _blocks()
    shapes, checked_pixels = set(), 0
    for seed in range(12):
        out_image, out_mask = dense.train_pair(image, mask, [seed, 1], base_size=32,
                                               crop_size=(48, 40))
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert out_image.shape == (48, 40, 3) and out_mask.shape == (48, 40)
        wrong, checked = _misaligned_pixels(out_image, out_mask)
        assert wrong == 0
        checked_pixels += checked
        shapes.add(int((out_mask != 255).sum()))
        # A one-pixel shift of the mask is caught: the check sees misalignment.
        assert _misaligned_pixels(out_image, np.roll(out_mask, 3, axis=1))[0] > 0
    assert len(shapes) > 6 and checked_pixels > 12 * 200  # random scales and crops


def test_flip_mirrors_both_and_evaluation_resizes_the_shorter_side():
    image, mask = _blocks()
    flipped = [dense.random_flip_pair(image, mask, [seed, 0]) for seed in range(20)]
    mirrored = [np.array_equal(m.numpy(), mask[:, ::-1]) for _, m in flipped]
    assert 4 < sum(mirrored) < 16
    for (out_image, _), was in zip(flipped, mirrored):
        np.testing.assert_array_equal(out_image.numpy(), image[:, ::-1] if was else image)
    eval_image, eval_mask = dense.eval_pair(image, mask, 20)
    assert eval_image.shape == (20, 28, 3) and eval_mask.shape == (20, 28)
    assert _misaligned_pixels(eval_image.numpy(), eval_mask.numpy())[0] == 0
    assert dense.scale_sides(520) == (260, 1040)


def test_fit_and_pad_keeps_everything_and_ignores_the_padding():
    image, mask = _blocks(20, 40)
    out_image, out_mask = (t.numpy() for t in dense.fit_and_pad(image, mask, (32, 32)))
    assert out_mask.shape == (32, 32) and (out_mask[16:] == 255).all()
    assert (out_mask[:16] != 255).all() and (out_image[16:] == 0).all()
    assert _misaligned_pixels(out_image, out_mask)[0] == 0
    np.testing.assert_array_equal(np.unique(out_mask[:16]), np.unique(mask))


# Mask folders ---------------------------------------------------------------------------------


def _palette_png(path, mask):
    """A palette PNG whose colours are not the indices (as VOC's)."""
    picture = Image.fromarray(mask, mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[:21] = np.random.default_rng(0).integers(0, 256, (21, 3))
    palette[255] = (224, 224, 192)
    picture.putpalette(palette.flatten().tolist())
    picture.save(path)


def _write_pair(folder, stem, size, classes, palette=True, extension=".png", seed=0):
    rng = np.random.default_rng(seed)
    height, width = size
    mask = rng.integers(0, classes, (height, width)).astype(np.uint8)
    mask[0] = 255  # a border, ignored
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
    Image.fromarray(image).save(os.path.join(folder, "images", stem + extension))
    mask_path = os.path.join(folder, "masks", stem + ".png")
    if palette:
        _palette_png(mask_path, mask)
    else:
        Image.fromarray(mask, mode="L").save(mask_path)
    return mask


def _paired_root(root, classes_txt=True):
    written = {}
    for split, palette in (("train", True), ("test", False)):
        for n, size in enumerate([(24, 32), (40, 20), (30, 30)]):
            written[split, f"{split}{n}"] = _write_pair(root / split, f"{split}{n}", size, 3,
                                                        palette=palette, seed=n)
    if classes_txt:
        (root / "classes.txt").write_text("sky\nroad\ncar\n")
    return written


def test_paired_layout_reads_palette_indices_and_grey_levels(tmp_path):
    written = _paired_root(tmp_path)
    source = sources.get_source(str(tmp_path))
    assert source.masks and source.class_names == ["sky", "road", "car"]
    assert source.native_side == 40
    for split in ("train", "test"):
        dataset, count = source.make(split)
        assert count == 3
        for image_path, mask_path in dataset.as_numpy_iterator():
            stem = os.path.splitext(os.path.basename(image_path.decode()))[0]
            np.testing.assert_array_equal(source.decode_mask(mask_path).numpy(),
                                          written[split, stem])
    as_grey = np.asarray(Image.open(tmp_path / "train/masks/train0.png").convert("L"))
    assert not np.array_equal(as_grey, written["train", "train0"])  # colours are not classes
    with pytest.raises(data.MissingSplit, match="'validation'"):
        source.make("validation")


def test_mask_folder_batches_are_one_size_with_ignored_padding(tmp_path):
    _paired_root(tmp_path)
    dataset, info = data.load(str(tmp_path), "test", batch_size=3)
    images, masks = _first_batch(dataset)
    assert images.shape == (3, 40, 40, 3) and masks.shape == (3, 40, 40)
    assert info.image_shape == (40, 40, 3) and info.preprocessing.resize == "direct"
    assert (masks[0, 30:] == 255).all() and (masks[1, :, 20:] == 255).all()  # 24x32, 40x20
    np.testing.assert_allclose(images[0, 30:], np.broadcast_to(-info.mean, (10, 40, 3)), atol=1e-6)
    train, info = data.load(str(tmp_path), "train", batch_size=2, seed=0, image_size=24)
    images, masks = _first_batch(train)
    assert images.shape == (2, 24, 24, 3) and masks.dtype == np.int32
    assert set(np.unique(masks).tolist()) <= {0, 1, 2, 255}


def test_mask_folder_without_validation_holds_one_out(tmp_path):
    _paired_root(tmp_path, classes_txt=False)
    assert sources.get_source(str(tmp_path)).class_names == ["class_0", "class_1", "class_2"]
    with pytest.raises(data.MissingSplit):
        data.load(str(tmp_path), "validation", batch_size=2)
    _, info = data.load(str(tmp_path), "validation", batch_size=2, holdout=data.Holdout(0.34))
    assert info.num_examples == 1


def test_mask_folder_errors_name_the_file_and_value(tmp_path):
    _paired_root(tmp_path)
    _write_pair(tmp_path / "train", "bad", (8, 8), 6, seed=7)  # values up to 5, 3 classes
    with pytest.raises(InvalidArgument, match=r"bad\.png.* has value 5; allowed: 0\.\.2"):
        sources.get_source(str(tmp_path))
    os.remove(tmp_path / "train/masks/bad.png")
    with pytest.raises(MissingFile, match=r"Image '.*bad\.png' has no mask"):
        sources.get_source(str(tmp_path))
    os.remove(tmp_path / "train/images/bad.png")
    Image.fromarray(np.zeros((24, 31), np.uint8), mode="L").save(tmp_path / "train/masks/train0.png")
    with pytest.raises(InvalidArgument, match="train0.png' is 31x24"):
        sources.get_source(str(tmp_path))
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "train/masks/train0.png")
    with pytest.raises(InvalidArgument, match="mode 'RGB'"):
        sources.get_source(str(tmp_path))


def test_voc_layout(tmp_path):
    rng = np.random.default_rng(1)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(tmp_path / folder)
    ids = {"train": ["2007_000032", "2007_000039"], "validation": ["2007_000033"]}
    written = {}
    for image_id in ids["train"] + ids["validation"]:
        mask = rng.integers(0, 21, (30, 44)).astype(np.uint8)
        mask[:, 0] = 255
        _palette_png(tmp_path / f"SegmentationClass/{image_id}.png", mask)
        Image.fromarray(rng.integers(0, 256, (30, 44, 3)).astype(np.uint8)).save(
            tmp_path / f"JPEGImages/{image_id}.jpg")
        written[image_id] = mask
    for split, name in (("train", "train.txt"), ("validation", "val.txt")):
        (tmp_path / "ImageSets/Segmentation" / name).write_text("\n".join(ids[split]) + "\n")
    source = sources.get_source(str(tmp_path))
    assert source.class_names == sources.VOC_CLASSES and len(source.class_names) == 21
    dataset, count = source.make("validation")
    (image_path, mask_path), = dataset.as_numpy_iterator()
    assert count == 1 and image_path.decode().endswith("2007_000033.jpg")
    np.testing.assert_array_equal(source.decode_mask(mask_path).numpy(), written["2007_000033"])
    with pytest.raises(data.MissingSplit, match="'test'"):
        source.make("test")
    images, masks = _first_batch(data.load(str(tmp_path), "validation", 1)[0])
    assert images.shape == (1, 44, 44, 3) and (masks[0, 30:] == 255).all()
    np.testing.assert_array_equal(masks[0, :30], written["2007_000033"])
