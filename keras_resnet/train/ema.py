"""An exponential moving average of all a model's weights, BatchNormalization's statistics
included: torchvision's ``ExponentialMovingAverage`` (``references/classification/utils.py``,
an ``AveragedModel`` with ``use_buffers=True``) as its ``train.py`` drives it.

torchvision's ``train_one_epoch`` updates the average after every ``model_ema_steps``-th step
(``i % model_ema_steps == 0``), ``ema = decay * ema + (1 - decay) * w`` for every parameter
and buffer (the first update copies), and during the learning rate's warm-up resets its count
after each update, so the average keeps copying the weights until the warm-up is over.

Example:
    >>> ModelEMA(0.99, every=32, warmup_steps=100).every
    32
"""

import os

import keras
import numpy as np

from keras_resnet.errors import InvalidArgument
from keras_resnet.recipes import ema_momentum, get_recipe, warmup_steps
from keras_resnet.saving import atomic_path


def _averaged(model):
    """The variables the average covers: every float weight (trainable ones, BatchNorm's moving
    mean and variance); integer state (seed generators) is not a weight to average."""
    return [v for v in model.weights if "float" in str(v.dtype)]


class ModelEMA(keras.callbacks.Callback):
    """Average all the model's float weights every ``every`` steps; show the average to
    validation, to the callbacks after this one at each epoch's end (the best checkpoint, the
    run's backup) and to whoever uses the model after ``fit``. Training goes on from the raw
    weights at the next epoch.

    The update follows the optimizer's step count: after step ``i`` (0-based) with
    ``i % every == 0``; torchvision counts ``i`` from 0 in each epoch, which is the same
    whenever ``every`` divides the steps of an epoch. Its state goes into the run's backup
    (:class:`~keras_resnet.train.backup.RunBackup`), the weights not in the model written to
    ``state_dir``, so a resumed run continues exactly. Put it before the callbacks that save.

    Args:
        decay: the weight of the old average at each update (torchvision's ``decay``).
        every: steps between updates (``--model-ema-steps``).
        warmup_steps: the learning rate's warm-up; updates at steps before it copy.
        state_dir: where :meth:`state` writes the held weights (the backup's folder).

    Example:
        >>> ModelEMA(0.9).decay
        0.9
    """

    def __init__(self, decay, every=1, warmup_steps=0, state_dir=None):
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise InvalidArgument(f"`decay` must be a number in [0, 1); got {decay!r}.")
        for argument, value, low in (("every", every, 1), ("warmup_steps", warmup_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgument(f"`{argument}` must be an integer >= {low}; got {value!r}.")
        self.decay, self.every, self.warmup_steps = float(decay), every, warmup_steps
        self.state_dir = state_dir
        self.held = None  # the set of weights not in the model: the average, or the raw ones
        self.ema_in_model = False
        self.count = 0  # torchvision's n_averaged: 0 means the next update copies
        self._last_step = 0
        self._swapped_for_test = False

    @classmethod
    def from_recipe(cls, recipe, total_steps, state_dir=None):
        """The recipe's EMA for a run of ``total_steps`` (:func:`keras_resnet.recipes.ema_momentum`).

        Example:
            >>> ModelEMA.from_recipe("torchvision_v2", 600_000).every
            32
        """
        recipe = get_recipe(recipe)
        if not recipe.ema:
            raise InvalidArgument(f"Recipe {recipe.name!r} has no EMA (`ema=False`).")
        if total_steps is None:
            raise InvalidArgument(f"Recipe {recipe.name!r} (with EMA) needs `total_steps`.")
        return cls(ema_momentum(recipe, total_steps), recipe.ema_every,
                   warmup_steps(recipe, total_steps), state_dir)

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _swap(self):
        weights = _averaged(self.model)
        current = [keras.ops.convert_to_numpy(v) for v in weights]
        for variable, value in zip(weights, self.held):
            variable.assign(value)
        self.held = current
        self.ema_in_model = not self.ema_in_model

    def update(self, step_index):
        """Fold the model's weights into the average, as after 0-based step ``step_index``."""
        weights = [keras.ops.convert_to_numpy(v) for v in _averaged(self.model)]
        if self.held is None or self.count == 0:
            self.held = [np.array(w, copy=True) for w in weights]
        else:  # timm ModelEmaV3 and torch's get_ema_multi_avg_fn: lerp by 1 - decay
            weight = np.float32(1.0 - self.decay)
            self.held = [a + weight * (w - a) for a, w in zip(self.held, weights)]
        self.count = 0 if step_index < self.warmup_steps else self.count + 1

    def on_train_begin(self, logs=None):
        self._last_step = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        # Steps done went from _last_step to step: update once if an update step lies between.
        if (step - 1) // self.every > (self._last_step - 1) // self.every:
            self.update(step - 1)
        self._last_step = step

    def on_epoch_begin(self, epoch, logs=None):
        if self.ema_in_model:
            self._swap()

    def on_epoch_end(self, epoch, logs=None):
        if self.held is not None and not self.ema_in_model:
            self._swap()

    def on_test_begin(self, logs=None):
        self._swapped_for_test = self.held is not None and not self.ema_in_model
        if self._swapped_for_test:
            self._swap()

    def on_test_end(self, logs=None):
        if self._swapped_for_test and self.ema_in_model:
            self._swap()
        self._swapped_for_test = False

    def state(self):
        """The counters, and the held weights in a file of ``state_dir`` (named here)."""
        if self.state_dir is None:
            raise InvalidArgument("ModelEMA needs `state_dir` to be backed up; got None.")
        name = None
        if self.held is not None:
            name = f"ema-{self._step():010d}.npz"
            os.makedirs(self.state_dir, exist_ok=True)
            with atomic_path(os.path.join(self.state_dir, name), suffix=".npz") as tmp:
                np.savez(tmp, *self.held)
            self._remove_older(name)
        return {"held": name, "ema_in_model": self.ema_in_model, "count": self.count,
                "decay": self.decay, "every": self.every, "warmup_steps": self.warmup_steps}

    def _remove_older(self, name):
        """Keep this file and the one before it (the backup's fallback epoch)."""
        files = sorted(f for f in os.listdir(self.state_dir)
                       if f.startswith("ema-") and f.endswith(".npz"))
        for old in files[:max(0, files.index(name) - 1)]:
            os.remove(os.path.join(self.state_dir, old))

    def restore(self, state):
        self.ema_in_model, self.count = state["ema_in_model"], state["count"]
        self.decay, self.every = state["decay"], state["every"]
        self.warmup_steps = state["warmup_steps"]
        self.held = None
        if state["held"] is not None:
            with np.load(os.path.join(self.state_dir, state["held"])) as saved:
                self.held = [saved[f"arr_{i}"] for i in range(len(saved.files))]
