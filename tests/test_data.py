import ast
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_resnet import data
from keras_resnet.data import sources
from keras_resnet.errors import InvalidArgument
from keras_resnet.preprocessing import ImagePreprocessing


@pytest.fixture(autouse=True)
def _keras_home(tmp_path, monkeypatch):
    """Mean images are cached under $KERAS_HOME; keep them out of the real home."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def _arrays(dataset):
    images, labels = zip(*dataset.as_numpy_iterator())
    return np.concatenate(images), np.concatenate(labels)


def _hashes(images):
    return [hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]


def _shifted(image, dy, dx):
    """``image`` moved down ``dy`` and right ``dx`` pixels, zeros coming in."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    return padded[4 - dy : 4 - dy + height, 4 - dx : 4 - dx + width]


def _find_translation(augmented, original, allow_flip=True):
    """(dy, dx, flipped) with augmented == shifted(maybe mirrored original), or None."""
    for flipped in (False, True) if allow_flip else (False,):
        source = original[:, ::-1] if flipped else original
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                if np.array_equal(augmented, _shifted(source, dy, dx)):
                    return dy, dx, flipped
    return None


# Digits -------------------------------------------------------------------------------------


def test_digits_splits_are_disjoint_stratified_and_complete():
    seen, sizes = [], {}
    for split in ("train", "validation", "test"):
        dataset, info = data.load("digits", split, batch_size=256, training=False)
        images, labels = _arrays(dataset)
        assert images.shape == (info.num_examples, 32, 32, 3) and images.dtype == np.float32
        assert labels.dtype == np.int32 and set(labels) == set(range(10))  # stratified
        assert info.class_names == [str(i) for i in range(10)] and info.num_classes == 10
        assert info.image_shape == (32, 32, 3) and info.preprocessing.scale == pytest.approx(1 / 255)
        seen += _hashes(images)
        sizes[split] = len(images)
    assert sizes == {"train": 1293, "validation": 144, "test": 360}
    assert len(set(seen)) == len(seen) == 1797


def test_digits_training_split_is_mean_centred_and_matches_preprocess():
    dataset, info = data.load("digits", "train", batch_size=512, training=False)
    images, labels = _arrays(dataset)
    assert info.mean.shape == (32, 32, 3) and info.augmentation == "cifar"
    np.testing.assert_allclose(images.mean(axis=0), 0.0, atol=1e-5)
    assert images.std() > 0.1
    # The export helper redoes the pipeline from the raw 8x8 digits (0..16 -> uint8).
    raw, raw_labels, splits = sources.digits_arrays()
    index = splits["train"][:50]
    np.testing.assert_array_equal(labels[:50], raw_labels[index])
    np.testing.assert_allclose(data.preprocess(raw[index], info), images[:50], atol=1e-6)


def test_digits_augmentation_translates_without_flipping():
    plain, info = data.load("digits", "test", batch_size=64, training=False)
    # shuffle_buffer=1 keeps the order, so augmented and plain images line up.
    augmented, _ = data.load("digits", "test", batch_size=64, training=True, seed=1,
                             shuffle_buffer=1)
    originals, labels = next(plain.as_numpy_iterator())
    outputs, augmented_labels = next(augmented.as_numpy_iterator())
    assert outputs.shape == originals.shape == (64, 32, 32, 3)
    np.testing.assert_array_equal(labels, augmented_labels)
    shifts = [_find_translation(a, o, allow_flip=False) for a, o in zip(outputs, originals)]
    assert None not in shifts  # every output is its image moved by <= 4 px, never mirrored
    assert len({s[:2] for s in shifts}) > 10 and sum(s[:2] != (0, 0) for s in shifts) > 50
    assert info.horizontal_flip is False


def test_same_seed_gives_identical_batches():
    def batches(seed):
        dataset, _ = data.load("digits", "train", batch_size=32, seed=seed, deterministic=True)
        return [x for x, _ in dataset.take(3).as_numpy_iterator()]

    first, second, other = batches(5), batches(5), batches(6)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_deterministic_training_needs_a_seed():
    with pytest.raises(ValueError, match="needs a `seed`"):
        data.load("digits", "train", deterministic=True)


