"""TensorFlow Serving's REST predict API: JSON request -> numpy arrays -> signature -> JSON.

Requests and responses follow https://www.tensorflow.org/tfx/serving/api_rest:
``{"signature_name", "instances"}`` (row format) or ``{"signature_name", "inputs"}`` (columnar
format), ``{"b64": ...}`` for bytes. Every input is checked against the signature and the
server's :class:`~keras_resnet.serving.limits.Limits` before the model runs; a bad request is
a :class:`~keras_resnet.serving.limits.ServingError` (400, or 413 over a limit), and errors
raised inside the graph (a truncated JPEG, say) are 400s too.

Numbers are strict JSON (RFC 8259) both ways: a numeric input holding NaN, Infinity, a literal
that overflows a double (``1e999``) or true/false is a 400 naming the input, and an output
holding NaN or Infinity is a 500 naming the output (TensorFlow Serving accepts and writes
the non-standard tokens; strict parsers refuse them).

Example:
    >>> format_response({"scores": np.array([[0.25, 0.75]])}, row_format=False)
    {'outputs': [[0.25, 0.75]]}
"""

import base64
import binascii
import json

import numpy as np

from keras_resnet.export.bfloat16 import run_in
from keras_resnet.extras import require
from keras_resnet.serving.images import check_images
from keras_resnet.serving.limits import ServingError
from keras_resnet.serving.registry import tf_error_message

tf = require("tensorflow", "keras_resnet.serving (the REST server)")

DEFAULT_SIGNATURE = "serving_default"
_MAX_RANK = 32  # numpy's limit is 64; no image model takes more than a handful of axes


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
    _check_numbers(array, value, type_name, input_name)
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
        limit = np.finfo(dtype.as_numpy_dtype).max
        if array.size and np.abs(array).max() > limit:
            raise ServingError(
                400, f"Input {input_name!r} is {type_name}: values must lie within +-{limit:.4g}."
            )
        return array.astype(dtype.as_numpy_dtype)
    raise ServingError(400, f"Input {input_name!r} has dtype {type_name}, which this server cannot fill.")


def _check_numbers(array, value, type_name, input_name):
    """No NaN, Infinity or overflowing literal (1e999 parses as inf) and no true/false among
    numbers: numpy would read them as non-finite floats and as 1/0 (RFC 8259 has neither)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ServingError(
            400,
            f"Input {input_name!r} is {type_name}: values must be finite numbers; got NaN, "
            f"Infinity or a number too large for a double (such as 1e999).",
        )
    if array.dtype.kind == "b" or (
        array.dtype.kind in "iuf" and bool in set(map(type, np.array(value, dtype=object).flat))
    ):
        raise ServingError(
            400, f"Input {input_name!r} is {type_name}: expected numbers; got true/false values."
        )


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
    return signature_name, check_images(arrays, limits), has_instances


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
        outputs = run_in(servable.precision, function, **tensors)
    except tf.errors.ResourceExhaustedError as error:
        raise ServingError(503, f"The server ran out of resources: {tf_error_message(error)}") from None
    except tf.errors.OpError as error:
        raise ServingError(400, f"The model rejected the input: {tf_error_message(error)}") from None
    except (TypeError, ValueError) as error:
        raise ServingError(400, f"The model rejected the input: {error}") from None
    return {name: value.numpy() for name, value in outputs.items()}


def _check_finite(outputs):
    """Strict JSON (RFC 8259) has no NaN or Infinity: an output holding one is a 500 naming it,
    never a token a strict client cannot parse, nor a null standing in for a number."""
    for name in sorted(outputs):
        array = outputs[name]
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise ServingError(
                500,
                f"Output {name!r} holds NaN or Infinity, which JSON cannot carry: the model "
                f"computed non-finite values for these inputs.",
            )


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

    Raises:
        ServingError: 500 naming the output when one holds NaN or Infinity (strict JSON has
            neither; TensorFlow Serving would write the non-standard tokens).

    Example:
        >>> format_response({"scores": np.array([[0.5]])}, row_format=True)
        {'predictions': [[0.5]]}
    """
    _check_finite(outputs)
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
