"""Checks of a residual block's arguments, each error naming the argument, the value given and
what is allowed; and the batch-norm keywords' two spellings."""

import keras

from keras_resnet.errors import InvalidArgument, check_fraction, check_positive_int

# The batch-norm options as the model constructors name them, and their older spellings
# (which saved configs and older callers use).
BN_KEYWORDS = {"bn_momentum": "momentum", "bn_epsilon": "epsilon",
               "bn_synchronized": "synchronized"}
BN_DEFAULTS = {"bn_momentum": 0.9, "bn_epsilon": 1e-5, "bn_synchronized": False}


def batch_norm_option(name, value, old_value):
    """The value of batch-norm option ``name`` given as ``value`` or under its old spelling as
    ``old_value`` (None where not given); InvalidArgument when both are given.

    Example:
        >>> batch_norm_option("bn_momentum", None, 0.99)
        0.99
    """
    old = BN_KEYWORDS[name]
    if value is not None and old_value is not None:
        raise InvalidArgument(f"`{name}` and `{old}` are one option; give one of them, not "
                              f"both (got {name}={value!r}, {old}={old_value!r}).")
    if value is not None:
        return value
    return BN_DEFAULTS[name] if old_value is None else old_value


def check_numbers(block):
    """The block's sizes, rates and the stride-or-dilation rule.

    Example:
        >>> check_numbers(keras_resnet.ResidualBlock(8))
    """
    check_positive_int("filters", block.filters)
    check_positive_int("strides", block.strides)
    check_positive_int("dilation_rate", block.dilation_rate)
    check_positive_int("first_dilation_rate", block.first_dilation_rate)
    if block.strides > 1 and max(block.dilation_rate, block.first_dilation_rate) > 1:
        raise InvalidArgument(
            f"A block either strides or dilates; got strides={block.strides} with "
            f"dilation_rate={block.dilation_rate}, "
            f"first_dilation_rate={block.first_dilation_rate}."
        )
    check_fraction("drop_path_rate", block.drop_path_rate)
    check_positive_int("groups", block.groups)
    check_positive_int("base_width", block.base_width)
    check_fraction("se_ratio", block.se_ratio)


def check_flags(block):
    """The block's True/False options, ``bn_synchronized``'s need of TensorFlow and
    ``outputs_preactivation``'s need of a pre-activation block.

    Example:
        >>> check_flags(keras_resnet.ResidualBlock(8, preactivation=True))
    """
    for flag in ("preactivation", "avg_down", "outputs_preactivation"):
        value = getattr(block, flag)
        if not isinstance(value, bool):
            raise InvalidArgument(f"`{flag}` must be True or False; got {value!r}.")
    if block.bn_synchronized and keras.backend.backend() != "tensorflow":
        raise InvalidArgument(
            "`bn_synchronized=True` synchronizes BN statistics through a TensorFlow "
            f"distribution strategy; Keras' backend is {keras.backend.backend()!r}. Use "
            "bn_synchronized=False (JAX's data parallelism averages them itself)."
        )
    if block.outputs_preactivation and not block.preactivation:
        raise InvalidArgument(
            "`outputs_preactivation=True` returns the block's BN-ReLU of its input, which "
            "only a pre-activation block has; got preactivation=False. Use "
            "preactivation=True or outputs_preactivation=False."
        )


def check_shortcut_options(block):
    """The shortcut against the stride, drop path and ResNet-D (§3.3; Huang et al. 2016;
    He et al. 2019).

    Example:
        >>> check_shortcut_options(keras_resnet.ResidualBlock(8, shortcut="B", avg_down=True))
    """
    shortcut = block.shortcut
    if block.drop_path_rate and shortcut == "none":
        raise InvalidArgument(
            "`drop_path_rate` drops the residual branch, so it needs a shortcut; got "
            f"shortcut='none' with drop_path_rate={block.drop_path_rate}."
        )
    if block.avg_down and shortcut not in ("projection", "B", "C"):
        raise InvalidArgument(
            "`avg_down=True` (ResNet-D) pools before a projection shortcut of a "
            f"post-activation block; got shortcut={shortcut!r}, "
            f"preactivation={block.preactivation}. Use shortcut 'projection', 'B' or 'C'."
        )
    if shortcut == "identity" and block.strides != 1:
        raise InvalidArgument(
            f"`shortcut='identity'` needs `strides=1`; got strides={block.strides}. "
            "Use shortcut='zero_pad' (option A) or 'projection' (option B/C) "
            "when a block changes resolution."
        )
