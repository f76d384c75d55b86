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
from harness import relative_difference, shapes_only, torch_python
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_model_s_detections_are_its_raw_outputs_postprocessed(tiny):
    """The detections model runs the postprocessing on its own raw outputs: the same as
    the layer called on them."""
    meta, model = tiny
    if int(meta["version"]) == 2:
        pytest.skip("the same plumbing in both versions: version 1 checks it")
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


# --- boxes, matcher, focal loss, NMS -----------------------------------------------------------

def test_the_coder_inverts_itself_and_clips_large_sizes():
    rng = np.random.default_rng(0)
    anchors = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(60, 120, (20, 2))], 1)
    found = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(55, 130, (20, 2))], 1)
    decoded = np.asarray(boxes.decode(boxes.encode(found, anchors), anchors))
    np.testing.assert_allclose(decoded, found, atol=1e-4)
    huge = np.asarray(boxes.decode(np.array([[0.0, 0.0, 50.0, 50.0]]), np.array([[0., 0, 16, 16]])))
    assert huge[0, 2] - huge[0, 0] == pytest.approx(1000.0, rel=1e-5)  # exp(log(1000/16)) * 16


def test_the_matcher_keeps_each_box_s_best_anchors_and_ignores_between():
    iou = np.array([[[0.30, 0.45, 0.70, 0.10],
                     [0.35, 0.20, 0.10, 0.05],
                     [0.90, 0.00, 0.00, 0.00]]], "float32")  # the third box is padding
    valid = np.array([[True, True, False]])
    matches = np.asarray(boxes.match_anchors(iou, valid)).tolist()
    # anchor 0: best 0.35 < 0.4 but box 1's best anchor; 1: ignored; 2: box 0; 3: background
    assert matches == [[1, -2, 0, -1]]
    assert np.asarray(boxes.match_anchors(iou, np.zeros((1, 3), bool))).tolist() == [[-1] * 4]


def test_the_focal_loss_is_the_papers_formula():
    logits = np.array([-3.0, -0.5, 0.0, 2.0])
    targets = np.array([0.0, 1.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-logits))
    p_t = np.where(targets == 1, p, 1 - p)
    alpha_t = np.where(targets == 1, 0.25, 0.75)
    expected = -alpha_t * (1 - p_t) ** 2 * np.log(p_t)  # Lin et al. 2017, eq. 5
    np.testing.assert_allclose(np.asarray(boxes.sigmoid_focal_loss(logits, targets)), expected,
                               rtol=1e-6)


def _tf_class_aware_nms(found, scores, classes, threshold):
    """TensorFlow's greedy NMS, class by class: the kept candidates' indices."""
    kept = []
    for label in np.unique(classes):
        index = np.flatnonzero(classes == label)
        chosen = tf.image.non_max_suppression(found[index], scores[index], len(index),
                                              iou_threshold=threshold).numpy()
        kept.extend(index[chosen].tolist())
    return sorted(kept, key=lambda i: (-scores[i], i))


@pytest.mark.parametrize("tied", (False, True), ids=("random", "tied"))
def test_nms_keeps_what_tensorflow_s_nms_keeps(tied):
    """Our fixed-shape NMS against tf.image.non_max_suppression per class (yx or xy does not
    change IoU): the same kept set, best first; tied scores and duplicate boxes included."""
    rng = np.random.default_rng(1 + tied)
    count = 300
    corners = rng.uniform(0, 80, (count, 2))
    found = np.concatenate([corners, corners + rng.uniform(4, 30, (count, 2))], 1).astype("float32")
    scores = rng.uniform(0.05, 1, count).astype("float32")
    classes = rng.integers(0, 3, count).astype("int32")
    if tied:
        scores = np.round(scores * 8) / 8  # many equal scores
        found[100:150] = found[50:100]  # duplicates of other boxes
    run = tf.function(postprocess.nms)  # a graph: eagerly each of ~200 steps is slow
    kept_boxes, kept_scores, kept_classes, number = (np.asarray(t) for t in run(
        found[None], scores[None], classes[None], 0.5, count))
    expected = _tf_class_aware_nms(found, scores, classes, 0.5)
    assert int(number[0]) == len(expected)
    ours = {tuple(b) + (c,) for b, c in zip(kept_boxes[0, :number[0]].tolist(),
                                             kept_classes[0, :number[0]].tolist())}
    assert ours == {tuple(found[i].tolist()) + (int(classes[i]),) for i in expected}
    assert np.all(np.diff(kept_scores[0, :number[0]]) <= 0)
    if not tied:  # distinct scores: the same order too
        np.testing.assert_array_equal(kept_scores[0, :number[0]], scores[expected])


# --- the constructor -------------------------------------------------------------------------

