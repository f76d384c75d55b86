"""The segmentation losses (keras_resnet.losses) against numbers nobody here computed.

Fast tier: a numpy cross-entropy over the valid pixels (torch's ``ignore_index`` mean), numpy
transcriptions of segmentation_models_pytorch's Dice and focal definitions, float16 inputs,
configs, errors. With ``$KERAS_RESNET_TORCH_PYTHON`` (an interpreter with torch and
segmentation-models-pytorch): torch's ``nn.CrossEntropyLoss(ignore_index=255)`` and smp's own
``DiceLoss`` / ``FocalLoss`` on the same inputs, in one subprocess.
"""

import inspect
import json
import subprocess

import keras
import numpy as np
import pytest

from harness import relative_difference, torch_python
from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.losses import DiceLoss, FocalLoss, SparseCrossEntropy

IGNORE = 255


def _batch(seed=0, shape=(3, 8, 8), classes=5, ignored=0.2):
    """Logits (B, H, W, C) and int masks with about ``ignored`` of the pixels at 255."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (*shape, classes)).astype(np.float32)
    masks = rng.integers(0, classes, shape)
    masks[rng.random(shape) < ignored] = IGNORE
    return logits, masks


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _numpy_cross_entropy(logits, masks):
    """Sum over valid pixels of -log softmax[label], over their number in the whole batch."""
    valid = masks != IGNORE
    log_p = np.take_along_axis(_log_softmax(logits.astype(np.float64)),
                               np.where(valid, masks, 0)[..., None], -1)[..., 0]
    return float(-(log_p * valid).sum() / valid.sum()), -(log_p * valid)


def test_cross_entropy_is_the_mean_over_valid_pixels_of_the_batch():
    logits, masks = _batch()
    masks[0, :6] = IGNORE  # images with very different numbers of valid pixels
    expected, per_pixel = _numpy_cross_entropy(logits, masks)
    loss = SparseCrossEntropy()
    assert abs(float(loss(masks, logits)) - expected) < 1e-5 * expected
    assert abs(float(loss(masks[..., None], logits)) - expected) < 1e-5 * expected
    # Not the mean of per-image means (what a per-image reduction would give).
    valid = masks != IGNORE
    per_image = np.mean(per_pixel.sum((1, 2)) / valid.sum((1, 2)))
    assert abs(per_image - expected) > 1e-2
    # Probabilities give the same; "sum" is the plain sum over valid pixels.
    probabilities = np.exp(_log_softmax(logits))
    assert abs(float(SparseCrossEntropy(from_logits=False)(masks, probabilities)) - expected) < 1e-4
    assert abs(float(SparseCrossEntropy(reduction="sum")(masks, logits))
               - per_pixel.sum()) < 1e-4 * per_pixel.sum()


def test_cross_entropy_with_pixel_weights_and_an_all_ignored_batch():
    logits, masks = _batch(seed=1)
    expected, per_pixel = _numpy_cross_entropy(logits, masks)
    weights = np.random.default_rng(2).uniform(0, 1, masks.shape).astype(np.float32)
    # Keras' sample_weight semantics: sum(w * loss) over the valid pixels / valid pixels.
    weighted = float(SparseCrossEntropy()(masks, logits, sample_weight=weights))
    assert abs(weighted - (per_pixel * weights).sum() / (masks != IGNORE).sum()) < 1e-5
    everything_ignored = np.full_like(masks, IGNORE)
    value = float(SparseCrossEntropy()(everything_ignored, logits))
    assert value == 0.0
    none = SparseCrossEntropy(ignore_label=None)
    full = np.where(masks == IGNORE, 0, masks)
    assert abs(float(none(full, logits)) - _numpy_cross_entropy(logits, full)[0]) < 1e-5


def _to_binary_columns(mode, logits, masks):
    """numpy: (N, C) scores, 0/1 targets and valid mask, as smp flattens (N = batch x pixels)."""
    channels = logits.shape[-1]
    if mode == "multilabel":
        labels = masks.reshape(-1, channels).astype(np.float64)
    else:
        labels = masks.reshape(-1, 1).astype(np.float64)
    scores = logits.reshape(-1, channels).astype(np.float64)
    valid = (labels != IGNORE).astype(np.float64)
    labels = labels * valid
    if mode == "multiclass":
        labels = np.eye(channels)[labels[:, 0].astype(int)] * valid
    return scores, labels, valid


def _numpy_dice(mode, logits, masks, smooth=0.0, eps=1e-7, log_loss=False, classes=None):
    """smp 0.6's DiceLoss as its source reads (soft_tversky_score with alpha = beta = 0.5)."""
    logits = logits.astype(np.float64)
    if mode == "multiclass":
        probs = np.exp(_log_softmax(logits))
    else:
        probs = 1 / (1 + np.exp(-logits))
    scores, targets, valid = _to_binary_columns(mode, probs, masks)
    scores = scores * valid
    output_sum, target_sum = scores.sum(0), targets.sum(0)
    intersection = (output_sum + target_sum - np.abs(scores - targets).sum(0)) / 2
    fp, fn = output_sum - intersection, target_sum - intersection
    dice = (intersection + smooth) / np.maximum(intersection + 0.5 * fp + 0.5 * fn + smooth, eps)
    loss = -np.log(np.maximum(dice, eps)) if log_loss else 1 - dice
    loss = loss * (target_sum > 0)
    return float((loss if classes is None else loss[classes]).mean())


