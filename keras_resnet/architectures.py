"""The networks of He et al. 2015 as data: Table 1 (ImageNet) and §4.2 (CIFAR-10), and the
family that grew from them (ResNeXt, Wide ResNet, ResNet-D, SE-ResNet, pre-activation nets).

An :class:`Architecture` lists the stem, the stages and the block options;
``keras_resnet.models`` turns it into a functional model. Nothing here imports Keras.
"""

import dataclasses
from keras_resnet.errors import InvalidArgument

FAMILIES = ("imagenet", "cifar")

# Table 1: block type and the number of blocks in conv2_x .. conv5_x.
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_FILTERS = (64, 128, 256, 512)  # conv2_x .. conv5_x (bottleneck outputs are 4x)
CIFAR_FILTERS = (16, 32, 64)  # §4.2: feature maps of 32x32, 16x16, 8x8

# Every named constructor: name -> (family, depth).
NAMED_MODELS = {
    **{f"resnet{depth}": ("imagenet", depth) for depth in IMAGENET_DEPTHS},
    **{f"resnet{depth}": ("cifar", depth) for depth in (20, 32, 44, 56, 110, 1202)},
}

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
    # the trainable weights of its V2 nets; Hu et al. 2018: 3.87 GFLOPs of SE-ResNet-50
    # (stride in the 1x1); He et al. 2016: the pre-activation CIFAR nets (Tables 3 and 6).
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
    "seresnet50": {"multiply_adds": 3.87e9, "params": 28_088_024},
    "seresnet101": {"multiply_adds": None, "params": 49_326_872},
    "seresnet152": {"multiply_adds": None, "params": 66_821_848},
    "resnet50v2": {"multiply_adds": None, "params": 25_568_360},
    "resnet101v2": {"multiply_adds": None, "params": 44_577_896},
    "resnet152v2": {"multiply_adds": None, "params": 60_236_904},
    "preact_resnet110": {"multiply_adds": None, "params": 1.7e6},
    "preact_resnet164": {"multiply_adds": None, "params": 1.7e6},
    "preact_resnet1001": {"multiply_adds": None, "params": 10.2e6},
}


OUTPUT_STRIDES = (8, 16, 32)
STEMS = ("standard", "low_resolution")


@dataclasses.dataclass(frozen=True)
class Stage:
    """``repeats`` blocks named ``{name}_block1..``; the first one applies ``strides``; the
    3x3 convolutions are dilated by ``dilation`` (1 in the paper; see ``with_output_stride``)."""

    name: str
    repeats: int
    filters: int
    strides: int
    dilation: int = 1


@dataclasses.dataclass(frozen=True)
class Stem:
    """The layers before the stages: a ``kernel_size`` conv with ``strides`` (+ BN, ReLU),
    then a max pool ``(pool_size, pool_strides)`` if ``pool_size``.

    ``deep_widths``: ResNet-C's deep stem (He et al. 2019, §4.1): 3x3 convs (+ BN, ReLU) of
    these widths come first, the first one with ``strides``. ``normalized=False``: the conv
    alone (a pre-activation net's first block normalizes it, He et al. 2016)."""

    filters: int
    kernel_size: int
    strides: int
    pool_size: int = 0
    pool_strides: int = 1
    deep_widths: tuple = ()
    normalized: bool = True


# Table 1, conv1 and the start of conv2_x: 7x7, 64, stride 2; 3x3 max pool, stride 2.
IMAGENET_STEM = Stem(64, 7, 2, pool_size=3, pool_strides=2)
# He et al. 2019, Fig. 2(b) (ResNet-C): three 3x3 convs, 32, 32, 64 channels, then the pool.
DEEP_STEM = Stem(64, 3, 2, pool_size=3, pool_strides=2, deep_widths=(32, 32))
# §4.2: "The first layer is 3x3 convolutions" with 16 filters.
CIFAR_STEM = Stem(16, 3, 1)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A whole network: stem, stages and the family's defaults."""

    family: str
    depth: int
    block: str  # "basic" (ResidualBlock) or "bottleneck" (BottleneckBlock)
    stem: Stem
    stages: tuple
    input_shape: tuple
    classes: int
    shortcut: str  # default shortcut option of §3.3 / §4.1
    # The family's block options (see keras_resnet.blocks) and names.
    variant: str = ""  # the model's name when it is not the paper's resnetN
    groups: int = 1
    base_width: int = 64
    se_ratio: float = 0.0
    preactivation: bool = False
    avg_down: bool = False
    stride_position: str = "1x1"
    downsample_in: str = "first"  # the block of a stage that strides: "first" or "last"

    @property
    def name(self):
        return self.variant or f"resnet{self.depth}"

    @property
    def block_options(self):
        """The options every block of the network gets (besides its own stride, shortcut)."""
        options = {"preactivation": self.preactivation} if self.preactivation else {}
        if self.block == "bottleneck":
            options.update(groups=self.groups, base_width=self.base_width,
                           stride_position=self.stride_position)
        if self.se_ratio:
            options["se_ratio"] = self.se_ratio
        return options

    @property
    def stem_reduction(self):
        """How much the stem shrinks the input (4 for Table 1's conv1 + pool1, 1 for §4.2)."""
        return self.stem.strides * (self.stem.pool_strides if self.stem.pool_size else 1)

    @property
    def output_stride(self):
        """How much the last stage's output is smaller than the input (32 in Table 1)."""
        reduction = self.stem_reduction
        for stage in self.stages:
            reduction *= stage.strides
        return reduction


