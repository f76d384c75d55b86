"""The Keras backend and the device a benchmark runs on, and its seeds.

Importing this module imports neither Keras nor TensorFlow, so a script can parse its arguments,
call :func:`set_backend` (``KERAS_BACKEND``: tensorflow, jax or torch) and :func:`select_device`
(which hides the GPUs for ``--device cpu``) before the backend starts. Nothing here imports
TensorFlow unless the backend is TensorFlow.
"""

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKENDS = ("tensorflow", "jax", "torch")
DEVICES = ("cpu", "gpu")


def set_backend(backend=None):
    """Set ``KERAS_BACKEND`` to ``backend`` (default: the environment's, else tensorflow) before
    Keras is imported; returns the backend's name.

    Exits with a message when Keras is already running on another backend, or when the
    backend's package is not installed.
    """
    import importlib.util

    backend = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in BACKENDS:
        raise SystemExit(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != backend:
            raise SystemExit(f"--backend {backend}: Keras was already imported on {running}; "
                             "set the backend before importing Keras")
    if importlib.util.find_spec(backend) is None:
        extra = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
        raise SystemExit(f"--backend {backend}: the {backend!r} package is not installed "
                         f"(pip install {extra})")
    os.environ["KERAS_BACKEND"] = backend
    return backend


def backend_name():
    """The Keras backend this process runs on (or will run on): ``KERAS_BACKEND``."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def select_device(device, backend=None):
    """Make the Keras backend use ``device`` ("cpu" or "gpu"); returns "/CPU:0" or "/GPU:0".

    Call it before the backend is imported: "cpu" sets ``CUDA_VISIBLE_DEVICES=-1`` (and
    ``JAX_PLATFORMS=cpu``) so no GPU is initialised at all. "gpu" exits with a clear message
    when the backend sees no GPU. Only TensorFlow is imported for TensorFlow.
    """
    if device not in DEVICES:
        raise ValueError(f"`device` must be one of {', '.join(DEVICES)}; got {device!r}.")
    backend = backend or backend_name()
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        if backend == "jax":
            os.environ["JAX_PLATFORMS"] = "cpu"
    # keras_resnet first: under KERAS_RESNET_QUIET (this package sets it) it loads Keras and
    # the backend with their C++ log lines silenced.
    importlib.import_module("keras_resnet")
    if backend == "jax":
        return _select_jax_device(device)
    if backend == "torch":
        return _select_torch_device(device)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # no retracing warnings: every model traces its own step
    if device == "cpu":
        try:  # TensorFlow was imported before us: hide the GPUs the other way
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass
        return "/CPU:0"
    if not tf.config.list_physical_devices("GPU"):
        build = tf.sysconfig.get_build_info()
        why = ("this TensorFlow build has no CUDA support" if not build.get("is_cuda_build")
               else "no CUDA driver or GPU was found"
               + (f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r})"
                  if "CUDA_VISIBLE_DEVICES" in os.environ else ""))
        raise SystemExit(
            f"--device gpu: TensorFlow {tf.__version__} sees no GPU on this machine: {why}. "
            f"Run with --device cpu, or on a machine with an NVIDIA GPU and driver."
        )
    return "/GPU:0"


def _select_jax_device(device):
    import jax

    if device == "cpu":
        return "/CPU:0"
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        raise SystemExit(
            f"--device gpu: JAX {jax.__version__} sees no GPU (devices: {jax.devices()}): "
            "install a CUDA build (pip install 'jax[cuda12]') on a machine with an NVIDIA GPU, "
            "or run with --device cpu."
        )
    return "/GPU:0"


def _select_torch_device(device):
    import torch

    if device == "cpu":
        return "/CPU:0"
    if not torch.cuda.is_available():
        raise SystemExit(
            f"--device gpu: PyTorch {torch.__version__} sees no CUDA GPU "
            f"({'a CPU-only build' if torch.version.cuda is None else 'no driver or GPU found'}). "
            "Run with --device cpu, or on a machine with an NVIDIA GPU and driver."
        )
    return "/GPU:0"


def device_scope(tf_device):
    """The context to build and train in: ``tf.device`` on TensorFlow; nothing on JAX and
    PyTorch, which place arrays on the device :func:`select_device` left visible."""
    import contextlib

    if backend_name() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.device(tf_device)


def mixed_policy(device):
    """The mixed-precision policy of a device: mixed_float16 on GPU, mixed_bfloat16 on CPU."""
    return "mixed_float16" if device == "gpu" else "mixed_bfloat16"


def set_seeds(seed):
    """Seed Python, NumPy, TensorFlow and Keras."""
    import keras

    keras.utils.set_random_seed(seed)

