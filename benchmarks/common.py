"""Shared code of the benchmark scripts: Keras backend and device selection, machine
description, statistics, JSON results, and the machine's peak FLOP/s (theoretical and measured).

Importing this module imports neither Keras nor TensorFlow, so a script can parse its arguments,
call :func:`set_backend` (``KERAS_BACKEND``: tensorflow, jax or torch) and :func:`select_device`
(which hides the GPUs for ``--device cpu``) before the backend starts. Nothing here imports
TensorFlow unless the backend is TensorFlow: under JAX and PyTorch the matmul peak, the device
checks and the cached batch use the backend's own arrays.

Run it alone to print the machine description and the peak FLOP/s:

    python benchmarks/common.py                  # this CPU: theoretical peak + measured matmul
    python benchmarks/common.py --device gpu     # GPU:0: published peak + measured matmul
    python benchmarks/common.py --device gpu --backend jax   # the same, measured with JAX

Peak FLOP/s:

- CPU, theoretical: physical cores x clock x FLOPs/cycle/core, the FLOPs/cycle read off the SIMD
  flags in /proc/cpuinfo (AVX-512 / AVX2 + FMA, avx512_bf16, AMX) and the vendor (AMD Zen 4
  runs 512-bit FMAs on 256-bit units); the assumptions are printed and stored with the figure.
- CPU, measured: the best of a few timed float32 (and bfloat16) 2048x2048 matmuls of the backend
  (``tf.matmul``, ``jax.numpy.matmul`` jitted, ``torch.matmul``).
- GPU, theoretical: a table of published dense peaks keyed by device name (H100 SXM: 989
  TFLOP/s bf16/fp16 tensor, 494 TF32 tensor, 67 fp32; A100: 312 / 156 / 19.5; ...).
- GPU, measured: the best of a few timed 8192x8192 matmuls of the backend per dtype.

The *fraction of peak* the scripts print uses the theoretical peak of the dtype the convolutions
run in: float32 on CPU; on GPU TF32 tensor cores when TensorFlow has TF32 enabled (its
default) and the GPU has them, else fp32; mixed precision: bf16 (CPU, when the CPU has bf16
instructions, else fp32) or fp16 tensor peak (GPU). Where the measured matmul beats that
theoretical figure (a virtual machine reporting its nominal clock while the cores boost), the
theoretical figure is wrong and the measured one is used instead; the output says so and the
clock the matmul implies. Both fractions are in the JSON files.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEVICES = ("cpu", "gpu")


# ---------------------------------------------------------------------------------------------
# Arguments, device, seeds


BACKENDS = ("tensorflow", "jax", "torch")


def add_common_arguments(parser, json_name, peak=False, backend=False):
    """``--device``, ``--seed``, ``--json`` (default ``benchmarks/results/<json_name>``), with
    ``peak`` ``--cpu-ghz`` for the theoretical peak, with ``backend`` ``--backend``."""
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="cpu: hide the GPUs; gpu: run on the first GPU (fails when there is none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random input and weight")
    parser.add_argument("--json", default=os.path.join(RESULTS_DIR, json_name),
                        help="where to write the results (default: %(default)s)")
    if peak:
        parser.add_argument("--cpu-ghz", type=float, default=None,
                            help="CPU clock for the theoretical peak (default: cpufreq's "
                                 "maximum, else 'cpu MHz' of /proc/cpuinfo, which under a "
                                 "hypervisor is the nominal clock)")
    if backend:
        parser.add_argument("--backend", choices=BACKENDS, default=None,
                            help="the Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    return parser


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


# ---------------------------------------------------------------------------------------------
# Statistics and timing


def spread(values):
    """Median and spread of repeated measurements: min, max, quartiles, IQR, n, the values."""
    values = [float(v) for v in values]
    ordered = sorted(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": q1, "q3": q3, "iqr": q3 - q1, "mean": statistics.fmean(ordered),
            "n": len(values), "values": values}


def percentile(values, q):
    """The ``q``-th percentile (0..100) of ``values``, linear interpolation."""
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def interleaved(functions, rounds, rotate=True, progress=True):
    """Call every function of ``functions`` (name -> callable returning a count) once per round.

    Rounds are interleaved so that a drift of the machine hits every function alike; with
    ``rotate`` the order shifts by one each round so no function always runs first.

    Returns:
        name -> list of rates (count / seconds), one per round.
    """
    names = list(functions)
    rates = {name: [] for name in names}
    for round_index in range(rounds):
        if progress:
            print(f"  round {round_index + 1}/{rounds}", flush=True)
        shift = round_index % len(names) if rotate and names else 0
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            count = functions[name]()
            rates[name].append(count / (time.perf_counter() - start))
    return rates


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
    if backend_name() == "tensorflow":
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


# ---------------------------------------------------------------------------------------------
# Machine description


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_info():
    """CPU model, vendor, family/model, SIMD flags, clock and core counts of this machine."""
    text = _read("/proc/cpuinfo")
    processors, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                processors.append(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        processors.append(current)
    try:
        usable = sorted(os.sched_getaffinity(0))
    except AttributeError:
        usable = list(range(os.cpu_count() or 1))
    first = processors[0] if processors else {}
    by_id = {int(p.get("processor", i)): p for i, p in enumerate(processors)}
    cores = {(by_id[c].get("physical id", "0"), by_id[c].get("core id", str(c)))
             for c in usable if c in by_id}
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    return {
        "model": first.get("model name") or platform.processor() or platform.machine(),
        "vendor": first.get("vendor_id", ""),
        "family": int(first["cpu family"]) if first.get("cpu family", "").isdigit() else None,
        "model_number": int(first["model"]) if first.get("model", "").isdigit() else None,
        "architecture": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(usable),
        "physical_cores": len(cores) or len(usable),
        "mhz": float(first["cpu MHz"]) if first.get("cpu MHz") else None,
        "max_mhz": int(max_khz) / 1000 if max_khz.isdigit() else None,
        "hypervisor": "hypervisor" in first.get("flags", "").split(),
        "flags": sorted(set(first.get("flags", "").split()) & {
            "sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_bf16", "avx512_fp16",
            "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile", "f16c"}),
    }


def gpu_info():
    """Name and compute capability of every GPU the Keras backend sees (empty on CPU)."""
    backend = backend_name()
    gpus = []
    if backend == "jax":
        import jax

        try:
            devices = jax.devices("gpu")
        except RuntimeError:
            devices = []
        for d in devices:
            gpus.append({"device": str(d), "name": d.device_kind,
                         "compute_capability": getattr(d, "compute_capability", None)})
        return gpus
    if backend == "torch":
        import torch

        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            gpus.append({"device": f"cuda:{i}", "name": torch.cuda.get_device_name(i),
                         "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(i)))})
        return gpus
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"device": gpu.name, "name": details.get("device_name", "unknown"),
                     "compute_capability": details.get("compute_capability")})
    return gpus


def _version(distribution):
    """The installed version of ``distribution``, read without importing it; None if absent."""
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tf32_enabled():
    """Whether float32 convolutions and matmuls may run on TF32 tensor cores (GPU only).

    TensorFlow: its switch (on by default). JAX: XLA's default precision allows TF32 on GPUs
    that have it (``jax_default_matmul_precision`` unset). PyTorch: cuDNN convolutions use
    TF32 by default (``torch.backends.cudnn.allow_tf32``); a ResNet is nearly all convolutions.
    """
    backend = backend_name()
    if backend == "jax":
        import jax

        return jax.config.jax_default_matmul_precision in (None, "default", "tensorfloat32",
                                                           "bfloat16")
    if backend == "torch":
        import torch

        return bool(torch.backends.cudnn.allow_tf32)
    import tensorflow as tf

    return tf.config.experimental.tensor_float_32_execution_enabled()


def _nvidia_smi():
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=os.path.dirname(RESULTS_DIR))
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10,
                               cwd=os.path.dirname(RESULTS_DIR)).stdout.strip()
        return (out.stdout.strip() + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_description(device):
    """What the figures were measured on: CPU, cores, GPU, Keras and backend versions, device."""
    import keras
    import numpy as np

    try:
        import keras_resnet

        package_version = keras_resnet.__version__
    except ImportError:
        package_version = None
    backend = backend_name()
    cuda_build = None
    if backend == "tensorflow":
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        if build.get("is_cuda_build"):
            cuda_build = {k: build.get(k) for k in ("cuda_version", "cudnn_version")}
    elif backend == "torch":
        import torch

        if torch.version.cuda:
            cuda_build = {"cuda_version": torch.version.cuda,
                          "cudnn_version": torch.backends.cudnn.version()}
    gpus = gpu_info() if device == "gpu" else []
    return {
        "device": device,
        "backend": backend,
        "backend_version": _version({"torch": "torch"}.get(backend, backend)),
        "tf_device": "/GPU:0" if device == "gpu" else "/CPU:0",
        "cpu": cpu_info(),
        "gpus": gpus,
        "gpu_name": gpus[0]["name"] if device == "gpu" and gpus else None,
        "nvidia_smi": _nvidia_smi() if device == "gpu" else None,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        if hasattr(os, "sysconf") else None,
        # Installed versions, read from package metadata: nothing here imports TensorFlow
        # unless it is the backend.
        "tensorflow": _version("tensorflow"),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "keras": keras.__version__,
        "numpy": np.__version__,
        "keras_resnet": package_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_build": cuda_build,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default") if backend == "tensorflow" else None,
        "tf32": tf32_enabled() if device == "gpu" else None,
        "git_commit": _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]) if sys.argv else None,
    }


def describe(machine):
    """One line: device, CPU, cores, GPU, versions."""
    cpu = machine["cpu"]
    model = cpu["model"]
    if cpu["family"] is not None:
        model += f" (family {cpu['family']} model {cpu['model_number']})"
    text = (f"device {machine['device']} | CPU {model}, {cpu['usable_cpus']} usable CPUs "
            f"({cpu['physical_cores']} physical cores)")
    if machine["gpu_name"]:
        text += f" | GPU {machine['gpu_name']}"
    backend = machine.get("backend", "tensorflow")
    names = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
    return text + (f" | Keras {machine['keras']} on {names.get(backend, backend)} "
                   f"{machine.get('backend_version') or machine.get(backend)}")


# ---------------------------------------------------------------------------------------------
# Peak FLOP/s

# Published dense peaks (no structured sparsity), TFLOP/s, of fp32 (CUDA cores) and of tf32,
# bf16 and fp16 tensor cores: (label, regular expression on TensorFlow's device name, peaks).
# The first match wins; "NVIDIA H100 80GB HBM3" is the SXM5 part.
_H100_SXM = {"float32": 67.0, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4}
GPU_PEAKS_TFLOPS = (
    ("H100 PCIe", r"H100.*PCIe", {"float32": 51.2, "tf32": 378.0, "bfloat16": 756.0, "float16": 756.0}),
    ("H100 NVL", r"H100 NVL", {"float32": 60.0, "tf32": 417.5, "bfloat16": 835.0, "float16": 835.0}),
    ("H100 SXM", r"\bH100\b", _H100_SXM),
    ("H200 / GH200", r"\bG?H200\b", _H100_SXM),
    ("A100", r"\bA100\b", {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0}),
    ("L40S", r"\bL40S\b", {"float32": 91.6, "tf32": 183.0, "bfloat16": 362.0, "float16": 362.0}),
    ("L4", r"\bL4\b", {"float32": 30.3, "tf32": 60.0, "bfloat16": 121.0, "float16": 121.0}),
    ("A10", r"\bA10\b", {"float32": 31.2, "tf32": 62.5, "bfloat16": 125.0, "float16": 125.0}),
    ("V100 SXM2", r"\bV100\b", {"float32": 15.7, "tf32": None, "bfloat16": None, "float16": 125.0}),
    ("T4", r"\bT4\b", {"float32": 8.1, "tf32": None, "bfloat16": None, "float16": 65.0}),
)


def cpu_theoretical_peak(info=None, ghz=None):
    """Theoretical float32 and bfloat16 FLOP/s of this CPU from its SIMD flags.

    Returns:
        dict with ``float32`` and ``bfloat16`` (FLOP/s), ``cores``, ``ghz``,
        ``flops_per_cycle`` and the ``assumptions`` made.
    """
    info = info or cpu_info()
    flags = set(info["flags"])
    amd = info["vendor"] == "AuthenticAMD"
    assumptions = []
    if "avx512f" in flags and amd and (info["family"] or 0) < 26:
        fp32 = 32
        assumptions.append("AVX-512 on AMD family < 26 (Zen 4): 512-bit FMAs run on two 256-bit "
                           "FMA pipes, 2 x 8 fp32 lanes x 2 FLOPs = 32 FLOPs/cycle/core")
    elif "avx512f" in flags:
        fp32 = 64
        assumptions.append("AVX-512 with 2 FMA units of 512 bits (Intel Xeon Gold/Platinum, AMD "
                           "Zen 5): 2 x 16 fp32 lanes x 2 FLOPs = 64 FLOPs/cycle/core (CPUs "
                           "with one 512-bit FMA unit reach half)")
    elif {"avx2", "fma"} <= flags:
        fp32 = 32
        assumptions.append("AVX2 + FMA with 2 FMA units of 256 bits: 2 x 8 fp32 lanes x 2 FLOPs "
                           "= 32 FLOPs/cycle/core")
    elif "avx" in flags:
        fp32 = 16
        assumptions.append("AVX without FMA: one 8-lane add + one 8-lane multiply per cycle")
    else:
        fp32 = 8 if info["architecture"] in ("x86_64", "AMD64") else 4
        assumptions.append(f"no AVX flags read: {fp32} fp32 FLOPs/cycle/core assumed (SSE/NEON)")
    if "amx_bf16" in flags:
        bf16 = 1024
        assumptions.append("AMX-BF16 tiles: 1024 bf16 FLOPs/cycle/core")
    elif "avx512_bf16" in flags:
        bf16 = 2 * fp32
        assumptions.append("avx512_bf16 (VDPBF16PS): twice the fp32 rate for bf16 dot products")
    else:
        bf16 = fp32
        assumptions.append("no bf16 instructions: bf16 peak = fp32 peak")
    cores = info["physical_cores"]
    assumptions.append(f"{cores} physical cores usable by this process (SMT siblings share "
                       f"the FMA units, so they are not counted twice)")
    if ghz:
        mhz, source = ghz * 1000, "--cpu-ghz"
    elif info["max_mhz"]:
        mhz, source = info["max_mhz"], "cpufreq cpuinfo_max_freq (maximum boost clock)"
    elif info["mhz"]:
        mhz, source = info["mhz"], "'cpu MHz' of /proc/cpuinfo" + (
            " (nominal clock reported by the hypervisor; boost clocks may be higher)"
            if info["hypervisor"] else "")
    else:
        mhz, source = 2000.0, "no clock found: 2.0 GHz assumed"
    assumptions.append(f"clock {mhz / 1000:.2f} GHz from {source}, held on all cores")
    ghz = mhz / 1000
    return {"float32": cores * ghz * 1e9 * fp32, "bfloat16": cores * ghz * 1e9 * bf16,
            "cores": cores, "ghz": ghz, "flops_per_cycle": {"float32": fp32, "bfloat16": bf16},
            "assumptions": assumptions}


def gpu_theoretical_peak(name):
    """Published dense peak FLOP/s of a GPU by name; None when the name is not in the table."""
    for key, pattern, peaks in GPU_PEAKS_TFLOPS:
        if re.search(pattern, name, re.IGNORECASE):
            return {"table_key": key,
                    **{k: None if v is None else v * 1e12 for k, v in peaks.items()}}
    return None


def measure_matmul(device, dtype="float32", size=None, repeats=None, rounds=3):
    """Best FLOP/s of ``rounds`` timings of ``repeats`` chained square matmuls on ``device``,
    with the Keras backend's own arrays (TensorFlow, JAX or PyTorch)."""
    size = size or (8192 if device == "gpu" else 2048)
    repeats = repeats or (20 if device == "gpu" else 4)
    chain = {"jax": _jax_matmul_chain, "torch": _torch_matmul_chain}.get(
        backend_name(), _tf_matmul_chain)(device, dtype, size, repeats)
    chain()  # trace, compile, warm up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        chain()
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return {"dtype": dtype, "size": size, "repeats": repeats, "flops": best}


