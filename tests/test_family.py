"""The family that grew from the paper: ResNeXt, Wide ResNet, ResNet-D, SE-ResNet and the
pre-activation (v2) nets, as options of the two blocks, checked against timm, torchvision and
keras.applications (tests/fixtures/make_family_fixtures.py; keras.applications' V2 nets are
checked live in tests/test_weights.py), and each named constructor through the harness
(tests/test_constructors.py).
"""

import dataclasses
import glob
import os
import re
import subprocess

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

import keras_resnet
from harness import preact_cifar_params, relative_difference, shapes_only, torch_python
from keras_resnet import architectures
from keras_resnet.architectures import (
    DEEP_STEM,
    Stage,
    Stem,
    family_architecture,
    imagenet_architecture,
)
from keras_resnet.blocks import BottleneckBlock, ResidualBlock, se_channels
from keras_resnet.models import build_resnet
from keras_resnet.summary import PAPER_FIGURES, count_multiply_adds, count_trainable_params
from keras_resnet.weights import load_tensors, to_torch_layout, torch_slots

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FAMILY_FIXTURES = sorted(os.path.basename(p)[len("family_"):-len(".npz")]
                         for p in glob.glob(os.path.join(FIXTURES, "family_*.npz")))
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def _meta(name):
    with np.load(os.path.join(FIXTURES, f"family_{name}.npz")) as f:
        return {k: f[k] for k in f.files}


def _fixture_architecture(meta):
    """The fixture's network: Table 1's layout with its widths and the family's options."""
    basic = str(meta["block"]) == "basic"
    base = imagenet_architecture(18 if basic else 50)
    stages = tuple(Stage(f"conv{i + 2}", int(r), int(f), 1 if i == 0 else 2)
                   for i, (r, f) in enumerate(zip(meta["repeats"], meta["filters"])))
    width = int(meta["stem_width"])
    stem = (dataclasses.replace(DEEP_STEM, filters=2 * width, deep_widths=(width, width))
            if int(meta["deep_stem"]) else Stem(int(meta["stem"]), 7, 2, 3, 2))
    return dataclasses.replace(
        base, stem=stem, stages=stages, variant="fixture", groups=int(meta["groups"]),
        base_width=int(meta["base_width"]), se_ratio=1 / 16 if int(meta["se"]) else 0.0,
        avg_down=bool(int(meta["avg_down"])), stride_position="3x3",
    )


def _fixture_model(meta):
    output_stride = int(meta["output_stride"])
    model = build_resnet(
        _fixture_architecture(meta), input_shape=meta["input"].shape[1:],
        classes=int(meta["classes"]), classifier_activation=None, weight_decay=0,
        output_stride=None if output_stride == 32 else output_stride,
    )
    tensors = load_file(os.path.join(FIXTURES, f"family_{meta['weights']}.safetensors"))
    return load_tensors(model, tensors, "torch", source=str(meta["weights"]))


def test_family_fixtures_cover_every_variant():
    assert set(FAMILY_FIXTURES) == {"resnext", "wide", "d_basic", "d_bottleneck",
                                    "d_bottleneck_os8", "se_basic", "se_bottleneck"}


@pytest.mark.parametrize("name", FAMILY_FIXTURES)
def test_stages_and_logits_match_timm(name):
    """ResNeXt (groups 4), Wide (base width 128), ResNet-D (deep stem, average-pool shortcut,
    odd 45x53 input, and dilated at output stride 8), SE (basic and bottleneck): every stage and
    the logits within 1e-5 of timm's own outputs with the same weights."""
    meta = _meta(name)
    model = _fixture_model(meta)
    outputs = keras_resnet.feature_extractor(model)(meta["input"])
    for stage in STAGES:
        assert outputs[stage].shape == meta[stage].shape, stage
        assert relative_difference(outputs[stage], meta[stage]) < 1e-5, stage
    assert relative_difference(model(meta["input"]), meta["logits"]) < 1e-5
    if int(meta["se"]):  # timm's reduced width in every block of every stage
        for stage, reduced in enumerate(meta["se_channels"]):
            blocks = [layer for layer in model.layers if layer.name.startswith(f"conv{stage + 2}_block")]
            assert blocks and {b.se_reduce.filters for b in blocks} == {int(reduced)}, stage


