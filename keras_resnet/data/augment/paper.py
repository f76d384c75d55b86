"""The paper's training augmentations: §4.2's CIFAR padding, random crop and flip, §3.4's
random shorter side, random 224 crop, flip and AlexNet-style PCA colour augmentation, and the
augmentation of one image as ``keras_resnet.data.load`` applies it.
"""

import tensorflow as tf

from keras_resnet.data.images import (
    IMAGENET_CROP,
    IMAGENET_EVAL_SIDE,
    SCALE,
    normalize,
    preprocess,
    resize_shorter_side,
    resize_to_uint8,
    to_model_channels,
)

# ImageNet pixel covariance in [0, 1] units (RGB): eigenvalues and eigenvectors (columns), for
# AlexNet-style PCA colour augmentation.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PCA_STDDEV = 0.1
# §3.4: the shorter side of a training image, at the paper's 224 crop.
IMAGENET_TRAIN_SIDES = (256, 480)
# §4.2: "4 pixels are padded on each side", at CIFAR's 32.
CIFAR_PADDING = 4


def cifar_augment(image, seed, *, padding=CIFAR_PADDING, flip=True):
    """§4.2: zero-pad ``padding`` pixels per side, random crop back, random horizontal flip.

    Args:
        image: ``(h, w, c)`` float image (already mean-subtracted: the padding is zeros).
        seed: shape ``[2]`` int seed of the stateless random ops.
        padding: pixels added per side (the crop moves by at most this much).
        flip: whether to flip left-right with probability 1/2.

    Returns:
        An ``(h, w, c)`` tensor: ``image`` translated by at most ``padding`` pixels.

    Example:
        >>> cifar_augment(tf.zeros((32, 32, 3)), seed=[0, 1]).shape
        TensorShape([32, 32, 3])
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def imagenet_sides(image_size=IMAGENET_CROP):
    """§3.4's lengths scaled to ``image_size``: ((min, max) train shorter side, eval side).

    Example:
        >>> imagenet_sides(64)
        ((73, 137), 73)
    """
    factor = image_size / IMAGENET_CROP
    low, high = (int(round(side * factor)) for side in IMAGENET_TRAIN_SIDES)
    return (low, high), int(round(IMAGENET_EVAL_SIDE * factor))


def imagenet_augment(image, seed, *, image_size=IMAGENET_CROP, sides=None, flip=True):
    """§3.4: shorter side resized to a random length in ``sides``, random square crop, flip.

    Args:
        image: ``(h, w, c)`` image (any size).
        seed: shape ``[2]`` int seed of the stateless random ops.
        image_size: side of the crop.
        sides: ``(min, max)`` shorter side; defaults to [256, 480] scaled by image_size/224.
        flip: whether to flip left-right with probability 1/2.

    Returns:
        float32 ``(image_size, image_size, c)`` tensor in the input's units.

    Example:
        >>> imagenet_augment(tf.zeros((375, 500, 3), tf.uint8), [0, 1]).shape
        TensorShape([224, 224, 3])
    """
    low, high = sides or imagenet_sides(image_size)[0]
    side_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    side = tf.random.stateless_uniform(
        [], side_seed, minval=low, maxval=high + 1, dtype=tf.int32
    )
    image = resize_shorter_side(image, side)
    channels = tf.shape(image)[-1]
    image = tf.image.stateless_random_crop(
        image, tf.stack([image_size, image_size, channels]), seed=crop_seed
    )
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def pca_lighting(image, seed, stddev=PCA_STDDEV):
    """AlexNet-style PCA colour augmentation (§3.4, after Krizhevsky et al. 2012).

    Adds ``eigenvectors @ (alpha * eigenvalues)`` with ``alpha ~ N(0, stddev)`` (one draw per
    image) to every pixel of an RGB image in [0, 1] units, using ImageNet's eigenvalues and
    eigenvectors (:data:`IMAGENET_EIGENVALUES`, :data:`IMAGENET_EIGENVECTORS`).

    Example:
        >>> shifted = pca_lighting(tf.zeros((224, 224, 3)), seed=[0, 1]).numpy()
        >>> bool((shifted == shifted[0, 0]).all())  # the same colour shift on every pixel
        True
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    shift = tf.linalg.matvec(
        tf.constant(IMAGENET_EIGENVECTORS, tf.float32),
        alpha * tf.constant(IMAGENET_EIGENVALUES, tf.float32),
    )
    return image + shift


def paper_augment(image, seed, info):
    """The training augmentation of one uint8 image, per ``info`` (a ``DatasetInfo``):
    §4.2's for "direct" resizing, §3.4's for "shorter_side"; normalised float32 out.

    Example:
        >>> info = keras_resnet.data.load("digits", "train", 32)[1]
        >>> paper_augment(tf.zeros((8, 8, 3), tf.uint8), [0, 1], info).shape
        TensorShape([32, 32, 3])
    """
    preprocessing = info.preprocessing
    if preprocessing.resize == "direct":
        image = resize_to_uint8(image, preprocessing.image_size, preprocessing.interpolation)
        image = normalize(image, preprocessing)  # then pad with zeros = the mean (§4.2)
        return cifar_augment(image, seed, padding=info.padding, flip=info.horizontal_flip)
    geometry_seed, colour_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = imagenet_augment(
        image, geometry_seed, image_size=preprocessing.image_size[0], sides=info.train_sides,
        flip=info.horizontal_flip,
    )
    if preprocessing.channels == 3:  # §3.4's colour augmentation needs RGB
        image = pca_lighting(image * SCALE, colour_seed) / SCALE  # in [0, 1] units
    return normalize(image, preprocessing)


def augment_image(image, seed, info):
    """Training augmentation of one ``(h, w, c)`` uint8 image as :func:`load` does it.

    Args:
        image: ``(h, w, c)`` uint8 image.
        seed: shape ``[2]`` int seed of the stateless random ops.
        info: the :class:`DatasetInfo` of the dataset.

    Returns:
        float32 ``info.image_shape`` tensor, normalised (the evaluation preprocessing when
        ``info.augmentation`` is None).

    Example:
        >>> info = keras_resnet.data.load("digits", "train", 32)[1]
        >>> augment_image(tf.zeros((8, 8, 1), tf.uint8), [0, 1], info).shape
        TensorShape([32, 32, 3])
    """
    image = to_model_channels(tf.convert_to_tensor(image), info.preprocessing)
    if info.augmentation is None:
        return preprocess(image[None], info)[0]
    return paper_augment(image, seed, info)
