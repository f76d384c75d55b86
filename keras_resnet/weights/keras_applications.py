"""keras.applications ResNet50/101/152 and ResNet50V2/101V2/152V2: reading their layout and
copying their weights.

keras.applications names its layers ``conv{s}_block{b}_{i}_conv`` / ``_bn`` with ``i = 0`` the
projection shortcut and ``i = 1, 2, 3`` the bottleneck's convolutions (V2 adds
``_preact_bn`` and a final ``post_bn``); ours are the block layers ``conv{s}_block{b}`` with
sublayers ``shortcut_conv``, ``conv1``, ``conv2``, ``conv3``, ``preact_bn`` and BNs.
"""

from keras_resnet.architectures import IMAGENET_DEPTHS
from keras_resnet.errors import InvalidArgument
from keras_resnet.weights.layouts import adapt_input_kernel

_BLOCK_SUBLAYERS = {
    "0_conv": "shortcut_conv",
    "0_bn": "shortcut_bn",
    "1_conv": "conv1",
    "1_bn": "bn1",
    "2_conv": "conv2",
    "2_bn": "bn2",
    "3_conv": "conv3",
    "3_bn": "bn3",
    "preact_bn": "preact_bn",
}
_TOP_LAYERS = {"conv1_conv": "conv1", "conv1_bn": "conv1_bn", "post_bn": "post_bn",
               "predictions": "predictions"}


def keras_applications_layout(keras_model):
    """Read version, depth, top, pooling and classes off a keras.applications ResNet50/101/152
    or ResNet50V2/101V2/152V2.

    Returns:
        dict with ``version`` (1 or 2), ``depth``, ``include_top``, ``pooling``, ``classes``,
        ``classifier_activation`` and ``input_shape``.

    Example:
        >>> keras_applications_layout(keras.applications.ResNet50(weights=None))["depth"]
        50
    """
    names = {layer.name for layer in keras_model.layers}
    repeats = tuple(
        sum(f"conv{stage}_block{b}_out" in names for b in range(1, 64)) for stage in (2, 3, 4, 5)
    )
    depth = next(
        (d for d, (block, r) in IMAGENET_DEPTHS.items() if block == "bottleneck" and r == repeats),
        None,
    )
    if depth is None or "conv1_conv" not in names:
        raise InvalidArgument(
            "`keras_model` must be a keras.applications ResNet50, ResNet101, ResNet152 or "
            f"their V2; got a model named {keras_model.name!r} with blocks per stage {repeats}."
        )
    layout = {
        "version": 2 if "post_bn" in names else 1,
        "depth": depth,
        "include_top": "predictions" in names,
        "pooling": "avg" if "avg_pool" in names else "max" if "max_pool" in names else None,
        "classes": 1000,
        "classifier_activation": "softmax",
        "input_shape": tuple(keras_model.input_shape[1:]),
    }
    if layout["include_top"]:
        layout["pooling"] = None
        top = keras_model.get_layer("predictions")
        layout["classes"] = top.units
        layout["classifier_activation"] = top.get_config()["activation"]
    return layout


def copy_keras_applications_weights(source, target):
    """Copy every weight of keras.applications model ``source`` into keras_resnet ``target``.

    ``target`` must have the same architecture (build it with ``from_keras_applications``);
    every layer is matched and shape-checked before any weight is set.

    Example:
        >>> copy_keras_applications_weights(application, ours)  # doctest: +SKIP
    """
    pairs = []
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name in _TOP_LAYERS:
            destination = target.get_layer(_TOP_LAYERS[layer.name])
        else:
            block_name, _, part = layer.name.rpartition("_")
            block_name, _, index = block_name.rpartition("_")
            destination = getattr(target.get_layer(block_name), _BLOCK_SUBLAYERS[f"{index}_{part}"])
        shapes = [tuple(w.shape) for w in destination.weights]
        if destination.name == "conv1" and shapes[0][2] != weights[0].shape[2]:
            weights = [adapt_input_kernel(weights[0], shapes[0][2])] + weights[1:]
        if shapes != [w.shape for w in weights]:
            raise InvalidArgument(
                f"{source.name!r} layer {layer.name!r} has weights of shapes "
                f"{[w.shape for w in weights]}, {target.name!r} layer {destination.name!r} "
                f"{shapes}; the two architectures differ. Nothing was copied."
            )
        pairs.append((destination, weights))
    copied, expected = sum(len(w) for _, w in pairs), len(target.weights)
    if copied != expected:
        raise InvalidArgument(
            f"{source.name!r} has {copied} weight tensors but {target.name!r} has {expected}; "
            "the two architectures differ. Nothing was copied."
        )
    for destination, weights in pairs:
        destination.set_weights(weights)
