"""Hyperparameter search with keras-tuner: depth, width, shortcut option and the recipe's knobs.

:class:`SearchSpace` says what may vary, :class:`ResNetHyperModel` builds and compiles one
ResNet per trial with the package's recipe (SGD, momentum 0.9, the paper's L2 weight decay) and
trains it with the paper's plateau rule (ReduceLROnPlateau, factor 0.1, §3.4), and :func:`tune`
runs a whole search the way ``keras-resnet tune`` does: tuner project directory, results table
(CSV and Markdown, best first) and the best model as a ``.keras`` file that
``keras-resnet export`` accepts.

Example:
    >>> space = SearchSpace(cifar_depths=(20, 32), learning_rate=(0.02, 0.2))
    >>> result = tune("digits", "hyperband", output_dir="tuning/digits", search_space=space)  # doctest: +SKIP
    >>> result["best"]["val_top1"]  # doctest: +SKIP
"""

import csv
import dataclasses
import math
import os
import warnings

import keras

from keras_resnet import data, distribute
from keras_resnet.architectures import FAMILIES, architecture
from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.extras import require
from keras_resnet.models import SHORTCUT_OPTIONS, build_resnet
from keras_resnet.recipes import get_recipe
from keras_resnet.saving import atomic_path, save_model, write_text
from keras_resnet.train.callbacks import NaNError, StopOnNaN, StopOnSignal
from keras_resnet.train.compile import compile_model
from keras_resnet.train.replicas import AverageReplicaStatistics
from keras_resnet.train.schedules import reduce_on_plateau

keras_tuner = require("keras_tuner", "Hyperparameter search (keras_resnet.tuning)")

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVE = "val_top1"

# Trial bookkeeping that Hyperband adds to the hyperparameters; not part of the search space.
_HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


def _check_choices(name, values, check=None):
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    if not isinstance(values, tuple) or not values:
        raise InvalidArgument(f"`{name}` must be a non-empty list of choices; got {values!r}.")
    if len(set(values)) != len(values):
        raise InvalidArgument(f"`{name}` lists a value twice; got {values!r}.")
    for value in values:
        if check is not None:
            check(value)
    return values


