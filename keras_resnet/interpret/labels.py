"""A multi-label classifier's mistakes as arrays: each label's 2x2 table at its threshold
(true/false positives and negatives, as scikit-learn's ``multilabel_confusion_matrix``), its
precision-recall curve (scikit-learn's ``precision_recall_curve``) and the images with the
largest loss (NumPy only).

A confusion matrix between labels means nothing when an image has several: each label is its
own yes/no question, so each gets its own 2x2 table and curve.

Example:
    >>> label_table([[1, 0], [1, 1]], [[0.9, 0.2], [0.4, 0.7]], [0.5, 0.5], ["a", "b"])[0]["fn"]
    1
"""

import numpy as np

from keras_resnet.errors import InvalidArgument, check_positive_int
from keras_resnet.interpret.classes import largest
from keras_resnet.multilabel import average_precision, checked_multi_hot


def label_table(y_true, scores, thresholds, class_names):
    """Each label's 2x2 table at its threshold (predicted when ``score >= threshold``), with
    precision, recall and F1 (0.0 where undefined, as ``zero_division=0``) and average precision.

    Args:
        y_true: multi-hot ``(examples, labels)``.
        scores: ``(examples, labels)`` probabilities (sigmoid outputs).
        thresholds: one per label (a model's Task carries them).
        class_names: the name of each label.

    Returns:
        list of ``{"label", "threshold", "tp", "fp", "fn", "tn", "precision", "recall", "f1",
        "ap", "support"}``, one per label, in order.

    Example:
        >>> label_table([[1], [0]], [[0.8], [0.6]], [0.5], ["a"])[0]["precision"]
        0.5
    """
    truth, scores = checked_multi_hot(y_true, scores)
    thresholds = np.asarray(thresholds, np.float64).reshape(-1)
    if thresholds.shape != (truth.shape[1],) or len(class_names) != truth.shape[1]:
        raise InvalidArgument(f"`thresholds` and `class_names` must have one entry per label "
                              f"({truth.shape[1]}); got {thresholds.size} and {len(class_names)}.")
    predicted = scores >= thresholds
    tp, fp = (predicted & truth).sum(0), (predicted & ~truth).sum(0)
    fn, tn = (~predicted & truth).sum(0), (~predicted & ~truth).sum(0)

    def share(numerator, denominator):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 0.0)

    precision, recall, f1 = share(tp, tp + fp), share(tp, tp + fn), share(2 * tp, 2 * tp + fp + fn)
    ap = average_precision(truth.astype(np.int64), scores)
    return [{"label": str(name), "threshold": float(thresholds[k]), "tp": int(tp[k]),
             "fp": int(fp[k]), "fn": int(fn[k]), "tn": int(tn[k]), "precision": float(precision[k]),
             "recall": float(recall[k]), "f1": float(f1[k]), "ap": float(ap[k]),
             "support": int(tp[k] + fn[k])}
            for k, name in enumerate(class_names)]


def precision_recall_curve(truth, scores):
    """One label's precision and recall at each distinct score taken as the threshold, highest
    threshold last, ending at (recall 0, precision 1): scikit-learn's ``precision_recall_curve``
    (1.9, every threshold kept).

    Args:
        truth: ``(examples,)`` 0 or 1.
        scores: ``(examples,)`` the label's scores.

    Returns:
        ``(precision, recall, thresholds)``: float64 arrays; ``thresholds`` (the distinct
        scores, lowest first) one shorter, for the points before the end.

    Example:
        >>> precision_recall_curve([1, 0, 1], [0.9, 0.8, 0.7])[1].tolist()
        [1.0, 0.5, 0.5, 0.0]
    """
    truth, scores = checked_multi_hot(np.reshape(truth, (-1, 1)), np.reshape(scores, (-1, 1)))
    truth, scores = truth[:, 0], scores[:, 0]
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last of each tie
    tp = np.cumsum(hits)[last].astype(np.float64)
    # A label without positives has recall 1 throughout, as scikit-learn sets it.
    recall = tp / truth.sum() if truth.any() else np.ones(len(tp))
    precision, thresholds = tp / (last + 1.0), ranked[last]
    return (np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1])


def label_top_losses(y_true, scores, k):
    """The ``k`` images with the largest binary cross-entropy averaged over their labels,
    largest first, ties by index.

    Returns:
        ``(indices, losses)``: int64 and float64 arrays of ``min(k, n)``.

    Example:
        >>> label_top_losses([[1, 0], [0, 1]], [[0.9, 0.1], [0.8, 0.3]], 1)[0].tolist()
        [1]
    """
    truth, scores = checked_multi_hot(y_true, scores)
    check_positive_int("k", k)
    tiny = np.finfo(np.float64).tiny
    chosen = np.where(truth, scores, 1.0 - scores)
    losses = -np.log(np.maximum(chosen, tiny)).mean(axis=1)
    return largest(losses, k)


__all__ = ["label_table", "label_top_losses", "precision_recall_curve"]
