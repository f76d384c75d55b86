"""The ``"digits"`` source: scikit-learn's bundled 8x8 handwritten digits (1797 images, no
network), scaled to 0..255 and repeated to 3 channels. Fixed stratified split (seed 0):
``"test"`` 20% (360), ``"validation"`` 10% of the rest (144), ``"train"`` the remaining 1293.
"""

import numpy as np
import tensorflow as tf

from keras_resnet.data.images import to_rgb
from keras_resnet.data.sources.base import STANDARD_SPLITS, Source, split_error
from keras_resnet.data.sources.registry import register

DIGITS_SPLIT_SEED = 0

_DIGITS_CACHE = {}


def digits_arrays():
    """All 1797 digits as uint8 (8, 8, 1) images (0..16 scaled to 0..255), labels and split indices.

    Example:
        >>> images, labels, splits = digits_arrays()
        >>> images.shape, images.dtype.name, len(labels)
        ((1797, 8, 8, 1), 'uint8', 1797)
    """
    if "arrays" not in _DIGITS_CACHE:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int32)
        indices = np.arange(len(labels))
        rest, test = train_test_split(
            indices, test_size=0.2, stratify=labels, random_state=DIGITS_SPLIT_SEED
        )
        train, validation = train_test_split(
            rest, test_size=0.1, stratify=labels[rest], random_state=DIGITS_SPLIT_SEED
        )
        splits = {"train": np.sort(train), "validation": np.sort(validation), "test": np.sort(test)}
        _DIGITS_CACHE["arrays"] = (images, labels, splits)
    return _DIGITS_CACHE["arrays"]


def digits_source(name="digits", **options):
    """The ``Source`` of the bundled digits (``options`` of the registry: none used).

    Example:
        >>> digits_source().make("test")[1]
        360
    """
    images, labels, splits = digits_arrays()

    def make(split):
        if split not in splits:
            raise split_error(split, "digits", STANDARD_SPLITS)
        index = splits[split]
        return tf.data.Dataset.from_tensor_slices((images[index], labels[index])), len(index)

    return Source(
        name="digits",
        class_names=[str(i) for i in range(10)],
        native_side=8,
        from_files=False,
        mean_key="digits",
        make=make,
        decode=to_rgb,
        flip=False,  # a mirrored digit is another digit (or none)
        cache_mean=False,  # a fraction of a second: no file
    )


register("digits", digits_source)
