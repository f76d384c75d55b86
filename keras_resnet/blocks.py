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

The family that grew from the paper is options of these two blocks, not copies of them:

- ``groups`` and ``base_width`` (bottleneck): grouped 3x3 convolutions of ResNeXt (Xie et al.
  2017) and the wider bottlenecks of Wide ResNet-50-2 (base width 128);
- ``se_ratio``: squeeze-and-excitation on the residual branch (Hu et al. 2018);
- ``preactivation``: BN-ReLU before each convolution and nothing after the addition (He et
  al. 2016, "Identity Mappings in Deep Residual Networks");
- ``avg_down``: the projection shortcut averages 2x2 before a stride-1 1x1 convolution
  (ResNet-D, He et al. 2019, "Bag of Tricks", §4.1).
"""

import keras
from keras import ops
from keras_resnet.errors import InvalidArgument, check_choice, check_fraction, check_positive_int

SHORTCUTS = ("identity", "zero_pad", "projection", "none")
STRIDE_POSITIONS = ("1x1", "3x3")
# Squeeze-and-excitation's reduced channels are rounded to a multiple of this (timm's rule;
# Hu et al. 2018 use C / r with r = 16, which it equals for the ImageNet widths).
SE_DIVISOR = 8


def se_channels(channels, ratio):
    """The reduced channels of a squeeze-and-excitation unit on ``channels`` with ``ratio``
    (Hu et al. 2018, §3.2: C / r): rounded to the nearest multiple of 8, at least 8.

    Example:
        >>> se_channels(256, 1 / 16), se_channels(16, 1 / 16)
        (16, 8)
    """
    value = channels * ratio
    return max(SE_DIVISOR, int(value + SE_DIVISOR / 2) // SE_DIVISOR * SE_DIVISOR)


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
        groups=1,
        base_width=64,
        se_ratio=0.0,
        preactivation=False,
        avg_down=False,
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
        check_positive_int("groups", groups)
        check_positive_int("base_width", base_width)
        check_fraction("se_ratio", se_ratio)
        for flag, value in (("preactivation", preactivation), ("avg_down", avg_down)):
            if not isinstance(value, bool):
                raise InvalidArgument(f"`{flag}` must be True or False; got {value!r}.")
        if avg_down and (shortcut != "projection" or preactivation):
            raise InvalidArgument(
                "`avg_down=True` (ResNet-D) pools before a projection shortcut of a "
                f"post-activation block; got shortcut={shortcut!r}, preactivation={preactivation}."
            )
        if preactivation and zero_init_residual:
            raise InvalidArgument(
                "`zero_init_residual=True` zeroes the residual branch's last BN; a "
                "pre-activation block (preactivation=True) has none after its last convolution."
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
        self.groups = groups
        self.base_width = base_width
        self.se_ratio = float(se_ratio)
        self.preactivation = preactivation
        self.avg_down = avg_down
        # Stochastic depth: a Dropout whose mask is one number per sample drops (and at
        # training time rescales) the sample's whole residual branch; identity at inference.
        if drop_path_rate:
            self.drop_path = keras.layers.Dropout(
                drop_path_rate, noise_shape=(None, 1, 1, 1), dtype=self.dtype_policy,
                name="drop_path",
            )

        if preactivation:
            # He et al. 2016, Fig. 4(e): BN and ReLU before the weights, on both paths.
            self.preact_bn = self._batch_norm("preact_bn")
        if shortcut == "projection":
            # A pre-activation projection has no BN after it, so it carries a bias (as in
            # keras.applications' V2 nets); ResNet-D's strides in its average pool instead.
            self.shortcut_conv = self._conv(
                self.output_channels, 1, 1 if avg_down else strides, "shortcut_conv",
                use_bias=True if preactivation else None,
            )
            if not preactivation:
                self.shortcut_bn = self._batch_norm("shortcut_bn")
        if se_ratio:
            # Hu et al. 2018, Fig. 3: squeeze (global average), excite (1x1 reduce, ReLU,
            # 1x1 expand, sigmoid), scale the branch's channels.
            reduced = se_channels(self.output_channels, se_ratio)
            self.se_reduce = self._conv(reduced, 1, 1, "se_reduce", use_bias=True)
            self.se_expand = self._conv(self.output_channels, 1, 1, "se_expand", use_bias=True)

    @property
    def output_channels(self):
        return self.filters * self.expansion

    @property
    def width(self):
        """Channels of the residual branch's inner convolutions."""
        return self.filters

    @property
    def batch_norms(self):
        """The block's BatchNormalization layers (residual branch, then shortcut)."""
        names = ("preact_bn", "bn1", "bn2", "bn3", "shortcut_bn")
        return [getattr(self, name) for name in names if hasattr(self, name)]

    # Sublayer factories: every conv and BN of a block carries the block's settings.
    def _conv(self, filters, kernel_size, strides, name, dilation_rate=1, groups=1,
              use_bias=None):
        # A strided 3x3 pads explicitly (1 pixel on every side, as in the paper's Caffe
        # models); "same" would pad only bottom/right when the input size is even.
        padding = "valid" if (kernel_size > 1 and strides > 1) else "same"
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            dilation_rate=dilation_rate,
            groups=groups,
            padding=padding,
            use_bias=self.use_bias if use_bias is None else use_bias,
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
        if conv.groups > 1 and keras.backend.backend() == "tensorflow":
            return self._grouped_conv(conv, x)
        return conv(x)

    @staticmethod
    def _grouped_conv(conv, x):
        """``conv(x)`` as one convolution per group. Keras' TensorFlow backend runs a grouped
        convolution on CPU as an XLA-compiled function, which the ONNX converter cannot read
        and which ran 1x to 7x slower than this on ResNeXt-50's stages (2-core CPU, batch 8)."""
        kernel = ops.cast(conv.kernel, x.dtype)
        outputs = [
            ops.conv(part, weights, strides=conv.strides, padding=conv.padding,
                     dilation_rate=conv.dilation_rate)
            for part, weights in zip(ops.split(x, conv.groups, axis=-1),
                                     ops.split(kernel, conv.groups, axis=-1))
        ]
        y = ops.concatenate(outputs, axis=-1)
        return y + ops.cast(conv.bias, y.dtype) if conv.use_bias else y

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
        if self.preactivation:
            self.preact_bn.build(input_shape)
        if self.shortcut == "projection":
            pooled = self._spatial(input_shape, self.strides, input_shape[-1])
            self.shortcut_conv.build(pooled if self.avg_down else input_shape)
            if not self.preactivation:
                self.shortcut_bn.build(self._spatial(input_shape, self.strides, self.output_channels))
        if self.se_ratio:
            batch, channels = input_shape[0], self.output_channels
            self.se_reduce.build((batch, 1, 1, channels))
            self.se_expand.build((batch, 1, 1, self.se_reduce.filters))

    def _preactivate(self, inputs, training):
        """The input the branch (and a projection) reads: BN-ReLU'd in a pre-activation block."""
        if not self.preactivation:
            return inputs
        return self.activation(self.preact_bn(inputs, training=training))

    def _excite(self, residual):
        """Squeeze-and-excitation of the branch's output (identity without ``se_ratio``)."""
        if not self.se_ratio:
            return residual
        squeezed = ops.mean(residual, axis=(1, 2), keepdims=True)
        scale = self.se_expand(ops.relu(self.se_reduce(squeezed)))
        return residual * ops.sigmoid(scale)

    @staticmethod
    def _spatial(input_shape, strides, channels):
        def down(size):
            return None if size is None else -(-size // strides)

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), channels)

    def _shortcut(self, x, preactivated, training):
        if self.shortcut == "identity":
            return x
        if self.shortcut == "projection":
            if self.preactivation:
                return self.shortcut_conv(preactivated)
            if self.avg_down and self.strides > 1:
                # ResNet-D: 2x2 average (padding excluded) with the stride, then a 1x1 conv.
                x = ops.average_pool(x, 2, self.strides, padding="same")
            elif self.avg_down and self.dilation_rate > 1:
                # A dilated stage keeps timm's 2x2 average at stride 1 over a zero-padded
                # bottom and right edge (the zeros counted), so its weights give its outputs.
                x = ops.average_pool(ops.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), 2, 1)
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
        # A pre-activation unit leaves the sum as it is (He et al. 2016, Eq. 3).
        return y if self.preactivation else self.activation(y)

    def _outputs(self, responses, residual, inputs, preactivated, training):
        shortcut = (None if self.shortcut == "none"
                    else self._shortcut(inputs, preactivated, training))
        residual = self._excite(residual)
        return {**responses, "residual": residual, "shortcut": shortcut}

    def compute_output_shape(self, input_shape):
        return self._spatial(input_shape, self.strides, self.output_channels)

    def _extra_multiply_adds(self, input_shape):
        """The projection shortcut's and the squeeze-and-excitation's multiply-adds."""
        total = 0
        if self.shortcut == "projection":
            _, h, w, _ = self._spatial(input_shape, self.strides, self.output_channels)
            total += h * w * input_shape[-1] * self.output_channels
        if self.se_ratio:
            total += 2 * self.output_channels * self.se_reduce.filters
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
            momentum=self.momentum,
            epsilon=self.epsilon,
            zero_init_residual=self.zero_init_residual,
            activation=keras.activations.serialize(self.activation),
            synchronized=self.synchronized,
            dilation_rate=self.dilation_rate,
            first_dilation_rate=self.first_dilation_rate,
            drop_path_rate=self.drop_path_rate,
            groups=self.groups,
            base_width=self.base_width,
            se_ratio=self.se_ratio,
            preactivation=self.preactivation,
            avg_down=self.avg_down,
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
        use_bias: whether convolutions followed by BN have biases (BN makes them redundant).
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
        se_ratio: squeeze-and-excitation on the branch with ``C * se_ratio`` reduced channels
            (``se_channels``; Hu et al. 2018 use 1/16); 0 for none.
        preactivation: BN-ReLU before each convolution, the sum left as it is (He et al.
            2016); the last convolution and a projection then carry biases, no BN.
        avg_down: ResNet-D's projection: 2x2 average pool with the stride, then a stride-1
            1x1 convolution and BN (needs ``shortcut="projection"``).
        groups, base_width: ResNeXt's options, for bottleneck blocks only (must stay 1, 64).

    Example:
        >>> y = ResidualBlock(64, strides=2, shortcut="projection")(keras.Input((32, 32, 32)))
    """

    expansion = 1

    def __init__(self, filters, strides=1, shortcut="identity", **kwargs):
        super().__init__(filters, strides=strides, shortcut=shortcut, **kwargs)
        if self.groups != 1 or self.base_width != 64:
            raise InvalidArgument(
                "ResidualBlock has no grouped or widened convolutions (torchvision and timm "
                f"refuse them too); got groups={self.groups}, base_width={self.base_width}. "
                "Use BottleneckBlock for ResNeXt and Wide ResNets."
            )
        self.conv1 = self._conv(filters, 3, strides, "conv1", self.first_dilation_rate)
        self.bn1 = self._batch_norm("bn1")
        self.conv2 = self._conv(filters, 3, 1, "conv2", self.dilation_rate,
                                use_bias=True if self.preactivation else None)
        if not self.preactivation:
            self.bn2 = self._batch_norm("bn2", zero_gamma=self.zero_init_residual)
        # The 3x3 layers' responses (Fig. 7) among ``branch_outputs``.
        self.responses_3x3 = ("bn1", "residual") if self.preactivation else ("bn1", "bn2")

    def build(self, input_shape):
        self._check_input(input_shape)
        self._build_conv(self.conv1, input_shape)
        mid = self._spatial(input_shape, self.strides, self.filters)
        self.bn1.build(mid)
        self.conv2.build(mid)
        if not self.preactivation:
            self.bn2.build(mid)
        self._build_shortcut(input_shape)

    def branch_outputs(self, inputs, training=None):
        """The block's intermediate tensors: ``bn1``, ``bn2`` (each 3x3 conv after its BN,
        before ReLU/addition; no ``bn2`` in a pre-activation block), ``residual`` (F(x)) and
        ``shortcut`` (None in a plain block).

        Example:
            >>> block = ResidualBlock(16)
            >>> sorted(block.branch_outputs(keras.ops.zeros((1, 8, 8, 16))))
            ['bn1', 'bn2', 'residual', 'shortcut']
        """
        x = self._preactivate(inputs, training)
        bn1 = self.bn1(self._apply_conv(self.conv1, x), training=training)
        conv2 = self.conv2(self.activation(bn1))
        if self.preactivation:
            return self._outputs({"bn1": bn1}, conv2, inputs, x, training)
        bn2 = self.bn2(conv2, training=training)
        return self._outputs({"bn1": bn1, "bn2": bn2}, bn2, inputs, x, training)

    def multiply_adds(self, input_shape):
        """Multiply-adds of the block's convolutions for one image of ``input_shape``."""
        _, h, w, _ = self._spatial(input_shape, self.strides, self.filters)
        convs = 9 * h * w * (input_shape[-1] * self.filters + self.filters * self.filters)
        return convs + self._extra_multiply_adds(input_shape)


