"""One option vocabulary for every constructor (timm's keyword style), create_model and
list_models, and the stage taps the builder marks (StageTap) that features and Grad-CAM read."""

import os

import keras
import numpy as np
import pytest

import keras_resnet
from harness import shapes_only
from keras_resnet import architectures, builder, features, models
from keras_resnet.errors import InvalidArgument, UserError
from keras_resnet.summary import PAPER_FIGURES, count_multiply_adds, count_trainable_params

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "legacy")


def _blocks(model):
    return [layer for layer in model.layers if hasattr(layer, "shortcut")]


# --- every Architecture option is a keyword of every constructor ------------------------------


@pytest.mark.slow  # 2 s or more of its own
def test_resnet50_takes_se_and_average_pool_shortcuts_as_keywords():
    model = keras_resnet.ResNet50(se_ratio=1 / 16, avg_down=True, input_shape=(64, 64, 3))
    blocks = _blocks(model)
    assert len(blocks) == 16 and all(block.get_config()["se_ratio"] == 1 / 16 for block in blocks)
    projections = [block for block in blocks if block.shortcut == "projection"]
    assert [block.name for block in projections] == [f"conv{s}_block1" for s in (2, 3, 4, 5)]
    assert all(block.get_config()["avg_down"] for block in projections)


@pytest.mark.slow  # five full-size builds (test_family checks the named members in the fast tier)
@pytest.mark.parametrize("options, reference", [
    # The family's published parameter counts (timm, torchvision, keras.applications), reached
    # from ResNet50 by keywords alone.
    ({"se_ratio": 1 / 16, "stride_position": "3x3"}, "seresnet50"),
    ({"stem": "deep", "avg_down": True, "stride_position": "3x3"}, "resnet50d"),
    ({"groups": 32, "base_width": 4, "stride_position": "3x3"}, "resnext50_32x4d"),
    ({"base_width": 128, "stride_position": "3x3"}, "wide_resnet50_2"),
    ({"preactivation": True, "downsample_in": "last", "stride_position": "3x3"}, "resnet50v2"),
])
def test_keywords_reach_the_family_s_published_parameter_counts(options, reference):
    with shapes_only():  # a count reads shapes only
        model = keras_resnet.ResNet50(**options)
        assert count_trainable_params(model) == PAPER_FIGURES[reference]["params"]


@pytest.mark.slow
def test_a_deep_stem_and_the_keywords_of_every_kind_of_constructor():
    deep = keras_resnet.ResNet18(stem="deep", input_shape=(64, 64, 3))
    names = {layer.name for layer in deep.layers}
    assert {"conv1_1", "conv1_2", "conv1_3"} <= names and "conv1" not in names
    assert [f["reduction"] for f in keras_resnet.feature_info(deep)] == [2, 4, 8, 16, 32]
    for model in (keras_resnet.get_model("resnet20", se_ratio=0.25),
                  keras_resnet.CifarResNet(20, se_ratio=0.25),
                  keras_resnet.ImageNetResNet(18, se_ratio=0.25, input_shape=(32, 32, 3)),
                  keras_resnet.ResNet18D(se_ratio=0.25, input_shape=(32, 32, 3))):
        assert {block.get_config()["se_ratio"] for block in _blocks(model)} == {0.25}, model.name
    v1 = keras_resnet.get_model("resnet50v2", preactivation=False, downsample_in="first",
                                input_shape=(32, 32, 3))
    assert "post_relu" not in {layer.name for layer in v1.layers}
    assert _blocks(v1)[3].name == "conv3_block1" and _blocks(v1)[3].strides == 2


@pytest.mark.parametrize("build, message", [
    (lambda: keras_resnet.ResNet50(bogus=1), r"^`bogus` is not an option of resnet50; options: .*se_ratio"),
    (lambda: keras_resnet.ResNet50(se_ratoi=0.1), r"\(did you mean 'se_ratio'\?\)"),
    (lambda: keras_resnet.CifarResNet(20, avgdown=True), r"`avgdown`.*did you mean 'avg_down'"),
    (lambda: keras_resnet.ResNeXt50_32x4d(group=8), r"`group`.*resnext50_32x4d.*did you mean 'groups'"),
    (lambda: keras_resnet.get_model("resnet20", depth=20), r"`depth` is not an option of resnet20"),
    (lambda: keras_resnet.ResNet50(se_ratio=2), r"`se_ratio` must be a number in \[0, 1\).*got 2"),
    (lambda: keras_resnet.ResNet18(groups=32), r"`groups`.*got 32 \(resnet18 has basic blocks\)"),
    (lambda: keras_resnet.ResNet50(downsample_in="middle"), r"`downsample_in`.*'first', 'last'.*'middle'"),
    (lambda: keras_resnet.ResNet50(preactivation="yes"), r"`preactivation` must be True or False; got 'yes'"),
    (lambda: keras_resnet.ResNet20(stem="deep"), r"`stem='deep'` is for ImageNet nets"),
])
def test_unknown_options_and_bad_values_are_one_line_user_errors(build, message):
    with pytest.raises(InvalidArgument, match=message) as raised:
        build()
    assert isinstance(raised.value, UserError) and "\n" not in str(raised.value)