def _numpy_focal(mode, logits, masks, alpha=None, gamma=2.0):
    """smp 0.6's FocalLoss: per channel a sigmoid focal loss over the valid pixels."""
    scores, targets, valid = _to_binary_columns(mode, logits.astype(np.float64), masks)
    bce = np.maximum(scores, 0) - scores * targets + np.log1p(np.exp(-np.abs(scores)))
    loss = (1 - np.exp(-bce)) ** gamma * bce
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return float(np.mean((loss * valid).sum(0) / valid.sum(0)))


def _binary_batch(seed, channels=1):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (2, 8, 8, channels)).astype(np.float32)
    masks = rng.integers(0, 2, (2, 8, 8) if channels == 1 else (2, 8, 8, channels))
    masks[rng.random(masks.shape) < 0.2] = IGNORE
    return logits, masks


DICE_CASES = [("multiclass", {}), ("multiclass", {"smooth": 1.0}),
              ("multiclass", {"log_loss": True}), ("multiclass", {"classes": [0, 2]}),
              ("binary", {}), ("multilabel", {"smooth": 0.5})]


@pytest.mark.parametrize("mode, options", DICE_CASES)
def test_dice_matches_a_numpy_transcription_of_smp(mode, options):
    logits, masks = _batch(seed=3) if mode == "multiclass" else \
        _binary_batch(4, 1 if mode == "binary" else 3)
    got = float(DiceLoss(mode, **options)(masks, logits))
    expected = _numpy_dice(mode, logits, masks, **options)
    assert abs(got - expected) < 1e-5, (got, expected)


def test_dice_leaves_out_classes_absent_from_the_targets():
    logits, masks = _batch(seed=5, classes=4)
    masks[masks == 3] = 0  # class 3 never labelled: it contributes 0, but counts in the mean
    got = float(DiceLoss("multiclass")(masks, logits))
    assert abs(got - _numpy_dice("multiclass", logits, masks)) < 1e-5
    perfect = np.where(masks[..., None] == np.arange(4), 30.0, -30.0).astype(np.float32)
    assert float(DiceLoss("multiclass")(masks, perfect)) < 1e-6


@pytest.mark.parametrize("mode, alpha, gamma", [("multiclass", None, 2.0),
                                                ("multiclass", 0.25, 1.5),
                                                ("binary", 0.75, 2.0),
                                                ("multilabel", None, 0.0)])
def test_focal_matches_a_numpy_transcription_of_smp(mode, alpha, gamma):
    logits, masks = _batch(seed=6) if mode == "multiclass" else \
        _binary_batch(7, 1 if mode == "binary" else 3)
    got = float(FocalLoss(mode, alpha=alpha, gamma=gamma)(masks, logits))
    expected = _numpy_focal(mode, logits, masks, alpha=alpha, gamma=gamma)
    assert abs(got - expected) < 1e-5 * max(1.0, expected), (got, expected)
    if gamma == 0.0 and alpha is None:  # Keras' binary cross-entropy, nothing ignored
        clean = np.where(masks == IGNORE, 0, masks).astype(np.float32)
        bce = keras.losses.BinaryCrossentropy(from_logits=True)(clean, logits)
        assert abs(float(FocalLoss(mode, gamma=0.0, ignore_label=None)(clean, logits))
                   - float(bce)) < 1e-5
    if mode == "binary":
        probabilities = 1 / (1 + np.exp(-logits))
        from_probabilities = FocalLoss(mode, alpha=alpha, gamma=gamma, from_logits=False)
        assert abs(float(from_probabilities(masks, probabilities)) - expected) < 1e-4


