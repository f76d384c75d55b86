"""What tests/test_backends.py runs in a fresh interpreter, on the Keras backend named by
``KERAS_BACKEND``: ``python tests/backend_worker.py SCENARIO [--block-tensorflow] ARGS``.

Each scenario prints one line ``RESULT {json}`` last; the test reads it. ``--block-tensorflow``
wraps, before anything is imported, every meta path finder in one that does not find
``tensorflow`` (as if it were not installed), so a venv that has TensorFlow can show what works
without it.

Scenarios:
    imports DIR                  what imports, and how the TensorFlow-only modules fail
    save DIR                     a tiny model (random weights, BN statistics included) saved as
                                 .keras and .weights.h5 with its predictions on a probe batch
    load DIR [--save OUT]        DIR's files loaded here; prediction differences; then ``save OUT``
    train DIR                    model.fit with the paper's recipe and callbacks, from a
                                 PyDataset; killed after epoch 1, resumed in a new model object
                                 with restore_backup; compared with an uninterrupted run
    data_parallel                DataParallel over the visible devices vs one device, same
                                 global batch (run with XLA_FLAGS=--xla_force_host_platform_device_count=2)
    torch_smoke DIR              build, fit one step, save/load (KERAS_BACKEND=torch)
    script PATH ARGS...          run a Python script (runpy) under the same finder
"""

import importlib.abc
import json
import os
import sys


class _WithoutTensorFlow(importlib.abc.MetaPathFinder):
    """A meta path finder that finds what ``finder`` finds, except TensorFlow.

    Every finder of ``sys.meta_path`` is wrapped in one, so ``import tensorflow`` raises
    ModuleNotFoundError and ``importlib.util.find_spec("tensorflow")`` is None, exactly as when
    it is not installed (libraries that probe with find_spec, such as etils, see it absent too).
    """

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "tensorflow" or fullname.startswith("tensorflow."):
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return None if find_spec is None else find_spec(fullname, path, target)

    def invalidate_caches(self):
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


def refuse_tensorflow():
    if "tensorflow" in sys.modules:
        raise RuntimeError("tensorflow is already imported")
    sys.meta_path[:] = [f if isinstance(f, _WithoutTensorFlow) else _WithoutTensorFlow(f)
                        for f in sys.meta_path]


if "--block-tensorflow" in sys.argv:
    sys.argv.remove("--block-tensorflow")
    refuse_tensorflow()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The tiny net every scenario uses: CIFAR ResNet-8, 32x32x3, 10 classes (the layer shapes of
# ResNet-20, so the JAX compilation cache serves both).
TINY = {"depth": 8, "classes": 10, "width_multiplier": 1.0}
TENSORFLOW_MODULES = ("data", "distribute", "runs", "export", "serving")
MODEL_SIDE = ("architectures", "blocks", "models", "weights", "summary", "preprocessing",
              "saving", "training", "devices", "extras", "analysis", "features")


def result(**values):
    print("RESULT " + json.dumps(values, default=float), flush=True)


def tiny_model(**options):
    import keras_resnet

    return keras_resnet.CifarResNet(TINY["depth"], classes=TINY["classes"],
                                    width_multiplier=TINY["width_multiplier"], **options)


def tiny_data(n, seed=0, classes=TINY["classes"]):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((n, 32, 32, 3), dtype=np.float32),
            (np.arange(n) % classes).astype("int32"))


def imports(folder):
    import importlib

    import keras

    import keras_resnet

    model = tiny_model()
    modules = {name: importlib.import_module(f"keras_resnet.{name}").__name__
               for name in MODEL_SIDE}
    failures = {}
    for name in TENSORFLOW_MODULES:
        try:
            importlib.import_module(f"keras_resnet.{name}")
            failures[name] = None
        except ImportError as error:
            failures[name] = {"type": type(error).__name__, "message": str(error)}
    from keras_resnet import training

    callbacks = training.paper_callbacks(folder, "cifar", total_iterations=10, monitor="top1")
    # The backbone side: stage features, embeddings, dilation and stochastic depth.
    import numpy as np

    images, _ = tiny_data(2)
    regularized = tiny_model(drop_path_rate=0.5, classifier_activation=None)
    plain = tiny_model(classifier_activation=None)
    plain.set_weights(regularized.get_weights())
    dilated = keras_resnet.ResNet18(input_shape=(64, 64, 3), output_stride=8)
    backbone = {
        "features": {k: list(v.shape) for k, v in keras_resnet.feature_extractor(model)(images).items()},
        "embeddings": list(keras_resnet.embedding_model(model)(images).shape),
        "dilated_conv5": list(keras_resnet.feature_extractor(dilated, ["conv5"])(
            np.zeros((1, 64, 64, 3), "float32"))["conv5"].shape),
        "inference_equal": bool(np.array_equal(regularized(images), plain(images))),
        "training_differs": bool(np.abs(np.asarray(regularized(images, training=True))
                                        - np.asarray(plain(images, training=True))).max() > 1e-3),
    }
    result(
        backend=keras.backend.backend(),
        tensorflow_imported="tensorflow" in sys.modules,
        public=sorted(keras_resnet.__all__),
        modules=modules,
        params=model.count_params(),
        summary=keras_resnet.summary_table(["resnet20"]).splitlines()[-1].split(),
        callbacks=[type(c).__name__ for c in callbacks],
        failures=failures,
        backbone=backbone,
    )


