"""The recipes' augmentations against their sources: timm's RandAugment
(``rand-mM-mstd0.5-inc1``) and ``Mixup(mode="batch")``, torchvision's TrivialAugmentWide.
The checks against the libraries themselves run them in $KERAS_RESNET_TORCH_PYTHON (skipped
without it); the others check the draws' statistics on their own."""

import json
import math
import subprocess
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from harness import torch_python
from keras_resnet.data.augment.auto_augment import (
    RAND_AUGMENT_OPS,
    TRIVIAL_AUGMENT_OPS,
    AutoAugment,
)
from keras_resnet.data.augment.mixing import MixUpOrCutMix, smoothed_targets

DRAWS = 4000  # per distribution compared
# Two-sample Kolmogorov-Smirnov: P(D > c(a) * sqrt((n + m) / (n m))) <= a for samples of one
# distribution, with c(a) = sqrt(-ln(a / 2) / 2); at a = 1e-6, c = 2.69 (D < 0.060 for two
# samples of 4000). The seeds are fixed, so the figures do not change from run to run either.
KS_ALPHA = 1e-6


def _ks_bound(n, m):
    return math.sqrt(-math.log(KS_ALPHA / 2) / 2) * math.sqrt((n + m) / (n * m))


def _assert_same_distribution(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    statistic = stats.ks_2samp(ours, theirs).statistic
    print(f"KS D = {statistic:.4f} < {_ks_bound(len(ours), len(theirs)):.4f}")
    assert statistic < _ks_bound(len(ours), len(theirs)), (statistic, len(ours), len(theirs))


def _image():
    """A smooth 32 x 40 RGB image of 0..255 integers (bilinear sampling is well defined on it)."""
    y, x = np.mgrid[:32, :40]
    image = np.stack([x * 5 + y * 2, 200 - y * 4 + 30 * np.sin(x / 3),
                      60 + 50 * np.cos((x + y) / 5) + y], -1)
    return np.clip(image, 0, 255).astype(np.uint8)


# (level in [0, 1], sign) at which each op is compared: timm's magnitudes 7.3 and 4.1,
# torchvision's bins 20 and 9 of 31
RAND_CASES = ((0.73, 1.0), (0.41, -1.0))
TRIVIAL_CASES = ((20, 1.0), (9, -1.0))

REFERENCE_SCRIPT = textwrap.dedent("""
    import json, random, sys
    import numpy as np, torch
    from PIL import Image
    import timm.data.auto_augment as aa
    import timm.data.mixup as tm
    import torchvision.transforms.autoaugment as tva
    from torchvision.transforms import InterpolationMode

    folder, draws = sys.argv[1], int(sys.argv[2])
    config = json.load(open(folder + "/config.json"))
    image = Image.fromarray(np.load(folder + "/image.npy"))
    out, hparams = {}, dict(translate_const=100, img_mean=(124, 116, 104))

    # timm's ops at fixed magnitudes; _randomly_negate keeps the sign when random() <= 0.5
    uniform = random.random
    for name in aa._RAND_INCREASING_TRANSFORMS:
        for level, sign in config["rand_cases"]:
            random.random = (lambda: 0.0) if sign > 0 else (lambda: 1.0)
            to_arg = aa.LEVEL_TO_ARG[name]
            args = to_arg(level * 10, hparams) if to_arg else ()
            out[f"timm_{name}_{level}"] = np.asarray(aa.NAME_TO_OP[name](
                image, *args, fillcolor=hparams["img_mean"], resample=Image.BILINEAR))
    random.random = uniform
    out["timm_ops"] = np.array(aa._RAND_INCREASING_TRANSFORMS)

    # torchvision's TrivialAugmentWide ops at fixed bins (references/classification: bilinear)
    space = tva.TrivialAugmentWide()._augmentation_space(31)
    for name, (magnitudes, signed) in space.items():
        for index, sign in config["trivial_cases"]:
            magnitude = float(magnitudes[index]) if magnitudes.ndim > 0 else 0.0
            magnitude = -magnitude if signed and sign < 0 else magnitude
            out[f"tv_{name}_{index}"] = np.asarray(tva._apply_op(
                image, name, magnitude, interpolation=InterpolationMode.BILINEAR, fill=None))
    out["tv_ops"] = np.array(list(space))

    # timm's RandAugment draws: each op's magnitude when it applies (nan when skipped)
    for m in (7, 10):
        random.seed(m); np.random.seed(m)
        augment, calls = aa.rand_augment_transform(f"rand-m{m}-mstd0.5-inc1", dict(hparams)), []
        for op in augment.ops:
            def level(magnitude, hp, op=op, to_arg=op.level_fn):
                calls[-1][1] = magnitude
                return to_arg(magnitude, hp) if to_arg else ()
            op.level_fn = level
        call = aa.AugmentOp.__call__
        def recorded(op, img):
            calls.append([op.name, float("nan")])
            return call(op, img)
        aa.AugmentOp.__call__ = recorded
        small = Image.fromarray(np.asarray(image)[:4, :4])
        for _ in range(draws):
            augment(small)
        aa.AugmentOp.__call__ = call
        out[f"rand_{m}_names"] = np.array([name for name, _ in calls])
        out[f"rand_{m}_magnitudes"] = np.array([m for _, m in calls])

    # timm's Mixup: targets at a fixed ratio; a CutMix batch with the box it drew; the draws
    labels = torch.tensor(config["labels"])
    out["mixup_target"] = tm.mixup_target(labels, 10, lam=0.3, smoothing=0.1).numpy()
    boxes, bbox = [], tm.cutmix_bbox_and_lam
    def recorded_bbox(*args, **kwargs):
        boxes.append(bbox(*args, **kwargs))
        return boxes[-1]
    tm.cutmix_bbox_and_lam = recorded_bbox
    torch.manual_seed(0); np.random.seed(0)
    images = torch.from_numpy(np.load(folder + "/batch.npy"))
    mix = tm.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    mixed, targets = mix(images.clone(), labels)
    out["cutmix_images"], out["cutmix_targets"] = mixed.numpy(), targets.numpy()
    out["cutmix_box"] = np.array([int(v) for v in boxes[-1][0]])
    for key, mixup_alpha, cutmix_alpha in (("both", 0.2, 1.0), ("cutmix2", 0.0, 2.0)):
        mix = tm.Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, num_classes=10)
        np.random.seed(1)
        drawn = np.array([mix._params_per_batch() for _ in range(draws)])
        out[f"{key}_drawn"], out[f"{key}_cutmix"] = drawn[:, 0], drawn[:, 1]
        np.random.seed(2)
        ratios, used = [], []
        for _ in range(draws):
            before = len(boxes)
            ratios.append(mix._mix_batch(torch.zeros(2, 3, 32, 40)))
            used.append(len(boxes) > before)
        out[f"{key}_ratios"], out[f"{key}_used"] = np.array(ratios), np.array(used)
    np.savez(folder + "/reference.npz", **out)
""")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sources' outputs and draws, made once in the torch interpreter."""
    python = torch_python()
    folder = tmp_path_factory.mktemp("augment_sources")
    np.save(folder / "image.npy", _image())
    batch = np.random.default_rng(0).uniform(0, 1, (8, 3, 16, 20)).astype(np.float32)
    np.save(folder / "batch.npy", batch)
    config = {"rand_cases": RAND_CASES, "trivial_cases": TRIVIAL_CASES,
              "labels": [3, 1, 4, 1, 5, 9, 2, 6]}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "reference.py").write_text(REFERENCE_SCRIPT)
    subprocess.run([python, str(folder / "reference.py"), str(folder), str(DRAWS)], check=True,
                   timeout=120)
    with np.load(folder / "reference.npz") as reference:
        return {"batch": batch, "labels": config["labels"], **dict(reference)}


