"""Semantic-segmentation heads as Keras layers: FCN's head, DeepLabV3's ASPP head and
DeepLabV3+'s decoder, each built on a backbone's stage outputs in a functional model.

- :func:`fcn_head`: torchvision's ``FCNHead`` (Long et al. 2015, as torchvision builds it):
  3x3 conv to a quarter of the channels, BN, ReLU, dropout 0.1, 1x1 conv to the classes.
- :func:`aspp`: atrous spatial pyramid pooling (Chen et al. 2017, "Rethinking Atrous
  Convolution", §3.3), torchvision's ``ASPP``: a 1x1 branch, a dilated 3x3 branch per rate,
  an image-pooling branch, concatenated and projected (1x1, BN, ReLU, dropout 0.5).
- :func:`deeplab_head`: torchvision's ``DeepLabHead``: ASPP, 3x3 conv, BN, ReLU, 1x1 conv.
- :func:`deeplabv3plus_decoder`: Chen et al. 2018 (arXiv 1802.02611), §3.1: ASPP output
  upsampled to the low-level (conv2) features, which a 1x1 conv reduces to 48 channels;
  concatenated, two 3x3 convs, a 1x1 conv to the classes.
- :class:`ResizeLike`: bilinear resizing of one tensor to the height and width of another
  (half-pixel centres: PyTorch's ``interpolate(..., align_corners=False)``).

Every head returns logits at its input's resolution; the constructors
(:mod:`keras_resnet.heads.segmenters`) resize them to the image. Layer names are fixed by
``name`` (``f"{name}_conv"``, ...); :mod:`keras_resnet.weights.segmentation` maps them to
torchvision's state-dict names.

Example:
    >>> x = keras.Input((None, None, 64))
    >>> keras.Model(x, fcn_head(x, 5, "head")).output_shape
    (None, None, None, 5)
"""

import dataclasses

import keras

from keras_resnet.errors import InvalidArgument, check_positive_int

# DeepLabV3's atrous rates (Chen et al. 2017, §4.1 and torchvision's DeepLabHead) at output
# stride 8 (12, 24, 36) and 16 (6, 12, 18): the same rates in image pixels.
RATES_AT_STRIDE_16 = (6, 12, 18)
DEEPLAB_CROP = 513  # the side of DeepLab's training crops, for which its rates are chosen
DEFAULT_WIDTH = 256  # torchvision's ASPP and DeepLabHead width
LOW_LEVEL_WIDTH = 48  # Chen et al. 2018, §4.1: the low-level features' 1x1 conv
INTERPOLATIONS = ("bilinear", "nearest")


@dataclasses.dataclass(frozen=True)
class HeadSettings:
    """What every conv and BN of a head shares: the backbone's BN settings (torchvision's
    heads use PyTorch's defaults, epsilon 1e-5 and momentum 0.1 = Keras' 0.9).

    Example:
        >>> HeadSettings(1e-5, 0.9).epsilon
        1e-05
    """

    epsilon: float = 1e-5
    momentum: float = 0.9

    def batch_norm(self, name):
        return keras.layers.BatchNormalization(epsilon=self.epsilon, momentum=self.momentum,
                                               name=name)


