"""The paper's training recipes: optimizer, weight decay, loss, metrics and callbacks.

§3.4 (ImageNet): SGD, mini-batch 256, momentum 0.9, weight decay 1e-4, learning rate 0.1
divided by 10 when the error plateaus. §4.2 (CIFAR-10): mini-batch 128, learning rate 0.1
divided by 10 at 32k and 48k iterations, stopped at 64k; ResNet-110 warms up at 0.01 until the
training error is below 80%.

Weight decay is the paper's: an L2 term whose gradient is ``1e-4 * w``, i.e. Keras
``L2(5e-5)`` on every conv and dense kernel. It is *not* ``SGD(weight_decay=...)``, which is
decoupled decay applied outside the momentum.

Example:
    >>> model = keras_resnet.ResNet20()
    >>> compile_model(model, "cifar", global_batch_size=128)
    >>> model.fit(train, validation_data=val, callbacks=paper_callbacks("runs/r20", "cifar"))
"""

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from keras_resnet import data, distribute
from keras_resnet.distribute import scaled_learning_rate
from keras_resnet.models import get_model, parse_model_name


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One of the paper's optimisation settings."""

    name: str
    base_learning_rate: float  # at base_batch_size, scaled linearly with the global batch
    base_batch_size: int
    momentum: float
    weight_decay: float
    milestones: tuple  # iterations at which the learning rate is divided by 10 (may be empty)
    total_iterations: int  # planned length of training in the paper
    plateau_patience: int  # epochs without improvement before ReduceLROnPlateau divides by 10


RECIPES = {
    # §4.2: 0.1 at batch 128, /10 at 32k and 48k, stop at 64k.
    "cifar": Recipe("cifar", 0.1, 128, 0.9, 1e-4, (32_000, 48_000), 64_000, 10),
    # §3.4: 0.1 at batch 256, /10 when the error plateaus, up to 60e4 iterations.
    "imagenet": Recipe("imagenet", 0.1, 256, 0.9, 1e-4, (), 600_000, 5),
}


def get_recipe(recipe):
    """A :class:`Recipe` by name ("cifar" or "imagenet") or the Recipe itself."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"`recipe` must be one of {', '.join(RECIPES)}; got {recipe!r}.")
    return RECIPES[recipe]


def apply_weight_decay(model, weight_decay):
    """Put the paper's weight decay on every conv and dense kernel of ``model``.

    Sets ``L2(weight_decay / 2)`` (gradient ``weight_decay * w``) on the kernel variables and in
    the layers' configs, so a saved model keeps it. Replaces any earlier kernel regularizer;
    ``weight_decay=0`` removes it.

    Example:
        >>> apply_weight_decay(keras.applications.ResNet50(weights=None), 1e-4)
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"`weight_decay` must be a number >= 0; got {weight_decay!r}.")
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    for layer in model._flatten_layers(include_self=False):
        if hasattr(layer, "kernel_regularizer"):
            layer.kernel_regularizer = regularizer
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.built:
            layer.kernel.regularizer = regularizer
    return model


def compile_model(
    model,
    recipe="cifar",
    global_batch_size=None,
    *,
    learning_rate=None,
    weight_decay=None,
    momentum=None,
    jit_compile="auto",
    steps_per_execution="auto",
    fast_path=True,
):
    """Compile ``model`` with the paper's optimisation.

    Args:
        model: a Keras model with softmax outputs.
        recipe: "cifar" or "imagenet" (or a :class:`Recipe`).
        global_batch_size: the global batch; the learning rate is scaled linearly from the
            recipe's (0.1 at 128 for CIFAR, 0.1 at 256 for ImageNet). Default: the recipe's.
        learning_rate, weight_decay, momentum: override the recipe.
        jit_compile, steps_per_execution: passed to ``model.compile``; "auto" takes the
            measured fast path of this device (``keras_resnet.distribute.FAST_PATH``).
        fast_path: False lets "auto" mean Keras' defaults instead.

    Returns:
        The model, compiled with SGD, sparse categorical cross-entropy and ``top1``/``top5``
        accuracy.

    Example:
        >>> compile_model(keras_resnet.ResNet20(), "cifar", global_batch_size=256)  # lr 0.2
    """
    recipe = get_recipe(recipe)
    settings = distribute.fast_path(fast_path)
    jit_compile = settings["jit_compile"] if jit_compile == "auto" else jit_compile
    if steps_per_execution == "auto":
        steps_per_execution = settings["steps_per_execution"]
    batch = recipe.base_batch_size if global_batch_size is None else global_batch_size
    if learning_rate is None:
        learning_rate = scaled_learning_rate(recipe.base_learning_rate, recipe.base_batch_size, batch)
    apply_weight_decay(model, recipe.weight_decay if weight_decay is None else weight_decay)
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=learning_rate,
            momentum=recipe.momentum if momentum is None else momentum,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def _learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def _set_learning_rate(model, value):
    model.optimizer.learning_rate = value


