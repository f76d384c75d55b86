"""Image operations in TensorFlow, usable inside ``tf.data``, ``tf.function`` and SavedModel
signatures: the channels, resize policies and normalisation of ``ImagePreprocessing``, the
evaluation preprocessing, and §3.4's 10-crop testing. The training augmentations are in
``keras_resnet.data.augment``.
"""

import tensorflow as tf

from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.preprocessing import IMAGENET_MEAN, ImagePreprocessing  # noqa: F401

SCALE = 1.0 / 255.0
# §3.4 lengths at the paper's 224 crop; ``image_size`` scales them.
IMAGENET_CROP = 224
IMAGENET_EVAL_SIDE = 256
CIFAR_SIZE = 32


def to_rgb(images):
    """Grayscale -> RGB (repeat), RGBA -> RGB (drop alpha); last axis is channels.

    Example:
        >>> to_rgb(tf.zeros((2, 8, 8, 1))).shape
        TensorShape([2, 8, 8, 3])
    """
    channels = images.shape[-1]
    if channels == 3:
        return images
    if channels == 1:
        return tf.repeat(images, 3, axis=-1)
    if channels == 4:
        return images[..., :3]
    if channels is None:
        return tf.cond(
            tf.equal(tf.shape(images)[-1], 1),
            lambda: tf.repeat(images[..., :1], 3, axis=-1),
            lambda: images[..., :3],
        )
    raise InvalidArgument(f"`images` must have 1, 3 or 4 channels; got shape {images.shape}.")


def to_model_channels(images, preprocessing):
    """Images (1, 3 or 4 channels) as the channels ``preprocessing`` (an
    ``ImagePreprocessing``) names: RGB for "rgb"/"bgr" (:func:`to_rgb`), one luma channel for
    "grey" (ITU-R 601, rounded back to uint8 for uint8 images), and exactly ``channels`` as
    given for "stacked".

    Example:
        >>> to_model_channels(tf.zeros((2, 8, 8, 3), tf.uint8), ImagePreprocessing(8, channel_order="grey")).shape
        TensorShape([2, 8, 8, 1])
    """
    order = preprocessing.channel_order
    if order in ("rgb", "bgr"):
        return to_rgb(images)
    channels = images.shape[-1]
    if order == "stacked":
        if channels != preprocessing.channels:
            raise InvalidArgument(
                f"The model takes {preprocessing.channels} stacked channels; got images of shape "
                f"{images.shape}. Give arrays with exactly {preprocessing.channels} channels."
            )
        return images
    if channels == 1:
        return images
    grey = tf.image.rgb_to_grayscale(tf.cast(to_rgb(images), tf.float32))
    if images.dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(grey), 0.0, 255.0), tf.uint8)
    return tf.cast(grey, images.dtype)


