"""Detectors through export, parity and serve.

One RetinaNet on ResNet-8 (10 classes, the digit boxes fitted to 32x32, at most 10 detections;
random batch-norm statistics and He-normal subnets, so that its scores spread over (0, 1) and
its boxes differ) carries the digit boxes' preprocessing; its detections from every path are
compared with the Keras model's on the same images. Exports run with ``pytest --all``; the fast
tier checks what refuses before exporting.
"""

import base64
import io
import os

import httpx
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_resnet
from harness import randomise_batch_norm
from keras_resnet import export, serving
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.cli import main
from keras_resnet.data.detection import load_detection
from keras_resnet.data.sources.digit_boxes import digit_boxes
from keras_resnet.export.detection import box_agreement
from keras_resnet.export.detections import detect_files

SIZE, DETECTIONS = 32, 10


def spread_scores(model, seed=0):
    """He-normal kernels in the class and box subnets (torchvision's N(0, 0.01) leaves an
    untrained detector's scores all at the prior), the class predictions scaled by 0.3 and
    the box deltas by 0.05 (larger ones clip most boxes to lines on the image's border)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        layer = variable.path.split("/")[0]
        if layer.startswith(("cls_", "box_")) and variable.path.endswith("kernel"):
            fan_in = int(np.prod(variable.shape[:-1]))
            scale = {"cls_predict": 0.3, "box_predict": 0.05}.get(layer, 1.0)
            variable.assign(rng.normal(0, scale * np.sqrt(2 / fan_in), variable.shape)
                            .astype("float32"))
    return model


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """(model, its .keras file, the digit boxes' preprocessing at 32x32, preprocessed test
    scenes)."""
    keras.utils.set_random_seed(0)
    dataset, info = load_detection("digit_boxes", "test", 8, image_size=SIZE)
    model = keras_resnet.RetinaNet("resnet8", classes=10, head_width=16,
                                   max_detections=DETECTIONS)
    model = preprocessing_lib.attach(model, info.preprocessing)
    model = spread_scores(randomise_batch_norm(model, seed=0))
    path = str(tmp_path_factory.mktemp("detector") / "retinanet.keras")
    keras_resnet.save_model(model, path)
    return model, path, info.preprocessing, next(iter(dataset))[0].numpy()


@pytest.fixture(scope="module")
def every_format(detector, tmp_path_factory):
    """``export_run`` of the detector to every format, float32 and float16. (TFLite's
    "dynamic" converts the same SavedModel with int8 weights: a classifier's in
    tests/test_export.py's test_tflite_quantized_parity_and_size[dynamic].)"""
    return export.export_run(detector[1], str(tmp_path_factory.mktemp("exports")),
                             export.FORMATS, (None, "float16"), dataset="digit_boxes")


@pytest.fixture(scope="module")
def saved_model(every_format):
    """The SavedModel of ``every_format`` (version 1): the tests below read it, converted once."""
    return every_format["saved_model"]


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_box_agreement_counts_boxes_of_the_same_class_at_iou_099():
    def found(*rows):
        boxes = np.zeros((1, 3, 4), np.float32)
        scores, classes = np.zeros((1, 3), np.float32), np.full((1, 3), -1)
        for i, (box, score, label) in enumerate(rows):
            boxes[0, i], scores[0, i], classes[0, i] = box, score, label
        return {"boxes": boxes, "scores": scores, "classes": classes,
                "num_detections": np.array([len(rows)])}

    keras_side = found(([0, 0, 100, 100], 0.9, 1), ([50, 50, 60, 60], 0.8, 2))
    # The first box moved by half a pixel (IoU 0.995), the second by 1 px (IoU 0.82).
    moved = found(([0.5, 0, 100.5, 100], 0.85, 1), ([51, 50, 61, 60], 0.8, 2))
    assert box_agreement(moved, keras_side) == pytest.approx((0.5, 0.05))
    relabelled = found(([0, 0, 100, 100], 0.9, 3), ([50, 50, 60, 60], 0.8, 2))
    assert box_agreement(relabelled, keras_side) == pytest.approx((0.5, 0.0))
    extra = found(([0, 0, 100, 100], 0.9, 1), ([50, 50, 60, 60], 0.8, 2), ([1, 1, 9, 9], .1, 0))
    assert box_agreement(extra, keras_side) == pytest.approx((0.8, 0.0))  # 2 * 2 / (3 + 2)


def test_the_detector_under_test_has_distinct_detections(detector):
    model, _, _, images = detector
    found = model.predict(images, verbose=0)
    assert (found["num_detections"] == DETECTIONS).all()
    scores = found["scores"]
    assert scores.min() > 0.05 and np.diff(scores, axis=1).max() < 0  # best first, no ties
    assert len(np.unique(found["classes"])) >= 3  # class-aware NMS at work


@pytest.mark.slow  # 2 s or more of its own
def test_detector_exports_refuse_what_would_lose_the_boxes(detector, tmp_path):
    model, path, preprocessing, images = detector
    for writer, name in ((export.tflite, "m.tflite"), (export.export_onnx, "m.onnx"),
                         (export.export_openvino, "m.xml")):
        with pytest.raises(ValueError, match="a detector in .* must be one of"):
            writer(model, str(tmp_path / name), "int8", representative_data=images)
    with pytest.raises(ValueError, match="'int8' applies to a detector in none of the formats"):
        export.export_run(path, str(tmp_path), ("onnx", "tflite", "openvino"), (None, "int8"))
    with pytest.raises(ValueError, match="embeddings"):
        export.export_run(path, str(tmp_path), ("saved_model",), embeddings=True)
    with pytest.raises(ValueError, match="detection model's file outputs its detections"):
        export.tflite(model, str(tmp_path / "m.tflite"), output="embeddings")
    raw = keras_resnet.RetinaNet("resnet8", classes=10, head_width=16, raw_outputs=True)
    with pytest.raises(ValueError, match="must return its detections"):
        export.export_saved_model(raw, str(tmp_path), preprocessing=preprocessing)
    assert not any(name.endswith((".tflite", ".onnx", ".xml")) for name in os.listdir(tmp_path))


@pytest.mark.slow  # a SavedModel export: `pytest --all`
def test_saved_model_boxes_equal_the_keras_detectors(detector, saved_model, tmp_path):
    model, path, _, images = detector
    loaded = tf.saved_model.load(saved_model)
    assert sorted(loaded.signatures) == ["detections", "serving_bytes", "serving_default"]
    got = {k: v.numpy() for k, v in loaded.signatures["detections"](images=images).items()}
    agreement, difference = box_agreement(got, model.predict(images, verbose=0))
    assert agreement == 1.0 and difference < 1e-5
    # uint8 scenes of their own size (64x64): fitted to 32x32 in the graph, boxes scaled back.
    scenes = digit_boxes("test", count=3)[0]
    out = loaded.signatures["serving_default"](images=tf.constant(scenes))
    for i, scene in enumerate(scenes):
        Image.fromarray(scene).save(tmp_path / f"scene{i}.png")
    expected = detect_files(path, [str(tmp_path / f"scene{i}.png") for i in range(3)], 0.0)
    for i, result in enumerate(expected):
        count = int(out["num_detections"][i])
        assert count == len(result["detections"]) == DETECTIONS
        np.testing.assert_allclose(out["boxes"][i].numpy(),
                                   [d["box"] for d in result["detections"]], atol=0.01)
        assert [label.decode() for label in out["labels"][i].numpy()] == [
            d["label"] for d in result["detections"]]
    assert out["boxes"].numpy().max() <= 64 and out["boxes"].numpy().max() > 32


@pytest.mark.slow  # a SavedModel export: `pytest --all`
def test_bytes_signature_finds_boxes_in_each_images_own_pixels(saved_model):
    loaded = tf.saved_model.load(saved_model)
    scene = digit_boxes("test", count=1)[0][0]
    wide = np.asarray(Image.fromarray(scene).resize((96, 48), Image.BILINEAR))
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([png(wide), png(scene)]))
    assert out["image_size"].numpy().tolist() == [[48, 96], [64, 64]]
    for i, image in enumerate((wide, scene)):
        alone = loaded.signatures["serving_default"](images=tf.constant(image[None]))
        for key in ("boxes", "scores", "classes", "num_detections"):
            np.testing.assert_allclose(out[key][i].numpy(), alone[key][0].numpy(), atol=1e-4)
    boxes = out["boxes"].numpy()
    assert boxes[0][:, [0, 2]].max() <= 96 and boxes[0][:, [1, 3]].max() <= 48