@pytest.mark.slow  # 2 s or more of its own
def test_half_precision_logits_are_reduced_in_float32():
    """A 512x512x21 batch: float16 sums would overflow (65504); the losses stay finite and
    equal their float32 values on the same (rounded) logits."""
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 3, (2, 512, 512, 21)).astype(np.float16)
    masks = rng.integers(0, 21, (2, 512, 512)).astype(np.int32)
    masks[:, :40] = IGNORE
    for loss in (DiceLoss("multiclass"), SparseCrossEntropy(), FocalLoss("multiclass")):
        half = float(loss(masks, keras.ops.convert_to_tensor(logits, "float16")))
        single = float(loss(masks, logits.astype(np.float32)))
        assert np.isfinite(half) and abs(half - single) <= 1e-6 * max(1.0, abs(single))
    bfloat = keras.ops.cast(logits.astype(np.float32), "bfloat16")
    value = float(DiceLoss("multiclass")(masks, bfloat))
    assert np.isfinite(value) and abs(value - float(DiceLoss("multiclass")(masks, logits))) < 1e-2


@pytest.mark.parametrize("loss", [
    SparseCrossEntropy(ignore_label=0, from_logits=False, reduction="sum", name="ce"),
    DiceLoss("multilabel", classes=[1, 2], log_loss=True, from_logits=False, smooth=1.0,
             eps=1e-6, ignore_label=None, name="dice"),
    FocalLoss("binary", alpha=0.3, gamma=1.0, ignore_label=7, from_logits=False, eps=1e-5,
              normalized=True, reduced_threshold=0.5, name="focal"),
], ids=["cross_entropy", "dice", "focal"])
def test_configs_carry_every_argument(loss):
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(rebuilt) is type(loss) and rebuilt.get_config() == loss.get_config()
    arguments = set(inspect.signature(type(loss).__init__).parameters) - {"self"}
    assert set(loss.get_config()) == arguments


def test_unsupported_settings_raise():
    with pytest.raises(InvalidArgument, match="`mode` must be one of 'binary', 'multiclass'"):
        DiceLoss("multi-class")
    with pytest.raises(TypeError, match="mode"):
        FocalLoss()  # the mode is required
    with pytest.raises(InvalidArgument, match="classes=\\[0\\] with mode='binary'"):
        DiceLoss("binary", classes=[0])
    with pytest.raises(InvalidArgument, match="`alpha` must be a number in \\[0.0, 1.0\\]"):
        FocalLoss("binary", alpha=2)
    with pytest.raises(InvalidType, match="`ignore_label` must be an int or None; got '255'"):
        SparseCrossEntropy(ignore_label="255")
    with pytest.raises(InvalidArgument, match="`reduction`"):
        SparseCrossEntropy(reduction="batch")
    logits, masks = _batch(classes=3)
    with pytest.raises(InvalidArgument, match="no `sample_weight`"):
        DiceLoss("multiclass")(masks, logits, sample_weight=np.ones(3))
    with pytest.raises(InvalidArgument, match="beyond the predictions' 3 channels"):
        DiceLoss("multiclass", classes=[3])(masks, logits)


# ---------------------------------------------------------------------------------------------
# torch and segmentation_models_pytorch themselves

TORCH_SCRIPT = """
import json, sys
import numpy as np, torch
import segmentation_models_pytorch.losses as smp

data = np.load(sys.argv[1])
cases = json.loads(sys.argv[2])
torch.set_default_dtype(torch.float64)

def nchw(array):
    tensor = torch.from_numpy(array.astype(np.float64))
    return tensor.permute(0, 3, 1, 2) if tensor.ndim == 4 else tensor

out = {"cross_entropy": float(torch.nn.CrossEntropyLoss(ignore_index=255)(
    nchw(data["logits"]), torch.from_numpy(data["masks"]).long()))}
for name, (kind, mode, options) in cases.items():
    logits, masks = nchw(data[name + "_logits"]), torch.from_numpy(data[name + "_masks"]).long()
    if mode == "binary":
        masks = masks[:, None]
    elif mode == "multilabel":
        masks = masks.permute(0, 3, 1, 2)
    loss = getattr(smp, kind)(mode, ignore_index=options.pop("ignore_index", 255), **options)
    out[name] = float(loss(logits, masks))
print(json.dumps(out))
"""