@pytest.mark.parametrize("name", [n for n in FAMILY_FIXTURES if not n.endswith("_os8")])
def test_to_torch_layout_writes_the_reference_state_dict(name, tmp_path):
    """The written file has exactly timm's keys and shapes (what load_state_dict(strict=True)
    checks), and its tensors are the ones loaded."""
    meta = _meta(name)
    model = _fixture_model(meta)
    path = to_torch_layout(model, str(tmp_path / "state.safetensors"))
    written = load_file(path)
    reference = load_file(os.path.join(FIXTURES, f"family_{meta['weights']}.safetensors"))
    assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in reference.items()}
    for key, value in reference.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(written[key], value.astype(np.float32), err_msg=key)


# --- blocks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("block, options", [
    (BottleneckBlock, {"groups": 32, "base_width": 4, "stride_position": "3x3"}),
    (BottleneckBlock, {"base_width": 128}),
    (BottleneckBlock, {"se_ratio": 0.25, "preactivation": True}),
    (ResidualBlock, {"se_ratio": 1 / 16, "avg_down": True}),
    (ResidualBlock, {"preactivation": True}),
])
def test_family_options_round_trip_through_config_and_keras_files(block, options, tmp_path):
    shortcut = "projection"
    layer = block(32, strides=2, shortcut=shortcut, **options)
    x = np.random.default_rng(0).normal(size=(2, 9, 11, 64)).astype("float32")
    y = layer(x)
    config = layer.get_config()
    for key, value in options.items():
        assert config[key] == value
    clone = block.from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), y, atol=1e-6)
    model = keras.Sequential([keras.Input((9, 11, 64)), layer])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x), y, atol=1e-6)


def test_a_grouped_bottleneck_has_the_resnext_width_and_cost():
    """Xie et al. 2017, Fig. 3(c): 32 groups of 4 channels at 64 planes: a 128-wide 3x3 whose
    weights are 1/32 of a dense one's."""
    block = BottleneckBlock(64, groups=32, base_width=4, shortcut="projection", stride_position="3x3")
    block.build((None, 56, 56, 64))
    assert block.width == 128 and block.conv2.kernel.shape == (3, 3, 4, 128)
    dense = BottleneckBlock(64, base_width=128, shortcut="projection")
    dense.build((None, 56, 56, 64))
    saved = dense.multiply_adds((1, 56, 56, 64)) - block.multiply_adds((1, 56, 56, 64))
    assert saved == 56 * 56 * 9 * 128 * 128 * (1 - 1 / 32)


def test_squeeze_and_excitation_scales_each_channel_of_the_branch():
    block = ResidualBlock(8, shortcut="identity", se_ratio=0.5)
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 8)).astype("float32")
    block(x)
    outputs = block.branch_outputs(x)
    bn2 = outputs["bn2"]
    scale = keras.ops.sigmoid(block.se_expand(keras.ops.relu(
        block.se_reduce(keras.ops.mean(bn2, axis=(1, 2), keepdims=True)))))
    np.testing.assert_allclose(outputs["residual"], bn2 * scale, atol=1e-6)
    assert se_channels(256, 1 / 16) == 16 and se_channels(2048, 1 / 16) == 128
    assert se_channels(24, 1 / 16) == 8  # never below 8 (timm's make_divisible)


def test_a_pre_activation_block_normalizes_first_and_adds_last():
    block = BottleneckBlock(4, shortcut="projection", preactivation=True)
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 8)).astype("float32")
    # He et al. 2016, Eq. 3: x_{l+1} = h(x_l) + F(x_l): no ReLU after the sum (it goes negative).
    y = block(x, training=False)
    outputs = block.branch_outputs(x, training=False)
    np.testing.assert_allclose(y, outputs["residual"] + outputs["shortcut"], atol=1e-6)
    assert float(keras.ops.min(y)) < 0
    assert not hasattr(block, "bn3") and block.conv3.use_bias and block.shortcut_conv.use_bias


