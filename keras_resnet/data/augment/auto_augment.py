"""RandAugment and TrivialAugment per image, as the recipes' sources draw and apply them:

- ``"rand_augment"``: timm's ``rand-mM-mstd0.5-inc1`` (Cubuk et al. 2019; timm/data/
  auto_augment.py, ``rand_augment_transform``), RSB's: ``num_ops`` ops drawn per image from
  timm's 15 (``_RAND_INCREASING_TRANSFORMS``), with replacement; each applied with probability
  0.5 (``AugmentOp.prob``), at a magnitude drawn from N(M, 0.5) clipped to [0, 10], with a
  random sign for the signed ops (``_randomly_negate``); the op's argument from the magnitude
  as timm's ``*_level_to_arg``. Borders filled with timm's ImageNet mean (124, 116, 104).
- ``"trivial_augment"``: torchvision's ``TrivialAugmentWide`` (Müller and Hutter 2021;
  torchvision/transforms/autoaugment.py), the torchvision recipe's: one of its 14 ops per
  image, at one of 31 magnitude bins drawn uniformly, a random sign for the signed ops;
  borders black (``fill=None``).

The ops are PIL's, as both sources apply them to 8-bit PIL images: values are rounded to
0..255 integers before and after each op, and PIL's arithmetic is followed (``ImageEnhance``'s
blend truncates; the grey of ``convert("L")``; ``ImageOps.autocontrast``, ``equalize``,
``posterize``, ``solarize``; timm's ``solarize_add``). Geometry is Keras'
``ops.image.affine_transform`` with PIL's affine matrices moved to pixel-index coordinates.
Keras' own image layers are not used for the colour ops: their brightness adds where PIL
multiplies, their contrast takes per-channel means, their equalize and auto-contrast map
values otherwise than PIL's. Departure left: the geometry is bilinear where timm picks
bilinear or bicubic at random (``_RANDOM_INTERPOLATION``), so edges differ by a grey level or
so.

Example:
    >>> augment = AutoAugment("rand_augment", num_ops=2, magnitude=0.7)
    >>> augment(tf.zeros((32, 32, 3)), tf.constant([1, 2])).shape
    TensorShape([32, 32, 3])
"""

import functools
import math

import keras
import tensorflow as tf

from keras_resnet.errors import InvalidArgument

KINDS = ("trivial_augment", "rand_augment")
# timm's _RAND_INCREASING_TRANSFORMS, in its order (the "Increasing" variants of posterize,
# solarize and the four enhancements).
RAND_AUGMENT_OPS = (
    "auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add",
    "color", "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x",
    "translate_y",
)
# torchvision's TrivialAugmentWide._augmentation_space, in its order.
TRIVIAL_AUGMENT_OPS = (
    "identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
    "color", "contrast", "sharpness", "posterize", "solarize", "auto_contrast", "equalize",
)
MAGNITUDE_STD = 0.5  # timm's "mstd0.5", in its magnitude units (0..10)
APPLY_PROBABILITY = 0.5  # timm's AugmentOp prob
TRIVIAL_BINS = 31  # torchvision's num_magnitude_bins
# timm's create_transform: img_mean = round(255 * ImageNet mean); torchvision: fill=None
FILL = {"rand_augment": (124.0, 116.0, 104.0), "trivial_augment": (0.0, 0.0, 0.0)}


def _to_uint8(image):
    """PIL's 8-bit values: rounded half up and clipped to 0..255, kept as float32."""
    return tf.clip_by_value(tf.floor(image + 0.5), 0.0, 255.0)


# ---- the ops, each ``op(image, arg, fill)`` on a float32 (h, w, 3) image of 0..255 integers


