"""Functional ResNet models built from the architecture tables.

One builder, :func:`build_resnet`, turns an :class:`~keras_resnet.architectures.Architecture`
into a ``keras.Model``; :func:`ImageNetResNet`, :func:`CifarResNet` and the named constructors
(``ResNet18`` ... ``ResNet1202``) call it with the keras.applications signature.
"""

import functools

import keras

from keras_resnet import weights as weights_lib
from keras_resnet.architectures import NAMED_MODELS, architecture
from keras_resnet.blocks import BottleneckBlock, ResidualBlock, check_choice, check_positive_int

SHORTCUT_OPTIONS = ("A", "B", "C")
POOLINGS = (None, "avg", "max")
IMAGENET_WEIGHT_DEPTHS = (50, 101, 152)
MIN_INPUT_SIZE = 32


def _shortcut_kind(option, residual, dims_change):
    """§3.3 / §4.1: the shortcut a block gets under option A, B or C."""
    if not residual:
        return "none"  # plain network
    if option == "C":
        return "projection"  # all shortcuts are projections
    if not dims_change:
        return "identity"
    return "zero_pad" if option == "A" else "projection"


def _check_input_shape(input_shape):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, channels); got {input_shape!r}."
        )
    height, width, channels = input_shape
    for size in (height, width):
        if size is not None and (not isinstance(size, int) or size < MIN_INPUT_SIZE):
            raise ValueError(
                f"`input_shape` height and width must be None or integers >= "
                f"{MIN_INPUT_SIZE}; got {tuple(input_shape)}."
            )
    check_positive_int("input_shape channels", channels)


def build_resnet(
    arch,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    name=None,
    *,
    shortcut=None,
    residual=True,
    stride_position="1x1",
    zero_init_residual=False,
    use_bias=False,
    weight_decay=None,
    kernel_regularizer=None,
    width_multiplier=1.0,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    bn_synchronized=False,
):
    """Build the functional model of architecture ``arch``.

    Args:
        arch: an ``Architecture`` from ``keras_resnet.architectures``.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in keras.applications. ``weights`` is None or a
            path to a ``.weights.h5`` file; ``classes`` and ``input_shape`` default to the
            family's (1000 and 224x224x3 for ImageNet, 10 and 32x32x3 for CIFAR).
        shortcut: "A" (zero-padding), "B" (projection when dimensions increase) or "C" (all
            projections), §3.3/§4.1. Defaults to B for ImageNet, A for CIFAR.
        residual: False gives the plain counterpart (same layers, no shortcuts).
        stride_position: "1x1" or "3x3", where a bottleneck block puts its stride.
        zero_init_residual: zero gamma on every residual branch's last BN.
        use_bias: biases on convolutions.
        weight_decay: the paper's weight decay (L2 coefficient in the gradient, §3.4: 1e-4):
            adds ``keras.regularizers.L2(weight_decay / 2)`` to every conv and dense kernel.
        kernel_regularizer: any Keras regularizer for those kernels instead.
        width_multiplier: scales the channels of every layer.
        bn_momentum, bn_epsilon: BatchNormalization settings.
        bn_synchronized: synchronized BN across the replicas of a multi-replica strategy.

    Returns:
        A ``keras.Model``.

    Example:
        >>> model = build_resnet(cifar_architecture(20), classes=10)
    """
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; got {include_top!r}.")
    check_choice("pooling", pooling, POOLINGS)
    classes = arch.classes if classes is None else classes
    check_positive_int("classes", classes)
    shortcut = arch.shortcut if shortcut is None else str(shortcut).upper()
    check_choice("shortcut", shortcut, SHORTCUT_OPTIONS)
    if not isinstance(width_multiplier, (int, float)) or width_multiplier <= 0:
        raise ValueError(
            f"`width_multiplier` must be a positive number; got {width_multiplier!r}."
        )
    if weight_decay is not None:
        if kernel_regularizer is not None:
            raise ValueError("Pass either `weight_decay` or `kernel_regularizer`, not both.")
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f"`weight_decay` must be a number >= 0; got {weight_decay!r}.")
        # Keras' L2(c) adds c * sum(w^2) to the loss, so its gradient is 2c * w: the paper's
        # decay of 1e-4 on the gradient is L2(5e-5).
        kernel_regularizer = keras.regularizers.L2(weight_decay / 2)
    kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    if input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = tuple(arch.input_shape if input_shape is None else input_shape)
    _check_input_shape(input_shape)

    def width(channels):
        return max(1, int(round(channels * width_multiplier)))

    conv_options = dict(
        use_bias=use_bias,
        kernel_initializer="he_normal",  # §3.4
        kernel_regularizer=kernel_regularizer,
    )
    block_options = dict(
        conv_options,
        momentum=bn_momentum,
        epsilon=bn_epsilon,
        zero_init_residual=zero_init_residual,
        synchronized=bn_synchronized,
    )

    def batch_norm(name):
        return keras.layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, synchronized=bn_synchronized, name=name
        )

    if input_tensor is None:
        inputs = keras.Input(shape=input_shape)
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape)

    # Stem. ImageNet (Table 1): 7x7/2 conv, 3x3/2 max pool. CIFAR (§4.2): one 3x3 conv.
    stem_filters = width(arch.stem_filters)
    if arch.family == "imagenet":
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = keras.layers.Conv2D(stem_filters, 7, strides=2, name="conv1", **conv_options)(x)
    else:
        x = keras.layers.Conv2D(stem_filters, 3, padding="same", name="conv1", **conv_options)(
            inputs
        )
    x = batch_norm("conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if arch.family == "imagenet":
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    channels = stem_filters
    for stage in arch.stages:
        for index in range(stage.repeats):
            strides = stage.strides if index == 0 else 1
            filters = width(stage.filters)
            if arch.block == "bottleneck":
                block = functools.partial(
                    BottleneckBlock, filters, stride_position=stride_position
                )
                out_channels = filters * BottleneckBlock.expansion
            else:
                block = functools.partial(ResidualBlock, filters)
                out_channels = filters
            kind = _shortcut_kind(shortcut, residual, strides != 1 or channels != out_channels)
            x = block(
                strides=strides,
                shortcut=kind,
                name=f"{stage.name}_block{index + 1}",
                **block_options,
            )(x)
            channels = out_channels

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        # Under a mixed policy the classifier computes in float32 for a stable softmax.
        mixed = keras.config.dtype_policy().name.startswith("mixed")
        x = keras.layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_regularizer=kernel_regularizer,
            dtype="float32" if mixed else None,
            name="predictions",
        )(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    if name is None:
        name = f"{'resnet' if residual else 'plain'}{arch.depth}"
    model = keras.Model(inputs, x, name=name)
    return weights_lib.load_weights(model, weights)


def ImageNetResNet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **options,
):
    """An ImageNet ResNet of Table 1 (depth 18, 34, 50, 101 or 152).

    ``weights="imagenet"`` (depth 50, 101, 152) converts keras.applications' ImageNet weights
    (see :func:`from_keras_applications`); inputs then follow
    ``keras.applications.resnet.preprocess_input``. Other arguments: see :func:`build_resnet`.

    Example:
        >>> model = ImageNetResNet(34, shortcut="A")
    """
    arch = architecture("imagenet", depth)
    if weights == "imagenet":
        return _from_imagenet_weights(
            arch, include_top, input_tensor, input_shape, pooling, classes,
            classifier_activation, name, options,
        )
    return build_resnet(
        arch, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, **options,
    )


