"""keras_resnet.serving: a real uvicorn server on 127.0.0.1, driven over HTTP with httpx.

One export (CifarResNet(8), 10 classes) is written per session; the server's answers are
compared with the SavedModel's signatures called in this process. Hostile clients (image
bombs, idle and slow connections, odd versions and ports) meet a server in a subprocess under
memory and open-file limits; every wait is bounded.
"""

import base64
import concurrent.futures
import functools
import hashlib
import io
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

import httpx
import numpy as np
import pytest
import sklearn.datasets
import tensorflow as tf
from PIL import Image

import keras_resnet
from keras_resnet import export, serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "export", "client.py")
CHINA = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
LIMITS = dict(max_image_bytes=300_000, max_image_pixels=300_000, max_batch=8,
              max_request_bytes=6 * 2**20, max_image_frames=50, max_request_pixels=600_000)


def encode(array, fmt="PNG", mode=None):
    """Encoded bytes of a uint8 array (h, w) or (h, w, c)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8), mode).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


def save(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


GIF_PALETTE = [0, 0, 0, 255, 255, 255, 200, 30, 10, 10, 200, 30]


def gif(frames, screen=None):
    """A GIF of ``frames``, each (width, height, colour index): every distinct frame is encoded
    once by PIL (a solid colour: a few kB even at 4096x4096) and the bytes are spliced."""
    encoded, parts = {}, []
    for frame in frames:
        if frame not in encoded:
            width, height, colour = frame
            image = Image.new("P", (width, height), colour)
            image.putpalette(GIF_PALETTE)
            data = save(image, "GIF", optimize=False)
            start = data.index(b"\x2c" + struct.pack("<HHHH", 0, 0, width, height))
            encoded[frame] = data[:start], data[start:-1]  # header; descriptor and data
        parts.append(encoded[frame][1])
    header = encoded[frames[0]][0]
    if screen is not None:
        header = header[:6] + struct.pack("<HH", *screen) + header[10:]
    return header + b"".join(parts) + b";"


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    """``digits`` versions 1 and 2 (same weights) and a second model ``other``."""
    root = tmp_path_factory.mktemp("exports")
    model = keras_resnet.CifarResNet(8, classes=10)
    keras_resnet.save_model(model, str(root / "model.keras"))  # not a servable: no version folder
    export.export_saved_model(model, str(root), model_name="digits", version=1)
    shutil.copytree(root / "digits" / "1", root / "digits" / "2")
    shutil.copytree(root / "digits", root / "other")
    return root


@pytest.fixture(scope="session")
def reference(export_dir):
    """The served SavedModel's signatures, called in this process."""
    return tf.saved_model.load(str(export_dir / "digits" / "2")).signatures


@pytest.fixture(scope="session")
def server(export_dir):
    with serving.BackgroundServer(str(export_dir), **LIMITS) as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def china():
    with open(CHINA, "rb") as f:
        return f.read()


def predict(client, body, path="/v1/models/digits:predict"):
    return client.post(path, json=body)


def assert_matches(outputs, expected, atol=1e-5):
    """Server outputs (dict of lists) equal the in-process signature's tensors."""
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), atol=atol)
    np.testing.assert_allclose(outputs["top_k_scores"], expected["top_k_scores"].numpy(), atol=atol)
    assert np.array_equal(outputs["top_k_indices"], expected["top_k_indices"].numpy())
    labels = [[label.decode() for label in row] for row in expected["top_k_labels"].numpy()]
    assert outputs["top_k_labels"] == labels


def rows_to_columns(predictions):
    return {name: [row[name] for row in predictions] for name in predictions[0]}


# ---------------------------------------------------------------------------------------------
# Status and metadata


def test_status_lists_the_latest_version_as_tensorflow_serving_does(client):
    expected = {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]}
    assert client.get("/v1/models/digits").json() == expected
    assert client.get("/v1/models/digits/versions/2").json() == expected
    assert client.get("/v1/models/other").json() == expected
    # Default version policy "latest", like TensorFlow Serving: version 1 is not served.
    response = client.get("/v1/models/digits/versions/1")
    assert response.status_code == 404 and "version 1" in response.json()["error"]


def test_metadata_describes_every_signature(client):
    for path in ("/v1/models/digits/metadata", "/v1/models/digits/versions/2/metadata"):
        metadata = client.get(path).json()
        assert metadata["model_spec"] == {"name": "digits", "signature_name": "", "version": "2"}
        defs = metadata["metadata"]["signature_def"]["signature_def"]
        assert {"serving_default", "serving_images", "serving_bytes", "probabilities",
                "embeddings", "embeddings_images", "grad_cam"} <= set(defs)

        def dims(tensor):
            return [int(d["size"]) for d in tensor["tensor_shape"]["dim"]]

        images = defs["serving_default"]["inputs"]["images"]
        assert images["dtype"] == "DT_FLOAT" and dims(images) == [-1, 32, 32, 3]
        assert images["name"].endswith(":0")
        assert defs["serving_images"]["inputs"]["images"]["dtype"] == "DT_UINT8"
        assert dims(defs["serving_images"]["inputs"]["images"]) == [-1, -1, -1, -1]
        image_bytes = defs["serving_bytes"]["inputs"]["image_bytes"]
        assert image_bytes["dtype"] == "DT_STRING" and dims(image_bytes) == [-1]
        outputs = defs["serving_bytes"]["outputs"]
        assert {k: v["dtype"] for k, v in outputs.items()} == {
            "probabilities": "DT_FLOAT", "top_k_indices": "DT_INT32",
            "top_k_scores": "DT_FLOAT", "top_k_labels": "DT_STRING",
        }
        assert dims(outputs["probabilities"]) == [-1, 10] and dims(outputs["top_k_labels"]) == [-1, 5]
        assert defs["serving_bytes"]["method_name"] == "tensorflow/serving/predict"
        assert list(defs["probabilities"]["outputs"]) == ["probabilities"]
        grad_cam = defs["grad_cam"]
        assert dims(grad_cam["inputs"]["image_bytes"]) == [-1]
        assert {k: (v["dtype"], dims(v)) for k, v in grad_cam["outputs"].items()} == {
            "heatmaps": ("DT_FLOAT", [-1, 32, 32]), "class_indices": ("DT_INT32", [-1]),
            "class_labels": ("DT_STRING", [-1]), "scores": ("DT_FLOAT", [-1]),
            "overlay_png_bytes": ("DT_STRING", [-1]),
        }


# ---------------------------------------------------------------------------------------------
# Predict: each signature in row and columnar form, compared with the SavedModel


def test_serving_default_rows_and_columns(client, reference):
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = reference["serving_default"](images=tf.constant(images))
    rows = predict(client, {"instances": images.tolist()})  # no signature_name: serving_default
    assert rows.status_code == 200
    predictions = rows.json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == set(expected)
    assert_matches(rows_to_columns(predictions), expected)
    columns = predict(client, {"signature_name": "serving_default", "inputs": {"images": images.tolist()}})
    assert_matches(columns.json()["outputs"], expected)
    bare = predict(client, {"signature_name": "serving_default", "inputs": images.tolist()})
    assert_matches(bare.json()["outputs"], expected)
    named_rows = predict(client, {"instances": [{"images": image} for image in images.tolist()]})
    assert_matches(rows_to_columns(named_rows.json()["predictions"]), expected)


def test_serving_images_rows_and_columns(client, reference):
    pixels = np.random.default_rng(1).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    expected = reference["serving_images"](images=tf.constant(pixels))
    rows = predict(client, {"signature_name": "serving_images", "instances": pixels.tolist()})
    assert rows.status_code == 200, rows.text
    assert_matches(rows_to_columns(rows.json()["predictions"]), expected)
    columns = predict(client, {"signature_name": "serving_images", "inputs": {"images": pixels.tolist()}})
    assert_matches(columns.json()["outputs"], expected)


