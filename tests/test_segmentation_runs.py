"""A segmentation run from start to end: ``keras_resnet.train`` on the digit scenes (fewer of
them) with a head on an ImageNet ResNet, its run folder, its figures and its saved model;
the command line's segmentation flags and their errors."""

import json
import os

import numpy as np
import pytest

import keras_resnet
from keras_resnet import cli, data, metrics, runs, tasks
from keras_resnet.commands import train_config
from keras_resnet.data.sources import SCENE_COUNTS
from keras_resnet.errors import InvalidArgument
from keras_resnet.saving import load_model
from keras_resnet.train import segmentation
from keras_resnet.train.config import RunConfig


@pytest.fixture(scope="module")
def small_scene_run(tmp_path_factory):
    """One epoch of FCN on ResNet-18 (output stride 16, with the auxiliary head) on 64
    training scenes; the run's result and folder."""
    counts = dict(SCENE_COUNTS)
    SCENE_COUNTS.update(train=64, validation=32, test=32)
    try:
        run_dir = str(tmp_path_factory.mktemp("scenes") / "run")
        result = runs.train("resnet18", "digit_scenes", head="fcn", run_dir=run_dir,
                                    epochs=1, batch_size=16, export=False, verbose=0,
                                    model_options={"output_stride": 16, "aux": True})
    finally:
        SCENE_COUNTS.update(counts)
    return result, run_dir


@pytest.mark.slow
def test_a_segmentation_run_reports_the_test_pixels_and_saves_a_model_without_aux(small_scene_run):
    result, run_dir = small_scene_run
    assert (result["task"], result["head"]) == ("segmentation", "fcn")
    assert result["recipe"]["name"] == "torchvision_segmentation"
    with open(os.path.join(run_dir, "run.json")) as f:
        assert json.load(f)["test"]["miou"] == result["test"]["miou"]
    # The history names the watched metric as Keras does for a model with two outputs.
    assert "val_out_miou" in result["history"][0]
    model = load_model(os.path.join(run_dir, "model.keras"))
    assert tasks.task_of(model) == tasks.Task("segmentation", 11, "linear")
    assert not isinstance(model.output, dict)  # the auxiliary head stays out of the saved model
    best = load_model(os.path.join(run_dir, "best.keras"))
    assert not isinstance(best.output, dict) and tasks.task_of(best) == tasks.task_of(model)
    # The run's figures are every test pixel's, recomputed here from the saved model.
    counts = SCENE_COUNTS["test"]
    SCENE_COUNTS.update(test=32)
    try:
        test, _ = data.load("digit_scenes", "test", 8, training=False,
                            preprocessing=keras_resnet.preprocessing.of(model))
        matrix = sum(metrics.confusion_matrix(np.asarray(masks), model.predict(images, verbose=0), 11)
                     for images, masks in test)
    finally:
        SCENE_COUNTS.update(test=counts)
    figures = metrics.iou_from_confusion(matrix)
    np.testing.assert_allclose(result["test"]["miou"], figures["miou"], rtol=1e-6)
    assert result["test"]["confusion_matrix"] == matrix.tolist()
    assert sorted(result["test"]["per_class_iou"]) == sorted(["background", *"0123456789"])
    assert os.path.exists(os.path.join(run_dir, "training_curves.png"))


def test_segmentation_data_picks_the_segmentation_run():
    assert train_config(cli.build_parser().parse_args(
        ["train", "--dataset", "digit_scenes"])).model == "resnet20"
    args = cli.build_parser().parse_args(["train", "--dataset", "digit_scenes", "--aux",
                                          "--output-stride", "16", "--head", "deeplabv3plus",
                                          "--model", "resnet18"])
    config = train_config(args)
    assert (config.model, config.head) == ("resnet18", "deeplabv3plus")
    assert config.model_options == {"aux": True, "output_stride": 16}
    assert segmentation.is_segmentation(config)
    assert train_config(cli.build_parser().parse_args(["train"])).model == "resnet20"
    assert not segmentation.is_segmentation(RunConfig("resnet20"))


def test_a_head_is_refused_where_it_cannot_segment(tmp_path):
    with pytest.raises(InvalidArgument, match="`head`"):
        RunConfig("resnet18", task="multilabel", head="fcn")
    with pytest.raises(InvalidArgument, match="`head` must be one of"):
        RunConfig("resnet18", head="unet")
    with pytest.raises(InvalidArgument, match="label per image"):
        runs.train("resnet18", "digits", head="fcn", epochs=1, export=False,
                           run_dir=str(tmp_path / "run"))
    with pytest.raises(InvalidArgument, match="needs masks"):
        data.load("digits", "test", 8, task="segmentation")


def test_the_segmentation_recipe_is_torchvisions_polynomial_schedule():
    recipe = keras_resnet.get_recipe("torchvision_segmentation")
    schedule = keras_resnet.recipes.learning_rate_schedule(recipe, 0.02, 100)
    # torchvision's PolynomialLR(total_iters=100, power=0.9): lr * (1 - t / 100) ** 0.9
    for step in (0, 10, 50, 99, 100):
        np.testing.assert_allclose(float(schedule(step)), 0.02 * (1 - step / 100) ** 0.9, rtol=1e-6)
    assert (recipe.base_learning_rate, recipe.base_batch_size, recipe.weight_decay) == (0.02, 32, 1e-4)
    assert recipe.decay_norm and recipe.decay_bias  # torch's SGD decays every parameter


@pytest.mark.parametrize("backbone, options, rates", [
    ("resnet8", {}, [3, 6, 9]),  # stride 4 on 64x64 scenes: 16x16 maps
    ("resnet18", {}, [1, 3, 4]),  # stride 8: 8x8 maps
    ("resnet18", {"output_stride": 16}, [1, 1, 2]),
    ("resnet8", {"atrous_rates": (2, 5, 7)}, [2, 5, 7]),  # given rates stay
])
@pytest.mark.slow
def test_a_run_sizes_deeplabs_rates_to_its_images(backbone, options, rates):
    from keras_resnet.heads.segmentation import atrous_rates
    from keras_resnet.train.build import segmentation_model

    info = data.segmentation.load_segmentation("digit_scenes", "test", 8)[1]
    assert info.image_shape[:2] == (64, 64)
    model = segmentation_model(backbone, info, dict(options), "deeplabv3")
    assert [model.get_layer(f"aspp_branch{i}").dilation_rate[0] for i in (1, 2, 3)] == rates
    # DeepLab's own crops give DeepLab's own rates back.
    assert atrous_rates(16, image_size=513) == (6, 12, 18)
    assert atrous_rates(8, image_size=513) == (12, 24, 36)
