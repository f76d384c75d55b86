"""Exports of a trained ResNet-8: the ``.keras`` file and the SavedModel in the fast tier; the
runtimes' files (TFLite, ONNX, OpenVINO), their parity, quantization and ``predict`` on each
with ``pytest --all``."""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest
import sklearn.datasets
import tensorflow as tf

import keras_resnet
from keras_resnet import cli, data, devices, export
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.data.sources import digits_arrays
from keras_resnet.extras import MissingExtra
from keras_resnet.saving import LEGACY_PREPROCESSING_ENTRY, load_model

ALL_QUANTIZATIONS = (None, "float16", "dynamic", "int8", "int8_full")
CHINA = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")


@pytest.fixture(scope="session")
def trained(tiny_run):
    """The suite's ResNet-8 trained briefly on digits by `runs.train` (which exports it at the
    end; conftest.tiny_run), as export resolves it."""
    run_dir, _ = tiny_run
    model, preprocessing = export.resolve_model(run_dir)
    return model, preprocessing, run_dir


@pytest.fixture(scope="session")
def digits_test():
    test, _ = data.load("digits", "test", 360, training=False)
    images, labels = next(iter(test))
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="session")
def raw_digits():
    """uint8 32x32x3 test digits before normalisation, as the pipeline makes them."""
    images, labels, splits = digits_arrays()
    index = splits["test"][:8]
    raw = tf.image.resize(tf.repeat(images[index], 3, axis=-1), (32, 32)).numpy()
    return np.clip(np.round(raw), 0, 255).astype(np.uint8), labels[index]


@pytest.fixture(scope="session")
def quantized(trained, tmp_path_factory):
    """`keras-resnet export` (in this process: ``cli.main``, what the console script calls) of
    the trained run to every format, every quantization (int8 calibration: `pytest --all`):
    ``export_run``'s result as the command got it, with ``rows`` (its float32 parity rows by
    file), ``folder`` and ``printed`` (what the command printed)."""
    folder = tmp_path_factory.mktemp("quantized")
    results, export_run = [], export.export_run

    def recording(*args, **kwargs):  # the command's own call, its result kept for the tests
        results.append(export_run(*args, **kwargs))
        return results[-1]

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(export, "export_run", recording)
        code = cli.main(["export", trained[2], "--format", ",".join(export.FORMATS), "--quantize",
                         ",".join(q or "float32" for q in ALL_QUANTIZATIONS),
                         "--output-dir", str(folder)])
    assert code == 0 and len(results) == 1, printed.getvalue()[-2000:]
    result = results[0]
    # The files as exported; on a CPU with native bfloat16 the report adds OpenVINO bfloat16 rows.
    result["rows"] = {row["file"]: row for row in result["parity"] if row["precision"] == "float32"}
    return {**result, "folder": folder, "printed": printed.getvalue()}


@pytest.fixture(scope="session")
def exported(quantized):
    """`export_run`'s float32 files, with its parity report: those of the run to every
    quantization, which makes float32 first with a float32-only run's exporters and arguments
    (the tests below pick the float32 files by name)."""
    return quantized


def _file(exported, fmt, quantization):
    suffix = export.SUFFIXES[fmt]
    (path,) = [p for p in exported[fmt] if p.endswith(f"model_{quantization}{suffix}")]
    return path


def test_train_stores_preprocessing_in_the_keras_file_and_exports(trained):
    model, preprocessing, run_dir = trained
    assert preprocessing.source == "digits"
    assert preprocessing.class_names == [str(i) for i in range(10)]
    _, fresh = data.load("digits", "train", 32)
    assert preprocessing == fresh.preprocessing  # the training preprocessing, mean image included
    assert preprocessing.mean.shape == (32, 32, 3)
    keras_file = os.path.join(run_dir, "model.keras")
    assert preprocessing_lib.of(load_model(keras_file)) == preprocessing  # Keras' own saving
    assert LEGACY_PREPROCESSING_ENTRY not in zipfile.ZipFile(keras_file).namelist()
    export_dir = os.path.join(run_dir, "export", model.name)
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    assert export.read_export_preprocessing(os.path.join(export_dir, "1")) == preprocessing
    tflite_path = os.path.join(export_dir, "tflite", "model_float32.tflite")
    assert os.path.exists(tflite_path)
    with open(tflite_path + ".json") as f:
        sidecar = json.load(f)
    assert {"quantization", "preprocessing"} <= set(sidecar) and sidecar["quantization"] is None
    assert preprocessing_lib.from_any_config(sidecar["preprocessing"]) == preprocessing