# ---- RandAugment and TrivialAugment


def _our_draws(augment, count):
    """``augment.draws`` over seeds (i, 7) for i < count, as numpy arrays of (count, num_ops)."""
    seeds = tf.stack([tf.range(count), tf.fill([count], 7)], 1)
    draw = tf.function(lambda seeds: tf.map_fn(
        lambda seed: augment.draws(seed), seeds, fn_output_signature={
            "ops": tf.int32, "applied": tf.bool, "levels": tf.float32, "signs": tf.float32}))
    return {key: value.numpy() for key, value in draw(seeds).items()}


@pytest.mark.parametrize("kind,source,cases", [
    ("rand_augment", "timm", RAND_CASES), ("trivial_augment", "tv", TRIVIAL_CASES)])
def test_each_op_equals_its_source_at_a_fixed_magnitude(reference, kind, source, cases):
    augment = AutoAugment(kind, num_ops=2, magnitude=0.7)
    names = [str(name) for name in reference[f"{source}_ops"]]
    assert len(names) == len(augment.ops)  # the same ops, in the same order
    image = tf.constant(_image(), tf.float32)
    for ours, theirs in zip(augment.ops, names):
        for case, sign in cases:
            level = case if kind == "rand_augment" else case / 30
            got = augment.apply(ours, image, tf.constant(level), tf.constant(sign)).numpy()
            expected = reference[f"{source}_{theirs}_{case}"].astype(np.float32)
            difference = np.abs(got - expected)
            # PIL's arithmetic is followed exactly; its bilinear geometry in double precision
            # where Keras' is float32: a grey level off at a few pixels.
            assert difference.max() <= 1.0 and np.mean(difference > 0) < 0.01, (ours, case)


