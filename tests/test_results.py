"""What a run shows of its training: the curves (keras_resnet.curves, drawn at a run's end by
keras_resnet.train.results), history.csv's learning-rate column, and the one line per epoch a
run prints when its output is not a terminal."""

import csv
import io
import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

import keras_resnet
from keras_resnet import curves
from keras_resnet.train import results
from keras_resnet.train.callbacks import CSVLogger
from keras_resnet.train.flow import fit_verbosity

COLUMNS = ("epoch", "learning_rate", "loss", "top1", "top5", "val_loss", "val_top1", "val_top5")


def _history(path, epochs, columns=COLUMNS, rate=lambda epoch: 0.1 * 0.1 ** (epoch // 80),
             validation=True):
    """A history.csv as Keras' CSVLogger writes it: ``epochs`` rows of made-up figures."""
    rng = np.random.default_rng(epochs)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for epoch in range(epochs):
            values = {"epoch": epoch, "learning_rate": rate(epoch), "loss": 2 / (epoch + 1),
                      "top1": rng.uniform(0.3, 0.9), "top5": 0.99}
            for key in ("loss", "top1", "top5"):
                values[f"val_{key}"] = values[key] + 0.01 if validation else "NA"
            writer.writerow([values[column] for column in columns])
    return results.history_rows(str(path))


def _lines(axes):
    return {line.get_label(): line for line in axes.get_lines()}


def test_one_epoch_shows_its_points_in_three_panels(tmp_path):
    rows = _history(tmp_path / "history.csv", 1)
    figure = curves.history_figure(str(tmp_path / "history.csv"))
    loss, metric, rate = figure.axes
    assert [axes.get_title() for axes in figure.axes] == ["loss", "top-1 error", "learning rate"]
    assert [axes.get_ylabel() for axes in figure.axes] == ["loss", "top-1 error (%)",
                                                           "learning rate"]
    for axes in (loss, metric):
        lines = _lines(axes)
        assert set(lines) == {"training", "validation"}
        assert lines["training"].get_linestyle() != lines["validation"].get_linestyle()
        assert all(len(line.get_xdata()) == 1 and line.get_marker() not in ("None", None, "")
                   for line in lines.values())
    np.testing.assert_allclose(_lines(metric)["training"].get_ydata(),
                               [100 * (1 - float(rows[0]["top1"]))])
    np.testing.assert_allclose(_lines(metric)["validation"].get_ydata(),
                               [100 * (1 - float(rows[0]["val_top1"]))])
    assert list(rate.get_lines()[0].get_ydata()) == [0.1] and rate.get_yscale() == "log"
    assert [tick for tick in loss.get_xticks() if 0.5 <= tick <= 1.5] == [1]  # whole epochs

    path = results.plot_history(str(tmp_path / "history.csv"), str(tmp_path / "curves.png"))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1300, 380)


def test_two_hundred_epochs_are_plain_lines_and_the_rate_steps_on_a_log_scale(tmp_path):
    _history(tmp_path / "history.csv", 200)
    figure = curves.history_figure(str(tmp_path / "history.csv"), metric="top1")
    loss, metric, rate = figure.axes
    for axes in (loss, metric):
        for line in axes.get_lines():
            assert list(line.get_xdata()) == list(range(1, 201))
            assert line.get_marker() in ("None", None, "")
    np.testing.assert_allclose(_lines(loss)["training"].get_ydata(),
                               [2 / epoch for epoch in range(1, 201)])
    assert rate.get_yscale() == "log"
    assert sorted(set(rate.get_lines()[0].get_ydata())) == pytest.approx([0.001, 0.01, 0.1])
    results.plot_history(str(tmp_path / "history.csv"), str(tmp_path / "curves.png"))
    with Image.open(tmp_path / "curves.png") as image:
        image.verify()


def test_an_old_history_without_learning_rate_or_validation_still_plots(tmp_path):
    old = [column for column in COLUMNS if column != "learning_rate"]
    _history(tmp_path / "history.csv", 3, columns=old, validation=False)  # "NA" in val_*
    figure = curves.history_figure(str(tmp_path / "history.csv"))
    loss, metric, rate = figure.axes
    assert set(_lines(loss)) == set(_lines(metric)) == {"training"}
    assert rate.get_lines() == [] and rate.get_title() == "learning rate"
    assert "not in history.csv" in [text.get_text() for text in rate.texts]
    path = results.plot_history(str(tmp_path / "history.csv"), str(tmp_path / "curves.png"),
                                metric="top1")  # the old call
    with Image.open(path) as image:
        image.verify()
    empty = curves.history_figure(str(tmp_path / "no_history.csv"))
    assert [len(axes.get_lines()) for axes in empty.axes] == [0, 0, 0]


@pytest.mark.parametrize("metric,title,log", [("miou", "mIoU", False), ("out_miou", "mIoU", False),
                                              ("pr_auc", "PR AUC", False),
                                              ("loss", "loss, log scale", True)])
