"""A detection run from start to end: ``keras_resnet.runs.train`` on the digit boxes (fewer of
them) with RetinaNet on ResNet-8, its run folder, its COCO figures against the saved model's
own predictions in a fresh interpreter; images without boxes; torchvision's detection
recipe against torch's own schedulers, the from-scratch recipe's Adam against torch's; each
backbone family's defaults; the settings a detection run refuses."""

import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_resnet
from harness import torch_python
from keras_resnet import cli, data, runs, tasks
from keras_resnet.coco_map import coco_map
from keras_resnet.commands import print_run, train_config
from keras_resnet.data.sources.digit_boxes import BOX_COUNTS, digit_boxes
from keras_resnet.errors import InvalidArgument
from keras_resnet.evaluation import evaluate
from keras_resnet.export.masks import voc_palette
from keras_resnet.heads import detectors
from keras_resnet.recipes import COCO_ITERATIONS, get_recipe, make_optimizer, warmup_steps
from keras_resnet.train import detection
from keras_resnet.train.callbacks import paper_callbacks
from keras_resnet.train.compile import compile_model
from keras_resnet.train.config import RunConfig
from keras_resnet.train.schedules import LinearWarmup, StepSchedule
from keras_resnet.train.setup import Splits

FEW = {"train": 32, "validation": 16, "test": 16}
MAP_FIELDS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


@contextlib.contextmanager
def few_scenes(**counts):
    """The digit boxes with ``counts`` scenes per split (FEW by default) while inside."""
    saved = dict(BOX_COUNTS)
    BOX_COUNTS.update(counts or FEW)
    try:
        yield
    finally:
        BOX_COUNTS.update(saved)


@pytest.fixture(scope="module")
def small_box_run(tmp_path_factory):
    """One epoch of RetinaNet (width 16) on ResNet-8 over 32 training scenes, keeping every
    detection above 0.001 (an untrained detector scores about 0.01: the figures are not 0);
    the run's result, folder and printed lines."""
    run_dir = str(tmp_path_factory.mktemp("boxes") / "run")
    printed = io.StringIO()
    with few_scenes(), contextlib.redirect_stdout(printed):
        result = runs.train("resnet8", "digit_boxes", run_dir=run_dir, epochs=1, verbose=0,
                            model_options={"head_width": 16, "score_threshold": 0.001})
    return result, run_dir, printed.getvalue()


_PREDICT = textwrap.dedent("""
    import sys

    import keras
    import numpy as np

    import keras_resnet  # registers the package's layers
    from keras_resnet.data.sources.digit_boxes import digit_boxes

    model = keras.saving.load_model(sys.argv[1])
    images = digit_boxes("test", count=int(sys.argv[2]))[0]
    pixels = keras_resnet.preprocessing.of(model).normalize(images.astype("float32"))
    found = model.predict(pixels, batch_size=16, verbose=0)
    np.savez(sys.argv[3], **{key: np.asarray(value) for key, value in found.items()})
""")


def _fresh_predictions(model_path, count, tmp_path):
    """The saved model's detections on the first ``count`` test scenes, from a fresh
    interpreter that loads it with ``keras.saving.load_model``."""
    script, out = tmp_path / "predict.py", tmp_path / "found.npz"
    script.write_text(_PREDICT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, str(script), model_path, str(count), str(out)], check=True,
                   env=env, timeout=300, capture_output=True)
    return dict(np.load(out))


@pytest.mark.slow
def test_a_detection_run_reports_the_coco_figures_of_its_saved_model(small_box_run, tmp_path):
    result, run_dir, printed = small_box_run
    assert (result["task"], result["recipe"]["name"]) == ("detection", "detection_from_scratch")
    assert result["detector"]["version"] == 1 and result["detector"]["head_width"] == 16
    with open(os.path.join(run_dir, "run.json")) as f:
        test = json.load(f)["test"]
    for name in MAP_FIELDS:  # COCOeval's -1 (no ground truth in the range) is None
        assert test[name] is None or 0.0 <= test[name] <= 1.0, name
    assert test["map_large"] is None  # no digit is larger than 32x32
    assert test["map"] > 0.0 and sorted(test["per_class_ap"]) == list("0123456789")
    # The figures again, from the saved model in a fresh interpreter and the scenes' own boxes.
    found = _fresh_predictions(os.path.join(run_dir, "model.keras"), FEW["test"], tmp_path)
    assert found["boxes"].shape == (FEW["test"], 300, 4)
    expected = _coco_figures_of(found, FEW["test"])
    for name in MAP_FIELDS:
        assert test[name] == pytest.approx(None if expected[name] < 0 else expected[name],
                                           abs=1e-9), name
    # Exported with its post-processing: the SavedModel's boxes are the Keras model's.
    parity = {row["file"]: row for row in result["export"]["parity"] if row["precision"] == "float32"}
    assert sorted(parity) == ["model_float32.tflite", "retinanet_resnet8/1"]
    assert parity["retinanet_resnet8/1"]["box_agreement"] == 1.0
    assert os.path.exists(os.path.join(run_dir, "export", "retinanet_resnet8", "1",
                                       "saved_model.pb"))


