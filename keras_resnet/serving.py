"""A local server that speaks TensorFlow Serving's REST API for the exports of :mod:`export`.

Every model under an export directory (``<export_dir>/<name>/<version>/saved_model.pb``, the
layout :func:`keras_resnet.export.export_saved_model` writes and TensorFlow Serving reads) is
loaded once at start-up and served at the URLs TensorFlow Serving uses:

- ``GET  /v1/models/NAME[/versions/N]``: model status (``model_version_status``).
- ``GET  /v1/models/NAME[/versions/N]/metadata``: the signature definitions.
- ``POST /v1/models/NAME[/versions/N]:predict``: ``{"signature_name", "instances"}`` (row
  format) or ``{"signature_name", "inputs"}`` (columnar format); ``{"b64": ...}`` for bytes.

Requests and responses follow https://www.tensorflow.org/tfx/serving/api_rest, so a client
written against this server works unchanged against ``tensorflow/serving`` on the same export
directory (see ``export/README.md``). Like TensorFlow Serving's default version policy, only
the highest version of each model is served unless ``version_policy="all"``.

What TensorFlow Serving leaves to the deployment is bounded here before it is spent (see
:class:`Limits`): request body size and the time to send it, batch size, encoded image size,
pixels per image and per request (read from image headers without decoding; every frame of a
GIF counts, since TensorFlow's GIF decoder decodes them all), request bodies held at once,
predictions run at once, open connections and idle or slow connections. Encoded images (string
inputs whose name ends in ``bytes``, like ``image_bytes``) must be JPEG, PNG, GIF or BMP; BMPs
are decoded with PIL and passed on as 24-bit RGB (``tf.io.decode_bmp`` reads 8-bit palette
BMPs as grey levels and refuses 1-, 4- and 16-bit ones). uint8 pixel inputs of rank 4 must have
1, 3 or 4 channels. Every bad request gets a 4xx status with ``{"error": "..."}`` (503 when the
server is busy or out of memory); errors raised inside the graph (a truncated JPEG, say) are
400s too. Model calls run in a thread pool, so concurrent clients are served in parallel.

Example:
    >>> serve("exports", port=8501)  # then: curl 127.0.0.1:8501/v1/models/NAME  # doctest: +SKIP
"""

import asyncio
import base64
import binascii
import dataclasses
import errno
import io
import json
import math
import os
import re
import socket
import struct
import threading
import time

import numpy as np

from keras_resnet.extras import require

tf = require("tensorflow", "keras_resnet.serving (the REST server)")

DEFAULT_MAX_IMAGE_BYTES = 8 * 2**20
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
DEFAULT_MAX_IMAGE_FRAMES = 1000
DEFAULT_MAX_REQUEST_PIXELS = 4 * DEFAULT_MAX_IMAGE_PIXELS
VERSION_POLICIES = ("latest", "all")
# What both PIL (header check) and tf.io.decode_image (the serving_bytes graph) read.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
DEFAULT_SIGNATURE = "serving_default"
_MAX_RANK = 32  # numpy's limit is 64; no image model takes more than a handful of axes
_DRAIN_FACTOR = 4  # an oversized body is read (and dropped) up to this many times the limit
_VERSION = re.compile(r"[0-9]{1,18}")  # TensorFlow Serving's versions are int64
_SPARE_FILES = 256  # open files kept beyond max_connections (model files, pipes, TF's own)
_SHUTDOWN_TIMEOUT = 10  # seconds requests in flight get to finish once the server is stopped

_URL = re.compile(
    r"^(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?$"
)


