"""The backbone of a task head: a keras_resnet model by name or built already, and its stage
outputs copied into the head's model with the head's Task (segmenters and detectors share
these).

Example:
    >>> network = named_backbone("resnet18", None, None, {})
    >>> inputs, features = stage_outputs_with_task(
    ...     network, ["conv5"], tasks.TaskLayer(**tasks.Task("segmentation", 3, "linear").to_config()), None)
    >>> tuple(features["conv5"].shape)
    (None, None, None, 512)
"""

import keras

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet import tasks
from keras_resnet.errors import InvalidArgument
from keras_resnet.features import feature_extractor, feature_info
from keras_resnet.models import MODEL_NAMES, close_match, get_model, parse_model_name


def check_backbone_name(backbone):
    """Raise unless ``backbone`` is a model name of ``keras_resnet.list_models()``.

    Example:
        >>> check_backbone_name("resnet50")
    """
    try:
        parse_model_name(backbone)
    except InvalidArgument:
        raise InvalidArgument(
            f"`backbone` must be a model name of keras_resnet.list_models() or a keras_resnet "
            f"model; got {backbone!r}{close_match(backbone, MODEL_NAMES)}.") from None


def is_cifar(backbone):
    """Whether model name ``backbone`` is a §4.2 CIFAR net (output stride 4)."""
    return parse_model_name(backbone)[0] == "cifar"


def named_backbone(backbone, output_stride, input_shape, options):
    """``get_model(backbone, include_top=False, ...)``, dilated to ``output_stride`` unless
    None (a CIFAR net takes None only).

    Example:
        >>> named_backbone("resnet20", None, (32, 32, 3), {}).output_shape
        (None, 8, 8, 64)
    """
    check_backbone_name(backbone)
    if is_cifar(backbone) and output_stride is not None:
        raise InvalidArgument(
            f"`output_stride={output_stride}`, but {backbone} is a CIFAR net (§4.2: output "
            "stride 4, no dilation); pass output_stride=None.")
    if output_stride is not None:
        options = {**options, "output_stride": output_stride}
    shape = (None, None, 3) if input_shape is None else tuple(input_shape)
    return get_model(backbone, include_top=False, input_shape=shape, **options)


def given_backbone(backbone, output_stride, input_shape, options):
    """Check a model given as ``backbone`` against the other arguments; returns it.

    Example:
        >>> given_backbone(keras_resnet.ResNet20(include_top=False), None, None, {}).name
        'resnet20'
    """
    if options:
        raise InvalidArgument(
            f"`backbone` {backbone.name!r} is built already; backbone options "
            f"({', '.join(sorted(options))}) apply to a backbone given by name.")
    if input_shape is not None and tuple(input_shape) != tuple(backbone.input_shape[1:]):
        raise InvalidArgument(f"`input_shape={tuple(input_shape)}` differs from the backbone's "
                              f"{backbone.input_shape[1:]}; leave it None.")
    own = feature_info(backbone)[-1]["reduction"]
    if output_stride is not None and own != output_stride:
        raise InvalidArgument(
            f"`output_stride={output_stride}`, but backbone {backbone.name!r} has output stride "
            f"{own}; build it with output_stride={output_stride}, or pass output_stride=None.")
    return backbone


def stage_outputs_with_task(network, stages, task, preprocessing):
    """A fresh copy of ``network``'s layers (its weights copied) from its input to ``stages``,
    with ``task`` (a ``TaskLayer``) right after its ``ImagePreprocessing`` (which
    ``preprocessing`` replaces when given) and any ``TaskLayer`` of its own left out.

    Returns:
        ``(inputs, {stage: tensor})``.

    Example:
        >>> stage_outputs_with_task(network, ["conv4"], task, None)  # doctest: +SKIP
    """
    extractor = feature_extractor(network, list(stages))
    anchor = preprocessing_lib.of(extractor)
    if anchor is None:
        raise InvalidArgument(f"`backbone` {network.name!r} carries no ImagePreprocessing; "
                              "attach one with keras_resnet.preprocessing.attach.")

    def clone(layer):
        if layer is anchor and preprocessing is not None:
            return preprocessing
        return layer.__class__.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if isinstance(layer, tasks.TaskLayer):
            return args[0]  # the backbone's classifier Task is not the head's
        outputs = layer(*args, **kwargs)
        return task(outputs) if isinstance(layer, preprocessing_lib.ImagePreprocessing) else outputs

    copy = keras.models.clone_model(extractor, clone_function=clone, call_function=call)
    copy.set_weights(extractor.get_weights())
    return copy.input, copy.output
