"""End-to-end runs: what ``keras-resnet train`` and ``keras-resnet train --weights`` do.

:func:`train` trains a model from scratch with the paper's recipe and callbacks;
:func:`fine_tune` starts from pretrained weights, trains a new classifier with the backbone
frozen, then unfreezes the backbone from a named stage at a lower learning rate. Both write a
run directory (``model.keras``, ``best.keras``, ``history.csv``, ``training_curves.png``,
``logs/``, ``run.json``, ``export/``), resume after a kill from ``backup/``, and finish their
saving and export on a rerun without training again when they were killed after the last
epoch.

Example:
    >>> result = train("resnet20", "digits", run_dir="runs/r20", epochs=30)  # doctest: +SKIP
    >>> result["test"]["top1"] > 0.9  # doctest: +SKIP
    True
"""

import csv
import dataclasses
import os
import shutil
import time

import keras

from keras_resnet import data, devices, distribute
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.evaluation import check_fits_dataset, multilabel_test, with_thresholds
from keras_resnet.models import get_model, parse_model_name
from keras_resnet.saving import load_model, save_model, write_json
from keras_resnet.recipes import peak_learning_rate
from keras_resnet.training import (
    BestCheckpoint,
    compile_model,
    get_recipe,
    head_activation,
    monitored_metric,
    paper_callbacks,
    restore_backup,
)
from keras_resnet.errors import InvalidArgument

# Epochs and global batch of a run when not given, by dataset. CIFAR follows §4.2 (64k
# iterations at batch 128 = 164 epochs of 50k images; 45k/5k split: 182); ImageNet §3.4 (60e4
# iterations at batch 256 = 120 epochs). Digits (1,293 training images) is sized to finish in
# under 5 minutes on 2 CPU cores.
RUN_DEFAULTS = {
    "digits": {"epochs": 40, "batch_size": 32},
    # The multi-label canvases (3,000 training images): about 6 minutes on 2 CPU cores.
    "digit_canvases": {"epochs": 30, "batch_size": 64},
    "cifar10": {"epochs": 164, "batch_size": 128},
    "cifar100": {"epochs": 164, "batch_size": 128},
    "imagenet2012": {"epochs": 120, "batch_size": 256},
}
OTHER_RUN_DEFAULTS = {"epochs": 30, "batch_size": 128}
RUN_FILES = ("model.keras", "best.keras", "history.csv", "run.json", "training_curves.png")


def _family(model_name):
    try:
        return parse_model_name(model_name)[0]
    except ValueError:  # a .keras path or a model object: CIFAR recipe unless told
        return "cifar"


