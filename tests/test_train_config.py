"""The run configuration (keras_resnet.train.config): each field checked once with a message
naming it, a round trip through run.json's dict, and the command line building the same
configuration as the library for the same options."""

import json

import pytest

from keras_resnet import cli, runs
from keras_resnet.errors import InvalidArgument
from keras_resnet.recipes import get_recipe
from keras_resnet.train import flow
from keras_resnet.train.config import (
    DataConfig,
    FineTuneConfig,
    HardwareConfig,
    OutputConfig,
    RecipeConfig,
    RunConfig,
    resolve,
)

BAD_FIELDS = [
    (lambda: RecipeConfig(epochs=0), "`epochs` must be a positive integer", "0"),
    (lambda: RecipeConfig(epochs=2.5), "`epochs` must be a positive integer", "2.5"),
    (lambda: RecipeConfig(batch_size=True), "`batch_size` must be a positive integer", "True"),
    (lambda: RecipeConfig(learning_rate=-0.1), "`learning_rate` must be a number > 0", "-0.1"),
    (lambda: RecipeConfig(weight_decay="1e-4"), "`weight_decay` must be a number >= 0", "'1e-4'"),
    (lambda: RecipeConfig(recipe="adam"), "`recipe` must be one of paper, cifar", "'adam'"),
    (lambda: RecipeConfig(recipe_overrides=["ema=true"]), "`recipe_overrides` must be a dict", "['ema=true']"),
    (lambda: RecipeConfig(recipe_overrides={"no_such_field": 1}), "no_such_field", ""),
    (lambda: HardwareConfig(strategy="gpus"), "`strategy` must be one of auto, cpu, gpu", "'gpus'"),
    (lambda: HardwareConfig(precision="float8"), "`precision` must be one of auto, float32", "'float8'"),
    (lambda: HardwareConfig(jit_compile="on"), "`jit_compile` must be True, False or 'auto'", "'on'"),
    (lambda: HardwareConfig(steps_per_execution=0), "`steps_per_execution` must be a positive integer", "0"),
    (lambda: HardwareConfig(fast_path="yes"), "`fast_path` must be True or False", "'yes'"),
    (lambda: OutputConfig(resume=1), "`resume` must be True or False", "1"),
    (lambda: OutputConfig(verbose=3), "`verbose` must be one of auto, 0, 1, 2", "3"),
    (lambda: OutputConfig(run_dir=5), "`run_dir` must be a path", "5"),
    (lambda: DataConfig(""), "`dataset` must be a dataset name or a folder", "''"),
    (lambda: DataConfig(download="no"), "`download` must be True or False", "'no'"),
    (lambda: DataConfig(image_size=16), "`image_size` must be an integer >= 32 or None", "16"),
    (lambda: DataConfig(image_size=48.0), "`image_size` must be an integer >= 32 or None", "48.0"),
    (lambda: RunConfig.from_options("resnet18", "flowers", weights="imagenet", image_size=64),
     "`image_size` must be None with `weights`", "64"),
    (lambda: FineTuneConfig(unfreeze="layer3"), "`unfreeze` must be one of conv2, conv3", "'layer3'"),
    (lambda: FineTuneConfig(head_epochs=0), "`head_epochs` must be a positive integer", "0"),
    (lambda: FineTuneConfig(fine_tune_learning_rate=0), "`fine_tune_learning_rate` must be a number > 0", "0"),
    (lambda: RunConfig(task="multi"), "`task` must be one of auto, single_label, multilabel", "'multi'"),
    (lambda: RunConfig(seed=None), "`seed` must be an integer", "None"),
    (lambda: RunConfig(model=3), "`model` must be a model name", "3"),
    (lambda: RunConfig(model_options=[("shortcut", "A")]), "`model_options` must be a dict", ""),
    (lambda: RunConfig(data="digits"), "`data` must be a DataConfig", "'digits'"),
    (lambda: RunConfig.from_options("resnet8", epoch=3), "Unknown run option 'epoch'", ""),
]


@pytest.mark.parametrize("make,message,value", BAD_FIELDS, ids=[m for _, m, _ in BAD_FIELDS])
def test_a_bad_field_is_refused_in_one_line_naming_field_value_and_what_is_allowed(make, message, value):
    with pytest.raises(InvalidArgument) as caught:
        make()
    text = str(caught.value)
    assert message in text and f"got {value}" in text if value else message in text
    assert "\n" not in text


def test_head_epochs_beyond_epochs_is_refused_once_defaults_are_filled_in():
    config = RunConfig.from_options("resnet8", weights="imagenet", epochs=3, head_epochs=4)
    with pytest.raises(InvalidArgument, match=r"`head_epochs` must be an integer in 1..epochs \(3\); got 4"):
        resolve(config)


