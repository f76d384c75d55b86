"""What every writer and runner starts from: a float32 ``keras.Model`` and its
``ImagePreprocessing``, from a model, a ``.keras`` file or a run directory.

Example:
    >>> model, preprocessing = resolve_model(keras_resnet.ResNet20(input_shape=(32, 32, 3), classes=3))
    >>> preprocessing.image_size
    (32, 32)
"""

import os

import keras

from keras_resnet import data, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.heads import without_aux
from keras_resnet.models import walk_layers
from keras_resnet.saving import load_model


def _as_preprocessing(value):
    """An ``ImagePreprocessing`` from one, a ``DatasetInfo``, or the JSON config of either."""
    if value is None or isinstance(value, preprocessing_lib.ImagePreprocessing):
        return value
    if isinstance(value, data.DatasetInfo):
        return value.preprocessing
    if isinstance(value, dict):
        return preprocessing_lib.from_any_config(value)
    raise InvalidType(
        "`preprocessing` must be an ImagePreprocessing, a DatasetInfo or a config dict; got "
        f"{type(value).__name__}."
    )


def resolve_model(model, preprocessing=None):
    """``(keras.Model, ImagePreprocessing)`` from a model, a ``.keras`` file or a run directory.

    The preprocessing is ``preprocessing`` when given, else the model's own, else
    ``keras_resnet.preprocessing.default_for(model)`` (resize to the input, pixels / 255).
    The model computes in float32 (see :func:`float32_model`); a segmenter's auxiliary head
    (``{"out", "aux"}`` outputs) is dropped to its ``"out"`` logits (``heads.without_aux``).

    Example:
        >>> model, preprocessing = resolve_model("runs/resnet20-digits")  # doctest: +SKIP
    """
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "model.keras")):
                raise InvalidArgument(
                    f"`model`: directory {path!r} holds no model.keras (a run directory does)."
                )
            path = os.path.join(path, "model.keras")
        model = load_model(path)
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model or a path; got {type(model).__name__}.")
    preprocessing = (
        _as_preprocessing(preprocessing)
        or preprocessing_lib.of(model)
        or preprocessing_lib.default_for(model)
    )
    task = tasks.task_of(model)
    if task is None or not task.detection:  # a detector's outputs are its detections
        model = without_aux(model)
    return float32_model(model), preprocessing


def task_for(model):
    """The Task an export of ``model`` records and answers by (``keras_resnet.tasks``); a model
    without class scores (an embedding model) exports as a classifier of its outputs.

    Example:
        >>> task_for(keras_resnet.ResNet20()).kind
        'classification'
    """
    task = tasks.task_of(model)
    if task is None:
        return tasks.Task("classification", int(model.output_shape[-1]), "linear")
    return task


def _float32_policies(config):
    """``config`` with every dtype policy replaced by float32 (nested layers included)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and "name" in config.get("config", {}):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def float32_model(model):
    """``model`` itself if it computes in float32, else a float32 copy with the same weights.

    A model trained under a mixed policy (``mixed_bfloat16`` is the fast path of ImageNet nets
    on CPUs with native bfloat16) keeps float32 variables; serving and TFLite conversion
    want float32 compute.

    Example:
        >>> keras.config.set_dtype_policy("mixed_bfloat16")
        >>> mixed_model = keras_resnet.ResNet20(input_shape=(32, 32, 3), classes=3)
        >>> keras.config.set_dtype_policy("float32")
        >>> sorted({layer.compute_dtype for layer in walk_layers(float32_model(mixed_model))})
        ['float32']
    """
    if all(layer.compute_dtype == "float32" for layer in walk_layers(model)):
        return model
    copy = model.__class__.from_config(_float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy
