"""What the device is and how to train on it: GPU detection, the fast path (the precision, XLA
and ``steps_per_execution`` settings measured fastest per device, ``python -m
benchmarks.fast_path``; README, Performance), Keras' dtype policy and linear
learning-rate scaling.

Backend-neutral: devices are asked of the Keras backend in use (TensorFlow, JAX or PyTorch).

Example:
    >>> fast_path()["precision"]  # 'float32' on a 2-core CPU
    'float32'
"""

from keras_resnet.errors import InvalidArgument

PRECISIONS = ("auto", "float32", "mixed", "mixed_float16", "mixed_bfloat16")
# tf.distribute strategies by name (keras_resnet.distribute.get_strategy).
STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multi_worker", "tpu")


def has_gpu():
    """True when the Keras backend in use sees a GPU."""
    import keras  # here, not at import: the command line lists these choices without Keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # Physical devices: listing them does not initialize the runtime, which
        # MultiWorkerMirroredStrategy must configure itself.
        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


# The settings "auto" resolves to: the fastest measured combination that keeps the paper's
# numerics (`python -m benchmarks.fast_path`; README, Performance), by device and family.
FAST_PATH = {
    # 2-core AVX-512 CPU, CIFAR nets at 32x32: XLA, mixed_bfloat16 and steps_per_execution > 1
    # gained nothing (0.92x each, medians of 7 rounds); float32 graph execution is fastest.
    "cpu": {"precision": "float32", "jit_compile": False, "steps_per_execution": 1},
    # The same CPU, ImageNet nets at 224x224: bfloat16 matmuls (AVX512_BF16) train ResNet-50
    # 1.18x faster than float32 (1.99x on a Xeon with AMX); XLA is slower (0.65x; 0.76x with
    # AMX). Only on CPUs with native bfloat16.
    "cpu_bf16": {"precision": "mixed_bfloat16", "jit_compile": False, "steps_per_execution": 1},
    # GPU: float16 Tensor Cores with loss scaling and XLA fusion (NVIDIA's ResNet-50 setting,
    # AMP + XLA). "auto" lets Keras keep XLA off under multi-replica strategies. Measure a
    # given GPU with `python -m benchmarks.fast_path --device gpu`.
    "gpu": {"precision": "mixed_float16", "jit_compile": "auto", "steps_per_execution": 1},
}
# What Keras does when nothing is chosen: the reference the fast path is measured against.
KERAS_DEFAULTS = {"precision": "float32", "jit_compile": "auto", "steps_per_execution": 1}


def cpu_has_bfloat16():
    """True when the CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16 flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: assume not
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_path(enabled=True, family="cifar"):
    """The precision, XLA and ``steps_per_execution`` settings "auto" means on this machine.

    Args:
        enabled: False gives Keras' own defaults (float32, Keras' XLA choice, one step per
            execution): the switch behind ``keras-resnet train --no-fast-path``.
        family: "cifar" or "imagenet", the model's family (CPUs with native bfloat16 train
            ImageNet nets faster in mixed_bfloat16).

    Returns:
        dict with ``precision``, ``jit_compile`` and ``steps_per_execution``.

    Example:
        >>> fast_path(family="cifar")["precision"]  # 'mixed_float16' on a GPU
        'float32'
    """
    if not enabled:
        return dict(KERAS_DEFAULTS)
    if has_gpu():
        settings = dict(FAST_PATH["gpu"])
    elif family == "imagenet" and cpu_has_bfloat16():
        settings = dict(FAST_PATH["cpu_bf16"])
    else:
        settings = dict(FAST_PATH["cpu"])
    import keras

    if keras.backend.backend() != "tensorflow":
        # FAST_PATH's XLA choices were measured on TensorFlow. JAX without jit runs op by op
        # (ResNet-8 on this CPU: 10x slower per step), so leave it to Keras ("auto": JAX
        # jits, PyTorch runs eagerly).
        settings["jit_compile"] = "auto"
    return settings


def resolve_precision(precision="auto", *, fast=True, family="cifar"):
    """The dtype policy name for ``precision``.

    "mixed" means mixed_float16 on GPU and mixed_bfloat16 on CPU/TPU; "auto" means
    ``fast_path(fast, family)``'s (:data:`FAST_PATH`).
    """
    if precision not in PRECISIONS:
        raise InvalidArgument(f"`precision` must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision == "auto":
        return fast_path(fast, family)["precision"]
    if precision == "mixed":
        return "mixed_float16" if has_gpu() else "mixed_bfloat16"
    return precision


def set_precision(precision="auto", *, fast=True, family="cifar"):
    """Set Keras' global dtype policy (see :func:`resolve_precision`); returns its name.

    Example:
        >>> set_precision("mixed")  # 'mixed_float16' on a GPU
        'mixed_bfloat16'
        >>> set_precision("float32")
        'float32'
    """
    import keras

    policy = resolve_precision(precision, fast=fast, family=family)
    keras.config.set_dtype_policy(policy)
    return policy


def scaled_learning_rate(base_learning_rate, base_batch_size, global_batch):
    """Linear scaling: ``base_learning_rate * global_batch / base_batch_size``.

    Example:
        >>> scaled_learning_rate(0.1, 256, 1024)
        0.4
    """
    return base_learning_rate * global_batch / base_batch_size
