"""End-to-end runs in the library: train and fine_tune, and the fine-tuning configuration that
`keras-resnet train --weights` builds (the command line's runs are in test_cli)."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

import keras_resnet
from harness import digits_top1
from keras_resnet import preprocessing, runs
from keras_resnet.train.setup import load_splits


@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """A small 'pretrained' classifier of this package with non-trivial BN statistics."""
    keras.utils.set_random_seed(5)
    model = keras_resnet.CifarResNet(8, classes=3, width_multiplier=0.5,
                                     preprocessing=preprocessing.ImagePreprocessing(
                                         32, mean=(0.1, 0.2, 0.3), class_names=["x", "y", "z"],
                                         source="pretraining"))
    rng = np.random.default_rng(5)
    for layer in model.layers:
        for bn in getattr(layer, "batch_norms", [layer]):
            if isinstance(bn, keras.layers.BatchNormalization):
                bn.moving_mean.assign(rng.normal(0, 0.3, bn.moving_mean.shape))
                bn.moving_variance.assign(rng.uniform(0.5, 2, bn.moving_variance.shape))
    path = str(tmp_path_factory.mktemp("source") / "pretrained.keras")
    model.save(path)
    return path, model



def _frozen_state(model):
    """Every variable of the backbone (all but the classifier), by path."""
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights
            if not v.path.startswith("predictions")}


@pytest.mark.slow
def test_phase_one_trains_the_head_alone_with_batch_norm_frozen(source_model, tmp_path):
    path, source = source_model
    result = runs.fine_tune("resnet8", "digits", weights=path, run_dir=str(tmp_path / "run"),
                            epochs=1, head_epochs=1, unfreeze="none", verbose=0, export=False)
    tuned = keras_resnet.load_model(str(tmp_path / "run" / "model.keras"))
    before, after = _frozen_state(source), _frozen_state(tuned)
    assert before.keys() == after.keys() and len(before) > 20
    for name in before:  # kernels, gammas and the BN moving statistics: unchanged
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert tuned.output_shape == (None, 10)
    top1, examples = digits_top1(tuned)  # within one near-tied example of the run's figure
    assert result["test"]["top1"] == pytest.approx(top1, abs=1 / examples + 1e-9)
    carried = preprocessing.of(tuned)
    assert carried.class_names == [str(i) for i in range(10)]  # the dataset's classes
    np.testing.assert_allclose(carried.mean, [0.1, 0.2, 0.3])  # the weights' recipe, not digits'
    assert result["test_examples"] == 360 and json.load(open(tmp_path / "run" / "run.json"))["head_epochs"] == 1


@pytest.mark.slow
def test_phase_two_unfreezes_from_the_named_stage(source_model, tmp_path):
    path, source = source_model
    runs.fine_tune("resnet8", "digits", weights=path, run_dir=str(tmp_path / "run"), epochs=2,
                   head_epochs=1, unfreeze="conv4", verbose=0, export=False)
    tuned = keras_resnet.load_model(str(tmp_path / "run" / "model.keras"))
    before, after = _frozen_state(source), _frozen_state(tuned)
    changed = {name.split("/")[0] for name in before if not np.array_equal(before[name], after[name])}
    assert changed == {"conv4_block1"}  # ResNet-8: one block a stage; conv2/conv3/stem frozen
    bn = tuned.get_layer("conv4_block1").bn1  # BN stays in inference mode: statistics kept
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean),
                                  keras.ops.convert_to_numpy(source.get_layer("conv4_block1").bn1.moving_mean))
    assert len(runs.history_rows(str(tmp_path / "run" / "history.csv"))) == 2


@pytest.mark.parametrize("unfreeze,message", [("conv5", r"`unfreeze` 'conv5' names no stage.*conv2, conv3, conv4"),
                                              ("layer3", r"`unfreeze` must be one of")])
def test_unfreeze_must_name_a_stage(source_model, tmp_path, unfreeze, message):
    with pytest.raises(ValueError, match=message):
        runs.fine_tune("resnet8", "digits", weights=source_model[0], run_dir=str(tmp_path / "r"),
                       epochs=2, head_epochs=1, unfreeze=unfreeze, verbose=0, export=False)


def test_a_batch_larger_than_the_training_set_is_refused_naming_both(tmp_path):
    with pytest.raises(ValueError, match=r"`batch_size` 5000 is larger than the 1293 training images"):
        runs.train("resnet8", "digits", run_dir=str(tmp_path / "r"), batch_size=5000, epochs=1)
    assert not os.path.exists(tmp_path / "r" / "run.json")


def test_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"`run_dir`.*is a file"):
        runs.train("resnet8", "digits", run_dir=str(tmp_path / "file"), epochs=1)


@pytest.fixture
def phases_run(monkeypatch):
    """The phases each run hands to the one phase flow (which then runs them as usual)."""
    from keras_resnet.train import flow

    seen, run_phases = [], flow.run_phases

    def spy(net, phases, **kwargs):
        seen.append(list(phases))
        return run_phases(net, phases, **kwargs)

    monkeypatch.setattr(flow, "run_phases", spy)
    return seen


@pytest.mark.slow
def test_fine_tuning_is_training_in_phases_and_run_json_says_what_ran(source_model, tmp_path, phases_run):
    from keras_resnet.train.config import RunConfig, resolve

    run_dir = str(tmp_path / "run")
    result = runs.fine_tune("resnet8", "digits", weights=source_model[0], run_dir=run_dir,
                            epochs=2, head_epochs=1, unfreeze="conv4", verbose=0, export=False)
    [phases] = phases_run
    assert [(p.name, p.first_epoch, p.last_epoch, p.unfreeze) for p in phases] == [
        ("head", 0, 1, "none"), ("backbone", 1, 2, "conv4")]
    assert phases[1].learning_rate == pytest.approx(phases[0].learning_rate / 10)
    assert phases[0].backup_dir == os.path.join(run_dir, "backup", "head")
    recorded = json.load(open(os.path.join(run_dir, "run.json")))
    assert recorded["config"] == result["config"]
    assert RunConfig.from_dict(recorded["config"]) == resolve(RunConfig.from_options(
        "resnet8", "digits", weights=source_model[0], run_dir=run_dir, epochs=2, head_epochs=1,
        unfreeze="conv4", verbose=0, export=False, recipe="imagenet"))
    assert (recorded["head_epochs"], recorded["unfreeze"], recorded["epochs"]) == (1, "conv4", 2)


@pytest.mark.slow
def test_plain_training_is_one_phase_of_the_same_flow(tmp_path, phases_run):
    result = runs.train("resnet8", "digits", run_dir=str(tmp_path / "r"), epochs=1, verbose=0,
                        export=False)
    [[phase]] = phases_run
    assert (phase.name, phase.first_epoch, phase.last_epoch, phase.unfreeze) == ("train", 0, 1, None)
    assert phase.learning_rate == result["learning_rate"] == pytest.approx(0.1 * 32 / 128)
    assert result["config"]["recipe"]["epochs"] == 1 and result["config"]["fine_tune"] is None
    assert len(result["history"]) == 1 and not os.path.exists(tmp_path / "r" / "backup")


def _write_images(folder, count, side, rng, masks=False):
    """``count`` random PNGs of ``side`` x ``side`` (and, with ``masks``, a 0/1 mask each)."""
    os.makedirs(folder / ("images" if masks else ""), exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / ("images" if masks else "") / f"{i}.png")
        if masks:
            os.makedirs(folder / "masks", exist_ok=True)
            mask = (pixels[..., 0] > 127).astype(np.uint8)
            Image.fromarray(mask).save(folder / "masks" / f"{i}.png")


@pytest.fixture(scope="module")
def large_images(tmp_path_factory):
    """Two classes of 9 training and 2 test images of 72x72 (ImageNet style: default 224)."""
    root = tmp_path_factory.mktemp("large_images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 9), ("test", 2)):
        for name in ("a", "b"):
            _write_images(root / split / name, count, 72, rng)
    return str(root)


@pytest.mark.slow  # 13-17 s on 2 CPU cores, most of it tracing the training step
def test_a_run_trains_and_saves_at_the_image_size_asked(large_images, tmp_path):
    run_dir = str(tmp_path / "run")
    result = runs.train("resnet18", large_images, image_size=48, run_dir=run_dir, epochs=1,
                        batch_size=16, jit_compile=False, verbose=0, export=False)
    saved = keras_resnet.load_model(os.path.join(run_dir, "model.keras"))
    assert saved.input_shape == (None, 48, 48, 3)
    carried = preprocessing.of(saved)  # §3.4's resize 256 for a 224 crop, scaled: 55 for 48
    assert (carried.image_size, carried.resize, carried.resize_size) == ((48, 48), "shorter_side", 55)
    with open(os.path.join(run_dir, "run.json")) as file:
        recorded = json.load(file)
    assert recorded["config"]["data"]["image_size"] == 48 == result["config"]["data"]["image_size"]
    assert recorded["data"]["preprocessing"]["image_size"] == [48, 48]


def test_a_segmentation_run_loads_at_the_image_size_asked(tmp_path):
    rng = np.random.default_rng(1)
    for split, count in (("train", 6), ("test", 2)):
        _write_images(tmp_path / split, count, 72, rng, masks=True)
    options = dict(data_dir=None, download=False, seed=0)
    splits, test_examples = load_splits(str(tmp_path), 2, image_size=48, **options)
    assert splits.info.task_kind == "segmentation" and test_examples == 2
    images, masks = next(iter(splits.train))
    assert images.shape == (2, 48, 48, 3) and masks.shape == (2, 48, 48)
    images, masks = next(iter(splits.test))
    assert images.shape == (2, 48, 48, 3) and masks.shape == (2, 48, 48)
    default, _ = load_splits(str(tmp_path), 2, **options)  # torchvision's crop for large images
    assert default.info.image_shape == (480, 480, 3)


def test_weight_decay_with_weights_is_in_the_fine_tuning_configuration():
    from keras_resnet.cli import build_parser
    from keras_resnet.commands import train_config
    from keras_resnet.train.config import resolve

    args = build_parser().parse_args(["train", "--weights", "w.keras", "--weight-decay", "3e-4"])
    config = resolve(train_config(args))
    assert config.fine_tune.weights == "w.keras" and config.recipe.recipe == "imagenet"
    assert config.recipe.weight_decay == 3e-4 and config.to_dict()["recipe"]["weight_decay"] == 3e-4


@pytest.mark.slow
def test_weight_decay_reaches_every_fine_tuning_phase_and_run_json(tmp_path, monkeypatch):
    import keras

    import keras_resnet
    from keras_resnet.cli import build_parser
    from keras_resnet.commands import train_config
    from keras_resnet.train import flow

    keras_resnet.save_model(keras_resnet.get_model("resnet8"), str(tmp_path / "source.keras"))
    args = build_parser().parse_args([
        "train", "--model", "resnet8", "--weights", str(tmp_path / "source.keras"),
        "--weight-decay", "3e-4", "--epochs", "2", "--head-epochs", "1", "--unfreeze", "conv4",
        "--output-dir", str(tmp_path / "run"), "--no-export"])
    config = train_config(args)
    assert config.fine_tune is not None and config.recipe.weight_decay == 3e-4
    compiled, compile_model = [], flow.compile_model

    def spy(model, recipe, *positional, **options):
        model = compile_model(model, recipe, *positional, **options)
        compiled.append({v.path: v.regularizer for v in model.trainable_weights
                         if v.path.endswith("kernel")})
        return model

    monkeypatch.setattr(flow, "compile_model", spy)
    flow.run(config)
    head, backbone = compiled
    assert set(head) == {"predictions/kernel"} and len(backbone) == 3  # conv4_block1's two convs
    for kernels in compiled:
        for path, regularizer in kernels.items():  # L2(decay / 2): gradient decay * w
            assert isinstance(regularizer, keras.regularizers.L2), path
            assert regularizer.l2 == pytest.approx(1.5e-4), path
    with open(tmp_path / "run" / "run.json") as f:
        run = json.load(f)
    assert run["config"]["recipe"]["weight_decay"] == 3e-4 and run["recipe"]["weight_decay"] == 3e-4
    assert run["head_epochs"] == 1 and run["epochs"] == 2
    assert not (tmp_path / "run" / "export").exists()  # --no-export: the run ends at its save
