"""One builder from an architecture to a functional model: stem, stages, head.

:func:`build_resnet` turns an :class:`~keras_resnet.architectures.Architecture` (Table 1, §4.2
or a family member) into a ``keras.Model`` of registered blocks; ``keras_resnet.models`` holds
the named constructors that call it. Each stage's features are marked at build by a
:class:`StageTap` where the architecture's ``stage_taps`` say; ``keras_resnet.features`` reads
them.
"""

import dataclasses
import inspect

import keras

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet import tasks
from keras_resnet import weights as weights_lib

# Re-exported: the shortcut vocabulary was this module's before architectures held it. Kept on
# three lines (isort: skip): the module is at the layout test's 450 lines.
from keras_resnet.architectures import (  # noqa: F401  # isort: skip
    SHORTCUT_OPTIONS, SHORTCUTS, canonical_shortcut, resolve_shortcut, with_options,
    with_output_stride, with_stem,
)
from keras_resnet.blocks import BottleneckBlock, ResidualBlock, check_channels_last
from keras_resnet.errors import InvalidArgument, check_choice, check_fraction, check_positive_int

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


@keras.saving.register_keras_serializable(package="keras_resnet")
class StageTap(keras.layers.Layer):
    """Marks where a stage's features are read: the identity, weightless, never cast.

    Called on one tensor it returns it (those are the stage's features); called on
    ``[passing, features]`` it returns ``passing`` and marks ``features`` (a tensor off the
    model's path, such as a block's pre-activated input). :func:`tap_features` reads either.

    Args:
        stage: the stage's name ("conv1" .. "conv5").
        reduction: how many times smaller than the input the features are per side.

    Example:
        >>> StageTap("conv2", 4, name="tap_conv2").get_config()["reduction"]
        4
    """

    def __init__(self, stage, reduction, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)  # the identity keeps its input's dtype
        if not isinstance(stage, str) or not stage:
            raise InvalidArgument(f"`stage` must be a stage name such as 'conv2'; got {stage!r}.")
        check_positive_int("reduction", reduction)
        self.stage, self.reduction = stage, reduction

    def call(self, inputs):
        return inputs[0] if isinstance(inputs, (list, tuple)) else inputs

    def get_config(self):
        return {**super().get_config(), "stage": self.stage, "reduction": self.reduction}


def tap_features(tap):
    """The features a built :class:`StageTap` marks (a symbolic tensor of its model).

    Example:
        >>> tuple(tap_features(stage_taps(keras_resnet.ResNet20())[-1]).shape)
        (None, 8, 8, 64)
    """
    return tap.input[1] if isinstance(tap.input, (list, tuple)) else tap.output


def stage_taps(model):
    """The :class:`StageTap` layers among ``model``'s own layers, in network order."""
    return [layer for layer in model.layers if isinstance(layer, StageTap)]


