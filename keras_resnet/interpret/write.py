"""Predict a dataset split once and write what the classifier gets wrong into a folder.

Example:
    >>> interpret("runs/resnet20-digits", output_dir="look")["accuracy"]  # doctest: +SKIP
    0.98
"""

import os

import keras
import numpy as np

from keras_resnet import data, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.data.sources import get_source, lookup
from keras_resnet.errors import InvalidArgument, check_positive_int
from keras_resnet.evaluation import check_fits_dataset, scores_and_labels
from keras_resnet.explain import grad_cam
from keras_resnet.interpret import figures
from keras_resnet.interpret.classes import (
    confusion_matrix,
    most_confused,
    per_class_table,
    top_losses,
)
from keras_resnet.interpret.labels import label_table, label_top_losses, precision_recall_curve
from keras_resnet.saving import load_model, write_text

FILE_SOURCES = ("folder", "labels_file")  # sources whose examples are image files
DATA_TASKS = {"classification": "single_label", "multilabel": "multilabel"}


def _images_at(dataset, indices):
    """The images at ``indices`` (positions in the unshuffled split), in that order."""
    wanted, found, start = {int(i): n for n, i in enumerate(indices)}, {}, 0
    for images, _ in dataset:
        images = np.asarray(images)
        for index in range(start, start + len(images)):
            if index in wanted:
                found[index] = images[index - start]
        start += len(images)
        if len(found) == len(wanted):
            break
    return np.stack([found[int(i)] for i in indices])


def _file_paths(dataset, split, data_dir):
    """The image file of each example of the split, in order; None for data not from files."""
    if lookup(dataset).name not in FILE_SOURCES:
        return None
    examples, _ = get_source(dataset, data_dir=data_dir, training=False).make(split)
    return [path.decode() for path, _ in examples.as_numpy_iterator()]


def _probabilities(scores, activation, kind):
    """Probabilities from a head's outputs: a softmax (one label) or sigmoid (multi-label) of
    logits, else as given."""
    if activation != "linear":
        return scores
    if kind == "multilabel":
        return 1.0 / (1.0 + np.exp(-scores))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _classifier(model):
    """The keras.Model of ``model`` (a model, a .keras file or a run directory), checked to be a
    classifier (one label or several), and its Task."""
    if not isinstance(model, keras.Model):
        path = os.fspath(model)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.keras")):
            path = os.path.join(path, "model.keras")
        model = load_model(path, compile=False)
    task = tasks.task_of(model)
    if task is None or task.kind not in DATA_TASKS:
        kind = "a model without class scores" if task is None else f"a {task.kind} model"
        raise InvalidArgument(f"`model` {model.name!r} is {kind}; interpret is for classifiers "
                              "(single-label or multi-label).")
    return model, task


def _write_tables(output_dir, matrix, class_names, table, pairs):
    paths = {name: os.path.join(output_dir, name) for name in (
        "confusion_matrix.csv", "per_class.csv", "most_confused.csv",
        "confusion_matrix.png", "confusion_matrix_normalized.png")}
    write_text(paths["confusion_matrix.csv"], figures.csv_text(
        ["true \\ predicted", *class_names],
        [[name, *row] for name, row in zip(class_names, matrix.tolist())]))
    write_text(paths["per_class.csv"], figures.csv_text(
        ["class", "precision", "recall", "f1", "support"],
        [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in table]))
    write_text(paths["most_confused.csv"], figures.csv_text(
        ["true", "predicted", "count"], [[p["true"], p["predicted"], p["count"]] for p in pairs]))
    figures.plot_confusion_matrix(matrix, class_names, paths["confusion_matrix.png"])
    figures.plot_confusion_matrix(matrix, class_names, paths["confusion_matrix_normalized.png"],
                                  normalized=True)
    return paths


def _write_top_losses(output_dir, model, split_data, rows, indices, class_index):
    """top_losses.csv and top_losses.png of ``rows`` (the images at ``indices``, each with the
    Grad-CAM of ``class_index``); returns their paths."""
    batches, info = split_data
    csv_path = os.path.join(output_dir, "top_losses.csv")
    write_text(csv_path, figures.csv_text(list(rows[0]), [list(row.values()) for row in rows]))
    images = _images_at(batches, indices)
    try:
        heatmaps, note = grad_cam(model, images, class_index=class_index).heatmaps, ""
    except InvalidArgument as error:  # a model Grad-CAM cannot read: the images alone
        heatmaps, note = None, f"\n(no Grad-CAM: {error})"
    png_path = os.path.join(output_dir, "top_losses.png")
    figures.draw_top_losses(rows, figures.seen_pixels(images, info.preprocessing), heatmaps,
                            png_path, note)
    return {"top_losses.csv": csv_path, "top_losses.png": png_path}


def _single_label(output_dir, model, split_data, probabilities, labels, k, file_paths):
    labels = labels.reshape(-1).astype(np.int64)
    info = split_data[1]
    names = info.class_names or [str(i) for i in range(info.num_classes)]
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), len(names))
    table, pairs = per_class_table(matrix, names), most_confused(matrix, names)
    paths = _write_tables(output_dir, matrix, names, table, pairs)
    indices, losses = top_losses(probabilities, labels, k)
    predicted = probabilities.argmax(axis=1)
    rows = [{"rank": rank + 1, "index": int(i), "file": file_paths[i] if file_paths else "",
             "true": names[labels[i]], "predicted": names[predicted[i]],
             "probability": float(probabilities[i, predicted[i]]), "loss": float(loss)}
            for rank, (i, loss) in enumerate(zip(indices, losses))]
    paths.update(_write_top_losses(output_dir, model, split_data, rows, indices,
                                   predicted[indices]))
    return {"accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)), "examples": len(labels),
            "matrix": matrix.tolist(), "per_class": table, "most_confused": pairs,
            "top_losses": rows, "paths": paths}


