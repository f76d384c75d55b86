"""The named constructors, with the keras.applications signature.

:func:`ImageNetResNet`, :func:`CifarResNet`, the paper's nets (``ResNet18`` ... ``ResNet1202``)
and the family (``ResNeXt50_32x4d``, ``WideResNet50_2``, ``ResNet50D``, ``SEResNet50``,
``ResNet50V2``, ``PreActResNet164``, ...) call the one builder,
:func:`keras_resnet.builder.build_resnet`, and load pretrained weight sets.
"""

import difflib
import fnmatch

import keras

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet import weights as weights_lib
from keras_resnet.architectures import (
    ARCHITECTURE_OPTIONS,
    FAMILY,
    NAMED_MODELS,
    architecture,
    family_architecture,
)

# Re-exported: the builder's names were this module's before it had one of its own.
from keras_resnet.builder import (  # noqa: F401
    BUILD_OPTIONS,
    SHORTCUT_OPTIONS,
    build_resnet,
    canonical_shortcut,
    walk_layers,
)
from keras_resnet.errors import InvalidArgument, InvalidType

# Every name ``get_model`` and the command line take.
MODEL_NAMES = (*NAMED_MODELS, *FAMILY)
# keras.applications' arguments of every constructor, before our options (``BUILD_OPTIONS``).
APPLICATION_ARGUMENTS = ("include_top", "weights", "input_tensor", "input_shape", "pooling",
                         "classes", "classifier_activation", "name")


def close_match(value, allowed):
    """" (did you mean 'x'?)" for the closest of ``allowed`` to ``value``, else ""."""
    match = difflib.get_close_matches(str(value), list(allowed), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_option_names(options, what):
    """Raise a one-line :class:`InvalidArgument` naming the first of ``options`` that no
    constructor takes, the allowed ones and the closest match.

    Example:
        >>> check_option_names({"se_ratio": 0.0625}, "ResNet50")
    """
    for option in options:
        if option not in BUILD_OPTIONS:
            raise InvalidArgument(
                f"`{option}` is not an option of {what}{close_match(option, BUILD_OPTIONS)}; "
                f"options: {', '.join(BUILD_OPTIONS)}."
            )


def ImageNetResNet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **options,
):
    """An ImageNet ResNet of Table 1 (depth 18, 34, 50, 101 or 152).

    ``weights``: None, a path (see :func:`build_resnet`), "imagenet" (the depth's default
    set) or a weight set name of ``keras_resnet.weights.available(f"resnet{depth}")``
    ("torchvision_v2", "timm_a1", "keras_hub", ...). A set fixes the variant (stride
    position, conv bias, BN epsilon), the default input size and the preprocessing the model
    carries (``keras_resnet.preprocessing.of(model)``, with the 1000 class names);
    ``include_top=False`` loads everything but the classifier. Other arguments: see
    :func:`build_resnet`.

    Example:
        >>> ImageNetResNet(34, shortcut="A").count_params() < ImageNetResNet(34).count_params()
        True
    """
    return _pretrained_or_built(
        architecture("imagenet", depth), include_top, weights, input_tensor, input_shape,
        pooling, classes, classifier_activation, name, options,
    )


def _pretrained_or_built(arch, include_top, weights, input_tensor, input_shape, pooling,
                         classes, classifier_activation, name, options):
    """Build ``arch``; with a weight set name, the set's variant with its weights."""
    check_option_names(options, arch.name)
    if arch.family != "imagenet" and weights_lib.is_name(weights):
        raise InvalidArgument(
            f"`weights={weights!r}`: pretrained weight sets exist for ImageNet nets only; "
            f"{arch.name} (a CIFAR net) takes None or a path to a weights file."
        )
    weight_set = None if arch.family != "imagenet" else weights_lib.resolve(arch.name, weights)
    if weight_set is None:
        return build_resnet(
            arch, include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name, **options,
        )
    _check_weight_set_options(arch, weight_set, weights, include_top, classes, options)
    if weight_set.layout == "keras_applications":
        return _from_imagenet_weights(
            arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
            classifier_activation, name, options,
        )
    return _from_weight_set(
        arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, options,
    )


def CifarResNet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    **options,
):
    """A CIFAR-10 ResNet of §4.2: depth 6n+2, 16/32/64 filters, option A shortcuts.

    Other arguments: see :func:`build_resnet`.

    Example:
        >>> CifarResNet(56, residual=False).name  # the 56-layer plain net of Fig. 6
        'plain56'
    """
    return _pretrained_or_built(
        architecture("cifar", depth), include_top, weights, input_tensor, input_shape,
        pooling, classes, classifier_activation, name, options,
    )



