"""Export trained models: SavedModel (TensorFlow Serving layout) and TFLite, with parity reports.

A SavedModel export lives in ``<export_dir>/<model_name>/<version>/`` and carries its
preprocessing and class names, so a server needs nothing else. Signatures:

- ``serving_default``: float32 ``images`` (batch, h, w, c), already preprocessed.
- ``serving_images``: uint8 ``images`` (batch, any h, any w, 1/3/4 channels); resize, crop and
  normalisation run inside the graph.
- ``serving_bytes``: string ``image_bytes`` (batch,) of encoded JPEG/PNG/GIF/BMP, decoded in the
  graph (TensorFlow Serving's REST ``{"b64": ...}`` maps onto it).
- ``probabilities``: like ``serving_default`` with the probabilities alone (what TFLite
  conversion reads).

Every serving signature returns ``probabilities``, ``top_k_indices``, ``top_k_scores`` and
``top_k_labels`` (class names from ``assets/labels.txt``). ``assets.extra/keras_resnet.json``
holds the preprocessing configuration for clients that prepare inputs themselves.

Example:
    >>> path = export_saved_model("runs/resnet20-digits/model.keras", "exports")
    >>> tflite(path, "exports/resnet20.tflite", quantization="int8", representative_data=images)
"""

import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import data

QUANTIZATIONS = (None, "float16", "dynamic", "int8", "int8_full")
METADATA_FILE = os.path.join("assets.extra", "keras_resnet.json")


def _default_preprocessing(model):
    """Preprocessing for a model that carries none: resize to its input, scale to [0, 1]."""
    height, width, channels = model.input_shape[1:]
    classes = model.output_shape[-1]
    return data.DatasetInfo(
        name="unknown", split="train", class_names=[str(i) for i in range(classes)],
        image_shape=(height, width, 3), num_examples=None, mean=np.zeros(3, np.float32),
        resize="direct", resize_size=height,
    )


def resolve_model(model, preprocessing=None):
    """``(keras.Model, DatasetInfo)`` from a model, a ``.keras`` file or a run directory.

    The preprocessing is ``preprocessing`` (a ``DatasetInfo`` or its config) when given, else
    the one stored in the ``.keras`` file by ``keras-resnet train``, else the model's input
    size with pixels scaled to [0, 1] and classes named by index.
    """
    info = preprocessing
    if isinstance(model, (str, os.PathLike)):
        path = str(model)
        if os.path.isdir(path):
            path = os.path.join(path, "model.keras")
        if not path.endswith(".keras") or not os.path.exists(path):
            raise ValueError(
                f"`model` must be a keras.Model, a .keras file or a run directory holding "
                f"model.keras; got {str(model)!r}."
            )
        info = info or data.load_preprocessing(path)
        model = keras.saving.load_model(path)
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model or a path; got {type(model).__name__}.")
    if isinstance(info, dict):
        info = data.DatasetInfo.from_config(info)
    return float32_model(model), info or _default_preprocessing(model)


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
        >>> float32_model(mixed_model).dtype_policy.name
        'float32'
    """
    if all(layer.compute_dtype == "float32" for layer in model._flatten_layers()):
        return model
    copy = model.__class__.from_config(_float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _next_version(model_dir):
    versions = [int(v) for v in os.listdir(model_dir) if v.isdigit()] if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def export_saved_model(model, export_dir, *, model_name=None, version=None, top_k=5,
                       preprocessing=None):
    """Write a SavedModel for TensorFlow Serving with the signatures listed in this module.

    Args:
        model: a ``keras.Model``, a ``.keras`` file or a run directory.
        export_dir: the model base path's parent: the export goes to
            ``export_dir/model_name/version``.
        model_name: default: the Keras model's name.
        version: positive integer; default: one more than the highest existing version.
        top_k: how many classes the ``top_k_*`` outputs hold (at most the class count).
        preprocessing: a ``DatasetInfo`` (or config); default: the one stored with the model.

    Returns:
        The path of the written version directory.

    Example:
        >>> export_saved_model("runs/resnet20-digits", "exports")  # exports/resnet20/1
    """
    model, info = resolve_model(model, preprocessing)
    model_name = model_name or model.name
    model_dir = os.path.join(export_dir, model_name)
    version = _next_version(model_dir) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer; got {version!r}.")
    path = os.path.join(model_dir, str(version))
    if os.path.exists(path):
        raise ValueError(f"Export {path!r} already exists; pick another `version`.")

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
        archive.write_out(path, verbose=False)

    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, METADATA_FILE), "w") as f:
        json.dump({"model_name": model_name, "version": version, "top_k": k,
                   "preprocessing": info.to_config()}, f, indent=2)
    return path


def read_export_metadata(saved_model_dir):
    """The ``assets.extra/keras_resnet.json`` of an export (preprocessing, class names)."""
    with open(os.path.join(saved_model_dir, METADATA_FILE)) as f:
        return json.load(f)


def _representative(representative_data, count=200):
    def generate():
        for image in np.asarray(representative_data, np.float32)[:count]:
            yield [image[None]]

    return generate


def tflite(model_or_savedmodel, path, quantization=None, representative_data=None,
           preprocessing=None):
    """Convert to TFLite through a SavedModel (the Keras-model converter path breaks on Keras 3).

    Args:
        model_or_savedmodel: a ``keras.Model``, ``.keras`` file, run directory, or a SavedModel
            written by :func:`export_saved_model` (its ``probabilities`` signature is converted).
        path: the ``.tflite`` file to write; ``path + ".json"`` gets the preprocessing.
        quantization: None (float32), "float16" (float16 weights), "dynamic" (int8 weights),
            "int8" (int8 weights and activations, float input/output) or "int8_full" (int8
            input and output too).
        representative_data: preprocessed float32 images (n, h, w, c) for "int8"/"int8_full".
        preprocessing: for a model: a ``DatasetInfo`` (or config) to store beside the file;
            default: the one stored with the model.

    Returns:
        ``path``.

    Example:
        >>> tflite(model, "m_int8.tflite", "int8", representative_data=train_images[:200])
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {', '.join(map(repr, QUANTIZATIONS))}; got {quantization!r}."
        )
    if quantization in ("int8", "int8_full") and representative_data is None:
        raise ValueError(f"`quantization={quantization!r}` needs `representative_data` (images).")
    with tempfile.TemporaryDirectory() as tmp:
        source = str(model_or_savedmodel)
        if isinstance(model_or_savedmodel, (str, os.PathLike)) and os.path.exists(
            os.path.join(source, "saved_model.pb")
        ):
            saved_model, metadata = source, read_export_metadata(source)["preprocessing"]
        else:
            model, info = resolve_model(model_or_savedmodel, preprocessing)
            saved_model = export_saved_model(model, tmp, model_name="model", version=1,
                                             preprocessing=info)
            metadata = info.to_config()
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model, signature_keys=["probabilities"]
        )
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization in ("int8", "int8_full"):
            converter.representative_dataset = _representative(representative_data)
        if quantization == "int8_full":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        flatbuffer = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    with open(path + ".json", "w") as f:
        json.dump({"quantization": quantization, "preprocessing": metadata}, f, indent=2)
    return path


