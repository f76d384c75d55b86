"""Weights: weight sets as data, converters to and from torchvision/timm/keras-hub layouts,
downloads, and the errors of bad input.

Reference outputs come from tests/fixtures/make_torch_fixtures.py (torchvision, timm and
keras-hub networks of reduced width); these tests never need PyTorch, except the ones that
say so, which are skipped where it is not installed.
"""

import dataclasses
import functools
import http.server
import importlib.util
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

import keras_resnet
from keras_resnet import preprocessing
from keras_resnet import weights as weights_lib
from keras_resnet.architectures import Stage, Stem, imagenet_architecture
from keras_resnet.models import build_resnet
from keras_resnet.summary import count_trainable_params
from keras_resnet.weights import files as files_lib
from keras_resnet.weights import sets as sets_lib

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TORCH_FIXTURES = ("torchvision_basic", "torchvision_bottleneck", "timm_bottleneck")


def _randomize(model, seed=0):
    """Random weights everywhere, including BN moving statistics (fresh ones are 0 and 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c),
            ])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])


# The bottleneck nets' conversion (ResNet-101/152 have the same blocks, more of them: their
# exact counts are tests/test_models.py's).
@pytest.mark.parametrize("depth", [50])
@pytest.mark.slow
def test_from_keras_applications_gives_equal_predictions(depth):
    application = getattr(keras.applications, f"ResNet{depth}")
    source = application(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    _randomize(source, seed=depth)
    ours = keras_resnet.from_keras_applications(source)
    assert ours.name == f"resnet{depth}"
    assert count_trainable_params(ours) == count_trainable_params(source)
    block = ours.get_layer("conv3_block1")
    assert block.conv1.strides == (2, 2) and block.use_bias and block.epsilon == 1.001e-5
    x = np.random.default_rng(depth).normal(size=(2, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(source(x, training=False))  # eager: no tracing
    got = keras.ops.convert_to_numpy(ours(x, training=False))
    assert np.abs(expected).max() > 0.1  # logits of a real scale, not a vanishing signal
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_from_keras_applications_headless_with_pooling():
    source = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3))
    _randomize(source)
    ours = keras_resnet.from_keras_applications(source, name="features")
    assert ours.name == "features" and ours.output_shape == (None, 2048)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), source.predict(x, verbose=0), atol=1e-4, rtol=0)


# ResNet152V2 differs from these two only in its blocks per stage (its count, which fixes
# them: tests/test_family.py); ResNet101V2 checks the blocks numbered past 9 (conv4_block23).
@pytest.mark.slow  # keras.applications' nets and ours, 12 s to 40 s each
@pytest.mark.parametrize("application", ["ResNet50V2", "ResNet101V2"])
def test_from_keras_applications_v2_gives_its_outputs_stages_and_parameters(application):
    """keras.applications' own V2 nets are the reference (random weights, BN statistics)."""
    source = getattr(keras.applications, application)(weights=None, input_shape=(67, 75, 3))
    rng = np.random.default_rng(1)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, var.shape)])
    ours = keras_resnet.from_keras_applications(source)
    assert ours.name == application.lower() and ours.count_params() == source.count_params()
    x = rng.uniform(-1, 1, size=(2, 67, 75, 3)).astype("float32")
    last_conv4 = {"ResNet50V2": 6, "ResNet101V2": 23}[application]
    # The pre-activated input of each stage's strided (last) block: reductions 4, 8, 16.
    stages = {"conv1": "conv1_conv", "conv2": "conv2_block3_preact_relu",
              "conv3": "conv3_block4_preact_relu",
              "conv4": f"conv4_block{last_conv4}_preact_relu", "conv5": "post_relu"}
    theirs = keras.Model(source.input, [source.get_layer(n).output for n in stages.values()]
                         + [source.output]).predict(x, verbose=0)
    mine = keras_resnet.feature_extractor(ours).predict(x, verbose=0)
    for (stage, _), expected in zip(stages.items(), theirs):
        assert np.abs(mine[stage] - expected).max() <= 1e-5 * np.abs(expected).max(), stage
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs[-1], atol=1e-6, rtol=0)
    info = {f["name"]: f["reduction"] for f in keras_resnet.feature_info(ours)}
    assert info == {"conv1": 2, "conv2": 4, "conv3": 8, "conv4": 16, "conv5": 32}


