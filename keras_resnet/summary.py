"""Depth, parameters and multiply-adds of every named model, next to the paper's figures."""

import keras

from keras_resnet.architectures import NAMED_MODELS
from keras_resnet.models import get_model, parse_model_name

# Published figures to compare against.
#   ImageNet: multiply-adds from Table 1 ("FLOPs", 224x224); trainable parameters of the
#   reference implementations (option B, no conv bias, 1000 classes).
#   CIFAR: parameters from Table 6 (option A, 10 classes); the paper gives no FLOPs.
PAPER_FIGURES = {
    "resnet18": {"multiply_adds": 1.8e9, "params": 11_689_512},
    "resnet34": {"multiply_adds": 3.6e9, "params": 21_797_672},
    "resnet50": {"multiply_adds": 3.8e9, "params": 25_557_032},
    "resnet101": {"multiply_adds": 7.6e9, "params": 44_549_160},
    "resnet152": {"multiply_adds": 11.3e9, "params": 60_192_808},
    "resnet20": {"multiply_adds": None, "params": 0.27e6},
    "resnet32": {"multiply_adds": None, "params": 0.46e6},
    "resnet44": {"multiply_adds": None, "params": 0.66e6},
    "resnet56": {"multiply_adds": None, "params": 0.85e6},
    "resnet110": {"multiply_adds": None, "params": 1.7e6},
    "resnet1202": {"multiply_adds": None, "params": 19.4e6},
    # The family, as its sources publish it. torchvision: its weights' num_params and _ops
    # (multiply-adds at 224); timm: sum(p.numel()) of timm.create_model; keras.applications:
    # the trainable weights of its V2 nets; He et al. 2016: the pre-activation CIFAR nets
    # (Tables 3 and 6). Hu et al. 2018's 3.87 GFLOPs are of another SE-ResNet-50 than ours:
    # theirs strides in the 1x1 (3.86G counted here with stride_position="1x1"; SE's pooling
    # and channel scaling, 5.5M adds and 5.5M multiplies that Table 1's count leaves out, make
    # 3.87G), ours in the 3x3 as timm's weights need (4.09G), so no published figure is ours.
    "resnext50_32x4d": {"multiply_adds": 4.23e9, "params": 25_028_904},
    "resnext101_32x8d": {"multiply_adds": 16.414e9, "params": 88_791_336},
    "resnext101_64x4d": {"multiply_adds": 15.46e9, "params": 83_455_272},
    "wide_resnet50_2": {"multiply_adds": 11.398e9, "params": 68_883_240},
    "wide_resnet101_2": {"multiply_adds": 22.753e9, "params": 126_886_696},
    "resnet18d": {"multiply_adds": None, "params": 11_708_744},
    "resnet34d": {"multiply_adds": None, "params": 21_816_904},
    "resnet50d": {"multiply_adds": None, "params": 25_576_264},
    "resnet101d": {"multiply_adds": None, "params": 44_568_392},
    "resnet152d": {"multiply_adds": None, "params": 60_212_040},
    "seresnet50": {"multiply_adds": None, "params": 28_088_024},
    "seresnet101": {"multiply_adds": None, "params": 49_326_872},
    "seresnet152": {"multiply_adds": None, "params": 66_821_848},
    "resnet50v2": {"multiply_adds": None, "params": 25_568_360},
    "resnet101v2": {"multiply_adds": None, "params": 44_577_896},
    "resnet152v2": {"multiply_adds": None, "params": 60_236_904},
    "preact_resnet110": {"multiply_adds": None, "params": 1.7e6},
    "preact_resnet164": {"multiply_adds": None, "params": 1.7e6},
    "preact_resnet1001": {"multiply_adds": None, "params": 10.2e6},
}


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
        for the family: ``PAPER_FIGURES``).
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
