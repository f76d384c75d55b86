"""Export trained models: SavedModel (TensorFlow Serving layout), TFLite, ONNX and OpenVINO IR,
with parity reports.

A SavedModel export lives in ``<export_dir>/<model_name>/<version>/`` and carries its
preprocessing and class names, so a server needs nothing else. Signatures:

- ``serving_default``: float32 ``images`` (batch, h, w, c), already preprocessed.
- ``serving_images``: uint8 ``images`` (batch, any h, any w, 1/3/4 channels); resize, crop and
  normalisation run inside the graph.
- ``serving_bytes``: string ``image_bytes`` (batch,) of encoded JPEG/PNG/GIF/BMP, decoded in the
  graph (TensorFlow Serving's REST ``{"b64": ...}`` maps onto it).
- ``probabilities``: like ``serving_default`` with the probabilities alone (what TFLite
  conversion of a SavedModel reads).

Every serving signature returns ``probabilities``, ``top_k_indices``, ``top_k_scores`` and
``top_k_labels`` (class names from ``assets/labels.txt``). The preprocessing comes from the
model's own ``ImagePreprocessing`` (``keras_resnet.preprocessing.of(model)``);
``assets.extra/keras_resnet.json`` (SavedModel) holds the same recipe as JSON for clients that
prepare inputs themselves.

Single-file runtimes go through Keras' own exporters (``model.export(path, format=...)``):
``.tflite`` (``"litert"``, run by LiteRT), ``.onnx`` (``"onnx"``, tf2onnx; run by ONNX Runtime)
and OpenVINO IR ``.xml`` + ``.bin`` (``"openvino"``; run by OpenVINO). Each takes float32
``images`` (any batch, the model's h, w, c), already preprocessed, and returns
``probabilities``; ``FILE.json`` beside it holds ``{"format", "quantization", "input", "output",
"preprocessing"}`` (the preprocessing as ``ImagePreprocessing.to_json()`` writes it, class
names included), so a client of that runtime can prepare inputs without keras_resnet. int8:
TFLite's converter, ONNX Runtime's static quantization, NNCF for OpenVINO, each calibrated on
the same representative images.

Every export is written under a temporary name and renamed into place: a kill, or an exporter
that fails, leaves either no export or a whole one.

Example:
    >>> path = export_saved_model("runs/resnet20-digits/model.keras", "exports")  # doctest: +SKIP
    >>> tflite(path, "exports/resnet20.tflite", quantization="int8", representative_data=images)  # doctest: +SKIP
    >>> export_onnx("runs/resnet20-digits", "exports/resnet20.onnx")  # doctest: +SKIP
"""

import contextlib
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
from keras_resnet.extras import require as _require

tf = _require("tensorflow", "keras_resnet.export (SavedModel, TFLite, ONNX, OpenVINO)")

from keras_resnet import data, logs
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.extras import MissingExtra, require
from keras_resnet.saving import atomic_path, load_model, write_json
from keras_resnet.training import walk_layers

QUANTIZATIONS = (None, "float16", "dynamic", "int8", "int8_full")
METADATA_FILE = os.path.join("assets.extra", "keras_resnet.json")
FORMATS = ("saved_model", "tflite", "onnx", "openvino")
DEFAULT_FORMATS = ("saved_model", "tflite")  # what `keras-resnet train` exports
# The quantizations each file format offers (None: float32).
FORMAT_QUANTIZATIONS = {
    "saved_model": (None,),
    "tflite": QUANTIZATIONS,
    "onnx": (None, "int8"),
    "openvino": (None, "int8"),
}
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
RUNTIMES = {"saved_model": "TensorFlow", "keras": "Keras", "tflite": "LiteRT",
            "onnx": "ONNX Runtime", "openvino": "OpenVINO"}
# The input and output names of ONNX and OpenVINO exports.
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
FORMAT_NAMES = {"saved_model": "SavedModel", "tflite": "TFLite", "onnx": "ONNX",
                "openvino": "OpenVINO"}
