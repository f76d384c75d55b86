"""SavedModel exports in TensorFlow Serving's layout, with the preprocessing and class names
inside, and the readers of their metadata.

An export lives in ``<export_dir>/<model_name>/<version>/``. Signatures:

- ``serving_default``: float32 ``images`` (batch, h, w, c), already preprocessed.
- ``serving_images``: uint8 ``images`` (batch, any h, any w, 1/3/4 channels); resize, crop and
  normalisation run inside the graph.
- ``serving_bytes``: string ``image_bytes`` (batch,) of encoded JPEG/PNG/GIF/BMP, decoded in the
  graph (TensorFlow Serving's REST ``{"b64": ...}`` maps onto it).
- ``probabilities``: like ``serving_default`` with the probabilities alone (what TFLite
  conversion of a SavedModel reads).
- ``embeddings`` (float32 ``images``, preprocessed) and ``embeddings_images`` (uint8
  ``images``, any size): ``embeddings``, the pooled features
  (``keras_resnet.features.embedding_model``), for retrieval and clustering.

- ``grad_cam``: string ``image_bytes`` like ``serving_bytes``; each image's top class with its
  Grad-CAM heatmap and an overlay PNG, computed in the graph (:mod:`keras_resnet.export.grad_cam`;
  absent where Grad-CAM cannot read the model, as in exports written before it existed).

Every serving signature (``serving_*``) returns ``probabilities``, ``top_k_indices``, ``top_k_scores`` and
``top_k_labels`` (class names from ``assets/labels.txt``). A multi-label model's also return
``predicted`` (int32 ``(batch, classes)``: 1 where the score is at or over the class's
threshold) and ``predicted_labels`` (one string per image: those classes' names, highest score
first, joined by ";" as in a labels file; "" for none). ``assets.extra/keras_resnet.json``
holds the preprocessing recipe as JSON for clients that prepare inputs themselves, and
``task``: the model's Task (``keras_resnet.tasks.Task.to_config``: kind, classes, activation,
thresholds), which decides the multi-label outputs above, and ``grad_cam``: the stage, layer
and overlay weight of the ``grad_cam`` signature (None without one).

A segmentation model's export (its Task's kind "segmentation") has the signatures of
:mod:`keras_resnet.export.segmentation` instead (``serving_default``, ``serving_logits``,
``serving_bytes``, ``logits``: masks, class shares and logits), and its metadata adds
``class_names``, ``ignore_label`` and ``signatures``. A detector's (kind "detection") has those of
:mod:`keras_resnet.export.detection` (``serving_default``, ``serving_bytes``, ``detections``:
boxes, scores, classes, labels), and its metadata adds ``class_names``, ``input_size``,
``max_detections`` and ``signatures``.

Example:
    >>> path = export_saved_model("runs/resnet20-digits/model.keras", "exports")  # doctest: +SKIP
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_resnet import data, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument
from keras_resnet.export import detection
from keras_resnet.export.formats import METADATA_FILE, check_writable
from keras_resnet.export.grad_cam import SIGNATURE as GRAD_CAM_SIGNATURE
from keras_resnet.export.grad_cam import grad_cam_endpoint
from keras_resnet.export.resolve import resolve_model, task_for
from keras_resnet.export.segmentation import export_metadata, segmentation_archive
from keras_resnet.features import embedding_model
from keras_resnet.saving import atomic_path, write_json


def _next_version(model_dir):
    versions = []
    if os.path.isdir(model_dir):
        versions = [int(v) for v in os.listdir(model_dir) if v.isascii() and v.isdigit()]
    return max(versions, default=0) + 1


def _over_thresholds(probabilities, thresholds, labels):
    """``predicted`` and ``predicted_labels`` of a multi-label model (see the module doc)."""
    over = probabilities >= tf.constant(thresholds, tf.float32)
    order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
    names = tf.ragged.boolean_mask(labels.lookup(tf.cast(order, tf.int64)),
                                   tf.gather(over, order, batch_dims=1))
    return {"predicted": tf.cast(over, tf.int32),
            "predicted_labels": tf.strings.reduce_join(names, axis=-1, separator=";")}


def _version_path(export_dir, model_name, version, overwrite):
    """``export_dir/model_name/version``, checked (a new version unless ``overwrite``)."""
    model_dir = os.path.join(export_dir, model_name)
    version = _next_version(model_dir) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgument(f"`version` must be a positive integer; got {version!r}.")
    path = os.path.join(model_dir, str(version))
    if os.path.exists(path) and not overwrite:
        raise InvalidArgument(f"Export {path!r} already exists; pick another `version`.")
    check_writable("export_dir", export_dir)
    return path, version


def _labels_table(class_names, folder):
    """A lookup table from class id to class name, read from ``folder/labels.txt``."""
    labels_path = os.path.join(folder, "labels.txt")
    with open(labels_path, "w") as f:
        f.write("\n".join(class_names) + "\n")
    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )


def _predict_function(model, task, labels, k):
    """What every serving signature returns for preprocessed images (the module doc): the
    scores, the top k, and for a multi-label Task the labels over its thresholds."""

    def predict(images):
        probabilities = tf.cast(model(images, training=False), tf.float32)
        scores, indices = tf.math.top_k(probabilities, k=k)
        outputs = {
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
            "top_k_labels": labels.lookup(tf.cast(indices, tf.int64)),
        }
        if task.multilabel:
            outputs.update(_over_thresholds(probabilities, task.thresholds, labels))
        return outputs

    return predict


def _decoder(info, input_shape):
    """Encoded images (``image_bytes``, batch) -> the model's batch: each decodes to RGB (RGBA
    for a 4-channel stacked model), then to the model's channels, size and normalisation."""
    decoded_channels = 4 if info.channels == 4 else 3

    def decode_batch(image_bytes):
        def decode(encoded):
            image = tf.io.decode_image(encoded, channels=decoded_channels, expand_animations=False)
            return data.preprocess(image[None], info)[0]

        return tf.map_fn(decode, image_bytes,
                         fn_output_signature=tf.TensorSpec(input_shape, tf.float32))

    return decode_batch


