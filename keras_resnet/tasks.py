"""What a model predicts: the :class:`Task` it carries, and the one place that decides what
follows from it.

A Task says what the model's outputs are: its ``kind`` ("classification": one class per image;
"multilabel": any number of labels per image, a sigmoid per class), how many ``classes``, the
output ``activation`` and, for a multi-label model, one decision ``threshold`` per class (a label
is predicted when its score is at least its threshold). The names of the classes stay with the
model's ``ImagePreprocessing``, which the data that names them produces.

From the Task alone follow the label format a data pipeline makes
(:meth:`Task.label_format`), the loss and metrics training compiles (:meth:`Task.loss`,
:meth:`Task.metrics`), the validation metric the schedules and the best checkpoint watch
(:attr:`Task.monitor`), what ``evaluate`` reports, and what exports, ``predict`` and ``serve``
return (its ``thresholds``). Segmentation and detection join ``KINDS`` with their heads.

The Task travels inside the model, like the preprocessing: a :class:`TaskLayer` (an identity,
right after the ``ImagePreprocessing`` layer, so the head stays the model's last layer as in
keras.applications) holds it in its config, so Keras' own saving keeps it in ``.keras`` files,
and exports copy it into their metadata. :func:`task_of` reads it; for a model saved before
Tasks existed it derives the same Task from what that model carried (thresholds in its
preprocessing meant multi-label; otherwise its head's activation).

Example:
    >>> task = task_of(keras_resnet.ResNet20())
    >>> task.kind, task.classes, task.monitor
    ('classification', 10, 'val_top1')
"""

import dataclasses

import keras
import numpy as np

from keras_resnet import detection_losses
from keras_resnet import losses as losses_lib
from keras_resnet import metrics as metrics_lib
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument, InvalidType, check_choice, check_positive_int

KINDS = ("classification", "multilabel", "segmentation", "detection")
ACTIVATIONS = ("softmax", "sigmoid", "linear")
LABEL_FORMATS = ("sparse", "one_hot", "multi_hot", "mask", "boxes")
LAYER_NAME = "task"
DEFAULT_THRESHOLD = 0.5
# The names ``--task`` and ``train(task=...)`` take, and the kinds they mean.
TASK_NAMES = {"single_label": "classification", "classification": "classification",
              "multilabel": "multilabel", "segmentation": "segmentation",
              "detection": "detection"}


def _checked_thresholds(thresholds, classes):
    values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    # Finite, not bounded: a class best predicted always gets one below every score.
    if values.shape != (classes,) or not np.all(np.isfinite(values)):
        raise InvalidArgument(
            f"`thresholds` must be {classes} finite numbers, one per class; got {thresholds!r}."
        )
    return tuple(float(value) for value in values)


