"""The offline multi-label dataset: canvases of two or three of the bundled digits each,
labelled with the digits present (``keras_resnet.data.load("digit_canvases", ...)``)."""

import numpy as np
import tensorflow as tf

from keras_resnet.data.sources.base import Source, split_error
from keras_resnet.data.sources.digits import digits_arrays
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument

CANVAS_SIZE, CELL = 32, 16  # a 2x2 grid of 16x16 cells, each a digit upscaled 2x
CANVAS_COUNTS = {"train": 3000, "validation": 500, "test": 1000}
CANVAS_SEEDS = {"train": 0, "validation": 1, "test": 2}


def digit_canvases(split, count=None, seed=None):
    """Canvases of two or three digits each, with their multi-hot labels: the offline
    multi-label dataset.

    Each 32x32 canvas is a 2x2 grid of 16x16 cells; two or three cells (equally likely) hold a
    digit of ``split`` (scikit-learn's 8x8 digits, upscaled 2x), the others stay black. The
    labels are the digits present (a digit drawn twice is one label).

    Args:
        split: "train", "validation" or "test" (the bundled digits' split: canvases of one split
            share no digit image with another's).
        count: canvases to make; default 3000 / 500 / 1000.
        seed: default 0 / 1 / 2 by split.

    Returns:
        ``(images, labels, cells)``: uint8 ``(count, 32, 32, 3)``, uint8 ``(count, 10)``, and
        int ``(count, 4)``, the digit image index in each cell (-1: empty).

    Example:
        >>> images, labels, _ = digit_canvases("test", count=4)
        >>> images.shape, int(labels.sum(axis=1).min()) >= 1
        ((4, 32, 32, 3), True)
    """
    if split not in CANVAS_COUNTS:
        raise InvalidArgument(f"`split` must be one of {', '.join(CANVAS_COUNTS)}; got {split!r}.")
    count = CANVAS_COUNTS[split] if count is None else count
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InvalidArgument(f"`count` must be a positive integer; got {count!r}.")
    digits, digit_labels, splits = digits_arrays()
    pool = splits[split]
    rng = np.random.default_rng(CANVAS_SEEDS[split] if seed is None else seed)
    images = np.zeros((count, CANVAS_SIZE, CANVAS_SIZE, 3), np.uint8)
    labels = np.zeros((count, 10), np.uint8)
    cells = np.full((count, 4), -1)
    for n in range(count):
        filled = rng.choice(4, size=rng.integers(2, 4), replace=False)
        for cell in filled:
            index = int(rng.choice(pool))
            row, col = divmod(int(cell), 2)
            patch = np.kron(digits[index, :, :, 0], np.ones((2, 2), np.uint8))
            images[n, row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = patch[..., None]
            labels[n, digit_labels[index]] = 1
            cells[n, cell] = index
    return images, labels, cells


_CANVAS_CACHE = {}


def canvas_source(name="digit_canvases", **options):
    """The "digit_canvases" source: each split's canvases made once per process
    (``options`` of the registry: none used).

    Example:
        >>> canvas_source().multilabel
        True
    """

    def make(split):
        if split not in CANVAS_COUNTS:
            raise split_error(split, "digit_canvases", CANVAS_COUNTS)
        if split not in _CANVAS_CACHE:
            _CANVAS_CACHE[split] = digit_canvases(split)[:2]
        images, labels = _CANVAS_CACHE[split]
        return tf.data.Dataset.from_tensor_slices((images, labels)), len(images)

    def decode(image):
        return tf.ensure_shape(image, (CANVAS_SIZE, CANVAS_SIZE, 3))

    return Source(
        name="digit_canvases",
        class_names=[str(i) for i in range(10)],
        native_side=CANVAS_SIZE,
        from_files=False,
        mean_key="digit_canvases",
        make=make,
        decode=decode,
        flip=False,  # a mirrored digit is another digit (or none)
        multilabel=True,
        one_label_each=False,
        cache_mean=False,  # made in a second: no file
    )


register("digit_canvases", canvas_source)
