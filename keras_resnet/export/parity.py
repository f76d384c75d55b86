"""Parity reports: an exported file against its Keras model (probability difference, top-1
agreement, size, batch-1 latency), and the report as a text table. A segmentation model's rows
measure its logits and the pixel agreement of the argmax masks instead; a detector's, the
agreement of its boxes (same class, IoU >= 0.99) and the largest difference of their scores.

Example:
    >>> print(format_parity([]))
    file                         max |diff| top-1 agree  size KiB  ms/image  runtime
"""

import os
import time

import numpy as np

from keras_resnet.export.detection import box_agreement
from keras_resnet.export.formats import RUNTIMES
from keras_resnet.export.resolve import task_for
from keras_resnet.export.runtimes import choose_precision, open_runner
from keras_resnet.export.segmentation import SavedModelLogits, pixel_agreement
from keras_resnet.export.writers import read_sidecar


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


def size_bytes(path):
    """Bytes of a file (with the ``.bin`` of an OpenVINO ``.xml``) or of a directory.

    Example:
        >>> with open("model.xml", "w") as xml, open("model.bin", "wb") as weights:
        ...     _ = xml.write("<net/>"), weights.write(bytes(100))
        >>> size_bytes("model.xml")
        106
    """
    if os.path.isfile(path):
        weights = os.path.splitext(path)[0] + ".bin"
        extra = os.path.getsize(weights) if path.endswith(".xml") and os.path.exists(weights) else 0
        return os.path.getsize(path) + extra
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def parity_report(keras_model, path, images, *, latency_runs=20, num_threads=None,
                  precision="float32", expected=None):
    """Compare an exported file with its Keras model on ``images`` (preprocessed float32).

    Args:
        keras_model: the reference ``keras.Model``.
        path: anything :func:`open_runner` opens (``.tflite``, ``.onnx``, ``.xml``,
            SavedModel, ...).
        images: preprocessed float32 images ``(n, h, w, c)``.
        latency_runs: batch-1 calls timed for the mean latency.
        num_threads: runtime threads (see :func:`open_runner`).
        precision: the runner's arithmetic, "float32" (the file as exported), "bfloat16" or
            "auto" (see :func:`choose_precision`).
        expected: ``keras_model``'s outputs on ``images``, when already computed (a report
            of several files against one model runs it once); default: computed here.

    Returns:
        dict: ``file``, ``runtime``, ``quantization``, ``precision`` (what ran),
        ``max_abs_diff`` of probabilities, ``top1_agreement``, ``images``, ``size_bytes``,
        ``latency_ms`` (mean, batch 1). For a segmentation model: ``max_abs_diff`` of the
        logits and ``pixel_agreement`` (the fraction of pixels whose argmax class agrees with
        Keras') in place of ``top1_agreement``. For a detector: ``box_agreement``
        (``export.detection.box_agreement``: 1.0 when every box, class and count agree) and
        ``max_abs_diff`` of the matched boxes' scores.

    Example:
        >>> parity_report(model, "m_int8.tflite", test_images)["top1_agreement"]  # doctest: +SKIP
    """
    images = np.asarray(images, np.float32)
    if expected is None:
        expected = keras_model.predict(images, verbose=0)
    task = task_for(keras_model)
    if task.segmentation and os.path.exists(os.path.join(path, "saved_model.pb")):
        # Its serving signatures take uint8 images: the logits signature is compared.
        runner = SavedModelLogits(path, choose_precision(path, "saved_model", precision))
    else:
        runner = open_runner(path, num_threads=num_threads, precision=precision)
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
        "precision": runner.precision,
        **_agreement(task, got, expected),
        "images": len(images),
        "size_bytes": size_bytes(path),
        "latency_ms": 1000 * latency,
    }


def _agreement(task, got, expected):
    """``max_abs_diff`` and the agreement measure of ``task``'s outputs."""
    if task.detection:
        agreement, difference = box_agreement(got, expected)
        return {"max_abs_diff": difference, "box_agreement": agreement}
    measure = (("pixel_agreement", pixel_agreement(got, expected)) if task.segmentation else
               ("top1_agreement", float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))))
    return {"max_abs_diff": float(np.max(np.abs(got - expected))), measure[0]: measure[1]}


AGREEMENT_TITLES = {"top1_agreement": "top-1 agree", "pixel_agreement": "pixel agree",
                    "box_agreement": "box agree"}


def format_parity(rows):
    """The parity report as a text table (one row per exported file).

    Example:
        >>> print(format_parity(export_run(model, "exports", FORMATS)["parity"]))  # doctest: +SKIP
    """
    agreement = next((key for key in AGREEMENT_TITLES if any(key in row for row in rows)),
                     "top1_agreement")  # a classifier's, a segmentation model's or a detector's
    title = AGREEMENT_TITLES[agreement]
    lines = [f"{'file':28s} {'max |diff|':>10s} {title:>11s} {'size KiB':>9s} "
             f"{'ms/image':>9s}  runtime"]
    for row in rows:
        runtime = row.get("runtime", "")
        if row.get("precision") == "bfloat16":
            runtime += ", bfloat16"
        lines.append(f"{row['file']:28s} {row['max_abs_diff']:10.2e} {row[agreement]:11.2%} "
                     f"{row['size_bytes'] / 1024:9.1f} {row['latency_ms']:9.3f}  {runtime}")
    return "\n".join(lines)