@pytest.mark.slow
def test_a_detection_run_saves_detections_models_and_prints_its_figures(small_box_run, capsys):
    result, run_dir, _ = small_box_run
    for name in ("model.keras", "best.keras"):
        model = keras.saving.load_model(os.path.join(run_dir, name))
        assert tasks.task_of(model) == tasks.Task("detection", 10, "sigmoid")
        assert keras_resnet.preprocessing.of(model).class_names == list("0123456789")
        assert sorted(model.output) == ["boxes", "classes", "num_detections", "scores"]
        assert model.get_layer("detections").score_threshold == 0.001  # the run's settings
    assert "val_loss" in result["history"][0]  # watched: no mAP while it trains
    print_run(result)
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("test "))
    assert lines[first].startswith(f"test mAP {result['test']['map']:.4f}, mAP@.50 ")
    assert lines[first + 1].startswith("test AP per class: 0 ")
    assert lines[0].startswith("SavedModel: ")  # and the parity table of its boxes
    assert any("box agree" in line for line in lines)


@pytest.mark.slow
def test_images_without_boxes_train_their_scores_down():
    with few_scenes(train=16):
        train, info = data.load("digit_boxes", "train", 8, seed=0)
    keras.utils.set_random_seed(0)
    net = detection.detector("resnet8", info, {"head_width": 8})

    def without_boxes(images, targets):
        return images, {"boxes": targets["boxes"] * 0, "classes": targets["classes"] * 0 - 1}

    given = Splits(train.map(without_boxes), None, None, info, None)
    unpacked = given.train
    trained, splits = detection.for_training(net, given)
    assert given.train is unpacked  # new splits: the run maps its data once per model it builds
    compile_model(trained, "torchvision_detection", 8, learning_rate=0.05,
                  loss=detection.loss(net), fast_path=False)
    images, packed = next(iter(splits.train))
    assert packed.shape[1:] == (1, 5) and np.all(np.asarray(packed)[..., 4] == -1)
    before = keras.ops.sigmoid(trained(images)[..., :10])
    history = trained.fit(splits.train.take(1).repeat(4), verbose=0, shuffle=False)
    after = keras.ops.sigmoid(trained(images)[..., :10])
    assert all(np.isfinite(history.history["loss"]))
    assert float(np.mean(after)) < float(np.mean(before))


def test_the_detection_recipe_follows_torchvisions_schedulers(tmp_path):
    recipe = get_recipe("torchvision_detection")
    assert (recipe.base_learning_rate, recipe.base_batch_size, recipe.momentum) == (0.01, 16, 0.9)
    assert (recipe.weight_decay, recipe.weight_decay_style) == (1e-4, "l2")  # torch SGD's own
    assert recipe.decay_norm and recipe.decay_bias  # every parameter, as torch's SGD there
    assert warmup_steps(recipe, 26 * COCO_ITERATIONS) == 1000  # the published warm-up
    assert StepSchedule.scaled(260, recipe).milestones == (160, 220)  # epochs 16, 22 of 26
    names = [type(c).__name__ for c in paper_callbacks(str(tmp_path), recipe,
                                                       total_iterations=26_000, tensorboard=False)]
    assert names.index("LinearWarmup") < names.index("StepSchedule")
    # torch's LinearLR (epoch 0) and MultiStepLR, each stepped per iteration, on 60 iterations.
    script = ("import torch\np = torch.nn.Parameter(torch.zeros(1))\n"
              "o = torch.optim.SGD([p], lr=0.01, momentum=0.9)\n"
              "w = torch.optim.lr_scheduler.LinearLR(o, start_factor=0.001, total_iters=10)\n"
              "m = torch.optim.lr_scheduler.MultiStepLR(o, milestones=[37, 51], gamma=0.1)\n"
              "for _ in range(60):\n    print(o.param_groups[0]['lr'])\n"
              "    o.step(); w.step(); m.step()\n")
    expected = [float(v) for v in subprocess.run([torch_python(), "-c", script], check=True,
                                                 capture_output=True, text=True).stdout.split()]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    callbacks = [LinearWarmup(10, 0.001), StepSchedule((37, 51))]
    rates = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    model.fit(np.zeros((60, 1)), np.zeros((60, 1)), batch_size=1, verbose=0, shuffle=False,
              callbacks=[*callbacks, Record()])
    np.testing.assert_allclose(rates, expected, rtol=1e-5)