def _tf_matmul_chain(device, dtype, size, repeats):
    import tensorflow as tf

    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        generator = tf.random.Generator.from_seed(0)
        # Entries of variance 1/size: a chain of products keeps its scale (no overflow in
        # float16). The matrices are arguments, not captured constants, so that grappler can
        # neither fold the products at trace time nor merge repeated identical ones.
        a = tf.cast(generator.normal((size, size)), dtype)
        b = tf.cast(generator.normal((size, size), stddev=size**-0.5), dtype)

    @tf.function
    def chain(c, b):
        for _ in range(repeats):
            c = tf.matmul(c, b)
        return tf.reduce_sum(tf.cast(c[:1, :1], tf.float32))

    def run():
        with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
            return chain(a, b).numpy()

    return run


def _jax_matmul_chain(device, dtype, size, repeats):
    import jax
    import jax.numpy as jnp

    target = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.device_put(jax.random.normal(ka, (size, size)).astype(dtype), target)
    b = jax.device_put((jax.random.normal(kb, (size, size)) * size**-0.5).astype(dtype), target)

    @jax.jit
    def chain(c, b):  # arguments, not constants: XLA cannot fold or merge the products
        for _ in range(repeats):
            c = c @ b
        return jnp.sum(c[:1, :1].astype(jnp.float32))

    return lambda: chain(a, b).block_until_ready()


