"""Boxes of image files from a detector (a ``.keras`` file, a run directory or an export), and
the files ``keras-resnet predict`` writes for them: one JSON record per image and a copy of the
image with its boxes drawn (each class in its Pascal VOC colour, labelled with its name and
score).

Each image goes through the evaluation geometry of the detection pipeline (resized to fit the
model's input side keeping its aspect ratio, padded at the bottom and right, normalised by the
model's preprocessing); the model's own post-processing (inside its exports too) gives the
boxes, mapped back to the image's pixels.

Example:
    >>> results = detect_files("runs/boxes/model.keras", ["scene.png"])  # doctest: +SKIP
    >>> write_detection_files(results, "boxes")[0]["drawn"]  # doctest: +SKIP
    'boxes/scene_boxes.png'
"""

import os
import zipfile

import numpy as np
import tensorflow as tf

from keras_resnet.data.augment.boxes import fit_and_pad
from keras_resnet.data.detection import original_boxes
from keras_resnet.data.images import normalize
from keras_resnet.errors import InvalidArgument, check_fraction
from keras_resnet.export.formats import check_writable
from keras_resnet.export.masks import keras_task, output_stems, save_png, voc_palette
from keras_resnet.export.runtimes import open_runner, read_image
from keras_resnet.export.saved_model import read_export_task
from keras_resnet.export.writers import read_sidecar

LINE_WIDTH = 2  # pixels of a drawn box's outline


def _keras_file(model_path):
    path = os.fspath(model_path)
    return os.path.join(path, "model.keras") if os.path.isdir(path) else path


def _export_task(path):
    """The Task of a SavedModel or a file export, or None."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return read_export_task(path)
    sidecar = read_sidecar(path) if os.path.isfile(path) else None
    return sidecar and sidecar.get("task")


def is_detection(model_path):
    """Whether ``model_path`` (a ``.keras`` file, a run directory or an export) holds a
    detector, read from its config or metadata (nothing is loaded); False for anything else
    or unreadable.

    Example:
        >>> is_detection("runs/boxes")  # doctest: +SKIP
        True
    """
    path = os.fspath(model_path)
    try:
        task = _export_task(path)
        if task is not None:
            return task.detection
        path = _keras_file(path)
        return path.endswith(".keras") and keras_task(path) == "detection"
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False


def _boxes_of(runner, pixels, size):
    """``(boxes, scores, classes)`` of one uint8 image, boxes in its own pixels."""
    image, _, scale, original = fit_and_pad(tf.constant(pixels), tf.zeros((0, 4)), size)
    inputs = normalize(image, runner.preprocessing)[None].numpy()
    found = {key: np.asarray(value) for key, value in runner(inputs).items()}
    count = int(found["num_detections"][0])
    boxes = original_boxes(found["boxes"][:, :count], scale[None], original[None])[0]
    return boxes, found["scores"][0, :count], found["classes"][0, :count]


def detect_files(model_path, image_paths, score_threshold=0.5, precision="auto"):
    """The boxes of image files found by a detector, at least ``score_threshold``.

    Args:
        model_path: a ``.keras`` file or a run directory of a detector (``keras-resnet train``
            on box data), or its export (a SavedModel, ``.tflite``, ``.onnx`` or OpenVINO
            ``.xml``: ``keras_resnet.export.open_runner``).
        image_paths: JPEG/PNG/GIF/BMP files.
        score_threshold: the least score a box keeps here, in [0, 1) (the model's own
            threshold, 0.05 by default, still applies first).
        precision: "auto", "float32" or "bfloat16" (``keras_resnet.export.choose_precision``).

    Returns:
        list of ``{"image": path, "pixels": uint8 (h, w, 3), "detections": [{"box": [x1, y1,
        x2, y2], "score": float, "class": int, "label": name}, ...]}``, best first.

    Example:
        >>> detect_files("runs/boxes", ["scene.png"])[0]["detections"][0]["label"]  # doctest: +SKIP
        '7'
    """
    check_fraction("score_threshold", score_threshold)
    for path in image_paths:  # before the model loads: a missing image fails fast
        if not os.path.isfile(path):
            read_image(path)
    if not is_detection(model_path):
        raise InvalidArgument(f"`model` {os.fspath(model_path)!r} is not a detector.")
    runner = open_runner(model_path, precision=precision)
    preprocessing = runner.preprocessing
    names = preprocessing.class_names or [str(i) for i in range(runner.task.classes)]
    size = tuple(preprocessing.image_size)
    results = []
    for path in image_paths:
        pixels = read_image(path, 3)
        boxes, scores, classes = _boxes_of(runner, pixels, size)
        kept = scores >= score_threshold
        results.append({"image": path, "pixels": pixels, "detections": [
            {"box": [round(float(v), 2) for v in box], "score": round(float(score), 4),
             "class": int(label), "label": names[int(label)]}
            for box, score, label in zip(boxes[kept], scores[kept], classes[kept])]})
    return results


def draw_boxes(pixels, detections):
    """A copy of uint8 image ``pixels`` with each detection's box outlined in its class's VOC
    colour (class ``c`` takes colour ``c + 1``: 0 is black) and labelled "name score".

    Example:
        >>> box = {"box": [2, 2, 12, 12], "score": 0.9, "class": 0, "label": "a"}
        >>> draw_boxes(np.zeros((16, 16, 3), np.uint8), [box])[2, 6].tolist()
        [128, 0, 0]
    """
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
    draw = ImageDraw.Draw(image)
    palette = voc_palette()
    for found in detections:
        colour = tuple(int(c) for c in palette[(found["class"] + 1) % len(palette)])
        x1, y1, x2, y2 = found["box"]
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour,
                       width=LINE_WIDTH)
        draw.text((x1 + LINE_WIDTH, y1 + LINE_WIDTH), f"{found['label']} {found['score']:.2f}",
                  fill=colour)
    return np.asarray(image)


def write_detection_files(results, output_dir):
    """Write ``STEM_boxes.png`` (the image with its boxes drawn) into ``output_dir`` for each
    of :func:`detect_files`' results (images of the same stem numbered in order).

    Returns:
        list of ``{"image", "drawn", "detections"}``: the JSON record of each image.

    Example:
        >>> write_detection_files(detect_files("runs/boxes", ["a.png"]), "boxes")  # doctest: +SKIP
        [{'image': 'a.png', 'drawn': 'boxes/a_boxes.png', 'detections': [...]}]
    """
    from PIL import Image

    check_writable("output_dir", output_dir)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for result, stem in zip(results, output_stems([r["image"] for r in results])):
        drawn = os.path.join(output_dir, f"{stem}_boxes.png")
        save_png(Image.fromarray(draw_boxes(result["pixels"], result["detections"])), drawn)
        written.append({"image": result["image"], "drawn": drawn,
                        "detections": result["detections"]})
    return written
