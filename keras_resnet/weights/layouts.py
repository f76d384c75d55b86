"""Name mapping between keras_resnet models and other frameworks' checkpoints, as data.

Ours: layers ``conv1``, ``conv1_bn``, blocks ``conv{s}_block{b}`` with sublayers ``conv1``,
``bn1``, ..., ``shortcut_conv``, ``shortcut_bn``, and ``predictions``.

- "torch" (torchvision, timm): ``conv1``, ``bn1``, ``layer{s-1}.{b-1}.conv1`` ...,
  ``layer{s-1}.{b-1}.downsample.0/1``, ``fc``; conv kernels OIHW (ours HWIO), dense
  (out, in) (ours (in, out)), BN ``weight, bias, running_mean, running_var``. The family as
  timm names it: ResNet-D's deep stem ``conv1.0/1/3/4/6`` and average-pool shortcut
  ``downsample.1/2`` (``downsample.0`` is the pool), squeeze-and-excitation ``se.fc1/fc2``.
- "keras_hub" (ResNetBackbone ``.weights.h5``): Keras saves layers by class and order
  (``layers/conv2d_7/vars/0``), in the backbone's layer order, which per block is
  ``KERAS_HUB_ORDER``; the classifier head is ``layers/dense`` of ``task.weights.h5``.

Loading checks every name and shape before it sets any weight: a missing, extra or
mis-shaped tensor is an error naming the first ones, and the model is left untouched.
"""

import dataclasses
import os
import re

import keras
import numpy as np

from keras_resnet.errors import InvalidArgument

_BLOCK = re.compile(r"^conv(\d+)_block(\d+)$")
BLOCK_SUBLAYERS = ("preact_bn", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "shortcut_conv",
                   "shortcut_bn", "se_reduce", "se_expand")

# Each layer type's variables in Keras' saving order, with their PyTorch parameter names.
PARAMS = {
    "conv": (("kernel", "weight"), ("bias", "bias")),
    "dense": (("kernel", "weight"), ("bias", "bias")),
    "bn": (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
           ("moving_variance", "running_var")),
}
# PyTorch layout ("torch"): our layer names -> torchvision/timm module names.
TORCH_TOP = {"conv1": "conv1", "conv1_bn": "bn1", "predictions": "fc",
             # timm's deep stem: Sequential(conv, bn, relu, conv, bn, relu, conv)
             "conv1_1": "conv1.0", "conv1_1_bn": "conv1.1", "conv1_2": "conv1.3",
             "conv1_2_bn": "conv1.4", "conv1_3": "conv1.6"}
TORCH_BLOCK = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2", "conv3": "conv3",
               "bn3": "bn3", "shortcut_conv": "downsample.0", "shortcut_bn": "downsample.1",
               "se_reduce": "se.fc1", "se_expand": "se.fc2"}
