"""keras_resnet.analysis: Fig. 7's layer responses, checked against hand computations."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_resnet
from keras_resnet.analysis import layer_response_std


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).normal(size=(10, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def resnet20():
    keras.utils.set_random_seed(1)
    model = keras_resnet.ResNet20()
    # Non-trivial BN statistics, so inference-mode BN is not the identity.
    rng = np.random.RandomState(1)
    layers = [bn for layer in model.layers for bn in getattr(layer, "batch_norms", [layer])]
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, shape).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    return model


def block_input(model, name, images):
    return keras.Model(model.inputs[0], model.get_layer(name).input)(images, training=False)


def test_one_value_per_3x3_layer(resnet20, images):
    # conv1 + 9 blocks x 2 convolutions = 19 (the "20" counts the classifier too).
    stds = layer_response_std(resnet20, images)
    assert stds.shape == (19,)
    assert np.all(np.isfinite(stds)) and np.all(stds > 0)


def test_plain_network_has_the_same_layers(images):
    stds = layer_response_std(keras_resnet.ResNet20(residual=False), images)
    assert stds.shape == (19,)
    assert layer_response_std(keras_resnet.CifarResNet(8, residual=False), images).shape == (7,)


@pytest.mark.slow  # 2 s or more of its own
def test_imagenet_nets_count_only_3x3_convolutions(images):
    # ResNet-18: 8 basic blocks x 2 (the 7x7 stem is not a 3x3 layer).
    assert layer_response_std(keras_resnet.ResNet18(input_shape=(32, 32, 3)), images).shape == (16,)
    # ResNet-50: 16 bottlenecks, each with one 3x3 between two 1x1.
    assert layer_response_std(keras_resnet.ResNet50(input_shape=(32, 32, 3)), images).shape == (16,)


def test_conv1_matches_a_manual_computation(resnet20, images):
    response = keras.Model(resnet20.inputs[0], resnet20.get_layer("conv1_bn").output)(
        images, training=False
    )
    expected = np.std(ops.convert_to_numpy(response).astype(np.float64))
    assert layer_response_std(resnet20, images)[0] == pytest.approx(expected, rel=1e-5)


def test_block_convolutions_match_a_manual_computation(resnet20, images):
    stds = layer_response_std(resnet20, images, batch_size=3)  # accumulated over 4 batches
    # conv2_block2 (identity block): its two 3x3 responses are layers 3 and 4 (0-based) after
    # conv1 and conv2_block1's two.
    block = resnet20.get_layer("conv2_block2")
    x = block_input(resnet20, "conv2_block2", images)
    first = block.bn1(block.conv1(x), training=False)
    second = block.bn2(block.conv2(ops.relu(first)), training=False)
    assert stds[3] == pytest.approx(np.std(ops.convert_to_numpy(first).astype(np.float64)), rel=1e-5)
    assert stds[4] == pytest.approx(np.std(ops.convert_to_numpy(second).astype(np.float64)), rel=1e-5)
    # conv3_block1 strides by 2 with one pixel of explicit padding on every side.
    block = resnet20.get_layer("conv3_block1")
    x = block_input(resnet20, "conv3_block1", images)
    padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    first = block.bn1(block.conv1(padded), training=False)
    assert first.shape[1:3] == (16, 16)
    index = 1 + 2 * 3  # conv1, then three blocks of conv2_x
    assert stds[index] == pytest.approx(np.std(ops.convert_to_numpy(first).astype(np.float64)), rel=1e-5)


def test_response_is_before_the_addition(resnet20, images):
    # The second response of a residual block is F(x) before "+ x": it differs from the
    # block's output (after addition and ReLU), whose std we compute to make sure.
    block = resnet20.get_layer("conv2_block2")
    output = keras.Model(resnet20.inputs[0], block.output)(images, training=False)
    after_addition = np.std(ops.convert_to_numpy(output).astype(np.float64))
    assert layer_response_std(resnet20, images)[4] != pytest.approx(after_addition, rel=1e-3)


def test_bad_input_is_refused(resnet20, images):
    with pytest.raises(ValueError, match="do not fit the model input"):
        layer_response_std(resnet20, np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="4D array"):
        layer_response_std(resnet20, images[0])
    with pytest.raises(ValueError, match="empty"):
        layer_response_std(resnet20, images[:0])
    with pytest.raises(ValueError, match="batch_size"):
        layer_response_std(resnet20, images, batch_size=0)
    with pytest.raises(TypeError, match="keras.Model"):
        layer_response_std("resnet20", images)
    dense = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no 3x3 convolution"):
        layer_response_std(dense, images)
