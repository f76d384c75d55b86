"""Segmentation masks of image files from any export of a segmentation model, and the files
``keras-resnet predict`` writes for them: a palette PNG of class ids (Pascal VOC's colours)
and an overlay of the image with the coloured mask, each at the image's own size.

A SavedModel answers through its ``serving_default`` signature; a ``.keras`` file, a run
directory and ``.tflite``, ``.onnx`` and OpenVINO files get the same geometry and argmax in
this process (``keras_resnet.export.segmentation``).

Example:
    >>> results = segment_files("exports/fcn_resnet18/1", ["scene.png"])  # doctest: +SKIP
    >>> write_mask_files(results, "masks")[0]["mask"]  # doctest: +SKIP
    'masks/scene_mask.png'
"""

import json
import os
import zipfile

import numpy as np
import tensorflow as tf

from keras_resnet.errors import InvalidArgument
from keras_resnet.export.bfloat16 import choose_precision, run_in
from keras_resnet.export.formats import check_writable
from keras_resnet.export.runtimes import KerasRunner, open_runner, read_image
from keras_resnet.export.saved_model import read_export_preprocessing, read_export_task
from keras_resnet.export.segmentation import argmax_mask, class_shares, logits_at, model_input
from keras_resnet.export.writers import read_sidecar
from keras_resnet.saving import atomic_path

OVERLAY_ALPHA = 0.5  # the mask colour's weight in the overlay


def voc_palette(count=256):
    """Pascal VOC's colour map: class ``i``'s RGB from its bits, spread over the high bits
    of the three channels (class 0 black, 1 dark red, 2 dark green, ...).

    Example:
        >>> voc_palette()[:3].tolist()
        [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    """
    palette = np.zeros((count, 3), np.uint8)
    for index in range(count):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (red, green, blue)
    return palette


def keras_task(path):
    """The Task kind a ``.keras`` file's config names (its ``TaskLayer``), without loading it.

    Example:
        >>> keras_task("runs/scenes/model.keras")  # doctest: +SKIP
        'segmentation'
    """
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "TaskLayer":
                return item.get("config", {}).get("kind")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def is_segmentation(model_path):
    """Whether ``model_path`` (anything ``open_runner`` opens) holds a segmentation model, read
    from its metadata, sidecar or ``.keras`` config (nothing is loaded); False for anything
    unreadable (the loader then says what is wrong).

    Example:
        >>> is_segmentation("exports/fcn_resnet18/1")  # doctest: +SKIP
        True
    """
    path = os.fspath(model_path)
    try:
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return read_export_task(path).segmentation
        if os.path.isfile(path + ".json"):
            task = read_sidecar(path)["task"]
            return task is not None and task.segmentation
        keras_file = os.path.join(path, "model.keras") if os.path.isdir(path) else path
        return keras_file.endswith(".keras") and keras_task(keras_file) == "segmentation"
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return False


def _fixed_size(runner):
    """The (height, width) a runner's model takes, or None when it takes any size."""
    if isinstance(runner, KerasRunner):
        dims = runner.model.input_shape[1:3]
    elif hasattr(runner, "interpreter"):  # LiteRT: -1 marks a free axis
        dims = [d if d > 0 else None for d in runner.input["shape_signature"][1:3]]
    elif hasattr(runner, "session"):  # ONNX Runtime: a free axis has a name or None
        dims = runner.session.get_inputs()[0].shape[1:3]
    else:  # OpenVINO
        shape = runner.model.input(0).get_partial_shape()
        dims = [shape[i].get_length() if shape[i].is_static else None for i in (1, 2)]
    dims = [d if isinstance(d, (int, np.integer)) else None for d in dims]
    return None if None in dims else (int(dims[0]), int(dims[1]))


class MaskRunner:
    """Masks ``(h, w)`` uint8 of uint8 images from a segmentation export or model.

    Example:
        >>> MaskRunner("exports/fcn_resnet18/1")(image).shape  # doctest: +SKIP
        (50, 70)
    """

    def __init__(self, model_path, precision="auto"):
        path = os.fspath(model_path)
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            self.precision = choose_precision(path, "saved_model", precision)
            self.signature = tf.saved_model.load(path).signatures["serving_default"]
            self.preprocessing = read_export_preprocessing(path)
            self.task = read_export_task(path)
        else:
            self.signature = None
            self.runner = open_runner(path, precision=precision)
            self.precision = self.runner.precision
            self.preprocessing, self.task = self.runner.preprocessing, self.runner.task
            self.size = _fixed_size(self.runner)
        if self.task is None or not self.task.segmentation:
            raise InvalidArgument(f"`model` {path!r} is not a segmentation model.")

    def __call__(self, image):
        images = tf.constant(image[None])
        if self.signature is not None:
            return run_in(self.precision, self.signature, images=images)["mask"].numpy()[0]
        inputs, region = model_input(images, self.size, self.preprocessing)
        logits = self.runner(inputs.numpy())
        return argmax_mask(logits_at(tf.constant(logits), region, tf.shape(images)[1:3]))[0]