@pytest.mark.parametrize("options, message", [
    ({"se_ratio": 1 / 16}, r"needs `se_ratio=0.0`; got 0.0625"),
    ({"avg_down": True}, r"needs `avg_down=False`"),
    ({"groups": 32}, r"needs `groups=1`"),
    ({"stem": "deep"}, r"stem is one 7x7 conv; got stem='deep'"),
    ({"shortcut": "none"}, r"needs `shortcut='B'`; got 'none'"),
    ({"residual": False}, r"needs `residual=True`"),
])
def test_overrides_that_contradict_a_weight_set_raise_before_any_download(options, message):
    with pytest.raises(InvalidArgument, match=message):
        keras_resnet.ResNet50(weights="imagenet", **options)


# --- one shortcut vocabulary ------------------------------------------------------------------


def test_shortcut_takes_the_paper_s_options_in_any_case_and_none():
    plain = keras_resnet.ResNet20(shortcut="none")
    assert plain.name == "plain20" and {b.shortcut for b in _blocks(plain)} == {"none"}
    same = keras_resnet.ResNet20(residual=False)
    assert [layer.name for layer in same.layers][1:] == [layer.name for layer in plain.layers][1:]
    assert keras_resnet.ResNet20(shortcut="None", residual=False).name == "plain20"
    lower, upper = keras_resnet.ResNet20(shortcut="c"), keras_resnet.ResNet20(shortcut="C")
    assert count_trainable_params(lower) == count_trainable_params(upper) > count_trainable_params(plain)
    for options in ({"shortcut": "A", "residual": False}, {"shortcut": "none", "residual": True}):
        with pytest.raises(InvalidArgument, match="disagree"):
            keras_resnet.ResNet20(**options)
    with pytest.raises(InvalidArgument, match="has no plain counterpart"):
        keras_resnet.ResNet18D(shortcut="none")


# --- list_models and create_model ---------------------------------------------------------------


def test_list_models_lists_every_name_get_model_takes():
    names = models.list_models()
    assert names == sorted(models.MODEL_NAMES) and "resnet50" in names and "seresnet50" in names
    assert models.list_models("resnet*v2") == ["resnet101v2", "resnet152v2", "resnet50v2"]
    assert models.list_models("nothing*") == []


def test_create_model_builds_with_overrides_and_returns_feature_extractors():
    model = features.create_model("resnet20", classes=4, se_ratio=0.25)
    assert model.output_shape == (None, 4) and _blocks(model)[0].get_config()["se_ratio"] == 0.25
    extractor = features.create_model("resnet18", features_only=True, out_indices=[1, -1],
                                      input_shape=(64, 64, 3))
    assert {k: tuple(t.shape) for k, t in extractor.output.items()} == {
        "conv2": (None, 16, 16, 64), "conv5": (None, 2, 2, 512)}
    every = features.create_model("resnet20", features_only=True)
    assert list(every.output) == ["conv1", "conv2", "conv3", "conv4"]


