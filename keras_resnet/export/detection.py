"""SavedModel signatures, geometry and parity measure of a detector's export (a model whose Task
is ``Task("detection", classes, "sigmoid")``: RetinaNet with its post-processing,
``keras_resnet.heads``).

Signatures (boxes ``x1, y1, x2, y2`` in each image's own pixels; ``D`` rows per image, best
first, padded: box and score 0, class -1, label ""):

- ``serving_default``: uint8 ``images`` (batch, any h, any w, 1/3/4 channels) -> ``boxes``
  float32 (batch, D, 4), ``scores`` float32 (batch, D), ``classes`` int32 (batch, D),
  ``labels`` string (batch, D) (class names) and ``num_detections`` int32 (batch,).
- ``serving_bytes``: string ``image_bytes`` (batch,) of encoded JPEG/PNG/GIF/BMP -> the same,
  plus ``image_size`` int32 (batch, 2): each decoded image's (height, width) (images of a
  batch may differ in size).
- ``detections``: float32 ``images`` already preprocessed, of the model's input size ->
  ``boxes`` (in input pixels), ``scores``, ``classes``, ``num_detections``: what TFLite
  conversion of a SavedModel reads, what the ``.tflite``, ``.onnx`` and OpenVINO files output,
  and what parity runs.

Geometry, as the detection data's evaluation pipeline (``keras_resnet.data.detection``): each
image resized (bilinear, antialiased), keeping its aspect ratio, to fit the model's input size
(its fixed size, else its preprocessing's ``image_size``) with one side equal to it, padded
with 0 at the bottom and right, normalised; the boxes found are divided by the scale and
clipped to the image.

Example:
    >>> archive = detection_archive(keras_resnet.RetinaNet("resnet18", 10), preprocessing)  # doctest: +SKIP
"""

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import boxes as boxes_lib
from keras_resnet.data.augment.boxes import fit_and_pad
from keras_resnet.data.images import normalize, to_model_channels
from keras_resnet.errors import InvalidArgument
from keras_resnet.heads.postprocess import OUTPUTS

DETECTIONS = "detections"  # the float32 signature, and what a detector's files output
SIGNATURES = ("serving_default", "serving_bytes", DETECTIONS)
MATCH_IOU = 0.99  # parity: an export's box matches Keras' at this IoU (same class) or more


def input_size(model, preprocessing):
    """The ``(height, width)`` a detector's exports take: the model's fixed input size, else
    its preprocessing's ``image_size`` (what the detection pipeline fits images to).

    Example:
        >>> input_size(keras_resnet.RetinaNet("resnet18", 3), preprocessing)  # doctest: +SKIP
        (128, 128)
    """
    height, width = model.input_shape[1:3]
    if height is not None and width is not None:
        return int(height), int(width)
    if not preprocessing.image_size:
        raise InvalidArgument(f"Detector {model.name!r} takes any size and its preprocessing "
                              "names none (`image_size`): its exports need one.")
    return tuple(int(side) for side in preprocessing.image_size)


def check_detector(model):
    """Raise unless ``model`` returns the detections (not the raw outputs).

    Example:
        >>> check_detector(keras_resnet.RetinaNet("resnet18", 3))  # doctest: +SKIP
    """
    if not isinstance(model.output, dict) or set(model.output) != set(OUTPUTS):
        raise InvalidArgument(
            f"Detector {model.name!r} must return its detections ({', '.join(OUTPUTS)}) to be "
            "exported; got the outputs "
            f"{sorted(model.output) if isinstance(model.output, dict) else model.output_shape}. "
            "Use keras_resnet.heads.detections_model(model).")


def _detections(model, images):
    found = model(images, training=False)
    return {key: tf.cast(found[key], tf.float32 if key in ("boxes", "scores") else tf.int32)
            for key in OUTPUTS}


def _fitted(image, size, preprocessing):
    """One image as the model takes it, and its ``(scale, original size)``."""
    image = to_model_channels(image[None], preprocessing)[0]
    fitted, _, scale, original = fit_and_pad(tf.cast(image, tf.float32), tf.zeros((0, 4)), size)
    return normalize(fitted, preprocessing), scale, original


def _in_image_pixels(found, scale, original, class_names):
    """The detections with their boxes in each image's own pixels, and class names."""
    scale = tf.tile(scale, [1, 2])[:, None, :]
    height, width = tf.unstack(tf.cast(original, tf.float32), axis=1)
    limits = tf.stack([width, height, width, height], axis=-1)[:, None, :]
    result = dict(found)
    result["boxes"] = tf.clip_by_value(found["boxes"] / scale, 0.0, limits)
    names = tf.gather(tf.constant(class_names), tf.maximum(found["classes"], 0))
    result["labels"] = tf.where(found["classes"] >= 0, names, "")
    return result


def detect_function(model, preprocessing, with_sizes=False):
    """What ``serving_default`` computes for uint8 images (``with_sizes``: also
    ``image_size``, for decoded images of one batch).

    Example:
        >>> detect_function(model, preprocessing)(tf.zeros((1, 50, 70, 3), tf.uint8))["boxes"].shape  # doctest: +SKIP
        TensorShape([1, 300, 4])
    """
    size = input_size(model, preprocessing)
    class_names = list(preprocessing.class_names)

    def detect(images):
        inputs, scale, original = tf.map_fn(
            lambda image: _fitted(image, size, preprocessing), images,
            fn_output_signature=(tf.TensorSpec((*size, None), tf.float32),
                                 tf.TensorSpec((2,), tf.float32), tf.TensorSpec((2,), tf.int32)))
        result = _in_image_pixels(_detections(model, inputs), scale, original, class_names)
        if with_sizes:
            result["image_size"] = original
        return result

    return detect