def _required_options(arch, weight_set):
    """The options ``weight_set`` fixes: its variant's, and ``arch``'s own block options."""
    required = {option: getattr(arch, option) for option in ARCHITECTURE_OPTIONS}
    return _for_blocks(arch, {**required, **weight_set.build_options()})


def _for_blocks(arch, options):
    """``options`` less ``stride_position`` for a net of basic blocks (it has no bottleneck)."""
    if arch.block == "bottleneck":
        return options
    return {option: value for option, value in options.items() if option != "stride_position"}


def _same(option, given, required):
    if option == "shortcut":
        return canonical_shortcut(given) == canonical_shortcut(required)
    return given == required


def _check_weight_set_options(arch, weight_set, weights, include_top, classes, options):
    """Raise unless the constructor's arguments fit the pretrained ``weight_set``."""
    if include_top and classes != 1000:
        raise InvalidArgument(
            f"`weights={weights!r}` with `include_top=True` needs `classes=1000` (its ImageNet "
            f"classifier); got classes={classes}. Use include_top=False (e.g. with "
            "pooling='avg') and put your own classifier on top, or load the 1000-class model "
            "and fine-tune a new head."
        )
    if "preprocessing" in options:
        raise InvalidArgument(
            f"`weights={weights!r}` fixes the preprocessing ({weight_set.preprocessing()!r}); "
            "leave `preprocessing` unset (keras_resnet.preprocessing.attach replaces it later)."
        )
    if options.get("stem") == "deep" and not arch.stem.deep_widths:
        raise InvalidArgument(
            f"`weights={weights!r}` are {arch.name}'s, whose stem is one 7x7 conv; got "
            "stem='deep' (use stem='standard' or 'low_resolution', or no weights)."
        )
    for option, required in _required_options(arch, weight_set).items():
        if option in options and not _same(option, options[option], required):
            raise InvalidArgument(
                f"`weights={weights!r}` needs `{option}={required!r}`; got {options[option]!r}."
            )


def _input_size(weight_set, input_tensor, input_shape):
    """(height, width) of the model input: given, else the weight set's evaluation size."""
    shape = tuple(input_tensor.shape[1:]) if input_tensor is not None else input_shape
    if shape is not None and None not in tuple(shape)[:2]:
        return tuple(shape)[:2]
    return None if shape is not None else (weight_set.image_size,) * 2


def _input_channels(input_tensor, input_shape):
    """The model's input channels (conv1 of a pretrained set is adapted to them)."""
    return tuple(input_tensor.shape)[-1] if input_tensor is not None else (input_shape or (3,))[-1]


def _from_weight_set(
    arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
    classifier_activation, name, options,
):
    """Build ``weight_set``'s variant of ``arch`` and load it (tensors read before building)."""
    tensors = weights_lib.fetch(weight_set, include_top)
    size = _input_size(weight_set, input_tensor, input_shape)
    if input_tensor is None and input_shape is None:
        input_shape = (*size, 3)
    channels = _input_channels(input_tensor, input_shape)
    model = build_resnet(
        arch, include_top, None, input_tensor, input_shape, pooling, classes,
        classifier_activation, name,
        preprocessing=weight_set.preprocessing(size, include_top).for_channels(channels),
        **{**options, **_for_blocks(arch, weight_set.build_options())},
    )
    return weights_lib.load_tensors(
        model, tensors, weight_set.layout, source=f"{weight_set.name}: {weight_set.checkpoint}"
    )