@pytest.mark.parametrize("build, message", [
    (lambda: ResidualBlock(8, groups=2), "ResidualBlock has no grouped"),
    (lambda: BottleneckBlock(4, groups=4, base_width=4), "`base_width=4` leaves no channel"),
    (lambda: BottleneckBlock(8, avg_down=True), "`avg_down=True`.*got shortcut='identity'"),
    (lambda: BottleneckBlock(8, shortcut="projection", avg_down=True, preactivation=True),
     "`avg_down=True`"),
    (lambda: ResidualBlock(8, preactivation=True, zero_init_residual=True),
     "`zero_init_residual=True`.*pre-activation"),
    (lambda: ResidualBlock(8, se_ratio=1.5), "`se_ratio`"),
    (lambda: ResidualBlock(8, preactivation="yes"), "`preactivation` must be True or False"),
    (lambda: keras_resnet.ResNeXt50_32x4d(residual=False), "no plain counterpart"),
    (lambda: keras_resnet.ResNet50V2(output_stride=16), "strides in its stages' last blocks"),
    (lambda: keras_resnet.PreActResNet110(zero_init_residual=True), "`zero_init_residual=True`"),
    (lambda: keras_resnet.SEResNet101(weights="imagenet"), "'seresnet101' has no published"),
    (lambda: keras_resnet.PreActResNet164(weights="imagenet"), "ImageNet nets only"),
    (lambda: keras_resnet.ResNet50D(weights="timm_tv_in1k"), "no weight set of resnet50d"),
])
def test_unsupported_combinations_raise_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.slow
def test_layouts_without_a_counterpart_are_refused(tmp_path):
    v2 = keras_resnet.ResNet50V2(input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="pre-activation.*'torch' layout"):
        to_torch_layout(v2, str(tmp_path / "v2.safetensors"))
    with pytest.raises(ValueError, match="keras-hub layout holds keras-hub's ResNet v1"):
        keras_resnet.weights.keras_hub_slots(keras_resnet.SEResNet50(input_shape=(64, 64, 3)))
    assert not (tmp_path / "v2.safetensors").exists()


# --- the named constructors -----------------------------------------------------------------


def test_every_family_member_has_a_constructor_and_a_command_line_name():
    from keras_resnet.models import FAMILY_CONSTRUCTORS, MODEL_NAMES, parse_model_name

    assert set(FAMILY_CONSTRUCTORS) == set(architectures.FAMILY) <= set(MODEL_NAMES)
    for name, constructor in FAMILY_CONSTRUCTORS.items():
        assert getattr(keras_resnet, constructor.__name__) is constructor
        assert parse_model_name(name)[0] == family_architecture(name).family


# torchvision's num_params, timm.create_model's and keras.applications' trainable weights
# (tests/test_constructors.py FAMILY_PARAMS) for the nets the harness leaves out.
LARGE = ("wide_resnet50_2", "wide_resnet101_2", "resnext101_32x8d", "resnext101_64x4d",
         "resnet101d", "resnet152d", "seresnet101", "seresnet152", "resnet101v2", "resnet152v2")


@pytest.mark.slow  # ten nets of 44M to 127M parameters, one at a time
@pytest.mark.parametrize("name", LARGE)
def test_the_large_family_members_have_the_references_parameters(name):
    """Built with their variables' shapes only (Keras defers their values in a stateless
    scope: drawing 127M random weights took most of a build). Their block kinds' finite,
    non-uniform outputs: the 50-layer nets of tests/test_constructors.py (resnext50_32x4d,
    resnet50d, seresnet50, resnet50v2) and test_stages_and_logits_match_timm (wide)."""
    from test_constructors import FAMILY_PARAMS

    with shapes_only():
        model = keras_resnet.get_model(name, input_shape=(64, 64, 3))
        assert count_trainable_params(model) == FAMILY_PARAMS[name][0]
        assert model.output_shape == (None, 1000)


@pytest.mark.slow  # 1001 layers take a minute to build
def test_resnet_1001_has_the_papers_parameters_and_trains_finite():
    """He et al. 2016's 10.2M (within 2%) and the arithmetic's exact count. Its forward pass in
    training mode (batch statistics) is finite; at inference with untrained BN statistics
    (mean 0, variance 1) every one of its 333 sums adds a branch as large as its input, and
    float32 overflows: a model to train, not to run untrained."""
    model = keras_resnet.PreActResNet1001()
    assert count_trainable_params(model) == preact_cifar_params(1001)
    assert abs(count_trainable_params(model) / 10.2e6 - 1) < 0.02
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
    assert np.all(np.isfinite(np.asarray(model(x, training=True))))


