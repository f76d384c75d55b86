import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import BottleneckBlock, ResidualBlock
from keras_resnet.errors import InvalidArgument
from keras_resnet.summary import count_trainable_params


def _blocks(model):
    return [layer for layer in model.layers if isinstance(layer, (ResidualBlock, BottleneckBlock))]


def test_layer_names_read_like_table_1(named_model):
    model = named_model("resnet50")
    names = [layer.name for layer in model.layers]
    assert names[1:10] == [  # the model's Task after its preprocessing; tap_conv1 marks
        # conv1's output (feature_info) before the pool
        "preprocessing", "task", "conv1_pad", "conv1", "conv1_bn", "conv1_relu", "tap_conv1",
        "pool1_pad", "pool1",
    ]
    expected = [f"conv{s + 2}_block{b + 1}" for s, n in enumerate((3, 4, 6, 3)) for b in range(n)]
    assert [block.name for block in _blocks(model)] == expected
    assert names[-3:] == ["tap_conv5", "avg_pool", "predictions"]
    assert model.output_shape == (None, 1000)
    assert model.get_layer("pool1").output.shape[1:] == (56, 56, 64)  # Table 1: 56x56 after pool
    assert model.get_layer("conv5_block3").output.shape[1:] == (7, 7, 2048)


def test_resnet18_and_34_have_identity_shortcuts_in_conv2(named_model):
    for name in ("resnet18", "resnet34"):
        shortcuts = {b.name: b.shortcut for b in _blocks(named_model(name))}
        assert {v for k, v in shortcuts.items() if k.startswith("conv2_")} == {"identity"}
        assert [k for k, v in shortcuts.items() if v == "projection"] == [
            "conv3_block1", "conv4_block1", "conv5_block1"
        ]


EXACT_IMAGENET_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def _full_size_slow(name, *values):
    """ResNet-101/152 and ResNet-1202 take seconds each to build: `pytest --all` only."""
    marks = pytest.mark.slow if name in ("resnet101", "resnet152", "resnet1202") else ()
    return pytest.param(name, *values, marks=marks, id=f"{name}-{values[0]}")


@pytest.mark.parametrize("name,params", [_full_size_slow(n, p) for n, p in EXACT_IMAGENET_PARAMS.items()])
def test_imagenet_parameters_match_the_reference_exactly(named_model, name, params):
    assert count_trainable_params(named_model(name)) == params


@pytest.mark.parametrize(
    "name,giga",
    [_full_size_slow(*p) for p in [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8),
                                   ("resnet101", 7.6), ("resnet152", 11.3)]],
)
def test_imagenet_multiply_adds_within_3_percent_of_table_1(named_model, name, giga):
    assert keras_resnet.count_multiply_adds(named_model(name)) == pytest.approx(giga * 1e9, rel=0.03)


