"""``keras-resnet export`` as a function: every requested format and quantization of one model,
then a parity report of each exported file against the Keras model.

A detector's files hold its post-processing (``export.detection``) and its parity report
measures the agreement of their boxes with Keras' on :data:`DETECTOR_PARITY_IMAGES` test
images (each holds many boxes, and costs a post-processing per runtime).

Example:
    >>> export_run("runs/resnet20-digits", "exports", ("onnx",), (None, "int8"))["onnx"]  # doctest: +SKIP
"""

import importlib
import os

from keras_resnet import data, devices
from keras_resnet.data.detection import load_detection
from keras_resnet.errors import InvalidArgument
from keras_resnet.export.bfloat16 import record_bfloat16_parity
from keras_resnet.export.formats import (
    BFLOAT16_FORMATS,
    DEFAULT_FORMATS,
    DETECTOR_QUANTIZATIONS,
    FORMAT_QUANTIZATIONS,
    FORMATS,
    SUFFIXES,
    check_writable,
    require_format,
)
from keras_resnet.export.parity import parity_report
from keras_resnet.export.resolve import resolve_model, task_for
from keras_resnet.export.saved_model import export_saved_model
from keras_resnet.export.writers import (
    export_onnx,
    export_openvino,
    read_sidecar,
    tflite,
)
from keras_resnet.features import embedding_model

# A detector's parity images (module note).
DETECTOR_PARITY_IMAGES = 64
FILE_EXPORTERS = {"tflite": tflite, "onnx": export_onnx, "openvino": export_openvino}


def _parity_data(preprocessing, dataset, data_dir, detector=False, count=360, calibrate=True):
    """Test images for the parity report and, when ``calibrate`` (an int8 quantization is
    asked for), training images for its calibration, else None (a detector's as the detection
    pipeline evaluates them)."""
    dataset = dataset or preprocessing.source
    if dataset in (None, "default"):
        raise InvalidArgument(
            "The model carries no dataset to take test and calibration images from; pass "
            "`dataset` (`--dataset`)."
        )
    def load(split, n):
        if detector:  # the detection pipeline's evaluation geometry (fit and pad)
            return load_detection(dataset, split, n, training=False, data_dir=data_dir,
                                  cache=False, preprocessing=preprocessing)[0]
        return data.load(dataset, split, n, training=False, data_dir=data_dir, cache=False,
                         preprocessing=preprocessing)[0]

    images = next(iter(load("test", count)))[0].numpy()
    representative = next(iter(load("train", 200)))[0].numpy() if calibrate else None
    return images, representative


def _bfloat16_candidates(result, float32_rows):
    """``(path, its float32 parity row)`` of each float32 file (SavedModel, OpenVINO .xml)
    whose runtime has a bfloat16 path."""
    paths = [result["saved_model"]] + [
        p for fmt in BFLOAT16_FORMATS if fmt != "saved_model" for p in result[fmt]
        if read_sidecar(p)["quantization"] is None]
    return [(path, float32_rows[path]) for path in paths if path in float32_rows]


def _litert_installed():
    try:
        importlib.import_module("ai_edge_litert")
    except ImportError:
        return False
    return True


