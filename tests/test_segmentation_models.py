"""Segmentation models (keras_resnet.heads): FCN and DeepLabV3 against torchvision's own
classes (committed fixtures by tests/fixtures/make_segmentation_fixtures.py; full size against
torchvision's fcn_resnet50 / deeplabv3_resnet50 where $KERAS_RESNET_TORCH_PYTHON is set),
DeepLabV3+, shapes at odd sizes, depths, strides and input channels, saving, the Task,
fine-tuning to new classes and the errors.

Parity is measured as tests/harness.py's relative_difference: max |ours - torchvision's| /
max |torchvision's|, over every pixel and class of an output.
"""

import dataclasses
import os
import subprocess

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import keras_resnet
from harness import relative_difference, shapes_only, torch_python
from keras_resnet.architectures import Stage, Stem, imagenet_architecture
from keras_resnet.heads import segmenters
from keras_resnet.models import build_resnet
from keras_resnet.weights import segmentation as seg_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CONSTRUCTORS = {"fcn": keras_resnet.FCN, "deeplab": keras_resnet.DeepLabV3}


def _fixture(name, output_stride):
    with np.load(os.path.join(FIXTURES, f"seg_{name}_os{output_stride}.npz")) as f:
        return {k: f[k] for k in f.files}


def _tiny_backbone(meta, channels=3):
    """The fixtures' torchvision ResNet as a keras_resnet backbone (Bottleneck [1, 2, 1, 1])."""
    stages = tuple(Stage(f"conv{i + 2}", int(r), int(p), 1 if i == 0 else 2)
                   for i, (r, p) in enumerate(zip(meta["repeats"], meta["planes"])))
    arch = dataclasses.replace(imagenet_architecture(50), stem=Stem(int(meta["stem"]), 7, 2, 3, 2),
                               stages=stages)
    return build_resnet(arch, include_top=False, input_shape=(None, None, channels),
                        stride_position="3x3", weight_decay=0,
                        output_stride=int(meta["output_stride"]))


def _tiny_segmenter(name, meta, **overrides):
    options = {"head_width": int(meta["head_width"])} if name == "deeplab" else {}
    arguments = dict(classes=int(meta["classes"]), aux=True,
                     output_stride=int(meta["output_stride"]),
                     weights=os.path.join(FIXTURES, f"seg_{name}.safetensors"), **options)
    return CONSTRUCTORS[name](_tiny_backbone(meta), **{**arguments, **overrides})


# --- against torchvision ---------------------------------------------------------------------

PARITY_CASES = [("fcn", 8), ("deeplab", 8), ("deeplab", 16)]


@pytest.mark.parametrize("name, output_stride", PARITY_CASES,
                         ids=[f"{n}_os{s}" for n, s in PARITY_CASES])
def test_heads_match_torchvision(name, output_stride):
    """torchvision's FCN / DeepLabV3 (FCNHead, a narrow ASPP DeepLabHead, aux FCNHead) on a
    tiny dilated ResNet, loaded from its own state dict: "out" and "aux" within 1e-5 at an
    even and an odd input size."""
    meta = _fixture(name, output_stride)
    model = _tiny_segmenter(name, meta)
    for size in ("even", "odd"):
        outputs = model(meta[f"input_{size}"], training=False)
        for key in ("out", "aux"):
            expected = meta[f"{key}_{size}"]
            assert outputs[key].shape == expected.shape, (key, size)
            worst = float(np.max(np.abs(np.asarray(outputs[key]) - expected)))
            relative = relative_difference(outputs[key], expected)
            print(f"{name} os{output_stride} {size} {key}: max abs {worst:.2e}, "
                  f"relative {relative:.2e}")
            assert relative < 1e-5, (key, size, relative)