def test_from_keras_applications_rejects_other_models():
    with pytest.raises(ValueError, match="`keras_model`.*ResNet50"):
        keras_resnet.from_keras_applications(keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3)))
    with pytest.raises(TypeError, match="`keras_model`"):
        keras_resnet.from_keras_applications("resnet50")


@pytest.mark.slow  # a full-size ResNet-101 built twice
def test_imagenet_weights_go_through_keras_applications(monkeypatch):
    # Offline: stand in for the download with a weights=None source that records the request.
    requested = {}
    original = keras.applications.ResNet101

    def fake_resnet101(**kwargs):
        requested.update(kwargs)
        source = original(**{**kwargs, "weights": None})
        _randomize(source)
        requested["model"] = source
        return source

    monkeypatch.setattr(keras.applications, "ResNet101", fake_resnet101)
    model = keras_resnet.ResNet101(weights="imagenet", include_top=False, input_shape=(64, 64, 3), pooling="max")
    assert requested["weights"] == "imagenet" and requested["pooling"] == "max"
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), requested["model"].predict(x, verbose=0), atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="`shortcut='B'`.*'C'"):
        keras_resnet.ResNet101(weights="imagenet", shortcut="C")


# --- weight sets as data ---------------------------------------------------------------------


def test_every_depth_has_the_published_sets():
    names = {m: {s.name for s in weights_lib.available(m)} for m in weights_lib.MODELS}
    for model in weights_lib.MODELS:
        assert weights_lib.available(model)[0].is_default  # default first
        assert len(names[model]) == len(weights_lib.available(model))  # names unique
    for model in ("resnet50", "resnet101", "resnet152"):
        assert {"torchvision_v2", "timm_tv2_in1k", "timm_a1h", "keras_applications",
                "keras_hub"} <= names[model]
    for model in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        assert {"torchvision_v1", "timm_a1", "timm_tv_in1k"} <= names[model]
    # The family: torchvision's V1 and V2 and timm's safetensors copies; timm's ResNet-D and
    # SE-ResNet; keras.applications' V2 nets.
    for model in ("resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"):
        assert names[model] == {"torchvision_v1", "torchvision_v2", "timm_tv_in1k",
                                "timm_tv2_in1k"}
    assert names["resnext101_64x4d"] == {"torchvision_v1", "timm_tv_in1k"}
    for model in ("resnet18d", "resnet34d", "resnet101d", "resnet152d"):
        assert names[model] == {"timm_ra2"}
    assert names["resnet50d"] == names["seresnet50"] == {"timm_ra2", "timm_a1"}
    for model in ("resnet50v2", "resnet101v2", "resnet152v2"):
        assert names[model] == {"keras_applications"}
    assert "keras_hub" in names["resnet18"]
    assert weights_lib.get("resnet18", "imagenet").name == "timm_tv_in1k"
    assert weights_lib.get("resnet50", "imagenet").name == "keras_applications"


def test_weight_sets_are_consistent_data():
    for s in sets_lib.WEIGHT_SETS:
        assert s.files and all(f.url.startswith("https://") for f in s.files)
        if s.source == "torchvision":
            (f,) = s.files
            assert f.url.endswith(f.file_name) and f.file_name.startswith(s.model + "-")
            assert len(f.sha256_prefix) == 8 and f.sha256_prefix in f.file_name
        if s.source == "timm":
            assert s.files[0].url == (f"https://huggingface.co/{s.checkpoint}/resolve/main/"
                                      "model.safetensors")
        assert s.top1 is None or 60 < s.top1 < s.top5 < 100
        assert s.license and s.accuracy_note
        recipe = s.preprocessing()
        assert recipe.image_size == (s.image_size, s.image_size) and recipe.num_classes == 1000
        assert recipe.source == s.name
        assert (recipe.channel_order == "bgr") == (s.layout == "keras_applications"
                                                   and not s.model.endswith("v2"))
        assert s.preprocessing(include_top=False).class_names is None
    v2 = weights_lib.get("resnet50", "torchvision_v2").preprocessing(448)
    assert v2.image_size == (448, 448) and v2.resize_size == 464  # 232/224 kept


def test_imagenet_class_names():
    names = weights_lib.imagenet_class_names()
    assert len(names) == 1000 == len(set(names))
    assert names[:3] == ["tench", "goldfish", "great white shark"]
    assert names[-1] == "toilet tissue"
    assert names[134] == "crane (bird)" and names[517] == "crane (machine)"


