"""Classify image files with a served keras_resnet export and print the top-5 labels and scores.

Works against TensorFlow Serving (``tensorflow/serving``) and against ``keras-resnet serve``,
which speaks the same REST API:

    python export/client.py --rest http://127.0.0.1:8501 --model resnet20 cat.jpg dog.png
    python export/client.py --grpc 127.0.0.1:8500 --model resnet20 cat.jpg   # TF Serving only

Signatures (``--signature``):

- ``serving_bytes`` (default): the encoded files are sent as they are (``{"b64": ...}`` over
  REST, a DT_STRING tensor over gRPC) and decoded inside the model.
- ``serving_images``: the files are decoded here (Pillow and NumPy) and sent as uint8 pixels,
  one request per image because a batch of pixels must share one size.

The REST client needs only the standard library (plus Pillow and NumPy for
``serving_images``). The gRPC client needs ``pip install tensorflow-serving-api``, imported
only when ``--grpc`` is given.
"""

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request

SIGNATURES = ("serving_bytes", "serving_images")


def _model_url(rest, model, version=None):
    url = f"{rest.rstrip('/')}/v1/models/{model}"
    return url + (f"/versions/{version}" if version else "")


def _pixels(path):
    """uint8 (h, w, 3) pixels of an image file (Pillow)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _top_k(labels, scores):
    return [list(zip(row_labels, row_scores)) for row_labels, row_scores in zip(labels, scores)]


def rest_predict(rest, model, paths, signature="serving_bytes", version=None, timeout=60):
    """Top-k ``[(label, score), ...]`` per image, from the REST predict API.

    Args:
        rest: server URL, e.g. ``http://127.0.0.1:8501``.
        model: model name (``/v1/models/<model>``).
        paths: image files.
        signature: "serving_bytes" or "serving_images".
        version: a model version, or None for the latest.
        timeout: seconds per HTTP request.

    Returns:
        list (one per image) of lists of ``(label, score)``, best first.

    Example:
        >>> rest_predict("http://127.0.0.1:8501", "resnet20", ["cat.jpg"])[0][0]
    """
    if signature == "serving_bytes":
        instances = []
        for path in paths:
            with open(path, "rb") as f:
                instances.append({"b64": base64.b64encode(f.read()).decode("ascii")})
        requests = [instances]
    else:
        requests = [[_pixels(path).tolist()] for path in paths]
    results = []
    for instances in requests:
        body = json.dumps({"signature_name": signature, "instances": instances},
                          separators=(",", ":")).encode("utf-8")
        request = urllib.request.Request(
            _model_url(rest, model, version) + ":predict", data=body,
            headers={"Content-Type": "application/json"}, method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                predictions = json.load(response)["predictions"]
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail)["error"]
            except (ValueError, KeyError, TypeError):
                pass
            raise RuntimeError(f"HTTP {error.code} from {error.url}: {detail}") from None
        results += _top_k([p["top_k_labels"] for p in predictions], [p["top_k_scores"] for p in predictions])
    return results


def grpc_predict(target, model, paths, signature="serving_bytes", version=None, timeout=60):
    """Top-k ``[(label, score), ...]`` per image, from TensorFlow Serving's gRPC Predict.

    Args:
        target: ``host:port`` of the gRPC API (TensorFlow Serving's default port is 8500).
        model, paths, signature, version, timeout: as in :func:`rest_predict`.

    Returns:
        list (one per image) of lists of ``(label, score)``, best first.

    Example:
        >>> grpc_predict("127.0.0.1:8500", "resnet20", ["cat.jpg"])[0][0]
    """
    try:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        raise SystemExit(
            f"--grpc needs the TensorFlow Serving API ({error}): pip install tensorflow-serving-api"
        ) from None

    if signature == "serving_bytes":
        batches = []
        for path in paths:
            with open(path, "rb") as f:
                batches.append(f.read())
        inputs = [("image_bytes", tf.make_tensor_proto(batches, dtype=tf.string, shape=[len(batches)]))]
    else:
        inputs = [("images", tf.make_tensor_proto(_pixels(path)[None], dtype=tf.uint8)) for path in paths]

    results = []
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for name, tensor in inputs:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.model_spec.signature_name = signature
            if version:
                request.model_spec.version.value = int(version)
            request.inputs[name].CopyFrom(tensor)
            response = stub.Predict(request, timeout=timeout)
            labels = tf.make_ndarray(response.outputs["top_k_labels"])
            scores = tf.make_ndarray(response.outputs["top_k_scores"])
            results += _top_k([[label.decode("utf-8") for label in row] for row in labels], scores.tolist())
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--rest", metavar="URL", help="REST API, e.g. http://127.0.0.1:8501")
    server.add_argument("--grpc", metavar="HOST:PORT", help="gRPC API, e.g. 127.0.0.1:8500")
    parser.add_argument("--model", required=True, help="model name, as in /v1/models/<model>")
    parser.add_argument("--signature", default="serving_bytes", choices=SIGNATURES)
    parser.add_argument("--version", type=int, default=None, help="model version (default: latest)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request")
    parser.add_argument("images", nargs="+", help="JPEG, PNG, GIF or BMP files")
    args = parser.parse_args(argv)
    for path in args.images:
        if not os.path.isfile(path):
            parser.error(f"image file {path!r} does not exist")

    predict = rest_predict if args.rest else grpc_predict
    try:
        results = predict(args.rest or args.grpc, args.model, args.images, args.signature,
                          args.version, args.timeout)
    except (RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path, top in zip(args.images, results):
        print(path)
        for rank, (label, score) in enumerate(top, 1):
            print(f"  {rank}. {label:<24} {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
