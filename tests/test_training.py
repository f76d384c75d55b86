import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from harness import digits_top1
from keras_resnet import evaluation, runs, training


def _tiny_data(n=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 32, 32, 3), dtype="float32")
    return x, (np.arange(n) % classes)


def _tiny_model(classes=4):
    return keras_resnet.CifarResNet(8, classes=classes, width_multiplier=0.5)


def test_weight_decay_gradient_is_the_paper_coefficient_times_w():
    model = keras_resnet.ResNet20()
    training.compile_model(model, "cifar")  # paper's weight decay 1e-4
    kernel = model.get_layer("conv3_block1").conv1.kernel
    with tf.GradientTape() as tape:
        penalty = tf.add_n(model.losses)
    gradient = tape.gradient(penalty, kernel.value)
    np.testing.assert_allclose(gradient.numpy(), 1e-4 * kernel.numpy(), rtol=1e-5, atol=1e-10)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.weight_decay is None  # not decoupled decay
    assert len(model.losses) == 20


def test_weight_decay_survives_saving(tmp_path):
    model = _tiny_model()
    training.compile_model(model, "cifar", weight_decay=2e-4)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert len(loaded.losses) == len(model.losses)
    np.testing.assert_allclose(float(tf.add_n(loaded.losses)), float(tf.add_n(model.losses)), rtol=1e-6)


@pytest.mark.parametrize("recipe,batch,lr", [
    ("cifar", 128, 0.1), ("cifar", 256, 0.2), ("imagenet", 256, 0.1), ("imagenet", 1024, 0.4)])
def test_learning_rate_scales_linearly_with_the_global_batch(recipe, batch, lr):
    model = training.compile_model(_tiny_model(), recipe, batch)
    assert float(model.optimizer.learning_rate) == pytest.approx(lr)
    assert float(model.optimizer.momentum) == pytest.approx(0.9)
    metrics = model.evaluate(*_tiny_data(), verbose=0, return_dict=True)
    assert {"loss", "top1", "top5"} <= set(metrics)


def test_unknown_recipe():
    with pytest.raises(ValueError, match=r"`recipe`.*cifar, imagenet.*'adam'"):
        training.compile_model(_tiny_model(), "adam")


class _RecordLearningRate(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(round(float(self.model.optimizer.learning_rate), 8))


@pytest.mark.slow  # 2 s or more of its own
def test_step_schedule_divides_by_10_at_milestones_and_stops():
    x, y = _tiny_data(16)
    model = training.compile_model(_tiny_model(), "cifar", learning_rate=0.1)
    record = _RecordLearningRate()
    model.fit(x, y, batch_size=4, epochs=10, verbose=0,
              callbacks=[training.StepSchedule((3, 5), stop_at=7), record])
    assert record.rates == [0.1] * 3 + [0.01] * 2 + [0.001] * 3
    assert int(model.optimizer.iterations) == 8  # stop_training ends after the batch at 7


@pytest.mark.slow
def test_step_schedule_composes_with_reduce_lr_on_plateau():
    x, y = _tiny_data(8)
    model = training.compile_model(_tiny_model(), "cifar", learning_rate=0.1)
    record = _RecordLearningRate()
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=1e9)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0,
              callbacks=[training.StepSchedule((5,)), plateau, record])
    # iterations 0-3 at 0.1; the plateau after epoch 2 divides by 10; the milestone at 5 again.
    assert record.rates == [0.1] * 4 + [0.01, 0.001]


def test_scaled_step_schedule_keeps_the_papers_fractions():
    schedule = training.StepSchedule.scaled(640)
    assert schedule.milestones == (320, 480) and schedule.stop_at == 640


@pytest.mark.slow
def test_warmup_until_training_error_below_80_percent():
    x, y = _tiny_data(64, classes=2)
    model = training.compile_model(_tiny_model(classes=2), "cifar", learning_rate=0.1)
    record = _RecordLearningRate()
    warmup = training.WarmupUntilError(0.01, error_threshold=0.8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[warmup, record])
    # two classes: accuracy is above 20% at once, so warm-up ends after the first batch
    assert record.rates[0] == 0.01 and set(record.rates[1:]) == {0.1}
    assert warmup.finished


def test_paper_callbacks_for_a_run_directory(tmp_path):
    callbacks = training.paper_callbacks(str(tmp_path), "cifar", total_iterations=1000, warmup=True)
    kinds = {type(c).__name__: c for c in callbacks}
    assert kinds["ReduceLROnPlateau"].factor == pytest.approx(0.1)
    assert kinds["StepSchedule"].milestones == (500, 750)
    assert {"BestCheckpoint", "RunBackup", "CSVLogger", "StopOnNaN", "TensorBoard", "WarmupUntilError"} <= set(kinds)
    assert type(callbacks[-1]).__name__ == "RunBackup"  # last: it restores the others' state
    names = [type(c).__name__ for c in callbacks]  # replicas agree before anything saves
    assert names.index("AverageReplicaStatistics") < names.index("BestCheckpoint")
    imagenet = {type(c).__name__ for c in training.paper_callbacks(str(tmp_path), "imagenet")}
    assert "StepSchedule" not in imagenet and "ReduceLROnPlateau" in imagenet


