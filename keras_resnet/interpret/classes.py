"""A single-label classifier's mistakes as arrays: the confusion matrix, precision, recall and
F1 per class, the most-confused pairs and the top losses (NumPy only).

Example:
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
"""

import numpy as np

from keras_resnet.errors import InvalidArgument, check_positive_int


def _class_ids(argument, values, classes):
    values = np.asarray(values).reshape(-1)
    if values.size and (not np.issubdtype(values.dtype, np.integer)
                        or values.min() < 0 or values.max() >= classes):
        raise InvalidArgument(f"`{argument}` must hold class ids in 0..{classes - 1}; got "
                              f"values from {values.min()} to {values.max()} ({values.dtype}).")
    return values.astype(np.int64)


def confusion_matrix(labels, predicted, classes):
    """Counts of each (true class, predicted class) pair.

    Args:
        labels: the true class id of each example.
        predicted: the predicted class id of each example, as many.
        classes: the number of classes.

    Returns:
        int64 ``(classes, classes)``: rows the true class, columns the predicted one.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
        [[1, 0], [1, 1]]
    """
    check_positive_int("classes", classes)
    labels = _class_ids("labels", labels, classes)
    predicted = _class_ids("predicted", predicted, classes)
    if labels.shape != predicted.shape:
        raise InvalidArgument(f"`labels` ({labels.size}) and `predicted` ({predicted.size}) "
                              "must hold one class id per example each.")
    counts = np.bincount(labels * classes + predicted, minlength=classes * classes)
    return counts.reshape(classes, classes).astype(np.int64)


def checked_matrix(matrix, class_names):
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or len(class_names) != len(matrix):
        raise InvalidArgument(f"`matrix` must be square with one row per class name "
                              f"({len(class_names)}); got shape {matrix.shape}.")
    return matrix


def per_class_table(matrix, class_names):
    """Precision, recall, F1 and support of each class from a confusion matrix; 0.0 where a
    figure is undefined (no prediction of the class, no example of it), as scikit-learn's
    ``precision_recall_fscore_support(zero_division=0)``.

    Args:
        matrix: ``(classes, classes)`` counts, rows true, columns predicted.
        class_names: the name of each class.

    Returns:
        list of ``{"class", "precision", "recall", "f1", "support"}``, one per class, in order.

    Example:
        >>> per_class_table([[1, 0], [1, 1]], ["a", "b"])[0]["precision"]
        0.5
    """
    matrix = checked_matrix(matrix, class_names)
    hits = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)

    def share(numerator, denominator):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 0.0)

    precision, recall = share(hits, predicted), share(hits, support)
    f1 = share(2 * hits, predicted + support)  # 2TP / (2TP + FP + FN)
    return [{"class": str(name), "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)]


def most_confused(matrix, class_names, k=10):
    """The ``k`` (true, predicted) pairs of different classes with the most examples, largest
    count first, ties by (true, predicted) index; pairs never met are left out.

    Example:
        >>> most_confused([[1, 0], [3, 1]], ["a", "b"])
        [{'true': 'b', 'predicted': 'a', 'count': 3}]
    """
    matrix = checked_matrix(matrix, class_names)
    check_positive_int("k", k)
    true, predicted = np.nonzero((matrix > 0) & ~np.eye(len(matrix), dtype=bool))
    counts = matrix[true, predicted]
    order = np.lexsort((predicted, true, -counts))[:k]
    return [{"true": str(class_names[true[i]]), "predicted": str(class_names[predicted[i]]),
             "count": int(counts[i])} for i in order]


def top_losses(probabilities, labels, k):
    """The ``k`` examples with the largest cross-entropy ``-log p[label]``, largest first,
    ties by index.

    Args:
        probabilities: ``(n, classes)`` each example's class probabilities.
        labels: ``(n,)`` true class ids.
        k: how many (all ``n`` when fewer).

    Returns:
        ``(indices, losses)``: int64 and float64 arrays of ``min(k, n)``.

    Example:
        >>> top_losses(np.array([[0.9, 0.1], [0.2, 0.8]]), [0, 0], 1)[0].tolist()
        [1]
    """
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2:
        raise InvalidArgument(f"`probabilities` must be (examples, classes); got shape "
                              f"{probabilities.shape}.")
    labels = _class_ids("labels", labels, probabilities.shape[1])
    if len(labels) != len(probabilities):
        raise InvalidArgument(f"`labels` must hold one class id per row of `probabilities` "
                              f"({len(probabilities)}); got {len(labels)}.")
    check_positive_int("k", k)
    chosen = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.maximum(chosen, np.finfo(np.float64).tiny))  # a 0 gives 708, not inf
    return largest(losses, k)


def largest(losses, k):
    """The indices and values of the ``k`` largest ``losses``, largest first, ties by index.

    Example:
        >>> largest(np.array([0.5, 2.0, 0.5]), 2)[0].tolist()
        [1, 0]
    """
    order = np.lexsort((np.arange(len(losses)), -np.asarray(losses)))[:k]
    return order.astype(np.int64), np.asarray(losses)[order]