@pytest.mark.slow  # 2 s or more of its own
def test_saved_model_signatures_match_the_keras_model(trained, digits_test, raw_digits, tmp_path):
    model, preprocessing, _ = trained
    path = export.export_saved_model(model, str(tmp_path), model_name="digits", version=3,
                                     preprocessing=preprocessing)
    assert path == os.path.join(str(tmp_path), "digits", "3")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) >= {"serving_default", "serving_images", "serving_bytes"}
    images, labels = digits_test
    expected = model.predict(images[:8], verbose=0)

    default = loaded.signatures["serving_default"](images=tf.constant(images[:8]))
    np.testing.assert_allclose(default["probabilities"].numpy(), expected, atol=1e-5)
    top = default["top_k_indices"].numpy()
    assert top.shape == (8, 5) and (top[:, 0] == expected.argmax(axis=1)).all()
    assert [label.decode() for label in default["top_k_labels"].numpy()[:, 0]] == [str(i) for i in top[:, 0]]
    np.testing.assert_allclose(default["top_k_scores"].numpy()[:, 0], expected.max(axis=1), atol=1e-5)

    raw, raw_labels = raw_digits
    from_uint8 = loaded.signatures["serving_images"](images=tf.constant(raw))
    np.testing.assert_allclose(from_uint8["probabilities"].numpy(), expected, atol=1e-4)
    pngs = [tf.io.encode_png(image).numpy() for image in raw]
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(pngs))
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), expected, atol=1e-4)
    assert (from_bytes["top_k_indices"].numpy()[:, 0] == raw_labels).mean() >= 0.75

    # A 1x1 grayscale image and a large RGBA image still give 10 probabilities each.
    odd = [tf.io.encode_png(np.full((1, 1, 1), 200, np.uint8)).numpy(),
           tf.io.encode_png(np.full((300, 200, 4), 90, np.uint8)).numpy()]
    probabilities = loaded.signatures["serving_bytes"](image_bytes=tf.constant(odd))["probabilities"].numpy()
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert export.read_export_metadata(path)["preprocessing"]["class_names"][3] == "3"
    assert export.read_export_preprocessing(path) == preprocessing


def _grad_cam_reference(model, preprocessing, encoded):
    """``keras_resnet.grad_cam`` on the images the ``grad_cam`` signature decodes, and
    ``explain.overlay`` of each heatmap placed on its image."""
    from keras_resnet import explain

    images = [tf.io.decode_image(e, channels=3, expand_animations=False).numpy() for e in encoded]
    batch = np.concatenate([data.preprocess(image[None], preprocessing) for image in images])
    cam = keras_resnet.grad_cam(model, batch)
    overlays = [explain.overlay(image, explain.heatmap_on_image(heat, image.shape, preprocessing))
                for image, heat in zip(images, cam.heatmaps)]
    return cam, overlays


def _assert_grad_cam_signature_matches(path, model, preprocessing, encoded):
    outputs = tf.saved_model.load(path).signatures["grad_cam"](image_bytes=tf.constant(encoded))
    cam, overlays = _grad_cam_reference(model, preprocessing, encoded)
    np.testing.assert_allclose(outputs["heatmaps"].numpy(), cam.heatmaps, atol=1e-4)
    assert outputs["class_indices"].numpy().tolist() == cam.class_indices.tolist()
    assert [label.decode() for label in outputs["class_labels"].numpy()] == [
        preprocessing.class_names[i] for i in cam.class_indices]
    np.testing.assert_allclose(outputs["scores"].numpy(), cam.scores, atol=1e-5)
    for png, expected in zip(outputs["overlay_png_bytes"].numpy(), overlays):
        got = tf.io.decode_png(png).numpy()
        assert got.shape == expected.shape and got.dtype == np.uint8
        # The same pixels up to rounding, and where the heatmap sits at the edge of one of the
        # jet colormap's 256 steps, one step (at most 4 levels, 1.6 at alpha 0.4) more.
        difference = np.abs(got.astype(int) - expected)
        assert difference.max() <= 2 and np.mean(difference > 1) < 1e-3
    metadata = export.read_export_metadata(path)["grad_cam"]
    assert metadata == {"signature": "grad_cam", "stage": cam.stage, "layer": cam.layer,
                        "alpha": 0.4}
    return outputs


