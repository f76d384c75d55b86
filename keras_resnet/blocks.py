"""Residual blocks of He et al. 2015, "Deep Residual Learning for Image Recognition".

Both blocks compute ``y = activation(F(x) + shortcut(x))`` (Eq. 1-2, Fig. 2), with batch
normalization after every convolution and before its activation (§3.4).

- :class:`ResidualBlock`: two 3x3 convolutions (Fig. 5 left; ResNet-18/34 and the CIFAR nets).
- :class:`BottleneckBlock`: 1x1 reduce, 3x3, 1x1 expand to ``4 * filters`` (Fig. 5 right).

The shortcut is one of

- ``"identity"``: ``x`` itself (same shape only);
- ``"zero_pad"``: option A of §3.3: ``x`` subsampled by the stride, extra channels zero-padded
  (adds no parameters);
- ``"projection"``: option B/C of §3.3: 1x1 convolution with the block's stride, then BN;
- ``"none"``: no shortcut at all, the block of a *plain* network (Fig. 3 middle).

Beyond the paper, for backbones: ``dilation_rate`` dilates the 3x3 convolutions (atrous
convolution, for ``output_stride`` 8 or 16) and ``drop_path_rate`` drops the whole residual
branch of a sample while training (stochastic depth, Huang et al. 2016).
"""

import keras
from keras import ops
from keras_resnet.errors import InvalidArgument, check_choice, check_fraction, check_positive_int

SHORTCUTS = ("identity", "zero_pad", "projection", "none")
STRIDE_POSITIONS = ("1x1", "3x3")


def check_channels_last(what="keras_resnet"):
    """Raise ValueError unless Keras' image data format is channels_last (NHWC), the only one
    ``what`` builds: naming the setting and how to change it."""
    if keras.config.image_data_format() != "channels_last":
        raise InvalidArgument(
            f"{what} builds channels_last (NHWC) layers only; Keras' image data format is "
            f"{keras.config.image_data_format()!r}. Call "
            "keras.config.set_image_data_format('channels_last') or set "
            '"image_data_format": "channels_last" in ~/.keras/keras.json.'
        )


