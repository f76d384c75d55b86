"""RetinaNet on any keras_resnet backbone (Lin et al. 2017; torchvision's
``retinanet_resnet50_fpn`` (version 1) and ``retinanet_resnet50_fpn_v2`` (version 2), the same
computation).

:func:`RetinaNet` reads the backbone's last three stages (C3..C5: conv3..conv5 of an ImageNet
net, conv2..conv4 of a CIFAR net), builds the pyramid P3..P7 and the two subnets
(:mod:`keras_resnet.heads.detection`), and returns either the detections
(:class:`~keras_resnet.heads.postprocess.DetectionPostprocess`: ``{"boxes", "scores",
"classes", "num_detections"}``) or, with ``raw_outputs=True``, ``{"cls_logits",
"bbox_regression", "anchors"}`` over every anchor in torchvision's order (level, cell, anchor)
and box format. :func:`raw_model`, :func:`detections_model` and :func:`training_model` switch
between them (layers shared). The model carries ``Task("detection", classes, "sigmoid")``.

Example:
    >>> model = RetinaNet("resnet18", classes=3, head_width=16, input_shape=(64, 64, 3))
    >>> tuple(model.output["boxes"].shape)
    (None, 300, 4)
"""

import keras

from keras_resnet import boxes, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument, InvalidType, check_choice, check_positive_int
from keras_resnet.features import feature_extractor, feature_info
from keras_resnet.heads import backbones, detection, postprocess
from keras_resnet.weights import detection as det_weights
from keras_resnet.weights import files

RAW_OUTPUTS = ("cls_logits", "bbox_regression", "anchors")
HEAD_OPTIONS = ("name", "head_width", "anchor_sizes")
POSTPROCESS_OPTIONS = ("score_threshold", "topk_candidates", "nms_threshold", "max_detections")
DEFAULT_WIDTH = 256  # torchvision's FPN and subnets


def _reductions(network, stages):
    info = {i["name"]: i["reduction"] for i in feature_info(network)}
    c5 = info[stages[-1]]
    return [info[s] for s in stages] + [2 * c5, 4 * c5]


def _checked_anchor_sizes(sizes, levels):
    if (not isinstance(sizes, (list, tuple)) or len(sizes) != levels
            or not all(isinstance(s, (list, tuple)) and s for s in sizes)
            or len({len(s) for s in sizes}) != 1):
        raise InvalidArgument(f"`anchor_sizes` must be {levels} tuples (P3..P7) of the same "
                              f"length; got {sizes!r}.")
    return tuple(tuple(int(v) for v in s) for s in sizes)


def _weight_set(backbone, version, weights):
    if weights is None or isinstance(weights, dict) or (
            isinstance(weights, str) and weights.endswith(files.SUFFIXES)):
        return None
    if not isinstance(weights, str):
        raise InvalidType(f"`weights` must be None, {det_weights.SET_NAME!r}, a path or a "
                          f"state dict; got "
                          f"{type(weights).__name__}.")
    return det_weights.get(backbone if isinstance(backbone, str) else backbone.name, version,
                           weights)


def _network(backbone, input_shape, options, weight_set):
    if not isinstance(backbone, (str, keras.Model)):
        raise InvalidType(f"`backbone` must be a model name or a keras_resnet model; got "
                          f"{type(backbone).__name__}.")
    if isinstance(backbone, str):
        if weight_set is not None:
            options = {**options, **weight_set.build_options()}
        return backbones.named_backbone(backbone, None, input_shape, options)
    if weight_set is not None:
        raise InvalidArgument(f"`weights={weight_set.name!r}` build their own backbone; pass "
                              f"backbone={weight_set.backbone!r} (a name), not a model.")
    network = backbones.given_backbone(backbone, None, input_shape, options)
    if feature_info(network)[-1]["reduction"] < 2 * feature_info(network)[-2]["reduction"]:
        raise InvalidArgument(f"`backbone` {network.name!r} is dilated; RetinaNet reads C3..C5 "
                              "at strides doubling (build it without output_stride).")
    return network


def _preprocessing(network, weight_set, classes):
    if weight_set is not None:
        return weight_set.preprocessing(classes).for_channels(network.input_shape[-1])
    current = preprocessing_lib.of(network)
    return None if current is None else current.with_class_names([str(i) for i in range(classes)])


