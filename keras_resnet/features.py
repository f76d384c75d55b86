"""Stage outputs of any keras_resnet model, for detection, segmentation and retrieval heads.

A ResNet's stages are the rows of the paper's Table 1: ``conv1`` (after its ReLU, before the
max pool), then ``conv2`` .. ``conv5`` (ImageNet nets) or ``conv2`` .. ``conv4`` (the CIFAR
nets of §4.2), each the output of its last block. In a pre-activation (v2) net ``conv1`` is
the stem's convolution and the last stage is read after the final BN-ReLU (``post_relu``). keras-hub's ``pyramid_outputs`` ``P2`` ..
``P5`` are ``conv2`` .. ``conv5``; both names are accepted.

- :func:`feature_info`: each stage's channels and reduction (how much smaller than the input).
- :func:`feature_extractor`: a functional model whose outputs are a dict of stage outputs.
- :func:`embedding_model`: a functional model whose output is the pooled features.

Both read the model's layers, so they work on a model built, loaded from ``.keras``,
fine-tuned or built with ``output_stride``, on every Keras backend.

Example:
    >>> features = feature_extractor(keras_resnet.ResNet18(input_shape=(64, 64, 3)))
    >>> {name: tuple(t.shape) for name, t in features(np.zeros((1, 64, 64, 3))).items()}["conv5"]
    (1, 2, 2, 512)
"""

import re

import keras
from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.models import walk_layers

STEM_OUTPUT = "conv1_relu"
# A pre-activation net's stem output and final BN-ReLU (keras_resnet.builder.stages).
PREACT_STEM_OUTPUT, PREACT_OUTPUT = "conv1", "post_relu"
_STEM_CONV = re.compile(r"^conv1(_\d+)?$")
POOLING_LAYERS = ("avg_pool", "max_pool")  # keras_resnet.builder.head's global pooling
_BLOCK = re.compile(r"^(conv\d+)_block(\d+)$")


def _network(model):
    """The (possibly nested) functional model whose own layers are the ResNet's."""
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")
    candidates = [model] + [layer for layer in walk_layers(model) if isinstance(layer, keras.Model)]
    for candidate in candidates:
        if _stem_output({layer.name for layer in candidate.layers}):
            return candidate
    raise InvalidArgument(
        f"`model` {model.name!r} is not a keras_resnet network: it has no {STEM_OUTPUT!r} "
        "layer (build it with keras_resnet or keras_resnet.from_keras_applications)."
    )


def _stem_output(names):
    if STEM_OUTPUT in names:
        return STEM_OUTPUT
    return PREACT_STEM_OUTPUT if PREACT_OUTPUT in names else None


def _stage_layers(network):
    """``{stage name: layer}`` in network order: conv1's ReLU, then each stage's last block
    (the final BN-ReLU for a pre-activation net's last stage)."""
    names = {layer.name for layer in network.layers}
    layers = {"conv1": network.get_layer(_stem_output(names))}
    for layer in network.layers:
        match = _BLOCK.match(layer.name)
        if match and hasattr(layer, "shortcut"):
            layers[match[1]] = layer  # later blocks of a stage replace earlier ones
    if PREACT_OUTPUT in names:
        layers[list(layers)[-1]] = network.get_layer(PREACT_OUTPUT)
    return layers


def _strides(layer):
    strides = getattr(layer, "strides", 1)
    return strides[0] if isinstance(strides, (tuple, list)) else strides


