"""ResNets as backbones: stage features (feature_extractor, feature_info), output_stride,
stochastic depth and dropout, the low-resolution stem and embeddings.

The stage outputs and dilated nets are compared with timm's and torchvision's own feature APIs
through the fixtures of tests/fixtures/make_backbone_fixtures.py (small nets, random weights
and BN statistics, odd input sizes), and at full size with torch itself when it is installed
(tests/fixtures/backbone_reference.py).
"""

import dataclasses
import glob
import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_resnet
from harness import digits_top1, relative_difference, torch_python
from keras_resnet import cli, export, preprocessing
from keras_resnet.architectures import Stage, Stem, imagenet_architecture
from keras_resnet.models import build_resnet

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TABLE_1_CHANNELS = {18: (64, 64, 128, 256, 512), 50: (64, 256, 512, 1024, 2048)}


def _randomize_batch_norms(model, seed=0):
    """Trained-looking BN statistics (fresh ones are 0 and 1 and hide mix-ups)."""
    rng = np.random.default_rng(seed)
    for layer in keras_resnet.models.walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c)])
    return model


def _images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# --- feature_info and feature_extractor -----------------------------------------------------


@pytest.mark.parametrize("depth", [18, 50])
def test_feature_info_follows_table_1(depth):
    model = keras_resnet.get_model(f"resnet{depth}", input_shape=(64, 64, 3))
    info = keras_resnet.feature_info(model)
    assert [f["name"] for f in info] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    assert tuple(f["channels"] for f in info) == TABLE_1_CHANNELS[depth]
    assert info[0]["layer"] == "conv1_relu" and info[-1]["layer"] == f"conv5_block{2 if depth == 18 else 3}"


def test_feature_info_of_cifar_nets_dilated_nets_and_the_low_resolution_stem():
    assert [(f["name"], f["channels"], f["reduction"]) for f in keras_resnet.feature_info(keras_resnet.ResNet20())] == [
        ("conv1", 16, 1), ("conv2", 16, 1), ("conv3", 32, 2), ("conv4", 64, 4)]
    for output_stride, expected in ((16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])):
        model = keras_resnet.ResNet18(input_shape=(64, 64, 3), output_stride=output_stride)
        assert [f["reduction"] for f in keras_resnet.feature_info(model)] == expected
    low = keras_resnet.ResNet18(input_shape=(32, 32, 3), stem="low_resolution")
    assert [f["reduction"] for f in keras_resnet.feature_info(low)] == [1, 1, 2, 4, 8]


