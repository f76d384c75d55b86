"""The shortcut of a residual block (He et al. 2015, §3.3) and ResNet-D's pooled projection.

Kinds: ``"identity"`` (``x`` itself), ``"zero_pad"`` (option A: ``x`` subsampled by the stride,
the extra channels zero-padded, no parameters), ``"projection"`` (options B/C: a 1x1 convolution
with the stride, then BN) and ``"none"`` (a *plain* block, Fig. 3 middle). The paper's options
name a rule instead, decided when the block sees its input (§3.3):

- ``"A"``: identity when the shape is kept, else zero-padding;
- ``"B"``: identity when the shape is kept, else a projection;
- ``"C"``: always a projection.
"""

from keras import ops

from keras_resnet.blocks.parts import ConvSpec, make_batch_norm, make_conv, spatial_shape
from keras_resnet.errors import InvalidArgument

SHORTCUTS = ("identity", "zero_pad", "projection", "none")
OPTIONS = ("A", "B", "C")


def normalize_shortcut(shortcut):
    """``shortcut`` as the blocks store it: an option letter upper-case, a kind lower-case;
    InvalidArgument naming the allowed values otherwise.

    Example:
        >>> normalize_shortcut("b"), normalize_shortcut("Projection")
        ('B', 'projection')
    """
    if isinstance(shortcut, str):
        if shortcut.upper() in OPTIONS:
            return shortcut.upper()
        if shortcut.lower() in SHORTCUTS:
            return shortcut.lower()
    allowed = ", ".join(map(repr, SHORTCUTS + OPTIONS))
    raise InvalidArgument(f"`shortcut` must be one of {allowed} (letters in any case); "
                          f"got {shortcut!r}.")


def shortcut_kind(shortcut, in_channels, out_channels, strides):
    """The kind of shortcut ``shortcut`` (a kind or one of §3.3's options) gives a block from
    ``in_channels`` to ``out_channels`` with ``strides``.

    Example:
        >>> shortcut_kind("A", 16, 32, 2), shortcut_kind("B", 64, 64, 1)
        ('zero_pad', 'identity')
    """
    kept = in_channels == out_channels and strides == 1
    if shortcut == "A":
        return "identity" if kept else "zero_pad"
    if shortcut == "B":
        return "identity" if kept else "projection"
    if shortcut == "C":
        return "projection"
    return shortcut


def check_shortcut_fits(kind, in_channels, out_channels):
    """InvalidArgument when a ``kind`` shortcut cannot carry ``in_channels`` to
    ``out_channels``: identity keeps the channels, zero-padding can only add some.

    Example:
        >>> check_shortcut_fits("zero_pad", 16, 32)
    """
    if kind == "identity" and in_channels != out_channels:
        raise InvalidArgument(
            f"`shortcut='identity'` needs input channels == output channels; got "
            f"{in_channels} -> {out_channels}. Use 'zero_pad' or 'projection'."
        )
    if kind == "zero_pad" and in_channels > out_channels:
        raise InvalidArgument(
            f"`shortcut='zero_pad'` can only add channels; got {in_channels} -> "
            f"{out_channels}. Use 'projection'."
        )


def zero_pad(x, strides, out_channels):
    """§3.3, option A: ``x`` subsampled by ``strides``, its new channels zero-padded.

    Example:
        >>> tuple(zero_pad(keras.ops.ones((1, 8, 8, 16)), 2, 32).shape)
        (1, 4, 4, 32)
    """
    if strides > 1:
        x = x[:, ::strides, ::strides, :]
    extra = out_channels - x.shape[-1]
    if extra:
        x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
    return x


def average_down(x, strides, dilation_rate):
    """ResNet-D's pooling before its projection (He et al. 2019, "Bag of Tricks", §4.1, Fig.
    2(c)): a 2x2 average (padding excluded) with the stride, so the 1x1 convolution after it
    reads every input pixel. A dilated stage keeps timm's 2x2 average at stride 1 over a
    zero-padded bottom and right edge (the zeros counted), so its weights give its outputs.

    Example:
        >>> tuple(average_down(keras.ops.ones((1, 8, 8, 16)), 2, 1).shape)
        (1, 4, 4, 16)
    """
    if strides > 1:
        return ops.average_pool(x, 2, strides, padding="same")
    if dilation_rate > 1:
        return ops.average_pool(ops.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), 2, 1)
    return x


def make_projection(owner, normalized):
    """Set ``owner.shortcut_conv`` (and ``owner.shortcut_bn`` when ``normalized``): §3.3's
    projection, a 1x1 convolution with the block's stride and BN. A pre-activation projection
    has no BN after it, so it carries a bias (as in keras.applications' V2 nets); ResNet-D's
    strides in its average pool instead.

    Example:
        >>> block = keras_resnet.ResidualBlock(8, strides=2, shortcut="projection")
        >>> make_projection(block, normalized=True); block.shortcut_conv.strides
        (2, 2)
    """
    strides = 1 if owner.avg_down else owner.strides
    spec = ConvSpec("shortcut_conv", "shortcut_bn", owner.output_channels, 1, strides, 1, 1)
    owner.shortcut_conv = make_conv(owner, spec, use_bias=True if not normalized else None)
    if normalized:
        owner.shortcut_bn = make_batch_norm(owner, "shortcut_bn")


def build_projection(owner, input_shape):
    """Build ``owner``'s projection for the block input ``input_shape``.

    Example:
        >>> block = keras_resnet.ResidualBlock(8, strides=2, shortcut="projection")
        >>> make_projection(block, normalized=True)
        >>> build_projection(block, (None, 56, 56, 4)); tuple(block.shortcut_conv.kernel.shape)
        (1, 1, 4, 8)
    """
    pooled = spatial_shape(input_shape, owner.strides, input_shape[-1])
    owner.shortcut_conv.build(pooled if owner.avg_down else input_shape)
    if hasattr(owner, "shortcut_bn"):
        owner.shortcut_bn.build(spatial_shape(input_shape, owner.strides, owner.output_channels))


def apply_projection(owner, x, training):
    """``owner``'s projection of ``x`` (already BN-ReLU'd in a pre-activation block).

    Example:
        >>> block = keras_resnet.ResidualBlock(8, strides=2, shortcut="projection")
        >>> make_projection(block, normalized=True)
        >>> tuple(apply_projection(block, np.ones((1, 8, 8, 4), "float32"), False).shape)
        (1, 4, 4, 8)
    """
    if owner.avg_down:
        x = average_down(x, owner.strides, owner.dilation_rate)
    y = owner.shortcut_conv(x)
    return owner.shortcut_bn(y, training=training) if hasattr(owner, "shortcut_bn") else y
