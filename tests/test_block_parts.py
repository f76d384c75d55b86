"""The parts the residual blocks compose, each checked on its own against a reference written
from its paper."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_resnet.blocks import (
    ConvSpec,
    PostActivation,
    PreActivation,
    ResidualBlock,
    parts,
    se_channels,
    shortcut_kind,
    shortcuts,
)
from keras_resnet.blocks import options as options_lib
from keras_resnet.errors import InvalidArgument


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("option,in_channels,out_channels,strides,kind", [
    ("A", 64, 64, 1, "identity"), ("A", 64, 128, 2, "zero_pad"), ("A", 64, 64, 2, "zero_pad"),
    ("B", 64, 64, 1, "identity"), ("B", 64, 128, 2, "projection"), ("B", 64, 256, 1, "projection"),
    ("C", 64, 64, 1, "projection"), ("identity", 64, 64, 1, "identity"),
    ("none", 64, 128, 2, "none"), ("zero_pad", 64, 64, 1, "zero_pad"),
])
def test_shortcut_kind_follows_section_3_3(option, in_channels, out_channels, strides, kind):
    assert shortcut_kind(option, in_channels, out_channels, strides) == kind


def test_shortcut_names_are_case_insensitive_and_bad_ones_name_the_choices():
    assert [shortcuts.normalize_shortcut(s) for s in ("a", "B", "c", "Zero_Pad")] == \
        ["A", "B", "C", "zero_pad"]
    for bad in ("D", 3, None):
        with pytest.raises(InvalidArgument, match=r"`shortcut` must be one of 'identity'.*'C'"):
            shortcuts.normalize_shortcut(bad)


def test_zero_pad_subsamples_and_pads_new_channels_with_zeros():
    x = _random((2, 5, 6, 3))
    y = np.asarray(shortcuts.zero_pad(x, 2, 8))
    expected = np.zeros((2, 3, 3, 8), "float32")
    expected[..., :3] = x[:, ::2, ::2, :]
    np.testing.assert_array_equal(y, expected)
    with pytest.raises(InvalidArgument, match="can only add channels"):
        shortcuts.check_shortcut_fits("zero_pad", 8, 4)


def test_average_down_averages_2x2_windows_without_the_padding():
    # He et al. 2019, Fig. 2(c): AvgPool(2, stride 2) before the 1x1 projection; an odd edge
    # averages the pixels it has (the padding is not counted).
    x = _random((1, 5, 4, 2))
    y = np.asarray(shortcuts.average_down(x, 2, 1))
    assert y.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(y[0, 0, 0], x[0, :2, :2].mean(axis=(0, 1)), atol=1e-6)
    np.testing.assert_allclose(y[0, 2, 1], x[0, 4, 2:4].mean(axis=0), atol=1e-6)
    # Stride 1 in a dilated stage: timm's zero-padded 2x2 average, same size out.
    dilated = np.asarray(shortcuts.average_down(x, 1, 2))
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
    np.testing.assert_allclose(dilated[0, 4, 3], padded[0, 4:6, 3:5].mean(axis=(0, 1)), atol=1e-6)
    np.testing.assert_array_equal(shortcuts.average_down(x, 1, 1), x)


def test_grouped_conv_is_one_convolution_per_group():
    # Xie et al. 2017, Fig. 3(c): groups see disjoint input channels and write their own outputs.
    conv = keras.layers.Conv2D(8, 3, groups=4, padding="same", use_bias=True)
    x = _random((2, 6, 6, 8))
    conv.build(x.shape)
    conv.bias.assign(_random((8,), seed=1))
    kernel, bias = (np.asarray(w) for w in conv.get_weights())
    y = np.asarray(parts.grouped_conv(conv, x))
    for group in range(4):
        part = ops.conv(x[..., 2 * group:2 * group + 2], kernel[..., 2 * group:2 * group + 2],
                        padding="same")
        np.testing.assert_allclose(y[..., 2 * group:2 * group + 2],
                                   np.asarray(part) + bias[2 * group:2 * group + 2], atol=1e-5)
    np.testing.assert_allclose(y, conv(x), atol=1e-5)


def test_a_strided_3x3_pads_one_pixel_on_every_side():
    block = ResidualBlock(4)  # the owner of the settings
    conv = parts.make_conv(block, ConvSpec("conv1", "bn1", 4, 3, 2, 1, 1))
    assert conv.padding == "valid" and parts.explicit_padding(conv) == 1
    parts.build_conv(conv, (None, 8, 8, 3))
    x = _random((1, 8, 8, 3))
    expected = ops.conv(np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)]), conv.kernel, strides=2)
    np.testing.assert_allclose(parts.apply_conv(conv, x), expected, atol=1e-5)
    one = parts.make_conv(block, ConvSpec("conv1", "bn1", 4, 1, 2, 1, 1))
    assert one.padding == "same" and parts.explicit_padding(one) == 0


def test_conv_multiply_adds_count_each_output_pixels_products():
    spec = ConvSpec("conv2", "bn2", 128, 3, 2, 1, 32)
    assert parts.conv_multiply_adds(spec, (None, 56, 56, 128)) == 28 * 28 * 9 * 128 * 128 // 32
    assert parts.spatial_shape((None, 7, None, 3), 2, 5) == (None, 4, None, 5)


def test_drop_path_drops_or_rescales_each_samples_whole_branch():
    # Huang et al. 2016, §3: a sample's branch is kept with probability 1 - p (and scaled
    # by 1 / (1 - p) so its expectation is unchanged) or dropped whole; identity at inference.
    drop = parts.make_drop_path(0.5, "float32")
    x = np.ones((64, 3, 3, 2), "float32")
    y = np.asarray(drop(x, training=True))
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    np.testing.assert_array_equal(drop(x, training=False), x)


def test_squeeze_excite_channels_round_to_eight():
    # Hu et al. 2018, §3.2: C / r, r = 16; timm rounds to a multiple of 8, at least 8.
    assert [se_channels(c, 1 / 16) for c in (64, 256, 1024, 2048, 24)] == [8, 16, 64, 128, 8]
    assert se_channels(96, 0.25) == 24


def test_the_two_orderings_differ_only_where_he_2016_says():
    post, pre = PostActivation(), PreActivation()
    assert post.normalizes_last and not pre.normalizes_last
    block = ResidualBlock(4, preactivation=True)
    x = _random((1, 4, 4, 4))
    block(x)
    np.testing.assert_array_equal(post.enter(block, x, False), x)
    np.testing.assert_allclose(pre.enter(block, x, False),
                               ops.relu(block.preact_bn(x, training=False)), atol=1e-6)
    assert float(ops.min(pre.leave(block, -x))) < 0 and float(ops.min(post.leave(block, -x))) >= 0


def test_batch_norm_option_takes_one_spelling():
    assert options_lib.batch_norm_option("bn_epsilon", None, None) == 1e-5
    assert options_lib.batch_norm_option("bn_epsilon", 1e-3, None) == 1e-3
    assert options_lib.batch_norm_option("bn_epsilon", None, 1e-4) == 1e-4
    with pytest.raises(InvalidArgument, match="`bn_epsilon` and `epsilon` are one option"):
        options_lib.batch_norm_option("bn_epsilon", 1e-3, 1e-3)
