"""The interpretation's files: CSV text and the figures (matplotlib's Agg renderer, no
display), each PNG written to a temporary name and renamed into place.

Example:
    >>> csv_text(["a", "b"], [[1, 2]]).splitlines()
    ['a,b', '1,2']
"""

import csv
import io
import math

import numpy as np

from keras_resnet.explain import overlay
from keras_resnet.interpret.classes import checked_matrix, most_confused
from keras_resnet.saving import atomic_path

MAX_DRAWN_CLASSES = 20  # a larger matrix draws the classes of the 20 most-confused pairs
GRID_COLUMNS = 4  # images per row of top_losses.png (each with its Grad-CAM beside it)


def csv_text(header, rows):
    """A CSV file's text: the header row, then ``rows``.

    Example:
        >>> csv_text(["a"], [[1], [2]]).splitlines()
        ['a', '1', '2']
    """
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


def save_figure(figure, path):
    """Write a matplotlib ``Figure`` as a PNG at ``path``, through a temporary name.

    Example:
        >>> from matplotlib.figure import Figure
        >>> save_figure(Figure(), "empty.png")
    """
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def plot_confusion_matrix(matrix, class_names, path, normalized=False):
    """Draw ``matrix`` (rows true, columns predicted) as a PNG at ``path``; ``normalized``
    divides each row by its total (each true class's share per prediction).

    Example:
        >>> plot_confusion_matrix([[1, 0], [1, 1]], ["a", "b"], "cm.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot state

    matrix = checked_matrix(matrix, class_names)
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
    save_figure(figure, path)
    return path


def seen_pixels(images, preprocessing):
    """Preprocessed images back to uint8 pixels (the model's view: resized, cropped): the
    normalisation undone; a model of other than 3 channels shows its first, in grey.

    Example:
        >>> seen_pixels(np.zeros((1, 2, 2, 3)), keras_resnet.preprocessing.plain(2)).shape
        (1, 2, 2, 3)
    """
    pixels = np.asarray(images, np.float32)
    if preprocessing.std is not None:
        pixels = pixels * preprocessing.std
    pixels = (pixels + preprocessing.mean) / preprocessing.scale
    if preprocessing.channel_order == "bgr":
        pixels = pixels[..., ::-1]
    if pixels.shape[-1] != 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def draw_top_losses(rows, pixels, heatmaps, path, note):
    """top_losses.png: each image titled true / predicted / prob / loss, its Grad-CAM beside
    (``heatmaps`` None: the images alone, ``note`` saying why).

    Example:
        >>> row = {"true": "3", "predicted": "8", "probability": 0.9, "loss": 2.3}
        >>> draw_top_losses([row], np.zeros((1, 8, 8, 3), np.uint8), None, "top.png", "")
    """
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
    save_figure(figure, path)


def _shown_labels(table):
    """The indices of the rows a label figure draws: all, or the 20 of lowest F1 (then most
    support)."""
    if len(table) <= MAX_DRAWN_CLASSES:
        return list(range(len(table))), ""
    worst = sorted(range(len(table)), key=lambda k: (table[k]["f1"], -table[k]["support"], k))
    return sorted(worst[:MAX_DRAWN_CLASSES]), (
        f" ({MAX_DRAWN_CLASSES} of {len(table)} labels: those of lowest F1)")


def plot_label_tables(table, path):
    """Each label's 2x2 table (rows true no/yes, columns predicted no/yes, as scikit-learn's
    ``multilabel_confusion_matrix``) in a grid, as a PNG at ``path``.

    Example:
        >>> row = {"label": "a", "tn": 5, "fp": 1, "fn": 2, "tp": 4, "f1": 0.7, "support": 6}
        >>> plot_label_tables([row], "labels.png")
        'labels.png'
    """
    from matplotlib.figure import Figure

    shown, note = _shown_labels(table)
    columns = min(5, len(shown))
    lines = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(2.3 * columns, 2.4 * lines + 0.6))
    grid = figure.subplots(lines, columns, squeeze=False)
    for axes in grid.flat[len(shown):]:
        axes.axis("off")
    for axes, row in zip(grid.flat, (table[k] for k in shown)):
        counts = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], np.float64)
        axes.imshow(counts, cmap="Blues", vmin=0.0)
        for (r, c), value in np.ndenumerate(counts):
            axes.text(c, r, f"{int(value)}", ha="center", va="center", fontsize=8,
                      color="white" if value > counts.max() / 2 else "black")
        axes.set_xticks([0, 1], ["no", "yes"], fontsize=7)
        axes.set_yticks([0, 1], ["no", "yes"], fontsize=7)
        axes.set_xlabel("predicted", fontsize=7)
        axes.set_ylabel("true", fontsize=7)
        axes.set_title(f"{row['label']} (F1 {row['f1']:.2f})", fontsize=8)
    figure.suptitle("each label at its threshold" + note, fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return path


def plot_precision_recall(curves, table, path):
    """Each label's precision-recall curve (``curves``: ``(precision, recall, thresholds)``
    per label, ``table``: its rows), its threshold's point marked, AP in the legend.

    Example:
        >>> curve = (np.array([0.5, 1.0, 1.0]), np.array([1.0, 0.5, 0.0]), np.array([0.1, 0.9]))
        >>> row = {"label": "a", "ap": 0.75, "precision": 1.0, "recall": 0.5, "f1": 0.7, "support": 2}
        >>> plot_precision_recall([curve], [row], "pr.png")
        'pr.png'
    """
    from matplotlib.figure import Figure

    shown, note = _shown_labels(table)
    figure = Figure(figsize=(7.5, 5.5))
    axes = figure.add_subplot()
    for k in shown:
        (precision, recall, _), row = curves[k], table[k]
        line, = axes.plot(recall, precision, drawstyle="steps-post", linewidth=1.2,
                          label=f"{row['label']} (AP {row['ap']:.2f})")
        axes.plot([row["recall"]], [row["precision"]], "o", color=line.get_color(), markersize=5)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0.0, 1.02)
    axes.set_ylim(0.0, 1.02)
    axes.set_title("precision-recall per label (dots: each label's threshold)" + note, fontsize=9)
    axes.legend(fontsize=7, loc="lower left", ncol=2 if len(shown) > 10 else 1)
    figure.tight_layout()
    save_figure(figure, path)
    return path
