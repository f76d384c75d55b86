import itertools

import keras
import numpy as np
import pytest
from fixtures.make_legacy_fixtures import legacy_blocks_model
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


# --- weight paths and files of today's blocks ---------------------------------------------

# The sublayers of a block named "b" built on 8x8 inputs, in weight order, as the blocks wrote
# them before they were made of parts: "conv:k" is conv/kernel, "conv:kb" adds conv/bias, and
# "bn:bn" is bn/gamma, bn/beta, bn/moving_mean, bn/moving_variance. Old .keras files and the
# weight converters (keras_resnet.weights) rely on these paths.
R, B = ResidualBlock, BottleneckBlock
POST = "conv1:k bn1:bn conv2:k bn2:bn"
PRE = "conv1:k bn1:bn conv2:kb"
POST3 = "conv1:k bn1:bn conv2:k bn2:bn conv3:k bn3:bn"
PRE3 = "conv1:k bn1:bn conv2:k bn2:bn conv3:kb"
SE, PROJ, PREACT = "se_reduce:kb se_expand:kb", "shortcut_conv:k shortcut_bn:bn", "preact_bn:bn"
WEIGHT_PATHS = []
for _cls, (_post, _pre) in ((R, (POST, PRE)), (B, (POST3, PRE3))):
    for _shortcut in ("identity", "zero_pad", "projection", "none"):
        _proj = _shortcut == "projection"
        WEIGHT_PATHS += [
            (_cls, dict(shortcut=_shortcut), " ".join([PROJ] * _proj + [_post])),
            (_cls, dict(shortcut=_shortcut, se_ratio=0.25), " ".join([PROJ] * _proj + [SE, _post])),
            (_cls, dict(shortcut=_shortcut, preactivation=True),
             " ".join([PREACT] + ["shortcut_conv:kb"] * _proj + [_pre])),
            (_cls, dict(shortcut=_shortcut, preactivation=True, se_ratio=0.25),
             " ".join([PREACT] + ["shortcut_conv:kb"] * _proj + [SE, _pre])),
        ]
WEIGHT_PATHS += [
    (R, dict(shortcut="projection", avg_down=True, strides=2), f"{PROJ} {POST}"),
    (B, dict(shortcut="projection", avg_down=True, se_ratio=0.25, strides=2), f"{PROJ} {SE} {POST3}"),
    (R, dict(shortcut="projection", drop_path_rate=0.1, use_bias=True, strides=2),
     "shortcut_conv:kb shortcut_bn:bn conv1:kb bn1:bn conv2:kb bn2:bn"),
    (B, dict(shortcut="projection", groups=2, base_width=32, stride_position="3x3", strides=2,
             zero_init_residual=True), f"{PROJ} {POST3}"),
    (B, dict(shortcut="projection", preactivation=True, use_bias=True, drop_path_rate=0.2),
     "preact_bn:bn shortcut_conv:kb conv1:kb bn1:bn conv2:kb bn2:bn conv3:kb"),
    (R, dict(shortcut="zero_pad", preactivation=True, use_bias=True, strides=2),
     "preact_bn:bn conv1:kb bn1:bn conv2:kb"),
]
VARIABLES = {"k": ["kernel"], "kb": ["kernel", "bias"],
             "bn": ["gamma", "beta", "moving_mean", "moving_variance"]}


def _expand(paths):
    return [f"b/{layer}/{variable}" for token in paths.split()
            for layer, kind in [token.split(":")] for variable in VARIABLES[kind]]


@pytest.mark.parametrize("cls,kwargs,paths", WEIGHT_PATHS,
                         ids=[f"{c.__name__}-{sorted(k.items())}" for c, k, _ in WEIGHT_PATHS])
def test_weight_paths_and_order_are_those_of_the_blocks_before_parts(cls, kwargs, paths):
    block = cls(8, name="b", **kwargs)
    in_channels = 8 * cls.expansion if kwargs["shortcut"] == "identity" else 4 * cls.expansion
    block.build((None, 8, 8, in_channels))
    assert [w.path for w in block.weights] == _expand(paths)