@pytest.mark.slow  # 2 s or more of its own
def test_any_backbone_and_input_size_gives_boxes_inside_the_image():
    """A CIFAR net (C3..C5 = conv2..conv4, anchors 4x their reduction) at a size that is not
    a multiple of 32; detections are inside the image, best first."""
    model = keras_resnet.RetinaNet("resnet8", classes=4, head_width=16, max_detections=20,
                                   score_threshold=0.01)
    images = np.random.default_rng(0).normal(size=(1, 45, 37, 3)).astype("float32")
    raw = detectors.raw_model(model)(images)
    assert raw["cls_logits"].shape[-1] == 4
    assert raw["anchors"].shape[1] == 9 * sum(  # strides 1, 2, 4, 8, 16
        (-(-45 // s)) * (-(-37 // s)) for s in (1, 2, 4, 8, 16))
    found = model.predict(images, verbose=0)
    assert found["boxes"].shape == (1, 20, 4) and int(found["num_detections"][0]) > 0
    assert found["boxes"][..., 0::2].max() <= 37 and found["boxes"][..., 1::2].max() <= 45
    assert keras_resnet.task_of(model).kind == "detection"


@pytest.mark.slow
def test_a_keras_file_round_trip_gives_identical_detections(tmp_path):
    model = keras_resnet.RetinaNet("resnet8", classes=2, version=2, head_width=32,
                                   input_shape=(32, 32, 3), max_detections=10,
                                   score_threshold=0.01)
    path = str(tmp_path / "retinanet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    for key, value in model.predict(images, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(images, verbose=0)[key], value)
    assert keras_resnet.task_of(loaded).classes == 2


def test_another_class_count_keeps_everything_but_the_class_logits(tiny):
    meta, model = tiny
    version = int(meta["version"])
    other = detectors.RetinaNet(_tiny_backbone(), classes=5, version=version, raw_outputs=True,
                                head_width=int(meta["width"]),
                                weights=os.path.join(FIXTURES, f"det_v{version}.safetensors"))
    outputs = other(_input(meta, "even"))
    np.testing.assert_allclose(np.asarray(outputs["bbox_regression"]),
                               meta["bbox_regression_even"], rtol=1e-4, atol=1e-4)
    assert outputs["cls_logits"].shape[-1] == 5


@pytest.mark.slow
def test_an_image_without_boxes_trains():
    """One SGD step on a batch whose second image has no box: a finite loss that moves."""
    model = keras_resnet.RetinaNet("resnet8", classes=2, head_width=16, input_shape=(32, 32, 3))
    training = detectors.training_model(model)
    training.compile(optimizer=keras.optimizers.SGD(0.01), loss=RetinaNetLoss(2))
    images = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    targets = np.array([[[2, 2, 20, 20, 1], [0, 0, 0, 0, -1]],
                        [[0, 0, 0, 0, -1], [0, 0, 0, 0, -1]]], "float32")
    losses = training.fit(images, targets, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_weight_sets_are_torchvision_s():
    v1, v2 = det_weights.get("resnet50", 1), det_weights.get("resnet50", 2)
    assert (v1.box_map, v2.box_map) == (36.4, 41.5)
    assert v1.checkpoint == "RetinaNet_ResNet50_FPN_Weights.COCO_V1"
    assert v2.file.url.endswith("retinanet_resnet50_fpn_v2_coco-5905b1c5.pth")
    assert v1.build_options()["bn_epsilon"] == 0.0  # torchvision's overwrite_eps for COCO_V1
    assert v1.preprocessing().class_names[1] == "person"


@pytest.mark.slow
@pytest.mark.parametrize("version", (1, 2))
def test_full_size_parameter_counts_equal_torchvision_s(version):
    """torchvision's meta counts parameters, not buffers: not the BN statistics, and in
    version 1 not the backbone's BN scales and offsets either (FrozenBatchNorm2d's buffers)."""
    with shapes_only():  # a count reads shapes only
        model = keras_resnet.RetinaNet("resnet50", version=version,
                                       **det_weights.get("resnet50", version).build_options())
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        if version == 1:
            # version 1's subnets have no norms: every gamma and beta is the backbone's BN's
            trainable -= sum(int(np.prod(w.shape)) for w in model.trainable_weights
                             if w.name in ("gamma", "beta"))
    assert trainable == det_weights.get("resnet50", version).num_params


@pytest.mark.parametrize("arguments, message", [
    (dict(version=3), r"`version` must be one of 1, 2; got 3"),
    (dict(classes=0), r"`classes` must be a positive"),
    (dict(backbone="resnet51"), r"`backbone` must be a model name"),
    (dict(backbone="resnet18", weights="torchvision_coco"), r"no published RetinaNet"),
    (dict(head_width=48, version=2), r"multiple of 32"),
    (dict(anchor_sizes=((32,),) * 4), r"`anchor_sizes` must be 5 tuples"),
    (dict(raw_outputs=True, max_detections=5), r"raw_outputs=True returns none"),
    (dict(nms_threshold=1.5), r"nms_threshold"),
])
def test_errors_are_one_line_and_name_the_argument(arguments, message):
    with pytest.raises(UserError, match=message) as caught:
        keras_resnet.RetinaNet(**{"backbone": "resnet8", **arguments})
    assert "\n" not in str(caught.value)


def test_a_state_dict_of_another_head_width_is_refused_naming_tensors():
    with pytest.raises(UserError, match=r"do not fit detector .*inner_blocks.2.0.weight is "
                                        r"\(16, 64, 1, 1\) in the file, \(8, 64, 1, 1\)"):
        detectors.RetinaNet(_tiny_backbone(), classes=3, version=1, head_width=8,
                            weights=os.path.join(FIXTURES, "det_v1.safetensors"))