def save(folder):
    """A tiny model with trained-looking statistics, saved two ways, with its predictions.

    Logits (no softmax), so the comparison is not flattened by a saturated softmax; the kernels
    keep their He initialization, BN statistics and affine parameters are drawn at random (a
    fresh model's are 0 and 1, which would hide a mix-up of mean and variance).
    """
    import keras
    import numpy as np

    from keras_resnet import saving

    keras.utils.set_random_seed(1)
    model = tiny_model(classifier_activation=None)
    rng = np.random.default_rng(1)
    weights = []
    for variable, value in zip(model.weights, model.get_weights()):
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("moving_variance", "gamma"):
            value = rng.uniform(0.5, 1.5, value.shape)
        elif name in ("moving_mean", "beta", "bias"):
            value = rng.normal(0, 0.2, value.shape)
        weights.append(np.asarray(value, dtype="float32"))
    model.set_weights(weights)
    probe, _ = tiny_data(6, seed=2)
    os.makedirs(folder, exist_ok=True)
    saving.save_model(model, os.path.join(folder, "model.keras"))
    model.save_weights(os.path.join(folder, "model.weights.h5"))
    predictions = np.asarray(model.predict(probe, verbose=0))
    np.savez(os.path.join(folder, "probe.npz"), probe=probe, predictions=predictions)
    with open(os.path.join(folder, "backend.txt"), "w") as f:
        f.write(keras.backend.backend())
    return predictions


def load(folder, save_to=None):
    import keras
    import numpy as np

    import keras_resnet

    saved = np.load(os.path.join(folder, "probe.npz"))
    with open(os.path.join(folder, "backend.txt")) as f:
        saved_on = f.read()
    model = keras_resnet.load_model(os.path.join(folder, "model.keras"))
    from_keras = np.asarray(model.predict(saved["probe"], verbose=0))
    # Weights only: a model built here from the same constructor, weights= the file.
    rebuilt = tiny_model(classifier_activation=None,
                         weights=os.path.join(folder, "model.weights.h5"))
    from_weights = np.asarray(rebuilt.predict(saved["probe"], verbose=0))
    preprocessing = keras_resnet.preprocessing.of(model)
    values = {
        "backend": keras.backend.backend(),
        "saved_on": saved_on,
        "keras_max_diff": float(np.max(np.abs(from_keras - saved["predictions"]))),
        "weights_max_diff": float(np.max(np.abs(from_weights - saved["predictions"]))),
        "prediction_scale": float(np.max(np.abs(saved["predictions"]))),
        "top1_agree": bool((from_keras.argmax(-1) == saved["predictions"].argmax(-1)).all()),
        "layer_types": sorted({type(layer).__name__ for layer in model.layers}),
        "preprocessing": None if preprocessing is None else type(preprocessing).__name__,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    if save_to:
        save(save_to)
    result(**values)


class _Interrupt(Exception):
    """Stands for a kill after an epoch's backup was written."""


def train(folder):
    """The paper's recipe and callbacks on this backend; kill after epoch 1, resume, compare."""
    import shutil

    import keras
    import numpy as np

    from keras_resnet import saving, training

    batch, steps_per_epoch, epochs = 8, 4, 2
    # Two of the ten classes: top-1 climbs past 20% within a few steps, which ends the warm-up.
    x, y = tiny_data(batch * steps_per_epoch, classes=2)
    x_val, y_val = tiny_data(16, seed=3, classes=2)

    class Batches(keras.utils.PyDataset):
        """Fixed-order batches, so every run sees the same sequence."""

        def __len__(self):
            return steps_per_epoch

        def __getitem__(self, index):
            return x[index * batch:(index + 1) * batch], y[index * batch:(index + 1) * batch]

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise _Interrupt()

    keras.utils.set_random_seed(0)
    initial = tiny_model().get_weights()

    def fresh():
        model = tiny_model()
        model.set_weights(initial)
        training.compile_model(model, "cifar", global_batch_size=batch)
        return model

    def callbacks(run_dir):
        # 8 iterations: the CIFAR milestones (50%, 75%) fall at iterations 4 and 6; the first
        # is the boundary between the two epochs, where the kill happens.
        return training.paper_callbacks(run_dir, "cifar", total_iterations=epochs * steps_per_epoch,
                                        monitor="val_top1", warmup=True, keep_backup=True)

    def fit(model, run_dir, extra=(), initial_epoch=0):
        # shuffle=False: fit shuffles a PyDataset's batch order by default, and the runs
        # compared must see the same sequence.
        return model.fit(Batches(), validation_data=(x_val, y_val), epochs=epochs,
                         initial_epoch=initial_epoch, callbacks=callbacks(run_dir) + list(extra),
                         shuffle=False, verbose=0)

    uninterrupted = fresh()
    history_u = fit(uninterrupted, os.path.join(folder, "uninterrupted")).history

    killed = fresh()
    run_dir = os.path.join(folder, "killed")
    try:
        fit(killed, run_dir, extra=[Interrupt()])
        raise AssertionError("the interrupt did not fire")
    except _Interrupt:
        pass
    epoch_one = [np.array(w) for w in killed.get_weights()]
    state = training.read_backup_state(os.path.join(run_dir, "backup"))
    shutil.copytree(run_dir, run_dir + "-copy")

    resumed = fresh()  # a new model object, as a new process would build it
    start = training.restore_backup(resumed, os.path.join(run_dir, "backup"))
    restored = resumed.get_weights()
    restored_iterations = int(keras.ops.convert_to_numpy(resumed.optimizer.iterations))
    history_r = fit(resumed, run_dir, initial_epoch=start).history

    final_u, final_r = uninterrupted.get_weights(), resumed.get_weights()
    best = saving.load_model(os.path.join(run_dir, "best.keras"))
    path = saving.save_model(resumed, os.path.join(folder, "final.keras"))
    loaded = saving.load_model(path)
    probe = x_val[:4]
    with open(os.path.join(run_dir, "history.csv")) as f:
        history_rows = f.read().strip().splitlines()
    result(
        backend=keras.backend.backend(),
        jit_compile=bool(resumed.jit_compile),
        history_uninterrupted=history_u,
        history_resumed=history_r,
        start=start,
        backup_epoch=state["epoch"],
        restored_iterations=restored_iterations,
        restored_max_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(restored, epoch_one)),
        final_max_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(final_u, final_r)),
        final_max_change=max(float(np.max(np.abs(a - b))) for a, b in zip(final_u, initial)),
        best_name=best.name,
        reload_max_diff=float(np.max(np.abs(
            np.asarray(loaded.predict(probe, verbose=0))
            - np.asarray(resumed.predict(probe, verbose=0))))),
        history_csv_rows=len(history_rows) - 1,
        files=sorted(os.listdir(run_dir)),
        tensorflow_imported="tensorflow" in sys.modules,
    )