def test_detection_flags_and_data_pick_a_detection_run():
    args = cli.build_parser().parse_args(["train", "--dataset", "digit_boxes",
                                          "--retinanet-version", "2", "--head-width", "64"])
    config = train_config(args)
    assert config.model_options == {"version": 2, "head_width": 64}
    args = cli.build_parser().parse_args(["train", "--dataset", "digit_boxes",
                                          "--retinanet-version", "2"])
    config = train_config(args)
    assert detection.is_detection(config)
    assert detection.is_detection(RunConfig("resnet20", task="detection"))
    assert not detection.is_detection(RunConfig("resnet20"))
    assert config.model == "resnet18"  # a detection run's default backbone
    defaults = detection.with_run_defaults(config)
    assert (defaults.recipe.epochs, defaults.recipe.batch_size) == (8, 16)
    # ResNet-18 (ImageNet style) on the 64x64 scenes: doubled, anchors from 16; given options
    # win over the family's.
    assert defaults.data.image_size == 128
    assert defaults.model_options["head_width"] == 64 and config.model_options["version"] == 2
    assert defaults.model_options["anchor_sizes"][0] == (16, 20, 25)
    sized = dataclasses.replace(config, data=dataclasses.replace(config.data, image_size=64))
    assert "anchor_sizes" not in detection.with_run_defaults(sized).model_options  # torchvision's
    cifar = detection.with_run_defaults(RunConfig("resnet20", data=config.data))
    assert cifar.data.image_size is None and cifar.model_options == {"head_width": 32}
    plain = train_config(cli.build_parser().parse_args(["train"]))
    assert plain.model == "resnet20" and not detection.is_detection(plain)


def test_the_from_scratch_recipe_steps_as_torchs_adam(tmp_path):
    python = torch_python()
    recipe = get_recipe("detection_from_scratch")
    assert (recipe.optimizer, recipe.base_learning_rate, recipe.weight_decay) == ("adam", 1e-3, 0)
    assert recipe.milestones == get_recipe("torchvision_detection").milestones
    assert not recipe.modern  # the data pipeline's own targets (boxes), no mixing
    start = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    grads = np.random.default_rng(1).normal(size=(5, 3, 4)).astype("float32")
    variable = keras.Variable(start)
    optimizer = make_optimizer(None, recipe, 0.01)
    for grad in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(grad), variable)])
    script = ("import sys, numpy as np, torch\n"
              "start, grads = np.load(sys.argv[1]), np.load(sys.argv[2])\n"
              "p = torch.nn.Parameter(torch.tensor(start))\n"
              "o = torch.optim.Adam([p], lr=0.01, eps=1e-7)\n"
              "for g in grads:\n    p.grad = torch.tensor(g); o.step()\n"
              "print(' '.join(map(str, p.detach().numpy().ravel().tolist())))\n")
    np.save(tmp_path / "start.npy", start)
    np.save(tmp_path / "grads.npy", grads)
    out = subprocess.run([python, "-c", script, tmp_path / "start.npy", tmp_path / "grads.npy"],
                         check=True,
                         capture_output=True, text=True).stdout.split()
    np.testing.assert_allclose(np.asarray(variable), np.asarray(out, "float32").reshape(3, 4),
                               rtol=1e-5, atol=1e-6)


def test_the_train_help_states_the_detection_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line a flag
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, field, after in (("--epochs", "epochs", "batch-size"),
                               ("--batch-size", "batch_size", "task")):
        help_text = re.search(rf"{flag} [A-Z_]+ (.*?) --{after}", text).group(1)
        for dataset, defaults in detection.RUN_DEFAULTS.items():
            assert f"{dataset} {defaults[field]}," in help_text, help_text


