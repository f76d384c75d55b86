"""The data side of the modern recipes (``keras_resnet.recipes``), built from Keras 3's own
layers where Keras has them.

Per image (training): an Inception-style random-resized crop at the recipe's training size
(FixRes), the horizontal flip, TrivialAugment or RandAugment (``data.auto_augment``: Keras'
image layers at the sources' ranges), normalisation, Keras' ``RandomErasing``. Per batch:
one-hot targets (label smoothing put into them for binary cross-entropy, as timm does), then
Keras' ``MixUp`` or ``CutMix``, one of the two per batch, equally likely (torchvision's
``RandomChoice``, timm's switch probability 0.5). Per epoch: repeated augmentation (each image
``k`` times, the epoch as long as before).

Written here, as Keras has no layer for them: the random-resized crop (TensorFlow's
``stateless_sample_distorted_bounding_box``), the per-batch choice between MixUp and CutMix,
the smoothed targets, CutMix's targets weighed by the pixels it pastes (Keras' own weigh by
its continuous box, up to a pixel per side off), and the repetition.
"""

import keras
import tensorflow as tf

from keras_resnet.data.auto_augment import AutoAugment
from keras_resnet.data.images import normalize
from keras_resnet.errors import InvalidArgument

# Inception-style random-resized crop (Szegedy et al. 2015; torchvision's and timm's defaults).
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
ERASING_AREA = (0.02, 0.33)


def train_size(recipe, image_size):
    """The side of the training crops: ``train_size_fraction`` of the evaluation side
    (FixRes, Touvron et al. 2019; torchvision trains at 176 for 224).

    Example:
        >>> from keras_resnet.recipes import get_recipe
        >>> train_size(get_recipe("torchvision_v2"), 224)
        176
    """
    return max(1, int(round(image_size * recipe.train_size_fraction)))


def check_recipe_data(recipe, preprocessing):
    """Raise for a recipe the images cannot follow (auto-augment needs RGB)."""
    if recipe.auto_augment and preprocessing.channels != 3:
        raise InvalidArgument(
            f"Recipe {recipe.name!r} uses {recipe.auto_augment}, which needs RGB images; this "
            f"model takes {preprocessing.channels} channel(s). Set auto_augment=None."
        )
    if recipe.train_size_fraction != 1.0 and recipe.crop != "random_resized":
        raise InvalidArgument(
            "`train_size_fraction` (FixRes) goes with crop='random_resized'; got crop="
            f"{recipe.crop!r}."
        )


def _normalize_at(image, preprocessing):
    """Normalise a crop of any size: a per-pixel mean image (§4.2) is resized to it."""
    if preprocessing.mean.ndim != 3:
        return normalize(image, preprocessing)
    mean = tf.image.resize(tf.constant(preprocessing.mean, tf.float32), tf.shape(image)[:2])
    x = tf.cast(image, tf.float32)
    if preprocessing.channel_order == "bgr":
        x = x[..., ::-1]
    x = x * preprocessing.scale - mean
    return x if preprocessing.std is None else x / tf.constant(preprocessing.std, tf.float32)


class ImageAugmentation:
    """The per-image training transform of a modern recipe: ``augment(image, seed)`` on a
    uint8 ``(h, w, c)`` image gives a normalised float32 crop of the training size (the
    images' fit to the recipe is checked by ``load``: :func:`check_recipe_data`)."""

    def __init__(self, recipe, preprocessing, flip):
        self.recipe, self.preprocessing, self.flip = recipe, preprocessing, flip
        self.size = train_size(recipe, preprocessing.image_size[0])
        self.auto_augment = None
        if recipe.auto_augment == "trivial_augment":  # one op, of a uniformly drawn strength
            self.auto_augment = AutoAugment("trivial_augment")
        elif recipe.auto_augment == "rand_augment":
            self.auto_augment = AutoAugment("rand_augment", recipe.rand_augment_ops,
                                            recipe.rand_augment_magnitude)

    def __call__(self, image, seed):
        crop_seed, flip_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3))
        image = random_resized_crop(image, crop_seed, self.size, self.preprocessing.interpolation)
        if self.flip:
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        if self.auto_augment is not None:  # per image: each draws its own ops
            image = self.auto_augment(image, augment_seed)
        return _normalize_at(image, self.preprocessing)