def history_rows(path):
    """history.csv rows, one per epoch (a resumed run may repeat an epoch: keep the last)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f) if row.get("epoch")}
    return [rows[epoch] for epoch in sorted(rows)]


def plot_history(history_csv, path, metric="top1"):
    """Training and validation error per epoch (the paper's Fig. 4/6 style) as a PNG:
    ``1 - metric`` (top-1 error; for multi-label runs ``1 - pr_auc``)."""
    # A bare Figure (no pyplot): no backend switch, so notebooks keep plotting inline.
    from matplotlib.figure import Figure

    from keras_resnet.saving import atomic_path

    rows = history_rows(history_csv)
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for key, style, label in ((metric, "--", "training"), (f"val_{metric}", "-", "validation")):
        if rows and key in rows[0]:
            axis.plot(epochs, [100 * (1 - float(row[key])) for row in rows], style, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("top-1 error (%)" if metric == "top1" else f"1 - {metric} (%)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)


def _build_model(model, info, options, recipe):
    """A model for the dataset, carrying its preprocessing: a model name, a ``.keras`` file
    or a model (a sigmoid head for multi-label data and binary cross-entropy recipes; the
    recipe's stochastic depth; any input size while it trains at FixRes' smaller crops)."""
    if isinstance(model, str) and not model.endswith(".keras"):
        options = {"classifier_activation": head_activation(recipe, info.multilabel), **options}
        if recipe.drop_path_rate:
            options.setdefault("drop_path_rate", recipe.drop_path_rate)
        shape = tuple(info.image_shape)
        if recipe.train_size_fraction != 1.0:
            shape = (None, None, shape[-1])
        return get_model(model, input_shape=shape, classes=info.num_classes,
                         preprocessing=info.preprocessing, **options)
    if recipe.train_size_fraction != 1.0 or recipe.drop_path_rate:
        raise InvalidArgument(f"Recipe {recipe.name!r} trains at smaller crops (FixRes) or drops "
                              "paths, which a built model cannot take up; give a model name, or "
                              "--set train_size_fraction=1 --set drop_path_rate=0.")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, compile=False)
    check_fits_dataset(model, info)
    return preprocessing_lib.attach(model, info.preprocessing)


def _at_input_size(net, info):
    """``net`` (sharing its layers) with the dataset's fixed input size: a model trained on
    FixRes' smaller crops is saved and exported at the size it is evaluated at."""
    if tuple(net.input_shape[1:]) == tuple(info.image_shape):
        return net
    return keras.models.clone_model(net, input_tensors=keras.Input(shape=info.image_shape),
                                    clone_function=lambda layer: layer)


@dataclasses.dataclass
class _Splits:
    train: object
    validation: object
    test: object
    info: object
    validation_split: str


def _load_splits(dataset, global_batch, *, data_dir, download, seed, preprocessing=None,
                 task="auto", recipe=None):
    def load(split, training):
        return data.load(dataset, split, global_batch, training=training, data_dir=data_dir,
                         download=download, seed=seed, preprocessing=preprocessing, task=task,
                         recipe=recipe)

    train_ds, info = load("train", True)
    if info.num_examples is not None and global_batch > info.num_examples:
        raise InvalidArgument(
            f"`batch_size` {global_batch} is larger than the {info.num_examples} training images "
            f"of {info.name!r}: no full batch to train on. Use a batch of at most "
            f"{info.num_examples}."
        )
    try:
        val_ds, _ = load("validation", False)
        validation_split = "validation"
    except ValueError:  # the dataset has no validation split: validate on its test split
        val_ds, _ = load("test", False)
        validation_split = "test"
    test_ds, test_info = load("test", False)
    return _Splits(train_ds, val_ds, test_ds, info, validation_split), test_info.num_examples


def _prepare_run_dir(run_dir, resume):
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


def _check_epochs(epochs):
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgument(f"`epochs` must be a positive integer; got {epochs!r}.")


def _default_run_dir(model_name, dataset, suffix=""):
    model_stem = os.path.basename(str(model_name)).removesuffix(".keras")
    return os.path.join("runs", f"{model_stem}-{os.path.basename(str(dataset).rstrip('/'))}{suffix}")


@dataclasses.dataclass
class _RunSetup:
    """What ``train`` and ``fine_tune`` set up alike before building a model."""

    run_dir: str
    seed: int
    strategy_name: object
    strategy: object
    global_batch: int
    policy: str

    def record(self, *, model, splits, epochs, started, resumed, test_examples, **fields):
        """The run.json fields both flows write, with ``fields`` of their own in between."""
        return {
            "run_dir": self.run_dir, "model": model, "dataset": splits.info.name, "epochs": epochs,
            **fields,
            "batch_size": self.global_batch, "replicas": self.strategy.num_replicas_in_sync,
            "strategy": self.strategy_name, "precision": self.policy, "seed": self.seed,
            "resumed_from_epoch": resumed or None,
            "train_seconds": round(time.time() - started, 1), "data": splits.info.to_config(),
            "validation_split": splits.validation_split, "test_examples": test_examples,
        }


def _set_up_run(run_dir, *, resume, seed, precision, fast_path, family, strategy, batch_size):
    """Run directory, seed, precision policy, strategy and global batch: in that order, since
    the policy must be set before any layer is built and the batch depends on the replicas."""
    _prepare_run_dir(run_dir, resume)
    keras.utils.set_random_seed(seed)
    policy = devices.set_precision(precision, fast=fast_path, family=family)
    strategy_object = distribute.get_strategy(strategy)
    global_batch = distribute.global_batch_size(strategy_object, batch_size=batch_size)
    return _RunSetup(run_dir, seed, strategy, strategy_object, global_batch, policy)


def _resume(net, run_dir, epochs):
    done = restore_backup(net, os.path.join(run_dir, "backup"))
    if done:
        print(f"Resuming from the backup in {os.path.join(run_dir, 'backup')}: "
              f"{done} of {epochs} epochs done.")
    return done


def _finish(net, run_dir, splits, result, export, data_dir):
    """Evaluate, save, plot, export, write run.json, then drop the backup: in that order, so a
    run killed at any point redoes only what is missing."""
    test = net.evaluate(splits.test, return_dict=True, verbose=0)
    net = _at_input_size(net, splits.info)
    best_path = os.path.join(run_dir, "best.keras")
    if os.path.exists(best_path):  # read and rewritten once: its input size, its thresholds
        best = load_model(best_path, compile=False)
        fixed = _at_input_size(best, splits.info)
        fixed = with_thresholds(fixed, splits.validation) if splits.info.multilabel else fixed
        if fixed is not best:
            save_model(fixed, best_path)
    if splits.info.multilabel:
        net, scored = multilabel_test(net, splits.validation, splits.test, test["loss"])
        scored["thresholds_split"] = splits.validation_split
    else:
        scored = {"test": {"top1": test["top1"], "top5": test["top5"], "loss": test["loss"]}}
    save_model(net, os.path.join(run_dir, "model.keras"))
    plot_history(os.path.join(run_dir, "history.csv"),
                 os.path.join(run_dir, "training_curves.png"),
                 metric=monitored_metric(splits.info.multilabel)[len("val_"):])
    result.update(scored, history=history_rows(os.path.join(run_dir, "history.csv")))
    if export:
        from keras_resnet import export as export_lib

        result["export"] = export_lib.export_run(
            os.path.join(run_dir, "model.keras"), os.path.join(run_dir, "export"),
            dataset=splits.info.name, data_dir=data_dir, version=1,
        )
    write_json(os.path.join(run_dir, "run.json"), result)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    return result


def train(
    model="resnet20",
    dataset="digits",
    *,
    run_dir=None,
    epochs=None,
    batch_size=None,
    recipe=None,
    recipe_overrides=None,
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
    export=True,
    verbose="auto",
    task="auto",
):
    """Train a ResNet with the paper's recipe and callbacks; everything lands in ``run_dir``.

    Args:
        model: a name ("resnet20", "resnet50", ...), a ``.keras`` path or a ``keras.Model``.
        dataset: "digits", a tensorflow-datasets name or an image-folder path.
        run_dir: output directory (default ``runs/MODEL-DATASET``): ``model.keras`` (final),
            ``best.keras``, ``history.csv``, ``training_curves.png``, ``logs/`` (TensorBoard),
            ``run.json``, ``export/`` and, while training, ``backup/``.
        epochs: planned epochs in total (a resumed run ends at the same number); default
            from ``RUN_DEFAULTS`` for the dataset.
        batch_size: global batch, split over the strategy's replicas; default from
            ``RUN_DEFAULTS``.
        recipe: "paper" (the default: "cifar" or "imagenet" by the model's family),
            "cifar", "imagenet", "torchvision_v2", "rsb_a1", "rsb_a2", "rsb_a3"
            (``keras_resnet.recipes``), or a Recipe.
        recipe_overrides: ``{field: value}`` changing the recipe's fields (``--set``).
        learning_rate: overrides the recipe's (otherwise scaled linearly with the batch).
        weight_decay: replaces the model's weight decay (default: the model's own, 1e-4 for
            models built here).
        strategy: see ``keras_resnet.distribute.get_strategy``.
        precision: "auto", "float32", "mixed", "mixed_float16" or "mixed_bfloat16".
        jit_compile, steps_per_execution: passed to ``model.compile``.
        fast_path: "auto" precision, XLA and steps per execution take the measured fast
            settings of this device (``keras_resnet.devices.FAST_PATH``); False takes
            Keras' defaults instead.
        resume: continue from ``run_dir/backup`` when a killed run left one there.
        data_dir, download: tensorflow-datasets options.
        seed: seeds weights, shuffling and augmentation.
        model_options: extra keyword options for the model constructor.
        export: write a SavedModel and a float TFLite file to ``run_dir/export`` at the end.
        task: "auto" (the dataset's: multi-label for labels files and "digit_canvases"),
            "single_label" or "multilabel". A multi-label run trains a sigmoid head with
            binary cross-entropy, watches ``val_pr_auc``, then chooses each class's threshold
            on validation data (best F1), carried by the saved models, and reports the test
            split's mAP and F1 at those thresholds.

    Returns:
        dict: the run's configuration and final test metrics (also written to run.json).

    Example:
        >>> result = train("resnet8", "digits", run_dir="runs/r8", epochs=1, export=False, verbose=0)
        >>> result["epochs"]
        1
    """
    defaults = RUN_DEFAULTS.get(dataset, OTHER_RUN_DEFAULTS)
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    _check_epochs(epochs)
    model_name = model if isinstance(model, str) else getattr(model, "name", "model")
    family = "imagenet" if _family(model_name) == "imagenet" else "cifar"
    recipe = get_recipe(recipe or "paper", recipe_overrides, family=family)
    run = _set_up_run(run_dir or _default_run_dir(model_name, dataset), resume=resume, seed=seed,
                      precision=precision, fast_path=fast_path, family=family,
                      strategy=strategy, batch_size=batch_size)
    run_dir, global_batch = run.run_dir, run.global_batch
    splits, test_examples = _load_splits(dataset, global_batch, data_dir=data_dir,
                                         download=download, seed=seed, task=task, recipe=recipe)
    multilabel = splits.info.multilabel
    # The training dataset drops its last partial batch.
    steps_per_epoch = splits.info.num_examples // global_batch if splits.info.num_examples else None
    with run.strategy.scope():
        net = _build_model(model, splits.info, dict(model_options or {}), recipe)
        compile_model(net, recipe, global_batch, learning_rate=learning_rate,
                      weight_decay=weight_decay, jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution, fast_path=fast_path,
                      total_steps=steps_per_epoch * epochs if steps_per_epoch else None)
    # §4.2's warm-up waits for a training error below 80%: a single-label measure.
    callbacks = paper_callbacks(
        run_dir, recipe, total_iterations=steps_per_epoch * epochs if steps_per_epoch else None,
        warmup=model_name in ("resnet110", "resnet1202") and not multilabel, keep_backup=True,
        monitor=monitored_metric(multilabel),
    )
    done = _resume(net, run_dir, epochs)
    initial_learning_rate = learning_rate or peak_learning_rate(recipe, global_batch)
    started = time.time()
    if done < epochs:
        net.fit(splits.train, validation_data=splits.validation, epochs=epochs,
                initial_epoch=done, callbacks=callbacks, verbose=verbose, shuffle=False)
    result = run.record(
        model=model_name, splits=splits, epochs=epochs, started=started, resumed=done,
        test_examples=test_examples, jit_compile=net.jit_compile,
        steps_per_execution=net.steps_per_execution, fast_path=fast_path,
        recipe=dataclasses.asdict(recipe), learning_rate=initial_learning_rate,
        task="multilabel" if multilabel else "single_label",
    )
    return _finish(net, run_dir, splits, result, export, data_dir)


# ---------------------------------------------------------------------------------------------
# Fine-tuning: a pretrained backbone, a new classifier, two phases.

UNFREEZE = ("conv2", "conv3", "conv4", "conv5", "all", "none")
FINE_TUNE_DEFAULTS = {"epochs": 15, "head_epochs": 5, "batch_size": 32}


def _pretrained_backbone(model, weights, options):
    """The pretrained network up to its global average pooling, with its preprocessing:
    ``weights`` a weight set name or file for model ``model``, or a ``.keras`` classifier."""
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".keras"):
        source = load_model(weights, compile=False)
        try:
            pooled = source.get_layer("avg_pool").output
        except ValueError:
            raise InvalidArgument(
                f"`weights` model {os.fspath(weights)!r} has no 'avg_pool' layer to put a new "
                "classifier on; use a model built by keras_resnet."
            ) from None
        return keras.Model(source.inputs, pooled, name=source.name)
    if not isinstance(model, str):
        raise InvalidArgument(f"`model` must be a model name with `weights={weights!r}`; got {model!r}.")
    return get_model(model, weights=weights, include_top=False, pooling="avg", **options)