@pytest.mark.slow
def test_export_run_every_format_keeps_the_keras_boxes(detector, every_format):
    result = every_format
    rows = {(row["file"], row["precision"]): row for row in result["parity"]}
    files = {name for name, _ in rows}
    assert files == {"retinanet_resnet8/1", "model_float32.tflite", "model_float16.tflite",
                     "model_float32.onnx", "model_float32.xml"}
    for (_, precision), row in rows.items():
        assert "top1_agreement" not in row and row["images"] == export.run.DETECTOR_PARITY_IMAGES
        # Measured (AVX-512 EPYC): float32 1.0 everywhere, float16 0.992, OpenVINO run in
        # bfloat16 0.953.
        if row["quantization"] is None and precision == "float32":
            assert row["box_agreement"] >= 0.99 and row["max_abs_diff"] < 1e-4, row
        elif row["quantization"] == "float16":
            assert row["box_agreement"] >= 0.9, row
        else:  # bfloat16 arithmetic: most boxes still found
            assert row["box_agreement"] >= 0.3, row
    onnx_runner = export.open_runner(result["onnx"][0])
    found = onnx_runner(detector[3])
    assert sorted(found) == ["boxes", "classes", "num_detections", "scores"]
    assert found["boxes"].shape == (len(detector[3]), DETECTIONS, 4)
    sidecar = export.read_sidecar(result["onnx"][0])
    assert sidecar["task"].detection and sidecar["outputs"] == "detections"
    assert sidecar["output"] == ["boxes", "scores", "classes", "num_detections"]
    assert "box agree" in export.format_parity(result["parity"]).splitlines()[0]