def test_serving_bytes_b64_jpeg_rows_and_columns(client, reference, china):
    expected = reference["serving_bytes"](image_bytes=tf.constant([china, china]))
    rows = predict(client, {"signature_name": "serving_bytes", "instances": [b64(china), b64(china)]})
    assert rows.status_code == 200, rows.text
    assert_matches(rows_to_columns(rows.json()["predictions"]), expected)
    columns = predict(
        client, {"signature_name": "serving_bytes", "inputs": {"image_bytes": [b64(china), b64(china)]}}
    )
    assert_matches(columns.json()["outputs"], expected)
    versioned = client.post(
        "/v1/models/other/versions/2:predict",
        json={"signature_name": "serving_bytes", "instances": [{"image_bytes": b64(china)}]},
    )
    assert versioned.status_code == 200
    top = versioned.json()["predictions"][0]
    assert top["top_k_labels"] == [str(i) for i in top["top_k_indices"]]  # labels are class names


def test_single_output_signature_returns_bare_values(client, reference):
    images = np.full((2, 32, 32, 3), 0.25, np.float32)
    expected = reference["probabilities"](images=tf.constant(images))["probabilities"].numpy()
    rows = predict(client, {"signature_name": "probabilities", "instances": images.tolist()}).json()
    np.testing.assert_allclose(rows["predictions"], expected, atol=1e-5)  # list of lists, no names
    columns = predict(client, {"signature_name": "probabilities", "inputs": images.tolist()}).json()
    np.testing.assert_allclose(columns["outputs"], expected, atol=1e-5)


