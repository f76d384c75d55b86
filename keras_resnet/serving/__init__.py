"""A local server that speaks TensorFlow Serving's REST API for the exports of :mod:`export`.

Every model under an export directory (``<export_dir>/<name>/<version>/saved_model.pb``, the
layout :func:`keras_resnet.export.export_saved_model` writes and TensorFlow Serving reads) is
loaded once at start-up and served at the URLs TensorFlow Serving uses:

- ``GET  /v1/models/NAME[/versions/N]``: model status (``model_version_status``).
- ``GET  /v1/models/NAME[/versions/N]/metadata``: the signature definitions.
- ``POST /v1/models/NAME[/versions/N]:predict``: ``{"signature_name", "instances"}`` (row
  format) or ``{"signature_name", "inputs"}`` (columnar format); ``{"b64": ...}`` for bytes.

A segmentation export (``keras_resnet.export.segmentation``) answers per image with its mask
as a PNG (``mask_png_bytes``, sent as ``{"b64": ...}``: 8-bit grey, pixel values = class ids,
at the image's own size) and ``class_shares`` (each class's share of the pixels), computed in
the SavedModel itself, so TensorFlow Serving returns the same.

``GET /`` answers a web page (everything inline, nothing fetched from elsewhere): choose or drop
an image and it is sent to a classifier's ``:predict`` as any REST client sends it; the page
shows the top classes (or the labels over their thresholds), the Grad-CAM overlay where the
export has the ``grad_cam`` signature, and each model's card.

Requests and responses follow https://www.tensorflow.org/tfx/serving/api_rest, so a client
written against this server works unchanged against ``tensorflow/serving`` on the same export
directory (see ``export/README.md``). What TensorFlow Serving leaves to the deployment (body
size and time, batch size, image bytes, pixels and frames, memory, connections) is bounded here
before it is spent (see :class:`Limits`); every bad request gets a 4xx status with
``{"error": "..."}`` (503 when the server is busy or out of memory). Every body is strict
JSON (RFC 8259), where TensorFlow Serving is not: NaN, Infinity, overflowing literals (``1e999``)
and true/false in numeric inputs are 400s naming the input, and an output holding NaN or
Infinity is a 500 naming the output.

The modules, lowest first: ``limits`` (:class:`Limits`, :class:`ServingError`, the defaults),
``registry`` (finding and loading the models of an export directory), ``images`` (image
header checks), ``codec`` (the REST JSON request and response, and running a signature),
``card`` and ``page`` (the web page and its model cards), ``app`` (the FastAPI app) and
``server`` (uvicorn: :func:`serve`, :class:`BackgroundServer`).
fastapi and uvicorn (the ``serve`` extra) are imported when an app or a server is made.

Example:
    >>> serve("exports", port=8501)  # then: curl 127.0.0.1:8501/v1/models/NAME  # doctest: +SKIP
"""

from keras_resnet.serving.limits import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_FRAMES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_REQUEST_PIXELS,
    Limits,
    ServingError,
)
from keras_resnet.serving.registry import VERSION_POLICIES, Servable, find_models, load_servable
from keras_resnet.serving.images import IMAGE_FORMATS
from keras_resnet.serving.codec import (
    DEFAULT_SIGNATURE,
    format_response,
    parse_request,
    predict,
    run_signature,
)
from keras_resnet.serving.app import create_app
from keras_resnet.serving.server import BackgroundServer, connection_cap, serve

__all__ = [
    "BackgroundServer",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_FRAMES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_REQUEST_PIXELS",
    "DEFAULT_SIGNATURE",
    "IMAGE_FORMATS",
    "Limits",
    "Servable",
    "ServingError",
    "VERSION_POLICIES",
    "connection_cap",
    "create_app",
    "find_models",
    "format_response",
    "load_servable",
    "parse_request",
    "predict",
    "run_signature",
    "serve",
]
