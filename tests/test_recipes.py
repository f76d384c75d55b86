"""Modern training recipes: their fields against the published configurations, and each
ingredient doing what its paper says, on its own."""

import argparse
import dataclasses
import json
import math
import os
import shlex

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet import data, recipes, training
from keras_resnet.data.augment import mixing, modern
from keras_resnet.data.augment.auto_augment import AutoAugment
from keras_resnet.errors import InvalidArgument
from keras_resnet.train.ema import ModelEMA

# The command of torchvision's blog post "How to Train State-Of-The-Art Models Using
# TorchVision's Latest Primitives" (2021-11-18) for ResNet50_Weights.IMAGENET1K_V2, verbatim.
TORCHVISION_COMMAND = """
torchrun --nproc_per_node=8 train.py --model resnet50 --batch-size 128 --lr 0.5 \
--lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \
--auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 \
--norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \
--train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4
"""


def _torchvision_flags():
    """The command parsed with references/classification/train.py's flags and defaults (vision
    commit 4bf6c6e4, January 2022, when the weights were trained)."""
    parser = argparse.ArgumentParser()
    for flag, default, kind in [
        ("--model", None, str), ("--batch-size", 32, int), ("--lr", 0.1, float),
        ("--momentum", 0.9, float), ("--weight-decay", 1e-4, float),
        ("--norm-weight-decay", None, float), ("--label-smoothing", 0.0, float),
        ("--mixup-alpha", 0.0, float), ("--cutmix-alpha", 0.0, float),
        ("--lr-scheduler", "steplr", str), ("--lr-warmup-epochs", 0, int),
        ("--lr-warmup-method", "constant", str), ("--lr-warmup-decay", 0.01, float),
        ("--auto-augment", None, str), ("--random-erase", 0.0, float), ("--epochs", 90, int),
        ("--train-crop-size", 224, int), ("--val-resize-size", 256, int),
        ("--val-crop-size", 224, int), ("--model-ema-steps", 32, int),
        ("--model-ema-decay", 0.99998, float), ("--ra-reps", 3, int),
    ]:
        parser.add_argument(flag, default=default, type=kind)
    for flag in ("--model-ema", "--ra-sampler"):
        parser.add_argument(flag, action="store_true")
    words = shlex.split(TORCHVISION_COMMAND)
    gpus = int(words[1].split("=")[1])
    return parser.parse_args(words[3:]), gpus


def test_torchvision_v2_equals_the_published_command_field_by_field():
    flags, gpus = _torchvision_flags()
    recipe = recipes.get_recipe("torchvision_v2")
    assert recipe.base_batch_size == flags.batch_size * gpus == 1024
    assert recipe.base_learning_rate == flags.lr and recipe.learning_rate_scaling == "linear"
    assert (recipe.optimizer, recipe.momentum) == ("sgd", flags.momentum)
    # PyTorch SGD's weight_decay adds wd * w to the gradient: the paper's (coupled) L2.
    assert (recipe.weight_decay, recipe.weight_decay_style) == (flags.weight_decay, "l2")
    assert recipe.decay_norm is (flags.norm_weight_decay != 0.0)
    assert recipe.decay_bias  # no --bias-weight-decay then: biases took --weight-decay
    assert flags.lr_scheduler == "cosineannealinglr" and recipe.schedule == "cosine"
    assert flags.lr_warmup_method == "linear"
    assert (recipe.warmup_epochs, recipe.warmup_start_factor) == (flags.lr_warmup_epochs, flags.lr_warmup_decay)
    assert recipe.epochs == flags.epochs
    assert recipe.label_smoothing == flags.label_smoothing and recipe.loss == "cross_entropy"
    assert (recipe.mixup_alpha, recipe.cutmix_alpha) == (flags.mixup_alpha, flags.cutmix_alpha)
    assert flags.auto_augment == "ta_wide" and recipe.auto_augment == "trivial_augment"
    assert recipe.random_erasing == flags.random_erase
    assert recipe.crop == "random_resized"
    assert recipe.train_size_fraction == flags.train_crop_size / flags.val_crop_size
    assert recipe.eval_resize_fraction == flags.val_resize_size / flags.val_crop_size
    assert flags.model_ema and recipe.ema
    assert (recipe.ema_decay, recipe.ema_every) == (flags.model_ema_decay, flags.model_ema_steps)
    assert flags.ra_sampler and recipe.repeated_augmentation == flags.ra_reps
    assert recipe.drop_path_rate == 0.0


