"""Segmentation weights: torchvision's published FCN and DeepLabV3 checkpoints as data, and
whole-model state dicts (``backbone.*``, ``classifier.*``, ``aux_classifier.*``) read into
and written from keras_resnet segmenters.

The backbone's tensors map as a classifier's do (:mod:`keras_resnet.weights.layouts`, under
torchvision's ``IntermediateLayerGetter`` prefix ``backbone.``); the heads' layers map by the
table :data:`HEAD_MODULES` to torchvision's ``FCNHead`` / ``DeepLabHead`` / ``ASPP``
modules. DeepLabV3+ has no torchvision counterpart: its decoder takes names of our own
(``decoder.*``), its ASPP torchvision's.

Loading checks every name and shape before it sets any weight. A file whose final 1x1
convolutions have another number of classes loads everything else and leaves those fresh
(fine-tuning to new classes); any other difference raises, naming the first few tensors.

Example:
    >>> [s.checkpoint for s in SETS][:1]
    ['FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1']
"""

import dataclasses
import re

import keras
import numpy as np

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument
from keras_resnet.weights import files, layouts
from keras_resnet.weights.sets import TORCH_VARIANT, WeightFile

BACKBONE_PREFIX = "backbone."  # torchvision's IntermediateLayerGetter
AUX_PREFIX = "aux_classifier."
# torchvision/models/_meta.py _VOC_CATEGORIES: the 21 classes of these weights.
VOC_CLASSES = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
SET_NAME = "torchvision_coco_voc"
# Our head layers -> torchvision's modules. FCNHead and DeepLabHead are Sequentials: conv 0,
# BN 1 (ReLU 2, dropout 3) and the logits conv 4; DeepLabHead's 0 is the ASPP, whose
# ``convs`` are the 1x1 branch, one per rate and the pooling branch (pool 0, conv 1, BN 2).
_FIXED_HEAD_MODULES = {
    "fcn_head_conv": "classifier.0", "fcn_head_conv_bn": "classifier.1",
    "fcn_head_logits": "classifier.4",
    "aux_head_conv": "aux_classifier.0", "aux_head_conv_bn": "aux_classifier.1",
    "aux_head_logits": "aux_classifier.4",
    "aspp_project": "classifier.0.project.0", "aspp_project_bn": "classifier.0.project.1",
    "deeplab_head_conv": "classifier.1", "deeplab_head_conv_bn": "classifier.2",
    "deeplab_head_logits": "classifier.4",
    # DeepLabV3+'s decoder: our own names (no torchvision counterpart).
    "decoder_low": "decoder.low.0", "decoder_low_bn": "decoder.low.1",
    "decoder_conv1": "decoder.fuse.0", "decoder_conv1_bn": "decoder.fuse.1",
    "decoder_conv2": "decoder.fuse.3", "decoder_conv2_bn": "decoder.fuse.4",
    "decoder_logits": "decoder.logits",
}
_ASPP_BRANCH = re.compile(r"^aspp_branch(\d+)(_bn)?$")
LOGITS_LAYERS = ("fcn_head_logits", "aux_head_logits", "deeplab_head_logits", "decoder_logits")


@dataclasses.dataclass(frozen=True)
class SegmentationWeights:
    """A published checkpoint of a whole segmenter (torchvision's ``*_Weights`` enums).

    Attributes:
        head: "fcn" or "deeplabv3"; backbone: "resnet50" or "resnet101".
        name: what ``weights=`` takes; checkpoint: the publisher's name for it.
        file: its :class:`~keras_resnet.weights.WeightFile` (a .pth: reading needs PyTorch).
        class_names: the 21 Pascal VOC classes (background first).
        miou, pixel_accuracy: % on COCO val2017 with VOC labels, as torchvision's meta states.
        resize_size: torchvision's eval transform resizes the shorter side to this.
        num_params: torchvision's meta (aux classifier included).
        license: the weights' licence.

    Example:
        >>> get("deeplabv3", "resnet50").miou
        66.4
    """

    head: str
    backbone: str
    name: str
    checkpoint: str
    file: WeightFile
    class_names: tuple
    miou: float
    pixel_accuracy: float
    resize_size: int
    num_params: int
    license: str = "BSD-3-Clause (torchvision)"
    accuracy_note: str = ("torchvision's weights meta: COCO-val2017-VOC-labels, shorter side "
                          "resized to 520")

    def build_options(self):
        """The backbone options the weights need: torchvision's variant, output stride 8."""
        return {**TORCH_VARIANT, "output_stride": 8}

    def preprocessing(self, image_size=None, classes=21):
        """ImageNet mean/std RGB in [0, 1] (torchvision's ``SemanticSegmentation``), the
        shorter side to 520; the VOC class names when ``classes`` is 21, else indices.

        Example:
            >>> get("fcn", "resnet50").preprocessing().class_names[1]
            'aeroplane'
        """
        size = image_size or (self.resize_size, self.resize_size)
        names = self.class_names if classes == len(self.class_names) else range(classes)
        return preprocessing_lib.imagenet(size, max(self.resize_size, *size), list(names),
                                          source=f"{self.head}_{self.backbone}_{self.name}")


