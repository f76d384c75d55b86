import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import distribute

WORKER = os.path.join(os.path.dirname(__file__), "workers", "distributed_train.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path):
    """{variable index: [value on each replica]} from a distributed_train.py output."""
    saved = np.load(path)
    weights = {}
    for key in saved.files:
        if "/replica" in key:
            weights.setdefault(key.split("/")[0], []).append(saved[key])
    return saved, weights


def test_auto_strategy_on_one_device_is_the_default_strategy():
    strategy = distribute.get_strategy("auto")
    assert strategy.num_replicas_in_sync == 1
    assert distribute.get_strategy("cpu").num_replicas_in_sync == 1


def test_bad_strategy_and_batch_arguments():
    with pytest.raises(ValueError, match=r"`strategy`.*mirrored.*'nccl'"):
        distribute.get_strategy("nccl")
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ValueError, match="needs a GPU"):
            distribute.get_strategy("gpu")
    os.environ.pop("TF_CONFIG", None)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.get_strategy("multi_worker")


class _FourReplicas:
    num_replicas_in_sync = 4


def test_global_batch_and_learning_rate_scaling():
    assert distribute.global_batch_size(_FourReplicas(), per_replica_batch_size=32) == 128
    assert distribute.global_batch_size(_FourReplicas(), batch_size=256) == 256
    with pytest.raises(ValueError, match=r"`batch_size` 130 .*4 replicas.*multiple of 4"):
        distribute.global_batch_size(_FourReplicas(), batch_size=130)
    with pytest.raises(ValueError, match="exactly one"):
        distribute.global_batch_size(_FourReplicas())
    assert distribute.scaled_learning_rate(0.1, 256, 1024) == pytest.approx(0.4)


def test_precision_policies():
    assert distribute.resolve_precision("auto") == "float32"
    expected_mixed = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    assert distribute.set_precision("mixed") == expected_mixed
    assert keras.config.dtype_policy().name == expected_mixed
    with pytest.raises(ValueError, match=r"`precision`.*'fp8'"):
        distribute.resolve_precision("fp8")


def test_fast_path_by_device_and_its_off_switch(monkeypatch):
    from keras_resnet.training import compile_model

    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert distribute.fast_path() == distribute.FAST_PATH["gpu" if on_gpu else "cpu"]
    assert distribute.fast_path(False) == distribute.KERAS_DEFAULTS
    model = compile_model(keras_resnet_model(), "cifar")
    fast = distribute.fast_path()
    assert model.steps_per_execution == fast["steps_per_execution"]
    if fast["jit_compile"] != "auto":
        assert model.jit_compile == fast["jit_compile"]
    assert compile_model(keras_resnet_model(), "cifar", jit_compile=True).jit_compile is True
    assert compile_model(keras_resnet_model(), "cifar", steps_per_execution=4).steps_per_execution == 4
    # ImageNet nets train in bfloat16 on CPUs that compute it natively, CIFAR nets do not.
    from keras_resnet import devices

    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    assert distribute.fast_path(family="imagenet")["precision"] == ("mixed_float16" if on_gpu else "mixed_bfloat16")
    assert distribute.fast_path(family="cifar")["precision"] == ("mixed_float16" if on_gpu else "float32")
    assert (distribute.resolve_precision("auto", family="imagenet")
            == distribute.fast_path(family="imagenet")["precision"])
    assert distribute.resolve_precision("auto", fast=False, family="imagenet") == "float32"
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    assert distribute.fast_path(family="imagenet")["precision"] == ("mixed_float16" if on_gpu else "float32")
    # Where a GPU is found, "auto" means float16 Tensor Cores.
    monkeypatch.setattr(devices, "has_gpu", lambda: True)
    assert distribute.fast_path() == distribute.FAST_PATH["gpu"]
    assert distribute.resolve_precision("auto") == "mixed_float16"
    assert distribute.fast_path(False)["precision"] == "float32"


def keras_resnet_model():
    from keras_resnet import get_model

    return get_model("resnet8", input_shape=(32, 32, 3), classes=10)


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpus_trains_and_replicas_agree(tmp_path):
    out = tmp_path / "mirrored.npz"
    result = subprocess.run(
        [sys.executable, WORKER, "mirrored", str(out), "2"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved, weights = _weights(out)
    assert int(saved["replicas"]) == 2
    assert saved["loss"][-1] < saved["loss"][0]
    assert all(len(values) == 2 for values in weights.values())
    for values in weights.values():
        np.testing.assert_array_equal(values[0], values[1])
    # Per-replica batch norm (the default): Keras keeps a copy of each moving statistic per
    # replica, and they drift apart; averaging sets every copy to their mean.
    count = len([key for key in saved.files if key.endswith("/before0")])
    before = [[saved[f"statistic{i}/before{r}"] for r in range(2)] for i in range(count)]
    drifted = sum(not np.array_equal(*copies) for copies in before)
    assert count >= 14 and drifted > 0 and int(saved["averaged"]) == drifted
    for i, copies in enumerate(before):
        for r in range(2):
            np.testing.assert_allclose(saved[f"statistic{i}/after{r}"], (copies[0] + copies[1]) / 2,
                                       rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_multi_worker_strategy_two_processes_end_with_identical_weights(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(
            [sys.executable, WORKER, "multi_worker", str(tmp_path / f"worker{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    try:
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    first, weights0 = _weights(tmp_path / "worker0.npz")
    second, weights1 = _weights(tmp_path / "worker1.npz")
    assert int(first["replicas"]) == 2
    np.testing.assert_array_equal(first["loss"], second["loss"])
    assert first["loss"][-1] < first["loss"][0]
    for key in weights0:
        np.testing.assert_array_equal(weights0[key][0], weights1[key][0])
    # Per-replica batch norm, one replica a worker: each worker's statistics drift on its own
    # shard of the data, and averaging makes them the same on both, to the bit.
    count = len([key for key in first.files if key.endswith("/after0")])
    assert count >= 14 and int(first["averaged"]) == int(second["averaged"]) > 0
    for i in range(count):
        np.testing.assert_array_equal(first[f"statistic{i}/after0"], second[f"statistic{i}/after0"])
