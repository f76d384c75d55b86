"""Looking at a single-label classifier's mistakes: its confusion matrix, precision, recall and
F1 per class, the pairs of classes it confuses most, and the images with the largest loss
beside the Grad-CAM of what it predicted (the questions fastai's
``ClassificationInterpretation`` and Ultralytics' confusion matrices answer).

The array functions (:func:`confusion_matrix`, :func:`per_class_table`,
:func:`most_confused`, :func:`top_losses`) take NumPy arrays; :func:`interpret` predicts a
dataset split once and writes CSV files and PNG figures (matplotlib's Agg renderer, no
display) into a folder, each written to a temporary name and renamed into place.

Example:
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
"""

import csv
import io
import math
import os

import keras
import numpy as np

from keras_resnet import data, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.data.sources import get_source, lookup
from keras_resnet.errors import InvalidArgument, check_positive_int
from keras_resnet.evaluation import check_fits_dataset, scores_and_labels
from keras_resnet.explain import grad_cam, overlay
from keras_resnet.saving import atomic_path, load_model, write_text

MAX_DRAWN_CLASSES = 20  # a larger matrix draws the classes of the 20 most-confused pairs
GRID_COLUMNS = 4  # images per row of top_losses.png (each with its Grad-CAM beside it)
FILE_SOURCES = ("folder", "labels_file")  # sources whose examples are image files


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


def _checked_matrix(matrix, class_names):
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
    matrix = _checked_matrix(matrix, class_names)
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
    matrix = _checked_matrix(matrix, class_names)
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
    order = np.lexsort((np.arange(len(losses)), -losses))[:k]
    return order.astype(np.int64), losses[order]


def _csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _drawn_classes(matrix):
    """The class ids a figure shows: all, or those of the 20 most-confused pairs."""
    if len(matrix) <= MAX_DRAWN_CLASSES:
        return np.arange(len(matrix)), ""
    pairs = most_confused(matrix, [str(i) for i in range(len(matrix))], MAX_DRAWN_CLASSES)
    ids = sorted({int(p["true"]) for p in pairs} | {int(p["predicted"]) for p in pairs})
    return np.asarray(ids or [0], np.int64), (
        f" ({len(ids)} of {len(matrix)} classes: those of the {MAX_DRAWN_CLASSES} "
        "most-confused pairs)")


