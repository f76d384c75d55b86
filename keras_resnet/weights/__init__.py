"""Pretrained weights: published ImageNet checkpoints as data, and converters both ways.

- :func:`available` / :func:`format_table`: the weight sets of each model (torchvision V1/V2,
  timm's ResNet checkpoints on the Hugging Face hub, keras.applications, keras-hub presets),
  with variant, preprocessing, published accuracy and licence.
- ``keras_resnet.ResNet50(weights="torchvision_v2")`` builds the set's variant with its
  preprocessing and loads it; ``weights=PATH`` loads a local ``.weights.h5`` (ours or
  keras-hub's), ``.safetensors``, ``.pth``/``.pt`` (needs PyTorch) or ``.npz``.
- :func:`to_torch_layout` writes a model as a torchvision/timm safetensors state dict.

Converters map names, never guess: every tensor is matched by name and shape before any
weight is set, and no file is ever unpickled.

Example:
    >>> print(keras_resnet.weights.format_table("resnet50"))  # doctest: +SKIP
    >>> model = keras_resnet.ResNet18(weights="timm_a1")       # doctest: +SKIP
"""

import os

from keras_resnet.weights import files
from keras_resnet.weights.files import SUFFIXES, cache_folder, download, read
from keras_resnet.weights.keras_applications import (
    copy_keras_applications_weights,
    keras_applications_layout,
)
from keras_resnet.weights.layouts import (
    adapt_input_kernel,
    check_torch_variant,
    keras_hub_slots,
    load_tensors,
    to_torch_layout,
    torch_slots,
)
from keras_resnet.weights.sets import (
    CAFFE_VARIANT,
    DEFAULTS,
    FIXED_OPTIONS,
    KERAS_V2_VARIANT,
    MODELS,
    TORCH_VARIANT,
    WeightFile,
    WeightSet,
    available,
    format_table,
    get,
    imagenet_class_names,
    is_name,
)
from keras_resnet.errors import InvalidArgument, InvalidType

__all__ = [
    "CAFFE_VARIANT", "adapt_input_kernel", "DEFAULTS", "FIXED_OPTIONS", "KERAS_V2_VARIANT",
    "MODELS", "SUFFIXES", "TORCH_VARIANT",
    "WeightFile", "WeightSet", "available", "cache_folder", "check_torch_variant",
    "copy_keras_applications_weights", "download", "fetch", "format_table", "get",
    "imagenet_class_names", "is_name", "keras_applications_layout", "keras_hub_slots",
    "load_tensors", "load_weights", "read", "resolve", "to_torch_layout", "torch_slots",
]


def resolve(model, weights):
    """The :class:`WeightSet` that ``weights`` names for ``model``, or None when ``weights``
    is None or a path (which ``load_weights`` takes).

    Example:
        >>> resolve("resnet50", "imagenet").name
        'keras_applications'
    """
    if weights is None or not is_name(weights):
        looks_like_name = isinstance(weights, str) and not weights.endswith(SUFFIXES)
        if looks_like_name and not os.path.isdir(weights):
            get(model, weights)  # an unknown name: raises, listing the model's sets
        return None
    return get(model, weights)


def fetch(weight_set, include_top=True, cache_dir=None):
    """The tensors of ``weight_set`` (``{name: array}``), downloaded or from the cache.

    keras.applications sets are fetched by keras.applications itself (``ImageNetResNet``).

    Example:
        >>> tensors = fetch(get("resnet50", "timm_a1"))  # doctest: +SKIP
    """
    if weight_set.layout == "keras_applications":
        raise InvalidArgument(
            f"weights={weight_set.name!r} are downloaded by keras.applications: build the model "
            f"with keras_resnet.{weight_set.model.replace('resnet', 'ResNet')}(weights="
            f"{weight_set.name!r})."
        )
    files.check_readable(weight_set)
    tensors = {}
    for weight_file in weight_set.files_for(include_top):
        path = download(weight_file, cache_dir)
        found, layout = read(path)
        if layout != weight_set.layout:
            raise InvalidArgument(f"{path!r} holds a {layout!r} layout, not {weight_set.layout!r}.")
        tensors.update(found)
    return tensors


def _load_own(model, path):
    """``model.load_weights(path)``, with the model's old weights put back if it fails."""
    saved = [variable.numpy() for variable in model.variables]
    try:
        model.load_weights(path)
    except Exception as error:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
        raise InvalidArgument(
            f"`weights` file {path!r} does not fit model {model.name!r} (nothing was loaded): "
            f"{error}"
        ) from error


def load_weights(model, weights):
    """Load ``weights`` into ``model`` and return it: None (nothing), or a path to a
    ``.weights.h5`` (keras_resnet's own, or a keras-hub ResNet's), ``.safetensors``, ``.npz``
    or ``.pth``/``.pt`` (torchvision/timm state dicts; .pth needs PyTorch) file, or a
    keras-hub preset folder. Nothing is half-loaded: a file that does not fit raises and
    leaves the model as it was.

    Example:
        >>> model = keras_resnet.ResNet18(input_shape=(64, 64, 3))
        >>> _ = to_torch_layout(model, "r18.safetensors")
        >>> load_weights(model, "r18.safetensors").name
        'resnet18'
    """
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise InvalidType(
            f"`weights` must be None, a weight set name or a path; got {type(weights).__name__}."
        )
    path = os.fspath(weights)
    if is_name(path) and not os.path.exists(path):
        raise InvalidArgument(
            f"`weights={path!r}` names a weight set: pass it to keras_resnet.ResNet18 ... "
            "ResNet152 or ImageNetResNet; here `weights` must be None or a path to a "
            f"{', '.join(SUFFIXES)} file."
        )
    if files.kind(path) == "own":
        _load_own(model, path)
        return model
    tensors, layout = read(path)
    return load_tensors(model, tensors, layout, source=path)
