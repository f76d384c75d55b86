"""Every public constructor through the shared harness (tests/harness.py).

A new constructor is tested by adding a ModelCase here. The fast tier checks one net of each
kind (each block, each stem, shortcuts A and C; Table 1 nets at 64x64: the parameter count does
not depend on the input size) and loads them in a fresh TensorFlow process; ``pytest --all``
adds every other depth and variant, the load under JAX (instead of TensorFlow's for the cases
loaded there) and the float exports.
"""

import dataclasses
import functools

import pytest

import keras_resnet
import keras_resnet.models
from harness import (
    BACKENDS,
    FLOAT_EXPORTS,
    ModelCase,
    check_model,
    cifar_params,
    preact_cifar_params,
    prepare,
)
from keras_resnet.architectures import family_architecture
from keras_resnet.builder import build_resnet

# torchvision's resnet18 ... resnet152 (option B, no conv biases, as here): its
# `sum(p.numel() for p in model.parameters())`, also in its weights' documentation.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# Table 6's rounded figures for the CIFAR nets (option A).
TABLE_6_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}
SMALL = (64, 64, 3)
# The family's reference counts: torchvision's (ResNeXt, Wide; its weights' num_params), timm's
# (ResNet-D, SE-ResNet: sum(p.numel()) of timm.create_model), keras.applications' (V2: its
# trainable weights).
FAMILY_PARAMS = {
    "resnext50_32x4d": (25_028_904, "torchvision"), "resnext101_32x8d": (88_791_336, "torchvision"),
    "resnext101_64x4d": (83_455_272, "torchvision"), "wide_resnet50_2": (68_883_240, "torchvision"),
    "wide_resnet101_2": (126_886_696, "torchvision"),
    "resnet18d": (11_708_744, "timm"), "resnet34d": (21_816_904, "timm"),
    "resnet50d": (25_576_264, "timm"), "resnet101d": (44_568_392, "timm"),
    "resnet152d": (60_212_040, "timm"), "seresnet50": (28_088_024, "timm"),
    "seresnet101": (49_326_872, "timm"), "seresnet152": (66_821_848, "timm"),
    "resnet50v2": (25_568_360, "keras.applications"),
    "resnet101v2": (44_577_896, "keras.applications"),
    "resnet152v2": (60_236_904, "keras.applications"),
}
# The family's blocks in two blocks a stage (timm's resnet26 layout, Bottleneck [2, 2, 2, 2]):
# the same layers as their 50-layer nets in half the blocks, for the exports and the JAX load.
# torchvision's `ResNet(Bottleneck, [2, 2, 2, 2], groups=32, width_per_group=4)` and timm's
# `ResNet(block=Bottleneck, layers=[2, 2, 2, 2], block_args=dict(attn_layer="se"))`:
# sum(p.numel()).
SHALLOW_FAMILY_PARAMS = {"resnext50_32x4d": (15_389_480, "torchvision, Bottleneck [2, 2, 2, 2]"),
                         "seresnet50": (17_395_976, "timm, Bottleneck [2, 2, 2, 2]")}
# He et al. 2016, Table 3 / Table 6 ("Identity Mappings"): the pre-activation CIFAR nets.
PREACT_PAPER_PARAMS = {110: 1.7e6, 164: 1.7e6, 1001: 10.2e6}


def _family(name, slow=True, size=SMALL, exports=(), backends=("tensorflow", "jax")):
    constructor = keras_resnet.models.FAMILY_CONSTRUCTORS[name]
    if name.startswith("preact"):
        depth = int(name[len("preact_resnet"):])
        params, reference, paper = preact_cifar_params(depth), "He et al. 2016 arithmetic", PREACT_PAPER_PARAMS[depth]
        build = constructor
    else:
        (params, reference), paper = FAMILY_PARAMS[name], None
        build = functools.partial(constructor, input_shape=size)
    return ModelCase(name, build, params, reference, paper_params=paper, exports=exports,
                     slow=slow, backends=backends)


