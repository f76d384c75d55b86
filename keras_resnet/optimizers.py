"""The modern recipes' optimizer and learning-rate schedule, as their sources compute them.

- :class:`Lamb`: timm's ``timm.optim.Lamb`` (``timm/optim/lamb.py``, the NVIDIA "NvLamb"
  variant) with the settings ResNet strikes back trained with (timm ``train.py --opt lamb``):
  the weight decay is an L2 term added to the Adam step *inside* the trust ratio, the
  variables that do not decay (1-D: BatchNormalization's gamma/beta and biases, timm's
  ``param_groups_weight_decay``) take the plain Adam step with no trust ratio, and the
  gradients of all variables are clipped to a global norm of 1 first (timm's
  ``max_grad_norm=1.0``, which ``create_optimizer_v2`` leaves at its default).
- :class:`WarmupCosine`: a linear warm-up then a half cosine to 0, per step: timm's
  ``CosineLRScheduler`` (``warmup_prefix=False``: the cosine runs over the whole run, warm-up
  included) or torchvision's ``LinearLR`` + ``CosineAnnealingLR`` (``warmup_prefix=True``:
  the cosine runs over the steps after the warm-up).

Both are registered Keras objects (``package="keras_resnet"``): a compiled model saves and
loads with them. Keras and NumPy only. Named after ``keras.optimizers``, which holds Keras'
optimizers and their schedules alike.

Example:
    >>> round(float(WarmupCosine(0.1, 100, 10, 0.001)(10)), 6)
    0.1
"""

import math

import keras
from keras import ops

from keras_resnet.errors import InvalidArgument

# timm Lamb's max_grad_norm default: ResNet strikes back's train.py passes none, so it is on.
TIMM_LAMB_MAX_GRAD_NORM = 1.0


