"""Semantic-segmentation models on any keras_resnet backbone: :func:`FCN`, :func:`DeepLabV3`
(torchvision's ``fcn_resnet*`` / ``deeplabv3_resnet*``, the same computation) and
:func:`DeepLabV3Plus` (Chen et al. 2018).

Each is a functional model from images to per-pixel logits at the input size (bilinear,
half-pixel centres: torchvision's ``interpolate(..., align_corners=False)``); with
``aux=True`` torchvision's auxiliary FCN head on the stage before the last (conv4) adds a
second output, and the model returns ``{"out": logits, "aux": aux_logits}`` (for training;
:func:`without_aux` drops it for export). The model carries its ``Task("segmentation", classes, "linear")`` in a
``TaskLayer`` right after the backbone's ``ImagePreprocessing``, which it keeps.

Example:
    >>> model = FCN("resnet18", classes=3, output_stride=None, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 64, 64, 3)
"""

import keras

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet import tasks
from keras_resnet.errors import InvalidArgument, InvalidType, check_positive_int
from keras_resnet.features import feature_extractor, feature_info
from keras_resnet.heads import backbones
from keras_resnet.heads import segmentation as heads
from keras_resnet.weights import files
from keras_resnet.weights import segmentation as seg_weights

KINDS = ("fcn", "deeplabv3", "deeplabv3plus")
# Options of the heads; every other option goes to the backbone's constructor.
HEAD_OPTIONS = {"fcn": ("name",), "deeplabv3": ("name", "head_width", "atrous_rates"),
                "deeplabv3plus": ("name", "head_width", "atrous_rates")}
# The heads read the backbone's last stage (conv5 of an ImageNet net, conv4 of a CIFAR net),
# the aux head the stage before it, DeepLabV3+'s decoder the first residual stage too (conv2:
# a quarter of the last stage's resolution at output stride 16 on ImageNet nets, and on CIFAR
# nets at their own stride 4).
LOW_LEVEL_STAGE = "conv2"


def head_stages(network):
    """``(last, before last)`` stage names of backbone ``network``: what the heads and the
    aux head read.

    Example:
        >>> head_stages(keras_resnet.ResNet20(include_top=False))
        ('conv4', 'conv3')
    """
    names = [info["name"] for info in feature_info(network)]
    return names[-1], names[-2]


def _check_weight_set_options(weight_set, backbone, output_stride, options):
    """Raise (before any download) unless the arguments fit the published ``weight_set``."""
    if not isinstance(backbone, str):
        raise InvalidArgument(f"`weights={weight_set.name!r}` build their own backbone; pass "
                              f"backbone={weight_set.backbone!r} (a name), not a model.")
    for option, required in weight_set.build_options().items():
        given = output_stride if option == "output_stride" else options.get(option, required)
        if given != required:
            raise InvalidArgument(f"`weights={weight_set.name!r}` ({weight_set.checkpoint}) "
                                  f"need `{option}={required!r}`; got {given!r}.")



def _head_settings(network):
    """The backbone's BN epsilon and momentum (the heads use the same)."""
    for layer in network.layers:
        norm = layer if isinstance(layer, keras.layers.BatchNormalization) else getattr(
            layer, "bn1", None)
        if isinstance(norm, keras.layers.BatchNormalization):
            return heads.HeadSettings(norm.epsilon, norm.momentum)
    return heads.HeadSettings()


def _logits(kind, high, low, classes, settings, options, output_stride):
    if kind == "fcn":
        return heads.fcn_head(high, classes, "fcn_head", settings)
    width = options.get("head_width", heads.DEFAULT_WIDTH)
    rates = options.get("atrous_rates")
    rates = heads.atrous_rates(output_stride) if rates is None else tuple(rates)
    if kind == "deeplabv3":
        return heads.deeplab_head(high, classes, rates, width, "deeplab_head", settings)
    return heads.deeplabv3plus_decoder(high, low, classes, rates, width, "decoder", settings)


def _check_arguments(kind, backbone, classes, aux, options):
    check_positive_int("classes", classes)
    if not isinstance(aux, bool):
        raise InvalidArgument(f"`aux` must be True or False; got {aux!r}.")
    if not isinstance(backbone, (str, keras.Model)):
        raise InvalidType(f"`backbone` must be a model name or a keras_resnet model; got "
                          f"{type(backbone).__name__}.")
    head_options = [o for o in ("head_width", "atrous_rates") if o in options]
    if head_options and head_options[0] not in HEAD_OPTIONS[kind]:
        raise InvalidArgument(f"`{head_options[0]}` is a DeepLab option; {kind}'s head has none.")


