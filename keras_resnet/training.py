"""The paper's training recipes: optimizer, weight decay, loss, metrics and callbacks.

§3.4 (ImageNet): SGD, mini-batch 256, momentum 0.9, weight decay 1e-4, learning rate 0.1
divided by 10 when the error plateaus. §4.2 (CIFAR-10): mini-batch 128, learning rate 0.1
divided by 10 at 32k and 48k iterations, stopped at 64k; ResNet-110 warms up at 0.01 until the
training error is below 80%.

Weight decay is the paper's: an L2 term whose gradient is ``1e-4 * w``, i.e. Keras
``L2(5e-5)`` on every conv and dense kernel. It is *not* ``SGD(weight_decay=...)``, which is
decoupled decay applied outside the momentum. It has one source: the model's regularizers, set
when the model is built (``ResNet20(weight_decay=1e-4)``, the default, or any
``kernel_regularizer``); :func:`compile_model` replaces them only when given ``weight_decay``.

Backend-neutral (Keras and NumPy only). The end-to-end runs (``train``, ``fine_tune``) need
``tf.data`` and live in ``keras_resnet.runs``, which imports this module (never the reverse).

Example:
    >>> model = keras_resnet.ResNet20()
    >>> _ = compile_model(model, "cifar", global_batch_size=128)
    >>> round(float(model.optimizer.learning_rate), 3)
    0.1
"""

import dataclasses
import importlib.util
import json
import math
import os
import shutil

import keras

from keras_resnet import devices, interrupts
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.extras import require
from keras_resnet.models import walk_layers
from keras_resnet.multilabel import TASKS
from keras_resnet.recipes import (
    PAPER,
    EMAWeights,
    get_recipe,
    learning_rate_schedule,
    make_optimizer,
    peak_learning_rate,
)
from keras_resnet.saving import atomic_path, save_model, write_json
from keras_resnet.errors import InvalidArgument


