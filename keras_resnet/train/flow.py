"""The train/fine-tune flow: one run is a list of phases over one network.

Plain training is one phase: the whole model, the recipe's learning rate. Fine-tuning is two:
phase 1 trains a new classifier on the frozen backbone (BatchNormalization in inference mode),
phase 2 unfreezes the backbone from a named stage at a lower learning rate. Each phase
compiles, restores its own backup (its optimizer state fits its trainable layers), and fits
from where the run is. Both write a run directory (``model.keras``, ``best.keras``,
``history.csv``, ``training_curves.png``, ``logs/``, ``run.json``, ``export/``), resume after a
kill from ``backup/``, and finish their saving and export on a rerun without training again
when they were killed after the last epoch.

Example:
    >>> result = run(RunConfig.from_options("resnet8", epochs=1, export=False))  # doctest: +SKIP
    >>> result["config"]["recipe"]["epochs"]  # doctest: +SKIP
    1
"""

import dataclasses
import os
import sys
import time

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet import tasks
from keras_resnet.errors import InvalidArgument
from keras_resnet.models import parse_model_name
from keras_resnet.recipes import get_recipe, peak_learning_rate
from keras_resnet.train import detection, segmentation
from keras_resnet.train.backup import restore_backup
from keras_resnet.train.build import (
    build_model,
    check_unfreeze,
    classifier,
    pretrained_backbone,
    set_trainable,
)
from keras_resnet.train.callbacks import BestCheckpoint, EpochLine, paper_callbacks
from keras_resnet.train.compile import compile_model
from keras_resnet.train.config import DEFAULT_HEAD, RunConfig, resolve
from keras_resnet.train.precision import choose_for_run
from keras_resnet.train.results import finish
from keras_resnet.train.setup import load_splits, set_up_run

