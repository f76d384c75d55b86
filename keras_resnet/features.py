"""Stage outputs of any keras_resnet model, for detection, segmentation and retrieval heads.

A ResNet's stages are the rows of the paper's Table 1: ``conv1`` (after its ReLU, before the
max pool), then ``conv2`` .. ``conv5`` (ImageNet nets) or ``conv2`` .. ``conv4`` (the CIFAR
nets of §4.2), each the output of its last block. In a pre-activation (v2) net ``conv1`` is
the stem's convolution and the last stage is read after the final BN-ReLU (``post_relu``).
keras-hub's ``pyramid_outputs`` ``P2`` .. ``P5`` are ``conv2`` .. ``conv5``; both names are
accepted. Where each stage is read is the architecture's (``architectures.Tap``); the builder
marks it with a ``StageTap`` layer, which this module reads (models saved before taps existed
are read by their layer names instead).

- :func:`feature_info`: each stage's channels and reduction (how much smaller than the input).
- :func:`feature_extractor`: a functional model whose outputs are a dict of stage outputs.
- :func:`embedding_model`: a functional model whose output is the pooled features.
- :func:`create_model`: timm's entry point: a named model, or its feature extractor.
- :func:`stage_scores`: a stage's output and the class scores before the classifier's
  activation: what Grad-CAM differentiates (``keras_resnet.explain`` and the SavedModel's
  ``grad_cam`` signature).

Both read the model's layers, so they work on a model built, loaded from ``.keras``,
fine-tuned or built with ``output_stride``, on every Keras backend.

Example:
    >>> features = feature_extractor(keras_resnet.ResNet18(input_shape=(64, 64, 3)))
    >>> {name: tuple(t.shape) for name, t in features(np.zeros((1, 64, 64, 3))).items()}["conv5"]
    (1, 2, 2, 512)
"""

import re

import keras

from keras_resnet.builder import stage_taps, tap_features
from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.models import MODEL_NAMES, close_match, get_model, parse_model_name, walk_layers

POOLING_LAYERS = ("avg_pool", "max_pool")  # keras_resnet.builder.head's global pooling
# The classifier activations Grad-CAM undoes to reach the class score (stage_scores).
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")


def _network(model):
    """The (possibly nested) functional model whose own layers are the ResNet's."""
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")
    candidates = [model] + [layer for layer in walk_layers(model) if isinstance(layer, keras.Model)]
    for candidate in candidates:
        if stage_taps(candidate) or _legacy_stem_output({layer.name for layer in candidate.layers}):
            return candidate
    raise InvalidArgument(
        f"`model` {model.name!r} is not a keras_resnet network: it has no {LEGACY_STEM_OUTPUT!r} "
        "layer and no StageTap layers (build it with keras_resnet or "
        "keras_resnet.from_keras_applications)."
    )


def _source_layer(network, tensor):
    """The name of the layer of ``network`` that computes ``tensor``."""
    for layer in network.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        if any(output is tensor for output in outputs):
            return layer.name
    return None


def _stages(network):
    """``[(info, tensor)]``: each stage's :func:`feature_info` entry and its symbolic output,
    read from the model's :class:`~keras_resnet.builder.StageTap` layers (the legacy name-based
    reading for models saved before them)."""
    taps = stage_taps(network)
    if not taps:
        return _legacy_stages(network)
    stages = []
    for tap in taps:
        tensor = tap_features(tap)  # the tap's own output when it sits on the model's path
        source = tap.input[1] if isinstance(tap.input, (list, tuple)) else tap.input
        stages.append(({"name": tap.stage, "channels": int(tensor.shape[-1]),
                        "reduction": tap.reduction, "layer": _source_layer(network, source)},
                       tensor))
    return stages


# --- legacy: models saved before StageTap (no taps) are read by their layer names -----------
LEGACY_STEM_OUTPUT = "conv1_relu"
# A pre-activation net's stem output and final BN-ReLU (keras_resnet.builder.stages).
LEGACY_PREACT_STEM_OUTPUT, LEGACY_PREACT_OUTPUT = "conv1", "post_relu"
_STEM_CONV = re.compile(r"^conv1(_\d+)?$")
_BLOCK = re.compile(r"^(conv\d+)_block(\d+)$")


def _legacy_stem_output(names):
    if LEGACY_STEM_OUTPUT in names:
        return LEGACY_STEM_OUTPUT
    return LEGACY_PREACT_STEM_OUTPUT if LEGACY_PREACT_OUTPUT in names else None


