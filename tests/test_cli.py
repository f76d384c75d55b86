import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest


def _run(*args, cwd=None, timeout=600):
    return subprocess.run(["keras-resnet", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_summary_command_prints_the_table():
    result = _run("summary", "resnet20", "resnet56")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["resnet20"][4] == "269,722" and rows["resnet56"][4] == "853,018"


def test_summary_command_rejects_unknown_models():
    result = _run("summary", "resnet19")
    assert result.returncode == 2
    assert "unknown model 'resnet19'" in result.stderr and "resnet20" in result.stderr


def test_default_train_reaches_98_percent_on_digits(default_run):
    result, run_dir, seconds = default_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test top-1 accuracy" in result.stdout
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    assert run["model"] == "resnet20" and run["dataset"] == "digits" and run["epochs"] == 40
    assert run["test"]["top1"] >= 0.98, run["test"]
    assert run["test"]["top5"] >= run["test"]["top1"]
    printed = float(result.stdout.split("test top-1 accuracy ")[1].split()[0])
    assert printed == pytest.approx(run["test"]["top1"], abs=1e-4)
    print(f"default run: {seconds:.0f} s, test top-1 {run['test']['top1']:.4f}")


def test_run_directory_holds_model_history_plot_logs_and_config(default_run):
    import keras

    import keras_resnet  # noqa: F401  (registers the blocks)
    from keras_resnet import data

    _, run_dir, _ = default_run
    assert _epochs(run_dir) == list(range(40))
    with open(os.path.join(run_dir, "training_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events") for _, _, files in os.walk(os.path.join(run_dir, "logs")) for name in files)
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    assert run["data"]["class_names"] == [str(i) for i in range(10)]
    assert run["recipe"]["momentum"] == 0.9 and run["recipe"]["weight_decay"] == 1e-4
    from keras_resnet.distribute import fast_path

    fast = fast_path()  # the run took this device's measured fast path
    assert run["fast_path"] is True and run["precision"] == fast["precision"]
    assert run["steps_per_execution"] == fast["steps_per_execution"]
    if fast["jit_compile"] != "auto":
        assert run["jit_compile"] == fast["jit_compile"]
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    test, _ = data.load("digits", "test", 360, training=False)
    images, labels = next(iter(test))
    accuracy = np.mean(model.predict(images, verbose=0).argmax(axis=1) == labels.numpy())
    assert accuracy == pytest.approx(run["test"]["top1"], abs=1e-6)


def test_evaluate_command_single_and_ten_crop(default_run):
    _, run_dir, _ = default_run
    model = os.path.join(run_dir, "model.keras")
    single = _run("evaluate", model, "--dataset", "digits")
    assert single.returncode == 0, single.stderr[-2000:]
    with open(os.path.join(run_dir, "run.json")) as f:
        top1 = json.load(f)["test"]["top1"]
    assert f"top-1 error {1 - top1:.2%}" in single.stdout
    crops = _run("evaluate", model, "--dataset", "digits", "--ten-crop")
    assert crops.returncode == 0, crops.stderr[-2000:]
    error = float(crops.stdout.split("top-1 error ")[1].split("%")[0])
    assert 0 <= error < 10


def test_killed_run_resumes_from_its_backup(tmp_path):
    run_dir = tmp_path / "run"
    command = ["keras-resnet", "train", "--model", "resnet8", "--epochs", "6", "--output-dir", str(run_dir)]
    metadata = run_dir / "backup" / "training_metadata.json"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no backup after 240 s")
        time.sleep(0.3)  # well into the next epoch
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    done = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done < 6, "the kill must land mid-run"
    assert not (run_dir / "run.json").exists()

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from the backup in {run_dir / 'backup'}: {done} of 6 epochs done." in result.stdout
    run = json.loads((run_dir / "run.json").read_text())
    assert run["resumed_from_epoch"] == done
    assert sorted(set(_epochs(run_dir))) == list(range(6))
    assert len(run["history"]) == 6
    # The step schedule continues where it was: 40 steps an epoch, /10 at iterations 120 (start
    # of epoch 3) and 180 (inside epoch 4), as in an uninterrupted run.
    rates = [float(row["learning_rate"]) for row in run["history"]]
    np.testing.assert_allclose(rates, [0.025] * 3 + [0.0025] + [0.00025] * 2, rtol=1e-5)
    assert not (run_dir / "backup").exists()  # a finished run removes its backup


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "no_such_dataset"], "neither 'digits', an existing directory"),
        (["--model", "resnet19"], "`model_name`"),
        (["--epochs", "0"], "`epochs`"),
        (["--strategy", "gpu"], "needs a GPU"),
    ],
)
def test_train_bad_input_gets_a_clear_error(args, message, tmp_path):
    result = _run("train", "--output-dir", str(tmp_path / "run"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_train_on_an_empty_image_folder_says_what_to_do(tmp_path):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    result = _run("train", "--dataset", str(tmp_path / "images"), "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "cats" in result.stderr and "Traceback" not in result.stderr


def test_train_with_a_model_that_does_not_fit_the_dataset(tmp_path):
    import keras_resnet

    path = str(tmp_path / "five.keras")
    keras_resnet.CifarResNet(8, classes=5).save(path)
    result = _run("train", "--model", path, "--epochs", "1", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "predicts 5 classes" in result.stderr and "10 classes" in result.stderr


def test_nan_loss_stops_the_run_with_a_message(tmp_path):
    result = _run("train", "--model", "resnet8", "--epochs", "2", "--learning-rate", "1e12",
                  "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "training stopped" in result.stderr and "Traceback" not in result.stderr
