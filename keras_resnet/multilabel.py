"""Multi-label classification (several labels per image: tags, attributes, findings): its
metrics and decision thresholds, and an offline dataset of digit canvases.

- :func:`average_precision`: per class, the area under the precision-recall curve as the
  step sum ``sum_n (R_n - R_{n-1}) P_n`` over the distinct scores (scikit-learn's
  ``average_precision_score``); :func:`multilabel_report` gives its mean over the classes
  that have positives (mAP) and F1 at decision thresholds, per class, macro and micro.
- :func:`choose_thresholds`: per class, the threshold that maximises that class's F1 on
  validation data (midway between two scores, so a test score equal to a validation score
  falls on the same side).
- :func:`digit_canvases`: 32x32 canvases of two or three of the bundled digits each, labelled
  with the digits present; each split's canvases are made from that split's digits only.

NumPy only (scikit-learn's digits for the canvases).

Example:
    >>> y = np.array([[1, 0], [0, 1], [1, 1]])
    >>> s = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4]])
    >>> round(multilabel_report(y, s)["mAP"], 3)
    1.0
"""

import numpy as np

from keras_resnet.errors import InvalidArgument

DEFAULT_THRESHOLD = 0.5
CANVAS_SIZE, CELL = 32, 16  # a 2x2 grid of 16x16 cells, each a digit upscaled 2x
CANVAS_COUNTS = {"train": 3000, "validation": 500, "test": 1000}
CANVAS_SEEDS = {"train": 0, "validation": 1, "test": 2}


def _checked(y_true, scores):
    y_true, scores = np.asarray(y_true), np.asarray(scores, np.float64)
    if y_true.ndim != 2 or y_true.shape != scores.shape:
        raise InvalidArgument(
            f"`y_true` and `scores` must both be (examples, classes); got {y_true.shape} and {scores.shape}."
        )
    if not np.isin(y_true, (0, 1)).all():
        raise InvalidArgument("`y_true` must hold 0 or 1 (multi-hot labels).")
    return y_true.astype(bool), scores


def _ranked(truth, scores):
    """True and false positives at each distinct score, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last of each tie
    true_positives = np.cumsum(truth)[last]
    return scores[last], true_positives, last + 1 - true_positives


def average_precision(y_true, scores):
    """Average precision of each class: ``(classes,)``, NaN for a class without positives.

    Example:
        >>> average_precision([[1], [0], [1]], [[0.9], [0.8], [0.7]]).round(3)
        array([0.833])
    """
    truth, scores = _checked(y_true, scores)
    result = np.full(truth.shape[1], np.nan)
    for k in range(truth.shape[1]):
        if not truth[:, k].any():
            continue
        _, true_positives, false_positives = _ranked(truth[:, k], scores[:, k])
        precision = true_positives / (true_positives + false_positives)
        recall = true_positives / true_positives[-1]
        result[k] = np.sum(np.diff(np.r_[0.0, recall]) * precision)
    return result


def choose_thresholds(y_true, scores, default=DEFAULT_THRESHOLD):
    """Per class, the decision threshold with the best F1 on ``(y_true, scores)`` (validation
    data); ``default`` for a class without positives there.

    Example:
        >>> choose_thresholds([[1], [0], [1]], [[0.9], [0.2], [0.6]])
        array([0.4])
    """
    truth, scores = _checked(y_true, scores)
    thresholds = np.full(truth.shape[1], float(default))
    for k in range(truth.shape[1]):
        positives = truth[:, k].sum()
        if positives == 0:
            continue
        distinct, true_positives, false_positives = _ranked(truth[:, k], scores[:, k])
        f1 = 2 * true_positives / (positives + true_positives + false_positives)
        best = int(np.argmax(f1))  # the highest threshold among equals
        below = distinct[best + 1] if best + 1 < len(distinct) else min(distinct[best], 0.0) - 1.0
        thresholds[k] = (distinct[best] + below) / 2
    return thresholds


def multilabel_report(y_true, scores, thresholds=DEFAULT_THRESHOLD, class_names=None):
    """mAP, and F1 at ``thresholds`` (a label is predicted when its score >= its threshold).

    Args:
        y_true: multi-hot ``(examples, classes)``.
        scores: ``(examples, classes)``, e.g. sigmoid outputs.
        thresholds: one number, or one per class (:func:`choose_thresholds`).
        class_names: names for the per-class rows; default "0", "1", ...

    Returns:
        dict: ``mAP`` (over classes with positives), ``f1_macro``, ``f1_micro`` (F1 of 0 for a
        class with nothing predicted and nothing true, as scikit-learn's ``zero_division=0``),
        and ``per_class``: ``{name: {"ap", "f1", "threshold", "positives"}}``.

    Example:
        >>> multilabel_report([[1, 0]], [[0.7, 0.6]], thresholds=[0.5, 0.65])["f1_micro"]
        1.0
    """
    truth, scores = _checked(y_true, scores)
    classes = truth.shape[1]
    thresholds = np.broadcast_to(np.asarray(thresholds, np.float64), (classes,))
    names = [str(k) for k in range(classes)] if class_names is None else list(class_names)
    if len(names) != classes:
        raise InvalidArgument(f"`class_names` must name {classes} classes; got {len(names)}.")
    predicted = scores >= thresholds
    tp = (predicted & truth).sum(0)
    fp = (predicted & ~truth).sum(0)
    fn = (~predicted & truth).sum(0)
    denominators = 2 * tp + fp + fn
    f1 = np.where(denominators > 0, 2 * tp / np.maximum(denominators, 1), 0.0)
    ap = average_precision(truth, scores)
    micro_denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "mAP": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
        "f1_macro": float(f1.mean()),
        "f1_micro": float(2 * tp.sum() / micro_denominator) if micro_denominator else 0.0,
        "per_class": {name: {"ap": float(ap[k]), "f1": float(f1[k]), "threshold": float(thresholds[k]),
                             "positives": int(truth[:, k].sum())} for k, name in enumerate(names)},
    }


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
    from keras_resnet.data.sources import digits_arrays  # scikit-learn's digits, split as in "digits"

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