def test_input_context_shards_partition_the_split():
    whole, _ = data.load("digits", "test", batch_size=64, training=False)
    expected = sorted(_hashes(_arrays(whole)[0]))
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        dataset, _ = data.load("digits", "test", batch_size=64, training=False,
                               input_context=context)
        images, _ = _arrays(dataset)
        assert next(dataset.as_numpy_iterator())[0].shape[0] == 32  # per-replica batch
        shards.append(set(_hashes(images)))
    assert not shards[0] & shards[1]
    assert sorted(shards[0] | shards[1]) == expected


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="`split` 'val5k'.*'train', 'validation', 'test'"):
        data.load("digits", "val5k")
    with pytest.raises(ValueError, match="`augment` must be one of"):
        data.load("digits", augment="autoaugment")
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer; got 0"):
        data.load("digits", batch_size=0)
    with pytest.raises(TypeError, match="`input_context`"):
        data.load("digits", input_context=2)


# Augmentation and evaluation ops ------------------------------------------------------------


def test_cifar_augment_is_a_translation_by_at_most_4px_and_a_mirror():
    image = np.random.default_rng(0).normal(size=(32, 32, 3)).astype("float32")
    found = [
        _find_translation(data.cifar_augment(image, seed=[0, s]).numpy(), image)
        for s in range(40)
    ]
    assert None not in found
    assert {f[2] for f in found} == {False, True}  # flipped and not flipped
    assert len({f[:2] for f in found}) > 10


def test_imagenet_sides_scale_with_image_size():
    assert data.imagenet_sides(224) == ((256, 480), 256)
    assert data.imagenet_sides(64) == ((73, 137), 73)


def test_imagenet_augment_gives_a_square_crop_of_the_rescaled_image():
    image = np.full((75, 100, 3), 7, np.uint8)
    image[:, 50:] = 200  # left half dark, right half bright
    for s in range(5):
        crop = data.imagenet_augment(image, [1, s], image_size=32, flip=False).numpy()
        assert crop.shape == (32, 32, 3)
        assert crop.min() >= 7 - 1e-3 and crop.max() <= 200 + 1e-3


def _imagenet_info(**overrides):
    (sides, eval_side) = data.imagenet_sides(64)
    recipe = dict(image_size=(64, 64), resize="shorter_side", resize_size=eval_side,
                  mean=np.zeros(3), class_names=["a", "b"])
    recipe.update({k: overrides.pop(k) for k in list(overrides) if k in recipe})
    config = dict(
        name="test", split="test", num_examples=None,
        preprocessing=ImagePreprocessing(**recipe), augmentation="imagenet", padding=0,
        train_sides=sides,
    )
    config.update(overrides)
    return data.DatasetInfo(**config)


def test_imagenet_eval_is_an_exact_centre_crop():
    image = np.random.default_rng(1).integers(0, 256, (73, 100, 3)).astype(np.uint8)
    got = data.preprocess(image[None], _imagenet_info()).numpy()[0]
    expected = image[4:68, 18:82].astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # A twice as large image is resized to shorter side 73 first, then cropped.
    got = data.preprocess(np.zeros((1, 146, 200, 1), np.uint8), _imagenet_info(mean=[1, 2, 3]))
    np.testing.assert_allclose(got.numpy()[0], np.broadcast_to([-1, -2, -3], (64, 64, 3)))


def test_preprocess_traces_with_unknown_shapes_for_export():
    for info in (_imagenet_info(), data.load("digits", "test", batch_size=2)[1]):
        signature = [tf.TensorSpec([None, None, None, 3], tf.uint8)]
        function = tf.function(
            lambda x, info=info: data.preprocess(x, info), input_signature=signature
        )
        images = np.random.default_rng(3).integers(0, 256, (2, 40, 90, 3)).astype(np.uint8)
        got = function(images).numpy()
        assert got.shape == (2,) + info.image_shape
        np.testing.assert_allclose(got, data.preprocess(images, info).numpy())


def test_augment_image_follows_info():
    image = np.random.default_rng(4).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    info = _imagenet_info(mean=data.IMAGENET_MEAN)
    first = data.augment_image(image, [0, 1], info).numpy()
    assert first.shape == (64, 64, 3)
    np.testing.assert_array_equal(data.augment_image(image, [0, 1], info).numpy(), first)
    assert not np.array_equal(data.augment_image(image, [0, 2], info).numpy(), first)
    plain = data.augment_image(image, [0, 1], _imagenet_info(augmentation=None)).numpy()
    np.testing.assert_allclose(plain, data.preprocess(image[None], info).numpy()[0]
                               + np.asarray(data.IMAGENET_MEAN, np.float32), atol=1e-6)


