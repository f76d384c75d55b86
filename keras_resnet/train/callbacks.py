"""The paper's callbacks for a run directory: best checkpoint, NaN and signal stops, logs.

Example:
    >>> BestCheckpoint("runs/r20/best.keras", monitor="val_top1").mode
    'max'
"""

import csv
import importlib.util
import math
import os
import sys
import time

import keras
import numpy as np

from keras_resnet import interrupts
from keras_resnet.errors import InvalidArgument
from keras_resnet.extras import require
from keras_resnet.recipes import get_recipe, warmup_steps
from keras_resnet.saving import save_model
from keras_resnet.train.backup import RunBackup
from keras_resnet.train.ema import ModelEMA
from keras_resnet.train.replicas import AverageReplicaStatistics
from keras_resnet.train.schedules import (
    LinearWarmup,
    StepSchedule,
    WarmupUntilError,
    reduce_on_plateau,
)


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


class StopOnSignal(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` at the next batch once the command got SIGINT or SIGTERM
    (``keras_resnet.interrupts``): from the main flow, where nothing can swallow it. A no-op
    where no handler was installed (a library call, a notebook)."""

    def _check(self, batch, logs=None):
        if interrupts.requested():
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _check


class CSVLogger(keras.callbacks.CSVLogger):
    """``history.csv``: Keras' CSVLogger (appending), with the optimizer's learning rate at
    each epoch's end as the column ``learning_rate`` whatever the recipe (Keras'
    ReduceLROnPlateau logs it, a cosine or poly schedule nothing), and a resumed run's rows
    under the header its file already has, so no row shifts when the columns differ.

    Example:
        >>> CSVLogger("runs/r20/history.csv").append
        True
    """

    def __init__(self, filename, separator=",", append=True):
        super().__init__(filename, separator=separator, append=append)
        self._header = None

    def on_train_begin(self, logs=None):
        self._header = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self._header = next(csv.reader(f, delimiter=self.sep), None)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate)))
        if self.keys is None and self._header:  # appending: the file's columns, in its order
            self.keys = [key for key in self._header if key != "epoch"]
        super().on_epoch_end(epoch, logs)


class EpochLine(keras.callbacks.Callback):
    """One line per epoch, for a run whose output is not a terminal (a log file, a pipe):
    ``epoch 3/40 - 6s - loss: 0.3428 - top1: 0.9203 - ... - learning_rate: 0.025``.

    Example:
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> _ = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=1, verbose=0,
        ...               callbacks=[EpochLine()])  # doctest: +ELLIPSIS
        epoch 1/1 - 0s - loss: ...
    """

    def __init__(self, stream=None):
        super().__init__()
        self.stream, self.started = stream, None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        figures = [f"{key}: {float(value):.4g}" if "learning_rate" in key
                   else f"{key}: {float(value):.4f}"
                   for key, value in (logs or {}).items() if np.size(value) == 1]
        seconds = time.monotonic() - (self.started or time.monotonic())
        print(" - ".join([f"epoch {epoch + 1}/{self.params.get('epochs')}", f"{seconds:.0f}s",
                          *figures]), file=self.stream or sys.stdout, flush=True)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (atomically) whenever ``monitor`` improves.

    Example:
        >>> BestCheckpoint("runs/r20/best.keras", monitor="val_top1").mode
        'max'
    """

    def __init__(self, path, monitor="val_top1"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.mode = "min" if monitor.endswith("loss") else "max"
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = value
            save_model(self.model, self.path)

    def state(self):
        return {"best": self.best}

    def restore(self, state):
        self.best = state["best"]


def _tensorflow_installed():
    """True when ``import tensorflow`` would find the package (without importing it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a finder that refuses it, a broken install
        return False


def paper_callbacks(
    run_dir,
    recipe="cifar",
    *,
    total_iterations=None,
    monitor="val_top1",
    plateau_patience=None,
    warmup=False,
    tensorboard="auto",
    keep_backup=False,
    backup_dir=None,
    ema_steps=None,
):
    """The paper's callbacks for a run directory.

    Args:
        run_dir: where ``best.keras``, ``history.csv``, ``backup/`` and ``logs/`` go.
        recipe: "cifar" (step schedule at the paper's iterations, or scaled to
            ``total_iterations``), "imagenet" (plateau only), or a modern recipe (its cosine
            schedule is the optimizer's; with EMA, :class:`~keras_resnet.train.ema.ModelEMA`).
        total_iterations: planned iterations of this run; scales the CIFAR milestones.
        monitor: metric watched by ReduceLROnPlateau and the best checkpoint
            ("val_top1" with validation data, "top1" without).
        plateau_patience: epochs without improvement before dividing by 10.
        warmup: add ResNet-110's warm-up (0.01 until training error < 80%).
        tensorboard: write TensorBoard logs. Keras' TensorBoard callback writes with
            TensorFlow's ``tf.summary`` on every backend: "auto" writes them when TensorFlow
            is installed, True needs it (MissingExtra otherwise), False writes none.
        keep_backup: keep the backup when training ends (``train`` removes it itself once
            the model is saved and exported).
        backup_dir: where :class:`RunBackup` writes; default ``run_dir/backup``.
        ema_steps: the run's steps, for a recipe with EMA (its decay and warm-up).

    Returns:
        A list of callbacks: StopOnSignal, AverageReplicaStatistics (TensorFlow: one set of
        batch-norm statistics across a strategy's replicas), LinearWarmup (a step recipe
        with ``warmup_epochs``), StepSchedule (CIFAR), ReduceLROnPlateau (factor 0.1), BestCheckpoint,
        :class:`CSVLogger` (history.csv), StopOnNaN, TensorBoard, WarmupUntilError when asked, and
        RunBackup (resume with ``initial_epoch=restore_backup(model, run_dir + "/backup")``).

    Example:
        >>> [type(c).__name__ for c in paper_callbacks("runs/r20", "cifar", total_iterations=3000)]
        ... # doctest: +NORMALIZE_WHITESPACE
        ['StopOnSignal', 'AverageReplicaStatistics', 'StepSchedule', 'ReduceLROnPlateau',
         'BestCheckpoint', 'CSVLogger', 'StopOnNaN', 'TensorBoard', 'RunBackup']
    """
    recipe = get_recipe(recipe)
    if tensorboard not in (True, False, "auto"):
        raise InvalidArgument(f"`tensorboard` must be True, False or 'auto'; got {tensorboard!r}.")
    if tensorboard == "auto":
        tensorboard = _tensorflow_installed()
    elif tensorboard:
        require("tensorflow", "TensorBoard logs (paper_callbacks(tensorboard=True))")
    os.makedirs(run_dir, exist_ok=True)
    callbacks = [StopOnSignal()]
    if keras.backend.backend() == "tensorflow":  # before anything that validates or saves
        callbacks.append(AverageReplicaStatistics())
    backup_dir = backup_dir or os.path.join(run_dir, "backup")
    if recipe.ema:  # first: the callbacks after it see the EMA weights at each epoch's end
        callbacks.append(ModelEMA.from_recipe(recipe, ema_steps, state_dir=backup_dir))
    if warmup:
        if recipe.schedule in ("cosine", "poly"):  # the optimizer's rate is a schedule
            raise InvalidArgument(
                f"`warmup` (§4.2's 0.01 until 80% training error) is the paper's; recipe "
                f"{recipe.name!r} sets its rate per step ({recipe.schedule} schedule).")
        callbacks.append(WarmupUntilError())
    if recipe.schedule == "step":
        steps = warmup_steps(recipe, total_iterations or recipe.total_iterations)
        if steps:  # first: torchvision's detection warms up, then steps
            callbacks.append(LinearWarmup(steps, recipe.warmup_start_factor))
        if total_iterations is None:
            callbacks.append(StepSchedule(recipe.milestones, stop_at=recipe.total_iterations))
        else:
            callbacks.append(StepSchedule.scaled(total_iterations, recipe))
    if recipe.schedule in ("step", "plateau"):  # a cosine or poly schedule owns the rate
        callbacks.append(reduce_on_plateau(
            monitor, recipe.plateau_patience if plateau_patience is None else plateau_patience
        ))
    best = BestCheckpoint(os.path.join(run_dir, "best.keras"), monitor=monitor)
    callbacks += [
        best,
        CSVLogger(os.path.join(run_dir, "history.csv")),
        StopOnNaN(),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    # Last: it restores the state of the callbacks above when training begins.
    # In this order (a backup lists their states by position).
    stateful = [c for kind in (keras.callbacks.ReduceLROnPlateau, BestCheckpoint,
                               WarmupUntilError, ModelEMA)
                for c in callbacks if isinstance(c, kind)]
    callbacks.append(RunBackup(backup_dir, stateful, not keep_backup))
    return callbacks
