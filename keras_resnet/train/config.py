"""One run configuration: what ``train`` and ``fine_tune`` run, as small frozen dataclasses.

A :class:`RunConfig` holds the model, the task and the seed, and groups the rest. Each field
is documented and checked once, here, and a bad value raises ``InvalidArgument`` naming the
field, the value and what is allowed. ``RunConfig.to_dict()`` is what ``run.json`` records
under ``config``; ``RunConfig.from_dict`` reads it back, so a run folder says what ran.

Example:
    >>> config = RunConfig.from_options("resnet8", "digits", epochs=2)
    >>> RunConfig.from_dict(config.to_dict()) == config
    True
"""

import dataclasses
import os

import keras

from keras_resnet.builder import MIN_INPUT_SIZE
from keras_resnet.devices import PRECISIONS, STRATEGIES
from keras_resnet.errors import InvalidArgument
from keras_resnet.multilabel import TASKS
from keras_resnet.recipes import RECIPES, Recipe, get_recipe

# Epochs and global batch of a run when not given, by dataset. CIFAR follows §4.2 (64k
# iterations at batch 128 = 164 epochs of 50k images; 45k/5k split: 182); ImageNet §3.4 (60e4
# iterations at batch 256 = 120 epochs). Digits (1,293 training images) is sized to finish in
# under 5 minutes on 2 CPU cores.
RUN_DEFAULTS = {
    "digits": {"epochs": 40, "batch_size": 32},
    # The multi-label canvases (3,000 training images): about 6 minutes on 2 CPU cores.
    "digit_canvases": {"epochs": 30, "batch_size": 64},
    "digit_scenes": {"epochs": 12, "batch_size": 16},  # 2,000 training scenes of 64x64
    "cifar10": {"epochs": 164, "batch_size": 128},
    "cifar100": {"epochs": 164, "batch_size": 128},
    "imagenet2012": {"epochs": 120, "batch_size": 256},
}
OTHER_RUN_DEFAULTS = {"epochs": 30, "batch_size": 128}
FINE_TUNE_DEFAULTS = {"epochs": 15, "head_epochs": 5, "batch_size": 32}
UNFREEZE = ("conv2", "conv3", "conv4", "conv5", "all", "none")  # Table 1: conv2_x ... conv5_x
RECIPE_NAMES = ("paper", *RECIPES)
HEADS, DEFAULT_HEAD = ("fcn", "deeplabv3", "deeplabv3plus"), "deeplabv3"  # keras_resnet.heads
VERBOSITY = ("auto", 0, 1, 2)
VALIDATION = ("auto", "none")


def _fail(field, value, allowed):
    raise InvalidArgument(f"`{field}` must be {allowed}; got {value!r}.")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number(field, value, allowed, within, optional=False):  # within: the number's test
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (optional and value is None) and not (number and within(value)):
        _fail(field, value, allowed + (" or None" if optional else ""))


def _check_int(field, value, optional=False, low=1):
    if not (optional and value is None) and not (_is_int(value) and value >= low):
        allowed = "a positive integer" if low == 1 else f"an integer >= {low}"
        _fail(field, value, allowed + (" or None" if optional else ""))


def _check_bool(field, value):
    if not isinstance(value, bool):
        _fail(field, value, "True or False")


def _check_choice(field, value, choices):
    if isinstance(value, bool) or value not in choices:
        _fail(field, value, f"one of {', '.join(map(str, choices))}")


