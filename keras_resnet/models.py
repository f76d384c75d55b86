"""Functional ResNet models built from the architecture tables.

One builder, :func:`build_resnet`, turns an :class:`~keras_resnet.architectures.Architecture`
into a ``keras.Model``; :func:`ImageNetResNet`, :func:`CifarResNet` and the named constructors
(``ResNet18`` ... ``ResNet1202``) call it with the keras.applications signature.
"""

import dataclasses

import keras

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet import weights as weights_lib
from keras_resnet.architectures import NAMED_MODELS, architecture, with_output_stride, with_stem
from keras_resnet.blocks import BottleneckBlock, ResidualBlock, check_channels_last
from keras_resnet.errors import (
    InvalidArgument, InvalidType, check_choice, check_fraction, check_positive_int,
)

SHORTCUT_OPTIONS = ("A", "B", "C")
POOLINGS = (None, "avg", "max")
MIN_INPUT_SIZE = 32
# The block class of each ``Architecture.block``.
BLOCKS = {"basic": ResidualBlock, "bottleneck": BottleneckBlock}
# The paper's weight decay (§3.4, §4.2): the L2 coefficient in the gradient.
PAPER_WEIGHT_DECAY = 1e-4


def walk_layers(model):
    """Every layer of ``model``, nested models' layers included (public Keras APIs only).

    Example:
        >>> len([layer for layer in walk_layers(keras_resnet.ResNet20()) if layer.name == "conv1"])
        1
    """
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


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
        raise InvalidArgument(
            f"`input_shape` must be (height, width, channels); got {input_shape!r}."
        )
    height, width, channels = input_shape
    for size in (height, width):
        if size is not None and (not isinstance(size, int) or size < MIN_INPUT_SIZE):
            raise InvalidArgument(
                f"`input_shape` height and width must be None or integers >= "
                f"{MIN_INPUT_SIZE}; got {tuple(input_shape)}."
            )
    check_positive_int("input_shape channels", channels)


def kernel_regularizer_for(weight_decay=None, kernel_regularizer=None):
    """The kernel regularizer of a model: the user's, else the paper's weight decay as L2.

    Keras' ``L2(c)`` adds ``c * sum(w^2)`` to the loss, so its gradient is ``2c * w``: a weight
    decay of 1e-4 on the gradient (the paper's) is ``L2(5e-5)``; ``weight_decay=0`` is none.

    Example:
        >>> round(float(kernel_regularizer_for(1e-4).l2), 10)
        5e-05
    """
    if kernel_regularizer is not None:
        if weight_decay is not None:
            raise InvalidArgument(
                "Pass either `weight_decay` or `kernel_regularizer`, not both; got "
                f"weight_decay={weight_decay!r} and kernel_regularizer={kernel_regularizer!r}."
            )
        return keras.regularizers.get(kernel_regularizer)
    weight_decay = PAPER_WEIGHT_DECAY if weight_decay is None else weight_decay
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise InvalidArgument(f"`weight_decay` must be a number >= 0; got {weight_decay!r}.")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


@dataclasses.dataclass(frozen=True)
class _LayerSettings:
    """What every conv, BN and block of one model shares."""

    width_multiplier: float
    conv: dict  # use_bias, kernel_initializer, kernel_regularizer
    momentum: float
    epsilon: float
    synchronized: bool
    zero_init_residual: bool
    stride_position: str

    def width(self, channels):
        return max(1, int(round(channels * self.width_multiplier)))

    def batch_norm(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.momentum, epsilon=self.epsilon, synchronized=self.synchronized,
            name=name,
        )

    def block(self, kind, filters, strides, shortcut, name, **options):
        if kind is BottleneckBlock:
            options["stride_position"] = self.stride_position
        return kind(
            filters, strides=strides, shortcut=shortcut, momentum=self.momentum,
            epsilon=self.epsilon, synchronized=self.synchronized,
            zero_init_residual=self.zero_init_residual, name=name, **self.conv, **options,
        )


def _inputs(arch, input_tensor, input_shape):
    """The model's Input, and the tensor the network starts from."""
    if input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = tuple(arch.input_shape if input_shape is None else input_shape)
    _check_input_shape(input_shape)
    if input_tensor is None:
        return keras.Input(shape=input_shape)
    if keras.backend.is_keras_tensor(input_tensor):
        return input_tensor
    return keras.Input(tensor=input_tensor, shape=input_shape)


