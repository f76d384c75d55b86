"""What every data source gives: a :class:`Source` (class names, native size, and ``make(split)``
for a split's ``(encoded, label)`` examples), the standard split names, and the decoding of
encoded image bytes shared by the file-backed sources."""

import dataclasses

import tensorflow as tf

from keras_resnet.errors import InvalidArgument

STANDARD_SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Source:
    """Where a dataset's examples come from; ``make(split)`` gives ``(dataset, count)`` of
    ``(encoded, label)``: int32 labels, multi-hot uint8 rows when ``multilabel``, or an
    encoded mask that ``decode_mask`` turns into uint8 ``(h, w)`` class ids when ``masks``."""

    name: str
    class_names: list
    native_side: object  # largest image side, None if unknown
    from_files: bool  # read from record files (auto-shard by file), else in-memory / paths
    mean_key: str  # names the training split's contents, for the mean cache
    make: object  # split -> (dataset of (encoded, label), num_examples or None)
    decode: object  # encoded -> uint8 (h, w, 3)
    train_split: str = "train"
    flip: bool = True
    multilabel: bool = False  # labels are multi-hot rows (several labels per image)
    one_label_each: bool = True  # every image has exactly one label (so single-label works)
    cache_mean: bool = True  # cache the mean image in a file (False: quick to recompute)
    masks: bool = False  # labels are per-pixel masks (segmentation; 255: ignore)
    decode_mask: object = None  # encoded mask -> uint8 (h, w), when ``masks``


class MissingSplit(InvalidArgument):
    """A split the data set does not have (or has no images in)."""


def split_error(split, name, available):
    """The error for a split that ``name`` lacks, listing the ones it has.

    Example:
        >>> str(split_error("val", "digits", STANDARD_SPLITS))[:31]
        "`split` 'val' does not exist fo"
    """
    return MissingSplit(
        f"`split` {split!r} does not exist for dataset {name!r}; available: "
        f"{', '.join(map(repr, available))}."
    )


def decode_encoded(encoded):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 ``(h, w, 3)`` (the first frame of a GIF).

    Example:
        >>> decode_encoded(tf.io.encode_png(tf.zeros((4, 5, 3), tf.uint8))).shape
        TensorShape([4, 5, 3])
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
