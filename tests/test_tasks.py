"""The Task object: what a model predicts, carried inside it, and what follows from it."""

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import tasks
from keras_resnet.errors import InvalidArgument, UserError
from keras_resnet.recipes import get_recipe
from keras_resnet.tasks import Task, task_of

LEGACY = "tests/fixtures/legacy"


def test_a_task_decides_labels_loss_metrics_and_monitor():
    paper, modern, rsb = get_recipe("cifar"), get_recipe("torchvision_v2"), get_recipe("rsb_a1")
    single = Task("classification", 10)
    assert [single.label_format(r) for r in (paper, modern)] == ["sparse", "one_hot"]
    assert isinstance(single.loss(paper), keras.losses.SparseCategoricalCrossentropy)
    loss = single.loss(modern)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["label_smoothing"] == pytest.approx(modern.label_smoothing)
    assert isinstance(Task("classification", 10, "sigmoid").loss(rsb), keras.losses.BinaryCrossentropy)
    assert [m.name for m in single.metrics(paper)] == ["top1", "top5"]
    multi = Task("multilabel", 4, "sigmoid")
    assert multi.label_format(modern) == "multi_hot" and multi.monitor == "val_pr_auc"
    assert isinstance(multi.loss(paper), keras.losses.BinaryCrossentropy)
    assert [m.name for m in multi.metrics(paper)] == ["pr_auc", "f1"]
    assert single.monitor == "val_top1"


@pytest.mark.parametrize("bad, message", [
    (dict(kind="keypoints"), "`kind`"),
    (dict(kind="detection", classes=3), "'sigmoid'"),
    (dict(kind="segmentation", classes=3), "'linear'"),
    (dict(kind="classification", classes=0), "`classes`"),
    (dict(kind="classification", activation="relu"), "`activation`"),
    (dict(kind="multilabel", classes=2, activation="softmax"), "'sigmoid'"),
    (dict(kind="multilabel", classes=2, activation="sigmoid", thresholds=(0.5,)), "`thresholds`"),
    (dict(kind="multilabel", classes=1, activation="sigmoid", thresholds=(float("nan"),)), "`thresholds`"),
    (dict(kind="classification", classes=2, thresholds=(0.5, 0.5)), "multi-label"),
])
def test_a_bad_task_is_one_line_naming_the_field(bad, message):
    with pytest.raises(UserError, match=message) as error:
        Task(**bad)
    assert "\n" not in str(error.value)


def test_a_recipe_that_does_not_fit_the_head_is_refused():
    with pytest.raises(InvalidArgument, match="classifier_activation='sigmoid'"):
        Task("classification", 10).check_recipe(get_recipe("rsb_a1"))
    with pytest.raises(InvalidArgument, match="label_smoothing=0"):
        Task("multilabel", 3, "sigmoid").check_recipe(get_recipe("torchvision_v2"))
    Task("classification", 10).check_recipe(get_recipe("torchvision_v2"))


@pytest.mark.slow  # 2 s or more of its own
def test_the_task_travels_in_a_keras_file_and_changes_no_output(tmp_path):
    model = keras_resnet.ResNet20(classes=3, classifier_activation="sigmoid")
    task = Task("multilabel", 3, "sigmoid", (0.2, 0.4, 0.6))
    carrying = tasks.attach(model, task)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(carrying.predict(images, verbose=0), model.predict(images, verbose=0))
    assert carrying.layers[-1].name == "predictions"  # the head stays last
    carrying.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert task_of(loaded) == task
    retuned = tasks.attach(loaded, task.with_thresholds([0.1, 0.2, 0.3]))
    assert task_of(retuned).thresholds == (0.1, 0.2, 0.3)
    assert len(retuned.layers) == len(loaded.layers)  # replaced, not added


def test_old_files_get_the_task_they_meant():
    multilabel = keras_resnet.load_model(f"{LEGACY}/multilabel.keras", compile=False)
    assert task_of(multilabel) == Task("multilabel", 3, "sigmoid", (0.3, 0.5, 0.7))
    classifier = keras_resnet.load_model(f"{LEGACY}/classifier.keras", compile=False)
    assert task_of(classifier) == Task("classification", 4, "softmax")
    assert tasks.from_export({"task": "single_label"}, keras_resnet.preprocessing.of(classifier)) \
        == Task("classification", 4)


def test_a_backbone_has_no_task_and_a_task_must_fit_the_head():
    assert task_of(keras_resnet.ResNet20(include_top=False)) is None
    with pytest.raises(InvalidArgument, match="3 outputs"):
        tasks.attach(keras_resnet.ResNet20(classes=3), Task("classification", 4))


def test_a_task_config_round_trips_and_refuses_unknown_fields():
    task = Task("multilabel", 2, "sigmoid", (0.25, 0.75))
    assert Task.from_config(task.to_config()) == task
    with pytest.raises(InvalidArgument, match="bogus"):
        Task.from_config({"kind": "classification", "classes": 2, "bogus": 1})
    model = keras_resnet.ResNet20(classes=5)
    assert tasks.for_model(model, "single_label") == Task("classification", 5)
    with pytest.raises(InvalidArgument, match="`task` must be one of"):
        tasks.for_model(model, "regression")


def test_a_segmentation_task_trains_per_pixel_and_is_ranked_by_miou():
    task = Task("segmentation", 21, "linear")
    assert (task.metric, task.monitor, task.label_format()) == ("miou", "val_miou", "mask")
    loss = task.loss()
    assert loss.ignore_label == 255 and loss.from_logits
    assert [m.name for m in task.metrics()] == ["miou", "pixel_accuracy"]
    assert Task.from_config(task.to_config()) == task


@pytest.mark.slow  # 2 s or more of its own
def test_a_model_given_a_task_in_memory_reads_its_stages():
    # attach makes new layers with the weights copied: Grad-CAM and the feature models read
    # the new model's own graph without a save and load first
    model = keras_resnet.ResNet20(classes=10, classifier_activation="sigmoid")
    tagged = tasks.attach(model, tasks.Task("multilabel", 10, "sigmoid", (0.4,) * 10))
    retagged = tasks.attach(tagged, tasks.Task("multilabel", 10, "sigmoid", (0.6,) * 10))
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for made in (tagged, retagged):
        np.testing.assert_allclose(made.predict(images, verbose=0),
                                   model.predict(images, verbose=0), rtol=1e-6)
        np.testing.assert_allclose(keras_resnet.grad_cam(made, images, class_index=3).heatmaps,
                                   keras_resnet.grad_cam(model, images, class_index=3).heatmaps,
                                   atol=1e-5)
        assert keras_resnet.features.embedding_model(made).output_shape == (None, 64)
    assert tasks.task_of(retagged).thresholds == (0.6,) * 10
