"""The basic block: two 3x3 convolutions with a shortcut (He et al. 2015, Fig. 5 left; the
block of ResNet-18/34 and of the CIFAR nets of §4.2)."""

import keras

from keras_resnet.blocks.base import ResidualUnit
from keras_resnet.blocks.parts import ConvSpec
from keras_resnet.errors import InvalidArgument


@keras.saving.register_keras_serializable(package="keras_resnet")
class ResidualBlock(ResidualUnit):
    """Two 3x3 convolutions with a shortcut (Fig. 5 left); output has ``filters`` channels.

    The stride, if any, sits on the first 3x3 convolution.

    Args:
        filters: channels of both convolutions and of the output.
        strides: stride of the first convolution and of the shortcut.
        shortcut: a kind, "identity", "zero_pad" (option A), "projection" (1x1 conv + BN) or
            "none" (plain block, no shortcut), or one of §3.3's options "A", "B", "C" (any
            case; A: identity when the shape is kept, else zero-padding; B: identity when
            kept, else a projection; C: always a projection), decided in ``build()``.
        kernel_initializer: initializer of every conv kernel (He normal, §3.4).
        kernel_regularizer: regularizer of every conv kernel, e.g. ``keras.regularizers.L2(5e-5)``
            for the paper's weight decay of 1e-4.
        use_bias: whether convolutions followed by BN have biases (BN makes them redundant).
        bn_momentum, bn_epsilon: BatchNormalization settings (default 0.9, 1e-5).
        zero_init_residual: start the last BN's gamma at 0, so the block starts as identity.
        activation: nonlinearity after the first BN and after the addition.
        bn_synchronized: synchronize BN statistics across replicas of a distribution strategy.
        dilation_rate: dilation of the second 3x3 convolution (stride 1 only).
        first_dilation_rate: dilation of the first 3x3 convolution; default ``dilation_rate``
            (the first block of a dilated stage keeps the previous stage's, as in timm and
            torchvision).
        drop_path_rate: probability of dropping the residual branch of a sample while
            training (stochastic depth, Huang et al. 2016); the kept ones are scaled by
            ``1 / (1 - rate)``.
        se_ratio: squeeze-and-excitation on the branch with ``C * se_ratio`` reduced channels
            (``se_channels``; Hu et al. 2018 use 1/16); 0 for none.
        preactivation: BN-ReLU before each convolution, the sum left as it is (He et al.
            2016); the last convolution and a projection then carry biases, no BN.
        avg_down: ResNet-D's projection (He et al. 2019): 2x2 average pool with the stride,
            then a stride-1 1x1 convolution and BN (needs a projection: "projection", "B", "C").
        outputs_preactivation: (pre-activation blocks only) ``call`` returns
            ``(output, preactivated)``, ``preactivated`` being the block's BN-ReLU of its
            input, e.g. to tap a strided block's pre-activated input as a feature map.
        groups, base_width: ResNeXt's options, for bottleneck blocks only (must stay 1, 64).
        momentum, epsilon, synchronized: older spellings of the ``bn_`` options (give one).

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

    def branch_specs(self):
        """``conv1`` (3x3, the stride) and ``conv2`` (3x3), each with its BN.

        Example:
            >>> [spec.name for spec in ResidualBlock(8).branch_specs()]
            ['conv1', 'conv2']
        """
        filters = self.filters
        return (
            ConvSpec("conv1", "bn1", filters, 3, self.strides, self.first_dilation_rate, 1),
            ConvSpec("conv2", "bn2", filters, 3, 1, self.dilation_rate, 1),
        )