def _affine(image, matrix, fill):
    """PIL's ``Image.transform(AFFINE, (a, b, c, d, e, f))``, bilinear: the output pixel
    centred at (x, y) samples the input at (a x + b y + c, d x + e y + f); a point inside
    the image's outer edge and beyond the outer pixel centres takes the edge's value, one
    outside the image ``fill``; values truncated."""
    a, b, c, d, e, f = [tf.cast(v, tf.float32) for v in matrix]
    # PIL's pixel centres lie at i + 0.5, Keras' at i.
    c, f = c + (a + b - 1.0) / 2, f + (d + e - 1.0) / 2
    out = keras.ops.image.affine_transform(image, tf.stack([a, b, c, d, e, f, 0.0, 0.0]),
                                           interpolation="bilinear", fill_mode="nearest")
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    y, x = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32),
                       indexing="ij")
    x_in, y_in = a * x + b * y + c, d * x + e * y + f
    # PIL's Geometry.c, BILINEAR_HEAD: the point in [0, w) x [0, h), pixel centres at i + 0.5
    inside = ((x_in >= -0.5) & (x_in < tf.cast(w, tf.float32) - 0.5) & (y_in >= -0.5)
              & (y_in < tf.cast(h, tf.float32) - 0.5))
    return tf.where(inside[..., None], tf.floor(out + 1e-3), fill)


def _rotate(image, degrees, fill):
    """PIL's ``Image.rotate(degrees)``: counter-clockwise about the image's centre."""
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    angle = -tf.cast(degrees, tf.float32) * math.pi / 180.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    matrix = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    return _affine(image, matrix, fill)


def _grey(image):
    """PIL's ``convert("L")``: (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point."""
    weights = tf.constant([19595.0, 38470.0, 7471.0])
    return tf.floor((tf.reduce_sum(image * weights, -1, keepdims=True) + 32768.0) / 65536.0)


def _blend(degenerate, image, factor):
    """PIL's ``Image.blend`` as ``ImageEnhance`` uses it: truncated, clipped to 0..255."""
    out = degenerate + tf.cast(factor, tf.float32) * (image - degenerate)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0))


def _smooth(image):
    """PIL's ``ImageFilter.SMOOTH`` (3x3, centre 5, the rest 1, over 13); the outermost rows
    and columns kept as they are."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(_to_uint8(smooth), [[1, 1], [1, 1], [0, 0]])
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    rows, columns = tf.range(h)[:, None, None], tf.range(w)[None, :, None]
    inner = (rows > 0) & (rows < h - 1) & (columns > 0) & (columns < w - 1)
    return tf.where(inner, smooth, image)


def _enhance(name, image, factor, _fill):
    """``ImageEnhance.<name>(image).enhance(factor)``."""
    if name == "color":
        degenerate = _grey(image)
    elif name == "contrast":
        degenerate = tf.fill(tf.shape(image), tf.floor(tf.reduce_mean(_grey(image)) + 0.5))
    elif name == "brightness":
        degenerate = tf.zeros_like(image)
    else:
        degenerate = _smooth(image)
    return _blend(degenerate, image, factor)


def _auto_contrast(image, _arg, _fill):
    """``ImageOps.autocontrast``: each channel's range stretched to 0..255, truncated."""
    x = tf.cast(image, tf.float64)
    low, high = tf.reduce_min(x, [0, 1]), tf.reduce_max(x, [0, 1])
    scale = 255.0 / tf.maximum(high - low, 1.0)
    out = tf.clip_by_value(tf.floor(x * scale - low * scale), 0.0, 255.0)
    return tf.cast(tf.where(high > low, out, x), tf.float32)