class StepSchedule(keras.callbacks.Callback):
    """Divide the learning rate by 10 at given iterations and stop at ``stop_at`` (§4.2).

    It multiplies the optimizer's current learning rate, so it composes with
    ``ReduceLROnPlateau`` (a ``LearningRateSchedule`` cannot). Iterations are the optimizer's,
    so a resumed run continues the schedule where it was.

    Example:
        >>> StepSchedule((32_000, 48_000), stop_at=64_000)  # the paper's CIFAR schedule
    """

    def __init__(self, milestones=(32_000, 48_000), factor=0.1, stop_at=None):
        super().__init__()
        self.milestones = tuple(sorted(milestones))
        self.factor = factor
        self.stop_at = stop_at
        self._last_iteration = None

    @classmethod
    def scaled(cls, total_iterations, recipe="cifar"):
        """The recipe's milestones at the same fractions of a shorter or longer run."""
        recipe = get_recipe(recipe)
        fractions = [m / recipe.total_iterations for m in recipe.milestones]
        milestones = [max(1, round(f * total_iterations)) for f in fractions]
        return cls(milestones, stop_at=total_iterations)

    def _iteration(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        self._last_iteration = self._iteration()

    def on_train_batch_begin(self, batch, logs=None):
        iteration = self._iteration()
        crossed = sum(self._last_iteration < m <= iteration for m in self.milestones)
        if crossed:
            _set_learning_rate(self.model, _learning_rate(self.model) * self.factor**crossed)
        self._last_iteration = iteration
        if self.stop_at is not None and iteration >= self.stop_at:
            self.model.stop_training = True


class WarmupUntilError(keras.callbacks.Callback):
    """§4.2, ResNet-110: train at ``warmup_learning_rate`` until the training error is below
    ``error_threshold``, then go back to the learning rate the optimizer started with.

    Example:
        >>> WarmupUntilError(0.01, error_threshold=0.8)
    """

    def __init__(self, warmup_learning_rate=0.01, error_threshold=0.8, metric="top1"):
        super().__init__()
        self.warmup_learning_rate = warmup_learning_rate
        self.error_threshold = error_threshold
        self.metric = metric
        self.target_learning_rate = None
        self.finished = False

    def on_train_begin(self, logs=None):
        if not self.finished:
            self.target_learning_rate = _learning_rate(self.model)
            _set_learning_rate(self.model, self.warmup_learning_rate)

    def on_train_batch_end(self, batch, logs=None):
        accuracy = (logs or {}).get(self.metric)
        if not self.finished and accuracy is not None and 1 - accuracy < self.error_threshold:
            _set_learning_rate(self.model, self.target_learning_rate)
            self.finished = True


class NaNError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss by raising :class:`NaNError`.

    Raising (rather than setting ``stop_training``) skips ``on_train_end``, so
    ``BackupAndRestore`` keeps its last good backup and the best checkpoint stays.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NaNError(
                f"The training loss became {loss} at batch {batch}; training stopped. The last "
                "good checkpoint and backup are kept. Lower the learning rate or check the data."
            )


def reduce_on_plateau(monitor="val_top1", patience=10):
    """§3.4: divide the learning rate by 10 when ``monitor`` stops improving for ``patience`` epochs.

    Example:
        >>> model.fit(ds, validation_data=val, callbacks=[reduce_on_plateau("val_top1", 5)])
    """
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor,
        mode="min" if monitor.endswith("loss") else "max",
        factor=0.1,
        patience=patience,
        verbose=1,
    )