def test_feature_extractor_gives_every_stage_at_its_reduction():
    model = _randomize_batch_norms(keras_resnet.ResNet50(input_shape=(45, 53, 3), classifier_activation=None))
    extractor = keras_resnet.feature_extractor(model)
    outputs = extractor(_images((2, 45, 53, 3)))
    assert list(outputs) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    for info in keras_resnet.feature_info(model):
        height, width = (-(-45 // info["reduction"]), -(-53 // info["reduction"]))
        assert tuple(outputs[info["name"]].shape) == (2, height, width, info["channels"])
    # The logits follow from conv5 through the model's own head: the extractor is the model.
    head = model.get_layer("predictions")
    logits = head(keras.ops.mean(outputs["conv5"], axis=(1, 2)))
    np.testing.assert_allclose(logits, model(_images((2, 45, 53, 3))), atol=1e-5, rtol=1e-5)


def test_feature_extractor_takes_keras_hub_pyramid_names_and_a_subset():
    extractor = keras_resnet.feature_extractor(keras_resnet.ResNet18(input_shape=(64, 64, 3)),
                                               stages=["P3", "conv5"])
    outputs = extractor(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"P3": (1, 8, 8, 128), "conv5": (1, 2, 2, 512)}
    assert extractor.name == "resnet18_features"


def test_feature_extractor_of_a_trained_model_loaded_from_keras_file(tiny_run):
    run_dir, _ = tiny_run
    model = keras_resnet.load_model(os.path.join(run_dir, "model.keras"))
    extractor = keras_resnet.feature_extractor(model)
    assert list(extractor.output) == ["conv1", "conv2", "conv3", "conv4"]
    images = _images((3, 32, 32, 3))
    conv4 = extractor(images)["conv4"]
    probabilities = model.get_layer("predictions")(keras.ops.mean(conv4, axis=(1, 2)))
    np.testing.assert_allclose(probabilities, model(images), atol=1e-6)


def test_feature_extractor_of_a_nested_backbone_shares_its_weights():
    """The usual fine-tuning shape: a headless ResNet inside a user's model."""
    backbone = keras_resnet.ResNet20(include_top=False, pooling="avg")
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, name="my_head")(backbone(inputs))
    user_model = keras.Model(inputs, outputs)
    extractor = keras_resnet.feature_extractor(user_model, stages=["conv4"])
    images = _images((2, 32, 32, 3))
    pooled = keras.ops.mean(extractor(images)["conv4"], axis=(1, 2))
    np.testing.assert_allclose(user_model.get_layer("my_head")(pooled), user_model(images), atol=1e-5)
    def depends_on_input():
        difference = extractor(images)["conv4"] - extractor(images * 2)["conv4"]
        return float(keras.ops.max(keras.ops.abs(difference))) > 0

    assert depends_on_input()
    # A zero conv1 in the user's model makes the extractor's features constant too.
    backbone.get_layer("conv1").kernel.assign(np.zeros(backbone.get_layer("conv1").kernel.shape))
    assert not depends_on_input()


@pytest.mark.parametrize("stages, message", [
    ("conv2", "`stages` must be None or a non-empty list"),
    ([], "`stages` must be None or a non-empty list"),
    (["conv5"], r"`stages` must name stages of the model: conv1, conv2, conv3, conv4 "
                r"\(or keras-hub's P2..P4\); got 'conv5'"),
])
def test_bad_stages_name_the_argument(stages, message):
    with pytest.raises(ValueError, match=message):
        keras_resnet.feature_extractor(keras_resnet.ResNet20(), stages=stages)


def test_a_model_that_is_not_a_resnet_is_refused():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="is not a keras_resnet network: it has no 'conv1_relu' layer"):
        keras_resnet.feature_info(model)
    with pytest.raises(TypeError, match="`model` must be a keras.Model; got str"):
        keras_resnet.feature_extractor("resnet50")


# --- against timm and torchvision -----------------------------------------------------------

BACKBONE_FIXTURES = sorted(os.path.basename(p)[len("backbone_"):-len(".npz")]
                           for p in glob.glob(os.path.join(FIXTURES, "backbone_*.npz")))
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def _reference_model(meta, weights):
    """The fixture's network (Table 1 with its widths), its weights loaded from the file."""
    block = str(meta["block"])
    base = imagenet_architecture(18 if block == "basic" else 50)
    stages = tuple(Stage(f"conv{i + 2}", int(r), int(f), 1 if i == 0 else 2)
                   for i, (r, f) in enumerate(zip(meta["repeats"], meta["filters"])))
    arch = dataclasses.replace(base, stem=Stem(int(meta["stem"]), 7, 2, 3, 2), stages=stages)
    output_stride = int(meta["output_stride"])
    return build_resnet(arch, weights=weights, input_shape=meta["input"].shape[1:],
                        classes=int(meta["classes"]), classifier_activation=None,
                        weight_decay=0, **({"stride_position": "3x3"} if block != "basic" else {}),
                        output_stride=None if output_stride == 32 else output_stride)