class _ResidualUnit(keras.layers.Layer):
    """Shared arguments, shortcut handling and config of the two blocks."""

    expansion = 1

    def __init__(
        self,
        filters,
        strides=1,
        shortcut="identity",
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        use_bias=False,
        momentum=0.9,
        epsilon=1e-5,
        zero_init_residual=False,
        activation="relu",
        synchronized=False,
        dilation_rate=1,
        first_dilation_rate=None,
        drop_path_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_channels_last(type(self).__name__)
        check_positive_int("filters", filters)
        check_positive_int("strides", strides)
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_positive_int("dilation_rate", dilation_rate)
        first_dilation_rate = dilation_rate if first_dilation_rate is None else first_dilation_rate
        check_positive_int("first_dilation_rate", first_dilation_rate)
        if strides > 1 and max(dilation_rate, first_dilation_rate) > 1:
            raise InvalidArgument(
                f"A block either strides or dilates; got strides={strides} with "
                f"dilation_rate={dilation_rate}, first_dilation_rate={first_dilation_rate}."
            )
        check_fraction("drop_path_rate", drop_path_rate)
        if drop_path_rate and shortcut == "none":
            raise InvalidArgument(
                "`drop_path_rate` drops the residual branch, so it needs a shortcut; got "
                f"shortcut='none' with drop_path_rate={drop_path_rate}."
            )
        if shortcut == "identity" and strides != 1:
            raise InvalidArgument(
                f"`shortcut='identity'` needs `strides=1`; got strides={strides}. "
                "Use shortcut='zero_pad' (option A) or 'projection' (option B/C) "
                "when a block changes resolution."
            )
        self.filters = filters
        self.strides = strides
        self.shortcut = shortcut
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.use_bias = use_bias
        self.momentum = momentum
        self.epsilon = epsilon
        self.zero_init_residual = zero_init_residual
        self.activation = keras.activations.get(activation)
        self.synchronized = synchronized
        self.dilation_rate = dilation_rate
        self.first_dilation_rate = first_dilation_rate
        self.drop_path_rate = float(drop_path_rate)
        # Stochastic depth: a Dropout whose mask is one number per sample drops (and at
        # training time rescales) the sample's whole residual branch; identity at inference.
        if drop_path_rate:
            self.drop_path = keras.layers.Dropout(
                drop_path_rate, noise_shape=(None, 1, 1, 1), dtype=self.dtype_policy,
                name="drop_path",
            )

        if shortcut == "projection":
            self.shortcut_conv = self._conv(self.output_channels, 1, strides, "shortcut_conv")
            self.shortcut_bn = self._batch_norm("shortcut_bn")

    @property
    def output_channels(self):
        return self.filters * self.expansion

    @property
    def batch_norms(self):
        """The block's BatchNormalization layers (residual branch, then shortcut)."""
        names = ("bn1", "bn2", "bn3", "shortcut_bn")
        return [getattr(self, name) for name in names if hasattr(self, name)]

    # Sublayer factories: every conv and BN of a block carries the block's settings.
    def _conv(self, filters, kernel_size, strides, name, dilation_rate=1):
        # A strided 3x3 pads explicitly (1 pixel on every side, as in the paper's Caffe
        # models); "same" would pad only bottom/right when the input size is even.
        padding = "valid" if (kernel_size > 1 and strides > 1) else "same"
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            dilation_rate=dilation_rate,
            padding=padding,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _batch_norm(self, name, zero_gamma=False):
        return keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            gamma_initializer="zeros" if zero_gamma else "ones",
            synchronized=self.synchronized,
            dtype=self.dtype_policy,
            name=name,
        )

    @staticmethod
    def _explicit_padding(conv):
        return conv.kernel_size[0] // 2 if conv.padding == "valid" else 0

    def _build_conv(self, conv, input_shape):
        pad = self._explicit_padding(conv)
        batch, height, width, channels = input_shape
        conv.build((
            batch,
            None if height is None else height + 2 * pad,
            None if width is None else width + 2 * pad,
            channels,
        ))

    def _apply_conv(self, conv, x):
        pad = self._explicit_padding(conv)
        if pad:
            x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return conv(x)

    def _check_input(self, input_shape):
        if len(input_shape) != 4:
            raise InvalidArgument(
                f"{type(self).__name__} expects a 4D NHWC input; got shape {input_shape}."
            )
        in_channels = input_shape[-1]
        out_channels = self.output_channels
        if self.shortcut == "identity" and in_channels != out_channels:
            raise InvalidArgument(
                f"`shortcut='identity'` needs input channels == output channels; got "
                f"{in_channels} -> {out_channels}. Use 'zero_pad' or 'projection'."
            )
        if self.shortcut == "zero_pad" and in_channels > out_channels:
            raise InvalidArgument(
                f"`shortcut='zero_pad'` can only add channels; got {in_channels} -> "
                f"{out_channels}. Use 'projection'."
            )
        return in_channels

    def _build_shortcut(self, input_shape):
        if self.shortcut == "projection":
            self.shortcut_conv.build(input_shape)
            self.shortcut_bn.build(self._spatial(input_shape, self.strides, self.output_channels))

    @staticmethod
    def _spatial(input_shape, strides, channels):
        def down(size):
            return None if size is None else -(-size // strides)

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), channels)

    def _shortcut(self, x, training):
        if self.shortcut == "identity":
            return x
        if self.shortcut == "projection":
            return self.shortcut_bn(self.shortcut_conv(x), training=training)
        # §3.3 option A: subsample by the stride, zero-pad the new channels.
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        extra = self.output_channels - x.shape[-1]
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def call(self, inputs, training=None):
        outputs = self.branch_outputs(inputs, training=training)
        # Eq. 1: y = F(x) + x, then the second nonlinearity (Fig. 2).
        y = outputs["residual"]
        if self.drop_path_rate:
            y = self.drop_path(y, training=training)
        if outputs["shortcut"] is not None:
            y = y + outputs["shortcut"]
        return self.activation(y)

    def _outputs(self, responses, residual, inputs, training):
        shortcut = None if self.shortcut == "none" else self._shortcut(inputs, training)
        return {**responses, "residual": residual, "shortcut": shortcut}

    def compute_output_shape(self, input_shape):
        return self._spatial(input_shape, self.strides, self.output_channels)

    def _shortcut_multiply_adds(self, input_shape):
        if self.shortcut != "projection":
            return 0
        _, h, w, _ = self._spatial(input_shape, self.strides, self.output_channels)
        return h * w * input_shape[-1] * self.output_channels

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            shortcut=self.shortcut,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            use_bias=self.use_bias,
            momentum=self.momentum,
            epsilon=self.epsilon,
            zero_init_residual=self.zero_init_residual,
            activation=keras.activations.serialize(self.activation),
            synchronized=self.synchronized,
            dilation_rate=self.dilation_rate,
            first_dilation_rate=self.first_dilation_rate,
            drop_path_rate=self.drop_path_rate,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class ResidualBlock(_ResidualUnit):
    """Two 3x3 convolutions with a shortcut (Fig. 5 left); output has ``filters`` channels.

    The stride, if any, sits on the first 3x3 convolution.

    Args:
        filters: channels of both convolutions and of the output.
        strides: stride of the first convolution and of the shortcut.
        shortcut: "identity", "zero_pad" (option A), "projection" (1x1 conv + BN) or
            "none" (plain block, no shortcut).
        kernel_initializer: initializer of every conv kernel (He normal, §3.4).
        kernel_regularizer: regularizer of every conv kernel, e.g. ``keras.regularizers.L2(5e-5)``
            for the paper's weight decay of 1e-4.
        use_bias: whether convolutions have biases (BN makes them redundant).
        momentum, epsilon: BatchNormalization settings.
        zero_init_residual: start the last BN's gamma at 0, so the block starts as identity.
        activation: nonlinearity after the first BN and after the addition.
        synchronized: synchronize BN statistics across replicas of a distribution strategy.
        dilation_rate: dilation of the second 3x3 convolution (stride 1 only).
        first_dilation_rate: dilation of the first 3x3 convolution; default ``dilation_rate``
            (the first block of a dilated stage keeps the previous stage's, as in timm and
            torchvision).
        drop_path_rate: probability of dropping the residual branch of a sample while
            training (stochastic depth); the kept ones are scaled by ``1 / (1 - rate)``.

    Example:
        >>> y = ResidualBlock(64, strides=2, shortcut="projection")(keras.Input((32, 32, 32)))
    """

    expansion = 1

    def __init__(self, filters, strides=1, shortcut="identity", **kwargs):
        super().__init__(filters, strides=strides, shortcut=shortcut, **kwargs)
        self.conv1 = self._conv(filters, 3, strides, "conv1", self.first_dilation_rate)
        self.bn1 = self._batch_norm("bn1")
        self.conv2 = self._conv(filters, 3, 1, "conv2", self.dilation_rate)
        self.bn2 = self._batch_norm("bn2", zero_gamma=self.zero_init_residual)

    def build(self, input_shape):
        self._check_input(input_shape)
        self._build_conv(self.conv1, input_shape)
        mid = self._spatial(input_shape, self.strides, self.filters)
        self.bn1.build(mid)
        self.conv2.build(mid)
        self.bn2.build(mid)
        self._build_shortcut(input_shape)

    # The 3x3 layers' responses (Fig. 7) among ``branch_outputs``.
    responses_3x3 = ("bn1", "bn2")

    def branch_outputs(self, inputs, training=None):
        """The block's intermediate tensors: ``bn1``, ``bn2`` (each 3x3 conv after its BN,
        before ReLU/addition), ``residual`` (F(x)) and ``shortcut`` (None in a plain block).

        Example:
            >>> block = ResidualBlock(16)
            >>> sorted(block.branch_outputs(keras.ops.zeros((1, 8, 8, 16))))
            ['bn1', 'bn2', 'residual', 'shortcut']
        """
        bn1 = self.bn1(self._apply_conv(self.conv1, inputs), training=training)
        bn2 = self.bn2(self.conv2(self.activation(bn1)), training=training)
        return self._outputs({"bn1": bn1, "bn2": bn2}, bn2, inputs, training)

    def multiply_adds(self, input_shape):
        """Multiply-adds of the block's convolutions for one image of ``input_shape``."""
        _, h, w, _ = self._spatial(input_shape, self.strides, self.filters)
        convs = 9 * h * w * (input_shape[-1] * self.filters + self.filters * self.filters)
        return convs + self._shortcut_multiply_adds(input_shape)