# "ResNet strikes back" (arXiv 2110.00476), Table 1, for ResNet-50: one column per procedure.
RSB_TABLE = {
    "train_resolution": (224, 224, 160), "test_resolution": (224, 224, 224),
    "epochs": (600, 300, 100), "batch_size": (2048, 2048, 2048),
    "optimizer": ("LAMB", "LAMB", "LAMB"), "lr": (5e-3, 5e-3, 8e-3),
    "lr_decay": ("cosine",) * 3, "weight_decay": (0.01, 0.02, 0.02), "warmup_epochs": (5, 5, 5),
    "label_smoothing": (0.1, None, None), "stochastic_depth": (0.05, 0.05, None),
    "repeated_augmentation": (True, True, False), "rand_augment": ("7/0.5", "7/0.5", "6/0.5"),
    "mixup_alpha": (0.2, 0.1, 0.1), "cutmix_alpha": (1.0, 1.0, 1.0), "erasing": (None,) * 3,
    "ema": (False,) * 3, "test_crop_ratio": (0.95,) * 3, "bce_loss": (True,) * 3,
}


@pytest.mark.parametrize("column,name", enumerate(["rsb_a1", "rsb_a2", "rsb_a3"]))
def test_rsb_recipes_equal_table_1_field_by_field(column, name):
    row = {key: values[column] for key, values in RSB_TABLE.items()}
    recipe = recipes.get_recipe(name)
    assert recipe.train_size_fraction == row["train_resolution"] / row["test_resolution"]
    assert recipe.epochs == row["epochs"] and recipe.base_batch_size == row["batch_size"]
    assert recipe.optimizer == row["optimizer"].lower() and recipe.base_learning_rate == row["lr"]
    assert recipe.learning_rate_scaling == "sqrt"  # timm's rule for LAMB
    assert recipe.schedule == row["lr_decay"] and recipe.warmup_epochs == row["warmup_epochs"]
    assert (recipe.weight_decay, recipe.weight_decay_style) == (row["weight_decay"], "decoupled")
    assert not recipe.decay_norm and not recipe.decay_bias  # timm: no decay on biases and norms
    assert recipe.label_smoothing == (row["label_smoothing"] or 0.0)
    assert recipe.drop_path_rate == (row["stochastic_depth"] or 0.0)
    assert (recipe.repeated_augmentation > 1) is row["repeated_augmentation"]
    magnitude, std = row["rand_augment"].split("/")
    assert recipe.auto_augment == "rand_augment" and recipe.rand_augment_ops == 2
    assert recipe.rand_augment_magnitude == int(magnitude) / 10  # timm magnitudes are out of 10
    assert (recipe.mixup_alpha, recipe.cutmix_alpha) == (row["mixup_alpha"], row["cutmix_alpha"])
    assert recipe.random_erasing == 0.0 and recipe.ema is row["ema"]
    assert recipe.eval_resize_fraction == pytest.approx(1 / row["test_crop_ratio"])
    assert (recipe.loss == "binary_cross_entropy") is row["bce_loss"]


def test_overrides_parse_to_the_fields_type_and_refuse_what_does_not_exist():
    recipe = recipes.get_recipe("torchvision_v2", recipes.parse_overrides(
        ["label_smoothing=0.05", "ema=false", "auto_augment=none", "repeated_augmentation=1"]))
    assert (recipe.label_smoothing, recipe.ema, recipe.auto_augment,
            recipe.repeated_augmentation) == (0.05, False, None, 1)
    assert recipes.get_recipe("paper", family="imagenet").name == "imagenet"
    with pytest.raises(InvalidArgument, match="Recipe field 'smoothing' does not exist"):
        recipes.get_recipe("torchvision_v2", {"smoothing": "0.1"})
    with pytest.raises(InvalidArgument, match="`label_smoothing` must be a number in \\[0, 1\\]; got 2.0"):
        recipes.get_recipe("torchvision_v2", {"label_smoothing": "2"})
    with pytest.raises(InvalidArgument, match="`optimizer` must be one of 'sgd', 'lamb', 'adam'; got 'adagrad'"):
        recipes.get_recipe("rsb_a1", {"optimizer": "adagrad"})
    with pytest.raises(InvalidArgument, match="`--set` takes FIELD=VALUE; got 'ema'"):
        recipes.parse_overrides(["ema"])
    with pytest.raises(InvalidArgument, match="`recipe` must be one of paper, cifar"):
        recipes.get_recipe("rsb_b1")