def _check_range(name, bounds):
    """A (min, max) pair searched on a log scale: both positive, min <= max."""
    if (
        not isinstance(bounds, (list, tuple))
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds)
    ):
        raise InvalidArgument(f"`{name}` must be a (min, max) pair of numbers; got {bounds!r}.")
    low, high = bounds
    if not (low > 0 and math.isfinite(high)):
        raise InvalidArgument(f"`{name}` is searched on a log scale: min and max must be > 0; got {bounds!r}.")
    if low > high:
        raise InvalidArgument(f"`{name}` min must not exceed max; got min {low!r} > max {high!r}.")
    return (float(low), float(high))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a search may vary. Lists are choices; ``(min, max)`` pairs are log-scale ranges.

    Args:
        families: "cifar" (§4.2 nets, depth 6n+2) and/or "imagenet" (Table 1 nets).
        cifar_depths: CIFAR depths, 6n+2 (20, 32, 44, 56 are n = 3, 5, 7, 9).
        imagenet_depths: ImageNet depths among 18, 34, 50, 101, 152.
        shortcuts: §3.3 options "A", "B", "C".
        width_multipliers: channel multipliers (1.0 is the paper's width).
        zero_init_residual: False and/or True (zero gamma on each residual branch's last BN).
        learning_rate: (min, max) initial learning rate, log scale.
        weight_decay: (min, max) the paper's weight decay (L2 gradient coefficient), log scale.
        batch_sizes: global batch sizes (used when the hypermodel loads the data itself).

    Example:
        >>> SearchSpace(cifar_depths=(20, 56), shortcuts=("A",), batch_sizes=(64,)).cifar_depths
        (20, 56)
    """

    families: tuple = ("cifar",)
    cifar_depths: tuple = (20, 32, 44, 56)
    imagenet_depths: tuple = (18, 34, 50)
    shortcuts: tuple = ("A", "B")
    width_multipliers: tuple = (0.5, 1.0)
    zero_init_residual: tuple = (False, True)
    learning_rate: tuple = (0.01, 0.3)
    weight_decay: tuple = (1e-5, 1e-3)
    batch_sizes: tuple = (32, 64, 128)

    def __post_init__(self):
        def family(value):
            if value not in FAMILIES:
                raise InvalidArgument(f"`families` may hold {', '.join(FAMILIES)}; got {value!r}.")

        def depth_of(family_name):
            def check(value):
                try:
                    architecture(family_name, value)
                except ValueError as error:
                    raise InvalidArgument(f"`{family_name}_depths`: {error}") from None

            return check

        def shortcut(value):
            if value not in SHORTCUT_OPTIONS:
                raise InvalidArgument(f"`shortcuts` may hold {', '.join(SHORTCUT_OPTIONS)}; got {value!r}.")

        def width(value):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgument(f"`width_multipliers` must hold numbers > 0; got {value!r}.")

        def flag(value):
            if not isinstance(value, bool):
                raise InvalidArgument(f"`zero_init_residual` may hold False and True; got {value!r}.")

        def batch(value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"`batch_sizes` must hold positive integers; got {value!r}.")

        checked = {
            "families": _check_choices("families", self.families, family),
            "shortcuts": _check_choices("shortcuts", self.shortcuts, shortcut),
            "width_multipliers": _check_choices("width_multipliers", self.width_multipliers, width),
            "zero_init_residual": _check_choices("zero_init_residual", self.zero_init_residual, flag),
            "batch_sizes": _check_choices("batch_sizes", self.batch_sizes, batch),
            "learning_rate": _check_range("learning_rate", self.learning_rate),
            "weight_decay": _check_range("weight_decay", self.weight_decay),
        }
        # Depth lists matter only for the families searched.
        for name in ("cifar", "imagenet"):
            key = f"{name}_depths"
            values = getattr(self, key)
            checked[key] = _check_choices(key, values, depth_of(name)) if name in checked["families"] else tuple(values)
        for key, value in checked.items():
            object.__setattr__(self, key, value)


def _choice(hp, name, values):
    """A Choice, or a Fixed value when there is nothing to choose (keeps the table honest)."""
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    if all(isinstance(value, bool) for value in values):  # Choice would store 0 and 1
        return hp.Boolean(name)
    return hp.Choice(name, list(values))


def _log_range(hp, name, bounds):
    low, high = bounds
    return hp.Fixed(name, low) if low == high else hp.Float(name, low, high, sampling="log")


class ResNetHyperModel(keras_tuner.HyperModel):
    """Builds, compiles and trains one ResNet per trial from a :class:`SearchSpace`.

    Give either ``dataset`` (the hypermodel loads it with ``keras_resnet.data.load`` at each
    trial's batch size) or ``input_shape`` and ``classes`` (then pass data to ``search`` as to
    ``model.fit``; the batch size is searched only for in-memory arrays).

    Args:
        dataset: "digits", a tensorflow-datasets name or an image folder.
        input_shape, classes: the model's input and number of classes (default: the dataset's).
        search_space: a :class:`SearchSpace` (default: ``SearchSpace()``).
        recipe: "cifar" or "imagenet": momentum and the optimizer of the paper.
        plateau_patience: epochs without improvement of ``val_top1`` before dividing the
            learning rate by 10.
        seed, data_dir, download: data options.

    Example:
        >>> hypermodel = ResNetHyperModel("digits", search_space=SearchSpace(cifar_depths=(20,)))
        >>> tuner = make_tuner(hypermodel, "random", directory="tuning", max_trials=4)
        >>> tuner.search(epochs=10)  # doctest: +SKIP
    """

    def __init__(self, dataset=None, *, input_shape=None, classes=None, search_space=None,
                 recipe="cifar", plateau_patience=3, seed=0, data_dir=None, download=True):
        super().__init__(name="resnet")
        self.search_space = SearchSpace() if search_space is None else search_space
        if not isinstance(self.search_space, SearchSpace):
            raise InvalidType(f"`search_space` must be a SearchSpace; got {type(search_space).__name__}.")
        self.recipe = get_recipe(recipe)
        self.plateau_patience = plateau_patience
        self.dataset = dataset
        self.seed = seed
        self.data_dir = data_dir
        self.download = download
        self.info, self.holdout = None, None
        self._datasets = {}
        if dataset is not None:
            try:
                self._load("validation", self.search_space.batch_sizes[0], False)
            except data.MissingSplit:  # validation held out of the training split, never test
                self.holdout = data.Holdout()
            _, self.info = self._load("train", self.search_space.batch_sizes[0], True)
            input_shape = input_shape or tuple(self.info.image_shape)
            classes = classes or self.info.num_classes
        if input_shape is None or classes is None:
            raise InvalidArgument("Give `dataset`, or both `input_shape` and `classes`; got neither.")
        self.input_shape = tuple(input_shape)
        self.classes = classes

    def _load(self, split, batch_size, training):
        key = (split, batch_size)
        if key not in self._datasets:
            self._datasets[key] = data.load(
                self.dataset, split, batch_size, training=training, seed=self.seed,
                data_dir=self.data_dir, download=self.download,
                task="single_label",  # the search scores top-1: single-label classifiers
                holdout=self.holdout,
            )
        return self._datasets[key]

    def build(self, hp):
        """One model from the trial's hyperparameters, compiled with the recipe."""
        space = self.search_space
        family = _choice(hp, "family", space.families)
        with hp.conditional_scope("family", ["cifar"]):
            if family == "cifar":
                depth = _choice(hp, "cifar_depth", space.cifar_depths)
        with hp.conditional_scope("family", ["imagenet"]):
            if family == "imagenet":
                depth = _choice(hp, "imagenet_depth", space.imagenet_depths)
        model = build_resnet(
            architecture(family, depth),
            input_shape=self.input_shape,
            classes=self.classes,
            name=f"resnet{depth}",
            preprocessing=None if self.info is None else self.info.preprocessing,
            shortcut=_choice(hp, "shortcut", space.shortcuts),
            width_multiplier=_choice(hp, "width_multiplier", space.width_multipliers),
            zero_init_residual=_choice(hp, "zero_init_residual", space.zero_init_residual),
        )
        return compile_model(
            model, self.recipe,
            learning_rate=_log_range(hp, "learning_rate", space.learning_rate),
            weight_decay=_log_range(hp, "weight_decay", space.weight_decay),
        )

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        """Train with the paper's plateau rule; a diverged trial fails instead of scoring."""
        # First: the replicas share their batch-norm statistics before the tuner's checkpoint.
        callbacks = [AverageReplicaStatistics()] + list(callbacks or []) + [
            reduce_on_plateau(OBJECTIVE, self.plateau_patience),
            StopOnNaN(),
            StopOnSignal(),
        ]
        if self.dataset is not None and not args and "x" not in kwargs:
            batch_size = _choice(hp, "batch_size", self.search_space.batch_sizes)
            train, _ = self._load("train", batch_size, True)
            validation, _ = self._load("validation", batch_size, False)
            args, kwargs = (train,), {**kwargs, "validation_data": validation}
        elif args and hasattr(args[0], "shape") and "batch_size" not in kwargs:
            kwargs["batch_size"] = _choice(hp, "batch_size", self.search_space.batch_sizes)
        try:
            return model.fit(*args, callbacks=callbacks, **kwargs)
        except NaNError as error:
            raise keras_tuner.errors.FailedTrialError(str(error)) from None


def _check_search(tuner, max_trials, max_epochs):
    if tuner not in TUNERS:
        raise InvalidArgument(f"`tuner` must be one of {', '.join(TUNERS)}; got {tuner!r}.")
    for name, value in (("max_trials", max_trials), ("max_epochs", max_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"`{name}` must be a positive integer; got {value!r}.")


def make_tuner(hypermodel, tuner="hyperband", *, directory="tuning", project_name="search",
               max_trials=10, max_epochs=10, hyperband_factor=3, seed=0, overwrite=False,
               strategy=None):
    """A keras-tuner tuner maximising ``val_top1`` over ``hypermodel``.

    Args:
        hypermodel: a :class:`ResNetHyperModel`.
        tuner: "random" (RandomSearch), "hyperband" (Hyperband) or "bayesian"
            (BayesianOptimization).
        directory, project_name: the tuner's project directory; with ``overwrite=False`` an
            existing project is reloaded and the search continues where it stopped.
        max_trials: at most this many trials (Hyperband also stops when its brackets are done).
        max_epochs: Hyperband's largest budget per trial (other tuners: pass ``epochs`` to
            ``search``).
        hyperband_factor: Hyperband's reduction factor between rounds (2 suits small budgets).
        seed: the tuner's random seed.
        strategy: a ``tf.distribute.Strategy`` or a name for
            ``keras_resnet.distribute.get_strategy``; models are built in its scope.

    Returns:
        A ``keras_tuner.Tuner``.

    Example:
        >>> type(make_tuner(ResNetHyperModel("digits"), "bayesian", directory="tuning", max_trials=8)).__name__
        'BayesianOptimization'
    """
    _check_search(tuner, max_trials, max_epochs)
    if isinstance(strategy, str):
        strategy = distribute.get_strategy(strategy)
    common = dict(
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        directory=directory, project_name=project_name, seed=seed, overwrite=overwrite,
        distribution_strategy=strategy,
    )
    if tuner == "hyperband":
        search = keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, factor=hyperband_factor,
                                       **common)
        # HyperbandOracle takes no max_trials; the base oracle honours the attribute.
        search.oracle.max_trials = max_trials
        return search
    if tuner == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)