def test_the_subnets_keep_torchvisions_gain_at_any_width():
    with few_scenes():
        info = data.load("digit_boxes", "test", 8)[1]
    keras.utils.set_random_seed(0)
    net = detection.detector("resnet8", info, {"head_width": 32, "version": 2})
    kernel = np.asarray(net.get_layer("cls_conv2").kernel)
    # 0.01 at torchvision's 256 channels: std * sqrt(fan_in) = 0.01 * sqrt(9 * 256) = 0.48
    assert np.std(kernel) * np.sqrt(9 * 32) == pytest.approx(0.48, rel=0.05)
    assert detection.loss(net).box_loss == "giou"  # version 2's box loss
    assert detection.record(net)["detector"]["anchor_sizes"][0] == [4, 5, 6]  # 4x reduction 1


def test_a_detection_run_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(InvalidArgument, match="needs boxes"):
        runs.train("resnet20", "digits", task="detection", epochs=1, run_dir=str(tmp_path / "a"))
    with pytest.raises(InvalidArgument, match="needs boxes"):
        data.load("digits", "test", 8, task="detection")
    with pytest.raises(InvalidArgument, match="`head` 'fcn' segments"):
        runs.train("resnet20", "digit_boxes", head="fcn", epochs=1, run_dir=str(tmp_path / "b"))
    with pytest.raises(InvalidArgument, match="fine-tuning a detector"):
        runs.fine_tune("resnet18", "digit_boxes", run_dir=str(tmp_path / "c"))
    with few_scenes(), pytest.raises(InvalidArgument, match="does not go with detection data"):
        runs.train("resnet20", "digit_boxes", task="single_label", epochs=1, export=False,
                   run_dir=str(tmp_path / "d"))
    with few_scenes(), pytest.raises(InvalidArgument, match="`version`"):
        runs.train("resnet20", "digit_boxes", model_options={"version": 3}, epochs=1,
                   export=False, run_dir=str(tmp_path / "e"))


@pytest.fixture(scope="module")
def saved_detector(tmp_path_factory):
    """An untrained ResNet-8 detector of the digit boxes (width 8, every box above 0.001 kept)
    saved as a ``.keras`` file, and the model itself."""
    with few_scenes():
        info = data.load("digit_boxes", "test", 8)[1]
    keras.utils.set_random_seed(0)
    net = detection.named(detection.detector(
        "resnet8", info, {"head_width": 8, "score_threshold": 0.001, "max_detections": 50}), info)
    path = str(tmp_path_factory.mktemp("detector") / "detector.keras")
    net.save(path)
    return path, net


def _coco_figures_of_scenes(net, count):
    """COCO's figures of ``net`` on the first ``count`` test scenes fed as they are (64x64, no
    fitting), against the scenes' own boxes."""
    images = digit_boxes("test", count=count)[0]
    pixels = keras_resnet.preprocessing.of(net).normalize(images.astype("float32"))
    return _coco_figures_of(net.predict(pixels, verbose=0), count)


def _coco_figures_of(found, count):
    """COCO's figures of a detections model's outputs ``found`` on the first ``count`` test
    scenes, against the scenes' own boxes."""
    boxes, classes = digit_boxes("test", count=count)[1:3]
    detections = [{"boxes": b[:n], "scores": s[:n], "classes": c[:n]} for b, s, c, n in zip(
        found["boxes"], found["scores"], found["classes"], found["num_detections"])]
    truth = [{"boxes": b[c >= 0], "classes": c[c >= 0]} for b, c in zip(boxes, classes)]
    return coco_map(detections, truth, class_count=10)


@pytest.mark.slow
def test_evaluate_gives_a_saved_detectors_coco_figures(saved_detector, capsys):
    path, net = saved_detector
    with few_scenes():
        assert cli.main(["evaluate", path, "--dataset", "digit_boxes", "--batch-size", "8"]) == 0
        figures = evaluate(path, "digit_boxes", batch_size=5)  # a last batch of one
    expected = _coco_figures_of_scenes(net, FEW["test"])
    assert figures["images"] == FEW["test"] and 0 < figures["detections"] <= 50 * FEW["test"]
    for name in MAP_FIELDS:
        assert figures[name] == pytest.approx(None if expected[name] < 0 else expected[name],
                                              abs=1e-9), name
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3] == f"digit_boxes test: {FEW['test']} images, {figures['detections']} detections"
    assert lines[-2].startswith(f"test mAP {figures['map']:.4f}, mAP@.50 ")
    with pytest.raises(InvalidArgument, match="`ten_crop`"):
        evaluate(net, "digit_boxes", ten_crop=True)
    with pytest.raises(InvalidArgument, match="does not go with segmentation data"):
        evaluate(net, "digit_scenes")