# The family as data: name -> (the Table 1 or §4.2 network it changes, the changes, paper).
_TORCH_STYLE = {"stride_position": "3x3"}  # the stride on the 3x3, as every family paper's
FAMILY = {
    # Xie et al. 2017, "Aggregated Residual Transformations", Table 1: cardinality x width.
    "resnext50_32x4d": (("imagenet", 50), {"groups": 32, "base_width": 4}, "Xie et al. 2017"),
    "resnext101_32x8d": (("imagenet", 101), {"groups": 32, "base_width": 8}, "Xie et al. 2017"),
    "resnext101_64x4d": (("imagenet", 101), {"groups": 64, "base_width": 4}, "Xie et al. 2017"),
    # Zagoruyko & Komodakis 2016 as torchvision builds it: the bottleneck twice as wide.
    "wide_resnet50_2": (("imagenet", 50), {"base_width": 128}, "Zagoruyko & Komodakis 2016"),
    "wide_resnet101_2": (("imagenet", 101), {"base_width": 128}, "Zagoruyko & Komodakis 2016"),
    # He et al. 2019, "Bag of Tricks", §4.1: ResNet-D = deep stem (C) + average-pool shortcut (D).
    **{f"resnet{depth}d": (("imagenet", depth), {"stem": DEEP_STEM, "avg_down": True},
                           "He et al. 2019")
       for depth in IMAGENET_DEPTHS},
    # Hu et al. 2018, "Squeeze-and-Excitation Networks": SE with r = 16 in every block.
    **{f"seresnet{depth}": (("imagenet", depth), {"se_ratio": 1 / 16}, "Hu et al. 2018")
       for depth in (50, 101, 152)},
    # He et al. 2016, "Identity Mappings": full pre-activation, in keras.applications' layout
    # (stride in a stage's last block, conv1 without BN, BN-ReLU after the last stage).
    **{f"resnet{depth}v2": (("imagenet", depth),
                            {"preactivation": True, "downsample_in": "last",
                             "stem": dataclasses.replace(IMAGENET_STEM, normalized=False)},
                            "He et al. 2016")
       for depth in (50, 101, 152)},
    # He et al. 2016, Table 6 and §4.2 of 2015's CIFAR nets, pre-activated: ResNet-110 with
    # basic blocks (option A), ResNet-164 and -1001 with bottlenecks (9n + 2 layers, option B).
    "preact_resnet110": (("cifar", 110), {"preactivation": True}, "He et al. 2016"),
    "preact_resnet164": (("cifar_bottleneck", 164), {"preactivation": True}, "He et al. 2016"),
    "preact_resnet1001": (("cifar_bottleneck", 1001), {"preactivation": True}, "He et al. 2016"),
}


def family_architecture(name):
    """The architecture of a family member ("resnext50_32x4d", "resnet50d", "seresnet50",
    "resnet50v2", "preact_resnet164", ...): its base network with the family's changes.

    Example:
        >>> family_architecture("resnext50_32x4d").groups
        32
    """
    if name not in FAMILY:
        raise InvalidArgument(f"`name` must be one of {', '.join(FAMILY)}; got {name!r}.")
    (family, depth), changes, _ = FAMILY[name]
    if family == "cifar_bottleneck":
        # ResNet-164 / -1001: 9n + 2 layers of bottlenecks on 16, 32, 64 planes.
        n = (depth - 2) // 9
        base = cifar_architecture(6 * n + 2)
        base = dataclasses.replace(base, depth=depth, block="bottleneck", shortcut="B")
    else:
        base = architecture(family, depth)
    changes = dict(changes)
    if base.family == "imagenet":
        changes = {**_TORCH_STYLE, **changes}
    if changes.get("preactivation") and "stem" not in changes:
        changes["stem"] = dataclasses.replace(base.stem, normalized=False)
    if changes.get("downsample_in") == "last":  # conv5 keeps its size; conv2..4 halve at the end
        stages = base.stages
        changes["stages"] = tuple(
            dataclasses.replace(stage, strides=next_stage.strides)
            for stage, next_stage in zip(stages, stages[1:])
        ) + (dataclasses.replace(stages[-1], strides=1),)
    return dataclasses.replace(base, variant=name, **changes)