@keras.saving.register_keras_serializable(package="keras_resnet")
class BottleneckBlock(_ResidualUnit):
    """1x1 reduce, 3x3, 1x1 expand (Fig. 5 right); output has ``4 * filters`` channels.

    Args:
        filters: channels of the 1x1 reduction and the 3x3 (the output has ``4 * filters``).
        strides: stride of the block, applied where ``stride_position`` says.
        stride_position: "1x1" puts the stride on the first 1x1 (the paper, keras.applications);
            "3x3" puts it on the 3x3 (torchvision's "ResNet v1.5").
        first_dilation_rate: dilation of the 3x3 convolution (default ``dilation_rate``).
        **kwargs: every other argument of :class:`ResidualBlock`.

    Example:
        >>> y = BottleneckBlock(64, shortcut="projection")(keras.Input((56, 56, 64)))  # 256 ch
    """

    expansion = 4

    def __init__(self, filters, strides=1, shortcut="identity", stride_position="1x1", **kwargs):
        check_choice("stride_position", stride_position, STRIDE_POSITIONS)
        super().__init__(filters, strides=strides, shortcut=shortcut, **kwargs)
        self.stride_position = stride_position
        stride_1x1, stride_3x3 = (strides, 1) if stride_position == "1x1" else (1, strides)
        self.conv1 = self._conv(filters, 1, stride_1x1, "conv1")
        self.bn1 = self._batch_norm("bn1")
        self.conv2 = self._conv(filters, 3, stride_3x3, "conv2", self.first_dilation_rate)
        self.bn2 = self._batch_norm("bn2")
        self.conv3 = self._conv(self.output_channels, 1, 1, "conv3")
        self.bn3 = self._batch_norm("bn3", zero_gamma=self.zero_init_residual)

    def build(self, input_shape):
        self._check_input(input_shape)
        stride_1x1 = self.conv1.strides[0]
        self.conv1.build(input_shape)
        reduced = self._spatial(input_shape, stride_1x1, self.filters)
        self.bn1.build(reduced)
        self._build_conv(self.conv2, reduced)
        mid = self._spatial(input_shape, self.strides, self.filters)
        self.bn2.build(mid)
        self.conv3.build(mid)
        self.bn3.build(self._spatial(input_shape, self.strides, self.output_channels))
        self._build_shortcut(input_shape)

    # Only the middle convolution is 3x3 (Fig. 5 right).
    responses_3x3 = ("bn2",)

    def branch_outputs(self, inputs, training=None):
        """The block's intermediate tensors: ``bn1``, ``bn2``, ``bn3`` (each conv after its BN,
        before ReLU/addition), ``residual`` (F(x)) and ``shortcut`` (None in a plain block).

        Example:
            >>> block = BottleneckBlock(4, shortcut="projection")
            >>> tuple(block.branch_outputs(keras.ops.zeros((1, 8, 8, 16)))["residual"].shape)
            (1, 8, 8, 16)
        """
        bn1 = self.bn1(self.conv1(inputs), training=training)
        bn2 = self.bn2(self._apply_conv(self.conv2, self.activation(bn1)), training=training)
        bn3 = self.bn3(self.conv3(self.activation(bn2)), training=training)
        return self._outputs({"bn1": bn1, "bn2": bn2, "bn3": bn3}, bn3, inputs, training)

    def multiply_adds(self, input_shape):
        """Multiply-adds of the block's convolutions for one image of ``input_shape``."""
        _, h1, w1, _ = self._spatial(input_shape, self.conv1.strides[0], self.filters)
        _, h, w, _ = self._spatial(input_shape, self.strides, self.filters)
        reduce = h1 * w1 * input_shape[-1] * self.filters
        spatial = 9 * h * w * self.filters * self.filters
        expand = h * w * self.filters * self.output_channels
        return reduce + spatial + expand + self._shortcut_multiply_adds(input_shape)

    def get_config(self):
        config = super().get_config()
        config["stride_position"] = self.stride_position
        return config