def _shortcut_kind(option, residual, dims_change, subsample=False):
    """§3.3 / §4.1: the shortcut a block gets under option A, B or C, where ``dims_change`` is
    "channels" (and maybe the resolution), "stride" (the resolution only) or "" (nothing).
    With ``subsample`` a block that only strides takes every other pixel (keras.applications'
    V2 nets)."""
    if not residual:
        return "none"  # plain network
    if option == "C":
        return "projection"  # all shortcuts are projections
    if subsample and dims_change == "stride":
        return "zero_pad"
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

    def width(self, channels):
        return max(1, int(round(channels * self.width_multiplier)))

    def batch_norm(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.momentum, epsilon=self.epsilon, synchronized=self.synchronized,
            name=name,
        )

    def block(self, kind, filters, strides, shortcut, name, **options):
        return kind(
            filters, strides=strides, shortcut=shortcut, bn_momentum=self.momentum,
            bn_epsilon=self.epsilon, bn_synchronized=self.synchronized,
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


def _stem_conv(x, filters, kernel_size, strides, name, settings, **overrides):
    if strides > 1:  # pad explicitly, as the blocks' strided convs do
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        return keras.layers.Conv2D(filters, kernel_size, strides=strides, name=name,
                                   **{**settings.conv, **overrides})(x)
    return keras.layers.Conv2D(filters, kernel_size, padding="same", name=name,
                               **{**settings.conv, **overrides})(x)


def _tapped(x, tap, reduction, features=None):
    """``x`` through the :class:`StageTap` of ``tap`` (an ``architectures.Tap``), marking
    ``features`` (default ``x`` itself)."""
    layer = StageTap(tap.stage, reduction, name=f"tap_{tap.stage}")
    return layer(x if features is None else [x, features])


def stem_layers(x, spec, settings, tap=None):
    """conv1 (+ BN, ReLU) and pool1 of ``spec`` (an ``architectures.Stem``): Table 1's 7x7/2
    conv and 3x3/2 max pool for ImageNet, §4.2's single 3x3 conv for CIFAR, ResNet-C's three
    3x3 convs (``conv1_1`` .. ``conv1_3``), or a pre-activation net's conv1 alone; ``tap``
    (an ``architectures.Tap``) marks conv1's output, before the pool."""
    strides = spec.strides
    for index, width in enumerate(spec.deep_widths):
        name = f"conv1_{index + 1}"
        x = _stem_conv(x, settings.width(width), 3, strides, name, settings)
        x = settings.batch_norm(f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        strides = 1
    name = f"conv1_{len(spec.deep_widths) + 1}" if spec.deep_widths else "conv1"
    # Unnormalized, conv1 carries a bias as keras.applications' V2 nets' does.
    overrides = {} if spec.normalized else {"use_bias": True}
    x = _stem_conv(x, settings.width(spec.filters), spec.kernel_size, strides, name, settings,
                   **overrides)
    if spec.normalized:
        x = settings.batch_norm("conv1_bn")(x)
        x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if tap is not None:
        x = _tapped(x, tap, spec.strides)
    if spec.pool_size:
        x = keras.layers.ZeroPadding2D(spec.pool_size // 2, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(spec.pool_size, strides=spec.pool_strides, name="pool1")(x)
    return x


def _block_options(arch, stage, index, kind, previous_dilation, drop_path_rate):
    """The options of block ``index`` of ``stage`` besides filters, stride and shortcut."""
    options = dict(arch.block_options)
    if arch.avg_down and kind == "projection":
        options["avg_down"] = True
    if stage.dilation > 1 or previous_dilation > 1:
        options["dilation_rate"] = stage.dilation
        options["first_dilation_rate"] = previous_dilation if index == 0 else stage.dilation
    if drop_path_rate:
        options["drop_path_rate"] = drop_path_rate
    return options


def stages(x, arch, settings, shortcut, residual, drop_path_rate=0.0):
    """conv2_x ... conv5_x (Table 1) or the three stages of §4.2: ``repeats`` blocks each,
    the first of a stage with its stride (the last in keras.applications' V2 nets);
    shortcuts by option A/B/C (§3.3); the family's block options from ``arch``; a
    pre-activation net ends with BN-ReLU (He et al. 2016, §3.1). Each stage's
    ``arch.stage_taps`` entry marks its features with a :class:`StageTap`.

    A dilated stage's first block keeps the previous stage's dilation in its first 3x3 (as
    timm and torchvision do); block ``i`` of ``n`` drops its branch with probability
    ``drop_path_rate * i / (n - 1)`` (stochastic depth's linear rule, timm's indexing)."""
    block = BLOCKS[arch.block]
    taps = {tap.stage: tap for tap in arch.stage_taps}
    channels, reduction = x.shape[-1], arch.stem_reduction
    total = sum(stage.repeats for stage in arch.stages)
    index_in_net, previous_dilation = 0, 1
    for stage in arch.stages:
        filters, tap = settings.width(stage.filters), taps.get(stage.name)
        out_channels = filters * block.expansion
        strided_block = 0 if arch.downsample_in == "first" else stage.repeats - 1
        for index in range(stage.repeats):
            strides = stage.strides if index == strided_block else 1
            dims_change = "channels" if channels != out_channels else "stride" if strides != 1 else ""
            kind = _shortcut_kind(shortcut, residual, dims_change, arch.downsample_in == "last")
            options = _block_options(arch, stage, index, kind, previous_dilation,
                                     drop_path_rate * index_in_net / max(1, total - 1))
            # He et al. 2016: the pre-activated input of the strided block (V2 feature layers).
            preactivated = tap is not None and tap.at == "preactivated_input" and index == strided_block
            if preactivated:
                options["outputs_preactivation"] = True
            x = settings.block(
                block, filters, strides, kind, f"{stage.name}_block{index + 1}", **options
            )(x)
            if preactivated:
                x = _tapped(x[0], tap, reduction, features=x[1])
            reduction *= strides
            channels, index_in_net = out_channels, index_in_net + 1
        previous_dilation = stage.dilation
        last = stage is arch.stages[-1]
        if last and arch.preactivation:
            x = settings.batch_norm("post_bn")(x)
            x = keras.layers.Activation("relu", name="post_relu")(x)
        if tap is not None and tap.at == "output":
            x = _tapped(x, tap, reduction)
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


def _check_options(include_top, pooling, classes, width_multiplier, dropout=0.0,
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
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)) \
            or width_multiplier <= 0:
        raise InvalidArgument(f"`width_multiplier` must be a positive number; got {width_multiplier!r}.")


def configured_architecture(arch, stem="standard", output_stride=None, **options):
    """``arch`` with a constructor's architecture options: ``stem``, ``output_stride`` and
    the block options of ``architectures.with_options``.

    Example:
        >>> from keras_resnet.architectures import imagenet_architecture
        >>> configured_architecture(imagenet_architecture(50), avg_down=True).avg_down
        True
    """
    arch = with_stem(with_options(arch, **options), stem)
    return arch if output_stride is None else with_output_stride(arch, output_stride)


def _default_preprocessing(arch, inputs, classes, include_top):
    """Resize to the input size, pixels / 255, classes named by index."""
    return preprocessing_lib.plain(
        inputs.shape[1:3] if None not in inputs.shape[1:3] else arch.input_shape[:2],
        channels=inputs.shape[-1],
        class_names=[str(i) for i in range(classes)] if include_top else None,
    )


def build_resnet(
    arch, include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
    classes=None, classifier_activation="softmax", name=None, *,
    shortcut=None, residual=None, stem="standard", output_stride=None,
    groups=None, base_width=None, se_ratio=None, preactivation=None, avg_down=None,
    stride_position=None, downsample_in=None,
    zero_init_residual=False, use_bias=False, weight_decay=None, kernel_regularizer=None,
    width_multiplier=1.0, bn_momentum=0.9, bn_epsilon=1e-5, bn_synchronized=False,
    preprocessing=None, drop_path_rate=0.0, dropout=0.0,
):
    """Build the functional model of architecture ``arch``: input, preprocessing record,
    stem, stages (each marked by a :class:`StageTap`), head.

    Args:
        arch: an ``Architecture`` from ``keras_resnet.architectures``.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in keras.applications. ``weights`` is None or a
            weights file (``.weights.h5``, ``.safetensors``, ``.npz``, ``.pth``); weight set
            names ("imagenet", "torchvision_v2", ...) go through :func:`ImageNetResNet` and
            the ``ResNetNN`` constructors. ``classes`` and ``input_shape`` default to the
            family's (1000 and 224x224x3 for ImageNet, 10 and 32x32x3 for CIFAR).
        shortcut: "A" (zero-padding), "B" (projection when dimensions increase) or "C" (all
            projections), §3.3/§4.1, any case; "none": the plain counterpart (same layers, no
            shortcuts) of a paper's net. Defaults to B for ImageNet, A for CIFAR.
        residual: False is ``shortcut="none"``, an equivalent spelling.
        stem: "standard" (the architecture's own), "low_resolution" (conv1 at stride 1 and no
            max pool, for 32x32 to 64x64 images, with the same weights) or "deep" (ResNet-C's
            three 3x3 convs, He et al. 2019).
        output_stride: 8, 16 or 32 (ImageNet nets): the later stages keep their resolution
            and dilate their 3x3 convolutions instead (``architectures.with_output_stride``).
        groups, base_width, se_ratio, preactivation, avg_down, stride_position,
            downsample_in: the block options of ``architectures.with_options`` (ResNeXt,
            SE, pre-activation, ResNet-D, where the stride sits); default the architecture's.
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
    check_channels_last(arch.name)
    shortcut, residual = resolve_shortcut(arch, shortcut, residual)
    plain_name = arch.name if residual else f"plain{arch.depth}"
    arch = configured_architecture(
        arch, stem, output_stride, groups=groups, base_width=base_width, se_ratio=se_ratio,
        preactivation=preactivation, avg_down=avg_down, stride_position=stride_position,
        downsample_in=downsample_in,
    )
    classes = arch.classes if classes is None else classes
    _check_options(include_top, pooling, classes, width_multiplier, dropout, drop_path_rate,
                   residual)
    regularizer = kernel_regularizer_for(weight_decay, kernel_regularizer)
    settings = _LayerSettings(
        width_multiplier=width_multiplier,
        conv={"use_bias": use_bias, "kernel_initializer": "he_normal",  # §3.4
              "kernel_regularizer": regularizer},
        momentum=bn_momentum, epsilon=bn_epsilon, synchronized=bn_synchronized,
        zero_init_residual=zero_init_residual,
    )
    inputs = _inputs(arch, input_tensor, input_shape)
    preprocessing = preprocessing or _default_preprocessing(arch, inputs, classes, include_top)
    x = preprocessing(inputs)
    task = tasks.layer_for(classes, classifier_activation) if include_top else None  # what it predicts
    x = stem_layers(x if task is None else task(x), arch.stem, settings, arch.stage_taps[0])
    x = stages(x, arch, settings, shortcut, residual, drop_path_rate)
    x = head(x, include_top, pooling, classes, classifier_activation, regularizer, dropout)
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    model = keras.Model(inputs, x, name=plain_name if name is None else name)
    return weights_lib.load_weights(model, weights)


# Every keyword option of ``build_resnet`` (after keras.applications' arguments).
BUILD_OPTIONS = tuple(
    parameter.name for parameter in inspect.signature(build_resnet).parameters.values()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