def _torch_matmul_chain(device, dtype, size, repeats):
    import torch

    target = torch.device("cuda" if device == "gpu" else "cpu")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(target, getattr(torch, dtype))
    b = (torch.randn(size, size, generator=generator) * size**-0.5).to(target, getattr(torch, dtype))

    def run():
        with torch.no_grad():
            c = a
            for _ in range(repeats):
                c = c @ b
            value = float(c[:1, :1].float().sum())  # waits for the device
        return value

    return run


_PEAK_CACHE = {}


def peak_flops(device, measure=True, cpu_ghz=None, size=None, repeats=None):
    """Theoretical and measured peak FLOP/s of ``device`` ("cpu"/"gpu"), per dtype.

    ``size`` and ``repeats`` set the measured matmuls (default 2048 x 4 on CPU, 8192 x 20 on
    GPU; smaller ones measure less than the peak).

    Returns:
        dict: ``theoretical`` (dtype -> FLOP/s, plus notes), ``measured`` (dtype -> FLOP/s of a
        large matmul, when ``measure``), ``basis`` (which figure fractions use).
    """
    key = (device, measure, cpu_ghz, size, repeats)
    if key in _PEAK_CACHE:
        return _PEAK_CACHE[key]
    if device == "cpu":
        theoretical = cpu_theoretical_peak(ghz=cpu_ghz)
        mixed_dtype = "bfloat16"
        source = "derived from /proc/cpuinfo"
    else:
        name = gpu_info()[0]["name"]
        theoretical = gpu_theoretical_peak(name) or {}
        theoretical["assumptions"] = [
            f"published dense peaks of the {theoretical['table_key']} (no sparsity, boost clock)"
            if theoretical.get("table_key")
            else f"{name!r} is not in GPU_PEAKS_TFLOPS: no theoretical peak"
        ]
        mixed_dtype = "float16/bfloat16"
        source = "published table, keyed by device name"
    measured = {}
    if measure:
        dtypes = ("float32", "bfloat16") if device == "cpu" else ("float32", "bfloat16", "float16")
        for dtype in dtypes:
            try:
                measured[dtype] = measure_matmul(device, dtype, size, repeats)["flops"]
            except Exception as error:  # noqa: BLE001  (a dtype the device has no kernel for)
                measured[dtype] = None
                theoretical.setdefault("assumptions", []).append(
                    f"{dtype} matmul could not be measured: {type(error).__name__}")
    tf32 = device == "gpu" and tf32_enabled() and theoretical.get("tf32")
    exceeded = []
    for dtype, value in measured.items():
        if value and theoretical.get(dtype) and value > theoretical[dtype]:
            exceeded.append(dtype)
            note = (f"the measured {dtype} matmul beats the theoretical peak, so the clock or "
                    "the FLOPs/cycle assumed is too low")
            if device == "cpu":
                implied = value / (theoretical["cores"] * theoretical["flops_per_cycle"][dtype])
                note += (f": it implies at least {implied / 1e9:.2f} GHz (pass --cpu-ghz with the "
                         f"all-core boost clock)")
            theoretical["assumptions"].append(note)
    float32_kind = (f"TF32 tensor cores, which {backend_name()} uses for float32 by default"
                    if tf32 else "float32")
    basis = ("fractions of peak use the theoretical peak of the dtype the convolutions run in "
             f"({float32_kind} for float32 models, {mixed_dtype} for mixed precision), or the "
             "measured matmul where that is higher")
    if exceeded:
        basis += f" (here: {', '.join(exceeded)})"
    result = {
        "device": device,
        "theoretical": theoretical,
        "theoretical_source": source,
        "measured": measured,
        "float32_basis": "tf32" if tf32 else "float32",
        "basis": basis,
    }
    _PEAK_CACHE[key] = result
    return result


