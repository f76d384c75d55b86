"""The learning-rate range test (keras_resnet.lr_find): the ramp, the smoothing, the rules on
curves whose answer is known, the stop on divergence, a real run's files and weights, and the
command line."""

import csv
import itertools
import os

import keras
import numpy as np
import pytest
from PIL import Image

import keras_resnet
from keras_resnet.cli import main
from keras_resnet.lr_find import LRRamp, lr_find, ramp, smooth, suggest


def test_the_ramp_is_exponential_from_start_to_end():
    np.testing.assert_allclose(ramp(1e-7, 10, 100), np.geomspace(1e-7, 10, 100), rtol=1e-12)
    np.testing.assert_allclose(ramp(0.5, 2, 10), np.geomspace(0.5, 2, 10), rtol=1e-12)


def test_smoothing_is_the_bias_corrected_moving_average():
    losses = np.random.default_rng(0).uniform(1, 3, 50)
    beta = 0.9
    expected = [sum(beta ** (i - j) * (1 - beta) * losses[j] for j in range(i + 1))
                / (1 - beta ** (i + 1)) for i in range(len(losses))]
    np.testing.assert_allclose(smooth(losses, beta), expected, rtol=1e-12)


# A curve in x = log10(lr) over the default ramp: its steepest fall and its least value are
# where the formula puts them.
LRS = ramp(1e-7, 10, 200)
X = np.log10(LRS)
STEP = X[1] - X[0]


def test_steepest_is_where_the_known_curve_falls_fastest():
    centre = -3.3
    curve = 2 - np.tanh(1.5 * (X - centre)) + 0.05 * (X - centre) ** 2  # slope least near -3.3
    fine = np.linspace(-7, 1, 100_001)  # the least slope, found independently on a fine grid
    fine_curve = 2 - np.tanh(1.5 * (fine - centre)) + 0.05 * (fine - centre) ** 2
    steepest = fine[np.argmin(np.gradient(fine_curve, fine))]
    # A forward difference from step i is the slope at the middle of step i and i + 1.
    assert abs(np.log10(suggest(LRS, curve)["steepest"]) + STEP / 2 - steepest) <= STEP / 2 + 1e-9


def test_minimum_over_ten_is_a_tenth_of_the_least_point():
    curve = (X + 1.7) ** 2 + 1
    nearest = LRS[np.argmin(np.abs(X + 1.7))]
    assert suggest(LRS, curve)["minimum/10"] == pytest.approx(nearest / 10, rel=1e-12)


def test_valley_is_the_middle_of_the_longest_fall():
    # Falls 5 -> 4 over steps 0-9, rises to 6 by step 14, falls 6.5 -> 1 over steps 15-44,
    # rises.
    curve = np.concatenate([np.linspace(5, 4, 10), np.linspace(4.4, 6, 5),
                            np.linspace(6.5, 1, 30), np.linspace(1.5, 9, 20)])
    lrs = ramp(1e-6, 1, len(curve))
    # The longest decreasing sequence of steps: steps 15-44, 30 steps (steps 0-9 and the 16
    # steps of the second fall below 4 make 26; step 14 and those below 6 make 28). Its
    # middle in log rate:
    assert suggest(lrs, curve)["valley"] == pytest.approx(np.sqrt(lrs[15] * lrs[44]), rel=1e-12)
    falling = np.linspace(3, 1, 40)  # no rise: the valley is all the rules read (steps 4-39)
    assert suggest(lrs[:40], falling)["valley"] == pytest.approx(np.sqrt(lrs[4] * lrs[39]))
    assert suggest(lrs[:40], falling, skip=0)["valley"] == pytest.approx(np.sqrt(lrs[0] * lrs[39]))


def test_valley_agrees_with_an_exhaustive_search():
    """On short random curves, the valley's ends are those of a longest strictly decreasing
    subsequence, found here by trying every subsequence."""
    rng = np.random.default_rng(3)
    lrs = ramp(1e-4, 1, 10)
    for _ in range(20):
        curve = rng.permutation(10).astype(float)
        best, ends = 0, set()
        for size in range(1, 11):
            for chosen in itertools.combinations(range(10), size):
                if all(curve[a] > curve[b] for a, b in itertools.pairwise(chosen)):
                    if size > best:
                        best, ends = size, set()
                    if size == best:
                        ends.add((chosen[0], chosen[-1]))
        valleys = [np.sqrt(lrs[a] * lrs[b]) for a, b in ends]
        got = suggest(lrs, curve, skip=0)["valley"]
        assert min(abs(got - v) / v for v in valleys) < 1e-12, (curve, ends, got)


