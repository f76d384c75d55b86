"""What a benchmark feeds ``model.fit``: a fixed random batch, cached or placed on the device
once (no input-pipeline cost), the runner timing one ``fit`` epoch, and the compile settings
every model shares.

Importing this module imports neither Keras nor TensorFlow; its functions import the backend's
own modules when called (TensorFlow only on TensorFlow).
"""

from benchmarks import backends


def random_batch(batch, size, classes, seed=0):
    """A fixed-seed float32 image batch ``(batch, size, size, 3)`` in [0, 1) and int32 labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((batch, size, size, 3), dtype=np.float32),
            rng.integers(0, classes, batch).astype(np.int32))


def cached_dataset(x, y):
    """One in-memory batch, repeated forever, for ``model.fit`` (no input-pipeline cost).

    TensorFlow: a cached, prefetched ``tf.data`` dataset. JAX and PyTorch: a
    ``keras.utils.PyDataset`` that hands ``fit`` the same batch, placed on the device once
    (a ``jax.Array`` / ``torch.Tensor``), so no step pays a host-to-device copy.
    """
    if backends.backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((x, y)).cache().repeat().prefetch(2)
    return _repeated_batch(x, y)


def _repeated_batch(x, y):
    import keras

    class RepeatedBatch(keras.utils.PyDataset):
        """``(x, y)`` at every index; as long as any ``fit`` asks (``steps_per_epoch``)."""

        def __init__(self, x, y):
            super().__init__()
            self.batch = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y))

        def __len__(self):
            return 2**31 - 1

        def __getitem__(self, index):
            return self.batch

    return RepeatedBatch(x, y)


def fit_runner(model, dataset, steps, batch):
    """A callable running one ``model.fit`` epoch of ``steps`` steps; returns the image count.

    ``model.fit`` (not ``train_on_batch``) so that ``steps_per_execution`` takes effect; the
    timing includes fit's small fixed per-call overhead, the same for every model.
    """

    def run():
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        return steps * batch

    return run


def compile_for_benchmark(model, jit_compile=False, steps_per_execution=1):
    """SGD(0.1, momentum 0.9), sparse categorical cross-entropy, no metrics, no weight decay.

    ``jit_compile`` is passed explicitly: Keras' "auto" turns XLA on when a GPU is present.
    """
    import keras

    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy",
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model