def _weight_set(kind, backbone, weights):
    """The published set ``weights`` names, or None for None and paths."""
    if not isinstance(weights, str) or weights.endswith(files.SUFFIXES):
        if weights is not None and not isinstance(weights, str):
            raise InvalidType(f"`weights` must be None, {seg_weights.SET_NAME!r} or a path; got "
                              f"{type(weights).__name__}.")
        return None
    return seg_weights.get(kind, backbone if isinstance(backbone, str) else backbone.name, weights)


def segmenter(kind, backbone="resnet50", classes=21, weights=None, aux=False, output_stride=8,
              input_shape=None, **options):
    """A segmentation model of ``kind`` ("fcn", "deeplabv3", "deeplabv3plus"); arguments as
    :func:`FCN`.

    Example:
        >>> segmenter("fcn", "resnet18", 3, output_stride=None).name
        'fcn_resnet18'
    """
    if kind not in KINDS:
        raise InvalidArgument(f"`kind` must be one of {KINDS}; got {kind!r}.")
    _check_arguments(kind, backbone, classes, aux, options)
    head_options = {k: options.pop(k) for k in HEAD_OPTIONS[kind] if k in options}
    weight_set = _weight_set(kind, backbone, weights)
    tensors = None
    if weight_set is not None:
        _check_weight_set_options(weight_set, backbone, output_stride, options)
        tensors = seg_weights.fetch(weight_set)
    if isinstance(backbone, str):
        if weight_set is not None:  # the weights fix the variant and the output stride
            options = {**options, **weight_set.build_options()}
        network = backbones.named_backbone(
            backbone, None if weight_set is not None else output_stride, input_shape, options)
    else:
        network = backbones.given_backbone(backbone, output_stride, input_shape, options)
    last, before_last = head_stages(network)
    own_stride = feature_info(network)[-1]["reduction"]
    task = tasks.TaskLayer(**tasks.Task("segmentation", classes, "linear").to_config())
    preprocessing = _preprocessing(network, weight_set, classes)
    stages = (last,) + ((LOW_LEVEL_STAGE,) if kind == "deeplabv3plus" else ()) + (
        (before_last,) if aux else ())
    inputs, features = backbones.stage_outputs_with_task(network, stages, task, preprocessing)
    settings = _head_settings(network)
    logits = _logits(kind, features[last], features.get(LOW_LEVEL_STAGE), classes, settings,
                     head_options, own_stride)
    outputs = heads.ResizeLike(name="out")([logits, inputs])
    if aux:
        aux_logits = heads.fcn_head(features[before_last], classes, "aux_head", settings)
        outputs = {"out": outputs, "aux": heads.ResizeLike(name="aux")([aux_logits, inputs])}
    name = head_options.get("name") or f"{kind}_{network.name}"
    model = keras.Model(inputs, outputs, name=name)
    if weight_set is not None:
        return load_weights(model, tensors, source=weight_set.checkpoint)
    return load_weights(model, weights)


def _preprocessing(network, weight_set, classes):
    if weight_set is not None:
        size = tuple(network.input_shape[1:3])
        return weight_set.preprocessing(None if None in size else size, classes).for_channels(
            network.input_shape[-1])
    current = preprocessing_lib.of(network)
    return None if current is None else current.with_class_names([str(i) for i in range(classes)])


def load_weights(model, weights, source=None):
    """Load a torchvision segmentation state dict into segmenter ``model`` and return it:
    ``weights`` is None (nothing), a dict ``{name: array}`` or a path (``.safetensors``,
    ``.npz``, ``.pth``/``.pt`` through PyTorch where installed; a ``.weights.h5`` of this
    model goes through ``model.load_weights``). Names follow torchvision's ``FCN`` /
    ``DeepLabV3`` (``backbone.*``, ``classifier.*``, ``aux_classifier.*``, the latter ignored
    by a model without aux head); final 1x1 convs of another class count stay fresh.

    Example:
        >>> load_weights(FCN("resnet50", classes=5), "fcn_resnet50_coco.pth")  # doctest: +SKIP
    """
    if weights is None:
        return model
    tensors = files.head_state_dict(model, weights, "segmenter")
    if tensors is None:  # a .weights.h5 of this model, loaded
        return model
    return seg_weights.load_state_dict(model, feature_extractor(model), tensors,
                                       source=source or str(weights if not isinstance(
                                           weights, dict) else "state dict"))