def paper_callbacks(
    run_dir,
    recipe="cifar",
    *,
    total_iterations=None,
    monitor="val_top1",
    plateau_patience=None,
    warmup=False,
    tensorboard=True,
):
    """The paper's callbacks for a run directory.

    Args:
        run_dir: where ``best.keras``, ``history.csv``, ``backup/`` and ``logs/`` go.
        recipe: "cifar" (step schedule at the paper's iterations, or scaled to
            ``total_iterations``) or "imagenet" (plateau only).
        total_iterations: planned iterations of this run; scales the CIFAR milestones.
        monitor: metric watched by ReduceLROnPlateau and the best checkpoint
            ("val_top1" with validation data, "top1" without).
        plateau_patience: epochs without improvement before dividing by 10.
        warmup: add ResNet-110's warm-up (0.01 until training error < 80%).
        tensorboard: write TensorBoard logs.

    Returns:
        A list of callbacks: StepSchedule (CIFAR), ReduceLROnPlateau (factor 0.1),
        ModelCheckpoint (best), BackupAndRestore, CSVLogger, StopOnNaN, TensorBoard, and
        WarmupUntilError when asked.

    Example:
        >>> model.fit(ds, epochs=30, callbacks=paper_callbacks("runs/r20", "cifar", total_iterations=3000))
    """
    recipe = get_recipe(recipe)
    os.makedirs(run_dir, exist_ok=True)
    mode = "min" if monitor.endswith("loss") else "max"
    # BackupAndRestore comes first: it restores weights, optimizer state (iterations, learning
    # rate) and the epoch before the schedules below read them.
    callbacks = [keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"))]
    if warmup:
        callbacks.append(WarmupUntilError())
    if recipe.milestones:
        if total_iterations is None:
            callbacks.append(StepSchedule(recipe.milestones, stop_at=recipe.total_iterations))
        else:
            callbacks.append(StepSchedule.scaled(total_iterations, recipe))
    callbacks += [
        reduce_on_plateau(
            monitor, recipe.plateau_patience if plateau_patience is None else plateau_patience
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "best.keras"), monitor=monitor, mode=mode, save_best_only=True
        ),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        StopOnNaN(),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    return callbacks


def evaluate_ten_crop(model, dataset):
    """Top-1 and top-5 accuracy with the paper's 10-crop testing (§3.4): softmax averaged.

    Args:
        model: a classifier with softmax outputs.
        dataset: yields ``(crops, labels)``: crops ``(batch * 10, h, w, c)`` image-major and
            labels ``(batch,)``, as ``keras_resnet.data.load(..., ten_crop=True)`` gives them.

    Returns:
        dict with ``top1`` and ``top5`` accuracy.

    Example:
        >>> evaluate_ten_crop(model, data.load("cifar10", "test", 100, ten_crop=True)[0])
    """
    correct1 = correct5 = total = 0
    for crops, labels in dataset:
        probabilities = data.average_crops(model(crops, training=False)).numpy()
        top5 = np.argsort(-probabilities, axis=1)[:, :5]
        labels = np.asarray(labels).reshape(-1)
        correct1 += int(np.sum(top5[:, 0] == labels))
        correct5 += int(np.sum(np.any(top5 == labels[:, None], axis=1)))
        total += len(labels)
    return {"top1": correct1 / total, "top5": correct5 / total}


# --------------------------------------------------------------------------------------------
# One run, end to end: what `keras-resnet train` does.

# Epochs and global batch of a run when not given, by dataset. CIFAR follows §4.2 (64k
# iterations at batch 128 = 164 epochs of 50k images; 45k/5k split: 182); ImageNet §3.4 (60e4
# iterations at batch 256 = 120 epochs). Digits (1,293 training images) is sized to finish in
# under 5 minutes on 2 CPU cores.
RUN_DEFAULTS = {
    "digits": {"epochs": 40, "batch_size": 32},
    "cifar10": {"epochs": 164, "batch_size": 128},
    "cifar100": {"epochs": 164, "batch_size": 128},
    "imagenet2012": {"epochs": 120, "batch_size": 256},
}
OTHER_RUN_DEFAULTS = {"epochs": 30, "batch_size": 128}


def _family(model_name):
    try:
        return parse_model_name(model_name)[0]
    except ValueError:  # a .keras path or a model object: CIFAR recipe unless told
        return "cifar"


def _history_rows(path):
    """history.csv rows, one per epoch (a resumed run may repeat an epoch: keep the last)."""
    import csv

    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f)}
    return [rows[epoch] for epoch in sorted(rows)]


