"""The offline detection dataset: scenes of up to four of the bundled digits each, with a box
and a class per digit (``keras_resnet.data.load("digit_boxes", ...)``).

Scenes are drawn as the segmentation set's (:mod:`.digit_scenes`): a black 64x64 canvas (3
equal channels), digits of the split (scikit-learn's 8x8 digits) scaled by nearest neighbour
(:func:`~keras_resnet.data.sources.digit_scenes.scale_nearest`) and placed at random where
their squares overlap no other digit's. Here a scene has 1 to 4 digits (equally likely) at a
side in [8, 32] (small ones included), and 5% of the scenes have none. A digit's box is the
tight box of its ink (pixels at least ``INK_THRESHOLD``, 128) in ``x1, y1, x2, y2`` pixels,
``x2`` the last ink column + 1 and ``y2`` the last ink row + 1; its class is the digit, 0..9
(no background class). Scenes of a split use only that split's digits. Fixed by split: 2000 /
250 / 500 scenes (train / validation / test), seeds 20 / 21 / 22. No flips in training: a
mirrored digit is another digit (or none), as for the other digit sets.
"""

import numpy as np
import tensorflow as tf

from keras_resnet.data.sources.base import split_error
from keras_resnet.data.sources.boxes import BoxSource, ragged_targets
from keras_resnet.data.sources.digit_scenes import INK_THRESHOLD, SCENE_SIZE, scale_nearest
from keras_resnet.data.sources.digits import digits_arrays
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument, check_positive_int

BOX_SCENE_DIGITS = (1, 2, 3, 4)  # digits per scene (of those with any), equally likely
BOX_DIGIT_SIDES = (8, 32)  # a digit's side after scaling, inclusive
EMPTY_SCENE_SHARE = 0.05  # scenes without a digit
BOX_COUNTS = {"train": 2000, "validation": 250, "test": 500}
BOX_SEEDS = {"train": 20, "validation": 21, "test": 22}
BOX_CLASSES = [str(digit) for digit in range(10)]
_PLACEMENT_TRIES = 50