def test_the_command_line_offers_every_recipe():
    from keras_resnet import cli

    assert set(cli.RECIPE_NAMES) == {"paper", *recipes.RECIPES}


# Ingredients, each on its own ------------------------------------------------------------------


def _distinct_batch(n=8, size=16, classes=8):
    """Image i filled with the value i + 1, labelled i: a mixed pixel says where it came from."""
    images = np.stack([np.full((size, size, 3), i + 1.0, np.float32) for i in range(n)])
    return tf.constant(images), tf.constant(np.arange(n) % classes)


def _mixed(seed, **off):
    """A batch of distinct images through torchvision's batch transform with ``off`` fields
    at 0; the targets sum to 1 in every row."""
    keras.utils.set_random_seed(seed)
    images, labels = _distinct_batch()
    mix = modern.BatchTransform(recipes.get_recipe("torchvision_v2", {"random_erasing": 0.0, **off}), 8)
    mixed, targets = (t.numpy() for t in mix(images, labels, tf.constant([0, 0])))
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)
    return mixed, targets


def test_mixup_targets_sum_to_one_and_equal_the_images_mixing_ratio():
    mixed, targets = _mixed(1, cutmix_alpha=0.0)
    for i in range(8):
        weights = targets[i][targets[i] > 0]
        partners = np.flatnonzero(targets[i])
        value = float(mixed[i, 0, 0, 0])
        # MixUp: every pixel is sum(weight_k * (k + 1)) over the two images.
        assert value == pytest.approx(float(np.sum(weights * (partners + 1))), abs=1e-4)
        assert np.allclose(mixed[i], value)


def test_cutmix_targets_equal_the_area_each_image_covers():
    mixed, targets = _mixed(2, mixup_alpha=0.0)
    for i in range(8):
        area = np.bincount(mixed[i, :, :, 0].astype(int).ravel() - 1, minlength=8) / 16 ** 2
        np.testing.assert_allclose(targets[i], area, atol=1e-6)


def test_one_of_mixup_and_cutmix_per_batch():
    keras.utils.set_random_seed(3)
    images, labels = _distinct_batch()
    mix = modern.BatchTransform(recipes.get_recipe("torchvision_v2", {"random_erasing": 0.0}), 8)
    kinds = set()
    for seed in range(12):
        mixed = mix(images, labels, tf.constant([seed, 7]))[0].numpy()
        whole_values = np.allclose(mixed, np.round(mixed))
        kinds.add("cutmix" if whole_values else "mixup")  # CutMix copies pixels; MixUp blends
    assert kinds == {"mixup", "cutmix"}


def test_label_smoothing_loss_equals_the_closed_form():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(5), size=6).astype(np.float32)
    labels = np.arange(6) % 5
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    one_hot = np.eye(5, dtype=np.float32)[labels]
    # (1 - s) * CE(y) + s * mean over classes of -log p
    closed = np.mean(0.9 * -np.log(probabilities[np.arange(6), labels])
                     + 0.1 * np.mean(-np.log(probabilities), axis=1))
    assert float(loss(one_hot, probabilities)) == pytest.approx(closed, rel=1e-5)
    smoothed = mixing.smoothed_targets(tf.constant(labels), 5, 0.1).numpy()
    np.testing.assert_allclose(smoothed, 0.9 * one_hot + 0.1 / 5, atol=1e-7)


def _tiny(classes=4, activation="softmax"):
    return keras_resnet.CifarResNet(8, classes=classes, width_multiplier=0.5,
                                    classifier_activation=activation)


def test_no_decoupled_decay_reaches_batch_norm_or_biases():
    model = _tiny(activation="sigmoid")
    recipe = recipes.get_recipe("rsb_a1", {"weight_decay": 0.5, "warmup_epochs": 0})
    training.compile_model(model, recipe, 2048, total_steps=10)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    lr = float(model.optimizer.learning_rate)  # at step 0
    model.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    decayed = kept = 0
    for v in model.trainable_variables:
        if v.path.rsplit("/", 1)[-1] in ("gamma", "beta", "bias"):
            np.testing.assert_array_equal(v.numpy(), before[v.path])
            kept += 1
        else:  # a zero gradient leaves LAMB's Adam step at 0: timm adds the decay 0.5 w to it
            # and the trust ratio ||w|| / ||0.5 w|| scales that back to w
            np.testing.assert_allclose(v.numpy(), before[v.path] * (1 - lr), rtol=1e-5)
            decayed += 1
    assert kept and decayed
    assert not model.losses  # no L2 regularizer left on top of the decoupled decay