@pytest.mark.parametrize(
    "name,millions",
    [_full_size_slow(*p) for p in [("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66),
                                   ("resnet56", 0.85), ("resnet110", 1.7), ("resnet1202", 19.4)]],
)
@pytest.mark.slow
def test_cifar_parameters_within_2_percent_of_table_6(named_model, name, millions):
    model = named_model(name)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert len(_blocks(model)) == (int(name[6:]) - 2) // 2  # 6n+2 layers: 3n blocks of two
    assert count_trainable_params(model) == pytest.approx(millions * 1e6, rel=0.02)


@pytest.mark.slow
def test_option_a_adds_no_parameters_and_c_more_than_b():
    params = {
        option: count_trainable_params(keras_resnet.ResNet34(shortcut=option, input_shape=(64, 64, 3)))
        for option in "ABC"
    }
    plain = count_trainable_params(keras_resnet.ResNet34(residual=False, input_shape=(64, 64, 3)))
    assert params["A"] == plain
    assert params["A"] < params["B"] < params["C"]
    cifar_a = count_trainable_params(keras_resnet.ResNet20(shortcut="A"))
    assert cifar_a == count_trainable_params(keras_resnet.ResNet20(residual=False))
    assert cifar_a < count_trainable_params(keras_resnet.ResNet20(shortcut="B"))


def test_plain_network_has_the_same_layers_without_shortcuts():
    plain = keras_resnet.ResNet56(residual=False)
    assert plain.name == "plain56"
    assert {b.shortcut for b in _blocks(plain)} == {"none"}
    assert [b.name for b in _blocks(plain)] == [b.name for b in _blocks(keras_resnet.ResNet56())]


def test_generic_builders_take_any_valid_depth():
    assert len(_blocks(keras_resnet.CifarResNet(8))) == 3
    assert len(_blocks(keras_resnet.CifarResNet(74))) == 36
    assert keras_resnet.ImageNetResNet(34, input_shape=(32, 32, 3)).output_shape == (None, 1000)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: keras_resnet.CifarResNet(21), r"`depth`.*6n\+2.*21"),
        (lambda: keras_resnet.ImageNetResNet(42), r"`depth`.*18, 34, 50, 101, 152.*42"),
        (lambda: keras_resnet.ResNet20(shortcut="D"), r"`shortcut`.*'A', 'B', 'C'.*'D'"),
        (lambda: keras_resnet.ResNet50(weights="imagenet", classes=10), r"`classes=1000`.*classes=10"),
        (lambda: keras_resnet.ResNet20(input_shape=(16, 16, 3)), r"`input_shape`.*>= 32.*\(16, 16, 3\)"),
        (lambda: keras_resnet.ResNet20(input_shape=(32, 32)), r"`input_shape`.*\(32, 32\)"),
        (lambda: keras_resnet.ResNet20(input_shape=(32, 32, 0)), r"`input_shape channels`.*0"),
        (lambda: keras_resnet.ResNet50(stride_position="2x2", input_shape=(32, 32, 3)),
         r"`stride_position`.*'1x1', '3x3'.*'2x2'"),
        (lambda: keras_resnet.ResNet20(classes=0), r"`classes`.*0"),
        (lambda: keras_resnet.ResNet20(include_top=False, pooling="mean"), r"`pooling`.*'mean'"),
        (lambda: keras_resnet.ResNet20(width_multiplier=0), r"`width_multiplier`.*0"),
        (lambda: keras_resnet.ResNet20(weights="nowhere.weights.h5"), r"`weights`.*nowhere.weights.h5"),
        (lambda: keras_resnet.ResNet20(weights="model.bin"), r"`weights`.*'model.bin'"),
        (lambda: keras_resnet.ResNet20(weight_decay=1e-4, kernel_regularizer="l2"),
         r"`weight_decay`.*`kernel_regularizer`"),
        (lambda: keras_resnet.get_model("resnet19"), r"`model_name`.*resnet20.*'resnet19'"),
    ],
)
def test_bad_input_raises_a_clear_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("build", [
    lambda position: keras_resnet.ResNet18(stride_position=position, input_shape=(32, 32, 3)),
    lambda position: keras_resnet.ResNet34(stride_position=position, input_shape=(32, 32, 3)),
    lambda position: keras_resnet.ResNet20(stride_position=position),
    lambda position: keras_resnet.get_model("resnet18d", stride_position=position, input_shape=(32, 32, 3)),
], ids=["resnet18", "resnet34", "resnet20", "resnet18d"])
@pytest.mark.parametrize("position", ["1x1", "3x3"])
def test_stride_position_on_basic_blocks_is_refused_not_ignored(build, position):
    with pytest.raises(InvalidArgument) as caught:
        build(position)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("`stride_position` must be one of '1x1', "
                                                       f"'3x3' (bottleneck nets only); got {position!r} (")
    assert message.endswith(" has basic blocks).")


@pytest.mark.slow
def test_stride_position_default_keeps_basic_and_bottleneck_nets_unchanged():
    # Basic nets build as before; a bottleneck net still takes either position.
    assert keras_resnet.ResNet20().count_params() == 271098
    assert keras_resnet.ResNet18(input_shape=(32, 32, 3)).count_params() == keras_resnet.ResNet18(
        input_shape=(32, 32, 3), stride_position=None).count_params()
    for position in ("1x1", "3x3"):
        model = keras_resnet.ResNet50(stride_position=position, input_shape=(32, 32, 3))
        assert model.get_layer("conv3_block1").stride_position == position