@pytest.mark.parametrize("name", BACKBONE_FIXTURES)
def test_stages_match_timm_and_torchvision_feature_apis(name):
    """Features (tv_*, timm_*), output_stride 16 and 8 (*_os16, *_os8: torchvision's
    replace_stride_with_dilation, timm's output_stride) and 1- and 4-channel conv1 adaptation
    (*_in1, *_in4: timm's adapt_input_conv), each within 1e-5 of the library's own outputs."""
    with np.load(os.path.join(FIXTURES, f"backbone_{name}.npz")) as f:
        meta = {k: f[k] for k in f.files}
    weights = os.path.join(FIXTURES, f"backbone_{meta['weights']}.safetensors")
    model = _reference_model(meta, weights)
    assert model.input_shape[-1] == int(meta["in_chans"])
    outputs = keras_resnet.feature_extractor(model)(meta["input"])
    for stage in STAGES:
        assert outputs[stage].shape == meta[stage].shape, stage
        assert relative_difference(outputs[stage], meta[stage]) < 1e-5, stage
    assert relative_difference(model(meta["input"]), meta["logits"]) < 1e-5
    info = {f["name"]: f["reduction"] for f in keras_resnet.feature_info(model)}
    assert info["conv5"] == int(meta["output_stride"])


def test_backbone_fixtures_cover_every_check():
    assert set(BACKBONE_FIXTURES) == {
        "tv_basic", "tv_bottleneck", "tv_bottleneck_os16", "tv_bottleneck_os8",
        "timm_basic", "timm_bottleneck", "timm_basic_os16", "timm_basic_os8",
        "timm_bottleneck_os16", "timm_bottleneck_os8", "timm_bottleneck_in1", "timm_bottleneck_in4"}


FULL_SIZE_CHECKS = [(check, depth) for check in ("features", "os16", "os8", "in1", "in4")
                    for depth in (18, 50)]


@pytest.mark.slow
@pytest.mark.parametrize("check, depth", FULL_SIZE_CHECKS, ids=[f"{c}-{d}" for c, d in FULL_SIZE_CHECKS])
def test_full_size_parity_with_timm_and_torchvision(check, depth, tmp_path):
    python = torch_python()
    script = os.path.join(FIXTURES, "backbone_reference.py")
    subprocess.run([python, script, check, str(depth), str(tmp_path)], check=True, timeout=600)
    images = np.load(tmp_path / "images.npy")
    output_stride = int(check[2:]) if check.startswith("os") else None
    model = keras_resnet.get_model(
        f"resnet{depth}", weights=str(tmp_path / "state.safetensors"), input_shape=images.shape[1:],
        classifier_activation=None, output_stride=output_stride,
        **({"stride_position": "3x3"} if depth == 50 else {}))
    outputs = keras_resnet.feature_extractor(model)(images)
    logits = model(images)
    references = [p for p in ("outputs.npz", "outputs_timm.npz", "outputs_torchvision.npz")
                  if (tmp_path / p).exists()]
    for reference in references:
        with np.load(tmp_path / reference) as expected:
            figures = {stage: relative_difference(outputs[stage], expected[stage]) for stage in STAGES}
            figures["logits"] = relative_difference(logits, expected["logits"])
        print(f"{check} resnet{depth} vs {reference}: " + ", ".join(f"{k} {v:.1e}" for k, v in figures.items()))
        assert max(figures.values()) < 1e-5, (reference, figures)


# --- output_stride --------------------------------------------------------------------------


def test_output_stride_dilates_the_later_stages_as_timm_and_torchvision_do():
    model = keras_resnet.ResNet50(input_shape=(64, 64, 3), output_stride=8)
    dilations = {layer.name: (layer.strides, layer.first_dilation_rate, layer.dilation_rate)
                 for layer in model.layers if hasattr(layer, "first_dilation_rate")}
    assert dilations["conv3_block1"] == (2, 1, 1)
    assert dilations["conv4_block1"] == (1, 1, 2)  # the first block keeps the previous dilation
    assert dilations["conv4_block2"] == (1, 2, 2)
    assert dilations["conv5_block1"] == (1, 2, 4)
    assert dilations["conv5_block3"] == (1, 4, 4)
    block = model.get_layer("conv5_block1")
    assert block.conv2.dilation_rate == (2, 2) and block.shortcut_conv.strides == (1, 1)
    assert model.get_layer("conv5_block3").output.shape[1:3] == (8, 8)
    basic = keras_resnet.ResNet18(input_shape=(64, 64, 3), output_stride=16).get_layer("conv5_block1")
    assert (basic.conv1.dilation_rate, basic.conv2.dilation_rate) == ((1, 1), (2, 2))


