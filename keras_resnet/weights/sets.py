"""Published ImageNet checkpoints as data: one :class:`WeightSet` per checkpoint.

Each row says where the file is (URL, hash), what it holds (tensor layout), which variant of
the network it needs (stride position, conv bias, BN epsilon), how inputs must be prepared,
the accuracy its publisher states and its licence. Nothing here downloads or builds anything.

Example:
    >>> [s.name for s in available("resnet50")][:2]
    ['keras_applications', 'torchvision_v1']
"""

import dataclasses
import functools
import os

from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument

MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    # The family members with published weights.
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
    "wide_resnet101_2", "resnet18d", "resnet34d", "resnet50d", "resnet101d", "resnet152d",
    "seresnet50", "resnet50v2", "resnet101v2", "resnet152v2",
)
# Models with basic blocks (their variant has no stride position).
BASIC_MODELS = ("resnet18", "resnet34", "resnet18d", "resnet34d")
CLASS_NAMES_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "imagenet_classes.txt")

# Every set is a Table 1 network with option B shortcuts at full width ...
FIXED_OPTIONS = {"shortcut": "B", "residual": True, "width_multiplier": 1.0}
# ... in one of two variants. torchvision, timm, keras-hub ("ResNet v1.5"): stride on the 3x3
# of a bottleneck, no conv bias, BN epsilon 1e-5.
TORCH_VARIANT = {"stride_position": "3x3", "use_bias": False, "bn_epsilon": 1e-5}
# keras.applications (Kaiming He's Caffe models): stride on the first 1x1, conv biases.
CAFFE_VARIANT = {"stride_position": "1x1", "use_bias": True, "bn_epsilon": 1.001e-5}
# keras.applications' V2 nets: stride on the 3x3; biases only where no BN follows.
KERAS_V2_VARIANT = {"stride_position": "3x3", "use_bias": False, "bn_epsilon": 1.001e-5}

# What ``weights="imagenet"`` means per depth. 18/34: torchvision's V1 weights in the
# safetensors copy on the Hugging Face hub (readable without PyTorch). 50/101/152:
# keras.applications' weights, as before (the paper's own Caffe models, MIT licence).
# The family: the newest safetensors set (torchvision's V2 recipe where it exists, timm's
# RA2 for ResNet-D and SE-ResNet), keras.applications' for V2.
DEFAULTS = {
    "resnet18": "timm_tv_in1k",
    "resnet34": "timm_tv_in1k",
    "resnet50": "keras_applications",
    "resnet101": "keras_applications",
    "resnet152": "keras_applications",
    "resnext50_32x4d": "timm_tv2_in1k",
    "resnext101_32x8d": "timm_tv2_in1k",
    "resnext101_64x4d": "timm_tv_in1k",
    "wide_resnet50_2": "timm_tv2_in1k",
    "wide_resnet101_2": "timm_tv2_in1k",
    **{f"resnet{depth}d": "timm_ra2" for depth in (18, 34, 50, 101, 152)},
    "seresnet50": "timm_ra2",
    **{f"resnet{depth}v2": "keras_applications" for depth in (50, 101, 152)},
}


@functools.lru_cache(maxsize=1)
def _class_names():
    with open(CLASS_NAMES_FILE, encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f)


