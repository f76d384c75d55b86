"""Training recipes as data: the paper's two (§3.4, §4.2) and the modern ones that took the same
ResNet-50 from 76.1% to about 80% ImageNet top-1.

- ``"cifar"`` and ``"imagenet"`` (``"paper"`` picks one by the model's family): SGD with
  momentum 0.9, the paper's L2 weight decay 1e-4 on kernels, the step or plateau schedule.
- ``"torchvision_v2"``: torchvision's "new training recipe" for ResNet50_Weights.IMAGENET1K_V2
  (80.858%): the command of the PyTorch blog post "How to Train State-Of-The-Art Models Using
  TorchVision's Latest Primitives" (2021-11-18) with ``references/classification/train.py``'s
  defaults of that time (vision commit 4bf6c6e4) for the flags it leaves out.
- ``"rsb_a1"``, ``"rsb_a2"``, ``"rsb_a3"``: Wightman, Touvron and Jégou 2021, "ResNet strikes
  back" (arXiv 2110.00476), Table 1 (80.4%, 79.8%, 78.1%), with timm's ``train.py`` defaults
  where the table is silent.
- ``"torchvision_segmentation"``, ``"torchvision_detection"``: torchvision's references' SGD.

Each field of :class:`Recipe` says what it is and where its value comes from (``SOURCES``).
A recipe is a plain frozen dataclass: ``dataclasses.replace`` (or :func:`get_recipe` with
``overrides``) changes any field, and ``dataclasses.asdict`` records it (``run.json``).

Lengths (epochs, warm-up, the EMA's horizon) are the published ImageNet ones; a run of other
length keeps their fractions of the run. Keras and NumPy only.

Example:
    >>> get_recipe("torchvision_v2", {"label_smoothing": 0.05}).label_smoothing
    0.05
"""

import dataclasses

import keras

