"""Segmentation metrics from one confusion matrix, and the same figures in numpy for reports.

The Keras metrics (:class:`MeanIoU`, :class:`PerClassIoU`, :class:`PixelAccuracy`) keep one
state: a (classes, classes) int32 matrix of pixel counts, rows the labels, columns the
predictions (sklearn's and keras.metrics.MeanIoU's layout), exact where float32 counts would
round past 2^24 pixels. Pixels labelled ``ignore_label`` (255) count nowhere, and so do labels
or predicted ids outside [0, classes) (as keras.metrics.MeanIoU drops them). Predictions are
per-class scores (logits or probabilities: the class is the first index of the maximum, as
numpy's and torch's argmax pick it) or label maps.

:func:`confusion_matrix` and :func:`iou_from_confusion` compute the same in numpy, for reports.

Example:
    >>> metric = MeanIoU(2, from_logits=False)  # label maps
    >>> metric.update_state(np.array([[[0, 1, 255]]]), np.array([[[0, 0, 1]]]))
    >>> round(float(metric.result()), 4)  # class 0: 1/2, class 1: 0/1
    0.25
"""

import keras
import numpy as np
from keras import ops

from keras_resnet.errors import InvalidArgument, InvalidType, check_choice, check_positive_int

DEFAULT_IGNORE_LABEL = 255
FROM_LOGITS = (True, False, "auto")


def _check_ignore_label(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidType(f"`ignore_label` must be an int or None; got {value!r}.")


def first_argmax(scores):
    """The index of the maximum over the last axis, the first one on ties (numpy's, torch's).

    Written out (the least index whose score equals the maximum) so every backend and device
    breaks ties alike.

    Args:
        scores: a tensor (..., C) of logits or probabilities.

    Returns:
        An int32 tensor (...).

    Example:
        >>> int(first_argmax(np.array([1.0, 3.0, 3.0])))
        1
    """
    scores = ops.convert_to_tensor(scores)
    channels = scores.shape[-1]
    top = ops.max(scores, axis=-1, keepdims=True)
    ids = ops.arange(channels, dtype="int32")
    return ops.min(ops.where(ops.equal(scores, top), ids, channels), axis=-1)


def _as_class_ids(y_true, y_pred, classes, from_logits):
    """Labels and predicted class ids, both (B, H, W) int32."""
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    if len(y_true.shape) >= len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)  # (B, H, W, 1)
    scores = len(y_pred.shape) == len(y_true.shape) + 1
    if scores and y_pred.shape[-1] == 1 and from_logits is not True:
        y_pred, scores = ops.squeeze(y_pred, axis=-1), False  # a label map (B, H, W, 1)
    mismatch = (from_logits is True and not scores) or (from_logits is False and scores)
    if len(y_pred.shape) != len(y_true.shape) + scores or mismatch:
        wanted = {True: f"scores (B, H, W, {classes})", False: "label maps (B, H, W)",
                  "auto": f"scores (B, H, W, {classes}) or label maps (B, H, W)"}[from_logits]
        raise InvalidArgument(f"With from_logits={from_logits!r} predictions must be {wanted} "
                              f"for labels {tuple(y_true.shape)}; got {tuple(y_pred.shape)}.")
    if scores:
        if y_pred.shape[-1] != classes:
            raise InvalidArgument(f"Predictions have {y_pred.shape[-1]} channels; the metric "
                                  f"counts classes={classes}.")
        y_pred = first_argmax(y_pred)
    return ops.cast(y_true, "int32"), ops.cast(y_pred, "int32")


def _batch_confusion(labels, predictions, classes, ignore_label):
    """The (classes, classes) int32 pixel counts of one batch (rows labels, columns predictions)."""
    labels, predictions = ops.reshape(labels, (-1,)), ops.reshape(predictions, (-1,))
    valid = ops.logical_and(ops.logical_and(labels >= 0, labels < classes),
                            ops.logical_and(predictions >= 0, predictions < classes))
    if ignore_label is not None:
        valid = ops.logical_and(valid, ops.not_equal(labels, ignore_label))
    index = ops.where(valid, labels * classes + predictions, 0)
    counts = ops.scatter(ops.expand_dims(index, -1), ops.cast(valid, "int32"), (classes * classes,))
    return ops.reshape(counts, (classes, classes))