def _shallow_build(name, size):
    arch = family_architecture(name)
    stages = tuple(dataclasses.replace(stage, repeats=2) for stage in arch.stages)
    shallow = dataclasses.replace(arch, depth=26, variant=name.replace("50", "26"), stages=stages)
    return build_resnet(shallow, input_shape=size)


def _shallow_family(name, exports, backends=("tensorflow", "jax")):
    """``name``'s architecture with two blocks in each stage (``SHALLOW_FAMILY_PARAMS``)."""
    params, reference = SHALLOW_FAMILY_PARAMS[name]
    return ModelCase(name.replace("50", "26"), functools.partial(_shallow_build, name, SMALL),
                     params, reference, exports=exports, slow=True, backends=backends)


def _imagenet(depth, slow=False, size=SMALL, exports=(), backends=("tensorflow", "jax"), **options):
    constructor = getattr(keras_resnet, f"ResNet{depth}")
    return ModelCase(
        f"resnet{depth}" + "".join(f"-{k}={v}" for k, v in options.items()),
        functools.partial(constructor, input_shape=size, **options),
        TORCHVISION_PARAMS[depth], "torchvision", slow=slow, exports=exports, backends=backends,
    )


def _cifar(depth, slow=False, exports=FLOAT_EXPORTS, backends=("tensorflow", "jax"), **options):
    constructor = getattr(keras_resnet, f"ResNet{depth}")
    return ModelCase(
        f"resnet{depth}" + "".join(f"-{k}={v}" for k, v in options.items()),
        functools.partial(constructor, **options),
        cifar_params(depth, option=options.get("shortcut", "A")), "§4.2 arithmetic",
        paper_params=TABLE_6_PARAMS[depth] if options.get("shortcut", "A") == "A" else None,
        exports=exports, slow=slow, backends=backends,
    )