def test_weight_paths_of_option_b_and_c_are_those_of_the_kinds_they_give():
    for option, kind, in_channels, strides in (("B", "projection", 4, 2), ("b", "identity", 8, 1),
                                               ("C", "projection", 8, 1), ("a", "zero_pad", 4, 2)):
        asked, explicit = (ResidualBlock(8, strides=strides, shortcut=s, name="b")
                           for s in (option, kind))
        for block in (asked, explicit):
            block.build((None, 8, 8, in_channels))
        assert asked.shortcut_kind == kind and asked.shortcut == option.upper()
        assert [w.path for w in asked.weights] == [w.path for w in explicit.weights]


def _h5_datasets(keras_file, folder):
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_file) as archive:
        archive.extract("model.weights.h5", folder)
    found = {}
    with h5py.File(folder / "model.weights.h5") as store:
        store.visititems(lambda name, item: found.update(
            {name: item.shape} if isinstance(item, h5py.Dataset) else {}))
    return found


def test_a_saved_file_stores_the_weights_where_old_files_have_them(tmp_path):
    import pathlib

    legacy = pathlib.Path(__file__).resolve().parent / "fixtures" / "legacy" / "blocks.keras"
    legacy_blocks_model().save(tmp_path / "new.keras")
    old = _h5_datasets(legacy, tmp_path / "old")
    assert _h5_datasets(tmp_path / "new.keras", tmp_path / "new") == old
    assert any("/batch_norms/" in name for name in old)  # the BNs' place in the file


# --- one vocabulary for batch norm ----------------------------------------------------------


@pytest.mark.parametrize("cls", [ResidualBlock, BottleneckBlock])
def test_batch_norm_options_take_either_spelling_and_write_the_bn_one(cls):
    synced = keras.backend.backend() == "tensorflow"  # synchronized BN is TensorFlow's only
    new = cls(8, bn_momentum=0.97, bn_epsilon=1e-3, bn_synchronized=synced, name="b")
    old = cls(8, momentum=0.97, epsilon=1e-3, synchronized=synced, name="b")
    assert new.get_config() == old.get_config()
    config = new.get_config()
    assert (config["bn_momentum"], config["bn_epsilon"], config["bn_synchronized"]) == (0.97, 1e-3, synced)
    assert not {"momentum", "epsilon", "synchronized"} & set(config)
    old.build((None, 8, 8, 8 * cls.expansion))
    assert all((bn.momentum, bn.epsilon, bn.synchronized) == (0.97, 1e-3, synced)
               for bn in old.batch_norms)
    defaults = cls(8).get_config()
    assert (defaults["bn_momentum"], defaults["bn_epsilon"], defaults["bn_synchronized"]) == (0.9, 1e-5, False)


@pytest.mark.parametrize("new,old", [("bn_momentum", "momentum"), ("bn_epsilon", "epsilon"),
                                     ("bn_synchronized", "synchronized")])
def test_both_spellings_of_one_batch_norm_option_are_refused(new, old):
    from keras_resnet.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=f"`{new}` and `{old}` are one option") as error:
        ResidualBlock(8, **{new: 0.5, old: 0.5})
    assert "\n" not in str(error.value)


def test_an_old_config_with_old_spellings_gives_the_same_block():
    block = BottleneckBlock(4, shortcut="projection", bn_momentum=0.99, bn_epsilon=1.001e-5)
    config = block.get_config()
    old_config = {k: v for k, v in config.items() if not k.startswith(("bn_", "outputs_"))}
    old_config.update(momentum=0.99, epsilon=1.001e-5, synchronized=False)
    assert BottleneckBlock.from_config(old_config).get_config() == config


# --- the shortcut options of §3.3 -----------------------------------------------------------


@pytest.mark.parametrize("option,in_channels,strides,kind", [
    ("A", 8, 1, "identity"), ("A", 4, 1, "zero_pad"), ("A", 8, 2, "zero_pad"),
    ("B", 8, 1, "identity"), ("B", 4, 1, "projection"), ("B", 8, 2, "projection"),
    ("C", 8, 1, "projection"), ("c", 4, 2, "projection"), ("b", 8, 1, "identity"),
])
def test_options_a_b_c_decide_the_shortcut_from_the_input(option, in_channels, strides, kind):
    block = ResidualBlock(8, strides=strides, shortcut=option)
    x = _random_input((2, 8, 8, in_channels))
    y = block(x)
    assert block.shortcut_kind == kind and block.shortcut == option.upper()
    assert hasattr(block, "shortcut_conv") == (kind == "projection")
    # The same block as the kind asked for by name, given the same weights.
    explicit = ResidualBlock(8, strides=strides, shortcut=kind)
    explicit(x)
    explicit.set_weights(block.get_weights())
    np.testing.assert_allclose(explicit(x), y, atol=1e-6)
    assert block.multiply_adds(x.shape) == explicit.multiply_adds(x.shape)
    rebuilt = ResidualBlock.from_config(block.get_config())
    assert rebuilt.get_config() == block.get_config()