def _check_run_arguments(formats, quantizations, offers=FORMAT_QUANTIZATIONS):
    """Validated ``(formats, quantizations)``: float32 first, each quantization offered by some
    requested file format (``offers``: a detector's are :data:`DETECTOR_QUANTIZATIONS`); the
    packages of every requested format importable."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InvalidArgument(f"`formats` must list some of {', '.join(FORMATS)}; got {formats!r}.")
    quantizations = [None] + [q for q in dict.fromkeys(quantizations) if q is not None]
    for quantization in quantizations:
        offered = [f for f in formats if quantization in offers[f]]
        if not offered:
            allowed = sorted({q for f in formats for q in offers[f] if q})
            whose = "a detector in " if offers is DETECTOR_QUANTIZATIONS else ""
            raise InvalidArgument(
                f"`quantizations`: {quantization!r} applies to {whose}none of the formats "
                f"{', '.join(formats)}; allowed: {', '.join(map(repr, allowed)) or 'none'}."
            )
        for fmt in offered:
            require_format(fmt, quantization)
    return formats, quantizations


def export_run(model, output_dir, formats=DEFAULT_FORMATS, quantizations=(None,), *,
               dataset=None, data_dir=None, version=None, embeddings=False):
    """Export a model to each format and report parity, as ``keras-resnet export`` does.

    Args:
        model: a ``keras.Model``, a ``.keras`` file or a run directory.
        output_dir: exports go to ``output_dir/NAME/VERSION`` (SavedModel) and
            ``output_dir/NAME/FORMAT/model_QUANTIZATION.SUFFIX`` (``tflite/*.tflite``,
            ``onnx/*.onnx``, ``openvino/*.xml`` + ``.bin``).
        formats: among :data:`FORMATS` (default :data:`DEFAULT_FORMATS`).
        quantizations: float32 always comes first, as the parity report's reference; each
            other one is made for every requested format that offers it
            (:data:`FORMAT_QUANTIZATIONS`: TFLite all of :data:`QUANTIZATIONS`, ONNX and
            OpenVINO "int8"; a detector's :data:`DETECTOR_QUANTIZATIONS`), and one that no
            requested format offers is an error. With "saved_model" among ``formats``, the
            TFLite files are converted from that SavedModel (the model traced once).
        dataset: test and calibration images; default: the dataset the model was trained on.
        data_dir: tensorflow-datasets data directory.
        version: the SavedModel version (replaced when it exists); default: the next one.
        embeddings: also write, per file format, a float32 embeddings model
            (``FORMAT/embeddings_float32.SUFFIX``, output ``embeddings``: the pooled
            features); the SavedModel always has an ``embeddings`` signature.

    Returns:
        dict: ``saved_model`` (path or None), ``tflite``, ``onnx``, ``openvino`` (paths,
        embeddings models last), ``parity`` (one :func:`parity_report` dict per exported
        file, the SavedModel too, when a file format is requested; a segmentation model's
        measure its logits and the pixel agreement of its masks, a detector's the agreement
        of its boxes (``export.detection.box_agreement``); TFLite rows only when LiteRT
        is installed; then, on a CPU with native bfloat16, a bfloat16 row for the SavedModel
        and per float32 OpenVINO file, recorded with it (agreement and speed-up over its
        float32 row) for ``precision="auto"``).

    Example:
        >>> export_run("runs/resnet20-digits", "exports", ("onnx",), (None, "int8"))["onnx"]  # doctest: +SKIP
    """
    formats, quantizations = _check_run_arguments(formats, quantizations)
    keras_model, preprocessing = resolve_model(model)
    task = task_for(keras_model)
    offers = DETECTOR_QUANTIZATIONS if task.detection else FORMAT_QUANTIZATIONS
    _check_run_arguments(formats, quantizations, offers)
    if embeddings and (task.segmentation or task.detection):
        raise InvalidArgument(f"`embeddings`: a {task.kind} model exports "
                              f"{'per-pixel logits' if task.segmentation else 'detections'}; "
                              "embeddings (pooled features) come from a classifier.")
    check_writable("output_dir", output_dir)
    result = {"saved_model": None, "tflite": [], "onnx": [], "openvino": [], "parity": []}
    if "saved_model" in formats:
        result["saved_model"] = export_saved_model(
            keras_model, output_dir, preprocessing=preprocessing, version=version,
            overwrite=version is not None,
        )
    files = [f for f in formats if f != "saved_model"]
    if not files:
        return result
    images, representative = _parity_data(
        preprocessing, dataset, data_dir, task.detection,
        DETECTOR_PARITY_IMAGES if task.detection else 360,
        calibrate=any(q in ("int8", "int8_full") for q in quantizations))
    checked = [result["saved_model"]] if result["saved_model"] else []
    for fmt in files:
        # TFLite converts a SavedModel: the one just written, when there is one, rather than
        # another that Keras' exporter would trace and write for each quantization.
        source = result["saved_model"] if fmt == "tflite" and result["saved_model"] else keras_model
        for quantization in (q for q in quantizations if q in offers[fmt]):
            name = f"model_{quantization or 'float32'}{SUFFIXES[fmt]}"
            path = FILE_EXPORTERS[fmt](
                source, os.path.join(output_dir, keras_model.name, fmt, name),
                quantization, representative_data=representative, preprocessing=preprocessing,
            )
            result[fmt].append(path)
            if fmt != "tflite" or _litert_installed():
                checked.append(path)
    # The Keras model's outputs once: every row compares its file with the same reference.
    expected = keras_model.predict(images, verbose=0) if checked else None
    result["parity"] = [parity_report(keras_model, path, images, expected=expected)
                        for path in checked]
    if devices.cpu_has_bfloat16():  # a bfloat16 row per runtime that has a bfloat16 path
        for path, float32_row in _bfloat16_candidates(result, dict(zip(checked, result["parity"]))):
            row = parity_report(keras_model, path, images, precision="bfloat16", expected=expected)
            record_bfloat16_parity(path, row, float32_row)
            result["parity"].append(row)
    if embeddings:
        embedder = embedding_model(keras_model)
        for fmt in files:
            path = FILE_EXPORTERS[fmt](
                embedder, os.path.join(output_dir, keras_model.name, fmt,
                                       f"embeddings_float32{SUFFIXES[fmt]}"),
                preprocessing=preprocessing, output="embeddings",
            )
            result[fmt].append(path)
    return result