def test_grad_cam_signature_equals_keras_grad_cam_on_the_trained_model(trained, raw_digits):
    """The SavedModel the training run exported answers Grad-CAM as keras_resnet.grad_cam
    does on its .keras model: digits, and a photo at its own size (resized "direct")."""
    model, preprocessing, run_dir = trained
    path = os.path.join(run_dir, "export", model.name, "1")
    raw, _ = raw_digits
    photo = tf.io.decode_jpeg(open(CHINA, "rb").read()).numpy()
    encoded = [tf.io.encode_png(image).numpy() for image in raw] + [tf.io.encode_png(photo).numpy()]
    outputs = _assert_grad_cam_signature_matches(path, model, preprocessing, encoded)
    assert outputs["heatmaps"].shape == (9, 32, 32)
    assert (outputs["heatmaps"].numpy().max(axis=(1, 2)) == 1).all()  # scaled to [0, 1], not blank


@pytest.mark.slow
def test_grad_cam_signature_places_the_heatmap_where_the_centre_crop_came_from(tmp_path):
    model = keras_resnet.CifarResNet(8, classes=4)
    preprocessing = preprocessing_lib.ImagePreprocessing((32, 32), "shorter_side", 40,
                                                         class_names=list("abcd"))
    path = export.export_saved_model(model, str(tmp_path), preprocessing=preprocessing)
    rng = np.random.default_rng(0)
    encoded = [tf.io.encode_png(rng.integers(0, 256, shape, dtype=np.uint8)).numpy()
               for shape in ((50, 77, 3), (91, 45, 3), (33, 33, 1), (300, 41, 4))]
    _assert_grad_cam_signature_matches(path, model, preprocessing, encoded)


@pytest.mark.slow
def test_an_export_grad_cam_cannot_read_has_no_grad_cam_signature(tmp_path):
    inputs = keras.Input((32, 32, 3))
    wrapped = keras.Model(inputs, keras_resnet.CifarResNet(8, classes=3)(inputs), name="wrapped")
    preprocessing = preprocessing_lib.ImagePreprocessing(32, class_names=list("abc"))
    path = export.export_saved_model(wrapped, str(tmp_path), preprocessing=preprocessing)
    assert "grad_cam" not in tf.saved_model.load(path).signatures
    assert "serving_bytes" in tf.saved_model.load(path).signatures
    assert export.read_export_metadata(path)["grad_cam"] is None


@pytest.mark.slow
def test_saved_model_loads_where_keras_resnet_cannot_be_imported(trained, raw_digits, tmp_path):
    """A fresh interpreter that cannot import keras_resnet loads the run's SavedModel and gets
    the Keras model's predictions; then TensorFlow's ``saved_model_cli`` (its console script's
    ``main``, in that interpreter) lists its signatures."""
    model, _, run_dir = trained
    path = os.path.join(run_dir, "export", model.name, "1")
    raw, labels = raw_digits
    np.save(tmp_path / "raw.npy", raw)
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "keras_resnet":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        raw = np.load({str(tmp_path / 'raw.npy')!r})
        out = loaded.signatures["serving_images"](images=tf.constant(raw))
        print("TOP1", ",".join(str(i) for i in out["top_k_indices"].numpy()[:, 0]), flush=True)
        assert "keras_resnet" not in sys.modules
        from tensorflow.python.tools.saved_model_cli import main
        sys.argv = ["saved_model_cli", "show", "--dir", {path!r}, "--all"]
        main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = [int(i) for i in result.stdout.split("TOP1 ")[1].split()[0].split(",")]
    for signature in ("serving_default", "serving_images", "serving_bytes", "grad_cam"):
        assert f"signature_def['{signature}']" in result.stdout
    assert "top_k_labels" in result.stdout and "DT_STRING" in result.stdout
    # Exactly the Keras model's predictions (the model is 95% accurate on the whole test split).
    model, preprocessing, _ = trained
    expected = model.predict(data.preprocess(raw, preprocessing).numpy(), verbose=0).argmax(axis=1)
    assert predicted == expected.tolist()
    assert np.mean(expected == labels) >= 0.75