def test_coupled_decay_of_torchvision_covers_kernels_and_biases_not_batch_norm():
    model = _tiny()
    training.compile_model(model, "torchvision_v2", 1024, total_steps=10)
    expected = sum(1e-5 * float(np.sum(v.numpy() ** 2)) for v in model.trainable_variables
                   if v.path.rsplit("/", 1)[-1] in ("kernel", "bias"))
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert all(v.regularizer is None for v in model.trainable_variables
               if v.path.rsplit("/", 1)[-1] in ("gamma", "beta"))


@pytest.mark.parametrize("name", ["torchvision_v2", "rsb_a3"])
def test_warmup_and_cosine_equal_the_formula(name):
    recipe = recipes.get_recipe(name)
    total, peak = 1200, 0.4
    schedule = recipes.learning_rate_schedule(recipe, peak, total)
    warmup = round(total * recipe.warmup_epochs / recipe.epochs)
    start = peak * recipe.warmup_start_factor
    # torchvision's cosine runs over the steps after the warm-up; timm's (RSB) over all of them
    offset = warmup if recipe.warmup_prefix else 0
    assert recipe.warmup_prefix is (name == "torchvision_v2")
    for step in (0, warmup // 2, warmup, warmup + 1, (total + warmup) // 2, total - 1, total):
        if step < warmup:
            expected = start + (peak - start) * step / warmup
        else:
            expected = 0.5 * peak * (1 + math.cos(math.pi * (step - offset) / (total - offset)))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-6 * peak), step  # float32


def _ema_recipe(total_steps, every, decay, warmup_epochs=0):
    """torchvision_v2 with an EMA of ``decay`` per update in a run of ``total_steps``."""
    share = (1 - decay) * total_steps / (recipes.IMAGENET_TRAIN_IMAGES * every)
    return recipes.get_recipe("torchvision_v2", {"warmup_epochs": warmup_epochs, "ema_every": every,
                                                 "ema_decay": 1 - share})


@pytest.mark.slow
def test_ema_weights_equal_the_recursive_average_and_are_what_the_model_keeps():
    keras.utils.set_random_seed(4)
    model = _tiny()
    recipe = _ema_recipe(8, every=2, decay=0.6)
    training.compile_model(model, recipe, 8, total_steps=8)
    ema = ModelEMA.from_recipe(recipe, 8)
    assert (ema.decay, ema.every, ema.warmup_steps) == (pytest.approx(0.6), 2, 0)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([v.numpy().copy() for v in self.model.weights])

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 32, 32, 3), dtype="float32"), np.eye(4, dtype="float32")[np.arange(32) % 4]
    # Record first: it sees the raw weights of every step, before any swap.
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[Record(), ema])
    average = seen[0]  # torchvision's first update copies; then after steps 2, 4, 6
    for weights in seen[2::2]:
        average = [0.6 * a + 0.4 * w for a, w in zip(average, weights)]
    moving = 0
    for kept, expected in zip(model.weights, average):
        np.testing.assert_allclose(kept.numpy(), expected, rtol=1e-5, atol=1e-6)
        moving += "moving" in kept.path
    assert moving  # BatchNormalization's statistics are averaged too
    assert not np.allclose(model.weights[0].numpy(), seen[-1][0])  # not the raw weights


@pytest.mark.slow
def test_a_resumed_run_keeps_ema_and_schedule_state_exactly(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 32, 32, 3), dtype="float32"), np.eye(4, dtype="float32")[np.arange(32) % 4]
    recipe = _ema_recipe(16, every=3, decay=0.5, warmup_epochs=60)  # 2 warm-up steps

    def fresh():
        keras.utils.set_random_seed(5)
        return training.compile_model(_tiny(), recipe, 8, total_steps=16)

    def run(model, backup, epochs, initial_epoch=0):
        ema = ModelEMA.from_recipe(recipe, 16, state_dir=str(backup))
        calls = [ema, training.RunBackup(str(backup), [ema], delete_on_end=False)]
        model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                  verbose=0, callbacks=calls)
        return model, ema

    straight, straight_ema = run(fresh(), tmp_path / "straight", 4)
    killed, _ = run(fresh(), tmp_path / "killed", 2)  # stopped after 2 of 4 epochs
    del killed
    resumed = fresh()
    assert training.restore_backup(resumed, str(tmp_path / "killed")) == 2
    assert int(resumed.optimizer.iterations) == 8  # the cosine schedule continues from here
    _, resumed_ema = run(resumed, tmp_path / "killed", 4, initial_epoch=2)
    assert resumed_ema.count == straight_ema.count and resumed_ema.ema_in_model
    for a, b in zip(resumed.weights + resumed.optimizer.variables + resumed_ema.held,
                    straight.weights + straight.optimizer.variables + straight_ema.held):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)