def test_option_b_in_a_functional_model_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((8, 8, 16))
    x = BottleneckBlock(4, shortcut="B", name="keeps")(inputs)
    x = BottleneckBlock(8, strides=2, shortcut="B", avg_down=True, name="changes")(x)
    model = keras.Model(inputs, x)
    assert [layer.shortcut_kind for layer in model.layers[1:]] == ["identity", "projection"]
    x = _random_input((2, 8, 8, 16))
    model.save(tmp_path / "b.keras")
    loaded = keras.saving.load_model(tmp_path / "b.keras")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(shortcut="D"), r"`shortcut` must be one of .*'A', 'B', 'C'.*got 'D'"),
    (dict(shortcut="A", avg_down=True), r"`avg_down=True`.*got shortcut='A'"),
    (dict(shortcut="identity", strides=2), r"`shortcut='identity'` needs `strides=1`"),
])
def test_bad_shortcut_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualBlock(8, **kwargs)


# --- the pre-activated input as a second output -----------------------------------------------


@pytest.mark.parametrize("cls", [ResidualBlock, BottleneckBlock])
def test_outputs_preactivation_needs_a_pre_activation_block(cls):
    from keras_resnet.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="`outputs_preactivation=True`.*preactivation=False"):
        cls(8, outputs_preactivation=True)
    with pytest.raises(InvalidArgument, match="`outputs_preactivation` must be True or False"):
        cls(8, preactivation=True, outputs_preactivation="yes")


def _preactivation_model():
    """A pre-activation stage whose strided block's BN-ReLU'd input is tapped (ResNet-50 V2)."""
    inputs = keras.Input((8, 8, 16))
    x = BottleneckBlock(4, shortcut="identity", preactivation=True, name="b1")(inputs)
    y, tap = BottleneckBlock(8, strides=2, shortcut="B", preactivation=True,
                             outputs_preactivation=True, name="b2")(x)
    return keras.Model(inputs, [y, tap])


def test_outputs_preactivation_taps_the_blocks_bn_relu_input_in_a_functional_model(tmp_path):
    model = _preactivation_model()
    assert model.output_shape == [(None, 4, 4, 32), (None, 8, 8, 16)]
    block = model.get_layer("b2")
    assert block.compute_output_shape((None, 8, 8, 16)) == ((None, 4, 4, 32), (None, 8, 8, 16))
    _randomize_batch_norms(block, seed=5)
    x = _random_input((2, 8, 8, 16))
    y, tap = model(x, training=False)
    first = model.get_layer("b1")(x, training=False)
    np.testing.assert_allclose(tap, ops.relu(block.preact_bn(first, training=False)), atol=1e-5)
    plain = BottleneckBlock.from_config({**block.get_config(), "outputs_preactivation": False})
    plain(first)
    plain.set_weights(block.get_weights())
    np.testing.assert_allclose(y, plain(first, training=False), atol=1e-5)
    model.save(tmp_path / "tap.keras")
    loaded = keras.saving.load_model(tmp_path / "tap.keras")
    for got, expected in zip(loaded(x, training=False), (y, tap)):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert loaded.get_layer("b2").get_config() == block.get_config()


def test_the_old_batch_norm_names_still_read_the_settings():
    block = ResidualBlock(8, bn_momentum=0.97, bn_epsilon=1e-3)
    assert (block.momentum, block.epsilon, block.synchronized) == (0.97, 1e-3, False)


def test_synchronized_batch_norm_off_tensorflow_is_refused_at_construction(monkeypatch):
    from keras_resnet.errors import InvalidArgument

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(InvalidArgument, match="`bn_synchronized=True`.*'jax'"):
        ResidualBlock(8, synchronized=True)
