"""Strategy selection, global batch and learning-rate scaling, precision policy.

Build the model and the optimizer inside ``strategy.scope()``; feed ``model.fit`` datasets
batched with the *global* batch (per-replica batch x replicas): Keras splits it over replicas.

Example:
    >>> strategy = get_strategy("auto")
    >>> with strategy.scope():
    ...     model = keras_resnet.ResNet20()
    >>> model.name
    'resnet20'
"""

import json
import os

from keras_resnet.errors import InvalidArgument
from keras_resnet.extras import require

tf = require("tensorflow", "keras_resnet.distribute (tf.distribute strategies)")


# The fast path, precision policy and learning-rate scaling are backend-neutral: they live in
# keras_resnet.devices.
from keras_resnet.devices import (  # noqa: E402, F401 (after the TensorFlow check)
    FAST_PATH,
    KERAS_DEFAULTS,
    PRECISIONS,
    STRATEGIES,
    cpu_has_bfloat16,
    fast_path,
    resolve_precision,
    scaled_learning_rate,
    set_precision,
)


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
        >>> get_strategy("cpu").num_replicas_in_sync
        1
    """
    if name not in STRATEGIES:
        raise InvalidArgument(f"`strategy` must be one of {', '.join(STRATEGIES)}; got {name!r}.")
    gpus = _gpus()
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not gpus:
            raise InvalidArgument("`strategy='gpu'` needs a GPU; none is visible. Use 'auto' or 'cpu'.")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        if devices is None:
            kind = "GPU" if gpus else "CPU"
            devices = [d.name for d in tf.config.list_logical_devices(kind)]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise InvalidArgument(
                "`strategy='multi_worker'` reads the cluster from the TF_CONFIG environment "
                "variable, which is not set. See the README's distributed training section."
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise InvalidArgument(f"TF_CONFIG is not valid JSON: {error}") from None
        return _MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def global_batch_size(strategy, batch_size=None, per_replica_batch_size=None):
    """The global batch: ``batch_size`` as given, or per-replica batch x replicas.

    Raises ValueError when ``batch_size`` does not split evenly over the replicas.

    Example:
        >>> global_batch_size(get_strategy("cpu"), per_replica_batch_size=64)  # 128 on 2 GPUs
        64
    """
    replicas = strategy.num_replicas_in_sync
    if (batch_size is None) == (per_replica_batch_size is None):
        raise InvalidArgument("Pass exactly one of `batch_size` and `per_replica_batch_size`.")
    if per_replica_batch_size is not None:
        _check_batch("per_replica_batch_size", per_replica_batch_size)
        return per_replica_batch_size * replicas
    _check_batch("batch_size", batch_size)
    if batch_size % replicas:
        raise InvalidArgument(
            f"`batch_size` {batch_size} (global) does not split over {replicas} replicas; "
            f"use a multiple of {replicas}, e.g. {replicas * max(1, batch_size // replicas)}."
        )
    return batch_size


def _check_batch(argument, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"`{argument}` must be a positive integer; got {value!r}.")