def _write_label_files(output_dir, labels, probabilities, table):
    """per_label.csv, precision_recall.csv, label_confusion.png and precision_recall.png."""
    names = [row["label"] for row in table]
    paths = {name: os.path.join(output_dir, name) for name in (
        "per_label.csv", "precision_recall.csv", "label_confusion.png", "precision_recall.png")}
    write_text(paths["per_label.csv"], figures.csv_text(list(table[0]),
                                                        [list(r.values()) for r in table]))
    curves = [precision_recall_curve(labels[:, k], probabilities[:, k]) for k in range(len(names))]
    write_text(paths["precision_recall.csv"], figures.csv_text(
        ["label", "threshold", "precision", "recall"],
        [[name, threshold, p, r] for name, (precision, recall, thresholds) in zip(names, curves)
         for threshold, p, r in zip(thresholds, precision, recall)]))
    figures.plot_label_tables(table, paths["label_confusion.png"])
    figures.plot_precision_recall(curves, table, paths["precision_recall.png"])
    return paths


def _labels_text(names, chosen):
    return " ".join(name for name, on in zip(names, chosen) if on)


def _multilabel(output_dir, model, split_data, task, probabilities, labels, k, file_paths):
    names = split_data[1].class_names or [str(i) for i in range(labels.shape[1])]
    table = label_table(labels, probabilities, task.thresholds, names)
    paths = _write_label_files(output_dir, labels, probabilities, table)
    indices, losses = label_top_losses(labels, probabilities, k)
    over = probabilities >= np.asarray(task.thresholds)
    rows = [{"rank": rank + 1, "index": int(i), "file": file_paths[i] if file_paths else "",
             "true": _labels_text(names, labels[i]), "predicted": _labels_text(names, over[i]),
             "probability": float(probabilities[i].max()), "loss": float(loss)}
            for rank, (i, loss) in enumerate(zip(indices, losses))]
    paths.update(_write_top_losses(output_dir, model, split_data, rows, indices,
                                   probabilities[indices].argmax(axis=1)))
    exact = float(np.mean(np.all(over == labels.astype(bool), axis=1)))
    return {"exact_match": exact, "examples": len(labels), "per_label": table,
            "top_losses": rows, "paths": paths}


def interpret(model, dataset="digits", split="test", output_dir="interpretation", k=16,
              data_dir=None, *, batch_size=128, download=True):
    """Predict a split once with a classifier and write what it gets wrong into a folder.

    A single-label classifier gets ``confusion_matrix.csv`` (rows true, columns predicted),
    ``confusion_matrix.png`` and ``confusion_matrix_normalized.png`` (rows sum to 1; over 20
    classes, the classes of the 20 most-confused pairs), ``per_class.csv`` (precision, recall,
    F1, support) and ``most_confused.csv`` (true, predicted, count). A multi-label one gets each
    label's 2x2 table at its threshold instead: ``per_label.csv`` (threshold, tp, fp, fn, tn,
    precision, recall, F1, AP, support), ``label_confusion.png``, and its precision-recall
    curves, ``precision_recall.csv`` and ``precision_recall.png``. Both get ``top_losses.csv``
    (rank, index in the split, file, true, predicted, probability, loss) and ``top_losses.png``
    (the ``k`` worst images, each with the Grad-CAM of its (top) prediction).

    Args:
        model: a keras.Model, a ``.keras`` file or a run directory.
        dataset, split, data_dir, batch_size, download: as ``keras_resnet.data.load`` takes
            them; the images follow the model's own preprocessing, as ``evaluate``'s do.
        output_dir: the folder written (created).
        k: how many top losses.

    Returns:
        dict: ``examples``, ``top_losses`` (the CSV's rows), ``paths`` (file name -> path) and
        ``accuracy``, ``matrix``, ``per_class``, ``most_confused`` (single-label) or
        ``exact_match``, ``per_label`` (multi-label).

    Example:
        >>> interpret("runs/resnet20-digits", output_dir="look")["accuracy"]  # doctest: +SKIP
        0.98
    """
    model, task = _classifier(model)
    check_positive_int("k", k)
    batches, info = data.load(dataset, split, batch_size, training=False, data_dir=data_dir,
                               download=download, preprocessing=preprocessing_lib.of(model),
                               task=DATA_TASKS[task.kind])
    check_fits_dataset(model, info)
    scores, labels = scores_and_labels(model, batches)
    probabilities = _probabilities(scores, task.activation, task.kind)
    os.makedirs(output_dir, exist_ok=True)
    file_paths = _file_paths(dataset, split, data_dir)
    if task.kind == "multilabel":
        return _multilabel(output_dir, model, (batches, info), task, probabilities, labels, k,
                           file_paths)
    return _single_label(output_dir, model, (batches, info), probabilities, labels, k, file_paths)
