"""keras_resnet.interpret: the array functions against scikit-learn and brute force, and the
files of ``interpret`` / ``evaluate --interpret`` against the model's own predictions."""

import csv
import itertools

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import (
    average_precision_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from sklearn.metrics import precision_recall_curve as sklearn_precision_recall_curve

import keras_resnet
from harness import randomise_batch_norm
from keras_resnet import cli, data, interpret, tasks
from keras_resnet.errors import InvalidArgument
from keras_resnet.saving import load_model, save_model

FILES = ("confusion_matrix.csv", "confusion_matrix.png", "confusion_matrix_normalized.png",
         "per_class.csv", "most_confused.csv", "top_losses.csv", "top_losses.png")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _random_labels():
    """Labels of 6 classes: class 4 never predicted, class 5 never true."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    predicted = rng.choice([0, 1, 2, 3, 5], 300)
    return labels, predicted


def test_confusion_matrix_and_per_class_figures_equal_scikit_learn():
    labels, predicted = _random_labels()
    matrix = interpret.confusion_matrix(labels, predicted, 6)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, sklearn_confusion_matrix(labels, predicted, labels=range(6)))
    table = interpret.per_class_table(matrix, list("abcdef"))
    expected = precision_recall_fscore_support(labels, predicted, labels=range(6), zero_division=0)
    for column, key in enumerate(("precision", "recall", "f1", "support")):
        np.testing.assert_allclose([row[key] for row in table], expected[column], rtol=1e-12)
    assert table[4]["precision"] == 0.0 and table[5]["recall"] == 0.0 and table[5]["support"] == 0
    assert [row["class"] for row in table] == list("abcdef")


def test_most_confused_equals_a_brute_force_sort():
    rng = np.random.default_rng(1)
    matrix = rng.integers(0, 4, (7, 7))  # many ties
    names = [f"c{i}" for i in range(7)]
    pairs = [(-matrix[t, p], t, p) for t, p in itertools.product(range(7), repeat=2)
             if t != p and matrix[t, p] > 0]
    expected = [{"true": names[t], "predicted": names[p], "count": int(-c)}
                for c, t, p in sorted(pairs)[:10]]
    assert interpret.most_confused(matrix, names, k=10) == expected
    assert len(interpret.most_confused(matrix, names, k=1000)) == len(pairs)


def test_top_losses_are_the_largest_negative_log_probabilities():
    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(5), 200)
    probabilities[7] = probabilities[3]  # a tie: the lower index first
    labels = rng.integers(0, 5, 200)
    labels[7] = labels[3]
    losses = np.array([-np.log(p[label]) for p, label in zip(probabilities, labels)])
    indices, values = interpret.top_losses(probabilities, labels, 12)
    expected = sorted(range(200), key=lambda i: (-losses[i], i))[:12]
    assert indices.tolist() == expected
    np.testing.assert_allclose(values, losses[expected], rtol=1e-12)
    assert len(interpret.top_losses(probabilities[:3], labels[:3], 12)[0]) == 3


@pytest.mark.parametrize("call,message", [
    (lambda: interpret.confusion_matrix([0, 3], [0, 1], 3), "`labels` must hold class ids"),
    (lambda: interpret.confusion_matrix([0, 1], [0], 3), "one class id per example"),
    (lambda: interpret.top_losses(np.ones((2, 2)) / 2, [0, 1], 0), "`k` must be a positive"),
    (lambda: interpret.per_class_table(np.ones((2, 3)), ["a", "b"]), "`matrix` must be square"),
])
def test_bad_arrays_are_refused(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()


def _model():
    """A ResNet-8 for digits with random batch-norm statistics: varied, wrong predictions."""
    return randomise_batch_norm(keras_resnet.models.get_model("resnet8", classes=10), seed=3)


def _test_split(model):
    """The digits test split as ``model`` takes it (its own preprocessing), as NumPy."""
    return data.as_numpy(data.load("digits", "test", 360, training=False,
                                   preprocessing=keras_resnet.preprocessing.of(model))[0])


def _independent_matrix(model):
    images, labels = _test_split(model)
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    return sklearn_confusion_matrix(labels.reshape(-1), predicted, labels=range(10)), images


@pytest.mark.slow  # 2 s or more of its own
def test_interpret_writes_every_file_from_the_models_own_predictions(tmp_path):
    model = _model()
    result = interpret.interpret(model, "digits", "test", output_dir=tmp_path / "look", k=6)
    assert sorted(result["paths"]) == sorted(FILES)
    for name in FILES:
        assert (tmp_path / "look" / name).is_file()
    expected, _ = _independent_matrix(model)
    rows = _rows(tmp_path / "look" / "confusion_matrix.csv")
    assert rows[0][1:] == [str(i) for i in range(10)]
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], int), expected)
    assert result["accuracy"] == pytest.approx(np.trace(expected) / 360)
    per_class = _rows(tmp_path / "look" / "per_class.csv")
    recall = np.diag(expected) / expected.sum(axis=1)
    np.testing.assert_allclose([float(row[2]) for row in per_class[1:]], recall, rtol=1e-9)
    losses = _rows(tmp_path / "look" / "top_losses.csv")
    assert losses[0] == ["rank", "index", "file", "true", "predicted", "probability", "loss"]
    assert len(losses) == 7 and [row[0] for row in losses[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert all(row[2] == "" for row in losses[1:])  # digits come from arrays, not files
    assert np.all(np.diff([float(row[6]) for row in losses[1:]]) <= 0)
    with Image.open(tmp_path / "look" / "top_losses.png") as grid:
        assert grid.format == "PNG" and grid.size[0] >= 1000 and grid.size[1] >= 300
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png"):
        with Image.open(tmp_path / "look" / name) as figure:
            assert figure.format == "PNG" and min(figure.size) >= 300


@pytest.mark.slow  # 2 s or more of its own
def test_top_losses_rows_agree_with_predict(tmp_path):
    model = _model()
    result = interpret.interpret(model, output_dir=tmp_path, k=4)
    images, labels = _test_split(model)
    probabilities = model.predict(images, verbose=0)
    losses = -np.log(probabilities[np.arange(360), labels.reshape(-1)])
    worst = np.argsort(-losses, kind="stable")[:4]
    assert [row["index"] for row in result["top_losses"]] == worst.tolist()
    np.testing.assert_allclose([row["loss"] for row in result["top_losses"]], losses[worst],
                               rtol=1e-4)
    assert [row["predicted"] for row in result["top_losses"]] == [
        str(i) for i in probabilities[worst].argmax(axis=1)]


def test_a_wide_matrix_draws_the_classes_of_the_most_confused_pairs(tmp_path):
    rng = np.random.default_rng(4)
    matrix = np.diag(rng.integers(5, 9, 30)) + (rng.random((30, 30)) < 0.05)
    path = interpret.plot_confusion_matrix(matrix, [f"k{i}" for i in range(30)],
                                           str(tmp_path / "wide.png"))
    with Image.open(path) as figure:
        assert figure.format == "PNG" and min(figure.size) >= 300


@pytest.mark.slow
def test_cli_writes_the_files_and_says_where(tmp_path, capsys):
    model_path = save_model(_model(), str(tmp_path / "model.keras"))
    out = tmp_path / "look"
    assert cli.main(["evaluate", model_path, "--interpret", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"interpretation: {out}" in printed and "top-1 error" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


@pytest.mark.parametrize("kind,activation", [("segmentation", "linear"), ("detection", "sigmoid")])
def test_segmenters_and_detectors_are_refused_in_one_line(tmp_path, capsys, kind, activation):
    head = keras_resnet.models.get_model("resnet8", classes=10, classifier_activation=None)
    model = tasks.attach(head, tasks.Task(kind, 10, activation))
    with pytest.raises(InvalidArgument, match="interpret is for classifiers"):
        interpret.interpret(model, output_dir=tmp_path / "python")
    model_path = save_model(model, str(tmp_path / "model.keras"))
    assert cli.main(["evaluate", model_path, "--interpret", str(tmp_path / "cli")]) == 2
    error = capsys.readouterr().err.strip()
    assert "interpret is for classifiers" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "python").exists() and not (tmp_path / "cli").exists()


def _multilabel_arrays():
    """Multi-hot labels of 5 labels (label 3 never true) and scores with ties."""
    rng = np.random.default_rng(5)
    truth = (rng.random((240, 5)) < 0.35).astype(np.int64)
    truth[:, 3] = 0
    scores = np.clip(np.round(0.4 * truth + 0.6 * rng.random((240, 5)), 2), 0, 1)
    return truth, scores


def test_label_tables_equal_scikit_learns_multilabel_confusion_matrix():
    truth, scores = _multilabel_arrays()
    thresholds = [0.5, 0.3, 0.7, 0.5, 0.55]
    table = interpret.label_table(truth, scores, thresholds, list("abcde"))
    predicted = (scores >= thresholds).astype(np.int64)
    for row, counts in zip(table, multilabel_confusion_matrix(truth, predicted)):
        assert [[row["tn"], row["fp"]], [row["fn"], row["tp"]]] == counts.tolist()
    expected = precision_recall_fscore_support(truth, predicted, zero_division=0)
    for column, key in enumerate(("precision", "recall", "f1", "support")):
        np.testing.assert_allclose([row[key] for row in table], expected[column], rtol=1e-12)
    ap = [average_precision_score(truth[:, k], scores[:, k]) for k in (0, 1, 2, 4)]
    np.testing.assert_allclose([table[k]["ap"] for k in (0, 1, 2, 4)], ap, rtol=1e-12)
    assert np.isnan(table[3]["ap"]) and [row["threshold"] for row in table] == thresholds


@pytest.mark.filterwarnings("ignore::UserWarning")  # scikit-learn on a label without positives
def test_precision_recall_curves_equal_scikit_learns():
    truth, scores = _multilabel_arrays()
    for k in range(5):
        ours = interpret.precision_recall_curve(truth[:, k], scores[:, k])
        theirs = sklearn_precision_recall_curve(truth[:, k], scores[:, k])
        for mine, reference in zip(ours, theirs):
            np.testing.assert_allclose(mine, reference, rtol=1e-12)


def test_label_top_losses_are_the_largest_mean_binary_cross_entropies():
    truth, scores = _multilabel_arrays()
    scores = np.clip(scores, 1e-3, 1 - 1e-3)
    losses = [np.mean([-np.log(s if t else 1 - s) for t, s in zip(row, row_scores)])
              for row, row_scores in zip(truth, scores)]
    indices, values = interpret.label_top_losses(truth, scores, 7)
    expected = sorted(range(240), key=lambda i: (-losses[i], i))[:7]
    assert indices.tolist() == expected
    np.testing.assert_allclose(values, np.asarray(losses)[expected], rtol=1e-12)


LABEL_FILES = ("per_label.csv", "label_confusion.png", "precision_recall.csv",
               "precision_recall.png", "top_losses.csv", "top_losses.png")


@pytest.mark.slow
def test_a_multilabel_model_gets_per_label_tables_and_curves(tmp_path, capsys):
    thresholds = (0.3, 0.4, 0.5, 0.6, 0.7, 0.5, 0.5, 0.5, 0.45, 0.55)
    head = randomise_batch_norm(keras_resnet.models.get_model(
        "resnet8", classes=10, classifier_activation="sigmoid"), seed=3)
    head = keras_resnet.preprocessing.attach(head, keras_resnet.preprocessing.default_for(head))
    model_path = save_model(tasks.attach(head, tasks.Task("multilabel", 10, "sigmoid", thresholds)),
                            str(tmp_path / "model.keras"))  # as a run leaves it
    model = load_model(model_path)
    result = interpret.interpret(model, "digit_canvases", "test", output_dir=tmp_path / "look", k=5)
    assert sorted(result["paths"]) == sorted(LABEL_FILES)
    images, truth = data.as_numpy(data.load(
        "digit_canvases", "test", 250, training=False, task="multilabel",
        preprocessing=keras_resnet.preprocessing.of(model))[0])
    scores = model.predict(images, verbose=0)
    predicted = (scores >= np.asarray(thresholds)).astype(np.int64)
    rows = _rows(tmp_path / "look" / "per_label.csv")
    assert rows[0][:6] == ["label", "threshold", "tp", "fp", "fn", "tn"]
    for row, counts in zip(rows[1:], multilabel_confusion_matrix(truth, predicted)):
        assert [[int(row[5]), int(row[3])], [int(row[4]), int(row[2])]] == counts.tolist()
    assert result["exact_match"] == pytest.approx(np.mean(np.all(predicted == truth, axis=1)))
    curve = [r for r in _rows(tmp_path / "look" / "precision_recall.csv")[1:] if r[0] == "0"]
    # predict's float32 scores may break a tie or two differently: the area under the curve
    # (average precision as its step sum) is compared, and the number of points
    precision, recall = (np.array([float(r[i]) for r in curve] + [last]) for i, last in ((2, 1), (3, 0)))
    assert abs(len(curve) + 1 - len(sklearn_precision_recall_curve(truth[:, 0], scores[:, 0])[0])) <= 2
    assert -np.sum(np.diff(recall) * precision[:-1]) == pytest.approx(
        average_precision_score(truth[:, 0], scores[:, 0]), abs=1e-3)
    assert len(_rows(tmp_path / "look" / "top_losses.csv")) == 6
    for name in ("label_confusion.png", "precision_recall.png", "top_losses.png"):
        with Image.open(tmp_path / "look" / name) as figure:
            assert figure.format == "PNG" and min(figure.size) >= 300
    assert cli.main(["evaluate", model_path, "--dataset", "digit_canvases",
                     "--interpret", str(tmp_path / "cli")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(LABEL_FILES)
