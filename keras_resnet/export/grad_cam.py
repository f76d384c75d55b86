"""The ``grad_cam`` signature of a classifier's SavedModel: Grad-CAM (Selvaraju et al. 2017)
computed inside the graph, so that a server with no Keras and no gradients of its own can
answer it (TensorFlow Serving included).

A SavedModel's signatures run forward only; this one differentiates with ``tf.GradientTape``
inside its own function, as :func:`keras_resnet.grad_cam` does with the Keras model: the class
score before the softmax or sigmoid (§3 of the paper), its gradient with respect to the output
of the last stage (:func:`keras_resnet.features.stage_scores`), each channel weighed by the
gradient's spatial mean, the positive part of the weighted sum, upsampled to the model's input
size and scaled to [0, 1]. It explains each image's top class.

Input: string ``image_bytes`` (batch,), encoded JPEG/PNG/GIF/BMP, as ``serving_bytes``.
Outputs:

- ``heatmaps``: float32 (batch, h, w) at the model's input size: ``grad_cam(...).heatmaps``;
- ``class_indices`` (int32), ``class_labels`` (strings), ``scores`` (float32, the model's
  output for that class): per image;
- ``overlay_png_bytes``: per image, a PNG of the image at its own size with the heatmap drawn
  over it in matplotlib's "jet" colours (weight :data:`OVERLAY_ALPHA`), placed where the
  model's crop came from: what ``explain.overlay(image, explain.heatmap_on_image(...))``
  draws (0 outside a centre crop).

Example:
    >>> endpoint = grad_cam_endpoint(model, info, labels, decode)  # doctest: +SKIP
"""

import numpy as np
import tensorflow as tf

from keras_resnet.errors import InvalidArgument
from keras_resnet.features import stage_scores

SIGNATURE = "grad_cam"
OVERLAY_ALPHA = 0.4  # keras_resnet.explain.overlay's default


def _colour_table(alpha):
    """``alpha * 255 * jet(k / 255)`` for k in 0..255 (float64, (256, 3)): matplotlib's
    256-entry table, the term :func:`keras_resnet.explain.overlay` adds to the image."""
    import matplotlib

    return alpha * 255.0 * matplotlib.colormaps["jet"](np.arange(256) / 255.0)[:, :3]


def _grad_cam(model, features, scores, images):
    """``(heatmaps, class_indices, scores)`` of each image's top class (the module doc)."""
    probabilities = tf.cast(model(images, training=False), tf.float32)
    indices = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    activations = tf.cast(features(images, training=False), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(activations)
        selected = tf.reduce_sum(scores(activations) * tf.one_hot(indices, probabilities.shape[-1]))
    gradients = tape.gradient(selected, activations)
    weights = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)  # alpha_k, per image
    maps = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
    upsampled = tf.image.resize(maps[..., None], tf.shape(images)[1:3], "bilinear")[..., 0]
    peaks = tf.reduce_max(upsampled, axis=[1, 2], keepdims=True)
    heatmaps = tf.where(peaks > 0, upsampled / tf.where(peaks > 0, peaks, 1.0), 0.0)
    return heatmaps, indices, tf.gather(probabilities, indices, batch_dims=1)


def _resized(heatmap, size):
    return tf.image.resize(heatmap[None, ..., None], size, "bilinear")[0, ..., 0]


def _on_image(heatmap, height, width, preprocessing):
    """The heatmap at the image's own size, as ``explain.heatmap_on_image`` places it."""
    if preprocessing.resize != "shorter_side":
        return _resized(heatmap, [height, width])
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    side = float(preprocessing.resize_size)
    ratio = side / tf.minimum(h, w)
    crop_h, crop_w = (float(length) for length in preprocessing.image_size)
    top = tf.math.floordiv(tf.maximum(tf.round(h * ratio), side) - crop_h, 2.0) / ratio
    left = tf.math.floordiv(tf.maximum(tf.round(w * ratio), side) - crop_w, 2.0) / ratio
    top, left = tf.cast(tf.round(top), tf.int32), tf.cast(tf.round(left), tf.int32)
    box_h = tf.cast(tf.maximum(tf.round(crop_h / ratio), 1.0), tf.int32)
    box_w = tf.cast(tf.maximum(tf.round(crop_w / ratio), 1.0), tf.int32)
    rows, cols = tf.minimum(box_h, height - top), tf.minimum(box_w, width - left)
    piece = _resized(heatmap, [box_h, box_w])[:rows, :cols]
    return tf.pad(piece, [[top, height - top - rows], [left, width - left - cols]])


def _overlay_png(encoded, heatmap, preprocessing, table, alpha, channels):
    """One encoded image -> the PNG of the image with its heatmap drawn over it."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)[..., :3]
    shape = tf.shape(image)
    placed = _on_image(heatmap, shape[0], shape[1], preprocessing)
    # matplotlib's lookup of a float in [0, 1]: bin floor(x * 256), the last one closed
    index = tf.minimum(tf.cast(tf.floor(tf.clip_by_value(placed, 0.0, 1.0) * 256.0), tf.int32), 255)
    kept = tf.cast(tf.cast(image, tf.float32) * np.float32(1 - alpha), tf.float64)
    blended = kept + tf.gather(tf.constant(table, tf.float64), index)
    return tf.io.encode_png(tf.cast(tf.clip_by_value(tf.round(blended), 0.0, 255.0), tf.uint8))


def grad_cam_endpoint(model, preprocessing, labels, decode):
    """The ``grad_cam`` signature's function (the module doc), or None where Grad-CAM cannot
    read ``model`` (a ResNet nested inside it, a last layer that is not the Dense classifier).

    Args:
        model: the float32 Keras classifier being exported.
        preprocessing: its ``ImagePreprocessing``.
        labels: a lookup table from class id (int64) to class name.
        decode: a function from ``image_bytes`` (batch,) to the preprocessed float32 batch
            (what ``serving_bytes`` feeds the model).

    Returns:
        ``(function, metadata)``: a function of ``image_bytes`` returning the outputs of the
        module doc, and ``{"signature", "stage", "layer", "alpha"}`` for the export's
        metadata; None when the model has no Grad-CAM.

    Example:
        >>> function, metadata = grad_cam_endpoint(model, info, labels, decode)  # doctest: +SKIP
    """
    try:
        chosen, features, scores = stage_scores(model)
    except InvalidArgument:
        return None
    table = _colour_table(OVERLAY_ALPHA)
    channels = 4 if preprocessing.channels == 4 else 3

    def explain(image_bytes):
        heatmaps, indices, top_scores = _grad_cam(model, features, scores, decode(image_bytes))
        overlays = tf.map_fn(
            lambda pair: _overlay_png(*pair, preprocessing, table, OVERLAY_ALPHA, channels),
            (image_bytes, heatmaps), fn_output_signature=tf.TensorSpec((), tf.string),
        )
        return {"heatmaps": heatmaps, "class_indices": indices,
                "class_labels": labels.lookup(tf.cast(indices, tf.int64)), "scores": top_scores,
                "overlay_png_bytes": overlays}

    metadata = {"signature": SIGNATURE, "stage": chosen["name"], "layer": chosen["layer"],
                "alpha": OVERLAY_ALPHA}
    return explain, metadata
