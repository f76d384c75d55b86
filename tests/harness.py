"""The shared model test harness: a constructor is tested end to end by declaring a ModelCase.

``prepare(cases, folder)`` builds every case once; ``check_model(case, prepared)`` checks, in
this order:

1. what it builds: input and output shapes, a finite output;
2. its trainable parameter count against a reference figure nobody here computed with our
   builder (torchvision's for Table 1 nets; §4.2's arithmetic for CIFAR nets, also within 2% of
   Table 6);
3. ``get_config`` / ``from_config``: the same config and equal outputs with the same weights,
   and every block layer rebuilt from its own config;
4. a ``.keras`` round trip in a fresh process, outputs equal to the model's, the same layer
   types and weight-decay losses (one process per backend loads every case: :func:`prepare`):
   under the JAX backend where the case and the session load there (within 2e-5; that process
   is as fresh as TensorFlow's, and the cross-backend load is the stronger check), else in
   TensorFlow (bit for bit);
5. float exports (TFLite, ONNX, OpenVINO; the case's ``exports``) with parity to the model, made
   from the saved files in one fresh process, in the background while the cases are checked.

Batch-norm statistics are randomised first (:func:`randomise_batch_norm`), so the outputs are
far from uniform and a wrong layer cannot hide behind them.
"""

import contextlib
import copy
import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np

import keras_resnet
from keras_resnet.models import walk_layers
from keras_resnet.summary import count_trainable_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD_WORKER = os.path.join(REPO, "tests", "workers", "load_models.py")
EXPORT_WORKER = os.path.join(REPO, "tests", "workers", "export_model.py")
FLOAT_EXPORTS = ("tflite", "onnx", "openvino")  # the keys of keras_resnet.export.FILE_EXPORTERS
BACKENDS = ("tensorflow", "jax")


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """One constructor call to test end to end.

    name: the test id; build: a function returning the model; params: the reference trainable
    parameter count and reference: where it comes from; paper_params: the paper's rounded
    figure, if it gives one (checked within 2%); exports: float formats to check; slow: run
    only with ``pytest --all``; backends: where the ``.keras`` file is loaded afresh (none:
    the case is not saved; it builds, counts and round-trips its config in this process, for
    depths whose layers other cases save and load already).
    """

    name: str
    build: object
    params: int
    reference: str
    paper_params: float = None
    exports: tuple = FLOAT_EXPORTS
    slow: bool = False
    backends: tuple = ("tensorflow", "jax")


def cifar_params(depth, classes=10, option="A"):
    """Trainable parameters of the §4.2 network of ``depth`` = 6n+2, by the paper's arithmetic:
    a 3x3 conv of 16 filters, three stages of n two-conv blocks (16, 32, 64 filters), BN after
    every conv (gamma, beta), a 64-to-``classes`` dense layer; option B adds a 1x1 projection
    with BN where the width doubles."""
    n = (depth - 2) // 6
    total = 3 * 3 * 3 * 16 + 2 * 16
    previous = 16
    for width in (16, 32, 64):
        for block in range(n):
            total += 3 * 3 * previous * width + 2 * width + 3 * 3 * width * width + 2 * width
            if option == "B" and block == 0 and previous != width:
                total += previous * width + 2 * width
            previous = width
    return total + 64 * classes + classes


def preact_cifar_params(depth, classes=10):
    """Trainable parameters of He et al. 2016's pre-activation CIFAR nets, by hand: conv1 (3x3,
    16, with a bias: no BN follows it), per block a BN before each conv, the last conv (and a
    projection) with a bias instead of a BN after it; BN-ReLU after the last stage.
    ResNet-110: basic blocks, option A; ResNet-164/1001: bottlenecks (4x), option B."""
    bottleneck = depth != 110
    n = (depth - 2) // (9 if bottleneck else 6)
    total, channels = 3 * 3 * 3 * 16 + 16, 16
    for planes in (16, 32, 64):
        for index in range(n):
            out = planes * 4 if bottleneck else planes
            total += 2 * channels  # preact BN
            if bottleneck:
                total += channels * planes + 2 * planes + 9 * planes * planes + 2 * planes
                total += planes * out + out
                if index == 0:
                    total += channels * out + out  # projection
            else:
                total += 9 * channels * planes + 2 * planes + 9 * planes * planes + planes
            channels = out
    return total + 2 * channels + channels * classes + classes


def torch_python():
    """An interpreter with torch, torchvision and timm: $KERAS_RESNET_TORCH_PYTHON, or skip."""
    import pytest

    python = os.environ.get("KERAS_RESNET_TORCH_PYTHON")
    if python and os.path.exists(python):
        return python
    pytest.skip("torch, torchvision and timm are not installed (set KERAS_RESNET_TORCH_PYTHON)")


