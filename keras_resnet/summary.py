"""Depth, parameters and multiply-adds of every named model, next to the paper's figures."""

import keras

from keras_resnet.architectures import NAMED_MODELS, PAPER_FIGURES
from keras_resnet.models import get_model, parse_model_name


def count_multiply_adds(model):
    """Multiply-adds of one forward pass of one image: convolutions and dense layers.

    Table 1 counts these as "FLOPs" (BN, activations, pooling and additions are left out).

    Example:
        >>> round(count_multiply_adds(keras_resnet.ResNet50()) / 1e9, 2)  # Table 1: 3.8e9
        3.86
    """
    total = 0
    for layer in model.layers:
        if hasattr(layer, "multiply_adds"):
            total += layer.multiply_adds(layer.input.shape)
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            kh, kw, cin, cout = layer.kernel.shape
            total += height * width * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def count_trainable_params(model):
    """Number of trainable scalars of ``model``."""
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


def model_statistics(model_name):
    """Depth, trainable parameters and multiply-adds of a named model at its default size.

    Returns:
        dict with ``model``, ``family``, ``depth``, ``input_shape``, ``params``,
        ``multiply_adds`` and the published ``paper_params`` / ``paper_multiply_adds`` (the
        paper's for its nets; torchvision's, timm's, keras.applications' or the family papers'
        for the family: ``architectures.PAPER_FIGURES``).
    """
    family, depth = parse_model_name(model_name)
    model = get_model(model_name)
    paper = PAPER_FIGURES[model_name]
    return {
        "model": model_name,
        "family": family,
        "depth": depth,
        "input_shape": tuple(model.input_shape[1:]),
        "params": count_trainable_params(model),
        "multiply_adds": count_multiply_adds(model),
        "paper_params": paper["params"],
        "paper_multiply_adds": paper["multiply_adds"],
    }


def summary_table(model_names=None):
    """A text table of every named model: depth, parameters, multiply-adds, paper's figures.

    Args:
        model_names: names to include (default: the paper's, ``NAMED_MODELS``; the family's
            are in ``architectures.FAMILY``).

    Returns:
        str, one row per model.

    Example:
        >>> print(keras_resnet.summary_table(["resnet20"]))  # doctest: +ELLIPSIS
        model ...
        resnet20    cifar        20    32x32x3     269,722   0.27M      0.04G       -
    """
    rows = [model_statistics(name) for name in (model_names or NAMED_MODELS)]

    def millions(value):
        return f"{value / 1e6:.2f}M"

    def giga(value):
        return "-" if value is None else f"{value / 1e9:.2f}G"

    header = ("model", "family", "depth", "input", "params", "paper", "mult-adds", "paper")
    lines = [header]
    for row in rows:
        lines.append((
            row["model"], row["family"], str(row["depth"]),
            "x".join(map(str, row["input_shape"])),
            f"{row['params']:,}", millions(row["paper_params"]),
            giga(row["multiply_adds"]), giga(row["paper_multiply_adds"]),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in
                  enumerate(zip(line, widths)))
        for line in lines
    )