def peak_for(peak, precision):
    """The peak FLOP/s a model trained in ``precision`` is compared with.

    Returns:
        dict: ``theoretical`` and ``measured`` (matmul) peaks of the compute dtype, and
        ``reference``, the larger of the two, which fractions of peak divide by.
    """
    mixed = precision.startswith("mixed")
    compute = ("float16" if precision == "mixed_float16" else "bfloat16" if mixed
               else "float32")
    if peak["device"] == "cpu":
        key = compute
    else:
        key = compute if mixed else peak["float32_basis"]
    theoretical = peak["theoretical"].get(key)
    measured = peak["measured"].get(compute)
    values = [v for v in (theoretical, measured) if v]
    return {"theoretical": theoretical, "measured": measured,
            "reference": max(values) if values else None}


def print_peak(peak):
    theoretical = peak["theoretical"]
    print(f"Peak FLOP/s of {peak['device']} (theoretical: {peak['theoretical_source']}):")
    for dtype in ("float32", "tf32", "bfloat16", "float16"):
        value = theoretical.get(dtype)
        measured = peak["measured"].get(dtype)
        if value is None and measured is None:
            continue
        line = f"  {dtype:9s} theoretical {format_flops(value):>13s}"
        if dtype in peak["measured"]:
            line += f"   measured matmul {format_flops(measured):>13s}"
            if value and measured:
                line += f" ({100 * measured / value:.0f}% of theoretical)"
        print(line)
    for note in theoretical.get("assumptions", []):
        print(f"  - {note}")
    print(f"  - {peak['basis']}")