def test_random_erasing_erases_the_recipes_share_of_images():
    keras.utils.set_random_seed(6)
    transform = modern.BatchTransform(recipes.get_recipe("torchvision_v2", {
        "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "random_erasing": 0.25}), 4)
    images = tf.ones((2000, 8, 8, 3))
    erased, _ = transform(images, tf.zeros((2000,), tf.int32), tf.constant([0, 0]))
    share = float(np.mean(np.any(erased.numpy() == 0.0, axis=(1, 2, 3))))
    # Binomial(2000, 0.25): a standard deviation of 0.0097; the bound is 5 of them.
    assert abs(share - 0.25) < 0.05


def _dot_centroid(image, size):
    """(x, y) of a bright dot's intensity centroid, from the image's centre."""
    weights = image[..., 0]
    ys, xs = np.mgrid[:size, :size]
    return (float((weights * xs).sum() / weights.sum()) - (size - 1) / 2,
            float((weights * ys).sum() / weights.sum()) - (size - 1) / 2)


@pytest.mark.parametrize("kind,degrees,shift,bits", [
    # timm's RandAugment: rotate 30 degrees and translate 45% of the side at magnitude 10;
    # PosterizeIncreasing keeps 4 - int(4 * level) bits
    ("rand_augment", 30.0, lambda level: 0.45 * level * 64, lambda level: 4 - int(4 * level)),
    # TrivialAugmentWide: 135 degrees, int(32 * level) pixels, 8 - round(6 * level) bits
    ("trivial_augment", 135.0, lambda level: math.floor(32 * level),
     lambda level: 8 - round(6 * level)),
])
def test_auto_augment_rotates_translates_and_posterizes_as_far_as_its_source_and_no_further(
        kind, degrees, shift, bits):
    augment = AutoAugment(kind, num_ops=2, magnitude=0.7)
    size, radius = 64, 20
    dot_right = np.zeros((size, size, 3), np.float32)
    dot_right[31:33, 31 + radius:33 + radius] = 255.0
    dot_centre = np.zeros((size, size, 3), np.float32)
    dot_centre[31:33, 31:33] = 255.0
    ramp = tf.constant(np.arange(256, dtype=np.float32).reshape(16, 16, 1).repeat(3, -1))
    fill = augment.fill.numpy()  # the borders uncovered (timm's: its mean grey), taken off
    for level in (0.0, 0.3, 0.7, 1.0):
        for sign in (1.0, -1.0):
            rotated = augment.apply("rotate", dot_right, level, sign).numpy()
            x, y = _dot_centroid(np.maximum(rotated - fill, 0), size)
            angle = math.degrees(math.atan2(-y, x))  # counter-clockwise (rows grow downwards)
            assert angle == pytest.approx(sign * degrees * level, abs=1.0)
            moved = augment.apply("translate_x", dot_centre, level, sign).numpy()
            x, y = _dot_centroid(np.maximum(moved - fill, 0), size)
            assert abs(y) < 0.5 and abs(x) == pytest.approx(shift(level), abs=0.5)
        posterized = augment.apply("posterize", ramp, level).numpy()
        kept = int(np.log2(len(np.unique(posterized))))
        assert kept == bits(level), level
    # (Keras' own RandAugment at factor 0.7 rotates by up to 252 degrees.)


def _seed_draws(augment, count):
    seeds = tf.stack([tf.range(count), tf.zeros([count], tf.int32)], 1)
    signature = {"ops": tf.int32, "applied": tf.bool, "levels": tf.float32, "signs": tf.float32}
    # In a graph: a while loop, where eager map_fn would run the draws op by op per seed.
    draws = tf.function(lambda s: tf.map_fn(augment.draws, s, fn_output_signature=signature))(seeds)
    return {key: value.numpy() for key, value in draws.items()}


@pytest.mark.slow
def test_auto_augment_applies_the_ops_its_seed_picks_in_order():
    augment = AutoAugment("rand_augment", num_ops=2, magnitude=0.7)
    names = list(augment.ops)
    image = tf.constant(np.random.RandomState(0).uniform(0, 255, (16, 16, 3)), tf.float32)
    draws = _seed_draws(augment, 4000)
    again = augment.draws(tf.constant([7, 0]))
    np.testing.assert_array_equal(again["ops"].numpy(), draws["ops"][7])  # the seed decides
    # Neither op applied gives the image back (as 8-bit values, as timm's PIL images).
    skipped = int(np.flatnonzero(~draws["applied"].any(1))[0])
    np.testing.assert_array_equal(augment(image, tf.constant([skipped, 0])).numpy(),
                                  np.floor(image.numpy() + 0.5))
    # Auto-contrast then equalize (neither random) give exactly those two ops in that order.
    pair = (names.index("auto_contrast"), names.index("equalize"))
    seed = int(np.flatnonzero(draws["applied"].all(1) & (draws["ops"] == pair).all(1))[0])
    expected = augment.apply("equalize", augment.apply(
        "auto_contrast", tf.floor(image + 0.5), 0.0), 0.0)
    np.testing.assert_array_equal(augment(image, tf.constant([seed, 0])).numpy(),
                                  expected.numpy())
    traced = tf.function(augment)  # one trace for the seeds below (the same ops as eagerly)
    for seed in range(40):
        out = traced(image, tf.constant([seed, 0]))
        assert out.shape == (16, 16, 3) and out.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    with pytest.raises(InvalidArgument, match="auto_augment"):
        AutoAugment("auto_augment_v0")


def test_repeated_augmentation_repeats_each_image_and_keeps_the_epoch_length():
    dataset = modern.repeated(tf.data.Dataset.range(12), 3, 12)
    values = [int(v) for v in dataset]
    assert len(values) == 12 and values == [v for v in range(4) for _ in range(3)]


@pytest.mark.slow
def test_training_crops_follow_the_recipe_and_evaluation_the_model():
    recipe = recipes.get_recipe("torchvision_v2")
    train, info = data.load("digits", "train", 16, seed=0, recipe=recipe)
    images, targets = next(train.as_numpy_iterator())
    assert images.shape == (16, 25, 25, 3)  # round(32 * 176 / 224): FixRes
    assert targets.shape == (16, 10) and np.allclose(targets.sum(1), 1.0, atol=1e-5)
    test, _ = data.load("digits", "test", 16, recipe=recipe)
    images, targets = next(test.as_numpy_iterator())
    assert images.shape == (16, 32, 32, 3) and set(np.unique(targets)) == {0.0, 1.0}
    with pytest.raises(InvalidArgument, match="needs RGB images"):
        modern.check_recipe_data(recipe, info.preprocessing.for_channels(1))


@pytest.mark.slow
def test_train_with_a_modern_recipe_records_it_and_saves_the_ema_model_at_its_input_size(tmp_path, capsys):
    from keras_resnet.cli import main  # in-process: the console script calls the same main

    code = main(["train", "--model", "resnet8", "--recipe", "rsb_a2", "--epochs", "1",
                 "--set", "mixup_alpha=0.3", "--set", "train_size_fraction=0.75", "--no-export",
                 "--output-dir", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err[-2000:]
    record = json.load(open(tmp_path / "run" / "run.json"))
    expected = dataclasses.asdict(recipes.get_recipe("rsb_a2", {"mixup_alpha": 0.3,
                                                                "train_size_fraction": 0.75}))
    assert record["recipe"] == json.loads(json.dumps(expected))
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)  # trained on 24x24 crops, kept at 32
    assert model.layers[-1].activation.__name__ == "sigmoid"  # RSB's binary cross-entropy
    last_block = [layer for layer in model.layers if layer.name.startswith("conv4_block")][-1]
    assert last_block.drop_path_rate == pytest.approx(0.05)  # A2's stochastic depth
    # the run's test figure is its saved model's, counted here with numpy (one near tie)
    images, labels = data.as_numpy(data.load("digits", "test", 128,
                                             preprocessing=keras_resnet.preprocessing.of(model))[0])
    top1 = float(np.mean(np.argmax(model.predict(images, verbose=0), axis=-1) == labels))
    assert record["test"]["top1"] == pytest.approx(top1, abs=1 / len(labels) + 1e-9)
    assert os.path.exists(tmp_path / "run" / "best.keras")
    assert keras.saving.load_model(tmp_path / "run" / "best.keras").input_shape == (None, 32, 32, 3)
