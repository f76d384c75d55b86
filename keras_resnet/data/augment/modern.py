"""The data side of the modern recipes (``keras_resnet.recipes``), built from Keras 3's own
layers where Keras has them.

Per image (training): an Inception-style random-resized crop at the recipe's training size
(FixRes), the horizontal flip, TrivialAugment or RandAugment (:mod:`.auto_augment`:
torchvision's and timm's, drawn and applied as they do), normalisation. Per batch: Keras'
``RandomErasing``, the targets, then MixUp or CutMix (:mod:`.mixing`: timm's batch mode). Per
epoch: repeated augmentation (each image ``k`` times, the epoch as long as before).

Written here, as Keras has no layer for them: the random-resized crop (TensorFlow's
``stateless_sample_distorted_bounding_box``) and the repetition.
"""

import keras
import tensorflow as tf

from keras_resnet.data.augment.auto_augment import AutoAugment
from keras_resnet.data.augment.mixing import MixUpOrCutMix, smoothed_targets
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


class BatchTransform:
    """The per-batch training transform of a modern recipe on ``(images, labels)``: Keras'
    ``RandomErasing`` (each image with the recipe's probability, filled with 0, the mean),
    targets (one-hot, smoothed here for binary cross-entropy), then MixUp or CutMix
    (:class:`~keras_resnet.data.augment.mixing.MixUpOrCutMix`).

    Example:
        >>> from keras_resnet.recipes import get_recipe
        >>> mix = BatchTransform(get_recipe("torchvision_v2"), 4)
        >>> mix(tf.zeros((4, 8, 8, 3)), tf.range(4), tf.constant([0, 1]))[1].shape
        TensorShape([4, 4])
    """

    def __init__(self, recipe, classes, multilabel=False):
        self.classes, self.multilabel = classes, multilabel
        self.smoothing = recipe.label_smoothing if recipe.loss == "binary_cross_entropy" else 0.0
        self.erasing = None
        if recipe.random_erasing:  # a (p, p) factor: exactly p (a single float means U(0, p))
            self.erasing = keras.layers.RandomErasing(
                factor=(recipe.random_erasing, recipe.random_erasing), scale=ERASING_AREA,
                fill_value=0.0, value_range=(-1e9, 1e9))
        self.mixing = MixUpOrCutMix(recipe.mixup_alpha, recipe.cutmix_alpha)

    def __call__(self, images, labels, seed):
        if self.erasing is not None:
            images = self.erasing(images, training=True)
        targets = tf.cast(labels, tf.float32) if self.multilabel else smoothed_targets(
            labels, self.classes, self.smoothing)
        return self.mixing(images, targets, seed)


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