@pytest.mark.slow
def test_predict_writes_a_detectors_boxes_and_drawings(saved_detector, tmp_path, capsys):
    from PIL import Image

    path, net = saved_detector
    images = digit_boxes("test", count=2)[0]
    # the second scene cut to 64 wide x 40 high: fitted as it is, padded with black below
    files = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    Image.fromarray(images[0]).save(files[0])
    Image.fromarray(images[1][:40]).save(files[1])
    padded = images[:2].copy()
    padded[1, 40:] = 0
    pixels = keras_resnet.preprocessing.of(net).normalize(padded.astype("float32"))
    direct = net.predict(pixels, verbose=0)
    threshold = float(np.sort(direct["scores"][0])[-3])  # the first scene's best three
    out = tmp_path / "boxes"
    assert cli.main(["predict", path, *files, "--output-dir", str(out), "--score-threshold",
                     str(threshold)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in records] == files
    for index, (record, height) in enumerate(zip(records, (64, 40))):
        kept = direct["scores"][index] >= threshold
        expected = np.clip(direct["boxes"][index][kept], 0, [64, height, 64, height])
        found = record["detections"]
        assert [d["class"] for d in found] == direct["classes"][index][kept].tolist()
        assert [d["label"] for d in found] == [str(c) for c in direct["classes"][index][kept]]
        np.testing.assert_allclose([d["box"] for d in found], expected.reshape(-1, 4), atol=0.01)
        np.testing.assert_allclose([d["score"] for d in found], direct["scores"][index][kept],
                                   atol=1e-4)
        drawn = np.asarray(Image.open(record["drawn"]))
        assert drawn.shape == (height, 64, 3)
    assert len(records[0]["detections"]) >= 3
    first = records[0]["detections"][0]  # its outline in its class's VOC colour
    x1, y1 = (int(v) for v in first["box"][:2])
    colour = voc_palette()[first["class"] + 1]
    drawn = np.asarray(Image.open(records[0]["drawn"]))
    assert (drawn[y1:y1 + 2, x1:x1 + 2] == colour).all(axis=-1).any()
    assert cli.main(["predict", path, files[0], "--explain", str(tmp_path / "cam")]) == 2
    assert "`--explain` is for classifiers" in capsys.readouterr().err
    assert cli.main(["predict", path, files[0], "--score-threshold", "2"]) == 2
    assert "`score_threshold` must be a number in [0, 1); got 2.0" in capsys.readouterr().err


def test_predictions_and_anchors_stay_float32_under_a_bfloat16_policy():
    # A run on a CPU with native bfloat16 trains ImageNet nets in mixed_bfloat16: the
    # detector's logits, deltas and anchors (up to hundreds of pixels) keep float32.
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        net = keras_resnet.RetinaNet("resnet8", classes=3, head_width=8,
                                     input_shape=(None, None, 3))
        images = np.random.default_rng(0).uniform(size=(1, 96, 96, 3)).astype("float32")
        raw = detectors.raw_model(net)(images)
        packed = detectors.training_model(net)(images)
        found = net(images)
    finally:
        keras.config.set_dtype_policy("float32")
    assert net.get_layer("cls_conv1").compute_dtype == "bfloat16"  # the towers run mixed
    dtype = keras.backend.standardize_dtype
    assert {dtype(v.dtype) for v in raw.values()} | {dtype(packed.dtype)} == {"float32"}
    anchors = np.asarray(raw["anchors"])[0]
    expected = detectors.raw_model(keras_resnet.RetinaNet(
        "resnet8", classes=3, head_width=8, input_shape=(None, None, 3)))(images)["anchors"]
    np.testing.assert_array_equal(anchors, np.asarray(expected)[0])
    assert (dtype(found["boxes"].dtype), dtype(found["classes"].dtype)) == ("float32", "int32")
