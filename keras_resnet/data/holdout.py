"""A validation split held out of the training split, for data sets that have none.

The paper chose its CIFAR-10 schedule on held-out training images, never on the test set
(§4.2: "45k/5k train/val split"). :func:`with_holdout` does the same for any source without a
validation split (CIFAR in tensorflow-datasets, image folders with ``train/`` and ``test/``
only, labels files without validation rows): a seeded share of each class's training images
becomes ``"validation"`` and the rest ``"train"`` (CIFAR-10 at the default 10%: 45,000 and
5,000, 500 of each class). The same images are held out for every run of a data set, whatever
the run's seed, so runs compare; the test split is untouched.

Example:
    >>> int(held_out_mask(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 0.5, seed=0).sum())
    5
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_resnet.errors import InvalidArgument

DEFAULT_FRACTION = 0.1  # CIFAR: the paper's 5k of 50k
HOLDOUT_SEED = 0
_MASKS = {}  # (source.mean_key, fraction, seed) -> bool mask over the training split


@dataclasses.dataclass(frozen=True)
class Holdout:
    """``fraction`` of each class's training images, chosen with ``seed``, for validation.

    Example:
        >>> Holdout(0.1).to_config()
        {'fraction': 0.1, 'seed': 0}
    """

    fraction: float = DEFAULT_FRACTION
    seed: int = HOLDOUT_SEED

    def __post_init__(self):
        fraction = self.fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise InvalidArgument(
                f"`validation_fraction` must be a number in (0, 1); got {fraction!r}.")

    def to_config(self):
        return {"fraction": self.fraction, "seed": self.seed}


def held_out_mask(labels, fraction, seed):
    """A bool mask over ``labels`` that picks ``round(fraction * n_c)`` of the ``n_c`` images
    of each class ``c`` (multi-hot rows: of each first label), uniformly with ``seed``.

    Example:
        >>> int(held_out_mask(np.arange(10) % 2, 0.2, seed=1).sum())
        2
    """
    labels = np.asarray(labels)
    classes = labels.argmax(axis=1) if labels.ndim == 2 else labels
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(classes), bool)
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        mask[rng.permutation(members)[: int(round(fraction * len(members)))]] = True
    return mask


def _training_labels(source):
    dataset, _ = source.make(source.train_split)
    labels = dataset.map(lambda encoded, label: label).batch(4096)
    return np.concatenate(list(labels.as_numpy_iterator()))


def _mask(source, holdout):
    key = (source.mean_key, holdout.fraction, holdout.seed)
    if key not in _MASKS:
        mask = held_out_mask(_training_labels(source), holdout.fraction, holdout.seed)
        if not mask.any() or mask.all():
            raise InvalidArgument(
                f"Dataset {source.name!r} has no validation split and {len(mask)} training "
                f"images: too few to hold out {holdout.fraction:.0%} of each class for "
                "validation. Add a validation split, or train on the whole training split "
                "with `validation='none'`.")
        _MASKS[key] = mask
    return _MASKS[key]


def with_holdout(source, holdout):
    """``source`` with ``"validation"`` held out of its training split and ``"train"`` the
    rest (both in the source's order, the training pipeline shuffles); other splits as they
    were. The source must read its training split in a fixed order (tfds: unshuffled files).

    Example:
        >>> with_holdout(get_source("cifar10"), Holdout()).make("validation")[1]  # doctest: +SKIP
        5000
    """
    mask = _mask(source, holdout)
    keep = {"validation": tf.constant(mask), "train": tf.constant(~mask)}
    counts = {"validation": int(mask.sum()), "train": int((~mask).sum())}
    make_split = source.make

    def make(split):
        if split not in keep:
            return make_split(split)
        dataset, _ = make_split(source.train_split)
        chosen = keep[split]
        dataset = dataset.enumerate().filter(lambda i, example: chosen[i])
        return dataset.map(lambda i, example: example), counts[split]

    # Sharding by element (not by file: the mask counts every element); the mean image of the
    # images that train.
    return dataclasses.replace(
        source, make=make, train_split="train", from_files=False,
        mean_key=f"{source.mean_key}_holdout{holdout.fraction:g}_{holdout.seed}")


def pairs_with_holdout(source, holdout):
    """``source`` of ``(image, target)`` pairs (masks, boxes) with ``holdout`` of its training
    images as "validation": one share of all images, since such a target has no single class
    to stratify by (:func:`with_holdout` over one key for every image).

    Example:
        >>> pairs_with_holdout(get_source("digit_scenes"), Holdout()).make("validation")[1]  # doctest: +SKIP
        200
    """
    def keyed(split):  # (image, target) as the "encoded" element, one key for every image
        dataset, count = source.make(split)
        return dataset.map(lambda image, target: ((image, target), 0)), count

    held = with_holdout(dataclasses.replace(source, make=keyed), holdout)

    def make(split):
        dataset, count = held.make(split)
        return dataset.map(lambda pair, key: pair), count

    return dataclasses.replace(held, make=make)
