import csv
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from harness import digits_top1
from keras_resnet import data, preprocessing, tuning
from keras_resnet.models import get_model

# A search small enough for a test: the shallowest CIFAR nets, one batch size, 2-epoch budgets.
TINY = tuning.SearchSpace(cifar_depths=(8, 14), width_multipliers=(0.5,), batch_sizes=(64,))
# Trials per tuner: Hyperband's three (factor 2, budgets of 1 and 2 epochs) continue a trial
# with more epochs; two trials show random search and Bayesian optimisation (which samples at
# random until it has points to model) running and ranked.
TRIALS = {"random": 2, "hyperband": 3, "bayesian": 2}


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# The Hyperband search as `keras-resnet tune` runs it (in-process: the console script calls the
# same main), flag for flag the search space TINY and the other tuners' budgets.
TUNE_COMMAND = ["tune", "--dataset", "digits", "--tuner", "hyperband", "--max-trials", str(TRIALS["hyperband"]),
                "--max-epochs", "2", "--hyperband-factor", "2", "--cifar-depths", "8,14",
                "--width-multipliers", "0.5", "--batch-sizes", "64"]


def _tune_command(output_dir):
    """Run TUNE_COMMAND into ``output_dir``: (exit status, what it printed, what its
    ``tuning.tune`` returned)."""
    import contextlib
    import io

    from keras_resnet.cli import main

    returned, printed, real = {}, io.StringIO(), tuning.tune

    def spy(*args, **kwargs):
        returned.update(real(*args, **kwargs))
        return returned

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(tuning, "tune", spy)
        code = main([*TUNE_COMMAND, "--output-dir", output_dir])
    return code, printed.getvalue(), returned