def atrous_rates(output_stride, image_size=None):
    """DeepLabV3's three ASPP rates at ``output_stride`` (8: 12, 24, 36; 16: 6, 12, 18; 32:
    3, 6, 9; a CIFAR net's 4: 24, 48, 72): the rates of stride 16 scaled, so each branch
    sees the same image area. Those areas are made for DeepLab's 513x513 crops; with
    ``image_size`` (the side of the training images) each branch sees the same share of the
    image instead: the rates times ``image_size / 513``, rounded, at least 1 (a rate of the
    feature map's size or more reads only zero padding).

    Example:
        >>> atrous_rates(8), atrous_rates(4, image_size=64)
        ((12, 24, 36), (3, 6, 9))
    """
    if output_stride not in (4, 8, 16, 32) or isinstance(output_stride, bool):
        raise InvalidArgument(f"`output_stride` must be 4, 8, 16 or 32 for DeepLab's atrous "
                              f"rates; got {output_stride!r}.")
    rates = tuple(rate * 16 // output_stride for rate in RATES_AT_STRIDE_16)
    if image_size is None:
        return rates
    check_positive_int("image_size", image_size)
    return tuple(max(1, round(rate * image_size / DEEPLAB_CROP)) for rate in rates)


@keras.saving.register_keras_serializable(package="keras_resnet")
class ResizeLike(keras.layers.Layer):
    """Resizes ``inputs[0]`` to the height and width of ``inputs[1]`` (any size, known only
    when the model runs): bilinear with half-pixel centres, as PyTorch's
    ``F.interpolate(..., mode="bilinear", align_corners=False)``, without antialiasing.

    Args:
        interpolation: "bilinear" or "nearest".

    Example:
        >>> ResizeLike()([np.ones((1, 2, 2, 3)), np.ones((1, 5, 7, 1))]).shape
        TensorShape([1, 5, 7, 3])
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in INTERPOLATIONS:
            raise InvalidArgument(f"`interpolation` must be one of {INTERPOLATIONS}; got "
                                  f"{interpolation!r}.")
        self.interpolation = interpolation

    def call(self, inputs):
        images, reference = inputs
        size = keras.ops.shape(reference)[1:3]
        return keras.ops.image.resize(images, size, interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        images, reference = input_shape
        return (images[0], reference[1], reference[2], images[-1])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


def conv_bn_relu(x, filters, kernel_size, name, settings, dilation_rate=1):
    """Conv (no bias, "same" padding: torchvision's ``padding=dilation``), BN, ReLU; layers
    ``name``, ``f"{name}_bn"``, ``f"{name}_relu"``.

    Example:
        >>> conv_bn_relu(keras.Input((8, 8, 4)), 2, 3, "c", HeadSettings()).shape
        (None, 8, 8, 2)
    """
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation_rate,
                            use_bias=False, kernel_initializer="he_normal", name=name)(x)
    x = settings.batch_norm(f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _logits(x, classes, name):
    check_positive_int("classes", classes)
    return keras.layers.Conv2D(classes, 1, name=name)(x)


def fcn_head(x, classes, name, settings=None):
    """torchvision's ``FCNHead``: 3x3 conv to ``channels // 4`` (no bias), BN, ReLU, dropout
    0.1, 1x1 conv (with bias) to ``classes`` logits.

    Layers: ``f"{name}_conv"`` (+ ``_bn``, ``_relu``), ``f"{name}_dropout"``,
    ``f"{name}_logits"``.

    Returns:
        The logits at ``x``'s resolution.

    Example:
        >>> fcn_head(keras.Input((8, 8, 64)), 3, "aux").shape
        (None, 8, 8, 3)
    """
    settings = settings or HeadSettings()
    channels = int(x.shape[-1])
    if channels < 4:
        raise InvalidArgument(f"An FCN head reduces its {channels} input channels to a quarter; "
                              "it needs at least 4.")
    x = conv_bn_relu(x, channels // 4, 3, f"{name}_conv", settings)
    x = keras.layers.Dropout(0.1, name=f"{name}_dropout")(x)
    return _logits(x, classes, f"{name}_logits")


def aspp(x, rates, width=DEFAULT_WIDTH, name="aspp", settings=None):
    """torchvision's ``ASPP(in_channels, rates, out_channels=width)``: a 1x1 branch
    (``f"{name}_branch0"``), a 3x3 branch dilated by each rate (``_branch1`` ...), the
    image-pooling branch (global average, 1x1 conv, BN, ReLU, broadcast back: ``_pool_conv``),
    concatenated and projected: 1x1 conv, BN, ReLU, dropout 0.5 (``_project``).

    Example:
        >>> aspp(keras.Input((8, 8, 32)), (1, 2, 3), width=16).shape
        (None, 8, 8, 16)
    """
    settings = settings or HeadSettings()
    check_positive_int("head_width", width)
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
        raise InvalidArgument(f"`atrous_rates` must be positive integers; got {rates!r}.")
    branches = [conv_bn_relu(x, width, 1, f"{name}_branch0", settings)]
    for index, rate in enumerate(rates, start=1):
        branches.append(conv_bn_relu(x, width, 3, f"{name}_branch{index}", settings, rate))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = conv_bn_relu(pooled, width, 1, f"{name}_pool_conv", settings)
    # torchvision's ASPPPooling: bilinear interpolation of the 1x1 map, a broadcast.
    branches.append(ResizeLike(name=f"{name}_pool_resize")([pooled, x]))
    x = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    x = conv_bn_relu(x, width, 1, f"{name}_project", settings)
    return keras.layers.Dropout(0.5, name=f"{name}_dropout")(x)


def deeplab_head(x, classes, rates, width=DEFAULT_WIDTH, name="deeplab_head", settings=None):
    """torchvision's ``DeepLabHead`` with a ``width``-channel ASPP (:func:`aspp`, layers
    ``aspp_*``), then a 3x3 conv of ``width`` (``f"{name}_conv"``), BN, ReLU, and a 1x1 conv
    to ``classes`` (``f"{name}_logits"``).

    Example:
        >>> deeplab_head(keras.Input((8, 8, 32)), 3, (1, 2, 3), width=8).shape
        (None, 8, 8, 3)
    """
    settings = settings or HeadSettings()
    x = aspp(x, rates, width, "aspp", settings)
    x = conv_bn_relu(x, width, 3, f"{name}_conv", settings)
    return _logits(x, classes, f"{name}_logits")


def deeplabv3plus_decoder(high, low, classes, rates, width=DEFAULT_WIDTH, name="decoder",
                          settings=None):
    """DeepLabV3+ (Chen et al. 2018, §3.1 and Fig. 2): :func:`aspp` on ``high`` (conv5),
    upsampled bilinearly to ``low`` (conv2), whose 1x1 conv reduces it to 48 channels
    (``f"{name}_low"``, BN, ReLU); concatenated, two 3x3 convs of ``width`` with BN and ReLU
    (``f"{name}_conv1"``, ``f"{name}_conv2"``), and a 1x1 conv to ``classes``
    (``f"{name}_logits"``).

    Returns:
        The logits at ``low``'s resolution.

    Example:
        >>> high, low = keras.Input((4, 4, 32)), keras.Input((16, 16, 8))
        >>> deeplabv3plus_decoder(high, low, 3, (1, 2, 3), width=8).shape
        (None, 16, 16, 3)
    """
    settings = settings or HeadSettings()
    x = aspp(high, rates, width, "aspp", settings)
    x = ResizeLike(name=f"{name}_upsample")([x, low])
    reduced = conv_bn_relu(low, LOW_LEVEL_WIDTH, 1, f"{name}_low", settings)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, reduced])
    x = conv_bn_relu(x, width, 3, f"{name}_conv1", settings)
    x = conv_bn_relu(x, width, 3, f"{name}_conv2", settings)
    return _logits(x, classes, f"{name}_logits")
