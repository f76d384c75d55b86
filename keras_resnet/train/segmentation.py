"""What a segmentation run does beyond a classification run: its recipe, the auxiliary head's
targets, the metric it watches and the test figures it reports.

A segmentation run (``task="segmentation"``, a ``head``, or data with masks such as
"digit_scenes") puts a head of :mod:`keras_resnet.heads` on the backbone, trains it with
torchvision's segmentation recipe unless told ("torchvision_segmentation": SGD 0.02 at batch
32, the polynomial schedule) and the per-pixel cross-entropy without the ignore label, and
reports the test split's mIoU, pixel accuracy and IoU per class from one confusion matrix
over every test pixel (:func:`keras_resnet.metrics.confusion_matrix`).

Example:
    >>> is_segmentation(RunConfig("resnet18", data=DataConfig("digit_scenes")))  # doctest: +SKIP
    True
"""

import dataclasses

import numpy as np

from keras_resnet import data, heads
from keras_resnet import metrics as metrics_lib
from keras_resnet.errors import InvalidArgument

RECIPE = "torchvision_segmentation"


def is_segmentation(config):
    """Whether ``config`` (a RunConfig) segments: its task, its head or its data says so."""
    return (config.task == "segmentation" or config.head is not None
            or (config.fine_tune is None and data.has_masks(config.data.dataset)))


def check_data(config, task):
    """Raise when the run asked for a head but its data has a label per image."""
    if config.head is not None and not task.segmentation:
        raise InvalidArgument(
            f"`head` {config.head!r} segments images; dataset {config.data.dataset!r} has a "
            "label per image. Use 'digit_scenes' or a folder of images and masks.")


def with_aux_targets(net, splits):
    """New ``splits`` whose training and validation masks feed both of ``net``'s outputs when
    it has torchvision's auxiliary head (``{"out", "aux"}``); ``splits`` itself otherwise."""
    if not isinstance(net.output, dict):
        return splits

    def both(images, masks):
        return images, {"out": masks, "aux": masks}

    validation = splits.validation
    return dataclasses.replace(splits, train=splits.train.map(both),
                               validation=None if validation is None else validation.map(both))


def monitored(net, name):
    """The history's name of the metric ``name`` ("val_miou", "miou"): Keras prefixes the
    output's name ("val_out_miou") when the model has several outputs."""
    if not isinstance(net.output, dict):
        return name
    prefix = "val_" if name.startswith("val_") else ""
    return f"{prefix}out_{name.removeprefix('val_')}"


def without_aux(net):
    """``net`` without torchvision's auxiliary head (itself when it has none)."""
    return heads.without_aux(net) if isinstance(net.output, dict) else net


def score(net, test, classes, class_names=None):
    """``(model, figures)``: ``net`` without its auxiliary head, and the test figures of
    every pixel of ``test`` (a dataset of images and masks, 255 left out): ``miou``,
    ``pixel_accuracy``, ``mean_class_accuracy`` and ``per_class_iou`` (class name -> IoU,
    None for a class absent from the labels and the predictions).

    Example:
        >>> model, figures = score(net, splits.test, 11)  # doctest: +SKIP
        >>> sorted(figures)[:2]  # doctest: +SKIP
        ['confusion_matrix', 'mean_class_accuracy']
    """
    net = without_aux(net)
    matrix = np.zeros((classes, classes), np.int64)
    for images, masks in test:
        logits = net.predict_on_batch(images)
        matrix += metrics_lib.confusion_matrix(np.asarray(masks), np.asarray(logits), classes)
    figures = metrics_lib.iou_from_confusion(matrix)
    names = list(class_names or [str(i) for i in range(classes)])
    return net, {
        "miou": figures["miou"], "pixel_accuracy": figures["pixel_accuracy"],
        "mean_class_accuracy": figures["mean_class_accuracy"],
        "per_class_iou": {name: None if np.isnan(value) else float(value)
                          for name, value in zip(names, figures["per_class_iou"])},
        "confusion_matrix": matrix.tolist(),
    }


def task_name(task):
    """run.json's ``task``: "segmentation", "detection", "multilabel" or "single_label"."""
    if task.segmentation or task.detection:
        return task.kind
    return "multilabel" if task.multilabel else "single_label"