CASES = [
    # The fast tier: each block type, each stem, shortcuts A and C.
    # ResNet-20's float exports: tests/test_export.py exports a trained ResNet-8 (the same
    # basic blocks and option A shortcuts) to every format and quantization, with parity; its
    # files across backends: tests/test_backends.py loads a ResNet-8's under JAX.
    _cifar(20, exports=(), backends=("tensorflow",)),
    # ResNet-50 loads in TensorFlow; the bottleneck block under JAX: resnext26_32x4d (the same
    # block with groups), seresnet26 and resnet50v2 below.
    _imagenet(50, exports=(), backends=("tensorflow",)),
    ModelCase("cifar_resnet8-C", functools.partial(keras_resnet.CifarResNet, 8, shortcut="C"),
              cifar_params(8) + sum(i * o + 2 * o for i, o in ((16, 16), (16, 32), (32, 64))),
              "§4.2 arithmetic plus a 1x1 projection with BN in every block", exports=()),

    # `pytest --all`: the other depths (ResNet-1202's count: tests/test_models.py). Each kind
    # of layer goes through each float export once (a converter holds several copies of a
    # model: ResNet-152's need GBs) and loads under JAX once: basic blocks and option A
    # (resnet20; its formats: a trained ResNet-8's), grouped bottlenecks, projections and the ImageNet stem
    # (resnext26_32x4d: every format), dilation, average-pool shortcuts, SE, pre-activation
    # (one format each); the other variants load in TensorFlow.
    _cifar(20, slow=True, residual=False, exports=(), backends=("tensorflow",)),  # Fig. 6's plain net
    # ResNet-18/34/101/152: their exact counts in tests/test_models.py (full size), their
    # blocks' configs and files those of ResNet-18's options and ResNet-50 here (each
    # ResNet-18 case below has the plain ResNet-18's count: options add no parameter).
    _imagenet(50, slow=True, stride_position="3x3", backends=("tensorflow",)),
    _cifar(32, slow=True, shortcut="B", exports=(), backends=("tensorflow",)),
    # ResNet-44/56: within 2% of Table 6, their blocks counted, in tests/test_models.py
    # (test_cifar_parameters_within_2_percent_of_table_6); the exact arithmetic here at n = 3,
    # 5 (option B) and 18.
    _cifar(110, slow=True, exports=(), backends=()),
    # Backbone options change no parameter: dilation, stochastic depth, dropout, the stem.
    # Dilation: through ONNX and under JAX on ResNet-18 (its layers are the ones to check; a
    # converter and XLA take half ResNet-50's time), at output stride 8 on ResNet-50.
    _imagenet(18, slow=True, output_stride=16, drop_path_rate=0.1, dropout=0.2,
              exports=("onnx",)),
    _imagenet(50, slow=True, output_stride=8, exports=(), backends=("tensorflow",)),
    _imagenet(18, slow=True, stem="low_resolution", size=(32, 32, 3), backends=("tensorflow",)),
    # A grey input: conv1 has 7 * 7 * (3 - 1) * 64 weights fewer.
    ModelCase("resnet18-grey", functools.partial(keras_resnet.ResNet18, input_shape=(64, 64, 1)),
              TORCHVISION_PARAMS[18] - 7 * 7 * 2 * 64, "torchvision, conv1 of 1 channel", slow=True,
              exports=(), backends=()),  # a grey model saved and served: tests/test_features.py
    # The family (He et al. 2016 and 2019, Xie et al. 2017, Hu et al. 2018, Zagoruyko &
    # Komodakis 2016), with `--all` (the fast tier checks the family's blocks against timm's
    # outputs: tests/test_family.py): grouped convs through every float export, average-pool
    # shortcuts, SE and pre-activation through one each, the JAX load of one net per kind.
    # ResNeXt's and SE's exports and JAX loads on their 26-layer nets (the same layers:
    # grouped convs, projections, SE, the ImageNet stem); the 50-layer nets build, count and
    # round-trip their configs (ResNet-D's also loads its file in TensorFlow).
    _family("resnet50d", backends=("tensorflow",)),  # JAX: resnet18d (deep stem, avg-pool shortcuts)
    _family("resnext50_32x4d", backends=()),  # its layers' files: resnext26_32x4d
    _shallow_family("resnext50_32x4d", exports=FLOAT_EXPORTS),
    _family("resnet18d", exports=("onnx",)),
    _family("seresnet50", backends=()),  # its layers' files: seresnet26
    _shallow_family("seresnet50", exports=("onnx",)),
    _family("resnet50v2", exports=("openvino",)),  # pre-activation's one format
    _family("preact_resnet110", backends=("tensorflow",)),  # JAX: resnet50v2
    *[_family(name, backends=()) for name in ("preact_resnet164", "resnet34d")],
    # The family's wider and deeper nets: their counts in tests/test_family.py (the harness
    # holds every case at once, and together they would take most of a machine's memory).
    # PreActResNet1001's count: tests/test_family.py (its untrained inference overflows).
]


@pytest.fixture(scope="module")
def prepared(request, tmp_path_factory):
    """Every case that runs in this session, saved and loaded once per backend."""
    selected = {item.callspec.params["case"].name for item in request.session.items
                if item.originalname == "test_constructor_end_to_end" and not item.get_closest_marker("skip")}
    cases = [case for case in CASES if case.name in selected]
    # The JAX load compiles every model, exports convert them: `pytest --all` (the fast tier
    # loads in TensorFlow; tests/test_export.py exports a trained ResNet-8 to every format).
    everything = request.config.getoption("--all")
    return prepare(cases, str(tmp_path_factory.mktemp("harness")),
                   BACKENDS if everything else ("tensorflow",), exports=everything)


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
    ids=[c.name for c in CASES],
)
def test_constructor_end_to_end(case, prepared):
    check_model(case, prepared)


def test_cifar_arithmetic_agrees_with_the_papers_table_6():
    """The reference formula itself, against the paper's rounded figures."""
    for depth, figure in TABLE_6_PARAMS.items():
        digits = 2 if figure < 1e6 else 1
        assert round(cifar_params(depth) / 1e6, digits) == round(figure / 1e6, digits)