# timm's ResNet-D shortcut: Sequential(AvgPool2d, conv, bn).
TORCH_AVG_DOWN = {"shortcut_conv": "downsample.1", "shortcut_bn": "downsample.2"}
# The first convolution of each stem (the one an input-channel change adapts).
STEM_CONVS = ("conv1", "conv1_1")
TORCH_HEAD = ("fc.weight", "fc.bias")
TORCH_IGNORED = (".num_batches_tracked",)  # a counter, no weight
# keras-hub layout: the order a block's sublayers take in ResNetBackbone.layers (checked
# against keras-hub 0.32 by tests/fixtures/make_torch_fixtures.py), by (block, projection).
KERAS_HUB_ORDER = {
    ("basic", False): ("conv1", "bn1", "conv2", "bn2"),
    ("basic", True): ("conv1", "bn1", "shortcut_conv", "conv2", "shortcut_bn", "bn2"),
    ("bottleneck", False): ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"),
    ("bottleneck", True): ("conv1", "bn1", "conv2", "bn2", "shortcut_conv", "conv3",
                           "shortcut_bn", "bn3"),
}
KERAS_HUB_CLASS = {"conv": "conv2d", "bn": "batch_normalization", "dense": "dense"}
KERAS_HUB_HEAD = ("layers/dense/vars/0", "layers/dense/vars/1")
KERAS_HUB_IGNORED = ("optimizer/",)  # task.weights.h5 carries an empty optimizer
TORCH_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class Slot:
    """One variable of ours and the name and layout of its tensor in a checkpoint."""

    variable: object
    key: str
    kind: str  # "conv", "dense", "bn"
    attribute: str  # "kernel", "gamma", ...
    layout: str

    def to_keras(self, array):
        if self.layout == "torch" and self.attribute == "kernel":
            return np.transpose(array, (2, 3, 1, 0)) if self.kind == "conv" else array.T
        return array

    def from_keras(self, array):
        if self.layout == "torch" and self.attribute == "kernel":
            return np.transpose(array, (3, 2, 0, 1)) if self.kind == "conv" else array.T
        return array

    def assign(self, array):
        """Set the variable from its checkpoint tensor ``array``."""
        self.variable.assign(self.to_keras(np.asarray(array)).astype(self.variable.dtype))

    def array(self):
        """The variable as its checkpoint tensor (contiguous, in the slot's layout)."""
        return np.ascontiguousarray(self.from_keras(np.asarray(self.variable.numpy())))

    @property
    def source_shape(self):
        shape = tuple(self.variable.shape)
        if self.layout == "torch" and self.attribute == "kernel":
            return (shape[3], shape[2], shape[0], shape[1]) if self.kind == "conv" else shape[::-1]
        return shape


def _kind(layer):
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "bn"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    raise InvalidArgument(f"layer {layer.name!r} ({type(layer).__name__}) has no checkpoint counterpart")


def _variables(layer):
    """``(kind, attribute, variable)`` of a layer, in Keras' saving order."""
    kind = _kind(layer)
    for attribute, _ in PARAMS[kind]:
        variable = getattr(layer, attribute, None)
        if variable is not None:
            yield kind, attribute, variable


def _block_index(layer):
    match = _BLOCK.match(layer.name)
    if not match or not hasattr(layer, "shortcut"):
        raise InvalidArgument(
            f"`model` layer {layer.name!r} ({type(layer).__name__}) has no counterpart in "
            "torchvision/timm/keras-hub checkpoints (only conv1, conv1_bn, conv{s}_block{b} "
            "and predictions have)."
        )
    return int(match[1]) - 1, int(match[2]) - 1


def _weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def _block_kind(block):
    return "bottleneck" if hasattr(block, "conv3") else "basic"


def _check_post_activation(model, layout):
    """Raise for pre-activation nets: torchvision, timm's ResNet and keras-hub's v1 have none."""
    if any(getattr(block, "preactivation", False) for block in _blocks(model)):
        raise InvalidArgument(
            f"`model` {model.name!r} is a pre-activation (v2) net; the {layout!r} layout holds "
            "post-activation ResNets only (keras.applications' V2 weights load through "
            "keras_resnet.ResNet50V2(weights='imagenet') or from_keras_applications)."
        )


def torch_slots(model):
    """The variables of ``model`` with their torchvision/timm state-dict names.

    Example:
        >>> torch_slots(keras_resnet.ResNet18())[0].key
        'conv1.weight'
    """
    _check_post_activation(model, "torch")
    slots = []
    for layer in _weighted_layers(model):
        if layer.name in TORCH_TOP:
            modules = [(layer, TORCH_TOP[layer.name])]
        else:
            stage, index = _block_index(layer)
            names = {**TORCH_BLOCK, **(TORCH_AVG_DOWN if layer.avg_down else {})}
            modules = [(getattr(layer, attr), f"layer{stage}.{index}.{names[attr]}")
                       for attr in BLOCK_SUBLAYERS if hasattr(layer, attr)]
        for sublayer, module in modules:
            names = dict(PARAMS[_kind(sublayer)])
            for kind, attribute, variable in _variables(sublayer):
                key = f"{module}.{names[attribute]}"
                slots.append(Slot(variable, key, kind, attribute, "torch"))
    return slots