@pytest.mark.slow  # 2 s or more of its own
def test_the_pre_activation_cifar_nets_follow_he_2016():
    """ResNet-164: 18 bottlenecks per stage on 16/32/64 planes (9n + 2 = 164 layers); ResNet-1001:
    111. Parameters within 2% of the paper's 1.7M and 10.2M (their exact count: the harness)."""
    arch = family_architecture("preact_resnet1001")
    assert [s.repeats for s in arch.stages] == [111] * 3 and arch.block == "bottleneck"
    assert 9 * 111 + 2 == arch.depth == 1001
    model = keras_resnet.PreActResNet164()
    assert model.output_shape == (None, 10) and model.get_layer("post_relu")
    assert abs(count_trainable_params(model) / 1.7e6 - 1) < 0.02


@pytest.mark.slow  # four full-size nets (their shapes)
def test_family_multiply_adds_match_torchvision_and_timm():
    """torchvision's `_ops` (GFLOPS: multiply-adds, 224x224) for ResNeXt-50 and Wide
    ResNet-50-2; timm's ResNet-50-D and SE-ResNet-50 counted the same way (tests/fixtures/
    backbone_reference.py): convolutions and the classifier, to 0.5%."""
    for build, published in ((keras_resnet.ResNeXt50_32x4d, 4.23e9),
                             (keras_resnet.WideResNet50_2, 11.398e9),
                             (keras_resnet.ResNet50D, 4.329e9),
                             (keras_resnet.SEResNet50, 4.092e9)):
        with shapes_only():
            assert abs(count_multiply_adds(build()) / published - 1) < 0.005, build.__name__


@pytest.mark.slow  # two full-size nets
def test_se_resnet50_multiply_adds_and_why_the_paper_counts_fewer():
    """Ours strides in the 3x3 (timm's layout); Hu et al. 2018's 3.87G is of the 1x1 variant:
    3.86G counted as Table 1 counts, plus SE's average pooling (adds) and channel scaling
    (multiplies), one of each per element of every block's output."""
    assert PAPER_FIGURES["seresnet50"]["multiply_adds"] is None  # the paper's is another variant
    with shapes_only():
        ours = keras_resnet.SEResNet50()
        assert ours.get_layer("conv3_block1").stride_position == "3x3"
        assert count_multiply_adds(ours) == 4_091_699_200
        hu = keras_resnet.SEResNet50(stride_position="1x1")
        assert count_multiply_adds(hu) == 3_860_488_192
    excites = [layer.output.shape for layer in hu.layers
               if re.fullmatch(r"conv[2-5]_block\d+", layer.name)]
    scaled = sum(h * w * c for _, h, w, c in excites)
    assert len(excites) == 16 and scaled == 5_519_360
    assert round((count_multiply_adds(hu) + 2 * scaled) / 1e9, 2) == 3.87


@pytest.mark.slow  # 8 s of fitting
def test_a_family_member_trains_and_its_features_feed_a_head():
    """End to end at CIFAR size: SE-ResNeXt-D options on one net, fit on random data, then the
    stages of the trained net."""
    arch = dataclasses.replace(
        family_architecture("resnext50_32x4d"),
        stages=tuple(dataclasses.replace(s, repeats=1) for s in imagenet_architecture(50).stages),
        stem=DEEP_STEM, avg_down=True, se_ratio=1 / 16)
    model = build_resnet(arch, input_shape=(32, 32, 3), classes=3, width_multiplier=0.25)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (16, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 16)
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    features = keras_resnet.feature_extractor(model)(x[:2])
    assert [tuple(features[s].shape[1:3]) for s in STAGES] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


# --- full size, against the libraries themselves (needs torch: $KERAS_RESNET_TORCH_PYTHON) --