def apply_weight_decay(model, weight_decay, *, bias=False, norm=False):
    """Put the paper's weight decay on every conv and dense kernel of ``model``.

    Sets ``L2(weight_decay / 2)`` (gradient ``weight_decay * w``) on the kernel variables and in
    the layers' configs, so a saved model keeps it. Replaces any earlier kernel regularizer;
    ``weight_decay=0`` removes it. ``bias`` and ``norm`` put it on biases and on
    BatchNormalization's gamma and beta too (torchvision's recipe decays biases); otherwise
    they carry none.

    Example:
        >>> model = apply_weight_decay(keras_resnet.ResNet20(weight_decay=0), 1e-4)
        >>> float(model.get_layer("conv1").kernel_regularizer.l2)
        5e-05
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise InvalidArgument(f"`weight_decay` must be a number >= 0; got {weight_decay!r}.")
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    decayed = {"kernel": regularizer, "bias": regularizer if bias else None,
               "gamma": regularizer if norm else None, "beta": regularizer if norm else None}
    for layer in walk_layers(model):
        if hasattr(layer, "kernel_regularizer"):
            layer.kernel_regularizer = regularizer  # the config (blocks pass it to their convs)
        for kind in ("bias", "gamma", "beta"):
            if hasattr(layer, f"{kind}_regularizer"):
                setattr(layer, f"{kind}_regularizer", decayed[kind])
        for variable in layer.trainable_weights:
            kind = variable.path.rsplit("/", 1)[-1]
            if kind in decayed:  # kernels always; biases and BN's gamma/beta when asked
                variable.regularizer = decayed[kind]
    return model


def metrics(one_hot=False):
    """The paper's measures: top-1 and top-5 accuracy (Tables 3-5 report their errors), of
    class ids, or of one-hot (or mixed) targets as modern recipes give them."""
    if one_hot:
        return [keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")]
    return [
        keras.metrics.SparseCategoricalAccuracy(name="top1"),
        keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
    ]


def multilabel_metrics():
    """Measures of a multi-label model while it trains: ``pr_auc``, the precision-recall AUC
    averaged over classes (Keras' interpolated estimate of mAP; ``keras_resnet.multilabel``
    computes the exact mAP once training ends), and ``f1``, macro F1 at 0.5."""
    return [
        keras.metrics.AUC(curve="PR", multi_label=True, num_thresholds=200, name="pr_auc"),
        keras.metrics.F1Score(average="macro", threshold=0.5, name="f1"),
    ]


def head_activation(recipe, multilabel):
    """The output activation a task and recipe train: a sigmoid per class for multi-label
    data and for binary cross-entropy (RSB), else softmax."""
    return "sigmoid" if multilabel or get_recipe(recipe).loss == "binary_cross_entropy" else "softmax"


def is_multilabel(model, task="auto", recipe="cifar"):
    """Whether ``model`` trains as a multi-label classifier: ``task`` "multilabel" or
    "single_label", or "auto": multi-label when its preprocessing carries thresholds. The
    output activation must fit (:func:`head_activation`): sigmoid for multi-label and for a
    binary cross-entropy recipe, softmax otherwise.

    Example:
        >>> is_multilabel(keras_resnet.ResNet20())
        False
    """
    if task not in TASKS:
        raise InvalidArgument(f"`task` must be one of {', '.join(map(repr, TASKS))}; got {task!r}.")
    if task == "auto":
        recipe_of_inputs = preprocessing_lib.of(model)
        multilabel = recipe_of_inputs is not None and recipe_of_inputs.multilabel
    else:
        multilabel = task == "multilabel"
    expected = head_activation(recipe, multilabel)
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", None)
    wrong = {"sigmoid": "softmax", "softmax": "sigmoid"}[expected]
    if activation == wrong:
        kind = "multi-label task" if multilabel else (
            "binary cross-entropy recipe" if expected == "sigmoid" else "single-label task")
        raise InvalidArgument(
            f"Model {model.name!r} ends in a {wrong}, which does not fit a {kind}; build it "
            f"with classifier_activation={expected!r}."
        )
    return multilabel


def monitored_metric(multilabel):
    """The validation metric the plateau schedule and the best checkpoint watch."""
    return "val_pr_auc" if multilabel else "val_top1"


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
    task="auto",
    total_steps=None,
):
    """Compile ``model`` with a recipe's optimisation (the paper's unless told).

    Args:
        model: a Keras model with softmax outputs (sigmoid for a multi-label task or a binary
            cross-entropy recipe).
        recipe: a name of ``keras_resnet.recipes.RECIPES`` ("cifar", "imagenet",
            "torchvision_v2", "rsb_a1", ...) or a :class:`Recipe`.
        global_batch_size: the global batch; the learning rate is scaled from the recipe's
            (linearly, or by the square root for LAMB recipes). Default: the recipe's.
        learning_rate, momentum: override the recipe's (peak) values.
        weight_decay: for the paper's recipes None keeps the model's own regularizers (set when
            it was built) and a number replaces them with the paper's L2 of that strength (see
            :func:`apply_weight_decay`); other recipes put their own (or this) decay where the
            recipe says: L2 regularizers, or the optimizer's decoupled decay.
        jit_compile, steps_per_execution: passed to ``model.compile``; "auto" takes the
            measured fast path of this device (``keras_resnet.distribute.FAST_PATH``).
        fast_path: False lets "auto" mean Keras' defaults instead.
        task: "single_label", "multilabel" or "auto" (:func:`is_multilabel`).
        total_steps: the run's training steps; cosine schedules and EMA need it.

    Returns:
        The model, compiled: the paper's recipes with SGD, sparse categorical cross-entropy
        and ``top1``/``top5`` accuracy; modern ones with one-hot (mixed) targets, categorical
        or binary cross-entropy (label smoothing in the loss for the former, in the targets
        for the latter) and the same ``top1``/``top5``; a multi-label task with binary
        cross-entropy and :func:`multilabel_metrics`.

    Example:
        >>> model = compile_model(keras_resnet.ResNet20(), "cifar", global_batch_size=256)
        >>> round(float(model.optimizer.learning_rate), 3)
        0.2
    """
    recipe = get_recipe(recipe)
    settings = devices.fast_path(fast_path)
    jit_compile = settings["jit_compile"] if jit_compile == "auto" else jit_compile
    if steps_per_execution == "auto":
        steps_per_execution = settings["steps_per_execution"]
    batch = recipe.base_batch_size if global_batch_size is None else global_batch_size
    peak = peak_learning_rate(recipe, batch) if learning_rate is None else learning_rate
    if recipe.name not in PAPER or weight_decay is not None:
        if weight_decay is not None:
            recipe = dataclasses.replace(recipe, weight_decay=weight_decay)
        coupled = recipe.weight_decay if recipe.weight_decay_style == "l2" else 0
        apply_weight_decay(model, coupled, bias=recipe.decay_bias, norm=recipe.decay_norm)
    multilabel = is_multilabel(model, task, recipe)
    if multilabel and recipe.label_smoothing:
        raise InvalidArgument(f"Recipe {recipe.name!r} smooths labels, which is for "
                              "single-label classes; set label_smoothing=0 for a multi-label task.")
    if multilabel or recipe.loss == "binary_cross_entropy":
        loss = keras.losses.BinaryCrossentropy()  # smoothing, if any, is in the targets
    elif recipe.modern:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        optimizer=make_optimizer(model, recipe, learning_rate_schedule(recipe, peak, total_steps),
                                 momentum=momentum, total_steps=total_steps),
        loss=loss,
        metrics=multilabel_metrics() if multilabel else metrics(one_hot=recipe.modern),
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
        >>> StepSchedule((32_000, 48_000), stop_at=64_000).milestones  # the paper's CIFAR schedule
        (32000, 48000)
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
        # As if the previous batch had just begun: a milestone at the iteration a resumed run
        # starts from (an epoch boundary) is crossed at its first batch, as without the break.
        self._last_iteration = self._iteration() - 1

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
        >>> WarmupUntilError(0.01, error_threshold=0.8).finished
        False
    """

    def __init__(self, warmup_learning_rate=0.01, error_threshold=0.8, metric="top1"):
        super().__init__()
        self.warmup_learning_rate = warmup_learning_rate
        self.error_threshold = error_threshold
        self.metric = metric
        self.target_learning_rate = None
        self.finished = False

    def on_train_batch_begin(self, batch, logs=None):
        if self.target_learning_rate is None and not self.finished:
            self.target_learning_rate = _learning_rate(self.model)
            _set_learning_rate(self.model, self.warmup_learning_rate)

    def on_train_batch_end(self, batch, logs=None):
        accuracy = (logs or {}).get(self.metric)
        if not self.finished and accuracy is not None and 1 - accuracy < self.error_threshold:
            _set_learning_rate(self.model, self.target_learning_rate)
            self.finished = True

    def state(self):
        return {"finished": self.finished, "target_learning_rate": self.target_learning_rate}

    def restore(self, state):
        self.finished = state["finished"]
        self.target_learning_rate = state["target_learning_rate"]


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
        >>> reduce_on_plateau("val_top1", 5).factor
        0.1
    """
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor,
        mode="min" if monitor.endswith("loss") else "max",
        factor=0.1,
        patience=patience,
        verbose=1,
    )


class StopOnSignal(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` at the next batch once the command got SIGINT or SIGTERM
    (``keras_resnet.interrupts``): from the main flow, where nothing can swallow it. A no-op
    where no handler was installed (a library call, a notebook)."""

    def _check(self, batch, logs=None):
        if interrupts.requested():
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _check


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