class ServingError(Exception):
    """A request that cannot be served: an HTTP status and a message for ``{"error": ...}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Limits:
    """What requests and connections may cost the server, checked before it is spent.

    One request: ``max_request_bytes`` (body; 413), ``max_batch`` (examples; 413),
    ``max_image_bytes`` (one encoded image; 413), ``max_image_pixels`` (one image, width x
    height, summed over the frames of a GIF; 413), ``max_image_frames`` (frames of one GIF;
    413), ``max_request_pixels`` (all images of one request together; 413), ``body_timeout``
    (seconds to send the body; 408).

    All requests together: ``max_pending_bytes`` (request bodies held in memory at once; 503
    above it; ``None``: 4 x ``max_request_bytes``), ``max_concurrent_predictions`` (requests
    decoded and run at once; the others wait their turn).

    Connections (uvicorn's settings): ``max_connections`` (open connections, uvicorn's
    ``limit_concurrency``; requests beyond it get 503), ``backlog`` (connections waiting to be
    accepted), ``keep_alive_timeout`` (seconds an idle keep-alive connection stays open,
    uvicorn's ``timeout_keep_alive``), ``header_timeout`` (seconds a connection has to send a
    complete request line and headers before it is closed).

    Example:
        >>> Limits(max_request_bytes=2**20).max_pending_bytes
        4194304
    """

    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_image_frames: int = DEFAULT_MAX_IMAGE_FRAMES
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    max_pending_bytes: int = None
    max_concurrent_predictions: int = 4
    max_connections: int = 2048
    backlog: int = 2048
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0

    _TIMEOUTS = ("keep_alive_timeout", "header_timeout", "body_timeout")

    def __post_init__(self):
        if self.max_pending_bytes is None and _is_count(self.max_request_bytes):
            self.max_pending_bytes = 4 * self.max_request_bytes
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in self._TIMEOUTS:
                if not _is_seconds(value):
                    raise ValueError(
                        f"`{field.name}` must be a positive number of seconds; got {value!r}."
                    )
            elif not _is_count(value):
                raise ValueError(f"`{field.name}` must be a positive integer; got {value!r}.")
        if self.max_pending_bytes < self.max_request_bytes:
            raise ValueError(
                f"`max_pending_bytes` must be at least max_request_bytes={self.max_request_bytes} "
                f"(or None); got {self.max_pending_bytes}."
            )


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_seconds(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


@dataclasses.dataclass
class Servable:
    """One loaded model version: its callable signatures and their definitions."""

    name: str
    version: int
    path: str
    signatures: dict  # name -> ConcreteFunction (callable signatures only)
    signature_defs: dict  # name -> SignatureDef as TensorFlow Serving prints it (JSON dict)
    loaded: object = None  # the loaded SavedModel, kept alive for its variables and tables

    def inputs(self, signature_name):
        return self.signatures[signature_name].structured_input_signature[1]


# ---------------------------------------------------------------------------------------------
# Loading


def find_models(export_dir):
    """The models under an export directory: ``{name: {version: path}}``.

    Args:
        export_dir: a directory holding ``<name>/<version>/saved_model.pb`` (numeric versions).

    Returns:
        dict from model name to a dict from int version to the version directory.

    Example:
        >>> find_models("exports")  # doctest: +SKIP
        {'resnet20': {1: 'exports/resnet20/1'}}
    """
    if not os.path.isdir(export_dir):
        raise ValueError(f"`export_dir` must be a directory; got {str(export_dir)!r}.")
    models = {}
    for name in sorted(os.listdir(export_dir)):
        base = os.path.join(export_dir, name)
        if not os.path.isdir(base):
            continue
        versions = {
            int(v): os.path.join(base, v)
            for v in os.listdir(base)
            if _VERSION.fullmatch(v) and os.path.isfile(os.path.join(base, v, "saved_model.pb"))
        }
        if versions:
            models[name] = versions
    if not models:
        raise ValueError(
            f"`export_dir` {str(export_dir)!r} holds no models; expected "
            f"<export_dir>/<name>/<version>/saved_model.pb with a version of 1 to 18 digits."
        )
    return models


def _signature_defs(path):
    """SignatureDefs of a SavedModel as JSON dicts, field names as TensorFlow Serving prints them."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    meta_graph = saved_model.meta_graphs[0]
    return {
        key: json_format.MessageToDict(
            meta_graph.signature_def[key],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for key in sorted(meta_graph.signature_def)
    }


def load_servable(name, version, path):
    """Load one SavedModel version (``tf.saved_model.load``) for serving.

    Args:
        name: the model name clients use (``/v1/models/<name>``).
        version: the integer version.
        path: the version directory holding ``saved_model.pb``.

    Returns:
        a :class:`Servable`.

    Raises:
        ValueError: naming ``path`` and what is wrong (``saved_model.pb`` that is no
            SavedModel, ``variables/`` missing, any other loading error), without TensorFlow's
            traceback.

    Example:
        >>> servable = load_servable("resnet20", 1, "exports/resnet20/1")  # doctest: +SKIP
    """
    where = f"Model {name!r} version {version} at {str(path)!r}"
    try:
        signature_defs = _signature_defs(path)
    except Exception as error:  # protobuf's DecodeError, OSError, no meta graph
        raise ValueError(
            f"{where}: saved_model.pb is not a SavedModel ({type(error).__name__}: {error})."
        ) from None
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # TensorFlow raises OSError, ValueError, OpError, ...
        index = os.path.join(path, "variables", "variables.index")
        reason = ("variables/variables.index is missing: copy the whole SavedModel directory"
                  if not os.path.isfile(index) else _tf_error_message(error).splitlines()[0])
        raise ValueError(f"{where} cannot be loaded: {reason}.") from None
    return Servable(name, version, path, dict(loaded.signatures), signature_defs, loaded)


# ---------------------------------------------------------------------------------------------
# Request decoding: JSON -> numpy arrays checked against the signature


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _describe_shape(shape):
    dims = ["batch" if i == 0 and d is None else ("any" if d is None else str(d))
            for i, d in enumerate(shape)]
    return "(" + ", ".join(dims) + ")"


def _string_leaves(value, input_name):
    """Flatten nested lists of str / {"b64": str} into (list of bytes, shape)."""
    if isinstance(value, list):
        if not value:
            return [], (0,)
        parts = [_string_leaves(item, input_name) for item in value]
        shapes = {shape for _, shape in parts}
        if len(shapes) != 1:
            raise ServingError(
                400, f"Input {input_name!r} is ragged: its nested lists have different lengths."
            )
        return [leaf for leaves, _ in parts for leaf in leaves], (len(value),) + shapes.pop()
    if isinstance(value, str):
        return [value.encode("utf-8")], ()
    if _is_b64(value):
        if not isinstance(value["b64"], str):
            raise ServingError(400, f"Input {input_name!r}: a 'b64' value must be a string.")
        try:
            return [base64.b64decode(value["b64"], validate=True)], ()
        except (binascii.Error, ValueError):
            raise ServingError(
                400, f"Input {input_name!r}: a 'b64' value is not valid base64."
            ) from None
    raise ServingError(
        400,
        f"Input {input_name!r} is DT_STRING: expected strings or {{\"b64\": ...}} objects; "
        f"got {type(value).__name__} {_short(value)}.",
    )


def _short(value, limit=60):
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numeric_array(value, dtype, input_name):
    """Nested JSON numbers -> numpy array of ``dtype`` (a tf.DType), checking type and range."""
    type_name = _dtype_name(dtype)
    try:
        array = np.array(value)
    except ValueError as error:
        reason = "nested too deeply" if "maximum number of dimension" in str(error) else (
            "ragged: its nested lists have different lengths"
        )
        raise ServingError(400, f"Input {input_name!r} is {reason}.") from None
    kind = array.dtype.kind
    if dtype.is_bool:
        if kind != "b":
            raise ServingError(400, f"Input {input_name!r} is {type_name}: expected true/false values.")
        return array
    if dtype.is_integer:
        info = np.iinfo(dtype.as_numpy_dtype)
        if kind not in "iu":
            raise ServingError(
                400,
                f"Input {input_name!r} is {type_name}: expected whole numbers in "
                f"[{info.min}, {info.max}]; got {_kind_name(array)}.",
            )
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ServingError(
                400,
                f"Input {input_name!r} is {type_name}: values must lie in [{info.min}, {info.max}]; "
                f"got values in [{array.min()}, {array.max()}].",
            )
        return array.astype(dtype.as_numpy_dtype)
    if dtype.is_floating:
        if kind not in "iuf":
            raise ServingError(
                400, f"Input {input_name!r} is {type_name}: expected numbers; got {_kind_name(array)}."
            )
        array = array.astype(np.float64)
        finite = array[np.isfinite(array)]
        limit = np.finfo(dtype.as_numpy_dtype).max
        if finite.size and np.abs(finite).max() > limit:
            raise ServingError(
                400, f"Input {input_name!r} is {type_name}: values must lie within +-{limit:.4g}."
            )
        return array.astype(dtype.as_numpy_dtype)
    raise ServingError(400, f"Input {input_name!r} has dtype {type_name}, which this server cannot fill.")


def _dtype_name(dtype):
    """TensorFlow's enum name of a dtype, as the metadata shows it: tf.float32 -> "DT_FLOAT"."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _kind_name(array):
    if array.dtype.kind in "US":
        return "strings"
    if array.dtype.kind == "b":
        return "true/false values"
    if array.dtype.kind == "f":
        return "fractional numbers"
    if array.dtype.kind == "O":
        return "objects, nulls or numbers out of range"
    return f"{array.dtype} values"


def _to_array(value, spec, input_name):
    """One input's JSON value (batch first) -> numpy array matching ``spec`` (a TensorSpec)."""
    dims = spec.shape.as_list() if spec.shape.rank is not None else None

    def check_shape(shape):
        if len(shape) > _MAX_RANK:
            raise ServingError(400, f"Input {input_name!r} is nested too deeply (rank {len(shape)}).")
        if dims is not None and (
            len(shape) != len(dims) or any(w is not None and g != w for g, w in zip(shape, dims))
        ):
            shown = tuple(shape) if len(shape) <= 8 else f"of rank {len(shape)}"
            raise ServingError(
                400, f"Input {input_name!r} must have shape {_describe_shape(dims)}; got shape {shown}."
            )

    try:
        if spec.dtype == tf.string:
            leaves, shape = _string_leaves(value, input_name)
            check_shape(shape)  # before numpy sees a shape of any rank
            array = np.empty(len(leaves), dtype=object)
            array[:] = leaves
            array = array.reshape(shape)
        else:
            array = _numeric_array(value, spec.dtype, input_name)
    except RecursionError:
        raise ServingError(400, f"Input {input_name!r} is nested too deeply.") from None
    check_shape(array.shape)
    if array.ndim == 0:
        raise ServingError(400, f"Input {input_name!r} must be a batch (a list); got a single value.")
    if 0 in array.shape:
        raise ServingError(400, f"Input {input_name!r} is empty (shape {tuple(array.shape)}).")
    return array


def _check_batch(arrays, limits):
    for name, array in arrays.items():
        if array.shape[0] > limits.max_batch:
            raise ServingError(
                413,
                f"Input {name!r} holds a batch of {array.shape[0]}; the server's limit is "
                f"max_batch={limits.max_batch}.",
            )


def _gif_cost(data, limits):
    """(frames, pixels) that TensorFlow's GIF decoder spends on a GIF, from its block structure.

    giflib's DGifSlurp decodes every frame, even for ``decode_image(expand_animations=False)``,
    and TensorFlow then allocates a canvas as wide and tall as the largest frame. The blocks are
    walked without decompressing anything, stopping past ``limits.max_image_frames``.
    """
    if len(data) < 13:
        return 0, 0
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    frames = frame_pixels = width = height = 0
    while position < len(data):
        kind = data[position]
        if kind == 0x2C:  # image descriptor: left, top, width, height, flags
            if position + 10 > len(data):
                break
            w, h = struct.unpack_from("<HH", data, position + 5)
            flags = data[position + 9]
            position += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # + LZW code size
            frames += 1
            frame_pixels += w * h
            width, height = max(width, w), max(height, h)
            if frames > limits.max_image_frames:
                break
        elif kind == 0x21:  # extension: introducer, label, then data sub-blocks
            position += 2
        else:  # the trailer, or a byte where giflib stops reading
            break
        while position < len(data) and data[position]:  # sub-blocks: size byte, then data
            position += data[position] + 1
        position += 1
    return frames, max(frame_pixels, width * height)


def _image_cost(encoded, where, limits):
    """(format, pixels) of one encoded image, read from its header; 4xx beyond ``limits``."""
    from PIL import Image

    if len(encoded) > limits.max_image_bytes:
        raise ServingError(
            413,
            f"{where} has {len(encoded)} bytes; the server's limit is "
            f"max_image_bytes={limits.max_image_bytes}.",
        )
    try:
        with Image.open(io.BytesIO(encoded), formats=IMAGE_FORMATS) as image:
            (width, height), image_format = image.size, image.format
    except Image.DecompressionBombError:
        raise ServingError(
            413, f"{where} has too many pixels; the server's limit is "
            f"max_image_pixels={limits.max_image_pixels}."
        ) from None
    except Exception:  # PIL raises many types for unreadable headers
        raise ServingError(
            400,
            f"{where} ({len(encoded)} bytes) is not a {', '.join(IMAGE_FORMATS[:-1])} or "
            f"{IMAGE_FORMATS[-1]} image.",
        ) from None
    pixels, size = width * height, f"{width}x{height} = {width * height} pixels"
    if image_format == "GIF":
        frames, pixels = _gif_cost(encoded, limits)
        if frames > limits.max_image_frames:
            raise ServingError(
                413, f"{where} is a GIF of more than {limits.max_image_frames} frames; the "
                f"server's limit is max_image_frames={limits.max_image_frames}."
            )
        size = f"a GIF of {frames} frame(s), {pixels} pixels to decode (every frame counts)"
    if pixels > limits.max_image_pixels:
        raise ServingError(
            413, f"{where} is {size}; the server's limit is "
            f"max_image_pixels={limits.max_image_pixels}."
        )
    return image_format, pixels


def _bmp_as_rgb(encoded, where):
    """A BMP decoded by PIL (palettes; 1-, 4-, 8-, 16-bit; RLE), re-encoded as 24-bit RGB.

    ``tf.io.decode_bmp`` reads the bytes of 8-bit palette BMPs as grey levels and refuses other
    depths; a 24-bit BMP it decodes exactly as PIL does.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(encoded), formats=("BMP",)) as image:
            rgb = image.convert("RGB")
    except Exception:  # truncated pixel data, bad RLE, ...
        raise ServingError(400, f"{where} is a BMP whose pixels cannot be decoded.") from None
    buffer = io.BytesIO()
    rgb.save(buffer, format="BMP")
    return buffer.getvalue()


def _check_image_array(name, array, limits):
    """uint8 (batch, h, w, c) pixels: 1, 3 or 4 channels and at most max_image_pixels each."""
    _, height, width, channels = array.shape
    if channels not in (1, 3, 4):
        raise ServingError(
            400, f"Input {name!r} must have 1, 3 or 4 channels (last axis); got {channels}."
        )
    if height * width > limits.max_image_pixels:
        raise ServingError(
            413,
            f"Input {name!r} holds {height}x{width} = {height * width} pixel images; the server's "
            f"limit is max_image_pixels={limits.max_image_pixels}.",
        )


def _check_images(arrays, limits):
    """Check every image input against ``limits``, then pass BMPs on as 24-bit RGB.

    Returns:
        ``arrays``, with BMP images re-encoded (see :func:`_bmp_as_rgb`).
    """
    total, bmps = 0, []
    for name, array in arrays.items():
        if array.dtype == object and name.endswith("bytes"):
            for index, encoded in enumerate(array.reshape(-1)):
                where = f"Image {index} of input {name!r}"
                image_format, pixels = _image_cost(encoded, where, limits)
                total += pixels
                if image_format == "BMP":
                    bmps.append((name, index, where))
        elif array.dtype == np.uint8 and array.ndim == 4:
            _check_image_array(name, array, limits)
            total += array.shape[0] * array.shape[1] * array.shape[2]
    if total > limits.max_request_pixels:
        raise ServingError(
            413,
            f"The request's images hold {total} pixels in all; the server's limit is "
            f"max_request_pixels={limits.max_request_pixels}.",
        )
    for name, index, where in bmps:  # only now, once the whole request is within the limits
        flat = arrays[name].reshape(-1).copy()
        flat[index] = _bmp_as_rgb(flat[index], where)
        arrays[name] = flat.reshape(arrays[name].shape)
    return arrays


def parse_request(body, servable, limits):
    """Decode and check a predict request against a signature and the server's limits.

    Args:
        body: the request body (bytes of JSON).
        servable: the :class:`Servable` asked for.
        limits: the :class:`Limits` to enforce.

    Returns:
        ``(signature_name, {input name: numpy array}, row_format)``.

    Raises:
        ServingError: 400 for a malformed request, 413 for one over ``limits``.

    Example:
        >>> parse_request(b'{"instances": [[[[0.5, 0.5, 0.5]]]]}', servable, Limits())  # doctest: +SKIP
    """
    if not body.strip():
        raise ServingError(
            400, "The request body is empty; expected a JSON object with 'instances' or 'inputs'."
        )
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ServingError(400, f"The request body is not valid JSON: {error}.") from None
    if not isinstance(request, dict):
        raise ServingError(
            400, f"The request body must be a JSON object; got a JSON {type(request).__name__}."
        )
    signature_name = request.get("signature_name", DEFAULT_SIGNATURE) or DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
        raise ServingError(400, f"'signature_name' must be a string; got {_short(signature_name)}.")
    if signature_name not in servable.signatures:
        raise ServingError(
            400,
            f"Serving signature name {signature_name!r} not found in model {servable.name!r} "
            f"version {servable.version}; available: {', '.join(sorted(servable.signatures))}.",
        )
    specs = servable.inputs(signature_name)
    has_instances, has_inputs = "instances" in request, "inputs" in request
    if has_instances == has_inputs:
        raise ServingError(
            400,
            "The request must have exactly one of 'instances' (row format) or 'inputs' "
            f"(columnar format); got {'both' if has_instances else 'neither'}.",
        )
    if has_instances:
        columns = _columns_from_rows(request["instances"], specs, limits)
    else:
        columns = _columns_from_inputs(request["inputs"], specs)
    arrays = {name: _to_array(columns[name], specs[name], name) for name in specs}
    _check_batch(arrays, limits)
    return signature_name, _check_images(arrays, limits), has_instances


def _columns_from_rows(instances, specs, limits):
    """Row format: one item per example; items are values (one input) or {input: value}."""
    if not isinstance(instances, list) or not instances:
        raise ServingError(
            400, f"'instances' must be a non-empty list, one item per example; got {_short(instances)}."
        )
    if len(instances) > limits.max_batch:
        raise ServingError(
            413,
            f"'instances' holds {len(instances)} examples; the server's limit is "
            f"max_batch={limits.max_batch}.",
        )
    names = sorted(specs)
    named = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if len(names) == 1 and not any(named):
        return {names[0]: instances}
    if not all(named):
        raise ServingError(
            400,
            f"Each item of 'instances' must be an object keyed by input name "
            f"({', '.join(names)}) or, for a single-input signature, the input's value.",
        )
    for index, item in enumerate(instances):
        if set(item) != set(names):
            raise ServingError(
                400,
                f"Item {index} of 'instances' has keys {sorted(item)}; the signature's inputs are "
                f"{names}.",
            )
    return {name: [item[name] for item in instances] for name in names}


def _columns_from_inputs(inputs, specs):
    """Columnar format: a bare value (one input) or {input: value}."""
    names = sorted(specs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        missing, unknown = set(names) - set(inputs), set(inputs) - set(names)
        if missing or unknown:
            problems = ([f"unknown {sorted(unknown)}"] if unknown else []) + (
                [f"missing {sorted(missing)}"] if missing else []
            )
            raise ServingError(
                400, f"'inputs' must be keyed by the signature's inputs {names}; "
                f"{' and '.join(problems)}."
            )
        return inputs
    if len(names) != 1:
        raise ServingError(
            400, f"'inputs' must be an object keyed by input name for a signature taking {names}."
        )
    return {names[0]: inputs}


# ---------------------------------------------------------------------------------------------
# Running and encoding the response


def _tf_error_message(error):
    """The useful line of a TensorFlow op error (without node names and stack placeholders)."""
    lines = []
    for line in str(getattr(error, "message", error)).splitlines():
        line = re.sub(r"\{\{function_node [^}]*\}\}", "", line).strip()
        if not line or line.startswith(("Graph execution error", "Detected at node", "<stack", "[[")):
            continue
        lines.append(re.sub(r"\s*\[\[\{\{node.*$|\s*\[Op:.*$", "", line))
    return " ".join(lines) or type(error).__name__


def run_signature(servable, signature_name, arrays):
    """Call a signature on numpy inputs; TensorFlow's errors become :class:`ServingError`.

    Args:
        servable: a :class:`Servable`.
        signature_name: one of ``servable.signatures``.
        arrays: ``{input name: numpy array}`` as :func:`parse_request` returns them.

    Returns:
        dict from output name to numpy array.

    Example:
        >>> inputs = {"image_bytes": np.array([b"...jpeg bytes..."], object)}
        >>> run_signature(servable, "serving_bytes", inputs)  # doctest: +SKIP
    """
    function = servable.signatures[signature_name]
    specs = servable.inputs(signature_name)
    try:
        tensors = {name: tf.constant(array, dtype=specs[name].dtype) for name, array in arrays.items()}
        outputs = function(**tensors)
    except tf.errors.ResourceExhaustedError as error:
        raise ServingError(503, f"The server ran out of resources: {_tf_error_message(error)}") from None
    except tf.errors.OpError as error:
        raise ServingError(400, f"The model rejected the input: {_tf_error_message(error)}") from None
    except (TypeError, ValueError) as error:
        raise ServingError(400, f"The model rejected the input: {error}") from None
    return {name: value.numpy() for name, value in outputs.items()}


def _json_value(name, array):
    """Numpy output -> JSON-able nested lists; bytes as UTF-8 text, else (or ``*_bytes``) b64."""
    if array.dtype != object:
        return array.tolist()
    binary = name.endswith("_bytes")

    def convert(value):
        if isinstance(value, list):
            return [convert(v) for v in value]
        if not binary:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}

    return convert(array.tolist())


def format_response(outputs, row_format):
    """TensorFlow Serving's predict response: ``predictions`` (rows) or ``outputs`` (columns).

    Args:
        outputs: ``{output name: numpy array}``.
        row_format: True for a request that used ``instances``, False for ``inputs``.

    Returns:
        a JSON-able dict; one output is given bare, several by name; strings are text, or
        ``{"b64": ...}`` when they are not UTF-8 or the output's name ends in ``_bytes``.

    Example:
        >>> format_response({"scores": np.array([[0.5]])}, row_format=True)
        {'predictions': [[0.5]]}
    """
    names = sorted(outputs)
    values = {name: _json_value(name, outputs[name]) for name in names}
    if not row_format:
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    batch = len(values[names[0]])
    return {"predictions": [{name: values[name][i] for name in names} for i in range(batch)]}


def predict(servable, body, limits):
    """A predict request body (bytes) -> the response dict, raising :class:`ServingError`.

    Args:
        servable: the :class:`Servable` asked for.
        body: the request body (bytes of JSON).
        limits: the :class:`Limits` to enforce.

    Returns:
        the response as a JSON-able dict (see :func:`format_response`).

    Example:
        >>> predict(servable, b'{"instances": [{"b64": "..."}]}', Limits())  # doctest: +SKIP
    """
    try:
        signature_name, arrays, row_format = parse_request(body, servable, limits)
        return format_response(run_signature(servable, signature_name, arrays), row_format)
    except MemoryError:  # numpy or json under a memory limit; TensorFlow's own is a 503 too
        raise ServingError(
            503, "The server ran out of memory for this request; retry later, or send less."
        ) from None


# ---------------------------------------------------------------------------------------------
# The app


def _json_response(content, status=200):
    from starlette.responses import Response

    # Python's json writes NaN/Infinity as TensorFlow Serving does (starlette's JSONResponse refuses).
    body = json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json")


class _Registry:
    def __init__(self, export_dir, version_policy):
        self.models = {}
        for name, versions in find_models(export_dir).items():
            chosen = versions if version_policy == "all" else {max(versions): versions[max(versions)]}
            self.models[name] = {v: load_servable(name, v, p) for v, p in sorted(chosen.items())}

    def get(self, name, version=None, label=None):
        if name not in self.models:
            raise ServingError(
                404,
                f"Servable not found for request: model {_clip(name)}; served models: "
                f"{', '.join(sorted(self.models))}.",
            )
        versions = self.models[name]
        if label is not None:
            raise ServingError(
                404, f"Version label {_clip(label)} of model {name!r} is unknown; use /versions/N."
            )
        if version is None:
            return versions[max(versions)]
        if not _VERSION.fullmatch(version):  # not str.isdigit: it takes "¹" and "٣" too
            raise ServingError(
                400, f"Model version must be a whole number of 1 to 18 ASCII digits; got "
                f"{_clip(version)}."
            )
        if int(version) not in versions:
            raise ServingError(
                404,
                f"Servable not found for request: version {version} of model {name!r}; served "
                f"versions: {', '.join(map(str, sorted(versions)))}.",
            )
        return versions[int(version)]


def _clip(text, limit=60):
    """``repr`` of a string from a client, cut to about ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def _status(servables):
    return {
        "model_version_status": [
            {"version": str(s.version), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
            for s in sorted(servables, key=lambda s: -s.version)
        ]
    }


def _metadata(servable):
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": {"signature_def": servable.signature_defs}},
    }


class _ByteBudget:
    """Bytes of request bodies held at once, all requests together (used on the event loop only)."""

    def __init__(self, limit):
        self.limit, self.used = limit, 0

    def take(self, size):
        if self.used + size > self.limit:
            raise ServingError(
                503, f"The server is busy: request bodies in memory would exceed "
                f"max_pending_bytes={self.limit}; retry later."
            )
        self.used += size

    def give(self, size):
        self.used -= size


async def _read_body(request, limits, budget):
    """The body: at most max_request_bytes (413), sent within body_timeout (408), and held
    within ``budget`` (503); nothing over the limits is kept."""
    chunks, size = [], 0

    async def read():
        nonlocal size
        stream = request.stream()
        async for chunk in stream:
            if size + len(chunk) > limits.max_request_bytes:
                # Read on (discarding, up to a bound) so that the client gets the 413 rather
                # than a connection reset while it is still sending; the same stream, as a
                # new one would refuse a body already read to its end.
                dropped = size + len(chunk)
                async for chunk in stream:
                    dropped += len(chunk)
                    if dropped > _DRAIN_FACTOR * limits.max_request_bytes:
                        break
                raise ServingError(
                    413, f"The request body exceeds the server's limit of "
                    f"max_request_bytes={limits.max_request_bytes}."
                )
            budget.take(len(chunk))
            size += len(chunk)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), limits.body_timeout)
    except asyncio.TimeoutError:
        budget.give(size)
        raise ServingError(
            408, f"The request body did not arrive within body_timeout={limits.body_timeout} s "
            f"({size} bytes came)."
        ) from None
    except BaseException:
        budget.give(size)
        raise
    return b"".join(chunks)


