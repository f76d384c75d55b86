"""The paper's learning-rate schedules as callbacks.

§3.4 (ImageNet): the learning rate is divided by 10 when the error plateaus. §4.2 (CIFAR-10):
divided by 10 at 32k and 48k iterations, stopped at 64k; ResNet-110 warms up at 0.01 until the
training error is below 80%.

Example:
    >>> StepSchedule.scaled(640).milestones
    (320, 480)
"""

import keras

from keras_resnet.recipes import get_recipe


def _learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def _set_learning_rate(model, value):
    model.optimizer.learning_rate = value


class StepSchedule(keras.callbacks.Callback):
    """Divide the learning rate by 10 at given iterations and stop at ``stop_at`` (§4.2).

    It multiplies the optimizer's current learning rate, so it composes with
    ``ReduceLROnPlateau`` (a ``LearningRateSchedule`` cannot). Iterations are the optimizer's,
    so a resumed run continues the schedule where it was.

    Example:
        >>> StepSchedule((32_000, 48_000), stop_at=64_000).milestones  # the paper's CIFAR schedule
        (32000, 48000)
    """

    def __init__(self, milestones=(32_000, 48_000), factor=0.1, stop_at=None):
        super().__init__()
        self.milestones = tuple(sorted(milestones))
        self.factor = factor
        self.stop_at = stop_at
        self._last_iteration = None

    @classmethod
    def scaled(cls, total_iterations, recipe="cifar"):
        """The recipe's milestones at the same fractions of a shorter or longer run."""
        recipe = get_recipe(recipe)
        fractions = [m / recipe.total_iterations for m in recipe.milestones]
        milestones = [max(1, round(f * total_iterations)) for f in fractions]
        return cls(milestones, stop_at=total_iterations)

    def _iteration(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        # As if the previous batch had just begun: a milestone at the iteration a resumed run
        # starts from (an epoch boundary) is crossed at its first batch, as without the break.
        self._last_iteration = self._iteration() - 1

    def on_train_batch_begin(self, batch, logs=None):
        iteration = self._iteration()
        crossed = sum(self._last_iteration < m <= iteration for m in self.milestones)
        if crossed:
            _set_learning_rate(self.model, _learning_rate(self.model) * self.factor**crossed)
        self._last_iteration = iteration
        if self.stop_at is not None and iteration >= self.stop_at:
            self.model.stop_training = True


class LinearWarmup(keras.callbacks.Callback):
    """Raise the learning rate linearly over the first ``steps`` iterations, from
    ``start_factor`` times the rate the optimizer holds when training begins to that rate
    (torchvision's ``LinearLR(start_factor, total_iters=steps)``, which its detection reference
    runs before the step schedule). Iterations are the optimizer's: a resumed run goes on
    where it was. Before :class:`StepSchedule`, which multiplies the rate this one sets.

    Example:
        >>> LinearWarmup(1000, start_factor=0.001).factor(500)
        0.5005
    """

    def __init__(self, steps, start_factor=0.001):
        super().__init__()
        self.steps = int(steps)
        self.start_factor = float(start_factor)
        self.target = None

    def factor(self, iteration):
        """The share of the target rate at ``iteration``: 1 from ``steps`` on."""
        done = min(iteration, self.steps) / self.steps
        return self.start_factor + (1.0 - self.start_factor) * done

    def on_train_batch_begin(self, batch, logs=None):
        iteration = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if iteration > self.steps:
            return
        if self.target is None:  # at 0 the rate itself; resumed, the rate before its factor
            rate = _learning_rate(self.model)
            self.target = rate if iteration == 0 else rate / self.factor(iteration - 1)
        _set_learning_rate(self.model, self.target * self.factor(iteration))


class WarmupUntilError(keras.callbacks.Callback):
    """§4.2, ResNet-110: train at ``warmup_learning_rate`` until the training error is below
    ``error_threshold``, then go back to the learning rate the optimizer started with.

    Example:
        >>> WarmupUntilError(0.01, error_threshold=0.8).finished
        False
    """

    def __init__(self, warmup_learning_rate=0.01, error_threshold=0.8, metric="top1"):
        super().__init__()
        self.warmup_learning_rate = warmup_learning_rate
        self.error_threshold = error_threshold
        self.metric = metric
        self.target_learning_rate = None
        self.finished = False

    def on_train_batch_begin(self, batch, logs=None):
        if self.target_learning_rate is None and not self.finished:
            self.target_learning_rate = _learning_rate(self.model)
            _set_learning_rate(self.model, self.warmup_learning_rate)

    def on_train_batch_end(self, batch, logs=None):
        accuracy = (logs or {}).get(self.metric)
        if not self.finished and accuracy is not None and 1 - accuracy < self.error_threshold:
            _set_learning_rate(self.model, self.target_learning_rate)
            self.finished = True

    def state(self):
        return {"finished": self.finished, "target_learning_rate": self.target_learning_rate}

    def restore(self, state):
        self.finished = state["finished"]
        self.target_learning_rate = state["target_learning_rate"]


def reduce_on_plateau(monitor="val_top1", patience=10):
    """§3.4: divide the learning rate by 10 when ``monitor`` stops improving for ``patience`` epochs.

    Example:
        >>> reduce_on_plateau("val_top1", 5).factor
        0.1
    """
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor,
        mode="min" if monitor.endswith("loss") else "max",
        factor=0.1,
        patience=patience,
        verbose=1,
    )