def CifarResNet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    **options,
):
    """A CIFAR-10 ResNet of §4.2: depth 6n+2, 16/32/64 filters, option A shortcuts.

    Other arguments: see :func:`build_resnet`.

    Example:
        >>> model = CifarResNet(56, residual=False)  # the 56-layer plain net of Fig. 6
    """
    if weights == "imagenet":
        raise ValueError("`weights='imagenet'` exists for ImageNet ResNet-50/101/152 only.")
    return build_resnet(
        architecture("cifar", depth), include_top, weights, input_tensor, input_shape,
        pooling, classes, classifier_activation, name, **options,
    )


# Options that keras.applications' ImageNet weights fix.
_IMAGENET_WEIGHT_OPTIONS = {
    "shortcut": "B",
    "residual": True,
    "stride_position": "1x1",
    "width_multiplier": 1.0,
    "use_bias": True,
    "bn_epsilon": 1.001e-5,
}


def _from_imagenet_weights(
    arch, include_top, input_tensor, input_shape, pooling, classes, classifier_activation,
    name, options,
):
    if arch.depth not in IMAGENET_WEIGHT_DEPTHS:
        raise ValueError(
            f"`weights='imagenet'` exists for depths {IMAGENET_WEIGHT_DEPTHS}; "
            f"got depth={arch.depth}."
        )
    if include_top and classes != 1000:
        raise ValueError(
            f"`weights='imagenet'` with `include_top=True` needs `classes=1000`; got "
            f"classes={classes}. Use include_top=False to put your own classifier on top."
        )
    if input_shape is not None and input_shape[-1] != 3:
        raise ValueError(
            f"`weights='imagenet'` needs 3 input channels; got input_shape={input_shape}."
        )
    for option, required in _IMAGENET_WEIGHT_OPTIONS.items():
        if option in options and options[option] != required:
            raise ValueError(
                f"`weights='imagenet'` needs `{option}={required!r}`; got {options[option]!r}."
            )
    application = getattr(keras.applications, f"ResNet{arch.depth}")
    source = application(
        include_top=include_top,
        weights="imagenet",
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    extra = {k: v for k, v in options.items() if k not in _IMAGENET_WEIGHT_OPTIONS}
    return from_keras_applications(source, input_tensor=input_tensor, name=name, **extra)


def from_keras_applications(keras_model, input_tensor=None, name=None, **options):
    """The keras_resnet equivalent of a keras.applications ResNet50/101/152, with its weights.

    The result has the source's layout (stride in the first 1x1, conv biases, BN epsilon
    1.001e-5) and gives the same predictions; it takes the same preprocessing
    (``keras.applications.resnet.preprocess_input``).

    Args:
        keras_model: a ``keras.applications.ResNet50/101/152`` model (v1).
        input_tensor, name: as in :func:`ImageNetResNet`.
        **options: ``zero_init_residual``, ``weight_decay``, ``kernel_regularizer``,
            ``bn_momentum`` (useful for fine-tuning).

    Returns:
        A ``keras.Model`` built from keras_resnet blocks.

    Example:
        >>> ours = from_keras_applications(keras.applications.ResNet50(weights=None))
    """
    if not isinstance(keras_model, keras.Model):
        raise TypeError(f"`keras_model` must be a keras.Model; got {type(keras_model).__name__}.")
    layout = weights_lib.keras_applications_layout(keras_model)
    target = build_resnet(
        architecture("imagenet", layout["depth"]),
        include_top=layout["include_top"],
        input_tensor=input_tensor,
        input_shape=None if input_tensor is not None else layout["input_shape"],
        pooling=layout["pooling"],
        classes=layout["classes"],
        classifier_activation=layout["classifier_activation"],
        name=name or f"resnet{layout['depth']}",
        **{**options, **_IMAGENET_WEIGHT_OPTIONS},
    )
    weights_lib.copy_keras_applications_weights(keras_model, target)
    return target


def _named(family, depth):
    constructor = ImageNetResNet if family == "imagenet" else CifarResNet

    def build(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000 if family == "imagenet" else 10,
              classifier_activation="softmax", name=None, **options):
        return constructor(depth, include_top, weights, input_tensor, input_shape, pooling,
                           classes, classifier_activation, name, **options)

    kind = "ImageNet (Table 1)" if family == "imagenet" else "CIFAR-10 (§4.2)"
    build.__name__ = build.__qualname__ = f"ResNet{depth}"
    build.__doc__ = (
        f"The {depth}-layer {kind} ResNet; arguments as keras.applications, options as "
        f"``build_resnet``.\n\n    Example:\n        >>> model = keras_resnet.ResNet{depth}()\n"
    )
    return build


ResNet18 = _named("imagenet", 18)
ResNet34 = _named("imagenet", 34)
ResNet50 = _named("imagenet", 50)
ResNet101 = _named("imagenet", 101)
ResNet152 = _named("imagenet", 152)
ResNet20 = _named("cifar", 20)
ResNet32 = _named("cifar", 32)
ResNet44 = _named("cifar", 44)
ResNet56 = _named("cifar", 56)
ResNet110 = _named("cifar", 110)
ResNet1202 = _named("cifar", 1202)


def parse_model_name(model_name):
    """``(family, depth)`` of a model name: a named model ("resnet50", "resnet20", ...) or
    ``resnetN`` for any other CIFAR depth N = 6n+2 ("resnet8", "resnet74", ...)."""
    if model_name in NAMED_MODELS:
        return NAMED_MODELS[model_name]
    digits = str(model_name).removeprefix("resnet")
    if str(model_name).startswith("resnet") and digits.isdigit():
        depth = int(digits)
        if depth >= 8 and (depth - 2) % 6 == 0:
            return "cifar", depth
    raise ValueError(
        f"`model_name` must be one of {', '.join(NAMED_MODELS)} or resnetN with N = 6n+2 "
        f"(a CIFAR depth); got {model_name!r}."
    )


def get_model(model_name, **kwargs):
    """Build a model by name ("resnet20", "resnet50", "resnet8", ...) with constructor ``kwargs``.

    Example:
        >>> model = get_model("resnet20", classes=10)
    """
    family, depth = parse_model_name(model_name)
    constructor = ImageNetResNet if family == "imagenet" else CifarResNet
    return constructor(depth, **kwargs)
