"""Train a small ResNet a few steps under a strategy and save every weight to an .npz file.

Run by tests/test_distribute.py in a fresh process:
    python distributed_train.py STRATEGY OUT.npz [LOGICAL_CPUS]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

strategy_name, out_path = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[3])
    )

import keras  # noqa: E402

import keras_resnet  # noqa: E402
from keras_resnet import distribute, training  # noqa: E402

keras.config.disable_traceback_filtering()
keras.utils.set_random_seed(0)
strategy = distribute.get_strategy(strategy_name)
batch = distribute.global_batch_size(strategy, per_replica_batch_size=8)
rng = np.random.default_rng(0)
images = rng.random((64, 32, 32, 3), dtype="float32")
labels = rng.integers(0, 10, 64)
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch, drop_remainder=True)

with strategy.scope():
    model = keras_resnet.CifarResNet(8, bn_synchronized=strategy.num_replicas_in_sync > 1)
    training.compile_model(model, "cifar", batch)
history = model.fit(dataset, epochs=2, verbose=0)

weights = {}
for i, variable in enumerate(model.weights):
    replicas = getattr(variable.value, "values", (variable.value,))
    for r, value in enumerate(replicas):
        weights[f"{i}/replica{r}"] = value.numpy()

if strategy.num_replicas_in_sync > 1:  # per-replica batch norm (the default): its statistics
    from keras_resnet.train.replicas import average_replica_statistics, moving_statistics

    with strategy.scope():
        plain = keras_resnet.CifarResNet(8)
        training.compile_model(plain, "cifar", batch)
    plain.fit(dataset, epochs=1, verbose=0)
    for i, variable in enumerate(moving_statistics(plain)):
        for r, value in enumerate(variable.value.values):
            weights[f"statistic{i}/before{r}"] = value.numpy()
    weights["averaged"] = np.array(average_replica_statistics(plain))
    for i, variable in enumerate(moving_statistics(plain)):
        for r, value in enumerate(variable.value.values):
            weights[f"statistic{i}/after{r}"] = value.numpy()
np.savez(out_path, replicas=strategy.num_replicas_in_sync, loss=np.array(history.history["loss"]), **weights)
print("trained", strategy.num_replicas_in_sync, "replicas, loss", history.history["loss"])