def create_app(export_dir, *, version_policy="latest", **limits):
    """A FastAPI app serving every model under ``export_dir`` with TensorFlow Serving's REST API.

    Args:
        export_dir: directory of ``<name>/<version>/`` SavedModels (what ``export_saved_model``
            writes and ``tensorflow/serving`` reads); all are loaded now, and one that does not
            load stops the start with a ``ValueError`` naming it and what is wrong.
        version_policy: "latest" (TensorFlow Serving's default: the highest version only) or
            "all" (every version, as ``model_version_policy { all {} }``).
        **limits: fields of :class:`Limits` (``max_image_bytes``, ``max_image_pixels``,
            ``max_batch``, ``max_request_bytes``, ``max_request_pixels``, ...); the connection
            limits among them apply when :func:`serve` or :class:`BackgroundServer` runs it.

    Returns:
        a ``fastapi.FastAPI`` app (``app.state.models``: ``{name: {version: Servable}}``,
        ``app.state.limits``: the :class:`Limits`).

    Example:
        >>> uvicorn.run(create_app("exports", max_batch=16), port=8501)  # doctest: +SKIP
    """
    require("fastapi", "The REST server (keras_resnet.serving)")
    from fastapi import FastAPI, Request
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    if version_policy not in VERSION_POLICIES:
        raise ValueError(
            f"`version_policy` must be one of {', '.join(map(repr, VERSION_POLICIES))}; "
            f"got {version_policy!r}."
        )
    unknown = sorted(set(limits) - {field.name for field in dataclasses.fields(Limits)})
    if unknown:
        raise TypeError(
            f"Unknown limits {unknown}; allowed: "
            f"{', '.join(field.name for field in dataclasses.fields(Limits))}."
        )
    limits = Limits(**limits)
    registry = _Registry(str(export_dir), version_policy)
    budget = _ByteBudget(limits.max_pending_bytes)
    predictions = asyncio.Semaphore(limits.max_concurrent_predictions)

    app = FastAPI(title="keras_resnet serving", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.models = registry.models
    app.state.limits = limits

    @app.exception_handler(ServingError)
    async def _serving_error(request, error):
        return _json_response({"error": error.message}, error.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, error):
        return _json_response({"error": f"{error.detail}: {request.method} {request.url.path}"},
                              error.status_code)

    @app.exception_handler(Exception)
    async def _internal_error(request, error):
        return _json_response({"error": f"Internal error: {type(error).__name__}: {error}"}, 500)

    def route(path):
        match = _URL.match(path)
        if match is None:
            raise ServingError(404, f"Malformed request: {_clip('/v1/models/' + path)}.")
        return match.group("name", "version", "label", "verb")

    @app.get("/v1/models/{path:path}")
    async def _get(path: str):
        name, version, label, verb = route(path)
        if verb not in (None, "/metadata"):
            raise ServingError(405, f"{verb[1:]} needs POST; got GET.")
        servable = registry.get(name, version, label)
        if verb == "/metadata":
            return _json_response(_metadata(servable))
        if version is None:
            return _json_response(_status(registry.models[name].values()))
        return _json_response(_status([servable]))

    @app.post("/v1/models/{path:path}")
    async def _post(path: str, request: Request):
        name, version, label, verb = route(path)
        if verb in (":classify", ":regress"):
            raise ServingError(
                400, f"{verb[1:]} needs a tensorflow/serving/{verb[1:]} signature; these exports "
                f"have predict signatures only: use :predict."
            )
        if verb != ":predict":
            raise ServingError(405, f"POST {_clip('/v1/models/' + path)} is not an API; use :predict.")
        servable = registry.get(name, version, label)
        body = await _read_body(request, limits, budget)
        try:
            async with predictions:  # decoding and running take the memory: a few at a time
                response = await run_in_threadpool(predict, servable, body, limits)
        finally:
            budget.give(len(body))
        return _json_response(response)

    return app


def _url(host, port):
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _http_protocol(header_timeout):
    """uvicorn's h11 protocol, also closing connections that send no request head in time.

    uvicorn's own keep-alive timer starts only after a response, and any byte stops it: a
    client that connects and sends nothing, or sends its headers a byte at a time, would hold
    its connection (and a place under ``max_connections``) for ever.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc):
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)

        def _header_timed_out(self):
            # IDLE: no complete request head since the connection opened or the last response.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return Protocol


def _uvicorn_config(app, **settings):
    """uvicorn's Config for an app of :func:`create_app`, with its connection limits."""
    import uvicorn

    limits = app.state.limits
    return uvicorn.Config(
        app,
        http=_http_protocol(limits.header_timeout),
        limit_concurrency=limits.max_connections,
        backlog=limits.backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=_SHUTDOWN_TIMEOUT,
        **settings,
    )


def _check_port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"`port` must be an integer in 1..65535; got {port!r}.")