def test_format_table_lists_the_sets():
    table = weights_lib.format_table("resnet50")
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["model", "weights", "checkpoint"]
    assert len(lines) == 1 + len(weights_lib.available("resnet50")) + 1
    assert "keras_applications *" in table and "80.86" in table
    assert "timm/resnet50.a1_in1k" in table
    assert len(weights_lib.format_table().splitlines()) == 2 + len(sets_lib.WEIGHT_SETS)
    with pytest.raises(ValueError, match="'resnet20' has no published ImageNet weights"):
        weights_lib.format_table("resnet20")


# --- fixtures of torchvision, timm and keras-hub ---------------------------------------------


def _fixture(name):
    return os.path.join(FIXTURES, name)


def _meta(name):
    with np.load(_fixture(f"{name}.npz"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _architecture(meta):
    """A Table 1 network with the fixture's widths and blocks per stage."""
    block = str(meta["block"])
    base = imagenet_architecture(18 if block == "basic" else 50)
    stages = tuple(Stage(f"conv{i + 2}", int(r), int(f), 1 if i == 0 else 2)
                   for i, (r, f) in enumerate(zip(meta["repeats"], meta["filters"])))
    return dataclasses.replace(base, stem=Stem(int(meta["stem"]), 7, 2, 3, 2), stages=stages)


def _model(meta, weights=None, include_top=True, **options):
    if str(meta["block"]) == "bottleneck":
        options = {"stride_position": "3x3", **options}
    return build_resnet(_architecture(meta), include_top, weights,
                        input_shape=meta["input"].shape[1:], classes=int(meta["classes"]),
                        classifier_activation=None, weight_decay=0, **options)


def _stages(model, meta, images):
    """Outputs of conv2_x ... conv5_x (torchvision's layer1 ... layer4)."""
    ends = [model.get_layer(f"conv{i + 2}_block{int(r)}").output
            for i, r in enumerate(meta["repeats"])]
    return keras.Model(model.input, ends)(images)


def _assert_matches(model, meta, atol=1e-5):
    images = meta["input"]
    np.testing.assert_allclose(model(images), meta["logits"], atol=atol, rtol=0)
    assert np.abs(meta["logits"]).max() > 0.1  # a real signal, not a vanishing one
    for i, got in enumerate(_stages(model, meta, images)):
        np.testing.assert_allclose(got, meta[f"stage{i + 1}"], atol=atol, rtol=0)


@pytest.mark.parametrize("name", TORCH_FIXTURES)
def test_torch_checkpoints_give_their_outputs(name):
    meta = _meta(name)
    model = _model(meta, _fixture(f"{name}.safetensors"))
    _assert_matches(model, meta)


@pytest.mark.parametrize("name", TORCH_FIXTURES)
def test_to_torch_layout_round_trips_bit_for_bit(name, tmp_path):
    source = _fixture(f"{name}.safetensors")
    model = _model(_meta(name), source)
    written = weights_lib.to_torch_layout(model, tmp_path / "out.safetensors")
    original, again = load_file(source), load_file(written)
    assert sorted(again) == sorted(original)  # num_batches_tracked included
    for key, value in original.items():
        assert again[key].dtype == value.dtype and again[key].shape == value.shape, key
        assert np.array_equal(again[key], value), key
    assert os.listdir(tmp_path) == ["out.safetensors"]  # no temporary file left


def test_npz_state_dict_and_headless_model(tmp_path):
    meta = _meta("torchvision_bottleneck")
    np.savez(tmp_path / "state.npz", **load_file(_fixture("torchvision_bottleneck.safetensors")))
    _assert_matches(_model(meta, tmp_path / "state.npz"), meta)
    headless = _model(meta, tmp_path / "state.npz", include_top=False, pooling="avg")
    features = np.asarray(headless(meta["input"]))
    np.testing.assert_allclose(features, meta["stage4"].mean(axis=(1, 2)), atol=1e-5, rtol=0)


def _keras_hub_preset(tmp_path, task=True):
    folder = tmp_path / "resnet_preset"
    folder.mkdir(parents=True)
    shutil.copy(_fixture("keras_hub_bottleneck.backbone.h5"), folder / "model.weights.h5")
    if task:
        shutil.copy(_fixture("keras_hub_bottleneck.task.h5"), folder / "task.weights.h5")
    return folder


def test_keras_hub_preset_gives_its_outputs(tmp_path):
    meta = _meta("keras_hub_bottleneck")
    _assert_matches(_model(meta, _keras_hub_preset(tmp_path)), meta)
    backbone_file = _keras_hub_preset(tmp_path / "b", task=False) / "model.weights.h5"
    headless = _model(meta, backbone_file, include_top=False)
    np.testing.assert_allclose(headless(meta["input"]), meta["stage4"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"Missing from the file \(2\): layers/dense/vars/0"):
        _model(meta, backbone_file)  # the classifier lives in task.weights.h5


def test_own_weights_file_still_loads(tmp_path):
    meta = _meta("torchvision_basic")
    model = _model(meta, _fixture("torchvision_basic.safetensors"))
    model.save_weights(tmp_path / "m.weights.h5")
    _assert_matches(_model(meta, tmp_path / "m.weights.h5"), meta)
    other = _model({**meta, "repeats": np.array([1, 1, 1, 1])})
    before = _unchanged(other)
    with pytest.raises(ValueError, match="does not fit model.*nothing was loaded"):
        weights_lib.load_weights(other, tmp_path / "m.weights.h5")
    _assert_same(other, before)


# --- bad input: clear errors, nothing half-loaded ---------------------------------------------


def _unchanged(model):
    return [v.numpy().copy() for v in model.variables]


def _assert_same(model, before):
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))


def test_weights_of_another_depth_name_the_tensors_and_load_nothing():
    meta = _meta("torchvision_basic")
    model = _model({**meta, "repeats": np.array([1, 1, 1, 1])})
    before = _unchanged(model)
    with pytest.raises(ValueError, match=r"needs 62 tensors, the file has 72.*In the file but "
                                         r"not in the model \(10\): layer1\.1\.bn1\.bias"):
        weights_lib.load_weights(model, _fixture("torchvision_basic.safetensors"))
    _assert_same(model, before)


def test_weights_of_another_width_or_block_name_the_shapes():
    meta = _meta("timm_bottleneck")
    model = _model({**meta, "filters": np.array([8, 16, 32, 64])})
    before = _unchanged(model)
    with pytest.raises(ValueError, match=r"81 of 87 tensors differ in shape, first layer1\.0\.conv1"
                                         r"\.weight: file \(4, 64, 1, 1\), model \(8, 64, 1, 1\)"):
        weights_lib.load_weights(model, _fixture("timm_bottleneck.safetensors"))
    _assert_same(model, before)
    with pytest.raises(ValueError, match="Missing from the file.*layer1.0.bn3"):
        _model(_meta("torchvision_basic"), _fixture("torchvision_bottleneck.safetensors"))


def test_torch_layout_needs_its_variant():
    meta = _meta("torchvision_bottleneck")
    source = _fixture("torchvision_bottleneck.safetensors")
    with pytest.raises(ValueError, match="stride on its 3x3.*stride_position='1x1'.*'3x3'"):
        _model(meta, source, stride_position="1x1")
    with pytest.raises(ValueError, match="BN epsilon 1e-5.*1.001e-05"):
        _model(meta, source, bn_epsilon=1.001e-5)
    with pytest.raises(ValueError, match="In the file but not in the model.*downsample"):
        _model(meta, source, shortcut="A")
    with pytest.raises(ValueError, match=r"Missing from the file \(\d+\): conv1\.bias"):
        _model(meta, source, use_bias=True)


@pytest.mark.parametrize("content", [b"not a weights file at all", "truncated"])
def test_broken_safetensors_files_are_refused(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    if content == "truncated":
        data = open(_fixture("torchvision_basic.safetensors"), "rb").read()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    model = _model(_meta("torchvision_basic"))
    before = _unchanged(model)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        weights_lib.load_weights(model, path)
    _assert_same(model, before)


def test_broken_npz_h5_and_unknown_files_are_refused(tmp_path):
    model = _model(_meta("torchvision_basic"))
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable .npz.*pickled objects"):
        weights_lib.load_weights(model, tmp_path / "objects.npz")
    (tmp_path / "half.npz").write_bytes(open(tmp_path / "objects.npz", "rb").read()[:40])
    with pytest.raises(ValueError, match="not a readable .npz"):
        weights_lib.load_weights(model, tmp_path / "half.npz")
    (tmp_path / "bad.weights.h5").write_bytes(b"\x89HDF garbage")
    with pytest.raises(ValueError, match="not a readable HDF5 weights file"):
        weights_lib.load_weights(model, tmp_path / "bad.weights.h5")
    with pytest.raises(ValueError, match=r"`weights` must be None, a weight set name or a path "
                                         r"to a \.weights\.h5, \.safetensors.*got '.*w\.ckpt'"):
        weights_lib.load_weights(model, tmp_path / "w.ckpt")
    with pytest.raises(ValueError, match="does not exist"):
        weights_lib.load_weights(model, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="names a weight set.*ResNet18"):
        weights_lib.load_weights(model, "timm_a1")


class _Marker:
    """Unpickling this would create a file: no file, nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_pth(tmp_path):
    marker = tmp_path / "UNPICKLED"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": _Marker(str(marker))}))
    return path, marker


def test_pth_without_torch_says_how_to_get_safetensors(tmp_path, monkeypatch):
    monkeypatch.setattr(files_lib, "_torch", lambda: None)
    path, marker = _evil_pth(tmp_path)
    with pytest.raises(ImportError, match=r"PyTorch is not installed.*safetensors.*timm_tv_in1k"):
        weights_lib.load_weights(_model(_meta("torchvision_basic")), path)
    assert not marker.exists()
    with pytest.raises(ImportError, match=r"weights='torchvision_v1'.*\.pth.*timm_tv_in1k"):
        keras_resnet.ResNet18(weights="torchvision_v1")  # refused before any download


def test_pth_is_read_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    path, marker = _evil_pth(tmp_path)
    with pytest.raises(ValueError, match=r"refused by torch\.load\(weights_only=True\)"):
        weights_lib.load_weights(_model(_meta("torchvision_basic")), path)
    assert not marker.exists()
    meta = _meta("torchvision_basic")
    state = load_file(_fixture("torchvision_basic.safetensors"))
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "state.pth")
    _assert_matches(_model(meta, tmp_path / "state.pth"), meta)


def test_weight_set_names_are_checked():
    with pytest.raises(ValueError, match=r"`weights='torchvision_v2'` is no weight set of "
                                         r"resnet18; resnet18 has 'timm_tv_in1k', "
                                         r"'torchvision_v1'"):
        keras_resnet.ResNet18(weights="torchvision_v2")
    with pytest.raises(ValueError, match="`weights='resnet50_best'` is no weight set of resnet50"):
        keras_resnet.ResNet50(weights="resnet50_best")
    with pytest.raises(ValueError, match=r"`weights='timm_a1'` with `include_top=True` needs "
                                         r"`classes=1000`.*got classes=10.*include_top=False"):
        keras_resnet.ResNet50(weights="timm_a1", classes=10)
    with pytest.raises(ValueError, match="`weights='timm_a1'` needs `stride_position='3x3'`"):
        keras_resnet.ResNet50(weights="timm_a1", stride_position="1x1")
    with pytest.raises(ValueError, match="weight sets exist for ImageNet nets only"):
        keras_resnet.ResNet20(weights="imagenet")


def test_to_torch_layout_refuses_models_torchvision_lacks(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="no torchvision counterpart.*CIFAR"):
        weights_lib.to_torch_layout(keras_resnet.ResNet20(), path)
    meta = _meta("torchvision_basic")
    with pytest.raises(ValueError, match="shortcut 'zero_pad'.*option A"):
        weights_lib.to_torch_layout(_model(meta, shortcut="A"), path)
    with pytest.raises(ValueError, match="conv biases"):
        weights_lib.to_torch_layout(_model(meta, use_bias=True), path)
    with pytest.raises(ValueError, match="stride_position='1x1'"):
        weights_lib.to_torch_layout(
            _model(_meta("torchvision_bottleneck"), stride_position="1x1"), path)
    assert not os.listdir(tmp_path)


# --- downloads --------------------------------------------------------------------------------


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL, request log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/", requests
    server.shutdown()
    server.server_close()


def _served_set(folder, url, name="torchvision_basic", **hashes):
    shutil.copy(_fixture(f"{name}.safetensors"), folder / "w.safetensors")
    weight_file = weights_lib.WeightFile(url + "w.safetensors", "test_w.safetensors", **hashes)
    return dataclasses.replace(weights_lib.get("resnet18", "timm_a1"), files=(weight_file,))


def test_download_checks_hash_and_caches(http_folder, tmp_path):
    folder, url, requests = http_folder
    sha = files_lib.file_hash(_fixture("torchvision_basic.safetensors"), "sha256")
    weight_set = _served_set(folder, url, sha256=sha)
    cache = tmp_path / "cache"
    tensors = weights_lib.fetch(weight_set, cache_dir=cache)
    meta = _meta("torchvision_basic")
    _assert_matches(weights_lib.load_tensors(_model(meta), tensors, "torch"), meta)
    assert os.listdir(cache / "keras_resnet") == ["test_w.safetensors"]
    weights_lib.fetch(weight_set, cache_dir=cache)
    assert len(requests) == 1  # the second time from the cache
    assert weights_lib.fetch(_served_set(folder, url, sha256_prefix=sha[:8]),
                             cache_dir=tmp_path / "other")


@pytest.mark.parametrize("hashes", [{"sha256": "0" * 64}, {"sha256_prefix": "deadbeef"},
                                    {"md5": "0" * 32}])
def test_hash_mismatch_keeps_no_file(http_folder, tmp_path, hashes):
    folder, url, _ = http_folder
    with pytest.raises(ValueError, match=r"Downloaded http://127\.0\.0\.1.*nothing was kept"):
        weights_lib.fetch(_served_set(folder, url, **hashes), cache_dir=tmp_path / "cache")
    assert os.listdir(tmp_path / "cache" / "keras_resnet") == []


def test_unreachable_url_says_where_to_put_the_file(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    weight_set = _served_set(tmp_path, f"http://127.0.0.1:{port}/")
    folder = os.path.join(tmp_path, "cache", "keras_resnet")
    with pytest.raises(ConnectionError) as error:
        weights_lib.fetch(weight_set, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert f"http://127.0.0.1:{port}/w.safetensors" in message
    assert "'test_w.safetensors'" in message and folder in message and "weights=PATH" in message
    assert os.listdir(folder) == []


def _serve_weight_set(http_folder, monkeypatch, reference, model, name):
    """``reference``'s weights (random, variances > 0) served on 127.0.0.1 in the torch layout
    as ``model``'s set ``name`` (its recipe kept), downloads going to a KERAS_HOME of the
    test's own; returns ``reference``."""
    folder, url, _ = http_folder
    rng = np.random.default_rng(0)
    for variable in reference.variables:  # anything but the initial values
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    file_name = f"{model}.safetensors"
    weights_lib.to_torch_layout(reference, folder / file_name)
    published = weights_lib.get(model, name)
    served = dataclasses.replace(
        published, files=(weights_lib.WeightFile(url + file_name, file_name),))
    monkeypatch.setattr(sets_lib, "WEIGHT_SETS", tuple(
        served if s is published else s for s in sets_lib.WEIGHT_SETS))
    monkeypatch.setenv("KERAS_HOME", str(folder.parent / "home"))
    return reference


def _serve_resnet18_set(http_folder, monkeypatch):
    """A random ResNet-18 served as resnet18's "imagenet" set (timm_tv_in1k's recipe)."""
    reference = keras_resnet.ResNet18(input_shape=(64, 64, 3))
    return _serve_weight_set(http_folder, monkeypatch, reference, "resnet18", "timm_tv_in1k")


@pytest.mark.slow  # 2 s or more of its own
def test_resnet18_with_a_weight_set_end_to_end(http_folder, monkeypatch):
    """The whole path: set name -> download (KERAS_HOME) -> variant -> weights + preprocessing."""
    folder, _, _ = http_folder
    reference = _serve_resnet18_set(http_folder, monkeypatch)
    model = keras_resnet.ResNet18(weights="imagenet", input_shape=(64, 64, 3))
    assert os.path.exists(folder.parent / "home" / "keras_resnet" / "resnet18.safetensors")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    recipe = preprocessing.of(model)
    assert recipe.source == "timm_tv_in1k" and recipe.class_names[0] == "tench"
    assert recipe.image_size == (64, 64) and recipe.resize_size == 73  # 256/224 of 64
    headless = keras_resnet.ResNet18(weights="timm_tv_in1k", include_top=False, pooling="avg")
    assert headless.input_shape == (None, 224, 224, 3) and headless.output_shape == (None, 512)
    assert preprocessing.of(headless).class_names is None


@pytest.mark.slow  # a 47 MB file written, served and read
def test_a_family_weight_set_end_to_end(http_folder, monkeypatch):
    """ResNet-18-D's "imagenet" (timm_ra2): download, the deep stem and average-pool shortcuts
    loaded by timm's names, timm's RA2 recipe (bicubic, 288 crop of 303, scaled to 64)."""
    reference = _serve_weight_set(http_folder, monkeypatch, keras_resnet.ResNet18D(input_shape=(64, 64, 3)),
                                  "resnet18d", "timm_ra2")
    model = keras_resnet.ResNet18D(weights="imagenet", input_shape=(64, 64, 3))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    recipe = preprocessing.of(model)
    assert recipe.source == "timm_ra2" and recipe.interpolation == "bicubic"
    assert recipe.image_size == (64, 64) and recipe.resize_size == 67  # 303/288 of 64


# --- full size, against torchvision and keras-hub themselves (skipped without them) ---------


def _torch_python():
    """An interpreter with torch + torchvision: $KERAS_RESNET_TORCH_PYTHON, or this one."""
    python = os.environ.get("KERAS_RESNET_TORCH_PYTHON")
    if python:
        return python
    if importlib.util.find_spec("torch") and importlib.util.find_spec("torchvision"):
        return sys.executable
    pytest.skip("torch and torchvision are not installed (or set KERAS_RESNET_TORCH_PYTHON)")


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_full_size_parity_with_torchvision(depth, tmp_path):
    """torchvision's own resnetDEPTH (random weights and BN statistics, in a process of its
    own) against ours converted from its state dict, and our export loaded back by it."""
    python, script = _torch_python(), _fixture("torchvision_reference.py")

    def torchvision(command):
        result = subprocess.run([python, script, command, str(depth), str(tmp_path)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    torchvision("export")
    images, expected = np.load(tmp_path / "images.npy"), np.load(tmp_path / "logits.npy")
    ours = getattr(keras_resnet, f"ResNet{depth}")(
        weights=str(tmp_path / "tv.safetensors"), input_shape=images.shape[1:],
        classifier_activation=None, **({"stride_position": "3x3"} if depth > 34 else {}))
    difference = np.abs(np.asarray(ours(images)) - expected).max()
    print(f"resnet{depth}: max |logit difference| vs torchvision {difference:.2e} "
          f"(logits up to {np.abs(expected).max():.2f})")
    assert difference < 1e-5 * max(1.0, np.abs(expected).max())
    weights_lib.to_torch_layout(ours, tmp_path / "back.safetensors")
    print(torchvision("check").strip())


@pytest.mark.parametrize("depth", [18, 50, 101, 152])
def test_full_size_parity_with_keras_hub(depth, tmp_path):
    """keras-hub's own ResNetBackbone + classifier (random weights, laid out as its presets:
    model.weights.h5 + task.weights.h5) against ours loaded from that preset folder."""
    keras_hub = pytest.importorskip("keras_hub")
    block, repeats = keras_resnet.architectures.IMAGENET_DEPTHS[depth]
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=list(repeats),
        stackwise_num_strides=[1, 2, 2, 2], block_type=f"{block}_block")
    rng = np.random.default_rng(depth)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            last = layer.name.endswith("_3_bn" if block == "bottleneck" else "_2_bn")
            layer.set_weights([rng.uniform(*((0.05, 0.25) if last else (0.5, 1.5)), c),
                               rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 2, c)])
    task = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=1000,
                                                  activation=None)
    backbone.save_weights(tmp_path / "model.weights.h5")
    task.save_task_weights(tmp_path / "task.weights.h5")
    images = rng.normal(size=(2, 96, 112, 3)).astype(np.float32)
    ours = getattr(keras_resnet, f"ResNet{depth}")(
        weights=str(tmp_path), input_shape=images.shape[1:], classifier_activation=None,
        **({"stride_position": "3x3"} if depth > 34 else {}))
    expected = np.asarray(task(images, training=False))
    difference = np.abs(np.asarray(ours(images)) - expected).max()
    print(f"resnet{depth}: max |logit difference| vs keras-hub {difference:.2e} "
          f"(logits up to {np.abs(expected).max():.2f})")
    assert difference < 1e-5 * max(1.0, np.abs(expected).max())


# --- any number of input channels -------------------------------------------------------------


def test_adapt_input_kernel_follows_timms_rule():
    kernel = np.random.default_rng(0).normal(size=(7, 7, 3, 8)).astype("float32")
    np.testing.assert_allclose(weights_lib.adapt_input_kernel(kernel, 1), kernel.sum(axis=2, keepdims=True))
    np.testing.assert_array_equal(weights_lib.adapt_input_kernel(kernel, 3), kernel)
    four = weights_lib.adapt_input_kernel(kernel, 4)  # R, G, B, R, scaled by 3/4
    np.testing.assert_allclose(four, np.concatenate([kernel, kernel[:, :, :1]], axis=2) * 0.75, rtol=1e-6)
    np.testing.assert_allclose(weights_lib.adapt_input_kernel(kernel, 2), kernel[:, :, :2] * 1.5, rtol=1e-6)
    assert weights_lib.adapt_input_kernel(kernel, 7).shape == (7, 7, 7, 8)
    with pytest.raises(ValueError, match=r"Only a 3-channel \(RGB\) first convolution can be adapted"):
        weights_lib.adapt_input_kernel(kernel[:, :, :2], 1)
    with pytest.raises(ValueError, match="`channels` must be a positive integer; got 0"):
        weights_lib.adapt_input_kernel(kernel, 0)


@pytest.mark.parametrize("channels, order", [(1, "grey"), (4, "stacked")])
@pytest.mark.slow
def test_a_weight_set_adapts_conv1_and_its_preprocessing(http_folder, monkeypatch, channels, order):
    """ResNet18(weights=..., input_shape=(h, w, C)): conv1 adapted, the recipe C channels wide."""
    reference = _serve_resnet18_set(http_folder, monkeypatch)
    model = keras_resnet.ResNet18(weights="imagenet", input_shape=(64, 64, channels))
    kernel = reference.get_layer("conv1").kernel.numpy()
    np.testing.assert_allclose(model.get_layer("conv1").kernel.numpy(),
                               weights_lib.adapt_input_kernel(kernel, channels), rtol=1e-6)
    for ours, theirs in zip(model.weights[1:], reference.weights[1:]):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    recipe = preprocessing.of(model)
    assert recipe.channel_order == order and recipe.channels == channels
    mean, std = np.asarray(preprocessing.IMAGENET_MEAN), np.asarray(preprocessing.IMAGENET_STD)
    expected_mean = [mean.mean()] if channels == 1 else [*mean, mean[0]]
    np.testing.assert_allclose(recipe.mean, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(recipe.std, [std.mean()] if channels == 1 else [*std, std[0]], rtol=1e-6)
    if channels == 1:
        # A grey image gives what its RGB copy gave, up to the mean/std averaging: exactly
        # when the recipe is the same in every channel.
        flat = preprocessing.ImagePreprocessing(64, mean=(0.5,) * 3, std=(0.25,) * 3)
        grey = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 1)).astype("float32")
        rgb_model = keras_resnet.ResNet18(input_shape=(64, 64, 3))
        rgb_model.set_weights(reference.get_weights())
        np.testing.assert_allclose(
            model(flat.for_channels(1).normalize(grey)),
            rgb_model(flat.normalize(np.repeat(grey, 3, axis=-1))), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # two ResNet-50s
def test_keras_applications_weights_adapt_to_one_channel(monkeypatch):
    """The keras.applications path (Caffe BGR weights) adapts conv1 too."""
    original = keras.applications.ResNet50
    made = {}

    def fake_resnet50(**kwargs):
        assert kwargs["weights"] == "imagenet" and kwargs["input_shape"] == (64, 64, 3)
        made["model"] = original(**{**kwargs, "weights": None})
        _randomize(made["model"])
        return made["model"]

    monkeypatch.setattr(keras.applications, "ResNet50", fake_resnet50)
    model = keras_resnet.ResNet50(weights="imagenet", include_top=False, pooling="avg",
                                  input_shape=(64, 64, 1))
    np.testing.assert_allclose(model.get_layer("conv1").kernel.numpy(),
                               made["model"].get_layer("conv1_conv").kernel.numpy().sum(axis=2, keepdims=True),
                               rtol=1e-6)
    recipe = preprocessing.of(model)
    assert recipe.channel_order == "grey" and recipe.mean.shape == (1,) and recipe.scale == 1.0
    grey = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 1)).astype("float32")
    # Caffe's recipe differs per channel, so grey and RGB agree closely, not exactly.
    caffe_rgb = made["model"](np.repeat(grey, 3, -1)[..., ::-1] - preprocessing.CAFFE_MEAN_BGR)
    ours = model(grey - recipe.mean)
    assert np.corrcoef(np.ravel(ours), np.ravel(caffe_rgb))[0, 1] > 0.99
