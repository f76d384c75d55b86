"""The segmentation metrics (keras_resnet.metrics) against keras.metrics.MeanIoU, sklearn and,
with ``$KERAS_RESNET_TORCH_PYTHON`` (torch with torchmetrics), torchmetrics'
``MulticlassJaccardIndex(ignore_index=255)``; then compiled into a tiny model and fitted on
TensorFlow and, in a fresh interpreter, on JAX.
"""

import json
import subprocess

import keras
import numpy as np
import pytest
import sklearn.metrics

from harness import torch_python
from keras_resnet.errors import InvalidArgument
from keras_resnet.metrics import (
    MeanIoU,
    PerClassIoU,
    PixelAccuracy,
    confusion_matrix,
    first_argmax,
    iou_from_confusion,
)

IGNORE = 255
CLASSES = 5


def _batch(seed, shape=(2, 12, 12), classes=CLASSES, ignored=0.2, absent=()):
    """Logits (B, H, W, C) and masks with ``ignored`` of the pixels at 255; the ``absent``
    classes are neither labelled nor predicted (their logits are far below the others)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (*shape, classes)).astype(np.float32)
    masks = rng.integers(0, classes, shape)
    for class_id in absent:
        logits[..., class_id] -= 100.0
        masks[masks == class_id] = (class_id + 1) % classes
    masks[rng.random(shape) < ignored] = IGNORE
    return logits, masks


def _sklearn_figures(logits, masks, classes=CLASSES):
    """sklearn's confusion matrix and per-class Jaccard over the pixels not ignored."""
    keep = masks != IGNORE
    labels, predictions = masks[keep], np.argmax(logits, -1)[keep]
    matrix = sklearn.metrics.confusion_matrix(labels, predictions, labels=range(classes))
    iou = sklearn.metrics.jaccard_score(labels, predictions, labels=range(classes),
                                        average=None, zero_division=0)
    # A class neither labelled nor predicted: NaN (sklearn's zero_division takes 0 or 1).
    iou[matrix.sum(0) + matrix.sum(1) == 0] = np.nan
    return matrix, iou


def _update(metric, batches):
    for logits, masks in batches:
        metric.update_state(masks, logits)
    return np.asarray(metric.result())


@pytest.mark.parametrize("absent", [(), (3,)], ids=["all_classes", "class_3_absent"])
def test_figures_equal_sklearn_with_ignored_pixels_removed(absent):
    batches = [_batch(seed, absent=absent) for seed in range(3)]
    logits = np.concatenate([b[0] for b in batches])
    masks = np.concatenate([b[1] for b in batches])
    matrix, iou = _sklearn_figures(logits, masks)
    np.testing.assert_array_equal(confusion_matrix(masks, logits, CLASSES), matrix)
    np.testing.assert_array_equal(confusion_matrix(masks, np.argmax(logits, -1), CLASSES), matrix)
    report = iou_from_confusion(matrix)
    np.testing.assert_allclose(report["per_class_iou"], iou, rtol=1e-12)
    assert report["miou"] == pytest.approx(np.nanmean(iou), rel=1e-12)
    assert report["pixel_accuracy"] == pytest.approx(
        sklearn.metrics.accuracy_score(masks[masks != IGNORE], np.argmax(logits, -1)[masks != IGNORE]))
    assert report["mean_class_accuracy"] == pytest.approx(
        sklearn.metrics.balanced_accuracy_score(masks[masks != IGNORE],
                                                np.argmax(logits, -1)[masks != IGNORE]))
    # The Keras metrics, over three batches, count the same.
    assert float(_update(MeanIoU(CLASSES), batches)) == pytest.approx(np.nanmean(iou), rel=1e-6)
    per_class = _update(PerClassIoU(CLASSES), batches)
    np.testing.assert_allclose(per_class, iou, rtol=1e-6)
    assert np.isnan(per_class).tolist() == [c in absent for c in range(CLASSES)]
    assert float(_update(PixelAccuracy(CLASSES), batches)) == pytest.approx(
        report["pixel_accuracy"], rel=1e-6)


@pytest.mark.parametrize("absent", [(), (0, 4)], ids=["all_classes", "classes_0_4_absent"])
def test_mean_iou_equals_keras_mean_iou_without_ignore_label(absent):
    batches = [_batch(seed, ignored=0.0, absent=absent) for seed in (10, 11)]
    reference = keras.metrics.MeanIoU(CLASSES, sparse_y_pred=False)
    for logits, masks in batches:
        reference.update_state(masks, logits)
    ours = MeanIoU(CLASSES, ignore_label=None)
    assert float(_update(ours, batches)) == pytest.approx(float(reference.result()), rel=1e-6)
    np.testing.assert_array_equal(np.asarray(ours.confusion), np.asarray(reference.total_cm))