FULL_SIZE = ("fcn_resnet50", "deeplabv3_resnet50")


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_matches_torchvision(name, tmp_path):
    python = torch_python()
    script = os.path.join(FIXTURES, "make_segmentation_fixtures.py")
    subprocess.run([python, script, "full", name, str(tmp_path)], check=True, timeout=600)
    images = np.load(tmp_path / "images.npy")
    constructor = keras_resnet.FCN if name.startswith("fcn") else keras_resnet.DeepLabV3
    model = constructor("resnet50", aux=True, stride_position="3x3",
                        weights=str(tmp_path / "state.safetensors"))
    outputs = model(images, training=False)
    with np.load(tmp_path / "outputs.npz") as expected:
        for key in ("out", "aux"):
            relative = relative_difference(outputs[key], expected[key])
            worst = float(np.max(np.abs(np.asarray(outputs[key]) - expected[key])))
            print(f"{name} {key}: max abs {worst:.2e}, relative {relative:.2e}")
            assert relative < 1e-5, (key, relative)


# --- shapes, depths, strides, channels -------------------------------------------------------

SHAPE_CASES = [(keras_resnet.FCN, "resnet18", 8), (keras_resnet.DeepLabV3, "resnet18", 16),
               (keras_resnet.DeepLabV3Plus, "resnet18", 16), (keras_resnet.DeepLabV3Plus,
                                                                "resnet18", 8)]


@pytest.mark.parametrize("constructor, backbone, output_stride", SHAPE_CASES,
                         ids=[f"{c.__name__}-{b}-os{s}" for c, b, s in SHAPE_CASES])
@pytest.mark.slow
def test_logits_come_at_the_input_size(constructor, backbone, output_stride):
    keras.utils.set_random_seed(0)
    options = {} if constructor is keras_resnet.FCN else {"head_width": 16}
    model = constructor(backbone, classes=4, aux=True, output_stride=output_stride, **options)
    for shape in ((1, 45, 53, 3), (2, 32, 32, 3)):
        outputs = model(np.random.default_rng(0).normal(size=shape).astype(np.float32))
        assert outputs["out"].shape == (*shape[:3], 4)
        assert outputs["aux"].shape == (*shape[:3], 4)
    info = {f["name"]: f["reduction"] for f in keras_resnet.feature_info(model)}
    assert info["conv5"] == output_stride


@pytest.mark.parametrize("constructor", [keras_resnet.FCN, keras_resnet.DeepLabV3,
                                         keras_resnet.DeepLabV3Plus], ids=lambda c: c.__name__)
def test_a_cifar_backbone_gives_its_last_stage_to_the_head(constructor):
    # §4.2's nets end at conv4 (output stride 4): the heads read conv4, the aux head conv3,
    # DeepLabV3+'s decoder conv2 (full resolution); ASPP's rates follow stride 4.
    keras.utils.set_random_seed(0)
    options = {} if constructor is keras_resnet.FCN else {"head_width": 16}
    model = constructor("resnet8", classes=3, aux=True, output_stride=None, **options)
    outputs = model(np.random.default_rng(0).normal(size=(2, 33, 40, 3)).astype(np.float32))
    assert outputs["out"].shape == outputs["aux"].shape == (2, 33, 40, 3)
    inputs_of = {layer.name: layer.input for layer in model.layers}
    head_input = inputs_of["fcn_head_conv" if constructor is keras_resnet.FCN else "aspp_branch0"]
    assert tuple(head_input.shape[1:]) == (None, None, 64)  # conv4: 64 filters (§4.2)
    assert tuple(inputs_of["aux_head_conv"].shape[1:]) == (None, None, 32)  # conv3
    if constructor is not keras_resnet.FCN:
        rates = [model.get_layer(f"aspp_branch{i}").dilation_rate[0] for i in (1, 2, 3)]
        assert rates == [24, 48, 72]
    assert keras_resnet.heads.segmenters.head_stages(
        keras_resnet.get_model("resnet8", include_top=False)) == ("conv4", "conv3")