# Packages each format needs to export and to run (the [onnx] / [openvino] extras).
FORMAT_PACKAGES = {
    "onnx": {None: ("tf2onnx", "onnx", "onnxruntime"),
             "int8": ("tf2onnx", "onnx", "onnxruntime", "onnxruntime.quantization")},
    "openvino": {None: ("openvino",), "int8": ("openvino", "nncf")},
}
def _as_preprocessing(value):
    """An ``ImagePreprocessing`` from one, a ``DatasetInfo``, or the JSON config of either."""
    if value is None or isinstance(value, preprocessing_lib.ImagePreprocessing):
        return value
    if isinstance(value, data.DatasetInfo):
        return value.preprocessing
    if isinstance(value, dict):
        return preprocessing_lib.from_any_config(value)
    raise TypeError(
        "`preprocessing` must be an ImagePreprocessing, a DatasetInfo or a config dict; got "
        f"{type(value).__name__}."
    )


def resolve_model(model, preprocessing=None):
    """``(keras.Model, ImagePreprocessing)`` from a model, a ``.keras`` file or a run directory.

    The preprocessing is ``preprocessing`` when given, else the model's own, else
    ``keras_resnet.preprocessing.default_for(model)`` (resize to the input, pixels / 255).
    The model computes in float32 (see :func:`float32_model`).

    Example:
        >>> model, preprocessing = resolve_model("runs/resnet20-digits")  # doctest: +SKIP
    """
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "model.keras")):
                raise ValueError(
                    f"`model`: directory {path!r} holds no model.keras (a run directory does)."
                )
            path = os.path.join(path, "model.keras")
        model = load_model(path)
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model or a path; got {type(model).__name__}.")
    preprocessing = (
        _as_preprocessing(preprocessing)
        or preprocessing_lib.of(model)
        or preprocessing_lib.default_for(model)
    )
    return float32_model(model), preprocessing