def format_flops(value):
    if value is None:
        return "-"
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if value >= scale:
            scaled = value / scale
            return f"{scaled:.3g} {unit}" if scaled < 100 else f"{scaled:.0f} {unit}"
    return f"{value:.3g} FLOP/s"


# ---------------------------------------------------------------------------------------------
# Output


def print_table(rows, columns):
    """Print ``rows`` (dicts) as an aligned text table.

    Args:
        columns: (header, key or callable(row), format spec) triples; text columns are
            left-aligned, numbers right-aligned; None prints "-".
    """
    cells, numeric = [], []
    for header, key, spec in columns:
        column = []
        for row in rows:
            value = key(row) if callable(key) else row.get(key)
            column.append("-" if value is None else format(value, spec) if spec else str(value))
        cells.append(column)
        numeric.append(bool(spec) and not spec.endswith("s"))
    widths = [max([len(h)] + [len(c) for c in col]) for (h, _, _), col in zip(columns, cells)]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    print(line([h for h, _, _ in columns]))
    print("  ".join("-" * w for w in widths))
    for i in range(len(rows)):
        print(line([col[i] for col in cells]))


def write_json(path, machine, settings, results, **extra):
    """Write ``{"machine", "settings", "results", ...}`` to ``path``; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine, "settings": settings, "results": results, **extra}, f,
                  indent=2, default=str)
    print(f"\nwrote {os.path.relpath(path)}")
    return path


def main():
    parser = argparse.ArgumentParser(description="Machine description and peak FLOP/s.")
    add_common_arguments(parser, "machine.json", peak=True, backend=True)
    parser.add_argument("--no-measure", action="store_true", help="skip the matmul measurement")
    args = parser.parse_args()
    set_backend(args.backend)
    select_device(args.device)
    machine = machine_description(args.device)
    print(describe(machine))
    cpu = machine["cpu"]
    print(f"CPU flags: {' '.join(cpu['flags'])}; clock {cpu['mhz']} MHz"
          + (f" (max {cpu['max_mhz']} MHz)" if cpu["max_mhz"] else ""))
    peak = peak_flops(args.device, measure=not args.no_measure, cpu_ghz=args.cpu_ghz)
    print_peak(peak)
    write_json(args.json, machine, vars(args), {"peak": peak})


if __name__ == "__main__":
    main()
