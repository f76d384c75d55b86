"""The network a run trains: a model for the dataset, or a pretrained backbone with a new
classifier and the stages fine-tuning unfreezes (Table 1: conv2_x ... conv5_x).

Example:
    >>> model = keras_resnet.ResNet20()
    >>> set_trainable(model, None)  # phase 1: the classifier alone
    >>> [layer.name for layer in model.layers if layer.trainable]
    ['predictions']
"""

import os

import keras

from keras_resnet import heads, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument
from keras_resnet.evaluation import check_fits_dataset
from keras_resnet.features import feature_info
from keras_resnet.models import get_model, parse_model_name
from keras_resnet.saving import load_model
from keras_resnet.train import detection
from keras_resnet.train.config import UNFREEZE


def _is_cifar(model_name):
    try:
        return parse_model_name(model_name)[0] == "cifar"
    except InvalidArgument:  # not a model name: the segmenter says so
        return False


def _head_stride(model, head, options):
    """The output stride of the features ``head`` will read on backbone ``model``."""
    if not isinstance(model, str):
        return feature_info(model)[-1]["reduction"]
    if _is_cifar(model):
        return 4
    default = 16 if head == "deeplabv3plus" else 8  # the constructors' defaults
    return options.get("output_stride", default) or 32


def segmentation_model(model, info, options, head):
    """A segmentation model for the dataset: ``head`` ("fcn", "deeplabv3", "deeplabv3plus")
    on the backbone ``model`` (a name, a ``.keras`` file or a model; a ``.keras`` file or
    model that segments already is taken as it is), taking images of any size, carrying the
    dataset's preprocessing (its class names) and the segmentation Task. DeepLab's ASPP rates,
    unless given, are sized to the training images (``atrous_rates(..., image_size)``)."""
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".keras"):
        model = load_model(model, compile=False)
    if isinstance(model, keras.Model) and getattr(tasks.task_of(model), "segmentation", False):
        check_fits_dataset(model, info)
        return preprocessing_lib.attach(model, info.preprocessing)
    shape = (None, None, info.image_shape[-1])
    if isinstance(model, str):
        options = {"preprocessing": info.preprocessing, **options}
        if _is_cifar(model):
            options.setdefault("output_stride", None)  # §4.2's nets keep their stride 4
    if head != "fcn" and "atrous_rates" not in options:
        options["atrous_rates"] = heads.segmentation.atrous_rates(
            _head_stride(model, head, options), image_size=max(info.image_shape[:2]))
    net = heads.segmenter(head, backbone=model, classes=info.num_classes, input_shape=shape,
                          **options)
    return preprocessing_lib.attach(net, info.preprocessing)


def build_model(model, info, options, recipe, task, head=None):
    """A model for the dataset, carrying its preprocessing and the run's ``task`` (a
    ``keras_resnet.tasks.Task``): a model name, a ``.keras`` file or a model (the task's head
    activation; the recipe's stochastic depth; any input size while it trains at FixRes'
    smaller crops); for a segmentation task, ``head`` on that backbone
    (:func:`segmentation_model`); for a detection task RetinaNet on it
    (:func:`keras_resnet.train.detection.detector`)."""
    if task.segmentation:
        return segmentation_model(model, info, options, head)
    if task.detection:
        return detection.detector(model, info, options)
    if isinstance(model, str) and not model.endswith(".keras"):
        options = {"classifier_activation": task.activation, **options}
        if recipe.drop_path_rate:
            options.setdefault("drop_path_rate", recipe.drop_path_rate)
        shape = tuple(info.image_shape)
        if recipe.train_size_fraction != 1.0:
            shape = (None, None, shape[-1])
        net = get_model(model, input_shape=shape, classes=info.num_classes,
                        preprocessing=info.preprocessing, **options)
        return tasks.attach(net, task)
    if recipe.train_size_fraction != 1.0 or recipe.drop_path_rate:
        raise InvalidArgument(f"Recipe {recipe.name!r} trains at smaller crops (FixRes) or drops "
                              "paths, which a built model cannot take up; give a model name, or "
                              "--set train_size_fraction=1 --set drop_path_rate=0.")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, compile=False)
    check_fits_dataset(model, info)
    model = preprocessing_lib.attach(model, info.preprocessing)
    return tasks.attach(model, tasks.for_model(model, "multilabel" if task.multilabel else
                                               "single_label", recipe))