class _PoisonWeightsAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = _tiny_data(16)
    model = training.compile_model(_tiny_model(), "cifar", learning_rate=0.01)
    callbacks = training.paper_callbacks(str(tmp_path), "cifar", monitor="top1", tensorboard=False)
    with pytest.raises(training.NaNError, match="became nan"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=callbacks + [_PoisonWeightsAtEpoch(1)])
    assert training.read_backup_state(str(tmp_path / "backup"))["epoch"] == 1
    assert os.path.exists(tmp_path / "backup" / "epoch-0001.weights.h5")
    best = keras.saving.load_model(tmp_path / "best.keras")
    assert np.isfinite(best.predict(x, verbose=0)).all()


def test_ten_crop_evaluation_averages_softmax_over_crops():
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(5, 10, 4, 4, 1)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1])
    averaged = model.predict(crops.reshape(50, 4, 4, 1), verbose=0).reshape(5, 10, 3).mean(axis=1)
    assert 0 < np.mean(averaged.argmax(axis=1) == labels) < 1
    # The data module's layout: 10 crops per image, image-major, labels per image.
    dataset = tf.data.Dataset.from_tensor_slices((crops, labels)).batch(2).map(
        lambda c, y: (tf.reshape(c, (-1, 4, 4, 1)), y)
    )
    metrics = evaluation.evaluate_ten_crop(model, dataset)
    assert metrics["top1"] == pytest.approx(np.mean(averaged.argmax(axis=1) == labels))
    assert metrics["top5"] == 1.0



@pytest.mark.slow
def test_train_takes_the_fast_path_unless_switched_off(tmp_path, monkeypatch):
    from keras_resnet import distribute

    # A device whose measured fast path is bfloat16 with 2 steps per execution.
    fast = {"precision": "mixed_bfloat16", "jit_compile": False, "steps_per_execution": 2}
    monkeypatch.setitem(distribute.FAST_PATH, "cpu", fast)
    monkeypatch.setitem(distribute.FAST_PATH, "gpu", fast)
    # On: the fast path fills in what is left "auto"; a value given explicitly wins.
    on = runs.train("resnet8", "digits", run_dir=str(tmp_path / "on"), epochs=1, verbose=0,
                    steps_per_execution=3, export=False)
    assert (on["precision"], on["steps_per_execution"], on["jit_compile"]) == ("mixed_bfloat16", 3, False)
    # Off: Keras' own defaults.
    off = runs.train("resnet8", "digits", run_dir=str(tmp_path / "off"), epochs=1, verbose=0,
                     fast_path=False, export=False)
    assert (off["precision"], off["steps_per_execution"]) == ("float32", 1)
    for result in (on, off):  # the run's figure is its saved model's, within one near tie
        top1, examples = digits_top1(keras_resnet.load_model(os.path.join(result["run_dir"], "model.keras")))
        assert result["test"]["top1"] == pytest.approx(top1, abs=1 / examples + 1e-9)


@pytest.mark.slow
def test_run_backup_resumes_exactly_and_survives_a_damaged_file(tmp_path, capsys):
    x, y = _tiny_data(32)
    backup = str(tmp_path / "backup")

    def fresh():
        keras.utils.set_random_seed(3)
        return training.compile_model(_tiny_model(), "cifar", learning_rate=0.05)

    def callbacks(model):
        plateau = training.reduce_on_plateau("loss", patience=1)
        return [plateau, training.RunBackup(backup, [plateau], delete_on_end=False)], plateau

    model = fresh()
    calls, plateau = callbacks(model)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=calls)
    assert sorted(os.listdir(backup)) == ["epoch-0002.weights.h5", "epoch-0003.weights.h5", "state.json"]
    state = training.read_backup_state(backup)
    assert state["epoch"] == 3 and state["callbacks"][0]["wait"] == plateau.wait

    restored = fresh()
    assert training.restore_backup(restored, backup) == 3
    for a, b in zip(restored.weights + restored.optimizer.variables,
                    model.weights + model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    calls, plateau = callbacks(restored)
    restored.fit(x, y, batch_size=8, epochs=3, initial_epoch=3, verbose=0, callbacks=calls)
    assert plateau.wait == state["callbacks"][0]["wait"]  # restored when training began

    # A kill mid-write of the newest file: reported, and the previous epoch is used.
    with open(os.path.join(backup, "epoch-0003.weights.h5"), "r+b") as f:
        f.truncate(1000)
    assert training.restore_backup(fresh(), backup) == 2
    assert "epoch-0003.weights.h5 is damaged" in capsys.readouterr().out
    with open(os.path.join(backup, "epoch-0002.weights.h5"), "wb") as f:
        f.write(b"not hdf5")
    assert training.restore_backup(fresh(), backup) == 0
    assert "No usable backup" in capsys.readouterr().out


def test_best_checkpoint_writes_only_on_improvement_and_atomically(tmp_path):
    x, y = _tiny_data(16)
    model = training.compile_model(_tiny_model(), "cifar", learning_rate=0.01)
    best = training.BestCheckpoint(str(tmp_path / "best.keras"), monitor="loss")
    best.set_model(model)
    best.on_epoch_end(0, {"loss": 2.0})
    first = os.stat(tmp_path / "best.keras").st_mtime_ns
    best.on_epoch_end(1, {"loss": 3.0})  # worse: untouched
    assert os.stat(tmp_path / "best.keras").st_mtime_ns == first and best.best == 2.0
    best.on_epoch_end(2, {"loss": float("nan")})
    assert best.best == 2.0
    best.on_epoch_end(3, {"loss": 1.0})
    assert best.best == 1.0 and os.listdir(tmp_path) == ["best.keras"]  # no temporary left