@keras.saving.register_keras_serializable(package="keras_resnet")
class BottleneckBlock(_ResidualUnit):
    """1x1 reduce, 3x3, 1x1 expand (Fig. 5 right); output has ``4 * filters`` channels.

    Args:
        filters: the block's planes: the output has ``4 * filters`` channels, the 1x1
            reduction and the 3x3 ``width = int(filters * base_width / 64) * groups``.
        strides: stride of the block, applied where ``stride_position`` says.
        stride_position: "1x1" puts the stride on the first 1x1 (the paper, keras.applications);
            "3x3" puts it on the 3x3 (torchvision's "ResNet v1.5", ResNeXt, ResNet-B/D).
        first_dilation_rate: dilation of the 3x3 convolution (default ``dilation_rate``).
        groups: groups of the 3x3 convolution, ResNeXt's cardinality (Xie et al. 2017, §3.3:
            "32x4d" is groups=32, base_width=4).
        base_width: channels per group at 64 planes; 64 is the paper's bottleneck, 128 Wide
            ResNet-50-2's (twice as wide inside).
        **kwargs: every other argument of :class:`ResidualBlock`.

    Example:
        >>> y = BottleneckBlock(64, shortcut="projection")(keras.Input((56, 56, 64)))  # 256 ch
        >>> BottleneckBlock(64, groups=32, base_width=4).width  # ResNeXt-50 32x4d's conv2
        128
    """

    expansion = 4

    def __init__(self, filters, strides=1, shortcut="identity", stride_position="1x1", **kwargs):
        check_choice("stride_position", stride_position, STRIDE_POSITIONS)
        super().__init__(filters, strides=strides, shortcut=shortcut, **kwargs)
        if not self.width:
            raise InvalidArgument(
                f"`base_width={self.base_width}` leaves no channel per group: the 3x3 width "
                f"int(filters * base_width / 64) * groups is 0 for filters={filters}; use "
                "filters * base_width >= 64."
            )
        self.stride_position = stride_position
        stride_1x1, stride_3x3 = (strides, 1) if stride_position == "1x1" else (1, strides)
        width = self.width
        self.conv1 = self._conv(width, 1, stride_1x1, "conv1")
        self.bn1 = self._batch_norm("bn1")
        self.conv2 = self._conv(width, 3, stride_3x3, "conv2", self.first_dilation_rate,
                                groups=self.groups)
        self.bn2 = self._batch_norm("bn2")
        self.conv3 = self._conv(self.output_channels, 1, 1, "conv3",
                                use_bias=True if self.preactivation else None)
        if not self.preactivation:
            self.bn3 = self._batch_norm("bn3", zero_gamma=self.zero_init_residual)
        # Only the middle convolution is 3x3 (Fig. 5 right).
        self.responses_3x3 = ("bn2",)

    @property
    def width(self):
        return int(self.filters * self.base_width / 64) * self.groups

    def build(self, input_shape):
        self._check_input(input_shape)
        stride_1x1 = self.conv1.strides[0]
        self.conv1.build(input_shape)
        reduced = self._spatial(input_shape, stride_1x1, self.width)
        self.bn1.build(reduced)
        self._build_conv(self.conv2, reduced)
        mid = self._spatial(input_shape, self.strides, self.width)
        self.bn2.build(mid)
        self.conv3.build(mid)
        if not self.preactivation:
            self.bn3.build(self._spatial(input_shape, self.strides, self.output_channels))
        self._build_shortcut(input_shape)

    def branch_outputs(self, inputs, training=None):
        """The block's intermediate tensors: ``bn1``, ``bn2``, ``bn3`` (each conv after its BN,
        before ReLU/addition; no ``bn3`` in a pre-activation block), ``residual`` (F(x)) and
        ``shortcut`` (None in a plain block).

        Example:
            >>> block = BottleneckBlock(4, shortcut="projection")
            >>> tuple(block.branch_outputs(keras.ops.zeros((1, 8, 8, 16)))["residual"].shape)
            (1, 8, 8, 16)
        """
        x = self._preactivate(inputs, training)
        bn1 = self.bn1(self.conv1(x), training=training)
        bn2 = self.bn2(self._apply_conv(self.conv2, self.activation(bn1)), training=training)
        conv3 = self.conv3(self.activation(bn2))
        if self.preactivation:
            return self._outputs({"bn1": bn1, "bn2": bn2}, conv3, inputs, x, training)
        bn3 = self.bn3(conv3, training=training)
        return self._outputs({"bn1": bn1, "bn2": bn2, "bn3": bn3}, bn3, inputs, x, training)

    def multiply_adds(self, input_shape):
        """Multiply-adds of the block's convolutions for one image of ``input_shape``."""
        width = self.width
        _, h1, w1, _ = self._spatial(input_shape, self.conv1.strides[0], width)
        _, h, w, _ = self._spatial(input_shape, self.strides, width)
        reduce = h1 * w1 * input_shape[-1] * width
        spatial = 9 * h * w * width * width // self.groups
        expand = h * w * width * self.output_channels
        return reduce + spatial + expand + self._extra_multiply_adds(input_shape)

    def get_config(self):
        config = super().get_config()
        config["stride_position"] = self.stride_position
        return config
