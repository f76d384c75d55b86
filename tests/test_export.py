import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet import data, export


@pytest.fixture(scope="session")
def trained(default_run):
    """The ResNet-20 trained on digits by `keras-resnet train`, its run dir and export."""
    result, run_dir, _ = default_run
    assert result.returncode == 0, result.stderr[-3000:]
    model, info = export.resolve_model(run_dir)
    return model, info, run_dir


@pytest.fixture(scope="session")
def digits_test():
    test, info = data.load("digits", "test", 360, training=False)
    images, labels = next(iter(test))
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="session")
def raw_digits():
    """uint8 32x32x3 test digits before normalisation, as the pipeline makes them."""
    images, labels, splits = data._digits_arrays()
    index = splits["test"][:8]
    raw = tf.image.resize(tf.repeat(images[index], 3, axis=-1), (32, 32)).numpy()
    return np.clip(np.round(raw), 0, 255).astype(np.uint8), labels[index]


def test_train_stores_preprocessing_in_the_keras_file_and_exports(trained):
    model, info, run_dir = trained
    assert info.name == "digits" and info.class_names == [str(i) for i in range(10)]
    _, fresh = data.load("digits", "train", 32)
    assert info.to_config() == fresh.to_config()  # the training preprocessing, mean image included
    assert info.mean.shape == (32, 32, 3)
    assert os.path.exists(os.path.join(run_dir, "export", "resnet20", "1", "saved_model.pb"))
    assert os.path.exists(os.path.join(run_dir, "export", "resnet20", "tflite", "model_float32.tflite"))


def test_saved_model_signatures_match_the_keras_model(trained, digits_test, raw_digits, tmp_path):
    model, info, _ = trained
    path = export.export_saved_model(model, str(tmp_path), model_name="digits", version=3,
                                     preprocessing=info)
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


def test_saved_model_cli_lists_the_three_signatures(trained):
    _, _, run_dir = trained
    path = os.path.join(run_dir, "export", "resnet20", "1")
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for signature in ("serving_default", "serving_images", "serving_bytes"):
        assert f"signature_def['{signature}']" in result.stdout
    assert "top_k_labels" in result.stdout and "DT_STRING" in result.stdout


def test_saved_model_loads_where_keras_resnet_cannot_be_imported(trained, raw_digits, tmp_path):
    _, _, run_dir = trained
    path = os.path.join(run_dir, "export", "resnet20", "1")
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
        print("TOP1", ",".join(str(i) for i in out["top_k_indices"].numpy()[:, 0]))
        assert "keras_resnet" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = [int(i) for i in result.stdout.split("TOP1 ")[1].split(",")]
    assert np.mean(np.array(predicted) == labels) >= 0.75


@pytest.fixture(scope="session")
def tflite_files(trained, tmp_path_factory):
    model, info, _ = trained
    out = tmp_path_factory.mktemp("tflite")
    train, _ = data.load("digits", "train", 200, training=False)
    representative = next(iter(train))[0].numpy()
    return {
        q: export.tflite(model, str(out / f"m_{q}.tflite"), quantization=q,
                         representative_data=representative, preprocessing=info)
        for q in (None, "float16", "dynamic", "int8", "int8_full")
    }


def test_tflite_float32_parity(trained, tflite_files, digits_test):
    report = export.parity_report(trained[0], tflite_files[None], digits_test[0])
    assert report["max_abs_diff"] <= 1e-4 and report["top1_agreement"] == 1.0


@pytest.mark.parametrize("quantization", ["float16", "dynamic", "int8", "int8_full"])
def test_tflite_quantized_parity_and_size(trained, tflite_files, digits_test, quantization):
    report = export.parity_report(trained[0], tflite_files[quantization], digits_test[0])
    float_size = os.path.getsize(tflite_files[None])
    assert report["top1_agreement"] >= 0.98, report
    assert report["size_bytes"] < 0.6 * float_size
    if quantization.startswith("int8"):
        assert report["size_bytes"] <= 0.30 * float_size, report
    print(quantization, report)


