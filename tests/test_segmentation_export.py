"""Segmentation models through export, parity, predict and serve.

One FCN-ResNet-18 (11 classes, 64x64, aux head; randomised batch-norm statistics so that its
masks hold several classes) carries the digit scenes' preprocessing; its masks from every path
are compared with the Keras model's argmax on the same images. Exports run with
``pytest --all``; the fast tier checks what refuses before exporting.
"""

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap

import httpx
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_resnet
from harness import randomise_batch_norm
from keras_resnet import data, export, serving
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.cli import main
from keras_resnet.export.masks import is_segmentation, segment_files
from keras_resnet.export.saved_model import read_export_task

CLASSES = 11


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    """(model without aux head, its .keras file, the digit scenes' preprocessing)."""
    keras.utils.set_random_seed(0)
    _, info = data.load_segmentation("digit_scenes", "test", 8)
    model = keras_resnet.FCN("resnet8", classes=CLASSES, input_shape=(64, 64, 3),
                             output_stride=None, aux=True)
    model = randomise_batch_norm(preprocessing_lib.attach(model, info.preprocessing), seed=0)
    path = str(tmp_path_factory.mktemp("segmenter") / "fcn.keras")
    keras_resnet.save_model(model, path)
    return keras_resnet.heads.without_aux(model), path, info.preprocessing


@pytest.fixture(scope="module")
def scenes(segmenter):
    """Eight uint8 digit scenes (64x64x3), as the data set's test split holds them."""
    _, _, preprocessing = segmenter
    dataset, _ = data.load_segmentation("digit_scenes", "test", 8, preprocessing=preprocessing)
    images = next(iter(dataset))[0].numpy()
    return np.clip(np.round((images + preprocessing.mean) * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def every_format(segmenter, tmp_path_factory):
    """``export_run`` of the segmenter to every format, float32 and int8."""
    return export.export_run(segmenter[1], str(tmp_path_factory.mktemp("exports")),
                             export.FORMATS, (None, "int8"))


@pytest.fixture(scope="module")
def saved_model(every_format):
    """The SavedModel of ``every_format`` (version 1): the tests below read it, converted once."""
    return every_format["saved_model"]


def keras_masks(segmenter, images):
    model, _, preprocessing = segmenter
    logits = model.predict(data.normalize(images, preprocessing).numpy(), verbose=0)
    return logits.argmax(axis=-1).astype(np.uint8), logits


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow  # a SavedModel export: `pytest --all`
def test_saved_model_masks_equal_the_keras_argmax(segmenter, scenes, saved_model):
    loaded = tf.saved_model.load(saved_model)
    assert set(loaded.signatures) == {"serving_default", "serving_logits", "serving_bytes",
                                      "logits"}
    expected, logits = keras_masks(segmenter, scenes)
    assert len(np.unique(expected)) >= 3  # the masks are not one class
    out = loaded.signatures["serving_default"](images=tf.constant(scenes))
    mask = out["mask"].numpy()
    assert mask.dtype == np.uint8 and mask.shape == (8, 64, 64)
    np.testing.assert_array_equal(mask, expected)  # every pixel
    shares = out["class_shares"].numpy()
    counts = np.stack([np.bincount(m.ravel(), minlength=CLASSES) for m in expected])
    np.testing.assert_allclose(shares, counts / 64 / 64, atol=1e-6)
    pngs = [np.asarray(Image.open(io.BytesIO(b)))for b in out["mask_png_bytes"].numpy()]
    np.testing.assert_array_equal(np.stack(pngs), expected)
    with_logits = loaded.signatures["serving_logits"](images=tf.constant(scenes))
    np.testing.assert_allclose(with_logits["logits"].numpy(), logits, atol=1e-4)
    metadata = export.read_export_metadata(saved_model)
    assert metadata["task"]["kind"] == "segmentation" and metadata["ignore_label"] == 255
    assert metadata["class_names"] == ["background"] + [str(i) for i in range(10)]
    assert read_export_task(saved_model).classes == CLASSES
    assert is_segmentation(saved_model) and is_segmentation(segmenter[1])


@pytest.mark.slow  # a SavedModel export: `pytest --all`
def test_bytes_signature_answers_each_image_at_its_own_size(segmenter, scenes, saved_model):
    loaded = tf.saved_model.load(saved_model)
    odd = np.asarray(Image.fromarray(scenes[0]).resize((70, 50), Image.BILINEAR))
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([png(odd), png(scenes[1])]))
    assert out["image_size"].numpy().tolist() == [[50, 70], [64, 64]]
    masks = [np.asarray(Image.open(io.BytesIO(b))) for b in out["mask_png_bytes"].numpy()]
    assert masks[0].shape == (50, 70) and masks[1].shape == (64, 64)
    np.testing.assert_array_equal(masks[1], keras_masks(segmenter, scenes[1:2])[0][0])
    # By hand, as the data's evaluation pipeline fits an image: 50x70 resized to 46x64
    # (antialiased), padded with 0 to 64x64; the logits of the 46x64 region back to 50x70.
    fitted = tf.image.resize(odd[None].astype(np.float32), (46, 64), antialias=True)
    padded = np.pad(fitted.numpy(), [(0, 0), (0, 18), (0, 0), (0, 0)])
    logits = keras_masks(segmenter, padded)[1][:, :46]
    expected = tf.image.resize(logits, (50, 70)).numpy().argmax(axis=-1)[0]
    np.testing.assert_array_equal(masks[0], expected)
    np.testing.assert_allclose(out["class_shares"].numpy().sum(axis=1), 1, rtol=1e-6)


@pytest.mark.slow  # a fresh process, files, a server: end to end
def test_saved_model_runs_where_keras_resnet_cannot_be_imported(segmenter, scenes, saved_model,
                                                                tmp_path):
    np.save(tmp_path / "scenes.npy", scenes)
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "keras_resnet":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({saved_model!r})
        scenes = np.load({str(tmp_path / 'scenes.npy')!r})
        np.save("masks.npy", loaded.signatures["serving_default"](images=tf.constant(scenes))["mask"].numpy())
        assert "keras_resnet" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "masks.npy"), keras_masks(segmenter, scenes)[0])