def RetinaNet(backbone="resnet50", classes=91, version=1, weights=None, raw_outputs=False,
              input_shape=None, **options):
    """RetinaNet (Lin et al. 2017) on a keras_resnet backbone, torchvision's layout.

    Args:
        backbone: a name of ``keras_resnet.list_models()`` or a keras_resnet model (its
            weights copied, its classifier unused).
        classes: object classes ``K`` (91: torchvision's COCO indices, 0 and the gaps
            unused). No background class: each class has its sigmoid.
        version: 1 (``retinanet_resnet50_fpn``: P6 from P5, L1 box loss) or 2 (``_v2``:
            P6 from C5, GroupNorm in the subnets, GIoU box loss).
        weights: None, "torchvision_coco" (torchvision's COCO_V1 weights of the version, for
            resnet50; a .pth file: needs PyTorch) or a state-dict path (:func:`load_weights`);
            another class count keeps everything but the class logits.
        raw_outputs: return ``{"cls_logits", "bbox_regression", "anchors"}`` instead of the
            detections.
        input_shape: ``(height, width, channels)``; default ``(None, None, 3)``, any size.
        **options: ``head_width`` (256), ``anchor_sizes`` (five tuples; default 4x each
            level's reduction times 2^0, 2^(1/3), 2^(2/3)), ``score_threshold`` (0.05),
            ``topk_candidates`` (1000), ``nms_threshold`` (0.5), ``max_detections`` (300),
            ``name``; any other option goes to the backbone's constructor.

    Returns:
        A functional ``keras.Model`` from images (as its ``ImagePreprocessing`` says) to the
        detections: boxes ``(x1, y1, x2, y2)`` in input pixels.

    Example:
        >>> RetinaNet("resnet20", classes=10, head_width=32).name
        'retinanet_resnet20'
    """
    check_positive_int("classes", classes)
    check_choice("version", version, detection.VERSIONS)
    if not isinstance(raw_outputs, bool):
        raise InvalidArgument(f"`raw_outputs` must be True or False; got {raw_outputs!r}.")
    head = {k: options.pop(k) for k in HEAD_OPTIONS if k in options}
    settings = {k: options.pop(k) for k in POSTPROCESS_OPTIONS if k in options}
    weight_set = _weight_set(backbone, version, weights)
    tensors = det_weights.fetch(weight_set) if weight_set is not None else None
    network = _network(backbone, input_shape, options, weight_set)
    stages = [info["name"] for info in feature_info(network)][-3:]
    sizes = head.get("anchor_sizes") or boxes.anchor_sizes(_reductions(network, stages))
    sizes = _checked_anchor_sizes(sizes, len(detection.LEVELS))
    width = head.get("head_width", DEFAULT_WIDTH)
    check_positive_int("head_width", width)
    if version == 2 and width % detection.GROUPS:
        raise InvalidArgument(f"`head_width` must be a multiple of {detection.GROUPS} for "
                              f"version 2's GroupNorm; got {width}.")
    task = tasks.TaskLayer(**tasks.Task("detection", classes, "sigmoid").to_config())
    inputs, features = backbones.stage_outputs_with_task(
        network, stages, task, _preprocessing(network, weight_set, classes))
    pyramid = detection.feature_pyramid([features[s] for s in stages], width, version)
    class_logits, box_deltas = detection.retina_subnets(
        pyramid, classes, len(boxes.cell_anchors(sizes[0])), width, version)
    anchors = [detection.LevelAnchors(s, name=f"anchors{level}", dtype=detection.OUTPUT_DTYPE)(
        [inputs, p])
               for level, s, p in zip(detection.LEVELS, sizes, pyramid)]
    name = head.get("name") or f"retinanet{'_v2' if version == 2 else ''}_{network.name}"
    model = keras.Model(inputs, _raw(class_logits, box_deltas, anchors), name=name)
    if not raw_outputs:
        model = detections_model(model, **settings)
    elif settings:
        raise InvalidArgument(f"{sorted(settings)} set the detections; raw_outputs=True "
                              "returns none.")
    if weight_set is not None:
        return load_weights(model, tensors, source=weight_set.checkpoint)
    return load_weights(model, weights)


