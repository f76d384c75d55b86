"""Box-aware transforms for detection: one geometry for an image and its boxes.

Boxes are float32 ``(n, 4)`` ``x1, y1, x2, y2`` in pixels of their image (pixel ``i`` spans
``[i, i + 1)``), classes int32 ``(n,)``; images are pixel values (0..255, any dtype in, float32
out). Random choices use stateless ops: a ``[2]`` int seed gives the same result every time.

- :func:`flip_boxes` / :func:`random_flip`: mirrored left-right, ``x1, x2 -> w - x2, w - x1``.
- :func:`resize_with_boxes` / :func:`random_scale`: the image resized bilinearly (antialiased
  when shrinking, as the segmentation transforms), each box coordinate times the factor of its
  axis (new size / old size, exact for the resized pixel grid). The random scale follows
  torchvision's ``ScaleJitter`` (large scale jitter): the image scaled to fit the output size,
  times a factor uniform in ``scale_range``.
- :func:`crop_boxes` / :func:`random_crop`: a window of the output size (the image padded
  with 0 at the bottom and right first where smaller). A box is kept when its centre lies
  strictly inside the window (torchvision's ``RandomIoUCrop``), then clipped to it; a box
  narrower or lower than 1 pixel after clipping is dropped (torchvision's
  ``SanitizeBoundingBoxes``, ``min_size=1``).
- :func:`fit_and_pad`: evaluation, the segmentation pipeline's resize to fit and pad, with
  the boxes scaled alike and the factors that map them back.
"""

import tensorflow as tf

from keras_resnet.errors import InvalidArgument

SCALE_RANGE = (0.5, 2.0)  # the segmentation pipeline's range (torchvision's references)
FLIP_PROBABILITY = 0.5
MIN_BOX_SIDE = 1.0  # torchvision's SanitizeBoundingBoxes(min_size=1)


def _image_size(image):
    """(height, width) of an ``(h, w, c)`` image as float32."""
    return tf.cast(tf.shape(image)[:2], tf.float32)


def flip_boxes(boxes, width):
    """Boxes of an image ``width`` pixels wide, mirrored left-right.

    Example:
        >>> flip_boxes(tf.constant([[1.0, 2.0, 4.0, 5.0]]), 10).numpy().tolist()
        [[6.0, 2.0, 9.0, 5.0]]
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    width = tf.cast(width, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([width - x2, y1, width - x1, y2], axis=-1)


def random_flip(image, boxes, seed, probability=FLIP_PROBABILITY):
    """The image and its boxes mirrored left-right with ``probability``.

    Example:
        >>> random_flip(tf.zeros((4, 6, 3)), tf.zeros((0, 4)), [0, 1])[0].shape
        TensorShape([4, 6, 3])
    """
    image = tf.convert_to_tensor(image)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    flip = tf.random.stateless_uniform([], seed) < probability
    return tf.cond(flip, lambda: (tf.reverse(image, [1]), flip_boxes(boxes, tf.shape(image)[1])),
                   lambda: (image, boxes))


def resize_with_boxes(image, boxes, size):
    """The image resized to ``size`` = (height, width), bilinear (antialiased when shrinking),
    and its boxes with it.

    Returns:
        ``(image, boxes)``: float32 ``size + (c,)`` and the boxes times ``(width / w,
        height / h)``.

    Example:
        >>> resize_with_boxes(tf.zeros((4, 6, 3)), [[1.0, 1.0, 3.0, 2.0]], (8, 12))[1].numpy()
        array([[2., 2., 6., 4.]], dtype=float32)
    """
    old = _image_size(image)
    size = tf.convert_to_tensor(size, tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), size, "bilinear", antialias=True)
    factors = tf.cast(size, tf.float32) / old  # (y, x)
    boxes = tf.convert_to_tensor(boxes, tf.float32) * tf.tile(factors[::-1], [2])
    return image, boxes


def fitted_shape(image, size, scale=1.0):
    """(height, width) of the image scaled to fit ``size`` = (height, width) times ``scale``:
    ``round(h * r), round(w * r)`` with ``r = scale * min(size_h / h, size_w / w)``, at least 1
    (torchvision's ``ScaleJitter``; at ``scale`` 1 the segmentation pipeline's fit).

    Example:
        >>> fitted_shape(tf.zeros((20, 40, 3)), (32, 32)).numpy().tolist()
        [16, 32]
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    ratio = tf.minimum(size[0] / shape[0], size[1] / shape[1]) * tf.cast(scale, tf.float64)
    return tf.maximum(tf.cast(tf.round(shape * ratio), tf.int32), 1)


def random_scale(image, boxes, seed, size, scale_range=SCALE_RANGE):
    """The image and its boxes scaled to fit ``size`` times a factor uniform in ``scale_range``
    (torchvision's ``ScaleJitter``).

    Example:
        >>> random_scale(tf.zeros((8, 8, 3)), tf.zeros((0, 4)), [0, 1], (8, 8))[0].shape[2]
        3
    """
    low, high = scale_range
    scale = tf.random.stateless_uniform([], seed, low, high, tf.float64)
    return resize_with_boxes(image, boxes, fitted_shape(image, size, scale))


