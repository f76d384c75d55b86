"""Multi-label classification: metrics against scikit-learn's, thresholds, the digit canvases,
labels files, and a run from training to serving."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from keras_resnet import multilabel
from keras_resnet.data import digit_canvases
from keras_resnet.data.sources import digits_arrays
from keras_resnet.errors import InvalidArgument


def _scored(seed, examples=300, classes=7, ties=False):
    rng = np.random.default_rng(seed)
    truth = (rng.uniform(size=(examples, classes)) < rng.uniform(0.05, 0.5, classes)).astype(int)
    scores = np.clip(truth * rng.uniform(0.1, 0.6, classes) + rng.normal(0.3, 0.2, truth.shape), 0, 1)
    if ties:
        scores = np.round(scores, 1)  # many equal scores: ties are where AP implementations differ
    return truth, scores


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_average_precision_and_f1_equal_scikit_learns(seed, ties):
    truth, scores = _scored(seed, ties=ties)
    expected_ap = average_precision_score(truth, scores, average=None)
    np.testing.assert_allclose(multilabel.average_precision(truth, scores), expected_ap, rtol=1e-12)
    thresholds = np.linspace(0.3, 0.6, truth.shape[1])
    report = multilabel.multilabel_report(truth, scores, thresholds)
    assert report["mAP"] == pytest.approx(average_precision_score(truth, scores, average="macro"), rel=1e-12)
    predicted = (scores >= thresholds).astype(int)
    for average in ("macro", "micro"):
        assert report[f"f1_{average}"] == pytest.approx(
            f1_score(truth, predicted, average=average, zero_division=0), rel=1e-12)
    per_class = f1_score(truth, predicted, average=None, zero_division=0)
    np.testing.assert_allclose([row["f1"] for row in report["per_class"].values()], per_class, rtol=1e-12)


@pytest.mark.slow
def test_thresholds_maximise_each_classes_f1():
    truth, scores = _scored(4, ties=True)
    chosen = multilabel.choose_thresholds(truth, scores)
    best = multilabel.multilabel_report(truth, scores, chosen)["per_class"]
    for k, name in enumerate(best):
        # No threshold on a fine grid does better for that class (scikit-learn's F1).
        grid = [f1_score(truth[:, k], scores[:, k] >= t, zero_division=0) for t in np.linspace(-0.01, 1.01, 205)]
        assert best[name]["f1"] == pytest.approx(max(grid), abs=1e-12)
        assert not np.any(np.isclose(scores[:, k], chosen[k]))  # midway, never on a score
    # A class with no positives keeps the default.
    truth[:, 0] = 0
    assert multilabel.choose_thresholds(truth, scores, default=0.7)[0] == 0.7
    assert np.isnan(multilabel.average_precision(truth, scores)[0])


def test_refusals_name_the_argument():
    with pytest.raises(InvalidArgument, match="must both be"):
        multilabel.multilabel_report(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(InvalidArgument, match="multi-hot"):
        multilabel.average_precision(np.full((3, 2), 2), np.zeros((3, 2)))
    with pytest.raises(InvalidArgument, match="`class_names` must name 2 classes"):
        multilabel.multilabel_report(np.zeros((3, 2)), np.zeros((3, 2)), class_names=["a"])
    with pytest.raises(InvalidArgument, match="`split` must be one of train, validation, test"):
        digit_canvases("val")
    with pytest.raises(InvalidArgument, match="`count` must be a positive integer"):
        digit_canvases("test", count=0)


def test_canvases_hold_the_digits_their_labels_name():
    images, labels, cells = digit_canvases("validation", count=200)
    digits, digit_labels, splits = digits_arrays()
    assert images.shape == (200, 32, 32, 3) and labels.shape == (200, 10) and images.dtype == np.uint8
    filled = (cells >= 0).sum(1)
    assert set(filled) == {2, 3}
    for n in range(200):
        expected = np.zeros(10, np.uint8)
        for cell, index in enumerate(cells[n]):
            row, col = divmod(cell, 2)
            patch = images[n, row * 16:(row + 1) * 16, col * 16:(col + 1) * 16, 0]
            if index < 0:
                assert not patch.any()
                continue
            assert index in splits["validation"]  # a split's canvases use its own digits only
            np.testing.assert_array_equal(patch[::2, ::2], digits[index, :, :, 0])
            expected[digit_labels[index]] = 1
        np.testing.assert_array_equal(labels[n], expected)
    again = digit_canvases("validation", count=200)
    np.testing.assert_array_equal(again[0], images)  # seeded: the same canvases every time


def test_report_refuses_thresholds_of_the_wrong_length():
    with pytest.raises(InvalidArgument, match=r"`thresholds` must be one number or one per class \(2\)"):
        multilabel.multilabel_report(np.zeros((3, 2)), np.zeros((3, 2)), thresholds=[0.5, 0.5, 0.5])


# Thresholds: in the model's Task now; a preprocessing of an old file still reads its own -----


def test_thresholds_travel_in_the_saved_model(tmp_path):
    import keras

    import keras_resnet
    from keras_resnet import preprocessing, tasks

    model = keras_resnet.CifarResNet(8, classes=3, classifier_activation="sigmoid")
    model = tasks.attach(model, tasks.Task("multilabel", 3, "sigmoid", (0.2, 0.5, 0.9)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert tasks.task_of(loaded).thresholds == (0.2, 0.5, 0.9)
    assert "thresholds" not in preprocessing.of(loaded).get_config()  # inputs only
    # An old file's preprocessing kept them: read, round-tripped, never carried to new classes.
    recipe = preprocessing.ImagePreprocessing(32, class_names=list("abc"), thresholds=[0.2, 0.5, 0.9])
    assert preprocessing.ImagePreprocessing.from_json(recipe.to_json()) == recipe
    assert recipe.with_class_names(["x", "y"]).thresholds is None
    assert not preprocessing.ImagePreprocessing(32).multilabel


@pytest.mark.parametrize("kwargs,message", [
    (dict(class_names=["a", "b"], thresholds=[0.5]), r"one value per class name \(2 classes\); got 1"),
    (dict(class_names=None, thresholds=[0.5]), r"one value per class name \(0 classes\)"),
    (dict(class_names=["a"], thresholds=[float("nan")]), "one finite number per class"),
    (dict(class_names=["a"], thresholds="0.5"), "one finite number per class"),
])
def test_preprocessing_refuses_thresholds_that_do_not_fit(kwargs, message):
    from keras_resnet import preprocessing

    with pytest.raises(InvalidArgument, match=message):
        preprocessing.ImagePreprocessing(32, **kwargs)


def test_compile_picks_the_loss_from_the_task_and_refuses_a_head_that_does_not_fit():
    import keras

    import keras_resnet
    from keras_resnet import tasks, training

    sigmoid = keras_resnet.CifarResNet(8, classes=3, classifier_activation="sigmoid")
    sigmoid = tasks.attach(sigmoid, tasks.Task("multilabel", 3, "sigmoid"))
    training.compile_model(sigmoid)  # task "auto": the Task the model carries says multi-label
    assert isinstance(sigmoid.loss, keras.losses.BinaryCrossentropy)
    x, y = np.zeros((4, 32, 32, 3), "float32"), np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    assert sorted(sigmoid.evaluate(x, y, return_dict=True, verbose=0)) == ["f1", "loss", "pr_auc"]
    softmax = keras_resnet.CifarResNet(8, classes=3)
    with pytest.raises(InvalidArgument, match="ends in a softmax.*classifier_activation='sigmoid'"):
        training.compile_model(softmax, task="multilabel")
    with pytest.raises(InvalidArgument, match="ends in a sigmoid.*classifier_activation='softmax'"):
        training.compile_model(sigmoid, task="single_label")
    with pytest.raises(InvalidArgument, match="`task` must be one of"):
        training.compile_model(softmax, task="multi")


def test_over_thresholds_lists_each_label_at_or_over_its_threshold_highest_first():
    from keras_resnet.export.runtimes import over_thresholds

    found = over_thresholds(np.array([0.5, 0.9, 0.69, 0.7]), list("abcd"), [0.5, 0.95, 0.7, 0.7])
    assert [(e["label"], e["score"]) for e in found] == [("d", 0.7), ("a", 0.5)]


# Data: canvases and labels files ------------------------------------------------------------


def test_canvases_load_as_multi_hot_batches():
    from keras_resnet import data

    dataset, info = data.load("digit_canvases", "test", 250)
    labels = np.concatenate([y for _, y in dataset.as_numpy_iterator()])
    np.testing.assert_array_equal(labels, digit_canvases("test")[1])
    assert info.multilabel and info.task_kind == "multilabel"
    assert info.preprocessing.thresholds is None  # a model's Task holds thresholds
    assert info.num_examples == 1000 and info.image_shape == (32, 32, 3)
    with pytest.raises(InvalidArgument, match="`task` 'single_label' needs one label per image"):
        data.load("digit_canvases", "test", 32, task="single_label")
    # A single-label dataset asked for multi-label gives one-hot rows.
    digits, info = data.load("digits", "test", 360, task="multilabel")
    _, one_hot = next(digits.as_numpy_iterator())
    np.testing.assert_array_equal(one_hot.sum(1), 1)
    assert info.multilabel


def _write_labels_folder(folder, rows, header=True):
    """PNG canvases and a labels file naming them: ``rows`` of (labels, split or None)."""
    from PIL import Image

    images, _, _ = digit_canvases("test", count=len(rows), seed=7)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = ["path,labels,split"] if header else []
    for n, (labels, split) in enumerate(rows):
        Image.fromarray(images[n]).save(folder / "images" / f"{n}.png")
        lines.append(f"images/{n}.png,{';'.join(labels)}" + (f",{split}" if split else ""))
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "labels.csv"), images


def test_a_labels_file_gives_the_images_and_labels_it_names(tmp_path):
    from keras_resnet import data

    rows = [(["cat", "dog"], "train"), (["dog"], "train"), ([], "train"), (["bird", "cat"], "test"),
            (["bird"], "validation")]
    path, images = _write_labels_folder(tmp_path, rows)
    train, info = data.load(path, "train", 8, training=False)
    assert info.class_names == ["bird", "cat", "dog"] and info.multilabel
    _, labels = next(train.as_numpy_iterator())
    np.testing.assert_array_equal(labels, [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    test, _ = data.load(path, "test", 8)
    np.testing.assert_array_equal(next(test.as_numpy_iterator())[1], [[1, 1, 0]])
    # The images are the files' (32x32 canvases: resized to 32 is the identity).
    pixels, _ = next(data.load(path, "test", 8, augment=None)[0].as_numpy_iterator())
    np.testing.assert_allclose(pixels[0], info.preprocessing.normalize(images[3]), atol=1e-6)


def test_a_labels_file_of_one_label_each_can_train_single_label(tmp_path):
    from keras_resnet import data

    rows = [(["b"], None), (["a"], None), (["b"], None)] * 4
    path, _ = _write_labels_folder(tmp_path, rows, header=False)
    dataset, info = data.load(path, "train", 64, training=False, task="single_label")
    labels = next(dataset.as_numpy_iterator())[1]
    assert labels.dtype == np.int32 and not info.multilabel and set(labels) <= {0, 1}


@pytest.mark.parametrize("line,message", [
    ("images/0.png,a,train,extra", r"line 2: expected path,label;label;...\[,split\]; got 4 fields"),
    ("images/0.png,a,val", r"line 2: split 'val' is not one of train, validation, test"),
    ("images/9.png,a", r"1 image\(s\) of labels file .* do not exist: line 2: .*9.png"),
    (",a", "line 2: the image path is empty"),
])
def test_a_bad_labels_file_is_refused_naming_the_line(tmp_path, line, message):
    from keras_resnet import data

    path, _ = _write_labels_folder(tmp_path, [(["a"], "train")])
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join([lines[0], line]) + "\n")
    with pytest.raises(InvalidArgument, match=message):
        data.load(path, "train", 1)


def test_a_labels_file_listing_an_image_twice_or_missing_is_refused(tmp_path):
    from keras_resnet import data

    path, _ = _write_labels_folder(tmp_path, [(["a"], "train"), (["b"], "train")])
    with open(path, "a") as f:
        f.write("images/0.png,b,train\n")
    with pytest.raises(InvalidArgument, match="line 4: 'images/0.png' is listed again .first on line 2"):
        data.load(path, "train", 1)
    with pytest.raises(InvalidArgument, match="labels file .*nowhere.csv' does not exist"):
        data.load(str(tmp_path / "nowhere.csv"), "train", 1)


# A multi-label run, from training to serving (end-to-end) ------------------------------------

ML_EPOCHS = 3


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    """ResNet-8 trained on the digit canvases by ``runs.train`` (task inferred), exported."""
    from keras_resnet import runs

    run_dir = str(tmp_path_factory.mktemp("multilabel") / "run")
    result = runs.train("resnet8", "digit_canvases", run_dir=run_dir, epochs=ML_EPOCHS, verbose=0)
    return run_dir, result


def _scores(model, split):
    """Scores and labels of a split, computed here with Keras' own predict."""
    from keras_resnet import data, preprocessing

    dataset, _ = data.load("digit_canvases", split, 500, preprocessing=preprocessing.of(model))
    images, labels = zip(*dataset.as_numpy_iterator())
    return model.predict(np.concatenate(images), verbose=0), np.concatenate(labels)


