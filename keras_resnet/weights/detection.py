"""torchvision's RetinaNet weights: the published COCO sets as data, and the map between a
detector's layers (:mod:`keras_resnet.heads.detection`) and torchvision's state-dict names.

torchvision's names (``retinanet_resnet50_fpn``; ``_v2`` adds GroupNorm as ``conv.{i}.1``),
ours on the left:

- the backbone (``conv1`` .. ``conv5``): ``backbone.body.*`` (torchvision's ResNet names);
- ``fpn_lateral{3,4,5}``: ``backbone.fpn.inner_blocks.{0,1,2}.0``;
- ``fpn_output{3,4,5}``: ``backbone.fpn.layer_blocks.{0,1,2}.0``;
- ``fpn_p6``, ``fpn_p7``: ``backbone.fpn.extra_blocks.p6``, ``.p7``;
- ``cls_conv{1..4}`` (``_gn``): ``head.classification_head.conv.{0..3}.0`` (``.1``);
- ``cls_predict``: ``head.classification_head.cls_logits``;
- ``box_conv{1..4}`` (``_gn``): ``head.regression_head.conv.{0..3}.0`` (``.1``);
- ``box_predict``: ``head.regression_head.bbox_reg``.

Files written before torchvision's version 2 of these modules name the FPN's convs
``inner_blocks.{i}.weight`` and the subnets' ``conv.{2i}.weight`` (a Sequential of convs and
ReLUs); :func:`current_names` renames them, as torchvision's ``_load_from_state_dict`` does.

Example:
    >>> current_names({"head.classification_head.conv.2.weight": 0})
    {'head.classification_head.conv.1.0.weight': 0}
"""

import dataclasses
import re

import keras
import numpy as np

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument
from keras_resnet.weights import files, layouts
from keras_resnet.weights.sets import TORCH_VARIANT, WeightFile

BACKBONE_PREFIX = "backbone.body."
SET_NAME = "torchvision_coco"
_FIXED = {"fpn_p6": "backbone.fpn.extra_blocks.p6", "fpn_p7": "backbone.fpn.extra_blocks.p7",
          "cls_predict": "head.classification_head.cls_logits",
          "box_predict": "head.regression_head.bbox_reg"}
