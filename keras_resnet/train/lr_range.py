"""The parts of a learning-rate range test (:mod:`keras_resnet.lr_find`): the exponential ramp
of rates, the smoothed loss, the rules that read it, and the callback that sets the rate before
each batch and records each batch's loss.

Backend-neutral (Keras and NumPy only).

Example:
    >>> lrs = ramp(1e-4, 1, 5)
    >>> bool(suggest(lrs, [3.0, 2.9, 2.0, 1.8, 5.0])["minimum/10"] == lrs[3] / 10)
    True
"""

import keras
import numpy as np

from keras_resnet.errors import InvalidArgument

RULES = ("valley", "steepest", "minimum/10")


def check_range(start_lr, end_lr, steps, repeats, flags=False):
    """Raise ``InvalidArgument`` naming the first bad setting (``--end-lr`` etc. with
    ``flags``): rates > 0, ``end_lr`` above ``start_lr``, ``steps`` >= 10, ``repeats`` >= 1.

    Example:
        >>> check_range(1e-7, 10, 100, 1)
    """
    def name(field):
        return "--" + field.replace("_", "-") if flags else field

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def whole(value):
        return isinstance(value, int) and not isinstance(value, bool)

    for field, value, good, allowed in (
        ("start_lr", start_lr, number(start_lr) and start_lr > 0, "a number > 0"),
        ("end_lr", end_lr, number(end_lr) and number(start_lr) and end_lr > start_lr,
         f"a number above {name('start_lr')} ({start_lr!r})"),
        ("steps", steps, whole(steps) and steps >= 10, "an integer >= 10"),
        ("repeats", repeats, whole(repeats) and repeats >= 1, "an integer >= 1"),
    ):
        if not good:
            raise InvalidArgument(f"`{name(field)}` must be {allowed}; got {value!r}.")


def ramp(start_lr, end_lr, steps):
    """The rates of the range test, one per step: exponential from ``start_lr`` to ``end_lr``.

    Example:
        >>> [float(f"{lr:.0e}") for lr in ramp(1e-3, 1, 4)]
        [0.001, 0.01, 0.1, 1.0]
    """
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))


def smooth(losses, smoothing=0.98):
    """The bias-corrected exponential moving average of ``losses``.

    Example:
        >>> smooth([1.0, 3.0], smoothing=0.5).tolist()  # (0.5 * 1 + 1 * 3) / 1.5
        [1.0, 2.3333333333333335]
    """
    out, average = [], 0.0
    for step, loss in enumerate(np.asarray(losses, dtype=float)):
        average = smoothing * average + (1 - smoothing) * loss
        out.append(average / (1 - smoothing ** (step + 1)))
    return np.array(out)


def _longest_fall(losses):
    """(first, last) step of the longest sequence of steps each lower than the one before."""
    length, previous = np.ones(len(losses), int), np.arange(len(losses))
    for i in range(1, len(losses)):
        higher = np.flatnonzero(losses[:i] > losses[i])
        if len(higher):
            best = higher[np.argmax(length[higher])]
            length[i], previous[i] = length[best] + 1, best
    last = int(np.argmax(length))
    first = last
    while previous[first] != first:
        first = int(previous[first])
    return first, last


def suggest(lrs, smoothed, skip=None):
    """The rules' rates for the smoothed curve ``smoothed`` over the rates ``lrs``, read from
    step ``skip`` on (None: the first tenth of the steps left out, where the average has seen
    few batches and the rate does nothing yet); None each when fewer than 3 points are left.

    Returns:
        ``{"valley": lr, "steepest": lr, "minimum/10": lr}``.

    Example:
        >>> lrs = ramp(1e-4, 1, 5)
        >>> {k: float(f"{v:.0e}") for k, v in suggest(lrs, [3, 2.9, 2, 1.8, 5]).items()}
        {'valley': 0.003, 'steepest': 0.001, 'minimum/10': 0.01}
    """
    smoothed = np.asarray(smoothed, float)
    skip = len(smoothed) // 10 if skip is None else skip
    lrs, smoothed = np.asarray(lrs, float)[skip:len(smoothed)], smoothed[skip:]
    if len(smoothed) < 3:
        return dict.fromkeys(RULES)
    logs = np.log(lrs)
    first, last = _longest_fall(smoothed)
    slopes = np.diff(smoothed) / np.diff(logs)
    return {"valley": float(np.exp((logs[first] + logs[last]) / 2)),
            "steepest": float(lrs[np.argmin(slopes)]),
            "minimum/10": float(lrs[np.argmin(smoothed)] / 10)}


class LRRamp(keras.callbacks.Callback):
    """Sets the optimizer's rate before each batch from ``lrs`` and records each batch's loss.

    The model's metrics are reset before each batch, so Keras' ``loss`` is that batch's; the
    weight-decay term the model's regularizers add to it (the paper's L2, taken before the
    step, on the weights the batch meets) is taken off: the data's loss is what the rate
    should lower, and the L2 term alone falls fast at a high rate while the network is
    already lost. Stops after ``len(lrs)`` batches, or once the smoothed loss passes
    ``diverge`` times its least (None: never) or is not finite.

    Attributes:
        losses, smoothed: the batches' losses and their moving average so far.
        penalties: the weight-decay term of each batch, taken off its loss.
        diverged: whether it stopped on divergence.

    Example:
        >>> recorder = LRRamp(ramp(1e-7, 10, 100))
        >>> model.fit(batches, steps_per_epoch=100, callbacks=[recorder])  # doctest: +SKIP
    """

    def __init__(self, lrs, smoothing=0.98, diverge=4.0):
        super().__init__()
        self.lrs, self.smoothing, self.diverge = np.asarray(lrs, float), smoothing, diverge
        self.losses, self.smoothed, self.penalties, self.diverged = [], [], [], False
        self._average, self.rate = 0.0, None

    def on_train_begin(self, logs=None):
        self.rate = keras.Variable(self.lrs[0], dtype="float32", trainable=False, name="lr_ramp")
        self.model.optimizer.learning_rate = lambda: self.rate  # read at every step

    def on_train_batch_begin(self, batch, logs=None):
        self.rate.assign(self.lrs[len(self.losses)])
        self.model.reset_metrics()
        terms = [keras.ops.convert_to_numpy(term) for term in self.model.losses]
        self.penalties.append(float(np.sum(terms, dtype="float64")) if terms else 0.0)

    def on_train_batch_end(self, batch, logs=None):
        loss = float(np.asarray(logs["loss"])) - self.penalties[-1]
        step = len(self.losses)
        self.losses.append(loss)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        self.smoothed.append(self._average / (1 - self.smoothing ** (step + 1)))
        least = min(self.smoothed)
        if self.diverge is not None and (not np.isfinite(self.smoothed[-1])
                                         or self.smoothed[-1] > self.diverge * least):
            self.diverged = True
        if self.diverged or len(self.losses) == len(self.lrs):
            self.model.stop_training = True