@pytest.mark.slow  # 2 s or more of its own
def test_a_dilated_net_takes_the_same_weights():
    standard = _randomize_batch_norms(keras_resnet.ResNet18(input_shape=(64, 64, 3)))
    for output_stride in (16, 8):
        dilated = keras_resnet.ResNet18(input_shape=(64, 64, 3), output_stride=output_stride)
        assert [w.shape for w in dilated.weights] == [w.shape for w in standard.weights]
        dilated.set_weights(standard.get_weights())
    images = _images((1, 64, 64, 3))
    # conv2 and conv3 are untouched by output_stride=8; conv4 and conv5 are not.
    ours = keras_resnet.feature_extractor(dilated)(images)
    theirs = keras_resnet.feature_extractor(standard)(images)
    np.testing.assert_allclose(ours["conv3"], theirs["conv3"], atol=1e-6)
    assert ours["conv5"].shape[1] == 8 and theirs["conv5"].shape[1] == 2


@pytest.mark.parametrize("build, message", [
    (lambda: keras_resnet.ResNet50(output_stride=4), r"`output_stride` must be one of \(8, 16, 32\); got 4"),
    (lambda: keras_resnet.ResNet50(output_stride="16"), "`output_stride` must be one of"),
    (lambda: keras_resnet.ResNet20(output_stride=8), r"larger than resnet20's own output stride \(4\)"),
    (lambda: keras_resnet.ResNet18(stem="low_resolution", output_stride=16), r"own output stride \(8\)"),
    (lambda: keras_resnet.ResNet20(stem="low_resolution"), "already keeps the input resolution"),
    (lambda: keras_resnet.ResNet18(stem="tiny"), r"`stem` must be one of \('standard', 'low_resolution', 'deep'\)"),
    (lambda: keras_resnet.ResidualBlock(8, strides=2, dilation_rate=2, shortcut="projection"),
     "A block either strides or dilates"),
])
def test_unsupported_strides_and_stems_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# --- the low-resolution stem ----------------------------------------------------------------


def test_low_resolution_stem_keeps_32x32_detail_with_the_same_weights():
    standard = _randomize_batch_norms(keras_resnet.ResNet18(input_shape=(32, 32, 3)))
    low = keras_resnet.ResNet18(input_shape=(32, 32, 3), stem="low_resolution")
    names = {layer.name for layer in low.layers}
    assert "pool1" not in names and low.get_layer("conv1").strides == (1, 1)
    assert low.get_layer("conv1").kernel.shape == (7, 7, 3, 64)
    low.set_weights(standard.get_weights())
    assert low.get_layer("conv5_block2").output.shape[1:3] == (4, 4)  # standard: 1x1
    assert standard.get_layer("conv5_block2").output.shape[1:3] == (1, 1)
    images = _images((2, 32, 32, 3))
    # The same conv1 filters, applied at every pixel instead of every other one.
    stride_1 = keras.Model(low.input, low.get_layer("conv1").output)(images)
    stride_2 = keras.Model(standard.input, standard.get_layer("conv1").output)(images)
    np.testing.assert_allclose(stride_1[:, ::2, ::2], stride_2, atol=1e-5)


# --- stochastic depth and dropout -----------------------------------------------------------


