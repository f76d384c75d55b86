"""Paired image / mask transforms for segmentation: one geometry for both, images resampled
bilinearly, masks by nearest neighbour (class ids are never blended).

Training follows torchvision's ``references/segmentation`` (``SegmentationPresetTrain``):
the shorter side resized to a random length in ``[0.5, 2.0] x base_size``, a horizontal flip
with probability 0.5, then a random crop of ``crop_size``, the image padded with 0 and the mask
with 255 (ignore) at the bottom and right where the crop is larger than the image
(``pad_if_smaller``). Evaluation (``SegmentationPresetEval``): the shorter side resized to
``base_size``. :func:`fit_and_pad` makes evaluation images one size for batching.

Images are pixel values (0..255, any dtype in, float32 out) before normalisation; masks uint8.
Random choices use stateless ops: a ``[2]`` int seed gives the same result every time.
"""

import tensorflow as tf

from keras_resnet.errors import InvalidArgument, check_positive_int

IGNORE_LABEL = 255
SCALE_RANGE = (0.5, 2.0)  # torchvision's references: 0.5 * base_size .. 2.0 * base_size
FLIP_PROBABILITY = 0.5


def scale_sides(base_size, scale_range=SCALE_RANGE):
    """``(min, max)`` shorter sides of the random resize: ``int(scale * base_size)`` of the two
    ends of ``scale_range`` (torchvision's ``RandomResize(min_size, max_size)``).

    Example:
        >>> scale_sides(520)
        (260, 1040)
    """
    check_positive_int("base_size", base_size)
    low, high = scale_range
    if not 0 < low <= high:
        raise InvalidArgument(f"`scale_range` must be (low, high) with 0 < low <= high; got "
                              f"{scale_range!r}.")
    return max(1, int(low * base_size)), max(1, int(high * base_size))


