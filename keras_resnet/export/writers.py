"""Single-file exports through Keras' own exporters (``model.export(path, format=...)``), and
the ``FILE.json`` sidecar beside each.

``.tflite`` (``"litert"``, run by LiteRT), ``.onnx`` (``"onnx"``, tf2onnx; run by ONNX Runtime)
and OpenVINO IR ``.xml`` + ``.bin`` (``"openvino"``; run by OpenVINO). Each takes float32
``images`` (any batch, the model's h, w, c), already preprocessed, and returns
``probabilities`` (a segmentation model's ``logits``, per pixel at its input size; a
detector's ``boxes``, ``scores``, ``classes`` and ``num_detections`` in input pixels, its
post-processing inside, at its preprocessing's size when it takes any); ``FILE.json`` beside it
holds ``{"format", "quantization", "input", "output",
"preprocessing"}`` (the preprocessing as ``ImagePreprocessing.to_json()`` writes it, class
names included), so a client of that runtime can prepare inputs without keras_resnet. int8:
TFLite's converter, ONNX Runtime's static quantization, NNCF for OpenVINO, each calibrated on
the same representative images. A kill, or an exporter that fails, leaves either no file or a
whole one.

Example:
    >>> tflite(model, "exports/resnet20.tflite", quantization="int8", representative_data=images)  # doctest: +SKIP
    >>> export_onnx("runs/resnet20-digits", "exports/resnet20.onnx")  # doctest: +SKIP
"""

import contextlib
import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from keras_resnet import logs, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument
from keras_resnet.export.detection import DETECTIONS, input_size
from keras_resnet.export.formats import (
    INPUT_NAME,
    OUTPUT_NAME,
    OUTPUTS,
    SUFFIXES,
    check_quantization,
    check_writable,
    require_format,
)
from keras_resnet.export.resolve import resolve_model, task_for
from keras_resnet.export.saved_model import read_export_preprocessing, read_export_task
from keras_resnet.export.segmentation import LOGITS
from keras_resnet.extras import MissingExtra, require
from keras_resnet.heads.postprocess import OUTPUTS as DETECTION_OUTPUTS
from keras_resnet.saving import atomic_path, write_json

ACTIVATION_TYPES = ("uint8", "int8")
# What the `path` error message says after the suffix a format wants.
_SUFFIX_NOTES = {"openvino": " (OpenVINO IR)"}


# ---------------------------------------------------------------------------------------------
# Sidecars and what every writer shares


def _check_output(output):
    if output not in OUTPUTS:
        raise InvalidArgument(f"`output` must be one of {OUTPUTS}; got {output!r}.")
    return output


def _output_of(task, output):
    """What a file of a model with ``task`` outputs: a segmentation model's are its logits, a
    detector's its detections (``boxes``, ``scores``, ``classes``, ``num_detections``)."""
    if task is None or not (task.segmentation or task.detection):
        return output
    what = f"per-pixel {LOGITS}" if task.segmentation else DETECTIONS
    if output != OUTPUT_NAME:
        raise InvalidArgument(f"`output={output!r}`: a {task.kind} model's file outputs its "
                              f"{what}; embeddings come from a classifier.")
    return LOGITS if task.segmentation else DETECTIONS


def _sidecar(path, fmt, quantization, info, task, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
             output=OUTPUT_NAME):
    """Write ``path + ".json"``: what a client needs to prepare inputs and read outputs
    (``output_name``: the output tensor's name; ``output``: what it holds; ``task``: the
    model's Task, ``keras_resnet.tasks``)."""
    if output == DETECTIONS and output_name is not None:  # a detector's files: four outputs
        output_name = list(DETECTION_OUTPUTS)
    sidecar = {"format": fmt, "quantization": quantization, "input": input_name,
               "output": output_name, "outputs": output,
               "task": task.to_config() if output in (OUTPUT_NAME, LOGITS, DETECTIONS) else None,
               "preprocessing": json.loads(info.to_json())}
    write_json(path + ".json",
               {k: v for k, v in sidecar.items() if v is not None or k == "quantization"})


def read_sidecar(path):
    """The ``FILE.json`` beside an exported file, with ``preprocessing`` as an
    ``ImagePreprocessing`` and ``task`` as a ``keras_resnet.tasks.Task``; None when there is
    none.

    Example:
        >>> read_sidecar("exports/resnet20/onnx/model_int8.onnx")["quantization"]  # doctest: +SKIP
        'int8'
    """
    if not os.path.exists(path + ".json"):
        return None
    with open(path + ".json") as f:
        sidecar = json.load(f)
    preprocessing = preprocessing_lib.from_any_config(sidecar["preprocessing"])
    return {**sidecar, "preprocessing": preprocessing,
            "task": tasks.from_export(sidecar, preprocessing)}