@dataclasses.dataclass(frozen=True)
class Task:
    """What a model predicts.

    Args:
        kind: "classification" (softmax over classes, or a sigmoid per class under a binary
            cross-entropy recipe), "multilabel" (a sigmoid per class, thresholds) or
            "segmentation" (a class per pixel: the head's logits at the input size) or
            "detection" (boxes, each with a class and a score: a sigmoid per class).
        classes: the number of outputs.
        activation: the head's output activation: "softmax", "sigmoid" or "linear" (logits).
        thresholds: a multi-label task's decision threshold per class (default 0.5 each);
            None for classification.

    Example:
        >>> Task("multilabel", 3, "sigmoid").thresholds
        (0.5, 0.5, 0.5)
    """

    kind: str = "classification"
    classes: int = 1000
    activation: str = "softmax"
    thresholds: tuple = None

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_positive_int("classes", self.classes)
        check_choice("activation", self.activation, ACTIVATIONS)
        if self.segmentation and self.activation != "linear":
            raise InvalidArgument("A segmentation head returns logits per pixel: `activation` "
                                  f"must be 'linear'; got {self.activation!r}.")
        if self.detection and self.activation != "sigmoid":
            raise InvalidArgument("A detector scores each class of each box on its own: "
                                  f"`activation` must be 'sigmoid'; got {self.activation!r}.")
        if self.kind == "multilabel":
            if self.activation != "sigmoid":
                raise InvalidArgument(
                    "A multi-label task scores each class on its own: `activation` must be "
                    f"'sigmoid'; got {self.activation!r}."
                )
            thresholds = (DEFAULT_THRESHOLD,) * self.classes if self.thresholds is None else self.thresholds
            object.__setattr__(self, "thresholds", _checked_thresholds(thresholds, self.classes))
        elif self.thresholds is not None:
            raise InvalidArgument(
                f"`thresholds` belong to a multi-label task; a {self.kind} task takes none "
                f"(got {self.thresholds!r})."
            )

    @property
    def multilabel(self):
        return self.kind == "multilabel"

    @property
    def segmentation(self):
        return self.kind == "segmentation"

    @property
    def detection(self):
        return self.kind == "detection"

    @property
    def metric(self):
        """The metric that ranks models of this task (higher is better)."""
        if self.detection:
            return "map"
        return "pr_auc" if self.multilabel else "miou" if self.segmentation else "top1"

    @property
    def monitor(self):
        """The validation metric the plateau schedule and the best checkpoint watch."""
        return f"val_{self.metric}"

    def label_format(self, recipe=None):
        """The targets a data pipeline makes: "multi_hot" (multi-label), "one_hot" (a recipe
        that mixes or smooths targets: ``recipe.modern``) or "sparse" (class ids, the paper's)."""
        if self.multilabel:
            return "multi_hot"
        if self.segmentation:
            return "mask"
        if self.detection:
            return "boxes"
        return "one_hot" if getattr(recipe, "modern", False) else "sparse"

    def check_recipe(self, recipe):
        """Raise unless ``recipe`` can train this task (its loss fits the head's activation;
        a detector's loss is its own)."""
        if self.detection:
            return
        binary = getattr(recipe, "loss", "cross_entropy") == "binary_cross_entropy"
        expected = "sigmoid" if self.multilabel or binary else "softmax"
        if self.activation not in (expected, "linear"):
            what = ("multi-label task" if self.multilabel else
                    "binary cross-entropy recipe" if binary else "single-label task")
            raise InvalidArgument(
                f"A {self.activation} head does not fit a {what}; build the model with "
                f"classifier_activation={expected!r}."
            )
        if self.multilabel and getattr(recipe, "label_smoothing", 0):
            raise InvalidArgument(
                f"Recipe {recipe.name!r} smooths labels, which is for single-label classes; "
                "set label_smoothing=0 for a multi-label task."
            )

    def loss(self, recipe=None):
        """The loss: per-pixel sparse cross-entropy without the ignore label (255) for
        segmentation; binary cross-entropy for multi-label tasks and BCE recipes (smoothing, if
        any, is in the targets), categorical for one-hot targets (with the recipe's label
        smoothing), sparse categorical for class ids; on logits when the head has none;
        RetinaNet's focal and L1 box loss for detection (its packed raw outputs)."""
        logits = self.activation == "linear"
        if self.detection:  # version 1's; a version-2 detector trains with box_loss="giou"
            return detection_losses.RetinaNetLoss(self.classes)
        if self.segmentation:  # per pixel, VOC's border label left out
            return losses_lib.SparseCrossEntropy(from_logits=logits)
        if self.multilabel or getattr(recipe, "loss", None) == "binary_cross_entropy":
            return keras.losses.BinaryCrossentropy(from_logits=logits)
        if self.label_format(recipe) == "one_hot":
            return keras.losses.CategoricalCrossentropy(
                from_logits=logits, label_smoothing=recipe.label_smoothing)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=logits)

    def metrics(self, recipe=None):
        """Measures while training: top-1 and top-5 accuracy (Tables 3-5 report their errors)
        of class ids or one-hot targets; for a multi-label task ``pr_auc`` (Keras' interpolated
        estimate of mAP; the exact mAP is computed at the end) and macro ``f1`` at 0.5; for
        segmentation ``miou`` and ``pixel_accuracy`` (from one confusion matrix each); none
        for detection (its mAP needs the detections: computed by evaluation)."""
        if self.detection:
            return []
        if self.segmentation:
            return [metrics_lib.MeanIoU(self.classes, from_logits=True),
                    metrics_lib.PixelAccuracy(self.classes, from_logits=True, name="pixel_accuracy")]
        if self.multilabel:
            return [keras.metrics.AUC(curve="PR", multi_label=True, num_thresholds=200,
                                      from_logits=self.activation == "linear", name="pr_auc"),
                    keras.metrics.F1Score(average="macro", threshold=0.5, name="f1")]
        if self.label_format(recipe) == "one_hot":
            return [keras.metrics.CategoricalAccuracy(name="top1"),
                    keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")]
        return [keras.metrics.SparseCategoricalAccuracy(name="top1"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")]

    def with_thresholds(self, thresholds):
        """This multi-label task with new per-class ``thresholds``."""
        if not self.multilabel:
            raise InvalidArgument(f"`thresholds` belong to a multi-label task; this one is {self.kind}.")
        return dataclasses.replace(self, thresholds=_checked_thresholds(thresholds, self.classes))

    def to_config(self):
        """A JSON-ready dict (what ``.keras`` files and export metadata hold)."""
        return {"kind": self.kind, "classes": self.classes, "activation": self.activation,
                "thresholds": None if self.thresholds is None else list(self.thresholds)}

    @classmethod
    def from_config(cls, config):
        """The Task of :meth:`to_config`'s dict; an export written before Tasks existed
        stored the kind alone ("single_label" or "multilabel"): see :func:`from_export`."""
        if not isinstance(config, dict):
            raise InvalidType(f"A task config must be a dict; got {type(config).__name__}.")
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidArgument(f"Unknown task field(s) {unknown}; allowed: kind, classes, "
                                  "activation, thresholds.")
        thresholds = config.get("thresholds")
        return cls(**{**config, "thresholds": None if thresholds is None else tuple(thresholds)})


def for_recipe(kind, classes, recipe=None):
    """The Task a run trains: ``kind`` of the data's labels, ``classes`` outputs, and the head
    the recipe's loss needs (a sigmoid per class for multi-label data and for binary
    cross-entropy recipes, RSB's; else softmax).

    Example:
        >>> for_recipe("classification", 10, keras_resnet.get_recipe("rsb_a1")).activation
        'sigmoid'
    """
    if kind == "segmentation":  # logits per pixel, whatever the recipe
        return Task(kind, classes, "linear")
    if kind == "detection":  # a sigmoid per class of every anchor (focal loss), whatever the recipe
        return Task(kind, classes, "sigmoid")
    binary = getattr(recipe, "loss", None) == "binary_cross_entropy"
    return Task(kind, classes, "sigmoid" if kind == "multilabel" or binary else "softmax")


def for_model(model, task="auto", recipe=None):
    """The Task ``model`` trains as under ``recipe``: the one it carries (``task="auto"``), the
    kind a name says ("classification" or "single_label", "multilabel": its thresholds kept
    when the model carries them), or a given Task. Raises when the model's head does not fit
    (a softmax for a multi-label task or a binary cross-entropy recipe, a sigmoid otherwise).

    Example:
        >>> for_model(keras_resnet.ResNet20(), "single_label").kind
        'classification'
    """
    carried = task_of(model)
    if carried is None:
        raise InvalidArgument(f"Model {model.name!r} has no class scores to train (a backbone "
                              "or feature extractor): give it a classifier head.")
    if isinstance(task, Task):
        chosen = task
    else:
        check_choice("task", task, ("auto", *TASK_NAMES))
        kind = carried.kind if task == "auto" else TASK_NAMES[task]
        chosen = carried if kind == carried.kind else for_recipe(kind, carried.classes, recipe)
    expected = for_recipe(chosen.kind, chosen.classes, recipe).activation
    if carried.activation not in (expected, "linear"):
        what = ("multi-label task" if chosen.multilabel else "binary cross-entropy recipe"
                if expected == "sigmoid" else "single-label task")
        raise InvalidArgument(f"Model {model.name!r} ends in a {carried.activation}, which does "
                              f"not fit a {what}; build it with classifier_activation={expected!r}.")
    chosen = dataclasses.replace(chosen, activation=carried.activation)
    chosen.check_recipe(recipe)
    return chosen


@keras.saving.register_keras_serializable(package="keras_resnet")
class TaskLayer(keras.layers.Layer):
    """Carries a model's :class:`Task` in its config; an identity in the model.

    Args:
        kind, classes, activation, thresholds: the Task's fields.

    Example:
        >>> TaskLayer(**Task("classification", 10).to_config()).task.classes
        10
    """

    def __init__(self, kind="classification", classes=1000, activation="softmax", thresholds=None,
                 **kwargs):
        kwargs.setdefault("name", LAYER_NAME)
        super().__init__(**kwargs)
        self.task = Task(kind, classes, activation,
                         None if thresholds is None else tuple(thresholds))

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.task.to_config()}


def layer_for(classes, activation):
    """The :class:`TaskLayer` a classifier of ``classes`` outputs with this output
    ``activation`` (a name, None or a function) carries, or None when the activation is not
    one a Task knows (the model's Task is then derived: :func:`task_of`).

    Example:
        >>> layer_for(10, "softmax").task.kind
        'classification'
    """
    name = "linear" if activation is None else getattr(activation, "__name__", activation)
    return TaskLayer("classification", classes, name) if name in ACTIVATIONS else None


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in ACTIVATIONS else None


def _derived(model):
    """The Task of a model that carries none (saved before Tasks, or a head built by hand):
    multi-label when its preprocessing holds thresholds (how such models were marked),
    else classification by its head's activation; None when it has no class scores (its
    last layer has no activation: a pooled backbone, an embedding model)."""
    output_shape = model.output_shape
    if not isinstance(output_shape, tuple) or len(output_shape) != 2 or output_shape[-1] is None:
        return None
    classes = int(output_shape[-1])
    preprocessing = preprocessing_lib.of(model)
    thresholds = getattr(preprocessing, "thresholds", None)
    if thresholds is not None and len(thresholds) == classes:
        return Task("multilabel", classes, "sigmoid", tuple(thresholds))
    activation = _activation_name(model.layers[-1])
    return None if activation is None else Task("classification", classes, activation)


def task_of(model):
    """The :class:`Task` ``model`` carries (or, for a model saved before Tasks existed, the
    one its head and preprocessing imply); None for a model without class scores (a feature
    extractor, a backbone).

    Example:
        >>> task_of(keras_resnet.ResNet20(include_top=False)) is None
        True
    """
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")
    found = [layer for layer in model.layers if isinstance(layer, TaskLayer)]
    if found:
        task = found[0].task
        if task.detection:  # its outputs are boxes, or raw outputs per anchor
            return task
        output = model.output
        if isinstance(output, dict):  # a segmenter with an aux head: {"out", "aux"}
            classes = output["out"].shape[-1] if "out" in output else None
        else:
            output_shape = model.output_shape
            classes = output_shape[-1] if isinstance(output_shape, tuple) else None
        if classes == task.classes:
            return task
    return _derived(model)


def attach(model, task):
    """``model`` carrying ``task``: its own :class:`TaskLayer` replaced, or one added right
    after its ``ImagePreprocessing`` (or its input). The layers are new, the weights copied.

    Example:
        >>> model = attach(keras_resnet.ResNet20(classes=3), Task("classification", 3))
        >>> task_of(model).classes
        3
    """
    if not isinstance(task, Task):
        raise InvalidType(f"`task` must be a Task; got {type(task).__name__}.")
    classes = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if classes != task.classes:
        raise InvalidArgument(
            f"Model {model.name!r} has {classes} outputs; the task has {task.classes} classes."
        )
    layer = TaskLayer(**task.to_config())
    current = [existing for existing in model.layers if isinstance(existing, TaskLayer)]
    anchor = preprocessing_lib.of(model)
    if not current and anchor is None:
        inputs = keras.Input(shape=model.input_shape[1:], name=model.inputs[0].name)
        return keras.Model(inputs, model(layer(inputs)), name=model.name)
    made = {}

    def clone(existing):
        if current and existing is current[0]:
            return layer
        made[id(existing)] = type(existing).from_config(existing.get_config())
        return made[id(existing)]

    def call(existing, *args, **kwargs):
        outputs = existing(*args, **kwargs)
        return layer(outputs) if not current and existing is made.get(id(anchor)) else outputs

    # New layers with the weights copied, not shared: each layer sits in one graph, so its
    # ``output`` is this model's (Grad-CAM, feature extractors and exports read it).
    copy = keras.models.clone_model(model, clone_function=clone, call_function=call)
    copy.set_weights(model.get_weights())
    return copy


def from_export(metadata, preprocessing=None):
    """The Task an export's metadata records: a Task config, or (exports written before Tasks
    existed) the kind alone, "single_label" or "multilabel", with the thresholds in its
    preprocessing.

    Example:
        >>> from_export({"task": Task("classification", 10).to_config()}).classes
        10
    """
    task = metadata.get("task")
    if isinstance(task, dict):
        return Task.from_config(task)
    if task is None and metadata.get("outputs") == "embeddings":
        return None  # a file of pooled features answers no task
    classes = len(preprocessing.class_names) if preprocessing is not None and preprocessing.class_names else None
    if task == "multilabel":
        return Task("multilabel", classes, "sigmoid", tuple(preprocessing.thresholds))
    return Task("classification", classes or 1, "softmax")

