"""RetinaNet's parts as Keras layers (Lin et al. 2017, "Focal Loss for Dense Object
Detection"; torchvision's ``retinanet_resnet50_fpn`` and ``_v2``): the feature pyramid, the
shared class and box subnets, the anchors of every level.

- :func:`feature_pyramid` (Lin et al. 2017, "Feature Pyramid Networks", §3; RetinaNet §4):
  a 1x1 lateral conv on each of C3..C5, the coarser level upsampled (nearest, to the lateral
  map's size: inputs that are not multiples of 32 work) and added, a 3x3 conv on each sum;
  P6 a 3x3 stride-2 conv on P5 (version 1) or on C5 (version 2), P7 one on ReLU(P6).
- :func:`retina_subnets` (RetinaNet §4, "Classification Subnet", "Box Regression Subnet"):
  four 3x3 convs of the pyramid's width with ReLU (version 2: no bias, GroupNorm of 32
  groups before each ReLU), then a 3x3 conv to ``A * K`` class logits (bias
  ``-log((1 - 0.01) / 0.01)``: the prior probability of §3.3) and one to ``A * 4`` box deltas;
  the same layers on every level, outputs flattened to ``(batch, h * w * A, K)`` per level.
- :class:`LevelAnchors`: the anchors of one level (:mod:`keras_resnet.heads.boxes`), computed
  from the image's and the level's sizes when the model runs.

Layer names (``fpn_lateral3``, ``cls_conv1``, ``box_predict``, ...) map to torchvision's state
dict in :mod:`keras_resnet.weights.detection`.

Example:
    >>> c = [keras.Input((None, None, n)) for n in (8, 16, 32)]
    >>> [tuple(p.shape) for p in feature_pyramid(c, 4, 1)][-1]
    (None, None, None, 4)
"""

import math

import keras
from keras import ops

from keras_resnet import boxes
from keras_resnet.errors import InvalidArgument, check_choice

VERSIONS = (1, 2)
PRIOR_PROBABILITY = 0.01  # RetinaNet §3.3: the classifier starts at this foreground score
LEVELS = (3, 4, 5, 6, 7)  # P3 .. P7 (§4: P3 to P7)
TOWER_DEPTH = 4  # §4: four 3x3 conv layers per subnet
# The dtype of the predictions, the anchors and what reads them, whatever the global policy.
OUTPUT_DTYPE = "float32"
GROUPS = 32  # version 2's GroupNorm (torchvision's retinanet_resnet50_fpn_v2)


def _lecun_uniform():
    # torchvision's FPN: kaiming_uniform_(a=1), i.e. uniform(+-sqrt(3 / fan_in)).
    return keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")


