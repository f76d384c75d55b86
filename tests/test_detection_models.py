"""RetinaNet (keras_resnet.heads.detectors) against torchvision's own classes: raw outputs,
anchors, losses and detections on a tiny ResNet (committed fixtures by
tests/fixtures/make_detection_fixtures.py; full size against torchvision's
retinanet_resnet50_fpn and _v2 where $KERAS_RESNET_TORCH_PYTHON is set); the box coder,
matcher and focal loss; NMS against TensorFlow's; weights, names, shapes and errors.

Parity is tests/harness.py's relative_difference: max |ours - torchvision's| / max
|torchvision's|.
"""

import dataclasses
import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from harness import relative_difference, torch_python
from keras_resnet import boxes
from keras_resnet.architectures import Stage, Stem, imagenet_architecture
from keras_resnet.detection_losses import RetinaNetLoss
from keras_resnet.errors import UserError
from keras_resnet.heads import detectors, postprocess
from keras_resnet.models import build_resnet
from keras_resnet.weights import detection as det_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SIZES = ("even", "odd")
TINY_REPEATS, TINY_PLANES, TINY_STEM = (1, 2, 1, 1), (4, 8, 16, 16), 4


def _fixture(version):
    with np.load(os.path.join(FIXTURES, f"det_v{version}.npz")) as f:
        return {k: f[k] for k in f.files}


def _input(meta, size):
    return (meta[f"pixels_{size}"].astype(np.float32) - 128) / 64


def _tiny_backbone():
    """The fixtures' torchvision ResNet as a keras_resnet backbone (Bottleneck [1, 2, 1, 1])."""
    stages = tuple(Stage(f"conv{i + 2}", r, p, 1 if i == 0 else 2)
                   for i, (r, p) in enumerate(zip(TINY_REPEATS, TINY_PLANES)))
    arch = dataclasses.replace(imagenet_architecture(50), stem=Stem(TINY_STEM, 7, 2, 3, 2),
                               stages=stages)
    return build_resnet(arch, include_top=False, input_shape=(None, None, 3),
                        stride_position="3x3", weight_decay=0)


@pytest.fixture(scope="module", params=(1, 2), ids=("v1", "v2"))
def tiny(request):
    """``(meta, raw model)`` of the fixture of version 1 or 2, its weights loaded."""
    version = request.param
    meta = _fixture(version)
    model = detectors.RetinaNet(
        _tiny_backbone(), classes=int(meta["classes"]), version=version, raw_outputs=True,
        head_width=int(meta["width"]), weights=os.path.join(FIXTURES, f"det_v{version}.safetensors"))
    return meta, model


# --- against torchvision ---------------------------------------------------------------------

def test_raw_outputs_and_anchors_match_torchvision(tiny):
    meta, model = tiny
    for size in SIZES:
        outputs = model(_input(meta, size), training=False)
        for key in ("cls_logits", "bbox_regression", "anchors"):
            expected = meta[f"{key}_{size}"]
            assert outputs[key].shape == expected.shape, (key, size)
            relative = relative_difference(outputs[key], expected)
            print(f"v{int(meta['version'])} {size} {key}: relative {relative:.2e}")
            assert relative < 1e-5, (key, size, relative)


def test_the_loss_matches_torchvision_s_compute_loss(tiny):
    """Focal loss and L1 (v1) / GIoU (v2) box loss of torchvision's RetinaNet.compute_loss,
    the second even image without boxes."""
    meta, model = tiny
    box_loss = "l1" if int(meta["version"]) == 1 else "giou"
    training = detectors.training_model(model)
    for size in SIZES:
        packed = training(_input(meta, size), training=False)
        for part, key in (("classification", "classification"), ("box", "bbox_regression")):
            loss = RetinaNetLoss(int(meta["classes"]), box_loss=box_loss, part=part)
            found = float(loss(meta[f"targets_{size}"], packed))
            expected = float(meta[f"loss_{key}_{size}"])
            print(f"{size} {part}: {found:.6f} against {expected:.6f}")
            assert abs(found - expected) <= 1e-5 * max(1.0, abs(expected)), (size, part)


def _level_counts(model, images):
    """Anchors per level of ``model`` (P3..P7) for ``images``."""
    levels = keras.Model(model.input, [model.get_layer(f"cls_flat{level}").output
                                       for level in (3, 4, 5, 6, 7)])
    return [int(t.shape[1]) for t in levels(images)]


