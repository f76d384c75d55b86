import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet.summary import count_trainable_params


def _randomize(model, seed=0):
    """Random weights everywhere, including BN moving statistics (fresh ones are 0 and 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c),
            ])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_from_keras_applications_gives_equal_predictions(depth):
    application = getattr(keras.applications, f"ResNet{depth}")
    source = application(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    _randomize(source, seed=depth)
    ours = keras_resnet.from_keras_applications(source)
    assert ours.name == f"resnet{depth}"
    assert count_trainable_params(ours) == count_trainable_params(source)
    block = ours.get_layer("conv3_block1")
    assert block.conv1.strides == (2, 2) and block.use_bias and block.epsilon == 1.001e-5
    x = np.random.default_rng(depth).normal(size=(2, 64, 64, 3)).astype("float32")
    expected = source.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert np.abs(expected).max() > 0.1  # logits of a real scale, not a vanishing signal
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_from_keras_applications_headless_with_pooling():
    source = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3))
    _randomize(source)
    ours = keras_resnet.from_keras_applications(source, name="features")
    assert ours.name == "features" and ours.output_shape == (None, 2048)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), source.predict(x, verbose=0), atol=1e-4, rtol=0)


def test_from_keras_applications_rejects_other_models():
    with pytest.raises(ValueError, match="`keras_model`.*ResNet50"):
        keras_resnet.from_keras_applications(keras.applications.ResNet50V2(weights=None, input_shape=(32, 32, 3)))
    with pytest.raises(TypeError, match="`keras_model`"):
        keras_resnet.from_keras_applications("resnet50")


def test_imagenet_weights_go_through_keras_applications(monkeypatch):
    # Offline: stand in for the download with a weights=None source that records the request.
    requested = {}
    original = keras.applications.ResNet101

    def fake_resnet101(**kwargs):
        requested.update(kwargs)
        source = original(**{**kwargs, "weights": None})
        _randomize(source)
        requested["model"] = source
        return source

    monkeypatch.setattr(keras.applications, "ResNet101", fake_resnet101)
    model = keras_resnet.ResNet101(weights="imagenet", include_top=False, input_shape=(64, 64, 3), pooling="max")
    assert requested["weights"] == "imagenet" and requested["pooling"] == "max"
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), requested["model"].predict(x, verbose=0), atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="`shortcut='B'`.*'C'"):
        keras_resnet.ResNet101(weights="imagenet", shortcut="C")