def stem_layers(x, spec, settings):
    """conv1 (+ BN, ReLU) and pool1 of ``spec`` (an ``architectures.Stem``): Table 1's 7x7/2
    conv and 3x3/2 max pool for ImageNet, §4.2's single 3x3 conv for CIFAR."""
    filters = settings.width(spec.filters)
    if spec.strides > 1:  # pad explicitly, as the blocks' strided convs do
        x = keras.layers.ZeroPadding2D(spec.kernel_size // 2, name="conv1_pad")(x)
        conv = keras.layers.Conv2D(filters, spec.kernel_size, strides=spec.strides,
                                   name="conv1", **settings.conv)
    else:
        conv = keras.layers.Conv2D(filters, spec.kernel_size, padding="same", name="conv1",
                                   **settings.conv)
    x = settings.batch_norm("conv1_bn")(conv(x))
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if spec.pool_size:
        x = keras.layers.ZeroPadding2D(spec.pool_size // 2, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(spec.pool_size, strides=spec.pool_strides, name="pool1")(x)
    return x


def stages(x, arch, settings, shortcut, residual, drop_path_rate=0.0):
    """conv2_x ... conv5_x (Table 1) or the three stages of §4.2: ``repeats`` blocks each,
    the first of a stage with its stride; shortcuts by option A/B/C (§3.3).

    A dilated stage's first block keeps the previous stage's dilation in its first 3x3 (as
    timm and torchvision do); block ``i`` of ``n`` drops its branch with probability
    ``drop_path_rate * i / (n - 1)`` (stochastic depth's linear rule, timm's indexing)."""
    block = BLOCKS[arch.block]
    channels = x.shape[-1]
    total = sum(stage.repeats for stage in arch.stages)
    index_in_net, previous_dilation = 0, 1
    for stage in arch.stages:
        filters = settings.width(stage.filters)
        out_channels = filters * block.expansion
        for index in range(stage.repeats):
            strides = stage.strides if index == 0 else 1
            kind = _shortcut_kind(shortcut, residual, strides != 1 or channels != out_channels)
            options = {}
            if stage.dilation > 1 or previous_dilation > 1:
                options["dilation_rate"] = stage.dilation
                options["first_dilation_rate"] = previous_dilation if index == 0 else stage.dilation
            if drop_path_rate:
                options["drop_path_rate"] = drop_path_rate * index_in_net / max(1, total - 1)
            x = settings.block(
                block, filters, strides, kind, f"{stage.name}_block{index + 1}", **options
            )(x)
            channels, index_in_net = out_channels, index_in_net + 1
        previous_dilation = stage.dilation
    return x


def head(x, include_top, pooling, classes, classifier_activation, kernel_regularizer,
         dropout=0.0):
    """Global average pooling and the ``classes``-way classifier (Table 1's last row), with
    ``dropout`` before it, or only the pooling of keras.applications' ``pooling`` argument."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        # Under a mixed policy the classifier computes in float32 for a stable softmax.
        mixed = keras.config.dtype_policy().name.startswith("mixed")
        return keras.layers.Dense(
            classes, activation=classifier_activation, kernel_regularizer=kernel_regularizer,
            dtype="float32" if mixed else None, name="predictions",
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _check_options(include_top, pooling, classes, shortcut, width_multiplier, dropout=0.0,
                   drop_path_rate=0.0, residual=True):
    if not isinstance(include_top, bool):
        raise InvalidArgument(f"`include_top` must be True or False; got {include_top!r}.")
    check_fraction("dropout", dropout)
    check_fraction("drop_path_rate", drop_path_rate)
    if dropout and not include_top:
        raise InvalidArgument(f"`dropout={dropout}` sits before the classifier; with "
                              "include_top=False there is none (add your own Dropout to your head).")
    if drop_path_rate and not residual:
        raise InvalidArgument(f"`drop_path_rate={drop_path_rate}` drops residual branches; a "
                              "plain net (residual=False) has none.")
    check_choice("pooling", pooling, POOLINGS)
    check_positive_int("classes", classes)
    check_choice("shortcut", shortcut, SHORTCUT_OPTIONS)
    if (
        isinstance(width_multiplier, bool)
        or not isinstance(width_multiplier, (int, float))
        or width_multiplier <= 0
    ):
        raise InvalidArgument(
            f"`width_multiplier` must be a positive number; got {width_multiplier!r}."
        )


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
    preprocessing=None,
    output_stride=None,
    stem="standard",
    drop_path_rate=0.0,
    dropout=0.0,
):
    """Build the functional model of architecture ``arch``: input, preprocessing record,
    stem, stages, head.

    Args:
        arch: an ``Architecture`` from ``keras_resnet.architectures``.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in keras.applications. ``weights`` is None or a
            weights file (``.weights.h5``, ``.safetensors``, ``.npz``, ``.pth``); weight set
            names ("imagenet", "torchvision_v2", ...) go through :func:`ImageNetResNet` and
            the ``ResNetNN`` constructors. ``classes`` and ``input_shape`` default to the
            family's (1000 and 224x224x3 for ImageNet, 10 and 32x32x3 for CIFAR).
        shortcut: "A" (zero-padding), "B" (projection when dimensions increase) or "C" (all
            projections), §3.3/§4.1. Defaults to B for ImageNet, A for CIFAR.
        residual: False gives the plain counterpart (same layers, no shortcuts).
        stride_position: "1x1" or "3x3", where a bottleneck block puts its stride.
        zero_init_residual: zero gamma on every residual branch's last BN.
        use_bias: biases on convolutions.
        weight_decay: the paper's weight decay (L2 coefficient in the gradient, §3.4),
            default 1e-4: ``keras.regularizers.L2(weight_decay / 2)`` on every conv and dense
            kernel; 0 for none. Training keeps it unless told otherwise.
        kernel_regularizer: any Keras regularizer for those kernels instead.
        width_multiplier: scales the channels of every layer.
        bn_momentum, bn_epsilon: BatchNormalization settings.
        bn_synchronized: synchronized BN across the replicas of a multi-replica strategy.
        preprocessing: the ``ImagePreprocessing`` the model's inputs follow; default: resize
            to the input size, pixels / 255, classes named by index.
        output_stride: 8, 16 or 32 (ImageNet nets): the later stages keep their resolution
            and dilate their 3x3 convolutions instead (``architectures.with_output_stride``).
        stem: "standard", or "low_resolution": conv1 at stride 1 and no max pool, for 32x32
            to 64x64 images, with the same weights.
        drop_path_rate: stochastic depth: the last block drops its residual branch with this
            probability while training, earlier ones linearly less (the first never).
        dropout: dropout rate before the classifier while training.

    Returns:
        A ``keras.Model``.

    Example:
        >>> from keras_resnet.architectures import cifar_architecture
        >>> build_resnet(cifar_architecture(20)).count_params()  # trainable 269,722 + BN statistics
        271098
    """
    check_channels_last(f"resnet{arch.depth}")
    classes = arch.classes if classes is None else classes
    shortcut = arch.shortcut if shortcut is None else str(shortcut).upper()
    _check_options(include_top, pooling, classes, shortcut, width_multiplier, dropout,
                   drop_path_rate, residual)
    arch = with_stem(arch, stem)
    if output_stride is not None:
        arch = with_output_stride(arch, output_stride)
    regularizer = kernel_regularizer_for(weight_decay, kernel_regularizer)
    settings = _LayerSettings(
        width_multiplier=width_multiplier,
        conv={"use_bias": use_bias, "kernel_initializer": "he_normal",  # §3.4
              "kernel_regularizer": regularizer},
        momentum=bn_momentum, epsilon=bn_epsilon, synchronized=bn_synchronized,
        zero_init_residual=zero_init_residual, stride_position=stride_position,
    )
    inputs = _inputs(arch, input_tensor, input_shape)
    if preprocessing is None:
        preprocessing = preprocessing_lib.plain(
            inputs.shape[1:3] if None not in inputs.shape[1:3] else arch.input_shape[:2],
            channels=inputs.shape[-1],
            class_names=[str(i) for i in range(classes)] if include_top else None,
        )
    x = preprocessing(inputs)
    x = stem_layers(x, arch.stem, settings)
    x = stages(x, arch, settings, shortcut, residual, drop_path_rate)
    x = head(x, include_top, pooling, classes, classifier_activation, regularizer, dropout)
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

    ``weights``: None, a path (see :func:`build_resnet`), "imagenet" (the depth's default
    set) or a weight set name of ``keras_resnet.weights.available(f"resnet{depth}")``
    ("torchvision_v2", "timm_a1", "keras_hub", ...). A set fixes the variant (stride
    position, conv bias, BN epsilon), the default input size and the preprocessing the model
    carries (``keras_resnet.preprocessing.of(model)``, with the 1000 class names);
    ``include_top=False`` loads everything but the classifier. Other arguments: see
    :func:`build_resnet`.

    Example:
        >>> ImageNetResNet(34, shortcut="A").count_params() < ImageNetResNet(34).count_params()
        True
    """
    arch = architecture("imagenet", depth)
    weight_set = weights_lib.resolve(arch.name, weights)
    if weight_set is None:
        return build_resnet(
            arch, include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name, **options,
        )
    _check_weight_set_options(weight_set, weights, include_top, classes, input_shape, options)
    if weight_set.layout == "keras_applications":
        return _from_imagenet_weights(
            arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
            classifier_activation, name, options,
        )
    return _from_weight_set(
        arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, options,
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
        >>> CifarResNet(56, residual=False).name  # the 56-layer plain net of Fig. 6
        'plain56'
    """
    if weights_lib.is_name(weights):
        raise InvalidArgument(
            f"`weights={weights!r}`: pretrained weight sets exist for the ImageNet ResNet-18/34/"
            "50/101/152 only; a CIFAR ResNet takes None or a path to a weights file."
        )
    return build_resnet(
        architecture("cifar", depth), include_top, weights, input_tensor, input_shape,
        pooling, classes, classifier_activation, name, **options,
    )


# Options that keras.applications' ImageNet weights fix.
_IMAGENET_WEIGHT_OPTIONS = {**weights_lib.FIXED_OPTIONS, **weights_lib.CAFFE_VARIANT}


def _check_weight_set_options(weight_set, weights, include_top, classes, input_shape, options):
    """Raise unless the constructor's arguments fit the pretrained ``weight_set``."""
    if include_top and classes != 1000:
        raise InvalidArgument(
            f"`weights={weights!r}` with `include_top=True` needs `classes=1000` (its ImageNet "
            f"classifier); got classes={classes}. Use include_top=False (e.g. with "
            "pooling='avg') and put your own classifier on top, or load the 1000-class model "
            "and fine-tune a new head."
        )
    if "preprocessing" in options:
        raise InvalidArgument(
            f"`weights={weights!r}` fixes the preprocessing ({weight_set.preprocessing()!r}); "
            "leave `preprocessing` unset (keras_resnet.preprocessing.attach replaces it later)."
        )
    for option, required in weight_set.build_options().items():
        if option in options and options[option] != required:
            raise InvalidArgument(
                f"`weights={weights!r}` needs `{option}={required!r}`; got {options[option]!r}."
            )


def _input_size(weight_set, input_tensor, input_shape):
    """(height, width) of the model input: given, else the weight set's evaluation size."""
    shape = tuple(input_tensor.shape[1:]) if input_tensor is not None else input_shape
    if shape is not None and None not in tuple(shape)[:2]:
        return tuple(shape)[:2]
    return None if shape is not None else (weight_set.image_size,) * 2


def _input_channels(input_tensor, input_shape):
    """The model's input channels (conv1 of a pretrained set is adapted to them)."""
    return tuple(input_tensor.shape)[-1] if input_tensor is not None else (input_shape or (3,))[-1]


def _from_weight_set(
    arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
    classifier_activation, name, options,
):
    """Build ``weight_set``'s variant of ``arch`` and load it (tensors read before building)."""
    tensors = weights_lib.fetch(weight_set, include_top)
    size = _input_size(weight_set, input_tensor, input_shape)
    if input_tensor is None and input_shape is None:
        input_shape = (*size, 3)
    channels = _input_channels(input_tensor, input_shape)
    model = build_resnet(
        arch, include_top, None, input_tensor, input_shape, pooling, classes,
        classifier_activation, name,
        preprocessing=weight_set.preprocessing(size, include_top).for_channels(channels),
        **{**options, **weight_set.build_options()},
    )
    return weights_lib.load_tensors(
        model, tensors, weight_set.layout, source=f"{weight_set.name}: {weight_set.checkpoint}"
    )


def _from_imagenet_weights(
    arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
    classifier_activation, name, options,
):
    application = getattr(keras.applications, f"ResNet{arch.depth}")
    channels = _input_channels(input_tensor, input_shape)
    source = application(
        include_top=include_top,
        weights="imagenet",
        input_shape=None if input_shape is None else (*input_shape[:2], 3),
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    extra = {k: v for k, v in options.items() if k not in _IMAGENET_WEIGHT_OPTIONS}
    size = _input_size(weight_set, input_tensor, input_shape) or (weight_set.image_size,) * 2
    return from_keras_applications(
        source, input_tensor=input_tensor, name=name, channels=channels,
        preprocessing=weight_set.preprocessing(size, include_top).for_channels(channels), **extra,
    )


def from_keras_applications(keras_model, input_tensor=None, name=None, channels=3, **options):
    """The keras_resnet equivalent of a keras.applications ResNet50/101/152, with its weights.

    The result has the source's layout (stride in the first 1x1, conv biases, BN epsilon
    1.001e-5) and gives the same predictions; it takes the same preprocessing
    (``keras.applications.resnet.preprocess_input``), which it carries as a Caffe-mode
    ``ImagePreprocessing`` (or pass ``preprocessing=``).

    Args:
        keras_model: a ``keras.applications.ResNet50/101/152`` model (v1).
        input_tensor, name: as in :func:`ImageNetResNet`.
        channels: input channels; conv1 is adapted from RGB when not 3
            (``keras_resnet.weights.adapt_input_kernel``).
        **options: ``zero_init_residual``, ``weight_decay``, ``kernel_regularizer``,
            ``bn_momentum`` (useful for fine-tuning), ``preprocessing``.

    Returns:
        A ``keras.Model`` built from keras_resnet blocks.

    Example:
        >>> from_keras_applications(keras.applications.ResNet50(weights=None)).name
        'resnet50'
    """
    if not isinstance(keras_model, keras.Model):
        raise InvalidType(f"`keras_model` must be a keras.Model; got {type(keras_model).__name__}.")
    layout = weights_lib.keras_applications_layout(keras_model)
    preprocessing = options.pop("preprocessing", None) or preprocessing_lib.caffe(
        layout["input_shape"][0] or 224,
        class_names=[str(i) for i in range(layout["classes"])] if layout["include_top"] else None,
    ).for_channels(channels)
    input_shape = (*layout["input_shape"][:2], channels)
    target = build_resnet(
        architecture("imagenet", layout["depth"]),
        include_top=layout["include_top"],
        input_tensor=input_tensor,
        input_shape=None if input_tensor is not None else input_shape,
        pooling=layout["pooling"],
        classes=layout["classes"],
        classifier_activation=layout["classifier_activation"],
        name=name or f"resnet{layout['depth']}",
        preprocessing=preprocessing,
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
    # The deepest nets take seconds to build: their examples are shown, not run.
    skip = "  # doctest: +SKIP" if depth >= 101 else ""
    build.__doc__ = (
        f"The {depth}-layer {kind} ResNet; arguments as keras.applications, options as "
        f"``build_resnet``.\n\n    Example:\n        >>> keras_resnet.ResNet{depth}().name{skip}\n"
        f"        'resnet{depth}'\n"
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
    raise InvalidArgument(
        f"`model_name` must be one of {', '.join(NAMED_MODELS)} or resnetN with N = 6n+2 "
        f"(a CIFAR depth); got {model_name!r}."
    )


def get_model(model_name, **kwargs):
    """Build a model by name ("resnet20", "resnet50", "resnet8", ...) with constructor ``kwargs``.

    Example:
        >>> get_model("resnet8", classes=4).output_shape
        (None, 4)
    """
    family, depth = parse_model_name(model_name)
    constructor = ImageNetResNet if family == "imagenet" else CifarResNet
    return constructor(depth, **kwargs)