def _bind(host, port):
    """A TCP socket bound to ``(host, port)`` (uvicorn listens on it); ValueError if taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(f"`host` {host!r} is not an address to listen on: {error}.") from None
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # that say they are TCP; without it keep-alive requests wait on delayed ACKs.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ValueError(
                f"`port` {port} on {host} is in use by another program; stop it or pick another "
                f"port (1..65535)."
            ) from None
        raise ValueError(f"Cannot listen on `host` {host!r} `port` {port}: {error.strerror}.") from None
    return sock


def _raise_open_files_limit(wanted):
    """Raise the soft limit on open files to ``wanted`` (at most the hard limit), if lower."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        print(f"Warning: open files are limited to {new} (hard limit); connections beyond about "
              f"{new - _SPARE_FILES} wait to be accepted.", flush=True)


def serve(export_dir, host="127.0.0.1", port=8501, **limits):
    """Serve ``export_dir`` with uvicorn until interrupted (loopback only by default).

    The port is checked and bound before any model loads; Ctrl-C (SIGINT) or SIGTERM stop the
    server gracefully (requests in flight get a few seconds) and ``serve`` returns.

    Args:
        export_dir: directory of ``<name>/<version>/`` SavedModels.
        host: interface to listen on; "0.0.0.0" exposes the server to the network.
        port: TCP port in 1..65535 (TensorFlow Serving's REST port is 8501).
        **limits: keyword arguments of :func:`create_app`: ``version_policy`` and the fields
            of :class:`Limits` (request, image, concurrency and connection limits).

    Returns:
        None, once the server stops.

    Raises:
        ValueError: a port outside 1..65535 or in use, or a model that does not load.

    Example:
        >>> serve("exports", port=8501)  # doctest: +SKIP
    """
    uvicorn = require("uvicorn", "keras-resnet serve")

    _check_port(port)
    sock = _bind(host, port)
    try:
        app = create_app(export_dir, **limits)
        _raise_open_files_limit(app.state.limits.max_connections + _SPARE_FILES)
        url = _url(host, port)
        for name, versions in sorted(app.state.models.items()):
            print(f"Serving {name} (version {', '.join(map(str, sorted(versions)))}) at "
                  f"{url}/v1/models/{name}", flush=True)
        print(f"Predict: POST {url}/v1/models/<name>:predict  (Ctrl-C stops)", flush=True)
        uvicorn.Server(_uvicorn_config(app, log_level="info")).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn stops gracefully on SIGINT, then raises it again once its handler is gone.
        pass
    finally:
        sock.close()
    print("Server stopped.", flush=True)


class BackgroundServer:
    """A uvicorn server on a thread of this process, for tests, notebooks and benchmarks.

    Args:
        app_or_export_dir: a FastAPI app from :func:`create_app`, or an export directory.
        host: interface (loopback by default).
        port: TCP port; 0 picks a free one (see ``url``).
        **limits: :func:`create_app` keyword arguments when an export directory is given.

    Example:
        >>> with BackgroundServer("exports") as server:  # doctest: +SKIP
        ...     httpx.get(server.url + "/v1/models/resnet20")
    """

    def __init__(self, app_or_export_dir, host="127.0.0.1", port=0, start_timeout=60, **limits):
        import uvicorn

        app = app_or_export_dir
        if isinstance(app, (str, os.PathLike)):
            app = create_app(app, **limits)
        elif limits:
            raise ValueError(f"Limits {sorted(limits)} apply to an export directory, not to an app.")
        self._socket = _bind(host, port)
        self.port = self._socket.getsockname()[1]
        self.url = _url(host, self.port)
        self.app = app
        config = _uvicorn_config(app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The server at {self.url} did not start within {start_timeout} s.")
            time.sleep(0.01)

    def stop(self, timeout=10):
        """Ask the server to exit and wait (at most ``timeout`` seconds) for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