def _per_class_iou(matrix):
    """IoU per class from a confusion tensor: NaN where the union is zero."""
    matrix = ops.cast(matrix, "float32")
    hits = ops.diagonal(matrix)
    union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - hits
    return ops.where(union > 0, hits / ops.maximum(union, 1.0), float("nan")), union


class _ConfusionMetric(keras.metrics.Metric):
    """A metric whose state is one (classes, classes) int32 confusion matrix."""

    def __init__(self, classes, ignore_label=DEFAULT_IGNORE_LABEL, from_logits=True, name=None):
        check_positive_int("classes", classes)
        _check_ignore_label(ignore_label)
        check_choice("from_logits", from_logits, FROM_LOGITS)
        super().__init__(name=name, dtype="float32")
        self.classes, self.ignore_label, self.from_logits = classes, ignore_label, from_logits
        self.confusion = self.add_variable(shape=(classes, classes), initializer="zeros",
                                           dtype="int32", aggregation="sum", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch: labels (B, H, W) or (B, H, W, 1); scores (B, H, W, C) or label maps."""
        if sample_weight is not None:
            raise InvalidArgument(f"{type(self).__name__} counts pixels and takes no "
                                  "`sample_weight`; leave pixels out with `ignore_label`.")
        labels, predictions = _as_class_ids(y_true, y_pred, self.classes, self.from_logits)
        batch = _batch_confusion(labels, predictions, self.classes, self.ignore_label)
        self.confusion.assign(self.confusion + batch)

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.classes, self.classes), dtype="int32"))

    def get_config(self):
        return {"classes": self.classes, "ignore_label": self.ignore_label,
                "from_logits": self.from_logits, "name": self.name}


@keras.saving.register_keras_serializable(package="keras_resnet")
class MeanIoU(_ConfusionMetric):
    """Mean intersection over union of the classes that occur (as keras.metrics.MeanIoU).

    IoU_c = hits_c / (labelled_c + predicted_c - hits_c), averaged over the classes whose union
    is non-zero, i.e. that occur in the labels or the predictions so far; classes absent from
    both are left out of the mean (keras.metrics.MeanIoU's and torchmetrics' macro Jaccard
    convention). 0 before any valid pixel is counted.

    Args:
        classes: the number of classes.
        ignore_label: the label of pixels to leave out (None: none).
        from_logits: True: predictions are scores (B, H, W, classes), logits or probabilities;
            False: label maps; "auto": scores when they have one axis more than the labels.
        name: the metric's name.

    Returns:
        A Keras metric.

    Example:
        >>> MeanIoU(21).name
        'miou'
    """

    def __init__(self, classes, ignore_label=DEFAULT_IGNORE_LABEL, from_logits=True, name="miou"):
        super().__init__(classes, ignore_label, from_logits, name)

    def result(self):
        iou, union = _per_class_iou(self.confusion)
        present = ops.cast(union > 0, "float32")
        return ops.divide_no_nan(ops.sum(ops.where(union > 0, iou, 0.0)), ops.sum(present))


@keras.saving.register_keras_serializable(package="keras_resnet")
class PerClassIoU(_ConfusionMetric):
    """IoU of each class, a (classes,) vector: NaN for a class absent from labels and predictions.

    Args:
        classes: the number of classes.
        ignore_label: the label of pixels to leave out (None: none).
        from_logits: as :class:`MeanIoU`.
        name: the metric's name.

    Returns:
        A Keras metric whose result is a vector.

    Example:
        >>> PerClassIoU(21).name
        'per_class_iou'
    """

    def __init__(self, classes, ignore_label=DEFAULT_IGNORE_LABEL, from_logits=True,
                 name="per_class_iou"):
        super().__init__(classes, ignore_label, from_logits, name)

    def result(self):
        return _per_class_iou(self.confusion)[0]


@keras.saving.register_keras_serializable(package="keras_resnet")
class PixelAccuracy(_ConfusionMetric):
    """The fraction of valid pixels whose predicted class is right (0 before any is counted).

    Args:
        classes: the number of classes.
        ignore_label: the label of pixels to leave out (None: none).
        from_logits: as :class:`MeanIoU`.
        name: the metric's name.

    Returns:
        A Keras metric.

    Example:
        >>> PixelAccuracy(21).name
        'pixel_accuracy'
    """

    def __init__(self, classes, ignore_label=DEFAULT_IGNORE_LABEL, from_logits=True,
                 name="pixel_accuracy"):
        super().__init__(classes, ignore_label, from_logits, name)

    def result(self):
        matrix = ops.cast(self.confusion, "float32")
        return ops.divide_no_nan(ops.sum(ops.diagonal(matrix)), ops.sum(matrix))


def _numpy_class_ids(labels, predictions, classes):
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.ndim == predictions.ndim and labels.ndim > 1 and labels.shape[-1] == 1 \
            and predictions.shape[-1] == 1:
        labels, predictions = labels[..., 0], predictions[..., 0]
    if labels.ndim > 1 and labels.shape[-1] == 1 and predictions.ndim == labels.ndim:
        labels = labels[..., 0]
    if predictions.ndim == labels.ndim + 1:
        if predictions.shape[-1] != classes:
            raise InvalidArgument(f"Scores have {predictions.shape[-1]} channels; "
                                  f"classes={classes}.")
        predictions = np.argmax(predictions, axis=-1)  # the first index on ties
    if predictions.shape != labels.shape:
        raise InvalidArgument(f"Predictions {predictions.shape} do not fit labels {labels.shape}.")
    return labels.astype(np.int64), predictions.astype(np.int64)


def confusion_matrix(labels, predictions, classes, ignore_label=DEFAULT_IGNORE_LABEL):
    """Pixel counts (classes, classes), rows labels, columns predictions, ignored pixels left out.

    Args:
        labels: integer masks (B, H, W) or (B, H, W, 1), values in [0, classes) or
            ``ignore_label``.
        predictions: label maps shaped like the labels, or scores (B, H, W, classes) (argmax,
            the first index on ties).
        classes: the number of classes.
        ignore_label: the label of pixels to leave out (None: none).

    Returns:
        An int64 array (classes, classes).

    Example:
        >>> confusion_matrix([0, 1, 255], [0, 0, 1], 2).tolist()
        [[1, 0], [1, 0]]
    """
    check_positive_int("classes", classes)
    _check_ignore_label(ignore_label)
    labels, predictions = _numpy_class_ids(labels, predictions, classes)
    keep = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    labels, predictions = labels[keep], predictions[keep]
    for what, ids in (("labels", labels), ("predictions", predictions)):
        outside = ids[(ids < 0) | (ids >= classes)]
        if outside.size:
            raise InvalidArgument(f"`{what}` must be class ids in [0, {classes})"
                                  f"{'' if what == 'predictions' else ' or the ignore label'}; "
                                  f"got {sorted(set(outside.tolist()))[:5]}.")
    counts = np.bincount(labels * classes + predictions, minlength=classes * classes)
    return counts.reshape(classes, classes).astype(np.int64)


def iou_from_confusion(matrix):
    """The figures of a segmentation report from a confusion matrix (rows labels).

    Args:
        matrix: (classes, classes) pixel counts, as :func:`confusion_matrix` returns.

    Returns:
        A dict: "per_class_iou" (NaN for a class absent from labels and predictions), "miou"
        (their mean over the classes present, :class:`MeanIoU`'s), "pixel_accuracy",
        "per_class_accuracy" (recall; NaN for a class absent from the labels) and
        "mean_class_accuracy" (its mean over the classes present). Means and accuracies are
        NaN for an empty matrix (nothing was measured).

    Example:
        >>> iou_from_confusion(np.array([[1, 0], [1, 0]]))["miou"]
        0.25
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or np.any(matrix < 0):
        raise InvalidArgument(f"`matrix` must be a square matrix of counts; got shape "
                              f"{matrix.shape}.")
    hits, labelled, predicted = np.diagonal(matrix), matrix.sum(1), matrix.sum(0)
    union = labelled + predicted - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, hits / union, np.nan)
        recall = np.where(labelled > 0, hits / labelled, np.nan)
        accuracy = hits.sum() / matrix.sum() if matrix.sum() else float("nan")
    return {"per_class_iou": iou, "miou": _nanmean(iou), "pixel_accuracy": float(accuracy),
            "per_class_accuracy": recall, "mean_class_accuracy": _nanmean(recall)}


def _nanmean(values):
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")