def test_detections_match_torchvision_s_postprocess(tiny):
    """Score threshold, per-level top-k, decoding, clipping and class-aware NMS on
    torchvision's own raw outputs: the same detections in the same order."""
    meta, model = tiny
    layer = postprocess.DetectionPostprocess()
    run = tf.function(lambda images, *levels: layer([images, *levels]))  # eagerly: 10x slower
    for size in SIZES:
        images = _input(meta, size)
        bounds = np.cumsum([0] + _level_counts(model, images))
        per_level = [[meta[f"{key}_{size}"][:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
                     for key in ("cls_logits", "bbox_regression", "anchors")]
        found = {k: np.asarray(v) for k, v in run(images, *per_level).items()}
        np.testing.assert_array_equal(found["num_detections"], meta[f"count_{size}"])
        for index, count in enumerate(found["num_detections"]):
            np.testing.assert_array_equal(found["classes"][index, :count],
                                          meta[f"labels_{size}"][index, :count])
            np.testing.assert_allclose(found["scores"][index, :count],
                                       meta[f"scores_{size}"][index, :count], atol=1e-6)
            np.testing.assert_allclose(found["boxes"][index, :count],
                                       meta[f"boxes_{size}"][index, :count], atol=1e-4)
            assert np.all(found["classes"][index, count:] == -1)
            assert np.all(found["scores"][index, count:] == 0)


def test_the_model_s_detections_are_its_raw_outputs_postprocessed(tiny):
    """The detections model runs the postprocessing on its own raw outputs: the same as
    the layer called on them."""
    meta, model = tiny
    images = _input(meta, "odd")
    found = detectors.detections_model(model, max_detections=50).predict(images, verbose=0)
    bounds = np.cumsum([0] + _level_counts(model, images))
    raw = model(images)
    per_level = [[raw[key][:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
                 for key in ("cls_logits", "bbox_regression", "anchors")]
    layer = postprocess.DetectionPostprocess(max_detections=50)
    expected = tf.function(lambda images, *levels: layer([images, *levels]))(images, *per_level)
    for key in ("classes", "num_detections"):
        np.testing.assert_array_equal(np.asarray(found[key]), np.asarray(expected[key]))
    # predict's graph and the eager model round differently: 1e-5 relative
    np.testing.assert_allclose(found["scores"], np.asarray(expected["scores"]), atol=1e-5)
    np.testing.assert_allclose(found["boxes"], np.asarray(expected["boxes"]), atol=1e-3)
    assert int(np.asarray(found["num_detections"]).min()) > 0


def test_both_key_versions_of_torchvision_s_files_load_alike(tiny, tmp_path):
    """The names torchvision wrote before its version 2 of the FPN and the heads
    (``inner_blocks.0.weight``, ``conv.2.weight``) load as the current ones do."""
    meta, model = tiny
    if int(meta["version"]) == 2:
        pytest.skip("the old names predate GroupNorm heads: version 1 only")
    current = detectors.state_dict(model)
    old = {}
    for key, value in current.items():
        for module in ("inner_blocks", "layer_blocks"):
            key = key.replace(f"fpn.{module}.0.0.", f"fpn.{module}.0.").replace(
                f"fpn.{module}.1.0.", f"fpn.{module}.1.").replace(
                f"fpn.{module}.2.0.", f"fpn.{module}.2.")
        for index in range(4):
            key = key.replace(f"head.classification_head.conv.{index}.0.",
                              f"head.classification_head.conv.{2 * index}.").replace(
                f"head.regression_head.conv.{index}.0.", f"head.regression_head.conv.{2 * index}.")
        old[key] = value
    assert "backbone.fpn.inner_blocks.0.weight" in old and "head.regression_head.conv.6.bias" in old
    reloaded = detectors.RetinaNet(_tiny_backbone(), classes=3, head_width=16, raw_outputs=True,
                                   weights=old)
    images = _input(meta, "even")
    np.testing.assert_array_equal(np.asarray(reloaded(images)["cls_logits"]),
                                  np.asarray(model(images)["cls_logits"]))


@pytest.mark.slow
@pytest.mark.parametrize("version", (1, 2))
def test_full_size_matches_torchvision(version, tmp_path):
    python = torch_python()
    script = os.path.join(FIXTURES, "make_detection_fixtures.py")
    subprocess.run([python, script, "full", str(version), str(tmp_path)], check=True, timeout=600)
    model = detectors.RetinaNet("resnet50", version=version, raw_outputs=True,
                                stride_position="3x3", weights=str(tmp_path / "state.safetensors"))
    outputs = model(np.load(tmp_path / "images.npy"), training=False)
    with np.load(tmp_path / "raw.npz") as expected:
        for key in ("cls_logits", "bbox_regression", "anchors"):
            relative = relative_difference(outputs[key], expected[key])
            print(f"retinanet v{version} {key}: relative {relative:.2e}")
            assert relative < 1e-5, (key, relative)
