"""Where a residual block puts its batch norms and activations: after each convolution (He et
al. 2015, the original unit) or before it (He et al. 2016, "Identity Mappings in Deep
Residual Networks", the pre-activation unit). A block holds one of these two orderings and
asks it at the few places they differ: the block's entry, the last convolution's BN, the
projection's BN and what follows the addition."""

from keras_resnet.blocks.parts import make_batch_norm
from keras_resnet.errors import InvalidArgument


class PostActivation:
    """He et al. 2015 (§3.4, Fig. 2): conv-BN-ReLU, the last BN before the addition, ReLU
    after it: ``y = relu(F(x) + shortcut(x))``.

    Example:
        >>> PostActivation().normalizes_last
        True
    """

    preactivation = False
    # The branch's last convolution and a projection shortcut are followed by BN.
    normalizes_last = True

    def check(self, block):
        """Nothing to refuse: every block option fits the original unit."""

    def make_entry(self, block):
        """The original unit reads its input as it is: no sublayer."""

    def build_entry(self, block, input_shape):
        """Nothing to build."""

    def enter(self, block, inputs, training):
        """The tensor the residual branch and a projection read: the input itself."""
        return inputs

    def leave(self, block, summed):
        """The second nonlinearity, after the addition (Fig. 2)."""
        return block.activation(summed)


class PreActivation:
    """He et al. 2016 (Fig. 4(e), Eq. 3): BN and ReLU before each convolution, on the
    branch and on a projection shortcut alike; no BN after the last convolution (it and the
    projection carry biases instead) and nothing after the addition:
    ``y = F(relu(bn(x))) + shortcut(x)``.

    Example:
        >>> PreActivation().normalizes_last
        False
    """

    preactivation = True
    normalizes_last = False

    def check(self, block):
        """Refuse the options that need a BN or a ReLU the pre-activation unit does not have."""
        if block.zero_init_residual:
            raise InvalidArgument(
                "`zero_init_residual=True` zeroes the residual branch's last BN; a "
                "pre-activation block (preactivation=True) has none after its last convolution."
            )
        if block.avg_down:
            raise InvalidArgument(
                "`avg_down=True` (ResNet-D) pools before a projection shortcut of a "
                f"post-activation block; got shortcut={block.shortcut!r}, preactivation=True."
            )

    def make_entry(self, block):
        """Set ``block.preact_bn``, the BN of the block's input (Fig. 4(e))."""
        block.preact_bn = make_batch_norm(block, "preact_bn")

    def build_entry(self, block, input_shape):
        """Build ``block.preact_bn`` for the block's input."""
        block.preact_bn.build(input_shape)

    def enter(self, block, inputs, training):
        """BN-ReLU of the input: what the branch and a projection read (§3.1)."""
        return block.activation(block.preact_bn(inputs, training=training))

    def leave(self, block, summed):
        """The sum as it is: the identity path stays clean (Eq. 3)."""
        return summed


def ordering(preactivation):
    """The ordering of a block with ``preactivation``.

    Example:
        >>> type(ordering(True)).__name__
        'PreActivation'
    """
    return PreActivation() if preactivation else PostActivation()