def test_ten_crop_returns_corners_centre_and_mirrors():
    images = np.arange(2 * 6 * 7).reshape(2, 6, 7, 1).astype("float32")
    crops = data.ten_crop(images, 4).numpy()
    assert crops.shape == (20, 4, 4, 1)
    for i, image in enumerate(images):
        views = [image[:4, :4], image[:4, 3:], image[2:, :4], image[2:, 3:], image[1:5, 1:5]]
        views += [view[:, ::-1] for view in views]
        np.testing.assert_array_equal(crops[10 * i : 10 * i + 10], np.stack(views))
    predictions = np.repeat(np.eye(2, dtype="float32"), 10, axis=0)  # image-major rows
    np.testing.assert_allclose(data.average_crops(predictions), np.eye(2))


def test_pca_lighting_shifts_each_image_by_one_colour():
    image = np.random.default_rng(2).random((8, 8, 3)).astype("float32")
    shifted = data.pca_lighting(image, [0, 3]).numpy()
    shift = shifted - image
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-6)
    assert 1e-4 < np.abs(shift[0, 0]).max() < 0.2
    np.testing.assert_array_equal(data.pca_lighting(image, [0, 3]).numpy(), shifted)


def test_info_config_is_json_and_rebuilds_the_preprocessing():
    dataset, info = data.load("digits", "validation", batch_size=8, training=False)
    config = json.loads(json.dumps(info.to_config()))
    recipe = config["preprocessing"]
    assert recipe["class_names"] == info.class_names and recipe["image_size"] == [32, 32]
    assert recipe["resize"] == "direct" and np.asarray(recipe["mean"]).shape == (32, 32, 3)
    rebuilt = data.DatasetInfo.from_config(config)
    assert rebuilt.preprocessing == info.preprocessing and rebuilt.num_examples == 144
    raw, _, splits = sources.digits_arrays()
    images, _ = next(dataset.as_numpy_iterator())
    np.testing.assert_allclose(data.preprocess(raw[splits["validation"][:8]], rebuilt), images,
                               atol=1e-6)


def test_ten_crop_load_contract():
    dataset, info = data.load("digits", "test", batch_size=4, ten_crop=True)
    images, labels = next(dataset.as_numpy_iterator())
    assert images.shape == (40, 32, 32, 3) and labels.shape == (4,) and info.ten_crop
    plain, _ = data.load("digits", "test", batch_size=4)
    single, _ = next(plain.as_numpy_iterator())
    # CIFAR style: the centre crop of the padded image is the image itself (rows 4, 14, ...).
    np.testing.assert_array_equal(images[4::10], single)
    np.testing.assert_array_equal(images[9::10], single[:, :, ::-1])


# tensorflow-datasets (mocked: no network) ---------------------------------------------------


