"""The bottleneck block: 1x1 reduce, 3x3, 1x1 expand to ``4 * filters`` (He et al. 2015, Fig.
5 right), with ResNeXt's grouped 3x3 (Xie et al. 2017) and Wide ResNet's widths."""

import keras

from keras_resnet.blocks.base import ResidualUnit
from keras_resnet.blocks.parts import ConvSpec
from keras_resnet.errors import InvalidArgument, check_choice

STRIDE_POSITIONS = ("1x1", "3x3")


@keras.saving.register_keras_serializable(package="keras_resnet")
class BottleneckBlock(ResidualUnit):
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
        **kwargs: every other argument of :class:`ResidualBlock` (shortcut kinds and options
            A/B/C, ``bn_momentum``, ``se_ratio``, ``preactivation``, ``outputs_preactivation``,
            ``avg_down``, ``drop_path_rate``, ...).

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

    @property
    def width(self):
        """Channels of the 1x1 reduction and the 3x3: ``int(filters * base_width / 64) *
        groups`` (Xie et al. 2017, Table 1)."""
        return int(self.filters * self.base_width / 64) * self.groups

    def branch_specs(self):
        """``conv1`` (1x1 reduce), ``conv2`` (3x3, grouped), ``conv3`` (1x1 expand), each with
        its BN; the stride on ``conv1`` or ``conv2`` as ``stride_position`` says.

        Example:
            >>> [s.strides for s in BottleneckBlock(8, 2, "C", "3x3").branch_specs()]
            [1, 2, 1]
        """
        width, strides = self.width, self.strides
        stride_1x1, stride_3x3 = (strides, 1) if self.stride_position == "1x1" else (1, strides)
        return (
            ConvSpec("conv1", "bn1", width, 1, stride_1x1, 1, 1),
            ConvSpec("conv2", "bn2", width, 3, stride_3x3, self.first_dilation_rate, self.groups),
            ConvSpec("conv3", "bn3", self.output_channels, 1, 1, 1, 1),
        )

    def get_config(self):
        config = super().get_config()
        config["stride_position"] = self.stride_position
        return config