def test_embeddings_signatures_answer_by_signature_name(client, reference, export_dir):
    """The pooled features, beside the predictions: what the Keras model's embedding_model
    computes, for preprocessed floats and for raw pixels."""
    images = np.random.default_rng(3).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = reference["embeddings"](images=tf.constant(images))["embeddings"].numpy()
    assert expected.shape == (2, 64)  # ResNet-8's conv4 channels, pooled
    rows = predict(client, {"signature_name": "embeddings", "instances": images.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(rows.json()["predictions"], expected, atol=1e-5)
    pixels = np.random.default_rng(4).integers(0, 256, (1, 20, 24, 3), dtype=np.uint8)
    raw = predict(client, {"signature_name": "embeddings_images", "inputs": pixels.tolist()})
    assert raw.status_code == 200, raw.text
    np.testing.assert_allclose(
        raw.json()["outputs"],
        reference["embeddings_images"](images=tf.constant(pixels))["embeddings"].numpy(), atol=1e-5,
    )
    keras_model = keras_resnet.load_model(export_dir / "model.keras")
    np.testing.assert_allclose(expected, keras_resnet.embedding_model(keras_model)(images), atol=1e-5)


def test_grad_cam_answers_over_rest_as_the_signature_does(client, reference, china):
    response = predict(client, {"signature_name": "grad_cam", "instances": [b64(china)]})
    assert response.status_code == 200, response.text
    (answer,) = response.json()["predictions"]
    expected = reference["grad_cam"](image_bytes=tf.constant([china]))
    np.testing.assert_allclose(answer["heatmaps"], expected["heatmaps"].numpy()[0], atol=1e-6)
    assert answer["class_indices"] == int(expected["class_indices"].numpy()[0])
    assert answer["class_labels"] == expected["class_labels"].numpy()[0].decode()
    overlay = base64.b64decode(answer["overlay_png_bytes"]["b64"])  # "_bytes": always base64
    assert overlay == expected["overlay_png_bytes"].numpy()[0]
    assert Image.open(io.BytesIO(overlay)).size == Image.open(io.BytesIO(china)).size


# ---------------------------------------------------------------------------------------------
# The web page at GET / (a browser drives it in tests/test_web_page.py)


def _page_models(page):
    return json.loads(re.search(r'<script type="application/json" id="models">(.*?)</script>',
                                page, re.S).group(1))


def test_the_page_is_one_self_contained_document(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page, policy = response.text, response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "img-src data:" in policy  # nothing but the page itself and its own API
    tags = re.findall(r"""<[a-z]+\b[^>]*?\s(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert tags == ["data:,"]  # the icon; the script sets data: images
    assert "http:" not in page and "https:" not in page and "@import" not in page
    for tag in ("script", "style"):  # each inline block is the one the policy allows
        for body in re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S):
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy
    models = _page_models(page)
    assert [(m["id"], m["url"], m["kind"], m["grad_cam"]) for m in models] == [
        ("digits/2", "/v1/models/digits/versions/2:predict", "classification", True),
        ("other/2", "/v1/models/other/versions/2:predict", "classification", True)]
    assert models[0]["class_names"] == [str(i) for i in range(10)] and models[0]["stage"] == "conv4"
    assert 'data-model="digits/2"' in page and "single-label classifier, 10 classes" in page


def _run_layout(export_dir, root, saved_model):
    """``root/export/digits/1`` (a copy of the served export), with the run.json of a run
    that exported ``saved_model`` beside it and an ONNX file's sidecar."""
    shutil.copytree(export_dir / "digits" / "2", root / "export" / "digits" / "1")
    (root / "export" / "digits" / "onnx").mkdir()
    sidecar = {"format": "onnx", "quantization": "int8", "preprocessing": {}}
    (root / "export" / "digits" / "onnx" / "model_int8.onnx.json").write_text(json.dumps(sidecar))
    run = {"test": {"top1": 0.9412, "top5": 0.99, "loss": 0.25, "per_class": [1, 2]},
           "export": {"saved_model": saved_model, "parity": [
               {"file": "digits/1", "runtime": "TensorFlow", "precision": "float32",
                "max_abs_diff": 3e-7, "top1_agreement": 1.0}]}}
    (root / "run.json").write_text(json.dumps(run))
    return serving.load_servable("digits", 1, str(root / "export" / "digits" / "1"))


def test_a_card_shows_what_the_export_and_its_run_recorded(export_dir, tmp_path):
    from keras_resnet.serving.card import model_card

    servable = _run_layout(export_dir, tmp_path, "runs/r8/export/digits/1")
    card = model_card(servable, str(tmp_path / "export"))
    rows = dict(card["rows"])
    assert rows["Task"] == "single-label classifier, 10 classes"
    assert rows["Input"] == "32x32, 3 channel(s), rgb" and rows["Normalisation"] == "pixels / 255"
    assert rows["Classes"] == "10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    assert rows["Grad-CAM"] == "top class, stage conv4 (layer conv4_block1)"
    assert rows["Precision"] == "float32"  # no bfloat16 figures recorded: float32
    assert card["metrics"] == [
        ("Test split (the run's run.json)",
         [("top1", "0.9412"), ("top5", "0.99"), ("loss", "0.25")]),
        ("Parity with the Keras model",
         [("digits/1 (TensorFlow, float32)", "top-1 agreement 1.0000, max abs diff 3e-07")]),
        ("Files exported beside it", [("onnx/model_int8.onnx", "int8")])]
    # A run.json of another version says nothing of this one; the sidecars still do.
    other = _run_layout(export_dir, tmp_path / "other", "runs/r8/export/digits/7")
    assert model_card(other, str(tmp_path / "other" / "export"))["metrics"] == [
        ("Files exported beside it", [("onnx/model_int8.onnx", "int8")])]


def test_a_savedmodel_without_metadata_gets_a_card_saying_so(export_dir, tmp_path):
    from keras_resnet.serving.card import model_card
    from keras_resnet.serving.page import render_page

    shutil.copytree(export_dir / "digits" / "2", tmp_path / "plain" / "1")
    os.remove(tmp_path / "plain" / "1" / export.METADATA_FILE)
    servable = serving.load_servable("plain", 1, str(tmp_path / "plain" / "1"))
    card = model_card(servable, str(tmp_path))
    assert card["kind"] is None and card["title"] == "plain (no keras_resnet metadata)"
    (model,) = _page_models(render_page([card])[0])
    assert not model["classifier"] and "no keras_resnet metadata" in model["notice"]
    segmenter = {**card, "kind": "segmentation", "name": "roads"}
    (model,) = _page_models(render_page([segmenter])[0])
    assert model["notice"] == (
        "This page shows classifiers; roads is a segmentation model: ask its REST API "
        "(POST /v1/models/roads/versions/1:predict) for its outputs.")


def test_odd_but_valid_images(client, reference, china):
    rng = np.random.default_rng(2)
    images = [
        encode([[[200, 10, 30]]]),  # 1x1 RGB PNG
        encode(rng.integers(0, 256, (17, 9), dtype=np.uint8)),  # grayscale PNG for an RGB model
        encode(rng.integers(0, 256, (12, 30, 4), dtype=np.uint8), mode="RGBA"),  # RGBA PNG
        encode(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "BMP"),
        encode(rng.integers(0, 256, (8, 8), dtype=np.uint8), "GIF"),
        china,  # a 640x427 JPEG in the same batch as the others: mixed sizes
    ]
    response = predict(client, {"signature_name": "serving_bytes", "instances": [b64(i) for i in images]})
    assert response.status_code == 200, response.text
    expected = reference["serving_bytes"](image_bytes=tf.constant(images))
    assert_matches(rows_to_columns(response.json()["predictions"]), expected)

    for shape in [(1, 1, 1, 1), (1, 5, 7, 1), (1, 6, 6, 4)]:  # 1x1, grayscale, RGBA pixels
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        response = predict(client, {"signature_name": "serving_images", "inputs": pixels.tolist()})
        assert response.status_code == 200, response.text
        assert_matches(response.json()["outputs"], reference["serving_images"](images=tf.constant(pixels)))


# Image encodings TensorFlow's decoders get wrong or refuse are served as their pixels: each
# case is (encoded bytes, the RGB pixels it holds), the pixels worked out here from how the
# file was built, not by a decoder; None for lossy JPEGs, served as TensorFlow decodes them.

RNG = np.random.default_rng(7)
PALETTE = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
INDICES = RNG.integers(0, 16, (9, 13), dtype=np.uint8)  # 9 rows of 13 pixels: odd row padding


def bmp(width, height, bits, pixel_data, palette=b"", compression=0, core_header=False):
    """A BMP file: BITMAPINFOHEADER (or the 12-byte OS/2 one), palette, pixel data as given."""
    if core_header:
        header = struct.pack("<IHHHH", 12, width, height, 1, bits)
    else:
        header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression,
                             len(pixel_data), 2835, 2835, len(palette) // 4, 0)
    offset = 14 + len(header) + len(palette)
    return (b"BM" + struct.pack("<IHHI", offset + len(pixel_data), 0, 0, offset) + header
            + palette + pixel_data)


def bmp_rows(rows):
    """Rows of packed bytes, bottom-up, each padded to 4 bytes."""
    return b"".join(row + b"\0" * (-len(row) % 4) for row in rows[::-1])


def bgr0_palette(colours):
    return b"".join(bytes([b, g, r, 0]) for r, g, b in colours)


def palette_bmp(bits):
    indices = INDICES & ((1 << bits) - 1)
    per_byte = 8 // bits
    rows = []
    for row in indices:
        padded = np.concatenate([row, np.zeros(-len(row) % per_byte, np.uint8)])
        packed = [sum(int(v) << (8 - bits * (i + 1)) for i, v in enumerate(group))
                  for group in padded.reshape(-1, per_byte)]
        rows.append(bytes(packed))
    colours = PALETTE[: 1 << bits]
    data = bmp(13, 9, bits, bmp_rows(rows), bgr0_palette(colours))
    return data, colours[indices]


def rle8_bmp():
    rows = b"".join(  # each row as runs of one pixel (count 1, index), then end of line
        b"".join(bytes([1, int(v)]) for v in row) + b"\x00\x00" for row in INDICES[::-1]
    )
    data = bmp(13, 9, 8, rows + b"\x00\x01", bgr0_palette(PALETTE), compression=1)
    return data, PALETTE[INDICES]


def rgb555_bmp():
    levels = (PALETTE[INDICES] >> 3).astype(np.uint16)  # 5 bits a channel
    rows = [b"".join(struct.pack("<H", r << 10 | g << 5 | b) for r, g, b in row.tolist())
            for row in levels]
    return bmp(13, 9, 16, bmp_rows(rows)), (levels * 255 // 31).astype(np.uint8)


def os2_bmp():
    pixels = PALETTE[INDICES]
    rows = [row[:, ::-1].tobytes() for row in pixels]  # BGR
    return bmp(13, 9, 24, bmp_rows(rows), core_header=True), pixels


def png16(array):
    """A 16-bit PNG (grey or RGB) written by hand: PIL writes no 48-bit PNGs."""
    height, width = array.shape[:2]
    colour_type = 2 if array.ndim == 3 else 0
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def palette_image():
    image = Image.fromarray(INDICES, "P")
    image.putpalette(PALETTE.reshape(-1).tolist())
    return image


def smooth_rgb():
    y, x = np.mgrid[0:24, 0:32]
    return np.stack([x * 8, y * 10, (x + y) * 4], -1).astype(np.uint8)


def animated(fmt):
    frames = [Image.fromarray(PALETTE[np.roll(INDICES, shift, 1)]) for shift in range(3)]
    data = save(frames[0], fmt, save_all=True, append_images=frames[1:], optimize=False)
    return data, PALETTE[INDICES]


GREY16 = RNG.integers(0, 65536, (9, 13)).astype(np.uint16)
RGB48 = RNG.integers(0, 65536, (9, 13, 3)).astype(np.uint16)

IMAGE_VARIANTS = {
    "bmp-8bit-palette": lambda: palette_bmp(8),  # decode_bmp: the indices as grey levels
    "bmp-4bit-palette": lambda: palette_bmp(4),  # decode_bmp refuses
    "bmp-1bit-palette": lambda: palette_bmp(1),
    "bmp-8bit-rle": rle8_bmp,
    "bmp-16bit-rgb555": rgb555_bmp,
    "bmp-os2-header": os2_bmp,  # decode_bmp reads its 16-bit sizes as 32-bit ones
    "bmp-8bit-pil-palette": lambda: (save(palette_image(), "BMP"), PALETTE[INDICES]),
    "bmp-24bit": lambda: (encode(PALETTE[INDICES], "BMP"), PALETTE[INDICES]),
    "bmp-32bit-rgba": lambda: (encode(np.dstack([PALETTE[INDICES], INDICES * 9]), "BMP", "RGBA"),
                               PALETTE[INDICES]),
    "png-palette": lambda: (save(palette_image(), "PNG"), PALETTE[INDICES]),
    "png-palette-transparency": lambda: (save(palette_image(), "PNG", transparency=3),
                                         PALETTE[INDICES]),
    "png-1bit": lambda: (save(Image.fromarray(INDICES > 7), "PNG"),
                         np.repeat((INDICES[..., None] > 7) * np.uint8(255), 3, -1)),
    "png-grey-alpha": lambda: (encode(np.dstack([INDICES * 16, INDICES]), mode="LA"),
                               np.repeat(INDICES[..., None] * 16, 3, -1)),
    "png-16bit-grey": lambda: (png16(GREY16), np.repeat((GREY16 >> 8)[..., None], 3, -1)),
    "png-48bit-rgb": lambda: (png16(RGB48), RGB48 >> 8),
    "png-animated": lambda: animated("PNG"),  # APNG: decode_png reads the first frame only
    "gif-animated": lambda: animated("GIF"),  # decode_image(expand_animations=False): frame 1
    # JPEG decoders differ by a level or two: these go to TensorFlow's, which reads CMYK (Adobe)
    # and grey JPEGs within 2 levels of the pixels here.
    "jpeg-cmyk": lambda: (save(Image.fromarray(smooth_rgb()).convert("CMYK"), "JPEG", quality=100),
                          None),
    "jpeg-grey": lambda: (save(Image.fromarray(smooth_rgb()[..., 0]), "JPEG", quality=100), None),
}


@pytest.mark.parametrize("name", IMAGE_VARIANTS)
def test_image_encodings_are_served_as_the_same_pixels_in_an_rgb_png(client, reference, name):
    encoded, pixels = IMAGE_VARIANTS[name]()
    if pixels is None:
        response = predict(client, bytes_request(encoded))
        expected = reference["serving_bytes"](image_bytes=tf.constant([encoded]))
        assert response.status_code == 200, response.text
        assert_matches(rows_to_columns(response.json()["predictions"]), expected)
        return
    response = predict(client, bytes_request(encoded, encode(pixels)))  # one batch: both
    assert response.status_code == 200, response.text
    variant, png = response.json()["predictions"]
    np.testing.assert_allclose(variant["probabilities"], png["probabilities"], atol=1e-6, rtol=0)


def test_concurrent_clients_get_consistent_answers(server, reference, china):
    expected = reference["serving_bytes"](image_bytes=tf.constant([china]))
    body = {"signature_name": "serving_bytes", "instances": [b64(china)]}

    def call(_):
        with httpx.Client(base_url=server.url, timeout=60) as http:
            return [http.post("/v1/models/digits:predict", json=body) for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = [r for batch in pool.map(call, range(6)) for r in batch]
    assert len(responses) == 18 and all(r.status_code == 200 for r in responses)
    for response in responses:
        assert_matches(rows_to_columns(response.json()["predictions"]), expected)


# ---------------------------------------------------------------------------------------------
# Bad requests: a 4xx with {"error": ...} naming the problem, and the server keeps serving


@functools.lru_cache(maxsize=1)
def big_png():
    """A 2000x2000 PNG: a few kB, but 4M pixels (china.jpg has 273k)."""
    return encode(np.zeros((2000, 2000, 3)))


def bytes_request(*images):
    return {"signature_name": "serving_bytes", "instances": [b64(i) for i in images]}


FLOAT_IMAGE = np.zeros((32, 32, 3)).tolist()

BAD_REQUESTS = [
    # (id, method, path, body: bytes | dict | callable(china) -> dict, status, words in the error)
    ("empty-body", "POST", ":predict", b"", 400, "empty"),
    ("whitespace-body", "POST", ":predict", b"  \n", 400, "empty"),
    ("invalid-json", "POST", ":predict", b'{"instances": [1,', 400, "not valid JSON"),
    ("not-utf8", "POST", ":predict", b"\xff\xfe\xfa", 400, "not valid JSON"),
    ("too-deep-json", "POST", ":predict", b"[" * 100_000, 400, "not valid JSON"),
    ("deep-numbers", "POST", ":predict", b'{"instances": ' + b"[" * 200 + b"1" + b"]" * 200 + b"}",
     400, "nested too deeply"),
    ("deep-strings", "POST", ":predict",
     b'{"signature_name": "serving_bytes", "instances": ' + b"[" * 100 + b'"a"' + b"]" * 100 + b"}",
     400, "nested too deeply (rank 100)"),
    ("json-list", "POST", ":predict", b"[1, 2]", 400, "JSON object"),
    ("neither", "POST", ":predict", {"signature_name": "serving_default"}, 400, "neither"),
    ("both", "POST", ":predict", {"instances": [FLOAT_IMAGE], "inputs": [FLOAT_IMAGE]}, 400, "both"),
    ("instances-not-list", "POST", ":predict", {"instances": 3}, 400, "non-empty list"),
    ("instances-empty", "POST", ":predict", {"instances": []}, 400, "non-empty list"),
    ("wrong-shape", "POST", ":predict", {"instances": [np.zeros((32, 32)).tolist()]}, 400,
     "(batch, 32, 32, 3)"),
    ("wrong-size", "POST", ":predict", {"inputs": np.zeros((1, 28, 28, 3)).tolist()}, 400,
     "(batch, 32, 32, 3)"),
    ("scalar-input", "POST", ":predict", {"inputs": 1.5}, 400, "shape"),
    ("strings-for-float", "POST", ":predict", {"instances": [[[["a"] * 3] * 32] * 32]}, 400,
     "DT_FLOAT"),
    ("nulls-for-float", "POST", ":predict", {"instances": [[[[None] * 3] * 32] * 32]}, 400, "DT_FLOAT"),
    ("float-overflow", "POST", ":predict", {"instances": [[[[1e39] * 3] * 32] * 32]}, 400, "DT_FLOAT"),
    ("ragged", "POST", ":predict", {"instances": [FLOAT_IMAGE, FLOAT_IMAGE[:5]]}, 400, "ragged"),
    ("uint8-over-255", "POST", ":predict",
     {"signature_name": "serving_images", "instances": [[[[256, 0, 0]]]]}, 400, "[0, 255]"),
    ("uint8-negative", "POST", ":predict",
     {"signature_name": "serving_images", "instances": [[[[-1, 0, 0]]]]}, 400, "[0, 255]"),
    ("uint8-fractions", "POST", ":predict",
     {"signature_name": "serving_images", "instances": [[[[0.5, 0, 0]]]]}, 400, "DT_UINT8"),
    ("uint8-two-channels", "POST", ":predict",
     {"signature_name": "serving_images", "instances": [[[[1, 2]]]]}, 400, "channels"),
    ("uint8-too-many-pixels", "POST", ":predict",
     {"signature_name": "serving_images", "inputs": [np.zeros((550, 550, 1), int).tolist()]}, 413,
     "max_image_pixels"),
    ("number-for-string", "POST", ":predict", {"signature_name": "serving_bytes", "instances": [1]},
     400, "DT_STRING"),
    ("bad-base64", "POST", ":predict",
     {"signature_name": "serving_bytes", "instances": [{"b64": "not base64!"}]}, 400, "base64"),
    ("non-image-bytes", "POST", ":predict", lambda jpg: bytes_request(b"hello, world"), 400,
     "not a JPEG"),
    ("empty-image-bytes", "POST", ":predict", lambda jpg: bytes_request(jpg, b""), 400, "Image 1"),
    ("webp-bytes", "POST", ":predict", lambda jpg: bytes_request(encode(np.zeros((4, 4, 3)), "WEBP")),
     400, "not a JPEG"),
    ("truncated-jpeg", "POST", ":predict", lambda jpg: bytes_request(jpg[: len(jpg) // 3]), 400,
     "JPEG"),
    ("empty-batch", "POST", ":predict", {"signature_name": "serving_bytes", "inputs": []}, 400,
     "empty"),
    ("image-over-max-bytes", "POST", ":predict", lambda jpg: bytes_request(jpg + b"\0" * 200_000),
     413, "max_image_bytes"),
    ("image-over-max-pixels", "POST", ":predict", lambda jpg: bytes_request(big_png()), 413,
     "max_image_pixels"),
    ("rows-over-max-batch", "POST", ":predict", lambda jpg: bytes_request(*[jpg] * 9), 413,
     "max_batch=8"),
    ("columns-over-max-batch", "POST", ":predict",
     {"signature_name": "serving_bytes", "inputs": [b64(b"x")] * 9}, 413, "max_batch=8"),
    ("body-over-max-request-bytes", "POST", ":predict", b" " * (7 * 2**20), 413,
     "max_request_bytes"),
    ("body-one-byte-over-max-request-bytes", "POST", ":predict", b" " * (6 * 2**20 + 1), 413,
     "max_request_bytes"),  # the last chunk crosses the limit: nothing left to drain
    ("unknown-signature", "POST", ":predict", {"signature_name": "nope", "instances": [1]}, 400,
     "'nope' not found"),
    ("init-op-signature", "POST", ":predict",
     {"signature_name": "__saved_model_init_op", "instances": [1]}, 400, "not found"),
    ("signature-not-string", "POST", ":predict", {"signature_name": 3, "instances": [1]}, 400,
     "signature_name"),
    ("unknown-input-name", "POST", ":predict", {"inputs": {"pixels": [FLOAT_IMAGE]}}, 400,
     "unknown ['pixels']"),
    ("row-keyed-by-wrong-name", "POST", ":predict", {"instances": [{"pixels": FLOAT_IMAGE}]}, 400,
     "keys ['pixels']"),
    ("unknown-model", "POST", "/v1/models/nope:predict", {"instances": [FLOAT_IMAGE]}, 404, "'nope'"),
    ("unknown-model-status", "GET", "/v1/models/nope", None, 404, "'nope'"),
    ("unknown-version", "POST", "/v1/models/digits/versions/7:predict", {"instances": [FLOAT_IMAGE]},
     404, "version 7"),
    ("unknown-version-metadata", "GET", "/v1/models/digits/versions/7/metadata", None, 404, "version 7"),
    ("version-not-a-number", "GET", "/v1/models/digits/versions/latest", None, 400, "whole number"),
    ("version-label", "GET", "/v1/models/digits/labels/stable", None, 404, "'stable'"),
    ("classify", "POST", "/v1/models/digits:classify", {"examples": []}, 400, "predict"),
    ("get-predict", "GET", ":predict", None, 405, "POST"),
    ("post-status", "POST", "/v1/models/digits", {"instances": [FLOAT_IMAGE]}, 405, ":predict"),
    ("unknown-verb", "GET", "/v1/models/digits:explain", None, 404, "Malformed"),
    ("unknown-path", "GET", "/v2/anything", None, 404, "Not Found"),
    # Path segments: versions are 1 to 18 ASCII digits (str.isdigit takes the first four).
    ("version-superscript-one", "GET", "/v1/models/digits/versions/\u00b9", None, 400, "ASCII digits"),
    ("version-superscript-predict", "POST", "/v1/models/digits/versions/\u00b9:predict",
     {"instances": [FLOAT_IMAGE]}, 400, "ASCII digits"),
    ("version-arabic-indic-two", "GET", "/v1/models/digits/versions/\u0662", None, 400,
     "ASCII digits"),
    ("version-fullwidth-two", "GET", "/v1/models/digits/versions/\uff12/metadata", None, 400,
     "ASCII digits"),
    ("version-5000-digits", "GET", "/v1/models/digits/versions/" + "1" * 5000, None, 400,
     "ASCII digits"),
    ("version-5000-digits-predict", "POST", "/v1/models/digits/versions/" + "2" * 5000 + ":predict",
     {"instances": [FLOAT_IMAGE]}, 400, "ASCII digits"),
    ("version-19-digits", "GET", "/v1/models/digits/versions/" + "1" * 19, None, 400, "ASCII digits"),
    ("version-18-digits", "GET", "/v1/models/digits/versions/" + "9" * 18, None, 404, "not found"),
    ("version-negative", "GET", "/v1/models/digits/versions/-2", None, 400, "ASCII digits"),
    ("version-plus", "GET", "/v1/models/digits/versions/+2", None, 400, "ASCII digits"),
    ("version-space", "GET", "/v1/models/digits/versions/%202", None, 400, "ASCII digits"),
    ("version-fraction", "GET", "/v1/models/digits/versions/2.0", None, 400, "ASCII digits"),
    ("version-invalid-utf8", "GET", "/v1/models/digits/versions/%ff", None, 400, "ASCII digits"),
    ("model-name-10000-chars", "GET", "/v1/models/" + "m" * 10_000, None, 404, "10000 characters"),
    ("model-name-nul", "GET", "/v1/models/dig%00its", None, 404, "served models: digits"),
    ("label-5000-chars", "GET", "/v1/models/digits/labels/" + "l" * 5000, None, 404, "/versions/N"),
    ("path-5000-chars", "GET", "/v1/models/digits/" + "p" * 5000, None, 404, "Malformed"),
    # Image bombs: what an image costs to decode is counted before it is decoded.
    ("gif-frames-over-max-pixels", "POST", ":predict",
     lambda jpg: bytes_request(gif([(500, 500, 2), (500, 500, 3), (500, 500, 2)])), 413,
     "3 frame(s), 750000 pixels"),
    ("gif-frames-over-max-frames", "POST", ":predict",
     lambda jpg: bytes_request(gif([(1, 1, 2)] * 51)), 413, "max_image_frames=50"),
    ("gif-later-frame-wider-than-screen", "POST", ":predict",
     lambda jpg: bytes_request(gif([(10, 10, 2), (600, 600, 3)])), 413, "max_image_pixels"),
    ("gif-screen-smaller-than-frames", "POST", ":predict",
     lambda jpg: bytes_request(gif([(600, 600, 2)], screen=(8, 8))), 413, "max_image_pixels"),
    ("images-over-max-request-pixels", "POST", ":predict",
     lambda jpg: bytes_request(*[encode(np.zeros((400, 400)))] * 8), 413, "max_request_pixels"),
    ("uint8-over-max-request-pixels", "POST", ":predict",
     {"signature_name": "serving_images", "inputs": np.zeros((3, 450, 450, 1), int).tolist()}, 413,
     "max_request_pixels"),
    ("truncated-palette-bmp", "POST", ":predict",
     lambda jpg: bytes_request(encode(np.zeros((40, 40)), "BMP", "L")[:-500]), 400,
     "BMP whose pixels cannot be decoded"),
    ("animated-webp", "POST", ":predict",
     lambda jpg: bytes_request(save(Image.new("RGB", (8, 8)), "WEBP", save_all=True,
                                    append_images=[Image.new("RGB", (8, 8), "red")])),
     400, "not a JPEG"),
]


@pytest.mark.parametrize("name,method,path,body,status,words", BAD_REQUESTS,
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_gets_4xx_error_and_server_keeps_serving(
    client, china, name, method, path, body, status, words
):
    path = "/v1/models/digits" + path if path.startswith(":") else path
    if callable(body):
        body = body(china)
    if isinstance(body, dict):
        body = json.dumps(body, separators=(",", ":")).encode()
    response = client.request(method, path, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = strict_json(response.content)["error"]
    assert isinstance(error, str) and words in error, error
    assert len(error) < 400, error[:400]  # what the client sent is quoted cut short
    good = client.post("/v1/models/digits:predict", json=bytes_request(china))
    assert good.status_code == 200 and len(strict_json(good.content)["predictions"]) == 1


MALFORMED_HTTP = {
    "garbage request line": b"HELLO\r\n\r\n",
    "no Host header": b"GET /v1/models/digits HTTP/1.1\r\n\r\n",
    "negative Content-Length": (b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: -1\r\n\r\n"),
    "two different Content-Lengths": (b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
    "non-hex chunk size": (b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("name", MALFORMED_HTTP)
def test_malformed_http_gets_a_json_400_and_the_server_keeps_serving(server, client, name):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(MALFORMED_HTTP[name])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"content-type: application/json" in head.lower()
    assert "malformed HTTP" in json.loads(body)["error"]
    assert client.get("/v1/models/digits").status_code == 200


def _refuse_constant(token):
    raise ValueError(f"non-standard JSON token {token}")


def strict_json(content):
    """RFC 8259 JSON only: NaN, Infinity and -Infinity are refused, not read as floats."""
    return json.loads(content, parse_constant=_refuse_constant)


def test_strict_json_refuses_what_python_json_accepts():
    for text in ("[NaN]", "[Infinity]", '{"a": [-Infinity]}'):
        with pytest.raises(ValueError, match="non-standard"):
            strict_json(text)


def _hostile_pixels(token, uint8):
    """A raw request body: one 32x32x3 image whose last pixel's middle channel is ``token``,
    nested in the image's arrays (rows for the float signature, columns for the uint8 one)."""
    image = np.full((32, 32, 3), 1 if uint8 else 0.5).tolist()
    image[31][31][1] = "TOKEN"
    text = json.dumps(image).replace('"TOKEN"', token)
    if uint8:
        return ('{"signature_name": "serving_images", "inputs": [' + text + "]}").encode()
    return ('{"instances": [' + text + "]}").encode()


HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "true", "false"]


@pytest.mark.parametrize("uint8", [False, True], ids=["float32", "uint8"])
@pytest.mark.parametrize("token", HOSTILE_NUMBERS)
def test_non_finite_numbers_and_booleans_are_a_400_naming_the_input(client, token, uint8):
    body = _hostile_pixels(token, uint8)
    response = client.post("/v1/models/digits:predict", content=body)
    assert response.status_code == 400, response.text
    error = strict_json(response.content)["error"]
    assert "'images'" in error and ("DT_UINT8" if uint8 else "DT_FLOAT") in error, error
    words = "true/false" if token in ("true", "false") else "finite"
    assert words in error, error
    good = client.post("/v1/models/digits:predict", content=_hostile_pixels("1", uint8))
    assert good.status_code == 200, good.text
    answer = strict_json(good.content)
    assert len(answer["outputs"]["top_k_labels"] if uint8 else answer["predictions"]) == 1


def test_a_non_finite_output_is_a_500_in_strict_json(client):
    # Finite float32 inputs near the largest float32 overflow inside the network.
    body = {"instances": [np.full((32, 32, 3), 3e38).tolist()]}
    response = client.post("/v1/models/digits:predict", json=body)
    assert response.status_code == 500, response.text
    error = strict_json(response.content)["error"]
    assert "NaN or Infinity" in error and "Output '" in error, error


def test_format_response_refuses_non_finite_outputs():
    with pytest.raises(serving.ServingError, match="Output 'scores' holds NaN or Infinity") as caught:
        serving.format_response({"scores": np.array([[0.5, np.inf]])}, row_format=True)
    assert caught.value.status == 500
    assert serving.format_response({"scores": np.array([[0.5]])}, row_format=False) == {"outputs": [[0.5]]}


# ---------------------------------------------------------------------------------------------
# The API around the app


def test_create_app_rejects_bad_arguments(tmp_path, export_dir):
    with pytest.raises(ValueError, match="max_batch.*0"):
        serving.create_app(str(export_dir), max_batch=0)
    with pytest.raises(ValueError, match="max_image_bytes.*'big'"):
        serving.create_app(str(export_dir), max_image_bytes="big")
    with pytest.raises(ValueError, match="version_policy.*'latest', 'all'; got 'newest'"):
        serving.create_app(str(export_dir), version_policy="newest")
    with pytest.raises(ValueError, match="`header_timeout` must be a positive number of seconds; got 0"):
        serving.create_app(str(export_dir), header_timeout=0)
    with pytest.raises(ValueError, match="`body_timeout` .* got inf"):
        serving.create_app(str(export_dir), body_timeout=float("inf"))
    with pytest.raises(ValueError, match="`max_pending_bytes` must be at least max_request_bytes=100"):
        serving.create_app(str(export_dir), max_request_bytes=100, max_pending_bytes=99)
    with pytest.raises(TypeError, match=r"Unknown limits \['max_frames'\]; allowed: max_image_bytes"):
        serving.create_app(str(export_dir), max_frames=3)
    with pytest.raises(ValueError, match="holds no models"):
        serving.create_app(str(tmp_path))
    with pytest.raises(ValueError, match="must be a directory"):
        serving.create_app(str(tmp_path / "missing"))


@pytest.mark.slow  # 2 s or more of its own
def test_version_policy_all_serves_every_version(export_dir, china):
    with serving.BackgroundServer(str(export_dir), version_policy="all") as running:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            status = http.get("/v1/models/digits").json()["model_version_status"]
            assert [s["version"] for s in status] == ["2", "1"]
            old = http.post("/v1/models/digits/versions/1:predict", json=bytes_request(china))
            new = http.post("/v1/models/digits:predict", json=bytes_request(china))
            assert old.status_code == new.status_code == 200
            assert old.json() == new.json()  # same weights in both versions


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(export_dir, port, log, address_space=None, open_files=None, hard_open_files=False,
                **limits):
    """``serve`` in a subprocess (the keras_resnet this test imports), output to ``log``, under
    ``address_space`` (RLIMIT_AS, bytes) and a soft limit of ``open_files`` (RLIMIT_NOFILE; the
    hard one too with ``hard_open_files``, as containers and service managers set it).
    Returns the process once the server answers; SIGINT in the child raises
    KeyboardInterrupt, as at a terminal."""
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from keras_resnet.serving import serve\n"
        f"serve({str(export_dir)!r}, port={port}, **{limits!r})\n"
        "print('serve returned', flush=True)\n"
    )

    def limit_child():
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if open_files is not None:
            hard = open_files if hard_open_files else resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(keras_resnet.__file__)))
    env = dict(os.environ, PYTHONPATH=package_root, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                               env=env, preexec_fn=limit_child)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models/digits", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    stop(process)
    raise AssertionError(f"serve did not start (exit code {process.returncode}).")


def stop(process, sig=signal.SIGINT):
    """Stop a ``serve`` subprocess with ``sig`` (killed after 30 s); returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def _must_not_load(*args, **kwargs):
    raise AssertionError("serve loaded models before checking its port")


@pytest.mark.parametrize("port", [70000, 65536, 0, -1, "8501", 8501.0, True, None])
def test_serve_refuses_a_port_outside_1_to_65535_before_loading_models(
    monkeypatch, export_dir, port
):
    monkeypatch.setattr(serving.server, "create_app", _must_not_load)
    message = f"`port` must be an integer in 1..65535; got {port!r}."
    with pytest.raises(ValueError, match=re.escape(message)):
        serving.serve(str(export_dir), port=port)


def test_serve_says_which_port_is_in_use_before_loading_models(monkeypatch, export_dir):
    monkeypatch.setattr(serving.server, "create_app", _must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"`port` {port} on 127.0.0.1 is in use"):
            serving.serve(str(export_dir), port=port)


def _broken_exports(export_dir, root, breakage):
    shutil.copytree(export_dir / "digits" / "2", root / "digits" / "3")
    breakage(root / "digits" / "3")
    return root


BROKEN_MODELS = {
    "garbage-saved-model-pb": (lambda path: (path / "saved_model.pb").write_bytes(b"\xffgarbage" * 9),
                               "saved_model.pb is not a SavedModel"),
    "empty-saved-model-pb": (lambda path: (path / "saved_model.pb").write_bytes(b""),
                             "saved_model.pb is not a SavedModel"),
    "no-variables": (lambda path: shutil.rmtree(path / "variables"),
                     "variables/variables.index is missing"),
    "truncated-variables": (lambda path: (path / "variables" / "variables.index").write_bytes(b"x"),
                            "cannot be loaded"),
}


@pytest.mark.parametrize("name", BROKEN_MODELS)
def test_a_model_that_does_not_load_stops_the_start_with_one_clear_error(
    export_dir, tmp_path, capsys, name
):
    from keras_resnet import cli

    breakage, words = BROKEN_MODELS[name]
    root = _broken_exports(export_dir, tmp_path / "exports", breakage)
    path = str(root / "digits" / "3")
    with pytest.raises(ValueError, match=re.escape(f"Model 'digits' version 3 at {path!r}")) as error:
        serving.create_app(str(root))
    assert words in str(error.value) and error.value.__cause__ is None
    # The command line prints that one line (no traceback) and exits 2 (--verbose: leaves this
    # process's logging as it is).
    assert cli.main(["serve", str(root), "--port", str(_free_port()), "--verbose"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"keras-resnet serve: {error.value}"


def test_version_directories_must_be_ascii_digits(export_dir, tmp_path):
    root = tmp_path / "exports"
    shutil.copytree(export_dir / "digits" / "2", root / "digits" / "2")
    for odd in ("\u00b9", "\u0663", "1" * 19, "-4", "5.0"):  # str.isdigit takes the first two
        shutil.copytree(export_dir / "digits" / "2", root / "digits" / odd)
    assert serving.find_models(str(root)) == {"digits": {2: str(root / "digits" / "2")}}


@pytest.mark.slow
def test_client_example_prints_top5_over_rest(server, reference, china, tmp_path):
    gray = tmp_path / "gray.png"
    gray.write_bytes(encode(np.full((9, 9), 128)))
    for signature in ("serving_bytes", "serving_images"):
        result = subprocess.run(
            [sys.executable, CLIENT, "--rest", server.url, "--model", "digits",
             "--signature", signature, CHINA, str(gray)],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == CHINA and lines[6] == str(gray) and len(lines) == 12
        expected = reference["serving_bytes"](image_bytes=tf.constant([china]))
        label = expected["top_k_labels"].numpy()[0, 0].decode()
        score = float(expected["top_k_scores"].numpy()[0, 0])
        rank, got_label, got_score = lines[1].split()
        assert rank == "1." and got_label == label
        assert abs(float(got_score) - score) < (1e-3 if signature == "serving_bytes" else 2e-2)
    failed = subprocess.run(
        [sys.executable, CLIENT, "--rest", server.url, "--model", "nope", CHINA],
        capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode == 1 and "HTTP 404" in failed.stderr and "'nope'" in failed.stderr


def test_string_outputs_are_text_unless_binary():
    outputs = {"labels": np.array([[b"cat", b"\xff\xfe"]], object), "scores": np.array([[0.5, 0.25]])}
    rows = serving.format_response(outputs, row_format=True)
    assert rows == {"predictions": [{"labels": ["cat", {"b64": "//4="}], "scores": [0.5, 0.25]}]}
    columns = serving.format_response({"thumbnail_bytes": np.array([b"abc"], object)}, row_format=False)
    assert columns == {"outputs": [{"b64": "YWJj"}]}  # "_bytes" outputs are always base64


# ---------------------------------------------------------------------------------------------
# Hostile clients against `serve` in a subprocess, limited as a small host would be: memory
# (RLIMIT_AS) and a soft limit of 1024 open files (a common default), short timeouts.

ADDRESS_SPACE = 4 * 2**30  # TensorFlow and its threads map about 2 GiB of it at rest
HOSTILE_LIMITS = dict(max_request_bytes=16 * 2**20, max_pending_bytes=256 * 2**20,
                      header_timeout=5, body_timeout=5, keep_alive_timeout=1)


@pytest.fixture(scope="module")
def hostile_server(export_dir, tmp_path_factory):
    """``serve`` with default image limits under ADDRESS_SPACE: (process, port, log path)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS is enforced on Linux only")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("hostile") / "serve.log"
    with open(log_path, "w") as log:
        process = start_serve(export_dir, port, log, address_space=ADDRESS_SPACE, open_files=1024,
                              **HOSTILE_LIMITS)
        try:
            yield process, port, log_path
        finally:
            stop(process)


def assert_serving(port, china, timeout=10):
    response = httpx.post(f"http://127.0.0.1:{port}/v1/models/digits:predict",
                          json=bytes_request(china), timeout=timeout)
    assert response.status_code == 200, response.text


@functools.lru_cache(maxsize=1)
def gif_bomb():
    """600 frames of 4096x4096 (two distinct ones): 8.1 MB, 10 G pixels for giflib to decode."""
    return gif([(4096, 4096, 0), (4096, 4096, 1)] * 300)


@pytest.mark.slow
def test_animated_gif_bomb_is_refused_before_any_frame_is_decoded(hostile_server, china):
    _, port, _ = hostile_server
    data = gif_bomb()
    assert len(data) < serving.DEFAULT_MAX_IMAGE_BYTES
    started = time.monotonic()
    response = httpx.post(f"http://127.0.0.1:{port}/v1/models/digits:predict",
                          json=bytes_request(data), timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 413, response.text
    assert "600 frame(s)" in response.json()["error"] and "max_image_pixels" in response.json()["error"]
    assert elapsed < 10, elapsed  # reading 11 MB of JSON, not decoding 30 GB of frames
    assert_serving(port, china)


def _hostile_bodies():
    """(name, path, body bytes, status, words): each refused before it costs much."""
    big_pngs = [encode(np.zeros((4096, 4096), np.uint8))] * 8  # 8 x 16.7 M pixels, 50 kB each
    numbers = b'{"instances": [[' + b"0," * (6 * 2**20) + b"0]]}"  # 12 MiB parsed, then refused
    return [
        ("gif-bomb", ":predict", json.dumps(bytes_request(gif_bomb())).encode(), 413, "600 frame(s)"),
        ("pixel-bomb", ":predict", json.dumps(bytes_request(*big_pngs)).encode(), 413,
         "max_request_pixels"),
        ("numbers", ":predict", numbers, 400, "must have shape"),
        ("oversized-body", ":predict", b" " * (20 * 2**20), 413, "max_request_bytes"),
        ("version", "/versions/\u00b9:predict", b'{"instances": [1]}', 400, "ASCII digits"),
        ("deep-json", ":predict", b"[" * 100_000, 400, "not valid JSON"),
    ]


@pytest.mark.slow
def test_concurrent_hostile_requests_get_4xx_within_a_memory_limit(hostile_server, china):
    process, port, log_path = hostile_server
    bodies = _hostile_bodies()

    # Bodies of megabytes may miss body_timeout with 16 uploads sharing a busy CPU: the server
    # answers 408 and closes, and a client still sending may see the connection reset instead
    # of the answer (TCP drops the unread body and the 408 with it).
    large = {name for name, _, body, _, _ in bodies if len(body) > 2**20}

    def client(index):
        results = []
        with httpx.Client(timeout=120) as http:
            for name, path, body, status, words in (bodies[(index + i) % len(bodies)] for i in range(3)):
                try:
                    response = http.post(f"http://127.0.0.1:{port}/v1/models/digits{path}",
                                         content=body)
                except httpx.TransportError as error:  # only as said above
                    results.append((name, status, words, "reset", repr(error)))
                    continue
                results.append((name, status, words, response.status_code, response.text[:300]))
        return results

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = [r for batch in pool.map(client, range(16)) for r in batch]
    assert len(results) == 48
    for name, status, words, got, text in results:
        # 408: a body that took longer than body_timeout to arrive, 16 uploads sharing the CPU.
        assert ((got == status and words in text) or (got == 408 and "body_timeout" in text)
                or (got == "reset" and name in large)), (name, got, text)
    assert sum(got == status for _, status, _, got, _ in results) >= 24
    assert process.poll() is None, log_path.read_text()[-3000:]
    assert_serving(port, china)


def _closed_within(sock, seconds, send=None):
    """Whether the server closes ``sock`` within ``seconds``; ``send()`` bytes meanwhile."""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if send is not None:
                try:
                    sock.sendall(send())
                except (BrokenPipeError, ConnectionResetError):
                    return True
            if selector.select(timeout=0.3):
                try:
                    if not sock.recv(65536):
                        return True
                except ConnectionResetError:
                    return True
    return False


def _reply(sock, seconds):
    """What the server sends on ``sock`` within ``seconds``, until it closes or a JSON body ends."""
    reply, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline and not reply.endswith(b"}"):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        reply += chunk
    return reply


def _raw(port, data):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


HEAD = b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.mark.slow
def test_idle_connection_is_closed_after_header_timeout(hostile_server, china):
    _, port, _ = hostile_server
    with _raw(port, b"") as sock:
        assert _closed_within(sock, HOSTILE_LIMITS["header_timeout"] + 3)
    assert_serving(port, china)


@pytest.mark.slow
def test_headers_sent_a_byte_at_a_time_are_cut_off_after_header_timeout(hostile_server, china):
    _, port, _ = hostile_server
    with _raw(port, HEAD) as sock:
        assert _closed_within(sock, HOSTILE_LIMITS["header_timeout"] + 3, send=lambda: b"X")
    assert_serving(port, china)


@pytest.mark.slow
def test_a_body_that_stalls_gets_408_after_body_timeout(hostile_server, china):
    _, port, _ = hostile_server
    started = time.monotonic()
    with _raw(port, HEAD + b"Content-Length: 1000\r\n\r\n" + b" " * 10) as sock:
        reply = _reply(sock, HOSTILE_LIMITS["body_timeout"] + 5)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b"body_timeout=5" in reply and time.monotonic() - started < HOSTILE_LIMITS["body_timeout"] + 3
    assert_serving(port, china)


@pytest.mark.slow
def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(hostile_server):
    _, port, _ = hostile_server
    with _raw(port, b"GET /v1/models/digits HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") as sock:
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert _closed_within(sock, HOSTILE_LIMITS["keep_alive_timeout"] + 3)


def _open_files(wanted):
    """Raise this process's soft limit on open files to ``wanted`` (skip if the hard one is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _idle_connections(port, count):
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@pytest.mark.slow
def test_1100_idle_connections_do_not_starve_a_normal_request(hostile_server, china):
    # The server started with a soft limit of 1024 open files: serve raises it for
    # max_connections (2048 by default), then closes the idle ones after header_timeout.
    _, port, _ = hostile_server
    _open_files(1100 + 256)
    idle = _idle_connections(port, 1100)
    try:
        started = time.monotonic()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/models/digits:predict",
                              json=bytes_request(china), timeout=60)
        elapsed = time.monotonic() - started
        # Served before any idle connection (all opened before the request) could time out.
        assert response.status_code == 200 and elapsed < HOSTILE_LIMITS["header_timeout"] - 1, elapsed
        deadline = time.monotonic() + HOSTILE_LIMITS["header_timeout"] + 8
        assert all(_closed_within(sock, max(0.1, deadline - time.monotonic())) for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    assert_serving(port, china)


@pytest.mark.slow
def test_serve_at_a_hard_open_files_limit_outlasts_an_idle_flood_and_returns_on_ctrl_c(
        export_dir, china, tmp_path):
    """``serve`` in a process of its own with soft = hard = 256 open files (it cannot raise
    them, as containers and service managers set it): it prints its URL and serves on
    loopback; it holds what its descriptors allow, and 332 idle connections (more than it has
    descriptors) make it close the longest-idle ones, so a good request is answered long
    before their header timeout; Ctrl-C returns from serve. (One limit: the cap at 1024 is
    test_connection_cap_follows_the_open_files_it_has's, a flood past 1024
    test_1100_idle_connections_do_not_starve_a_normal_request's.)"""
    limit, port = 256, _free_port()
    _open_files(2 * limit + 512)
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = start_serve(export_dir, port, log, open_files=limit, hard_open_files=True,
                              header_timeout=30, max_batch=2)
    try:
        idle = _idle_connections(port, limit + 76)
        try:
            started = time.monotonic()
            response = httpx.post(f"http://127.0.0.1:{port}/v1/models/digits:predict",
                                  json=bytes_request(china), timeout=60)
            elapsed = time.monotonic() - started
            # Well before the idle connections' header_timeout (30 s) could free a descriptor.
            assert response.status_code == 200 and elapsed < 15, (response.status_code, elapsed)
            print(f"open files {limit}: {limit + 76} idle connections, a request answered in "
                  f"{elapsed * 1000:.0f} ms")
        finally:
            for sock in idle:
                sock.close()
        assert_serving(port, china)
        over = httpx.post(f"http://127.0.0.1:{port}/v1/models/digits:predict",
                          json=bytes_request(china, china, china), timeout=60)
        assert over.status_code == 413 and "max_batch=2" in over.json()["error"]
    finally:
        code = stop(process)  # Ctrl-C
    output = log_path.read_text()
    assert f"http://127.0.0.1:{port}/v1/models/digits" in output
    assert code == 0 and "serve returned" in output, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert f"Open files are limited to {limit}: holding at most" in output
    assert "Too many open files" not in output  # accept() never ran out of descriptors
    cap = int(output.split("holding at most ")[1].split()[0])
    assert 0 < cap < limit


def test_connection_cap_follows_the_open_files_it_has():
    assert serving.connection_cap(2048, open_files=1024, open_now=100) == 1024 - 100 - 128
    assert serving.connection_cap(2048, open_files=256, open_now=100) == 256 - 100 - 64
    assert serving.connection_cap(500, open_files=10**6, open_now=100) == 500
    assert serving.connection_cap(2048, open_files=64, open_now=100) == 1


@pytest.mark.slow
def test_connections_over_the_cap_with_none_idle_get_a_quick_503(export_dir, china):
    """Busy connections (a request head sent, its body awaited) are never closed for a newcomer:
    over the cap a request gets 503 at once, and is served once they are gone. "At once": while
    every busy connection still waits for its body (no wall-clock bound, which a loaded machine
    could miss)."""
    with serving.BackgroundServer(str(export_dir), max_connections=50, body_timeout=600) as running:
        assert running.app.state.connection_cap == 50
        busy = []
        try:
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
                sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                busy.append(sock)
            time.sleep(1)  # the server reads every head
            refused = httpx.post(running.url + "/v1/models/digits:predict", json=bytes_request(china),
                                 timeout=60)
            assert refused.status_code == 503, refused.text
            for sock in busy:  # none answered or closed: the 503 did not wait for one of them
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)
        finally:
            for sock in busy:
                sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server notices the closed connections
            response = httpx.post(running.url + "/v1/models/digits:predict",
                                  json=bytes_request(china), timeout=10)
            if response.status_code == 200:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text


@pytest.mark.slow
def test_request_bodies_held_at_once_are_bounded(export_dir, china):
    limits = dict(max_request_bytes=2**20, max_pending_bytes=2**20, body_timeout=3)
    padded = json.dumps(bytes_request(china)).encode() + b" " * 600_000
    with serving.BackgroundServer(str(export_dir), **limits) as running:
        url = running.url + "/v1/models/digits:predict"
        with _raw(running.port, HEAD + b"Content-Length: 900000\r\n\r\n" + b" " * 700_000) as slow:
            time.sleep(0.5)  # the server holds 700 kB of the slow body
            busy = httpx.post(url, content=padded, timeout=10)
            assert busy.status_code == 503 and "max_pending_bytes=1048576" in busy.json()["error"]
            assert _reply(slow, 10).startswith(b"HTTP/1.1 408 ")
        assert httpx.post(url, content=padded, timeout=10).status_code == 200