def relative_difference(got, expected):
    """max |got - expected| / max |expected|: the figure parity checks with a library's own
    outputs bound by 1e-5."""
    expected = np.asarray(expected)
    return float(np.max(np.abs(np.asarray(got) - expected)) / np.max(np.abs(expected)))


@contextlib.contextmanager
def shapes_only():
    """Models built inside get variables with shapes and no values (Keras defers them in a
    stateless scope): for counts, which read shapes only, without drawing millions of random
    weights. Keras' state is cleared after, which also drops the variables left without values."""
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        keras.backend.clear_session()


def randomise_batch_norm(model, seed=0):
    """Give every BatchNormalization random statistics and affine parameters (in place)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        kind = variable.path.rsplit("/", 1)[-1]
        if kind in ("moving_mean", "beta"):
            variable.assign(rng.normal(0, 0.2, variable.shape).astype(variable.dtype))
        elif kind in ("moving_variance", "gamma"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(variable.dtype))
    return model


def sample_inputs(model, count=4, seed=1):
    """``count`` random float32 inputs of the model's input shape (normalised-image scale)."""
    shape = model.input_shape[1:]
    return np.random.default_rng(seed).normal(0, 1, (count, *shape)).astype(np.float32)


def build(case):
    """The case's model with randomised batch-norm statistics, its inputs and outputs."""
    keras.utils.set_random_seed(0)
    model = randomise_batch_norm(case.build())
    inputs = sample_inputs(model)
    return model, inputs, np.asarray(model.predict(inputs, verbose=0))


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` made once for every case: ``built[name] = (model, inputs, outputs)``,
    ``loads[backend][name]`` = the outputs of the ``.keras`` file loaded there, and a folder."""

    built: dict
    loads: dict
    folder: str
    exporting: object = None  # the export process: (Popen, its output file, its stderr)
    exported: dict = None  # what it wrote, once it has ended

    @property
    def exports(self):
        """Whether check_model also checks the cases' float exports."""
        return self.exporting is not None

    def export_reports(self):
        """``{case name: {format: parity}}`` of the export process (waited for once)."""
        if self.exported is None:
            process, out, stderr = self.exporting
            code = process.wait(timeout=1800)
            stderr.seek(0)
            assert code == 0, f"the export process failed:\n{stderr.read()[-4000:]}"
            stderr.close()
            with open(out) as f:
                self.exported = json.load(f)
        return self.exported


def load_backends(case, backends):
    """Where ``case``'s file is loaded afresh when the session loads on ``backends``: under
    JAX if both load there, else in TensorFlow if the case loads there (see point 4 above)."""
    if "jax" in backends and "jax" in case.backends:
        return ("jax",)
    return tuple(backend for backend in case.backends if backend in backends)


def _start_exports(manifest, folder):
    """The export process of the cases with ``exports`` (:meth:`Prepared.export_reports`)."""
    path, out = os.path.join(folder, "exports.json"), os.path.join(folder, "exported.json")
    with open(path, "w") as f:
        json.dump(manifest, f)
    stderr = open(os.path.join(folder, "exports.stderr"), "w+")
    process = subprocess.Popen(
        [sys.executable, EXPORT_WORKER, path, out], stdout=subprocess.DEVNULL, stderr=stderr,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    return process, out, stderr


def prepare(cases, folder, backends=BACKENDS, exports=False):
    """Build every case, save it, and load all of them in one fresh process per backend (the
    processes run side by side); with ``exports``, start the process that exports them."""
    manifest, built = [], {}
    for case in cases:
        model, inputs, outputs = build(case)
        built[case.name] = (model, inputs, outputs)
        if not case.backends and not case.exports:
            continue
        path, inputs_path = (os.path.join(folder, f"{case.name}{suffix}") for suffix in (".keras", ".npy"))
        model.save(path)
        np.save(inputs_path, inputs)
        manifest.append({"name": case.name, "keras": path, "inputs": inputs_path,
                         "backends": list(load_backends(case, backends))})
    manifest_path = os.path.join(folder, "manifest.json")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    exporting = None
    if exports:
        exporting = _start_exports([{"name": c.name, "keras": os.path.join(folder, f"{c.name}.keras"),
                                     "inputs": os.path.join(folder, f"{c.name}.npy"),
                                     "formats": list(c.exports)} for c in cases if c.exports], folder)
    processes = {}
    for backend in [b for b in backends if any(b in entry["backends"] for entry in manifest)]:
        environment = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
                       "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3",
                       # XLA's LLVM optimisation level 0: compiles in a fraction of the time,
                       # with the same float semantics (no fast-math reassociation).
                       "XLA_FLAGS": "--xla_backend_optimization_level=0"}
        out = os.path.join(folder, f"{backend}.npz")
        stderr = open(os.path.join(folder, f"{backend}.stderr"), "w+")
        processes[backend] = (subprocess.Popen([sys.executable, LOAD_WORKER, manifest_path, out],
                                               stdout=subprocess.DEVNULL, stderr=stderr, env=environment),
                              out, stderr)
    loads = {}
    for backend, (process, out, stderr) in processes.items():
        code = process.wait(timeout=900)
        stderr.seek(0)
        assert code == 0, f"loading under {backend} failed:\n{stderr.read()[-4000:]}"
        stderr.close()
        with np.load(out) as loaded:
            assert str(loaded["backend"]) == backend
            facts = json.loads(str(loaded["facts"]))
            loads[backend] = {case.name: (loaded[case.name], facts[case.name])
                              for case in cases if backend in load_backends(case, backends)}
    return Prepared(built, loads, folder, exporting)


def check_build(case, model, outputs):
    assert model.input_shape[0] is None and len(model.input_shape) == 4, model.input_shape
    assert outputs.shape == (4, model.output_shape[-1]), outputs.shape
    assert np.all(np.isfinite(outputs))
    assert np.ptp(outputs, axis=1).min() > 1e-3, "near-uniform outputs would hide wrong layers"


def check_params(case, model):
    got = count_trainable_params(model)
    assert got == case.params, f"{case.name}: {got:,} trainable parameters; {case.reference}: {case.params:,}"
    if case.paper_params is not None:
        assert abs(got - case.paper_params) <= 0.02 * case.paper_params, (got, case.paper_params)


def check_config(case, model, inputs, outputs):
    config = model.get_config()
    clone = keras.Model.from_config(copy.deepcopy(config))  # from_config consumes its dict
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(np.asarray(clone.predict(inputs, verbose=0)), outputs)
    blocks = [layer for layer in walk_layers(model)
              if isinstance(layer, (keras_resnet.ResidualBlock, keras_resnet.BottleneckBlock))]
    assert blocks, f"{case.name} has no residual blocks"
    for block in blocks:
        rebuilt = type(block).from_config(copy.deepcopy(block.get_config()))
        assert rebuilt.get_config() == block.get_config(), block.name


def check_fresh_loads(case, model, loads, outputs):
    layer_types = sorted({type(layer).__name__ for layer in model.layers})
    assert not case.backends or set(case.backends) & set(loads), f"{case.name} was loaded nowhere"
    for backend, by_case in loads.items():
        if case.name not in by_case:
            continue
        loaded, facts = by_case[case.name]
        if backend == "tensorflow":  # the same kernels on the same machine: bit for bit
            np.testing.assert_array_equal(loaded, outputs, err_msg=backend)
        else:
            np.testing.assert_allclose(loaded, outputs, atol=2e-5, err_msg=backend)
        # The registered blocks come back as themselves, with their weight decay.
        assert facts["layer_types"] == layer_types, (backend, facts["layer_types"])
        assert facts["losses"] == len(model.losses) > 0, (backend, facts["losses"])


def check_exports(case, prepared):
    """The case's float exports (made from its saved ``.keras`` file by the export process of
    :func:`prepare`: a converter's memory goes with the process; in one test worker tf2onnx
    alone took it from 7 to 20 GB), each with parity to the model."""
    if not case.exports:
        return
    reports = prepared.export_reports()[case.name]
    assert "error" not in reports, f"exporting {case.name} failed:\n{reports.get('error')}"
    assert sorted(reports) == sorted(case.exports), reports
    for fmt, report in reports.items():
        assert report["max_abs_diff"] <= 2e-5 and report["top1_agreement"] == 1.0, (fmt, report)


def check_model(case, prepared):
    """Every check above for one declared case (``prepared``: :func:`prepare` of the cases)."""
    model, inputs, outputs = prepared.built[case.name]
    check_build(case, model, outputs)
    check_params(case, model)
    check_config(case, model, inputs, outputs)
    check_fresh_loads(case, model, prepared.loads, outputs)
    if prepared.exports:
        check_exports(case, prepared)


def digits_top1(model, split="test", batch_size=128, **load_options):
    """Top-1 accuracy of ``model`` on a digits split, counted with numpy from its predictions
    (a run's own figure comes from Keras' metric in ``evaluate``), and the split's size."""
    batches, _ = keras_resnet.data.load("digits", split, batch_size, **load_options,
                                        preprocessing=keras_resnet.preprocessing.of(model))
    hits = total = 0
    for images, labels in batches:
        predicted = np.argmax(np.asarray(model.predict_on_batch(images), np.float32), axis=-1)
        hits += int(np.sum(predicted == np.asarray(labels).reshape(-1)))
        total += len(predicted)
    return hits / total, total
