"""SavedModels in bfloat16: TensorFlow's oneDNN rewrite (keras_resnet.export.bfloat16), the
precision ``predict`` and ``serve`` take, and what ``auto`` reads.

The rewrite's arithmetic is checked where the CPU multiplies bfloat16 natively; the choices
are checked anywhere, with the CPU's answer faked (``devices.cpu_has_bfloat16``).
"""

import json
import shutil
import socket

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import cli, data, devices, export, serving
from keras_resnet.export.bfloat16 import REWRITE_OPTION, onednn_bfloat16


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run's SavedModel, without bfloat16 figures (a SavedModel export alone)."""
    run_dir, _ = tiny_run
    return export.export_run(run_dir, str(tmp_path_factory.mktemp("source")), ("saved_model",))["saved_model"]


@pytest.fixture
def saved_model(exported, tmp_path):
    """A copy of it for one test (its figures get written): ``tmp_path/digits/1``."""
    shutil.copytree(exported, tmp_path / "digits" / "1")
    return str(tmp_path / "digits" / "1")


@pytest.fixture(scope="module")
def digits():
    batches, _ = data.load("digits", "test", 64, training=False)
    images, _ = next(iter(batches))
    return images.numpy()


def _record(path, agreement=1.0, speedup=2.0):
    row = {"max_abs_diff": 0.01, "top1_agreement": agreement, "images": 360, "latency_ms": 1.0}
    export.record_bfloat16_parity(path, row, {"latency_ms": speedup})


def _rewrite_is_off():
    return tf.config.optimizer.get_experimental_options().get(REWRITE_OPTION, False) is False


@pytest.mark.skipif(not devices.cpu_has_bfloat16(), reason="the CPU does not multiply bfloat16")
@pytest.mark.slow
def test_a_savedmodel_runs_in_bfloat16_inside_the_rewrite_and_in_float32_outside(saved_model, digits):
    float32 = export.open_runner(saved_model, precision="float32")(digits)
    runner = export.open_runner(saved_model, precision="bfloat16")
    assert runner.precision == "bfloat16" and _rewrite_is_off()
    bfloat16 = runner(digits)
    # bfloat16 keeps 8 bits of mantissa: the probabilities move by far more than float32's
    # rounding, and the classes stay.
    assert 1e-4 < np.abs(bfloat16 - float32).max() < 0.1
    assert np.mean(bfloat16.argmax(1) == float32.argmax(1)) >= 0.9
    # The same signature keeps a copy per setting: outside the rewrite it is float32 again.
    np.testing.assert_array_equal(export.open_runner(saved_model, precision="float32")(digits), float32)
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    with onednn_bfloat16():
        direct = signature(images=tf.constant(digits))["probabilities"].numpy()
    np.testing.assert_array_equal(direct, bfloat16)
    np.testing.assert_array_equal(signature(images=tf.constant(digits))["probabilities"].numpy(), float32)
    assert _rewrite_is_off()


def test_auto_reads_the_recorded_figures_and_a_cpu_without_bfloat16_refuses_it(saved_model, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    assert export.read_bfloat16_parity(saved_model) == {}  # a SavedModel export alone measures none
    assert export.choose_precision(saved_model, "saved_model") == "float32"
    _record(saved_model, speedup=2.0)
    assert export.read_bfloat16_parity(saved_model)["speedup"] == 2.0
    assert export.choose_precision(saved_model, "saved_model") == "bfloat16"
    _record(saved_model, speedup=1.0)
    assert export.choose_precision(saved_model, "saved_model") == "float32"
    # The SavedModel's metadata keeps what it had beside the figures.
    assert export.read_export_preprocessing(saved_model).class_names[:2] == ["0", "1"]
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    _record(saved_model, speedup=2.0)
    assert export.choose_precision(saved_model, "saved_model") == "float32"
    with pytest.raises(ValueError, match=r"needs a CPU that multiplies bfloat16 natively"):
        export.open_runner(saved_model, precision="bfloat16")


@pytest.mark.slow
def test_serve_takes_a_precision_per_export_and_says_it(saved_model, digits, tmp_path, monkeypatch):
    from keras_resnet.serving.card import model_card
    from keras_resnet.serving.codec import run_signature

    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    root = str(tmp_path)
    _record(saved_model, speedup=2.0)
    chosen = {precision: serving.create_app(root, precision=precision).state.models["digits"][1]
              for precision in ("auto", "float32", "bfloat16")}
    assert {p: s.precision for p, s in chosen.items()} == {
        "auto": "bfloat16", "float32": "float32", "bfloat16": "bfloat16"}
    _record(saved_model, agreement=0.99)
    assert serving.create_app(root).state.models["digits"][1].precision == "float32"
    assert dict(model_card(chosen["bfloat16"], root)["rows"])["Precision"] == (
        "bfloat16 (TensorFlow's oneDNN rewrite)")
    assert dict(model_card(chosen["float32"], root)["rows"])["Precision"] == "float32"
    images = {"images": digits[:8]}
    served = {p: run_signature(chosen[p], "serving_default", images)["probabilities"]
              for p in ("float32", "bfloat16")}
    reference = export.open_runner(saved_model, precision="float32")(digits[:8])
    np.testing.assert_array_equal(served["float32"], reference)
    with onednn_bfloat16():  # what the bfloat16 servable ran
        rewritten = chosen["bfloat16"].signatures["serving_default"](
            images=tf.constant(digits[:8]))["probabilities"].numpy()
    np.testing.assert_array_equal(served["bfloat16"], rewritten)
    assert _rewrite_is_off()


def test_the_command_line_refuses_a_bfloat16_the_cpu_lacks_before_serving(saved_model, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli.main(["serve", str(tmp_path), "--port", str(port), "--precision", "bfloat16"]) == 2
    error = capsys.readouterr().err.strip()
    assert "`precision='bfloat16'` needs a CPU that multiplies bfloat16 natively" in error
    assert len(error.splitlines()) == 1
    with socket.socket() as again:  # the port was given back
        again.bind(("127.0.0.1", port))


def test_predict_on_a_savedmodel_reports_in_the_precision_asked(saved_model, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    image = tmp_path / "grey.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    assert cli.main(["predict", saved_model, str(image), "--precision", "float32", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert len(result["top_k"]) == 5
    assert cli.main(["predict", saved_model, str(image), "--precision", "bfloat16"]) == 2
    assert "needs a CPU that multiplies bfloat16 natively" in capsys.readouterr().err


@pytest.mark.skipif(not devices.cpu_has_bfloat16(), reason="the CPU does not multiply bfloat16")
@pytest.mark.slow  # 2 s or more of its own
def test_a_threads_first_float32_call_waits_out_a_bfloat16_call_on_another_thread(saved_model, digits):
    """TensorFlow reads the rewrite option into a thread's settings at its first call: that
    call waits for the lock, so a bfloat16 call on another thread cannot leave it on for it."""
    import threading

    from keras_resnet.export.bfloat16 import run_in

    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    images = tf.constant(digits[:8])
    float32 = export.open_runner(saved_model, precision="float32")(digits[:8])
    got = {}

    def first_call_of_a_new_thread():
        got["float32"] = run_in("float32", signature, images=images)["probabilities"].numpy()

    with onednn_bfloat16():  # the option is on while this thread holds the lock
        thread = threading.Thread(target=first_call_of_a_new_thread)
        thread.start()
        thread.join(timeout=1)  # without the lock, the call would run now, the option on
        assert thread.is_alive()  # it waits
    thread.join()
    np.testing.assert_array_equal(got["float32"], float32)
