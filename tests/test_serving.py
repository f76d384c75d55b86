"""keras_resnet.serving: a real uvicorn server on 127.0.0.1, driven over HTTP with httpx.

One export (CifarResNet(8), 10 classes) is written per session; the server's answers are
compared with the SavedModel's signatures called in this process.
"""

import base64
import concurrent.futures
import functools
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

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
              max_request_bytes=6 * 2**20)


def encode(array, fmt="PNG", mode=None):
    """Encoded bytes of a uint8 array (h, w) or (h, w, c)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8), mode).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    """``digits`` versions 1 and 2 (same weights) and a second model ``other``."""
    root = tmp_path_factory.mktemp("exports")
    model = keras_resnet.CifarResNet(8, classes=10)
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
        assert {"serving_default", "serving_images", "serving_bytes", "probabilities"} <= set(defs)

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
    error = response.json()["error"]
    assert isinstance(error, str) and words in error, error
    good = client.post("/v1/models/digits:predict", json=bytes_request(china))
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1


def test_non_finite_floats_are_accepted_as_tensorflow_serving_does(client):
    body = b'{"instances": [' + json.dumps(FLOAT_IMAGE).replace("0.0", "NaN", 1).encode() + b"]}"
    response = client.post("/v1/models/digits:predict", content=body)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


# ---------------------------------------------------------------------------------------------
# The API around the app


def test_create_app_rejects_bad_arguments(tmp_path, export_dir):
    with pytest.raises(ValueError, match="max_batch.*0"):
        serving.create_app(str(export_dir), max_batch=0)
    with pytest.raises(ValueError, match="max_image_bytes.*'big'"):
        serving.create_app(str(export_dir), max_image_bytes="big")
    with pytest.raises(ValueError, match="version_policy.*'latest', 'all'; got 'newest'"):
        serving.create_app(str(export_dir), version_policy="newest")
    with pytest.raises(ValueError, match="holds no models"):
        serving.create_app(str(tmp_path))
    with pytest.raises(ValueError, match="must be a directory"):
        serving.create_app(str(tmp_path / "missing"))


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


def test_serve_prints_its_url_and_serves_on_loopback(export_dir, china):
    port = _free_port()
    code = f"from keras_resnet.serving import serve; serve({str(export_dir)!r}, port={port}, max_batch=2)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v1/models/digits", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert status is not None and status.status_code == 200
        over = httpx.post(f"http://127.0.0.1:{port}/v1/models/digits:predict",
                          json=bytes_request(china, china, china), timeout=60)
        assert over.status_code == 413 and "max_batch=2" in over.json()["error"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/v1/models/digits" in output


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