def imagenet_class_names():
    """The 1000 ImageNet-1k class names in class-index order (torchvision's short names).

    Example:
        >>> imagenet_class_names()[:2]
        ['tench', 'goldfish']
    """
    return list(_class_names())


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One file of a weight set: where it is, its name in the cache, how to check it.

    ``part``: "all" (always needed), "backbone" (always), "head" (only with include_top),
    "top" / "notop" (keras.applications' two files, fetched by keras.applications itself).
    """

    url: str
    file_name: str
    part: str = "all"
    sha256: str = None
    sha256_prefix: str = None
    md5: str = None


@dataclasses.dataclass(frozen=True, eq=False)
class WeightSet:
    """A published checkpoint of one model.

    Attributes:
        model: "resnet18" ... "resnet152".
        name: the short name ``weights=`` takes ("torchvision_v2", "timm_a1", ...).
        source: who publishes it: "torchvision", "timm", "keras_applications", "keras_hub".
        checkpoint: the publisher's own name for it.
        files: its :class:`WeightFile` s.
        layout: how its tensors are named: "torch" (torchvision/timm state dict),
            "keras_hub" (keras-hub ResNetBackbone .weights.h5), "keras_applications".
        variant: the ``build_resnet`` options the weights need (besides ``FIXED_OPTIONS``).
        preprocess: arguments of ``preprocessing.imagenet`` / ``caffe`` (``mode`` says which).
        top1, top5: ImageNet-1k validation accuracy (%) as published; None if not published.
        accuracy_note: where the figure is stated and at which input size.
        license: the weights' licence as the source states it.
        notes: anything else worth knowing.
    """

    model: str
    name: str
    source: str
    checkpoint: str
    files: tuple
    layout: str
    variant: dict
    preprocess: dict
    top1: float
    top5: float
    accuracy_note: str
    license: str
    notes: str = ""

    @property
    def file_format(self):
        """"pth", "safetensors", "keras_h5" (keras-hub) or "h5" (keras.applications)."""
        name = self.files[0].file_name
        if name.endswith(".weights.h5"):
            return "keras_h5"
        return name.rsplit(".", 1)[-1]

    @property
    def image_size(self):
        """The input size the published accuracy refers to (the default input size)."""
        return self.preprocess["image_size"]

    @property
    def is_default(self):
        return DEFAULTS.get(self.model) == self.name

    def build_options(self):
        """The ``build_resnet`` options these weights fix.

        Example:
            >>> get("resnet50", "torchvision_v2").build_options()["stride_position"]
            '3x3'
        """
        return {**FIXED_OPTIONS, **self.variant}

    def files_for(self, include_top):
        """The files a model with or without its classifier needs."""
        wanted = ("all", "backbone", "head", "top") if include_top else ("all", "backbone", "notop")
        return tuple(f for f in self.files if f.part in wanted)

    def preprocessing(self, image_size=None, include_top=True):
        """The set's :class:`~keras_resnet.preprocessing.ImagePreprocessing` for inputs of
        ``image_size`` (int or (height, width); default: the set's own), with the ImageNet
        class names (None without the classifier). Another size keeps the resize/crop ratio.

        Example:
            >>> get("resnet50", "torchvision_v2").preprocessing().resize_size
            232
        """
        args = dict(self.preprocess)
        mode, size, resize = args.pop("mode"), args.pop("image_size"), args.pop("resize_size")
        if image_size is not None:
            height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
            resize = max(min(height, width), int(round(min(height, width) * resize / size)))
            size = (height, width)
        make = {"imagenet": preprocessing_lib.imagenet, "caffe": preprocessing_lib.caffe,
                "tf": preprocessing_lib.tf_mode}[mode]
        names = imagenet_class_names() if include_top else None
        return make(size, resize, class_names=names, source=self.name, **args)


def _model_name(model):
    return f"resnet{model}" if isinstance(model, int) else model


def _torchvision(depth, version, file_name, top1, top5, resize_size, enum=None):
    return WeightSet(
        model=_model_name(depth), name=f"torchvision_v{version}", source="torchvision",
        checkpoint=f"{enum or f'ResNet{depth}_Weights'}.IMAGENET1K_V{version}",
        # torchvision's file names carry the first hex digits of the file's sha256.
        files=(WeightFile(f"https://download.pytorch.org/models/{file_name}", file_name,
                          sha256_prefix=file_name.rsplit("-", 1)[1].split(".")[0]),),
        layout="torch", variant=TORCH_VARIANT,
        preprocess={"mode": "imagenet", "image_size": 224, "resize_size": resize_size,
                    "interpolation": "bilinear"},
        top1=top1, top5=top5,
        accuracy_note=f"torchvision's weights meta (docs), 224 crop of {resize_size}",
        license="BSD-3-Clause (torchvision)",
        notes="a .pth file: reading it needs PyTorch (the timm_tv* sets hold the same weights "
              "as safetensors)",
    )


_TIMM_NAMES = {"a1_in1k": "timm_a1", "a1h_in1k": "timm_a1h", "tv_in1k": "timm_tv_in1k",
               "tv2_in1k": "timm_tv2_in1k", "ra2_in1k": "timm_ra2"}
_TIMM_RECIPES = {"a1": "ResNet strikes back (arXiv 2110.00476), A1",
                 "a1h": "ResNet strikes back (arXiv 2110.00476), A1H",
                 "ra2": "timm's RandAugment recipe (RA2)"}


def _timm(depth, tag, top1, top5, image_size, resize_size, interpolation, note=""):
    model = _model_name(depth)
    hub_id = f"timm/{model}.{tag}"
    tv = tag.startswith("tv")
    return WeightSet(
        model=model, name=_TIMM_NAMES[tag], source="timm", checkpoint=hub_id,
        files=(WeightFile(f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors",
                          f"timm_{model}.{tag}.safetensors"),),
        layout="torch", variant=TORCH_VARIANT,
        preprocess={"mode": "imagenet", "image_size": image_size, "resize_size": resize_size,
                    "interpolation": interpolation},
        top1=top1, top5=top5,
        accuracy_note=note or (f"timm results/results-imagenet.csv, {image_size} crop of "
                               f"{resize_size}, {interpolation}"),
        license="BSD-3-Clause" if tv else "Apache-2.0",
        notes=(f"torchvision's IMAGENET1K_V{2 if tag.startswith('tv2') else 1} weights, ported "
               "by timm") if tv else _TIMM_RECIPES[tag[:-5]],
    )


def _keras_applications(depth, top_md5, notop_md5, top1, top5, v2=False):
    base = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    suffix = "v2" if v2 else ""
    name = f"resnet{depth}{suffix}_weights_tf_dim_ordering_tf_kernels"
    return WeightSet(
        model=f"resnet{depth}{suffix}", name="keras_applications", source="keras_applications",
        checkpoint=f"keras.applications.ResNet{depth}{suffix.upper()}",
        files=(WeightFile(base + f"{name}.h5", f"{name}.h5", part="top", md5=top_md5),
               WeightFile(base + f"{name}_notop.h5", f"{name}_notop.h5", part="notop",
                          md5=notop_md5)),
        layout="keras_applications", variant=KERAS_V2_VARIANT if v2 else CAFFE_VARIANT,
        preprocess={"mode": "tf" if v2 else "caffe", "image_size": 224, "resize_size": 256},
        top1=top1, top5=top5, accuracy_note="keras.io/api/applications table, 224 crop",
        license=("MIT (keras-applications)" if v2
                 else "MIT (Kaiming He's released Caffe models)"),
        notes=("downloaded and read by keras.applications; pre-activation nets, RGB in [-1, 1]"
               if v2 else "downloaded and read by keras.applications; the paper's own models"),
    )


def _keras_hub(depth):
    preset = f"resnet_{depth}_imagenet"
    base = f"https://www.kaggle.com/api/v1/models/keras/resnetv1/keras/{preset}/3/download/"
    return WeightSet(
        model=f"resnet{depth}", name="keras_hub", source="keras_hub",
        checkpoint=f"{preset} (kaggle://keras/resnetv1/keras/{preset}/3)",
        files=(WeightFile(base + "model.weights.h5", f"keras_hub_{preset}_3.model.weights.h5",
                          part="backbone"),
               WeightFile(base + "task.weights.h5", f"keras_hub_{preset}_3.task.weights.h5",
                          part="head")),
        layout="keras_hub", variant=TORCH_VARIANT,
        preprocess={"mode": "imagenet", "image_size": 224, "resize_size": 224,
                    "interpolation": "bicubic"},
        top1=None, top5=None, accuracy_note="keras-hub publishes no accuracy",
        license="Apache-2.0 (keras-hub presets)",
        notes=f"converted from timm/resnet{depth}.a1_in1k by keras-hub's "
              "tools/checkpoint_conversion/convert_resnet_checkpoints.py",
    )


_CSV = "timm results/results-imagenet.csv"
WEIGHT_SETS = (
    _timm(18, "tv_in1k", 69.760, 89.070, 224, 256, "bilinear"),
    _torchvision(18, 1, "resnet18-f37072fd.pth", 69.758, 89.078, 256),
    _timm(18, "a1_in1k", 73.158, 91.026, 288, 288, "bicubic"),
    _keras_hub(18),
    _timm(34, "tv_in1k", 73.314, 91.420, 224, 256, "bilinear",
          note="torchvision's figure for the same weights (timm's CSV lists none)"),
    _torchvision(34, 1, "resnet34-b627a593.pth", 73.314, 91.420, 256),
    _timm(34, "a1_in1k", 77.918, 93.766, 288, 288, "bicubic"),
    _keras_applications(50, "2cb95161c43110f7111970584f804107",
                        "4d473c1dd8becc155b73f8504c6f6626", 74.9, 92.1),
    _torchvision(50, 1, "resnet50-0676ba61.pth", 76.130, 92.862, 256),
    _torchvision(50, 2, "resnet50-11ad3fa6.pth", 80.858, 95.434, 232),
    _timm(50, "a1_in1k", 81.214, 95.102, 288, 288, "bicubic"),
    _timm(50, "a1h_in1k", 80.676, 95.306, 224, 224, "bicubic"),
    _timm(50, "tv_in1k", 76.130, 92.858, 224, 256, "bilinear"),
    _timm(50, "tv2_in1k", 80.850, 95.434, 224, 232, "bilinear"),
    _keras_hub(50),
    _keras_applications(101, "f1aeb4b969a6efcfb50fad2f0c20cfc5",
                        "88cf7a10940856eca736dc7b7e228a21", 76.4, 92.8),
    _torchvision(101, 1, "resnet101-63fe2227.pth", 77.374, 93.546, 256),
    _torchvision(101, 2, "resnet101-cd907fc2.pth", 81.886, 95.780, 232),
    _timm(101, "a1_in1k", 82.322, 95.632, 288, 288, "bicubic"),
    _timm(101, "a1h_in1k", 82.778, 96.310, 288, 288, "bicubic"),
    _timm(101, "tv_in1k", 77.376, 93.542, 224, 256, "bilinear"),
    _timm(101, "tv2_in1k", 81.890, 95.768, 224, 232, "bilinear"),
    _keras_hub(101),
    _keras_applications(152, "100835be76be38e30d865e96f2aaae62",
                        "ee4c566cf9a93f14d82f913c2dc6dd0c", 76.6, 93.1),
    _torchvision(152, 1, "resnet152-394f9c45.pth", 78.312, 94.046, 256),
    _torchvision(152, 2, "resnet152-f82ba261.pth", 82.284, 96.002, 232),
    _timm(152, "a1_in1k", 82.732, 95.720, 288, 288, "bicubic"),
    _timm(152, "a1h_in1k", 83.450, 96.538, 288, 288, "bicubic"),
    _timm(152, "tv_in1k", 78.322, 94.048, 224, 256, "bilinear"),
    _timm(152, "tv2_in1k", 82.288, 96.004, 224, 232, "bilinear"),
    _keras_hub(152),
    # The family. torchvision: its weights meta (docs); timm: results/results-imagenet.csv
    # at the test size of the pretrained config; keras.applications: keras.io's table.
    _torchvision("resnext50_32x4d", 1, "resnext50_32x4d-7cdf4587.pth", 77.618, 93.698, 256,
                 enum="ResNeXt50_32X4D_Weights"),
    _torchvision("resnext50_32x4d", 2, "resnext50_32x4d-1a0047aa.pth", 81.198, 95.340, 232,
                 enum="ResNeXt50_32X4D_Weights"),
    _timm("resnext50_32x4d", "tv_in1k", 77.632, 93.674, 224, 256, "bilinear"),
    _timm("resnext50_32x4d", "tv2_in1k", 81.190, 95.344, 224, 232, "bilinear"),
    _torchvision("resnext101_32x8d", 1, "resnext101_32x8d-8ba56ff5.pth", 79.312, 94.526, 256,
                 enum="ResNeXt101_32X8D_Weights"),
    _torchvision("resnext101_32x8d", 2, "resnext101_32x8d-110c445d.pth", 82.834, 96.228, 232,
                 enum="ResNeXt101_32X8D_Weights"),
    _timm("resnext101_32x8d", "tv_in1k", 79.308, 94.530, 224, 256, "bilinear"),
    _timm("resnext101_32x8d", "tv2_in1k", 82.832, 96.234, 224, 232, "bilinear"),
    _torchvision("resnext101_64x4d", 1, "resnext101_64x4d-173b62eb.pth", 83.246, 96.454, 232,
                 enum="ResNeXt101_64X4D_Weights"),
    _timm("resnext101_64x4d", "tv_in1k", 83.246, 96.454, 224, 232, "bilinear",
          note="torchvision's figure for the same weights at its 232 resize (timm's CSV: "
               "82.978 at 256)"),
    _torchvision("wide_resnet50_2", 1, "wide_resnet50_2-95faca4d.pth", 78.468, 94.086, 256,
                 enum="Wide_ResNet50_2_Weights"),
    _torchvision("wide_resnet50_2", 2, "wide_resnet50_2-9ba9bcbe.pth", 81.602, 95.758, 232,
                 enum="Wide_ResNet50_2_Weights"),
    _timm("wide_resnet50_2", "tv_in1k", 78.486, 94.084, 224, 256, "bilinear"),
    _timm("wide_resnet50_2", "tv2_in1k", 81.612, 95.766, 224, 232, "bilinear"),
    _torchvision("wide_resnet101_2", 1, "wide_resnet101_2-32ee1156.pth", 78.848, 94.284, 256,
                 enum="Wide_ResNet101_2_Weights"),
    _torchvision("wide_resnet101_2", 2, "wide_resnet101_2-d733dc28.pth", 82.510, 96.020, 232,
                 enum="Wide_ResNet101_2_Weights"),
    _timm("wide_resnet101_2", "tv_in1k", 78.862, 94.312, 224, 256, "bilinear"),
    _timm("wide_resnet101_2", "tv2_in1k", 82.514, 96.012, 224, 232, "bilinear"),
    _timm("resnet18d", "ra2_in1k", 73.790, 91.834, 288, 303, "bicubic"),
    _timm("resnet34d", "ra2_in1k", 78.440, 94.348, 288, 303, "bicubic"),
    _timm("resnet50d", "ra2_in1k", 81.354, 95.742, 288, 303, "bicubic"),
    _timm("resnet50d", "a1_in1k", 81.466, 95.218, 288, 288, "bicubic"),
    _timm("resnet101d", "ra2_in1k", 83.020, 96.456, 320, 320, "bicubic"),
    _timm("resnet152d", "ra2_in1k", 83.684, 96.750, 320, 320, "bicubic"),
    _timm("seresnet50", "ra2_in1k", 81.288, 95.652, 288, 303, "bicubic"),
    _timm("seresnet50", "a1_in1k", 81.114, 95.122, 288, 288, "bicubic"),
    _keras_applications(50, "3ef43a0b657b3be2300d5770ece849e0",
                        "fac2f116257151a9d068a22e544a4917", 76.0, 93.0, v2=True),
    _keras_applications(101, "6343647c601c52e1368623803854d971",
                        "c0ed64b8031c3730f411d2eb4eea35b5", 77.2, 93.8, v2=True),
    _keras_applications(152, "a49b44d1979771252814e80f8ec446f9",
                        "ed17cf2e0169df9d443503ef94b23b33", 78.0, 94.2, v2=True),
)


def _check_model(model):
    if model not in MODELS:
        raise InvalidArgument(
            f"{model!r} has no published ImageNet weights (CIFAR nets, SE-ResNet-101/152 and "
            f"the pre-activation CIFAR nets have none); weight sets exist for "
            f"{', '.join(MODELS)}."
        )


def available(model):
    """The weight sets published for ``model``, default first.

    Example:
        >>> available("resnet18")[0].name
        'timm_tv_in1k'
    """
    _check_model(model)
    sets = [s for s in WEIGHT_SETS if s.model == model]
    return sorted(sets, key=lambda s: not s.is_default)


def names():
    """Every weight set name of any model, plus "imagenet" (the default of each model)."""
    return {"imagenet"} | {s.name for s in WEIGHT_SETS}


def is_name(weights):
    """Whether ``weights`` names a weight set (rather than a path or None)."""
    return isinstance(weights, str) and weights in names()


def get(model, name):
    """The weight set ``name`` of ``model``; "imagenet" is the model's default.

    Example:
        >>> get("resnet50", "imagenet").source
        'keras_applications'
    """
    sets = available(model)
    name = DEFAULTS[model] if name == "imagenet" else name
    for weight_set in sets:
        if weight_set.name == name:
            return weight_set
    raise InvalidArgument(
        f"`weights={name!r}` is no weight set of {model}; {model} has "
        f"{', '.join(repr(s.name) for s in sets)} and 'imagenet' (= {DEFAULTS[model]!r}), "
        "or pass a path to a .weights.h5, .safetensors, .pth, .pt or .npz file."
    )


def _variant(weight_set):
    v = weight_set.variant
    basic = weight_set.model in BASIC_MODELS  # no bottleneck: no stride position
    parts = ([] if basic else [v["stride_position"]]) + (["bias"] if v["use_bias"] else [])
    return ", ".join(parts + [f"eps {v['bn_epsilon']:g}"])


def _recipe(weight_set):
    p = weight_set.preprocess
    mode = {"caffe": "BGR", "tf": "[-1, 1]"}.get(p["mode"], "mean/std")
    return f"{p['image_size']}/{p['resize_size']} {p.get('interpolation', 'bilinear')} {mode}"


def format_table(model=None):
    """The weight sets of ``model`` (or of every model) as a printable text table; ``*``
    marks the default (``weights="imagenet"``).

    Example:
        >>> print(format_table("resnet18"))  # doctest: +SKIP
    """
    sets = [s for m in ([model] if model else MODELS) for s in available(m)]
    header = ("model", "weights", "checkpoint", "format", "variant", "preprocessing",
              "top-1", "top-5", "licence")
    rows = [header] + [(
        s.model, s.name + (" *" if s.is_default else ""), s.checkpoint.split(" (")[0],
        s.file_format, _variant(s), _recipe(s),
        "-" if s.top1 is None else f"{s.top1:.2f}", "-" if s.top5 is None else f"{s.top5:.2f}",
        s.license.split(" (")[0],
    ) for s in sets]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + [
        "* = weights='imagenet'. variant: stride position, conv bias, BN epsilon. "
        "preprocessing: crop/resize. top-1/5: % as published (where: available(model))."])