def test_the_metric_panel_follows_the_task(tmp_path, metric, title, log):
    columns = ["epoch", "learning_rate", "loss", "val_loss"]
    columns += [metric, f"val_{metric}"] if metric != "loss" else []
    path = tmp_path / "history.csv"
    with open(path, "w") as f:
        f.write(",".join(columns) + "\n")
        f.write(",".join(["0", "0.01", "1.5", "1.6"] + ["0.4", "0.3"] * (metric != "loss")) + "\n")
    assert curves.task_metric(columns) == metric
    middle = curves.history_figure(str(path)).axes[1]
    assert middle.get_title() == title and (middle.get_yscale() == "log") == log
    expected = [1.5, 1.6] if metric == "loss" else [0.4, 0.3]  # values, not errors
    assert [float(line.get_ydata()[0]) for line in middle.get_lines()] == expected


def test_a_rate_of_zero_is_left_off_the_log_scale_and_said_so(tmp_path):
    _history(tmp_path / "history.csv", 3, rate=lambda epoch: [0.02, 0.01, 0.0][epoch])  # poly
    rate = curves.history_figure(str(tmp_path / "history.csv")).axes[2]
    shown = rate.get_lines()[0].get_ydata()
    assert list(shown[:2]) == [0.02, 0.01] and np.isnan(shown[2]) and rate.get_yscale() == "log"
    assert "a rate of 0 is not drawn" in [text.get_text() for text in rate.texts]


def test_plot_history_is_public_and_the_runs_module_keeps_its_names():
    assert keras_resnet.plot_history is curves.plot_history is results.plot_history
    assert keras_resnet.runs.history_rows is curves.history_rows


def _fit(model, run_dir, epochs, initial_epoch=0):
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
              callbacks=[CSVLogger(os.path.join(run_dir, "history.csv"))])


def test_history_csv_logs_the_learning_rate_of_a_schedule_and_keeps_an_old_header(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=8)
    model.compile(keras.optimizers.SGD(schedule), "mse")
    _fit(model, str(tmp_path), 3)  # 2 steps an epoch: the rate after steps 2, 4, 6
    rows = results.history_rows(str(tmp_path / "history.csv"))
    np.testing.assert_allclose([float(row["learning_rate"]) for row in rows],
                               [float(schedule(step)) for step in (2, 4, 6)], rtol=1e-6)

    # A run resumed into a history.csv written without the column: rows stay under its header.
    old = tmp_path / "old"
    old.mkdir()
    (old / "history.csv").write_text("epoch,loss\n0,1.0\n")
    _fit(model, str(old), 2, initial_epoch=1)
    with open(old / "history.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["epoch", "loss"] and [len(line) for line in lines] == [2, 2, 2]
    assert lines[2][0] == "1" and float(lines[2][1]) > 0


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_verbosity_is_the_bar_on_a_terminal_and_a_line_per_epoch_elsewhere():
    assert fit_verbosity("auto", _Terminal()) == 1
    assert fit_verbosity("auto", io.StringIO()) == 2
    assert [fit_verbosity(given, _Terminal()) for given in (0, 1, 2)] == [0, 1, 2]
    assert [fit_verbosity(given, io.StringIO()) for given in (0, 1, 2)] == [0, 1, 2]


@pytest.mark.slow
def test_a_run_piped_to_a_file_prints_one_line_per_epoch(tmp_path, capfd):
    """``keras-resnet train`` with its output in a file (not a terminal): one line per epoch,
    no progress-bar frames (carriage returns, backspaces). In-process (``cli.main``, what the
    console script calls), its output captured at the file descriptor; tests/test_cli.py's
    kill-and-resume test reads the same lines from a pipe."""
    from keras_resnet.cli import main

    run_dir = tmp_path / "run"
    capfd.readouterr()
    assert main(["train", "--model", "resnet8", "--epochs", "2", "--batch-size", "128", "--no-export",
                 "--output-dir", str(run_dir)]) == 0
    out = capfd.readouterr().out
    assert "\r" not in out and "\b" not in out
    lines = out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert not [line for line in lines if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    rows = results.history_rows(str(run_dir / "history.csv"))
    for line, row in zip(epoch_lines, rows):  # the figures history.csv holds, as printed
        assert re.match(r"epoch \d/2 - \d+s - loss: ", line), line
        printed = dict(part.split(": ") for part in line.split(" - ")[2:])
        assert float(printed["loss"]) == pytest.approx(float(row["loss"]), abs=1e-4)
        assert float(printed["val_top1"]) == pytest.approx(float(row["val_top1"]), abs=1e-4)
    assert [float(row["learning_rate"]) > 0 for row in rows] == [True, True]
    figure = curves.history_figure(str(run_dir / "history.csv"))
    assert [len(line.get_xdata()) for axes in figure.axes for line in axes.get_lines()] == [2] * 5