def _float32_policies(config):
    """``config`` with every dtype policy replaced by float32 (nested layers included)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and "name" in config.get("config", {}):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def float32_model(model):
    """``model`` itself if it computes in float32, else a float32 copy with the same weights.

    A model trained under a mixed policy (``mixed_bfloat16`` is the fast path of ImageNet nets
    on CPUs with native bfloat16) keeps float32 variables; serving and TFLite conversion
    want float32 compute.

    Example:
        >>> keras.config.set_dtype_policy("mixed_bfloat16")
        >>> mixed_model = keras_resnet.ResNet20(input_shape=(32, 32, 3), classes=3)
        >>> keras.config.set_dtype_policy("float32")
        >>> sorted({layer.compute_dtype for layer in walk_layers(float32_model(mixed_model))})
        ['float32']
    """
    if all(layer.compute_dtype == "float32" for layer in walk_layers(model)):
        return model
    copy = model.__class__.from_config(_float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _next_version(model_dir):
    versions = []
    if os.path.isdir(model_dir):
        versions = [int(v) for v in os.listdir(model_dir) if v.isascii() and v.isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(model, export_dir, *, model_name=None, version=None, top_k=5,
                       preprocessing=None, overwrite=False):
    """Write a SavedModel for TensorFlow Serving with the signatures listed in this module.

    Args:
        model: a ``keras.Model``, a ``.keras`` file or a run directory.
        export_dir: the model base path's parent: the export goes to
            ``export_dir/model_name/version``.
        model_name: default: the Keras model's name.
        version: positive integer; default: one more than the highest existing version.
        top_k: how many classes the ``top_k_*`` outputs hold (at most the class count).
        preprocessing: an ``ImagePreprocessing``; default: the model's own.
        overwrite: replace an existing version directory (``keras-resnet train`` re-exports
            its version 1 after a kill); otherwise an existing version is an error.

    Returns:
        The path of the written version directory.

    Example:
        >>> export_saved_model("runs/resnet20-digits", "exports")  # exports/resnet20/1  # doctest: +SKIP
    """
    model, info = resolve_model(model, preprocessing)
    model_name = model_name or model.name
    model_dir = os.path.join(export_dir, model_name)
    version = _next_version(model_dir) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer; got {version!r}.")
    path = os.path.join(model_dir, str(version))
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"Export {path!r} already exists; pick another `version`.")
    _check_writable("export_dir", export_dir)

    height, width, channels = model.input_shape[1:]
    classes = model.output_shape[-1]
    if len(info.class_names) != classes:
        raise ValueError(
            f"The preprocessing names {len(info.class_names)} classes; the model predicts {classes}."
        )
    k = min(top_k, classes)

    with tempfile.TemporaryDirectory() as tmp:
        labels_path = os.path.join(tmp, "labels.txt")
        with open(labels_path, "w") as f:
            f.write("\n".join(info.class_names) + "\n")
        labels = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )

        def predict(images):
            probabilities = tf.cast(model(images, training=False), tf.float32)
            scores, indices = tf.math.top_k(probabilities, k=k)
            return {
                "probabilities": probabilities,
                "top_k_indices": indices,
                "top_k_scores": scores,
                "top_k_labels": labels.lookup(tf.cast(indices, tf.int64)),
            }

        def from_bytes(image_bytes):
            def decode(encoded):
                image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
                return data.preprocess(image[None], info)[0]

            images = tf.map_fn(
                decode, image_bytes,
                fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32),
            )
            return predict(images)

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.track(labels)
        float_spec = tf.TensorSpec((None, height, width, channels), tf.float32, name="images")
        archive.add_endpoint("serving_default", predict, input_signature=[float_spec])
        archive.add_endpoint(
            "serving_images",
            lambda images: predict(data.preprocess(images, info)),
            input_signature=[tf.TensorSpec((None, None, None, None), tf.uint8, name="images")],
        )
        archive.add_endpoint(
            "serving_bytes", from_bytes,
            input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
        )
        archive.add_endpoint(
            "probabilities",
            lambda images: {"probabilities": tf.cast(model(images, training=False), tf.float32)},
            input_signature=[float_spec],
        )
        with atomic_path(path) as staging:
            archive.write_out(staging, verbose=False)
            write_json(os.path.join(staging, METADATA_FILE), {
                "model_name": model_name, "version": version, "top_k": k,
                "preprocessing": json.loads(info.to_json()),
            })
            if os.path.isdir(path):  # overwrite: the old version goes just before the new lands
                shutil.rmtree(path)
    return path


def _check_writable(argument, folder):
    """Raise ValueError unless ``folder`` is (or can be made) a writable directory."""
    folder = os.fspath(folder)
    probe = folder
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    probe = probe or "."
    if not os.path.isdir(probe):
        raise ValueError(f"`{argument}` {folder!r} lies below {probe!r}, which is a file.")
    if not os.access(probe, os.W_OK):
        raise ValueError(f"`{argument}` {folder!r} is not writable ({probe!r} is read-only).")


def read_export_metadata(saved_model_dir):
    """The ``assets.extra/keras_resnet.json`` of an export (preprocessing, class names)."""
    with open(os.path.join(saved_model_dir, METADATA_FILE)) as f:
        metadata = json.load(f)
    return metadata


def read_export_preprocessing(saved_model_dir):
    """The ``ImagePreprocessing`` an export carries (from ``assets.extra/keras_resnet.json``).

    Example:
        >>> read_export_preprocessing("exports/resnet20/1").class_names[:2]  # doctest: +SKIP
        ['0', '1']
    """
    return preprocessing_lib.from_any_config(read_export_metadata(saved_model_dir)["preprocessing"])


def _representative(representative_data, count=200):
    def generate():
        for image in np.asarray(representative_data, np.float32)[:count]:
            yield [image[None]]

    return generate


def _check_quantization(fmt, quantization, representative_data):
    """Raise ValueError unless ``fmt`` offers ``quantization`` (with data where it needs it)."""
    allowed = FORMAT_QUANTIZATIONS[fmt]
    if quantization not in allowed:
        raise ValueError(
            f"`quantization` for {fmt} must be one of {', '.join(map(repr, allowed))}; got "
            f"{quantization!r}."
        )
    if quantization in ("int8", "int8_full") and representative_data is None:
        raise ValueError(f"`quantization={quantization!r}` needs `representative_data` (images).")


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


def _input_signature(model):
    """Float32 ``images`` of any batch and the model's input size."""
    return [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME)]


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
        raise ValueError(
            f"`model` {model.name!r} cannot be exported to {fmt} by Keras' exporter: "
            f"{_reason(error)}"
        ) from error


def _keras_export(model, path, fmt, **options):
    """``model.export(path, format=fmt)`` with float32 ``images`` of any batch as input."""
    with logs.loading():
        model.export(path, format=fmt, verbose=False, input_signature=_input_signature(model),
                     **options)


def _sidecar(path, fmt, quantization, info, input_name=INPUT_NAME, output_name=OUTPUT_NAME):
    """Write ``path + ".json"``: what a client needs to prepare inputs and read outputs."""
    sidecar = {"format": fmt, "quantization": quantization, "input": input_name,
               "output": output_name, "preprocessing": json.loads(info.to_json())}
    write_json(path + ".json",
               {k: v for k, v in sidecar.items() if v is not None or k == "quantization"})


