"""Mixing two images of a batch into one, and the targets that go with it: one-hot targets
(label smoothing put into them, as timm does for binary cross-entropy), then Keras' ``MixUp``
(Zhang et al. 2018) or ``CutMix`` (Yun et al. 2019), one of the two per batch, equally likely
(torchvision's ``RandomChoice``, timm's switch probability 0.5).

Written here, as Keras has no layer for them: the per-batch choice between MixUp and CutMix,
the smoothed targets, and CutMix's targets weighed by the pixels it pastes (Keras' own weigh
by its continuous box, up to a pixel per side off).
"""

import keras
import tensorflow as tf


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


class MixUpOrCutMix:
    """``mix(images, targets, seed)``: Keras' ``MixUp`` or ``CutMix`` on a batch with its
    float targets, one of the two per batch with equal odds when both are on (the stateless
    ``seed`` tosses the coin). MixUp's ratio is Beta(alpha, alpha) per image; CutMix's box lies
    inside the image and the targets follow the area it pastes, counted in pixels.

    Example:
        >>> mix = MixUpOrCutMix(mixup_alpha=0.2, cutmix_alpha=1.0)
        >>> mix(tf.zeros((4, 8, 8, 3)), tf.eye(4), tf.constant([0, 1]))[1].shape
        TensorShape([4, 4])
    """

    def __init__(self, mixup_alpha=0.0, cutmix_alpha=0.0):
        self.mixup = keras.layers.MixUp(alpha=mixup_alpha) if mixup_alpha else None
        self.cutmix = None
        if cutmix_alpha:  # a (a, a) factor: alpha exactly a (a single float means U(0, a))
            alpha = min(1.0, cutmix_alpha)
            self.cutmix = keras.layers.CutMix(factor=(alpha, alpha))

    @property
    def active(self):
        """Whether it mixes at all (MixUp or CutMix on)."""
        return self.mixup is not None or self.cutmix is not None

    def _mix(self, layer, images, targets):
        batch = {"images": images, "labels": targets}
        transformation = layer.get_random_transformation(batch, training=True)
        if layer is self.cutmix:
            # Keras weighs CutMix's targets by its continuous box, up to a pixel per side off
            # the pixels it pastes; the CutMix paper's ratio is the pasted area.
            pasted = tf.reduce_mean(tf.cast(transformation["batch_masks"], tf.float32), [1, 2, 3])
            transformation = {**transformation, "mix_weight": 1.0 - pasted}
        return (layer.transform_images(images, transformation, training=True),
                layer.transform_labels(targets, transformation, training=True))

    def __call__(self, images, targets, seed):
        if not self.active:
            return images, targets
        if self.mixup is None or self.cutmix is None:
            return self._mix(self.mixup or self.cutmix, images, targets)
        coin = tf.random.stateless_uniform((), seed)
        return tf.cond(coin < 0.5, lambda: self._mix(self.mixup, images, targets),
                       lambda: self._mix(self.cutmix, images, targets))