def _archive(model, info, task, labels, k):
    """The export archive with every signature of the module doc."""
    predict = _predict_function(model, task, labels, k)
    embedder = embedding_model(model)

    def embed(images):
        return {"embeddings": tf.cast(embedder(images, training=False), tf.float32)}

    archive = keras.export.ExportArchive()
    for tracked in (model, embedder, labels):
        archive.track(tracked)
    float_spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="images")
    uint8_spec = tf.TensorSpec((None, None, None, None), tf.uint8, name="images")
    archive.add_endpoint("serving_default", predict, input_signature=[float_spec])
    archive.add_endpoint("serving_images", lambda images: predict(data.preprocess(images, info)),
                         input_signature=[uint8_spec])
    decode = _decoder(info, model.input_shape[1:])
    bytes_spec = tf.TensorSpec((None,), tf.string, name="image_bytes")
    archive.add_endpoint("serving_bytes", lambda image_bytes: predict(decode(image_bytes)),
                         input_signature=[bytes_spec])
    archive.add_endpoint(
        "probabilities",
        lambda images: {"probabilities": tf.cast(model(images, training=False), tf.float32)},
        input_signature=[float_spec],
    )
    archive.add_endpoint("embeddings", embed, input_signature=[float_spec])
    archive.add_endpoint("embeddings_images", lambda images: embed(data.preprocess(images, info)),
                         input_signature=[uint8_spec])
    explained = grad_cam_endpoint(model, info, labels, decode)
    if explained is not None:
        archive.add_endpoint(GRAD_CAM_SIGNATURE, explained[0], input_signature=[bytes_spec])
    return archive, explained and explained[1]


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
    task = task_for(model)
    model_name = model_name or model.name
    path, version = _version_path(export_dir, model_name, version, overwrite)
    classes = task.classes if task.detection else model.output_shape[-1]
    if len(info.class_names) != classes:
        raise InvalidArgument(
            f"The preprocessing names {len(info.class_names)} classes; the model predicts {classes}."
        )
    k = min(top_k, classes)
    metadata = {"model_name": model_name, "version": version, "top_k": k,
                "task": task.to_config(), "preprocessing": json.loads(info.to_json())}
    with tempfile.TemporaryDirectory() as tmp:
        if task.segmentation:  # masks, not top-k classes
            archive = segmentation_archive(model, info)
            metadata = {**metadata, "top_k": None, **export_metadata(info)}
        elif task.detection:  # boxes
            archive = detection.detection_archive(model, info)
            metadata = {**metadata, "top_k": None, **detection.export_metadata(info, model)}
        else:
            archive, grad_cam = _archive(model, info, task, _labels_table(info.class_names, tmp), k)
            metadata["grad_cam"] = grad_cam
        with atomic_path(path) as staging:
            archive.write_out(staging, verbose=False)
            write_json(os.path.join(staging, METADATA_FILE), metadata)
            if os.path.isdir(path):  # overwrite: the old version goes just before the new lands
                shutil.rmtree(path)
    return path


def read_export_metadata(saved_model_dir):
    """The ``assets.extra/keras_resnet.json`` of an export (preprocessing, class names).

    Example:
        >>> read_export_metadata("exports/resnet20/1")["version"]  # doctest: +SKIP
        1
    """
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


def read_export_task(saved_model_dir):
    """The Task an export answers by (exports written before Tasks existed record the kind
    alone; the thresholds were in their preprocessing).

    Example:
        >>> read_export_task("exports/resnet20/1").kind  # doctest: +SKIP
        'classification'
    """
    metadata = read_export_metadata(saved_model_dir)
    return tasks.from_export(metadata, preprocessing_lib.from_any_config(metadata["preprocessing"]))