def _path(instance, field):
    """Store a path-like field as text, so the config serializes and compares as given."""
    value = getattr(instance, field)
    if isinstance(value, os.PathLike):
        object.__setattr__(instance, field, os.fspath(value))
    elif value is not None and not isinstance(value, str):
        _fail(field, value, "a path (text)")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from.

    Fields:
        dataset: "digits", a tensorflow-datasets name or an image-folder path.
        data_dir: the tensorflow-datasets data directory (None: its default).
        download: let tensorflow-datasets download a dataset it does not find.
        validation: "auto": the data set's own validation split, else ``validation_fraction``
            of each class held out of the training split (the same images every run; CIFAR:
            the paper's 45k/5k, §4.2); never the test split. "none": train on the whole
            training split without validation (a final run, once its settings are chosen):
            the plateau schedule and ``best.keras`` then follow the training metric.
        validation_fraction: the share of each class held out (``keras_resnet.data.holdout``).
        image_size: the model's input side, >= 32; None: the data set's default (``data.load``:
            32 CIFAR style, 224 ImageNet style; segmentation: its own). Not when fine-tuning.

    Example:
        >>> DataConfig("digits").validation
        'auto'
    """

    dataset: str = "digits"
    data_dir: str = None
    download: bool = True
    validation: str = "auto"
    validation_fraction: float = 0.1  # keras_resnet.data.holdout.DEFAULT_FRACTION
    image_size: int = None

    def __post_init__(self):
        _path(self, "dataset")
        if not self.dataset:
            _fail("dataset", self.dataset, "a dataset name or a folder")
        _path(self, "data_dir")
        _check_bool("download", self.download)
        _check_choice("validation", self.validation, VALIDATION)
        _check_number("validation_fraction", self.validation_fraction, "a number in (0, 1)",
                      lambda x: 0 < x < 1)
        _check_int("image_size", self.image_size, optional=True, low=MIN_INPUT_SIZE)


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """How long the run trains and how it optimises.

    Fields:
        recipe: "paper" (the paper's recipe of the model's family: "cifar" or "imagenet"),
            "cifar", "imagenet", "torchvision_v2", "rsb_a1", "rsb_a2", "rsb_a3"
            (``keras_resnet.recipes``), or a Recipe; None: "paper" (fine-tuning: "imagenet").
        recipe_overrides: ``{field: value}`` changing the recipe's fields (``--set``).
        epochs: planned epochs in total (a resumed run ends at the same number); None: the
            dataset's (``RUN_DEFAULTS``; fine-tuning ``FINE_TUNE_DEFAULTS``).
        batch_size: the global batch, split over the strategy's replicas; None: as epochs.
        learning_rate: overrides the recipe's peak (otherwise scaled with the batch); when
            fine-tuning, phase 1's.
        weight_decay: replaces the model's weight decay (None: the model's own, 1e-4 for
            models built here; the paper's L2 gradient coefficient).

    Example:
        >>> RecipeConfig(recipe="cifar", epochs=3).batch_size is None
        True
    """

    recipe: object = None
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    epochs: int = None
    batch_size: int = None
    learning_rate: float = None
    weight_decay: float = None

    def __post_init__(self):
        if not (self.recipe is None or isinstance(self.recipe, Recipe)):
            _check_choice("recipe", self.recipe, RECIPE_NAMES)
        overrides = {} if self.recipe_overrides is None else self.recipe_overrides
        if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
            _fail("recipe_overrides", self.recipe_overrides, "a dict of recipe field names to values")
        object.__setattr__(self, "recipe_overrides", dict(overrides))
        get_recipe(self.recipe or "paper", self.recipe_overrides)  # names and values of --set
        _check_int("epochs", self.epochs, optional=True)
        _check_int("batch_size", self.batch_size, optional=True)
        _check_number("learning_rate", self.learning_rate, "a number > 0", lambda x: x > 0, True)
        _check_number("weight_decay", self.weight_decay, "a number >= 0", lambda x: x >= 0, True)


@dataclasses.dataclass(frozen=True)
class HardwareConfig:
    """Where the run trains and how fast.

    Fields:
        strategy: "auto", "cpu", "gpu", "mirrored", "multi_worker" or "tpu"
            (``keras_resnet.distribute.get_strategy``).
        precision: "auto", "float32", "mixed", "mixed_float16" or "mixed_bfloat16".
        jit_compile: XLA: True, False or "auto" (passed to ``model.compile``).
        steps_per_execution: a positive integer or "auto" (passed to ``model.compile``).
        fast_path: "auto" precision, XLA and steps per execution take the measured fast
            settings of this device (``keras_resnet.devices.FAST_PATH``); False takes Keras'
            defaults instead.

    Example:
        >>> HardwareConfig(precision="float32").strategy
        'auto'
    """

    strategy: str = "auto"
    precision: str = "auto"
    jit_compile: object = "auto"
    steps_per_execution: object = "auto"
    fast_path: bool = True

    def __post_init__(self):
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        if self.jit_compile not in ("auto", True, False):
            _fail("jit_compile", self.jit_compile, "True, False or 'auto'")
        if self.steps_per_execution != "auto":
            _check_int("steps_per_execution", self.steps_per_execution)
        _check_bool("fast_path", self.fast_path)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """What the run writes and prints.

    Fields:
        run_dir: the run directory (None: ``runs/MODEL-DATASET``, ``-finetuned`` when
            fine-tuning): ``model.keras``, ``best.keras``, ``history.csv``, ``run.json``,
            ``training_curves.png``, ``logs/``, ``export/`` and, while training, ``backup/``.
        resume: continue from ``run_dir/backup`` when a killed run left one there.
        export: write a SavedModel and a float TFLite file to ``run_dir/export`` at the end.
        verbose: ``model.fit``'s 0, 1 or 2; "auto": 1 on a terminal, else 2 (a line an epoch).

    Example:
        >>> OutputConfig("runs/r8", export=False).resume
        True
    """

    run_dir: str = None
    resume: bool = True
    export: bool = True
    verbose: object = "auto"

    def __post_init__(self):
        _path(self, "run_dir")
        _check_bool("resume", self.resume)
        _check_bool("export", self.export)
        _check_choice("verbose", self.verbose, VERBOSITY)


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Fine-tuning: pretrained weights, then two phases (see ``keras_resnet.train.flow``).

    Fields:
        weights: "imagenet", a weight set name (``keras_resnet.weights.available(model)``),
            a weights file, or a ``.keras`` classifier trained with this package.
        head_epochs: epochs of phase 1, the new classifier on the frozen backbone (None: 5).
        unfreeze: the stage phase 2 trains the backbone from: "conv2" .. "conv5", "all", or
            "none" (phase 1 only).
        train_bn: let phase 2 update BatchNormalization (default: frozen, as in phase 1).
        fine_tune_learning_rate: phase 2's learning rate (None: phase 1's / 10).

    Example:
        >>> FineTuneConfig("imagenet", unfreeze="conv5").head_epochs is None
        True
    """

    weights: str = "imagenet"
    head_epochs: int = None
    unfreeze: str = "conv4"
    train_bn: bool = False
    fine_tune_learning_rate: float = None

    def __post_init__(self):
        _path(self, "weights")
        if not self.weights:
            _fail("weights", self.weights, "a weight set name or a file")
        _check_int("head_epochs", self.head_epochs, optional=True)
        _check_choice("unfreeze", self.unfreeze, UNFREEZE)
        _check_bool("train_bn", self.train_bn)
        _check_number("fine_tune_learning_rate", self.fine_tune_learning_rate, "a number > 0",
                      lambda x: x > 0, True)


GROUPS = {"data": DataConfig, "recipe": RecipeConfig, "hardware": HardwareConfig,
          "output": OutputConfig, "fine_tune": FineTuneConfig}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training or fine-tuning run does, grouped.

    Fields:
        model: a model name ("resnet20", "resnet50", ...), a ``.keras`` path or a
            ``keras.Model`` (recorded by its name); when fine-tuning, the name the weights
            belong to (ignored for a ``.keras`` classifier).
        task: "auto" (the dataset's: multi-label for labels files and "digit_canvases"),
            "single_label", "multilabel" or "segmentation". A multi-label run trains a sigmoid
            head with binary cross-entropy, watches ``val_pr_auc``, then chooses each class's
            threshold on validation data (best F1), carried by the saved models, and reports
            the test split's mAP and F1 at those thresholds. Segmentation: ``head`` ("fcn",
            "deeplabv3" by default, "deeplabv3plus") on the backbone ``model``, mIoU.
        seed: seeds weights, shuffling and augmentation.
        model_options: extra keyword options for the model constructor.
        data, recipe, hardware, output: :class:`DataConfig`, :class:`RecipeConfig`,
            :class:`HardwareConfig`, :class:`OutputConfig`.
        fine_tune: a :class:`FineTuneConfig` to fine-tune pretrained weights; None trains
            from scratch.

    Example:
        >>> RunConfig("resnet8", recipe=RecipeConfig(epochs=1)).recipe.epochs
        1
    """

    model: object = "resnet20"
    task: str = "auto"
    head: str = None
    seed: int = 0
    model_options: dict = dataclasses.field(default_factory=dict)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    recipe: RecipeConfig = dataclasses.field(default_factory=RecipeConfig)
    hardware: HardwareConfig = dataclasses.field(default_factory=HardwareConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    fine_tune: FineTuneConfig = None

    def __post_init__(self):
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if not (isinstance(self.model, (str, keras.Model)) and self.model != ""):
            _fail("model", self.model, "a model name, a .keras path or a keras.Model")
        _check_choice("task", self.task, TASKS)
        if self.head is not None:
            _check_choice("head", self.head, HEADS)
            if self.task not in ("auto", "segmentation") or self.fine_tune is not None:
                _fail("head", self.head, f"None for a {self.task} task or fine-tuning")
        if not _is_int(self.seed):
            _fail("seed", self.seed, "an integer")
        options = {} if self.model_options is None else self.model_options
        if not isinstance(options, dict):
            _fail("model_options", self.model_options, "a dict of constructor options or None")
        object.__setattr__(self, "model_options", dict(options))
        for name, kind in GROUPS.items():
            value = getattr(self, name)
            if not isinstance(value, kind) and not (name == "fine_tune" and value is None):
                _fail(name, value, f"a {kind.__name__}")
        if self.fine_tune is not None and self.data.image_size is not None:
            _fail("image_size", self.data.image_size, "None with `weights` (their own size)")

    @property
    def model_name(self):
        """The model's name: the name given, or a model object's ``name``."""
        return self.model if isinstance(self.model, str) else getattr(self.model, "name", "model")

    @classmethod
    def from_options(cls, model="resnet20", dataset="digits", **options):
        """A config from the flat keyword arguments of ``runs.train`` and ``runs.fine_tune``.

        Args:
            model, dataset: as :class:`RunConfig` and :class:`DataConfig`.
            **options: any field of the groups by its own name (``epochs``, ``precision``,
                ``run_dir``, ...); ``weights`` or another :class:`FineTuneConfig` field makes
                it a fine-tuning run.

        Returns:
            The :class:`RunConfig`.

        Example:
            >>> RunConfig.from_options("resnet8", epochs=3, precision="float32").hardware.precision
            'float32'
        """
        groups = {name: {} for name in GROUPS}
        top = {}
        owners = {f.name: name for name, kind in GROUPS.items() for f in dataclasses.fields(kind)}
        for key, value in {"dataset": dataset, **options}.items():
            if key in owners:
                groups[owners[key]][key] = value
            elif key in ("task", "head", "seed", "model_options"):
                top[key] = value
            else:
                raise InvalidArgument(f"Unknown run option {key!r}; the options are the fields of "
                                      f"{', '.join(kind.__name__ for kind in GROUPS.values())}.")
        tuned = groups.pop("fine_tune")
        return cls(model, **top, **{name: GROUPS[name](**fields) for name, fields in groups.items()},
                   fine_tune=FineTuneConfig(**tuned) if tuned else None)

    def to_dict(self):
        """The config as plain JSON data (``run.json``'s ``config``).

        Example:
            >>> RunConfig("resnet8").to_dict()["hardware"]["precision"]
            'auto'
        """
        out = {"model": self.model_name, "task": self.task, "head": self.head, "seed": self.seed,
               "model_options": dict(self.model_options)}
        for name in GROUPS:
            group = getattr(self, name)
            out[name] = None if group is None else {
                f.name: getattr(group, f.name) for f in dataclasses.fields(group)}
        if isinstance(self.recipe.recipe, Recipe):
            out["recipe"]["recipe"] = dataclasses.asdict(self.recipe.recipe)
        out["recipe"]["recipe_overrides"] = dict(self.recipe.recipe_overrides)
        return out

    @classmethod
    def from_dict(cls, record):
        """The config :meth:`to_dict` wrote (a model object comes back as its name).

        Example:
            >>> RunConfig.from_dict(RunConfig("resnet8").to_dict()).model
            'resnet8'
        """
        groups = {}
        for name, kind in GROUPS.items():
            if record.get(name) is None:
                groups[name] = None if name == "fine_tune" else kind()
                continue
            fields = dict(record[name])  # a field it lacks (an older run's): the default
            if name == "recipe" and isinstance(fields.get("recipe"), dict):
                fields["recipe"] = Recipe(**{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in fields["recipe"].items()})
            groups[name] = kind(**fields)
        return cls(record.get("model", "resnet20"), task=record.get("task", "auto"),
                   head=record.get("head"), seed=record.get("seed", 0),
                   model_options=record.get("model_options"), **groups)


def default_run_dir(config):
    """``runs/MODEL-DATASET`` (``-finetuned`` when fine-tuning).

    Example:
        >>> default_run_dir(RunConfig("resnet8"))
        'runs/resnet8-digits'
    """
    model_stem = os.path.basename(str(config.model_name)).removesuffix(".keras")
    dataset = os.path.basename(str(config.data.dataset).rstrip("/"))
    suffix = "-finetuned" if config.fine_tune is not None else ""
    return os.path.join("runs", f"{model_stem}-{dataset}{suffix}")


def resolve(config):
    """``config`` with its defaults filled in: epochs, batch size, phase 1's epochs, run_dir.

    Returns:
        The :class:`RunConfig` that runs, as ``run.json`` records it.

    Example:
        >>> resolve(RunConfig("resnet8")).recipe.epochs
        40
    """
    tuned = config.fine_tune
    defaults = (FINE_TUNE_DEFAULTS if tuned is not None
                else RUN_DEFAULTS.get(config.data.dataset, OTHER_RUN_DEFAULTS))
    recipe = config.recipe
    epochs = defaults["epochs"] if recipe.epochs is None else recipe.epochs
    batch_size = defaults["batch_size"] if recipe.batch_size is None else recipe.batch_size
    recipe = dataclasses.replace(recipe, epochs=epochs, batch_size=batch_size)
    if tuned is not None:
        head_epochs = defaults["head_epochs"] if tuned.head_epochs is None else tuned.head_epochs
        if head_epochs > epochs:
            raise InvalidArgument(f"`head_epochs` must be an integer in 1..epochs ({epochs}); "
                                  f"got {head_epochs!r}.")
        tuned = dataclasses.replace(tuned, head_epochs=head_epochs)
    output = config.output
    if output.run_dir is None:
        output = dataclasses.replace(output, run_dir=default_run_dir(config))
    return dataclasses.replace(config, recipe=recipe, fine_tune=tuned, output=output)
