"""TrivialAugment and RandAugment per image, from Keras' own image layers at the ranges of the
recipes' sources.

Keras' ``RandAugment`` gives every op one ``factor`` in Keras' terms: at 0.7 it rotates by up
to 0.7 of a full turn and translates by up to 70% of the side, where timm's RandAugment at
magnitude 7 rotates by 21 degrees and translates by 31%. Here each op is its Keras layer set
to the source's strength at full magnitude (``OP_RANGES``), scaled by the recipe's magnitude:

- ``"trivial_augment"``: torchvision's ``TrivialAugmentWide`` (Müller and Hutter 2021), the
  torchvision recipe's: one op per image, its strength drawn uniformly up to the full range.
- ``"rand_augment"``: timm's ``rand-mM-mstd0.5-inc1`` (Cubuk et al. 2019), RSB's:
  ``num_ops`` ops per image, each of strength up to ``M/10`` of the range (Keras layers draw
  uniformly up to their factor; timm draws near M, with a noise of 0.5).

The 14 ops are torchvision's: identity, shear x/y, translate x/y, rotate, brightness, colour,
contrast, sharpness, posterize, solarize, auto-contrast, equalize (timm's list adds invert and
solarize-add). Keras' brightness adds up to the factor times 255 where PIL multiplies; the
other colour ops scale as PIL's. Written here: the per-image choice of ops
(``tf.switch_case``: only the chosen op runs).

Example:
    >>> augment = AutoAugment("rand_augment", num_ops=2, magnitude=0.7)
    >>> augment(tf.zeros((32, 32, 3)), tf.constant([1, 2])).shape
    TensorShape([32, 32, 3])
"""

import functools

import keras
import tensorflow as tf

from keras_resnet.errors import InvalidArgument

# Each op's strength at full magnitude, in its Keras layer's terms: (torchvision's
# TrivialAugmentWide, timm's RandAugment). Degrees; translation as a fraction of the side
# (torchvision: 32 pixels of 224); shear and colour factors.
OP_RANGES = {
    "shear": (0.99, 0.3),
    "translate": (32 / 224, 0.45),
    "rotate": (135.0, 30.0),
    "brightness": (0.99, 0.9),
    "color": (0.99, 0.9),
    "contrast": (0.99, 0.9),
    "sharpness": (0.99, 0.9),
}
# Posterize's bits kept, at no strength and at full strength: torchvision 8 down to 2, timm's
# PosterizeIncreasing 4 down to 0 (Keras keeps at least 1).
POSTERIZE_BITS = ((8, 2), (4, 0))
KINDS = ("trivial_augment", "rand_augment")
_FILL = {"fill_mode": "constant", "fill_value": 0.0}  # black borders, as PIL's affine ops


def _ops(kind, magnitude):
    """{name: op} for the 14 ops, each a callable of a float32 (h, w, c) image in 0..255."""
    strength = {op: ranges[KINDS.index(kind)] * magnitude for op, ranges in OP_RANGES.items()}
    value = {"value_range": (0, 255)}
    most, fewest = POSTERIZE_BITS[KINDS.index(kind)]
    bits_kept = max(1, most - int((most - fewest) * magnitude))  # timm's int()
    layers = {
        "shear_x": keras.layers.RandomShear(x_factor=strength["shear"], **_FILL),
        "shear_y": keras.layers.RandomShear(y_factor=strength["shear"], **_FILL),
        "translate_x": keras.layers.RandomTranslation(0.0, strength["translate"], **_FILL),
        "translate_y": keras.layers.RandomTranslation(strength["translate"], 0.0, **_FILL),
        "rotate": keras.layers.RandomRotation(strength["rotate"] / 360.0, **_FILL),
        "brightness": keras.layers.RandomBrightness(strength["brightness"], **value),
        "color": keras.layers.RandomColorDegeneration(strength["color"], **value),
        "contrast": keras.layers.RandomContrast(strength["contrast"], **value),
        "sharpness": keras.layers.RandomSharpness(strength["sharpness"], **value),
        # bits kept drawn from bits_kept up to `most` (8: none taken off)
        "posterize": keras.layers.RandomPosterization((bits_kept, min(8, most + 1)), **value)
        if bits_kept < 8 else None,
        "solarize": keras.layers.Solarization(threshold_factor=1.0, **value),  # threshold U(0, 255)
        "auto_contrast": keras.layers.AutoContrast(**value),
        "equalize": keras.layers.Equalization(**value),
    }
    ops = {"identity": tf.identity}
    for name, layer in layers.items():
        ops[name] = tf.identity if layer is None else functools.partial(_apply, layer)
    return ops


def _apply(layer, image):
    return layer(image, training=True)


def _branch(op, image):
    """``op(image)`` as float32 of the image's shape (a branch of ``tf.switch_case``)."""
    return tf.reshape(tf.cast(op(image), tf.float32), tf.shape(image))


class AutoAugment:
    """``augment(image, seed)``: ``num_ops`` ops drawn per image (with the stateless ``seed``),
    each applied at a strength up to ``magnitude`` (in [0, 1]) of its range; float32 out,
    clipped to 0..255. ``ops`` maps each op's name to it."""

    def __init__(self, kind, num_ops=1, magnitude=1.0):
        if kind not in KINDS:
            raise InvalidArgument(
                f"`auto_augment` must be one of {', '.join(KINDS)}; got {kind!r}.")
        self.kind, self.num_ops = kind, num_ops
        self.ops = _ops(kind, magnitude)

    def choose(self, seed):
        """The positions in ``ops`` of the ``num_ops`` ops that ``seed`` picks, in the order
        they apply (each uniformly, with replacement)."""
        return tf.random.stateless_uniform((self.num_ops,), seed, 0, len(self.ops), dtype=tf.int32)

    def __call__(self, image, seed):
        image = tf.cast(image, tf.float32)
        indices = self.choose(seed)
        for i in range(self.num_ops):
            branches = [functools.partial(_branch, op, image) for op in self.ops.values()]
            image = tf.ensure_shape(tf.switch_case(indices[i], branches), image.shape)
        return tf.clip_by_value(image, 0.0, 255.0)
