"""bfloat16 inference: which precision a runner takes, and SavedModels in bfloat16.

:func:`choose_precision` decides between float32 and bfloat16 for an exported file from the
CPU (does it multiply bfloat16 natively?) and from the figures ``export_run`` recorded with the
export (:func:`record_bfloat16_parity`: agreement with the Keras model and speed-up over
float32, on the run's test images). OpenVINO takes bfloat16 through its precision hint. A
SavedModel takes it through TensorFlow's oneDNN rewrite: with the grappler option
``auto_mixed_precision_onednn_bfloat16`` on, TensorFlow rewrites a function's convolutions and
matrix products to bfloat16 (casts around them, float32 in and out) when it first runs the
function under that setting, and keeps one compiled copy per setting; so a SavedModel called
inside :func:`onednn_bfloat16` runs in bfloat16 and the same one called outside it in float32.
The file does not change. The rewrite pays where the CPU has AMX-BF16 (ResNet-50 served at 1.5x
float32's images/s, batches of 8 and 32); with AVX512_BF16 alone it can be slower, which the
recorded speed-up catches.

Example:
    >>> import tensorflow as tf
    >>> square = tf.function(lambda x: tf.matmul(x, x))
    >>> with onednn_bfloat16():
    ...     _ = square(tf.ones((2, 2)))
    >>> tf.config.optimizer.get_experimental_options().get(REWRITE_OPTION, False)  # restored
    False
"""

import contextlib
import json
import os
import threading

import tensorflow as tf

from keras_resnet import devices
from keras_resnet.errors import InvalidArgument, check_choice
from keras_resnet.export.formats import (
    BFLOAT16_FORMATS,
    BFLOAT16_MIN_AGREEMENT,
    BFLOAT16_MIN_SPEEDUP,
    INFERENCE_PRECISIONS,
    METADATA_FILE,
    RUNTIMES,
)
from keras_resnet.saving import write_json

REWRITE_OPTION = "auto_mixed_precision_onednn_bfloat16"
# The option is the process's: calls that need it hold this lock while it is on. TensorFlow
# reads it into a thread's function-call settings at the thread's first call after a change
# made on that thread; a thread's float32 calls therefore make that first call under the lock
# (``_SETTLED``), or a bfloat16 call on another thread could leave the option on for them.
_REWRITE_LOCK = threading.RLock()
_SETTLED = threading.local()


@contextlib.contextmanager
def onednn_bfloat16():
    """Run the TensorFlow functions called inside in bfloat16 (TensorFlow's oneDNN rewrite);
    the option is restored after, and held by one thread at a time."""
    with _REWRITE_LOCK:
        before = tf.config.optimizer.get_experimental_options().get(REWRITE_OPTION, False)
        tf.config.optimizer.set_experimental_options({REWRITE_OPTION: True})
        try:
            yield
        finally:
            tf.config.optimizer.set_experimental_options({REWRITE_OPTION: before})
            _SETTLED.float32 = False  # this thread reads the option again at its next call


def choose_precision(path, fmt, precision="auto"):
    """The arithmetic a runner of ``path`` (a file of format ``fmt``) uses: "float32" or
    "bfloat16".

    "auto" takes bfloat16 where the runtime has a bfloat16 path (``BFLOAT16_FORMATS``), the
    CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16) and the export records a
    bfloat16 parity (``export_run`` measures it) of at least ``BFLOAT16_MIN_AGREEMENT``
    top-1 agreement and, where it records one, a speed-up over float32 of at least
    ``BFLOAT16_MIN_SPEEDUP``; float32 otherwise.
    "bfloat16" asked of a runtime or a CPU without it raises.

    Example:
        >>> choose_precision("exports/resnet20/onnx/model_float32.onnx", "onnx")
        'float32'
    """
    check_choice("precision", precision, INFERENCE_PRECISIONS)
    if precision == "float32":
        return "float32"
    native = devices.cpu_has_bfloat16()
    if precision == "bfloat16":
        if fmt not in BFLOAT16_FORMATS:
            raise InvalidArgument(
                f"`precision='bfloat16'`: {RUNTIMES.get(fmt, fmt)} has no bfloat16 path on CPUs "
                f"({path!r}); only OpenVINO's and TensorFlow's do (OpenVINO .xml files and "
                "SavedModels). Use 'float32' or 'auto'."
            )
        if not native:
            raise InvalidArgument(
                "`precision='bfloat16'` needs a CPU that multiplies bfloat16 natively (the "
                "avx512_bf16 or amx_bf16 flags); this one has neither. Use 'float32' or 'auto'."
            )
        return "bfloat16"
    parity = read_bfloat16_parity(path) if fmt in BFLOAT16_FORMATS else {}
    agreement = parity.get("top1_agreement", 0.0)
    # A file recorded before the speed-up was measured: its agreement alone.
    faster = parity.get("speedup", BFLOAT16_MIN_SPEEDUP) >= BFLOAT16_MIN_SPEEDUP
    return "bfloat16" if native and agreement >= BFLOAT16_MIN_AGREEMENT and faster else "float32"


def run_in(precision, function, **inputs):
    """``function(**inputs)`` in ``precision``: "float32", or "bfloat16" (the rewrite on).

    Example:
        >>> run_in("bfloat16", tf.function(lambda x: x * 2), x=tf.ones(2)).numpy()
        array([2., 2.], dtype=float32)
    """
    if precision == "bfloat16":
        with onednn_bfloat16():
            return function(**inputs)
    if getattr(_SETTLED, "float32", False):
        return function(**inputs)
    with _REWRITE_LOCK:  # this thread's first call reads the option while it is off
        outputs = function(**inputs)
    _SETTLED.float32 = True
    return outputs


def is_saved_model(path):
    """Whether ``path`` is a SavedModel directory (it holds ``saved_model.pb``)."""
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))


def _record_file(path):
    """Where a file's figures live: a SavedModel's ``assets.extra/keras_resnet.json``, another
    file's ``FILE.json`` sidecar."""
    return os.path.join(path, METADATA_FILE) if is_saved_model(path) else path + ".json"


def read_bfloat16_parity(path):
    """The bfloat16 figures recorded with an export (``{}`` when none were measured).

    Example:
        >>> read_bfloat16_parity("exports/resnet20/1").get("top1_agreement")  # doctest: +SKIP
        1.0
    """
    try:
        with open(_record_file(path)) as f:
            return json.load(f).get("bfloat16") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def record_bfloat16_parity(path, row, float32_row=None):
    """Record a bfloat16 parity row (``parity_report(..., precision="bfloat16")``) with the
    export at ``path``: ``"bfloat16": {"max_abs_diff", "top1_agreement", "images", ...}``,
    and ``speedup`` (the float32 row's batch-1 latency over the bfloat16 one) when
    ``float32_row`` is given. ``precision="auto"`` reads them.

    Example:
        >>> record_bfloat16_parity("exports/resnet20/openvino/model_float32.xml", row)  # doctest: +SKIP
    """
    record = _record_file(path)
    with open(record) as f:
        content = json.load(f)
    content["bfloat16"] = {key: row[key] for key in (
        "max_abs_diff", "top1_agreement", "pixel_agreement", "box_agreement", "images")
        if key in row}
    if float32_row is not None and row.get("latency_ms"):
        content["bfloat16"]["speedup"] = float32_row["latency_ms"] / row["latency_ms"]
    write_json(record, content)
