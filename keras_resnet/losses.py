"""Segmentation losses on per-pixel logits and integer masks, with an ignore label.

Targets are integer masks ``(B, H, W)`` or ``(B, H, W, 1)`` (``(B, H, W, C)`` of 0/1 for
``mode="multilabel"``); pixels equal to ``ignore_label`` (255, the PASCAL VOC border) count
nowhere. Predictions are logits ``(B, H, W, C)`` (probabilities with ``from_logits=False``).
Every loss casts its inputs to float32 first, so float16 or bfloat16 logits of a
mixed-precision model are reduced in float32 (a float16 sum over 512x512 pixels overflows).

- :class:`SparseCrossEntropy`: the mean over the valid pixels of the whole batch, as torch's
  ``nn.CrossEntropyLoss(ignore_index=255)`` computes it.
- :class:`DiceLoss` and :class:`FocalLoss`: as segmentation_models_pytorch (0.6) defines them,
  channels last.

Example:
    >>> model.compile("adam", loss=SparseCrossEntropy())  # doctest: +SKIP
"""

import keras
from keras import ops

from keras_resnet.errors import InvalidArgument, InvalidType, check_choice

MODES = ("binary", "multiclass", "multilabel")
REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)
DEFAULT_IGNORE_LABEL = 255


def _check_ignore_label(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidType(f"`ignore_label` must be an int or None; got {value!r}.")


def _check_number(argument, value, low, high=None, low_open=False, optional=False):
    """Raise unless ``value`` is a number in [low, high] ((low, high] with ``low_open``)."""
    if optional and value is None:
        return
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or value < low or (low_open and value == low) or \
            (high is not None and value > high):
        bound = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else f'{high}]'}"
        allowed = f"a number in {bound}" + (" or None" if optional else "")
        raise InvalidArgument(f"`{argument}` must be {allowed}; got {value!r}.")


def _check_classes(classes, mode):
    if classes is None:
        return None
    if mode == "binary":
        raise InvalidArgument(f"`classes` selects channels of a multi-channel mode; got "
                              f"classes={classes!r} with mode='binary'.")
    ids = list(classes) if isinstance(classes, (list, tuple)) else None
    if not ids or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in ids) \
            or len(set(ids)) != len(ids):
        raise InvalidArgument(f"`classes` must be a non-empty list of distinct class ids "
                              f"(ints >= 0) or None; got {classes!r}.")
    return ids


def _sparse_labels(y_true, y_pred):
    """Integer-valued labels (B, H, W) from (B, H, W) or (B, H, W, 1) for (B, H, W, C) scores."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if len(y_true.shape) != len(y_pred.shape) - 1:
        raise InvalidArgument(f"Masks of shape {tuple(y_true.shape)} do not fit predictions of "
                              f"shape {tuple(y_pred.shape)}: expected (B, H, W) or (B, H, W, 1).")
    return y_true


def _valid(y_true, ignore_label):
    """1.0 where the target is not ``ignore_label``, else 0.0 (float32)."""
    if ignore_label is None:
        return ops.ones_like(y_true, dtype="float32")
    return ops.cast(ops.not_equal(y_true, ops.cast(ignore_label, y_true.dtype)), "float32")


@keras.saving.register_keras_serializable(package="keras_resnet")
class SparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy per pixel; pixels labelled ``ignore_label`` count nowhere.

    The default reduction is torch's ``nn.CrossEntropyLoss(ignore_index=ignore_label)`` mean:
    the sum over the valid pixels of the whole batch divided by their number (not a mean of
    per-image means). ``call`` returns per-pixel losses (B, H, W), zero at ignored pixels, each
    valid one scaled by pixels / valid pixels of the batch (what Keras does for a masked loss),
    so Keras' own "sum_over_batch_size" reduction, ``sample_weight`` (per pixel, (B, H, W) or
    broadcastable) and distribution scaling stay in place. A batch with no valid pixel gives 0
    (torch gives NaN). With ``reduction="sum"`` or ``"none"`` nothing is scaled.

    Args:
        ignore_label: the target value of pixels to leave out (None: none).
        from_logits: whether predictions are logits (else probabilities).
        reduction: "sum_over_batch_size" (= "mean"), "sum" or "none".
        name: the loss' name.

    Returns:
        A Keras loss.

    Example:
        >>> round(float(SparseCrossEntropy()(np.array([[[1, 255]]]), np.zeros((1, 1, 2, 3)))), 4)
        1.0986
    """

    def __init__(self, ignore_label=DEFAULT_IGNORE_LABEL, from_logits=True,
                 reduction="sum_over_batch_size", name="sparse_cross_entropy"):
        _check_ignore_label(ignore_label)
        check_choice("reduction", reduction, REDUCTIONS)
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.ignore_label = ignore_label
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = _sparse_labels(y_true, y_pred)
        valid = _valid(y_true, self.ignore_label)
        labels = ops.cast(ops.where(valid > 0, y_true, ops.zeros_like(y_true)), "int32")
        losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=self.from_logits)
        if self.reduction in ("sum_over_batch_size", "mean"):
            # As keras.losses.Loss weighs a masked loss: valid pixels by total / valid.
            total = ops.cast(ops.size(valid), "float32")
            valid = valid * ops.divide_no_nan(total, ops.sum(valid))
        return losses * valid

    def get_config(self):
        return {"ignore_label": self.ignore_label, "from_logits": self.from_logits,
                "reduction": self.reduction, "name": self.name}