@pytest.mark.parametrize("magnitude", [7, 10])
def test_rand_augment_draws_ops_magnitudes_and_applications_as_timm(reference, magnitude):
    augment = AutoAugment("rand_augment", num_ops=2, magnitude=magnitude / 10)
    ours = _our_draws(augment, DRAWS)
    names = reference[f"rand_{magnitude}_names"]
    theirs = reference[f"rand_{magnitude}_magnitudes"]
    assert len(theirs) == 2 * DRAWS
    applied_ours, applied_theirs = ours["applied"].ravel(), ~np.isnan(theirs)
    # Binomial(8000, 0.5): a standard deviation of 0.0056; the bound is 6 of them.
    for applied in (applied_ours, applied_theirs):
        assert abs(applied.mean() - 0.5) < 0.034
    _assert_same_distribution(10 * ours["levels"].ravel()[applied_ours], theirs[applied_theirs])
    # each op equally often: the op's position in the source's list
    positions = {str(name): i for i, name in enumerate(reference["timm_ops"])}
    _assert_same_distribution(ours["ops"].ravel(), [positions[str(n)] for n in names])


def test_draws_are_uniform_over_ops_bins_and_signs_and_applied_half_the_time():
    rand = _our_draws(AutoAugment("rand_augment", num_ops=2, magnitude=0.7), DRAWS)
    trivial = _our_draws(AutoAugment("trivial_augment"), DRAWS)
    assert rand["ops"].shape == (DRAWS, 2) and trivial["ops"].shape == (DRAWS, 1)
    # Per op, Binomial(8000, 0.5) (standard deviation 0.0056; bounds of 6 of them): applied,
    # and negated (timm's _randomly_negate, torchvision's randint(2)).
    assert abs(rand["applied"].mean() - 0.5) < 0.034 and trivial["applied"].all()
    for draws in (rand, trivial):
        assert abs(np.mean(draws["signs"] < 0) - 0.5) < 0.034
    # Each of 15 (14) ops about equally often: counts of 8000 / 15 = 533 (4000 / 14 = 286),
    # standard deviations 22 (16); bounds of 6.
    counts = np.bincount(rand["ops"].ravel(), minlength=len(RAND_AUGMENT_OPS))
    assert len(counts) == 15 and np.abs(counts - 533.3).max() < 6 * 22
    counts = np.bincount(trivial["ops"].ravel(), minlength=len(TRIVIAL_AUGMENT_OPS))
    assert len(counts) == 14 and np.abs(counts - 285.7).max() < 6 * 16
    # TrivialAugmentWide: one of 31 bins, uniformly: 4000 / 31 = 129 each, deviation 11
    bins = np.round(trivial["levels"].ravel() * 30).astype(int)
    np.testing.assert_allclose(trivial["levels"].ravel() * 30, bins, atol=1e-5)
    counts = np.bincount(bins, minlength=31)
    assert len(counts) == 31 and np.abs(counts - 129.0).max() < 6 * 11
    # timm's N(7, 0.5): mean 7 within 6 standard errors (0.5 / sqrt(8000) = 0.0056)
    assert abs(10 * rand["levels"].mean() - 7.0) < 0.034
    assert abs(10 * rand["levels"].std() - 0.5) < 0.03


# ---- MixUp and CutMix


def _mixing_draws(mix, count, height=32, width=40):
    """``mix.draw`` over seeds (i, 11) for i < count: {"cutmix", "drawn", "ratio"} arrays."""
    seeds = tf.stack([tf.range(count), tf.fill([count], 11)], 1)
    draw = tf.function(lambda seeds: tf.map_fn(
        lambda seed: {k: v for k, v in mix.draw(seed, height, width).items() if k != "box"},
        seeds, fn_output_signature={"cutmix": tf.bool, "drawn": tf.float32,
                                    "ratio": tf.float32}))
    return {key: value.numpy() for key, value in draw(seeds).items()}