def _torchvision(head, depth, file_name, miou, pixel_accuracy, num_params):
    enum = {"fcn": "FCN", "deeplabv3": "DeepLabV3"}[head] + f"_ResNet{depth}_Weights"
    # torchvision's file names carry the first hex digits of the file's sha256.
    prefix = file_name.rsplit("-", 1)[1].split(".")[0]
    return SegmentationWeights(
        head, f"resnet{depth}", SET_NAME, f"{enum}.COCO_WITH_VOC_LABELS_V1",
        WeightFile(f"https://download.pytorch.org/models/{file_name}", file_name,
                   sha256_prefix=prefix),
        VOC_CLASSES, miou, pixel_accuracy, 520, num_params)


# torchvision 0.28, models/segmentation/fcn.py and deeplabv3.py (the weights' meta).
SETS = (
    _torchvision("fcn", 50, "fcn_resnet50_coco-1167a1af.pth", 60.5, 91.4, 35322218),
    _torchvision("fcn", 101, "fcn_resnet101_coco-7ecb50ca.pth", 63.7, 91.9, 54314346),
    _torchvision("deeplabv3", 50, "deeplabv3_resnet50_coco-cd0a2569.pth", 66.4, 92.4, 42004074),
    _torchvision("deeplabv3", 101, "deeplabv3_resnet101_coco-586e9e4e.pth", 67.4, 92.4,
                 60996202),
)


def get(head, backbone, name=SET_NAME):
    """The weight set ``name`` of a ``head`` ("fcn", "deeplabv3") on ``backbone``.

    Example:
        >>> get("fcn", "resnet101").file.file_name
        'fcn_resnet101_coco-7ecb50ca.pth'
    """
    for weight_set in SETS:
        if (weight_set.head, weight_set.backbone, weight_set.name) == (head, backbone, name):
            return weight_set
    offered = ", ".join(f"{s.head} on {s.backbone}" for s in SETS)
    raise InvalidArgument(
        f"`weights={name!r}` names no published {head} weights on backbone {backbone!r}; "
        f"{SET_NAME!r} exists for {offered}. Pass None or a path to a state dict instead.")


def fetch(weight_set, cache_dir=None):
    """The tensors of ``weight_set`` (downloaded once, hash checked; reading needs PyTorch).

    Example:
        >>> tensors = fetch(get("fcn", "resnet50"))  # doctest: +SKIP
    """
    path = files.download(weight_set.file, cache_dir)
    return files.read(path)[0]


def head_module(layer_name, rates):
    """The torchvision module name of a head layer of ours, or None for other layers.

    Example:
        >>> head_module("aspp_pool_conv", 3)
        'classifier.0.convs.4.1'
    """
    if layer_name in _FIXED_HEAD_MODULES:
        return _FIXED_HEAD_MODULES[layer_name]
    if layer_name in ("aspp_pool_conv", "aspp_pool_conv_bn"):
        return f"classifier.0.convs.{rates + 1}.{1 if layer_name.endswith('conv') else 2}"
    match = _ASPP_BRANCH.match(layer_name)
    if match:
        return f"classifier.0.convs.{match[1]}.{1 if match[2] else 0}"
    return None


