"""The training precision "auto" measures on a CPU that multiplies bfloat16 natively
(keras_resnet.train.precision): mixed_bfloat16 where it is 1.1x float32's speed, timed once per CPU
model and network, cached, printed and recorded in run.json; an explicit precision wins.

The CPU's answer is faked where a test needs a bfloat16 CPU (as the bfloat16 inference tests
do), so the choice logic runs on any machine; the timing is real where the test is end to end
and fake where it decides the choice.
"""

import json

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import cli, devices
from keras_resnet.train import flow
from keras_resnet.train import precision as precision_lib
from keras_resnet.train.config import HardwareConfig, RunConfig


def fake_speed(rates, calls):
    """A ``speed`` that gives ``rates[policy]`` for each candidate, checking that it was built
    and compiled in its policy."""

    def speed(candidates, batch_size):
        for policy, (model, batches) in candidates.items():
            assert model.dtype_policy.name == policy and model.compiled and batches == "batches"
        calls.extend((policy, batch_size) for policy in candidates)
        return {policy: rates[policy] for policy in candidates}

    return speed


def tiny_model():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
    model.compile(optimizer="sgd", loss="mse")
    return model, "batches"


@pytest.mark.parametrize("bfloat16, expected", [(402.0, "mixed_bfloat16"), (220.0, "mixed_bfloat16"),
                                                (219.0, "float32"), (184.0, "float32")])
def test_bfloat16_is_chosen_only_at_a_clear_speed_up(bfloat16, expected):
    assert precision_lib.MIN_SPEEDUP == 1.1
    assert precision_lib.choose_from({"float32": 200.0, "mixed_bfloat16": bfloat16}) == expected


@pytest.mark.slow
def test_a_measurement_is_made_once_per_cpu_and_network_and_read_back(tmp_path, monkeypatch):
    calls = []
    speed = fake_speed({"float32": 100.0, "mixed_bfloat16": 150.0}, calls)
    choice = precision_lib.measured_choice("resnet8", tiny_model, (4, 4, 1), 16,
                                           cache_dir=str(tmp_path), speed=speed)
    assert calls == [("float32", 16), ("mixed_bfloat16", 16)]
    assert keras.config.dtype_policy().name == "float32"  # restored after the candidates
    assert (choice.precision, choice.cached) == ("mixed_bfloat16", False)
    assert choice.images_per_second == {"float32": 100.0, "mixed_bfloat16": 150.0}
    path = tmp_path / "keras_resnet" / precision_lib.CACHE_FILE
    assert choice.cache_file == str(path)
    cached = json.loads(path.read_text())[precision_lib.cpu_model()][choice.key]
    assert cached["images_per_second"] == choice.images_per_second
    assert "resnet8, 4x4x1, batch 16, TensorFlow " in choice.key

    again = precision_lib.measured_choice("resnet8", tiny_model, (4, 4, 1), 16,
                                          cache_dir=str(tmp_path), speed=speed)
    assert len(calls) == 2 and again.cached and again.precision == "mixed_bfloat16"
    assert "measured before, from" in again.line() and "1.50x" in again.line()
    # Another batch, another CPU model: measured anew, kept beside the first.
    precision_lib.measured_choice("resnet8", tiny_model, (4, 4, 1), 32, cache_dir=str(tmp_path),
                                  speed=speed)
    monkeypatch.setattr(precision_lib, "cpu_model", lambda: "Another CPU, 2 CPUs")
    precision_lib.measured_choice("resnet8", tiny_model, (4, 4, 1), 16, cache_dir=str(tmp_path),
                                  speed=speed)
    assert len(calls) == 6
    cache = json.loads(path.read_text())
    assert len(cache) == 2 and len(cache["Another CPU, 2 CPUs"]) == 1


@pytest.mark.parametrize("content", ["{not json", '{"cpu": 3}', "[]"])
def test_an_unreadable_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch, content):
    path = tmp_path / "keras_resnet" / precision_lib.CACHE_FILE
    path.parent.mkdir()
    path.write_text(content.replace("cpu", precision_lib.cpu_model()))
    calls = []
    choice = precision_lib.measured_choice(
        "resnet8", tiny_model, (4, 4, 1), 16, cache_dir=str(tmp_path),
        speed=fake_speed({"float32": 100.0, "mixed_bfloat16": 90.0}, calls))
    assert len(calls) == 2 and choice.precision == "float32" and not choice.cached
    assert json.loads(path.read_text())[precision_lib.cpu_model()][choice.key]


def test_a_short_run_reads_the_cache_but_does_not_measure(tmp_path):
    calls = []
    speed = fake_speed({"float32": 100.0, "mixed_bfloat16": 150.0}, calls)
    assert precision_lib.measured_choice("resnet8", tiny_model, (4, 4, 1), 16, measure=False,
                                         cache_dir=str(tmp_path), speed=speed) is None
    assert not calls and not (tmp_path / "keras_resnet").exists()


def test_only_auto_on_a_bfloat16_cpu_with_a_named_model_is_measured(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    auto = HardwareConfig()
    assert precision_lib.applies(auto, "resnet20")
    assert not precision_lib.applies(HardwareConfig(precision="float32"), "resnet20")
    assert not precision_lib.applies(HardwareConfig(precision="mixed_bfloat16"), "resnet20")
    assert not precision_lib.applies(HardwareConfig(fast_path=False), "resnet20")
    assert not precision_lib.applies(auto, "runs/r8/model.keras")  # its policy is its own
    assert not precision_lib.applies(auto, "resnet20", replicas=2)
    monkeypatch.setattr(devices, "has_gpu", lambda: True)
    assert not precision_lib.applies(auto, "resnet20")
    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    assert not precision_lib.applies(auto, "resnet20")


def _prepared(tmp_path, name, **options):
    config = RunConfig.from_options("resnet8", "digits", epochs=1, export=False,
                                    run_dir=str(tmp_path / name), **options)
    return flow.prepare(config)


@pytest.mark.slow
def test_a_run_measures_once_prints_its_choice_and_keeps_its_seeded_weights(tmp_path, monkeypatch,
                                                                            capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    monkeypatch.setattr(devices, "has_gpu", lambda: False)  # a CPU run, on any machine
    monkeypatch.setattr(precision_lib, "MIN_STEPS_TO_MEASURE", 1)  # one epoch: 40 steps
    timed = []
    real_speeds = precision_lib.training_speeds

    def speeds(candidates, batch_size):  # the real timing, of the model the run trains
        for policy, (model, batches) in candidates.items():
            images, labels = next(iter(batches))
            timed.append((model.name, policy, model.dtype_policy.name, images.shape[0],
                          type(model.optimizer).__name__, float(model.optimizer.learning_rate)))
        return real_speeds(candidates, batch_size, rounds=1, steps=1)

    monkeypatch.setattr(precision_lib, "training_speeds", speeds)
    measured = _prepared(tmp_path, "measured")
    line = capsys.readouterr().out
    assert [t[:4] for t in timed] == [("resnet8", "float32", "float32", 32),
                                      ("resnet8", "mixed_bfloat16", "mixed_bfloat16", 32)]
    # compiled as the run compiles: the paper's SGD at the run's rate
    assert timed[0][4:] == timed[1][4:] == ("SGD", pytest.approx(measured.learning_rate))
    choice = measured.setup.precision_choice
    assert not choice["cached"] and choice["cpu"] == precision_lib.cpu_model()
    chosen = precision_lib.choose_from(choice["measured_images_per_second"])
    assert measured.setup.policy == choice["precision"] == chosen
    assert measured.net.dtype_policy.name == keras.config.dtype_policy().name == chosen
    assert line.startswith(f"Precision {chosen} for this CPU (") and "saved to" in line

    cached = _prepared(tmp_path, "cached")
    assert len(timed) == 2 and cached.setup.precision_choice["cached"]
    assert cached.setup.policy == chosen and "measured before, from" in capsys.readouterr().out
    explicit = _prepared(tmp_path, "explicit", precision=chosen)
    assert explicit.setup.precision_choice is None and capsys.readouterr().out == ""
    # The timed models drew from the seed and read the training batches: the run's weights and
    # batches (their order, their augmentation) are those of a run that timed none.
    first_batch = next(iter(explicit.splits.train))
    for prepared in (measured, cached):
        for ours, theirs in zip(prepared.net.weights, explicit.net.weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
        for ours, theirs in zip(next(iter(prepared.splits.train)), first_batch):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    keras.config.set_dtype_policy("float32")


@pytest.mark.slow  # a whole run: `pytest --all`
def test_the_command_line_records_a_cached_choice_in_run_json(tmp_path, monkeypatch, capsys):
    """``keras-resnet train`` on a bfloat16 CPU with a measurement cached: the run trains in
    the cached choice, prints it and records it in run.json (an explicit precision measures
    nothing: the test above)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    monkeypatch.setattr(devices, "has_gpu", lambda: False)  # a CPU run, on any machine
    key = precision_lib.cache_key("resnet8, classification, 10 classes", (32, 32, 3), 32)
    rates = {"float32": 100.0, "mixed_bfloat16": 250.0}
    (tmp_path / "home" / "keras_resnet").mkdir(parents=True)
    (tmp_path / "home" / "keras_resnet" / precision_lib.CACHE_FILE).write_text(json.dumps(
        {precision_lib.cpu_model(): {key: {"images_per_second": rates}}}))
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--model", "resnet8", "--epochs", "1", "--no-export",
                     "--output-dir", str(run_dir)]) == 0
    keras.config.set_dtype_policy("float32")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["precision"] == "mixed_bfloat16"
    assert run["precision_choice"] == {"precision": "mixed_bfloat16", "cached": True,
                                       "measured_images_per_second": rates,
                                       "cpu": precision_lib.cpu_model(), "measured_for": key}
    assert "Precision mixed_bfloat16 for this CPU (" in capsys.readouterr().out
    saved = keras_resnet.load_model(str(run_dir / "model.keras"))
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in saved.layers}  # its blocks
