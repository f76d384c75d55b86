"""Grad-CAM (keras_resnet.explain) against keras.io's recipe, on digits and on real photos; the
map follows the digit; overlays, the command line, and every refusal."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import keras_resnet
from harness import randomise_batch_norm
from keras_resnet import cli, data, explain, preprocessing
from keras_resnet.errors import InvalidArgument

# Our maps against keras.io's recipe on the same weights: both scaled to a peak of 1.
RECIPE_TOLERANCE = 1e-5


def keras_io_grad_cam(model, layer_name, image, class_index):
    """keras.io's "Grad-CAM class activation visualization" recipe, as it is written there: a
    model with two outputs, a GradientTape, the gradients' mean per channel, ReLU, divide by
    the peak. The model's last activation must be None (the recipe sets it so)."""
    import tensorflow as tf

    grad_model = keras.Model(model.input, [model.get_layer(layer_name).output, model.output])
    with tf.GradientTape() as tape:
        conv_output, predictions = grad_model(image[None])
        class_channel = predictions[:, class_index]
    grads = tape.gradient(class_channel, conv_output)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(conv_output[0] @ pooled[..., tf.newaxis])
    return (tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)).numpy()


def _logits_copy(model):
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.layers[-1].activation = keras.activations.linear
    return copy


@pytest.fixture(scope="module")
def digits_model(tiny_run):
    run_dir, _ = tiny_run
    return keras.saving.load_model(os.path.join(run_dir, "model.keras"))


def _digit_images(count, offset=0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.kron(digits.images[offset:offset + count] / 16.0 * 255, np.ones((1, 4, 4)))
    return np.round(pixels).astype(np.uint8), digits.target[offset:offset + count]


def _preprocessed(model, grey):
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(data.preprocess(rgb, preprocessing.of(model)))


def test_maps_equal_keras_io_recipe_on_digits(digits_model):
    images, labels = _digit_images(6)
    batch = _preprocessed(digits_model, images)
    cam = explain.grad_cam(digits_model, batch, class_index=labels)
    assert cam.stage == "conv4" and cam.maps.shape == (6, 8, 8) and cam.heatmaps.shape == (6, 32, 32)
    reference_model = _logits_copy(digits_model)
    for i in range(6):
        reference = keras_io_grad_cam(reference_model, cam.layer, batch[i], labels[i])
        np.testing.assert_allclose(cam.maps[i] / cam.maps[i].max(), reference, atol=RECIPE_TOLERANCE)
    # The top class by default, and its score is the model's output.
    top = explain.grad_cam(digits_model, batch)
    probabilities = digits_model.predict(batch, verbose=0)
    np.testing.assert_array_equal(top.class_indices, probabilities.argmax(-1))
    np.testing.assert_allclose(top.scores, probabilities.max(-1), rtol=1e-6)


@pytest.mark.slow
def test_maps_equal_keras_io_recipe_on_keras_applications_resnet50_and_photos():
    """keras.applications' ResNet-50 (random weights, random BN statistics) and its keras_resnet
    conversion, on three of scikit-image's photos, at keras.io's layer conv5_block3_out."""
    skimage_data = pytest.importorskip("skimage.data")
    keras.utils.set_random_seed(0)
    reference = randomise_batch_norm(keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)))
    ours = keras_resnet.from_keras_applications(reference)
    photos = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut()]
    batch = np.concatenate([np.asarray(data.preprocess(p[None], preprocessing.of(ours))) for p in photos])
    # Each photo's top two classes (keras.io's recipe divides by the peak: a class no position
    # raises has no map to compare).
    ranked = np.argsort(-ours.predict(batch, verbose=0), axis=-1)
    reference.layers[-1].activation = None
    for rank in (0, 1):
        cam = explain.grad_cam(ours, batch, class_index=ranked[:, rank])
        assert cam.maps.shape == (3, 7, 7) and cam.stage == "conv5" and cam.maps.max(axis=(1, 2)).min() > 0
        for i, photo_class in enumerate(ranked[:, rank]):
            expected = keras_io_grad_cam(reference, "conv5_block3_out", batch[i], photo_class)
            np.testing.assert_allclose(cam.maps[i] / cam.maps[i].max(), expected, atol=RECIPE_TOLERANCE)


def _shifted(images, pixels):
    out = np.zeros_like(images)
    if pixels > 0:
        out[:, :, pixels:] = images[:, :, :-pixels]
    else:
        out[:, :, :pixels] = images[:, :, -pixels:]
    return out