def segment_files(model_path, image_paths, precision="auto"):
    """Masks of image files from a segmentation export or model, each at its image's size.

    Args:
        model_path: a SavedModel directory, a ``.tflite``, ``.onnx`` or OpenVINO ``.xml``
            file, a ``.keras`` file or a run directory, of a segmentation model.
        image_paths: JPEG/PNG/GIF/BMP files.
        precision: "auto", "float32" or "bfloat16" (``keras_resnet.export.choose_precision``).

    Returns:
        list of ``{"image": path, "pixels": uint8 (h, w, 3), "mask": uint8 (h, w),
        "class_names": [...], "class_shares": {name: share}}``.

    Example:
        >>> segment_files("exports/fcn_resnet18/1", ["scene.png"])[0]["mask"].shape  # doctest: +SKIP
        (64, 64)
    """
    for path in image_paths:  # before the model loads: a missing image fails fast
        if not os.path.isfile(path):
            read_image(path)
    runner = MaskRunner(model_path, precision)
    class_names = runner.preprocessing.class_names or [
        str(i) for i in range(runner.task.classes)]
    channels = 4 if runner.preprocessing.channels == 4 else 3
    results = []
    for path in image_paths:
        pixels = read_image(path, channels)
        mask = runner(pixels)
        results.append({"image": path, "pixels": pixels[..., :3], "mask": mask,
                        "class_names": class_names, "class_shares": class_shares(mask, class_names)})
    return results


def overlay(pixels, mask, class_names, alpha=OVERLAY_ALPHA):
    """``pixels`` (uint8 RGB) blended with the mask's VOC colours (weight ``alpha``), except
    where the class is "background".

    Example:
        >>> overlay(np.full((1, 2, 3), 200, np.uint8), np.array([[0, 1]]), ["background", "a"]).tolist()
        [[[200, 200, 200], [164, 100, 100]]]
    """
    colours = voc_palette()[mask].astype(np.float32)
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colours
    keep = (mask == class_names.index("background")) if "background" in class_names else (
        np.zeros(mask.shape, bool))
    blended[keep] = pixels[keep]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def save_png(image, path):
    """Write PIL image ``image`` to ``path`` as a PNG, whole or not at all.

    Example:
        >>> save_png(Image.new("RGB", (4, 4)), "black.png")  # doctest: +SKIP
    """
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def output_stems(image_paths):
    """One output name per image: its file name's stem, numbered where two repeat.

    Example:
        >>> output_stems(["a/x.png", "b/x.jpg", "y.png"])
        ['x', 'x_2', 'y']
    """
    stems, seen = [], {}
    for path in image_paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def write_mask_files(results, output_dir):
    """Write each result's mask (``NAME_mask.png``: palette PNG, pixel values = class ids,
    VOC's colours) and overlay (``NAME_overlay.png``) into ``output_dir``.

    Args:
        results: :func:`segment_files`' list.
        output_dir: a folder (made if missing).

    Returns:
        list of ``{"image", "mask", "overlay", "size": [h, w], "class_shares"}``, JSON-ready.

    Example:
        >>> write_mask_files(segment_files(model, ["scene.png"]), "masks")  # doctest: +SKIP
    """
    from PIL import Image

    check_writable("output_dir", output_dir)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for result, stem in zip(results, output_stems([r["image"] for r in results])):
        mask_path = os.path.join(output_dir, f"{stem}_mask.png")
        overlay_path = os.path.join(output_dir, f"{stem}_overlay.png")
        mask = Image.fromarray(result["mask"])  # mode L; the palette makes it P, ids kept
        mask.putpalette(voc_palette().ravel().tolist())
        save_png(mask, mask_path)
        save_png(Image.fromarray(overlay(result["pixels"], result["mask"],
                                          result["class_names"]), "RGB"), overlay_path)
        written.append({"image": result["image"], "mask": mask_path, "overlay": overlay_path,
                        "size": list(result["mask"].shape), "class_shares": result["class_shares"]})
    return written