@pytest.mark.slow
def test_a_multilabel_run_chooses_thresholds_on_validation_and_reports_the_test_split(multilabel_run):
    import keras

    from keras_resnet import evaluation, tasks

    run_dir, result = multilabel_run
    assert result["task"] == "multilabel" and result["thresholds_split"] == "validation"
    for name in ("model.keras", "best.keras"):  # each carries the thresholds best on its own scores
        model = keras.saving.load_model(f"{run_dir}/{name}")
        assert model.layers[-1].activation.__name__ == "sigmoid"
        scores, labels = _scores(model, "validation")
        np.testing.assert_allclose(tasks.task_of(model).thresholds,
                                   multilabel.choose_thresholds(labels, scores), atol=1e-5)
    model = keras.saving.load_model(f"{run_dir}/model.keras")
    scores, labels = _scores(model, "test")
    test = result["test"]
    assert test["mAP"] == pytest.approx(average_precision_score(labels, scores, average="macro"), abs=1e-6)
    predicted = scores >= np.asarray(tasks.task_of(model).thresholds)
    assert test["f1_macro"] == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0), abs=1e-3)
    assert 0.3 < test["mAP"] <= 1 and set(test["per_class"]) == {str(d) for d in range(10)}
    evaluated = evaluation.evaluate(f"{run_dir}/model.keras", "digit_canvases")
    assert evaluated["mAP"] == pytest.approx(test["mAP"], abs=1e-6)
    import csv

    with open(f"{run_dir}/history.csv") as f:
        assert {"pr_auc", "val_pr_auc", "f1", "val_f1"} <= set(next(csv.DictReader(f)))


