"""COCO's figures of a detector on box data: its detections on every image of a split (the
evaluation batches' boxes mapped back to each image's own pixels) against the split's boxes,
scored by :func:`keras_resnet.coco_map.coco_map` (pycocotools' COCOeval rules).

Example:
    >>> figures = evaluate_detector("runs/boxes/model.keras", "digit_boxes")  # doctest: +SKIP
    >>> sorted(figures)[:3]  # doctest: +SKIP
    ['detections', 'images', 'map']
"""

import keras
import numpy as np

from keras_resnet import coco_map as coco_map_lib
from keras_resnet import data, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.data.detection import original_boxes
from keras_resnet.errors import InvalidArgument
from keras_resnet.saving import load_model


def predictions(net, test):
    """``(detections, ground_truths)``: one dict per test image, as
    :func:`~keras_resnet.coco_map.coco_map` reads them, boxes in the image's own pixels.

    Example:
        >>> found, truth = predictions(model, test)  # doctest: +SKIP
    """
    found, truth = [], []
    for images, targets in test:
        outputs = {k: np.asarray(v) for k, v in net.predict_on_batch(images).items()}
        targets = {k: np.asarray(v) for k, v in targets.items()}
        boxes = original_boxes(outputs["boxes"], targets["scale"], targets["image_size"])
        true_boxes = original_boxes(targets["boxes"], targets["scale"], targets["image_size"])
        for index, count in enumerate(outputs["num_detections"].astype(int)):
            found.append({"boxes": boxes[index, :count], "scores": outputs["scores"][index, :count],
                          "classes": outputs["classes"][index, :count]})
            real = targets["classes"][index] >= 0
            truth.append({"boxes": true_boxes[index, real],
                          "classes": targets["classes"][index, real]})
    return found, truth


def figures(found, truth, class_names):
    """COCO's figures of ``found`` against ``truth``: the twelve of COCOeval's summary and
    ``per_class_ap`` (class name -> AP@[.5:.95]); None where no ground truth counts.

    Example:
        >>> truth = [{"boxes": [[0, 0, 8, 8]], "classes": [1]}]
        >>> found = [{"boxes": [[0, 0, 8, 8]], "scores": [0.9], "classes": [1]}]
        >>> per_class = figures(found, truth, ["a", "b"])["per_class_ap"]
        >>> per_class["a"], round(per_class["b"], 6)
        (None, 1.0)
    """
    stats = coco_map_lib.coco_map(found, truth, class_count=len(class_names))
    result = {name: None if stats[name] < 0 else float(stats[name])
              for name in coco_map_lib.STAT_NAMES}
    per_class = stats["per_class"]
    result["per_class_ap"] = {
        name: None if per_class.get(index, -1) < 0 else float(per_class[index])
        for index, name in enumerate(class_names)}
    result["images"] = len(truth)
    result["detections"] = int(sum(len(image["scores"]) for image in found))
    return result


def evaluate_detector(model, dataset="digit_boxes", split="test", *, batch_size=16,
                      data_dir=None, download=True):
    """COCO's figures (:func:`figures`) of a detections model (or ``.keras`` file) on a split
    of box data, through the model's own preprocessing and post-processing settings.

    Example:
        >>> evaluate_detector("runs/boxes/model.keras", "digit_boxes")["map_50"]  # doctest: +SKIP
        0.61
    """
    if not isinstance(model, keras.Model):
        model = load_model(model, compile=False)
    task = tasks.task_of(model)
    if task is None or not task.detection:
        raise InvalidArgument(f"`model` {model.name!r} is not a detector.")
    preprocessing = preprocessing_lib.of(model)
    batches, info = data.load(dataset, split, batch_size, training=False, data_dir=data_dir,
                              download=download, preprocessing=preprocessing, task="detection")
    if info.num_classes != task.classes:
        raise InvalidArgument(f"`model` {model.name!r} detects {task.classes} classes; dataset "
                              f"{dataset!r} has {info.num_classes}.")
    found, truth = predictions(model, batches)
    return figures(found, truth, list(info.class_names))


def print_figures(test):
    """Print the test figures of a detection run (``keras-resnet train``'s last lines).

    Example:
        >>> print_figures(result["test"])  # doctest: +SKIP
        test mAP 0.1234, mAP@.50 0.3456, mAP@.75 0.0789; small 0.1234, medium -, large -
    """
    def shown(value):
        return "-" if value is None else f"{value:.4f}"

    print(f"test mAP {shown(test['map'])}, mAP@.50 {shown(test['map_50'])}, mAP@.75 "
          f"{shown(test['map_75'])}; small {shown(test['map_small'])}, medium "
          f"{shown(test['map_medium'])}, large {shown(test['map_large'])}")
    print("test AP per class: " + ", ".join(
        f"{name} {'-' if ap is None else f'{ap:.3f}'}" for name, ap in test["per_class_ap"].items()))
