"""Strategy selection, global batch and learning-rate scaling, precision policy.

Build the model and the optimizer inside ``strategy.scope()``; feed ``model.fit`` datasets
batched with the *global* batch (per-replica batch x replicas): Keras splits it over replicas.

Example:
    >>> strategy = get_strategy("auto")
    >>> with strategy.scope():
    ...     model = keras_resnet.ResNet20()
"""

import json
import os

import keras
import tensorflow as tf

STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed", "mixed_float16", "mixed_bfloat16")


def _gpus():
    # Physical devices: listing them does not initialize the runtime, which
    # MultiWorkerMirroredStrategy must configure itself.
    return tf.config.list_physical_devices("GPU")


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose ``reduce`` takes what Keras' ``fit`` gives it.

    Keras 3.15 reduces the first (x, y) batch, a nested structure, to build the model
    symbolically, and reduces scalar metrics with ``axis=0``; the collective strategy reduces
    one value at a time and needs ``axis=None`` for scalars. Reduce leaf by leaf, scalars
    across replicas only.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super().reduce

        def reduce_one(leaf):
            sample = getattr(leaf, "values", (leaf,))[0]
            rank = getattr(sample, "shape", ()).rank if hasattr(sample, "shape") else 0
            return parent(reduce_op, leaf, None if rank == 0 else axis)

        return tf.nest.map_structure(reduce_one, value)


def get_strategy(name="auto", devices=None):
    """A ``tf.distribute.Strategy`` by name.

    Args:
        name: "auto" (MirroredStrategy over all GPUs when there are several, else the default
            strategy), "cpu" / "gpu" (one device), "mirrored" (all GPUs, or all logical CPUs
            when there is no GPU), "multi_worker" (MultiWorkerMirroredStrategy, cluster from
            the ``TF_CONFIG`` environment variable) or "tpu".
        devices: explicit device names for "mirrored".

    Returns:
        A ``tf.distribute.Strategy``.

    Example:
        >>> get_strategy("mirrored").num_replicas_in_sync
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}; got {name!r}.")
    gpus = _gpus()
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not gpus:
            raise ValueError("`strategy='gpu'` needs a GPU; none is visible. Use 'auto' or 'cpu'.")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        if devices is None:
            kind = "GPU" if gpus else "CPU"
            devices = [d.name for d in tf.config.list_logical_devices(kind)]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "`strategy='multi_worker'` reads the cluster from the TF_CONFIG environment "
                "variable, which is not set. See the README's distributed training section."
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
        return _MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def global_batch_size(strategy, batch_size=None, per_replica_batch_size=None):
    """The global batch: ``batch_size`` as given, or per-replica batch x replicas.

    Raises ValueError when ``batch_size`` does not split evenly over the replicas.

    Example:
        >>> global_batch_size(strategy, per_replica_batch_size=64)  # 128 on 2 GPUs
    """
    replicas = strategy.num_replicas_in_sync
    if (batch_size is None) == (per_replica_batch_size is None):
        raise ValueError("Pass exactly one of `batch_size` and `per_replica_batch_size`.")
    if per_replica_batch_size is not None:
        _check_batch("per_replica_batch_size", per_replica_batch_size)
        return per_replica_batch_size * replicas
    _check_batch("batch_size", batch_size)
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` {batch_size} (global) does not split over {replicas} replicas; "
            f"use a multiple of {replicas}, e.g. {replicas * max(1, batch_size // replicas)}."
        )
    return batch_size


def _check_batch(argument, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer; got {value!r}.")


def scaled_learning_rate(base_learning_rate, base_batch_size, global_batch):
    """Linear scaling: ``base_learning_rate * global_batch / base_batch_size``.

    Example:
        >>> scaled_learning_rate(0.1, 256, 1024)
        0.4
    """
    return base_learning_rate * global_batch / base_batch_size


# The settings "auto" resolves to: the fastest measured combination that keeps the paper's
# numerics (`python benchmarks/fast_path.py`; README, Performance), by device and family.
FAST_PATH = {
    # 2-core AVX-512 CPU, CIFAR nets at 32x32: XLA, mixed_bfloat16 and steps_per_execution > 1
    # gained nothing (0.92x each, medians of 7 rounds); float32 graph execution is fastest.
    "cpu": {"precision": "float32", "jit_compile": False, "steps_per_execution": 1},
    # The same CPU, ImageNet nets at 224x224: bfloat16 matmuls (AVX512_BF16) train ResNet-50
    # 1.18x faster than float32; XLA is slower (0.65x). Only on CPUs with native bfloat16.
    "cpu_bf16": {"precision": "mixed_bfloat16", "jit_compile": False, "steps_per_execution": 1},
    # GPU: float16 Tensor Cores with loss scaling and XLA fusion (NVIDIA's ResNet-50 setting,
    # AMP + XLA). "auto" lets Keras keep XLA off under multi-replica strategies. Measure a
    # given GPU with `python benchmarks/fast_path.py --device gpu`.
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
        >>> fast_path()["precision"]  # 'float32' on a CPU, 'mixed_float16' on a GPU
    """
    if not enabled:
        return dict(KERAS_DEFAULTS)
    if _gpus():
        return dict(FAST_PATH["gpu"])
    if family == "imagenet" and cpu_has_bfloat16():
        return dict(FAST_PATH["cpu_bf16"])
    return dict(FAST_PATH["cpu"])


def resolve_precision(precision="auto", *, fast=True, family="cifar"):
    """The dtype policy name for ``precision``.

    "mixed" means mixed_float16 on GPU and mixed_bfloat16 on CPU/TPU; "auto" means
    ``fast_path(fast, family)``'s (:data:`FAST_PATH`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision == "auto":
        return fast_path(fast, family)["precision"]
    if precision == "mixed":
        return "mixed_float16" if _gpus() else "mixed_bfloat16"
    return precision


def set_precision(precision="auto", *, fast=True, family="cifar"):
    """Set Keras' global dtype policy (see :func:`resolve_precision`); returns its name.

    Example:
        >>> set_precision("mixed")  # 'mixed_float16' on a GPU
    """
    policy = resolve_precision(precision, fast=fast, family=family)
    keras.config.set_dtype_policy(policy)
    return policy