def resize_to_uint8(images, size, method="bilinear"):
    """Resize to ``size`` (an int for a square, or (height, width)), rounded back to uint8
    (identity at the same size)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    resized = tf.image.resize(images, size, method=method)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def resize_shorter_side(images, size, method="bilinear"):
    """Resize so that the shorter side is ``size``, keeping the aspect ratio (bilinear).

    Args:
        images: ``(h, w, c)`` or ``(batch, h, w, c)`` tensor.
        size: int or scalar int tensor.
        method: "bilinear" or "bicubic".

    Returns:
        float32 tensor.

    Example:
        >>> resize_shorter_side(tf.zeros((300, 400, 3)), 256).shape
        TensorShape([256, 341, 3])
    """
    shape = tf.shape(images)
    height = tf.cast(shape[-3], tf.float32)
    width = tf.cast(shape[-2], tf.float32)
    size = tf.cast(size, tf.float32)
    ratio = size / tf.minimum(height, width)
    new_height = tf.cast(tf.maximum(tf.round(height * ratio), size), tf.int32)
    new_width = tf.cast(tf.maximum(tf.round(width * ratio), size), tf.int32)
    return tf.image.resize(
        tf.cast(images, tf.float32), tf.stack([new_height, new_width]), method=method
    )


def center_crop(images, crop_size):
    """The central ``crop_size`` window (an int for a square, or (height, width)) of
    ``(h, w, c)`` or ``(b, h, w, c)`` images.

    Example:
        >>> center_crop(tf.zeros((256, 341, 3)), 224).shape
        TensorShape([224, 224, 3])
    """
    height, width = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    shape = tf.shape(images)
    top = (shape[-3] - height) // 2
    left = (shape[-2] - width) // 2
    return tf.image.crop_to_bounding_box(images, top, left, height, width)


def ten_crop(images, crop_size):
    """The 10 crops of §3.4's testing: 4 corners and centre, and their horizontal mirrors.

    Args:
        images: ``(batch, h, w, c)`` tensor with ``h, w >= crop_size``.
        crop_size: side of the square crops.

    Returns:
        ``(batch * 10, crop_size, crop_size, c)``, image-major: rows ``10*i .. 10*i+9`` are
        image ``i``'s top-left, top-right, bottom-left, bottom-right and centre crops, then the
        same five mirrored left-right. Average a model's outputs with
        :func:`average_crops` (``reshape(batch, 10, classes).mean(1)``).

    Example:
        >>> ten_crop(tf.zeros((2, 256, 256, 3)), 224).shape
        TensorShape([20, 224, 224, 3])
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise InvalidArgument(f"`images` must be (batch, h, w, c); got shape {images.shape}.")
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    offsets = [
        (0, 0),
        (0, width - crop_size),
        (height - crop_size, 0),
        (height - crop_size, width - crop_size),
        ((height - crop_size) // 2, (width - crop_size) // 2),
    ]
    crops = [
        tf.image.crop_to_bounding_box(images, top, left, crop_size, crop_size)
        for top, left in offsets
    ]
    crops += [tf.reverse(crop, axis=[2]) for crop in crops]
    stacked = tf.stack(crops, axis=1)  # (batch, 10, crop, crop, c)
    return tf.reshape(stacked, tf.concat([[-1, crop_size, crop_size], shape[3:]], axis=0))


def average_crops(predictions, num_crops=10):
    """Average per-crop predictions ``(batch * num_crops, ...)`` to ``(batch, ...)``.

    The inverse of :func:`ten_crop`'s layout (§3.4: "average the scores").

    Example:
        >>> model = keras_resnet.ResNet18(input_shape=(224, 224, 3), classes=5)
        >>> average_crops(model(ten_crop(tf.zeros((2, 256, 256, 3)), 224))).shape
        TensorShape([2, 5])
    """
    predictions = tf.convert_to_tensor(predictions)
    shape = tf.shape(predictions)
    grouped = tf.reshape(predictions, tf.concat([[-1, num_crops], shape[1:]], axis=0))
    return tf.reduce_mean(grouped, axis=1)


def normalize(images, preprocessing):
    """``(images[..., order] * scale - mean) / std`` of resized 0..255 images, per
    ``preprocessing`` (an ``ImagePreprocessing``).

    Example:
        >>> float(normalize(tf.fill((1, 32, 32, 3), 255), ImagePreprocessing(32)).numpy().max())
        1.0
    """
    x = tf.cast(images, tf.float32)
    if preprocessing.channel_order == "bgr":
        x = x[..., ::-1]
    x = x * preprocessing.scale - tf.constant(preprocessing.mean, tf.float32)
    if preprocessing.std is not None:
        x = x / tf.constant(preprocessing.std, tf.float32)
    return x


def as_preprocessing(preprocessing):
    """The ``ImagePreprocessing`` of ``preprocessing``, a ``DatasetInfo`` or an
    ``ImagePreprocessing``."""
    preprocessing = getattr(preprocessing, "preprocessing", preprocessing)
    if not isinstance(preprocessing, ImagePreprocessing):
        raise InvalidType(
            "`preprocessing` must be an ImagePreprocessing (or a DatasetInfo); got "
            f"{type(preprocessing).__name__}."
        )
    return preprocessing


def preprocess(images, preprocessing):
    """Evaluation preprocessing of a batch of images, as the model expects them.

    Pure TF ops, so it can sit in a SavedModel signature. ``"direct"``: resize to the model
    input (identity when already that size); ``"shorter_side"``: shorter side to
    ``resize_size``, centre crop. Then :func:`normalize`.

    Args:
        images: ``(batch, h, w, c)`` uint8 (or numbers in 0..255), c = 1, 3 or 4 (or the
            model's channels, if stacked).
        preprocessing: an ``ImagePreprocessing`` (``keras_resnet.preprocessing.of(model)``)
            or a ``DatasetInfo``.

    Returns:
        float32 ``(batch, height, width, channels)``.

    Example:
        >>> preprocess(tf.zeros((2, 8, 8, 1), tf.uint8), ImagePreprocessing(32)).shape
        TensorShape([2, 32, 32, 3])
    """
    preprocessing = as_preprocessing(preprocessing)
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise InvalidArgument(f"`images` must be (batch, h, w, c); got shape {images.shape}.")
    images = to_model_channels(images, preprocessing)
    method = preprocessing.interpolation
    if preprocessing.resize == "shorter_side":
        images = resize_shorter_side(images, preprocessing.resize_size, method)
        images = center_crop(images, preprocessing.image_size)
    else:
        if images.dtype != tf.uint8:
            images = tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0.0, 255.0)
        images = resize_to_uint8(images, preprocessing.image_size, method)
    return normalize(images, preprocessing)