@pytest.mark.slow
def test_export_run_writes_every_format_with_its_preprocessing(trained, quantized):
    exported = quantized
    model, preprocessing, _ = trained
    assert exported["saved_model"].endswith(os.path.join(model.name, "1"))
    assert [os.path.basename(p) for p in exported["tflite"]] == [
        f"model_{q or 'float32'}.tflite" for q in ALL_QUANTIZATIONS]
    assert [os.path.basename(p) for p in exported["onnx"]] == ["model_float32.onnx", "model_int8.onnx"]
    assert [os.path.basename(p) for p in exported["openvino"]] == ["model_float32.xml", "model_int8.xml"]
    for fmt in ("tflite", "onnx", "openvino"):
        for path in exported[fmt]:
            sidecar = export.read_sidecar(path)
            assert sidecar["format"] == fmt and sidecar["preprocessing"] == preprocessing
            assert sidecar["quantization"] == (None if "float32" in path else path.split("model_")[1].split(".")[0])
    for path in exported["openvino"]:
        assert os.path.getsize(path[: -len(".xml")] + ".bin") > 0
    folder = os.path.dirname(exported["onnx"][0])
    assert not [name for name in os.listdir(folder) if name.startswith(".")]  # no temporary files


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
def test_parity_report_covers_every_file(exported):
    rows = exported["rows"]
    expected = {f"{os.path.basename(os.path.dirname(exported['saved_model']))}/1"} | {
        os.path.basename(p) for fmt in ("tflite", "onnx", "openvino") for p in exported[fmt]}
    assert set(rows) == expected
    assert {row["runtime"] for row in rows.values()} == {"TensorFlow", "LiteRT", "ONNX Runtime", "OpenVINO"}
    table = export.format_parity(exported["parity"]).splitlines()
    assert len(table) == 1 + len(exported["parity"]) and table[1].split()[0] == exported["parity"][0]["file"]


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
@pytest.mark.parametrize("name", ["model_float32.onnx", "model_float32.xml"])
def test_onnx_and_openvino_float32_parity(exported, name):
    report = exported["rows"][name]
    assert report["max_abs_diff"] <= 1e-5 and report["top1_agreement"] == 1.0, report
    assert report["latency_ms"] > 0


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
def test_tflite_float32_parity(exported):
    report = exported["rows"]["model_float32.tflite"]
    assert report["max_abs_diff"] <= 1e-4 and report["top1_agreement"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["float16", "dynamic", "int8", "int8_full"])
def test_tflite_quantized_parity_and_size(quantized, quantization):
    exported = quantized
    report = exported["rows"][f"model_{quantization}.tflite"]
    float_size = exported["rows"]["model_float32.tflite"]["size_bytes"]
    # 0.981 at the least over 4 seeds (tests/measure_spread.py; mean 0.988): 0.95 leaves margin.
    assert report["top1_agreement"] >= 0.95, report
    assert report["size_bytes"] < 0.6 * float_size
    if quantization.startswith("int8"):
        assert report["size_bytes"] <= 0.30 * float_size, report


@pytest.mark.slow
@pytest.mark.parametrize("fmt,largest", [("onnx", 0.40), ("openvino", 0.50)])
def test_onnx_and_openvino_int8_parity_and_size(quantized, fmt, largest):
    exported = quantized
    suffix = export.SUFFIXES[fmt]
    report = exported["rows"][f"model_int8{suffix}"]
    float_size = exported["rows"][f"model_float32{suffix}"]["size_bytes"]
    # 0.981 at the least over 4 seeds (tests/measure_spread.py; mean 0.988): 0.95 leaves margin.
    assert report["top1_agreement"] >= 0.95, report
    assert report["size_bytes"] <= largest * float_size, report


# A fresh interpreter with only the runtime and numpy: keras_resnet, TensorFlow and Keras are
# blocked. It prepares uint8 images with the recipe in FILE.json alone.
FRESH_RUNTIME = textwrap.dedent("""
    import json, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("keras_resnet", "tensorflow", "keras"):
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
    import numpy as np
    path, raw, expected = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
    recipe = json.load(open(path + ".json"))["preprocessing"]
    x = raw.astype(np.float32) * recipe["scale"] - np.asarray(recipe["mean"], np.float32)
    if path.endswith(".onnx"):
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(["probabilities"], {"images": x})[0]
    else:
        import openvino
        compiled = openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = compiled({"images": x})["probabilities"]
    print("MAXDIFF", float(np.abs(got - expected).max()))
    print("LABELS", ",".join(recipe["class_names"][i] for i in got.argmax(axis=1)))
    assert not {"keras_resnet", "tensorflow", "keras"} & set(sys.modules)
""")


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("quantization", ["float32", pytest.param("int8", marks=pytest.mark.slow)])
def test_runtime_file_runs_in_a_fresh_process(trained, quantized, raw_digits, tmp_path, fmt, quantization):
    # `quantized` named here, not fetched by name: the schedule then runs this test in that
    # fixture's unit, on the worker that made it, rather than making it again on the other.
    exported = quantized
    model, preprocessing, _ = trained
    raw, labels = raw_digits
    expected = model.predict(data.preprocess(raw, preprocessing).numpy(), verbose=0)
    np.save(tmp_path / "raw.npy", raw)
    np.save(tmp_path / "expected.npy", expected)
    path = _file(exported, fmt, quantization)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_RUNTIME, path, str(tmp_path / "raw.npy"), str(tmp_path / "expected.npy")],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    difference = float(result.stdout.split("MAXDIFF ")[1].split()[0])
    assert difference <= (1e-5 if quantization == "float32" else 0.1), difference
    predicted = np.array(result.stdout.split("LABELS ")[1].split()[0].split(","), int)
    if quantization == "float32":
        assert predicted.tolist() == expected.argmax(axis=1).tolist()
    else:  # int8 agrees with float32 on >= 98.9% of the test digits (tests/measure_spread.py)
        assert np.mean(predicted == expected.argmax(axis=1)) >= 0.75


