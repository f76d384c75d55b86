"""Compiling a model with a recipe: optimizer, the paper's weight decay, loss and metrics.

§3.4 (ImageNet): SGD, mini-batch 256, momentum 0.9, weight decay 1e-4, learning rate 0.1
divided by 10 when the error plateaus. §4.2 (CIFAR-10): mini-batch 128, learning rate 0.1.

Weight decay is the paper's: an L2 term whose gradient is ``1e-4 * w``, i.e. Keras
``L2(5e-5)`` on every conv and dense kernel. It is *not* ``SGD(weight_decay=...)``, which is
decoupled decay applied outside the momentum. It has one source: the model's regularizers, set
when the model is built (``ResNet20(weight_decay=1e-4)``, the default, or any
``kernel_regularizer``); :func:`compile_model` replaces them only when given ``weight_decay``.

What the task decides (the loss and the metrics) comes from the model's Task
(``keras_resnet.tasks``).

Backend-neutral (Keras and NumPy only).

Example:
    >>> model = keras_resnet.ResNet20()
    >>> _ = compile_model(model, "cifar", global_batch_size=128)
    >>> round(float(model.optimizer.learning_rate), 3)
    0.1
"""

import dataclasses

import keras

from keras_resnet import devices, tasks
from keras_resnet.errors import InvalidArgument
from keras_resnet.models import walk_layers
from keras_resnet.recipes import (
    PAPER,
    get_recipe,
    learning_rate_schedule,
    make_optimizer,
    peak_learning_rate,
)


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


# The auxiliary head's share of a segmenter's loss (torchvision's segmentation train.py).
AUX_LOSS_WEIGHT = 0.5


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
    loss=None,
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
            recipe says: L2 regularizers, or the optimizer's own decay (timm's LAMB: an L2
            term inside the trust ratio, off the 1-D variables; SGD: Keras' decoupled decay).
        jit_compile, steps_per_execution: passed to ``model.compile``; "auto" takes the
            measured fast path of this device (``keras_resnet.distribute.FAST_PATH``).
        fast_path: False lets "auto" mean Keras' defaults instead.
        task: a ``keras_resnet.tasks.Task``, "single_label", "multilabel" or "auto" (the
            Task the model carries); it decides the loss and metrics
            (``keras_resnet.tasks.for_model``).
        total_steps: the run's training steps; cosine schedules need it (the recipe's EMA
            is a callback: ``keras_resnet.train.ema.ModelEMA.from_recipe``).
        loss: a Keras loss instead of the task's (a version-2 detector's GIoU box loss).

    Returns:
        The model, compiled: the paper's recipes with SGD, sparse categorical cross-entropy
        and ``top1``/``top5`` accuracy; modern ones with one-hot (mixed) targets, categorical
        or binary cross-entropy (label smoothing in the loss for the former, in the targets
        for the latter) and the same ``top1``/``top5``; a multi-label task with binary
        cross-entropy, ``pr_auc`` and ``f1`` (``keras_resnet.tasks.Task.metrics``).

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
    task = tasks.for_model(model, task, recipe)
    loss = task.loss(recipe) if loss is None else loss
    metrics, loss_weights = task.metrics(recipe), None
    if isinstance(model.output, dict):  # a segmenter's {"out", "aux"}: torchvision's out + 0.5 aux
        loss = {"out": loss, "aux": task.loss(recipe)}
        loss_weights, metrics = {"out": 1.0, "aux": AUX_LOSS_WEIGHT}, {"out": metrics}
    model.compile(
        optimizer=make_optimizer(model, recipe, learning_rate_schedule(recipe, peak, total_steps),
                                 momentum=momentum),
        loss=loss,
        loss_weights=loss_weights,
        metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model
