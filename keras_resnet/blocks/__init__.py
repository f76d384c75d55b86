"""Residual blocks of He et al. 2015, "Deep Residual Learning for Image Recognition", made of
small parts.

Both blocks compute ``y = activation(F(x) + shortcut(x))`` (Eq. 1-2, Fig. 2), with batch
normalization after every convolution and before its activation (§3.4).

- :class:`ResidualBlock` (``basic``): two 3x3 convolutions (Fig. 5 left; ResNet-18/34 and
  the CIFAR nets).
- :class:`BottleneckBlock` (``bottleneck``): 1x1 reduce, 3x3, 1x1 expand to ``4 * filters``
  (Fig. 5 right).

The parts they compose:

- ``shortcuts``: ``"identity"``, ``"zero_pad"`` (option A of §3.3), ``"projection"`` (option
  B/C: 1x1 convolution with the stride, then BN), ``"none"`` (a *plain* block, Fig. 3
  middle), or §3.3's options ``"A"``, ``"B"``, ``"C"`` decided from the input; ResNet-D's
  average-pool projection (``avg_down``; He et al. 2019, "Bag of Tricks", §4.1);
- ``excite``: squeeze-and-excitation on the residual branch (``se_ratio``; Hu et al. 2018);
- ``parts``: convolutions and batch norms carrying the block's settings, the explicit padding
  of a strided 3x3, ResNeXt's grouped 3x3 (``groups``, ``base_width``; Xie et al. 2017) and
  drop path (``drop_path_rate``; stochastic depth, Huang et al. 2016);
- ``preactivation``: the order of BN and ReLU, after each convolution (He et al. 2015) or
  before it (``preactivation=True``; He et al. 2016, "Identity Mappings in Deep Residual
  Networks"), where ``outputs_preactivation=True`` also returns the block's BN-ReLU'd input.

Beyond the paper, for backbones: ``dilation_rate`` dilates the 3x3 convolutions (atrous
convolution, for ``output_stride`` 8 or 16).

Example:
    >>> y = BottleneckBlock(64, strides=2, shortcut="B")(keras.Input((56, 56, 256)))
"""

from keras_resnet.blocks.base import ResidualUnit
from keras_resnet.blocks.basic import ResidualBlock
from keras_resnet.blocks.bottleneck import STRIDE_POSITIONS, BottleneckBlock
from keras_resnet.blocks.excite import SE_DIVISOR, se_channels, squeeze_excite
from keras_resnet.blocks.parts import ConvSpec, check_channels_last
from keras_resnet.blocks.preactivation import PostActivation, PreActivation
from keras_resnet.blocks.shortcuts import OPTIONS, SHORTCUTS, shortcut_kind

__all__ = [
    "BottleneckBlock", "ConvSpec", "OPTIONS", "PostActivation", "PreActivation",
    "ResidualBlock", "ResidualUnit", "SE_DIVISOR", "SHORTCUTS", "STRIDE_POSITIONS",
    "check_channels_last", "se_channels", "shortcut_kind", "squeeze_excite",
]