@pytest.mark.slow  # a server: end to end
def test_server_answers_boxes_with_their_labels(saved_model):
    export_dir = os.path.dirname(os.path.dirname(saved_model))
    scenes = digit_boxes("test", count=2)[0]
    expected = tf.saved_model.load(saved_model).signatures["serving_default"](
        images=tf.constant(scenes))
    instances = [{"b64": base64.b64encode(png(image)).decode()} for image in scenes]
    # float32 asked for: "auto" may take bfloat16 where the export measured it faster.
    with serving.BackgroundServer(export_dir, precision="float32") as server, httpx.Client(
            base_url=server.url, timeout=60) as client:
        response = client.post("/v1/models/retinanet_resnet8:predict",
                               json={"signature_name": "serving_bytes", "instances": instances})
        assert response.status_code == 200, response.text
        for i, prediction in enumerate(response.json()["predictions"]):
            np.testing.assert_allclose(prediction["boxes"], expected["boxes"][i].numpy(),
                                       atol=1e-4)
            assert prediction["labels"] == [v.decode() for v in expected["labels"][i].numpy()]
            assert prediction["num_detections"] == DETECTIONS
            assert prediction["image_size"] == [64, 64]
        metadata = client.get("/v1/models/retinanet_resnet8/metadata").json()
        outputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"][
            "outputs"]
        assert sorted(outputs) == ["boxes", "classes", "labels", "num_detections", "scores"]


@pytest.mark.slow  # a SavedModel export: `pytest --all`
def test_predict_finds_the_same_boxes_in_an_export(detector, saved_model, tmp_path, capsys):
    scenes = digit_boxes("test", count=2)[0]
    paths = []
    for i, scene in enumerate(scenes):
        paths.append(str(tmp_path / f"scene{i}.png"))
        Image.fromarray(scene).save(paths[-1])
    from_keras = detect_files(detector[1], paths, 0.3)
    from_export = detect_files(saved_model, paths, 0.3, precision="float32")  # not bfloat16
    for keras_result, export_result in zip(from_keras, from_export):
        assert len(keras_result["detections"]) == len(export_result["detections"]) > 0
        for a, b in zip(keras_result["detections"], export_result["detections"]):
            assert (a["class"], a["label"]) == (b["class"], b["label"])
            np.testing.assert_allclose(a["box"], b["box"], atol=0.02)
    with pytest.raises(ValueError, match="is a detector"):
        export.predict_files(saved_model, paths)
    assert main(["predict", saved_model, *paths, "--output-dir", str(tmp_path / "boxes"),
                 "--score-threshold", "0.3"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(printed) == 2 and os.path.exists(tmp_path / "boxes" / "scene0_boxes.png")
    # --precision reaches the detector's runner: Keras has no bfloat16 path to take.
    assert main(["predict", detector[1], paths[0], "--precision", "bfloat16"]) == 2
    assert "`precision='bfloat16'`: Keras" in capsys.readouterr().err