def test_the_hot_region_moves_with_the_digit(digits_model):
    """100 test digits, each 4 px left and 4 px right of centre: the heatmap's centre of mass
    moves right by about the 8 px shift (measured median 5.0 px; 89% move right)."""
    images, labels = _digit_images(100, offset=1697)
    left, right = (explain.grad_cam(digits_model, _preprocessed(digits_model, _shifted(images, s)),
                                    class_index=labels).heatmaps for s in (-4, 4))
    columns = np.arange(32)[None, None]

    def centre(heatmaps):
        return (heatmaps * columns).sum((1, 2)) / np.maximum(heatmaps.sum((1, 2)), 1e-9)

    moved = centre(right) - centre(left)
    assert np.median(moved) > 2.5, np.median(moved)
    assert np.mean(moved > 0) > 0.7, np.mean(moved > 0)


def test_any_stage_mixed_precision_and_a_new_head():
    keras.utils.set_random_seed(0)
    model = randomise_batch_norm(keras_resnet.ResNet20())
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    base = explain.grad_cam(model, images)
    for stage, size in (("conv2", 32), ("conv3", 16), ("P4", 8)):
        cam = explain.grad_cam(model, images, stage=stage)
        assert cam.maps.shape == (2, size, size) and cam.heatmaps.shape == (2, 32, 32)
        assert cam.heatmaps.max() == pytest.approx(1.0) and cam.heatmaps.min() >= 0
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = keras_resnet.ResNet20()
    keras.config.set_dtype_policy("float32")
    mixed.set_weights(model.get_weights())
    cam = explain.grad_cam(mixed, images)
    np.testing.assert_array_equal(cam.class_indices, base.class_indices)
    assert np.abs(cam.heatmaps - base.heatmaps).max() < 0.05  # bfloat16 keeps 8 bits
    # A fine-tuning head on the pooled features: its own Dense explains.
    backbone = keras_resnet.ResNet20(include_top=False, pooling="avg")
    head = keras.layers.Dense(3, activation="sigmoid", name="tags")(backbone.output)
    tagged = keras.Model(backbone.input, head)
    cam = explain.grad_cam(tagged, images, class_index=[2, 0])
    np.testing.assert_array_equal(cam.class_indices, [2, 0])
    assert cam.scores.shape == (2,) and np.all((cam.scores > 0) & (cam.scores < 1))
    # Any input size where the model takes any: the map comes back at the images' size.
    open_size = keras_resnet.ResNet20(include_top=False, pooling="avg", input_shape=(None, None, 3))
    any_size = keras.Model(open_size.input, keras.layers.Dense(3)(open_size.output))
    cam = explain.grad_cam(any_size, np.zeros((1, 40, 24, 3), np.float32))
    assert cam.heatmaps.shape == (1, 40, 24) and cam.maps.shape == (1, 10, 6)