FULL_SIZE = ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
             "wide_resnet101_2", "resnet18d", "resnet34d", "resnet50d", "resnet101d",
             "resnet152d", "seresnet50", "seresnet101", "seresnet152")


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_parity_with_torchvision_and_timm(name, tmp_path):
    python = torch_python()
    script = os.path.join(FIXTURES, "backbone_reference.py")
    subprocess.run([python, script, "family", name, str(tmp_path)], check=True, timeout=900)
    images = np.load(tmp_path / "images.npy")
    model = keras_resnet.get_model(name, weights=str(tmp_path / "state.safetensors"),
                                   input_shape=images.shape[1:], classifier_activation=None)
    outputs = keras_resnet.feature_extractor(model)(images)
    logits = model(images)
    for reference in ("outputs.npz", "outputs_timm.npz"):
        if not (tmp_path / reference).exists():
            continue
        with np.load(tmp_path / reference) as expected:
            figures = {s: relative_difference(outputs[s], expected[s]) for s in STAGES}
            figures["logits"] = relative_difference(logits, expected["logits"])
            assert count_trainable_params(model) == int(expected["params"])
        print(f"{name} vs {reference}: " + ", ".join(f"{k} {v:.1e}" for k, v in figures.items()))
        assert max(figures.values()) < 1e-5, (reference, figures)
    reference_keys = set(load_file(tmp_path / "state.safetensors"))
    assert {slot.key for slot in torch_slots(model)} == {
        k for k in reference_keys if not k.endswith("num_batches_tracked")}


# --- downstream: the run flows (the harness covers saving, loading, JAX and exports) -------


@pytest.mark.slow  # a two-phase run
def test_a_family_member_fine_tunes_from_a_torch_layout_file(tmp_path):
    """`--weights FILE --unfreeze conv5` on ResNet-18-D, its weights written in timm's layout:
    the stem stays frozen with the file's weights, conv5 trains, and the recorded test top-1
    is what the saved model scores."""
    from keras_resnet import runs

    source = keras_resnet.ResNet18D(input_shape=(32, 32, 3), include_top=False)
    weights = to_torch_layout(source, str(tmp_path / "resnet18d.safetensors"))
    result = runs.fine_tune("resnet18d", "digits", weights=weights, run_dir=str(tmp_path / "ft"),
                            epochs=2, head_epochs=1, unfreeze="conv5", batch_size=64,
                            model_options={"input_shape": (32, 32, 3)}, export=False, verbose=0)
    model = keras_resnet.load_model(tmp_path / "ft" / "model.keras")
    assert model.get_layer("conv1_1").trainable is False and model.get_layer("conv5_block2").trainable
    np.testing.assert_array_equal(model.get_layer("conv1_1").kernel.numpy(),
                                  source.get_layer("conv1_1").kernel.numpy())
    assert not np.array_equal(model.get_layer("conv5_block2").conv2.kernel.numpy(),
                              source.get_layer("conv5_block2").conv2.kernel.numpy())
    test = keras_resnet.data.load("digits", "test", 128, preprocessing=keras_resnet.preprocessing.of(model))[0]
    assert result["test"]["top1"] == pytest.approx(
        model.evaluate(test, verbose=0, return_dict=True)["top1"], abs=1e-6)


@pytest.mark.slow  # a SavedModel export
def test_a_pre_activation_net_predicts_and_serves_from_its_saved_model(tmp_path):
    """`predict` on PNG files agrees between the .keras file and its SavedModel's
    `serving_bytes` signature (what `keras-resnet serve` and TensorFlow Serving call)."""
    import tensorflow as tf
    from PIL import Image

    from keras_resnet import export

    # PreActResNet-110's layers at depth 20 (He et al. 2016's block, a fifth of the export)
    model = keras_resnet.CifarResNet(20, preactivation=True)
    rng = np.random.default_rng(0)
    for layer in keras_resnet.models.walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
            layer.moving_mean.assign(rng.normal(0, 0.2, layer.moving_mean.shape))
    path = tmp_path / "preact.keras"
    keras_resnet.save_model(model, path)
    files = []
    for index in range(3):
        files.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(files[-1])
    from_keras = export.predict_files(str(path), files, top_k=10)
    saved = export.export_saved_model(str(path), str(tmp_path / "exports"))
    from_saved = export.predict_files(saved, files, top_k=10)
    for a, b in zip(from_keras, from_saved):
        assert [e["label"] for e in a["top_k"]][:1] == [e["label"] for e in b["top_k"]][:1]
        np.testing.assert_allclose(sorted(e["score"] for e in a["top_k"]),
                                   sorted(e["score"] for e in b["top_k"]), atol=1e-5)
    with open(files[0], "rb") as f:
        served = tf.saved_model.load(saved).signatures["serving_bytes"](image_bytes=tf.constant([f.read()]))
    assert np.argmax(served["probabilities"][0]) == from_keras[0]["top_k"][0]["index"]