def test_tfds_cifar10_shapes_classes_and_cached_mean(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        expected_names = tfds.builder("cifar10").info.features["label"].names
        dataset, info = data.load("cifar10", "train", batch_size=4, seed=0, data_dir=tmp_path)
        images, labels = next(dataset.as_numpy_iterator())
        assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32
        assert labels.dtype == np.int32 and ((0 <= labels) & (labels < 10)).all()
        assert info.class_names == expected_names and info.augmentation == "cifar"
        assert info.mean.shape == (32, 32, 3)
        cached = list((tmp_path / "keras_resnet").glob("tfds_cifar10*_mean_32x32.npy"))
        assert len(cached) == 1
        np.testing.assert_array_equal(np.load(cached[0]), info.mean)
        evaluation, _ = data.load("cifar10", "test", batch_size=12, data_dir=tmp_path)
        images, _ = next(evaluation.as_numpy_iterator())
        np.testing.assert_allclose(images.mean(axis=0), 0.0, atol=1e-5)  # mock: test == train


def test_tfds_split_names_map_to_tfds_split_strings(tmp_path):
    assert data.tfds_split("cifar10", "train45k") == "train[:45000]"
    assert data.tfds_split("cifar10", "val5k") == "train[45000:]"
    assert data.tfds_split("cifar10", "train[:10%]") == "train[:10%]"
    with pytest.raises(ValueError, match="'validation'.*available: 'train', 'test', 'train45k'"):
        data.tfds_split("cifar10", "validation", available=["train", "test"])
    with pytest.raises(ValueError, match="45k/5k"):
        data.tfds_split("mnist", "val5k")

    requested = []

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        requested.append(split)
        image = tf.io.encode_png(tf.fill((32, 32, 3), tf.constant(9, tf.uint8)))
        example = {"image": image, "label": tf.constant(3, tf.int64), "id": tf.constant("x")}
        return tf.data.Dataset.from_tensors(example).repeat(4)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        for split in ("train45k", "val5k", "test", "train[:10%]"):
            dataset, info = data.load("cifar10", split, batch_size=2, data_dir=tmp_path)
            assert info.num_examples == 4 and len(list(dataset)) == 2
    assert requested == ["train", "train[:45000]", "train[45000:]", "test", "train[:10%]"]


def test_tfds_imagenet_style_train_eval_and_ten_crop(tmp_path):
    with tfds.testing.mock_data(num_examples=6):  # random sizes between 5 and 50 px
        train, info = data.load("imagenette", "train", batch_size=3, image_size=32, seed=0,
                                data_dir=tmp_path)
        assert info.augmentation == "imagenet" and info.train_sides == (37, 69)
        assert info.preprocessing.resize == "shorter_side" and info.preprocessing.resize_size == 37
        np.testing.assert_allclose(info.mean, data.IMAGENET_MEAN)
        assert info.class_names[0] == "n01440764" and info.num_classes == 10
        images, labels = next(train.as_numpy_iterator())
        assert images.shape == (3, 32, 32, 3) and labels.shape == (3,)
        crops, info = data.load("imagenette", "validation", batch_size=3, image_size=32,
                                ten_crop=True, data_dir=tmp_path)
        images, labels = next(crops.as_numpy_iterator())
        assert images.shape == (30, 32, 32, 3) and labels.shape == (3,)


def test_unknown_dataset_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither 'digits', an existing directory, nor a "
                                         "tensorflow-datasets dataset.*list_builders"):
        data.load("no_such_dataset_xyz")
    with pytest.raises(ValueError, match="no directory at"):
        data.load(str(tmp_path / "missing"))


# Image folders ------------------------------------------------------------------------------


def _sample_jpegs():
    import sklearn.datasets

    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jpg"))