@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.slow
def test_any_input_channels(channels):
    model = keras_resnet.DeepLabV3Plus("resnet18", classes=2, head_width=8,
                                       input_shape=(40, 48, channels))
    assert model.output_shape == (None, 40, 48, 2)
    assert keras_resnet.preprocessing.of(model).channels == channels
    assert model(np.zeros((1, 40, 48, channels), np.float32)).shape == (1, 40, 48, 2)


def test_a_dilated_torchvision_state_dict_loads_into_other_input_channels(tmp_path):
    meta = _fixture("fcn", 8)
    grey = keras_resnet.FCN(_tiny_backbone(meta, channels=1), classes=3, aux=True,
                            weights=os.path.join(FIXTURES, "seg_fcn.safetensors"))
    rgb = _tiny_segmenter("fcn", meta)
    image = meta["input_odd"][..., :1]
    # timm's adapt_input_conv for one channel sums the RGB filters: a grey image gives what
    # its RGB copy gives.
    np.testing.assert_allclose(grey(image)["out"], rgb(np.repeat(image, 3, -1))["out"],
                               atol=1e-5)


# --- the Task, saving, export -----------------------------------------------------------------


def test_the_model_carries_its_task_and_preprocessing():
    model = keras_resnet.FCN("resnet18", classes=5, aux=True, output_stride=16)
    task = keras_resnet.task_of(model)
    assert (task.kind, task.classes, task.activation) == ("segmentation", 5, "linear")
    assert keras_resnet.preprocessing.of(model).class_names == ["0", "1", "2", "3", "4"]
    plain = segmenters.without_aux(model)
    assert plain.output_shape == (None, None, None, 5)
    assert keras_resnet.task_of(plain) == task
    assert not any(layer.name.startswith("aux") for layer in plain.layers)