def test_tflite_bad_arguments(trained, tmp_path):
    with pytest.raises(ValueError, match=r"`quantization`.*'int4'"):
        export.tflite(trained[0], str(tmp_path / "m.tflite"), quantization="int4")
    with pytest.raises(ValueError, match="representative_data"):
        export.tflite(trained[0], str(tmp_path / "m.tflite"), quantization="int8")


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


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "tflite"])
def test_predict_command_on_every_format(trained, tflite_files, digit_pngs, fmt):
    _, _, run_dir = trained
    model = {
        "keras": os.path.join(run_dir, "model.keras"),
        "saved_model": os.path.join(run_dir, "export", "resnet20", "1"),
        "tflite": os.path.join(run_dir, "export", "resnet20", "tflite", "model_float32.tflite"),
    }[fmt]
    paths, labels = digit_pngs
    result = subprocess.run(["keras-resnet", "predict", model, *paths, "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads(result.stdout)
    assert [p["image"] for p in predictions] == paths
    assert all(len(p["top_k"]) == 5 for p in predictions)
    top1 = [int(p["top_k"][0]["label"]) for p in predictions]
    assert np.mean(np.array(top1) == labels) >= 0.75
    if fmt == "keras":  # the human-readable form: the path, then five "score label" lines
        text = subprocess.run(["keras-resnet", "predict", model, paths[0]], capture_output=True, text=True, timeout=300)
        lines = text.stdout.splitlines()
        assert lines[0] == paths[0] and len(lines) == 6
        assert lines[1].split()[1] == predictions[0]["top_k"][0]["label"]


def test_predict_rejects_a_file_that_is_not_an_image(trained, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    result = subprocess.run(["keras-resnet", "predict", os.path.join(trained[2], "model.keras"), str(bad)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "notes.png" in result.stderr and "not a readable" in result.stderr


def test_export_command_writes_exports_and_prints_parity(trained, tmp_path):
    _, _, run_dir = trained
    result = subprocess.run(
        ["keras-resnet", "export", run_dir, "--format", "saved_model,tflite", "--quantize", "int8",
         "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(tmp_path / "resnet20" / "1" / "saved_model.pb")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("model_")}
    assert set(rows) == {"model_float32.tflite", "model_int8.tflite"}
    assert float(rows["model_float32.tflite"][1]) <= 1e-4
    assert float(rows["model_int8.tflite"][2].rstrip("%")) >= 98.0


def test_a_mixed_precision_model_exports_in_float32(tmp_path, digits_test):
    # ImageNet nets train in mixed_bfloat16 on CPUs with native bfloat16 (the fast path);
    # TFLite cannot convert bfloat16 compute, so exports use a float32 copy of the weights.
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = keras_resnet.CifarResNet(8, input_shape=(32, 32, 3), classes=10, width_multiplier=0.5)
    keras.config.set_dtype_policy("float32")
    assert mixed.layers[1].compute_dtype == "bfloat16"
    copy = export.float32_model(mixed)
    assert {layer.compute_dtype for layer in copy._flatten_layers()} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), mixed.get_weights()))
    assert export.float32_model(copy) is copy
    images = digits_test[0][:16]
    reference = copy.predict(images, verbose=0)
    np.testing.assert_allclose(mixed.predict(images, verbose=0), reference, atol=2e-2)
    path = export.tflite(mixed, str(tmp_path / "mixed.tflite"))
    report = export.parity_report(copy, path, images)
    assert report["max_abs_diff"] < 1e-4 and report["top1_agreement"] == 1.0
    saved = export.export_saved_model(mixed, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(saved)
    probabilities = loaded.signatures["probabilities"]
    out = list(probabilities(tf.constant(images)).values())[0].numpy()
    np.testing.assert_allclose(out, reference, atol=1e-5)