def _dense_targets(mode, y_true, y_pred, ignore_label):
    """Flatten to (N, C): float32 scores, 0/1 targets and the valid mask, N = batch x pixels.

    binary: predictions (B, H, W, 1) or (B, H, W), masks of 0/1; multiclass: class-id masks
    one-hot encoded; multilabel: masks (B, H, W, C) of 0/1, each element may be ignored.
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    if mode == "multilabel":
        if tuple(y_true.shape[1:]) != tuple(y_pred.shape[1:]):
            raise InvalidArgument(f"mode='multilabel' needs masks shaped like the predictions "
                                  f"{tuple(y_pred.shape)}; got {tuple(y_true.shape)}.")
        channels = y_pred.shape[-1]
    else:
        if mode == "binary" and y_pred.shape[-1] != 1:
            y_pred = ops.expand_dims(y_pred, -1)
        y_true = _sparse_labels(y_true, y_pred)
        channels = y_pred.shape[-1]
    scores = ops.reshape(y_pred, (-1, channels))
    labels = ops.reshape(y_true, (-1, channels if mode == "multilabel" else 1))
    valid = _valid(labels, ignore_label)
    labels = labels * valid
    if mode == "multiclass":
        labels = ops.one_hot(ops.cast(labels[:, 0], "int32"), channels, dtype="float32") * valid
    return scores, labels, valid


def _check_sample_weight(loss, sample_weight):
    if sample_weight is not None:
        raise InvalidArgument(f"{type(loss).__name__} reduces the whole batch per class and takes "
                              f"no `sample_weight`; got one of shape "
                              f"{tuple(getattr(sample_weight, 'shape', ()))}.")


@keras.saving.register_keras_serializable(package="keras_resnet")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss per class over the whole batch, as segmentation_models_pytorch's DiceLoss.

    Per class c, over the valid pixels of the batch: scores p (softmax for "multiclass",
    sigmoid otherwise, when ``from_logits``), 0/1 targets t, I = sum(min(p, t)) (smp's
    (sum p + sum t - |p - t|_1) / 2, i.e. sum(p t) for 0/1 targets), and
    dice = (I + smooth) / max((sum p + sum t) / 2 + smooth, eps). The loss is 1 - dice
    (-log(max(dice, eps)) with ``log_loss``), zero for a class with no target pixel in the
    batch, averaged over all classes (or over ``classes``).

    Args:
        mode: "binary" (one channel, 0/1 masks), "multiclass" (class-id masks) or
            "multilabel" ((B, H, W, C) masks of 0/1); required.
        classes: class ids whose losses are averaged (None: all); not for "binary".
        log_loss: -log(dice) instead of 1 - dice.
        from_logits: whether predictions are logits (else probabilities).
        smooth: added to numerator and denominator.
        eps: the least denominator.
        ignore_label: the target value of pixels to leave out (None: none).
        name: the loss' name.

    Returns:
        A Keras loss; ``sample_weight`` is refused (the loss is a batch-level ratio).

    Example:
        >>> logits = np.array([[[[4.0, -4.0], [-4.0, 4.0]]]])  # (1, 1, 2, 2): right, confident
        >>> round(float(DiceLoss("multiclass")(np.array([[[0, 1]]]), logits)), 4)
        0.0003
    """

    def __init__(self, mode, classes=None, log_loss=False, from_logits=True, smooth=0.0,
                 eps=1e-7, ignore_label=DEFAULT_IGNORE_LABEL, name="dice_loss"):
        check_choice("mode", mode, MODES)
        self.classes = _check_classes(classes, mode)
        _check_number("smooth", smooth, 0.0)
        _check_number("eps", eps, 0.0, low_open=True)
        _check_ignore_label(ignore_label)
        super().__init__(name=name, dtype="float32")
        self.mode, self.log_loss, self.from_logits = mode, bool(log_loss), bool(from_logits)
        self.smooth, self.eps, self.ignore_label = smooth, eps, ignore_label

    def __call__(self, y_true, y_pred, sample_weight=None):
        _check_sample_weight(self, sample_weight)
        return super().__call__(y_true, y_pred)

    def call(self, y_true, y_pred):
        if self.from_logits:
            y_pred = ops.cast(y_pred, "float32")
            y_pred = ops.softmax(y_pred, -1) if self.mode == "multiclass" else ops.sigmoid(y_pred)
        scores, targets, valid = _dense_targets(self.mode, y_true, y_pred, self.ignore_label)
        scores = scores * valid
        # smp's soft_dice_score, summed over batch and pixels (its dims=(0, 2)).
        intersection = ops.sum(ops.minimum(scores, targets), axis=0)
        target_sum = ops.sum(targets, axis=0)
        half_cardinality = 0.5 * (ops.sum(scores, axis=0) + target_sum)
        dice = (intersection + self.smooth) / ops.maximum(half_cardinality + self.smooth, self.eps)
        if self.log_loss:
            losses = -ops.log(ops.maximum(dice, self.eps))
        else:
            losses = 1.0 - dice
        losses = losses * ops.cast(target_sum > 0, "float32")  # smp: empty classes count 0
        return ops.mean(_selected(losses, self.classes))

    def get_config(self):
        return {"mode": self.mode, "classes": self.classes, "log_loss": self.log_loss,
                "from_logits": self.from_logits, "smooth": self.smooth, "eps": self.eps,
                "ignore_label": self.ignore_label, "name": self.name}