def _conv(filters, kernel_size, name, strides=1, use_bias=True, initializer=None,
          bias_initializer="zeros", dtype=None):
    return keras.layers.Conv2D(filters, kernel_size, strides=strides,
                               padding="same" if strides == 1 else "valid", use_bias=use_bias,
                               kernel_initializer=initializer or _lecun_uniform(),
                               bias_initializer=bias_initializer, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_resnet")
class NearestResizeLike(keras.layers.Layer):
    """Resizes ``inputs[0]`` to the height and width of ``inputs[1]`` by nearest neighbour
    as PyTorch's ``F.interpolate(x, size, mode="nearest")`` picks pixels: output index ``i``
    reads ``floor(i * in / out)`` (float32), so 2x repeats each pixel and other sizes work.

    Example:
        >>> x = NearestResizeLike()([np.arange(3.).reshape(1, 1, 3, 1), np.ones((1, 1, 5, 1))])
        >>> ops.convert_to_numpy(x)[0, 0, :, 0].tolist()
        [0.0, 0.0, 1.0, 1.0, 2.0]
    """

    def call(self, inputs):
        images, reference = inputs
        for axis in (1, 2):
            size_in = ops.shape(images)[axis]
            size_out = ops.shape(reference)[axis]
            scale = ops.cast(size_in, "float32") / ops.cast(size_out, "float32")
            index = ops.floor(ops.cast(ops.arange(size_out), "float32") * scale)
            index = ops.minimum(ops.cast(index, "int32"), size_in - 1)
            images = ops.take(images, index, axis=axis)
        return images

    def compute_output_shape(self, input_shape):
        images, reference = input_shape
        return (images[0], reference[1], reference[2], images[-1])


def _stride2_conv(x, filters, name):
    # torchvision's Conv2d(3, stride 2, padding 1): pad one pixel on every side first.
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return _conv(filters, 3, name, strides=2)(x)


def feature_pyramid(features, width=256, version=1, name="fpn"):
    """P3..P7 from C3..C5 (``features``, finest first), ``width`` channels each.

    Args:
        features: three tensors ``(batch, h, w, c)``, strides doubling.
        width: the pyramid's channels (256: torchvision's).
        version: 1 (P6 from P5) or 2 (P6 from C5: torchvision's ``_v2``).
        name: layer-name prefix.

    Returns:
        Five tensors, P3 first.

    Example:
        >>> len(feature_pyramid([keras.Input((8, 8, 4)), keras.Input((4, 4, 8)), keras.Input((2, 2, 8))], 4))
        5
    """
    check_choice("version", version, VERSIONS)
    if len(features) != 3:
        raise InvalidArgument(f"`features` must be C3, C4 and C5; got {len(features)} tensors.")
    laterals = [_conv(width, 1, f"{name}_lateral{level}")(c)
                for level, c in zip(LEVELS, features)]
    merged = [laterals[-1]]
    for level, lateral in zip((4, 3), reversed(laterals[:-1])):
        top_down = NearestResizeLike(name=f"{name}_upsample{level}")([merged[0], lateral])
        merged.insert(0, keras.layers.Add(name=f"{name}_merge{level}")([lateral, top_down]))
    outputs = [_conv(width, 3, f"{name}_output{level}")(m) for level, m in zip(LEVELS, merged)]
    p6 = _stride2_conv(outputs[-1] if version == 1 else features[-1], width, f"{name}_p6")
    p7 = _stride2_conv(keras.layers.ReLU(name=f"{name}_p6_relu")(p6), width, f"{name}_p7")
    return outputs + [p6, p7]


def _tower(name, width, version):
    """The subnet's four conv (+ GroupNorm) + ReLU layers, shared by every level."""
    initializer = keras.initializers.RandomNormal(stddev=0.01)
    layers = []
    for index in range(1, TOWER_DEPTH + 1):
        layers.append(_conv(width, 3, f"{name}_conv{index}", use_bias=version == 1,
                            initializer=initializer))
        if version == 2:
            layers.append(keras.layers.GroupNormalization(GROUPS, epsilon=1e-5,
                                                          name=f"{name}_conv{index}_gn"))
        layers.append(keras.layers.ReLU(name=f"{name}_conv{index}_relu"))
    return layers


def retina_subnets(pyramid, classes, anchors_per_cell, width=256, version=1):
    """Class logits and box deltas of every level.

    Args:
        pyramid: P3..P7 (:func:`feature_pyramid`).
        classes: object classes ``K`` (no background: a sigmoid per class).
        anchors_per_cell: ``A`` (9: three sizes by three ratios).
        width: the towers' channels (the pyramid's).
        version: 1 (conv with bias, ReLU) or 2 (conv, GroupNorm, ReLU).

    Returns:
        ``(class_logits, box_deltas)``: per level ``(batch, h * w * A, K)`` and
        ``(batch, h * w * A, 4)``.

    Example:
        >>> p = [keras.Input((s, s, 8)) for s in (8, 4, 2, 1, 1)]
        >>> tuple(retina_subnets(p, 3, 9, 8)[0][0].shape)
        (None, 576, 3)
    """
    check_choice("version", version, VERSIONS)
    normal = keras.initializers.RandomNormal(stddev=0.01)
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    # The predictions in float32 under a mixed policy (Keras' guide: the model's last layers):
    # bfloat16's 8 bits would round the logits, the deltas and the anchors they meet.
    cls_layers = _tower("cls", width, version) + [
        _conv(anchors_per_cell * classes, 3, "cls_predict", initializer=normal,
              bias_initializer=keras.initializers.Constant(prior), dtype=OUTPUT_DTYPE)]
    box_layers = _tower("box", width, version) + [
        _conv(anchors_per_cell * 4, 3, "box_predict", initializer=normal, dtype=OUTPUT_DTYPE)]
    class_logits, box_deltas = [], []
    for level, x in zip(LEVELS, pyramid):
        y, z = x, x
        for layer in cls_layers:
            y = layer(y)
        for layer in box_layers:
            z = layer(z)
        class_logits.append(keras.layers.Reshape((-1, classes), name=f"cls_flat{level}",
                                                 dtype=OUTPUT_DTYPE)(y))
        box_deltas.append(keras.layers.Reshape((-1, 4), name=f"box_flat{level}",
                                               dtype=OUTPUT_DTYPE)(z))
    return class_logits, box_deltas


@keras.saving.register_keras_serializable(package="keras_resnet")
class LevelAnchors(keras.layers.Layer):
    """The anchors of one pyramid level, ``(batch, h * w * A, 4)``, from ``[images, level]``:
    the cell's anchors (``sizes`` by ``ratios``) every ``image size // level size`` pixels.

    Args:
        sizes: the level's anchor sizes in pixels, e.g. ``(32, 40, 50)``.
        ratios: aspect ratios (height / width).

    Example:
        >>> LevelAnchors((32,), (1.0,))([np.zeros((1, 16, 16, 3)), np.zeros((1, 2, 2, 8))]).shape
        TensorShape([1, 4, 4])
    """

    def __init__(self, sizes, ratios=boxes.ASPECT_RATIOS, **kwargs):
        super().__init__(**kwargs)
        self.sizes = tuple(int(s) for s in sizes)
        self.ratios = tuple(float(r) for r in ratios)
        if not self.sizes or min(self.sizes) <= 0 or not self.ratios or min(self.ratios) <= 0:
            raise InvalidArgument(f"Anchor `sizes` and `ratios` must be positive; got "
                                  f"{sizes!r} and {ratios!r}.")
        self.cell = boxes.cell_anchors(self.sizes, self.ratios)

    def call(self, inputs):
        images, level = inputs
        image_shape, level_shape = ops.shape(images), ops.shape(level)
        anchors = boxes.grid_anchors(self.cell, level_shape[1], level_shape[2],
                                     image_shape[1] // level_shape[1],
                                     image_shape[2] // level_shape[2])
        return ops.broadcast_to(anchors[None], (image_shape[0],) + tuple(ops.shape(anchors)))

    def compute_output_shape(self, input_shape):
        _, level = input_shape
        count = None if None in level[1:3] else level[1] * level[2] * len(self.cell)
        return (input_shape[0][0], count, 4)

    def get_config(self):
        return {**super().get_config(), "sizes": list(self.sizes), "ratios": list(self.ratios)}


__all__ = ["LevelAnchors", "NearestResizeLike", "feature_pyramid", "retina_subnets"]