class TFLiteModel:
    """A ``.tflite`` file run by the LiteRT interpreter, float in, float probabilities out.

    Example:
        >>> probabilities = TFLiteModel("m_int8.tflite")(images)
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.preprocessing = None
        if os.path.exists(path + ".json"):
            with open(path + ".json") as f:
                self.preprocessing = data.DatasetInfo.from_config(json.load(f)["preprocessing"])

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


def parity_report(keras_model, tflite_path, images, *, latency_runs=20):
    """Compare a ``.tflite`` file with its Keras model on ``images`` (preprocessed float32).

    Returns:
        dict: ``max_abs_diff`` of probabilities, ``top1_agreement``, ``size_bytes``,
        ``latency_ms`` (mean, batch 1) of the TFLite model.

    Example:
        >>> parity_report(model, "m_int8.tflite", test_images)["top1_agreement"]
    """
    images = np.asarray(images, np.float32)
    expected = keras_model.predict(images, verbose=0)
    runner = TFLiteModel(tflite_path)
    got = runner(images)
    runner(images[:1])  # warm-up
    start = time.perf_counter()
    for i in range(latency_runs):
        runner(images[i % len(images)][None])
    latency = (time.perf_counter() - start) / latency_runs
    return {
        "file": os.path.basename(tflite_path),
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "top1_agreement": float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1))),
        "size_bytes": os.path.getsize(tflite_path),
        "latency_ms": 1000 * latency,
    }


def _read_images(image_paths):
    """uint8 RGB arrays of image files; ValueError naming a file that is not an image."""
    images = []
    for path in image_paths:
        if not os.path.isfile(path):
            raise ValueError(f"Image file {path!r} does not exist.")
        with open(path, "rb") as f:
            encoded = f.read()
        try:
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError):
            raise ValueError(f"{path!r} is not a readable JPEG, PNG, GIF or BMP image.") from None
        images.append((encoded, image))
    return images


def _top_k(probabilities, class_names, k):
    order = np.argsort(-probabilities)[:k]
    return [{"index": int(i), "label": class_names[i], "score": float(probabilities[i])} for i in order]


def predict_files(model_path, image_paths, top_k=5):
    """Top-k predictions for image files from a ``.keras`` file, a SavedModel or a ``.tflite``.

    Args:
        model_path: a ``.keras`` file (or run directory), a SavedModel directory written by
            :func:`export_saved_model`, or a ``.tflite`` file written by :func:`tflite`.
        image_paths: JPEG/PNG/GIF/BMP files.
        top_k: how many classes to return per image.

    Returns:
        list of ``{"image": path, "top_k": [{"index", "label", "score"}, ...]}``.

    Example:
        >>> predict_files("exports/resnet20/1", ["digit.png"])[0]["top_k"][0]["label"]
    """
    images = _read_images(image_paths)
    path = str(model_path)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        signature = tf.saved_model.load(path).signatures["serving_bytes"]
        class_names = read_export_metadata(path)["preprocessing"]["class_names"]
        outputs = signature(image_bytes=tf.constant([encoded for encoded, _ in images]))
        probabilities = outputs["probabilities"].numpy()
    elif path.endswith(".tflite"):
        runner = TFLiteModel(path)
        info = runner.preprocessing
        if info is None:
            raise ValueError(f"{path!r} has no preprocessing file {path + '.json'!r} beside it.")
        class_names = info.class_names
        probabilities = runner(np.concatenate([data.preprocess(image[None], info) for _, image in images]))
    else:
        model, info = resolve_model(path)
        class_names = info.class_names
        batch = np.concatenate([data.preprocess(image[None], info) for _, image in images])
        probabilities = model.predict(batch, verbose=0)
    return [
        {"image": image_path, "top_k": _top_k(p, class_names, top_k)}
        for image_path, p in zip(image_paths, probabilities)
    ]
