"""Model cards for the web page: what each served model is, read from its export.

A card holds what the export records and nothing guessed: the Task and the preprocessing from
``assets.extra/keras_resnet.json`` (:func:`keras_resnet.export.read_export_metadata`), whether
it has the ``grad_cam`` signature and at which stage, the other files exported beside it
(``<export_dir>/<name>/<format>/*.json`` sidecars: quantization, a recorded bfloat16 parity)
and, where the export directory is a training run's ``export/`` folder, the run's test metrics
and parity report from its ``run.json`` (only when that run exported this very version).
A SavedModel without the metadata (not written by keras_resnet) gets a card saying so.

Example:
    >>> model_card(servable, "exports")["rows"][0]  # doctest: +SKIP
    ('Task', 'single-label classifier, 10 classes')
"""

import json
import os

import numpy as np

from keras_resnet.export.grad_cam import SIGNATURE as GRAD_CAM_SIGNATURE
from keras_resnet.export.saved_model import (
    read_export_metadata,
    read_export_preprocessing,
    read_export_task,
)

CLASS_NAMES_SHOWN = 10  # the first few class names on a card
KIND_TITLES = {"classification": "single-label classifier", "multilabel": "multi-label classifier",
               "segmentation": "segmentation model", "detection": "detector"}
CLASSIFIER_KINDS = ("classification", "multilabel")


def _numbers(values, digits=4):
    return "(" + ", ".join(f"{float(v):.{digits}g}" for v in values) + ")"


def _normalisation(preprocessing):
    """How pixels become the model's inputs, in words."""
    mean, std, scale = preprocessing.mean, preprocessing.std, preprocessing.scale
    if preprocessing.channel_order == "bgr" and std is None and scale == 1.0 and mean.ndim == 1:
        return f"Caffe mode: BGR, mean {_numbers(mean)} subtracted"
    steps = ["pixels / 255" if np.isclose(scale, 1 / 255) else f"pixels x {scale:.6g}"]
    if mean.ndim == 3:
        steps.append(f"minus a per-pixel mean image ({'x'.join(map(str, mean.shape))})")
    elif np.any(mean != 0):
        steps.append(f"minus mean {_numbers(mean)}")
    if std is not None:
        steps.append(f"divided by std {_numbers(np.ravel(std))}")
    return ", ".join(steps)


def _preprocessing_rows(preprocessing):
    height, width = preprocessing.image_size
    if preprocessing.resize == "shorter_side":
        resize = (f"shorter side to {preprocessing.resize_size}, centre crop {height}x{width} "
                  f"({preprocessing.interpolation})")
    else:
        resize = f"resized to {height}x{width} ({preprocessing.interpolation})"
    return [("Input", f"{height}x{width}, {preprocessing.channels} channel(s), "
                      f"{preprocessing.channel_order}"),
            ("Resize", resize), ("Normalisation", _normalisation(preprocessing))]


def _class_rows(task, class_names):
    names = ", ".join(class_names[:CLASS_NAMES_SHOWN])
    more = len(class_names) - CLASS_NAMES_SHOWN
    rows = [("Classes", f"{len(class_names)}: {names}"
                        + (f", ... ({more} more)" if more > 0 else ""))]
    if task.multilabel and task.thresholds is not None:
        low, high = min(task.thresholds), max(task.thresholds)
        text = f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g} per class"
        rows.append(("Thresholds", text))
    return rows