def test_too_short_a_curve_suggests_nothing():
    assert suggest(LRS, [2.0, 1.0]) == {"valley": None, "steepest": None, "minimum/10": None}


class _FakeOptimizer:
    learning_rate = None


class _FakeModel:
    """What the callback touches of a model: its optimizer's rate, the metrics, stopping."""

    def __init__(self):
        self.optimizer, self.stop_training, self.resets = _FakeOptimizer(), False, 0
        self.losses = [np.float32(0.25), np.float32(0.5)]  # the weight-decay terms

    def reset_metrics(self):
        self.resets += 1


def _feed(callback, losses):
    model = _FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for step, loss in enumerate(losses):
        callback.on_train_batch_begin(step)
        rates.append(float(model.optimizer.learning_rate()))
        callback.on_train_batch_end(step, {"loss": loss + 0.75})  # Keras' loss: decay in it
        if model.stop_training:
            break
    return model, rates


def test_divergence_stops_the_test_where_the_smoothed_loss_passes_four_times_its_least():
    losses = np.concatenate([np.linspace(2.5, 0.5, 40), np.geomspace(0.6, 1e4, 40)])
    recorder = LRRamp(ramp(1e-5, 10, 80))
    model, rates = _feed(recorder, losses)
    smoothed = smooth(losses)  # the first step whose smoothed loss passes 4x the least before it
    expected = next(i for i in range(len(losses)) if smoothed[i] > 4 * smoothed[:i + 1].min())
    assert recorder.diverged and model.stop_training and len(recorder.losses) == expected + 1 < 80
    np.testing.assert_allclose(recorder.smoothed, smoothed[:expected + 1], rtol=1e-12)
    np.testing.assert_allclose(rates, ramp(1e-5, 10, 80)[:expected + 1], rtol=1e-6)  # float32
    assert model.resets == expected + 1  # each batch's own loss
    np.testing.assert_allclose(recorder.losses, losses[:expected + 1], rtol=1e-12)
    assert recorder.penalties == [0.75] * (expected + 1)  # taken off Keras' loss
    stopped, _ = _feed(LRRamp(ramp(1e-5, 10, 80)), [1.0, 2.0, float("nan"), 1.0])
    assert stopped.stop_training  # a loss that is not finite stops it too
    calm = LRRamp(ramp(1e-5, 10, 20), diverge=None)
    _feed(calm, losses[:20] * 0 + np.geomspace(1, 1e6, 20))
    assert not calm.diverged and len(calm.losses) == 20