def read_sidecar(path):
    """The ``FILE.json`` beside an exported file, with ``preprocessing`` as an
    ``ImagePreprocessing``; None when there is none.

    Example:
        >>> read_sidecar("exports/resnet20/onnx/model_int8.onnx")["quantization"]  # doctest: +SKIP
        'int8'
    """
    if not os.path.exists(path + ".json"):
        return None
    with open(path + ".json") as f:
        sidecar = json.load(f)
    return {**sidecar, "preprocessing": preprocessing_lib.from_any_config(sidecar["preprocessing"])}


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


def _convert_saved_model(saved_model, options):
    """A TFLite flatbuffer of an export's ``probabilities`` signature."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=["probabilities"]
    )
    for name, value in options.items():
        if name == "target_spec":
            for key, spec_value in value.items():
                setattr(converter.target_spec, key, spec_value)
        else:
            setattr(converter, name, value)
    return converter.convert()


def tflite(model_or_savedmodel, path, quantization=None, representative_data=None,
           preprocessing=None):
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

    Returns:
        ``path``.

    Example:
        >>> tflite(model, "m_int8.tflite", "int8", representative_data=train_images[:200])  # doctest: +SKIP
    """
    _check_quantization("tflite", quantization, representative_data)
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"`path` must end with '.tflite'; got {path!r}.")
    _check_writable("path", os.path.dirname(os.path.abspath(path)))
    options = _litert_options(quantization, representative_data)
    source = os.fspath(model_or_savedmodel) if isinstance(
        model_or_savedmodel, (str, os.PathLike)) else None
    with atomic_path(path, suffix=".tflite") as staging:
        if source and os.path.exists(os.path.join(source, "saved_model.pb")):
            info = read_export_preprocessing(source)
            with open(staging, "wb") as f:
                f.write(_convert_saved_model(source, options))
        else:
            model, info = resolve_model(model_or_savedmodel, preprocessing)
            with _exporter_errors(model, "litert"):
                _keras_export(model, staging, "litert", **options)
        _sidecar(path, "tflite", quantization, info, input_name=None, output_name=None)
    return path


def _name_onnx_io(path):
    """Name the input ``images``, the output ``probabilities`` and the batch axis ``batch``
    (tf2onnx names them ``images``, ``Identity:0`` and ``unk__N``)."""
    onnx = require("onnx", "ONNX export")
    model = onnx.load(path)
    graph = model.graph
    old = graph.output[0].name
    for node in graph.node:
        node.input[:] = [OUTPUT_NAME if name == old else name for name in node.input]
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
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


ACTIVATION_TYPES = ("uint8", "int8")


