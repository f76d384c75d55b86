"""Mixing two images of a batch into one, and the targets that go with it, as timm's
``Mixup(mode="batch")`` (timm/data/mixup.py) does: one-hot targets (label smoothing put into
them, as timm's ``mixup_target``), then MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019)
on the whole batch with ONE ratio drawn per batch from Beta(alpha, alpha), each image mixed
with its mirror in the batch (``x.flip(0)``), one of the two per batch with probability 0.5
when both are on (timm's ``switch_prob``; torchvision's ``RandomChoice``).

CutMix's box is timm's ``rand_bbox``: sides ``int(side * sqrt(1 - ratio))`` about a uniformly
drawn centre, clipped to the image, and the targets weighed by the area it pastes (timm's
``correct_lam``; torchvision's ``lam_adjusted``). The alphas are used as given (CutMix's 1.0,
or 2.0). Keras' ``MixUp`` and ``CutMix`` layers apply the mix (their ``transform_images`` and
``transform_labels``); the draws are made here from the stateless seed, as Keras' layers draw
one ratio per image, and CutMix's only with an alpha of at most 1.

Departure from torchvision's v2 ``MixUp``/``CutMix`` (the torchvision_v2 recipe's): they pair
each image with its neighbour (``roll(1, 0)``) and centre the box on ``int(r * side)``
half-sides; the ratios and their distribution are the same.
"""

import keras
import tensorflow as tf

from keras_resnet.errors import InvalidArgument

SWITCH_PROBABILITY = 0.5  # timm's Mixup(switch_prob=0.5): CutMix's share when both are on


def smoothed_targets(labels, classes, smoothing):
    """One-hot rows ``(1 - s) * y + s / classes`` of int labels (or of rows already one-hot).

    Example:
        >>> smoothed_targets(tf.constant([1]), 4, 0.1).numpy().round(3)
        array([[0.025, 0.925, 0.025, 0.025]], dtype=float32)
    """
    if labels.shape.rank == 1:
        labels = tf.one_hot(tf.cast(labels, tf.int32), classes)
    labels = tf.cast(labels, tf.float32)
    return labels * (1.0 - smoothing) + smoothing / classes if smoothing else labels


def beta(seed, alpha):
    """One draw of Beta(alpha, alpha) from a stateless ``seed``: G1 / (G1 + G2) of two
    Gamma(alpha) draws.

    Example:
        >>> 0.0 <= float(beta(tf.constant([1, 2]), 0.2)) <= 1.0
        True
    """
    gammas = tf.random.stateless_gamma((2,), seed, alpha=alpha)
    return gammas[0] / tf.maximum(gammas[0] + gammas[1], 1e-30)