def _shorter_side_shape(image, side):
    """(height, width) with the shorter side ``side``, the longer one scaled and truncated as
    torchvision's ``resize(image, side)`` does."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    side = tf.cast(side, tf.int32)
    other = tf.cast(tf.cast(side, tf.float64) * tf.cast(long, tf.float64)
                    / tf.cast(short, tf.float64), tf.int32)
    return tf.cond(height <= width, lambda: tf.stack([side, other]),
                   lambda: tf.stack([other, side]))


def resize_pair(image, mask, size):
    """``image`` (bilinear, antialiased when shrinking, as PIL) and ``mask`` (nearest) resized
    to ``size`` = (height, width).

    Example:
        >>> resize_pair(tf.zeros((4, 6, 3)), tf.zeros((4, 6), tf.uint8), (8, 12))[1].shape
        TensorShape([8, 12])
    """
    image = tf.image.resize(tf.cast(image, tf.float32), size, "bilinear", antialias=True)
    mask = tf.image.resize(mask[..., None], size, "nearest")[..., 0]
    return image, mask


def pad_pair(image, mask, size):
    """Pad ``image`` with 0 and ``mask`` with 255 at the bottom and right to at least ``size``
    = (height, width) (torchvision's ``pad_if_smaller``).

    Example:
        >>> int(pad_pair(tf.ones((2, 3, 3)), tf.ones((2, 3), tf.uint8), (4, 4))[1][3, 0])
        255
    """
    shape = tf.shape(mask)
    pad_height = tf.maximum(size[0] - shape[0], 0)
    pad_width = tf.maximum(size[1] - shape[1], 0)
    image = tf.pad(tf.cast(image, tf.float32), [[0, pad_height], [0, pad_width], [0, 0]])
    mask = tf.pad(mask, [[0, pad_height], [0, pad_width]], constant_values=IGNORE_LABEL)
    return image, mask


def random_crop_pair(image, mask, seed, size):
    """One random ``size`` = (height, width) window of both, after :func:`pad_pair`.

    Example:
        >>> random_crop_pair(tf.ones((9, 9, 3)), tf.ones((9, 9), tf.uint8), [1, 2], (4, 4))[0].shape
        TensorShape([4, 4, 3])
    """
    image, mask = pad_pair(image, mask, size)
    shape = tf.shape(mask)
    top_seed, left_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    top = tf.random.stateless_uniform([], top_seed, 0, shape[0] - size[0] + 1, tf.int32)
    left = tf.random.stateless_uniform([], left_seed, 0, shape[1] - size[1] + 1, tf.int32)
    image = image[top:top + size[0], left:left + size[1]]
    mask = mask[top:top + size[0], left:left + size[1]]
    return tf.ensure_shape(image, [size[0], size[1], None]), tf.ensure_shape(mask, size)


def random_flip_pair(image, mask, seed, probability=FLIP_PROBABILITY):
    """Both mirrored left-right with ``probability``.

    Example:
        >>> random_flip_pair(tf.zeros((2, 3, 3)), tf.zeros((2, 3), tf.uint8), [0, 1])[1].shape
        TensorShape([2, 3])
    """
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    flip = tf.random.stateless_uniform([], seed) < probability
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    return image, mask


def train_pair(image, mask, seed, *, base_size, crop_size, scale_range=SCALE_RANGE, flip=True):
    """torchvision's segmentation training transform of one image and its mask.

    Args:
        image: ``(h, w, c)`` pixel values; mask: ``(h, w)`` uint8 class ids (255: ignore).
        seed: shape ``[2]`` int seed of the stateless random ops.
        base_size: the length the random shorter side is a multiple of.
        crop_size: (height, width) of the output.
        scale_range: the random shorter side's range, in multiples of ``base_size``.
        flip: mirror left-right with probability 0.5 (False for digits).

    Returns:
        float32 ``crop_size + (c,)`` image and uint8 ``crop_size`` mask.

    Example:
        >>> x, y = train_pair(tf.zeros((40, 50, 3)), tf.zeros((40, 50), tf.uint8), [0, 1],
        ...                   base_size=32, crop_size=(32, 32))
    """
    low, high = scale_sides(base_size, scale_range)
    resize_seed, flip_seed, crop_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.convert_to_tensor(seed, tf.int64), 3))
    side = tf.random.stateless_uniform([], resize_seed, low, high + 1, tf.int32)
    image, mask = resize_pair(image, mask, _shorter_side_shape(mask, side))
    if flip:
        image, mask = random_flip_pair(image, mask, flip_seed)
    return random_crop_pair(image, mask, crop_seed, tuple(crop_size))


def eval_pair(image, mask, base_size):
    """torchvision's segmentation evaluation transform: the shorter side to ``base_size``.

    Example:
        >>> eval_pair(tf.zeros((40, 80, 3)), tf.zeros((40, 80), tf.uint8), 20)[0].shape
        TensorShape([20, 40, 3])
    """
    check_positive_int("base_size", base_size)
    return resize_pair(image, mask, _shorter_side_shape(mask, base_size))


def fit_and_pad(image, mask, size):
    """Both resized, keeping the aspect ratio, so the whole image fits ``size`` = (height,
    width) with one side equal to it, then padded at the bottom and right to ``size`` (image 0,
    mask 255): every labelled pixel is kept and the padding is ignored.

    Example:
        >>> fit_and_pad(tf.zeros((20, 40, 3)), tf.zeros((20, 40), tf.uint8), (32, 32))[1].shape
        TensorShape([32, 32])
    """
    shape = tf.cast(tf.shape(mask), tf.float64)
    ratio = tf.minimum(size[0] / shape[0], size[1] / shape[1])
    fitted = tf.cast(tf.round(shape * ratio), tf.int32)
    fitted = tf.clip_by_value(fitted, 1, tf.constant(size, tf.int32))
    image, mask = resize_pair(image, mask, fitted)
    image, mask = pad_pair(image, mask, size)
    return tf.ensure_shape(image, [size[0], size[1], None]), tf.ensure_shape(mask, size)