def keras_hub_slots(model):
    """The variables of ``model`` with their keys in keras-hub ResNet ``.weights.h5`` files.

    Example:
        >>> keras_hub_slots(keras_resnet.ResNet18())[0].key
        'layers/conv2d/vars/0'
    """
    _check_post_activation(model, "keras_hub")
    for layer in _blocks(model):
        options = {"groups": layer.groups, "base_width": layer.base_width,
                   "se_ratio": layer.se_ratio, "avg_down": layer.avg_down}
        if options != {"groups": 1, "base_width": 64, "se_ratio": 0.0, "avg_down": False}:
            raise InvalidArgument(
                f"`model` {model.name!r} block {layer.name} has family options {options}; the "
                "keras-hub layout holds keras-hub's ResNet v1 backbones only."
            )
    if "conv1_1" in {layer.name for layer in model.layers}:
        raise InvalidArgument(f"`model` {model.name!r} has a deep stem; the keras-hub layout "
                              "holds keras-hub's ResNet v1 backbones only.")
    counts, slots = {}, []

    def add(sublayer):
        kind = _kind(sublayer)
        number = counts.get(kind, 0)
        counts[kind] = number + 1
        name = KERAS_HUB_CLASS[kind] + (f"_{number}" if number else "")
        for index, (kind, attribute, variable) in enumerate(_variables(sublayer)):
            slots.append(Slot(variable, f"layers/{name}/vars/{index}", kind, attribute,
                              "keras_hub"))

    for layer in _weighted_layers(model):
        if layer.name in TORCH_TOP:
            add(layer)
            continue
        _block_index(layer)
        order = KERAS_HUB_ORDER[(_block_kind(layer), layer.shortcut == "projection")]
        for attr in order:
            add(getattr(layer, attr))
    return slots


SLOTS = {"torch": torch_slots, "keras_hub": keras_hub_slots}
HEADS = {"torch": TORCH_HEAD, "keras_hub": KERAS_HUB_HEAD}
IGNORED = {"torch": lambda k: k.endswith(TORCH_IGNORED),
           "keras_hub": lambda k: k.startswith(KERAS_HUB_IGNORED)}


def _first(names, count=4):
    names = sorted(names)
    shown = ", ".join(names[:count])
    return shown + (f", ... ({len(names) - count} more)" if len(names) > count else "")


def _check_names(model, slots, tensors, layout, source):
    expected = {slot.key for slot in slots}
    given = {key for key in tensors if not IGNORED[layout](key)}
    if "predictions" not in {layer.name for layer in model.layers}:
        given -= set(HEADS[layout])  # include_top=False loads everything but the classifier
    missing, extra = expected - given, given - expected
    if missing or extra:
        lines = [f"`weights` ({source}) do not fit model {model.name!r}: the model needs "
                 f"{len(expected)} tensors, the file has {len(given)} (besides counters)."]
        if missing:
            lines.append(f"Missing from the file ({len(missing)}): {_first(missing)}.")
        if extra:
            lines.append(f"In the file but not in the model ({len(extra)}): {_first(extra)}.")
        lines.append("Weights of another depth or shortcut option? Nothing was loaded.")
        raise InvalidArgument(" ".join(lines))


def _check_shapes(model, slots, tensors, source):
    wrong = [s for s in slots if tuple(np.shape(tensors[s.key])) != s.source_shape]
    if wrong:
        shown = "; ".join(f"{s.key}: file {tuple(np.shape(tensors[s.key]))}, model "
                          f"{s.source_shape}" for s in wrong[:3])
        raise InvalidArgument(
            f"`weights` ({source}) do not fit model {model.name!r}: {len(wrong)} of "
            f"{len(slots)} tensors differ in shape, first {shown}. Weights of another width, "
            "block type or number of classes? Nothing was loaded."
        )


def _blocks(model):
    return [layer for layer in model.layers
            if _BLOCK.match(layer.name) and hasattr(layer, "shortcut")]