def cutmix_box(seed, ratio, height, width):
    """timm's ``rand_bbox`` and ``correct_lam``: ``(top, bottom, left, right)`` of a box of
    sides ``int(side * sqrt(1 - ratio))`` about a uniformly drawn centre, clipped to the
    image, and the ratio of the image it leaves (1 - its area / the image's).

    Example:
        >>> box, kept = cutmix_box(tf.constant([1, 2]), tf.constant(0.75), 8, 8)
        >>> 0.75 <= float(kept) <= 1.0
        True
    """
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    fraction = tf.sqrt(1.0 - ratio)
    cut_h = tf.cast(tf.cast(height, tf.float32) * fraction, tf.int32)  # timm's int()
    cut_w = tf.cast(tf.cast(width, tf.float32) * fraction, tf.int32)
    y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    cy = tf.random.stateless_uniform((), y_seed, 0, height, dtype=tf.int32)
    cx = tf.random.stateless_uniform((), x_seed, 0, width, dtype=tf.int32)
    top = tf.clip_by_value(cy - cut_h // 2, 0, height)
    bottom = tf.clip_by_value(cy + (cut_h + 1) // 2, 0, height)
    left = tf.clip_by_value(cx - cut_w // 2, 0, width)
    right = tf.clip_by_value(cx + (cut_w + 1) // 2, 0, width)
    area = tf.cast((bottom - top) * (right - left), tf.float32)
    return (top, bottom, left, right), 1.0 - area / tf.cast(height * width, tf.float32)


class MixUpOrCutMix:
    """``mix(images, targets, seed)``: MixUp or CutMix on a batch with its float targets, as
    timm's ``Mixup(mode="batch")``: one ratio per batch, each image mixed with its mirror in
    the batch, CutMix's targets weighed by the area it pastes; one of the two per batch with
    probability 0.5 when both are on. The stateless ``seed`` makes every draw.

    Example:
        >>> mix = MixUpOrCutMix(mixup_alpha=0.2, cutmix_alpha=1.0)
        >>> mix(tf.zeros((4, 8, 8, 3)), tf.eye(4), tf.constant([0, 1]))[1].shape
        TensorShape([4, 4])
    """

    def __init__(self, mixup_alpha=0.0, cutmix_alpha=0.0):
        for name, alpha in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not alpha >= 0:
                raise InvalidArgument(f"`{name}` must be >= 0 (0 turns it off); got {alpha!r}.")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        # Keras' layers apply the mix; their own draws (one ratio per image) are not used.
        self.mixup_layer, self.cutmix_layer = keras.layers.MixUp(), keras.layers.CutMix()

    @property
    def active(self):
        """Whether it mixes at all (MixUp or CutMix on)."""
        return bool(self.mixup_alpha or self.cutmix_alpha)

    def draw(self, seed, height, width):
        """The batch's draws: ``{"cutmix": bool, "drawn": the Beta draw, "ratio": the share
        of each image kept (for CutMix, after its box), "box": (top, bottom, left, right)}``
        (the box empty for MixUp)."""
        coin_seed, mixup_seed, cutmix_seed, box_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 4))
        if not (self.mixup_alpha and self.cutmix_alpha):
            use_cutmix = tf.constant(not self.mixup_alpha)
        else:  # timm: use_cutmix = np.random.rand() < switch_prob
            use_cutmix = tf.random.stateless_uniform((), coin_seed) < SWITCH_PROBABILITY
        mixup_ratio = beta(mixup_seed, self.mixup_alpha) if self.mixup_alpha else tf.constant(1.0)
        cutmix_ratio = (beta(cutmix_seed, self.cutmix_alpha) if self.cutmix_alpha
                        else tf.constant(1.0))
        box, kept = cutmix_box(box_seed, cutmix_ratio, height, width)
        zero = tf.constant(0)
        return {"cutmix": use_cutmix, "ratio": tf.where(use_cutmix, kept, mixup_ratio),
                "drawn": tf.where(use_cutmix, cutmix_ratio, mixup_ratio),
                "box": tuple(tf.where(use_cutmix, v, zero) for v in box)}

    def __call__(self, images, targets, seed):
        if not self.active:
            return images, targets
        return self.mix(images, targets, self.draw(seed, tf.shape(images)[1], tf.shape(images)[2]))

    def mix(self, images, targets, draws):
        """``images`` and ``targets`` mixed as ``draws`` (from :meth:`draw`) say: each image
        with its mirror in the batch, by the ratio, inside the box for CutMix."""
        batch = tf.shape(images)[0]
        top, bottom, left, right = draws["box"]
        rows, columns = tf.range(tf.shape(images)[1])[:, None], tf.range(tf.shape(images)[2])
        inside = (rows >= top) & (rows < bottom) & (columns[None, :] >= left) & (
            columns[None, :] < right)
        transformation = {
            "mix_weight": tf.fill([batch], tf.cast(draws["ratio"], tf.float32)),
            "permutation_order": tf.reverse(tf.range(batch), [0]),  # timm's x.flip(0)
            "batch_masks": tf.broadcast_to(inside[None, :, :, None], tf.shape(images)),
        }
        mixup, cutmix = self.mixup_layer, self.cutmix_layer
        mixed = tf.cond(tf.convert_to_tensor(draws["cutmix"]),
                        lambda: self._apply(cutmix, images, transformation),
                        lambda: self._apply(mixup, images, transformation))
        return mixed, mixup.transform_labels(targets, transformation, training=True)

    @staticmethod
    def _apply(layer, images, transformation):
        return tf.cast(layer.transform_images(images, transformation, training=True), images.dtype)