def paper_of(name):
    """The paper a named model follows."""
    return FAMILY[name][2] if name in FAMILY else "He et al. 2015"


def valid_depths(family):
    """A human-readable description of the valid depths of ``family``."""
    if family == "imagenet":
        return ", ".join(map(str, IMAGENET_DEPTHS))
    return "6n+2 for n >= 1 (8, 14, 20, 26, 32, 44, 56, 110, 1202, ...)"


def imagenet_architecture(depth):
    """Table 1: the ImageNet network of ``depth`` layers (18, 34, 50, 101 or 152).

    Example:
        >>> imagenet_architecture(50).stages[2].repeats
        6
    """
    if depth not in IMAGENET_DEPTHS or isinstance(depth, bool):
        raise InvalidArgument(
            f"`depth` of an ImageNet ResNet must be one of {valid_depths('imagenet')}; "
            f"got {depth!r}."
        )
    block, repeats = IMAGENET_DEPTHS[depth]
    stages = tuple(
        Stage(f"conv{i + 2}", n, filters, 1 if i == 0 else 2)
        for i, (n, filters) in enumerate(zip(repeats, IMAGENET_FILTERS))
    )
    return Architecture("imagenet", depth, block, IMAGENET_STEM, stages, (224, 224, 3), 1000, "B")


def cifar_architecture(depth):
    """§4.2: the CIFAR-10 network of ``depth = 6n + 2`` layers, n blocks per stage.

    Example:
        >>> cifar_architecture(20).stages[0].repeats
        3
    """
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 8
        or (depth - 2) % 6
    ):
        raise InvalidArgument(
            f"`depth` of a CIFAR ResNet must be {valid_depths('cifar')}; got {depth!r}."
        )
    n = (depth - 2) // 6
    stages = tuple(
        Stage(f"conv{i + 2}", n, filters, 1 if i == 0 else 2)
        for i, filters in enumerate(CIFAR_FILTERS)
    )
    return Architecture("cifar", depth, "basic", CIFAR_STEM, stages, (32, 32, 3), 10, "A")


def with_output_stride(arch, output_stride):
    """``arch`` whose output is ``output_stride`` (8, 16 or 32) times smaller than its input:
    the stages that would shrink it further keep their stride-1 resolution and dilate their
    3x3 convolutions by the stride they drop (atrous convolution, as DeepLab and timm's and
    torchvision's ResNets do); the weights keep their shapes.

    Example:
        >>> [s.dilation for s in with_output_stride(imagenet_architecture(50), 8).stages]
        [1, 1, 2, 4]
    """
    if output_stride not in OUTPUT_STRIDES or isinstance(output_stride, bool):
        raise InvalidArgument(
            f"`output_stride` must be one of {OUTPUT_STRIDES}; got {output_stride!r}."
        )
    if arch.downsample_in != "first":
        raise InvalidArgument(
            f"`output_stride` dilates the stages after the first strided block; {arch.name} "
            "strides in its stages' last blocks (keras.applications' V2 layout): use its "
            "output_stride=32."
        )
    if output_stride > arch.output_stride:
        raise InvalidArgument(
            f"`output_stride={output_stride}` is larger than {arch.name}'s own output stride "
            f"({arch.output_stride}); it can only be kept or reduced."
        )
    reduction, dilation, stages = arch.stem_reduction, 1, []
    for stage in arch.stages:
        strides = stage.strides
        if reduction * strides > output_stride:
            dilation, strides = dilation * strides, 1
        reduction *= strides
        stages.append(dataclasses.replace(stage, strides=strides, dilation=dilation))
    return dataclasses.replace(arch, stages=tuple(stages))


def with_stem(arch, stem):
    """``arch`` with the stem ``stem`` names: "standard" (its own) or "low_resolution"
    (Table 1's conv1 at stride 1 and no max pool, for 32x32 to 64x64 images; the same
    weights fit).

    Example:
        >>> with_stem(imagenet_architecture(18), "low_resolution").output_stride
        8
    """
    if stem not in STEMS:
        raise InvalidArgument(f"`stem` must be one of {STEMS}; got {stem!r}.")
    if stem == "standard":
        return arch
    if arch.stem_reduction == 1:
        raise InvalidArgument(
            f"`stem='low_resolution'` is for ImageNet nets; {arch.name} ({arch.family}) "
            "already keeps the input resolution in its stem."
        )
    return dataclasses.replace(
        arch, stem=dataclasses.replace(arch.stem, strides=1, pool_size=0, pool_strides=1)
    )


def architecture(family, depth):
    """The architecture of ``family`` ("imagenet" or "cifar") and ``depth``."""
    if family == "imagenet":
        return imagenet_architecture(depth)
    if family == "cifar":
        return cifar_architecture(depth)
    raise InvalidArgument(f"`family` must be one of {FAMILIES}; got {family!r}.")