def results_table(tuner, epochs=None):
    """One row per trial, best first: rank, trial, score, status, epochs and hyperparameters.

    ``epochs`` is what each trial was trained for when the tuner does not record it
    (Hyperband does).

    Example:
        >>> write_results(results_table(tuner, epochs=10), "results.csv", "results.md")  # doctest: +SKIP
    """
    objective = tuner.oracle.objective
    trials = list(tuner.oracle.trials.values())
    scored = [t for t in trials if t.score is not None]
    scored.sort(key=lambda t: t.score, reverse=objective.direction == "max")
    unscored = sorted((t for t in trials if t.score is None), key=lambda t: t.trial_id)
    rows = []
    for rank, trial in enumerate(scored + unscored, start=1):
        values = dict(trial.hyperparameters.values)
        trained = values.get("tuner/epochs", epochs)
        row = {
            "rank": rank if trial.score is not None else "",
            "trial": trial.trial_id,
            OBJECTIVE: "" if trial.score is None else round(float(trial.score), 6),
            "status": trial.status,
            "epochs": "" if trained is None else trained,
            "best_epoch": "" if trial.score is None else int(trial.best_step) + 1,
        }
        row.update({k: v for k, v in values.items() if k not in _HYPERBAND_KEYS})
        rows.append(row)
    return rows


