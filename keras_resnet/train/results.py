"""The end of a run: evaluate, save, plot, export and write ``run.json``.

Example:
    >>> history_rows("runs/none/history.csv")
    []
"""

import os
import shutil

from keras_resnet import tasks
from keras_resnet.curves import history_rows, plot_history
from keras_resnet.evaluation import multilabel_test, with_thresholds
from keras_resnet.saving import load_model, save_model, write_json
from keras_resnet.train import detection, segmentation
from keras_resnet.train.build import at_input_size


def _scored(net, splits):
    """``(model to save, the test figures)``: the test split measured on ``net``."""
    task = tasks.task_of(net)
    if task.detection:  # COCO's mAP of the detections model on every test image
        net, figures = detection.score(net, splits.test, splits.info)
        return net, {"test": figures}
    if task.segmentation:  # every test pixel; the model saved without its auxiliary head
        net, figures = segmentation.score(net, splits.test, task.classes, splits.info.class_names)
        return net, {"test": figures}
    test = net.evaluate(splits.test, return_dict=True, verbose=0)
    net = at_input_size(net, splits.info)
    if task.multilabel:
        net, scored = multilabel_test(net, splits.validation, splits.test, test["loss"])
        scored["thresholds_split"] = splits.validation_split
        return net, scored
    return net, {"test": {"top1": test["top1"], "top5": test["top5"], "loss": test["loss"]}}


def finish(net, run_dir, splits, result, export, data_dir):
    """Evaluate, save, plot, export, write run.json, then drop the backup: in that order, so a
    run killed at any point redoes only what is missing."""
    task = tasks.task_of(net)
    # as history.csv names it; a detection run's loss (no mAP while it trains)
    metric = "loss" if task.detection else segmentation.monitored(net, task.metric)
    net, scored = _scored(net, splits)
    best_path = os.path.join(run_dir, "best.keras")
    if os.path.exists(best_path):
        # read and rewritten once: its input size, its thresholds, no auxiliary head
        best = load_model(best_path, compile=False)
        if task.detection:  # saved while training: its packed outputs
            fixed = detection.detections_model(best, splits.info, like=net)
        elif task.segmentation:
            fixed = segmentation.without_aux(best)
        else:
            fixed = at_input_size(best, splits.info)
            fixed = with_thresholds(fixed, splits.validation) if splits.info.multilabel else fixed
        if fixed is not best:
            save_model(fixed, best_path)
    save_model(net, os.path.join(run_dir, "model.keras"))
    plot_history(os.path.join(run_dir, "history.csv"),
                 os.path.join(run_dir, "training_curves.png"), metric=metric)
    result.update(scored, history=history_rows(os.path.join(run_dir, "history.csv")))
    if export:
        from keras_resnet import export as export_lib

        result["export"] = export_lib.export_run(
            os.path.join(run_dir, "model.keras"), os.path.join(run_dir, "export"),
            dataset=splits.info.name, data_dir=data_dir, version=1,
        )
    write_json(os.path.join(run_dir, "run.json"), result)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    return result