def test_ties_go_to_the_first_index_as_numpy_and_torch():
    scores = np.array([[3.0, 3.0, 1.0], [0.0, 2.0, 2.0], [5.0, 5.0, 5.0], [1.0, 0.0, 1.0]])
    assert np.asarray(first_argmax(scores)).tolist() == np.argmax(scores, -1).tolist() == [0, 1,
                                                                                          0, 0]
    half = keras.ops.cast(scores, "float16")
    assert np.asarray(first_argmax(half)).tolist() == [0, 1, 0, 0]
    tied = np.zeros((1, 4, 4, 3), np.float32)  # every pixel tied: class 0 predicted
    masks = np.array([[[0, 1, 2, 0]] * 4])
    metric = PerClassIoU(3)
    metric.update_state(masks, tied)
    np.testing.assert_allclose(np.asarray(metric.result()), [0.5, 0.0, 0.0])


def test_all_ignored_batches_and_label_maps():
    logits, masks = _batch(20)
    metrics = [MeanIoU(CLASSES), PerClassIoU(CLASSES), PixelAccuracy(CLASSES)]
    for metric in metrics:
        metric.update_state(np.full_like(masks, IGNORE), logits)
        assert np.all(np.asarray(metric.confusion) == 0)
    assert float(metrics[0].result()) == 0.0 and float(metrics[2].result()) == 0.0
    assert np.all(np.isnan(np.asarray(metrics[1].result())))  # no class seen yet
    for metric in metrics:
        metric.update_state(masks, logits)
    matrix = confusion_matrix(masks, logits, CLASSES)
    np.testing.assert_array_equal(np.asarray(metrics[0].confusion), matrix)
    assert np.isnan(iou_from_confusion(np.zeros((3, 3)))["miou"])
    # Label maps, (B, H, W) or (B, H, W, 1), and "auto" which tells them from scores.
    predictions = np.argmax(logits, -1)
    for from_logits, inputs in ((False, predictions), (False, predictions[..., None]),
                                ("auto", predictions), ("auto", logits)):
        metric = MeanIoU(CLASSES, from_logits=from_logits)
        metric.update_state(masks[..., None], inputs)
        np.testing.assert_array_equal(np.asarray(metric.confusion), matrix)
    metrics[0].reset_state()
    assert np.all(np.asarray(metrics[0].confusion) == 0)


def test_configs_and_unsupported_inputs():
    for metric in (MeanIoU(7, ignore_label=0, from_logits="auto", name="m"), PerClassIoU(3),
                   PixelAccuracy(4, ignore_label=None, from_logits=False)):
        rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(rebuilt) is type(metric) and rebuilt.get_config() == metric.get_config()
    logits, masks = _batch(21)
    with pytest.raises(InvalidArgument, match="Predictions have 5 channels; the metric counts "
                                              "classes=4"):
        MeanIoU(4).update_state(masks, logits)
    with pytest.raises(InvalidArgument, match="from_logits=True predictions must be scores"):
        MeanIoU(CLASSES).update_state(masks, np.argmax(logits, -1))
    with pytest.raises(InvalidArgument, match="`from_logits` must be one of True, False, 'auto'"):
        MeanIoU(CLASSES, from_logits="yes")
    with pytest.raises(InvalidArgument, match="no `sample_weight`"):
        MeanIoU(CLASSES).update_state(masks, logits, sample_weight=np.ones(2))
    with pytest.raises(InvalidArgument, match="`labels` must be class ids in \\[0, 5\\)"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), CLASSES)


# ---------------------------------------------------------------------------------------------
# torchmetrics

TORCHMETRICS_SCRIPT = """
import json, sys
import numpy as np, torch
from torchmetrics.classification import MulticlassJaccardIndex

data = np.load(sys.argv[1])
out = {}
for name in ("random", "absent", "tied"):
    logits = torch.from_numpy(data[name + "_logits"]).permute(0, 3, 1, 2)
    masks = torch.from_numpy(data[name + "_masks"]).long()
    for average in (None, "macro"):
        metric = MulticlassJaccardIndex(num_classes=logits.shape[1], ignore_index=255,
                                        average=average)
        out[f"{name}_{average}"] = metric(logits, masks).tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def torchmetrics_reference(tmp_path_factory):
    python = torch_python()
    arrays = {}
    for name, (logits, masks) in {"random": _batch(30, shape=(2, 16, 16)),
                                  "absent": _batch(31, shape=(2, 16, 16), absent=(1,)),
                                  "tied": _batch(32, shape=(2, 16, 16))}.items():
        if name == "tied":
            logits = np.round(logits)  # many ties between the top classes
        arrays[name + "_logits"], arrays[name + "_masks"] = logits, masks
    path = tmp_path_factory.mktemp("torchmetrics") / "inputs.npz"
    np.savez(path, **arrays)
    completed = subprocess.run([python, "-c", TORCHMETRICS_SCRIPT, str(path)],
                               capture_output=True, text=True, timeout=300)
    if "No module named 'torchmetrics'" in completed.stderr:
        pytest.skip("torchmetrics is not installed beside torch")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return arrays, json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["random", "absent", "tied"])
def test_equal_to_torchmetrics_jaccard_index(torchmetrics_reference, name):
    arrays, reference = torchmetrics_reference
    logits, masks = arrays[name + "_logits"], arrays[name + "_masks"]
    if name == "tied":
        assert np.any(np.sum(logits == logits.max(-1, keepdims=True), -1) > 1)
    per_class = PerClassIoU(CLASSES)
    per_class.update_state(masks, logits)
    # torchmetrics gives 0 for a class absent everywhere; we give NaN.
    np.testing.assert_allclose(np.nan_to_num(np.asarray(per_class.result())),
                               reference[f"{name}_None"], rtol=1e-6)
    mean = MeanIoU(CLASSES)
    mean.update_state(masks, logits)
    assert float(mean.result()) == pytest.approx(reference[f"{name}_macro"], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# compile, fit and evaluate

FIT_SCRIPT = """
import json, sys
import keras, numpy as np
from keras_resnet.losses import DiceLoss, FocalLoss, SparseCrossEntropy
from keras_resnet.metrics import MeanIoU, PixelAccuracy, confusion_matrix, iou_from_confusion


