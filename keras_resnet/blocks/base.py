"""The residual unit both blocks share (He et al. 2015, Eq. 1-2, Fig. 2):
``y = activation(F(x) + shortcut(x))``, with the residual branch ``F`` a list of convolutions
(:class:`~keras_resnet.blocks.parts.ConvSpec`) that each block names, and the parts it
composes: a shortcut (§3.3), squeeze-and-excitation (Hu et al. 2018), drop path (Huang et al.
2016) and an ordering of BN and ReLU (post-activation, or pre-activation of He et al. 2016)."""

import keras

from keras_resnet.blocks import options as options_lib
from keras_resnet.blocks import shortcuts as shortcuts_lib
from keras_resnet.blocks.excite import (
    build_squeeze_excite,
    make_squeeze_excite,
    squeeze_excite,
    squeeze_excite_multiply_adds,
)
from keras_resnet.blocks.parts import (
    apply_conv,
    build_conv,
    check_channels_last,
    conv_multiply_adds,
    make_batch_norm,
    make_conv,
    make_drop_path,
    spatial_shape,
)
from keras_resnet.blocks.preactivation import ordering
from keras_resnet.errors import InvalidArgument


class ResidualUnit(keras.layers.Layer):
    """A residual block: arguments, sublayers, forward pass and config shared by
    :class:`~keras_resnet.blocks.ResidualBlock` and :class:`~keras_resnet.blocks.BottleneckBlock`,
    which name their branch's convolutions in ``branch_specs()`` (see their Args).

    Sublayers are made in ``build()``, once the input's channels decide the shortcut of §3.3's
    options, always in one order (``preact_bn``, ``shortcut_conv``, ``shortcut_bn``,
    ``se_reduce``, ``se_expand``, then the branch's ``conv1``, ``bn1``, ...), so the weights'
    paths and order are the same for every way of asking for the same block.

    Example:
        >>> y = keras_resnet.ResidualBlock(64, strides=2, shortcut="B")(keras.Input((32, 32, 32)))
    """

    expansion = 1

    def __init__(
        self,
        filters,
        strides=1,
        shortcut="identity",
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        use_bias=False,
        bn_momentum=None,
        bn_epsilon=None,
        zero_init_residual=False,
        activation="relu",
        bn_synchronized=None,
        dilation_rate=1,
        first_dilation_rate=None,
        drop_path_rate=0.0,
        groups=1,
        base_width=64,
        se_ratio=0.0,
        preactivation=False,
        avg_down=False,
        outputs_preactivation=False,
        momentum=None,
        epsilon=None,
        synchronized=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_channels_last(type(self).__name__)
        self.filters, self.strides = filters, strides
        self.shortcut = shortcuts_lib.normalize_shortcut(shortcut)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.use_bias, self.activation = use_bias, keras.activations.get(activation)
        self.bn_momentum = options_lib.batch_norm_option("bn_momentum", bn_momentum, momentum)
        self.bn_epsilon = options_lib.batch_norm_option("bn_epsilon", bn_epsilon, epsilon)
        self.bn_synchronized = options_lib.batch_norm_option(
            "bn_synchronized", bn_synchronized, synchronized)
        self.zero_init_residual = zero_init_residual
        self.dilation_rate = dilation_rate
        self.first_dilation_rate = (dilation_rate if first_dilation_rate is None
                                    else first_dilation_rate)
        self.drop_path_rate, self.se_ratio = drop_path_rate, se_ratio
        self.groups, self.base_width = groups, base_width
        self.preactivation, self.avg_down = preactivation, avg_down
        self.outputs_preactivation = outputs_preactivation
        options_lib.check_numbers(self)
        options_lib.check_flags(self)
        options_lib.check_shortcut_options(self)
        self.drop_path_rate, self.se_ratio = float(drop_path_rate), float(se_ratio)
        self._ordering = ordering(preactivation)
        self._ordering.check(self)
        # The kind of shortcut: known now unless option A or B waits for the input (§3.3).
        self.shortcut_kind = (None if self.shortcut in ("A", "B")
                              else shortcuts_lib.shortcut_kind(self.shortcut, 0, 0, strides))
        if drop_path_rate:
            self.drop_path = make_drop_path(drop_path_rate, self.dtype_policy)

    @property
    def output_channels(self):
        """Channels of the block's output: ``filters * expansion``."""
        return self.filters * self.expansion

    @property
    def width(self):
        """Channels of the residual branch's inner convolutions."""
        return self.filters

    # The batch-norm settings under their older names, for code that reads them (read-only).
    momentum = property(lambda self: self.bn_momentum, doc="``bn_momentum``'s older name.")
    epsilon = property(lambda self: self.bn_epsilon, doc="``bn_epsilon``'s older name.")
    synchronized = property(lambda self: self.bn_synchronized,
                            doc="``bn_synchronized``'s older name.")

    @property
    def batch_norms(self):
        """The block's BatchNormalization layers (residual branch, then shortcut)."""
        names = ("preact_bn", "bn1", "bn2", "bn3", "shortcut_bn")
        return [getattr(self, name) for name in names if hasattr(self, name)]

    @property
    def responses_3x3(self):
        """The keys of ``branch_outputs`` that hold the 3x3 convolutions' responses (Fig. 7):
        each one's BN, or ``residual`` for an unnormalized last convolution."""
        specs = self.branch_specs()
        return tuple(spec.norm if self._normalized(index) else "residual"
                     for index, spec in enumerate(specs) if spec.kernel_size == 3)

    def branch_specs(self):
        """The residual branch's convolutions, in order (each block names its own)."""
        raise NotImplementedError

    def _normalized(self, index):
        """Whether the branch's convolution ``index`` is followed by its BN."""
        return index < len(self.branch_specs()) - 1 or self._ordering.normalizes_last

    def _check_input(self, input_shape):
        if len(input_shape) != 4:
            raise InvalidArgument(
                f"{type(self).__name__} expects a 4D NHWC input; got shape {input_shape}."
            )

    def build(self, input_shape):
        self._check_input(input_shape)
        in_channels, out_channels = input_shape[-1], self.output_channels
        self.shortcut_kind = shortcuts_lib.shortcut_kind(
            self.shortcut, in_channels, out_channels, self.strides)
        shortcuts_lib.check_shortcut_fits(self.shortcut_kind, in_channels, out_channels)
        self._make_sublayers()
        self._ordering.build_entry(self, input_shape)
        if self.shortcut_kind == "projection":
            shortcuts_lib.build_projection(self, input_shape)
        if self.se_ratio:
            build_squeeze_excite(self, input_shape[0], out_channels)
        shape = input_shape
        for index, spec in enumerate(self.branch_specs()):
            build_conv(getattr(self, spec.name), shape)
            shape = spatial_shape(shape, spec.strides, spec.filters)
            if self._normalized(index):
                getattr(self, spec.norm).build(shape)

    def _make_sublayers(self):
        """The sublayers, in the order their weights have always had."""
        self._ordering.make_entry(self)
        if self.shortcut_kind == "projection":
            shortcuts_lib.make_projection(self, normalized=self._ordering.normalizes_last)
        if self.se_ratio:
            make_squeeze_excite(self, self.output_channels, self.se_ratio)
        specs = self.branch_specs()
        for index, spec in enumerate(specs):
            last = index == len(specs) - 1
            # An unnormalized last convolution (pre-activation) carries a bias instead.
            setattr(self, spec.name, make_conv(self, spec, use_bias=None
                                               if self._normalized(index) else True))
            if self._normalized(index):
                zero = last and self.zero_init_residual  # the block starts as identity
                setattr(self, spec.norm, make_batch_norm(self, spec.norm, zero_gamma=zero))

    def branch_outputs(self, inputs, training=None):
        """The block's intermediate tensors: each branch convolution after its BN (``bn1``,
        ``bn2``, ...: before ReLU and addition; the last one has none in a pre-activation
        block), ``residual`` (F(x), after squeeze-and-excitation), ``shortcut`` (None in a
        plain block) and, in a pre-activation block, ``preactivated`` (BN-ReLU of the input).

        Example:
            >>> block = keras_resnet.ResidualBlock(16)
            >>> sorted(block.branch_outputs(keras.ops.zeros((1, 8, 8, 16))))
            ['bn1', 'bn2', 'residual', 'shortcut']
        """
        if not self.built:
            self.build(tuple(inputs.shape))
        entered = x = self._ordering.enter(self, inputs, training)
        outputs = {"preactivated": entered} if self.preactivation else {}
        specs = self.branch_specs()
        for index, spec in enumerate(specs):
            x = apply_conv(getattr(self, spec.name), x)
            if self._normalized(index):
                x = outputs[spec.norm] = getattr(self, spec.norm)(x, training=training)
            if index < len(specs) - 1:
                x = self.activation(x)
        if self.se_ratio:
            x = squeeze_excite(x, self.se_reduce, self.se_expand)
        outputs["residual"] = x
        outputs["shortcut"] = self._shortcut(inputs, entered, training)
        return outputs

    def _shortcut(self, inputs, entered, training):
        kind = self.shortcut_kind
        if kind == "none":
            return None
        if kind == "identity":
            return inputs
        if kind == "zero_pad":  # §3.3, option A
            return shortcuts_lib.zero_pad(inputs, self.strides, self.output_channels)
        # §3.3, option B/C; a pre-activation projection reads the BN-ReLU'd input (Fig. 4(e)).
        return shortcuts_lib.apply_projection(self, entered, training)

    def call(self, inputs, training=None):
        outputs = self.branch_outputs(inputs, training=training)
        # Eq. 1: y = F(x) + x, then the second nonlinearity (Fig. 2), or none (pre-activation).
        y = outputs["residual"]
        if self.drop_path_rate:
            y = self.drop_path(y, training=training)
        if outputs["shortcut"] is not None:
            y = y + outputs["shortcut"]
        y = self._ordering.leave(self, y)
        return (y, outputs["preactivated"]) if self.outputs_preactivation else y

    def compute_output_shape(self, input_shape):
        output = spatial_shape(input_shape, self.strides, self.output_channels)
        return (output, tuple(input_shape)) if self.outputs_preactivation else output

    def multiply_adds(self, input_shape):
        """Multiply-adds of the block's convolutions for one image of ``input_shape``.

        Example:
            >>> keras_resnet.ResidualBlock(64).multiply_adds((None, 56, 56, 64))
            231211008
        """
        total, shape = 0, input_shape
        for spec in self.branch_specs():
            total += conv_multiply_adds(spec, shape)
            shape = spatial_shape(shape, spec.strides, spec.filters)
        out_channels = self.output_channels
        kind = shortcuts_lib.shortcut_kind(self.shortcut, input_shape[-1], out_channels,
                                           self.strides)
        if kind == "projection":
            _, h, w, _ = spatial_shape(input_shape, self.strides, out_channels)
            total += h * w * input_shape[-1] * out_channels
        if self.se_ratio:
            total += squeeze_excite_multiply_adds(out_channels, self.se_ratio)
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            shortcut=self.shortcut,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            use_bias=self.use_bias,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            zero_init_residual=self.zero_init_residual,
            activation=keras.activations.serialize(self.activation),
            bn_synchronized=self.bn_synchronized,
            dilation_rate=self.dilation_rate,
            first_dilation_rate=self.first_dilation_rate,
            drop_path_rate=self.drop_path_rate,
            groups=self.groups,
            base_width=self.base_width,
            se_ratio=self.se_ratio,
            preactivation=self.preactivation,
            avg_down=self.avg_down,
            outputs_preactivation=self.outputs_preactivation,
        )
        return config
