"""SavedModel signatures, geometry and parity measures of a segmentation model's export (a
model whose Task is ``Task("segmentation", classes, "linear")``: per-pixel logits at its input
size, ``keras_resnet.heads``).

Signatures (all masks at each image's own size, uint8 class ids, ties to the first class):

- ``serving_default``: uint8 ``images`` (batch, any h, any w, 1/3/4 channels) -> ``mask``
  uint8 (batch, h, w), ``mask_png_bytes`` (string (batch,): the mask as an 8-bit grey PNG
  whose pixel values are the class ids; TensorFlow Serving's REST API, and ours, send an output
  whose name ends in ``_bytes`` as ``{"b64": ...}``) and ``class_shares`` float32
  (batch, classes): each class's share of the image's pixels.
- ``serving_logits``: as ``serving_default``, plus ``logits`` float32 (batch, h, w, classes)
  resized to the image (what the mask is the argmax of).
- ``serving_bytes``: string ``image_bytes`` (batch,) of encoded JPEG/PNG/GIF/BMP ->
  ``mask_png_bytes``, ``class_shares`` and ``image_size`` int32 (batch, 2): each decoded
  image's (height, width), the size of its mask (images of a batch may differ in size).
- ``logits``: float32 ``images`` already preprocessed, of the model's input size ->
  ``logits`` at that size (what TFLite conversion of a SavedModel reads, and parity runs).

Geometry, as the segmentation data's evaluation pipeline (``keras_resnet.data.segmentation``):
a model of a fixed input size gets each image resized (bilinear, antialiased), keeping its
aspect ratio, to fit that size with one side equal to it, padded with 0 at the bottom and
right; a model of any size gets it resized as its preprocessing says ("direct": to
``image_size``; "shorter_side": the shorter side to ``resize_size``, no crop, so that every
pixel gets a class). Then the normalisation; the logits of the image's region are resized back
to the image (bilinear, half-pixel centres: torchvision's ``interpolate``) before the argmax.

Example:
    >>> archive = segmentation_archive(keras_resnet.FCN("resnet18", classes=3), preprocessing)  # doctest: +SKIP
"""

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import data
from keras_resnet.errors import InvalidArgument
from keras_resnet.export.bfloat16 import run_in

LOGITS = "logits"  # the output of a segmentation model's file exports and ``logits`` signature
MAX_CLASSES = data.IGNORE_LABEL  # class ids 0..254 fit a uint8 mask beside the ignore label
SIGNATURES = ("serving_default", "serving_logits", "serving_bytes", "logits")


def _model_size(model):
    """The model's fixed (height, width), or None when it takes any size."""
    height, width = model.input_shape[1:3]
    return None if height is None or width is None else (int(height), int(width))


def _fitted_size(size, target):
    """``size`` scaled, keeping its aspect ratio, to fit ``target`` with one side equal to it
    (the evaluation pipeline's ``fit_and_pad``)."""
    shape = tf.cast(size, tf.float64)
    ratio = tf.minimum(target[0] / shape[0], target[1] / shape[1])
    fitted = tf.cast(tf.round(shape * ratio), tf.int32)
    return tf.clip_by_value(fitted, 1, tf.constant(target, tf.int32))


def _shorter_side_size(size, side):
    """``size`` with its shorter side ``side``, the longer scaled and truncated (torchvision's
    ``resize(image, side)``)."""
    height, width = size[0], size[1]
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    other = tf.cast(side * tf.cast(long, tf.float64) / tf.cast(short, tf.float64), tf.int32)
    side = tf.constant(side, tf.int32)
    return tf.cond(height <= width, lambda: tf.stack([side, other]),
                   lambda: tf.stack([other, side]))


def _resized(images, size):
    """Pixel values resized to ``size`` (bilinear, antialiased: the pipeline's ``resize_pair``);
    unchanged at the same size."""
    return tf.cond(tf.reduce_all(tf.shape(images)[1:3] == size), lambda: images,
                   lambda: tf.image.resize(images, size, "bilinear", antialias=True))