@pytest.mark.slow
def test_export_run_every_format_and_int8(every_format):
    result = every_format
    rows = [row for row in result["parity"] if row["precision"] == "float32"]
    assert len(rows) == 7  # the SavedModel, float32 and int8 of each file format
    assert {"fcn_resnet8/1", "model_float32.tflite"} <= {row["file"] for row in rows}
    for row in rows:  # pixels counted, not images
        assert "top1_agreement" not in row and row["images"] == 360, row
        if row["quantization"] is None:  # measured: 1.0, OpenVINO 0.9999993; |diff| <= 1e-4
            assert row["pixel_agreement"] >= 0.9999 and row["max_abs_diff"] < 1e-3, row
        else:  # measured on this random-BN model: 0.942 (TFLite, ONNX), 0.949 (OpenVINO)
            assert row["pixel_agreement"] >= 0.9, row
    sidecar = export.read_sidecar(result["tflite"][0])
    assert sidecar["task"].segmentation and sidecar["outputs"] == "logits"
    for fmt in ("onnx", "openvino"):
        assert all(export.read_sidecar(p)["outputs"] == "logits" for p in result[fmt])
    assert "pixel agree" in export.format_parity(result["parity"]).splitlines()[0]


@pytest.mark.slow  # a fresh process, files, a server: end to end
def test_predict_writes_palette_masks_and_overlays(segmenter, scenes, saved_model, tmp_path,
                                                   monkeypatch, capsys):
    odd = np.asarray(Image.fromarray(scenes[2]).resize((70, 50), Image.BILINEAR))
    paths = []
    for name, image in (("scene.png", scenes[0]), ("odd.png", odd)):
        paths.append(str(tmp_path / name))
        Image.fromarray(image).save(paths[-1])
    monkeypatch.chdir(tmp_path)
    for model in (saved_model, segmenter[1]):
        assert main(["predict", model, *paths]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["image"] for line in lines] == paths
        for line, size in zip(lines, [(64, 64), (50, 70)]):
            with Image.open(line["mask"]) as mask, Image.open(line["overlay"]) as overlay:
                assert mask.mode == "P" and mask.size == size[::-1]
                assert overlay.mode == "RGB" and overlay.size == size[::-1]
                ids = np.asarray(mask)
            assert line["size"] == list(size)
            assert sum(line["class_shares"].values()) == pytest.approx(1)
            assert line["class_shares"]["background"] == pytest.approx(np.mean(ids == 0))
        np.testing.assert_array_equal(np.asarray(Image.open(lines[0]["mask"])),
                                      keras_masks(segmenter, scenes[:1])[0][0])
    # The same masks from the SavedModel and the .keras file, the 50x70 one included.
    from_keras = segment_files(segmenter[1], paths)
    from_saved = segment_files(saved_model, paths, precision="float32")  # not bfloat16
    for a, b in zip(from_keras, from_saved):
        np.testing.assert_array_equal(a["mask"], b["mask"])


@pytest.mark.slow  # a SavedModel export: `pytest --all`
def test_predict_refuses_classifier_flags_on_a_segmenter(saved_model, scenes, tmp_path, capsys):
    path = str(tmp_path / "scene.png")
    Image.fromarray(scenes[0]).save(path)
    assert main(["predict", saved_model, path, "--embeddings", str(tmp_path / "e.npy")]) != 0
    assert "--embeddings" in capsys.readouterr().err


@pytest.mark.slow  # a fresh process, files, a server: end to end
def test_server_answers_a_png_mask_and_class_shares(saved_model, scenes):
    export_dir = os.path.dirname(os.path.dirname(saved_model))
    expected = tf.saved_model.load(saved_model).signatures["serving_default"](
        images=tf.constant(scenes[:2]))["mask"].numpy()
    instances = [{"b64": base64.b64encode(png(image)).decode()} for image in scenes[:2]]
    with contextlib.ExitStack() as stack:
        # float32 asked for: "auto" may take bfloat16 where the export measured it faster.
        server = stack.enter_context(serving.BackgroundServer(export_dir, precision="float32"))
        client = stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
        url = "/v1/models/fcn_resnet8:predict"
        response = client.post(url, json={"signature_name": "serving_bytes",
                                          "instances": instances})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        for prediction, mask in zip(predictions, expected):
            decoded = Image.open(io.BytesIO(base64.b64decode(prediction["mask_png_bytes"]["b64"])))
            np.testing.assert_array_equal(np.asarray(decoded), mask)
            counts = np.bincount(mask.ravel(), minlength=CLASSES) / mask.size
            np.testing.assert_allclose(prediction["class_shares"], counts, atol=1e-6)
            assert prediction["image_size"] == [64, 64]
        bad = client.post(url, json={"signature_name": "serving_bytes",
                                     "instances": [{"b64": base64.b64encode(b"no image").decode()}]})
        assert bad.status_code == 400 and "\n" not in bad.json()["error"]


def test_segmentation_exports_refuse_embeddings(segmenter, tmp_path):
    with pytest.raises(ValueError, match="embeddings"):
        export.export_run(segmenter[1], str(tmp_path), ("saved_model",), embeddings=True)
    with pytest.raises(ValueError, match="embeddings"):
        export.tflite(segmenter[0], str(tmp_path / "m.tflite"), output="embeddings",
                      preprocessing=segmenter[2])