def plot_history(history_csv, path):
    """Training and validation error per epoch (the paper's Fig. 4/6 style) as a PNG."""
    # A bare Figure (no pyplot): no backend switch, so notebooks keep plotting inline.
    from matplotlib.figure import Figure

    rows = _history_rows(history_csv)
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for key, style, label in (("top1", "--", "training error"), ("val_top1", "-", "validation error")):
        if rows and key in rows[0]:
            axis.plot(epochs, [100 * (1 - float(row[key])) for row in rows], style, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("top-1 error (%)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)



def _build_model(model, info, options):
    """A model for the dataset: a name from NAMED_MODELS, a path to a .keras file or a model."""
    if isinstance(model, str) and model.endswith(".keras"):
        if not os.path.exists(model):
            raise ValueError(f"`model` file {model!r} does not exist.")
        model = keras.saving.load_model(model)
    if isinstance(model, str):
        return get_model(model, input_shape=tuple(info.image_shape), classes=info.num_classes, **options)
    expected = tuple(info.image_shape)
    given = tuple(model.input_shape[1:])
    fits = len(given) == 3 and all(g in (None, e) for g, e in zip(given, expected))
    if not fits or model.output_shape[-1] != info.num_classes:
        raise ValueError(
            f"Model {model.name!r} takes inputs {given} and predicts {model.output_shape[-1]} "
            f"classes; dataset {info.name!r} gives images {expected} in {info.num_classes} "
            "classes. Build the model with input_shape and classes from the dataset."
        )
    return model


def train(
    model="resnet20",
    dataset="digits",
    *,
    run_dir=None,
    epochs=None,
    batch_size=None,
    recipe=None,
    learning_rate=None,
    weight_decay=None,
    strategy="auto",
    precision="auto",
    jit_compile="auto",
    steps_per_execution="auto",
    fast_path=True,
    resume=True,
    data_dir=None,
    download=True,
    seed=0,
    model_options=None,
    verbose="auto",
):
    """Train a ResNet with the paper's recipe and callbacks; everything lands in ``run_dir``.

    Args:
        model: a name ("resnet20", "resnet50", ...), a ``.keras`` path or a ``keras.Model``.
        dataset: "digits", a tensorflow-datasets name or an image-folder path.
        run_dir: output directory (default ``runs/MODEL-DATASET``): ``model.keras`` (final), ``best.keras``, ``history.csv``,
            ``training_curves.png``, ``logs/`` (TensorBoard), ``run.json``, ``backup/``.
        epochs: planned epochs in total (a resumed run ends at the same number); default
            from ``RUN_DEFAULTS`` for the dataset.
        batch_size: global batch, split over the strategy's replicas; default from
            ``RUN_DEFAULTS``.
        recipe: "cifar" or "imagenet"; default from the model's family.
        learning_rate, weight_decay: override the recipe's (learning rate is otherwise scaled
            linearly with the global batch).
        strategy: see ``keras_resnet.distribute.get_strategy``.
        precision: "auto", "float32", "mixed", "mixed_float16" or "mixed_bfloat16".
        jit_compile, steps_per_execution: passed to ``model.compile``.
        fast_path: "auto" precision, XLA and steps per execution take the measured fast
            settings of this device (``keras_resnet.distribute.FAST_PATH``); False takes
            Keras' defaults instead.
        resume: continue from ``run_dir/backup`` when a killed run left one there.
        data_dir, download: tensorflow-datasets options.
        seed: seeds weights, shuffling and augmentation.
        model_options: extra keyword options for the model constructor.

    Returns:
        dict: the run's configuration and final test metrics (also written to run.json).

    Example:
        >>> result = train("resnet20", "digits", run_dir="runs/r20", epochs=30)
    """
    defaults = RUN_DEFAULTS.get(dataset, OTHER_RUN_DEFAULTS)
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer; got {epochs!r}.")
    model_name = model if isinstance(model, str) else getattr(model, "name", "model")
    if run_dir is None:
        model_stem = os.path.basename(model_name).removesuffix(".keras")
        run_dir = os.path.join("runs", f"{model_stem}-{os.path.basename(dataset.rstrip('/'))}")
    family = "imagenet" if _family(model_name) == "imagenet" else "cifar"
    recipe = get_recipe(recipe or family)
    keras.utils.set_random_seed(seed)
    policy = distribute.set_precision(precision, fast=fast_path, family=family)
    strategy_object = distribute.get_strategy(strategy)
    global_batch = distribute.global_batch_size(strategy_object, batch_size=batch_size)

    def load(split, training):
        return data.load(dataset, split, global_batch, training=training, data_dir=data_dir,
                         download=download, seed=seed)

    train_ds, info = load("train", True)
    try:
        val_ds, _ = load("validation", False)
        validation_split = "validation"
    except ValueError:  # the dataset has no validation split: validate on its test split
        val_ds, _ = load("test", False)
        validation_split = "test"
    test_ds, test_info = load("test", False)

    backup_dir = os.path.join(run_dir, "backup")
    if not resume:  # start afresh: drop what an earlier run left
        shutil.rmtree(backup_dir, ignore_errors=True)
        for leftover in ("history.csv", "best.keras"):
            if os.path.exists(os.path.join(run_dir, leftover)):
                os.remove(os.path.join(run_dir, leftover))
    resumed_from = None
    metadata = os.path.join(backup_dir, "training_metadata.json")
    if os.path.exists(metadata):
        with open(metadata) as f:
            resumed_from = json.load(f)["epoch"]
        print(f"Resuming from the backup in {backup_dir}: {resumed_from} of {epochs} epochs done.")

    with strategy_object.scope():
        net = _build_model(model, info, dict(model_options or {}))
        compile_model(net, recipe, global_batch, learning_rate=learning_rate,
                      weight_decay=weight_decay, jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution, fast_path=fast_path)
    # The training dataset drops its last partial batch.
    steps_per_epoch = info.num_examples // global_batch if info.num_examples else None
    total_iterations = steps_per_epoch * epochs if steps_per_epoch else None
    callbacks = paper_callbacks(
        run_dir, recipe, total_iterations=total_iterations,
        warmup=model_name in ("resnet110", "resnet1202"),
    )
    initial_learning_rate = _learning_rate(net)
    started = time.time()
    net.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose)
    seconds = time.time() - started

    test = net.evaluate(test_ds, return_dict=True, verbose=0)
    net.save(os.path.join(run_dir, "model.keras"))
    # The preprocessing travels with the models, for export and prediction.
    for saved in ("model.keras", "best.keras"):
        if os.path.exists(os.path.join(run_dir, saved)):
            data.save_preprocessing(os.path.join(run_dir, saved), info)
    plot_history(os.path.join(run_dir, "history.csv"), os.path.join(run_dir, "training_curves.png"))
    result = {
        "run_dir": run_dir,
        "model": model_name,
        "dataset": info.name,
        "epochs": epochs,
        "batch_size": global_batch,
        "replicas": strategy_object.num_replicas_in_sync,
        "strategy": strategy,
        "precision": policy,
        "jit_compile": net.jit_compile,
        "steps_per_execution": net.steps_per_execution,
        "fast_path": fast_path,
        "recipe": dataclasses.asdict(recipe),
        "learning_rate": initial_learning_rate,
        "seed": seed,
        "resumed_from_epoch": resumed_from,
        "train_seconds": round(seconds, 1),
        "data": info.to_config(),
        "validation_split": validation_split,
        "test_examples": test_info.num_examples,
        "test": {"top1": test["top1"], "top5": test["top5"], "loss": test["loss"]},
        "history": _history_rows(os.path.join(run_dir, "history.csv")),
    }
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump(result, f, indent=2, default=float)
    return result