@pytest.mark.slow
def test_a_keras_file_round_trip_gives_identical_outputs(tmp_path):
    keras.utils.set_random_seed(1)
    model = keras_resnet.DeepLabV3Plus("resnet18", classes=3, aux=True, head_width=8)
    images = np.random.default_rng(2).normal(size=(1, 35, 41, 3)).astype(np.float32)
    path = str(tmp_path / "seg.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for key in ("out", "aux"):
        np.testing.assert_array_equal(loaded(images)[key], model(images)[key])
    assert keras_resnet.task_of(loaded) == keras_resnet.task_of(model)
    assert loaded.get_layer("out").get_config()["interpolation"] == "bilinear"


def test_a_new_class_count_keeps_the_body(tmp_path):
    meta = _fixture("deeplab", 8)
    source = load_file(os.path.join(FIXTURES, "seg_deeplab.safetensors"))
    model = _tiny_segmenter("deeplab", meta, classes=6)
    loaded = segmenters.state_dict(model)
    for key, value in loaded.items():
        if key.startswith(("classifier.4.", "aux_classifier.4.")):
            assert value.shape[0] == 6 and source[key].shape[0] == 3
        else:  # backbone, ASPP, head body: torchvision's tensors
            np.testing.assert_array_equal(value, source[key], err_msg=key)
    assert set(loaded) == {k for k in source if not k.endswith("num_batches_tracked")}


@pytest.mark.slow
def test_deeplabv3plus_state_dict_round_trip(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras_resnet.DeepLabV3Plus("resnet18", classes=3, head_width=8)
    path = str(tmp_path / "v3plus.safetensors")
    save_file(segmenters.state_dict(model), path)
    keras.utils.set_random_seed(4)
    copy = keras_resnet.DeepLabV3Plus("resnet18", classes=3, head_width=8, weights=path)
    images = np.random.default_rng(5).normal(size=(1, 33, 47, 3)).astype(np.float32)
    np.testing.assert_array_equal(copy(images), model(images))


def test_weight_sets_are_torchvision_s():
    from keras_resnet.weights import segmentation as seg_weights

    figures = {(s.head, s.backbone): (s.miou, s.pixel_accuracy, s.resize_size)
               for s in seg_weights.SETS}
    assert figures == {("fcn", "resnet50"): (60.5, 91.4, 520),
                       ("fcn", "resnet101"): (63.7, 91.9, 520),
                       ("deeplabv3", "resnet50"): (66.4, 92.4, 520),
                       ("deeplabv3", "resnet101"): (67.4, 92.4, 520)}
    weight_set = seg_weights.get("deeplabv3", "resnet101")
    assert weight_set.file.sha256_prefix == "586e9e4e"
    assert len(weight_set.class_names) == 21 and weight_set.class_names[15] == "person"


# --- errors ----------------------------------------------------------------------------------

ERRORS = [
    (dict(backbone="resnet51"), r"`backbone` must be a model name .* got 'resnet51'"),
    (dict(backbone="resnet50", output_stride=4), r"`output_stride` must be one of"),
    (dict(backbone="resnet50", classes=0), r"`classes` must be a positive integer; got 0"),
    (dict(backbone="resnet20"), r"`output_stride=8`, but resnet20 is a CIFAR net .*pass "
     r"output_stride=None"),
    (dict(backbone="resnet50", weights="imagenet"), r"`weights='imagenet'` names no published"),
    (dict(backbone="resnet18", weights="torchvision_coco_voc"), r"names no published fcn"),
    (dict(backbone="resnet50", head_width=8), r"`head_width` is a DeepLab option"),
    # Checked before any download: torchvision trained these at output stride 8, with the
    # stride on a bottleneck's 3x3.
    (dict(backbone="resnet50", weights="torchvision_coco_voc", output_stride=16),
     r"need `output_stride=8`; got 16"),
    (dict(backbone="resnet50", weights="torchvision_coco_voc", stride_position="1x1"),
     r"need `stride_position='3x3'`; got '1x1'"),
]


@pytest.mark.parametrize("arguments, message", ERRORS, ids=[m[:20] for _, m in ERRORS])
def test_errors_are_one_line_and_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message) as error:
        keras_resnet.FCN(**arguments)
    assert "\n" not in str(error.value)


def test_a_state_dict_of_another_head_is_refused_naming_tensors():
    meta = _fixture("fcn", 8)
    with pytest.raises(ValueError, match=r"Missing from the file \(\d+\): classifier\.0\.convs"):
        keras_resnet.DeepLabV3(_tiny_backbone(meta), classes=3, aux=True, head_width=8,
                               weights=os.path.join(FIXTURES, "seg_fcn.safetensors"))


def test_a_given_backbone_must_have_the_output_stride_asked():
    backbone = keras_resnet.ResNet18(include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"`output_stride=8`, but backbone 'resnet18' has "
                                         r"output stride 32"):
        keras_resnet.FCN(backbone)
    assert keras_resnet.FCN(backbone, output_stride=None, classes=2).output_shape == (
        None, 64, 64, 2)


def test_a_model_without_aux_head_loads_torchvision_s_aux_trained_file():
    """torchvision's published weights carry an aux classifier; a model without one loads
    the rest and gives the same "out"."""
    meta = _fixture("fcn", 8)
    model = _tiny_segmenter("fcn", meta, aux=False)
    assert not isinstance(model.output, dict)
    assert relative_difference(model(meta["input_odd"]), meta["out_odd"]) < 1e-5


@pytest.mark.slow  # four full-size models
@pytest.mark.parametrize("weight_set", seg_weights.SETS, ids=lambda s: f"{s.head}_{s.backbone}")
def test_full_size_parameter_counts_equal_torchvisions(weight_set):
    # torchvision's weights meta num_params: the model with its auxiliary head, 21 classes.
    with shapes_only():  # a count reads shapes only
        model = keras_resnet.heads.segmenter(weight_set.head, weight_set.backbone, classes=21,
                                             aux=True, input_shape=(64, 64, 3))
        # torch's parameters: every weight but BatchNorm's running statistics, Keras' trainable ones
        assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == weight_set.num_params