def head_slots(model):
    """The head variables of segmenter ``model`` with their state-dict names (torch layout).

    Example:
        >>> head_slots(keras_resnet.FCN("resnet18", output_stride=None))[0].key  # doctest: +SKIP
        'classifier.0.weight'
    """
    names = {layer.name for layer in model.layers}
    rates = sum(1 for name in names if _ASPP_BRANCH.match(name) and not name.endswith("_bn")) - 1
    slots = []
    for layer in model.layers:
        module = head_module(layer.name, rates)
        if module is None or not layer.weights:
            continue
        kind = "bn" if isinstance(layer, keras.layers.BatchNormalization) else "conv"
        torch_names = dict(layouts.PARAMS[kind])
        for attribute, torch_name in torch_names.items():
            variable = getattr(layer, attribute, None)
            if variable is not None:
                slots.append(layouts.Slot(variable, f"{module}.{torch_name}", kind, attribute,
                                          "torch"))
    return slots


def _first(names, count=4):
    names = sorted(names)
    more = f", ... ({len(names) - count} more)" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def _is_logits(key):
    return any(key.startswith(_FIXED_HEAD_MODULES[name] + ".") for name in LOGITS_LAYERS)


def _check_head(slots, tensors, source, model_name):
    """The head slots to set: raises on a missing, extra or mis-shaped tensor, except final
    1x1 convs whose class count differs (left fresh: fine-tuning to other classes)."""
    expected, given = {s.key for s in slots}, set(tensors)
    missing, extra = expected - given, given - expected
    if missing or extra:
        lines = [f"`weights` ({source}) do not fit segmenter {model_name!r}."]
        if missing:
            lines.append(f"Missing from the file ({len(missing)}): {_first(missing)}.")
        if extra:
            lines.append(f"In the file but not in the model ({len(extra)}): "
                         f"{_first(extra)}.")
        raise InvalidArgument(" ".join(lines + ["Another head or aux setting? Nothing was loaded."]))
    kept = []
    for slot in slots:
        found = tuple(np.shape(tensors[slot.key]))
        if found == slot.source_shape:
            kept.append(slot)
        elif not (_is_logits(slot.key) and found[1:] == slot.source_shape[1:]):
            raise InvalidArgument(
                f"`weights` ({source}) do not fit segmenter {model_name!r}: {slot.key} is "
                f"{found} in the file, {slot.source_shape} in the model. Nothing was loaded.")
    return kept


def _split(model, tensors):
    """``(backbone tensors without the prefix, head tensors)``; counters dropped, and the
    aux classifier's tensors when ``model`` has no aux head (torchvision trains with one)."""
    has_aux = any(layer.name.startswith("aux_head") for layer in model.layers)
    backbone, head = {}, {}
    for key, value in tensors.items():
        if key.endswith(layouts.TORCH_IGNORED):
            continue
        if key.startswith(BACKBONE_PREFIX):
            backbone[key[len(BACKBONE_PREFIX):]] = value
        elif has_aux or not key.startswith(AUX_PREFIX):
            head[key] = value
    return backbone, head


def load_state_dict(model, backbone, tensors, source="weights"):
    """Set ``model``'s weights from a torchvision segmentation state dict ``tensors``
    (``{name: array}``). ``backbone`` is the model's backbone as a model of its own (sharing
    its layers: ``keras_resnet.feature_extractor(model)``). Every name and shape is checked
    before any weight is set; final 1x1 convs of another class count stay fresh; a
    3-channel conv1 is adapted to the model's input channels. Returns ``model``.

    Example:
        >>> load_state_dict(model, feature_extractor(model), tensors)  # doctest: +SKIP
    """
    backbone_tensors, head_tensors = _split(model, tensors)
    kept = _check_head(head_slots(model), head_tensors, source, model.name)
    layouts.load_tensors(backbone, backbone_tensors, "torch", source=source)  # checks, then sets
    for slot in kept:
        slot.assign(head_tensors[slot.key])
    return model


def state_dict(model, backbone):
    """``model``'s weights as a torchvision segmentation state dict (``{name: array}``, torch
    layouts; no BN counters): what :func:`load_state_dict` reads.

    Example:
        >>> sorted(state_dict(model, feature_extractor(model)))[0]  # doctest: +SKIP
        'aux_classifier.0.weight'
    """
    return layouts.head_state_dict(backbone, BACKBONE_PREFIX, head_slots(model))