def _raw(class_logits, box_deltas, anchors):
    return {key: keras.layers.Concatenate(axis=1, name=key, dtype=detection.OUTPUT_DTYPE)(parts)
            for key, parts in zip(RAW_OUTPUTS, (class_logits, box_deltas, anchors))}


def _levels(model):
    """``(class_logits, box_deltas, anchors)`` per level, from the layers of detector
    ``model``."""
    try:
        return tuple([model.get_layer(f"{kind}{level}").output for level in detection.LEVELS]
                     for kind in ("cls_flat", "box_flat", "anchors"))
    except ValueError:
        raise InvalidArgument(f"Model {model.name!r} is not a keras_resnet RetinaNet (it has "
                              "no layers cls_flat3 .. anchors7).") from None


def raw_model(model):
    """Detector ``model`` returning ``{"cls_logits", "bbox_regression", "anchors"}`` (layers
    shared).

    Example:
        >>> sorted(raw_model(RetinaNet("resnet20", 3, head_width=32)).output)
        ['anchors', 'bbox_regression', 'cls_logits']
    """
    _check_model(model)
    if isinstance(model.output, dict) and set(model.output) == set(RAW_OUTPUTS):
        return model
    return keras.Model(model.input, _raw(*_levels(model)), name=model.name)


def detections_model(model, **settings):
    """Detector ``model`` returning its detections (``settings``: those of
    :class:`~keras_resnet.heads.postprocess.DetectionPostprocess`; layers shared).

    Example:
        >>> model = detections_model(RetinaNet("resnet20", 3, head_width=32), max_detections=5)
        >>> tuple(model.output["scores"].shape)
        (None, 5)
    """
    _check_model(model)
    unknown = sorted(set(settings) - set(POSTPROCESS_OPTIONS))
    if unknown:
        raise InvalidArgument(f"Unknown detection setting(s) {unknown}; allowed: "
                              f"{', '.join(POSTPROCESS_OPTIONS)}.")
    class_logits, box_deltas, anchors = _levels(model)
    outputs = postprocess.DetectionPostprocess(**settings, name="detections",
                                               dtype=detection.OUTPUT_DTYPE)(
        [model.input, class_logits, box_deltas, anchors])
    return keras.Model(model.input, outputs, name=model.name)


def training_model(model):
    """Detector ``model`` returning one tensor ``(batch, N, K + 8)``: class logits, box
    deltas and anchors of every anchor, what :class:`keras_resnet.detection_losses.RetinaNetLoss`
    reads (layers shared: training it trains ``model``).

    Example:
        >>> training_model(RetinaNet("resnet20", 3, head_width=32)).output_shape
        (None, None, 11)
    """
    raw = raw_model(model).output
    packed = keras.layers.Concatenate(axis=-1, name="packed", dtype=detection.OUTPUT_DTYPE)(
        [raw[k] for k in RAW_OUTPUTS])
    return keras.Model(model.input, packed, name=model.name)


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")


def load_weights(model, weights, source=None):
    """Load a torchvision RetinaNet state dict into detector ``model`` and return it:
    ``weights`` is None (nothing), a dict ``{name: array}`` or a path (``.safetensors``,
    ``.npz``, ``.pth`` through PyTorch where installed; a ``.weights.h5`` of this model goes
    through ``model.load_weights``). Both key versions torchvision has written are read;
    class logits of another class count stay fresh.

    Example:
        >>> load_weights(RetinaNet(), "retinanet_resnet50_fpn_coco.pth")  # doctest: +SKIP
    """
    if weights is None:
        return model
    tensors = files.head_state_dict(model, weights, "detector")
    if tensors is None:  # a .weights.h5 of this model, loaded
        return model
    return det_weights.load_state_dict(model, feature_extractor(model), tensors,
                                       source=source or ("state dict" if isinstance(
                                           weights, dict) else str(weights)))


def state_dict(model):
    """Detector ``model``'s weights as a torchvision RetinaNet state dict (``{name: numpy
    array}``, the current key version): what :func:`load_weights` reads.

    Example:
        >>> sorted(state_dict(RetinaNet("resnet18", 3, head_width=32)))[0]
        'backbone.body.bn1.bias'
    """
    _check_model(model)
    return det_weights.state_dict(model, feature_extractor(model))