# The CIFAR nets that warm up (§4.2: ResNet-110 at 0.01 until the training error is < 80%).
WARMUP_MODELS = ("resnet110", "resnet1202")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of a run: epochs ``first_epoch`` to ``last_epoch`` (of the run's) at one
    learning rate, backed up to its own ``backup_dir``.

    Fields:
        unfreeze: None trains the model as built (plain training); "none" the classifier
            alone; "conv2" .. "conv5" or "all" also the backbone from that stage on
            (:func:`~keras_resnet.train.build.set_trainable`, with ``train_bn``).
        warmup: add §4.2's warm-up.
        scale_schedule: scale the CIFAR step schedule's milestones to this phase's iterations.

    Example:
        >>> Phase("head", 0, 5, 0.0125, "runs/x/backup/head", unfreeze="none").last_epoch
        5
    """

    name: str
    first_epoch: int
    last_epoch: int
    learning_rate: float
    backup_dir: str
    unfreeze: str = None
    train_bn: bool = False
    warmup: bool = False
    scale_schedule: bool = False


def fit_verbosity(verbose, stream=None):
    """``model.fit``'s verbosity for a run's ``verbose``: "auto" is 1, Keras' progress bar, on
    a terminal or in a notebook, and 2, a line per epoch (the run prints it), otherwise (a log
    file, a pipe: Keras' bar would write a frame per update there, with carriage returns and
    backspaces). 0, 1 and 2 are kept.

    Args:
        verbose: "auto", 0, 1 or 2.
        stream: what the run prints to (default ``sys.stdout``).

    Returns:
        0, 1 or 2.

    Example:
        >>> import io
        >>> fit_verbosity("auto", io.StringIO()), fit_verbosity(1, io.StringIO())
        (2, 1)
    """
    if verbose != "auto":
        return verbose
    stream = sys.stdout if stream is None else stream
    notebook = type(stream).__module__.startswith("ipykernel")  # its OutStream redraws the bar
    return 1 if notebook or getattr(stream, "isatty", lambda: False)() else 2


def _fit_output(verbose):
    """``(verbose for model.fit, extra callbacks)``: "auto" off a terminal prints through
    :class:`EpochLine`, one line an epoch (Keras' own 2 adds an "Epoch k/N" line before each)."""
    chosen = fit_verbosity(verbose)
    return (0, [EpochLine()]) if verbose == "auto" and chosen == 2 else (chosen, [])


def compile_for_run(net, config, global_batch, recipe, learning_rate, total_steps):
    """Compile ``net`` as a phase of a run of ``config`` does: the recipe's optimizer at
    ``learning_rate``, the run's weight decay and hardware settings, the loss and metrics of
    the model's task (a detector's box loss by its version). Call it in the strategy's scope.

    Example:
        >>> compile_for_run(net, config, 32, get_recipe("cifar"), 0.0125, 1440)  # doctest: +SKIP
    """
    hardware, task = config.hardware, tasks.task_of(net)
    loss = detection.loss(net) if task.detection else None  # version 2: the GIoU box loss
    compile_model(net, recipe, global_batch, learning_rate=learning_rate,
                  weight_decay=config.recipe.weight_decay, jit_compile=hardware.jit_compile,
                  steps_per_execution=hardware.steps_per_execution,
                  fast_path=hardware.fast_path, task=task, total_steps=total_steps, loss=loss)


def run_phases(net, phases, *, config, setup, splits, recipe):
    """Train ``net`` through ``phases``, resuming each from its backup.

    Args:
        net: the network (built in ``setup.strategy``'s scope).
        phases: :class:`Phase` objects, in order.
        config: the resolved :class:`~keras_resnet.train.config.RunConfig`.
        setup: the run's :class:`~keras_resnet.train.setup.RunSetup`.
        splits: the run's :class:`~keras_resnet.train.setup.Splits`.
        recipe: the run's Recipe.

    Returns:
        The epochs the first resumed backup covered (0: nothing resumed).

    Example:
        >>> run_phases(net, [Phase("train", 0, 2, 0.1, "r/backup")], config=config,
        ...            setup=setup, splits=splits, recipe=recipe)  # doctest: +SKIP
        0
    """
    epochs = config.recipe.epochs
    steps = splits.info.num_examples // setup.global_batch if splits.info.num_examples else None
    task = tasks.task_of(net)
    resumed, best = 0, None
    for phase in phases:
        iterations = steps * (phase.last_epoch - phase.first_epoch) if steps else None
        with setup.strategy.scope():
            if phase.unfreeze is not None:
                set_trainable(net, phase.unfreeze, phase.train_bn)
            compile_for_run(net, config, setup.global_batch, recipe, phase.learning_rate,
                            iterations)
        done = restore_backup(net, phase.backup_dir)
        if done:
            print(f"Resuming from the backup in {phase.backup_dir}: {done} of {epochs} epochs done.")
            resumed = resumed or done
        monitor = task.monitor if splits.validation is not None else task.metric
        if task.detection:  # its mAP needs every test image's detections: the loss instead
            monitor = detection.watched(splits.validation is not None)
        callbacks = paper_callbacks(
            setup.run_dir, recipe, total_iterations=iterations if phase.scale_schedule else None,
            warmup=phase.warmup, keep_backup=True, backup_dir=phase.backup_dir,
            monitor=segmentation.monitored(net, monitor), ema_steps=iterations)
        checkpoint = next(c for c in callbacks if isinstance(c, BestCheckpoint))
        checkpoint.best = best if checkpoint.best is None else checkpoint.best
        if done < phase.last_epoch:
            verbose, printer = _fit_output(config.output.verbose)
            net.fit(splits.train, validation_data=splits.validation, epochs=phase.last_epoch,
                    initial_epoch=max(phase.first_epoch, done), callbacks=callbacks + printer,
                    verbose=verbose,
                    shuffle=False)  # the tf.data pipeline shuffles
        best = checkpoint.best
    return resumed


def _family(model_name):
    try:
        return parse_model_name(model_name)[0]
    except ValueError:  # a .keras path or a model object: CIFAR recipe unless told
        return "cifar"


def _load_splits(config, setup, recipe, preprocessing=None):
    splits, test_examples = load_splits(
        config.data.dataset, setup.global_batch, data_dir=config.data.data_dir,
        download=config.data.download, seed=config.seed, preprocessing=preprocessing,
        task=config.task, recipe=recipe, validation=config.data.validation,
        validation_fraction=config.data.validation_fraction, image_size=config.data.image_size)
    if splits.validation is None and splits.info.multilabel:
        raise InvalidArgument(
            "`validation` 'none' does not go with a multi-label run: it chooses each class's "
            "threshold on validation images. Use validation 'auto'.")
    return splits, test_examples


def _with_weight_decay(recipe, config):
    """``recipe`` with the run's ``weight_decay`` (every phase compiles with it), so that
    run.json's recipe records the decay the run used."""
    decay = config.recipe.weight_decay
    return recipe if decay is None else dataclasses.replace(recipe, weight_decay=decay)


def _finish(net, config, setup, splits, result):
    result["config"] = config.to_dict()
    return finish(net, setup.run_dir, splits, result, config.output.export, config.data.data_dir)


@dataclasses.dataclass
class PreparedRun:
    """A run from scratch set up as :func:`train` sets it up, before it trains
    (:func:`prepare`).

    Fields:
        config: the resolved :class:`~keras_resnet.train.config.RunConfig`.
        recipe: its Recipe (the run's weight decay in it).
        setup: its :class:`~keras_resnet.train.setup.RunSetup` (run directory, strategy, batch).
        splits: its :class:`~keras_resnet.train.setup.Splits`, as ``trained`` takes them.
        test_examples: the test split's size.
        task: the model's ``keras_resnet.tasks.Task``.
        net: the model the run saves.
        trained: the model the run fits: ``net``, or a detector's raw outputs (layers shared).
        learning_rate: the rate the run starts at (the recipe's peak for the batch, or the
            config's ``learning_rate``).

    Example:
        >>> prepare(RunConfig.from_options("resnet8", epochs=1)).learning_rate  # doctest: +SKIP
        0.025
    """

    config: RunConfig
    recipe: object
    setup: object
    splits: object
    test_examples: int
    task: object
    net: object
    trained: object
    learning_rate: float


# The schedule length the candidates of a measured precision compile with (a cosine
# schedule needs one; it does not change a step's time).
MEASURED_SCHEDULE = 1000


def _fed(net, task, splits):
    """``(model to fit, splits)``: a detector trains on every anchor's raw outputs, a
    segmenter with an auxiliary head on both outputs."""
    if task.detection:
        return detection.for_training(net, splits)
    return net, segmentation.with_aux_targets(net, splits)


def prepare(config):
    """Set up a run from scratch as :func:`train` does, up to the training: the run directory,
    seed, precision, strategy, data, model and starting learning rate.

    Args:
        config: a :class:`~keras_resnet.train.config.RunConfig` without ``fine_tune``.

    Returns:
        A :class:`PreparedRun`.

    Example:
        >>> prepared = prepare(RunConfig.from_options("resnet8", epochs=1))  # doctest: +SKIP
    """
    config = resolve(detection.with_run_defaults(config))
    detection.check_config(config)
    segments = segmentation.is_segmentation(config)
    family = "imagenet" if segments or _family(config.model_name) == "imagenet" else "cifar"
    default_recipe = (segmentation.RECIPE if segments else
                      detection.RECIPE if detection.is_detection(config) else "paper")
    recipe = _with_weight_decay(get_recipe(config.recipe.recipe or default_recipe,
                                           config.recipe.recipe_overrides, family=family), config)
    setup = set_up_run(config, family)
    splits, test_examples = _load_splits(config, setup, recipe)
    task = tasks.for_recipe(splits.info.task_kind, splits.info.num_classes, recipe)
    segmentation.check_data(config, task)

    rate = config.recipe.learning_rate or peak_learning_rate(recipe, setup.global_batch)

    def build():
        return build_model(config.model, splits.info, dict(config.model_options), recipe, task,
                           head=config.head or DEFAULT_HEAD)

    def candidate():  # as the run trains it, on one batch of its data repeated
        model, fed = _fed(build(), task, splits)
        compile_for_run(model, config, setup.global_batch, recipe, rate, MEASURED_SCHEDULE)
        return model, fed.train.take(1).cache().repeat()

    choice = choose_for_run(setup, config, splits.info, candidate)
    if choice is not None and not choice.cached:
        # The timing read the training batches (a shuffle's next order, augmentation draws):
        # load them again, after the reseeding, as a run that timed nothing has them.
        splits, test_examples = _load_splits(config, setup, recipe)
    with setup.strategy.scope():
        net = build()
    trained, splits = _fed(net, task, splits)
    return PreparedRun(config, recipe, setup, splits, test_examples, task, net, trained, rate)


def training_data(prepared, seed):
    """The prepared run's training batches loaded again with data seed ``seed``: the same
    images and pipeline, in another order with other augmentation draws.

    Example:
        >>> batches = training_data(prepared, seed=1)  # doctest: +SKIP
    """
    config = dataclasses.replace(prepared.config, seed=seed)
    splits, _ = _load_splits(config, prepared.setup, prepared.recipe)
    return _fed(prepared.net, prepared.task, splits)[1].train


def train(config):
    """Train a ResNet from scratch as ``config`` says: one phase, the whole model.

    Args:
        config: a :class:`~keras_resnet.train.config.RunConfig` without ``fine_tune``.

    Returns:
        dict: the run's configuration and final test metrics (also written to run.json).

    Example:
        >>> train(RunConfig.from_options("resnet8", epochs=1, export=False))  # doctest: +SKIP
    """
    prepared = prepare(config)
    config, setup, task, net = prepared.config, prepared.setup, prepared.task, prepared.net
    rate = prepared.learning_rate
    # §4.2's warm-up waits for a training error below 80%: a single-label measure, and the
    # paper's recipe's (a cosine recipe warms up in its schedule, `warmup_epochs`).
    warmup = (config.model_name in WARMUP_MODELS and task.kind == "classification"
              and prepared.recipe.schedule != "cosine")
    phase = Phase("train", 0, config.recipe.epochs, rate, os.path.join(setup.run_dir, "backup"),
                  warmup=warmup,
                  scale_schedule=True)
    started = time.time()
    resumed = run_phases(prepared.trained, [phase], config=config, setup=setup,
                         splits=prepared.splits, recipe=prepared.recipe)
    result = setup.record(
        model=config.model_name, splits=prepared.splits, epochs=config.recipe.epochs,
        started=started, resumed=resumed, test_examples=prepared.test_examples,
        jit_compile=net.jit_compile, steps_per_execution=net.steps_per_execution,
        fast_path=config.hardware.fast_path, recipe=dataclasses.asdict(prepared.recipe),
        learning_rate=rate, task=segmentation.task_name(task),
        **({"head": config.head or DEFAULT_HEAD} if task.segmentation else {}),
        **(detection.record(net) if task.detection else {}),
    )
    return _finish(net, config, setup, prepared.splits, result)


def fine_tune_phases(config, run_dir, head_rate, tune_rate):
    """Fine-tuning's phases: the new head on the frozen backbone, then (unless ``unfreeze`` is
    "none" or no epochs are left) the backbone from stage ``unfreeze`` on at ``tune_rate``.

    Example:
        >>> config = resolve(RunConfig.from_options("resnet8", weights="imagenet", epochs=3, head_epochs=1))
        >>> [(p.name, p.first_epoch, p.last_epoch) for p in fine_tune_phases(config, "r", 0.1, 0.01)]
        [('head', 0, 1), ('backbone', 1, 3)]
    """
    tuned, epochs = config.fine_tune, config.recipe.epochs
    # One backup folder a phase: its optimizer state fits that phase's trainable layers.
    backup = os.path.join(run_dir, "backup")
    phases = [Phase("head", 0, tuned.head_epochs, head_rate, os.path.join(backup, "head"),
                    unfreeze="none", train_bn=tuned.train_bn)]
    if tuned.unfreeze != "none" and epochs > tuned.head_epochs:
        phases.append(Phase("backbone", tuned.head_epochs, epochs, tune_rate,
                            os.path.join(backup, "backbone"), unfreeze=tuned.unfreeze,
                            train_bn=tuned.train_bn))
    return phases


def _fine_tune_recipe(config):
    """The recipe of a fine-tuning run and the model options it adds (stochastic depth)."""
    recipe = _with_weight_decay(get_recipe(config.recipe.recipe or "imagenet",
                                           config.recipe.recipe_overrides, family="imagenet"), config)
    if recipe.train_size_fraction != 1.0:
        raise InvalidArgument(
            f"Recipe {recipe.name!r} trains at {recipe.train_size_fraction:.3g} of the input size "
            "(FixRes); a pretrained backbone keeps its input size. Pass "
            "recipe_overrides={'train_size_fraction': 1} (--set train_size_fraction=1)."
        )
    options = dict(config.model_options)
    if recipe.drop_path_rate:
        if config.fine_tune.weights.endswith(".keras"):
            raise InvalidArgument(f"Recipe {recipe.name!r} drops paths, which a built .keras "
                                  "model cannot take up; --set drop_path_rate=0.")
        options.setdefault("drop_path_rate", recipe.drop_path_rate)
    return recipe, options


def fine_tune(config):
    """Fine-tune pretrained weights as ``config`` says: the phases of :func:`fine_tune_phases`.

    Args:
        config: a :class:`~keras_resnet.train.config.RunConfig` with ``fine_tune``.

    Returns:
        dict: the run's configuration and final test metrics (also written to run.json).

    Example:
        >>> fine_tune(RunConfig.from_options("resnet18", "path/to/images", weights="imagenet"))  # doctest: +SKIP
    """
    config = resolve(config)
    detection.check_config(config)
    tuned = config.fine_tune
    recipe, options = _fine_tune_recipe(config)
    setup = set_up_run(config, "imagenet")
    with setup.strategy.scope():
        backbone = pretrained_backbone(config.model, tuned.weights, options)
    splits, test_examples = _load_splits(config, setup, recipe, preprocessing_lib.of(backbone))
    task = tasks.for_recipe(splits.info.task_kind, splits.info.num_classes, recipe)
    with setup.strategy.scope():
        net = classifier(backbone, splits.info, task)
    check_unfreeze(net, tuned.unfreeze)
    head_rate = config.recipe.learning_rate or peak_learning_rate(recipe, setup.global_batch)
    tune_rate = tuned.fine_tune_learning_rate or head_rate / 10
    started = time.time()
    resumed = run_phases(net, fine_tune_phases(config, setup.run_dir, head_rate, tune_rate),
                         config=config, setup=setup, splits=splits, recipe=recipe)
    result = setup.record(
        model=net.name, splits=splits, epochs=config.recipe.epochs, started=started,
        resumed=resumed, test_examples=test_examples, head_epochs=tuned.head_epochs,
        unfreeze=tuned.unfreeze, train_bn=tuned.train_bn, weights=tuned.weights,
        learning_rate=head_rate, fine_tune_learning_rate=tune_rate,
        recipe=dataclasses.asdict(recipe), task=segmentation.task_name(task),
    )
    return _finish(net, config, setup, splits, result)


def run(config):
    """Run ``config``: :func:`fine_tune` when it has a ``fine_tune`` part, else :func:`train`.

    Args:
        config: a :class:`~keras_resnet.train.config.RunConfig`.

    Returns:
        dict: the run's configuration and final test metrics (also written to run.json).

    Example:
        >>> run(RunConfig.from_options("resnet8", epochs=1, export=False))  # doctest: +SKIP
    """
    if not isinstance(config, RunConfig):
        raise InvalidArgument(f"`config` must be a RunConfig; got {type(config).__name__}.")
    return fine_tune(config) if config.fine_tune is not None else train(config)
