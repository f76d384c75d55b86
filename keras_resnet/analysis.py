"""Analyses of trained networks, as in the paper's §4.2.

:func:`layer_response_std` measures what Fig. 7 plots: the standard deviation of the response
of every 3x3 convolutional layer, "the outputs of each 3x3 layer, after BN and before other
nonlinearity (ReLU/addition)". The paper finds that residual functions have smaller responses
than the layers of plain networks, and that deeper ResNets have smaller responses still:
residual functions are closer to zero (§4.2, Analysis of Layer Responses).

Example:
    >>> images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    >>> layer_response_std(keras_resnet.ResNet20(), images).shape  # 19 3x3 layers
    (19,)
"""

import keras
import numpy as np
from keras import ops

from keras_resnet.blocks import BottleneckBlock, ResidualBlock
from keras_resnet.errors import InvalidArgument, InvalidType


def _is_3x3(conv):
    return tuple(conv.kernel_size) == (3, 3)


def _following_batch_norm(model, conv):
    """The BatchNormalization layer of ``model`` applied to ``conv``'s output, or None."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            try:
                if layer.input is conv.output:
                    return layer
            except (AttributeError, ValueError):  # a layer called more than once, or never
                continue
    return None


def _probes(model):
    """In network order: ``(name, kind, layer)`` for every 3x3 convolution of ``model``.

    ``kind`` is "tensor" for a top-level convolution (the layer is the one whose output is the
    response: its BN when one follows it, else the convolution itself) or "block" for a
    residual block, whose 3x3 responses are computed from the block's input.
    """
    probes = []
    for layer in model.layers:
        if isinstance(layer, (ResidualBlock, BottleneckBlock)):
            probes.append((layer.name, "block", layer))
        elif isinstance(layer, keras.layers.Conv2D) and _is_3x3(layer):
            response = _following_batch_norm(model, layer) or layer
            probes.append((layer.name, "tensor", response))
    return probes


def _block_responses(block, x):
    """The 3x3 responses of one block on its input ``x``: after BN, before ReLU/addition."""
    outputs = block.branch_outputs(x, training=False)
    return [outputs[name] for name in block.responses_3x3]


def _check_images(model, images):
    try:
        images = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"`images` must be a numeric array (n, h, w, c); got {type(images).__name__}."
        ) from None
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4:
        raise InvalidArgument(
            f"`images` must be a 4D array (n, h, w, c) matching the model input {expected}; "
            f"got shape {images.shape}."
        )
    if len(images) == 0:
        raise InvalidArgument("`images` is empty; pass at least one image.")
    given = images.shape[1:]
    if len(expected) != 3 or any(e is not None and e != g for e, g in zip(expected, given)):
        raise InvalidArgument(
            f"`images` of shape {images.shape} do not fit the model input "
            f"(batch,) + {expected}."
        )
    return images


def layer_response_std(model, images, batch_size=128):
    """Standard deviation of each 3x3 layer's response, in network order (Fig. 7, §4.2).

    A response is the output of a 3x3 convolution after its batch normalization and before
    any ReLU or shortcut addition, computed in inference mode (BN moving statistics). Its
    standard deviation is taken over every value (images, positions, channels) of the layer.
    Top-level 3x3 convolutions (the CIFAR ``conv1``) and the 3x3 convolutions inside
    :class:`~keras_resnet.ResidualBlock` / :class:`~keras_resnet.BottleneckBlock` layers are
    measured, in plain networks (``residual=False``) as in residual ones; 1x1 convolutions and
    the 7x7 ImageNet stem are not 3x3 layers and are left out.

    Args:
        model: a functional ``keras.Model`` of this package (e.g. ``CifarResNet(56)``).
        images: preprocessed float images ``(n, h, w, c)`` that fit the model input, e.g.
            test images from ``keras_resnet.data.load``.
        batch_size: images per forward pass; the statistics are accumulated over batches.

    Returns:
        float64 numpy array, one standard deviation per 3x3 layer (ResNet-20 and its plain
        counterpart: 19, conv1 first).

    Example:
        >>> images = np.zeros((2, 32, 32, 3), "float32")
        >>> layer_response_std(keras_resnet.CifarResNet(20, residual=False), images).shape
        (19,)
    """
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    images = _check_images(model, images)
    probes = _probes(model)
    if not probes:
        raise InvalidArgument(
            f"Model {model.name!r} has no 3x3 convolution or residual block at its top level; "
            "pass a model built by keras_resnet (not one nested inside another model)."
        )
    # One functional sub-model gives every tensor needed: top-level responses and block inputs.
    outputs = [layer.input if kind == "block" else layer.output for _, kind, layer in probes]
    if len(model.inputs) != 1:
        raise InvalidArgument(f"`model` must have one input; {model.name!r} has {len(model.inputs)}.")
    probe_model = keras.Model(model.inputs[0], outputs)

    sums, squares, counts = None, None, None
    for start in range(0, len(images), batch_size):
        tensors = probe_model(images[start:start + batch_size], training=False)
        if not isinstance(tensors, (list, tuple)):
            tensors = [tensors]
        responses = []
        for (_, kind, layer), tensor in zip(probes, tensors):
            responses.extend(_block_responses(layer, tensor) if kind == "block" else [tensor])
        values = [ops.convert_to_numpy(ops.cast(r, "float32")).astype(np.float64)
                  for r in responses]
        batch_sums = np.array([v.sum() for v in values])
        batch_squares = np.array([np.square(v).sum() for v in values])
        batch_counts = np.array([v.size for v in values], dtype=np.float64)
        if sums is None:
            sums, squares, counts = batch_sums, batch_squares, batch_counts
        else:
            sums, squares, counts = sums + batch_sums, squares + batch_squares, counts + batch_counts
    means = sums / counts
    return np.sqrt(np.maximum(squares / counts - means**2, 0.0))
