"""Every public constructor through the shared harness (tests/harness.py).

A new constructor is tested by adding a ModelCase here. Table 1 nets are built at 64x64 in the
fast tier (the parameter count does not depend on the input size) and at 224x224 with
``pytest --all``; the largest nets and their exports run with ``--all`` only.
"""

import functools

import pytest

import keras_resnet
from harness import FLOAT_EXPORTS, ModelCase, check_model, cifar_params, prepare

# torchvision's resnet18 ... resnet152 (option B, no conv biases, as here): its
# `sum(p.numel() for p in model.parameters())`, also in its weights' documentation.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# Table 6's rounded figures for the CIFAR nets (option A).
TABLE_6_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}
SMALL = (64, 64, 3)


def _imagenet(depth, slow=False, size=SMALL, **options):
    constructor = getattr(keras_resnet, f"ResNet{depth}")
    return ModelCase(
        f"resnet{depth}" + "".join(f"-{k}={v}" for k, v in options.items()),
        functools.partial(constructor, input_shape=size, **options),
        TORCHVISION_PARAMS[depth], "torchvision", slow=slow,
        exports=FLOAT_EXPORTS if slow else (),
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
    # The fast tier: one of each kind of network and block.
    _cifar(20),
    _cifar(20, residual=False, exports=()),      # the plain net of Fig. 6: no shortcuts, same count
    _cifar(32, shortcut="B", exports=("onnx",)),
    _imagenet(18),
    _imagenet(50),
    ModelCase("cifar_resnet8-C", functools.partial(keras_resnet.CifarResNet, 8, shortcut="C"),
              cifar_params(8) + sum(i * o + 2 * o for i, o in ((16, 16), (16, 32), (32, 64))),
              "§4.2 arithmetic plus a 1x1 projection with BN in every block", exports=()),
    # `pytest --all`: the other depths, at full size where the paper builds them.
    _imagenet(34, slow=True),
    _imagenet(101, slow=True),
    _imagenet(152, slow=True, size=(224, 224, 3)),
    _imagenet(50, slow=True, size=(224, 224, 3), stride_position="3x3"),
    _cifar(44, slow=True, exports=()),
    _cifar(56, slow=True, exports=()),
    _cifar(110, slow=True),
    _cifar(1202, slow=True, exports=()),
]


@pytest.fixture(scope="module")
def prepared(request, tmp_path_factory):
    """Every case that runs in this session, saved and loaded once per backend."""
    selected = {item.callspec.params["case"].name for item in request.session.items
                if item.originalname == "test_constructor_end_to_end" and not item.get_closest_marker("skip")}
    cases = [case for case in CASES if case.name in selected]
    return prepare(cases, str(tmp_path_factory.mktemp("harness")))


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