def model_input(images, model_size, preprocessing):
    """Images as a segmentation model takes them (see the module's geometry).

    Args:
        images: ``(batch, h, w, c)`` pixel values 0..255 (uint8 or float), c = 1, 3 or 4.
        model_size: the model's fixed ``(height, width)``, or None for any size.
        preprocessing: the model's ``ImagePreprocessing``.

    Returns:
        ``(inputs, region)``: normalised float32 model inputs and the int32 ``(height,
        width)`` of their top-left region that holds the image.

    Example:
        >>> model_input(tf.zeros((1, 50, 70, 3), tf.uint8), (64, 64), preprocessing)[1].numpy()  # doctest: +SKIP
        array([46, 64], dtype=int32)
    """
    images = tf.cast(data.to_model_channels(images, preprocessing), tf.float32)
    size = tf.shape(images)[1:3]
    if model_size is None:
        if preprocessing.resize == "shorter_side":
            region = _shorter_side_size(size, preprocessing.resize_size)
        else:
            region = tf.constant(preprocessing.image_size, tf.int32)
        return data.normalize(_resized(images, region), preprocessing), region
    region = _fitted_size(size, model_size)
    images = _resized(images, region)
    padding = [[0, 0], [0, model_size[0] - region[0]], [0, model_size[1] - region[1]], [0, 0]]
    images = tf.ensure_shape(tf.pad(images, padding), (None, *model_size, None))
    return data.normalize(images, preprocessing), region


def logits_at(logits, region, size):
    """The logits of the image's ``region`` resized to its ``size`` (bilinear, half-pixel
    centres, no antialiasing: torchvision's ``interpolate(..., align_corners=False)``).

    Example:
        >>> logits_at(tf.zeros((1, 64, 64, 3)), [46, 64], [50, 70]).shape  # doctest: +SKIP
        TensorShape([1, 50, 70, 3])
    """
    logits = tf.cast(logits[:, :region[0], :region[1]], tf.float32)
    return tf.cond(tf.reduce_all(tf.shape(logits)[1:3] == size), lambda: logits,
                   lambda: tf.image.resize(logits, size, "bilinear"))


def _mask_outputs(logits, classes):
    """``mask``, ``mask_png_bytes`` and ``class_shares`` of logits at the image's size."""
    mask = tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.uint8)
    flat = tf.reshape(tf.cast(mask, tf.int32), (tf.shape(mask)[0], -1))
    counts = tf.math.bincount(flat, minlength=classes, maxlength=classes, axis=-1)
    shares = tf.cast(counts, tf.float32) / tf.cast(tf.shape(flat)[1], tf.float32)
    pngs = tf.map_fn(lambda one: tf.io.encode_png(one[..., None]), mask,
                     fn_output_signature=tf.TensorSpec((), tf.string))
    return {"mask": mask, "mask_png_bytes": pngs, "class_shares": shares}


def segment_function(model, preprocessing, with_logits=False):
    """What ``serving_default`` (and, ``with_logits``, ``serving_logits``) computes for uint8
    images: the mask outputs of the module doc.

    Example:
        >>> segment_function(model, preprocessing)(tf.zeros((1, 50, 70, 3), tf.uint8))["mask"].shape  # doctest: +SKIP
        TensorShape([1, 50, 70])
    """
    classes = int(model.output_shape[-1])
    model_size = _model_size(model)

    def segment(images):
        inputs, region = model_input(images, model_size, preprocessing)
        logits = logits_at(model(inputs, training=False), region, tf.shape(images)[1:3])
        outputs = _mask_outputs(logits, classes)
        if with_logits:
            outputs[LOGITS] = logits
        return outputs

    return segment


def _from_bytes_function(segment, preprocessing, classes):
    """``serving_bytes``: each encoded image decoded (RGB; RGBA for a 4-channel stacked model)
    and segmented at its own size."""
    channels = 4 if preprocessing.channels == 4 else 3

    def one(encoded):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        outputs = segment(image[None])
        return outputs["mask_png_bytes"][0], outputs["class_shares"][0], tf.shape(image)[:2]

    def from_bytes(image_bytes):
        pngs, shares, sizes = tf.map_fn(one, image_bytes, fn_output_signature=(
            tf.TensorSpec((), tf.string), tf.TensorSpec((classes,), tf.float32),
            tf.TensorSpec((2,), tf.int32)))
        return {"mask_png_bytes": pngs, "class_shares": shares, "image_size": sizes}

    return from_bytes