def _run_result(export_dir, servable):
    """The ``run.json`` of the training run whose ``export/`` folder is ``export_dir``, when
    that run exported this model and version; else None."""
    export_dir = os.path.abspath(export_dir)
    if os.path.basename(export_dir) != "export":
        return None
    try:
        with open(os.path.join(os.path.dirname(export_dir), "run.json")) as f:
            result = json.load(f)
        saved = result["export"]["saved_model"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(saved, str):
        return None
    exported = os.path.normpath(saved).split(os.sep)[-2:]
    return result if exported == [servable.name, str(servable.version)] else None


def _scalars(mapping):
    return {key: value for key, value in mapping.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _number(row, key):
    value = row.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _parity_row(row):
    """One row of the run's parity report: the file, then its agreement with Keras."""
    measures = [f"{title} {_number(row, key):.4f}" for key, title in (
        ("top1_agreement", "top-1 agreement"), ("pixel_agreement", "pixel agreement"),
        ("box_agreement", "box agreement")) if _number(row, key) is not None]
    if _number(row, "max_abs_diff") is not None:
        measures.append(f"max abs diff {row['max_abs_diff']:.2g}")
    return f"{row.get('file')} ({row.get('runtime')}, {row.get('precision')})", ", ".join(measures)


def _sidecar_rows(export_dir, name):
    """One row per file exported beside the SavedModel (their ``FILE.json`` sidecars)."""
    rows, base = [], os.path.join(export_dir, name)
    folders = sorted(f for f in os.listdir(base)
                     if not f.isdigit() and os.path.isdir(os.path.join(base, f)))
    for folder in folders:
        sidecars = sorted(f for f in os.listdir(os.path.join(base, folder)) if f.endswith(".json"))
        for sidecar in sidecars:
            try:
                with open(os.path.join(base, folder, sidecar)) as f:
                    recorded = json.load(f)
                text = recorded.get("quantization") or "float32"
            except (OSError, ValueError, AttributeError):
                continue
            bfloat16 = recorded.get("bfloat16")
            if isinstance(bfloat16, dict) and _number(bfloat16, "top1_agreement") is not None:
                text += f"; bfloat16 top-1 agreement {bfloat16['top1_agreement']:.4f}"
            rows.append((f"{folder}/{sidecar[:-5]}", text))
    return rows


def _metric_sections(export_dir, servable):
    """``[(heading, rows)]``: the run's test metrics and parity report (when its run.json
    is beside the export), then the files exported beside the SavedModel."""
    sections = []
    result = _run_result(export_dir, servable)
    if result is not None:
        test = result.get("test")
        sections.append(("Test split (the run's run.json)",
                         [(key, f"{value:.4g}") for key, value in
                          _scalars(test if isinstance(test, dict) else {}).items()]))
        parity = result["export"].get("parity")
        rows = parity if isinstance(parity, list) else []
        sections.append(("Parity with the Keras model",
                         [_parity_row(row) for row in rows if isinstance(row, dict)]))
    sections.append(("Files exported beside it", _sidecar_rows(export_dir, servable.name)))
    return [(heading, rows) for heading, rows in sections if rows]


def model_card(servable, export_dir):
    """What the page shows of one served model (the module doc).

    Args:
        servable: a loaded :class:`~keras_resnet.serving.registry.Servable`.
        export_dir: the export directory it was loaded from.

    Returns:
        dict: ``id`` ("NAME/VERSION"), ``name``, ``version``, ``kind`` (a Task kind, or None
        when unknown), ``title``, ``rows`` (a list of (label, text)), ``metrics`` (a list of
        (heading, rows): what was recorded with the export; empty when nothing was),
        ``grad_cam`` (whether the export has the ``grad_cam`` signature) and its ``stage``,
        ``class_names``, ``thresholds`` (a multi-label model's, else None).

    Example:
        >>> model_card(servable, "exports")["kind"]  # doctest: +SKIP
        'classification'
    """
    card = {"id": f"{servable.name}/{servable.version}", "name": servable.name,
            "version": servable.version, "grad_cam": GRAD_CAM_SIGNATURE in servable.signatures,
            "thresholds": None, "class_names": [], "stage": None, "rows": [],
            "metrics": _metric_sections(export_dir, servable)}
    try:
        metadata = read_export_metadata(servable.path)
        task = read_export_task(servable.path)
        preprocessing = read_export_preprocessing(servable.path)
    except (OSError, ValueError, KeyError, TypeError):
        return {**card, "kind": None, "title": f"{servable.name} (no keras_resnet metadata)",
                "rows": [("Metadata", "none: assets.extra/keras_resnet.json is missing or "
                                      "unreadable")]}
    card.update(kind=task.kind, title=f"{servable.name}, version {servable.version}",
                thresholds=list(task.thresholds) if task.multilabel and task.thresholds else None,
                class_names=list(preprocessing.class_names or []))
    card["rows"] = [("Task", f"{KIND_TITLES[task.kind]}, {task.classes} classes")]
    card["rows"] += _preprocessing_rows(preprocessing)
    card["rows"] += _class_rows(task, preprocessing.class_names)
    grad_cam = metadata.get("grad_cam")
    if card["grad_cam"] and isinstance(grad_cam, dict):
        card["stage"] = grad_cam.get("stage")
        card["rows"].append(("Grad-CAM", f"top class, stage {grad_cam.get('stage')} "
                                         f"(layer {grad_cam.get('layer')})"))
    elif task.kind in CLASSIFIER_KINDS:
        card["rows"].append(("Grad-CAM", "none: this export has no grad_cam signature"))
    card["rows"].append(("Precision", "bfloat16 (TensorFlow's oneDNN rewrite)"
                         if servable.precision == "bfloat16" else "float32"))
    return card

