"""The export formats as data (names, suffixes, runtimes, quantizations, packages) and the
checks every writer runs on its arguments before it writes anything.

Example:
    >>> FORMAT_QUANTIZATIONS["onnx"]
    (None, 'int8')
"""

import os
import tempfile

from keras_resnet.errors import InvalidArgument
from keras_resnet.extras import require

QUANTIZATIONS = (None, "float16", "dynamic", "int8", "int8_full")
FORMATS = ("saved_model", "tflite", "onnx", "openvino")
DEFAULT_FORMATS = ("saved_model", "tflite")  # what `keras-resnet train` exports
# The quantizations each file format offers (None: float32).
FORMAT_QUANTIZATIONS = {
    "saved_model": (None,),
    "tflite": QUANTIZATIONS,
    "onnx": (None, "int8"),
    "openvino": (None, "int8"),
}
# A detector's: the weight-only ones. The int8 quantizers (TFLite's, ONNX Runtime's, NNCF's)
# quantize activations into the post-processing too, and lose the boxes: on the digit boxes'
# ResNet-18 RetinaNet OpenVINO's int8 kept 0.3% of them, TFLite's and ONNX Runtime's none.
DETECTOR_QUANTIZATIONS = {
    "saved_model": (None,),
    "tflite": (None, "float16", "dynamic"),
    "onnx": (None,),
    "openvino": (None,),
}
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
RUNTIMES = {"saved_model": "TensorFlow", "keras": "Keras", "tflite": "LiteRT",
            "onnx": "ONNX Runtime", "openvino": "OpenVINO"}
# The input and output names of ONNX and OpenVINO exports.
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
# A runner's arithmetic: "auto" takes bfloat16 where the CPU multiplies it natively and the
# export's parity report measured top-1 agreement >= BFLOAT16_MIN_AGREEMENT, else float32.
INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
BFLOAT16_MIN_AGREEMENT = 0.995
# ... and, where the export records it, bfloat16's batch-1 speed-up over float32 is at least
# this (TensorFlow's rewrite ran ResNet-50 1.66x faster, a digits ResNet-8 0.69x: 2-core
# AVX512_BF16).
BFLOAT16_MIN_SPEEDUP = 1.1
# The formats whose runtime has a bfloat16 CPU path: OpenVINO's inference precision hint (2x
# float32 on ResNet-50 with AVX512_BF16, 4.9x with AMX) and TensorFlow's oneDNN bfloat16
# rewrite of a SavedModel (keras_resnet.export.bfloat16: 1.5x served on ResNet-50 with AMX;
# with AVX512_BF16 alone anywhere from slower than float32 to 1.49x, hence the measured
# speed-up "auto" also reads). ONNX Runtime's CPU execution provider has no bfloat16
# convolution on x86 (its bfloat16 fast-math GEMM is ARM64's), LiteRT's XNNPACK no bfloat16.
BFLOAT16_FORMATS = ("openvino", "saved_model")
# What an export carries besides its graph (preprocessing, task, measured figures).
METADATA_FILE = os.path.join("assets.extra", "keras_resnet.json")
# What an exported file can output: class probabilities, or the pooled features.
OUTPUTS = ("probabilities", "embeddings")
FORMAT_NAMES = {"saved_model": "SavedModel", "tflite": "TFLite", "onnx": "ONNX",
                "openvino": "OpenVINO"}
# Packages each format needs to export and to run (the [onnx] / [openvino] extras).
FORMAT_PACKAGES = {
    "onnx": {None: ("tf2onnx", "onnx", "onnxruntime"),
             "int8": ("tf2onnx", "onnx", "onnxruntime", "onnxruntime.quantization")},
    "openvino": {None: ("openvino",), "int8": ("openvino", "nncf")},
}


def check_quantization(fmt, quantization, representative_data, detector=False):
    """Raise ValueError unless ``fmt`` offers ``quantization`` (with data where it needs it),
    of a ``detector`` too (:data:`DETECTOR_QUANTIZATIONS`).

    Example:
        >>> check_quantization("tflite", "float16", representative_data=None)
    """
    allowed = (DETECTOR_QUANTIZATIONS if detector else FORMAT_QUANTIZATIONS)[fmt]
    if quantization not in allowed:
        raise InvalidArgument(
            f"`quantization` for {'a detector in ' if detector else ''}{fmt} must be one of "
            f"{', '.join(map(repr, allowed))}; got {quantization!r}."
        )
    if quantization in ("int8", "int8_full") and representative_data is None:
        raise InvalidArgument(f"`quantization={quantization!r}` needs `representative_data` (images).")


def require_format(fmt, quantization=None):
    """Import what exporting to (and running) ``fmt`` needs, or raise ``MissingExtra`` naming
    the install extra (``[onnx]``, ``[openvino]``).

    Example:
        >>> require_format("onnx", "int8")  # doctest: +SKIP
    """
    packages = FORMAT_PACKAGES.get(fmt, {})
    purpose = f"{quantization + ' ' if quantization else ''}{FORMAT_NAMES[fmt]} export"
    for module in packages.get(quantization, packages.get(None, ())):
        require(module, purpose)


def check_writable(argument, folder):
    """Raise ValueError unless ``folder`` is (or can be made) a writable directory.

    Example:
        >>> check_writable("output_dir", "exports/not/made/yet")
    """
    folder = os.fspath(folder)
    probe = folder
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    probe = probe or "."
    if not os.path.isdir(probe):
        raise InvalidArgument(f"`{argument}` {folder!r} lies below {probe!r}, which is a file.")
    try:  # os.access says yes to root anywhere, even in /proc: try for real
        os.rmdir(tempfile.mkdtemp(prefix=".keras_resnet_probe.", dir=probe))
    except OSError as error:
        raise InvalidArgument(
            f"`{argument}` {folder!r} is not writable ({probe!r}: {error.strerror or error})."
        ) from None