def _checked_path(fmt, path, quantization, representative_data):
    """The opening checks of every file writer, before anything is loaded or written:
    ``quantization`` (and its data), ``path``'s suffix, the format's packages, a writable
    folder. Returns ``path`` as a string."""
    check_quantization(fmt, quantization, representative_data)
    path = os.fspath(path)
    if not path.endswith(SUFFIXES[fmt]):
        raise InvalidArgument(
            f"`path` must end with {SUFFIXES[fmt]!r}{_SUFFIX_NOTES.get(fmt, '')}; got {path!r}."
        )
    require_format(fmt, quantization)
    check_writable("path", os.path.dirname(os.path.abspath(path)))
    return path


def _input_signature(model, info):
    """Float32 ``images`` of any batch and the model's input size (a detector of any size:
    its preprocessing's, ``export.detection.input_size``)."""
    shape = model.input_shape[1:]
    if task_for(model).detection:
        shape = (*input_size(model, info), shape[-1])
    return [tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME)]


def _reason(error):
    """The messages of ``error`` and its causes, each on one line (OpenVINO puts the list of
    unconverted operations in the cause)."""
    messages, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        messages.append(f"{type(error).__name__}: {' '.join(str(error).split())}")
        error = error.__cause__ or error.__context__
    text = "; caused by ".join(messages)
    return text if len(text) <= 1000 else text[:997] + "..."


@contextlib.contextmanager
def _exporter_errors(model, fmt):
    """Turn an exporter's failure into a ValueError that gives the exporter's reason."""
    try:
        yield
    except MissingExtra:
        raise
    except Exception as error:  # noqa: BLE001  (each exporter raises its own kinds)
        raise InvalidArgument(
            f"`model` {model.name!r} cannot be exported to {fmt} by Keras' exporter: "
            f"{_reason(error)}"
        ) from error


def _keras_export(model, info, path, fmt, **options):
    """``model.export(path, format=fmt)`` with float32 ``images`` of any batch as input."""
    with logs.loading():
        model.export(path, format=fmt, verbose=False,
                     input_signature=_input_signature(model, info), **options)


# ---------------------------------------------------------------------------------------------
# TFLite


def _representative(representative_data, count=200):
    def generate():
        for image in np.asarray(representative_data, np.float32)[:count]:
            yield [image[None]]

    return generate