@pytest.fixture(scope="session")
def searches(tmp_path_factory):
    """One tiny real search on digits with each tuner (Hyperband's by the tune command)."""
    root = tmp_path_factory.mktemp("tuning")
    results = {}
    for name in tuning.TUNERS:
        keras.config.set_dtype_policy("float32")
        if name == "hyperband":
            code, printed, results[name] = _tune_command(str(root / name))
            results[name].update(command_exit=code, command_output=printed)
            continue
        results[name] = tuning.tune(
            "digits", name, output_dir=str(root / name), max_trials=TRIALS[name], max_epochs=2,
            hyperband_factor=2, search_space=TINY, verbose=0,
        )
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", tuning.TUNERS)
def test_each_tuner_runs_a_real_search_and_writes_its_results(searches, name):
    result = searches[name]
    rows = _csv_rows(result["results_csv"])
    assert len(rows) == TRIALS[name]
    assert [row["rank"] for row in rows] == [str(i + 1) for i in range(TRIALS[name])]
    scores = [float(row["val_top1"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    # The best score is the best model's top-1 on the validation split, counted with numpy.
    top1, examples = digits_top1(keras.saving.load_model(result["best_model"]), "validation", 64, seed=0,
                                   task="single_label")
    assert scores[0] == pytest.approx(top1, abs=1 / examples + 1e-6)  # one near tie; 6 decimals
    for row in rows:
        assert row["status"] == "COMPLETED"
        assert int(row["cifar_depth"]) in (8, 14) and row["shortcut"] in ("A", "B")
        assert 0.01 <= float(row["learning_rate"]) <= 0.3
        assert 1e-5 <= float(row["weight_decay"]) <= 1e-3
        assert row["batch_size"] == "64" and row["zero_init_residual"] in ("True", "False")
    with open(result["results_md"]) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("| rank | trial | val_top1 |") and len(lines) == 2 + TRIALS[name]
    assert os.path.isfile(os.path.join(result["output_dir"], "tuner", "oracle.json"))


@pytest.mark.slow
@pytest.mark.parametrize("name", tuning.TUNERS)
def test_best_model_file_scores_what_the_table_says(searches, name):
    result = searches[name]
    best = result["best"]
    model = keras.saving.load_model(result["best_model"])
    assert model.name == f"resnet{best['cifar_depth']}"
    expected = get_model(f"resnet{best['cifar_depth']}", input_shape=(32, 32, 3), classes=10,
                         shortcut=best["shortcut"], width_multiplier=0.5)
    assert model.count_params() == expected.count_params()
    validation, _ = data.load("digits", "validation", 64, training=False)
    model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1")])
    accuracy = model.evaluate(validation, return_dict=True, verbose=0)["top1"]
    assert accuracy == pytest.approx(best["val_top1"], abs=1e-6)
    # The preprocessing travels with the file, so export and predict can use it.
    carried = preprocessing.of(model)
    assert carried.source == "digits" and carried.class_names == [str(i) for i in range(10)]
    np.testing.assert_array_equal(carried.mean, data.load("digits", "validation", 8)[1].mean)


@pytest.mark.slow
def test_hyperband_continues_promising_trials_with_more_epochs(searches):
    rows = searches["hyperband"]["results"]
    assert sorted({row["epochs"] for row in rows}) == [1, 2]


@pytest.mark.slow
def test_a_search_resumes_in_the_same_project(searches, tmp_path):
    first = searches["random"]
    output_dir = str(tmp_path / "random")
    shutil.copytree(first["output_dir"], output_dir)
    before = {row["trial"]: row for row in first["results"]}
    more = TRIALS["random"] + 1
    resumed = tuning.tune("digits", "random", output_dir=output_dir, max_trials=more, max_epochs=2,
                          search_space=TINY, verbose=0)
    after = {row["trial"]: row for row in resumed["results"]}
    assert len(after) == more and set(before) < set(after)
    for trial, row in before.items():  # the earlier trials were kept, not run again
        assert after[trial]["val_top1"] == row["val_top1"]
        assert after[trial]["learning_rate"] == row["learning_rate"]
    with open(os.path.join(output_dir, "tuner", "oracle.json")) as f:
        assert len(json.load(f)["start_order"]) == more


def test_hypermodel_builds_what_the_hyperparameters_say():
    import keras_tuner

    hypermodel = tuning.ResNetHyperModel(input_shape=(32, 32, 3), classes=10,
                                         search_space=tuning.SearchSpace(shortcuts=("B",)))
    hp = keras_tuner.HyperParameters()
    hp.values.update({"family": "cifar", "cifar_depth": 32, "width_multiplier": 1.0,
                      "zero_init_residual": True, "learning_rate": 0.05, "weight_decay": 2e-4})
    model = hypermodel.build(hp)
    reference = get_model("resnet32", shortcut="B", zero_init_residual=True)
    assert model.count_params() == reference.count_params()
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert float(model.optimizer.momentum) == pytest.approx(0.9)
    conv = model.get_layer("conv1")
    assert conv.kernel_regularizer.l2 == pytest.approx(1e-4)  # L2(weight_decay / 2)
    gammas = [w for w in model.weights if "bn2" in w.path and w.path.endswith("gamma")]
    assert gammas and all(np.all(keras.ops.convert_to_numpy(g) == 0) for g in gammas)


def test_imagenet_family_is_searchable_on_small_images():
    import keras_tuner

    space = tuning.SearchSpace(families=("cifar", "imagenet"), imagenet_depths=(18,))
    hypermodel = tuning.ResNetHyperModel(input_shape=(32, 32, 3), classes=10, search_space=space)
    hp = keras_tuner.HyperParameters()
    hp.values.update({"family": "imagenet", "imagenet_depth": 18, "shortcut": "A"})
    model = hypermodel.build(hp)
    assert model.name == "resnet18" and model.output_shape == (None, 10)
    assert "imagenet_depth" in hp.values and "cifar_depth" not in hp.values


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cifar_depths": ()}, "`cifar_depths` must be a non-empty list"),
        ({"shortcuts": []}, "`shortcuts` must be a non-empty list"),
        ({"cifar_depths": (20, 21)}, "6n+2"),
        ({"families": ("imagenet",), "imagenet_depths": (19,)}, "`imagenet_depths`"),
        ({"learning_rate": (0.3, 0.01)}, "`learning_rate` min must not exceed max; got min 0.3 > max 0.01"),
        ({"weight_decay": (0, 1e-3)}, "`weight_decay` is searched on a log scale"),
        ({"learning_rate": (0.1,)}, "`learning_rate` must be a (min, max) pair"),
        ({"shortcuts": ("D",)}, "`shortcuts` may hold A, B, C; got 'D'"),
        ({"width_multipliers": (0,)}, "`width_multipliers` must hold numbers > 0"),
        ({"batch_sizes": (32, 32)}, "`batch_sizes` lists a value twice"),
        ({"families": ("mnist",)}, "`families` may hold imagenet, cifar; got 'mnist'"),
    ],
)
def test_bad_search_spaces_are_refused_with_the_argument_named(kwargs, message):
    with pytest.raises(ValueError) as error:
        tuning.SearchSpace(**kwargs)
    assert message in str(error.value)


def test_unknown_tuner_and_budgets_are_refused():
    hypermodel = tuning.ResNetHyperModel(input_shape=(32, 32, 3), classes=10)
    with pytest.raises(ValueError, match="`tuner` must be one of random, hyperband, bayesian; got 'grid'"):
        tuning.make_tuner(hypermodel, "grid")
    with pytest.raises(ValueError, match="`max_trials` must be a positive integer; got 0"):
        tuning.make_tuner(hypermodel, "random", max_trials=0)
    with pytest.raises(ValueError, match="Give `dataset`, or both `input_shape` and `classes`"):
        tuning.ResNetHyperModel()


@pytest.mark.slow
def test_tune_command_writes_results_and_a_model_that_export_accepts(searches, tmp_path):
    """The tune command's search (the Hyperband one of ``searches``); keras-tuner is imported
    by `tune` alone."""
    from keras_resnet.cli import main

    result = searches["hyperband"]
    assert result["command_exit"] == 0, result["command_output"][-2000:]
    rows = _csv_rows(os.path.join(result["output_dir"], "results.csv"))
    assert len(rows) == TRIALS["hyperband"]
    assert f"val_top1 {float(rows[0]['val_top1']):.4f}" in result["command_output"]
    assert main(["export", result["best_model"], "--format", "saved_model",
                 "--output-dir", str(tmp_path / "exports")]) == 0
    model = f"resnet{result['best']['cifar_depth']}"
    assert os.path.isfile(tmp_path / "exports" / model / "1" / "saved_model.pb")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning-rate", "0.3:0.01"], "`learning_rate` min must not exceed max"),
        (["--cifar-depths", ""], "`cifar_depths` must be a non-empty list"),
        (["--batch-sizes", "32,big"], "`--batch-sizes` must be a comma-separated list of int values"),
        (["--weight-decay", "a:b:c"], "`--weight-decay` must be MIN:MAX"),
        (["--zero-init-residual", "yes"], "`--zero-init-residual` must be a comma-separated list of true/false"),
    ],
)
def test_tune_command_refuses_bad_search_spaces(flags, message, capsys, tmp_path):
    from keras_resnet.cli import main

    assert main(["tune", "--output-dir", str(tmp_path / "never"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "never")  # refused before anything was written


MIRRORED_SEARCH = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_resnet import tuning
space = tuning.SearchSpace(cifar_depths=(8,), width_multipliers=(0.5,), batch_sizes=(64,))
tuner = tuning.make_tuner(tuning.ResNetHyperModel("digits", search_space=space), "random",
                          directory=sys.argv[1], max_trials=1, strategy="mirrored")
tuner.search(epochs=1, verbose=0)
model = tuner.get_best_models(1)[0]
import numpy as np
from keras_resnet import data, preprocessing
batches, _ = data.load("digits", "validation", 64, seed=0, task="single_label",
                       preprocessing=preprocessing.of(model))
hits = total = near = 0
for images, labels in batches:  # the validation split the search scores on, counted by numpy
    scores = np.asarray(model(images, training=False), np.float32)
    predicted = np.argmax(scores, axis=-1)
    hits, total = hits + int(np.sum(predicted == np.asarray(labels).reshape(-1))), total + len(predicted)
    best_two = np.sort(scores, axis=-1)[:, -2:]  # near ties: another summation order may flip them
    near += int(np.sum(best_two[:, 1] - best_two[:, 0] < 1e-4))
print(json.dumps({
    "top1": hits / total, "examples": total, "near_ties": near,
    "replicas": tuner.distribution_strategy.num_replicas_in_sync,
    "mirrored_variables": isinstance(model.weights[0].value, tf.distribute.DistributedValues),
    "score": tuner.oracle.get_best_trials(1)[0].score,
}))
"""


@pytest.mark.slow
def test_search_runs_under_a_mirrored_strategy(tmp_path):
    result = subprocess.run([sys.executable, "-c", MIRRORED_SEARCH, str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["mirrored_variables"]
    # The score is the best model's validation top-1, up to its near-tied examples (the two
    # replicas sum in another order). Both replicas hold the same batch-norm statistics
    # (AverageReplicaStatistics); with a copy each, one or two examples more flipped. The score
    # is a float32 (1/3 is 0.33333334), so the margin has float32's room, not float64's.
    margin = report["near_ties"] / report["examples"] + 1e-6
    assert report["score"] == pytest.approx(report["top1"], abs=margin), report
