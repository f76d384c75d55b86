"""One set of batch-norm statistics for every replica of a ``tf.distribute`` run.

Under a ``tf.distribute`` strategy, Keras 3 creates each batch norm's moving mean and variance
as a mirrored variable without aggregation, and each replica updates its own copy from its own
share of the batch (tf.keras aggregated them as a mean). The copies drift apart: validation
scores each replica's share of a batch with that replica's statistics, and a saved model keeps
the first replica's. :class:`AverageReplicaStatistics` sets every copy, on every worker, to
the mean of the copies before each validation, at each epoch's end (before the checkpoints)
and when training ends. A moving average is linear, so the mean of the replicas' moving
averages is the moving average of their mean batch statistics: what one aggregated variable
would have held.

Example:
    >>> model = keras_resnet.ResNet20()
    >>> len(moving_statistics(model))  # 19 batch norms, a mean and a variance each
    38
    >>> average_replica_statistics(model)  # one replica: nothing to average
    0
"""

import keras

MOVING_STATISTICS = ("moving_mean", "moving_variance", "moving_stddev")


def moving_statistics(model):
    """The model's batch-norm moving statistics (float variables named as Keras names them)."""
    return [variable for variable in model.non_trainable_variables
            if variable.name in MOVING_STATISTICS and "float" in str(variable.dtype)]


def average_replica_statistics(model):
    """Set each replica's copy of each moving statistic to the mean over replicas.

    Statistics whose copies already agree (a frozen batch norm's) are left bit for bit.
    A no-op without a multi-replica TensorFlow strategy. Returns how many were averaged.
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    strategy = model.distribute_strategy
    statistics = moving_statistics(model)
    if strategy.num_replicas_in_sync < 2 or not statistics:
        return 0
    import tensorflow as tf

    def in_each_replica():  # the mean of the copies, and how far they are from the first's
        context = tf.distribute.get_replica_context()
        copies = tf.concat([tf.reshape(tf.identity(v.value), [-1]) for v in statistics], 0)
        first = context.all_reduce("SUM", tf.where(  # the first replica's copies, everywhere
            tf.equal(context.replica_id_in_sync_group, 0), copies, tf.zeros_like(copies)))
        return context.all_reduce("MEAN", copies), context.all_reduce("SUM", tf.abs(copies - first))

    # All-reduced: the same in every replica, on every worker.
    mean, spread = (strategy.experimental_local_results(value)[0]
                    for value in strategy.run(in_each_replica))
    sizes = [int(variable.value.shape.num_elements()) for variable in statistics]
    averaged = 0
    for variable, part, apart in zip(statistics, tf.split(mean, sizes), tf.split(spread, sizes)):
        if bool(tf.reduce_any(apart > 0)):
            variable.value.assign(tf.reshape(part, variable.value.shape))
            averaged += 1
    return averaged


class AverageReplicaStatistics(keras.callbacks.Callback):
    """Average the replicas' batch-norm statistics before each validation, at each epoch's end
    and when training ends. Put it before the callbacks that save the model.

    Example:
        >>> model.fit(train, validation_data=val, callbacks=[AverageReplicaStatistics()])  # doctest: +SKIP
    """

    def on_test_begin(self, logs=None):
        average_replica_statistics(self.model)

    def on_epoch_end(self, epoch, logs=None):
        average_replica_statistics(self.model)

    def on_train_end(self, logs=None):
        average_replica_statistics(self.model)