def _classifier(backbone, info, activation="softmax"):
    """``backbone`` with a new ``predictions`` layer for the dataset's classes (softmax, or
    sigmoid for multi-label data and binary cross-entropy; the paper's weight decay on its
    kernel), carrying the dataset's class names (and thresholds)."""
    outputs = keras.layers.Dense(
        info.num_classes, activation=activation,
        name="predictions", kernel_regularizer=keras.regularizers.L2(5e-5), dtype="float32",
    )(backbone.output)
    net = keras.Model(backbone.inputs, outputs, name=backbone.name)
    preprocessing = preprocessing_lib.of(net).with_class_names(
        info.class_names, info.preprocessing.thresholds)
    return preprocessing_lib.attach(net, preprocessing)


def _stage_number(name):
    """2 .. 5 for the layers of conv2_x .. conv5_x (Table 1), 1 for the stem, None for the head."""
    if name == "predictions":
        return None
    stem = name.split("_")[0]
    if stem.startswith("conv") and stem[4:].isdigit():
        return int(stem[4:])
    return 1


def _check_unfreeze(net, unfreeze):
    if unfreeze not in UNFREEZE:
        raise InvalidArgument(f"`unfreeze` must be one of {', '.join(UNFREEZE)}; got {unfreeze!r}.")
    if unfreeze in ("all", "none"):
        return
    stages = sorted({_stage_number(layer.name) for layer in net.layers} - {None, 1})
    if int(unfreeze[4:]) not in stages:
        raise InvalidArgument(
            f"`unfreeze` {unfreeze!r} names no stage of {net.name!r}; its stages are "
            f"{', '.join(f'conv{s}' for s in stages)} (or 'all')."
        )