def _save_figure(figure, path):
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def plot_confusion_matrix(matrix, class_names, path, normalized=False):
    """Draw ``matrix`` (rows true, columns predicted) as a PNG at ``path``; ``normalized``
    divides each row by its total (each true class's share per prediction).

    Example:
        >>> plot_confusion_matrix([[1, 0], [1, 1]], ["a", "b"], "cm.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot state

    matrix = _checked_matrix(matrix, class_names)
    ids, note = _drawn_classes(matrix)
    shown = matrix[np.ix_(ids, ids)].astype(np.float64)
    if normalized:
        totals = matrix[ids].sum(axis=1, keepdims=True)
        shown = np.where(totals > 0, shown / np.maximum(totals, 1), 0.0)
    side = max(4.0, 0.45 * len(ids) + 2.0)
    figure = Figure(figsize=(side + 1.0, side))
    axes = figure.add_subplot()
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalized else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    names = [str(class_names[i]) for i in ids]
    axes.set_xticks(range(len(ids)), names, rotation=90)
    axes.set_yticks(range(len(ids)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(("normalized confusion matrix" if normalized else "confusion matrix") + note,
                   fontsize=9)
    threshold = shown.max() / 2 if shown.size else 0
    for (row, column), value in np.ndenumerate(shown):
        if value:
            axes.text(column, row, f"{value:.2f}" if normalized else f"{int(value)}",
                      ha="center", va="center", fontsize=7,
                      color="white" if value > threshold else "black")
    figure.tight_layout()
    _save_figure(figure, path)
    return path


def _seen_pixels(images, preprocessing):
    """Preprocessed images back to uint8 pixels (the model's view: resized, cropped): the
    normalisation undone; a model of other than 3 channels shows its first, in grey."""
    pixels = np.asarray(images, np.float32)
    if preprocessing.std is not None:
        pixels = pixels * preprocessing.std
    pixels = (pixels + preprocessing.mean) / preprocessing.scale
    if preprocessing.channel_order == "bgr":
        pixels = pixels[..., ::-1]
    if pixels.shape[-1] != 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


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


def _draw_top_losses(rows, pixels, heatmaps, path, note):
    """top_losses.png: each image titled true / predicted / prob / loss, its Grad-CAM beside."""
    from matplotlib.figure import Figure

    columns = min(GRID_COLUMNS, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure = Figure(figsize=(2.4 * columns * 2, 2.6 * lines + 0.5))
    grid = figure.subplots(lines, columns * 2, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for n, row in enumerate(rows):
        left, right = grid[n // columns, 2 * (n % columns)], grid[n // columns, 2 * (n % columns) + 1]
        left.imshow(pixels[n])
        left.set_title(f"{row['true']} / {row['predicted']} / {row['probability']:.2f} / "
                       f"{row['loss']:.2f}", fontsize=8, loc="left")
        if heatmaps is not None:
            right.imshow(overlay(pixels[n], heatmaps[n]))
            right.set_title("Grad-CAM", fontsize=8)
    figure.suptitle("top losses: true / predicted / prob / loss" + note, fontsize=10)
    figure.tight_layout()
    _save_figure(figure, path)


def _probabilities(scores, activation):
    """Class probabilities from a head's outputs: a softmax of logits, else as given."""
    if activation != "linear":
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _classifier(model):
    """The keras.Model of ``model`` (a model, a .keras file or a run directory), checked to be a
    single-label classifier, and its Task."""
    if not isinstance(model, keras.Model):
        path = os.fspath(model)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.keras")):
            path = os.path.join(path, "model.keras")
        model = load_model(path, compile=False)
    task = tasks.task_of(model)
    if task is None or task.kind != "classification":
        kind = "a model without class scores" if task is None else f"a {task.kind} model"
        raise InvalidArgument(f"`model` {model.name!r} is {kind}; interpret is for single-label "
                              "classifiers for now.")
    return model, task


def _write_tables(output_dir, matrix, class_names, table, pairs):
    paths = {name: os.path.join(output_dir, name) for name in (
        "confusion_matrix.csv", "per_class.csv", "most_confused.csv",
        "confusion_matrix.png", "confusion_matrix_normalized.png")}
    write_text(paths["confusion_matrix.csv"], _csv_text(
        ["true \\ predicted", *class_names],
        [[name, *row] for name, row in zip(class_names, matrix.tolist())]))
    write_text(paths["per_class.csv"], _csv_text(
        ["class", "precision", "recall", "f1", "support"],
        [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in table]))
    write_text(paths["most_confused.csv"], _csv_text(
        ["true", "predicted", "count"], [[p["true"], p["predicted"], p["count"]] for p in pairs]))
    plot_confusion_matrix(matrix, class_names, paths["confusion_matrix.png"])
    plot_confusion_matrix(matrix, class_names, paths["confusion_matrix_normalized.png"],
                          normalized=True)
    return paths


def _write_top_losses(output_dir, model, dataset, info, probabilities, labels, k, file_paths,
                      names):
    """top_losses.csv and top_losses.png; returns their paths and the rows."""
    indices, losses = top_losses(probabilities, labels, k)
    predicted = probabilities.argmax(axis=1)
    rows = [{"rank": rank + 1, "index": int(i), "file": file_paths[i] if file_paths else "",
             "true": names[labels[i]], "predicted": names[predicted[i]],
             "probability": float(probabilities[i, predicted[i]]), "loss": float(loss)}
            for rank, (i, loss) in enumerate(zip(indices, losses))]
    csv_path = os.path.join(output_dir, "top_losses.csv")
    write_text(csv_path, _csv_text(list(rows[0]), [list(row.values()) for row in rows]))
    images = _images_at(dataset, indices)
    try:
        heatmaps, note = grad_cam(model, images, class_index=predicted[indices]).heatmaps, ""
    except InvalidArgument as error:  # a model Grad-CAM cannot read: the images alone
        heatmaps, note = None, f"\n(no Grad-CAM: {error})"
    png_path = os.path.join(output_dir, "top_losses.png")
    _draw_top_losses(rows, _seen_pixels(images, info.preprocessing), heatmaps, png_path, note)
    return {"top_losses.csv": csv_path, "top_losses.png": png_path}, rows


def interpret(model, dataset="digits", split="test", output_dir="interpretation", k=16,
              data_dir=None, *, batch_size=128, download=True):
    """Predict a split once with a single-label classifier and write what it gets wrong.

    Writes into ``output_dir``: ``confusion_matrix.csv`` (rows true, columns predicted),
    ``confusion_matrix.png`` and ``confusion_matrix_normalized.png`` (rows sum to 1; over 20
    classes, the classes of the 20 most-confused pairs), ``per_class.csv`` (precision, recall,
    F1, support), ``most_confused.csv`` (true, predicted, count), ``top_losses.csv`` (rank,
    index in the split, file, true, predicted, probability of the prediction, loss) and
    ``top_losses.png`` (the ``k`` worst images, each with the Grad-CAM of its prediction).

    Args:
        model: a keras.Model, a ``.keras`` file or a run directory.
        dataset, split, data_dir, batch_size, download: as ``keras_resnet.data.load`` takes
            them; the images follow the model's own preprocessing, as ``evaluate``'s do.
        output_dir: the folder written (created).
        k: how many top losses.

    Returns:
        dict: ``accuracy``, ``examples``, ``matrix`` (a list of rows), ``per_class``,
        ``most_confused``, ``top_losses`` (the CSV's rows) and ``paths`` (file name -> path).

    Example:
        >>> interpret("runs/resnet20-digits", output_dir="look")["accuracy"]  # doctest: +SKIP
        0.98
    """
    model, task = _classifier(model)
    check_positive_int("k", k)
    batches, info = data.load(dataset, split, batch_size, training=False, data_dir=data_dir,
                               download=download, preprocessing=preprocessing_lib.of(model),
                               task="single_label")
    check_fits_dataset(model, info)
    scores, labels = scores_and_labels(model, batches)
    probabilities = _probabilities(scores, task.activation)
    labels = labels.reshape(-1).astype(np.int64)
    class_names = info.class_names or [str(i) for i in range(info.num_classes)]
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), len(class_names))
    table, pairs = per_class_table(matrix, class_names), most_confused(matrix, class_names)
    os.makedirs(output_dir, exist_ok=True)
    paths = _write_tables(output_dir, matrix, class_names, table, pairs)
    written, rows = _write_top_losses(output_dir, model, batches, info, probabilities, labels,
                                      k, _file_paths(dataset, split, data_dir),
                                      class_names)
    paths.update(written)
    return {"accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)), "examples": len(labels),
            "matrix": matrix.tolist(), "per_class": table, "most_confused": pairs,
            "top_losses": rows, "paths": paths}


__all__ = ["confusion_matrix", "interpret", "most_confused", "per_class_table",
           "plot_confusion_matrix", "top_losses"]