@pytest.fixture(scope="session")
def digit_pngs(raw_digits, tmp_path_factory):
    raw, labels = raw_digits
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for i, image in enumerate(raw[:4]):
        path = str(folder / f"digit{i}.png")
        tf.io.write_file(path, tf.io.encode_png(image))
        paths.append(path)
    return paths, labels[:4]


DAMAGES = {"truncated": lambda data: data[: len(data) // 10], "empty": lambda data: b"",
           "random bytes": lambda data: np.random.default_rng(0).bytes(len(data))}


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino", "openvino-weights", "keras", "saved_model"])
def test_predict_on_a_damaged_file_is_one_line_naming_it(trained, exported, digit_pngs, fmt, damage,
                                                          tmp_path, capsys):
    """A real export (its sidecar intact) cut to a tenth, emptied or overwritten with random
    bytes: `keras-resnet predict` says which file in one line and exits 2."""
    import shutil

    from keras_resnet.cli import main

    _, _, run_dir = trained
    if fmt == "keras":
        source = os.path.join(run_dir, "model.keras")
    elif fmt == "saved_model":
        source = os.path.join(exported["saved_model"], "saved_model.pb")
    else:
        source = next(p for p in exported[fmt.split("-")[0]] if "float32" in p)
    if fmt == "saved_model":
        target = tmp_path / "savedmodel"
        shutil.copytree(os.path.dirname(source), target)
        damaged, model_path = target / "saved_model.pb", target
    else:
        weights = [source[: -len(".xml")] + ".bin"] if fmt.startswith("openvino") else []
        for path in [source, source + ".json", *weights]:  # the file, its sidecar, its weights
            if os.path.exists(path):
                shutil.copy(path, tmp_path / os.path.basename(path))
        model_path = tmp_path / os.path.basename(source)
        damaged = tmp_path / os.path.basename(weights[0]) if fmt == "openvino-weights" else model_path
    damaged.write_bytes(DAMAGES[damage](damaged.read_bytes()))
    code = main(["predict", str(model_path), digit_pngs[0][0]])
    captured = capsys.readouterr()
    assert code == 2, captured.err[-2000:]
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert os.path.basename(str(model_path)) in captured.err


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
@pytest.mark.parametrize("fmt", ["keras", "saved_model", "tflite", "onnx", "openvino"])
def test_predict_command_on_every_format(trained, exported, digit_pngs, fmt, capsys):
    """`keras-resnet predict` in-process (``cli.main``, what the console script calls); the
    console script itself runs once, for the Keras file."""
    from keras_resnet.cli import main

    model_, _, run_dir = trained
    model = {
        "keras": os.path.join(run_dir, "model.keras"),
        "saved_model": os.path.join(run_dir, "export", model_.name, "1"),
        "tflite": os.path.join(run_dir, "export", model_.name, "tflite", "model_float32.tflite"),
        "onnx": _file(exported, "onnx", "float32"),
        "openvino": _file(exported, "openvino", "float32"),
    }[fmt]
    paths, labels = digit_pngs
    assert main(["predict", model, *paths, "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [p["image"] for p in predictions] == paths
    assert all(len(p["top_k"]) == 5 for p in predictions)
    top1 = [int(p["top_k"][0]["label"]) for p in predictions]
    # Exactly what the Keras model predicts for these files (float formats; 95% test accuracy).
    reference = [int(p["top_k"][0]["label"]) for p in export.predict_files(os.path.join(run_dir, "model.keras"), paths)]
    assert top1 == reference and np.mean(np.array(top1) == labels) >= 0.75
    if fmt == "keras":  # the human-readable form: the path, then five "score label" lines
        assert main(["predict", model, paths[0]]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == paths[0] and len(lines) == 6
        assert lines[1].split()[1] == predictions[0]["top_k"][0]["label"]


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
def test_predict_files_agrees_across_runtimes(trained, exported, digit_pngs):
    paths, _ = digit_pngs
    reference = export.predict_files(os.path.join(trained[2], "model.keras"), paths)
    for fmt in ("onnx", "openvino"):
        # float32 asked for: on a CPU with native bfloat16, "auto" runs OpenVINO in bfloat16.
        got = export.predict_files(_file(exported, fmt, "float32"), paths, precision="float32")
        for a, b in zip(reference, got):
            assert [e["index"] for e in a["top_k"]] == [e["index"] for e in b["top_k"]]
            np.testing.assert_allclose([e["score"] for e in a["top_k"]], [e["score"] for e in b["top_k"]], atol=1e-5)


def test_predict_rejects_a_file_that_is_not_an_image(trained, tmp_path, capsys):
    from keras_resnet.cli import main  # in-process; tests/test_cli.py runs the console script

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["predict", os.path.join(trained[2], "model.keras"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and "not a readable" in err


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
def test_open_runner_names_what_is_wrong(exported, tmp_path):
    onnx_path = _file(exported, "onnx", "float32")
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(open(onnx_path, "rb").read())
    with pytest.raises(ValueError, match=r"alone\.onnx.*no preprocessing file"):
        export.open_runner(str(alone))
    with pytest.raises(ValueError, match=r"missing\.xml.*does not exist"):
        export.open_runner(str(tmp_path / "missing.xml"))
    with pytest.raises(ValueError, match=r"\.xml file, not its weights"):
        export.open_runner(_file(exported, "openvino", "float32")[: -len(".xml")] + ".bin")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text(open(onnx_path + ".json").read())
    with pytest.raises(ValueError, match=r"ONNX file .*broken\.onnx.* cannot be loaded"):
        export.open_runner(str(broken))


@pytest.mark.slow
def test_export_command_writes_exports_and_prints_parity(trained, quantized):
    # The command of the `quantized` fixture, in this process: the `keras-resnet` script itself
    # runs in a shell in test_cli's test_a_user_mistake_in_a_shell_is_one_line_on_stderr.
    model, folder, printed = trained[0], quantized["folder"], quantized["printed"]
    assert os.path.exists(folder / model.name / "1" / "saved_model.pb")
    assert f"SavedModel: {folder / model.name / '1'}" in printed
    rows = {line.split()[0]: line.split() for line in printed.splitlines()
            if line.startswith("model_") and not line.endswith("bfloat16")}
    assert set(rows) == {f"model_{q or 'float32'}{export.SUFFIXES[fmt]}"
                         for fmt in ("tflite", "onnx", "openvino") for q in ALL_QUANTIZATIONS
                         if fmt == "tflite" or q in (None, "int8")}
    assert float(rows["model_float32.tflite"][1]) <= 1e-4
    assert float(rows["model_float32.onnx"][1]) <= 1e-5
    assert float(rows["model_int8.tflite"][2].rstrip("%")) >= 98.0
    assert float(rows["model_int8.onnx"][2].rstrip("%")) >= 98.0


def test_tflite_bad_arguments(trained, tmp_path):
    with pytest.raises(ValueError, match=r"`quantization`.*'int4'"):
        export.tflite(trained[0], str(tmp_path / "m.tflite"), quantization="int4")
    with pytest.raises(ValueError, match="representative_data"):
        export.tflite(trained[0], str(tmp_path / "m.tflite"), quantization="int8")


def test_onnx_openvino_and_export_run_bad_arguments(trained, tmp_path):
    model = trained[0]
    with pytest.raises(ValueError, match=r"`quantization` for onnx.*None, 'int8'.*'dynamic'"):
        export.export_onnx(model, str(tmp_path / "m.onnx"), quantization="dynamic")
    with pytest.raises(ValueError, match="representative_data"):
        export.export_openvino(model, str(tmp_path / "m.xml"), quantization="int8")
    with pytest.raises(ValueError, match=r"`activations` must be one of 'uint8', 'int8'; got 'int4'"):
        export.export_onnx(model, str(tmp_path / "m.onnx"), "int8", np.zeros((1, 32, 32, 3)), activations="int4")
    with pytest.raises(ValueError, match=r"`path` must end with '\.xml'.*m\.bin"):
        export.export_openvino(model, str(tmp_path / "m.bin"))
    with pytest.raises(ValueError, match=r"`path` must end with '\.onnx'"):
        export.export_onnx(model, str(tmp_path / "m.pb"))
    with pytest.raises(ValueError, match=r"`quantizations`: 'float16' applies to none of .*onnx.*'int8'"):
        export.export_run(model, str(tmp_path), ("onnx", "openvino"), (None, "float16"))
    with pytest.raises(ValueError, match=r"`formats`.*'tensorrt'"):
        export.export_run(model, str(tmp_path), ("tensorrt",))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt,module,extra", [("onnx", "tf2onnx", "onnx"), ("onnx", "onnxruntime", "onnx"),
                                              ("openvino", "openvino", "openvino")])
def test_a_missing_runtime_names_its_extra(trained, tmp_path, monkeypatch, fmt, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if not installed
    with pytest.raises(MissingExtra, match=rf"{fmt.replace('onnx', 'ONNX').replace('openvino', 'OpenVINO')} "
                                           rf"export needs the '{module}' package.*keras3-resnet\[{extra}\]"):
        export.export_run(trained[0], str(tmp_path), ("saved_model", fmt))
    exporter = export.export_onnx if fmt == "onnx" else export.export_openvino
    with pytest.raises(MissingExtra, match=rf"keras3-resnet\[{extra}\]"):
        exporter(trained[0], str(tmp_path / f"m{export.SUFFIXES[fmt]}"))
    assert os.listdir(tmp_path) == []  # checked before anything is written


def test_missing_nncf_is_named_for_openvino_int8(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(MissingExtra, match=r"int8 OpenVINO export needs the 'nncf' package"):
        export.export_run(trained[0], str(tmp_path), ("openvino",), (None, "int8"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "tflite"])
def test_a_failing_exporter_leaves_no_file(trained, tmp_path, monkeypatch, fmt):
    def half_written(self, filepath, format, **kwargs):
        with open(filepath, "wb") as f:  # a partial artifact, as a crash mid-write leaves
            f.write(b"partial")
        raise RuntimeError(f"{format} exporter: op NotSupportedOp has no converter")

    monkeypatch.setattr(keras.Model, "export", half_written)
    exporter = {"onnx": export.export_onnx, "openvino": export.export_openvino, "tflite": export.tflite}[fmt]
    path = tmp_path / f"model{export.SUFFIXES[fmt]}"
    with pytest.raises(ValueError, match=rf"`model` '{trained[0].name}' cannot be exported to .*"
                                         r"RuntimeError: .*NotSupportedOp has no converter"):
        exporter(trained[0], str(path))
    assert os.listdir(tmp_path) == []  # no partial file, no temporary, no side file


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_model_the_exporter_cannot_convert_fails_with_its_reason(tmp_path, fmt):
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Lambda(lambda x: tf.math.bessel_i1e(x))(inputs)  # no ONNX/OpenVINO op
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Flatten()(outputs)))
    model.predict(np.zeros((1, 4, 4, 3), np.float32), verbose=0)
    preprocessing = preprocessing_lib.ImagePreprocessing(4, class_names=[str(i) for i in range(48)])
    exporter = export.export_onnx if fmt == "onnx" else export.export_openvino
    with pytest.raises(ValueError, match=rf"cannot be exported to {fmt} by Keras' exporter: .*BesselI1e"):
        exporter(model, str(tmp_path / f"m{export.SUFFIXES[fmt]}"), preprocessing=preprocessing)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_mixed_precision_model_exports_in_float32(tmp_path, digits_test):
    # ImageNet nets train in mixed_bfloat16 on CPUs with native bfloat16 (the fast path);
    # TFLite cannot convert bfloat16 compute, so exports use a float32 copy of the weights.
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = keras_resnet.CifarResNet(8, input_shape=(32, 32, 3), classes=10, width_multiplier=0.5)
    keras.config.set_dtype_policy("float32")
    assert mixed.layers[1].compute_dtype == "bfloat16"
    copy = export.float32_model(mixed)
    assert {layer.compute_dtype for layer in keras_resnet.models.walk_layers(copy)} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), mixed.get_weights()))
    assert export.float32_model(copy) is copy
    images = digits_test[0][:16]
    reference = copy.predict(images, verbose=0)
    np.testing.assert_allclose(mixed.predict(images, verbose=0), reference, atol=2e-2)
    path = export.tflite(mixed, str(tmp_path / "mixed.tflite"))
    report = export.parity_report(copy, path, images)
    assert report["max_abs_diff"] < 1e-4 and report["top1_agreement"] == 1.0
    report = export.parity_report(copy, export.export_onnx(mixed, str(tmp_path / "mixed.onnx")), images)
    assert report["max_abs_diff"] < 1e-5 and report["top1_agreement"] == 1.0
    saved = export.export_saved_model(mixed, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(saved)
    probabilities = loaded.signatures["probabilities"]
    out = list(probabilities(tf.constant(images)).values())[0].numpy()
    np.testing.assert_allclose(out, reference, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# bfloat16 inference: OpenVINO's and TensorFlow's paths, chosen by the CPU and by measured parity


@pytest.mark.slow
def test_bfloat16_parity_rows_are_recorded_and_auto_follows_them(trained, tmp_path, monkeypatch):
    """On a CPU with native bfloat16 (here: said to have it), export_run measures OpenVINO's
    and the SavedModel's bfloat16 against the trained Keras model and records the figures with
    each file; precision="auto" runs bfloat16 exactly when they reach BFLOAT16_MIN_AGREEMENT
    and BFLOAT16_MIN_SPEEDUP (set here: a measured speed-up would make the choice chance's)."""
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    result = export.export_run(trained[2], str(tmp_path), ("saved_model", "openvino"))
    saved_model, xml = result["saved_model"], _file(result, "openvino", "float32")
    rows = {(row["runtime"], row["precision"]): row for row in result["parity"]}
    assert sorted(rows) == [("OpenVINO", "bfloat16"), ("OpenVINO", "float32"),
                            ("TensorFlow", "bfloat16"), ("TensorFlow", "float32")]
    assert rows["OpenVINO", "bfloat16"]["file"] == "model_float32.xml"
    for path, runtime in ((xml, "OpenVINO"), (saved_model, "TensorFlow")):
        float32_row, bfloat16_row = rows[runtime, "float32"], rows[runtime, "bfloat16"]
        assert bfloat16_row["images"] == 360 and bfloat16_row["top1_agreement"] >= 0.9
        assert export.read_bfloat16_parity(path) == {
            **{k: bfloat16_row[k] for k in ("max_abs_diff", "top1_agreement", "images")},
            "speedup": pytest.approx(float32_row["latency_ms"] / bfloat16_row["latency_ms"])}
        # The recorded figures decide: agreement and speed-up, each at its threshold or not.
        for agreement, speedup, chosen in ((1.0, 1.5, "bfloat16"), (0.99, 1.5, "float32"),
                                           (1.0, 1.05, "float32")):
            export.record_bfloat16_parity(path, {**bfloat16_row, "top1_agreement": agreement},
                                          {"latency_ms": speedup * bfloat16_row["latency_ms"]})
            assert export.open_runner(path).precision == chosen, (runtime, agreement, speedup)
        assert export.open_runner(path, precision="float32").precision == "float32"
    hint = export.open_runner(xml).config["INFERENCE_PRECISION_HINT"]  # the last record: float32
    assert hint == "f32" and export.open_runner(xml, precision="bfloat16").config[
        "INFERENCE_PRECISION_HINT"] == "bf16"
    table = export.format_parity(result["parity"])
    assert "OpenVINO, bfloat16" in table and "TensorFlow, bfloat16" in table
    # A file recorded before speed-ups were measured: its agreement alone decides.
    export.record_bfloat16_parity(saved_model, {**rows["TensorFlow", "bfloat16"], "top1_agreement": 1.0})
    assert "speedup" not in export.read_bfloat16_parity(saved_model)
    assert export.open_runner(saved_model).precision == "bfloat16"


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
def test_a_cpu_without_bfloat16_runs_float32_and_refuses_a_forced_bfloat16(exported, monkeypatch, capsys,
                                                                          digit_pngs):
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    path = _file(exported, "openvino", "float32")
    runner = export.open_runner(path)
    assert runner.precision == "float32" and runner.config["INFERENCE_PRECISION_HINT"] == "f32"
    with pytest.raises(ValueError, match=r"needs a CPU that multiplies bfloat16 natively \(the avx512_bf16 or "
                                         r"amx_bf16 flags\); this one has neither"):
        export.open_runner(path, precision="bfloat16")
    image = digit_pngs[0][0]
    assert cli.main(["predict", path, image, "--precision", "bfloat16"]) == 2
    assert "`precision='bfloat16'` needs a CPU" in capsys.readouterr().err
    assert cli.main(["predict", path, image, "--precision", "float32"]) == 0


@pytest.mark.slow  # the runtimes' files (TFLite, ONNX, OpenVINO): `pytest --all`
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_runtimes_without_a_bfloat16_path_refuse_it(exported, monkeypatch, fmt):
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    path = _file(exported, fmt, "float32")
    with pytest.raises(ValueError, match=f"`precision='bfloat16'`: {export.RUNTIMES[fmt]} has no bfloat16 path"):
        export.open_runner(path, precision="bfloat16")
    if fmt != "tflite" or importlib.util.find_spec("ai_edge_litert"):
        assert export.open_runner(path).precision == "float32"  # auto
    with pytest.raises(ValueError, match=r"`precision` must be one of 'auto', 'float32', 'bfloat16'; got 'fp16'"):
        export.open_runner(path, precision="fp16")
