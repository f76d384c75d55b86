"""Scoring a trained model: top-1/top-5 accuracy (the paper's, also 10-crop, §3.4), for a
multi-label model mAP and F1 at per-class thresholds chosen on validation data, for a detector
COCO's figures.

Example:
    >>> sorted(evaluate(keras_resnet.ResNet20(), "digits", "validation", batch_size=144))
    ['top1', 'top5']
"""

import keras
import numpy as np

from keras_resnet import data, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.detection_evaluation import evaluate_detector
from keras_resnet.errors import InvalidArgument
from keras_resnet.multilabel import choose_thresholds, multilabel_report
from keras_resnet.saving import load_model


def evaluate_ten_crop(model, dataset):
    """Top-1 and top-5 accuracy with the paper's 10-crop testing (§3.4): softmax averaged.

    Args:
        model: a classifier with softmax outputs.
        dataset: yields ``(crops, labels)``: crops ``(batch * 10, h, w, c)`` image-major and
            labels ``(batch,)``, as ``keras_resnet.data.load(..., ten_crop=True)`` gives them.

    Returns:
        dict with ``top1`` and ``top5`` accuracy.

    Example:
        >>> crops = data.load("digits", "test", 16, ten_crop=True)[0].take(1)
        >>> sorted(evaluate_ten_crop(keras_resnet.ResNet20(), crops))
        ['top1', 'top5']
    """
    correct1 = correct5 = total = 0
    for crops, labels in dataset:
        probabilities = data.average_crops(model(crops, training=False)).numpy()
        top5 = np.argsort(-probabilities, axis=1)[:, :5]
        labels = np.asarray(labels).reshape(-1)
        correct1 += int(np.sum(top5[:, 0] == labels))
        correct5 += int(np.sum(np.any(top5 == labels[:, None], axis=1)))
        total += len(labels)
    return {"top1": correct1 / total, "top5": correct5 / total}


def scores_and_labels(model, dataset):
    """The model's outputs and the labels over a whole (unshuffled) dataset, as NumPy."""
    scores, labels = [], []
    for images, batch_labels in dataset:
        # Eagerly: one traced function per model and batch shape would warn of retracing.
        scores.append(np.asarray(keras.ops.convert_to_numpy(model(images, training=False)),
                                 np.float64))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(scores), np.concatenate(labels)


def evaluate(model, dataset="digits", split="test", *, batch_size=128, ten_crop=False,
             data_dir=None, download=True):
    """Top-1 and top-5 accuracy of a model (or ``.keras`` file) on a dataset split, with the
    model's own preprocessing; for a multi-label model (its Task says, ``keras_resnet.tasks``),
    ``multilabel_report`` at the thresholds it carries (mAP, F1 macro and micro, per class);
    for a detector COCO's figures (``keras_resnet.detection_evaluation``).

    Example:
        >>> sorted(evaluate(keras_resnet.ResNet20(), "digits", "validation", batch_size=144))
        ['top1', 'top5']
    """
    if not isinstance(model, keras.Model):
        model = load_model(model, compile=False)
    preprocessing = preprocessing_lib.of(model)
    task = tasks.task_of(model)
    if task is None:
        raise InvalidArgument(f"`model` {model.name!r} has no class scores to evaluate (a "
                              "backbone or feature extractor); give a classifier.")
    if task.detection:
        if ten_crop:
            raise InvalidArgument("`ten_crop` averages class scores; this model is a detector.")
        return evaluate_detector(model, dataset, split, batch_size=batch_size,
                                 data_dir=data_dir, download=download)
    multilabel = task.multilabel
    if multilabel and ten_crop:
        raise InvalidArgument("`ten_crop` averages single-label predictions; this model is multi-label.")
    dataset_, info = data.load(dataset, split, batch_size, training=False, data_dir=data_dir,
                               download=download, ten_crop=ten_crop, preprocessing=preprocessing,
                               task="multilabel" if multilabel else "single_label")
    check_fits_dataset(model, info)
    if multilabel:
        scores, labels = scores_and_labels(model, dataset_)
        return multilabel_report(labels, scores, task.thresholds, info.class_names)
    if ten_crop:
        return evaluate_ten_crop(model, dataset_)
    model.compile(metrics=task.metrics())
    scores = model.evaluate(dataset_, return_dict=True, verbose=0)
    return {"top1": scores["top1"], "top5": scores["top5"]}


def check_fits_dataset(model, info):
    """Raise unless ``model`` takes the dataset's images and predicts its classes."""
    expected = tuple(info.image_shape)
    given = tuple(model.input_shape[1:])
    fits = len(given) == 3 and all(g in (None, e) for g, e in zip(given, expected))
    if not fits or model.output_shape[-1] != info.num_classes:
        raise InvalidArgument(
            f"Model {model.name!r} takes inputs {given} and predicts {model.output_shape[-1]} "
            f"classes; dataset {info.name!r} gives images {expected} in {info.num_classes} "
            "classes. Build the model with input_shape and classes from the dataset."
        )


def with_thresholds(net, validation):
    """``net`` carrying the per-class thresholds with the best F1 on ``validation`` (a
    dataset of images and multi-hot labels) in its Task: a new model sharing ``net``'s layers.

    Example:
        >>> tuned = with_thresholds(model, data.load("digit_canvases", "validation", 100)[0])  # doctest: +SKIP
    """
    scores, labels = scores_and_labels(net, validation)
    thresholds = choose_thresholds(labels, scores).tolist()
    return tasks.attach(net, tasks.task_of(net).with_thresholds(thresholds))


def multilabel_test(net, validation, test, loss):
    """A multi-label run's end: thresholds chosen on ``validation`` for ``net``, then the
    ``test`` report at them.

    Returns:
        ``(net carrying its thresholds, {"test": {"mAP", "f1_macro", "f1_micro", "loss",
        "per_class"}})``; ``loss`` is recorded as given.
    """
    net = with_thresholds(net, validation)
    scores, labels = scores_and_labels(net, test)
    report = multilabel_report(labels, scores, tasks.task_of(net).thresholds,
                               preprocessing_lib.of(net).class_names)
    return net, {"test": {"mAP": report["mAP"], "f1_macro": report["f1_macro"],
                          "f1_micro": report["f1_micro"], "loss": loss,
                          "per_class": report["per_class"]}}
