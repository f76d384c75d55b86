"""Every public constructor through the shared harness (tests/harness.py).

A new constructor is tested by adding a ModelCase here. The fast tier checks one net of each
kind (each block, each stem, shortcuts A and C; Table 1 nets at 64x64: the parameter count does
not depend on the input size) and loads them in a fresh TensorFlow process; ``pytest --all``
adds every other depth and variant, the load under JAX and the float exports.
"""

import functools

import pytest

import keras_resnet
from harness import BACKENDS, FLOAT_EXPORTS, ModelCase, check_model, cifar_params, prepare

# torchvision's resnet18 ... resnet152 (option B, no conv biases, as here): its
# `sum(p.numel() for p in model.parameters())`, also in its weights' documentation.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# Table 6's rounded figures for the CIFAR nets (option A).
TABLE_6_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}
SMALL = (64, 64, 3)


def _imagenet(depth, slow=False, size=SMALL, exports=(), backends=("tensorflow", "jax"), **options):
    constructor = getattr(keras_resnet, f"ResNet{depth}")
    return ModelCase(
        f"resnet{depth}" + "".join(f"-{k}={v}" for k, v in options.items()),
        functools.partial(constructor, input_shape=size, **options),
        TORCHVISION_PARAMS[depth], "torchvision", slow=slow, exports=exports, backends=backends,
    )


def _cifar(depth, slow=False, exports=FLOAT_EXPORTS, **options):
    constructor = getattr(keras_resnet, f"ResNet{depth}")
    return ModelCase(
        f"resnet{depth}" + "".join(f"-{k}={v}" for k, v in options.items()),
        functools.partial(constructor, **options),
        cifar_params(depth, option=options.get("shortcut", "A")), "§4.2 arithmetic",
        paper_params=TABLE_6_PARAMS[depth] if options.get("shortcut", "A") == "A" else None,
        exports=exports, slow=slow,
    )


CASES = [
    # The fast tier: each block type, each stem, shortcuts A and C.
    _cifar(20),
    _imagenet(50, exports=("openvino",)),  # exports (like JAX loads) with `--all` only
    ModelCase("cifar_resnet8-C", functools.partial(keras_resnet.CifarResNet, 8, shortcut="C"),
              cifar_params(8) + sum(i * o + 2 * o for i, o in ((16, 16), (16, 32), (32, 64))),
              "§4.2 arithmetic plus a 1x1 projection with BN in every block", exports=()),

    # `pytest --all`: the other depths (ResNet-1202's count: tests/test_models.py); exports of
    # the smaller nets (a converter holds several copies of a model: ResNet-152's need GBs).
    _cifar(20, slow=True, residual=False, exports=()),  # the plain net of Fig. 6: the same count
    _imagenet(18, slow=True, exports=FLOAT_EXPORTS),
    _imagenet(34, slow=True),
    # The deepest nets load in TensorFlow only: XLA would compile them for minutes.
    _imagenet(101, slow=True, backends=("tensorflow",)),
    _imagenet(152, slow=True, backends=("tensorflow",)),
    _imagenet(50, slow=True, stride_position="3x3"),
    _cifar(32, slow=True, shortcut="B", exports=("onnx",)),
    _cifar(44, slow=True, exports=()),
    _cifar(56, slow=True, exports=()),
    _cifar(110, slow=True),
    # Backbone options change no parameter: dilation, stochastic depth, dropout, the stem.
    _imagenet(18, slow=True, output_stride=16, drop_path_rate=0.1, dropout=0.2, exports=()),
    _imagenet(50, slow=True, output_stride=8, exports=("onnx",)),
    _imagenet(18, slow=True, stem="low_resolution", size=(32, 32, 3)),
    # A grey input: conv1 has 7 * 7 * (3 - 1) * 64 weights fewer.
    ModelCase("resnet18-grey", functools.partial(keras_resnet.ResNet18, input_shape=(64, 64, 1)),
              TORCHVISION_PARAMS[18] - 7 * 7 * 2 * 64, "torchvision, conv1 of 1 channel", slow=True,
              exports=("onnx",)),
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
    prepared = prepare(cases, str(tmp_path_factory.mktemp("harness")), BACKENDS if everything else ("tensorflow",))
    prepared.exports = everything
    return prepared


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
    ids=[c.name for c in CASES],
)
def test_constructor_end_to_end(case, prepared):
    check_model(case, prepared)


def test_cifar_arithmetic_agrees_with_the_papers_table_6():
    """The reference formula itself, against the paper's rounded figures."""
    for depth, figure in TABLE_6_PARAMS.items():
        assert round(cifar_params(depth) / 1e6, 2 if figure < 1e6 else 1) == round(figure / 1e6, 2 if figure < 1e6 else 1)