def random_resized_crop(image, seed, size, interpolation="bilinear"):
    """A crop of 8%-100% of the image's area and aspect ratio 3/4-4/3 (the whole image when
    ten draws fail), resized to ``size`` square: float32 in 0..255.

    Example:
        >>> random_resized_crop(tf.zeros((40, 60, 3), tf.uint8), [1, 2], 24).shape
        TensorShape([24, 24, 3])
    """
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros((1, 0, 4)), seed=seed, min_object_covered=0.0,
        aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, extent)
    crop.set_shape([None, None, image.shape[-1]])
    return tf.image.resize(tf.cast(crop, tf.float32), (size, size), method=interpolation)


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


class BatchTransform:
    """The per-batch training transform of a modern recipe on ``(images, labels)``: Keras'
    ``RandomErasing`` (each image with the recipe's probability, filled with 0, the mean),
    targets (one-hot, smoothed here for binary cross-entropy), then MixUp or CutMix (Keras'
    layers; one of the two per batch with equal odds when both are on; MixUp's ratio is
    Beta(alpha, alpha) per image, CutMix's box lies inside the image and the targets follow
    the area it pastes, counted in pixels)."""

    def __init__(self, recipe, classes, multilabel=False):
        self.classes, self.multilabel = classes, multilabel
        self.smoothing = recipe.label_smoothing if recipe.loss == "binary_cross_entropy" else 0.0
        self.erasing = None
        if recipe.random_erasing:  # a (p, p) factor: exactly p (a single float means U(0, p))
            self.erasing = keras.layers.RandomErasing(
                factor=(recipe.random_erasing, recipe.random_erasing), scale=ERASING_AREA,
                fill_value=0.0, value_range=(-1e9, 1e9))
        self.mixup = keras.layers.MixUp(alpha=recipe.mixup_alpha) if recipe.mixup_alpha else None
        self.cutmix = None
        if recipe.cutmix_alpha:  # a (a, a) factor: alpha exactly a (a single float means U(0, a))
            alpha = min(1.0, recipe.cutmix_alpha)
            self.cutmix = keras.layers.CutMix(factor=(alpha, alpha))

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

    def __call__(self, images, labels, seed):
        if self.erasing is not None:
            images = self.erasing(images, training=True)
        targets = tf.cast(labels, tf.float32) if self.multilabel else smoothed_targets(
            labels, self.classes, self.smoothing)
        if self.mixup is None and self.cutmix is None:
            return images, targets
        if self.mixup is None or self.cutmix is None:
            return self._mix(self.mixup or self.cutmix, images, targets)
        coin = tf.random.stateless_uniform((), seed)
        return tf.cond(coin < 0.5, lambda: self._mix(self.mixup, images, targets),
                       lambda: self._mix(self.cutmix, images, targets))


def repeated(dataset, repeats, num_examples):
    """Repeated augmentation (Hoffer et al. 2020; torchvision's RASampler, timm's
    ``--aug-repeats``): each element ``repeats`` times in a row, the epoch cut back to
    ``num_examples`` (so it holds ``num_examples / repeats`` distinct images, each augmented
    ``repeats`` times). Shuffle before, batch after: on one device the copies share a batch.

    Example:
        >>> [int(x) for x in repeated(tf.data.Dataset.range(4), 2, 4)]
        [0, 0, 1, 1]
    """
    if repeats == 1:
        return dataset
    dataset = dataset.flat_map(lambda *example: tf.data.Dataset.from_tensors(example).repeat(repeats))
    dataset = dataset.map(lambda *example: example if len(example) > 1 else example[0])
    # The count is known: Keras then sizes the epoch instead of finding its end.
    return dataset.take(num_examples).apply(tf.data.experimental.assert_cardinality(num_examples))