def arrays():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (8, 16, 16, 3)).astype(np.float32)
    masks = (images[..., 0] > 0).astype(np.int32) + (images[..., 1] > 1).astype(np.int32)
    masks[:, :3] = 255
    return images, masks


def fixed_losses(images, masks):
    # The losses of the images' channels taken as logits (the same on every backend).
    losses = {"cross_entropy": SparseCrossEntropy(), "dice": DiceLoss("multiclass"),
              "focal": FocalLoss("multiclass", alpha=0.25)}
    return {name: float(loss(masks, images)) for name, loss in losses.items()}


def batches(images, masks):
    while True:
        yield images[:4], masks[:4]
        yield images[4:], masks[4:]


def fit_and_evaluate(dataset, images, masks, folder):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(3, 1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SparseCrossEntropy(),
                  metrics=[MeanIoU(3), PixelAccuracy(3)])
    history = model.fit(dataset, epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)
    scores = model.evaluate(images, masks, batch_size=len(images), verbose=0, return_dict=True)
    model.save(folder + "/model.keras")
    loaded = keras.saving.load_model(folder + "/model.keras")
    reloaded = loaded.evaluate(images, masks, batch_size=len(images), verbose=0,
                               return_dict=True)
    logits = np.asarray(model.predict(images, verbose=0), np.float64)
    report = iou_from_confusion(confusion_matrix(masks, logits, 3))
    valid = masks != 255
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, np.where(valid, masks, 0)[..., None], -1)[..., 0]
    return {"backend": keras.backend.backend(), "history": history.history["loss"],
            "evaluated": {k: float(v) for k, v in scores.items()},
            "reloaded": {k: float(v) for k, v in reloaded.items()},
            "loaded_loss": type(loaded.loss).__name__,
            "numpy": {"loss": float(-(picked * valid).sum() / valid.sum()),
                      "miou": report["miou"], "pixel_accuracy": report["pixel_accuracy"]}}


if __name__ == "__main__":
    images, masks = arrays()
    with open(sys.argv[1], "w") as file:
        run = fit_and_evaluate(batches(images, masks), images[:4], masks[:4], sys.argv[2])
        run["fixed_losses"] = fixed_losses(images, masks)
        json.dump(run, file)
"""


def _check_fit(run):
    assert len(run["history"]) == 1 and np.isfinite(run["history"][0])
    evaluated, expected = run["evaluated"], run["numpy"]
    assert evaluated["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert evaluated["miou"] == pytest.approx(expected["miou"], rel=1e-6)
    assert evaluated["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], rel=1e-6)
    assert 0 < expected["miou"] < 1
    # A .keras file keeps the compiled loss and metrics (registered classes).
    assert run["loaded_loss"] == "SparseCrossEntropy"
    assert run["reloaded"] == pytest.approx(evaluated, rel=1e-6)


def test_fit_and_evaluate_on_tensorflow(tmp_path):
    import runpy

    import tensorflow as tf

    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    names = runpy.run_path(str(script), run_name="fit")
    images, masks = names["arrays"]()
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4).repeat()
    run = names["fit_and_evaluate"](dataset, images[:4], masks[:4], str(tmp_path))
    assert run["backend"] == "tensorflow"
    _check_fit(run)


@pytest.mark.slow  # a second interpreter on JAX
def test_fit_and_evaluate_on_jax_without_tensorflow(tmp_path):
    from test_backends import JAX_HERE, run_worker

    if not JAX_HERE:
        pytest.skip("jax is not installed in this venv")
    script, out = tmp_path / "fit.py", tmp_path / "fit.json"
    script.write_text(FIT_SCRIPT)
    worker, _ = run_worker("script", str(script), str(out), str(tmp_path), backend="jax")
    assert worker["tensorflow_imported"] is False
    run = json.loads(out.read_text())
    assert run["backend"] == "jax"
    _check_fit(run)
    import runpy

    names = runpy.run_path(str(script), run_name="fit")  # the same losses here, on TensorFlow
    assert run["fixed_losses"] == pytest.approx(names["fixed_losses"](*names["arrays"]()),
                                                rel=1e-5)