def test_refusals_name_the_argument():
    model = keras_resnet.ResNet20()
    images = np.zeros((1, 32, 32, 3), np.float32)
    cases = [
        (dict(stage="conv5"), "`stage` must name a stage of the model: conv1, conv2, conv3, conv4"),
        (dict(class_index=10), "`class_index` must be None (the top class), a class id in 0..9"),
        (dict(class_index=[1, 2]), "one per image (1)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
            explain.grad_cam(model, images, **kwargs)
    with pytest.raises(InvalidArgument, match=r"`images` must be \(n, 32, 32, 3\)"):
        explain.grad_cam(model, np.zeros((32, 32, 3)))
    wrapped = keras.Sequential([keras.Input((32, 32, 3)), model])
    with pytest.raises(InvalidArgument, match="nested model"):
        explain.grad_cam(wrapped, images)
    pooled = keras_resnet.ResNet20(include_top=False, pooling="avg")
    with pytest.raises(InvalidArgument, match="must end in a Dense layer"):
        explain.grad_cam(pooled, images)
    with pytest.raises(InvalidArgument, match="`alpha` must be a number in"):
        explain.overlay(np.zeros((4, 4, 3)), np.zeros((2, 2)), alpha=2)


def test_overlay_blends_at_the_images_size():
    image = np.full((20, 30), 100, np.uint8)
    heatmap = np.zeros((5, 5), np.float32)
    assert explain.overlay(image, heatmap, alpha=0).tolist() == np.full((20, 30, 3), 100).tolist()
    hot = explain.overlay(image, np.ones((5, 5)), alpha=1.0)
    assert hot.shape == (20, 30, 3) and hot.dtype == np.uint8
    assert tuple(hot[0, 0]) == (128, 0, 0)  # jet's hottest: dark red
    cold = explain.overlay(image, heatmap, alpha=1.0)
    assert tuple(cold[0, 0]) == (0, 0, 128)  # and coldest: dark blue


def test_cli_writes_an_overlay_of_the_original_photo(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    images, _ = _digit_images(2)
    paths = []
    for i, (folder, size) in enumerate((("a", (48, 40)), ("b", (32, 32)))):
        os.makedirs(tmp_path / folder)
        path = str(tmp_path / folder / "digit.png")  # the same name twice
        Image.fromarray(images[i]).resize(size[::-1]).save(path)
        paths.append(path)
    out = tmp_path / "explained"
    assert cli.main(["predict", run_dir, *paths, "--json", "--explain", str(out)]) == 0
    results = json.loads(capsys.readouterr().out)
    overlays = [r["explanation"]["overlay"] for r in results]
    assert [os.path.basename(p) for p in overlays] == ["digit_gradcam.png", "digit_2_gradcam.png"]
    for result, size in zip(results, ((48, 40), (32, 32))):
        with Image.open(result["explanation"]["overlay"]) as written:
            assert written.format == "PNG" and written.size == size[::-1] and written.mode == "RGB"
        assert result["explanation"]["label"] == result["top_k"][0]["label"]
        assert result["explanation"]["stage"] == "conv4"
    assert cli.main(["predict", run_dir, paths[0], "--explain", str(out), "--stage", "conv3"]) == 0
    assert "Grad-CAM of" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["model.tflite", "--explain", "out"], "Grad-CAM needs the Keras model"),
    (["{run}", "--explain", "out", "--embeddings", "e.npy"], "does not go with `--embeddings`"),
    (["{run}", "--explain", "out", "--stage", "conv9"], "`stage` must name a stage"),
    (["{run}", "--stage", "conv3"], "give `--explain DIR` with it"),
])
def test_cli_refuses_what_it_cannot_explain(tiny_run, tmp_path, capsys, args, message):
    run_dir, _ = tiny_run
    image = str(tmp_path / "digit.png")
    Image.fromarray(_digit_images(1)[0][0]).save(image)
    (tmp_path / "model.tflite").write_bytes(b"not a model")
    args = [a.replace("{run}", run_dir) for a in args]
    model, rest = (str(tmp_path / args[0]) if not os.path.isabs(args[0]) else args[0]), args[1:]
    rest = [str(tmp_path / a) if a in ("out", "e.npy") else a for a in rest]
    assert cli.main(["predict", model, image, *rest]) == 2
    assert message in capsys.readouterr().err


def test_heatmap_goes_back_where_the_centre_crop_came_from():
    # A 300x400 photo, shorter side to 256 (ratio 256/300), 256x341, a 224x224 centre crop from
    # (16, 58): rows 19..280 and columns 68..329 of the photo (262 = 224 * 300/256 pixels).
    prep = preprocessing.ImagePreprocessing((224, 224), "shorter_side", 256)
    placed = explain.heatmap_on_image(np.ones((224, 224), np.float32), (300, 400), prep)
    assert placed.shape == (300, 400) and placed.sum() == 262 * 262
    assert placed[19:281, 68:330].min() == 1 and placed[18, 68] == placed[19, 67] == 0
    assert placed[281, 329] == placed[280, 330] == 0
    # "direct" resizes the whole map back.
    direct = explain.heatmap_on_image(np.ones((32, 32), np.float32), (48, 40), preprocessing.ImagePreprocessing(32))
    assert direct.shape == (48, 40) and direct.min() == 1


JAX_SCRIPT = """
import sys
import keras, numpy as np
from keras_resnet import explain
model = keras.saving.load_model(sys.argv[1])
cam = explain.grad_cam(model, np.load(sys.argv[2]), class_index=np.load(sys.argv[3]))
np.save(sys.argv[4], cam.maps)
print(keras.backend.backend())
"""


@pytest.mark.slow
def test_maps_equal_on_jax(digits_model, tiny_run, tmp_path):
    pytest.importorskip("jax")
    images, labels = _digit_images(4)
    batch = _preprocessed(digits_model, images)
    np.save(tmp_path / "x.npy", batch)
    np.save(tmp_path / "y.npy", labels)
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, os.path.join(tiny_run[0], "model.keras"),
         str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), str(tmp_path / "maps.npy")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0 and result.stdout.split()[-1] == "jax", result.stderr[-3000:]
    on_tensorflow = explain.grad_cam(digits_model, batch, class_index=labels).maps
    on_jax = np.load(tmp_path / "maps.npy")
    np.testing.assert_allclose(on_jax, on_tensorflow, atol=1e-4 * on_tensorflow.max())