def _litert_options(quantization, representative_data):
    """TFLiteConverter settings for ``quantization`` (also Keras' litert exporter options)."""
    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantization is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    if quantization in ("int8", "int8_full"):
        options["representative_dataset"] = _representative(representative_data)
    if quantization == "int8_full":
        options["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        options["inference_input_type"] = options["inference_output_type"] = tf.int8
    return options


def _convert_saved_model(saved_model, options, signature=OUTPUT_NAME):
    """A TFLite flatbuffer of an export's ``signature`` (``probabilities``, or a segmentation
    export's ``logits``)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[signature])
    for name, value in options.items():
        if name == "target_spec":
            for key, spec_value in value.items():
                setattr(converter.target_spec, key, spec_value)
        else:
            setattr(converter, name, value)
    return converter.convert()


def tflite(model_or_savedmodel, path, quantization=None, representative_data=None,
           preprocessing=None, output=OUTPUT_NAME):
    """Write a ``.tflite`` file: Keras' litert exporter for a model, TFLite's converter (the
    ``probabilities`` signature) for a SavedModel; the same converter settings either way.

    Args:
        model_or_savedmodel: a ``keras.Model``, ``.keras`` file, run directory, or a SavedModel
            written by :func:`export_saved_model`.
        path: the ``.tflite`` file to write; ``path + ".json"`` gets the preprocessing.
        quantization: None (float32), "float16" (float16 weights), "dynamic" (int8 weights),
            "int8" (int8 weights and activations, float input/output) or "int8_full" (int8
            input and output too).
        representative_data: preprocessed float32 images (n, h, w, c) for "int8"/"int8_full".
        preprocessing: for a model: an ``ImagePreprocessing`` to store beside the file;
            default: the model's own.
        output: what the model outputs, recorded in ``path + ".json"``: "probabilities",
            or "embeddings" for ``keras_resnet.embedding_model(model)``.

    Returns:
        ``path``.

    Example:
        >>> tflite(model, "m_int8.tflite", "int8", representative_data=train_images[:200])  # doctest: +SKIP
    """
    path = _checked_path("tflite", path, quantization, representative_data)
    _check_output(output)
    options = _litert_options(quantization, representative_data)
    source = os.fspath(model_or_savedmodel) if isinstance(
        model_or_savedmodel, (str, os.PathLike)) else None
    with atomic_path(path, suffix=".tflite") as staging:
        if source and os.path.exists(os.path.join(source, "saved_model.pb")):
            info, task = read_export_preprocessing(source), read_export_task(source)
            check_quantization("tflite", quantization, representative_data, task.detection)
            output = _output_of(task, output)
            # Converted before the file is opened: a command ended during the conversion
            # (keras_resnet.interrupts) leaves no empty temporary behind.
            flatbuffer = _convert_saved_model(source, options, output)
            with open(staging, "wb") as f:
                f.write(flatbuffer)
        else:
            model, info = resolve_model(model_or_savedmodel, preprocessing)
            task = task_for(model)
            check_quantization("tflite", quantization, representative_data, task.detection)
            output = _output_of(task, output)
            with _exporter_errors(model, "litert"):
                _keras_export(model, info, staging, "litert", **options)
        _sidecar(path, "tflite", quantization, info, task, input_name=None, output_name=None,
                 output=output)
    return path


# ---------------------------------------------------------------------------------------------
# ONNX


def _name_onnx_io(path, output_name=OUTPUT_NAME):
    """Name the input ``images``, the output ``output_name`` and the batch axis ``batch``
    (tf2onnx names them ``images``, ``Identity:0`` and ``unk__N``; a detector's outputs keep
    their names, ``boxes`` ...)."""
    onnx = require("onnx", "ONNX export")
    model = onnx.load(path)
    graph = model.graph
    if output_name != DETECTIONS:
        old = graph.output[0].name
        for node in graph.node:
            node.input[:] = [output_name if name == old else name for name in node.input]
            node.output[:] = [output_name if name == old else name for name in node.output]
        graph.output[0].name = output_name
    for value in (graph.input[0], *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _quantize_onnx(float_path, path, representative_data, activations):
    """ONNX Runtime's static int8 quantization: QDQ, int8 weights per channel, ``activations``
    "uint8" (U8S8 with 7-bit weights: ``reduce_range`` keeps the u8 x s8 pair sums of AVX2's
    VPMADDUBSW from saturating int16 on CPUs without VNNI) or "int8" (S8S8), MinMax
    calibration on ``representative_data``."""
    quantization = require("onnxruntime.quantization", "int8 ONNX export")
    activation_type = {"uint8": quantization.QuantType.QUInt8,
                       "int8": quantization.QuantType.QInt8}[activations]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self, images):
            self.images = iter(np.asarray(images, np.float32)[:200])

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {INPUT_NAME: image[None]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quantization.quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
        quantization.quantize_static(
            prepared, path, Reader(representative_data),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=activation_type, reduce_range=activations == "uint8",
            weight_type=quantization.QuantType.QInt8,
        )


def export_onnx(model, path, quantization=None, representative_data=None, preprocessing=None,
                opset=None, activations="uint8", output=OUTPUT_NAME):
    """Write an ``.onnx`` file through Keras' ONNX exporter (tf2onnx), for ONNX Runtime.

    Input ``images`` (float32, any batch, preprocessed), output ``probabilities``;
    ``path + ".json"`` holds the preprocessing and class names.

    Args:
        model: a ``keras.Model``, a ``.keras`` file or a run directory.
        path: the ``.onnx`` file to write.
        quantization: None (float32) or "int8" (ONNX Runtime's static quantization).
        representative_data: preprocessed float32 images (n, h, w, c) calibrating "int8".
        preprocessing: an ``ImagePreprocessing`` to store beside the file; default: the
            model's own.
        opset: the ONNX opset; default: tf2onnx's.
        activations: int8 activations as "uint8" (U8S8, 7-bit weights: ONNX Runtime's fast
            x86 kernels; 1.8x the S8S8 throughput on ResNet-50 on an AVX2 EPYC, and as
            accurate: 100% top-1 agreement on the digits ResNet-20) or "int8" (S8S8, ONNX
            Runtime's general default, for CPUs with VNNI or ARM).
        output: "probabilities", or "embeddings" for ``keras_resnet.embedding_model(model)``
            (also the output tensor's name).

    Returns:
        ``path``.

    Example:
        >>> export_onnx(model, "m_int8.onnx", "int8", representative_data=train_images[:200])  # doctest: +SKIP
    """
    if activations not in ACTIVATION_TYPES:
        raise InvalidArgument(
            f"`activations` must be one of {', '.join(map(repr, ACTIVATION_TYPES))}; got "
            f"{activations!r}."
        )
    path = _checked_path("onnx", path, quantization, representative_data)
    _check_output(output)
    model, info = resolve_model(model, preprocessing)
    check_quantization("onnx", quantization, representative_data, task_for(model).detection)
    output = _output_of(task_for(model), output)
    with atomic_path(path, suffix=".onnx") as staging, tempfile.TemporaryDirectory() as tmp:
        float_path = staging if quantization is None else os.path.join(tmp, "float32.onnx")
        with _exporter_errors(model, "onnx"):
            _keras_export(model, info, float_path, "onnx", opset_version=opset)
            _name_onnx_io(float_path, output)  # also checks the graph (unsupported ops)
        if quantization == "int8":
            _quantize_onnx(float_path, staging, representative_data, activations)
        _sidecar(path, "onnx", quantization, info, task_for(model), output_name=output,
                 output=output)
    return path


# ---------------------------------------------------------------------------------------------
# OpenVINO


def _quantize_openvino(ov_model, representative_data):
    """NNCF's post-training int8 quantization (performance preset), calibrated on
    ``representative_data``, with full bias correction (the fast one left 2.5x the probability
    error on the digits ResNet-20)."""
    nncf = require("nncf", "int8 OpenVINO export")
    images = np.asarray(representative_data, np.float32)[:200]
    dataset = nncf.Dataset(list(images), lambda image: image[None])
    return nncf.quantize(ov_model, dataset, subset_size=len(images), fast_bias_correction=False)


def export_openvino(model, path, quantization=None, representative_data=None,
                    preprocessing=None, output=OUTPUT_NAME):
    """Write OpenVINO IR (``path``, ending ``.xml``, and its ``.bin``) through Keras' OpenVINO
    exporter.

    Input ``images`` (float32, any batch, preprocessed), output ``probabilities``; weights
    stay float32 (no float16 compression); ``path + ".json"`` holds the preprocessing.

    Args:
        model: a ``keras.Model``, a ``.keras`` file or a run directory.
        path: the ``.xml`` file to write; the weights go to the same name ending ``.bin``.
        quantization: None (float32) or "int8" (NNCF post-training quantization).
        representative_data: preprocessed float32 images (n, h, w, c) calibrating "int8".
        preprocessing: an ``ImagePreprocessing`` to store beside the file; default: the
            model's own.
        output: "probabilities", or "embeddings" for ``keras_resnet.embedding_model(model)``
            (also the output tensor's name).

    Returns:
        ``path``.

    Example:
        >>> export_openvino("runs/resnet20-digits", "exports/resnet20.xml")  # doctest: +SKIP
    """
    path = _checked_path("openvino", path, quantization, representative_data)
    _check_output(output)
    ov = require("openvino", "OpenVINO export")
    model, info = resolve_model(model, preprocessing)
    check_quantization("openvino", quantization, representative_data, task_for(model).detection)
    output = _output_of(task_for(model), output)
    with atomic_path(path, suffix=".xml") as staging, tempfile.TemporaryDirectory() as tmp:
        staging_bin = staging[: -len(".xml")] + ".bin"
        try:
            exported = os.path.join(tmp, "model.xml")
            with _exporter_errors(model, "openvino"):
                _keras_export(model, info, exported, "openvino")
            ov_model = ov.Core().read_model(exported)
            ov_model.input(0).get_tensor().add_names({INPUT_NAME})
            if output != DETECTIONS:  # a detector's outputs keep their names, boxes ...
                ov_model.output(0).get_tensor().add_names({output})
            if quantization == "int8":
                ov_model = _quantize_openvino(ov_model, representative_data)
            ov.save_model(ov_model, staging, compress_to_fp16=False)
            del ov_model  # release the memory-mapped weights of `exported`
            _sidecar(path, "openvino", quantization, info, task_for(model), output_name=output,
                     output=output)
            os.replace(staging_bin, path[: -len(".xml")] + ".bin")  # the .xml follows last
        finally:
            if os.path.exists(staging_bin):
                os.remove(staging_bin)
    return path