BACKUP_STATE = "state.json"


def _tensorflow_installed():
    """True when ``import tensorflow`` would find the package (without importing it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a finder that refuses it, a broken install
        return False


def _backup_files(backup_dir, epoch):
    return os.path.join(backup_dir, f"epoch-{epoch:04d}.weights.h5")


class RunBackup(keras.callbacks.Callback):
    """Back up the run at every epoch end, so a killed run resumes where it was.

    Writes ``backup_dir/epoch-NNNN.weights.h5`` (the model's and the optimizer's variables:
    weights, iterations, learning rate, momentum) and ``state.json`` (the epochs done and the
    state of the ``stateful`` callbacks: ReduceLROnPlateau's patience, the best checkpoint's
    score, the warm-up), each written to a temporary name and renamed, keeping the previous
    epoch's weights as a fallback. Resume with :func:`restore_backup` before ``fit``; the
    callback restores the other callbacks' state when training begins (put it last).

    Example:
        >>> model = compile_model(keras_resnet.CifarResNet(8, classes=2), "cifar")
        >>> start = restore_backup(model, "runs/r8/backup")  # 0: no backup yet
        >>> x, y = np.zeros((8, 32, 32, 3), "float32"), np.arange(8) % 2
        >>> _ = model.fit(x, y, epochs=2, initial_epoch=start, verbose=0,
        ...               callbacks=[RunBackup("runs/r8/backup", delete_on_end=False)])
        >>> restore_backup(model, "runs/r8/backup")
        2
    """

    def __init__(self, backup_dir, stateful=(), delete_on_end=True):
        super().__init__()
        self.backup_dir = backup_dir
        self.stateful = list(stateful)
        self.delete_on_end = delete_on_end

    def on_train_begin(self, logs=None):
        state = read_backup_state(self.backup_dir)
        if state is None:
            return
        for callback, saved in zip(self.stateful, state.get("callbacks", [])):
            if saved is not None:
                _restore_callback(callback, saved)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        os.makedirs(self.backup_dir, exist_ok=True)
        path = _backup_files(self.backup_dir, done)
        with atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        write_json(os.path.join(self.backup_dir, BACKUP_STATE), {
            "epoch": done,
            "weights": os.path.basename(path),
            "callbacks": [_callback_state(callback) for callback in self.stateful],
        })
        keep = {os.path.basename(path), os.path.basename(_backup_files(self.backup_dir, epoch))}
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in keep:
                os.remove(os.path.join(self.backup_dir, name))

    def on_train_end(self, logs=None):
        if self.delete_on_end:
            shutil.rmtree(self.backup_dir, ignore_errors=True)


def _callback_state(callback):
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
        return {"wait": callback.wait, "cooldown_counter": callback.cooldown_counter,
                "best": float(callback.best)}
    if hasattr(callback, "state"):
        return callback.state()
    return None


def _restore_callback(callback, state):
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
        callback.wait, callback.cooldown_counter = state["wait"], state["cooldown_counter"]
        callback.best = state["best"]
    elif hasattr(callback, "restore"):
        callback.restore(state)


def read_backup_state(backup_dir):
    """The ``state.json`` of a backup folder, or None when there is no readable one."""
    path = os.path.join(backup_dir, BACKUP_STATE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def restore_backup(model, backup_dir):
    """Load the newest good backup of :class:`RunBackup` into ``model``; the epochs it covers.

    A damaged weights file (a kill mid-write, a full disk) is reported in one line and the
    previous epoch's backup is tried; with none usable, training starts from epoch 0.

    Returns:
        The epoch to pass to ``model.fit(initial_epoch=...)`` (0 without a backup).

    Example:
        >>> restore_backup(keras_resnet.ResNet20(), "runs/none/backup")
        0
    """
    state = read_backup_state(backup_dir)
    if state is None:
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for epoch in (state["epoch"], state["epoch"] - 1):
        path = _backup_files(backup_dir, epoch)
        if epoch < 1 or not os.path.exists(path):
            continue
        try:
            model.load_weights(path)
            return epoch
        except Exception as error:  # h5py and Keras raise many kinds for a damaged file
            print(f"Backup {path} is damaged ({type(error).__name__}); trying an earlier one.")
    print(f"No usable backup in {backup_dir}; starting from epoch 0.")
    return 0


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
):
    """The paper's callbacks for a run directory.

    Args:
        run_dir: where ``best.keras``, ``history.csv``, ``backup/`` and ``logs/`` go.
        recipe: "cifar" (step schedule at the paper's iterations, or scaled to
            ``total_iterations``), "imagenet" (plateau only), or a modern recipe (its cosine
            schedule is the optimizer's; with EMA, :class:`~keras_resnet.recipes.EMAWeights`).
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

    Returns:
        A list of callbacks: StepSchedule (CIFAR), ReduceLROnPlateau (factor 0.1),
        BestCheckpoint, CSVLogger, StopOnNaN, TensorBoard, WarmupUntilError when asked, and
        RunBackup (resume with ``initial_epoch=restore_backup(model, run_dir + "/backup")``).

    Example:
        >>> [type(c).__name__ for c in paper_callbacks("runs/r20", "cifar", total_iterations=3000)]
        ['StopOnSignal', 'StepSchedule', 'ReduceLROnPlateau', 'BestCheckpoint', 'CSVLogger', 'StopOnNaN', 'TensorBoard', 'RunBackup']
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
    if recipe.ema:  # first: the callbacks after it see the EMA weights at each epoch's end
        callbacks.append(EMAWeights())
    if warmup:
        callbacks.append(WarmupUntilError())
    if recipe.schedule == "step":
        if total_iterations is None:
            callbacks.append(StepSchedule(recipe.milestones, stop_at=recipe.total_iterations))
        else:
            callbacks.append(StepSchedule.scaled(total_iterations, recipe))
    if recipe.schedule in ("step", "plateau"):  # a cosine schedule owns the learning rate
        callbacks.append(reduce_on_plateau(
            monitor, recipe.plateau_patience if plateau_patience is None else plateau_patience
        ))
    best = BestCheckpoint(os.path.join(run_dir, "best.keras"), monitor=monitor)
    callbacks += [
        best,
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        StopOnNaN(),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    # Last: it restores the state of the callbacks above when training begins.
    # In this order (a backup lists their states by position).
    stateful = [c for kind in (keras.callbacks.ReduceLROnPlateau, BestCheckpoint,
                               WarmupUntilError, EMAWeights)
                for c in callbacks if isinstance(c, kind)]
    backup_dir = backup_dir or os.path.join(run_dir, "backup")
    callbacks.append(RunBackup(backup_dir, stateful, not keep_backup))
    return callbacks
