"""Multi-label classification (several labels per image: tags, attributes, findings): its
metrics and decision thresholds.

- :func:`average_precision`: per class, the area under the precision-recall curve as the
  step sum ``sum_n (R_n - R_{n-1}) P_n`` over the distinct scores (scikit-learn's
  ``average_precision_score``); :func:`multilabel_report` gives its mean over the classes
  that have positives (mAP) and F1 at decision thresholds, per class, macro and micro.
- :func:`choose_thresholds`: per class, the threshold that maximises that class's F1 on
  validation data (midway between two scores, so a test score equal to a validation score
  falls on the same side).

The offline multi-label dataset (canvases of digits) is ``keras_resnet.data.digit_canvases``;
the training, evaluation, export and serving of multi-label models are those of single-label
ones with ``task="multilabel"`` (``keras_resnet.runs``). NumPy only.

Example:
    >>> y = np.array([[1, 0], [0, 1], [1, 1]])
    >>> s = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4]])
    >>> round(multilabel_report(y, s)["mAP"], 3)
    1.0
"""

import numpy as np

from keras_resnet.errors import InvalidArgument

DEFAULT_THRESHOLD = 0.5
# What a model learns: "auto" lets the data (or a model's preprocessing) say; "segmentation"
# needs data with masks (a class per pixel), "detection" data with boxes.
TASKS = ("auto", "single_label", "multilabel", "segmentation", "detection")


def checked_multi_hot(y_true, scores):
    """``(y_true as bool, scores as float64)``, checked to be multi-hot labels and scores of
    the same ``(examples, classes)`` shape.

    Example:
        >>> checked_multi_hot([[1, 0]], [[0.9, 0.2]])[0].tolist()
        [[True, False]]
    """
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
    truth, scores = checked_multi_hot(y_true, scores)
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
    truth, scores = checked_multi_hot(y_true, scores)
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
    truth, scores = checked_multi_hot(y_true, scores)
    classes = truth.shape[1]
    thresholds = np.asarray(thresholds, np.float64)
    if thresholds.shape not in ((), (classes,)):
        raise InvalidArgument(
            f"`thresholds` must be one number or one per class ({classes}); got shape "
            f"{thresholds.shape}."
        )
    thresholds = np.broadcast_to(thresholds, (classes,))
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