def _columns(rows):
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_results(rows, csv_path, markdown_path):
    """Write ``results_table`` rows as CSV and as a Markdown table."""
    columns = _columns(rows)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |" for row in rows]
    write_text(markdown_path, "\n".join(lines) + "\n")


def tune(dataset="digits", tuner="hyperband", *, output_dir=None, max_trials=10, max_epochs=10,
         hyperband_factor=3, search_space=None, recipe="cifar", seed=0, strategy=None, overwrite=False,
         data_dir=None, download=True, verbose=1):
    """Run a search end to end, as ``keras-resnet tune`` does.

    Args:
        dataset: "digits", a tensorflow-datasets name or an image folder.
        tuner: "random", "hyperband" or "bayesian".
        output_dir: default ``tuning/DATASET-TUNER``; holds ``tuner/`` (keras-tuner's project,
            reloaded unless ``overwrite``), ``results.csv``, ``results.md`` and ``best.keras``.
        max_trials, max_epochs: the budget (epochs per trial for random and bayesian; the
            largest Hyperband budget).
        hyperband_factor: Hyperband's reduction factor.
        search_space: a :class:`SearchSpace`.
        recipe, seed, strategy, data_dir, download: as in ``keras_resnet.runs.train``.
        overwrite: start the search afresh instead of continuing it.

    Returns:
        dict with ``output_dir``, ``results`` (rows, best first), ``best`` (its row) and paths.

    Example:
        >>> tune("digits", "random", max_trials=3, max_epochs=5)["best"]  # doctest: +SKIP
    """
    _check_search(tuner, max_trials, max_epochs)  # before any data is loaded
    if output_dir is None:
        output_dir = os.path.join("tuning", f"{os.path.basename(str(dataset).rstrip('/'))}-{tuner}")
    keras.utils.set_random_seed(seed)
    hypermodel = ResNetHyperModel(dataset, search_space=search_space, recipe=recipe, seed=seed,
                                  data_dir=data_dir, download=download)
    search = make_tuner(hypermodel, tuner, directory=output_dir, project_name="tuner",
                        max_trials=max_trials, max_epochs=max_epochs,
                        hyperband_factor=hyperband_factor, seed=seed,
                        overwrite=overwrite, strategy=strategy)
    with warnings.catch_warnings():
        # Trial checkpoints hold optimizer slots; keras-tuner restores only the weights from
        # them (Hyperband's continued trials, the best model), which Keras warns about.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        search.search(epochs=max_epochs, verbose=verbose)
        rows = results_table(search, epochs=None if tuner == "hyperband" else max_epochs)
        if not rows or rows[0]["rank"] == "":
            raise RuntimeError(f"No trial of the search in {output_dir} completed; see the log above.")
        best = search.get_best_models(1)[0]
    paths = {
        "results_csv": os.path.join(output_dir, "results.csv"),
        "results_md": os.path.join(output_dir, "results.md"),
        "best_model": os.path.join(output_dir, "best.keras"),
    }
    write_results(rows, paths["results_csv"], paths["results_md"])
    # A built optimizer saves its slots, so loading best.keras matches them without warnings.
    best.optimizer.build(best.trainable_variables)
    save_model(best, paths["best_model"])  # carries the data's preprocessing, for export
    return {"output_dir": output_dir, "results": rows, "best": rows[0], **paths}