def check_segmenter(model):
    """Raise unless ``model`` (aux head dropped) gives per-pixel logits whose class ids fit a
    uint8 mask beside the ignore label.

    Example:
        >>> check_segmenter(keras_resnet.FCN("resnet18", classes=3))  # doctest: +SKIP
    """
    shape = model.output_shape
    if not isinstance(shape, tuple) or len(shape) != 4:
        raise InvalidArgument(f"A segmentation model's output must be (batch, h, w, classes) "
                              f"logits; model {model.name!r} outputs {shape}.")
    if shape[-1] > MAX_CLASSES:
        raise InvalidArgument(f"A segmentation export's mask is uint8 with {data.IGNORE_LABEL} "
                              f"the ignore label: at most {MAX_CLASSES} classes; model "
                              f"{model.name!r} has {shape[-1]}.")


def segmentation_archive(model, preprocessing):
    """A ``keras.export.ExportArchive`` of ``model`` with the signatures of the module doc.

    Args:
        model: a float32 segmentation ``keras.Model`` (one output: the logits).
        preprocessing: its ``ImagePreprocessing``.

    Returns:
        The archive, ready for ``write_out``.

    Example:
        >>> segmentation_archive(model, preprocessing).write_out("exports/fcn/1")  # doctest: +SKIP
    """
    check_segmenter(model)
    classes = int(model.output_shape[-1])
    segment = segment_function(model, preprocessing)
    archive = keras.export.ExportArchive()
    archive.track(model)
    uint8_spec = tf.TensorSpec((None, None, None, None), tf.uint8, name="images")
    float_spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="images")
    archive.add_endpoint("serving_default", segment, input_signature=[uint8_spec])
    archive.add_endpoint("serving_logits", segment_function(model, preprocessing, True),
                         input_signature=[uint8_spec])
    archive.add_endpoint("serving_bytes", _from_bytes_function(segment, preprocessing, classes),
                         input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.add_endpoint(
        LOGITS, lambda images: {LOGITS: tf.cast(model(images, training=False), tf.float32)},
        input_signature=[float_spec])
    return archive


def export_metadata(preprocessing):
    """What a segmentation export's ``keras_resnet.json`` holds beside the Task and the
    preprocessing: the class names, the ignore label and the signatures.

    Example:
        >>> export_metadata(preprocessing)["ignore_label"]  # doctest: +SKIP
        255
    """
    return {"class_names": list(preprocessing.class_names), "ignore_label": data.IGNORE_LABEL,
            "signatures": list(SIGNATURES)}


def argmax_mask(logits):
    """uint8 class ids ``(..., h, w)`` of logits ``(..., h, w, classes)``, ties to the first
    class (numpy's and TensorFlow's argmax).

    Example:
        >>> argmax_mask(np.array([[[[0.0, 1.0], [2.0, 2.0]]]])).tolist()
        [[[1, 0]]]
    """
    return np.asarray(logits).argmax(axis=-1).astype(np.uint8)


def pixel_agreement(got, expected):
    """The fraction of pixels whose argmax class agrees between two logit arrays.

    Example:
        >>> pixel_agreement(np.array([[[[0.0, 1.0], [1.0, 0.0]]]]), np.array([[[[0.0, 1.0], [0.0, 1.0]]]]))
        0.5
    """
    return float(np.mean(argmax_mask(got) == argmax_mask(expected)))


def class_shares(mask, class_names):
    """Each class's share of a mask's pixels, ``{name: share}`` in class order.

    Example:
        >>> class_shares(np.array([[0, 1], [1, 1]]), ["background", "digit"])
        {'background': 0.25, 'digit': 0.75}
    """
    counts = np.bincount(np.asarray(mask, np.int64).ravel(), minlength=len(class_names))
    return {name: float(count) / mask.size for name, count in zip(class_names, counts)}


class SavedModelLogits:
    """A segmentation SavedModel's ``logits`` signature: preprocessed float32 images of the
    model's input size in, logits out (the parity report's runner).

    Example:
        >>> SavedModelLogits("exports/fcn_resnet18/1")(images).shape  # doctest: +SKIP
        (8, 64, 64, 11)
    """

    outputs = LOGITS

    def __init__(self, path, precision="float32"):
        self.path, self.precision = path, precision  # "bfloat16": TensorFlow's oneDNN rewrite
        loaded = tf.saved_model.load(path)
        if LOGITS not in loaded.signatures:
            raise InvalidArgument(f"SavedModel {path!r} has no {LOGITS!r} signature: it is not "
                                  "a segmentation export of keras_resnet; export it again.")
        self.loaded, self.signature = loaded, loaded.signatures[LOGITS]

    def __call__(self, images):
        images = tf.constant(np.asarray(images, np.float32))
        return run_in(self.precision, self.signature, images=images)[LOGITS].numpy()