def set_trainable(net, unfreeze, train_bn=False):
    """Phase 1 (``unfreeze=None``): only the classifier trains. Phase 2: also the stages from
    ``unfreeze`` on ("conv4": conv4_x and conv5_x; "all": every layer). Frozen layers, and every
    BatchNormalization unless ``train_bn``, run in inference mode: moving statistics stay.

    Example:
        >>> model = keras_resnet.ResNet20()
        >>> set_trainable(model, "conv4")
        >>> [layer.name for layer in model.layers if layer.trainable]
        ['conv4_block1', 'conv4_block2', 'conv4_block3', 'predictions']
    """
    first = {"all": 1, "none": None, None: None}.get(unfreeze)
    if first is None and unfreeze not in (None, "none"):
        first = int(unfreeze[4:])
    for layer in net.layers:
        stage = _stage_number(layer.name)
        layer.trainable = stage is None or (first is not None and stage >= first)
        if layer.trainable and not train_bn:
            for sublayer in _batch_norms(layer):
                sublayer.trainable = False


def _batch_norms(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    return list(getattr(layer, "batch_norms", []))


def _phase(net, unfreeze, train_bn, learning_rate, settings):
    set_trainable(net, unfreeze, train_bn)
    compile_model(net, learning_rate=learning_rate, **settings)


def fine_tune(
    model="resnet50",
    dataset="digits",
    *,
    weights="imagenet",
    run_dir=None,
    epochs=None,
    head_epochs=None,
    unfreeze="conv4",
    train_bn=False,
    batch_size=None,
    learning_rate=None,
    fine_tune_learning_rate=None,
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
    export=True,
    verbose="auto",
    task="auto",
    recipe="imagenet",
    recipe_overrides=None,
):
    """Fine-tune pretrained weights on a dataset; the run directory is ``train``'s.

    Phase 1 (``head_epochs``): a new classifier for the dataset's classes trains on the frozen
    backbone (BatchNormalization in inference mode). Phase 2 (the rest of ``epochs``): the
    backbone trains too from stage ``unfreeze`` on, at ``fine_tune_learning_rate``. Images
    follow the weights' own preprocessing (size, resize, mean and std), so there is nothing to
    restate. SGD with momentum 0.9 and the paper's weight decay, ReduceLROnPlateau (factor 0.1).

    Args:
        model: a model name ("resnet50", ...); ignored when ``weights`` is a ``.keras`` file.
        dataset: an image folder, "digits" or a tensorflow-datasets name.
        weights: "imagenet", a weight set name (``keras_resnet.weights.available(model)``), a
            weights file, or a ``.keras`` classifier trained with this package.
        epochs, head_epochs: epochs in all, and of phase 1 (default 15 and 5).
        unfreeze: "conv2" .. "conv5", "all", or "none" (phase 1 only).
        train_bn: let phase 2 update BatchNormalization (default: frozen, as in phase 1).
        learning_rate: phase 1's; default the ImageNet recipe's 0.1 per 256 images.
        fine_tune_learning_rate: phase 2's; default ``learning_rate / 10``.
        recipe, recipe_overrides: the training recipe of both phases (default the paper's
            ImageNet one; ``keras_resnet.recipes``); FixRes' smaller training crops need a
            model of any input size and are refused here (``train_size_fraction=1``).
        Other arguments: as :func:`train`.

    Returns:
        dict: the run's configuration and final test metrics (also in run.json).

    Example:
        >>> fine_tune("resnet18", "path/to/images", run_dir="runs/pets", unfreeze="conv4")  # doctest: +SKIP
    """
    epochs = FINE_TUNE_DEFAULTS["epochs"] if epochs is None else epochs
    head_epochs = FINE_TUNE_DEFAULTS["head_epochs"] if head_epochs is None else head_epochs
    batch_size = FINE_TUNE_DEFAULTS["batch_size"] if batch_size is None else batch_size
    _check_epochs(epochs)
    if isinstance(head_epochs, bool) or not isinstance(head_epochs, int) or not 0 < head_epochs <= epochs:
        raise InvalidArgument(f"`head_epochs` must be an integer in 1..epochs ({epochs}); got {head_epochs!r}.")
    recipe = get_recipe(recipe, recipe_overrides, family="imagenet")
    if recipe.train_size_fraction != 1.0:
        raise InvalidArgument(
            f"Recipe {recipe.name!r} trains at {recipe.train_size_fraction:.3g} of the input size "
            "(FixRes); a pretrained backbone keeps its input size. Pass "
            "recipe_overrides={'train_size_fraction': 1} (--set train_size_fraction=1)."
        )
    options = dict(model_options or {})
    if recipe.drop_path_rate:
        if os.fspath(weights).endswith(".keras"):
            raise InvalidArgument(f"Recipe {recipe.name!r} drops paths, which a built .keras "
                                  "model cannot take up; --set drop_path_rate=0.")
        options.setdefault("drop_path_rate", recipe.drop_path_rate)
    run = _set_up_run(run_dir or _default_run_dir(model, dataset, "-finetuned"), resume=resume,
                      seed=seed, precision=precision, fast_path=fast_path, family="imagenet",
                      strategy=strategy, batch_size=batch_size)
    run_dir, global_batch, strategy_object = run.run_dir, run.global_batch, run.strategy
    with strategy_object.scope():
        backbone = _pretrained_backbone(model, weights, options)
    splits, test_examples = _load_splits(
        dataset, global_batch, data_dir=data_dir, download=download, seed=seed,
        preprocessing=preprocessing_lib.of(backbone), task=task, recipe=recipe,
    )
    with strategy_object.scope():
        net = _classifier(backbone, splits.info, head_activation(recipe, splits.info.multilabel))
    _check_unfreeze(net, unfreeze)
    head_rate = learning_rate or peak_learning_rate(recipe, global_batch)
    tune_rate = fine_tune_learning_rate or head_rate / 10
    settings = dict(recipe=recipe, global_batch_size=global_batch, jit_compile=jit_compile,
                    steps_per_execution=steps_per_execution, fast_path=fast_path)
    steps_per_epoch = splits.info.num_examples // global_batch if splits.info.num_examples else None
    phases = [("head", None, head_rate, 0, head_epochs)]
    if unfreeze != "none" and epochs > head_epochs:
        phases.append(("backbone", unfreeze, tune_rate, head_epochs, epochs))
    started, resumed, best = time.time(), None, None
    for name, stage, rate, first, last in phases:
        # One backup folder a phase: its optimizer state fits that phase's trainable layers.
        backup = os.path.join(run_dir, "backup", name)
        with strategy_object.scope():
            _phase(net, stage, train_bn, rate,
                   {**settings, "total_steps": steps_per_epoch and steps_per_epoch * (last - first)})
        done = restore_backup(net, backup)
        if done:
            print(f"Resuming from the backup in {backup}: {done} of {epochs} epochs done.")
            resumed = resumed or done
        callbacks = paper_callbacks(run_dir, recipe, keep_backup=True, backup_dir=backup,
                                    monitor=monitored_metric(splits.info.multilabel))
        checkpoint = next(c for c in callbacks if isinstance(c, BestCheckpoint))
        checkpoint.best = best if checkpoint.best is None else checkpoint.best
        if done < last:
            net.fit(splits.train, validation_data=splits.validation, epochs=last,
                    initial_epoch=max(first, done), callbacks=callbacks, verbose=verbose,
                    shuffle=False)  # the tf.data pipeline shuffles
        best = checkpoint.best
    result = run.record(
        model=net.name, splits=splits, epochs=epochs, started=started, resumed=resumed,
        test_examples=test_examples, head_epochs=head_epochs, unfreeze=unfreeze,
        train_bn=train_bn, weights=os.fspath(weights), learning_rate=head_rate,
        fine_tune_learning_rate=tune_rate, recipe=dataclasses.asdict(recipe),
        task="multilabel" if splits.info.multilabel else "single_label",
    )
    return _finish(net, run_dir, splits, result, export, data_dir)