def data_parallel():
    """One device vs keras.distribution.DataParallel over all of them, same global batch."""
    import jax
    import keras
    import numpy as np

    from keras_resnet import training

    devices = jax.devices()
    batch, steps = 8, 3
    x, y = tiny_data(batch * steps)

    class BatchLosses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_train_batch_end(self, step, logs=None):
            self.losses.append(float(logs["loss"]))

    keras.utils.set_random_seed(0)
    initial = tiny_model().get_weights()

    def run():
        model = tiny_model()
        model.set_weights(initial)
        training.compile_model(model, "cifar", global_batch_size=batch)
        record = BatchLosses()
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, callbacks=[record], verbose=0)
        return model, record.losses

    single, single_losses = run()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    parallel, parallel_losses = run()
    layout = distribution.get_data_layout((batch, 32, 32, 3))
    replicas_agree, spans = True, set()
    for variable in parallel.weights:
        value = variable.value
        spans.add(len(value.sharding.device_set))
        shards = [np.asarray(s.data) for s in value.addressable_shards]
        replicas_agree &= all(np.array_equal(shards[0], s) for s in shards[1:])
    weights_diff = max(float(np.max(np.abs(a - b)))
                       for a, b in zip(single.get_weights(), parallel.get_weights()))
    result(
        devices=[str(d) for d in devices],
        data_layout=[str(a) for a in layout.axes],
        single_losses=single_losses,
        parallel_losses=parallel_losses,
        weights_max_diff=weights_diff,
        weights_max_change=max(float(np.max(np.abs(a - b)))
                               for a, b in zip(single.get_weights(), initial)),
        variable_device_counts=sorted(spans),
        replicas_agree=bool(replicas_agree),
    )


def torch_smoke(folder):
    import keras
    import numpy as np

    import keras_resnet
    from keras_resnet import saving, training

    model = tiny_model()
    training.compile_model(model, "cifar", global_batch_size=4)
    x, y = tiny_data(4)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    path = saving.save_model(model, os.path.join(folder, "torch.keras"))
    loaded = keras_resnet.load_model(path)
    diff = float(np.max(np.abs(np.asarray(loaded.predict(x, verbose=0))
                               - np.asarray(model.predict(x, verbose=0)))))
    result(backend=keras.backend.backend(), loss=history["loss"], reload_max_diff=diff,
           tensorflow_imported="tensorflow" in sys.modules)


def script(path, *args):
    import runpy

    sys.argv = [path, *args]
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        result(tensorflow_imported="tensorflow" in sys.modules,
               tensorflow_submodules=sorted(m for m in sys.modules if m.startswith("tensorflow")))


def main():
    scenario, *args = sys.argv[1:]
    if scenario == "load" and "--save" in args:
        index = args.index("--save")
        return load(args[0], save_to=args[index + 1])
    if scenario == "save":
        save(args[0])
        return result(saved=args[0])
    return {"imports": imports, "load": load, "train": train, "data_parallel": data_parallel,
            "torch_smoke": torch_smoke, "script": script}[scenario](*args)


if __name__ == "__main__":
    main()