def export_onnx(model, path, quantization=None, representative_data=None, preprocessing=None,
                opset=None, activations="uint8"):
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

    Returns:
        ``path``.

    Example:
        >>> export_onnx(model, "m_int8.onnx", "int8", representative_data=train_images[:200])  # doctest: +SKIP
    """
    _check_quantization("onnx", quantization, representative_data)
    if activations not in ACTIVATION_TYPES:
        raise ValueError(
            f"`activations` must be one of {', '.join(map(repr, ACTIVATION_TYPES))}; got "
            f"{activations!r}."
        )
    path = os.fspath(path)
    if not path.endswith(".onnx"):
        raise ValueError(f"`path` must end with '.onnx'; got {path!r}.")
    require_format("onnx", quantization)
    _check_writable("path", os.path.dirname(os.path.abspath(path)))
    model, info = resolve_model(model, preprocessing)
    with atomic_path(path, suffix=".onnx") as staging, tempfile.TemporaryDirectory() as tmp:
        float_path = staging if quantization is None else os.path.join(tmp, "float32.onnx")
        with _exporter_errors(model, "onnx"):
            _keras_export(model, float_path, "onnx", opset_version=opset)
            _name_onnx_io(float_path)  # also checks the graph: tf2onnx writes unsupported ops
        if quantization == "int8":
            _quantize_onnx(float_path, staging, representative_data, activations)
        _sidecar(path, "onnx", quantization, info)
    return path


def _quantize_openvino(ov_model, representative_data):
    """NNCF's post-training int8 quantization (performance preset), calibrated on
    ``representative_data``, with full bias correction (the fast one left 2.5x the probability
    error on the digits ResNet-20)."""
    nncf = require("nncf", "int8 OpenVINO export")
    images = np.asarray(representative_data, np.float32)[:200]
    dataset = nncf.Dataset(list(images), lambda image: image[None])
    return nncf.quantize(ov_model, dataset, subset_size=len(images), fast_bias_correction=False)


def export_openvino(model, path, quantization=None, representative_data=None,
                    preprocessing=None):
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

    Returns:
        ``path``.

    Example:
        >>> export_openvino("runs/resnet20-digits", "exports/resnet20.xml")  # doctest: +SKIP
    """
    _check_quantization("openvino", quantization, representative_data)
    path = os.fspath(path)
    if not path.endswith(".xml"):
        raise ValueError(f"`path` must end with '.xml' (OpenVINO IR); got {path!r}.")
    require_format("openvino", quantization)
    ov = require("openvino", "OpenVINO export")
    _check_writable("path", os.path.dirname(os.path.abspath(path)))
    model, info = resolve_model(model, preprocessing)
    with atomic_path(path, suffix=".xml") as staging, tempfile.TemporaryDirectory() as tmp:
        staging_bin = staging[: -len(".xml")] + ".bin"
        try:
            exported = os.path.join(tmp, "model.xml")
            with _exporter_errors(model, "openvino"):
                _keras_export(model, exported, "openvino")
            ov_model = ov.Core().read_model(exported)
            ov_model.input(0).get_tensor().add_names({INPUT_NAME})
            ov_model.output(0).get_tensor().add_names({OUTPUT_NAME})
            if quantization == "int8":
                ov_model = _quantize_openvino(ov_model, representative_data)
            ov.save_model(ov_model, staging, compress_to_fp16=False)
            del ov_model  # release the memory-mapped weights of `exported`
            _sidecar(path, "openvino", quantization, info)
            os.replace(staging_bin, path[: -len(".xml")] + ".bin")  # the .xml follows last
        finally:
            if os.path.exists(staging_bin):
                os.remove(staging_bin)
    return path


def _file_preprocessing(path):
    """The preprocessing in ``path + ".json"``; ValueError naming the file when missing."""
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise ValueError(f"{path!r} has no preprocessing file {path + '.json'!r} beside it.")
    return sidecar["preprocessing"]


def _load_error(kind, path, error):
    message = str(error).strip().splitlines()
    return ValueError(
        f"{kind} {path!r} cannot be loaded ({type(error).__name__}: "
        f"{message[0] if message else ''}); export it again."
    )