def crop_boxes(boxes, classes, top, left, size):
    """The boxes (and their classes) of the window ``size`` = (height, width) at ``(top,
    left)``: kept when their centre is strictly inside it, shifted, clipped, and dropped when
    narrower or lower than 1 pixel.

    Example:
        >>> crop_boxes(tf.constant([[0.0, 0.0, 4.0, 4.0], [6.0, 6.0, 9.0, 9.0]]), [3, 5],
        ...            1, 1, (5, 5))[1].numpy().tolist()
        [3]
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    classes = tf.convert_to_tensor(classes, tf.int32)
    height, width = float(size[0]), float(size[1])
    offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
    boxes = boxes - offset
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (0 < centre_x) & (centre_x < width) & (0 < centre_y) & (centre_y < height)
    boxes = tf.minimum(tf.maximum(boxes, 0.0), [width, height, width, height])
    wide = ((boxes[:, 2] - boxes[:, 0] >= MIN_BOX_SIDE)
            & (boxes[:, 3] - boxes[:, 1] >= MIN_BOX_SIDE))
    keep = inside & wide
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)


def pad_image(image, size):
    """The image padded with 0 at the bottom and right to at least ``size`` = (height, width).

    Example:
        >>> pad_image(tf.ones((2, 3, 1)), (4, 4)).shape
        TensorShape([4, 4, 1])
    """
    shape = tf.shape(image)
    pad_height = tf.maximum(size[0] - shape[0], 0)
    pad_width = tf.maximum(size[1] - shape[1], 0)
    return tf.pad(tf.cast(image, tf.float32), [[0, pad_height], [0, pad_width], [0, 0]])


def random_crop(image, boxes, classes, seed, size):
    """A random window ``size`` = (height, width) of the image (padded first where smaller),
    with the boxes :func:`crop_boxes` keeps.

    Returns:
        ``(image, boxes, classes)``: float32 ``size + (c,)``, the kept boxes and classes.

    Example:
        >>> random_crop(tf.ones((9, 9, 3)), tf.zeros((0, 4)), tf.zeros(0, tf.int32), [1, 2],
        ...             (4, 4))[0].shape
        TensorShape([4, 4, 3])
    """
    image = pad_image(image, size)
    shape = tf.shape(image)
    top_seed, left_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    top = tf.random.stateless_uniform([], top_seed, 0, shape[0] - size[0] + 1, tf.int32)
    left = tf.random.stateless_uniform([], left_seed, 0, shape[1] - size[1] + 1, tf.int32)
    image = tf.ensure_shape(image[top:top + size[0], left:left + size[1]],
                            [size[0], size[1], None])
    return (image, *crop_boxes(boxes, classes, top, left, size))


def train_example(image, boxes, classes, seed, *, size, scale_range=SCALE_RANGE, flip=True):
    """The detection training transform of one image: :func:`random_scale`, then
    :func:`random_flip` (when ``flip``; not for digits), then :func:`random_crop` to ``size``.

    Args:
        image: ``(h, w, c)`` pixel values; boxes: float32 ``(n, 4)``; classes: int32 ``(n,)``.
        seed: shape ``[2]`` int seed of the stateless random ops.
        size: (height, width) of the output.
        scale_range: the random factor on the fitted size; ``(1.0, 1.0)``: no scaling, and
            with ``flip`` the RetinaNet paper's only augmentation.
        flip: mirror left-right with probability 0.5.

    Returns:
        ``(image, boxes, classes)``: float32 ``size + (c,)`` and the boxes kept.

    Example:
        >>> train_example(tf.zeros((40, 50, 3)), tf.zeros((0, 4)), tf.zeros(0, tf.int32),
        ...               [0, 1], size=(32, 32))[0].shape
        TensorShape([32, 32, 3])
    """
    low, high = scale_range
    if not 0 < low <= high:
        raise InvalidArgument(f"`scale_range` must be (low, high) with 0 < low <= high; got "
                              f"{scale_range!r}.")
    scale_seed, flip_seed, crop_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.convert_to_tensor(seed, tf.int64), 3))
    image, boxes = random_scale(image, boxes, scale_seed, size, scale_range)
    if flip:
        image, boxes = random_flip(image, boxes, flip_seed)
    return random_crop(image, boxes, classes, crop_seed, tuple(size))


def fit_and_pad(image, boxes, size):
    """The image resized, keeping its aspect ratio, to fit ``size`` = (height, width) with one
    side equal to it, padded with 0 at the bottom and right (the segmentation pipeline's
    evaluation), and its boxes scaled alike.

    Returns:
        ``(image, boxes, scale, image_size)``: float32 ``size + (c,)``, the boxes in its
        pixels, float32 ``(2,)`` ``(scale_x, scale_y)`` (the image's width and height now over
        before: ``boxes / [sx, sy, sx, sy]`` are the boxes of the original image), and int32
        ``(2,)`` ``(height, width)`` of the original image.

    Example:
        >>> fit_and_pad(tf.zeros((20, 40, 3)), [[0.0, 0.0, 40.0, 20.0]], (32, 32))[1].numpy()
        array([[ 0.,  0., 32., 16.]], dtype=float32)
    """
    original = tf.shape(image)[:2]
    fitted = tf.minimum(fitted_shape(image, size), tf.constant(size, tf.int32))
    image, boxes = resize_with_boxes(image, boxes, fitted)
    scale = tf.cast(fitted[::-1], tf.float32) / tf.cast(original[::-1], tf.float32)
    image = tf.ensure_shape(pad_image(image, size), [size[0], size[1], None])
    return image, boxes, scale, original
