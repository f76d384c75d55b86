"""The offline segmentation dataset: scenes of two or three of the bundled digits each, at
different sizes, with a mask that labels every pixel of a digit's ink with its class
(``keras_resnet.data.load("digit_scenes", ...)``).

Each scene is a black 64x64 canvas (3 equal channels). Two or three digits of the split
(scikit-learn's 8x8 digits, :func:`~keras_resnet.data.sources.digits.digits_arrays`) are
scaled by nearest neighbour (at pixel centres) to a random side in
[12, 32] and placed at random where their boxes overlap no other digit's. A pixel is a digit's
ink when its value is at least :data:`INK_THRESHOLD` (half of 255: 8 of the digits' 16 grey
levels); it is labelled with class ``digit + 1`` there and 0 ("background") everywhere else.
Scenes of a split use only that split's digits, so no test digit is in a training scene.
Fixed by split: 2000 / 250 / 500 scenes (train / validation / test), seeds 10 / 11 / 12.
"""

import numpy as np
import tensorflow as tf

from keras_resnet.data.sources.base import Source, split_error
from keras_resnet.data.sources.digits import digits_arrays
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument, check_positive_int

SCENE_SIZE = 64
SCENE_DIGITS = (2, 3)  # digits per scene, equally likely
DIGIT_SIDES = (12, 32)  # a digit's side after scaling, inclusive
INK_THRESHOLD = 128  # a digit pixel at least this bright (of 255) is ink
SCENE_COUNTS = {"train": 2000, "validation": 250, "test": 500}
SCENE_SEEDS = {"train": 10, "validation": 11, "test": 12}
SCENE_CLASSES = ["background"] + [str(digit) for digit in range(10)]
_PLACEMENT_TRIES = 50


def scale_nearest(digit, side):
    """A 2-D ``digit`` scaled to ``side x side`` by nearest neighbour: each output pixel takes
    the input pixel under its centre, ``floor((i + 1/2) * height / side)`` (in integers, so
    exact ties go to the later pixel).

    Example:
        >>> scale_nearest(np.arange(4).reshape(2, 2), 4)[:, 0].tolist()
        [0, 0, 2, 2]
    """
    height, width = digit.shape
    centres = 2 * np.arange(side) + 1
    rows, cols = centres * height // (2 * side), centres * width // (2 * side)
    return digit[rows[:, None], cols[None, :]]


def _free_box(rng, side, boxes):
    """A random ``(top, left)`` for a ``side`` box that overlaps none of ``boxes``, or None."""
    for _ in range(_PLACEMENT_TRIES):
        top, left = (int(v) for v in rng.integers(0, SCENE_SIZE - side + 1, size=2))
        if all(top + side <= other_top or other_top + other <= top
               or left + side <= other_left or other_left + other <= left
               for other_top, other_left, other in boxes):
            return top, left
    return None


def _draw_scene(rng, pool, digits, digit_labels, image, mask, placement):
    """Place two or three digits of ``pool`` on ``image`` / ``mask``; record them in
    ``placement`` rows ``(digit index, top, left, side)``."""
    boxes = []
    for slot in range(int(rng.choice(SCENE_DIGITS))):
        index = int(rng.choice(pool))
        side = int(rng.integers(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1))
        where = _free_box(rng, side, boxes)
        if where is None:  # no room left: the scene keeps the digits it has
            break
        top, left = where
        patch = scale_nearest(digits[index, :, :, 0], side)
        image[top:top + side, left:left + side] = patch[..., None]
        mask[top:top + side, left:left + side][patch >= INK_THRESHOLD] = digit_labels[index] + 1
        boxes.append((top, left, side))
        placement[slot] = (index, top, left, side)


def digit_scenes(split, count=None, seed=None):
    """Scenes of two or three digits each, with their masks: the offline segmentation dataset.

    Args:
        split: "train", "validation" or "test" (the bundled digits' split: scenes of one split
            share no digit image with another's).
        count: scenes to make; default 2000 / 250 / 500.
        seed: default 10 / 11 / 12 by split.

    Returns:
        ``(images, masks, placements)``: uint8 ``(count, 64, 64, 3)``, uint8 ``(count, 64,
        64)`` class ids (0 background, ``d + 1`` digit ``d``), and int ``(count, 3, 4)`` rows
        ``(digit index, top, left, side)`` of each digit placed (-1: none).

    Example:
        >>> images, masks, _ = digit_scenes("test", count=2)
        >>> images.shape, masks.shape, int(masks.max()) <= 10
        ((2, 64, 64, 3), (2, 64, 64), True)
    """
    if split not in SCENE_COUNTS:
        raise InvalidArgument(f"`split` must be one of {', '.join(SCENE_COUNTS)}; got {split!r}.")
    count = SCENE_COUNTS[split] if count is None else count
    check_positive_int("count", count)
    digits, digit_labels, splits = digits_arrays()
    rng = np.random.default_rng(SCENE_SEEDS[split] if seed is None else seed)
    images = np.zeros((count, SCENE_SIZE, SCENE_SIZE, 3), np.uint8)
    masks = np.zeros((count, SCENE_SIZE, SCENE_SIZE), np.uint8)
    placements = np.full((count, max(SCENE_DIGITS), 4), -1)
    for n in range(count):
        _draw_scene(rng, splits[split], digits, digit_labels, images[n], masks[n], placements[n])
    return images, masks, placements


_SCENE_CACHE = {}


def scene_source(name="digit_scenes", **options):
    """The "digit_scenes" source: each split's scenes made once per process (``options`` of
    the registry: none used).

    Example:
        >>> scene_source().class_names[:3]
        ['background', '0', '1']
    """

    def make(split):
        if split not in SCENE_COUNTS:
            raise split_error(split, "digit_scenes", SCENE_COUNTS)
        key = (split, SCENE_COUNTS[split])  # the counts may change (tests make fewer)
        if key not in _SCENE_CACHE:
            _SCENE_CACHE[key] = digit_scenes(split)[:2]
        images, masks = _SCENE_CACHE[key]
        return tf.data.Dataset.from_tensor_slices((images, masks)), len(images)

    return Source(
        name="digit_scenes",
        class_names=list(SCENE_CLASSES),
        native_side=SCENE_SIZE,
        from_files=False,
        mean_key=f"digit_scenes-{SCENE_COUNTS['train']}",  # names the training scenes
        make=make,
        decode=lambda image: tf.ensure_shape(image, (SCENE_SIZE, SCENE_SIZE, 3)),
        flip=False,  # a mirrored digit is another digit (or none)
        cache_mean=False,  # made in a second: no file
        masks=True,
        decode_mask=lambda mask: tf.ensure_shape(mask, (SCENE_SIZE, SCENE_SIZE)),
    )


register("digit_scenes", scene_source)