@pytest.mark.slow  # 2 s or more of its own
def test_headless_models_and_pooling():
    assert keras_resnet.ResNet50(include_top=False, input_shape=(64, 64, 3)).output_shape == (None, 2, 2, 2048)
    pooled = keras_resnet.ResNet18(include_top=False, pooling="avg", input_shape=(None, None, 3))
    assert pooled.output_shape == (None, 512)
    assert keras_resnet.ResNet20(include_top=False, pooling="max").output_shape == (None, 64)


def test_input_tensor_is_used_as_model_input():
    inputs = keras.Input((48, 48, 1))
    model = keras_resnet.ResNet20(input_tensor=inputs, classes=7)
    assert model.inputs[0] is inputs and model.output_shape == (None, 7)


def test_weight_decay_is_l2_half_the_paper_coefficient_on_every_kernel():
    model = keras_resnet.ResNet20(weight_decay=1e-4)
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = 5e-5 * sum(float(np.sum(np.square(w.numpy()))) for w in kernels)
    assert len(model.losses) == len(kernels) == 20  # 19 convs + the classifier
    assert float(keras.ops.sum(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_width_multiplier_scales_channels():
    wide = keras_resnet.ResNet20(width_multiplier=2)
    assert wide.get_layer("conv4_block3").output.shape[-1] == 128
    ratio = count_trainable_params(wide) / count_trainable_params(keras_resnet.ResNet20())
    assert 3.5 < ratio < 4.1


def test_zero_init_residual_sets_last_gamma_to_zero():
    model = keras_resnet.ResNet50(zero_init_residual=True, input_shape=(32, 32, 3))
    for block in _blocks(model):
        assert np.all(block.bn3.gamma.numpy() == 0) and np.all(block.bn1.gamma.numpy() == 1)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_models_build_and_predict_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    model = keras_resnet.ResNet20()
    probabilities = model.predict(np.random.rand(4, 32, 32, 3).astype("float32"), verbose=0)
    assert probabilities.dtype == np.float32  # the classifier computes in float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert keras.backend.standardize_dtype(model.get_layer("conv4_block3").output.dtype) == policy[6:]


@pytest.mark.slow  # 2 s or more of its own
def test_weights_from_a_weights_file(tmp_path):
    source = keras_resnet.ResNet20(classes=5)
    path = str(tmp_path / "resnet20.weights.h5")
    source.save_weights(path)
    loaded = keras_resnet.ResNet20(classes=5, weights=path)
    x = np.random.rand(3, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), source.predict(x, verbose=0))


@pytest.mark.slow
def test_model_export_writes_a_saved_model(tmp_path):
    import tensorflow as tf

    model = keras_resnet.ResNet20()
    model.export(str(tmp_path / "export"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(loaded.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_one_epoch_of_fit_on_real_digits_lowers_the_loss():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.repeat(np.kron(digits.images[:512, :, :, None] / 16.0, np.ones((4, 4, 1))), 3, axis=-1)
    labels = digits.target[:512]
    model = keras_resnet.ResNet20(weight_decay=1e-4)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    before = model.evaluate(images, labels, verbose=0)
    model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
    after = model.evaluate(images, labels, verbose=0)
    assert after < 0.8 * before, (before, after)


# ---------------------------------------------------------------------------------------------
# Architecture as data, one source of weight decay, one preprocessing object, channels_last.


def test_stems_are_table_1_and_section_4_2_data():
    from keras_resnet.architectures import architecture

    imagenet, cifar = architecture("imagenet", 50).stem, architecture("cifar", 20).stem
    assert (imagenet.filters, imagenet.kernel_size, imagenet.strides) == (64, 7, 2)
    assert (imagenet.pool_size, imagenet.pool_strides) == (3, 2)
    assert (cifar.filters, cifar.kernel_size, cifar.strides, cifar.pool_size) == (16, 3, 1, 0)
    conv1 = keras_resnet.ResNet50().get_layer("conv1")
    assert conv1.kernel_size == (7, 7) and conv1.strides == (2, 2)
    model = keras_resnet.ResNet20()
    assert model.get_layer("conv1").kernel_size == (3, 3)
    assert "pool1" not in [layer.name for layer in model.layers]


def _kernel_regularizers(model):
    return {w.path: w.regularizer for w in model.trainable_weights if w.path.endswith("kernel")}


def test_the_paper_weight_decay_is_the_default_and_compile_keeps_the_models_own():
    from keras_resnet import training

    default = keras_resnet.ResNet20()
    assert {round(float(r.l2), 12) for r in _kernel_regularizers(default).values()} == {5e-5}
    none = keras_resnet.ResNet20(weight_decay=0)
    training.compile_model(none, "cifar")
    assert set(_kernel_regularizers(none).values()) == {None} and not none.losses
    l1 = keras_resnet.ResNet20(kernel_regularizer=keras.regularizers.L1(1e-5))
    training.compile_model(l1, "cifar")
    kinds = {type(r).__name__ for r in _kernel_regularizers(l1).values()}
    assert kinds == {"L1"}
    # L1's penalty, exactly: sum of |w| * 1e-5 over every kernel.
    expected = sum(1e-5 * np.abs(keras.ops.convert_to_numpy(w)).sum()
                   for w in l1.trainable_weights if w.path.endswith("kernel"))
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in l1.losses)) == pytest.approx(expected, rel=1e-4)
    # Asked explicitly, the recipe replaces it, in the config too (so saving keeps it).
    training.compile_model(l1, "cifar", weight_decay=2e-4)
    assert {round(float(r.l2), 12) for r in _kernel_regularizers(l1).values()} == {1e-4}
    assert l1.get_layer("conv2_block1").get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(1e-4)


@pytest.mark.slow
def test_every_model_carries_its_preprocessing_through_keras_saving(tmp_path):
    from keras_resnet import preprocessing

    recipe = preprocessing.ImagePreprocessing(
        (32, 32), mean=np.full((32, 32, 3), 0.25), class_names=list("abcdefghij"), source="mine",
    )
    model = keras_resnet.ResNet20(preprocessing=recipe)
    assert preprocessing.of(model) is recipe
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # Keras' own loader, nothing of ours
    assert preprocessing.of(loaded) == recipe
    assert preprocessing.of(loaded).class_names == list("abcdefghij")
    np.testing.assert_array_equal(preprocessing.of(loaded).mean, recipe.mean)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # A model built without one says what it assumes: resize to the input, pixels / 255.
    default = preprocessing.of(keras_resnet.ResNet50())
    assert default.image_size == (224, 224) and default.scale == pytest.approx(1 / 255)
    assert default.class_names == [str(i) for i in range(1000)] and default.source == "default"


@pytest.mark.slow
def test_attach_replaces_the_preprocessing_and_copies_the_weights_into_new_layers():
    from keras_resnet import preprocessing

    model = keras_resnet.ResNet20()
    renamed = preprocessing.attach(model, preprocessing.of(model).with_class_names(list("0123456789")))
    assert renamed.get_layer("conv2_block1") is not model.get_layer("conv2_block1")
    for mine, theirs in zip(renamed.weights, model.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert preprocessing.of(renamed).class_names == list("0123456789")
    # each layer in one graph: its output is the new model's (a feature model builds from it)
    stage = keras.Model(renamed.input, renamed.get_layer("conv2_block1").output)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(renamed.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-6)
    assert stage.predict(images, verbose=0).shape == (2, 32, 32, 16)
    foreign = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    wrapped = preprocessing.attach(foreign, preprocessing.ImagePreprocessing(8, class_names=["a", "b"]))
    x = np.ones((1, 8, 8, 3), "float32")
    np.testing.assert_array_equal(wrapped.predict(x, verbose=0), foreign.predict(x, verbose=0))


@pytest.mark.parametrize(
    "build",
    [
        lambda: keras_resnet.ResNet50(),
        lambda: keras_resnet.ResNet18(),
        lambda: keras_resnet.ResNet20(),
        lambda: keras_resnet.CifarResNet(8),
        lambda: keras_resnet.ResidualBlock(16),
        lambda: keras_resnet.BottleneckBlock(16, shortcut="projection"),
    ],
    ids=["resnet50", "resnet18", "resnet20", "cifar8", "residual_block", "bottleneck_block"],
)
def test_channels_first_is_refused_at_construction_naming_the_setting(build):
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match=r"channels_last.*'channels_first'.*set_image_data_format"):
            build()
    finally:
        keras.config.set_image_data_format(previous)