@pytest.mark.parametrize("call, message", [
    (lambda: features.create_model("resnt50"), r"`model_name` 'resnt50' is not a model \(did you mean 'resnet50'\?\)"),
    (lambda: features.create_model("resnet20", features_only=True, out_indices=[4]),
     r"`out_indices`.*0\.\.3.*got \[4\]"),
    (lambda: features.create_model("resnet20", out_indices=[1]), r"needs features_only=True"),
    (lambda: features.create_model("resnet20", features_only=True, pooling="avg"), r"`pooling='avg'`"),
    (lambda: keras_resnet.get_model("resnt50"), r"`model_name`.*'resnt50' \(did you mean 'resnet50'\?\)"),
])
def test_create_model_names_what_is_wrong(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()


# --- stage taps ---------------------------------------------------------------------------------


def test_stage_tap_is_a_serializable_weightless_identity():
    tap = builder.StageTap("conv3", 8, name="tap_conv3")
    assert builder.StageTap.from_config(tap.get_config()).get_config() == tap.get_config()
    x = np.arange(12, dtype="float16").reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tap(x)), x)
    assert tap(x).dtype == "float16" and not tap.weights  # never cast, nothing to train
    # Marking a tensor off the model's path: the first input passes, the second is the features.
    a, b = keras.Input((4, 4, 2)), keras.Input((8, 8, 2))
    side = builder.StageTap("conv2", 4, name="tap_conv2")
    out = side([a, b])
    assert tuple(out.shape) == (None, 4, 4, 2) and builder.tap_features(side) is b
    for bad in ({"stage": "", "reduction": 4}, {"stage": "conv2", "reduction": 0}):
        with pytest.raises(InvalidArgument):
            builder.StageTap(**bad)
    with pytest.raises(InvalidArgument, match="`at` must be one of .*'output'.*got 'inside'"):
        architectures.Tap("conv2", "inside")


@pytest.mark.slow
def test_taps_follow_the_architecture_data_and_leave_counts_unchanged():
    model = keras_resnet.ResNet50(input_shape=(64, 64, 3))
    taps = builder.stage_taps(model)
    assert [(t.name, t.stage, t.reduction) for t in taps] == [
        (f"tap_conv{i}", f"conv{i}", r) for i, r in zip(range(1, 6), (2, 4, 8, 16, 32))]
    assert [tap.stage for tap in architectures.imagenet_architecture(50).stage_taps] == [
        t.stage for t in taps]
    # Taps are weightless and compute nothing: counts as Table 1's (test_models has the exact ones).
    assert count_trainable_params(keras_resnet.ResNet50()) == PAPER_FIGURES["resnet50"]["params"]
    assert abs(count_multiply_adds(keras_resnet.ResNet50()) / 3.8e9 - 1) < 0.03
    # V2 (keras.applications' layout): the pre-activated input of conv2 .. conv4's strided block;
    # built as a V1 net (preactivation=False, stride first), the stages' outputs again.
    v2 = architectures.family_architecture("resnet50v2")
    assert [(t.stage, t.at) for t in v2.stage_taps] == [
        ("conv1", "output"), ("conv2", "preactivated_input"), ("conv3", "preactivated_input"),
        ("conv4", "preactivated_input"), ("conv5", "output")]
    v1 = architectures.with_options(v2, preactivation=False, downsample_in="first")
    assert {t.at for t in v1.stage_taps} == {"output"}


@pytest.mark.slow  # 2 s or more of its own
def test_stage_shapes_match_keras_applications_resnet50():
    reference = keras.applications.ResNet50(weights=None, input_shape=(96, 64, 3))
    ours = keras_resnet.ResNet50(input_shape=(96, 64, 3))
    layers = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
    theirs = [tuple(reference.get_layer(name).output.shape) for name in layers]
    assert [tuple(t.shape) for t in features.stage_outputs(ours).values()] == theirs


def test_taps_survive_keras_saving_cloning_and_slicing(tmp_path):
    model = keras_resnet.ResNet20(classes=3)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    clone = keras.models.clone_model(model)
    sliced = keras.Model(model.input, model.get_layer("tap_conv3").output)
    expected = [(f["name"], f["reduction"]) for f in keras_resnet.feature_info(model)]
    for other in (loaded, clone):
        assert len(builder.stage_taps(other)) == 4
        assert [(f["name"], f["reduction"]) for f in keras_resnet.feature_info(other)] == expected
    assert [(f["name"], f["reduction"]) for f in keras_resnet.feature_info(sliced)] == expected[:3]
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras_resnet.feature_extractor(loaded)(images)["conv4"],
                               keras_resnet.feature_extractor(model)(images)["conv4"], atol=1e-5)


def test_models_saved_before_taps_are_read_by_their_layer_names():
    legacy = keras.saving.load_model(os.path.join(FIXTURES, "resnet50v2_narrow.keras"))
    assert not builder.stage_taps(legacy)
    info = keras_resnet.feature_info(legacy)
    assert [f["name"] for f in info] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert info[0]["layer"] == "conv1" and info[-1]["layer"] == "post_relu"
    classifier = keras.saving.load_model(os.path.join(FIXTURES, "classifier.keras"))
    assert not builder.stage_taps(classifier)
    assert keras_resnet.embedding_model(classifier).output_shape[0] is None
