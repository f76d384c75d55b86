"""Squeeze-and-excitation on a residual branch (Hu et al. 2018, "Squeeze-and-Excitation
Networks", Fig. 3): squeeze (global average), excite (1x1 reduce, ReLU, 1x1 expand,
sigmoid), then scale the branch's channels before the addition."""

from keras import ops

from keras_resnet.blocks.parts import ConvSpec, make_conv

# The reduced channels are rounded to a multiple of this (timm's rule; Hu et al. 2018 use
# C / r with r = 16, which it equals for the ImageNet widths).
SE_DIVISOR = 8


def se_channels(channels, ratio):
    """The reduced channels of a squeeze-and-excitation unit on ``channels`` with ``ratio``
    (Hu et al. 2018, §3.2: C / r): rounded to the nearest multiple of 8, at least 8.

    Example:
        >>> se_channels(256, 1 / 16), se_channels(16, 1 / 16)
        (16, 8)
    """
    value = channels * ratio
    return max(SE_DIVISOR, int(value + SE_DIVISOR / 2) // SE_DIVISOR * SE_DIVISOR)


def make_squeeze_excite(owner, channels, ratio):
    """Set ``owner.se_reduce`` and ``owner.se_expand``: the two biased 1x1 convolutions of a
    squeeze-and-excitation unit on ``channels`` with ``ratio``.

    Example:
        >>> block = keras_resnet.ResidualBlock(256)
        >>> make_squeeze_excite(block, 256, 1 / 16); block.se_reduce.filters  # 256 -> 16 -> 256
        16
    """
    reduced = se_channels(channels, ratio)
    owner.se_reduce = make_conv(owner, ConvSpec("se_reduce", None, reduced, 1, 1, 1, 1),
                                use_bias=True)
    owner.se_expand = make_conv(owner, ConvSpec("se_expand", None, channels, 1, 1, 1, 1),
                                use_bias=True)


def build_squeeze_excite(owner, batch, channels):
    """Build ``owner``'s unit for a branch of ``channels`` channels.

    Example:
        >>> block = keras_resnet.ResidualBlock(256); make_squeeze_excite(block, 256, 1 / 16)
        >>> build_squeeze_excite(block, None, 256); tuple(block.se_expand.kernel.shape)
        (1, 1, 16, 256)
    """
    owner.se_reduce.build((batch, 1, 1, channels))
    owner.se_expand.build((batch, 1, 1, owner.se_reduce.filters))


def squeeze_excite(x, reduce, expand):
    """``x`` with each channel scaled by its excitation (Hu et al. 2018, Eq. 2-4).

    Example:
        >>> reduce, expand = keras.layers.Conv2D(8, 1), keras.layers.Conv2D(16, 1)
        >>> tuple(squeeze_excite(np.ones((1, 4, 4, 16), "float32"), reduce, expand).shape)
        (1, 4, 4, 16)
    """
    squeezed = ops.mean(x, axis=(1, 2), keepdims=True)
    scale = expand(ops.relu(reduce(squeezed)))
    return x * ops.sigmoid(scale)


def squeeze_excite_multiply_adds(channels, ratio):
    """Multiply-adds of the unit's two 1x1 convolutions on the squeezed vector.

    Example:
        >>> squeeze_excite_multiply_adds(256, 1 / 16)
        8192
    """
    return 2 * channels * se_channels(channels, ratio)