def test_resolve_fills_in_the_defaults_by_dataset_and_kind_of_run():
    trained = resolve(RunConfig.from_options("resnet20", "digits"))
    assert (trained.recipe.epochs, trained.recipe.batch_size) == (40, 32)
    assert trained.output.run_dir == "runs/resnet20-digits" and trained.fine_tune is None
    tuned = resolve(RunConfig.from_options("resnet50", "flowers", weights="imagenet"))
    assert (tuned.recipe.epochs, tuned.recipe.batch_size, tuned.fine_tune.head_epochs) == (15, 32, 5)
    assert tuned.output.run_dir == "runs/resnet50-flowers-finetuned"
    assert resolve(tuned) == tuned  # idempotent: what run.json records runs the same again


@pytest.mark.parametrize("config", [
    RunConfig(),
    RunConfig.from_options("resnet8", "digits", epochs=3, batch_size=16, recipe="rsb_a3",
                           recipe_overrides={"ema": "false"}, learning_rate=0.05,
                           weight_decay=2e-4, precision="float32", jit_compile=False,
                           steps_per_execution=4, fast_path=False, run_dir="r", resume=False,
                           export=False, verbose=0, seed=7, task="single_label",
                           model_options={"shortcut": "A"}, data_dir="d", download=False,
                           image_size=48),
    RunConfig.from_options("resnet18", "flowers", weights="w.keras", head_epochs=2,
                           unfreeze="all", train_bn=True, fine_tune_learning_rate=1e-3),
    RunConfig("resnet8", recipe=RecipeConfig(recipe=get_recipe("cifar", {"milestones": (3, 5)}))),
], ids=["defaults", "every_field", "fine_tune", "recipe_object"])
def test_round_trip_through_run_json(config):
    record = json.loads(json.dumps(config.to_dict()))  # what run.json holds
    assert RunConfig.from_dict(record) == config
    assert set(record) == {"model", "task", "head", "seed", "model_options", "data", "recipe",
                           "hardware", "output", "fine_tune"}


def test_a_record_without_a_field_reads_as_its_default():
    record = RunConfig.from_options("resnet18", "flowers", image_size=96).to_dict()
    assert record["data"]["image_size"] == 96
    del record["data"]["image_size"]  # a run.json written before the field existed
    assert RunConfig.from_dict(record).data == DataConfig("flowers")
    assert RunConfig.from_dict(record).data.image_size is None


def test_a_model_object_is_recorded_by_its_name():
    import keras_resnet

    config = RunConfig(keras_resnet.CifarResNet(8, classes=2, name="tiny"))
    assert config.to_dict()["model"] == "tiny" and RunConfig.from_dict(config.to_dict()).model == "tiny"


@pytest.fixture
def captured(monkeypatch):
    """What the library and the command line hand to the flow, instead of running it."""
    configs = []

    def run(config):
        configs.append(config)
        return {"test": {"top1": 0.5, "top5": 0.9}, "run_dir": "r"}

    monkeypatch.setattr(flow, "run", run)
    return configs


def test_the_command_line_builds_the_configuration_the_library_builds(captured):
    runs.train("resnet8", "digits", epochs=2, batch_size=16, learning_rate=0.05, weight_decay=2e-4,
               recipe="torchvision_v2", recipe_overrides={"ema": "false"}, precision="float32",
               jit_compile=False, steps_per_execution=2, fast_path=False, run_dir="r",
               resume=False, export=False, seed=3, task="single_label", data_dir="d",
               download=False, image_size=48, model_options={"shortcut": "A", "residual": False})
    assert cli.main(["train", "--model", "resnet8", "--dataset", "digits", "--epochs", "2",
                     "--batch-size", "16", "--learning-rate", "0.05", "--weight-decay", "2e-4",
                     "--recipe", "torchvision_v2", "--set", "ema=false", "--precision", "float32",
                     "--jit-compile", "off", "--steps-per-execution", "2", "--no-fast-path",
                     "--output-dir", "r", "--no-resume", "--no-export", "--seed", "3",
                     "--task", "single_label", "--data-dir", "d", "--no-download",
                     "--image-size", "48", "--shortcut", "A", "--plain"]) == 0
    library, command_line = captured
    assert command_line == library and library.fine_tune is None
    assert library.data.image_size == 48


def test_the_command_line_builds_the_fine_tuning_configuration_the_library_builds(captured):
    runs.fine_tune("resnet8", "digits", weights="w.keras", epochs=3, head_epochs=1,
                   unfreeze="conv3")
    runs.fine_tune("resnet8", "digits", weights="w.keras")
    assert cli.main(["train", "--model", "resnet8", "--weights", "w.keras", "--epochs", "3",
                     "--head-epochs", "1", "--unfreeze", "conv3"]) == 0
    assert cli.main(["train", "--model", "resnet8", "--weights", "w.keras", "--recipe", "paper"]) == 0
    library, library_defaults, command_line, command_line_defaults = captured
    assert command_line == library and command_line_defaults == library_defaults
    assert library.fine_tune == FineTuneConfig("w.keras", head_epochs=1, unfreeze="conv3")