def test_drop_path_rates_grow_linearly_over_the_blocks():
    model = keras_resnet.ResNet50(input_shape=(64, 64, 3), drop_path_rate=0.3)
    blocks = [layer for layer in model.layers if hasattr(layer, "drop_path_rate")]
    assert len(blocks) == 16
    np.testing.assert_allclose([b.drop_path_rate for b in blocks], 0.3 * np.arange(16) / 15)
    assert not hasattr(blocks[0], "drop_path")  # rate 0: no layer at all
    copy = keras_resnet.BottleneckBlock.from_config(blocks[-1].get_config())
    assert copy.drop_path_rate == 0.3 and copy.get_config() == blocks[-1].get_config()


def test_a_block_drops_its_branch_per_sample_with_its_rate():
    keras.utils.set_random_seed(0)
    block = keras_resnet.ResidualBlock(4, drop_path_rate=0.25)
    x = np.abs(_images((4000, 2, 2, 4)))
    full = block(x, training=False)
    branch = np.asarray(block.branch_outputs(x)["residual"])
    trained = np.asarray(block(x, training=True))
    # Training BN normalises by the batch's statistics: the branch as training computes it.
    branch_trained = np.asarray(block.branch_outputs(x, training=True)["residual"])
    dropped = np.all(np.isclose(trained, np.maximum(x, 0), atol=1e-6), axis=(1, 2, 3))
    kept = np.all(np.isclose(trained, np.maximum(branch_trained / 0.75 + x, 0), atol=1e-5),
                  axis=(1, 2, 3))
    assert np.all(dropped | kept)  # each sample keeps or drops its whole branch
    assert 0.2 < dropped.mean() < 0.3  # 1000 of 4000 expected; 7 standard deviations each side
    np.testing.assert_allclose(full, np.maximum(branch + x, 0), atol=1e-5)


def test_stochastic_depth_and_dropout_are_identity_at_inference_and_in_exports(tmp_path, request):
    plain = _randomize_batch_norms(keras_resnet.ResNet20(classifier_activation=None))
    regularized = keras_resnet.ResNet20(classifier_activation=None, drop_path_rate=0.5, dropout=0.5)
    regularized.set_weights(plain.get_weights())
    images = _images((4, 32, 32, 3))
    expected = np.asarray(plain(images))
    np.testing.assert_array_equal(regularized(images), expected)
    assert regularized.get_layer("dropout").rate == 0.5
    path = tmp_path / "regularized.keras"
    keras_resnet.save_model(regularized, path)
    loaded = keras_resnet.load_model(path)
    assert loaded.get_layer("conv4_block3").drop_path_rate == 0.5
    np.testing.assert_array_equal(loaded(images), expected)
    if request.config.getoption("--all"):  # an export costs seconds: the end-to-end tier
        saved = export.export_saved_model(loaded, str(tmp_path / "exports"))
        served = tf.saved_model.load(saved).signatures["probabilities"](images=tf.constant(images))
        np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    # Training mode drops (last: it also moves the BN statistics).
    plain_training = np.asarray(plain(images, training=True))
    assert np.abs(np.asarray(regularized(images, training=True)) - plain_training).max() > 1e-2


@pytest.mark.parametrize("options, message", [
    ({"drop_path_rate": 1.0}, r"`drop_path_rate` must be a number in \[0, 1\); got 1.0"),
    ({"drop_path_rate": True}, r"`drop_path_rate` must be a number in \[0, 1\); got True"),
    ({"dropout": -0.1}, r"`dropout` must be a number in \[0, 1\); got -0.1"),
    ({"dropout": 0.2, "include_top": False}, "with include_top=False there is none"),
    ({"drop_path_rate": 0.1, "residual": False}, r"a plain net \(residual=False\) has none"),
])
def test_bad_rates_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        keras_resnet.ResNet20(**options)


# --- embeddings ------------------------------------------------------------------------------