class TFLiteModel:
    """A ``.tflite`` file run by the LiteRT interpreter, float in, float probabilities out.

    Example:
        >>> probabilities = TFLiteModel("m_int8.tflite")(images)  # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None):
        Interpreter = require("ai_edge_litert.interpreter", "Running a .tflite file").Interpreter

        self.path = path
        with logs.loading():
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        sidecar = read_sidecar(path)
        self.preprocessing = sidecar and sidecar["preprocessing"]

    def _run_one(self, image):
        scale, zero_point = self.input["quantization"]
        if self.input["dtype"] != np.float32:
            image = np.clip(np.round(image / scale + zero_point), -128, 127)
        self.interpreter.set_tensor(self.input["index"], image[None].astype(self.input["dtype"]))
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        if self.output["dtype"] != np.float32:
            output = (output.astype(np.float32) - zero_point) * scale
        return output

    def __call__(self, images):
        """Probabilities ``(n, classes)`` for preprocessed float images ``(n, h, w, c)``."""
        return np.stack([self._run_one(image) for image in np.asarray(images, np.float32)])


class ONNXRunner:
    """An ``.onnx`` file written by :func:`export_onnx`, run by ONNX Runtime on the CPU:
    preprocessed float images in, probabilities out.

    Example:
        >>> probabilities = ONNXRunner("exports/resnet20/onnx/model_int8.onnx")(images)  # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None):
        ort = require("onnxruntime", "Running an .onnx file")
        self.path = path
        self.preprocessing = _file_preprocessing(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  (onnxruntime's own exception types)
            raise _load_error("ONNX file", path, error) from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images):
        """Probabilities ``(n, classes)`` for preprocessed float images ``(n, h, w, c)``."""
        return self.session.run(None, {self.input: np.asarray(images, np.float32)})[0]


class OpenVINORunner:
    """OpenVINO IR (``.xml`` + ``.bin``) written by :func:`export_openvino`, compiled for the
    CPU once per input shape (static shapes run faster than the export's dynamic batch), with
    float32 inference precision (OpenVINO would pick bfloat16 on CPUs that have it) and the
    latency hint: preprocessed float images in, probabilities out.

    Example:
        >>> probabilities = OpenVINORunner("exports/resnet20/openvino/model_float32.xml")(images)  # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None):
        ov = require("openvino", "Running an OpenVINO .xml model")
        self.path = path
        self.preprocessing = _file_preprocessing(path)
        self.config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if num_threads:
            self.config["INFERENCE_NUM_THREADS"] = num_threads
        self.core, self.requests = ov.Core(), {}
        try:
            self.model = self.core.read_model(path)
            self._request((1, *self.model.input(0).get_partial_shape()[1:].to_shape()))
        except Exception as error:  # noqa: BLE001  (OpenVINO raises RuntimeError for most)
            raise _load_error("OpenVINO model", path, error) from None

    def _request(self, shape):
        if shape not in self.requests:
            model = self.model.clone()
            model.reshape({0: list(shape)})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.requests[shape] = compiled.create_infer_request()
        return self.requests[shape]

    def __call__(self, images):
        """Probabilities ``(n, classes)`` for preprocessed float images ``(n, h, w, c)``."""
        images = np.ascontiguousarray(images, np.float32)
        outputs = self._request(tuple(images.shape)).infer([images])
        return next(iter(outputs.values())).copy()


class SavedModelRunner:
    """A SavedModel written by :func:`export_saved_model`: preprocessed float images in,
    probabilities out, through its ``serving_default`` signature.

    Example:
        >>> probabilities = SavedModelRunner("exports/resnet20/1")(images)  # doctest: +SKIP
    """

    def __init__(self, path):
        self.path = path
        try:
            self.signature = tf.saved_model.load(path).signatures["serving_default"]
            self.preprocessing = read_export_preprocessing(path)
        except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
            raise _load_error("SavedModel", path, error) from None

    def __call__(self, images):
        images = tf.constant(np.asarray(images, np.float32))
        return self.signature(images=images)["probabilities"].numpy()


class KerasRunner:
    """A ``.keras`` model (or run directory) with its preprocessing, float32 compute."""

    def __init__(self, path):
        self.path = path
        self.model, self.preprocessing = resolve_model(path)

    def __call__(self, images):
        return self.model.predict(np.asarray(images, np.float32), verbose=0)


FILE_RUNNERS = {".tflite": TFLiteModel, ".onnx": ONNXRunner, ".xml": OpenVINORunner}


def open_runner(path, num_threads=None):
    """A runner for an exported or saved model: ``runner(images) -> probabilities`` and
    ``runner.preprocessing``.

    Args:
        path: a SavedModel directory, a ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` file
            (each with its ``FILE.json``), a ``.keras`` file or a run directory.
        num_threads: CPU threads of the LiteRT, ONNX Runtime and OpenVINO runners; default:
            the runtime's own choice.

    Example:
        >>> open_runner("exports/resnet20/1").preprocessing.class_names[:2]  # doctest: +SKIP
        ['0', '1']
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return SavedModelRunner(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in FILE_RUNNERS:
        if not os.path.isfile(path):
            raise ValueError(f"`model` file {path!r} does not exist.")
        runner = FILE_RUNNERS[suffix](path, num_threads=num_threads)
        if runner.preprocessing is None:
            raise ValueError(f"{path!r} has no preprocessing file {path + '.json'!r} beside it.")
        return runner
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "model.keras")):
        raise ValueError(
            f"`model`: directory {path!r} is neither a SavedModel (no saved_model.pb) nor a run "
            "directory (no model.keras)."
        )
    if suffix == ".bin":
        raise ValueError(f"`model` {path!r}: pass the OpenVINO .xml file, not its weights.")
    return KerasRunner(path)


def _runtime_of(path):
    if os.path.isdir(path):
        return RUNTIMES["saved_model" if os.path.exists(os.path.join(path, "saved_model.pb"))
                        else "keras"]
    suffix = os.path.splitext(path)[1].lower()
    return {".tflite": "LiteRT", ".onnx": "ONNX Runtime", ".xml": "OpenVINO"}.get(suffix, "Keras")


def _label(path):
    """A short name for the parity table: the file name, or NAME/VERSION of a SavedModel."""
    path = os.path.normpath(path)
    if os.path.isdir(path):
        return "/".join(path.split(os.sep)[-2:])
    return os.path.basename(path)


def parity_report(keras_model, path, images, *, latency_runs=20, num_threads=None):
    """Compare an exported file with its Keras model on ``images`` (preprocessed float32).

    Args:
        keras_model: the reference ``keras.Model``.
        path: anything :func:`open_runner` opens (``.tflite``, ``.onnx``, ``.xml``,
            SavedModel, ...).
        images: preprocessed float32 images ``(n, h, w, c)``.
        latency_runs: batch-1 calls timed for the mean latency.
        num_threads: runtime threads (see :func:`open_runner`).

    Returns:
        dict: ``file``, ``runtime``, ``quantization``, ``max_abs_diff`` of probabilities,
        ``top1_agreement``, ``size_bytes``, ``latency_ms`` (mean, batch 1).

    Example:
        >>> parity_report(model, "m_int8.tflite", test_images)["top1_agreement"]  # doctest: +SKIP
    """
    images = np.asarray(images, np.float32)
    expected = keras_model.predict(images, verbose=0)
    runner = open_runner(path, num_threads=num_threads)
    got = runner(images)
    runner(images[:1])  # warm-up
    start = time.perf_counter()
    for i in range(latency_runs):
        runner(images[i % len(images)][None])
    latency = (time.perf_counter() - start) / latency_runs
    sidecar = read_sidecar(path) if os.path.isfile(path) else None
    return {
        "file": _label(path),
        "runtime": _runtime_of(path),
        "quantization": sidecar and sidecar.get("quantization"),
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "top1_agreement": float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1))),
        "size_bytes": _size(path),
        "latency_ms": 1000 * latency,
    }


def _size(path):
    """Bytes of a file (with the ``.bin`` of an OpenVINO ``.xml``) or of a directory."""
    if os.path.isfile(path):
        weights = os.path.splitext(path)[0] + ".bin"
        extra = os.path.getsize(weights) if path.endswith(".xml") and os.path.exists(weights) else 0
        return os.path.getsize(path) + extra
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def read_image(path):
    """An image file as uint8 RGB ``(h, w, 3)``: palettes, grayscale, alpha, CMYK and 16-bit
    images are converted as PIL reads them (the first frame of an animation).

    Example:
        >>> read_image("digit.png").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    from PIL import Image, UnidentifiedImageError

    if os.path.isdir(path):
        raise ValueError(f"Image {path!r} is a directory, not an image file.")
    if not os.path.isfile(path):
        raise ValueError(f"Image file {path!r} does not exist.")
    try:
        with Image.open(path) as image:
            if image.format not in ("JPEG", "PNG", "GIF", "BMP"):
                raise ValueError(f"{path!r} is a {image.format} image, not JPEG, PNG, GIF or BMP.")
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: keep the top byte
                grey = np.asarray(image, np.float64) / 257.0
                return np.repeat(np.round(grey).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
            return np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"{path!r} is not a readable JPEG, PNG, GIF or BMP image ({error})."
        ) from None


def _top_k(probabilities, class_names, k):
    order = np.argsort(-probabilities)[:k]
    return [{"index": int(i), "label": class_names[i], "score": float(probabilities[i])} for i in order]


def predict_files(model_path, image_paths, top_k=5):
    """Top-k predictions for image files from any model :func:`open_runner` opens.

    Args:
        model_path: anything :func:`open_runner` opens: a ``.keras`` file (or run
            directory), a SavedModel directory written by :func:`export_saved_model`, a
            ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` file written by :func:`tflite`,
            :func:`export_onnx` or :func:`export_openvino`.
        image_paths: JPEG/PNG/GIF/BMP files.
        top_k: how many classes to return per image (at least 1; at most the class count).

    Returns:
        list of ``{"image": path, "top_k": [{"index", "label", "score"}, ...]}``.

    Example:
        >>> predict_files("exports/resnet20/1", ["digit.png"])[0]["top_k"][0]["label"]  # doctest: +SKIP
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer; got {top_k!r}.")
    images = [read_image(path) for path in image_paths]
    runner = open_runner(model_path)
    preprocessing = runner.preprocessing
    class_names = preprocessing.class_names
    batch = np.concatenate([data.preprocess(image[None], preprocessing) for image in images])
    probabilities = runner(batch)
    if class_names is None:
        class_names = [str(i) for i in range(probabilities.shape[-1])]
    return [
        {"image": image_path, "top_k": _top_k(p, class_names, top_k)}
        for image_path, p in zip(image_paths, probabilities)
    ]



def _parity_data(preprocessing, dataset, data_dir, count=360):
    """Test images for the parity report and training images for int8 calibration."""
    dataset = dataset or preprocessing.source
    if dataset in (None, "default"):
        raise ValueError(
            "The model carries no dataset to take test and calibration images from; pass "
            "`dataset` (`--dataset`)."
        )
    load = lambda split, n: data.load(dataset, split, n, training=False, data_dir=data_dir,
                                      cache=False, preprocessing=preprocessing)[0]
    images = next(iter(load("test", count)))[0].numpy()
    representative = next(iter(load("train", 200)))[0].numpy()
    return images, representative


def _litert_installed():
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return False
    return True


FILE_EXPORTERS = {"tflite": tflite, "onnx": export_onnx, "openvino": export_openvino}


def _check_run_arguments(formats, quantizations):
    """Validated ``(formats, quantizations)``: float32 first, each quantization offered by some
    requested file format; the packages of every requested format importable."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"`formats` must list some of {', '.join(FORMATS)}; got {formats!r}.")
    quantizations = [None] + [q for q in dict.fromkeys(quantizations) if q is not None]
    for quantization in quantizations:
        offered = [f for f in formats if quantization in FORMAT_QUANTIZATIONS[f]]
        if not offered:
            allowed = sorted({q for f in formats for q in FORMAT_QUANTIZATIONS[f] if q})
            raise ValueError(
                f"`quantizations`: {quantization!r} applies to none of the formats "
                f"{', '.join(formats)}; allowed: {', '.join(map(repr, allowed)) or 'none'}."
            )
        for fmt in offered:
            require_format(fmt, quantization)
    return formats, quantizations


def export_run(model, output_dir, formats=DEFAULT_FORMATS, quantizations=(None,), *,
               dataset=None, data_dir=None, version=None):
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
            OpenVINO "int8"), and one that no requested format offers is an error.
        dataset: test and calibration images; default: the dataset the model was trained on.
        data_dir: tensorflow-datasets data directory.
        version: the SavedModel version (replaced when it exists); default: the next one.

    Returns:
        dict: ``saved_model`` (path or None), ``tflite``, ``onnx``, ``openvino`` (paths),
        ``parity`` (one :func:`parity_report` dict per exported file, the SavedModel too,
        when a file format is requested; TFLite rows only when LiteRT is installed).

    Example:
        >>> export_run("runs/resnet20-digits", "exports", ("onnx",), (None, "int8"))["onnx"]  # doctest: +SKIP
    """
    formats, quantizations = _check_run_arguments(formats, quantizations)
    keras_model, preprocessing = resolve_model(model)
    _check_writable("output_dir", output_dir)
    result = {"saved_model": None, "tflite": [], "onnx": [], "openvino": [], "parity": []}
    if "saved_model" in formats:
        result["saved_model"] = export_saved_model(
            keras_model, output_dir, preprocessing=preprocessing, version=version,
            overwrite=version is not None,
        )
    files = [f for f in formats if f != "saved_model"]
    if not files:
        return result
    images, representative = _parity_data(preprocessing, dataset, data_dir)
    checked = [result["saved_model"]] if result["saved_model"] else []
    for fmt in files:
        for quantization in (q for q in quantizations if q in FORMAT_QUANTIZATIONS[fmt]):
            name = f"model_{quantization or 'float32'}{SUFFIXES[fmt]}"
            path = FILE_EXPORTERS[fmt](
                keras_model, os.path.join(output_dir, keras_model.name, fmt, name),
                quantization, representative_data=representative, preprocessing=preprocessing,
            )
            result[fmt].append(path)
            if fmt != "tflite" or _litert_installed():
                checked.append(path)
    result["parity"] = [parity_report(keras_model, path, images) for path in checked]
    return result


def format_parity(rows):
    """The parity report as a text table (one row per exported file).

    Example:
        >>> print(format_parity(export_run(model, "exports", FORMATS)["parity"]))  # doctest: +SKIP
    """
    lines = [f"{'file':28s} {'max |diff|':>10s} {'top-1 agree':>11s} {'size KiB':>9s} "
             f"{'ms/image':>9s}  runtime"]
    for row in rows:
        lines.append(f"{row['file']:28s} {row['max_abs_diff']:10.2e} {row['top1_agreement']:11.2%} "
                     f"{row['size_bytes'] / 1024:9.1f} {row['latency_ms']:9.3f}  "
                     f"{row.get('runtime', '')}")
    return "\n".join(lines)