def test_mixup_and_cutmix_targets_equal_timms(reference):
    batch, labels = reference["batch"].transpose(0, 2, 3, 1), tf.constant(reference["labels"])
    targets = smoothed_targets(labels, 10, 0.1)
    mix = MixUpOrCutMix(mixup_alpha=0.2, cutmix_alpha=1.0)
    draws = {"cutmix": False, "ratio": 0.3, "box": (0, 0, 0, 0)}
    mixed, got = (t.numpy() for t in mix.mix(tf.constant(batch), targets, draws))
    np.testing.assert_allclose(got, reference["mixup_target"], atol=1e-6)
    np.testing.assert_allclose(mixed, 0.3 * batch + 0.7 * batch[::-1], atol=1e-6)  # x.flip(0)
    top, bottom, left, right = (int(v) for v in reference["cutmix_box"])
    kept = 1.0 - (bottom - top) * (right - left) / (16 * 20)  # timm's correct_lam
    draws = {"cutmix": True, "ratio": kept, "box": (top, bottom, left, right)}
    mixed, got = (t.numpy() for t in mix.mix(tf.constant(batch), targets, draws))
    np.testing.assert_allclose(got, reference["cutmix_targets"], atol=1e-6)
    np.testing.assert_array_equal(mixed, reference["cutmix_images"].transpose(0, 2, 3, 1))


@pytest.mark.parametrize("key,mixup_alpha,cutmix_alpha", [("both", 0.2, 1.0), ("cutmix2", 0.0, 2.0)])
def test_mixing_ratios_are_distributed_as_timms(reference, key, mixup_alpha, cutmix_alpha):
    ours = _mixing_draws(MixUpOrCutMix(mixup_alpha, cutmix_alpha), DRAWS)
    drawn, used = reference[f"{key}_drawn"], reference[f"{key}_cutmix"].astype(bool)
    # CutMix's share: Binomial(4000, 0.5), a standard deviation of 0.0079; bounds of 6.
    for share in (ours["cutmix"].mean(), used.mean(), reference[f"{key}_used"].mean()):
        assert abs(share - (0.5 if mixup_alpha else 1.0)) < 0.048
    for kind in (True, False) if mixup_alpha else (True,):
        # the Beta draws of each kind, and the ratios after CutMix's box (timm's correct_lam)
        _assert_same_distribution(ours["drawn"][ours["cutmix"] == kind], drawn[used == kind])
        theirs = reference[f"{key}_ratios"][reference[f"{key}_used"] == kind]
        _assert_same_distribution(ours["ratio"][ours["cutmix"] == kind], theirs)


def test_one_ratio_per_batch():
    images = tf.constant(np.arange(1, 9, dtype=np.float32)[:, None, None, None] * np.ones((1, 6, 6, 3), np.float32))
    targets = tf.one_hot(tf.range(8), 8)
    for alphas in ((0.2, 0.0), (0.0, 1.0), (0.2, 1.0)):
        mix = MixUpOrCutMix(*alphas)
        for seed in range(5):
            mixed, got = (t.numpy() for t in mix(images, targets, tf.constant([seed, 3])))
            own = got[np.arange(8), np.arange(8)]
            partner = got[np.arange(8), np.arange(8)[::-1]]
            np.testing.assert_allclose(own, own[0], atol=1e-6)  # every image: the same ratio
            np.testing.assert_allclose(own + partner, 1.0, atol=1e-6)  # with its mirror
            # the images mixed as their targets: pixel mean = own * k + partner * (9 - k)
            k = np.arange(1, 9)
            np.testing.assert_allclose(mixed.mean((1, 2, 3)), own * k + partner * (9 - k),
                                       atol=1e-4)


def test_cutmix_alpha_is_used_as_given():
    draws = _mixing_draws(MixUpOrCutMix(cutmix_alpha=2.0), DRAWS)
    assert draws["cutmix"].all()
    # Beta(2, 2): mean 0.5, variance 0.05; over 4000 draws, standard errors 0.0035 (mean) and
    # 0.00085 (variance: sqrt((mu4 - var^2) / n), mu4 = 3/560); the bounds are 7 of them.
    # (Clamped to Beta(1, 1), the variance would be 1/12.)
    assert abs(draws["drawn"].mean() - 0.5) < 0.025
    assert abs(draws["drawn"].var() - 0.05) < 0.006
    with pytest.raises(Exception, match="cutmix_alpha"):
        MixUpOrCutMix(cutmix_alpha=-1.0)