SMP_CASES = {
    "dice_multiclass": ("DiceLoss", "multiclass", {}),
    "dice_smooth_log": ("DiceLoss", "multiclass", {"smooth": 1.0, "log_loss": True}),
    "dice_classes": ("DiceLoss", "multiclass", {"classes": [1, 3]}),
    "dice_binary": ("DiceLoss", "binary", {}),
    "dice_multilabel": ("DiceLoss", "multilabel", {}),
    "focal_multiclass": ("FocalLoss", "multiclass", {"alpha": 0.25}),
    "focal_binary_probs": ("FocalLoss", "binary", {"from_logits": False, "gamma": 1.5}),
    "focal_normalized": ("FocalLoss", "binary", {"normalized": True}),
    "focal_reduced": ("FocalLoss", "multiclass", {"reduced_threshold": 0.5}),
    # smp's multilabel focal cannot take an ignore index (its mask has the channel axis).
    "focal_multilabel": ("FocalLoss", "multilabel", {"ignore_index": None, "gamma": 3.0}),
}


def _smp_inputs(name, mode, options):
    if mode == "multiclass":
        return _batch(seed=len(name))
    logits, masks = _binary_batch(len(name), 1 if mode == "binary" else 4)
    if options.get("ignore_index", IGNORE) is None:
        masks[masks == IGNORE] = 1
    if options.get("from_logits", True) is False:
        logits = (1 / (1 + np.exp(-logits))).astype(np.float32)
    return logits, masks


def _ours(kind, mode, options):
    options = dict(options)
    if "ignore_index" in options:
        options["ignore_label"] = options.pop("ignore_index")
    return {"DiceLoss": DiceLoss, "FocalLoss": FocalLoss}[kind](mode, **options)


@pytest.fixture(scope="module")
def torch_reference(tmp_path_factory):
    python = torch_python()
    folder = tmp_path_factory.mktemp("smp")
    logits, masks = _batch(seed=9, shape=(2, 16, 16), classes=6)
    arrays = {"logits": logits, "masks": masks}
    for name, (_, mode, options) in SMP_CASES.items():
        arrays[name + "_logits"], arrays[name + "_masks"] = _smp_inputs(name, mode, options)
    np.savez(folder / "inputs.npz", **arrays)
    completed = subprocess.run([python, "-c", TORCH_SCRIPT, str(folder / "inputs.npz"),
                                json.dumps(SMP_CASES)], capture_output=True, text=True,
                               timeout=300)
    if "No module named 'segmentation_models_pytorch'" in completed.stderr:
        pytest.skip("segmentation-models-pytorch is not installed beside torch")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return arrays, json.loads(completed.stdout.strip().splitlines()[-1])


def test_cross_entropy_equals_torch_ignore_index_mean(torch_reference):
    arrays, reference = torch_reference
    got = float(SparseCrossEntropy()(arrays["masks"], arrays["logits"]))
    assert relative_difference(got, reference["cross_entropy"]) < 1e-5


@pytest.mark.parametrize("name", sorted(SMP_CASES))
def test_dice_and_focal_equal_segmentation_models_pytorch(torch_reference, name):
    arrays, reference = torch_reference
    kind, mode, options = SMP_CASES[name]
    masks = arrays[name + "_masks"]
    got = float(_ours(kind, mode, options)(masks, arrays[name + "_logits"]))
    assert relative_difference(got, reference[name]) < 1e-5, (got, reference[name])


def test_gradients_are_finite_and_zero_at_ignored_pixels():
    import tensorflow as tf

    logits, masks = _batch(seed=10, classes=4)
    for loss in (SparseCrossEntropy(), DiceLoss("multiclass"), FocalLoss("multiclass"),
                 DiceLoss("multiclass", log_loss=True, smooth=1.0)):
        variable = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = loss(masks, variable)
        gradient = tape.gradient(value, variable).numpy()
        assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0, loss.name
        assert np.all(gradient[masks == IGNORE] == 0), loss.name