@pytest.mark.slow
def test_multilabel_exports_say_so_and_predict_and_serve_every_label_over_its_threshold(multilabel_run, tmp_path):
    import base64
    import json

    import httpx
    import keras
    from PIL import Image

    from keras_resnet import export, preprocessing, serving, tasks
    from keras_resnet.export.runtimes import over_thresholds

    run_dir, _ = multilabel_run
    saved_model = f"{run_dir}/export/resnet8/1"
    tflite = f"{run_dir}/export/resnet8/tflite/model_float32.tflite"
    model = keras.saving.load_model(f"{run_dir}/model.keras")
    task = tasks.task_of(model)
    assert task.multilabel and export.read_export_metadata(saved_model)["task"] == task.to_config()
    assert json.load(open(tflite + ".json"))["task"] == task.to_config()
    images, _, _ = digit_canvases("test", count=4, seed=11)
    paths = []
    for n, image in enumerate(images):
        paths.append(str(tmp_path / f"{n}.png"))
        Image.fromarray(image).save(paths[-1])
    recipe = preprocessing.of(model)
    probabilities = model.predict(recipe.normalize(images), verbose=0)
    expected = [[e["label"] for e in over_thresholds(p, recipe.class_names, task.thresholds)]
                for p in probabilities]
    # float32 asked for: "auto" may take bfloat16 for the SavedModel on a CPU where the export
    # measured it faster, and a probability near its threshold could cross it.
    for source in (f"{run_dir}/model.keras", saved_model, tflite):
        found = export.predict_files(source, paths, precision="float32")
        assert [[e["label"] for e in r["labels"]] for r in found] == expected, source
    with serving.BackgroundServer(f"{run_dir}/export", precision="float32") as running:
        body = {"signature_name": "serving_bytes",
                "instances": [{"b64": base64.b64encode(open(p, "rb").read()).decode()} for p in paths]}
        response = httpx.post(f"{running.url}/v1/models/resnet8:predict", json=body, timeout=60)
    rows = response.json()["predictions"]
    assert [row["predicted_labels"] for row in rows] == [";".join(labels) for labels in expected]
    for row, p in zip(rows, probabilities):
        np.testing.assert_array_equal(row["predicted"], (p >= np.asarray(task.thresholds)).astype(int))
        np.testing.assert_allclose(row["probabilities"], p, atol=1e-5)