def _from_bytes_function(model, preprocessing):
    """``serving_bytes``: each encoded image decoded (RGB; RGBA for a 4-channel stacked model)
    and detected at its own size."""
    channels = 4 if preprocessing.channels == 4 else 3
    detect = detect_function(model, preprocessing, with_sizes=True)
    detections = model.output["scores"].shape[-1]

    def one(encoded):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        found = detect(image[None])
        return tuple(found[key][0] for key in (*OUTPUTS, "labels", "image_size"))

    def from_bytes(image_bytes):
        signature = (tf.TensorSpec((detections, 4), tf.float32),
                     tf.TensorSpec((detections,), tf.float32),
                     tf.TensorSpec((detections,), tf.int32), tf.TensorSpec((), tf.int32),
                     tf.TensorSpec((detections,), tf.string), tf.TensorSpec((2,), tf.int32))
        found = tf.map_fn(one, image_bytes, fn_output_signature=signature)
        return dict(zip((*OUTPUTS, "labels", "image_size"), found))

    return from_bytes


def detection_archive(model, preprocessing):
    """A ``keras.export.ExportArchive`` of detector ``model`` with the signatures of the
    module doc.

    Args:
        model: a float32 detector returning its detections.
        preprocessing: its ``ImagePreprocessing`` (class names and input size).

    Example:
        >>> detection_archive(model, preprocessing).write_out("exports/retinanet/1")  # doctest: +SKIP
    """
    check_detector(model)
    size = input_size(model, preprocessing)
    archive = keras.export.ExportArchive()
    archive.track(model)
    uint8_spec = tf.TensorSpec((None, None, None, None), tf.uint8, name="images")
    float_spec = tf.TensorSpec((None, *size, model.input_shape[-1]), tf.float32, name="images")
    archive.add_endpoint("serving_default", detect_function(model, preprocessing),
                         input_signature=[uint8_spec])
    archive.add_endpoint("serving_bytes", _from_bytes_function(model, preprocessing),
                         input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.add_endpoint(DETECTIONS, lambda images: _detections(model, images),
                         input_signature=[float_spec])
    return archive


def export_metadata(preprocessing, model):
    """What a detector's export ``keras_resnet.json`` holds beside the Task and the
    preprocessing: the class names, the input size, the detections per image and the
    signatures.

    Example:
        >>> export_metadata(preprocessing, model)["max_detections"]  # doctest: +SKIP
        300
    """
    return {"class_names": list(preprocessing.class_names),
            "input_size": list(input_size(model, preprocessing)),
            "max_detections": int(model.output["scores"].shape[-1]),
            "signatures": list(SIGNATURES)}


def _matches(got, expected, image):
    """``(matched, found, expected, score differences)`` of one image: greedy, best Keras
    score first, each Keras detection takes the unmatched export detection of its class with
    the highest IoU, if at least :data:`MATCH_IOU`."""
    count_e, count_g = int(expected["num_detections"][image]), int(got["num_detections"][image])
    boxes_e, boxes_g = expected["boxes"][image][:count_e], got["boxes"][image][:count_g]
    classes_e, classes_g = expected["classes"][image][:count_e], got["classes"][image][:count_g]
    if not count_e or not count_g:
        return 0, count_g, count_e, []
    iou = keras.ops.convert_to_numpy(boxes_lib.box_iou(boxes_e[None], boxes_g[None]))[0]
    iou = np.where(classes_e[:, None] == classes_g[None, :], iou, 0.0)
    free, differences = np.ones(count_g, bool), []
    for row in range(count_e):
        candidates = np.where(free, iou[row], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= MATCH_IOU:
            free[best] = False
            differences.append(abs(float(got["scores"][image][best]) -
                                   float(expected["scores"][image][row])))
    return len(differences), count_g, count_e, differences


def box_agreement(got, expected):
    """How far an export's detections agree with Keras': ``(agreement, max score difference)``.

    ``agreement`` is ``2 * matched / (found + expected)`` over every image (1.0: the same
    boxes, classes and count; a box found by one side alone lowers it), a match being a box
    of the same class at IoU >= :data:`MATCH_IOU`; the score difference is over the matches.

    Example:
        >>> one = {"boxes": np.array([[[0., 0, 10, 10]]]), "scores": np.array([[0.9]]),
        ...        "classes": np.array([[1]]), "num_detections": np.array([1])}
        >>> box_agreement(one, one)
        (1.0, 0.0)
    """
    matched = total = 0
    differences = [0.0]
    for image in range(len(expected["num_detections"])):
        pairs, found, wanted, diffs = _matches(got, expected, image)
        matched, total = matched + pairs, total + found + wanted
        differences += diffs
    return (2 * matched / total if total else 1.0), max(differences)


__all__ = ["DETECTIONS", "MATCH_IOU", "SIGNATURES", "box_agreement", "check_detector",
           "detect_function", "detection_archive", "export_metadata", "input_size"]
