"""What the command line offers works together: §4.2's warm-up belongs to the paper's recipe
(a cosine recipe warms up in its schedule), and a grid of ``--model``, ``--recipe`` and
``--set`` each trains a step, or stops at a one-line error, never a traceback."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_resnet import architectures, cli, models, recipes
from keras_resnet.errors import InvalidArgument
from keras_resnet.train import flow
from keras_resnet.train.callbacks import paper_callbacks
from keras_resnet.train.schedules import WarmupUntilError


@pytest.fixture(scope="module")
def one_batch_folder(tmp_path_factory):
    """Two classes of 9 training and 2 test images: with 10% of each class held out for
    validation, 16 images train, one batch of 16."""
    root = tmp_path_factory.mktemp("one_batch")
    rng = np.random.default_rng(0)
    for split, count in (("train", 9), ("test", 2)):
        for name in ("a", "b"):
            os.makedirs(root / split / name)
            for i in range(count):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return str(root)


def _train(folder, run_dir, *flags):
    return cli.main(["train", "--dataset", folder, "--epochs", "1", "--batch-size", "16",
                     "--no-export", "--output-dir", str(run_dir), *flags])


def test_the_papers_warmup_is_refused_with_a_cosine_recipe(tmp_path):
    cosine = recipes.get_recipe("torchvision_v2")
    with pytest.raises(InvalidArgument, match="sets its rate per step \\(cosine schedule\\)"):
        paper_callbacks(str(tmp_path), cosine, total_iterations=10, warmup=True, ema_steps=10)
    paper = paper_callbacks(str(tmp_path), recipes.get_recipe("cifar"), warmup=True)
    assert any(isinstance(c, WarmupUntilError) for c in paper)


@pytest.mark.slow
def test_a_warmup_model_trains_with_a_cosine_recipe(one_batch_folder, tmp_path, monkeypatch):
    # resnet110's warm-up on a net that builds in seconds: the combination that crashed
    monkeypatch.setattr(flow, "WARMUP_MODELS", ("resnet8",))
    assert _train(one_batch_folder, tmp_path / "cosine", "--model", "resnet8",
                  "--recipe", "torchvision_v2") == 0
    assert _train(one_batch_folder, tmp_path / "paper", "--model", "resnet8") == 0
    for run in ("cosine", "paper"):
        with open(tmp_path / run / "run.json") as file:
            assert json.load(file)["validation_split"] == "holdout"


# Each recipe, a model of each kind and several fields of --set at least once (one step each;
# resnet110's warm-up with a cosine recipe: the test above, resnet8 standing in).
GRID = [
    ("resnet20", "paper", ["label_smoothing=0.1"]),
    ("resnet18", "rsb_a1", []),  # bottlenecks: resnext, v2, SE and D below
    ("resnext50_32x4d", "rsb_a3", ["ema=true", "ema_decay=0.9998", "train_size_fraction=1"]),
    ("resnet50v2", "imagenet", []),
    ("seresnet50", "rsb_a2", ["mixup_alpha=0.2", "cutmix_alpha=2.0"]),
    ("resnet50d", "cifar", ["schedule=cosine"]),
    # A CIFAR net's stochastic depth (resnet18's blocks train above under rsb_a1)
    ("resnet8", "torchvision_v2", ["repeated_augmentation=1", "drop_path_rate=0.1"]),
]


def _one_block_a_stage(arch):
    """``arch`` with one block in each stage: its stem, its block kind with a projection
    shortcut in every stage, and its options, in about a sixth of a 50-layer net's tracing
    time. What the grid proves is the recipe and fields around the net, not its depth: the
    blocks with identity shortcuts and the full nets are built, saved and loaded by
    tests/test_constructors.py (resnet18, resnext26_32x4d, seresnet26, resnet50d, resnet50v2)."""
    return dataclasses.replace(arch, stages=tuple(dataclasses.replace(stage, repeats=1)
                                                  for stage in arch.stages))


def _shallow_architectures(monkeypatch):
    """The ImageNet and family nets built by name with one block a stage (the CIFAR nets as
    they are: they build in a second)."""
    family, named = architectures.family_architecture, architectures.architecture
    monkeypatch.setattr(models, "family_architecture", lambda name: _one_block_a_stage(family(name)))
    monkeypatch.setattr(models, "architecture", lambda kind, depth: (
        _one_block_a_stage(named(kind, depth)) if kind == "imagenet" else named(kind, depth)))


@pytest.mark.slow
@pytest.mark.parametrize("model, recipe, fields", GRID, ids=[f"{m}-{r}" for m, r, _ in GRID])
def test_every_model_recipe_and_field_trains_a_step_or_says_why(one_batch_folder, tmp_path, model,
                                                                  recipe, fields, capsys,
                                                                  monkeypatch):
    # resnet18 and the family's nets (resnext50_32x4d, seresnet50, resnet50v2, resnet50d) with
    # one block a stage: each block kind trains its step under the recipe as in the full net.
    _shallow_architectures(monkeypatch)
    # At 64x64, not the folder's default 32 (images of side <= 64: CIFAR style): every recipe
    # at another size, FixRes' crops at their fraction of it.
    flags = ["--model", model, "--recipe", recipe, "--image-size", "64"]
    for field in fields:
        flags += ["--set", field]
    status = _train(one_batch_folder, tmp_path, *flags)
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 0, error[-1:]
    with open(tmp_path / "run.json") as file:
        record = json.load(file)
    assert record["recipe"]["name"] == (recipe if recipe != "paper" else "cifar")
    assert np.isfinite(record["test"]["loss"]) and record["history"][0]["epoch"] == "0"
    assert record["data"]["preprocessing"]["image_size"] == [64, 64]