def at_input_size(net, info):
    """``net`` (sharing its layers) with the dataset's fixed input size: a model trained on
    FixRes' smaller crops is saved and exported at the size it is evaluated at."""
    if tuple(net.input_shape[1:]) == tuple(info.image_shape):
        return net
    return keras.models.clone_model(net, input_tensors=keras.Input(shape=info.image_shape),
                                    clone_function=lambda layer: layer)


def pretrained_backbone(model, weights, options):
    """The pretrained network up to its global average pooling, with its preprocessing:
    ``weights`` a weight set name or file for model ``model``, or a ``.keras`` classifier."""
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".keras"):
        source = load_model(weights, compile=False)
        try:
            pooled = source.get_layer("avg_pool").output
        except ValueError:
            raise InvalidArgument(
                f"`weights` model {os.fspath(weights)!r} has no 'avg_pool' layer to put a new "
                "classifier on; use a model built by keras_resnet."
            ) from None
        return keras.Model(source.inputs, pooled, name=source.name)
    if not isinstance(model, str):
        raise InvalidArgument(f"`model` must be a model name with `weights={weights!r}`; got {model!r}.")
    return get_model(model, weights=weights, include_top=False, pooling="avg", **options)


def classifier(backbone, info, task):
    """``backbone`` with a new ``predictions`` layer for the dataset's classes (the ``task``'s
    activation; the paper's weight decay on its kernel), carrying the dataset's class names
    and the task."""
    outputs = keras.layers.Dense(
        info.num_classes, activation=task.activation,
        name="predictions", kernel_regularizer=keras.regularizers.L2(5e-5), dtype="float32",
    )(backbone.output)
    net = keras.Model(backbone.inputs, outputs, name=backbone.name)
    preprocessing = preprocessing_lib.of(net).with_class_names(info.class_names)
    return tasks.attach(preprocessing_lib.attach(net, preprocessing), task)


def _stage_number(name):
    """2 .. 5 for the layers of conv2_x .. conv5_x (Table 1), 1 for the stem, None for the head."""
    if name == "predictions":
        return None
    stem = name.split("_")[0]
    if stem.startswith("conv") and stem[4:].isdigit():
        return int(stem[4:])
    return 1


def check_unfreeze(net, unfreeze):
    if unfreeze not in UNFREEZE:
        raise InvalidArgument(f"`unfreeze` must be one of {', '.join(UNFREEZE)}; got {unfreeze!r}.")
    if unfreeze in ("all", "none"):
        return
    stages = sorted({_stage_number(layer.name) for layer in net.layers} - {None, 1})
    if int(unfreeze[4:]) not in stages:
        raise InvalidArgument(
            f"`unfreeze` {unfreeze!r} names no stage of {net.name!r}; its stages are "
            f"{', '.join(f'conv{s}' for s in stages)} (or 'all')."
        )


def set_trainable(net, unfreeze, train_bn=False):
    """Phase 1 (``unfreeze=None``): only the classifier trains. Phase 2: also the stages from
    ``unfreeze`` on ("conv4": conv4_x and conv5_x; "all": every layer). Frozen layers, and every
    BatchNormalization unless ``train_bn``, run in inference mode: moving statistics stay.

    Example:
        >>> model = keras_resnet.ResNet20()
        >>> set_trainable(model, "conv4")
        >>> [layer.name for layer in model.layers if layer.trainable]
        ['conv4_block1', 'conv4_block2', 'conv4_block3', 'predictions']
    """
    first = {"all": 1, "none": None, None: None}.get(unfreeze)
    if first is None and unfreeze not in (None, "none"):
        first = int(unfreeze[4:])
    for layer in net.layers:
        stage = _stage_number(layer.name)
        layer.trainable = stage is None or (first is not None and stage >= first)
        if layer.trainable and not train_bn:
            for sublayer in _batch_norms(layer):
                sublayer.trainable = False


def _batch_norms(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    return list(getattr(layer, "batch_norms", []))
