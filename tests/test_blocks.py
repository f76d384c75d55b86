import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_resnet import BottleneckBlock, ResidualBlock


def _random_input(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _randomize_batch_norms(block, seed=0):
    rng = np.random.default_rng(seed)
    for layer in block.batch_norms:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c),
            ])


# (block class, filters, input channels, strides, shortcut, valid?)
CASES = []
for cls, strides, shortcut, change in itertools.product(
    (ResidualBlock, BottleneckBlock), (1, 2), ("identity", "zero_pad", "projection", "none"),
    (False, True),
):
    filters = 8
    out_channels = filters * cls.expansion
    in_channels = out_channels // 2 if change else out_channels
    valid = not (shortcut == "identity" and (strides != 1 or change))
    CASES.append((cls, filters, in_channels, strides, shortcut, valid))


@pytest.mark.parametrize("cls,filters,in_channels,strides,shortcut,valid", CASES)
def test_output_shape_for_every_stride_and_shortcut(cls, filters, in_channels, strides, shortcut, valid):
    x = _random_input((2, 9, 10, in_channels))
    if not valid:
        with pytest.raises(ValueError, match="identity"):
            cls(filters, strides=strides, shortcut=shortcut)(x)
        return
    block = cls(filters, strides=strides, shortcut=shortcut)
    y = block(x)
    expected = (2, -(-9 // strides), -(-10 // strides), filters * cls.expansion)
    assert tuple(y.shape) == expected
    assert tuple(block.compute_output_shape(x.shape)) == expected
    # Inside a functional model too, with unknown spatial size.
    inputs = keras.Input((None, None, in_channels))
    model = keras.Model(inputs, cls(filters, strides=strides, shortcut=shortcut)(inputs))
    assert model.output_shape == (None, None, None, filters * cls.expansion)


def test_zero_pad_cannot_remove_channels():
    with pytest.raises(ValueError, match="zero_pad"):
        ResidualBlock(4, shortcut="zero_pad")(_random_input((1, 8, 8, 8)))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(filters=0), "filters"),
        (dict(filters=-3), "filters"),
        (dict(filters=8, strides=0), "strides"),
        (dict(filters=8, shortcut="option_z"), "shortcut"),
        (dict(filters=8, strides=2.5), "strides"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`") as error:
        ResidualBlock(**kwargs)
    given = next(v for k, v in kwargs.items() if k == argument)
    assert repr(given) in str(error.value)


def test_unknown_stride_position_is_rejected():
    with pytest.raises(ValueError, match=r"`stride_position`.*'1x1', '3x3'.*'2x2'"):
        BottleneckBlock(8, strides=2, shortcut="projection", stride_position="2x2")


@pytest.mark.parametrize("cls", [ResidualBlock, BottleneckBlock])
def test_zero_init_residual_block_starts_as_relu_of_input(cls):
    channels = 8 * cls.expansion
    x = _random_input((2, 8, 8, channels))
    block = cls(8, shortcut="identity", zero_init_residual=True)
    for training in (False, True):
        np.testing.assert_allclose(block(x, training=training), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize("cls", [ResidualBlock, BottleneckBlock])
def test_option_a_is_subsampled_zero_padded_input(cls):
    # With a zero residual branch the block is relu(shortcut(x)): option A of §3.3 exactly.
    x = _random_input((2, 8, 8, 4 * cls.expansion))
    block = cls(8, strides=2, shortcut="zero_pad", zero_init_residual=True)
    y = np.asarray(block(x))
    expected = np.zeros((2, 4, 4, 8 * cls.expansion), "float32")
    expected[..., : x.shape[-1]] = np.maximum(x[:, ::2, ::2, :], 0)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    plain = cls(8, strides=2, shortcut="none")
    plain.build(x.shape)
    assert block.count_params() == plain.count_params(), "option A must add no parameters"


def _bn(x, layer):
    gamma, beta, mean, var = (np.asarray(w) for w in layer.get_weights())
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _conv(x, layer, strides, pad):
    kernel = layer.get_weights()[0]
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    return np.asarray(ops.conv(x, kernel, strides=strides, padding="valid"))


def test_residual_block_computes_relu_of_bn_conv_plus_projection():
    # Fig. 2 with BN after each conv and before its ReLU (§3.4), the addition before the last
    # ReLU, checked against a reference written from the paper with randomized BN statistics.
    x = _random_input((2, 8, 8, 4))
    block = ResidualBlock(8, strides=2, shortcut="projection")
    block(x)
    _randomize_batch_norms(block)
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    branch = relu(_bn(_conv(x, block.conv1, 2, 1), block.bn1))
    branch = _bn(_conv(branch, block.conv2, 1, 1), block.bn2)
    shortcut = _bn(_conv(x, block.shortcut_conv, 2, 0), block.shortcut_bn)
    np.testing.assert_allclose(block(x), relu(branch + shortcut), atol=1e-4)


@pytest.mark.parametrize("position,strided", [("1x1", "conv1"), ("3x3", "conv2")])
def test_bottleneck_stride_position(position, strided):
    block = BottleneckBlock(8, strides=2, shortcut="projection", stride_position=position)
    y = block(_random_input((1, 16, 16, 16)))
    assert tuple(y.shape) == (1, 8, 8, 32)
    strides = {name: getattr(block, name).strides for name in ("conv1", "conv2", "conv3")}
    assert strides[strided] == (2, 2)
    assert [s for n, s in strides.items() if n != strided] == [(1, 1), (1, 1)]


def test_bottleneck_stride_on_3x3_costs_more_multiply_adds():
    shape = (None, 56, 56, 256)
    on_1x1 = BottleneckBlock(128, strides=2, shortcut="projection", stride_position="1x1")
    on_3x3 = BottleneckBlock(128, strides=2, shortcut="projection", stride_position="3x3")
    # 1x1 reduce at 56x56 instead of 28x28: 4x the multiply-adds of the reduction.
    assert on_3x3.multiply_adds(shape) - on_1x1.multiply_adds(shape) == 3 * 28 * 28 * 256 * 128


@pytest.mark.parametrize(
    "block",
    [
        ResidualBlock(16, strides=2, shortcut="zero_pad", kernel_regularizer=keras.regularizers.L2(5e-5),
                      zero_init_residual=True, momentum=0.97, epsilon=1e-3, name="b1"),
        BottleneckBlock(8, strides=2, shortcut="projection", stride_position="3x3", use_bias=True,
                        activation="gelu", kernel_initializer="glorot_uniform", name="b2"),
        ResidualBlock(8, shortcut="none", dtype="mixed_bfloat16"),
    ],
    ids=["residual", "bottleneck", "plain-mixed"],
)
def test_config_round_trip_rebuilds_an_identical_block(block):
    x = _random_input((2, 8, 8, 8))
    y = block(x)
    rebuilt = type(block).from_config(block.get_config())
    assert rebuilt.get_config() == block.get_config()
    rebuilt.build(x.shape)
    rebuilt.set_weights(block.get_weights())
    np.testing.assert_allclose(rebuilt(x), y, atol=1e-6)
    # Through Keras' registry as well (what .keras files use).
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(block))
    assert type(again) is type(block) and again.get_config() == block.get_config()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls,shortcut", [(ResidualBlock, "zero_pad"), (BottleneckBlock, "projection")])
def test_blocks_under_mixed_precision(policy, cls, shortcut):
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((8, 8, 4))
    block = cls(8, strides=2, shortcut=shortcut)
    outputs = block(inputs)
    model = keras.Model(inputs, outputs)
    y = model(_random_input((2, 8, 8, 4)), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in block.weights)
    assert np.isfinite(np.asarray(ops.cast(y, "float32"))).all()


@pytest.mark.parametrize("cls,shortcut", [(ResidualBlock, "projection"), (ResidualBlock, "none"),
                                          (BottleneckBlock, "projection"), (BottleneckBlock, "zero_pad")])
def test_branch_outputs_add_up_to_the_block_output(cls, shortcut):
    block = cls(8, strides=2, shortcut=shortcut)
    x = _random_input((2, 16, 16, 16 if cls is ResidualBlock else 8))
    y = block(x, training=False)
    _randomize_batch_norms(block, seed=3)
    outputs = block.branch_outputs(x, training=False)
    expected = outputs["residual"] + (0 if outputs["shortcut"] is None else outputs["shortcut"])
    np.testing.assert_allclose(ops.convert_to_numpy(block(x, training=False)),
                               ops.convert_to_numpy(ops.relu(expected)), atol=1e-5)
    assert (outputs["shortcut"] is None) == (shortcut == "none")
    assert set(block.responses_3x3) <= set(outputs) and y.shape == outputs["residual"].shape
    assert len(block.batch_norms) == (2 if cls is ResidualBlock else 3) + (shortcut == "projection")