@pytest.mark.slow
def test_fine_tuning_on_multilabel_data_puts_a_sigmoid_head_with_thresholds(tiny_run, tmp_path):
    import keras

    from keras_resnet import runs, tasks

    run_dir, _ = tiny_run
    # The new head's phase alone: the phases that follow it are tests/test_runs.py's
    # (test_fine_tuning_is_training_in_phases_and_run_json_says_what_ran).
    result = runs.fine_tune(weights=f"{run_dir}/model.keras", dataset="digit_canvases", epochs=1,
                            head_epochs=1, run_dir=str(tmp_path / "ft"), export=False, verbose=0)
    model = keras.saving.load_model(tmp_path / "ft" / "model.keras")
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert tasks.task_of(model).multilabel and result["task"] == "multilabel"
    # The run's mAP is scikit-learn's average precision of the saved model on the test split,
    # averaged over the classes with positives there.
    from keras_resnet import data, preprocessing

    batches, _ = data.load("digit_canvases", "test", 128, preprocessing=preprocessing.of(model))
    scores, truth = [], []
    for images, labels in batches:
        scores.append(np.asarray(model.predict_on_batch(images), np.float64))
        truth.append(np.asarray(labels))
    scores, truth = np.concatenate(scores), np.concatenate(truth)
    present = [k for k in range(truth.shape[1]) if truth[:, k].any()]
    expected = np.mean([average_precision_score(truth[:, k], scores[:, k]) for k in present])
    assert result["test"]["mAP"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_train_infers_the_task_from_a_labels_file(tmp_path, capsys):
    import json

    from keras_resnet.cli import main  # in-process: the console script calls the same main

    rows = [([str(n % 3)] + ([str((n + 1) % 3)] if n % 2 else []), split)
            for n, split in enumerate(["train"] * 24 + ["validation"] * 8 + ["test"] * 8)]
    path, _ = _write_labels_folder(tmp_path, rows)
    code = main(["train", "--model", "resnet8", "--dataset", path, "--epochs", "1",
                 "--batch-size", "8", "--no-export", "--output-dir", str(tmp_path / "run")])
    done = capsys.readouterr()
    assert code == 0, done.err[-2000:]
    assert "test mAP" in done.out and "at thresholds chosen on the validation split" in done.out
    record = json.load(open(tmp_path / "run" / "run.json"))
    assert record["task"] == "multilabel" and record["data"]["preprocessing"]["class_names"] == ["0", "1", "2"]
    code = main(["train", "--model", "resnet8", "--dataset", path, "--task", "single_label",
                 "--epochs", "1", "--batch-size", "8", "--output-dir", str(tmp_path / "refused")])
    assert code == 2 and "`task` 'single_label' needs one label per image" in capsys.readouterr().err