from keras_resnet.errors import InvalidArgument
from keras_resnet.optimizers import Lamb, WarmupCosine
from keras_resnet.recipe_sources import PUBLISHED_TOP1, SOURCES  # noqa: F401  (the recipes' sources)

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012's training set: the recipes' EMA horizons
# Iterations of one epoch of COCO train2017 (117,266 images with boxes) at batch 16: the
# unit of the detection recipe's lengths (only their fractions of the run matter).
COCO_ITERATIONS = 7_330


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe; the defaults are the paper's (§3.4 / §4.2).

    Optimisation:
        base_learning_rate, base_batch_size: the peak learning rate at that global batch.
        learning_rate_scaling: "linear" (Goyal et al. 2017: the rate times the batch ratio)
            or "sqrt" (timm's rule for LAMB: times its square root) from ``base_batch_size``
            to the run's batch.
        optimizer: "sgd" (with ``momentum``), "lamb" (timm's ``Lamb``:
            :class:`keras_resnet.optimizers.Lamb`, global gradient norm clipped to 1) or
            "adam" (Keras' ``Adam``, Kingma & Ba 2015: betas 0.9 / 0.999, epsilon 1e-7).
        weight_decay, weight_decay_style: "l2", a coupled L2 term whose gradient is
            ``weight_decay * w`` (the paper's; PyTorch SGD's ``weight_decay``), put on the
            kernels as Keras regularizers; or "decoupled", the optimizer's own
            ``weight_decay``: for LAMB timm's, an L2 term added to the Adam step inside the
            trust ratio (not Keras' decoupled decay); for SGD Keras' decoupled decay.
        decay_norm, decay_bias: whether BatchNormalization's gamma/beta and biases decay
            (LAMB: both or neither, as timm's ``weight_decay_exclude_1d``).
        schedule: "step" (``milestones`` of ``total_iterations``, §4.2; after the linear
            warm-up below when ``warmup_epochs`` is set, torchvision's detection), "plateau" (§3.4,
            ReduceLROnPlateau after ``plateau_patience`` epochs), "cosine" (to 0, after a
            linear warm-up of ``warmup_epochs`` from ``warmup_start_factor`` of the peak;
            :class:`keras_resnet.optimizers.WarmupCosine`, stepped per iteration) or "poly"
            (``peak * (1 - step / steps) ** 0.9`` per iteration, to 0: torchvision's
            segmentation ``PolynomialLR``; Keras' ``PolynomialDecay``).
        warmup_prefix: the cosine runs over the steps after the warm-up (torchvision's
            ``LinearLR`` then ``CosineAnnealingLR``) or, False, over the whole run, warm-up
            included (timm's ``CosineLRScheduler`` default ``warmup_prefix=False``).
        epochs: the published length on ImageNet.

    Loss:
        loss: "cross_entropy" (softmax head) or "binary_cross_entropy" (a sigmoid per class,
            RSB's, with one-hot or mixed targets).
        label_smoothing: targets ``(1 - s) * y + s / classes``.

    Data:
        crop: "paper" (§3.4 scale augmentation / §4.2 padding and crop) or "random_resized"
            (Inception-style random-resized crop, scale 0.08-1, aspect ratio 3/4-4/3).
        auto_augment: None, "trivial_augment" (torchvision's TrivialAugmentWide: one of 14
            ops, at one of 31 magnitudes) or "rand_augment" (timm's rand-mM-mstd0.5-inc1:
            ``rand_augment_ops`` of 15 ops, each applied with probability 0.5 at a magnitude
            from N(M, 0.5), M = 10 * ``rand_augment_magnitude``); PIL's ops, written here.
        mixup_alpha, cutmix_alpha: as timm's Mixup(mode="batch"): one Beta(alpha, alpha)
            ratio per batch, CutMix's weighed by its box; one of the two per batch, equally
            likely (or the one that is on).
        random_erasing: the probability of Keras' ``RandomErasing`` per image.
        repeated_augmentation: each image this many times per epoch (1: off), the epoch
            keeping its length.
        train_size_fraction: FixRes: training crops at this fraction of the evaluation size.
        eval_resize_fraction: evaluation resizes the shorter side to this times the crop.

    Model and averaging:
        drop_path_rate: stochastic depth of the last block (linear in depth).
        ema, ema_decay, ema_every: an exponential moving average of all the weights
            (BatchNormalization's statistics too), updated every ``ema_every`` steps, copying
            during the warm-up, with ``ema_decay`` adjusted as torchvision's train.py does for
            the published batch and length (:func:`ema_momentum`); what validation, the
            checkpoints and export use (``keras_resnet.train.ema.ModelEMA``).
    """

    name: str
    base_learning_rate: float = 0.1
    base_batch_size: int = 256
    learning_rate_scaling: str = "linear"
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_style: str = "l2"
    decay_norm: bool = False
    decay_bias: bool = False
    schedule: str = "plateau"
    milestones: tuple = ()
    total_iterations: int = 600_000
    plateau_patience: int = 5
    epochs: int = 120
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 1.0
    warmup_prefix: bool = True
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    crop: str = "paper"
    auto_augment: object = None
    rand_augment_ops: int = 2
    rand_augment_magnitude: float = 0.5
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    random_erasing: float = 0.0
    repeated_augmentation: int = 1
    train_size_fraction: float = 1.0
    eval_resize_fraction: float = 256 / 224
    drop_path_rate: float = 0.0
    ema: bool = False
    ema_decay: float = 0.0
    ema_every: int = 1

    @property
    def modern(self):
        """True when the recipe needs more than the paper's machinery (one-hot targets, a
        schedule object, EMA, augmentation layers)."""
        return self.schedule == "cosine" or self.mixes or self.loss != "cross_entropy" or any((
            self.label_smoothing, self.auto_augment, self.random_erasing, self.ema,
            self.crop != "paper", self.repeated_augmentation != 1,
            self.train_size_fraction != 1.0, self.optimizer == "lamb",
        ))

    @property
    def mixes(self):
        return bool(self.mixup_alpha or self.cutmix_alpha)


_TORCHVISION_V2 = Recipe(
    "torchvision_v2", base_learning_rate=0.5, base_batch_size=1024, weight_decay=2e-5,
    decay_bias=True, schedule="cosine", epochs=600, warmup_epochs=5, warmup_start_factor=0.01,
    label_smoothing=0.1, crop="random_resized", auto_augment="trivial_augment",
    mixup_alpha=0.2, cutmix_alpha=1.0, random_erasing=0.1, repeated_augmentation=4,
    train_size_fraction=176 / 224, eval_resize_fraction=232 / 224, ema=True,
    ema_decay=0.99998, ema_every=32,
)


def _rsb(name, epochs, learning_rate, weight_decay, label_smoothing, drop_path_rate, repeats,
         magnitude, mixup_alpha, train_size):
    return Recipe(
        name, base_learning_rate=learning_rate, base_batch_size=2048,
        learning_rate_scaling="sqrt", optimizer="lamb", momentum=0.0,
        weight_decay=weight_decay, weight_decay_style="decoupled", schedule="cosine",
        epochs=epochs, warmup_epochs=5, warmup_start_factor=1e-5 / learning_rate,
        warmup_prefix=False,
        loss="binary_cross_entropy", label_smoothing=label_smoothing, crop="random_resized",
        auto_augment="rand_augment", rand_augment_ops=2, rand_augment_magnitude=magnitude / 10,
        mixup_alpha=mixup_alpha, cutmix_alpha=1.0, repeated_augmentation=repeats,
        train_size_fraction=train_size / 224, eval_resize_fraction=1 / 0.95,
        drop_path_rate=drop_path_rate,
    )


RECIPES = {
    # §4.2: 0.1 at batch 128, /10 at 32k and 48k, stop at 64k.
    "cifar": Recipe("cifar", 0.1, 128, schedule="step", milestones=(32_000, 48_000),
                    total_iterations=64_000, plateau_patience=10, epochs=164),
    # §3.4: 0.1 at batch 256, /10 when the error plateaus, up to 60e4 iterations.
    "imagenet": Recipe("imagenet", 0.1, 256, schedule="plateau", total_iterations=600_000,
                       plateau_patience=5, epochs=120),
    "torchvision_v2": _TORCHVISION_V2,
    #              epochs  lr    wd    smooth  drop  RA  RandAug  mixup  train size
    "rsb_a1": _rsb("rsb_a1", 600, 5e-3, 0.01, 0.1, 0.05, 3, 7, 0.2, 224),
    "rsb_a2": _rsb("rsb_a2", 300, 5e-3, 0.02, 0.0, 0.05, 3, 7, 0.1, 224),
    "rsb_a3": _rsb("rsb_a3", 100, 8e-3, 0.02, 0.0, 0.0, 1, 6, 0.1, 160),
    # torchvision's segmentation references: SGD 0.02 at batch 32 (8 GPUs x 4), momentum
    # 0.9, coupled decay 1e-4 on every parameter, the polynomial schedule, 30 epochs.
    "torchvision_segmentation": Recipe(
        "torchvision_segmentation", base_learning_rate=0.02, base_batch_size=32,
        weight_decay=1e-4, decay_norm=True, decay_bias=True, schedule="poly", epochs=30),
    # torchvision's detection reference for RetinaNet: SGD 0.01 at batch 16 (8 GPUs x 2),
    # momentum 0.9, coupled decay 1e-4 on every parameter, x0.1 at epochs 16 and 22 of 26,
    # a linear warm-up from 0.001x over 1000 iterations (see _TV_DETECTION).
    "torchvision_detection": Recipe(
        "torchvision_detection", base_learning_rate=0.01, base_batch_size=16,
        weight_decay=1e-4, decay_norm=True, decay_bias=True, schedule="step",
        milestones=(16 * COCO_ITERATIONS, 22 * COCO_ITERATIONS),
        total_iterations=26 * COCO_ITERATIONS, plateau_patience=26, epochs=26,
        warmup_epochs=1000 / COCO_ITERATIONS, warmup_start_factor=0.001),
    # A detector trained from scratch (no pretrained backbone): torchvision's schedule above
    # with Adam at 1e-3 per 16 images and no weight decay (see _DETECTION_FROM_SCRATCH).
    "detection_from_scratch": Recipe(
        "detection_from_scratch", base_learning_rate=1e-3, base_batch_size=16,
        learning_rate_scaling="sqrt", optimizer="adam", momentum=0.0, weight_decay=0.0,
        schedule="step", milestones=(16 * COCO_ITERATIONS, 22 * COCO_ITERATIONS),
        total_iterations=26 * COCO_ITERATIONS, plateau_patience=26, epochs=26,
        warmup_epochs=1000 / COCO_ITERATIONS, warmup_start_factor=0.001),
}
PAPER = ("cifar", "imagenet")

_CHOICES = {
    "learning_rate_scaling": ("linear", "sqrt"), "optimizer": ("sgd", "lamb", "adam"),
    "weight_decay_style": ("l2", "decoupled"), "schedule": ("step", "plateau", "cosine", "poly"),
    "loss": ("cross_entropy", "binary_cross_entropy"), "crop": ("paper", "random_resized"),
    "auto_augment": (None, "trivial_augment", "rand_augment"),
}
_FRACTIONS = ("label_smoothing", "random_erasing", "drop_path_rate", "rand_augment_magnitude",
              "ema_decay", "warmup_start_factor", "momentum")


def _check(recipe):
    for field, allowed in _CHOICES.items():
        if getattr(recipe, field) not in allowed:
            raise InvalidArgument(f"Recipe field `{field}` must be one of "
                                  f"{', '.join(map(repr, allowed))}; got {getattr(recipe, field)!r}.")
    for field in _FRACTIONS:
        value = getattr(recipe, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidArgument(f"Recipe field `{field}` must be a number in [0, 1]; got {value!r}.")
    for field in ("base_learning_rate", "weight_decay", "warmup_epochs", "mixup_alpha",
                  "cutmix_alpha", "train_size_fraction"):
        value = getattr(recipe, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InvalidArgument(f"Recipe field `{field}` must be a number >= 0; got {value!r}.")
    for field in ("base_batch_size", "epochs", "repeated_augmentation", "ema_every",
                  "rand_augment_ops", "plateau_patience"):
        value = getattr(recipe, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"Recipe field `{field}` must be a positive integer; got {value!r}.")
    if not 0 < recipe.train_size_fraction <= 1:
        raise InvalidArgument("Recipe field `train_size_fraction` must be in (0, 1]; got "
                              f"{recipe.train_size_fraction!r}.")
    if recipe.schedule not in ("cosine", "step") and recipe.warmup_epochs:
        raise InvalidArgument("`warmup_epochs` goes with schedule 'cosine' or 'step'; got "
                              f"schedule={recipe.schedule!r}.")
    if recipe.ema and not 0 < recipe.ema_decay < 1:
        raise InvalidArgument(f"`ema=True` needs an `ema_decay` in (0, 1); got {recipe.ema_decay!r}.")
    return recipe


def _parse_value(field, text, current):
    """``--set field=text``: the text as the field's type."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise InvalidArgument(f"`{field}` takes true or false; got {text!r}.")
        return text.lower() == "true"
    if field in _CHOICES:
        return None if text.lower() in ("none", "") else text
    if isinstance(current, tuple):
        return tuple(int(v) for v in text.split(",") if v.strip())
    try:
        return int(text) if isinstance(current, int) else float(text)
    except ValueError:
        raise InvalidArgument(f"`{field}` takes a number; got {text!r}.") from None


def parse_overrides(items):
    """``["label_smoothing=0.05", "ema=false"]`` (``--set``) -> ``{field: text}``.

    Example:
        >>> parse_overrides(["label_smoothing=0.05"])
        {'label_smoothing': '0.05'}
    """
    overrides = {}
    for item in items or ():
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise InvalidArgument(f"`--set` takes FIELD=VALUE; got {item!r}.")
        overrides[field.strip()] = value.strip()
    return overrides


def get_recipe(recipe, overrides=None, family="cifar"):
    """A :class:`Recipe` by name (or a Recipe), with ``overrides`` of its fields.

    Args:
        recipe: "paper" (the paper's recipe of ``family``: "cifar" or "imagenet"),
            "cifar", "imagenet", "torchvision_v2", "rsb_a1", "rsb_a2", "rsb_a3", or a Recipe.
        overrides: ``{field: value}``; a value may be the text of ``--set`` (parsed to the
            field's type).
        family: the model's family, for "paper".

    Returns:
        The recipe, checked.

    Example:
        >>> get_recipe("paper", family="imagenet").name
        'imagenet'
    """
    if recipe == "paper":
        recipe = "imagenet" if family == "imagenet" else "cifar"
    if not isinstance(recipe, Recipe):
        if recipe not in RECIPES:
            raise InvalidArgument(
                f"`recipe` must be one of paper, {', '.join(RECIPES)}; got {recipe!r}."
            )
        recipe = RECIPES[recipe]
    changes = {}
    fields = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    for field, value in (overrides or {}).items():
        if field not in fields:
            raise InvalidArgument(
                f"Recipe field {field!r} does not exist; the fields are {', '.join(sorted(fields))}."
            )
        current = getattr(recipe, field)
        changes[field] = _parse_value(field, value, current) if isinstance(value, str) else value
    return _check(dataclasses.replace(recipe, **changes))


def peak_learning_rate(recipe, global_batch_size):
    """The recipe's peak learning rate at ``global_batch_size`` (linear or square-root rule).

    Example:
        >>> peak_learning_rate(get_recipe("torchvision_v2"), 256)
        0.125
    """
    ratio = global_batch_size / recipe.base_batch_size
    return recipe.base_learning_rate * (ratio if recipe.learning_rate_scaling == "linear" else ratio ** 0.5)


def warmup_steps(recipe, total_steps):
    """The steps of the learning rate's warm-up in a run of ``total_steps``: the recipe's
    ``warmup_epochs`` as the same fraction of the run.

    Example:
        >>> warmup_steps(get_recipe("torchvision_v2"), 1200)
        10
    """
    return int(round(total_steps * recipe.warmup_epochs / recipe.epochs))


def ema_momentum(recipe, total_steps):
    """The EMA's decay per update (one every ``ema_every`` steps) in a run of ``total_steps``.

    torchvision's train.py updates every ``ema_every`` steps with decay
    ``1 - (1 - ema_decay) * batch * ema_every / epochs`` (at least 0), so the average spans
    ``1 / ((1 - ema_decay) * N)`` of the run, ``N`` the training images (3.9% for ImageNet
    and 0.99998). The rule kept here: the same share of any run, that is
    ``1 - (1 - ema_decay) * N * ema_every / total_steps`` with ImageNet's ``N`` (ImageNet's
    ``total_steps = epochs * N / batch`` gives torchvision's value back).

    Example:
        >>> round(ema_momentum(get_recipe("torchvision_v2"), 100_000), 4)
        0.9918
    """
    share = (1.0 - recipe.ema_decay) * IMAGENET_TRAIN_IMAGES * recipe.ema_every
    return max(0.0, 1.0 - share / total_steps)


def norm_and_bias_variables(model):
    """The BatchNormalization gammas and betas and the biases of ``model``: what modern
    recipes keep out of weight decay."""
    return [v for v in model.trainable_variables
            if v.path.rsplit("/", 1)[-1] in ("gamma", "beta", "bias")]


def learning_rate_schedule(recipe, peak, total_steps):
    """The recipe's learning rate: ``peak`` for the step and plateau schedules (callbacks
    change it), or :class:`~keras_resnet.optimizers.WarmupCosine` per step over
    ``total_steps``: a linear warm-up from ``warmup_start_factor * peak`` over
    :func:`warmup_steps`, then a cosine to 0 (over the rest with ``warmup_prefix``, as
    torchvision; over the whole run without, as timm).

    Example:
        >>> schedule = learning_rate_schedule(get_recipe("torchvision_v2"), 0.5, 1200)
        >>> float(schedule(10)), float(schedule(1200))
        (0.5, 0.0)
    """
    recipe = get_recipe(recipe)
    if recipe.schedule in ("step", "plateau"):
        return peak
    if total_steps is None:
        raise InvalidArgument(f"Recipe {recipe.name!r} (a {recipe.schedule} schedule) needs "
                              "`total_steps`.")
    if recipe.schedule == "poly":  # torchvision's PolynomialLR(power=0.9), stepped per iteration
        return keras.optimizers.schedules.PolynomialDecay(peak, total_steps, 0.0, power=0.9)
    return WarmupCosine(peak, total_steps, warmup_steps(recipe, total_steps),
                        peak * recipe.warmup_start_factor, recipe.warmup_prefix)


def make_optimizer(model, recipe, learning_rate, *, momentum=None):
    """The recipe's optimizer for ``model``: SGD (decoupled weight decay off BN and biases
    unless the recipe decays them), timm's LAMB (:class:`~keras_resnet.optimizers.Lamb`,
    its decay off the 1-D variables unless the recipe decays both) or Keras' Adam. The EMA is a callback
    (``keras_resnet.train.ema.ModelEMA``), not the optimizer's.

    Example:
        >>> type(make_optimizer(None, get_recipe("rsb_a3"), 0.008)).__name__
        'Lamb'
    """
    recipe = get_recipe(recipe)
    decay = recipe.weight_decay if recipe.weight_decay_style == "decoupled" else 0
    if recipe.optimizer == "lamb":
        if recipe.decay_norm != recipe.decay_bias:
            raise InvalidArgument(
                "LAMB decays the 1-D variables (BatchNormalization's and biases) all or none: "
                f"`decay_norm` and `decay_bias` must be equal; got {recipe.decay_norm!r} and "
                f"{recipe.decay_bias!r}.")
        return Lamb(learning_rate, weight_decay=decay, decay_1d=recipe.decay_norm)
    if recipe.optimizer == "adam":
        if decay:
            raise InvalidArgument(
                "Adam takes its weight decay as L2 terms (`weight_decay_style` 'l2'); got "
                f"'decoupled' with weight_decay={recipe.weight_decay!r}.")
        return keras.optimizers.Adam(learning_rate)
    optimizer = keras.optimizers.SGD(
        learning_rate, momentum=recipe.momentum if momentum is None else momentum,
        weight_decay=decay or None)
    if decay:
        kept = [v for v in norm_and_bias_variables(model)
                if (v.path.endswith("bias") and not recipe.decay_bias)
                or (not v.path.endswith("bias") and not recipe.decay_norm)]
        optimizer.exclude_from_weight_decay(var_list=kept)
    return optimizer