def test_the_callback_sets_each_step_s_rate_and_records_the_data_s_loss_in_a_real_fit():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        1, kernel_regularizer=keras.regularizers.L2(0.5))])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    kernel, bias = (w.copy() for w in model.get_weights())
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(
            float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    lrs = ramp(1e-4, 1e4, 30)
    recorder = LRRamp(lrs)
    model.fit(x, y, batch_size=4, epochs=10, callbacks=[recorder, probe], verbose=0, shuffle=False)
    np.testing.assert_allclose(seen, lrs[:len(seen)], rtol=1e-6)
    first = np.mean((x[:4] @ kernel + bias - y[:4]) ** 2)  # the first batch, no L2 term
    assert recorder.losses[0] == pytest.approx(first, rel=1e-5)
    assert recorder.penalties[0] == pytest.approx(0.5 * np.sum(kernel ** 2), rel=1e-5)
    assert recorder.diverged and len(seen) == len(recorder.losses) < 30  # SGD at 1e4 blows up


@pytest.fixture(scope="module")
def tiny_find(tmp_path_factory):
    """ResNet-8 on digits, two repeats of a 12-step ramp at batch 16: the model object before
    and after, and the result."""
    keras.utils.set_random_seed(7)
    net = keras_resnet.CifarResNet(8, classes=10, input_shape=(32, 32, 3))
    before = [w.copy() for w in net.get_weights()]
    out = tmp_path_factory.mktemp("lr_find")
    result = lr_find(net, "digits", start_lr=1e-4, end_lr=10, steps=12, repeats=2,
                     output_dir=str(out), batch_size=16, verbose=0, precision="float32")
    return net, before, result, out


@pytest.mark.slow  # a real range test: about 15 s on 2 cores
def test_the_model_keeps_its_starting_weights(tiny_find):
    net, before, result, _ = tiny_find
    after = net.get_weights()
    assert len(after) == len(before) > 20  # kernels, BN's gamma/beta and moving statistics
    for start, end in zip(before, after):
        np.testing.assert_array_equal(start, end)
    assert len(result.losses[0]) >= 10  # it did train from them


@pytest.mark.slow  # a real range test: about 15 s on 2 cores
def test_repeats_see_other_data_and_give_their_spread(tiny_find):
    _, _, result, _ = tiny_find
    first, second = result.losses
    assert first[0] != second[0]  # the same weights, another first batch
    low, high, std = result.spread
    both = np.array([curve[:len(low)] for curve in result.smoothed])
    np.testing.assert_array_equal(low, both.min(axis=0))
    np.testing.assert_array_equal(high, both.max(axis=0))
    assert len(result.repeat_suggestions) == 2 and set(result.suggestions) == {
        "valley", "steepest", "minimum/10"}
    assert result.run_learning_rate == pytest.approx(0.1 * 16 / 128)  # §4.2's 0.1 per 128


@pytest.mark.slow  # a real range test: about 15 s on 2 cores
def test_the_csv_holds_the_result_and_the_png_loads(tiny_find):
    _, _, result, out = tiny_find
    assert result.csv_path == os.path.join(str(out), "lr_find.csv")
    with open(result.csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.lrs)
    np.testing.assert_allclose([float(r["lr"]) for r in rows], result.lrs, rtol=1e-15)
    for repeat in (0, 1):
        got = [float(r[f"loss_{repeat + 1}"]) for r in rows if r[f"loss_{repeat + 1}"]]
        np.testing.assert_allclose(got, result.losses[repeat], rtol=1e-15)
        got = [float(r[f"smoothed_{repeat + 1}"]) for r in rows if r[f"smoothed_{repeat + 1}"]]
        np.testing.assert_allclose(got, result.smoothed[repeat], rtol=1e-15)
    mean = [float(r["smoothed_mean"]) for r in rows if r["smoothed_mean"]]
    np.testing.assert_allclose(mean, result.mean, rtol=1e-15)
    with Image.open(result.png_path) as image:
        assert image.size == (700, 450) and image.format == "PNG"
    assert sorted(os.listdir(out)) == ["lr_find.csv", "lr_find.png"]  # no temporary files left


@pytest.mark.parametrize("flags,message", [
    (["--end-lr", "1e-8"], "`--end-lr` must be a number above --start-lr (1e-07); got 1e-08."),
    (["--steps", "9"], "`--steps` must be an integer >= 10; got 9."),
    (["--repeats", "0"], "`--repeats` must be an integer >= 1; got 0."),
    (["--start-lr", "0"], "`--start-lr` must be a number > 0; got 0.0."),
])
def test_bad_flags_are_one_line_errors(flags, message, capsys, tmp_path):
    assert main(["lr-find", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"keras-resnet lr-find: {message}\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # a real range test: about 15 s on 2 cores
def test_the_command_writes_both_files_and_prints_the_suggestions(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # One repeat: the repeats and their spread are tiny_find's (test_repeats_see_other_data...).
    assert main(["lr-find", "--model", "resnet8", "--batch-size", "16", "--steps", "10", "--repeats", "1",
                 "--start-lr", "1e-3", "--precision", "float32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    folder = os.path.join("runs", "resnet8-digits", "lr_find")  # the default: in the run dir
    for rule in ("valley", "steepest", "minimum/10"):
        line = next(line for line in lines if line.startswith(f"{rule}: "))
        float(line.split()[1])  # its rate
    assert f"written: {os.path.join(folder, 'lr_find.csv')}" in lines
    assert f"written: {os.path.join(folder, 'lr_find.png')}" in lines
    assert any(line.startswith("a run of this configuration starts at lr 0.0125") for line in lines)
    assert any(" of 10 (" in line for line in lines if line.startswith("least smoothed loss"))
    with open(os.path.join(folder, "lr_find.csv")) as f:
        assert len(list(csv.DictReader(f))) >= 2
    assert sorted(os.listdir(os.path.join("runs", "resnet8-digits"))) == ["lr_find"]