def _batch_norms(model):
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    return norms + [getattr(b, a) for b in _blocks(model) for a in BLOCK_SUBLAYERS
                    if a.startswith(("bn", "shortcut_bn")) and hasattr(b, a)]


def check_torch_variant(model, what="these weights"):
    """Raise unless ``model`` computes what a torchvision/timm/keras-hub ResNet computes with
    the same tensors: stride on the 3x3 of a bottleneck, BN epsilon 1e-5 (the tensors
    themselves show neither).

    Example:
        >>> check_torch_variant(keras_resnet.ResNet18(input_shape=(64, 64, 3)))
    """
    for block in _blocks(model):
        if _block_kind(block) == "bottleneck" and block.stride_position != "3x3":
            raise InvalidArgument(
                f"{what} (torchvision/timm/keras-hub layout) put a bottleneck's stride on its "
                f"3x3 convolution; model {model.name!r} has stride_position="
                f"{block.stride_position!r} ({block.name}). Build it with stride_position='3x3'."
            )
    for norm in _batch_norms(model):
        if abs(norm.epsilon - TORCH_EPSILON) > 1e-12:
            raise InvalidArgument(
                f"{what} (torchvision/timm/keras-hub layout) were trained with BN epsilon 1e-5; "
                f"model {model.name!r} has {norm.epsilon:g} ({norm.name}). Build it with "
                "bn_epsilon=1e-5."
            )


def adapt_input_kernel(kernel, channels):
    """A first-conv kernel ``(h, w, 3, filters)`` trained on RGB, made for ``channels`` input
    channels the way timm's ``adapt_input_conv`` does: 1 channel sums the RGB filters (a grey
    image then gives what its RGB copy gave); C > 3 repeats them cyclically (R, G, B, R, ...)
    and scales by 3 / C, so the response keeps its size.

    Example:
        >>> adapt_input_kernel(np.ones((7, 7, 3, 64), np.float32), 4)[0, 0, :, 0]
        array([0.75, 0.75, 0.75, 0.75], dtype=float32)
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise InvalidArgument(
            f"Only a 3-channel (RGB) first convolution can be adapted; got kernel {kernel.shape}."
        )
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise InvalidArgument(f"`channels` must be a positive integer; got {channels!r}.")
    adapted = kernel.astype(np.float32)
    if channels == 1:
        adapted = adapted.sum(axis=2, keepdims=True)
    elif channels != 3:
        repeats = -(-channels // 3)
        adapted = np.tile(adapted, (1, 1, repeats, 1))[:, :, :channels] * np.float32(3 / channels)
    return adapted.astype(kernel.dtype)


def _adapt_stem(model, slots, tensors):
    """``tensors`` with a 3-channel conv1 kernel adapted to the model's input channels."""
    names = {layer.name for layer in model.layers}
    stem = next((name for name in STEM_CONVS[::-1] if name in names), None)
    if stem is None:
        return tensors
    kernel = model.get_layer(stem).kernel
    for slot in slots:
        if slot.variable is kernel and slot.key in tensors:
            found = slot.to_keras(np.asarray(tensors[slot.key]))
            channels = kernel.shape[2]
            if found.ndim == 4 and found.shape[2] == 3 and channels != 3:
                adapted = slot.from_keras(adapt_input_kernel(found, channels))
                return {**tensors, slot.key: adapted}
    return tensors


def load_tensors(model, tensors, layout, source="weights"):
    """Set every weight of ``model`` from ``tensors`` (``{name: array}`` in ``layout``,
    "torch" or "keras_hub") after checking all names and shapes; the classifier is skipped
    when ``model`` has none, and a 3-channel conv1 is adapted to the model's input channels
    (:func:`adapt_input_kernel`). Returns ``model``.

    Example:
        >>> model = keras_resnet.ResNet18(input_shape=(64, 64, 3))
        >>> tensors = {s.key: s.from_keras(s.variable.numpy()) for s in torch_slots(model)}
        >>> load_tensors(model, tensors, "torch").name
        'resnet18'
    """
    check_torch_variant(model, f"`weights` ({source})")
    slots = SLOTS[layout](model)
    _check_names(model, slots, tensors, layout, source)
    tensors = _adapt_stem(model, slots, tensors)
    _check_shapes(model, slots, tensors, source)
    for slot in slots:
        slot.assign(tensors[slot.key])
    return model


