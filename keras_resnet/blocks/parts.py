"""Parts the residual blocks compose: their convolutions and batch norms, the explicit padding
of a strided 3x3, the grouped convolution of ResNeXt, and stochastic depth's drop path.

Each part is a plain function that makes or applies one of a block's sublayers; the block keeps
the sublayers under its own attribute names (``conv1``, ``bn1``, ...), so weight paths such as
``conv2_block1/conv1/kernel`` and ``.keras`` files stay what they always were.
"""

import collections

import keras
from keras import ops

from keras_resnet.errors import InvalidArgument

# One convolution of a residual branch and the BN that may follow it (``norm``, e.g. "bn1").
ConvSpec = collections.namedtuple(
    "ConvSpec", "name norm filters kernel_size strides dilation_rate groups"
)


def check_channels_last(what="keras_resnet"):
    """Raise InvalidArgument unless Keras' image data format is channels_last (NHWC), the only
    one ``what`` builds: naming the setting and how to change it.

    Example:
        >>> check_channels_last("ResNet50")
    """
    if keras.config.image_data_format() != "channels_last":
        raise InvalidArgument(
            f"{what} builds channels_last (NHWC) layers only; Keras' image data format is "
            f"{keras.config.image_data_format()!r}. Call "
            "keras.config.set_image_data_format('channels_last') or set "
            '"image_data_format": "channels_last" in ~/.keras/keras.json.'
        )


def spatial_shape(input_shape, strides, channels):
    """The NHWC shape after a stride of ``strides`` ("same" rounding) with ``channels``.

    Example:
        >>> spatial_shape((None, 9, 10, 8), 2, 16)
        (None, 5, 5, 16)
    """
    def down(size):
        return None if size is None else -(-size // strides)

    return (input_shape[0], down(input_shape[1]), down(input_shape[2]), channels)


def make_conv(owner, spec, use_bias=None):
    """A Conv2D for ``spec`` with the block ``owner``'s initializer, regularizer, bias and
    dtype policy (He normal, no bias before BN: §3.4).

    A strided 3x3 pads explicitly (1 pixel on every side, as in the paper's Caffe models);
    "same" would pad only bottom/right when the input size is even.

    Example:
        >>> make_conv(keras_resnet.ResidualBlock(8), ConvSpec("conv1", "bn1", 64, 3, 2, 1, 1)).padding
        'valid'
    """
    padding = "valid" if (spec.kernel_size > 1 and spec.strides > 1) else "same"
    return keras.layers.Conv2D(
        spec.filters,
        spec.kernel_size,
        strides=spec.strides,
        dilation_rate=spec.dilation_rate,
        groups=spec.groups,
        padding=padding,
        use_bias=owner.use_bias if use_bias is None else use_bias,
        kernel_initializer=owner.kernel_initializer,
        kernel_regularizer=owner.kernel_regularizer,
        dtype=owner.dtype_policy,
        name=spec.name,
    )


def make_batch_norm(owner, name, zero_gamma=False):
    """A BatchNormalization with the block ``owner``'s ``bn_momentum``, ``bn_epsilon`` and
    ``bn_synchronized``; ``zero_gamma`` starts it at 0 (a block that starts as identity).

    Example:
        >>> make_batch_norm(keras_resnet.ResidualBlock(8, bn_momentum=0.99), "bn1").momentum
        0.99
    """
    return keras.layers.BatchNormalization(
        momentum=owner.bn_momentum,
        epsilon=owner.bn_epsilon,
        gamma_initializer="zeros" if zero_gamma else "ones",
        synchronized=owner.bn_synchronized,
        dtype=owner.dtype_policy,
        name=name,
    )


def explicit_padding(conv):
    """The pixels a strided 3x3 ``conv`` pads on every side before its "valid" convolution.

    Example:
        >>> explicit_padding(keras.layers.Conv2D(8, 3, strides=2, padding="valid"))
        1
    """
    return conv.kernel_size[0] // 2 if conv.padding == "valid" else 0


def build_conv(conv, input_shape):
    """Build ``conv`` for ``input_shape`` as it will see it, padding included.

    Example:
        >>> conv = keras.layers.Conv2D(8, 3, strides=2, padding="valid")
        >>> build_conv(conv, (None, 56, 56, 64)); tuple(conv.kernel.shape)
        (3, 3, 64, 8)
    """
    pad = explicit_padding(conv)
    batch, height, width, channels = input_shape
    conv.build((
        batch,
        None if height is None else height + 2 * pad,
        None if width is None else width + 2 * pad,
        channels,
    ))


def apply_conv(conv, x):
    """``conv(x)`` after its explicit padding; a grouped one as one convolution per group on
    TensorFlow (:func:`grouped_conv`).

    Example:
        >>> conv = keras.layers.Conv2D(8, 3, strides=2, padding="valid")
        >>> tuple(apply_conv(conv, np.ones((1, 8, 8, 4), "float32")).shape)
        (1, 4, 4, 8)
    """
    pad = explicit_padding(conv)
    if pad:
        x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    if conv.groups > 1 and keras.backend.backend() == "tensorflow":
        return grouped_conv(conv, x)
    return conv(x)


def grouped_conv(conv, x):
    """``conv(x)`` as one convolution per group: ResNeXt's aggregated transformations (Xie et
    al. 2017, Fig. 3(c)). Keras' TensorFlow backend runs a grouped convolution on CPU as an
    XLA-compiled function, which the ONNX converter cannot read and which ran 1x to 7x slower
    than this on ResNeXt-50's stages (2-core CPU, batch 8).

    Example:
        >>> conv = keras.layers.Conv2D(8, 3, groups=2, padding="same")
        >>> x = np.ones((1, 6, 6, 4), "float32"); conv.build(x.shape)
        >>> np.allclose(grouped_conv(conv, x), conv(x), atol=1e-5)
        True
    """
    kernel = ops.cast(conv.kernel, x.dtype)
    outputs = [
        ops.conv(part, weights, strides=conv.strides, padding=conv.padding,
                 dilation_rate=conv.dilation_rate)
        for part, weights in zip(ops.split(x, conv.groups, axis=-1),
                                 ops.split(kernel, conv.groups, axis=-1))
    ]
    y = ops.concatenate(outputs, axis=-1)
    return y + ops.cast(conv.bias, y.dtype) if conv.use_bias else y


def conv_multiply_adds(spec, input_shape):
    """Multiply-adds of the convolution ``spec`` on one image of ``input_shape`` (NHWC).

    Example:
        >>> conv_multiply_adds(ConvSpec("conv1", "bn1", 64, 3, 1, 1, 1), (None, 56, 56, 64))
        115605504
    """
    _, h, w, _ = spatial_shape(input_shape, spec.strides, spec.filters)
    per_pixel = spec.kernel_size ** 2 * input_shape[-1] * spec.filters // spec.groups
    return h * w * per_pixel


def make_drop_path(rate, dtype):
    """Stochastic depth (Huang et al. 2016, §3): a Dropout whose mask is one number per sample
    drops (and at training time rescales by ``1 / (1 - rate)``) a sample's whole residual
    branch; identity at inference.

    Example:
        >>> make_drop_path(0.1, "float32").noise_shape
        (None, 1, 1, 1)
    """
    return keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), dtype=dtype, name="drop_path")