@pytest.mark.slow
def test_embedding_model_gives_the_pooled_last_stage():
    model = _randomize_batch_norms(keras_resnet.ResNet18(input_shape=(64, 64, 3)))
    images = _images((2, 64, 64, 3))
    conv5 = keras_resnet.feature_extractor(model)(images)["conv5"]
    embedder = keras_resnet.embedding_model(model)
    assert embedder.output_shape == (None, 512) and embedder.name == "resnet18_embeddings"
    np.testing.assert_allclose(embedder(images), keras.ops.mean(conv5, axis=(1, 2)), atol=1e-5)
    headless = keras_resnet.ResNet18(input_shape=(64, 64, 3), include_top=False)
    headless.set_weights(model.get_weights()[:-2])
    np.testing.assert_allclose(keras_resnet.embedding_model(headless)(images), embedder(images), atol=1e-5)
    max_pooled = keras_resnet.ResNet18(input_shape=(64, 64, 3), include_top=False, pooling="max")
    max_pooled.set_weights(model.get_weights()[:-2])
    np.testing.assert_allclose(keras_resnet.embedding_model(max_pooled)(images),
                               keras.ops.max(conv5, axis=(1, 2)), atol=1e-5)


def _digit_pngs(folder, count=3):
    from keras_resnet.data.sources import digits_arrays

    images = digits_arrays()[0][:count]
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"digit{i}.png")
        Image.fromarray(np.asarray(image, np.uint8).squeeze()).resize((32, 32)).save(path)
        paths.append(path)
    return paths