def state_dict(model):
    """Segmenter ``model``'s weights as a torchvision state dict ``{name: numpy array}``
    (what :func:`load_weights` reads; ``safetensors.numpy.save_file`` writes it).

    Example:
        >>> sorted(state_dict(FCN("resnet18", output_stride=None)))[0]
        'backbone.bn1.bias'
    """
    return seg_weights.state_dict(model, feature_extractor(model))


def without_aux(model):
    """``model`` without its auxiliary head: the ``"out"`` logits alone (for export and
    inference; the aux head only helps training). Layers and weights are shared; a model
    without aux head is returned as it is.

    Example:
        >>> without_aux(FCN("resnet18", aux=True, output_stride=None)).output_shape
        (None, None, None, 21)
    """
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")
    if not isinstance(model.output, dict):
        return model
    if "out" not in model.output:
        raise InvalidArgument(f"Model {model.name!r} has outputs {sorted(model.output)}; a "
                              "segmenter's are 'out' and 'aux'.")
    return keras.Model(model.input, model.output["out"], name=model.name)


def FCN(backbone="resnet50", classes=21, weights=None, aux=False, output_stride=8,
        input_shape=None, **options):
    """torchvision's FCN (Long et al. 2015; ``fcn_resnet50``): ``FCNHead`` on the last stage
    (conv5) of a dilated backbone, logits resized to the input.

    Args:
        backbone: a name of ``keras_resnet.list_models()`` (an ImageNet ResNet, a family
            member or a CIFAR net, whose heads read conv4 and aux head conv3) or a
            keras_resnet model (its weights copied; its own classifier unused).
        classes: logits per pixel (21: Pascal VOC with background).
        weights: None, "torchvision_coco_voc" (torchvision's COCO_WITH_VOC_LABELS_V1, for
            resnet50/101; a .pth file: needs PyTorch) or a state-dict path (:func:`load_weights`).
        aux: add torchvision's auxiliary FCN head on conv4 (the stage before the last):
            outputs ``{"out", "aux"}``.
        output_stride: 8 (torchvision's), 16 or 32 (dilating the later stages); None keeps
            the backbone's own (a CIFAR net's: 4).
        input_shape: ``(height, width, channels)``; default ``(None, None, 3)``, any size.
        **options: ``name``; any other option goes to the backbone's constructor.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> FCN("resnet18", classes=3, output_stride=16).name
        'fcn_resnet18'
    """
    return segmenter("fcn", backbone, classes, weights, aux, output_stride, input_shape,
                     **options)


def DeepLabV3(backbone="resnet50", classes=21, weights=None, aux=False, output_stride=8,
              input_shape=None, **options):
    """torchvision's DeepLabV3 (Chen et al. 2017; ``deeplabv3_resnet50``): ``DeepLabHead``
    (ASPP with rates 12/24/36 at output stride 8, 6/12/18 at 16) on conv5.

    Args:
        backbone, classes, weights, aux, output_stride, input_shape: as :func:`FCN`.
        **options: ``head_width`` (ASPP and head channels, default 256), ``atrous_rates``
            (default :func:`keras_resnet.heads.segmentation.atrous_rates`), ``name``; any
            other option goes to the backbone's constructor.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> DeepLabV3("resnet18", classes=3, head_width=32).name
        'deeplabv3_resnet18'
    """
    return segmenter("deeplabv3", backbone, classes, weights, aux, output_stride, input_shape,
                     **options)


def DeepLabV3Plus(backbone="resnet50", classes=21, weights=None, aux=False, output_stride=16,
                  input_shape=None, **options):
    """DeepLabV3+ (Chen et al. 2018): ASPP on conv5 and a decoder that refines it with conv2.
    No torchvision counterpart: ``weights`` is None or a state dict of our own layout
    (:func:`state_dict`: ``backbone.*``, ``classifier.0.*`` the ASPP, ``decoder.*``).

    Args:
        backbone, classes, aux, input_shape, **options: as :func:`DeepLabV3`.
        output_stride: 16 (the paper's training setting), 8 or 32.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> DeepLabV3Plus("resnet18", classes=3, head_width=32).name
        'deeplabv3plus_resnet18'
    """
    return segmenter("deeplabv3plus", backbone, classes, weights, aux, output_stride,
                     input_shape, **options)