def _legacy_stage_layers(network):
    """``{stage name: layer}`` in network order: conv1's ReLU, then each stage's last block
    (the final BN-ReLU for a pre-activation net's last stage)."""
    names = {layer.name for layer in network.layers}
    layers = {"conv1": network.get_layer(_legacy_stem_output(names))}
    for layer in network.layers:
        match = _BLOCK.match(layer.name)
        if match and hasattr(layer, "shortcut"):
            layers[match[1]] = layer  # later blocks of a stage replace earlier ones
    if LEGACY_PREACT_OUTPUT in names:
        layers[list(layers)[-1]] = network.get_layer(LEGACY_PREACT_OUTPUT)
    return layers


def _strides(layer):
    strides = getattr(layer, "strides", 1)
    return strides[0] if isinstance(strides, (tuple, list)) else strides


def _legacy_stages(network):
    """:func:`_stages` of a model without taps, from its layer names and strides."""
    stage_layers = _legacy_stage_layers(network)
    reduction = 1
    for layer in network.layers:
        if _STEM_CONV.match(layer.name):
            reduction *= _strides(layer)
    reductions = {"conv1": reduction}
    if "pool1" in {layer.name for layer in network.layers}:
        reduction *= _strides(network.get_layer("pool1"))
    for name in list(stage_layers)[1:]:
        for block in network.layers:  # a stage strides in its first block, a V2 net's in its last
            match = _BLOCK.match(block.name)
            if match and match[1] == name:
                reduction *= block.strides
        reductions[name] = reduction
    return [({"name": name, "channels": int(layer.output.shape[-1]),
              "reduction": reductions[name], "layer": layer.name}, layer.output)
            for name, layer in stage_layers.items()]


# --- reading the stages ------------------------------------------------------------------------


def feature_info(model):
    """Each stage of ``model``: its name, channels, reduction and the layer it is read from.

    The reduction is the product of the strides up to that stage (the input is that many
    times larger per side): 2, 4, 8, 16, 32 for Table 1's conv1 .. conv5; 1, 1, 2, 4 for §4.2;
    ``output_stride`` caps it. The stages are where the model's ``StageTap`` layers mark them.

    Returns:
        A list of dicts ``{"name", "channels", "reduction", "layer"}``, in network order.

    Example:
        >>> [(f["name"], f["reduction"]) for f in feature_info(keras_resnet.ResNet20())]
        [('conv1', 1), ('conv2', 1), ('conv3', 2), ('conv4', 4)]
    """
    return [info for info, _ in _stages(_network(model))]


def stage_outputs(model):
    """``{stage name: symbolic tensor}`` of ``model``'s (possibly nested) network, in order.

    Example:
        >>> tuple(stage_outputs(keras_resnet.ResNet20())["conv4"].shape)
        (None, 8, 8, 64)
    """
    return {info["name"]: tensor for info, tensor in _stages(_network(model))}


def _grad_cam_stage(model, stage):
    """The feature_info entry of ``stage`` ("conv4", keras-hub's "P4"), or the last stage's."""
    info = feature_info(model)
    names = [entry["name"] for entry in info]
    if stage is None:
        return info[-1]
    keras_hub = isinstance(stage, str) and stage[:1] == "P" and stage[1:].isdigit()
    canonical = f"conv{stage[1:]}" if keras_hub else stage
    if canonical not in names:
        raise InvalidArgument(
            f"`stage` must name a stage of the model: {', '.join(names)} (or keras-hub's "
            f"P{names[1][4:]}..P{names[-1][4:]}); got {stage!r}."
        )
    return info[names.index(canonical)]