def _check_number(argument, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
            high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidArgument(f"`{argument}` must be a number {allowed}; got {value!r}.")


@keras.saving.register_keras_serializable(package="keras_resnet")
class Lamb(keras.optimizers.Optimizer):
    """LAMB as timm's ``Lamb`` computes it, with ResNet strikes back's settings as defaults.

    For each variable, with ``g`` the gradient after global-norm clipping (timm's
    ``_get_clip_grad_norm``: ``g / max(1, ||all g|| / global_clipnorm)``) and ``t`` the step:
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``u = (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)``; a decayed variable adds
    ``weight_decay * w`` to ``u`` and scales it by the trust ratio ``||w|| / ||u||`` (1 when
    either norm is 0); then ``w -= lr * u`` (``_single_tensor_lamb``).

    Args:
        learning_rate: a float or a ``LearningRateSchedule``.
        beta_1, beta_2, epsilon: timm's defaults (0.9, 0.999, 1e-6).
        weight_decay: the L2 coefficient inside the trust ratio (timm's coupled
            ``weight_decay``, not Keras' decoupled one); 0 turns the trust ratio off too.
        decay_1d: whether 1-D variables (BatchNormalization's gamma/beta, biases) decay and
            take the trust ratio; timm keeps them out (``weight_decay_exclude_1d``).
        global_clipnorm: timm's ``max_grad_norm`` (1.0); None does not clip.
        **kwargs: Keras' optimizer arguments (``name``, ``loss_scale_factor``, ...);
            its own decoupled ``weight_decay`` and ``use_ema`` are not taken.

    Example:
        >>> Lamb(0.008, weight_decay=0.02).get_config()["weight_decay"]
        0.02
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 weight_decay=0.01, decay_1d=False,
                 global_clipnorm=TIMM_LAMB_MAX_GRAD_NORM, **kwargs):
        for argument in ("use_ema", "clipnorm", "clipvalue"):
            if kwargs.get(argument):
                raise InvalidArgument(f"Lamb takes no `{argument}` (timm's has none); got "
                                      f"{kwargs[argument]!r}.")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("use_ema", "ema_momentum",
                                                               "ema_overwrite_frequency")}
        _check_number("weight_decay", weight_decay, 0)
        _check_number("epsilon", epsilon, 0)
        for argument, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            _check_number(argument, value, 0, 1)
        # Keras' own weight_decay stays None: it would decay outside the trust ratio.
        super().__init__(learning_rate=learning_rate, global_clipnorm=global_clipnorm,
                         **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.lamb_weight_decay = weight_decay
        self.decay_1d = decay_1d

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Refused: the decayed variables are chosen by rank (``decay_1d``), as timm's."""
        raise InvalidArgument("Lamb chooses the variables it decays by rank (`decay_1d`), as "
                              f"timm's; got var_list={var_list!r}, var_names={var_names!r}.")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"])

    def decays(self, variable):
        """Whether ``variable`` takes the weight decay and the trust ratio."""
        return bool(self.lamb_weight_decay) and (self.decay_1d or len(variable.shape) > 1)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))  # timm: exp_avg.lerp_(grad)
        self.assign(v, v * self.beta_2 + ops.square(gradient) * (1 - self.beta_2))
        denominator = ops.sqrt(v) / ops.sqrt(correction_2) + self.epsilon
        update = (m / correction_1) / denominator
        if self.decays(variable):
            update = update + variable * ops.cast(self.lamb_weight_decay, dtype)
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            u_norm = ops.sqrt(ops.sum(ops.square(update)))
            ratio = ops.where(w_norm > 0, ops.where(u_norm > 0, w_norm / u_norm, 1.0), 1.0)
            update = update * ratio
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency", "clipnorm",
                    "clipvalue"):
            config.pop(key, None)
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      weight_decay=self.lamb_weight_decay, decay_1d=self.decay_1d)
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up from ``warmup_start`` to ``peak`` over ``warmup_steps``, then a half
    cosine to 0 at ``total_steps`` (0 after it).

    ``warmup_prefix=False`` is timm's ``CosineLRScheduler`` with its defaults (``lr_min=0``,
    one cycle; ``cosine_lr.py``): at step ``t >= warmup_steps`` the rate is
    ``peak * (1 + cos(pi t / total_steps)) / 2``, the warm-up counted in the cosine.
    ``warmup_prefix=True`` is torchvision's ``LinearLR`` then ``CosineAnnealingLR``
    (``SequentialLR`` at ``warmup_steps``): ``peak * (1 + cos(pi (t - w) / (total - w))) / 2``.
    The warm-up is ``warmup_start + (peak - warmup_start) * t / warmup_steps`` in both
    (timm's ``warmup_lr_init + t * warmup_steps``; torch's ``LinearLR`` with
    ``start_factor = warmup_start / peak``). Both sources' train.py step their schedule once
    an epoch; this is their per-update form (timm's ``--sched-on-updates``), ``t`` counting
    optimizer steps.

    Args:
        peak: the learning rate at the end of the warm-up.
        total_steps: the run's steps (timm's ``t_initial``; the warm-up's end plus torch's
            ``T_max``).
        warmup_steps: the warm-up's steps (0: none).
        warmup_start: the rate at step 0 of the warm-up.
        warmup_prefix: see above.

    Returns (when called with a step):
        The learning rate at that step, float32.

    Example:
        >>> round(float(WarmupCosine(1.0, 100, 0)(50)), 6)
        0.5
    """

    def __init__(self, peak, total_steps, warmup_steps=0, warmup_start=0.0,
                 warmup_prefix=True):
        _check_number("peak", peak, 0)
        _check_number("warmup_start", warmup_start, 0)
        for argument, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"`{argument}` must be an integer >= 0; got {value!r}.")
        if total_steps < 1 or warmup_steps >= total_steps + (0 if warmup_prefix else 1):
            raise InvalidArgument(f"`total_steps` must be >= 1 and above `warmup_steps`; got "
                                  f"total_steps={total_steps}, warmup_steps={warmup_steps}.")
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps
        self.warmup_start, self.warmup_prefix = warmup_start, bool(warmup_prefix)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        start, span = (warmup, self.total_steps - warmup) if self.warmup_prefix else (
            0.0, float(self.total_steps))
        progress = ops.clip((step - start) / span, 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + ops.cos(math.pi * progress))
        if not self.warmup_steps:
            return cosine
        ramp = self.warmup_start + (self.peak - self.warmup_start) * step / warmup
        return ops.where(step < warmup, ramp, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "warmup_start": self.warmup_start,
                "warmup_prefix": self.warmup_prefix}