def head_state_dict(backbone, prefix, head_slots):
    """A torchvision state dict of a head's model: ``backbone``'s torch slots under
    ``prefix`` ("backbone." / "backbone.body."), then ``head_slots``; no BN counters.

    Example:
        >>> sorted(head_state_dict(keras_resnet.ResNet18(include_top=False), "backbone.", []))[0]
        'backbone.bn1.bias'
    """
    slots = [dataclasses.replace(s, key=prefix + s.key) for s in torch_slots(backbone)]
    return {s.key: s.array() for s in slots + list(head_slots)}


def _check_torch_counterpart(model):
    """Raise unless torchvision's ``ResNet`` has the same network (so it loads our tensors)."""
    _check_post_activation(model, "torch")
    names = {layer.name for layer in model.layers}
    deep = "conv1_1" in names
    stem = model.get_layer("conv1_1" if deep else "conv1") if "conv1" in names or deep else None
    if stem is None or (not deep and stem.kernel_size != (7, 7)) or "pool1" not in names:
        raise InvalidArgument(
            f"`model` {model.name!r} has no torchvision counterpart: torchvision's ResNet has "
            "Table 1's 7x7/2 conv and 3x3/2 max pool stem (ImageNet ResNets; timm's ResNet-D "
            "the deep stem); CIFAR nets have neither."
        )
    stem_convs = [model.get_layer(n) for n in ("conv1", "conv1_1", "conv1_2", "conv1_3") if n in names]
    for layer in stem_convs + [getattr(b, a) for b in _blocks(model) for a in BLOCK_SUBLAYERS
                               if a.startswith(("conv", "shortcut_conv")) and hasattr(b, a)]:
        if layer.use_bias:
            raise InvalidArgument(f"`model` {model.name!r} has conv biases ({layer.name}); "
                             "torchvision's ResNet has none (build with use_bias=False).")
    for block in _blocks(model):
        in_channels = block.conv1.kernel.shape[-2]
        changes = block.strides != 1 or in_channels != block.output_channels
        if block.shortcut != ("projection" if changes else "identity"):
            raise InvalidArgument(
                f"`model` {model.name!r} block {block.name} has shortcut {block.shortcut!r}; "
                "torchvision's ResNet projects exactly where dimensions change (option B, "
                "shortcut='B', residual=True); option A (zero padding), C and plain nets have "
                "no torchvision counterpart."
            )
    check_torch_variant(model, "torchvision's ResNet")


def to_torch_layout(model, path):
    """Write ``model``'s weights as a torchvision/timm state dict in safetensors format,
    ``num_batches_tracked`` included, for ``torchvision.models.resnetNN().load_state_dict(
    safetensors.torch.load_file(path))`` (a model without classifier writes no ``fc``:
    load it with ``strict=False``). The model must be an option-B ImageNet ResNet with
    stride_position="3x3", no conv bias and BN epsilon 1e-5.

    Returns:
        ``path``.

    Example:
        >>> to_torch_layout(keras_resnet.ResNet18(input_shape=(64, 64, 3)), "r18.safetensors")
        'r18.safetensors'
    """
    from safetensors.numpy import save_file

    from keras_resnet.saving import atomic_path

    _check_torch_counterpart(model)
    tensors = {}
    for slot in torch_slots(model):
        tensors[slot.key] = np.ascontiguousarray(slot.from_keras(np.asarray(slot.variable.numpy())))
        if slot.key.endswith(".running_var"):  # torchvision's BN counter, as in its state dicts
            counter = slot.key[: -len("running_var")] + "num_batches_tracked"
            tensors[counter] = np.zeros((), np.int64)
    with atomic_path(os.fspath(path), suffix=".safetensors") as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", "source": "keras_resnet"})
    return path