def _selected(per_class, classes):
    if classes is None:
        return per_class
    if max(classes) >= per_class.shape[0]:
        raise InvalidArgument(f"`classes` {classes} name a class beyond the predictions' "
                              f"{per_class.shape[0]} channels.")
    return ops.take(per_class, ops.convert_to_tensor(classes, "int32"), axis=0)


def _binary_logits(probabilities, eps):
    """The logits of probabilities clipped to [eps, 1 - eps] (smp's inverse sigmoid)."""
    probabilities = ops.clip(ops.cast(probabilities, "float32"), eps, 1.0 - eps)
    return ops.log(probabilities / (1.0 - probabilities))


@keras.saving.register_keras_serializable(package="keras_resnet")
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss per class (Lin et al. 2017), as segmentation_models_pytorch's FocalLoss.

    Each channel is a one-vs-rest sigmoid problem ("multiclass": target 1 where the mask names
    the class; smp applies no softmax either): per element -(1 - p_t)^gamma log(p_t), times
    alpha t + (1 - alpha)(1 - t) when ``alpha`` is given; the mean over each class' valid
    pixels of the batch, then the mean over classes. A class with no valid pixel counts 0
    (smp: NaN). With ``from_logits=False`` probabilities are clipped to [eps, 1 - eps] and
    turned into logits in every mode (smp takes log(p) in "multiclass", which makes a
    probability p a sigmoid p / (1 + p); we do not follow that).

    Args:
        mode: "binary", "multiclass" or "multilabel" (as :class:`DiceLoss`); required.
        alpha: weight of positives in [0, 1], or None (no weighting).
        gamma: the focusing exponent (0: binary cross-entropy).
        ignore_label: the target value of pixels to leave out (None: none).
        from_logits: whether predictions are logits (else probabilities).
        eps: the clipping of probabilities.
        normalized: divide each class' losses by the sum of its focal terms (Sun et al. 2019).
        reduced_threshold: reduced focal loss (Sergievskiy & Ponamarev 2019): the focal term is
            1 where p_t < threshold, ((1 - p_t) / threshold)^gamma elsewhere; None: off.
        name: the loss' name.

    Returns:
        A Keras loss; ``sample_weight`` is refused.

    Example:
        >>> logits = np.array([[[[4.0, -4.0], [-4.0, 4.0]]]])
        >>> round(float(FocalLoss("multiclass", gamma=0.0)(np.array([[[0, 1]]]), logits)), 4)
        0.0181
    """

    def __init__(self, mode, alpha=None, gamma=2.0, ignore_label=DEFAULT_IGNORE_LABEL,
                 from_logits=True, eps=1e-7, normalized=False, reduced_threshold=None,
                 name="focal_loss"):
        check_choice("mode", mode, MODES)
        _check_number("alpha", alpha, 0.0, 1.0, optional=True)
        _check_number("gamma", gamma, 0.0)
        _check_ignore_label(ignore_label)
        _check_number("eps", eps, 0.0, 0.5, low_open=True)
        _check_number("reduced_threshold", reduced_threshold, 0.0, 1.0, low_open=True,
                      optional=True)
        super().__init__(name=name, dtype="float32")
        self.mode, self.alpha, self.gamma, self.ignore_label = mode, alpha, gamma, ignore_label
        self.from_logits, self.eps, self.normalized = bool(from_logits), eps, bool(normalized)
        self.reduced_threshold = reduced_threshold

    def __call__(self, y_true, y_pred, sample_weight=None):
        _check_sample_weight(self, sample_weight)
        return super().__call__(y_true, y_pred)

    def call(self, y_true, y_pred):
        if not self.from_logits:
            y_pred = _binary_logits(y_pred, self.eps)
        logits, targets, valid = _dense_targets(self.mode, y_true, y_pred, self.ignore_label)
        # smp's focal_loss_with_logits: BCE with logits, p_t = exp(-BCE).
        log_pt = ops.maximum(logits, 0.0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
        pt = ops.exp(-log_pt)
        if self.reduced_threshold is None:
            focal = ops.power(1.0 - pt, self.gamma)
        else:
            focal = ops.power((1.0 - pt) / self.reduced_threshold, self.gamma)
            focal = ops.where(pt < self.reduced_threshold, 1.0, focal)
        losses = focal * log_pt
        if self.alpha is not None:
            losses = losses * (self.alpha * targets + (1.0 - self.alpha) * (1.0 - targets))
        if self.normalized:
            # smp divides by the focal terms' sum (at least 1e-6), per class here as there.
            losses = losses / ops.maximum(ops.sum(focal * valid, axis=0), 1e-6)
        per_class = ops.divide_no_nan(ops.sum(losses * valid, axis=0), ops.sum(valid, axis=0))
        return ops.mean(per_class)

    def get_config(self):
        return {"mode": self.mode, "alpha": self.alpha, "gamma": self.gamma,
                "ignore_label": self.ignore_label, "from_logits": self.from_logits,
                "eps": self.eps, "normalized": self.normalized,
                "reduced_threshold": self.reduced_threshold, "name": self.name}