def stage_scores(model, stage=None):
    """What Grad-CAM (Selvaraju et al. 2017) differentiates: a stage's output and the class
    scores before the classifier's activation (§3 of the paper), as two functions of ``model``.

    Args:
        model: a flat functional keras_resnet classifier (or one built on ``model.output``)
            ending in its Dense layer with a softmax, sigmoid or linear activation.
        stage: the stage whose output is weighed ("conv5", keras-hub's "P5", ...); default the
            last stage, the layer the paper uses.

    Returns:
        ``(chosen, features, scores)``: the stage's :func:`feature_info` entry, a model from
        the input to that stage's output (where its StageTap marks it), and a function from
        that output to the float32 class scores (logits).

    Example:
        >>> chosen, features, scores = stage_scores(keras_resnet.ResNet20())
        >>> chosen["name"], tuple(scores(features(np.zeros((1, 32, 32, 3)))).shape)
        ('conv4', (1, 10))
    """
    chosen = _grad_cam_stage(model, stage)
    stage = chosen["name"]
    if chosen["layer"] not in {layer.name for layer in model.layers}:
        raise InvalidArgument(
            f"`model` {model.name!r} holds its ResNet as a nested model; Grad-CAM reads a flat "
            "functional model (a keras_resnet constructor's, `keras_resnet.fine_tune`'s, or one "
            "built on `model.output`)."
        )
    stage_output = stage_outputs(model)[stage]
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if not isinstance(last, keras.layers.Dense) or activation not in OUTPUT_ACTIVATIONS:
        raise InvalidArgument(
            f"`model` {model.name!r} must end in a Dense layer with a softmax, sigmoid or linear "
            f"activation (its class scores); it ends in {type(last).__name__} {last.name!r}."
        )
    features = keras.Model(model.input, stage_output)
    try:
        penultimate = keras.Model(stage_output, last.input)
    except ValueError:  # features marked off the model's path (a block's pre-activated input)
        raise InvalidArgument(
            f"`stage={stage!r}`: Grad-CAM weighs a stage whose output the classifier reads; "
            f"{model.name!r} marks {stage} inside a block (choose the last stage)."
        ) from None

    def scores(stage_values):
        inputs = keras.ops.cast(penultimate(stage_values, training=False), "float32")
        logits = keras.ops.matmul(inputs, keras.ops.cast(last.kernel, "float32"))
        return logits + keras.ops.cast(last.bias, "float32") if last.use_bias else logits

    return chosen, features, scores


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
    tensors = {info["name"]: tensor for info, tensor in _stages(network)}
    available = list(tensors)
    if stages is None:
        stages = available
    if isinstance(stages, str) or not isinstance(stages, (list, tuple)) or not stages:
        raise InvalidArgument(
            f"`stages` must be None or a non-empty list of stage names ({', '.join(available)}); "
            f"got {stages!r}."
        )
    outputs = {key: tensors[_stage_name(key, available)] for key in stages}
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
        last = _stages(network)[-1][1]
        pooled = keras.layers.GlobalAveragePooling2D(name="embedding_pool")(last)
    return keras.Model(network.input, pooled, name=name or f"{network.name}_embeddings")


def _selected_stages(info, out_indices):
    """The stage names ``out_indices`` picks from ``info`` (timm's: indices into it)."""
    if out_indices is None:
        return [entry["name"] for entry in info]
    count = len(info)
    valid = isinstance(out_indices, (list, tuple)) and out_indices and all(
        isinstance(i, int) and not isinstance(i, bool) and -count <= i < count for i in out_indices)
    if not valid:
        raise InvalidArgument(
            f"`out_indices` must be None or a non-empty list of indices into feature_info "
            f"(0..{count - 1}, or negative from the end: {', '.join(e['name'] for e in info)}); "
            f"got {out_indices!r}."
        )
    return [info[i]["name"] for i in out_indices]


def create_model(model_name, weights=None, features_only=False, out_indices=None, **overrides):
    """A model by name with any constructor option as a keyword (timm's ``create_model``).

    Args:
        model_name: a name of ``keras_resnet.models.list_models()`` ("resnet50",
            "resnext50_32x4d", "resnet20", ...) or resnetN for a CIFAR depth 6n+2.
        weights: None, a weights file or a weight set name (as the constructors take).
        features_only: return the :func:`feature_extractor` of the headless model instead.
        out_indices: with ``features_only``, the stages to output, as indices into
            :func:`feature_info` (timm's meaning); default every stage.
        **overrides: the constructor's other arguments and options (``se_ratio=1/16``,
            ``stem="deep"``, ``shortcut="A"``, ``input_shape=...``).

    Returns:
        A ``keras.Model``; with ``features_only``, its outputs are ``{stage name: tensor}``.

    Example:
        >>> sorted(create_model("resnet20", features_only=True, out_indices=[-1]).output)
        ['conv4']
    """
    if model_name not in MODEL_NAMES:
        try:
            parse_model_name(model_name)
        except InvalidArgument:
            raise InvalidArgument(
                f"`model_name` {model_name!r} is not a model{close_match(model_name, MODEL_NAMES)}; "
                "see keras_resnet.models.list_models()."
            ) from None
    if not isinstance(features_only, bool):
        raise InvalidArgument(f"`features_only` must be True or False; got {features_only!r}.")
    if out_indices is not None and not features_only:
        raise InvalidArgument(
            f"`out_indices={out_indices!r}` selects feature maps; it needs features_only=True.")
    if not features_only:
        return get_model(model_name, weights=weights, **overrides)
    for head_argument in ("include_top", "pooling"):
        if overrides.get(head_argument):
            raise InvalidArgument(
                f"`{head_argument}={overrides[head_argument]!r}`: features_only=True builds the "
                "model without its head; leave it unset.")
    overrides.update(include_top=False, pooling=None)
    model = get_model(model_name, weights=weights, **overrides)
    return feature_extractor(model, _selected_stages(feature_info(model), out_indices))
