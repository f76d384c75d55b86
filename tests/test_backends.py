"""Keras 3 on every backend: the model side without TensorFlow, training, saving across
backends, data parallelism and the benchmark, each in a fresh interpreter with its own
``KERAS_BACKEND`` (tests/backend_worker.py), so this process stays on TensorFlow.

Interpreters: this one (the project venv) with ``import tensorflow`` refused by a meta path
finder, which is what CI has; besides it, where one exists, an interpreter with no TensorFlow
installed at all: ``$KERAS_RESNET_NO_TF_PYTHON``, else ``/tmp/jaxvenv/bin/python`` (README:
pick a backend). PyTorch: this interpreter if it has torch, else ``$KERAS_RESNET_TORCH_PYTHON``;
skipped without one.

JAX compilations are shared by the subprocesses of one session through JAX's persistent
compilation cache (a temporary folder), and compiled at XLA's LLVM optimisation level 0: on a
2-core CPU compiling, not computing, is what these tiny runs spend their time on.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "backend_worker.py")
TIMEOUT = 600


def _has(python, module):
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                          timeout=120).returncode == 0


def _no_tensorflow_python():
    """An interpreter with keras and jax but no TensorFlow installed, or None."""
    for python in (os.environ.get("KERAS_RESNET_NO_TF_PYTHON"), "/tmp/jaxvenv/bin/python"):
        if python and os.path.exists(python) and _has(python, "jax") \
                and not _has(python, "tensorflow"):
            return python
    return None


def _torch_python():
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    python = os.environ.get("KERAS_RESNET_TORCH_PYTHON")
    return python if python and os.path.exists(python) and _has(python, "torch") else None


JAX_HERE = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not JAX_HERE, reason="jax is not installed in this venv "
                                                    "(pip install 'keras3-resnet[jax]')")


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def run_worker(*args, backend="jax", python=None, block_tensorflow=True, env=None, cache=None,
               timeout=TIMEOUT):
    """Run tests/backend_worker.py in a fresh interpreter; its RESULT line as a dict."""
    python = python or sys.executable
    environment = {
        **os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO,
        "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "-1",
        **(env or {}),
    }
    # XLA's LLVM optimisation level 0: it halves the CPU compile times that dominate these
    # tiny runs (XLA keeps float semantics at any level: no fast-math reassociation).
    flags = (env or {}).get("XLA_FLAGS", "")
    environment["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
    if cache:
        environment.update(JAX_COMPILATION_CACHE_DIR=cache,
                           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    command = [python, WORKER, *args] + (["--block-tensorflow"] if block_tensorflow else [])
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                               env=environment, cwd=REPO)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, (
        f"{' '.join(command)} (KERAS_BACKEND={backend}) failed with {completed.returncode}:\n"
        f"{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}")
    return json.loads(lines[-1][len("RESULT "):]), completed


def _interpreters():
    params = [pytest.param((sys.executable, True), id="tensorflow-refused",
                           marks=needs_jax)]
    other = _no_tensorflow_python()
    params.append(pytest.param((other, False), id="no-tensorflow-venv", marks=pytest.mark.skipif(
        other is None, reason="no interpreter without TensorFlow (set KERAS_RESNET_NO_TF_PYTHON)")))
    return params


# ---------------------------------------------------------------------------------------------
# Importing without TensorFlow


@pytest.fixture(scope="module", params=_interpreters())
def imports(request, jax_cache, tmp_path_factory):
    python, block = request.param
    folder = str(tmp_path_factory.mktemp("imports"))
    return run_worker("imports", folder, python=python, block_tensorflow=block, cache=jax_cache)[0]


def test_model_side_imports_and_builds_without_tensorflow(imports):
    assert imports["backend"] == "jax"
    assert imports["tensorflow_imported"] is False
    assert {"ResNet50", "ResidualBlock", "load_model", "summary_table"} <= set(imports["public"])
    assert set(imports["modules"]) >= {"blocks", "models", "weights", "saving", "training"}
    # CIFAR ResNet-8, 10 classes: the same count as on TensorFlow.
    import keras_resnet

    assert imports["params"] == keras_resnet.CifarResNet(8).count_params()
    assert imports["summary"][:5] == ["resnet20", "cifar", "20", "32x32x3", "269,722"]
    # The paper's callbacks, without TensorBoard (it writes through tf.summary).
    assert imports["callbacks"] == ["StopOnSignal", "StepSchedule", "ReduceLROnPlateau", "BestCheckpoint",
                                    "CSVLogger", "StopOnNaN", "RunBackup"]


def test_backbone_features_and_stochastic_depth_without_tensorflow(imports):
    backbone = imports["backbone"]
    assert backbone["features"] == {"conv1": [2, 32, 32, 16], "conv2": [2, 32, 32, 16],
                                    "conv3": [2, 16, 16, 32], "conv4": [2, 8, 8, 64]}
    assert backbone["embeddings"] == [2, 64] and backbone["dilated_conv5"] == [1, 8, 8, 512]
    assert backbone["inference_equal"] and backbone["training_differs"]


def test_tensorflow_modules_fail_naming_the_extra(imports):
    for module, failure in imports["failures"].items():
        assert failure is not None, f"keras_resnet.{module} imported without TensorFlow"
        assert failure["type"] == "MissingExtra", (module, failure)
        assert "pip install 'keras3-resnet[tensorflow]'" in failure["message"], (module, failure)


# ---------------------------------------------------------------------------------------------
# Training, saving, data parallelism on JAX


@needs_jax
@pytest.mark.slow
def test_fit_with_the_papers_callbacks_resumes_exactly_on_jax(tmp_path, jax_cache):
    run, _ = run_worker("train", str(tmp_path), cache=jax_cache)
    assert run["backend"] == "jax" and run["jit_compile"] is True
    assert run["tensorflow_imported"] is False
    uninterrupted, resumed = run["history_uninterrupted"], run["history_resumed"]
    # The recipe's lr, 0.1 * 8 / 128, after the warm-up (0.01 until training error < 80%);
    # StepSchedule divides by 10 at iterations 4 (the epoch boundary) and 6. Where the warm-up
    # ends depends on the trajectory: the kill may fall inside it (its state is restored too).
    recipe = 0.1 * 8 / 128
    assert uninterrupted["learning_rate"][0] in (pytest.approx(0.01), pytest.approx(recipe))
    assert uninterrupted["learning_rate"][1] in (pytest.approx(recipe / 100),
                                                 pytest.approx(recipe / 10))
    assert len(uninterrupted["loss"]) == 2 and all(v == v for v in uninterrupted["loss"])
    # Killed after epoch 1, resumed into a new model object from the backup: weights and
    # optimizer state restored, and epoch 2 identical to the uninterrupted run's.
    assert run["start"] == run["backup_epoch"] == 1 and run["restored_iterations"] == 4
    assert run["restored_max_diff"] == 0.0
    assert resumed["learning_rate"] == pytest.approx(uninterrupted["learning_rate"][1:])
    assert resumed["loss"] == pytest.approx(uninterrupted["loss"][1:], rel=1e-6)
    assert run["final_max_change"] > 1e-3  # training moved the weights
    assert run["final_max_diff"] < 1e-6
    assert {"best.keras", "history.csv", "backup"} <= set(run["files"])
    assert run["history_csv_rows"] == 2 and run["best_name"] == "resnet8"
    assert run["reload_max_diff"] < 1e-6


@pytest.fixture(scope="module")
def jax_saved(tmp_path_factory, jax_cache):
    """A folder with model.keras, model.weights.h5 and predictions, written on JAX."""
    folder = str(tmp_path_factory.mktemp("backends") / "from_jax")
    run_worker("save", folder, cache=jax_cache)
    return folder


@needs_jax
@pytest.mark.slow
def test_keras_and_weights_files_load_across_backends(tmp_path, jax_cache, jax_saved):
    jax_dir, tf_dir = jax_saved, str(tmp_path / "from_tf")
    on_tf, _ = run_worker("load", jax_dir, "--save", tf_dir, backend="tensorflow",
                          block_tensorflow=False)
    on_jax, _ = run_worker("load", tf_dir, cache=jax_cache)
    for loaded, source, target in ((on_tf, "jax", "tensorflow"), (on_jax, "tensorflow", "jax")):
        assert (loaded["saved_on"], loaded["backend"]) == (source, target)
        assert loaded["prediction_scale"] > 0.1  # logits, not a saturated softmax
        assert loaded["keras_max_diff"] < 1e-5, loaded
        assert loaded["weights_max_diff"] < 1e-5, loaded
        assert loaded["top1_agree"]
        assert loaded["preprocessing"] == "ImagePreprocessing"
        assert "ResidualBlock" in loaded["layer_types"]
    assert on_jax["tensorflow_imported"] is False


@needs_jax
@pytest.mark.slow
def test_data_parallel_on_two_virtual_devices_matches_one_device(jax_cache):
    run, _ = run_worker("data_parallel", cache=jax_cache,
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert len(run["devices"]) == 2
    assert run["data_layout"][0] == "batch"  # the global batch is split over the devices
    assert run["variable_device_counts"] == [2]  # every variable lives on both ...
    assert run["replicas_agree"]  # ... with identical values after training
    assert run["weights_max_change"] > 1e-3
    # DataParallel computes the same global-batch step as one device (gradients and BN
    # moments are reduced over the whole batch); only the order of float32 sums differs.
    # Measured here: losses 1e-7 apart (relative), weights 2.4e-7 after 3 steps. 1e-5 is 100x
    # that, and 1000x below what one step changes (the loss moves 2e-2..1e-1 per step on this
    # batch), so a replica that skipped, halved or doubled its update would fail it.
    assert run["parallel_losses"] == pytest.approx(run["single_losses"], rel=1e-5)
    assert run["weights_max_diff"] < 1e-5


# ---------------------------------------------------------------------------------------------
# PyTorch (only where torch is installed; CI has none)


@pytest.mark.slow
def test_torch_backend_builds_fits_saves_and_loads(tmp_path, request):
    python = _torch_python()
    if python is None:
        pytest.skip("torch is not installed (set KERAS_RESNET_TORCH_PYTHON to an interpreter with it)")
    run, _ = run_worker("torch_smoke", str(tmp_path), backend="torch", python=python,
                        block_tensorflow=True)
    assert run["backend"] == "torch" and run["tensorflow_imported"] is False
    assert run["loss"][0] == run["loss"][0] and run["reload_max_diff"] < 1e-5
    if JAX_HERE:  # and the files written on JAX load there too
        jax_dir = request.getfixturevalue("jax_saved")
        on_torch, _ = run_worker("load", jax_dir, backend="torch", python=python)
        assert on_torch["keras_max_diff"] < 1e-5 and on_torch["weights_max_diff"] < 1e-5


# ---------------------------------------------------------------------------------------------
# The training-throughput benchmark


def _benchmark_module(monkeypatch):
    """``benchmarks.train_throughput``, a module of the ``benchmarks`` package (repository root)."""
    monkeypatch.syspath_prepend(REPO)
    return importlib.import_module("benchmarks.train_throughput")


def test_benchmark_names_references_and_ratios(monkeypatch):
    bench = _benchmark_module(monkeypatch)
    assert bench.parse_spec("tv:resnet50+compile") == ("torchvision", "resnet50", "imagenet", 50, True)
    assert bench.parse_spec("ka:ResNet50")[:4] == ("keras.applications", "ResNet50", "imagenet", 50)
    assert bench.parse_spec("resnet20")[:4] == ("keras_resnet", "resnet20", "cifar", 20)
    with pytest.raises(SystemExit, match="tv:resnet18/34/50/101/152"):
        bench.parse_spec("tv:resnet51")
    assert bench.settings_of("float32", "cpu", 4, "jax")["jit_compile"] is True
    assert bench.settings_of("bf16", "gpu", 4, "torch") == {
        "precision": "mixed_bfloat16", "jit_compile": False, "steps_per_execution": 1}
    rows = [{"spec": s, "mode": m, "median": v} for s, m, v in (
        ("resnet50", "bf16", 300.0), ("ka:ResNet50", "bf16", 200.0), ("tv:resnet50", "bf16", 250.0),
        ("tv:resnet50+compile", "bf16", 400.0), ("resnet50", "float32", 100.0))]
    assert bench.add_reference_ratios(rows) == ["ka:ResNet50", "tv:resnet50", "tv:resnet50+compile"]
    assert rows[0]["vs"] == {"ka:ResNet50": 1.5, "tv:resnet50": 1.2, "tv:resnet50+compile": 0.75}
    assert rows[-1]["vs"] == {}  # no reference ran in float32


@needs_jax
@pytest.mark.slow
def test_benchmark_small_runs_on_jax_without_tensorflow(tmp_path, jax_cache):
    out = tmp_path / "train_throughput.json"
    run, completed = run_worker(
        "script", os.path.join(REPO, "benchmarks", "train_throughput.py"), "--small",
        "--backend", "jax", "--models", "resnet8", "--json", str(out), cache=jax_cache)
    assert run["tensorflow_imported"] is False, run["tensorflow_submodules"]
    assert "Keras" in completed.stdout and "on JAX" in completed.stdout
    results = json.loads(out.read_text())
    (row,) = results["results"]
    assert (row["model"], row["backend"], row["mode"], row["batch"]) == (
        "keras_resnet resnet8", "jax", "float32", 2)
    assert row["median"] > 0 and 0 < row["fraction_of_peak"] < 1
    assert results["machine"]["backend"] == "jax" and results["peak"]["measured"]["float32"] > 0
