"""A run's training curves from its ``history.csv``: the loss, the task's metric and the
learning rate per epoch, three panels of one PNG (``training_curves.png``).

Each panel draws what the file holds: training dashed, validation solid, a marker on each
epoch while there are few of them (a one-epoch run shows its points), plain lines over
:data:`MARKER_EPOCHS`. A column the file lacks (an older run without ``learning_rate``, a run
without validation, whose columns Keras' CSVLogger fills with "NA") is not drawn. The figure is
a bare matplotlib ``Figure`` on the Agg canvas, no pyplot: nothing changes a notebook's backend.

Example:
    >>> _ = open("history.csv", "w").write("epoch,learning_rate,loss,top1\\n0,0.1,2.3,0.1\\n")
    >>> [axes.get_title() for axes in history_figure("history.csv").axes]
    ['loss', 'top-1 error', 'learning rate']
"""

import csv
import math
import os

from keras_resnet.saving import atomic_path

# Up to this many epochs a marker shows each one; more epochs are plain lines.
MARKER_EPOCHS = 30
# The metrics a run's history holds, by Task (keras_resnet.tasks: Task.metric; a segmentation
# model with an auxiliary head prefixes "out_"): (panel title, y label, error instead of value).
METRICS = {
    "top1": ("top-1 error", "top-1 error (%)", True),
    "pr_auc": ("PR AUC", "PR AUC", False),
    "miou": ("mIoU", "mIoU", False),
    "loss": ("loss, log scale", "loss", False),  # a detection run's: no mAP while it trains
}
TRAINING = {"linestyle": "--", "color": "tab:blue", "marker": "o", "label": "training"}
VALIDATION = {"linestyle": "-", "color": "tab:orange", "marker": "s", "label": "validation"}
LEARNING_RATE = "learning_rate"


def history_rows(path):
    """history.csv's rows, one per epoch (a resumed run may repeat an epoch: keep the last).

    Args:
        path: a ``history.csv`` (Keras' CSVLogger's); a missing file has no rows.

    Returns:
        list of dicts, column name -> text, in epoch order.

    Example:
        >>> history_rows("runs/none/history.csv")
        []
    """
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f) if row.get("epoch")}
    return [rows[epoch] for epoch in sorted(rows)]


def _column(rows, key):
    """The float values of column ``key`` (NaN where a row has "NA" or nothing), or None when
    no row has a number there."""
    values = []
    for row in rows:
        try:
            values.append(float(row.get(key)))
        except (TypeError, ValueError):  # "NA", "", a missing column
            values.append(math.nan)
    return values if any(math.isfinite(value) for value in values) else None


def task_metric(columns):
    """The metric a history's ``columns`` rank the run by.

    Args:
        columns: history.csv's column names.

    Returns:
        ``top1``, ``pr_auc``, ``miou`` or ``out_miou``, whichever it holds; else ``loss`` (a
        detection run's: no mAP while it trains).

    Example:
        >>> task_metric(["epoch", "loss", "out_miou", "val_out_miou"])
        'out_miou'
    """
    for metric in ("top1", "pr_auc", "miou", "out_miou"):
        if metric in columns:
            return metric
    return "loss"


def _draw(axes, epochs, rows, metric, few, convert=float):
    """The training and validation values of ``metric`` (``convert`` gives what is shown);
    returns how many lines it drew."""
    drawn = 0
    for column, style in ((metric, TRAINING), (f"val_{metric}", VALIDATION)):
        values = _column(rows, column)
        if values is not None:
            axes.plot(epochs, [convert(value) for value in values],
                      **{**style, "marker": style["marker"] if few else None},
                      markersize=4, linewidth=1.4)
            drawn += 1
    return drawn


def _panel(axes, title, ylabel, epochs, drawn, legend=True):
    from matplotlib.ticker import MaxNLocator

    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    if epochs and len(epochs) <= MARKER_EPOCHS:  # whole epochs as ticks, a lone one too
        axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.grid(alpha=0.3)
    if drawn and legend:
        axes.legend(fontsize=8)
    elif not drawn:
        axes.set_yticks([])
        axes.text(0.5, 0.5, "not in history.csv", ha="center", va="center",
                  transform=axes.transAxes, color="gray")


def history_figure(history_csv, metric=None):
    """The three panels of a run's curves: loss, the task's metric, learning rate per epoch.

    Args:
        history_csv: the run's ``history.csv``.
        metric: the history's name of the metric ("top1": drawn as the top-1 error in %,
            "pr_auc", "miou", "out_miou", or "loss": the loss again on a log scale, a
            detection run's); None: :func:`task_metric` of the file's columns.

    Returns:
        a ``matplotlib.figure.Figure`` with three axes, titled "loss", the metric's title and
        "learning rate" (a log scale).

    Example:
        >>> figure = history_figure("runs/r20/history.csv")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    rows = history_rows(history_csv)
    metric = metric or task_metric(list(rows[0]) if rows else [])
    title, ylabel, as_error = METRICS.get(metric.removeprefix("out_"), (metric, metric, False))
    epochs = [int(row["epoch"]) + 1 for row in rows]
    few = len(epochs) <= MARKER_EPOCHS
    figure = Figure(figsize=(13, 3.8))
    loss_axes, metric_axes, rate_axes = figure.subplots(1, 3)
    _panel(loss_axes, "loss", "loss", epochs, _draw(loss_axes, epochs, rows, "loss", few))
    convert = (lambda value: 100 * (1 - value)) if as_error else float
    drawn = _draw(metric_axes, epochs, rows, metric, few, convert)
    if metric == "loss" and drawn:
        _log_scale(metric_axes)
    _panel(metric_axes, title, ylabel, epochs, drawn)
    _draw_rates(rate_axes, epochs, _column(rows, LEARNING_RATE), few)
    figure.tight_layout()
    return figure


def _log_scale(axes):
    """A log y axis whose labels read as plain numbers; one that spans less than a decade
    labels its minor ticks too (else it might show no label at all)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axes.set_yscale("log")
    low, high = axes.get_ylim()
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain if high < 10 * low else NullFormatter())


def _draw_rates(axes, epochs, rates, few):
    """The learning rate per epoch on a log scale (the paper's divisions by 10 are even
    steps); a rate of 0 (a poly schedule's end) has no place there and is left out, said so."""
    if rates is not None:
        shown = [rate if rate > 0 else math.nan for rate in rates]
        axes.plot(epochs, shown, marker="o" if few else None, markersize=4, linewidth=1.4,
                  color="tab:green", label="learning rate")
        if any(rate <= 0 for rate in rates):
            axes.text(0.98, 0.95, "a rate of 0 is not drawn", ha="right", va="top",
                      transform=axes.transAxes, color="gray", fontsize=8)
        if any(math.isfinite(rate) for rate in shown):
            _log_scale(axes)
    _panel(axes, "learning rate", "learning rate", epochs, rates is not None, legend=False)


def plot_history(history_csv, path, metric=None):
    """Draw a run's curves (:func:`history_figure`) into the PNG ``path``, written to a
    temporary name and renamed into place.

    Args:
        history_csv: the run's ``history.csv``.
        path: the PNG written (``training_curves.png`` in a run directory).
        metric: as :func:`history_figure` takes it (None: from the file's columns).

    Returns:
        ``path``.

    Example:
        >>> plot_history("runs/r20/history.csv", "curves.png")  # doctest: +SKIP
        'curves.png'
    """
    figure = history_figure(history_csv, metric)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


__all__ = ["history_figure", "history_rows", "plot_history", "task_metric"]