def _from_imagenet_weights(
    arch, weight_set, include_top, input_tensor, input_shape, pooling, classes,
    classifier_activation, name, options,
):
    suffix = "V2" if arch.preactivation else ""
    application = getattr(keras.applications, f"ResNet{arch.depth}{suffix}")
    channels = _input_channels(input_tensor, input_shape)
    source = application(
        include_top=include_top,
        weights="imagenet",
        input_shape=None if input_shape is None else (*input_shape[:2], 3),
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    fixed = weight_set.build_options()
    extra = {k: v for k, v in options.items() if k not in fixed}
    size = _input_size(weight_set, input_tensor, input_shape) or (weight_set.image_size,) * 2
    return from_keras_applications(
        source, input_tensor=input_tensor, name=name, channels=channels,
        preprocessing=weight_set.preprocessing(size, include_top).for_channels(channels), **extra,
    )


def from_keras_applications(keras_model, input_tensor=None, name=None, channels=3, **options):
    """The keras_resnet equivalent of a keras.applications ResNet50/101/152 or
    ResNet50V2/101V2/152V2, with its weights.

    The result has the source's layout (V1: stride in the first 1x1, conv biases, BN epsilon
    1.001e-5; V2: pre-activation, stride in each stage's last block) and gives the same
    predictions; it carries the source's preprocessing (``resnet.preprocess_input``'s Caffe
    mode, ``resnet_v2``'s [-1, 1] scaling) as its ``ImagePreprocessing`` (or pass
    ``preprocessing=``).

    Args:
        keras_model: a keras.applications ResNet (V1 or V2) model.
        input_tensor, name: as in :func:`ImageNetResNet`.
        channels: input channels; conv1 is adapted from RGB when not 3
            (``keras_resnet.weights.adapt_input_kernel``).
        **options: ``zero_init_residual``, ``weight_decay``, ``kernel_regularizer``,
            ``bn_momentum`` (useful for fine-tuning), ``preprocessing``.

    Returns:
        A ``keras.Model`` built from keras_resnet blocks.

    Example:
        >>> from_keras_applications(keras.applications.ResNet50(weights=None)).name
        'resnet50'
    """
    if not isinstance(keras_model, keras.Model):
        raise InvalidType(f"`keras_model` must be a keras.Model; got {type(keras_model).__name__}.")
    check_option_names(options, "from_keras_applications")
    layout = weights_lib.keras_applications_layout(keras_model)
    v2 = layout["version"] == 2
    recipe = preprocessing_lib.tf_mode if v2 else preprocessing_lib.caffe
    preprocessing = options.pop("preprocessing", None) or recipe(
        layout["input_shape"][0] or 224,
        class_names=[str(i) for i in range(layout["classes"])] if layout["include_top"] else None,
    ).for_channels(channels)
    input_shape = (*layout["input_shape"][:2], channels)
    arch = (family_architecture(f"resnet{layout['depth']}v2") if v2
            else architecture("imagenet", layout["depth"]))
    fixed = {**weights_lib.FIXED_OPTIONS,
             **(weights_lib.KERAS_V2_VARIANT if v2 else weights_lib.CAFFE_VARIANT)}
    target = build_resnet(
        arch,
        include_top=layout["include_top"],
        input_tensor=input_tensor,
        input_shape=None if input_tensor is not None else input_shape,
        pooling=layout["pooling"],
        classes=layout["classes"],
        classifier_activation=layout["classifier_activation"],
        name=name or arch.name,
        preprocessing=preprocessing,
        **{**options, **fixed},
    )
    weights_lib.copy_keras_applications_weights(keras_model, target)
    return target


def _named(family, depth):
    constructor = ImageNetResNet if family == "imagenet" else CifarResNet

    def build(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000 if family == "imagenet" else 10,
              classifier_activation="softmax", name=None, **options):
        return constructor(depth, include_top, weights, input_tensor, input_shape, pooling,
                           classes, classifier_activation, name, **options)

    kind = "ImageNet (Table 1)" if family == "imagenet" else "CIFAR-10 (§4.2)"
    build.__name__ = build.__qualname__ = f"ResNet{depth}"
    # The deepest nets take seconds to build: their examples are shown, not run.
    skip = "  # doctest: +SKIP" if depth >= 101 else ""
    build.__doc__ = (
        f"The {depth}-layer {kind} ResNet; arguments as keras.applications, options as "
        f"``build_resnet``.\n\n    Example:\n        >>> keras_resnet.ResNet{depth}().name{skip}\n"
        f"        'resnet{depth}'\n"
    )
    return build


ResNet18 = _named("imagenet", 18)
ResNet34 = _named("imagenet", 34)
ResNet50 = _named("imagenet", 50)
ResNet101 = _named("imagenet", 101)
ResNet152 = _named("imagenet", 152)
ResNet20 = _named("cifar", 20)
ResNet32 = _named("cifar", 32)
ResNet44 = _named("cifar", 44)
ResNet56 = _named("cifar", 56)
ResNet110 = _named("cifar", 110)
ResNet1202 = _named("cifar", 1202)


def _family_constructor(model_name, function_name):
    arch = family_architecture(model_name)
    default_classes = arch.classes

    def build(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=default_classes, classifier_activation="softmax", name=None,
              **options):
        return _pretrained_or_built(
            family_architecture(model_name), include_top, weights, input_tensor, input_shape,
            pooling, classes, classifier_activation, name, options,
        )

    build.__name__ = build.__qualname__ = function_name
    # Examples of the nets that take seconds to build are shown, not run.
    skip = "" if model_name in ("resnet18d", "preact_resnet110") else "  # doctest: +SKIP"
    build.__doc__ = (
        f"{model_name} ({FAMILY[model_name][2]}): arguments as keras.applications, options as "
        f"``build_resnet``; ``weights`` takes the names of "
        f"``keras_resnet.weights.available({model_name!r})``.\n\n    Example:\n        >>> "
        f"keras_resnet.{function_name}().name{skip}\n        {model_name!r}\n"
    )
    return build


# The family, under torchvision's and keras.applications' names (CamelCase for Python).
ResNeXt50_32x4d = _family_constructor("resnext50_32x4d", "ResNeXt50_32x4d")
ResNeXt101_32x8d = _family_constructor("resnext101_32x8d", "ResNeXt101_32x8d")
ResNeXt101_64x4d = _family_constructor("resnext101_64x4d", "ResNeXt101_64x4d")
WideResNet50_2 = _family_constructor("wide_resnet50_2", "WideResNet50_2")
WideResNet101_2 = _family_constructor("wide_resnet101_2", "WideResNet101_2")
ResNet18D = _family_constructor("resnet18d", "ResNet18D")
ResNet34D = _family_constructor("resnet34d", "ResNet34D")
ResNet50D = _family_constructor("resnet50d", "ResNet50D")
ResNet101D = _family_constructor("resnet101d", "ResNet101D")
ResNet152D = _family_constructor("resnet152d", "ResNet152D")
SEResNet50 = _family_constructor("seresnet50", "SEResNet50")
SEResNet101 = _family_constructor("seresnet101", "SEResNet101")
SEResNet152 = _family_constructor("seresnet152", "SEResNet152")
ResNet50V2 = _family_constructor("resnet50v2", "ResNet50V2")
ResNet101V2 = _family_constructor("resnet101v2", "ResNet101V2")
ResNet152V2 = _family_constructor("resnet152v2", "ResNet152V2")
PreActResNet110 = _family_constructor("preact_resnet110", "PreActResNet110")
PreActResNet164 = _family_constructor("preact_resnet164", "PreActResNet164")
PreActResNet1001 = _family_constructor("preact_resnet1001", "PreActResNet1001")
FAMILY_CONSTRUCTORS = {
    "resnext50_32x4d": ResNeXt50_32x4d, "resnext101_32x8d": ResNeXt101_32x8d,
    "resnext101_64x4d": ResNeXt101_64x4d, "wide_resnet50_2": WideResNet50_2,
    "wide_resnet101_2": WideResNet101_2, "resnet18d": ResNet18D, "resnet34d": ResNet34D,
    "resnet50d": ResNet50D, "resnet101d": ResNet101D, "resnet152d": ResNet152D,
    "seresnet50": SEResNet50, "seresnet101": SEResNet101, "seresnet152": SEResNet152,
    "resnet50v2": ResNet50V2, "resnet101v2": ResNet101V2, "resnet152v2": ResNet152V2,
    "preact_resnet110": PreActResNet110, "preact_resnet164": PreActResNet164,
    "preact_resnet1001": PreActResNet1001,
}


def list_models(pattern="*"):
    """Every name :func:`get_model` takes that matches ``pattern`` (``fnmatch``), sorted (timm's
    ``list_models``; any other CIFAR depth 6n+2, "resnet8", "resnet74", ..., is taken too).

    Example:
        >>> list_models("resnext*")
        ['resnext101_32x8d', 'resnext101_64x4d', 'resnext50_32x4d']
    """
    if not isinstance(pattern, str):
        raise InvalidType(f"`pattern` must be a string (fnmatch, e.g. 'resnet*'); got {pattern!r}.")
    return sorted(fnmatch.filter(MODEL_NAMES, pattern))


def parse_model_name(model_name):
    """``(family, depth)`` of a model name: a named model ("resnet50", "resnet20",
    "resnext50_32x4d", ...; family "imagenet" or "cifar") or ``resnetN`` for any other CIFAR
    depth N = 6n+2 ("resnet8", "resnet74", ...)."""
    if model_name in NAMED_MODELS:
        return NAMED_MODELS[model_name]
    if model_name in FAMILY:
        arch = family_architecture(model_name)
        return arch.family, arch.depth
    digits = str(model_name).removeprefix("resnet")
    if str(model_name).startswith("resnet") and digits.isdigit():
        depth = int(digits)
        if depth >= 8 and (depth - 2) % 6 == 0:
            return "cifar", depth
    raise InvalidArgument(
        f"`model_name` must be one of {', '.join(MODEL_NAMES)} or resnetN with N = 6n+2 "
        f"(a CIFAR depth); got {model_name!r}{close_match(model_name, MODEL_NAMES)}."
    )


def get_model(model_name, **kwargs):
    """Build a model by name ("resnet20", "resnet50", "resnext50_32x4d", "resnet8", ...) with
    constructor ``kwargs``.

    Example:
        >>> get_model("resnet8", classes=4).output_shape
        (None, 4)
    """
    family, depth = parse_model_name(model_name)
    check_option_names([k for k in kwargs if k not in APPLICATION_ARGUMENTS], model_name)
    if model_name in FAMILY_CONSTRUCTORS:
        return FAMILY_CONSTRUCTORS[model_name](**kwargs)
    constructor = ImageNetResNet if family == "imagenet" else CifarResNet
    return constructor(depth, **kwargs)