_PATTERNS = (
    (re.compile(r"^fpn_lateral([345])$"), lambda m: f"backbone.fpn.inner_blocks.{int(m[1]) - 3}.0"),
    (re.compile(r"^fpn_output([345])$"), lambda m: f"backbone.fpn.layer_blocks.{int(m[1]) - 3}.0"),
    (re.compile(r"^(cls|box)_conv([1-4])(_gn)?$"),
     lambda m: f"head.{'classification' if m[1] == 'cls' else 'regression'}_head.conv."
               f"{int(m[2]) - 1}.{1 if m[3] else 0}"),
)
_OLD_FPN = re.compile(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$")
_OLD_HEAD = re.compile(r"^(head\.(?:classification|regression)_head\.conv)\.(\d+)\.(weight|bias)$")
LOGITS = ("head.classification_head.cls_logits.",)
# COCO's 80 classes at torchvision's 91 indices ("N/A": unused; 0 is "__background__").
COCO_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


@dataclasses.dataclass(frozen=True)
class DetectionWeights:
    """A published checkpoint of a whole RetinaNet (torchvision's ``*_Weights`` enums).

    Attributes:
        backbone: "resnet50"; version: 1 or 2; name: what ``weights=`` takes;
        checkpoint: the publisher's name; file: its :class:`~keras_resnet.weights.WeightFile`
        (a .pth: reading needs PyTorch); box_map: COCO val2017 box mAP as torchvision's meta
        states; num_params: torchvision's meta; bn_epsilon: the backbone's (version 1's
        frozen batch norms: 0, as torchvision's ``overwrite_eps``).

    Example:
        >>> get("resnet50", 2).box_map
        41.5
    """

    backbone: str
    version: int
    name: str
    checkpoint: str
    file: WeightFile
    box_map: float
    num_params: int
    bn_epsilon: float
    min_size: int = 800
    max_size: int = 1333
    license: str = "BSD-3-Clause (torchvision)"

    def build_options(self):
        """torchvision's backbone variant, with the weights' BN epsilon."""
        return {**TORCH_VARIANT, "bn_epsilon": self.bn_epsilon}

    def preprocessing(self, classes=91):
        """ImageNet mean/std RGB in [0, 1] (torchvision's ``GeneralizedRCNNTransform``),
        shorter side 800; COCO's names at torchvision's indices when ``classes`` is 91.

        Example:
            >>> get("resnet50", 1).preprocessing().class_names[1]
            'person'
        """
        names = COCO_CATEGORIES if classes == len(COCO_CATEGORIES) else range(classes)
        return preprocessing_lib.imagenet((self.min_size, self.min_size), self.min_size,
                                          [str(n) for n in names],
                                          source=f"retinanet_v{self.version}_{self.name}")


def _torchvision(version, file_name, box_map, num_params, bn_epsilon):
    enum = "RetinaNet_ResNet50_FPN" + ("_V2" if version == 2 else "") + "_Weights"
    prefix = file_name.rsplit("-", 1)[1].split(".")[0]  # the file's sha256, its first digits
    return DetectionWeights(
        "resnet50", version, SET_NAME, f"{enum}.COCO_V1",
        WeightFile(f"https://download.pytorch.org/models/{file_name}", file_name,
                   sha256_prefix=prefix), box_map, num_params, bn_epsilon)


# torchvision 0.28, models/detection/retinanet.py (the weights' meta).
SETS = (
    _torchvision(1, "retinanet_resnet50_fpn_coco-eeacb38b.pth", 36.4, 34014999, 0.0),
    _torchvision(2, "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", 41.5, 38198935, 1e-5),
)


def get(backbone, version=1, name=SET_NAME):
    """The weight set ``name`` of RetinaNet ``version`` on ``backbone``.

    Example:
        >>> get("resnet50").file.file_name
        'retinanet_resnet50_fpn_coco-eeacb38b.pth'
    """
    for weight_set in SETS:
        if (weight_set.backbone, weight_set.version, weight_set.name) == (backbone, version, name):
            return weight_set
    raise InvalidArgument(
        f"`weights={name!r}` names no published RetinaNet version {version} on backbone "
        f"{backbone!r}; {SET_NAME!r} exists for resnet50, versions 1 and 2. Pass None or a "
        "path to a state dict instead.")


def fetch(weight_set, cache_dir=None):
    """The tensors of ``weight_set`` (downloaded once, hash checked; reading needs PyTorch).

    Example:
        >>> tensors = fetch(get("resnet50"))  # doctest: +SKIP
    """
    return files.read(files.download(weight_set.file, cache_dir))[0]


def current_names(tensors):
    """``tensors`` with the names of torchvision's first key version renamed to the current
    one (FPN ``inner_blocks.0.weight`` -> ``inner_blocks.0.0.weight``, subnet
    ``conv.2.weight`` -> ``conv.1.0.weight``); other names unchanged."""
    renamed = {}
    for key, value in tensors.items():
        key = _OLD_FPN.sub(r"\1.0.\2", key)
        old = _OLD_HEAD.match(key)
        if old:
            key = f"{old[1]}.{int(old[2]) // 2}.0.{old[3]}"
        renamed[key] = value
    return renamed


def module_of(layer_name):
    """torchvision's module name of a detector layer of ours; None for backbone layers.

    Example:
        >>> module_of("box_conv2_gn")
        'head.regression_head.conv.1.1'
    """
    if layer_name in _FIXED:
        return _FIXED[layer_name]
    for pattern, name in _PATTERNS:
        match = pattern.match(layer_name)
        if match:
            return name(match)
    return None


def head_slots(model):
    """The FPN and subnet variables of detector ``model`` with their state-dict names."""
    slots = []
    for layer in model.layers:
        module = module_of(layer.name)
        if module is None or not layer.weights:
            continue
        norm = isinstance(layer, keras.layers.GroupNormalization)
        for attribute, torch_name in layouts.PARAMS["bn" if norm else "conv"]:
            variable = getattr(layer, attribute, None)
            if variable is not None:
                slots.append(layouts.Slot(variable, f"{module}.{torch_name}",
                                          "bn" if norm else "conv", attribute, "torch"))
    return slots


def _split(tensors):
    body, head = {}, {}
    for key, value in current_names(tensors).items():
        if key.endswith(layouts.TORCH_IGNORED):
            continue
        if key.startswith(BACKBONE_PREFIX):
            body[key[len(BACKBONE_PREFIX):]] = value
        else:
            head[key] = value
    return body, head


def _kept_head_slots(slots, tensors, source, model_name):
    expected, given = {s.key for s in slots}, set(tensors)
    if expected != given:
        missing, extra = sorted(expected - given), sorted(given - expected)
        raise InvalidArgument(
            f"`weights` ({source}) do not fit detector {model_name!r}: missing from the file "
            f"{missing[:3]}{' ...' if len(missing) > 3 else ''} ({len(missing)}), not in the "
            f"model {extra[:3]}{' ...' if len(extra) > 3 else ''} ({len(extra)}). Another "
            "version or head width? Nothing was loaded.")
    kept = []
    for slot in slots:
        found = tuple(np.shape(tensors[slot.key]))
        if found == slot.source_shape:
            kept.append(slot)
        elif not (slot.key.startswith(LOGITS) and found[1:] == slot.source_shape[1:]):
            raise InvalidArgument(
                f"`weights` ({source}) do not fit detector {model_name!r}: {slot.key} is "
                f"{found} in the file, {slot.source_shape} in the model. Nothing was loaded.")
    return kept


def load_state_dict(model, backbone, tensors, source="weights"):
    """Set detector ``model``'s weights from a torchvision RetinaNet state dict ``tensors``;
    ``backbone``: its backbone as a model sharing its layers (``feature_extractor(model)``).
    Every name and shape is checked before any weight is set; class logits of another class
    count stay fresh. Returns ``model``.

    Example:
        >>> load_state_dict(model, feature_extractor(model), tensors)  # doctest: +SKIP
    """
    body, head = _split(tensors)
    kept = _kept_head_slots(head_slots(model), head, source, model.name)
    layouts.load_tensors(backbone, body, "torch", source=source)  # checks, then sets
    for slot in kept:
        slot.assign(head[slot.key])
    return model


def state_dict(model, backbone):
    """Detector ``model``'s weights as a torchvision RetinaNet state dict (``{name: array}``,
    torch layouts, no BN counters): what :func:`load_state_dict` reads.

    Example:
        >>> sorted(state_dict(model, feature_extractor(model)))[0]  # doctest: +SKIP
        'backbone.body.bn1.bias'
    """
    return layouts.head_state_dict(backbone, BACKBONE_PREFIX, head_slots(model))
