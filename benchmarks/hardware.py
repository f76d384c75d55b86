"""What the figures were measured on: CPU (model, SIMD flags, clock, cores), GPUs, nvidia-smi,
installed versions, TF32, the git commit, the command; :func:`machine_description` gathers them
and :func:`describe` prints them on one line.

Importing this module imports neither Keras nor TensorFlow; versions are read from package
metadata, and only the backend's own modules are imported, when a function needs them.
"""

import datetime
import os
import platform
import subprocess
import sys

from benchmarks import backends

HERE = os.path.dirname(os.path.abspath(__file__))


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
    backend = backends.backend_name()
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
    backend = backends.backend_name()
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
                             text=True, timeout=10, cwd=HERE)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10,
                               cwd=HERE).stdout.strip()
        return (out.stdout.strip() + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def _command():
    """How this process was started: ``-m benchmarks.<script> ARGS`` (or ``PATH ARGS``)."""
    if not sys.argv:
        return None
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = (f"-m {spec.name}" if spec is not None and spec.name != "__main__"
               else os.path.relpath(sys.argv[0]))
    return " ".join([program] + sys.argv[1:])


def machine_description(device):
    """What the figures were measured on: CPU, cores, GPU, Keras and backend versions, device."""
    import keras
    import numpy as np

    try:
        import keras_resnet

        package_version = keras_resnet.__version__
    except ImportError:
        package_version = None
    backend = backends.backend_name()
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
        "command": _command(),
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