def _equalize_channel(channel):
    """``ImageOps.equalize`` of one channel: PIL's lookup table from its histogram."""
    values = tf.cast(tf.reshape(channel, [-1]), tf.int32)
    histogram = tf.math.bincount(values, minlength=256, maxlength=256)
    last = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)[:, 0]))
    step = (tf.reduce_sum(histogram) - last) // 255
    safe = tf.maximum(step, 1)
    lookup = (step // 2 + tf.cumsum(histogram, exclusive=True)) // safe
    out = tf.cast(tf.gather(tf.minimum(lookup, 255), tf.cast(channel, tf.int32)), tf.float32)
    return tf.where(step > 0, out, channel)


def _equalize(image, _arg, _fill):
    return tf.stack([_equalize_channel(image[..., i]) for i in range(3)], -1)


def _posterize(image, bits, _fill):
    """``ImageOps.posterize``: the ``bits`` highest bits kept (0 bits: black; 8: as is)."""
    step = tf.pow(2.0, 8.0 - tf.cast(tf.minimum(bits, 8), tf.float32))
    return tf.floor(image / step) * step


def _solarize(image, threshold, _fill):
    """``ImageOps.solarize``: values at or above ``threshold`` inverted."""
    return tf.where(image >= tf.cast(threshold, tf.float32), 255.0 - image, image)


def _solarize_add(image, add, _fill):
    """timm's ``solarize_add``: ``add`` added to values under 128, capped at 255."""
    return tf.where(image < 128.0, tf.minimum(255.0, image + tf.cast(add, tf.float32)), image)


OPS = {
    "identity": lambda image, _arg, _fill: image,
    "auto_contrast": _auto_contrast,
    "equalize": _equalize,
    "invert": lambda image, _arg, _fill: 255.0 - image,
    "rotate": _rotate,
    "posterize": _posterize,
    "solarize": _solarize,
    "solarize_add": _solarize_add,
    "shear_x": lambda image, v, fill: _affine(image, (1, v, 0, 0, 1, 0), fill),
    "shear_y": lambda image, v, fill: _affine(image, (1, 0, 0, v, 1, 0), fill),
    "translate_x": lambda image, pixels, fill: _affine(image, (1, 0, pixels, 0, 1, 0), fill),
    "translate_y": lambda image, pixels, fill: _affine(image, (1, 0, 0, 0, 1, pixels), fill),
    **{name: functools.partial(_enhance, name)
       for name in ("color", "contrast", "brightness", "sharpness")},
}

# ---- each op's argument from a magnitude ``level`` in [0, 1] and a ``sign`` (+1 or -1)


def _enhance_increasing(level, sign, _size):
    return tf.maximum(0.1, 1.0 + sign * 0.9 * level)  # timm: kept >= 0.1


# timm's *_level_to_arg (level = magnitude / 10); translations in pixels of (h, w)
RAND_AUGMENT_ARGS = {
    "rotate": lambda level, sign, _size: 30.0 * level * sign,
    "posterize": lambda level, _sign, _size: 4.0 - tf.floor(level * 4.0),
    "solarize": lambda level, _sign, _size: 256.0 - tf.minimum(256.0, tf.floor(level * 256.0)),
    "solarize_add": lambda level, _sign, _size: tf.minimum(128.0, tf.floor(level * 110.0)),
    "shear_x": lambda level, sign, _size: 0.3 * level * sign,
    "shear_y": lambda level, sign, _size: 0.3 * level * sign,
    "translate_x": lambda level, sign, size: 0.45 * level * sign * size[1],
    "translate_y": lambda level, sign, size: 0.45 * level * sign * size[0],
    **{name: _enhance_increasing for name in ("color", "contrast", "brightness", "sharpness")},
}


def _enhance_wide(level, sign, _size):
    return 1.0 + 0.99 * level * sign


# torchvision's TrivialAugmentWide._augmentation_space (level = bin / 30); translations in
# whole pixels (``int(magnitude)``), F.affine's moving the content by +t (PIL's offset -t)
TRIVIAL_AUGMENT_ARGS = {
    "shear_x": lambda level, sign, _size: 0.99 * level * sign,
    "shear_y": lambda level, sign, _size: 0.99 * level * sign,
    "translate_x": lambda level, sign, _size: -tf.floor(32.0 * level) * sign,
    "translate_y": lambda level, sign, _size: -tf.floor(32.0 * level) * sign,
    "rotate": lambda level, sign, _size: 135.0 * level * sign,
    "posterize": lambda level, _sign, _size: 8.0 - tf.round(level * 6.0),
    "solarize": lambda level, _sign, _size: 255.0 * (1.0 - level),
    **{name: _enhance_wide for name in ("color", "contrast", "brightness", "sharpness")},
}


class AutoAugment:
    """``augment(image, seed)``: the source's ops drawn per image with the stateless
    ``seed``; float32 out, 0..255 integers (as PIL's 8-bit images).

    Args:
        kind: ``"rand_augment"`` (timm's RandAugment) or ``"trivial_augment"``
            (torchvision's TrivialAugmentWide).
        num_ops: RandAugment's ops per image (TrivialAugment applies one).
        magnitude: RandAugment's M / 10, in [0, 1] (TrivialAugment draws its own).

    ``ops`` names the ops in the source's order; :meth:`draws` gives what a seed draws and
    :meth:`apply` one op at a given level and sign.
    """

    def __init__(self, kind, num_ops=1, magnitude=1.0):
        if kind not in KINDS:
            raise InvalidArgument(
                f"`auto_augment` must be one of {', '.join(KINDS)}; got {kind!r}.")
        if not 0.0 <= magnitude <= 1.0:
            raise InvalidArgument(f"`magnitude` must be in [0, 1]; got {magnitude!r}.")
        self.kind, self.magnitude = kind, float(magnitude)
        self.num_ops = num_ops if kind == "rand_augment" else 1
        self.ops = RAND_AUGMENT_OPS if kind == "rand_augment" else TRIVIAL_AUGMENT_OPS
        self.args = RAND_AUGMENT_ARGS if kind == "rand_augment" else TRIVIAL_AUGMENT_ARGS
        self.fill = tf.constant(FILL[kind], tf.float32)

    def draws(self, seed):
        """What ``seed`` draws for each of the ``num_ops`` ops, in the order they apply:
        ``{"ops": positions in ops (uniform, with replacement), "applied": bool, "levels":
        magnitudes in [0, 1], "signs": +1 or -1}``."""
        n = (self.num_ops,)
        op_seed, apply_seed, level_seed, sign_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 4))
        ops = tf.random.stateless_uniform(n, op_seed, 0, len(self.ops), dtype=tf.int32)
        signs = tf.where(tf.random.stateless_uniform(n, sign_seed) < 0.5, -1.0, 1.0)
        if self.kind == "trivial_augment":  # every op applies, at one of 31 bins
            bins = tf.random.stateless_uniform(n, level_seed, 0, TRIVIAL_BINS, dtype=tf.int32)
            return {"ops": ops, "applied": tf.ones(n, tf.bool), "signs": signs,
                    "levels": tf.cast(bins, tf.float32) / (TRIVIAL_BINS - 1)}
        # timm: skipped when random() > prob; magnitude gauss(M, 0.5) clipped to [0, 10]
        applied = tf.random.stateless_uniform(n, apply_seed) <= APPLY_PROBABILITY
        noise = tf.random.stateless_normal(n, level_seed) * MAGNITUDE_STD
        levels = tf.clip_by_value(self.magnitude * 10.0 + noise, 0.0, 10.0) / 10.0
        return {"ops": ops, "applied": applied, "levels": levels, "signs": signs}

    def apply(self, name, image, level, sign=1.0):
        """The op ``name`` on a float32 image of 0..255 integers at ``level`` in [0, 1]."""
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        arg = self.args[name](level, sign, size) if name in self.args else 0.0
        return _to_uint8(tf.reshape(OPS[name](image, arg, self.fill), tf.shape(image)))

    def __call__(self, image, seed):
        image = _to_uint8(tf.cast(image, tf.float32))
        draws = self.draws(seed)
        for i in range(self.num_ops):
            level, sign = draws["levels"][i], draws["signs"][i]
            branches = [functools.partial(self.apply, name, image, level, sign)
                        for name in self.ops]
            chosen = functools.partial(tf.switch_case, draws["ops"][i], branches)
            image = tf.ensure_shape(
                tf.cond(draws["applied"][i], chosen, functools.partial(tf.identity, image)),
                image.shape)
        return image