def feature_info(model):
    """Each stage of ``model``: its name, channels, reduction and the layer it is read from.

    The reduction is the product of the strides up to that stage (the input is that many
    times larger per side): 2, 4, 8, 16, 32 for Table 1's conv1 .. conv5; 1, 1, 2, 4 for §4.2;
    ``output_stride`` caps it.

    Returns:
        A list of dicts ``{"name", "channels", "reduction", "layer"}``, in network order.

    Example:
        >>> [(f["name"], f["reduction"]) for f in feature_info(keras_resnet.ResNet20())]
        [('conv1', 1), ('conv2', 1), ('conv3', 2), ('conv4', 4)]
    """
    network = _network(model)
    stage_layers = _stage_layers(network)
    names = {layer.name for layer in network.layers}
    reduction = 1
    for layer in network.layers:
        if _STEM_CONV.match(layer.name):
            reduction *= _strides(layer)
    info = [{"name": "conv1", "channels": int(stage_layers["conv1"].output.shape[-1]),
             "reduction": reduction, "layer": stage_layers["conv1"].name}]
    if "pool1" in names:
        reduction *= _strides(network.get_layer("pool1"))
    for name, layer in list(stage_layers.items())[1:]:
        for block in network.layers:  # a stage strides in its first block, a V2 net's in its last
            match = _BLOCK.match(block.name)
            if match and match[1] == name:
                reduction *= block.strides
        info.append({"name": name, "channels": int(layer.output.shape[-1]),
                     "reduction": reduction, "layer": layer.name})
    return info


def _stage_name(name, available):
    canonical = f"conv{name[1:]}" if isinstance(name, str) and re.fullmatch(r"P\d+", name) else name
    if canonical not in available:
        raise InvalidArgument(
            f"`stages` must name stages of the model: {', '.join(available)} (or keras-hub's "
            f"P{available[1][4:]}..P{available[-1][4:]}); got {name!r}."
        )
    return canonical


def feature_extractor(model, stages=None, name=None):
    """A functional model from ``model``'s input to a dict of its stage outputs.

    It shares ``model``'s layers and weights (fine-tuning one fine-tunes the other) and, like
    ``model``, takes images preprocessed as ``keras_resnet.preprocessing.of(model)`` says.

    Args:
        model: a keras_resnet model (any depth, variant or head), possibly nested in another.
        stages: stage names to output, e.g. ``["conv3", "conv4", "conv5"]`` or keras-hub's
            ``["P3", "P4", "P5"]`` (keys as given); default: every stage, ``conv1`` first.
        name: the model's name; default ``f"{model.name}_features"``.

    Returns:
        A ``keras.Model`` whose output is ``{stage name: (batch, h, w, channels) tensor}``.

    Example:
        >>> extractor = feature_extractor(keras_resnet.ResNet20(), stages=["conv3", "conv4"])
        >>> sorted(extractor.output)
        ['conv3', 'conv4']
    """
    network = _network(model)
    stage_layers = _stage_layers(network)
    available = list(stage_layers)
    if stages is None:
        stages = available
    if isinstance(stages, str) or not isinstance(stages, (list, tuple)) or not stages:
        raise InvalidArgument(
            f"`stages` must be None or a non-empty list of stage names ({', '.join(available)}); "
            f"got {stages!r}."
        )
    outputs = {key: stage_layers[_stage_name(key, available)].output for key in stages}
    return keras.Model(network.input, outputs, name=name or f"{network.name}_features")


def embedding_model(model, name=None):
    """A functional model from ``model``'s input to its pooled features (the embeddings a
    retrieval or clustering index stores): the output of its global pooling, or the global
    average of its last stage when it has none.

    Args:
        model: a keras_resnet model (any head), possibly nested in another.
        name: the model's name; default ``f"{model.name}_embeddings"``.

    Returns:
        A ``keras.Model`` with output ``(batch, channels)``, sharing ``model``'s weights.

    Example:
        >>> embedding_model(keras_resnet.ResNet20()).output_shape
        (None, 64)
    """
    network = _network(model)
    names = {layer.name for layer in network.layers}
    pooled = next((network.get_layer(n).output for n in POOLING_LAYERS if n in names), None)
    if pooled is None:
        last = list(_stage_layers(network).values())[-1].output
        pooled = keras.layers.GlobalAveragePooling2D(name="embedding_pool")(last)
    return keras.Model(network.input, pooled, name=name or f"{network.name}_embeddings")