def test_predict_embeddings_writes_npy_from_keras_and_savedmodel(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    images = _digit_pngs(str(tmp_path))
    out = tmp_path / "emb" / "digits.npy"
    (tmp_path / "emb").mkdir()
    assert cli.main(["predict", run_dir, *images, "--embeddings", str(out)]) == 0
    got = np.load(out)
    model, recipe = export.resolve_model(run_dir)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
    expected = keras_resnet.embedding_model(model)(keras_resnet.data.preprocess(pixels, recipe))
    assert got.shape == (3, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    saved_model, = glob.glob(os.path.join(run_dir, "export", "*", "*", "saved_model.pb"))
    saved_model = os.path.dirname(saved_model)  # what `keras-resnet train` exported
    # float32 asked for: "auto" may take bfloat16 on a CPU where the export measured it faster.
    from_saved_model = export.predict_files(saved_model, images, embeddings=True, precision="float32")
    np.testing.assert_allclose(from_saved_model, got, atol=1e-5)


def test_predict_embeddings_refuses_what_it_cannot_write(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    images = _digit_pngs(str(tmp_path), 1)
    assert cli.main(["predict", run_dir, *images, "--embeddings", str(tmp_path / "e.txt")]) == 2
    assert "`--embeddings` must name a .npy file; got" in capsys.readouterr().err
    assert cli.main(["predict", run_dir, *images, "--embeddings", "/proc/x/e.npy"]) == 2
    assert "--embeddings" in capsys.readouterr().err


@pytest.mark.slow
def test_export_writes_embeddings_models_that_predict_embeddings(tiny_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    run_dir, _ = tiny_run
    assert cli.main(["export", run_dir, "--format", "onnx", "--embeddings",
                     "--output-dir", str(tmp_path)]) == 0
    folder = tmp_path / "resnet8" / "onnx"
    model_file, embeddings_file = str(folder / "model_float32.onnx"), str(folder / "embeddings_float32.onnx")
    assert f"Embeddings: {embeddings_file}" in capsys.readouterr().out
    assert export.read_sidecar(embeddings_file)["outputs"] == "embeddings"
    images = _digit_pngs(str(tmp_path), 2)
    expected = export.predict_files(run_dir, images, embeddings=True)
    np.testing.assert_allclose(export.predict_files(embeddings_file, images, embeddings=True), expected, atol=1e-4)
    with pytest.raises(ValueError, match="outputs embeddings, not probabilities"):
        export.predict_files(embeddings_file, images)
    with pytest.raises(ValueError, match="outputs probabilities; embeddings come from"):
        export.predict_files(model_file, images, embeddings=True)


# --- grey and stacked inputs end to end ------------------------------------------------------


def test_a_grey_model_predicts_and_serves_colour_files(tmp_path, request):
    model = _randomize_batch_norms(keras_resnet.CifarResNet(8, input_shape=(32, 32, 1)))
    recipe = preprocessing.of(model)
    assert (recipe.channel_order, recipe.channels) == ("grey", 1)
    path = tmp_path / "grey.keras"
    keras_resnet.save_model(model, path)
    colour = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    # ITU-R 601 luma, rounded to uint8, then the model's own recipe.
    grey = np.round(colour.astype(np.float32) @ np.float32([0.2989, 0.587, 0.114]))[None, ..., None]
    expected = np.asarray(model(recipe.normalize(grey)))
    got = export.predict_files(str(path), [str(tmp_path / "colour.png")], top_k=10)[0]["top_k"]
    np.testing.assert_allclose(sorted(e["score"] for e in got), np.sort(expected[0]), atol=1e-5)
    if request.config.getoption("--all"):  # an export costs seconds: the end-to-end tier
        saved = export.export_saved_model(str(path), str(tmp_path / "exports"))
        with open(tmp_path / "colour.png", "rb") as f:
            encoded = tf.constant([f.read()])
        served = tf.saved_model.load(saved).signatures["serving_bytes"](image_bytes=encoded)
        np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    batches, info = keras_resnet.data.load("digits", "train", 16, preprocessing=recipe, seed=0)
    assert info.image_shape == (32, 32, 1) and next(iter(batches))[0].shape == (16, 32, 32, 1)



@pytest.mark.slow
def test_a_grey_model_fine_tunes_on_the_digits(tmp_path):
    from keras_resnet import runs

    path = tmp_path / "grey.keras"
    keras_resnet.save_model(keras_resnet.CifarResNet(8, input_shape=(32, 32, 1)), path)
    result = runs.fine_tune(dataset="digits", weights=str(path), run_dir=str(tmp_path / "run"),
                            epochs=2, head_epochs=1, unfreeze="all", batch_size=64, export=False,
                            verbose=0)
    tuned = keras_resnet.load_model(tmp_path / "run" / "model.keras")
    assert tuned.input_shape == (None, 32, 32, 1) and preprocessing.of(tuned).channel_order == "grey"
    top1, examples = digits_top1(tuned)  # numpy's count, within one near-tied example
    assert result["test"]["top1"] == pytest.approx(top1, abs=1 / examples + 1e-9)
    assert result["test"]["top1"] == pytest.approx(
        tuned.evaluate(keras_resnet.data.load("digits", "test", 128, preprocessing=preprocessing.of(tuned))[0],
                       verbose=0, return_dict=True)["top1"], abs=1e-6)


def test_a_stacked_four_channel_model_takes_rgba_files_and_refuses_rgb_arrays(tmp_path):
    model = keras_resnet.CifarResNet(8, input_shape=(32, 32, 4))
    recipe = preprocessing.of(model)
    assert (recipe.channel_order, recipe.channels) == ("stacked", 4)
    path = tmp_path / "rgbd.keras"
    keras_resnet.save_model(model, path)
    rgba = np.random.default_rng(0).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgbd.png")
    got = export.predict_files(str(path), [str(tmp_path / "rgbd.png")], top_k=10)[0]["top_k"]
    expected = np.asarray(model(recipe.normalize(rgba[None].astype(np.float32))))[0]
    np.testing.assert_allclose(sorted(e["score"] for e in got), np.sort(expected), atol=1e-5)
    with pytest.raises(ValueError, match="The model takes 4 stacked channels; got images of shape"):
        keras_resnet.data.preprocess(np.zeros((1, 32, 32, 3), np.uint8), recipe)
    with pytest.raises(ValueError, match=r"`std` must hold 4 value\(s\) per pixel for channel_order=.stacked."):
        preprocessing.ImagePreprocessing(32, channel_order="stacked", mean=(0.0,) * 4, std=(1.0,) * 3)