def _save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_image_folder_with_train_test_layout(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _save(str(tmp_path / "train/b_gray/g.png"), gray)
    _save(str(tmp_path / "train/c_rgba/r.png"), rgba)
    _save(str(tmp_path / "train/a_rgb/x.png"), rgb)
    _save(str(tmp_path / "train/a_rgb/y.bmp"), rgb[::-1])
    _save(str(tmp_path / "test/a_rgb/z.png"), rgb[:, ::-1])
    dataset, info = data.load(str(tmp_path), "train", batch_size=8, training=False)
    images, labels = _arrays(dataset)
    assert info.class_names == ["a_rgb", "b_gray", "c_rgba"] and info.augmentation == "cifar"
    assert images.shape == (4, 32, 32, 3) and info.num_examples == 4
    np.testing.assert_array_equal(labels, [0, 0, 1, 2])  # sorted classes, sorted files
    pixels = np.round((images + info.mean) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels[0], rgb)
    np.testing.assert_array_equal(pixels[1], rgb[::-1])
    np.testing.assert_array_equal(pixels[2], np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(pixels[3], rgba[..., :3])
    test, _ = data.load(str(tmp_path), "test", batch_size=8)
    assert _arrays(test)[1].tolist() == [0]
    with pytest.raises(ValueError, match="`split` 'validation' does not exist.*'train', 'test'"):
        data.load(str(tmp_path), "validation")


def test_image_folder_hash_split_of_sample_jpegs(tmp_path):
    count = 0
    for source in _sample_jpegs():
        name = os.path.basename(source)[:-4]
        shutil.copy(source, tmp_path / f"{name}.jpg")
        picture = np.asarray(Image.open(source))
        for i in range(20):  # small crops: fast, and many files for the 80/10/10 split
            crop = picture[10 * i : 10 * i + 72, 15 * i : 15 * i + 96]
            _save(str(tmp_path / name / f"crop{i:02d}.jpg"), crop)
            count += 1
        shutil.move(str(tmp_path / f"{name}.jpg"), tmp_path / name / "full.jpg")
        count += 1
    seen, total = set(), 0
    for split in ("train", "validation", "test"):
        dataset, info = data.load(str(tmp_path), split, batch_size=64, training=False,
                                  image_size=32)
        images, labels = _arrays(dataset)
        assert images.shape[1:] == (32, 32, 3) and info.augmentation == "imagenet"
        assert info.class_names == ["china", "flower"] and set(labels) <= {0, 1}
        seen |= set(_hashes(images))
        total += len(images)
    assert total == count == 42 and len(seen) == 42
    train, _ = data.load(str(tmp_path), "train", batch_size=4, image_size=32, seed=0)
    assert next(train.as_numpy_iterator())[0].shape == (4, 32, 32, 3)


def test_image_folder_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="has no class subfolders"):
        data.load(str(tmp_path))
    _save(str(tmp_path / "cats/a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="class folder .*dogs' has no images"):
        data.load(str(tmp_path))
    (tmp_path / "dogs" / "broken.jpg").write_text("this is text, not a JPEG")
    _save(str(tmp_path / "dogs/b.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="1 of 3 image files .*cannot be decoded: .*broken.jpg"):
        data.load(str(tmp_path))
    with pytest.warns(UserWarning, match="broken.jpg"):
        _, info = data.load(str(tmp_path), "train", skip_unreadable=True)
    assert info.class_names == ["cats", "dogs"]


def test_a_pretrained_models_preprocessing_drives_the_pipeline(tmp_path):
    """Fine-tuning: images follow the weights' recipe (size, mean/std, BGR), the dataset's
    class names replace the recipe's."""
    rng = np.random.default_rng(4)
    photo = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    for name in ("cat", "dog"):
        _save(str(tmp_path / f"train/{name}/a.png"), photo)
        _save(str(tmp_path / f"test/{name}/a.png"), photo)
    recipe = ImagePreprocessing((64, 64), "shorter_side", 73, channel_order="bgr", scale=1.0,
                                mean=(100.0, 110.0, 120.0), std=(2.0, 4.0, 8.0),
                                class_names=[str(i) for i in range(1000)], source="weights")
    test, info = data.load(str(tmp_path), "test", batch_size=2, preprocessing=recipe)
    images, _ = next(test.as_numpy_iterator())
    assert info.class_names == ["cat", "dog"] and info.preprocessing.channel_order == "bgr"
    assert info.augmentation == "imagenet" and info.train_sides == data.imagenet_sides(64)[0]
    # The recipe by hand: shorter side to 73 (bilinear), centre 64 crop, BGR, (x - mean) / std.
    resized = tf.image.resize(photo.astype(np.float32), (73, 97)).numpy()
    top, left = (73 - 64) // 2, (97 - 64) // 2
    crop = resized[top:top + 64, left:left + 64, ::-1]
    np.testing.assert_allclose(images[0], (crop - [100, 110, 120]) / [2, 4, 8], atol=1e-3)
    train, train_info = data.load(str(tmp_path), "train", batch_size=2, seed=0,
                                  preprocessing=recipe)
    assert next(train.as_numpy_iterator())[0].shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="`image_size` 32 differs"):
        data.load(str(tmp_path), "test", batch_size=2, preprocessing=recipe, image_size=32)


# The package's layout -------------------------------------------------------------------------

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPOSITORY, "keras_resnet", "data")
# Each module of keras_resnet.data by level: it imports only modules of lower levels (a
# package's __init__ sits above the modules it gathers), so there is no import circle.
DATA_LEVELS = {
    "images": 0, "sources.base": 0, "sources.registry": 0, "holdout": 0,
    "sources.files": 1, "sources.digits": 1, "sources.tfds": 1, "means": 1,
    "augment.paper": 1, "augment.auto_augment": 1, "augment.mixing": 1, "augment.dense": 1,
    "augment.boxes": 1,
    "sources.folders": 2, "sources.labels_file": 2, "sources.canvases": 2, "augment.modern": 2,
    "sources.digit_scenes": 2, "sources.masks": 2, "sources.boxes": 2,
    "info": 2,
    "sources.digit_boxes": 2.5,
    "sources": 3, "augment": 3,
    "segmentation": 4,
    "detection": 4.5,
    "pipeline": 5,
    "": 6,
}


def _data_modules():
    """``{relative dotted name: path}`` of every module of keras_resnet.data ("" for its
    __init__)."""
    found = {}
    for directory, _, names in os.walk(DATA):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, DATA)[:-3].split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _data_imports(path, modules):
    """The keras_resnet.data modules ``path`` imports, anywhere in it (inside functions too)."""
    imported = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if node.module == "keras_resnet":
                names += [f"keras_resnet.{alias.name}" for alias in node.names]
        for name in names:
            if name == "keras_resnet.data" or name.startswith("keras_resnet.data."):
                relative = "" if name == "keras_resnet.data" else name[len("keras_resnet.data."):]
                if relative in modules:
                    imported.add(relative)
    return imported


def test_every_data_module_has_a_level_and_imports_only_lower_ones():
    modules = _data_modules()
    assert set(modules) == set(DATA_LEVELS), sorted(set(modules) ^ set(DATA_LEVELS))
    upward = [
        f"{name or '__init__'} imports {target or 'keras_resnet.data'}"
        for name, path in modules.items()
        for target in _data_imports(path, modules) - {name}
        if DATA_LEVELS[target] >= DATA_LEVELS[name]
    ]
    assert not upward, "\n".join(upward)
    # The registry and the Source record are the bottom of the sources: they import none.
    assert _data_imports(modules["sources.registry"], modules) == set()
    assert _data_imports(modules["sources.base"], modules) == set()


def test_data_functions_and_modules_stay_short():
    too_long = []
    for name, path in _data_modules().items():
        text = open(path, encoding="utf-8").read()
        if len(text.splitlines()) > 450:
            too_long.append(f"{path}: {len(text.splitlines())} lines")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                code = [
                    line for line in lines[body[0].lineno - 1:node.end_lineno]
                    if line.strip() and not line.strip().startswith("#")
                ] if body else []
                if len(code) + 1 > 60:  # with its def line
                    too_long.append(f"{name}.{node.name}: {len(code) + 1} lines of code")
    assert not too_long, "\n".join(too_long)


_IMPORT_EACH_ALONE = """
import importlib, multiprocessing, sys
import keras, numpy, PIL.Image, sklearn.datasets, sklearn.model_selection, tensorflow
import tensorflow_datasets
assert not [m for m in sys.modules if m.startswith("keras_resnet")]

def load(names):
    for name in names:
        importlib.import_module(name)

failed = []
names = sys.argv[1:]
context = multiprocessing.get_context("fork")
for order in [[name] for name in names] + [names[::-1]]:
    child = context.Process(target=load, args=(order,))
    child.start()
    child.join()
    if child.exitcode != 0:
        failed.append(order[0] if len(order) == 1 else "all, in reverse order")
print("FAILED:", failed)
sys.exit(1 if failed else 0)
"""


@pytest.mark.slow
def test_every_data_module_imports_first_in_a_fresh_interpreter():
    """Each module of keras_resnet.data imported first in a process with nothing of
    keras_resnet loaded (children forked from one interpreter that holds only TensorFlow and
    the other third-party packages, each a fresh keras_resnet), then all in reverse order:
    no import circle, whatever the order."""
    names = sorted("keras_resnet.data" + (f".{name}" if name else "") for name in _data_modules())
    environment = {**os.environ, "PYTHONPATH": REPOSITORY, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH_ALONE, *names], cwd=REPOSITORY,
                            env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FAILED: []" in result.stdout


# The registry of sources ----------------------------------------------------------------------


def test_the_registry_lists_every_source_and_finds_each_by_name_or_kind(tmp_path):
    assert sources.registered() == ("digit_boxes", "digit_canvases", "digit_scenes", "digits",
                                    "coco_json", "box_csv", "labels_file", "mask_folders",
                                    "folder", "tfds")
    assert sources.registered("dataset") == ("digit_boxes", "digit_canvases", "digit_scenes",
                                             "digits")
    (tmp_path / "cats").mkdir()
    for name, expected in [("digits", "digits"), ("digit_canvases", "digit_canvases"),
                           (str(tmp_path), "folder"), (tmp_path, "folder"),
                           (str(tmp_path / "labels.csv"), "labels_file"),
                           ("cifar10", "tfds"), ("imagenette/160px", "tfds")]:
        assert sources.lookup(name).name == expected, name
    for source in ("digits", "digit_canvases"):
        assert sources.get_source(source).name == source
    with pytest.raises(ValueError, match="`kind` must be None or one of dataset, kind"):
        sources.registered("source")


def test_the_registry_refuses_an_unknown_dataset_in_one_line_listing_what_is_allowed(tmp_path):
    allowed = ("'digit_boxes', 'digit_canvases', 'digit_scenes', 'digits', a COCO JSON file of "
               "boxes (*.json), a CSV of boxes (*.csv, six fields a row), a labels file (*.csv), "
               "a directory of images and masks, a directory of class folders, a "
               "tensorflow-datasets name")
    assert sources.allowed() == allowed
    missing = str(tmp_path / "missing")
    for name, reason in [(missing, "no directory at"), ("no_such_dataset_xyz", "list_builders")]:
        with pytest.raises(InvalidArgument) as error:
            data.load(name)
        message = str(error.value)
        assert "\n" not in message and repr(name) in message and reason in message
        assert message.endswith(f"allowed: {allowed}."), message
    with pytest.raises(InvalidArgument, match="`name` 'nope' is not registered"):
        sources.unregister("nope")
    with pytest.raises(TypeError, match="`make` must be callable"):
        sources.register("nope", None)


def test_a_registered_source_loads_like_the_others():
    def make(name, **options):
        return dataclasses.replace(sources.digits_source(), name=name, mean_key=name)

    sources.register("digits_again", make)
    try:
        assert "digits_again" in sources.registered("dataset")
        assert "'digits_again'" in sources.allowed()
        again, info = data.load("digits_again", "test", 512)
        expected, _ = data.load("digits", "test", 512)
        assert info.name == "digits_again" and info.num_examples == 360
        np.testing.assert_array_equal(_arrays(again)[0], _arrays(expected)[0])
    finally:
        sources.unregister("digits_again")
    assert "digits_again" not in sources.registered()


# The labels' format -----------------------------------------------------------------------------


def test_the_label_format_follows_the_task_and_the_recipe():
    from keras_resnet import recipes

    digits, canvases = sources.digits_source(), sources.canvas_source()
    modern, paper = recipes.get_recipe("torchvision_v2"), recipes.get_recipe("cifar")
    assert data.label_format(digits, "auto", None) == "sparse"
    assert data.label_format(digits, "single_label", paper) == "sparse"
    assert data.label_format(digits, "auto", modern) == "one_hot"
    assert data.label_format(digits, "multilabel", None) == "multi_hot"
    assert data.label_format(digits, "multilabel", modern) == "multi_hot"
    assert data.label_format(canvases, "auto", modern) == "multi_hot"
    with pytest.raises(ValueError, match="`task` 'single_label' needs one label per image"):
        data.label_format(canvases, "single_label", None)
    with pytest.raises(ValueError, match="`task` must be one of"):
        data.label_format(digits, "regression", None)
    labels = {fmt: next(data.load("digits", "test", 4, **kw)[0].as_numpy_iterator())[1]
              for fmt, kw in [("sparse", {}), ("one_hot", {"recipe": modern}),
                              ("multi_hot", {"task": "multilabel"})]}
    assert labels["sparse"].dtype == np.int32 and labels["sparse"].shape == (4,)
    for fmt in ("one_hot", "multi_hot"):
        assert labels[fmt].dtype == np.float32 and labels[fmt].shape == (4, 10)
        np.testing.assert_array_equal(labels[fmt], np.eye(10)[labels["sparse"]])


@pytest.mark.parametrize("recipe, size, resize", [
    (None, 224, 256), ("torchvision_v2", 224, 232),  # torchvision's --val-resize-size 232
    ("rsb_a1", 224, 235), ("rsb_a3", 224, 235), ("rsb_a3", 160, 168),  # timm: floor(size / 0.95)
])
def test_evaluation_resizes_as_the_recipe_says(tmp_path, recipe, size, resize):
    from keras_resnet.recipes import get_recipe

    with tfds.testing.mock_data(num_examples=2):
        _, info = data.load("imagenette", "validation", batch_size=2, image_size=size,
                            data_dir=tmp_path, recipe=recipe and get_recipe(recipe))
    assert info.preprocessing.resize == "shorter_side" and info.preprocessing.resize_size == resize
