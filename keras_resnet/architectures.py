"""The networks of He et al. 2015 as data: Table 1 (ImageNet) and §4.2 (CIFAR-10), and the
family that grew from them (ResNeXt, Wide ResNet, ResNet-D, SE-ResNet, pre-activation nets).

An :class:`Architecture` lists the stem, the stages, the block options and where each
stage's features are read (its :class:`Tap` list); ``keras_resnet.builder`` turns it into a
functional model. Nothing here imports Keras.
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

# §3.3's shortcut options; the model-level vocabulary adds "none" (the plain net, Fig. 3 middle).
SHORTCUT_OPTIONS = ("A", "B", "C")
SHORTCUTS = (*SHORTCUT_OPTIONS, "none")
OUTPUT_STRIDES = (8, 16, 32)
STEMS = ("standard", "low_resolution", "deep")
TAP_POSITIONS = ("output", "preactivated_input")  # where a Tap reads its stage
# The block options a model's constructor may change (``with_options``), with what each allows.
ARCHITECTURE_OPTIONS = {
    "groups": "a positive integer (bottleneck blocks)",
    "base_width": "a positive integer (bottleneck blocks)",
    "se_ratio": "a number in [0, 1) (0: no squeeze-excitation)",
    "preactivation": "True or False", "avg_down": "True or False",
    "stride_position": "one of '1x1', '3x3' (bottleneck nets only)", "downsample_in": "one of 'first', 'last'",
}


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


@dataclasses.dataclass(frozen=True)
class Tap:
    """Where the features of stage ``stage`` ("conv1" .. "conv5") are read, as the builder
    marks them (``keras_resnet.builder.StageTap``).

    ``at="output"``: the stage's output (conv1: the stem's, before its max pool; a
    pre-activation net's last stage: after its final BN-ReLU). ``at="preactivated_input"``:
    the BN-ReLU'd input of the stage's strided block (He et al. 2016's pre-activation; the
    layers keras.applications' V2 nets expose as ``conv2_block3_preact_relu``, ...)."""

    stage: str
    at: str = "output"

    def __post_init__(self):
        if self.at not in TAP_POSITIONS:
            raise InvalidArgument(f"`at` must be one of {TAP_POSITIONS}; got {self.at!r}.")


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
    taps: tuple = ()  # a Tap per stage, conv1 first; () reads every stage's output

    @property
    def stage_taps(self):
        """The :class:`Tap` of every stage: ``taps``; else each stage's output, or for He et al.
        2016's nets striding in a stage's last block (keras.applications' V2 layout) where
        keras.applications shows them, at reductions 2, 4, 8, 16, 32: conv1's convolution,
        the pre-activated input of each strided block (``conv2_block3_preact_relu``), and
        ``post_relu``."""
        if self.taps:
            return self.taps
        if self.preactivation and self.downsample_in == "last":
            *strided, last = self.stages
            return (Tap("conv1"), *(Tap(stage.name, "preactivated_input") for stage in strided),
                    Tap(last.name))
        return (Tap("conv1"), *(Tap(stage.name) for stage in self.stages))

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
    if base.family == "imagenet" and base.block == "bottleneck":
        changes = {**_TORCH_STYLE, **changes}
    if changes.get("preactivation") and "stem" not in changes:
        changes["stem"] = dataclasses.replace(base.stem, normalized=False)
    if changes.get("downsample_in") == "last":
        changes["stages"] = _restrided(base.stages, "last")
    return dataclasses.replace(base, variant=name, **changes)


def _restrided(stages, downsample_in):
    """``stages`` striding in their first blocks ("first": conv2 keeps its size) or their last
    ("last": conv5 keeps its size, conv2 .. conv4 halve at their ends)."""
    strides = [stage.strides for stage in stages]
    strides = strides[1:] + [1] if downsample_in == "last" else [1] + strides[:-1]
    return tuple(dataclasses.replace(stage, strides=s) for stage, s in zip(stages, strides))


def _check_option(option, value, arch):
    """Raise unless ``value`` suits ``option`` of ``arch`` (see ``ARCHITECTURE_OPTIONS``)."""
    if option in ("preactivation", "avg_down"):
        valid = isinstance(value, bool)
    elif option in ("stride_position", "downsample_in"):  # no 1x1 in a basic block: refused
        valid = value in {"stride_position": ("1x1", "3x3") if arch.block == "bottleneck" else (),
                          "downsample_in": ("first", "last")}[option]
    elif option == "se_ratio":
        valid = not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < 1
    else:  # groups, base_width: bottleneck blocks only (torchvision's BasicBlock refuses them too)
        valid = (not isinstance(value, bool) and isinstance(value, int) and value >= 1
                 and (arch.block == "bottleneck" or value == getattr(arch, option)))
    if not valid:
        raise InvalidArgument(
            f"`{option}` must be {ARCHITECTURE_OPTIONS[option]}; got {value!r}"
            + (f" ({arch.name} has basic blocks)." if arch.block == "basic" else ".")
        )


def with_options(arch, **options):
    """``arch`` with block options changed (``ARCHITECTURE_OPTIONS``; None keeps its own):
    ``se_ratio=1/16`` adds squeeze-excitation to every block, ``avg_down=True`` ResNet-D's
    average-pool projection shortcuts, ``preactivation=True`` He et al. 2016's blocks (conv1
    without BN, BN-ReLU after the last stage), ``downsample_in="last"`` the stride in each
    stage's last block, ``groups``/``base_width`` ResNeXt's cardinality and width.

    Example:
        >>> with_options(imagenet_architecture(50), se_ratio=1 / 16).block_options["se_ratio"]
        0.0625
    """
    changes = {}
    for option, value in options.items():
        if option not in ARCHITECTURE_OPTIONS:
            raise InvalidArgument(
                f"`{option}` is not a block option; allowed: {', '.join(ARCHITECTURE_OPTIONS)}.")
        if value is not None:
            _check_option(option, value, arch)
            changes[option] = value
    if changes.get("downsample_in", arch.downsample_in) != arch.downsample_in:
        changes["stages"] = _restrided(arch.stages, changes["downsample_in"])
    if changes.get("preactivation", arch.preactivation) != arch.preactivation:
        changes["stem"] = dataclasses.replace(arch.stem, normalized=not changes["preactivation"])
    return dataclasses.replace(arch, **changes) if changes else arch


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
    """``arch`` with the stem ``stem`` names: "standard" (its own), "low_resolution"
    (Table 1's conv1 at stride 1 and no max pool, for 32x32 to 64x64 images; the same
    weights fit) or "deep" (ResNet-C's three 3x3 convs, He et al. 2019, §4.1).

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
            f"`stem={stem!r}` is for ImageNet nets; {arch.name} ({arch.family}) "
            "already keeps the input resolution in its stem."
        )
    if stem == "deep":
        return dataclasses.replace(
            arch, stem=dataclasses.replace(DEEP_STEM, normalized=arch.stem.normalized))
    return dataclasses.replace(
        arch, stem=dataclasses.replace(arch.stem, strides=1, pool_size=0, pool_strides=1)
    )


def canonical_shortcut(shortcut):
    """``shortcut`` in the model-level vocabulary: "A", "B", "C" (any case) or "none".

    Example:
        >>> canonical_shortcut("b"), canonical_shortcut("None")
        ('B', 'none')
    """
    canonical = shortcut.upper() if isinstance(shortcut, str) else shortcut
    canonical = "none" if canonical == "NONE" else canonical
    if canonical not in SHORTCUTS:
        raise InvalidArgument(
            f"`shortcut` must be one of 'A', 'B', 'C' (§3.3: zero-padding, projections where "
            f"dimensions increase, all projections; any case) or 'none' (the plain net); got {shortcut!r}."
        )
    return canonical


def resolve_shortcut(arch, shortcut=None, residual=None):
    """``(option, residual)`` of a model: §3.3's option its shortcuts follow ("A", "B", "C";
    default the architecture's) and whether it has any (``shortcut="none"`` or
    ``residual=False``: the plain net; both may be given if they agree).

    Example:
        >>> resolve_shortcut(cifar_architecture(20), "none")
        ('A', False)
    """
    if residual is not None and not isinstance(residual, bool):
        raise InvalidArgument(f"`residual` must be True or False; got {residual!r}.")
    canonical = None if shortcut is None else canonical_shortcut(shortcut)
    plain = canonical == "none" or residual is False
    if canonical is not None and residual is not None and (canonical == "none") != (not residual):
        raise InvalidArgument(
            f"`shortcut={shortcut!r}` and `residual={residual!r}` disagree: shortcut='none' is "
            "the plain net (residual=False); options A, B and C have shortcuts (residual=True)."
        )
    if plain and arch.variant:
        raise InvalidArgument(
            f"`shortcut='none'` (residual=False) builds the paper's plain nets; {arch.name} has "
            "no plain counterpart (build resnetN with shortcut='none')."
        )
    option = arch.shortcut if canonical in (None, "none") else canonical
    return option, not plain


def architecture(family, depth):
    """The architecture of ``family`` ("imagenet" or "cifar") and ``depth``."""
    if family == "imagenet":
        return imagenet_architecture(depth)
    if family == "cifar":
        return cifar_architecture(depth)
    raise InvalidArgument(f"`family` must be one of {FAMILIES}; got {family!r}.")
