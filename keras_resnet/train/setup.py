"""What every run sets up before it builds a model: the run directory, the seed, the precision
policy, the strategy, the global batch and the data splits.

Example:
    >>> prepare_run_dir("runs/r8", resume=True)  # made if missing; a backup there is kept
"""

import dataclasses
import os
import shutil
import time

import keras

from keras_resnet import data, devices, distribute
from keras_resnet.errors import InvalidArgument

RUN_FILES = ("model.keras", "best.keras", "history.csv", "run.json", "training_curves.png")


VALIDATION_CHOICES = ("auto", "none")


@dataclasses.dataclass
class Splits:
    """The training, validation (None: none) and test datasets of a run, what the data says of
    itself, and where validation comes from: ``validation_split`` "validation" (the data
    set's own), "holdout" (held out of the training split) or None; ``validation_record``
    what run.json says of it."""

    train: object
    validation: object
    test: object
    info: object
    validation_split: object
    validation_record: dict = dataclasses.field(default_factory=dict)


def load_splits(dataset, global_batch, *, data_dir, download, seed, preprocessing=None,
                task="auto", recipe=None, validation="auto", validation_fraction=data.DEFAULT_FRACTION,
                image_size=None):
    """The run's :class:`Splits` and the number of test images. Validation is never the test
    split: the data set's own validation split, else ``validation_fraction`` of each class
    held out of the training split (§4.2's 45k/5k for CIFAR; :mod:`keras_resnet.data.holdout`),
    or none at all when ``validation="none"`` (training on the whole training split, the
    explicit choice of a final run). ``image_size``: the model's input side (None: the data
    set's default; ``keras_resnet.data.load``).

    Example:
        >>> splits, test_examples = load_splits("digits", 32, data_dir=None, download=False, seed=0)
        >>> splits.validation_split, test_examples
        ('validation', 360)
    """
    if validation not in VALIDATION_CHOICES:
        raise InvalidArgument(
            f"`validation` must be one of {', '.join(VALIDATION_CHOICES)}; got {validation!r}.")

    def load(split, training, holdout=None):
        return data.load(dataset, split, global_batch, training=training, data_dir=data_dir,
                         download=download, seed=seed, preprocessing=preprocessing, task=task,
                         recipe=recipe, holdout=holdout, image_size=image_size)

    holdout, val_ds, validation_split = None, None, None
    if validation == "auto":
        try:
            val_ds, _ = load("validation", False)
            validation_split = "validation"
        except data.MissingSplit:  # none of its own: held out of the training split
            holdout = data.Holdout(validation_fraction)
            val_ds, val_info = load("validation", False, holdout)
            validation_split = "holdout"
    train_ds, info = load("train", True, holdout)
    _check_batch(global_batch, info)
    test_ds, test_info = load("test", False)
    record = {"split": validation_split}
    if holdout is not None:
        record.update(holdout.to_config(), examples=val_info.num_examples, of="train")
    return (Splits(train_ds, val_ds, test_ds, info, validation_split, record),
            test_info.num_examples)


def _check_batch(global_batch, info):
    if info.num_examples is not None and global_batch > info.num_examples:
        raise InvalidArgument(
            f"`batch_size` {global_batch} is larger than the {info.num_examples} training images "
            f"of {info.name!r}: no full batch to train on. Use a batch of at most "
            f"{info.num_examples}."
        )


def prepare_run_dir(run_dir, resume):
    """Make ``run_dir``; without ``resume``, drop what an earlier run left there."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise InvalidArgument(f"`run_dir` {run_dir!r} is a file, not a directory.")
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as error:
        raise InvalidArgument(f"`run_dir` {run_dir!r} cannot be created: {error.strerror}.") from None
    if not os.access(run_dir, os.W_OK):
        raise InvalidArgument(f"`run_dir` {run_dir!r} is not writable.")
    if not resume:
        shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
        for leftover in RUN_FILES:
            if os.path.exists(os.path.join(run_dir, leftover)):
                os.remove(os.path.join(run_dir, leftover))


@dataclasses.dataclass
class RunSetup:
    """What every run sets up alike before building a model (:func:`set_up_run`)."""

    run_dir: str
    seed: int
    strategy_name: object
    strategy: object
    global_batch: int
    policy: str
    precision_choice: dict = None  # a measured precision (keras_resnet.train.precision)

    def record(self, *, model, splits, epochs, started, resumed, test_examples, **fields):
        """The run.json fields every run writes, with ``fields`` of its own in between."""
        return {
            "run_dir": self.run_dir, "model": model, "dataset": splits.info.name, "epochs": epochs,
            **fields,
            "batch_size": self.global_batch, "replicas": self.strategy.num_replicas_in_sync,
            "strategy": self.strategy_name, "precision": self.policy,
            **({"precision_choice": self.precision_choice} if self.precision_choice else {}),
            "seed": self.seed,
            "resumed_from_epoch": resumed or None,
            "train_seconds": round(time.time() - started, 1), "data": splits.info.to_config(),
            "validation_split": splits.validation_split, "validation": splits.validation_record,
            "test_examples": test_examples,
        }


def set_up_run(config, family):
    """Run directory, seed, precision policy, strategy and global batch of a resolved
    :class:`~keras_resnet.train.config.RunConfig`: in that order, since the policy must be set
    before any layer is built and the batch depends on the replicas."""
    run_dir, hardware = config.output.run_dir, config.hardware
    prepare_run_dir(run_dir, config.output.resume)
    keras.utils.set_random_seed(config.seed)
    policy = devices.set_precision(hardware.precision, fast=hardware.fast_path, family=family)
    strategy = distribute.get_strategy(hardware.strategy)
    global_batch = distribute.global_batch_size(strategy, batch_size=config.recipe.batch_size)
    return RunSetup(run_dir, config.seed, hardware.strategy, strategy, global_batch, policy)