def ink_box(patch, top=0, left=0):
    """The tight box ``(x1, y1, x2, y2)`` of the ink (``>= INK_THRESHOLD``) of a 2-D ``patch``
    placed at ``(top, left)``, exclusive ends; None without ink.

    Example:
        >>> ink_box(np.array([[0, 0, 0], [0, 200, 255]]), top=5, left=1)
        (2, 6, 4, 7)
    """
    rows = np.flatnonzero((patch >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((patch >= INK_THRESHOLD).any(axis=0))
    if not rows.size:
        return None
    return (left + int(cols[0]), top + int(rows[0]), left + int(cols[-1]) + 1,
            top + int(rows[-1]) + 1)


def _free_square(rng, side, squares):
    """A random ``(top, left)`` for a ``side`` square that overlaps none of ``squares`` (the
    segmentation set's placement rule), or None."""
    for _ in range(_PLACEMENT_TRIES):
        top, left = (int(v) for v in rng.integers(0, SCENE_SIZE - side + 1, size=2))
        if all(top + side <= t or t + s <= top or left + side <= lf or lf + s <= left
               for t, lf, s in squares):
            return top, left
    return None


def _draw_scene(rng, pool, arrays, image, boxes, classes, placement):
    """Place the scene's digits of ``pool`` on ``image``; write each one's ink box, class and
    ``(digit index, top, left, side)`` in row ``slot`` of ``boxes``/``classes``/``placement``."""
    digits, labels = arrays
    if rng.random() < EMPTY_SCENE_SHARE:
        return
    squares = []
    for slot in range(int(rng.choice(BOX_SCENE_DIGITS))):
        index = int(rng.choice(pool))
        side = int(rng.integers(BOX_DIGIT_SIDES[0], BOX_DIGIT_SIDES[1] + 1))
        where = _free_square(rng, side, squares)
        if where is None:  # no room left: the scene keeps the digits it has
            break
        top, left = where
        patch = scale_nearest(digits[index, :, :, 0], side)
        image[top:top + side, left:left + side] = patch[..., None]
        # At sides >= 8 every pixel of the 8x8 digit is sampled, so every digit has ink.
        boxes[slot] = ink_box(patch, top, left)
        classes[slot] = labels[index]
        squares.append((top, left, side))
        placement[slot] = (index, top, left, side)


def digit_boxes(split, count=None, seed=None):
    """Scenes of up to four digits each, with their boxes: the offline detection dataset.

    Args:
        split: "train", "validation" or "test" (the bundled digits' split: scenes of one split
            share no digit image with another's).
        count: scenes to make; default 2000 / 250 / 500.
        seed: default 20 / 21 / 22 by split.

    Returns:
        ``(images, boxes, classes, placements)``: uint8 ``(count, 64, 64, 3)``, float32
        ``(count, 4, 4)`` ink boxes ``x1, y1, x2, y2`` (0 where no digit), int32 ``(count, 4)``
        digits (-1 where none: the batches' padding), and int ``(count, 4, 4)`` rows
        ``(digit index, top, left, side)`` of each digit placed (-1: none).

    Example:
        >>> images, boxes, classes, _ = digit_boxes("test", count=2)
        >>> images.shape, boxes.shape, classes.shape
        ((2, 64, 64, 3), (2, 4, 4), (2, 4))
    """
    if split not in BOX_COUNTS:
        raise InvalidArgument(f"`split` must be one of {', '.join(BOX_COUNTS)}; got {split!r}.")
    count = BOX_COUNTS[split] if count is None else count
    check_positive_int("count", count)
    digits, digit_labels, splits = digits_arrays()
    rng = np.random.default_rng(BOX_SEEDS[split] if seed is None else seed)
    most = max(BOX_SCENE_DIGITS)
    images = np.zeros((count, SCENE_SIZE, SCENE_SIZE, 3), np.uint8)
    boxes = np.zeros((count, most, 4), np.float32)
    classes = np.full((count, most), -1, np.int32)
    placements = np.full((count, most, 4), -1)
    for n in range(count):
        _draw_scene(rng, splits[split], (digits, digit_labels), images[n], boxes[n], classes[n],
                    placements[n])
    return images, boxes, classes, placements


_BOX_CACHE = {}


def box_scene_source(name="digit_boxes", **options):
    """The "digit_boxes" source: each split's scenes made once per process (``options`` of
    the registry: none used).

    Example:
        >>> box_scene_source().class_names[:3]
        ['0', '1', '2']
    """

    def make(split):
        if split not in BOX_COUNTS:
            raise split_error(split, "digit_boxes", BOX_COUNTS)
        key = (split, BOX_COUNTS[split])  # the counts may change (tests make fewer)
        if key not in _BOX_CACHE:
            images, boxes, classes, _ = digit_boxes(split)
            present = classes >= 0
            _BOX_CACHE[key] = images, ragged_targets(
                [b[p] for b, p in zip(boxes, present)], [c[p] for c, p in zip(classes, present)])
        images, targets = _BOX_CACHE[key]
        dataset = tf.data.Dataset.from_tensor_slices((images, targets))
        # a map: each image's rows as plain tensors (not ragged ones of rank 0)
        return dataset.map(lambda image, found: (image, found)), len(images)

    return BoxSource(
        name="digit_boxes",
        class_names=list(BOX_CLASSES),
        native_side=SCENE_SIZE,
        from_files=False,
        mean_key=f"digit_boxes-{BOX_COUNTS['train']}",  # names the training scenes
        make=make,
        decode=lambda image: tf.ensure_shape(image, (SCENE_SIZE, SCENE_SIZE, 3)),
        flip=False,  # a mirrored digit is another digit (or none)
        one_label_each=False,
        cache_mean=False,  # made in a second: no file
        most_boxes=max(BOX_SCENE_DIGITS),
    )


register("digit_boxes", box_scene_source)
